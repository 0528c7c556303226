//! [`HubConnection`]: the handle users hold.

use std::{
    future::Future,
    marker::PhantomData,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
};

use futures_util::FutureExt as _;
use serde::{Serialize, de::DeserializeOwned};
use signalr_protocol::{Arguments, HubProtocol, Payload, PayloadFormat};
use signalr_reconnect::{KeepAliveConfig, RetryPolicy};
use signalr_transport::{HttpOptions, header::HeaderMap};
use tokio::sync::{mpsc, oneshot, watch};

use crate::{
    driver::{self, Command, Driver},
    error::{HubError, Result},
    handlers::{HandlerFn, Handlers, Outcome, Subscription},
    stream::HubStream,
    target::{BeforeReconnect, ConnectTarget},
    upload::Upload,
};

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HubConnectionState {
    /// Not connected; `start` may be called.
    Disconnected,
    /// `start` is negotiating, connecting or shaking hands.
    Connecting,
    /// Connected: calls go out.
    Connected,
    /// `stop` is closing the connection.
    Disconnecting,
    /// The connection was lost and the retry policy is trying again.
    Reconnecting,
}

/// What a connection was built with.
pub(crate) struct Config {
    pub(crate) url: String,
    pub(crate) protocol: Arc<dyn HubProtocol>,
    pub(crate) http: HttpOptions,
    pub(crate) retry: Option<Arc<dyn RetryPolicy>>,
    pub(crate) start_policy: Option<Arc<dyn RetryPolicy>>,
    pub(crate) outbox_capacity: usize,
    /// Stateful reconnect's replay-buffer limit in bytes, when enabled.
    pub(crate) stateful_buffer: Option<usize>,
    /// How connections are opened.
    pub(crate) opener: Opener,
    pub(crate) keep_alive: KeepAliveConfig,
    pub(crate) stream_buffer: usize,
    /// How long a full stream buffer may hold reading back before the stream fails.
    pub(crate) stream_consumer_timeout: std::time::Duration,
    /// Called before each reconnect attempt, to change where it goes.
    pub(crate) before_reconnect: Option<BeforeReconnect>,
}

/// How a connection's attempts open their transport.
pub(crate) enum Opener {
    /// Negotiate and a transport over HTTP, every attempt sharing this client (its connection
    /// pool, TLS configuration and cookie jar).
    Http(signalr_transport::HttpClient),
    /// The user's connector (the URL is only a label then).
    Connector(Arc<dyn signalr_transport::Connector>),
}

type ErrorCallback = Arc<dyn Fn(Option<&HubError>) + Send + Sync>;
type IdCallback = Arc<dyn Fn(Option<&str>) + Send + Sync>;

/// State shared by the handles and the driver.
pub(crate) struct Shared {
    state: watch::Sender<HubConnectionState>,
    /// Where the next connection attempt goes.
    target: Mutex<ConnectTarget>,
    connection_id: Mutex<Option<String>>,
    pub(crate) handlers: Arc<Handlers>,
    on_reconnecting: Mutex<Vec<ErrorCallback>>,
    on_reconnected: Mutex<Vec<IdCallback>>,
    on_close: Mutex<Vec<ErrorCallback>>,
    /// The tasks running handlers, one per session; cancelled when the connection closes.
    handler_tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    /// The most bytes the replay buffer has held unacknowledged.
    replay_high_water: AtomicUsize,
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
enum Admission {
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
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
    fn admit(self: &Arc<Self>, bytes: usize) -> Admission {
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
        let callbacks = lock(&self.on_reconnecting).clone();
        for f in &callbacks {
            f(Some(error));
        }
    }

    pub(crate) fn emit_reconnected(&self, id: Option<&str>) {
        let callbacks = lock(&self.on_reconnected).clone();
        for f in &callbacks {
            f(id);
        }
    }

