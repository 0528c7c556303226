//! State shared by every request: connections by token and by id, groups, fault switches.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, atomic::AtomicBool},
    time::Duration,
};

use bytes::Bytes;
use rand::{Rng as _, distr::Alphanumeric};
use signalr_protocol::{Payload, TransportKind};
use tokio::{sync::mpsc, time::Instant};

use crate::{
    backplane::{Backplane, Target},
    config::ServerConfig,
    hub::Hub,
    hub::HubError,
    script::ScriptedConnection,
    session::{self, Command, Control},
};

/// Frames the session hands to whichever transport is attached.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// One or more framed messages; `binary` selects the WebSocket frame type.
    Frame { bytes: Bytes, binary: bool },
    /// The connection ended normally: close the transport cleanly.
    Close,
    /// Drop the transport at once (no close frame): the `AbortMe` fault. With a generation,
    /// only the socket of that generation obeys (a resume cutting the socket it replaces); other
    /// writers skip it.
    Abort(Option<u64>),
}

/// Where a long-polling client is in its poll cycle.
#[derive(Debug)]
pub(crate) struct PollState {
    pub(crate) active: bool,
    pub(crate) last_change: Instant,
}

/// One connection as the HTTP layer sees it: the channels to its session and which transport it
/// is bound to.
#[derive(Debug)]
pub(crate) struct ConnEntry {
    pub(crate) connection_id: Arc<str>,
    /// `None` for a WebSocket connection made without negotiate.
    pub(crate) token: Option<String>,
    /// Whether negotiate granted stateful reconnect.
    pub(crate) stateful: bool,
    /// What the client sent, tagged with the transport generation that read it (0 for the
    /// first socket and for HTTP POSTs), so bytes from a replaced socket can be told apart.
    pub(crate) inbound: mpsc::Sender<(u64, Bytes)>,
    pub(crate) outbound: Arc<tokio::sync::Mutex<mpsc::Receiver<Outbound>>>,
    pub(crate) control: mpsc::UnboundedSender<Control>,
    pub(crate) transport: Mutex<Option<TransportKind>>,
    /// Long polling: the first poll of a new connection is answered at once.
    pub(crate) first_poll: AtomicBool,
    /// The last socket generation handed out (stateful resumes count up from 0).
    pub(crate) generations: std::sync::atomic::AtomicU64,
    pub(crate) poll: Mutex<PollState>,
    /// The user who made the connection (`ServerConfig::users`), if users are configured.
    pub(crate) user: Option<Arc<str>>,
    /// Stateful resumes: a token bucket of (tokens, when last filled).
    pub(crate) resumes: Mutex<(f64, tokio::time::Instant)>,
    /// When the connection's credentials expire (`ServerConfig::token_lifetime`).
    pub(crate) expires: Option<Instant>,
    /// What was sent by POST before any transport connected (a long-polling client may send its
    /// handshake before its first poll): delivered, in order, when the transport binds.
    early: Mutex<Vec<Bytes>>,
}

/// The most bytes kept from POSTs made before a transport connects.
pub(crate) const MAX_EARLY_BYTES: usize = 1024 * 1024;

impl ConnEntry {
    /// Binds the connection to `kind` on first use, delivering what was sent by POST before it;
    /// `false` if it is bound to another transport.
    pub(crate) fn bind(&self, kind: TransportKind) -> bool {
        let mut transport = lock(&self.transport);
        match *transport {
            None => {
                *transport = Some(kind);
                let early = std::mem::take(&mut *lock(&self.early));
                if !early.is_empty() {
                    // One chunk, queued now: the session reads it before anything the new
                    // transport (or a later POST) brings, which can only come after this
                    // returns. Nothing else has been queued yet, so there is room.
                    let joined = Bytes::from(early.concat());
                    if let Err(mpsc::error::TrySendError::Full(chunk)) =
                        self.inbound.try_send((0, joined))
                    {
                        let inbound = self.inbound.clone();
                        tokio::spawn(async move { inbound.send(chunk).await });
                    }
                }
                true
            }
            Some(bound) => bound == kind,
        }
    }

