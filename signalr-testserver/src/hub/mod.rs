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

use std::{collections::HashMap, fmt, future::Future, sync::Arc};

use futures_util::{
    FutureExt as _, StreamExt as _,
    future::BoxFuture,
    stream::{BoxStream, Stream},
};
use serde::{Serialize, de::DeserializeOwned};
use signalr_protocol::{Arguments, Payload, PayloadFormat};
use tokio::sync::mpsc;

pub use crate::error::{HubError, HubResult};

mod context;
pub use context::HubContext;

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