    pub(crate) fn emit_closed(&self, error: Option<&HubError>) {
        let callbacks = lock(&self.on_close).clone();
        for f in &callbacks {
            f(error);
        }
    }
}

/// Queues `command` for the driver: at once when there is room, so that calls made in one burst
/// (futures polled together, as by `join_all`) keep the order they were first polled in, which
/// an await (and tokio's task budget) could change; otherwise it waits for room. `Err` when the
/// driver is gone.
async fn queue(
    commands: &mpsc::Sender<Box<Command>>,
    command: Command,
) -> std::result::Result<(), ()> {
    queue_boxed(commands, Box::new(command)).await
}

async fn queue_boxed(
    commands: &mpsc::Sender<Box<Command>>,
    command: Box<Command>,
) -> std::result::Result<(), ()> {
    match commands.try_send(command) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Full(command)) => {
            commands.send(command).await.map_err(|_| ())
        }
        Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
    }
}

/// How many calls the driver's command queue holds.
const COMMAND_QUEUE: usize = 8192;

struct Inner {
    config: Arc<Config>,
    shared: Arc<Shared>,
    commands: Mutex<Option<mpsc::Sender<Box<Command>>>>,
    next_id: AtomicU64,
}

/// A connection to a SignalR hub. Cheap to clone; every clone drives the same connection, and
/// dropping the last one stops it.
#[derive(Clone)]
pub struct HubConnection {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HubConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubConnection")
            .field("url", &signalr_transport::Redacted(&self.url()))
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl HubConnection {
    pub(crate) fn new(config: Config) -> Self {
        let (state, _) = watch::channel(HubConnectionState::Disconnected);
        let target = ConnectTarget {
            url: config.url.clone(),
            headers: config.http.headers.clone(),
        };
        let shared = Arc::new(Shared {
            state,
            target: Mutex::new(target),
            connection_id: Mutex::new(None),
            handlers: Arc::new(Handlers::default()),
            on_reconnecting: Mutex::default(),
            on_reconnected: Mutex::default(),
            on_close: Mutex::default(),
            handler_tasks: Mutex::default(),
            replay_high_water: AtomicUsize::new(0),
            stop_requested: tokio::sync::Notify::new(),
            connected: AtomicBool::new(false),
            send_room: AtomicUsize::new(usize::MAX),
            send_reserved: AtomicUsize::new(0),
        });
        Self {
            inner: Arc::new(Inner {
                config: Arc::new(config),
                shared,
                commands: Mutex::new(None),
                next_id: AtomicU64::new(0),
            }),
        }
    }

    /// Connects: negotiate, transport, handshake. Fails if the connection is not
    /// `Disconnected`, or with the reason the connection could not be made; a `stop` meanwhile
    /// makes it fail with [`HubError::Stopped`].
    pub async fn start(&self) -> Result<()> {
        let started = {
            let mut commands = lock(&self.inner.commands);
            let state = self.state();
            if state != HubConnectionState::Disconnected {
                return Err(HubError::InvalidState {
                    operation: "start",
                    state,
                });
            }
            self.inner.shared.set_state(HubConnectionState::Connecting);
            // Big enough that a burst of sends seldom waits for room (each wait costs a wake-up); a
            // queued command holds only a pointer until it is used.
            let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
            let (started_tx, started_rx) = oneshot::channel();
            let driver = Driver::new(
                Arc::clone(&self.inner.config),
                Arc::clone(&self.inner.shared),
                rx,
            );
            tokio::spawn(driver.run(started_tx));
            *commands = Some(tx);
            started_rx
        };
        match started.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(HubError::Stopped),
        }
    }

    /// Closes the connection (a Close message, then the transport), cancelling a `start` or a
    /// reconnect in progress. Calls in flight fail with [`HubError::Stopped`].
    pub async fn stop(&self) -> Result<()> {
        let Some(commands) = lock(&self.inner.commands).take() else {
            return Ok(());
        };
        let (reply, stopped) = oneshot::channel();
        // A full replay buffer holds calls back, the stop among them: the driver is told to look
        // for it (before, so that a full queue makes room for it, and after it is queued).
        let stop_requested = &self.inner.shared.stop_requested;
        stop_requested.notify_one();
        let queued = commands
            .send(Box::new(Command::Stop { reply }))
            .await
            .is_ok();
        stop_requested.notify_one();
        if queued {
            let _ = stopped.await;
        }
        Ok(())
    }

