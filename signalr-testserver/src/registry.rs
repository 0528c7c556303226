//! This instance's connections: by token and by id, their sessions' handles, and groups. What
//! crosses instances (the backplane) and what starts a session are the [`app`](crate::app)'s.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use signalr_protocol::{Payload, TransportKind};
use tokio::sync::{mpsc, oneshot};

use crate::{
    error::{HubError, HubResult},
    lock,
    wire::{Command, ConnEntry, Control},
};

/// What the rest of the server keeps of a running session.
#[derive(Clone, Debug)]
pub(crate) struct SessionHandle {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) control: mpsc::UnboundedSender<Control>,
    pub(crate) user: Option<Arc<str>>,
}

impl SessionHandle {
    /// Asks this session's client for a client result (`connection_id` names it in errors).
    pub(crate) async fn ask(
        &self,
        connection_id: &str,
        method: &str,
        args: Vec<Payload>,
    ) -> HubResult<Payload> {
        let disconnected = || HubError::new(format!("Connection '{connection_id}' disconnected."));
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::InvokeClient {
                target: method.into(),
                args,
                reply,
            })
            .await
            .map_err(|_| disconnected())?;
        answer.await.map_err(|_| disconnected())?
    }
}

/// Who an invocation is for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Target<'a> {
    All,
    Group(&'a str),
    Connection(&'a str),
    User(&'a str),
}

/// This instance's connections and groups.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    by_token: Mutex<HashMap<String, Arc<ConnEntry>>>,
    sessions: Mutex<HashMap<Arc<str>, SessionHandle>>,
    groups: Mutex<HashMap<String, HashSet<Arc<str>>>>,
    /// Timers that forget ended long-polling tokens; stopped with the server.
    lingering: Mutex<Vec<tokio::task::AbortHandle>>,
    /// Set when the server stops: nothing lingers after that.
    stopping: AtomicBool,
}

impl Registry {
    /// Registers a new connection and its session.
    pub(crate) fn insert(&self, entry: &Arc<ConnEntry>, session: SessionHandle) {
        if let Some(token) = &entry.token {
            lock(&self.by_token).insert(token.clone(), Arc::clone(entry));
        }
        lock(&self.sessions).insert(Arc::clone(&entry.connection_id), session);
    }

    pub(crate) fn entry(&self, token: &str) -> Option<Arc<ConnEntry>> {
        lock(&self.by_token).get(token).cloned()
    }

    /// Forgets a finished connection; its token lingers for `linger` on long polling. Returns
    /// the groups it leaves empty.
    pub(crate) fn remove(self: &Arc<Self>, entry: &ConnEntry, linger: Duration) -> Vec<String> {
        if let Some(token) = &entry.token {
            // Checked and acted on under the lock `stop_timers` takes: a timer started after
            // the server stopped would outlive it by the disconnect timeout.
            let mut lingering = lock(&self.lingering);
            let stopping = self.stopping.load(Ordering::Acquire);
            if entry.transport() == Some(TransportKind::LongPolling) && !stopping {
                // The next poll must read 204 (closed), not 404 (unknown), so the token stays
                // valid until a poll has read the end (`forget`) or the disconnect timeout.
                let registry = Arc::clone(self);
                let token = token.clone();
                let task = tokio::spawn(async move {
                    tokio::time::sleep(linger).await;
                    lock(&registry.by_token).remove(&token);
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
        emptied
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

    /// Stops the registry's own timers (when the server stops).
    pub(crate) fn stop_timers(&self) {
        let mut lingering = lock(&self.lingering);
        self.stopping.store(true, Ordering::Release);
        for task in lingering.drain(..) {
            task.abort();
        }
    }

    pub(crate) fn connection_count(&self) -> usize {
        lock(&self.sessions).len()
    }

    /// Whether this instance holds `connection_id`.
    pub(crate) fn is_local(&self, connection_id: &str) -> bool {
        lock(&self.sessions).contains_key(connection_id)
    }

    /// The sessions `target` names, with their ids.
    fn sessions_for(&self, target: Target<'_>) -> Vec<(Arc<str>, SessionHandle)> {
        let sessions = lock(&self.sessions);
        let pair = |(id, h): (&Arc<str>, &SessionHandle)| (Arc::clone(id), h.clone());
        match target {
            Target::All => sessions.iter().map(pair).collect(),
            Target::Group(group) => lock(&self.groups)
                .get(group)
                .into_iter()
                .flatten()
                .filter_map(|id| sessions.get_key_value(id).map(pair))
                .collect(),
            Target::Connection(id) => sessions.get_key_value(id).map(pair).into_iter().collect(),
            Target::User(user) => sessions
                .iter()
                .filter(|(_, h)| h.user.as_deref() == Some(user))
                .map(pair)
                .collect(),
        }
    }

    /// Calls `method(args…)` on the local connections `target` names; returns how many were
    /// reached (every connection, for [`Target::All`]).
    pub(crate) fn call(&self, target: Target<'_>, method: &str, args: &[Payload]) -> usize {
        let sessions = self.sessions_for(target);
        let mut reached = 0;
        for (_, h) in &sessions {
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
        match target {
            Target::All => sessions.len(),
            _ => reached,
        }
    }

    /// Adds a local connection to `group`; `true` when it is the group's first local member.
    pub(crate) fn join_group(&self, group: &str, connection_id: &Arc<str>) -> bool {
        if !self.is_local(connection_id) {
            return false;
        }
        let mut groups = lock(&self.groups);
        let members = groups.entry(group.to_owned()).or_default();
        members.insert(Arc::clone(connection_id)) && members.len() == 1
    }

    /// Removes a connection from `group`; `true` when that leaves the group without a local
    /// member.
    pub(crate) fn leave_group(&self, group: &str, connection_id: &str) -> bool {
        let mut groups = lock(&self.groups);
        let emptied = groups
            .get_mut(group)
            .is_some_and(|members| members.remove(connection_id) && members.is_empty());
        if emptied {
            groups.remove(group);
        }
        emptied
    }

    /// The session of a local connection.
    pub(crate) fn session(&self, connection_id: &str) -> Option<SessionHandle> {
        lock(&self.sessions).get(connection_id).cloned()
    }

    /// Hands an invocation that came through the backplane to the local connections it is for.
    pub(crate) fn deliver(
        &self,
        target: Target<'_>,
        excluded: &[String],
        messages: &[(String, Bytes)],
        ask: Option<&(String, String)>,
    ) {
        let messages: Arc<[(String, Bytes)]> = messages.into();
        for (id, handle) in self.sessions_for(target) {
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

    /// Sends `control()` to one connection's session, or to every one; returns how many.
    pub(crate) fn control(
        &self,
        connection_id: Option<&str>,
        control: impl Fn() -> Control,
    ) -> usize {
        let sessions = lock(&self.sessions);
        let mut n = 0;
        for (id, h) in sessions.iter() {
            if connection_id.is_none_or(|c| c == &**id) && h.control.send(control()).is_ok() {
                n += 1;
            }
        }
        n
    }
}
