//! The server as every request and session sees it: its settings, this instance's
//! [`Registry`], the backplane to the others, what starts a new connection's server side, and
//! the fault switches. Where a call is for a connection on any instance, this decides whether
//! the registry or the backplane takes it.

use std::{
    fmt,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use signalr_protocol::Payload;
use tokio::time::Instant;

use crate::{
    backplane::{Backplane, wire::GroupAction},
    config::ServerConfig,
    error::{HubError, HubResult},
    lock, random_id,
    registry::{Registry, SessionHandle, Target},
    wire::{ConnEntry, Control, SessionEnds},
};

/// A new connection, for whatever serves it.
#[derive(Debug)]
pub(crate) struct Channels {
    pub(crate) app: Arc<App>,
    pub(crate) entry: Arc<ConnEntry>,
    pub(crate) ends: SessionEnds,
}

/// What starts a new connection's server side: a hub session, or a test's script.
pub(crate) trait Accept: Send + Sync + fmt::Debug {
    fn accept(&self, connection: Channels);
}

/// Server-wide state.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) config: ServerConfig,
    pub(crate) registry: Arc<Registry>,
    /// The Redis backplane, with `ServerConfig::redis`.
    pub(crate) backplane: OnceLock<Arc<Backplane>>,
    accept: Box<dyn Accept>,
    refuse_until: Mutex<Option<Instant>>,
    /// The most bytes any connection's replay buffer has held unacknowledged.
    replay_high_water: AtomicUsize,
}

/// A backplane send's outcome as a count of instances reached.
fn reached(published: HubResult<i64>) -> HubResult<usize> {
    published.map(|n| usize::try_from(n).unwrap_or(0))
}

impl App {
    pub(crate) fn new(config: ServerConfig, accept: Box<dyn Accept>) -> Self {
        Self {
            config,
            registry: Arc::default(),
            backplane: OnceLock::new(),
            accept,
            refuse_until: Mutex::default(),
            replay_high_water: AtomicUsize::new(0),
        }
    }