    /// The most bytes the stateful-reconnect replay buffer has held unacknowledged since this
    /// connection was built (0 without stateful reconnect). It stays within the limit given to
    /// [`HubConnectionBuilder::with_stateful_reconnect`](crate::HubConnectionBuilder::with_stateful_reconnect)
    /// plus one message: past the limit, calls wait for the server's Ack.
    pub fn replay_buffer_high_water(&self) -> usize {
        self.inner.shared.replay_high_water.load(Ordering::Relaxed)
    }

    /// The current state.
    pub fn state(&self) -> HubConnectionState {
        *self.inner.shared.state.borrow()
    }

    /// Every state change, as a `watch` receiver (`changed().await`, then `borrow()`).
    pub fn state_changes(&self) -> watch::Receiver<HubConnectionState> {
        self.inner.shared.state.subscribe()
    }

    /// The hub URL the next connection attempt goes to.
    pub fn url(&self) -> String {
        lock(&self.inner.shared.target).url.clone()
    }

    /// Changes the hub URL, for the next connection attempt: the next `start`, or the next
    /// reconnect attempt. Only while `Disconnected` or `Reconnecting`, as in the JavaScript
    /// client (whose `baseUrl` setter throws otherwise); else [`HubError::InvalidState`]. A URL
    /// that cannot be used is refused with [`HubError::Transport`]. A stateful resume keeps
    /// the URL it negotiated: it continues the same connection.
    pub fn set_url(&self, url: impl Into<String>) -> Result<()> {
        let url = url.into();
        self.changeable("change the URL of")?;
        if let Opener::Http(_) = self.inner.config.opener {
            signalr_transport::hub_url(&url).map_err(HubError::Transport)?;
        }
        lock(&self.inner.shared.target).url = url;
        Ok(())
    }

    /// The headers every request of the next connection attempt carries.
    pub fn headers(&self) -> HeaderMap {
        lock(&self.inner.shared.target).headers.clone()
    }

    /// Replaces the headers of every request, from the next connection attempt on; only while
    /// `Disconnected` or `Reconnecting` (see [`set_url`](Self::set_url)).
    pub fn set_headers(&self, headers: HeaderMap) -> Result<()> {
        self.changeable("change the headers of")?;
        lock(&self.inner.shared.target).headers = headers;
        Ok(())
    }

    fn changeable(&self, operation: &'static str) -> Result<()> {
        match self.state() {
            HubConnectionState::Disconnected | HubConnectionState::Reconnecting => Ok(()),
            state => Err(HubError::InvalidState { operation, state }),
        }
    }

    /// The connection id the server gave in negotiate; `None` when not connected or when
    /// negotiation was skipped.
    pub fn connection_id(&self) -> Option<String> {
        lock(&self.inner.shared.connection_id).clone()
    }

    fn format(&self) -> PayloadFormat {
        self.inner.config.protocol.payload_format()
    }

    fn sender(&self) -> Result<mpsc::Sender<Box<Command>>> {
        lock(&self.inner.commands)
            .clone()
            .ok_or(HubError::NotConnected {
                state: self.state(),
            })
    }

    /// The error for a call whose queue is closed: the driver has ended, so the connection is
    /// over, even if the state it publishes last has not changed yet.
    fn ended() -> HubError {
        HubError::NotConnected {
            state: HubConnectionState::Disconnected,
        }
    }

    fn next_id(&self) -> String {
        self.inner
            .next_id
            .fetch_add(1, Ordering::Relaxed)
            .to_string()
    }

    fn arguments<A: Serialize + ?Sized>(&self, args: &A) -> Result<Arguments> {
        Arguments::from_values(self.format(), args).map_err(HubError::Payload)
    }

    /// Calls `method` with `args` (a tuple such as `(40, 2)`, or `()` for none) and waits for
    /// its result, bound to `T` (`()` for a void method).
    ///
    /// Cancel safety: dropping the future abandons the result; the call itself may still run.
    pub async fn invoke<T: DeserializeOwned>(
        &self,
        method: &str,
        args: impl Serialize,
    ) -> Result<T> {
        self.invoke_with_uploads(method, args, Vec::new()).await
    }

