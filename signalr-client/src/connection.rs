//! [`HubConnection`]: the handle users hold.

use std::{
    marker::PhantomData,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use serde::de::DeserializeOwned;
use signalr_protocol::{Headers, HubProtocol, PayloadFormat};
use signalr_transport::header::HeaderMap;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument as _;

use crate::{
    args::IntoArguments,
    command::{Command, Reply, send_size},
    config::{Config, Opener},
    driver::Driver,
    error::PayloadPart,
    error::{HubError, Result},
    handlers::{ErrorHook, Handler, HandlerFn, InvokeHandler, Subscription, erase, erase_invoke},
    shared::{Admission, Shared, lock},
    state::HubConnectionState,
    stream::HubStream,
    target::ConnectTarget,
    upload::Upload,
};

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
    /// How its attempts open their transport.
    opener: Arc<Opener>,
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
    pub(crate) fn new(config: Config, opener: Opener) -> Self {
        let target = ConnectTarget {
            url: config.url.clone(),
            headers: config.http.headers.clone(),
        };
        let shared = Arc::new(Shared::new(target));
        Self {
            inner: Arc::new(Inner {
                config: Arc::new(config),
                opener: Arc::new(opener),
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
                Arc::clone(&self.inner.opener),
                Arc::clone(&self.inner.shared),
                rx,
            );
            // The connection's span (see the crate docs, "Tracing and metrics"): its id, transport and
            // whether it is stateful are recorded once known, again after each reconnect.
            let span = tracing::info_span!(
                "signalr.connection",
                rpc.system = "signalr",
                signalr.protocol = self.inner.config.core.protocol.name(),
                signalr.connection_id = tracing::field::Empty,
                signalr.transport = tracing::field::Empty,
                signalr.stateful = tracing::field::Empty,
            );
            tokio::spawn(driver.run(started_tx).instrument(span));
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

    /// Every state change, as a `watch` receiver (`changed().await`, then `borrow()`). A new
    /// state is published before the event callbacks for it run (`on_reconnecting` after
    /// `Reconnecting`, `on_reconnected` after `Connected`, `on_close` after `Disconnected`); a
    /// `watch` keeps the latest state, so a slow reader may miss one in between.
    ///
    /// ```no_run
    /// # async fn run(conn: signalr_client::HubConnection) {
    /// use signalr_client::HubConnectionState;
    ///
    /// let mut states = conn.state_changes();
    /// tokio::spawn(async move {
    ///     while states.changed().await.is_ok() {
    ///         let state = *states.borrow_and_update();
    ///         println!("now {state}");
    ///         if state == HubConnectionState::Disconnected {
    ///             break;
    ///         }
    ///     }
    /// });
    /// # }
    /// ```
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
        if let Opener::Http(_) = *self.inner.opener {
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
        self.inner.config.core.protocol.payload_format()
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

    /// Encodes a call's arguments, and spawns the pumps of its uploads once `queued` says the
    /// call is in the driver's queue (their items must follow it).
    fn encode(
        &self,
        method: &str,
        args: impl IntoArguments,
    ) -> Result<(signalr_protocol::Arguments, Vec<(String, Upload)>)> {
        let (arguments, uploads) =
            args.into_parts(self.format())
                .map_err(|source| HubError::Payload {
                    method: method.to_owned(),
                    part: PayloadPart::Arguments,
                    source,
                })?;
        let uploads = uploads.into_iter().map(|u| (self.next_id(), u)).collect();
        Ok((arguments, uploads))
    }

    /// Starts the pumps of `uploads` (after their call is queued, so their items follow it).
    fn pump(
        &self,
        commands: &mpsc::Sender<Box<Command>>,
        uploads: Vec<(String, Upload)>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        uploads
            .into_iter()
            .map(|(id, upload)| {
                tokio::spawn(upload.pump(id, self.format(), commands.clone(), self.state_changes()))
            })
            .collect()
    }

    /// Calls `method` with `args` and waits for its result, bound to `T`.
    ///
    /// `args` is a tuple (`()`, `(x,)`, `(a, b)`, …), an array or a `Vec`
    /// ([`IntoArguments`]); an [`Upload`] in any position of a tuple is a client-to-server
    /// stream, whose items go out as the call runs (the server binds it to a `ChannelReader<T>`
    /// or `IAsyncEnumerable<T>` parameter); once the server has answered, uploads still running
    /// are stopped. `T = ()` discards whatever the method returned, like the .NET client's
    /// `InvokeAsync` without a type.
    ///
    /// ```no_run
    /// # async fn run(conn: signalr_client::HubConnection) -> signalr_client::Result<()> {
    /// use signalr_client::Upload;
    ///
    /// let sum: i64 = conn.invoke("Add", (40, 2)).await?;
    /// let total: i64 = conn.invoke("Sum", (Upload::new(futures_util::stream::iter(1..=10)),)).await?;
    /// conn.invoke::<()>("Add", (1, 2)).await?; // the result is discarded
    /// # Ok(()) }
    /// ```
    ///
    /// Cancel safety: dropping the future abandons the result (the call itself may still run)
    /// and stops its uploads.
    pub async fn invoke<T: DeserializeOwned + 'static>(
        &self,
        method: &str,
        args: impl IntoArguments,
    ) -> Result<T> {
        let id = self.next_id();
        let span = tracing::info_span!(
            "signalr.invoke",
            otel.kind = "client",
            rpc.system = "signalr",
            rpc.method = method,
            signalr.invocation_id = id.as_str(),
            signalr.outcome = tracing::field::Empty,
            signalr.duration_us = tracing::field::Empty,
        );
        let headers = self.inner.config.trace.inject(&span);
        if span.is_disabled() && !crate::meter::ENABLED {
            return self.invoke_inner(id, method, headers, args).await;
        }
        let started = crate::rt::now();
        let result = self
            .invoke_inner(id, method, headers, args)
            .instrument(span.clone())
            .await;
        let outcome = record_outcome(&span, &result, started);
        crate::meter::invocation(method, outcome, crate::rt::now() - started);
        result
    }

    async fn invoke_inner<T: DeserializeOwned + 'static>(
        &self,
        id: String,
        method: &str,
        headers: Headers,
        args: impl IntoArguments,
    ) -> Result<T> {
        let (reply, result) = Reply::new();
        let (arguments, uploads) = self.encode(method, args)?;
        let command = Command::Invoke {
            id,
            target: method.to_owned(),
            headers,
            arguments,
            stream_ids: uploads.iter().map(|(id, _)| id.clone()).collect(),
            reply,
        };
        let commands = self.sender()?;
        queue(&commands, command)
            .await
            .map_err(|()| Self::ended())?;
        // Aborted when this future ends, answered or dropped.
        let _pumps = AbortOnDrop(self.pump(&commands, uploads));
        let result = result.await.map_err(|_| HubError::Stopped)?;
        bind(result?, self.format(), method)
    }

    /// Calls `method` without waiting for (or getting) a result: fire and forget. `args` as
    /// for [`invoke`](Self::invoke), uploads included (they run until they end or the
    /// connection closes).
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
    pub async fn send(&self, method: &str, args: impl IntoArguments) -> Result<()> {
        let span = tracing::info_span!(
            "signalr.send",
            otel.kind = "client",
            rpc.system = "signalr",
            rpc.method = method,
            signalr.outcome = tracing::field::Empty,
            signalr.duration_us = tracing::field::Empty,
        );
        let headers = self.inner.config.trace.inject(&span);
        if span.is_disabled() {
            return self.send_inner(method, headers, args).await;
        }
        let started = crate::rt::now();
        let result = self
            .send_inner(method, headers, args)
            .instrument(span.clone())
            .await;
        record_outcome(&span, &result, started);
        result
    }

    async fn send_inner(
        &self,
        method: &str,
        headers: Headers,
        args: impl IntoArguments,
    ) -> Result<()> {
        let (arguments, uploads) = self.encode(method, args)?;
        let target = method.to_owned();
        let size = send_size(&target, &arguments);
        let stream_ids = uploads.iter().map(|(id, _)| id.clone()).collect();
        let mut command = Box::new(Command::Send {
            target,
            headers,
            arguments,
            stream_ids,
            reply: None,
            reservation: None,
        });
        if uploads.is_empty() {
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
                        Some(Err(mpsc::error::TrySendError::Closed(_))) => {
                            return Err(Self::ended());
                        }
                    }
                }
                return self
                    .sender()?
                    .send(command)
                    .await
                    .map_err(|_| Self::ended());
            }
        }
        // Not connected, the replay buffer has no room, or uploads follow: wait for the
        // outcome.
        let (reply, sent) = Reply::new();
        if let Command::Send { reply: r, .. } = &mut *command {
            *r = Some(reply);
        }
        let commands = self.sender()?;
        queue_boxed(&commands, command)
            .await
            .map_err(|()| Self::ended())?;
        // The uploads outlive the send: they run to their end, or until the connection closes.
        drop(self.pump(&commands, uploads));
        sent.await.map_err(|_| HubError::Stopped)?
    }

    /// Calls the streaming `method` and returns its items as a stream of `T`; `args` as for
    /// [`invoke`](Self::invoke), uploads included. Dropping the stream before its end cancels
    /// the call on the server and stops its uploads; an item that does not bind to `T` ends
    /// the stream with that error (and cancels the call).
    ///
    /// ```no_run
    /// # async fn run(conn: signalr_client::HubConnection) -> signalr_client::Result<()> {
    /// use futures_util::StreamExt as _;
    ///
    /// let mut counter = conn.stream::<i32>("Counter", (10, 100)).await?;
    /// while let Some(item) = counter.next().await {
    ///     println!("{}", item?);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn stream<T: DeserializeOwned>(
        &self,
        method: &str,
        args: impl IntoArguments,
    ) -> Result<HubStream<T>> {
        let commands = self.sender()?;
        let (arguments, uploads) = self.encode(method, args)?;
        // One slot more than the buffer: the last is kept for the stream's end.
        let (items_tx, items) = mpsc::channel(self.inner.config.stream_buffer + 1);
        let id = self.next_id();
        let span = tracing::info_span!(
            "signalr.stream",
            otel.kind = "client",
            rpc.system = "signalr",
            rpc.method = method,
            signalr.invocation_id = id.as_str(),
            signalr.outcome = tracing::field::Empty,
            signalr.items = tracing::field::Empty,
            signalr.duration_us = tracing::field::Empty,
        );
        let command = Command::Stream {
            id: id.clone(),
            target: method.to_owned(),
            headers: self.inner.config.trace.inject(&span),
            arguments,
            stream_ids: uploads.iter().map(|(id, _)| id.clone()).collect(),
            items: items_tx,
        };
        queue(&commands, command)
            .await
            .map_err(|()| Self::ended())?;
        let pumps = self.pump(&commands, uploads);
        Ok(HubStream {
            span: crate::stream::StreamSpan::new(span),
            id,
            method: method.to_owned(),
            items,
            commands,
            pumps,
            done: false,
            _type: PhantomData,
        })
    }

    fn register(&self, target: &str, f: HandlerFn) -> Subscription {
        let handlers = Arc::clone(&self.inner.shared.handlers);
        let id = handlers.add(target, f);
        let name = target.to_owned();
        Subscription::new(format!("handler of '{target}'"), move || {
            handlers.remove(&name, id)
        })
    }

    /// Runs `handler` whenever the server calls the client method `target` (matched
    /// case-insensitively, as the official clients do). The handler is an `async` closure
    /// taking the call's arguments, one parameter each ([`Handler`]):
    ///
    /// ```no_run
    /// # async fn run(conn: signalr_client::HubConnection) {
    /// #[derive(serde::Deserialize)]
    /// struct Tick { symbol: String, price: f64 }
    ///
    /// conn.on("tick", |tick: Tick| async move { println!("{} {}", tick.symbol, tick.price) });
    /// conn.on("ReceiveMessage", |user: String, text: String| async move {
    ///     println!("{user}: {text}");
    /// });
    /// # }
    /// ```
    ///
    /// The handler stays registered until it is removed on purpose:
    /// [`Subscription::remove`], or [`off`](Self::off) for every handler of `target`; dropping
    /// the returned [`Subscription`] removes nothing. Several handlers of one target all run.
    /// Handlers run one invocation at a time, in arrival order, on a task of their own. A
    /// handler still running when the connection closes (stopped, or closed for good) is
    /// cancelled; one running across a reconnect runs to its end.
    ///
    /// A call whose arguments do not fit the handler (another count, or a value that does not
    /// bind) does not run it: a warning names the method, the argument and serde's reason,
    /// and [`on_handler_error`](Self::on_handler_error) hooks get the [`HubError`].
    ///
    /// A handler that keeps a clone of its own connection keeps the connection alive after
    /// every other handle is dropped; capture [`downgrade`](Self::downgrade) instead.
    pub fn on<A: 'static>(&self, target: &str, handler: impl Handler<A>) -> Subscription {
        self.register(target, erase(handler))
    }

    /// Answers the server's client-result calls of `target` (the server's `InvokeAsync` on
    /// this client) with what `handler` returns: `Ok(value)` goes back as the result, `Err(e)`
    /// as the error `e.to_string()` (any error that displays, so `?` works inside). Arguments
    /// as for [`on`](Self::on). With no handler for `target` the client answers "Client didn't
    /// provide a result.", with two "Client provided multiple results.", as the official
    /// clients do.
    ///
    /// ```no_run
    /// # async fn run(conn: signalr_client::HubConnection) {
    /// conn.on_invoke("confirm", |question: String| async move {
    ///     Ok::<_, std::io::Error>(question.ends_with('?'))
    /// });
    /// conn.on_invoke("parse", |text: String| async move { text.parse::<i64>() });
    /// # }
    /// ```
    pub fn on_invoke<A: 'static, R: 'static>(
        &self,
        target: &str,
        handler: impl InvokeHandler<A, R>,
    ) -> Subscription {
        self.register(target, erase_invoke(handler))
    }

    /// Removes every handler of the client method `target` (`on` and `on_invoke`), as the
    /// official clients' `off(methodName)`; returns how many there were.
    pub fn off(&self, target: &str) -> usize {
        self.inner.shared.handlers.remove_all(target)
    }

    /// Called with the error when a server-to-client call could not run its handler: its
    /// arguments did not fit ([`HubError::Payload`] with [`PayloadPart::Argument`], or
    /// [`HubError::ArgumentCount`]), or the handler panicked ([`HubError::HandlerPanicked`]).
    /// Each is also logged as a warning.
    ///
    /// ```no_run
    /// # fn run(conn: signalr_client::HubConnection) {
    /// conn.on_handler_error(|e| eprintln!("{e:#}")); // argument 0 of 'tick' does not bind: …
    /// # }
    /// ```
    pub fn on_handler_error(&self, f: impl Fn(&HubError) + Send + Sync + 'static) -> Subscription {
        let hooks = Arc::clone(&self.inner.shared.handlers);
        let id = hooks.errors.add(Arc::new(f) as Arc<ErrorHook>);
        Subscription::new("on_handler_error".into(), move || hooks.errors.remove(id))
    }

    /// Called when the connection is lost and the retry policy starts, with the reason; after
    /// [`state_changes`](Self::state_changes) has seen `Reconnecting`.
    ///
    /// ```no_run
    /// # fn run(conn: signalr_client::HubConnection) {
    /// let sub = conn.on_reconnecting(|e| {
    ///     if let Some(e) = e { eprintln!("reconnecting: {e:#}") }
    /// });
    /// sub.remove(); // no longer interested
    /// # }
    /// ```
    pub fn on_reconnecting(
        &self,
        f: impl Fn(Option<&HubError>) + Send + Sync + 'static,
    ) -> Subscription {
        let shared = Arc::clone(&self.inner.shared);
        let id = shared.on_reconnecting.add(Arc::new(f));
        Subscription::new("on_reconnecting".into(), move || {
            shared.on_reconnecting.remove(id)
        })
    }

    /// Called when a reconnect succeeded, with the new connection id; after
    /// [`state_changes`](Self::state_changes) has seen `Connected`. Groups are the server's
    /// per connection: rejoin them here. A stateful resume is not a reconnect (the same
    /// connection goes on) and calls nothing.
    pub fn on_reconnected(&self, f: impl Fn(Option<&str>) + Send + Sync + 'static) -> Subscription {
        let shared = Arc::clone(&self.inner.shared);
        let id = shared.on_reconnected.add(Arc::new(f));
        Subscription::new("on_reconnected".into(), move || {
            shared.on_reconnected.remove(id)
        })
    }

    /// Called when the connection closes for good, after [`state_changes`](Self::state_changes)
    /// has seen `Disconnected`: `None` after `stop`, the error otherwise (the server's Close,
    /// or [`HubError::ReconnectFailed`] when the retry policy gave up). Not called when `start`
    /// fails: `start` returns that error.
    pub fn on_close(&self, f: impl Fn(Option<&HubError>) + Send + Sync + 'static) -> Subscription {
        let shared = Arc::clone(&self.inner.shared);
        let id = shared.on_close.add(Arc::new(f));
        Subscription::new("on_close".into(), move || shared.on_close.remove(id))
    }

    /// Waits until the connection is `Disconnected` and returns why it last closed for good,
    /// what [`on_close`](Self::on_close) was given: `None` after `stop` (or if it never
    /// connected). At once when it is `Disconnected` already. A failed `start` ends the wait
    /// too, with the reason of the previous close: `start` returns its own error.
    ///
    /// ```no_run
    /// # async fn run(conn: signalr_client::HubConnection) -> signalr_client::Result<()> {
    /// conn.start().await?;
    /// if let Some(reason) = conn.closed().await {
    ///     eprintln!("closed: {reason:#}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn closed(&self) -> Option<Arc<HubError>> {
        let reason = self.inner.shared.closed.subscribe();
        let mut states = self.state_changes();
        // The reason is recorded before the state turns Disconnected: read it after.
        let _ = states
            .wait_for(|s| *s == HubConnectionState::Disconnected)
            .await;
        reason.borrow().clone()
    }

    /// A handle that does not keep the connection alive: for a handler that replies on its own
    /// connection (a clone captured in a handler is a cycle, and the connection would outlive
    /// every other handle).
    ///
    /// ```no_run
    /// # fn run(conn: signalr_client::HubConnection) {
    /// let weak = conn.downgrade();
    /// conn.on("ping", move |n: i64| {
    ///     let weak = weak.clone();
    ///     async move {
    ///         if let Some(conn) = weak.upgrade() {
    ///             let _ = conn.send("Pong", (n,)).await;
    ///         }
    ///     }
    /// });
    /// # }
    /// ```
    pub fn downgrade(&self) -> WeakHubConnection {
        WeakHubConnection {
            inner: Arc::downgrade(&self.inner),
        }
    }
}