    /// Creates a connection and starts its server side. `negotiated` connections get a token
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
        let expires = self.config.token_lifetime.map(|life| crate::now() + life);
        let (entry, ends) = ConnEntry::new(
            Arc::clone(&connection_id),
            token,
            stateful,
            user.clone(),
            self.config.resume_burst,
            expires,
        );
        let session = SessionHandle {
            commands: ends.commands_tx.clone(),
            control: entry.control.clone(),
            user,
        };
        self.registry.insert(&entry, session);
        self.accept.accept(Channels {
            app: Arc::clone(self),
            entry: Arc::clone(&entry),
            ends,
        });
        tracing::debug!(connection_id = %connection_id, negotiated, stateful, "connection created");
        entry
    }

    pub(crate) fn entry(&self, token: &str) -> Option<Arc<ConnEntry>> {
        self.registry.entry(token)
    }

    /// Forgets a finished connection, and what the backplane was subscribed to for it.
    pub(crate) fn remove(&self, entry: &ConnEntry) {
        let emptied = self.registry.remove(entry, self.config.disconnect_timeout);
        if let Some(bp) = self.backplane.get() {
            bp.forget_connection(&entry.connection_id, entry.user.as_deref(), emptied);
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

    /// Records a replay buffer's size after a send.
    pub(crate) fn note_replay_bytes(&self, bytes: usize) {
        self.replay_high_water.fetch_max(bytes, Ordering::Relaxed);
    }

    pub(crate) fn replay_high_water(&self) -> usize {
        self.replay_high_water.load(Ordering::Relaxed)
    }

    /// Calls `method(args…)` on `target`: the local connections (how many were reached), or
    /// through the backplane (how many instances were).
    async fn call(&self, target: Target<'_>, method: &str, args: &[Payload]) -> HubResult<usize> {
        let Some(bp) = self.backplane.get() else {
            return Ok(self.registry.call(target, method, args));
        };
        let channel = match target {
            Target::All => bp.channels.all(),
            Target::Group(group) => bp.channels.group(group),
            Target::Connection(id) => bp.channels.connection(id),
            Target::User(user) => bp.channels.user(user),
        };
        reached(bp.send(&channel, method, args, Vec::new()).await)
    }

    /// Calls `method(args…)` on every connection: the local ones (their count), or through
    /// the backplane (the number of instances reached).
    pub(crate) async fn send_to_all(&self, method: &str, args: &[Payload]) -> HubResult<usize> {
        self.call(Target::All, method, args).await
    }

    pub(crate) async fn send_to_group(
        &self,
        group: &str,
        method: &str,
        args: &[Payload],
    ) -> HubResult<usize> {
        self.call(Target::Group(group), method, args).await
    }

    /// Calls `method(args…)` on one connection, on this instance or (backplane) another.
    pub(crate) async fn send_to_connection(
        &self,
        connection_id: &str,
        method: &str,
        args: &[Payload],
    ) -> HubResult<usize> {
        self.call(Target::Connection(connection_id), method, args)
            .await
    }

    /// Calls `method(args…)` on every connection of `user`.
    pub(crate) async fn send_to_user(
        &self,
        user: &str,
        method: &str,
        args: &[Payload],
    ) -> HubResult<usize> {
        self.call(Target::User(user), method, args).await
    }

    /// Adds a local connection to `group` (with a backplane, subscribing to the group's
    /// channel when it is the first local member).
    pub(crate) async fn join_group(&self, group: &str, connection_id: &Arc<str>) {
        match self.backplane.get() {
            Some(bp) => bp.join_group(&self.registry, group, connection_id).await,
            None => {
                self.registry.join_group(group, connection_id);
            }
        }
    }

    pub(crate) async fn leave_group(&self, group: &str, connection_id: &str) {
        match self.backplane.get() {
            Some(bp) => bp.leave_group(&self.registry, group, connection_id).await,
            None => {
                self.registry.leave_group(group, connection_id);
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
    ) -> HubResult<()> {
        if self.registry.is_local(connection_id) {
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
                    GroupAction::Add
                } else {
                    GroupAction::Remove
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
    ) -> HubResult<Payload> {
        if let Some(session) = self.registry.session(connection_id) {
            return session.ask(connection_id, method, args).await;
        }
        match self.backplane.get() {
            Some(bp) => bp.ask(connection_id, method, &args).await,
            None => Err(HubError::new(format!(
                "Connection '{connection_id}' does not exist."
            ))),
        }
    }

    /// Drops one connection's transport (`AbortMe`).
    pub(crate) fn abort(&self, connection_id: &str) {
        self.registry
            .control(Some(connection_id), || Control::Abort);
    }

    /// Blackholes one connection.
    pub(crate) fn blackhole(&self, connection_id: &str, duration: Duration) {
        self.registry
            .control(Some(connection_id), || Control::Blackhole(duration));
    }

    /// Drops every connection's transport; returns how many.
    pub(crate) fn abort_all(&self) -> usize {
        self.registry.control(None, || Control::Abort)
    }

    /// Ends every connection at once, stateful ones too (the server stops).
    pub(crate) fn shutdown_all(&self) -> usize {
        self.registry.stop_timers();
        if let Some(bp) = self.backplane.get() {
            bp.stop();
        }
        self.registry.control(None, || Control::Shutdown)
    }

    /// Blackholes every connection; returns how many.
    pub(crate) fn blackhole_all(&self, duration: Duration) -> usize {
        self.registry.control(None, || Control::Blackhole(duration))
    }

    /// Refuses negotiate and transport requests (503) for `duration`.
    pub(crate) fn refuse_for(&self, duration: Duration) {
        *lock(&self.refuse_until) = Some(crate::now() + duration);
    }

    pub(crate) fn refusing(&self) -> bool {
        lock(&self.refuse_until).is_some_and(|until| crate::now() < until)
    }
}