    /// Calls `method` with `args` followed by client-to-server streams (the .NET server binds
    /// them to `ChannelReader<T>` or `IAsyncEnumerable<T>` parameters after the others), and
    /// waits for its result. Each upload's items are sent as the call runs, then its end; once
    /// the server has completed the call, uploads still running are stopped.
    pub async fn invoke_with_uploads<T: DeserializeOwned>(
        &self,
        method: &str,
        args: impl Serialize,
        uploads: Vec<Upload>,
    ) -> Result<T> {
        let (reply, result) = oneshot::channel();
        let stream_ids: Vec<String> = uploads.iter().map(|_| self.next_id()).collect();
        let command = Command::Invoke {
            id: self.next_id(),
            target: method.to_owned(),
            arguments: self.arguments(&args)?,
            stream_ids: stream_ids.clone(),
            reply,
        };
        let commands = self.sender()?;
        queue(&commands, command)
            .await
            .map_err(|()| Self::ended())?;
        // Started after the Invocation is queued, so that their items follow it.
        let pumps: Vec<_> = uploads
            .into_iter()
            .zip(stream_ids)
            .map(|(upload, id)| {
                tokio::spawn(upload.pump(id, self.format(), commands.clone(), self.state_changes()))
            })
            .collect();
        let result = result.await.map_err(|_| HubError::Stopped);
        for pump in pumps {
            pump.abort();
        }
        driver::bind(result??, self.format())
    }

    /// Calls `method` without waiting for (or getting) a result: fire and forget.
    ///
    /// When it returns: while connected, once the message is queued for the transport, as the
    /// official .NET client's `SendAsync` returns once the message is in the transport's pipe.
    /// The queue holds 8,192 calls: when it is full, `send` waits for room. With stateful
    /// reconnect, queued sends may take no more than the replay buffer's room: past it, `send`
    /// waits until the message is written. While reconnecting, the message waits in the
    /// outbox and `send` returns once it is written, or fails if it cannot be.
    ///
    /// What it promises: a message still queued when the connection is lost goes out once it is
    /// back, like one sent while reconnecting (but when a stateful resume fails: then, like the
    /// calls in flight, it is dropped). One that was being written when the link broke is, as in
    /// the official clients, lost without stateful reconnect and replayed with it. If the
    /// connection closes for good (the retry policy gives up, or `stop()` with the replay buffer
    /// full), queued messages are not sent: the closed event says why, and the driver logs how
    /// many (a `warn` event).
    ///
    /// Order: sends made one after another arrive in that order. Sends made at once (futures
    /// polled together, as by `join_all`) arrive in the order they were first polled, as long
    /// as they fit the command queue; past it, callers wait for room and may go out in any
    /// order.
    pub async fn send(&self, method: &str, args: impl Serialize) -> Result<()> {
        let arguments = self.arguments(&args)?;
        let target = method.to_owned();
        let size = driver::send_size(&target, &arguments);
        let mut command = Box::new(Command::Send {
            target,
            arguments,
            reply: None,
            reservation: None,
        });
        if let Admission::Queue(reservation) = self.inner.shared.admit(size) {
            if let Command::Send { reservation: r, .. } = &mut *command {
                *r = reservation;
            }
            // Queued under the lock when there is room, without a clone of the sender.
            {
                let commands = lock(&self.inner.commands);
                match commands.as_ref().map(|c| c.try_send(command)) {
                    Some(Ok(())) => return Ok(()),
                    Some(Err(mpsc::error::TrySendError::Full(c))) => command = c,
                    None => return Err(self.sender().err().unwrap_or_else(Self::ended)),
                    Some(Err(mpsc::error::TrySendError::Closed(_))) => return Err(Self::ended()),
                }
            }
            return self
                .sender()?
                .send(command)
                .await
                .map_err(|_| Self::ended());
        }
        // Not connected, or the replay buffer has no room: wait for the outcome.
        let (reply, sent) = oneshot::channel();
        if let Command::Send { reply: r, .. } = &mut *command {
            *r = Some(reply);
        }
        queue_boxed(&self.sender()?, command)
            .await
            .map_err(|()| Self::ended())?;
        sent.await.map_err(|_| HubError::Stopped)?
    }

