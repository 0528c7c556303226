//! A server-side hub: named methods with typed arguments, streams both ways, client results.
//!
//! ```
//! use futures_util::stream;
//! use signalr_testserver::hub::{Hub, HubError};
//!
//! let hub = Hub::new()
//!     .method("Add", |_ctx, (a, b): (i64, i64)| async move { Ok::<_, HubError>(a + b) })
//!     .action("Ping", |_ctx, (): ()| async move { Ok(()) })
//!     .stream("Count", |_ctx, (n,): (u32,)| stream::iter((0..n).map(Ok::<_, HubError>)));
//! assert!(hub.has_method("Add"));
//! ```

use std::{collections::HashMap, fmt, future::Future, sync::Arc, time::Duration};

use futures_util::{
    FutureExt as _, StreamExt as _,
    future::BoxFuture,
    stream::{BoxStream, Stream},
};
use serde::{Serialize, de::DeserializeOwned};
use signalr_protocol::{Arguments, Payload, PayloadFormat};
use tokio::sync::{mpsc, oneshot};

use crate::{registry::Shared, session::Command};

/// An error a hub method reports to its caller: the text goes in `Completion.error`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HubError {
    message: String,
}

impl HubError {
    /// An error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The text sent to the caller.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<&str> for HubError {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

impl From<String> for HubError {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<signalr_protocol::ProtocolError> for HubError {
    fn from(e: signalr_protocol::ProtocolError) -> Self {
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Self::new(message)
    }
}

/// The result of a hub method.
pub type HubResult<T> = Result<T, HubError>;

type UnaryFn =
    dyn Fn(HubContext, Arguments) -> BoxFuture<'static, HubResult<Option<Payload>>> + Send + Sync;
type StreamFn =
    dyn Fn(HubContext, Arguments) -> BoxStream<'static, HubResult<Payload>> + Send + Sync;
type ConnectedFn = dyn Fn(HubContext) -> BoxFuture<'static, ()> + Send + Sync;

#[derive(Clone)]
pub(crate) enum Handler {
    /// Answers with one Completion; `None` is a void completion.
    Unary(Arc<UnaryFn>),
    /// Answers with stream items and a final Completion.
    Stream(Arc<StreamFn>),
}

/// A hub: a set of methods clients can call, and what to do when a client connects.
#[derive(Clone, Default)]
pub struct Hub {
    methods: HashMap<String, Handler>,
    on_connected: Option<Arc<ConnectedFn>>,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.methods.keys().collect();
        names.sort();
        f.debug_struct("Hub")
            .field("methods", &names)
            .finish_non_exhaustive()
    }
}

fn bind<A: DeserializeOwned>(name: &str, args: &Arguments) -> HubResult<A> {
    args.deserialize::<A>().map_err(|e| {
        HubError::new(format!(
            "Failed to invoke '{name}' due to an error on the server. {}",
            HubError::from(e)
        ))
    })
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    /// The methods' names, sorted.
    pub fn method_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.methods.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Whether a method called `name` exists (names are case-sensitive).
    pub fn has_method(&self, name: &str) -> bool {
        self.methods.contains_key(name)
    }

    pub(crate) fn handler(&self, name: &str) -> Option<&Handler> {
        self.methods.get(name)
    }

    pub(crate) fn connected_handler(&self) -> Option<Arc<ConnectedFn>> {
        self.on_connected.clone()
    }

    /// A method that returns a value. Its arguments are bound to `A` (a tuple such as
    /// `(i64, i64)`, or `()` for none); the value is serialized in the caller's protocol.
    #[must_use]
    pub fn method<A, R, F, Fut>(mut self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(HubContext, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HubResult<R>> + Send + 'static,
    {
        let name_owned = name.to_owned();
        let f = Arc::new(f);
        let handler: Arc<UnaryFn> = Arc::new(move |ctx: HubContext, args: Arguments| {
            let bound = bind::<A>(&name_owned, &args);
            let f = Arc::clone(&f);
            async move {
                let format = ctx.payload_format();
                let value = f(ctx, bound?).await?;
                Ok(Some(Payload::from_value(format, &value)?))
            }
            .boxed()
        });
        self.methods
            .insert(name.to_owned(), Handler::Unary(handler));
        self
    }

    /// A method that completes without a value (a `void` method).
    #[must_use]
    pub fn action<A, F, Fut>(mut self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        F: Fn(HubContext, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HubResult<()>> + Send + 'static,
    {
        let name_owned = name.to_owned();
        let f = Arc::new(f);
        let handler: Arc<UnaryFn> = Arc::new(move |ctx: HubContext, args: Arguments| {
            let bound = bind::<A>(&name_owned, &args);
            let f = Arc::clone(&f);
            async move {
                f(ctx, bound?).await?;
                Ok(None)
            }
            .boxed()
        });
        self.methods
            .insert(name.to_owned(), Handler::Unary(handler));
        self
    }

    /// A method that works on the raw arguments and returns a raw payload (or `None` for
    /// void), for methods that pass values through untouched, such as an echo.
    #[must_use]
    pub fn method_raw<F, Fut>(mut self, name: &str, f: F) -> Self
    where
        F: Fn(HubContext, Arguments) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HubResult<Option<Payload>>> + Send + 'static,
    {
        let handler: Arc<UnaryFn> = Arc::new(move |ctx, args| f(ctx, args).boxed());
        self.methods
            .insert(name.to_owned(), Handler::Unary(handler));
        self
    }

    /// A server-to-client streaming method: each item of the returned stream becomes a
    /// `StreamItem`; an `Err` item ends the stream with that error. The stream is dropped
    /// when the client cancels.
    #[must_use]
    pub fn stream<A, R, F, S>(mut self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(HubContext, A) -> S + Send + Sync + 'static,
        S: Stream<Item = HubResult<R>> + Send + 'static,
    {
        let name_owned = name.to_owned();
        let handler: Arc<StreamFn> =
            Arc::new(
                move |ctx: HubContext, args: Arguments| match bind::<A>(&name_owned, &args) {
                    Ok(a) => {
                        let format = ctx.payload_format();
                        f(ctx, a)
                            .map(move |item| {
                                item.and_then(|v| Ok(Payload::from_value(format, &v)?))
                            })
                            .boxed()
                    }
                    Err(e) => futures_util::stream::once(async move { Err(e) }).boxed(),
                },
            );
        self.methods
            .insert(name.to_owned(), Handler::Stream(handler));
        self
    }

    /// Runs `f` for every new connection, after its handshake.
    #[must_use]
    pub fn on_connected<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(HubContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_connected = Some(Arc::new(move |ctx| f(ctx).boxed()));
        self
    }
}

/// A client-to-server stream passed to a method (an argument named in `streamIds`).
#[derive(Debug)]
pub struct UploadStream {
    format: PayloadFormat,
    items: mpsc::Receiver<HubResult<Payload>>,
}

impl UploadStream {
    pub(crate) fn new(format: PayloadFormat, items: mpsc::Receiver<HubResult<Payload>>) -> Self {
        Self { format, items }
    }

    /// The next item, bound to `T`; `None` when the client completed the stream. An error is
    /// either the client failing the stream or an item that does not bind to `T`.
    pub async fn next<T: DeserializeOwned>(&mut self) -> Option<HubResult<T>> {
        let item = self.items.recv().await?;
        Some(item.and_then(|p| Ok(p.deserialize::<T>()?)))
    }

    /// The format items arrive in.
    pub fn payload_format(&self) -> PayloadFormat {
        self.format
    }
}

/// What a hub method knows about its caller, and how it reaches clients.
#[derive(Clone)]
pub struct HubContext {
    pub(crate) connection_id: Arc<str>,
    pub(crate) format: PayloadFormat,
    pub(crate) caller: mpsc::Sender<Command>,
    pub(crate) shared: Arc<Shared>,
    /// The invocation's client-to-server streams; `None` when it has none (no allocation).
    pub(crate) uploads: Option<Arc<std::sync::Mutex<Vec<Option<UploadStream>>>>>,
    /// The invocation's `headers`; `None` when it had none (no allocation).
    pub(crate) headers: Option<Arc<signalr_protocol::Headers>>,
}

impl fmt::Debug for HubContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubContext")
            .field("connection_id", &self.connection_id)
            .finish_non_exhaustive()
    }
}

impl HubContext {
    /// The caller's connection id.
    pub fn connection_id(&self) -> &str {
        &self.connection_id
    }

    /// The name of the server instance ([`ServerConfig::server_name`](crate::ServerConfig)).
    pub fn server_name(&self) -> &str {
        &self.shared.config.server_name
    }

    /// The `headers` of the invocation being served (empty when it had none, and in an
    /// `on_connected` hook): where a client puts trace context (`traceparent`, `tracestate`).
    pub fn headers(&self) -> &signalr_protocol::Headers {
        static EMPTY: signalr_protocol::Headers = signalr_protocol::Headers::new();
        self.headers.as_deref().unwrap_or(&EMPTY)
    }

    /// The caller's payload format, for building payloads it can read.
    pub fn payload_format(&self) -> PayloadFormat {
        self.format
    }

    /// Takes the `index`-th client-to-server stream of this invocation (in `streamIds` order).
    pub fn take_upload(&self, index: usize) -> Option<UploadStream> {
        let mut uploads = self
            .uploads
            .as_ref()?
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        uploads.get_mut(index).and_then(Option::take)
    }

    /// Calls `method(args…)` on the caller.
    pub async fn send_to_caller(&self, method: &str, args: Vec<Payload>) -> HubResult<()> {
        self.command(Command::Call {
            target: method.into(),
            args,
        })
        .await
    }

    /// Calls `method` on the caller with `args`, a tuple such as `(1, "a")` serialized straight
    /// into the caller's format: one allocation fewer per argument than
    /// [`send_to_caller`](Self::send_to_caller), for hub methods that send in bulk.
    pub async fn send_args_to_caller(&self, method: &str, args: impl Serialize) -> HubResult<()> {
        let arguments = Arguments::from_values(self.format, &args)?;
        self.command(Command::CallWith {
            target: method.into(),
            arguments,
        })
        .await
    }

    /// Queues `command` for the caller's session: at once when there is room, else waiting.
    async fn command(&self, command: Command) -> HubResult<()> {
        let gone = || HubError::new("the caller is gone");
        match self.caller.try_send(command) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(command)) => {
                self.caller.send(command).await.map_err(|_| gone())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(gone()),
        }
    }

    /// Calls `method(args…)` on every connection. Returns how many connections were reached,
    /// or with a Redis backplane how many instances.
    pub async fn send_to_all(&self, method: &str, args: &[Payload]) -> HubResult<usize> {
        self.shared.send_to_all(method, args).await
    }

    /// Calls `method(args…)` on every member of `group`, on every instance.
    pub async fn send_to_group(
        &self,
        group: &str,
        method: &str,
        args: &[Payload],
    ) -> HubResult<usize> {
        self.shared.send_to_group(group, method, args).await
    }

    /// Calls `method(args…)` on the connection `connection_id`, on whichever instance holds it.
    pub async fn send_to_connection(
        &self,
        connection_id: &str,
        method: &str,
        args: &[Payload],
    ) -> HubResult<usize> {
        self.shared
            .send_to_connection(connection_id, method, args)
            .await
    }

    /// Calls `method(args…)` on every connection of `user` (`ServerConfig::users`).
    pub async fn send_to_user(
        &self,
        user: &str,
        method: &str,
        args: &[Payload],
    ) -> HubResult<usize> {
        self.shared.send_to_user(user, method, args).await
    }

    /// Adds the caller to `group`.
    pub async fn join_group(&self, group: &str) {
        self.shared.join_group(group, &self.connection_id).await;
    }

    /// Removes the caller from `group`.
    pub async fn leave_group(&self, group: &str) {
        self.shared.leave_group(group, &self.connection_id).await;
    }

    /// Adds any connection to `group` (`join`) or removes it; one on another instance through
    /// the backplane, waiting for that instance's ack (an error after the backplane timeout).
    pub async fn change_group(
        &self,
        join: bool,
        group: &str,
        connection_id: &str,
    ) -> HubResult<()> {
        self.shared.change_group(join, group, connection_id).await
    }

    /// Invokes `method(args…)` on the connection `connection_id`, on whichever instance holds
    /// it, and waits for its result (in the caller's format).
    pub async fn invoke_connection(
        &self,
        connection_id: &str,
        method: &str,
        args: Vec<Payload>,
    ) -> HubResult<Payload> {
        let answer = self
            .shared
            .ask_connection(connection_id, method, args)
            .await?;
        Ok(convert(self.format, &[answer])?
            .pop()
            .unwrap_or_else(|| Payload::null(self.format)))
    }

    /// Invokes `method(args…)` on the caller and waits for its result (a client result).
    pub async fn invoke_caller(&self, method: &str, args: Vec<Payload>) -> HubResult<Payload> {
        let (reply, answer) = oneshot::channel();
        self.command(Command::InvokeClient {
            target: method.into(),
            args,
            reply,
        })
        .await?;
        answer
            .await
            .map_err(|_| HubError::new("the connection closed before the client answered"))?
    }

    /// Sends the caller a Close message with these fields, then ends its connection.
    pub async fn close_caller(&self, error: Option<String>, allow_reconnect: bool) {
        let _ = self
            .command(Command::Close {
                error,
                allow_reconnect,
            })
            .await;
    }

    /// Drops the caller's transport at once, without a Close message.
    pub fn abort_caller(&self) {
        self.shared.abort(&self.connection_id);
    }

    /// Stops reading from and writing to the caller's connection for `duration`, leaving the
    /// socket open (a half-open link).
    pub fn blackhole_caller(&self, duration: Duration) {
        self.shared.blackhole(&self.connection_id, duration);
    }
}

/// Converts payloads to `format`, through JSON values for those in the other format.
pub(crate) fn convert(format: PayloadFormat, args: &[Payload]) -> Result<Vec<Payload>, HubError> {
    args.iter()
        .map(|p| {
            if p.format() == format {
                Ok(p.clone())
            } else {
                let value: serde_json::Value = p.deserialize()?;
                Ok(Payload::from_value(format, &value)?)
            }
        })
        .collect()
}