/// A [`HubConnection`] that does not keep it alive, from [`HubConnection::downgrade`].
#[derive(Clone)]
pub struct WeakHubConnection {
    inner: std::sync::Weak<Inner>,
}

impl std::fmt::Debug for WeakHubConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeakHubConnection")
            .field("alive", &(self.inner.strong_count() > 0))
            .finish()
    }
}

impl WeakHubConnection {
    /// The connection, while some [`HubConnection`] still holds it.
    pub fn upgrade(&self) -> Option<HubConnection> {
        self.inner.upgrade().map(|inner| HubConnection { inner })
    }
}

/// Aborts the tasks when dropped: an invoke's uploads end with the invoke.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Records how a call ended on its span: `ok`, or the error's kind.
/// Records a call's outcome and duration in its span; the outcome, for its metrics.
fn record_outcome<T>(
    span: &tracing::Span,
    result: &Result<T>,
    started: std::time::Instant,
) -> &'static str {
    let outcome = match result {
        Ok(_) => "ok",
        Err(HubError::Invocation { .. }) => "hub_error",
        Err(HubError::Payload { .. }) => "payload_error",
        Err(_) => "connection_error",
    };
    span.record("signalr.outcome", outcome);
    span.record("signalr.duration_us", crate::rt::micros_since(started));
    outcome
}

/// Binds a completion of `method` to the caller's type; `()` takes any result and discards it.
fn bind<T: serde::de::DeserializeOwned + 'static>(
    result: signalr_protocol::CompletionResult,
    format: signalr_protocol::PayloadFormat,
    method: &str,
) -> Result<T> {
    use signalr_protocol::{CompletionResult, Payload};
    let payload = match result {
        CompletionResult::Error(message) => return Err(HubError::Invocation { message }),
        CompletionResult::Value(p)
            if std::any::TypeId::of::<T>() != std::any::TypeId::of::<()>() =>
        {
            p
        }
        // Void, or a value the caller does not want.
        _ => Payload::null(format),
    };
    payload.deserialize().map_err(|source| HubError::Payload {
        method: method.to_owned(),
        part: crate::error::PayloadPart::Result,
        source,
    })
}