    /// Calls the streaming `method` and returns its items as a stream of `T`. Dropping the
    /// stream before its end cancels the call on the server.
    pub async fn stream<T: DeserializeOwned>(
        &self,
        method: &str,
        args: impl Serialize,
    ) -> Result<HubStream<T>> {
        let commands = self.sender()?;
        // One slot more than the buffer: the last is kept for the stream's end.
        let (items_tx, items) = mpsc::channel(self.inner.config.stream_buffer + 1);
        let id = self.next_id();
        let command = Command::Stream {
            id: id.clone(),
            target: method.to_owned(),
            arguments: self.arguments(&args)?,
            items: items_tx,
        };
        queue(&commands, command)
            .await
            .map_err(|()| Self::ended())?;
        Ok(HubStream {
            id,
            items,
            commands,
            done: false,
            _type: PhantomData,
        })
    }

    fn register(&self, target: &str, f: HandlerFn) -> Subscription {
        let handlers = Arc::clone(&self.inner.shared.handlers);
        let id = handlers.add(target, f);
        Subscription {
            handlers,
            target: target.to_owned(),
            id,
        }
    }

    /// Runs `handler` whenever the server calls `target` (matched case-insensitively, as the
    /// official clients do). Arguments bind to `A`, a tuple such as `(String, i64)`. Handlers run
    /// one invocation at a time, in arrival order, on a task of their own. A handler still
    /// running when the connection closes (stopped, or closed for good) is cancelled; one
    /// running across a reconnect runs to its end.
    pub fn on<A, F, Fut>(&self, target: &str, handler: F) -> Subscription
    where
        A: DeserializeOwned + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.register(
            target,
            Arc::new(move |args: Arguments, _format| {
                // Bound before the future is made: only the handler's own future is boxed.
                match args.deserialize::<A>() {
                    Ok(a) => handler(a).map(|()| Outcome::Done).boxed(),
                    Err(e) => std::future::ready(Outcome::Unbound(e.to_string())).boxed(),
                }
            }),
        )
    }

    /// Answers the server's client-result invocations of `target` with the handler's value
    /// (or its error). With no such handler the client answers "Client didn't provide a result."
    pub fn on_invoke<A, R, F, Fut>(&self, target: &str, handler: F) -> Subscription
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<R, String>> + Send + 'static,
    {
        self.register(
            target,
            Arc::new(
                move |args: Arguments, format| match args.deserialize::<A>() {
                    Ok(a) => handler(a)
                        .map(move |answer| match answer {
                            Ok(value) => match Payload::from_value(format, &value) {
                                Ok(p) => Outcome::Value(p),
                                Err(e) => Outcome::Failed(e.to_string()),
                            },
                            Err(e) => Outcome::Failed(e),
                        })
                        .boxed(),
                    Err(e) => std::future::ready(Outcome::Unbound(e.to_string())).boxed(),
                },
            ),
        )
    }

    /// Called when the connection is lost and the retry policy starts, with the reason.
    pub fn on_reconnecting(&self, f: impl Fn(Option<&HubError>) + Send + Sync + 'static) {
        lock(&self.inner.shared.on_reconnecting).push(Arc::new(f));
    }

    /// Called when a reconnect succeeded, with the new connection id.
    pub fn on_reconnected(&self, f: impl Fn(Option<&str>) + Send + Sync + 'static) {
        lock(&self.inner.shared.on_reconnected).push(Arc::new(f));
    }

    /// Called when the connection ends for good: `None` after `stop`, the error otherwise.
    pub fn on_close(&self, f: impl Fn(Option<&HubError>) + Send + Sync + 'static) {
        lock(&self.inner.shared.on_close).push(Arc::new(f));
    }
}