    /// Keeps bytes sent by POST before any transport connected, as ASP.NET Core does (its pipe holds
    /// them until the transport starts the application); `false` when that would exceed
    /// [`MAX_EARLY_BYTES`]. When a transport is bound meanwhile, the bytes go to the session.
    pub(crate) async fn send_early(&self, bytes: Bytes) -> bool {
        {
            let transport = lock(&self.transport);
            if transport.is_none() {
                let mut early = lock(&self.early);
                let held: usize = early.iter().map(Bytes::len).sum();
                if held + bytes.len() > MAX_EARLY_BYTES {
                    return false;
                }
                early.push(bytes);
                return true;
            }
        }
        self.inbound.send((0, bytes)).await.is_ok()
    }

    pub(crate) fn transport(&self) -> Option<TransportKind> {
        *lock(&self.transport)
    }

    /// Whether the connection's credentials have expired.
    pub(crate) fn expired(&self) -> bool {
        self.expires.is_some_and(|at| crate::now() >= at)
    }

    /// Takes one resume from the connection's budget (`burst` at most, refilled at `per_second`);
    /// `false` when it is spent.
    pub(crate) fn take_resume(&self, burst: u32, per_second: u32) -> bool {
        let mut bucket = lock(&self.resumes);
        let now = crate::now();
        let refill = now.duration_since(bucket.1).as_secs_f64() * f64::from(per_second);
        bucket.0 = (bucket.0 + refill).min(f64::from(burst));
        bucket.1 = now;
        if bucket.0 >= 1.0 {
            bucket.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What the rest of the server keeps of a running session.
#[derive(Clone, Debug)]
struct SessionHandle {
    commands: mpsc::Sender<Command>,
    control: mpsc::UnboundedSender<Control>,
    user: Option<Arc<str>>,
}

/// Server-wide state.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    pub(crate) hub: Hub,
    by_token: Mutex<HashMap<String, Arc<ConnEntry>>>,
    sessions: Mutex<HashMap<Arc<str>, SessionHandle>>,
    groups: Mutex<HashMap<String, HashSet<Arc<str>>>>,
    refuse_until: Mutex<Option<Instant>>,
    /// Where new connections go instead of to a hub session, when the server is scripted.
    script: Option<mpsc::UnboundedSender<ScriptedConnection>>,
    /// Timers that forget ended long-polling tokens; stopped with the server.
    lingering: Mutex<Vec<tokio::task::AbortHandle>>,
    /// Set when the server stops: nothing lingers after that.
    stopping: AtomicBool,
    /// The most bytes any connection's replay buffer has held unacknowledged.
    replay_high_water: std::sync::atomic::AtomicUsize,
    /// The Redis backplane, with `ServerConfig::redis`.
    pub(crate) backplane: OnceLock<Arc<Backplane>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A random URL-safe id of `len` characters.
pub(crate) fn random_id(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

impl Shared {
    pub(crate) fn new(
        config: ServerConfig,
        hub: Hub,
        script: Option<mpsc::UnboundedSender<ScriptedConnection>>,
    ) -> Self {
        Self {
            config,
            hub,
            by_token: Mutex::default(),
            sessions: Mutex::default(),
            groups: Mutex::default(),
            refuse_until: Mutex::default(),
            script,
            lingering: Mutex::default(),
            stopping: AtomicBool::new(false),
            replay_high_water: std::sync::atomic::AtomicUsize::new(0),
            backplane: OnceLock::new(),
        }
    }

    /// Creates a connection and starts its session. `negotiated` connections get a token
    /// (`token_is_id` for negotiate version 0, where the id doubles as the token).
    pub(crate) fn create_connection(
        self: &Arc<Self>,
        negotiated: bool,
        token_is_id: bool,
        stateful: bool,
        user: Option<Arc<str>>,
    ) -> Arc<ConnEntry> {
        let connection_id: Arc<str> = random_id(22).into();
        let token = negotiated.then(|| {
            if token_is_id {
                connection_id.to_string()
            } else {
                random_id(22)
            }
        });
        let (inbound_tx, inbound_rx) = mpsc::channel(64);
        let (outbound_tx, outbound_rx) = mpsc::channel(1024);
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (commands_tx, commands_rx) = mpsc::channel(256);
        let entry = Arc::new(ConnEntry {
            connection_id: Arc::clone(&connection_id),
            token: token.clone(),
            stateful,
            inbound: inbound_tx,
            outbound: Arc::new(tokio::sync::Mutex::new(outbound_rx)),
            control: control_tx.clone(),
            transport: Mutex::new(None),
            first_poll: AtomicBool::new(true),
            generations: std::sync::atomic::AtomicU64::new(0),
            poll: Mutex::new(PollState {
                active: false,
                last_change: crate::now(),
            }),
            user: user.clone(),
            resumes: Mutex::new((f64::from(self.config.resume_burst), crate::now())),
            expires: self.config.token_lifetime.map(|life| crate::now() + life),
            early: Mutex::new(Vec::new()),
        });
        if let Some(token) = token {
            lock(&self.by_token).insert(token, Arc::clone(&entry));
        }
        lock(&self.sessions).insert(
            Arc::clone(&connection_id),
            SessionHandle {
                commands: commands_tx.clone(),
                control: control_tx,
                user,
            },
        );
        let channels = session::Channels {
            shared: Arc::clone(self),
            entry: Arc::clone(&entry),
            inbound: inbound_rx,
            outbound: outbound_tx,
            control: control_rx,
            commands: commands_rx,
            commands_tx,
        };
        match &self.script {
            // Nobody accepting any more: the connection ends as it is dropped.
            Some(script) => drop(script.send(ScriptedConnection::new(channels))),
            None => session::spawn(channels),
        }
        tracing::debug!(connection_id = %connection_id, negotiated, stateful, "connection created");
        entry
    }

    pub(crate) fn entry(&self, token: &str) -> Option<Arc<ConnEntry>> {
        lock(&self.by_token).get(token).cloned()
    }

    /// Forgets a finished connection.
    pub(crate) fn remove(self: &Arc<Self>, entry: &ConnEntry) {
        if let Some(token) = &entry.token {
            // Checked and acted on under the lock `stop_timers` takes: a timer started after
            // the server stopped would outlive it by the disconnect timeout.
            let mut lingering = lock(&self.lingering);
            let stopping = self.stopping.load(std::sync::atomic::Ordering::Acquire);
            if entry.transport() == Some(TransportKind::LongPolling) && !stopping {
                // The next poll must read 204 (closed), not 404 (unknown), so the token stays
                // valid until a poll has read the end (`forget`) or the disconnect timeout.
                let shared = Arc::clone(self);
                let token = token.clone();
                let linger = self.config.disconnect_timeout;
                let task = tokio::spawn(async move {
                    tokio::time::sleep(linger).await;
                    lock(&shared.by_token).remove(&token);
                });
                lingering.retain(|t| !t.is_finished());
                lingering.push(task.abort_handle());
            } else {
                lock(&self.by_token).remove(token);
            }
        }
        lock(&self.sessions).remove(&entry.connection_id);
        let mut emptied = Vec::new();
        lock(&self.groups).retain(|group, members| {
            if members.remove(&entry.connection_id) && members.is_empty() {
                emptied.push(group.clone());
            }
            !members.is_empty()
        });
        if let Some(bp) = self.backplane.get() {
            let bp = Arc::clone(bp);
            let id = Arc::clone(&entry.connection_id);
            let user = entry.user.clone();
            tokio::spawn(async move {
                bp.unsubscribe(bp.channels.connection(&id)).await;
                if let Some(user) = user {
                    bp.unsubscribe(bp.channels.user(&user)).await;
                }
                for group in emptied {
                    bp.unsubscribe(bp.channels.group(&group)).await;
                }
            });
        }
    }

    /// A connection completed its handshake: with a backplane, its connection and user
    /// channels are subscribed before it can be reached (ASP.NET Core's `OnConnectedAsync`).
    pub(crate) async fn on_connected(&self, entry: &ConnEntry) {
        if let Some(bp) = self.backplane.get() {
            bp.subscribe(bp.channels.connection(&entry.connection_id))
                .await;
            if let Some(user) = &entry.user {
                bp.subscribe(bp.channels.user(user)).await;
            }
        }
    }

    /// Forgets an ended long-polling connection's token once a poll has read its end (204).
    pub(crate) fn forget(&self, entry: &ConnEntry) {
        if let Some(token) = &entry.token {
            let mut by_token = lock(&self.by_token);
            if by_token
                .get(token)
                .is_some_and(|known| std::ptr::eq(Arc::as_ptr(known), entry))
            {
                by_token.remove(token);
            }
        }
    }

    /// Records a replay buffer's size after a send.
    pub(crate) fn note_replay_bytes(&self, bytes: usize) {
        self.replay_high_water
            .fetch_max(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn replay_high_water(&self) -> usize {
        self.replay_high_water
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops the server's own timers (when the server stops).
    pub(crate) fn stop_timers(&self) {
        let mut lingering = lock(&self.lingering);
        self.stopping
            .store(true, std::sync::atomic::Ordering::Release);
        for task in lingering.drain(..) {
            task.abort();
        }
    }

    pub(crate) fn connection_count(&self) -> usize {
        lock(&self.sessions).len()
    }

    fn handles(&self, ids: Option<&HashSet<Arc<str>>>) -> Vec<SessionHandle> {
        let sessions = lock(&self.sessions);
        match ids {
            None => sessions.values().cloned().collect(),
            Some(ids) => ids
                .iter()
                .filter_map(|id| sessions.get(id).cloned())
                .collect(),
        }
    }

    fn call_all(handles: &[SessionHandle], method: &str, args: &[Payload]) -> usize {
        let mut reached = 0;
        for h in handles {
            // A session that is not draining its queue (blackholed, or far behind) misses the
            // message rather than stalling the sender; this is logged.
            match h.commands.try_send(Command::Call {
                target: method.into(),
                args: args.to_vec(),
            }) {
                Ok(()) => reached += 1,
                Err(e) => tracing::warn!(method, "message to a connection dropped: {e}"),
            }
        }
        reached
    }

    fn local_send_to_all(&self, method: &str, args: &[Payload]) -> usize {
        let handles = self.handles(None);
        Self::call_all(&handles, method, args);
        handles.len()
    }

    /// Calls `method(args…)` on every connection: the local ones (their count), or through
    /// the backplane (the number of instances reached).
    pub(crate) async fn send_to_all(
        &self,
        method: &str,
        args: &[Payload],
    ) -> Result<usize, HubError> {
        match self.backplane.get() {
            Some(bp) => reached(bp.send(&bp.channels.all(), method, args, Vec::new()).await),
            None => Ok(self.local_send_to_all(method, args)),
        }
    }

    pub(crate) async fn send_to_group(
        &self,
        group: &str,
        method: &str,
        args: &[Payload],
    ) -> Result<usize, HubError> {
        if let Some(bp) = self.backplane.get() {
            reached(
                bp.send(&bp.channels.group(group), method, args, Vec::new())
                    .await,
            )
        } else {
            let members = lock(&self.groups).get(group).cloned().unwrap_or_default();
            Ok(Self::call_all(&self.handles(Some(&members)), method, args))
        }
    }

    /// Calls `method(args…)` on one connection, on this instance or (backplane) another.
    pub(crate) async fn send_to_connection(
        &self,
        connection_id: &str,
        method: &str,
        args: &[Payload],
    ) -> Result<usize, HubError> {
        if let Some(bp) = self.backplane.get() {
            reached(
                bp.send(
                    &bp.channels.connection(connection_id),
                    method,
                    args,
                    Vec::new(),
                )
                .await,
            )
        } else {
            let ids = HashSet::from([Arc::<str>::from(connection_id)]);
            Ok(Self::call_all(&self.handles(Some(&ids)), method, args))
        }
    }

    /// Calls `method(args…)` on every connection of `user`.
    pub(crate) async fn send_to_user(
        &self,
        user: &str,
        method: &str,
        args: &[Payload],
    ) -> Result<usize, HubError> {
        if let Some(bp) = self.backplane.get() {
            reached(
                bp.send(&bp.channels.user(user), method, args, Vec::new())
                    .await,
            )
        } else {
            let handles: Vec<SessionHandle> = lock(&self.sessions)
                .values()
                .filter(|h| h.user.as_deref() == Some(user))
                .cloned()
                .collect();
            Ok(Self::call_all(&handles, method, args))
        }
    }

    /// Whether this instance holds `connection_id`.
    pub(crate) fn is_local(&self, connection_id: &str) -> bool {
        lock(&self.sessions).contains_key(connection_id)
    }

    /// Adds a local connection to `group` (with a backplane, subscribing to the group's
    /// channel when it is the first local member).
    pub(crate) async fn join_group(&self, group: &str, connection_id: &Arc<str>) {
        if !self.is_local(connection_id) {
            return;
        }
        let first = {
            let mut groups = lock(&self.groups);
            let members = groups.entry(group.to_owned()).or_default();
            members.insert(Arc::clone(connection_id)) && members.len() == 1
        };
        if first {
            if let Some(bp) = self.backplane.get() {
                bp.subscribe(bp.channels.group(group)).await;
            }
        }
    }

    pub(crate) async fn leave_group(&self, group: &str, connection_id: &str) {
        let emptied = {
            let mut groups = lock(&self.groups);
            let emptied = groups
                .get_mut(group)
                .is_some_and(|members| members.remove(connection_id) && members.is_empty());
            if emptied {
                groups.remove(group);
            }
            emptied
        };
        if emptied {
            if let Some(bp) = self.backplane.get() {
                bp.unsubscribe(bp.channels.group(group)).await;
            }
        }
    }

    /// Adds any connection to `group` or removes it: a local one here, one on another
    /// instance through the backplane's group command and its ack. Without a backplane, an
    /// unknown connection is ignored, as ASP.NET Core's default lifetime manager does.
    pub(crate) async fn change_group(
        &self,
        join: bool,
        group: &str,
        connection_id: &str,
    ) -> Result<(), HubError> {
        if self.is_local(connection_id) {
            let id: Arc<str> = connection_id.into();
            if join {
                self.join_group(group, &id).await;
            } else {
                self.leave_group(group, connection_id).await;
            }
            return Ok(());
        }
        match self.backplane.get() {
            Some(bp) => {
                let action = if join {
                    crate::backplane::wire::GroupAction::Add
                } else {
                    crate::backplane::wire::GroupAction::Remove
                };
                bp.group_command(action, group, connection_id).await
            }
            None => Ok(()),
        }
    }

    /// Asks any connection for a client result: a local one through its session, one on
    /// another instance through the backplane.
    pub(crate) async fn ask_connection(
        &self,
        connection_id: &str,
        method: &str,
        args: Vec<Payload>,
    ) -> Result<Payload, HubError> {
        let local = lock(&self.sessions).get(connection_id).cloned();
        if let Some(handle) = local {
            let (reply, answer) = tokio::sync::oneshot::channel();
            handle
                .commands
                .send(Command::InvokeClient {
                    target: method.into(),
                    args,
                    reply,
                })
                .await
                .map_err(|_| {
                    HubError::new(format!("Connection '{connection_id}' disconnected."))
                })?;
            return answer.await.map_err(|_| {
                HubError::new(format!("Connection '{connection_id}' disconnected."))
            })?;
        }
        match self.backplane.get() {
            Some(bp) => bp.ask(connection_id, method, &args).await,
            None => Err(HubError::new(format!(
                "Connection '{connection_id}' does not exist."
            ))),
        }
    }

    /// Hands an invocation that came through the backplane to the local connections it is for.
    pub(crate) fn deliver(
        &self,
        target: Target<'_>,
        excluded: &[String],
        messages: &[(String, Bytes)],
        ask: Option<&(String, String)>,
    ) {
        let handles: Vec<(Arc<str>, SessionHandle)> = {
            let sessions = lock(&self.sessions);
            match target {
                Target::All => sessions
                    .iter()
                    .map(|(id, h)| (Arc::clone(id), h.clone()))
                    .collect(),
                Target::Group(group) => lock(&self.groups)
                    .get(group)
                    .into_iter()
                    .flatten()
                    .filter_map(|id| sessions.get(id).map(|h| (Arc::clone(id), h.clone())))
                    .collect(),
                Target::Connection(id) => sessions
                    .get_key_value(id)
                    .map(|(id, h)| (Arc::clone(id), h.clone()))
                    .into_iter()
                    .collect(),
                Target::User(user) => sessions
                    .iter()
                    .filter(|(_, h)| h.user.as_deref() == Some(user))
                    .map(|(id, h)| (Arc::clone(id), h.clone()))
                    .collect(),
            }
        };
        let messages: Arc<[(String, Bytes)]> = messages.into();
        for (id, handle) in handles {
            if excluded.iter().any(|e| **e == *id) {
                continue;
            }
            let command = Command::Backplane {
                messages: Arc::clone(&messages),
                ask: ask.cloned(),
            };
            if let Err(e) = handle.commands.try_send(command) {
                tracing::warn!(connection_id = %id, "message from the backplane dropped: {e}");
            }
        }
    }

    fn control(&self, connection_id: Option<&str>, control: impl Fn() -> Control) -> usize {
        let sessions = lock(&self.sessions);
        let mut n = 0;
        for (id, h) in sessions.iter() {
            if connection_id.is_none_or(|c| c == &**id) && h.control.send(control()).is_ok() {
                n += 1;
            }
        }
        n
    }

    /// Drops one connection's transport (`AbortMe`).
    pub(crate) fn abort(&self, connection_id: &str) {
        self.control(Some(connection_id), || Control::Abort);
    }

    /// Blackholes one connection.
    pub(crate) fn blackhole(&self, connection_id: &str, duration: Duration) {
        self.control(Some(connection_id), || Control::Blackhole(duration));
    }

    /// Drops every connection's transport; returns how many.
    pub(crate) fn abort_all(&self) -> usize {
        self.control(None, || Control::Abort)
    }

    /// Ends every connection at once, stateful ones too (the server stops).
    pub(crate) fn shutdown_all(&self) -> usize {
        self.stop_timers();
        if let Some(bp) = self.backplane.get() {
            bp.stop();
        }
        self.control(None, || Control::Shutdown)
    }

    /// Blackholes every connection; returns how many.
    pub(crate) fn blackhole_all(&self, duration: Duration) -> usize {
        self.control(None, || Control::Blackhole(duration))
    }

    /// Refuses negotiate and transport requests (503) for `duration`.
    pub(crate) fn refuse_for(&self, duration: Duration) {
        *lock(&self.refuse_until) = Some(crate::now() + duration);
    }

    pub(crate) fn refusing(&self) -> bool {
        lock(&self.refuse_until).is_some_and(|until| crate::now() < until)
    }
}

/// A backplane send's outcome as a count of instances reached.
fn reached(published: Result<i64, HubError>) -> Result<usize, HubError> {
    published.map(|n| usize::try_from(n).unwrap_or(0))
}
