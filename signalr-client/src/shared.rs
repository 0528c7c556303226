//! [`Shared`]: the state the handles and the driver both see (the state, where to connect,
//! the handlers and event callbacks, the replay buffer's room for sends done once queued).

use std::sync::{
    Arc, Mutex, PoisonError,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use tokio::sync::watch;

use crate::{
    error::HubError,
    handlers::{Callbacks, Handlers},
    state::HubConnectionState,
    target::ConnectTarget,
};

pub(crate) type ErrorCallback = dyn Fn(Option<&HubError>) + Send + Sync;
pub(crate) type IdCallback = dyn Fn(Option<&str>) + Send + Sync;

/// State shared by the handles and the driver.
pub(crate) struct Shared {
    pub(crate) state: watch::Sender<HubConnectionState>,
    /// Where the next connection attempt goes.
    pub(crate) target: Mutex<ConnectTarget>,
    pub(crate) connection_id: Mutex<Option<String>>,
    pub(crate) handlers: Arc<Handlers>,
    pub(crate) on_reconnecting: Callbacks<ErrorCallback>,
    pub(crate) on_reconnected: Callbacks<IdCallback>,
    pub(crate) on_close: Callbacks<ErrorCallback>,
    /// Why the connection last closed for good (what `on_close` was given), set before the
    /// state turns `Disconnected`, for [`HubConnection::closed`].
    pub(crate) closed: watch::Sender<Option<Arc<HubError>>>,
    /// The tasks running handlers, one per session; cancelled when the connection closes.
    handler_tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    /// The most bytes the replay buffer has held unacknowledged.
    pub(crate) replay_high_water: AtomicUsize,
    /// `stop()` was called: read past calls held back by a full replay buffer to find it.
    pub(crate) stop_requested: tokio::sync::Notify,
    /// The state is `Connected`: a send is done once queued (see [`HubConnection::send`]).
    connected: AtomicBool,
    /// Room in the replay buffer, as the driver last saw it (`usize::MAX` without stateful
    /// reconnect): sends done once queued may take that much.
    send_room: AtomicUsize,
    /// Bytes of the sends done once queued that the driver has not written yet.
    send_reserved: AtomicUsize,
}

/// How a send goes: done once queued, or waiting for its outcome.
pub(crate) enum Admission {
    /// Done once queued, with its share of the replay buffer's room when there is one.
    Queue(Option<Reservation>),
    /// Not connected, or no room in the replay buffer: wait until it is written.
    Wait,
}

/// Bytes a send done once queued took from the replay buffer's room, given back when dropped
/// (once the driver has written the send, or refused it).
pub(crate) struct Reservation {
    shared: Arc<Shared>,
    bytes: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.shared
            .send_reserved
            .fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Disconnected, to connect to `target` first.
    pub(crate) fn new(target: ConnectTarget) -> Self {
        Self {
            state: watch::channel(HubConnectionState::Disconnected).0,
            target: Mutex::new(target),
            connection_id: Mutex::new(None),
            handlers: Arc::new(Handlers::default()),
            on_reconnecting: Callbacks::default(),
            on_reconnected: Callbacks::default(),
            on_close: Callbacks::default(),
            closed: watch::channel(None).0,
            handler_tasks: Mutex::default(),
            replay_high_water: AtomicUsize::new(0),
            stop_requested: tokio::sync::Notify::new(),
            connected: AtomicBool::new(false),
            send_room: AtomicUsize::new(usize::MAX),
            send_reserved: AtomicUsize::new(0),
        }
    }

    /// Where the next connection attempt goes.
    pub(crate) fn target(&self) -> ConnectTarget {
        lock(&self.target).clone()
    }

    /// Lets `hook` change where the next attempt goes.
    pub(crate) fn update_target(&self, hook: impl FnOnce(&mut ConnectTarget)) {
        let mut target = self.target();
        hook(&mut target);
        *lock(&self.target) = target;
    }

    pub(crate) fn set_state(&self, state: HubConnectionState) {
        self.connected
            .store(state == HubConnectionState::Connected, Ordering::Release);
        self.state.send_replace(state);
    }

    /// Publishes the replay buffer's room (`usize::MAX` without one) for sends done once queued.
    pub(crate) fn set_send_room(&self, room: usize) {
        self.send_room.store(room, Ordering::Release);
    }

    /// Whether a send of about `bytes` may be done once queued: connected, and (with stateful
    /// reconnect) the replay buffer has room for it beside the sends queued before it.
    pub(crate) fn admit(self: &Arc<Self>, bytes: usize) -> Admission {
        if !self.connected.load(Ordering::Acquire) {
            return Admission::Wait;
        }
        let room = self.send_room.load(Ordering::Acquire);
        if room == usize::MAX {
            return Admission::Queue(None);
        }
        let before = self.send_reserved.fetch_add(bytes, Ordering::AcqRel);
        let reservation = Reservation {
            shared: Arc::clone(self),
            bytes,
        };
        if before.saturating_add(bytes) <= room {
            Admission::Queue(Some(reservation))
        } else {
            Admission::Wait
        }
    }

    /// Keeps a session's handler task, to cancel it when the connection closes. A session
    /// replaced by a reconnect keeps its task until its handlers return.
    pub(crate) fn track_handlers(&self, task: tokio::task::AbortHandle) {
        let mut tasks = lock(&self.handler_tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// Cancels handlers still running: the connection is closed for good.
    pub(crate) fn cancel_handlers(&self) {
        for task in lock(&self.handler_tasks).drain(..) {
            task.abort();
        }
    }

    /// Records the replay buffer's size after a send.
    pub(crate) fn note_replay_bytes(&self, bytes: usize) {
        self.replay_high_water.fetch_max(bytes, Ordering::Relaxed);
    }

    pub(crate) fn set_connection_id(&self, id: Option<String>) {
        *lock(&self.connection_id) = id;
    }

    pub(crate) fn emit_reconnecting(&self, error: &HubError) {
        for f in self.on_reconnecting.snapshot() {
            f(Some(error));
        }
    }

    pub(crate) fn emit_reconnected(&self, id: Option<&str>) {
        for f in self.on_reconnected.snapshot() {
            f(id);
        }
    }

    /// The connection closed for good: records why, publishes `Disconnected`, then calls the
    /// `on_close` callbacks.
    pub(crate) fn closed(&self, error: Option<Arc<HubError>>) {
        self.closed.send_replace(error);
        self.set_state(HubConnectionState::Disconnected);
        let error = self.closed.borrow().clone();
        for f in self.on_close.snapshot() {
            f(error.as_deref());
        }
    }
}
