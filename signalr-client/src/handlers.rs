//! Client methods the server calls (`on`), client results (`on_invoke`), and the task that
//! runs them.

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    panic::AssertUnwindSafe,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use futures_util::{FutureExt as _, future::BoxFuture};
use serde::{Serialize, de::DeserializeOwned};
use signalr_protocol::{Arguments, Completion, Payload, PayloadFormat, ProtocolError};
use tokio::sync::mpsc;
use tracing::{Instrument as _, warn};

use crate::error::{HubError, PayloadPart};
use crate::trace::Propagation;

/// Why a server call's arguments did not reach a handler. Not part of the API: handlers report
/// it through [`Handler`] and [`InvokeHandler`], and the client turns it into a [`HubError`].
#[doc(hidden)]
#[derive(Debug)]
pub enum BindError {
    /// The server sent `got` arguments; the handler takes `expected`.
    Count {
        /// How many the handler takes.
        expected: usize,
        /// How many the server sent.
        got: usize,
    },
    /// The argument at `position` (from 0) does not bind to the handler's parameter.
    Argument {
        /// From 0.
        position: usize,
        /// serde's reason.
        source: ProtocolError,
    },
}

impl BindError {
    fn into_hub_error(self, method: &str) -> HubError {
        match self {
            Self::Count { expected, got } => HubError::ArgumentCount {
                method: method.to_owned(),
                expected,
                got,
            },
            Self::Argument { position, source } => HubError::Payload {
                method: method.to_owned(),
                part: PayloadPart::Argument(position),
                source,
            },
        }
    }
}

/// Splits `arguments` into one payload each, or says that there are not `expected` of them.
fn split(arguments: &Arguments, expected: usize) -> Result<Vec<Payload>, BindError> {
    let parts = arguments
        .to_payloads()
        .map_err(|source| BindError::Argument {
            position: 0,
            source,
        })?;
    if parts.len() == expected {
        Ok(parts)
    } else {
        Err(BindError::Count {
            expected,
            got: parts.len(),
        })
    }
}

/// A handler for a server-to-client call: an `async` closure taking the call's arguments, one
/// parameter each, as the official clients' handlers do (`(user, text) => …` in JavaScript,
/// `On<string, string>` in .NET), with up to 8 parameters:
///
/// ```no_run
/// # async fn run(conn: signalr_client::HubConnection) {
/// #[derive(serde::Deserialize)]
/// struct Tick { price: f64 }
///
/// conn.on("tick", |tick: Tick| async move { println!("{}", tick.price) });
/// conn.on("ReceiveMessage", |user: String, text: String| async move {
///     println!("{user}: {text}");
/// });
/// conn.on("refresh", || async { println!("refresh") });
/// # }
/// ```
///
/// Each parameter binds one argument (with serde): a struct, a string, a number, a
/// `serde_json::Value` for anything. A call with another number of arguments, or an argument
/// that does not bind, does not run the handler: it is logged as a warning naming the method,
/// the argument and serde's reason, and reaches
/// [`HubConnection::on_handler_error`](crate::HubConnection::on_handler_error).
///
/// Implemented for closures and functions; the method is not meant to be called directly.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a handler for a server-to-client call",
    label = "expected an `async` closure with one parameter per argument",
    note = "write `|a: A, b: B| async move {{ .. }}` (up to 8 parameters, each a `Deserialize` type), returning `()`"
)]
pub trait Handler<Args>: Send + Sync + 'static {
    #[doc(hidden)]
    fn call(&self, arguments: &Arguments) -> Result<BoxFuture<'static, ()>, BindError>;
}

/// A handler that answers a server-to-client call (a client result, the server's
/// `InvokeAsync` on a client): like a [`Handler`], but its future returns
/// `Result<R, E>`. `Ok(value)` goes back to the server; `Err(e)` sends `e.to_string()` as the
/// call's error, so `?` works inside it with any error that displays.
///
/// ```no_run
/// # async fn run(conn: signalr_client::HubConnection) {
/// conn.on_invoke("GetVersion", || async { Ok::<_, std::convert::Infallible>("1.2.3") });
/// conn.on_invoke("Parse", |text: String| async move { text.parse::<i64>() });
/// # }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a client-result handler",
    label = "expected an `async` closure whose future returns `Result<R, E>`",
    note = "write `|x: i64| async move {{ Ok::<_, MyError>(x * 2) }}`: `R` is `Serialize`, `E` displays"
)]
pub trait InvokeHandler<Args, R>: Send + Sync + 'static {
    #[doc(hidden)]
    fn call(
        &self,
        arguments: &Arguments,
        format: PayloadFormat,
    ) -> Result<BoxFuture<'static, Result<Payload, String>>, BindError>;
}

macro_rules! handlers {
    ($n:literal $(, $a:ident $i:tt)*) => {
        impl<F, Fut, $($a,)*> Handler<($($a,)*)> for F
        where
            F: Fn($($a),*) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = ()> + Send + 'static,
            $($a: DeserializeOwned + Send + 'static,)*
        {
            #[allow(non_snake_case, unused_variables)]
            fn call(&self, arguments: &Arguments) -> Result<BoxFuture<'static, ()>, BindError> {
                let ($($a,)*) = bind::<($($a,)*)>(arguments)?;
                Ok(self($($a),*).boxed())
            }
        }

        impl<F, Fut, R, E, $($a,)*> InvokeHandler<($($a,)*), R> for F
        where
            F: Fn($($a),*) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = Result<R, E>> + Send + 'static,
            R: Serialize + Send + 'static,
            E: fmt::Display + Send + 'static,
            $($a: DeserializeOwned + Send + 'static,)*
        {
            #[allow(non_snake_case, unused_variables)]
            fn call(
                &self,
                arguments: &Arguments,
                format: PayloadFormat,
            ) -> Result<BoxFuture<'static, Result<Payload, String>>, BindError> {
                let ($($a,)*) = bind::<($($a,)*)>(arguments)?;
                Ok(self($($a),*)
                    .map(move |answer| match answer {
                        Ok(value) => Payload::from_value(format, &value).map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    })
                    .boxed())
            }
        }

        impl<$($a: DeserializeOwned,)*> Bind for ($($a,)*) {
            const COUNT: usize = $n;

            #[allow(unused_variables)]
            fn diagnose(arguments: &Arguments, whole: ProtocolError) -> BindError {
                let parts = match split(arguments, $n) {
                    Ok(parts) => parts,
                    Err(e) => return e,
                };
                $(
                    if let Err(source) = parts[$i].deserialize::<$a>() {
                        return BindError::Argument { position: $i, source };
                    }
                )*
                // Each binds alone but not together (a tuple of zero from a non-empty list).
                BindError::Argument { position: 0, source: whole }
            }
        }
    };
}

/// A tuple of handler parameters.
trait Bind: DeserializeOwned {
    const COUNT: usize;
    /// Why the arguments did not bind: the count, or the first argument that does not.
    fn diagnose(arguments: &Arguments, whole: ProtocolError) -> BindError;
}

/// Binds the arguments in one pass; only when that fails, one by one, to say which failed.
fn bind<T: Bind>(arguments: &Arguments) -> Result<T, BindError> {
    if T::COUNT == 0 {
        // `()` is not an empty list to serde: count instead.
        split(arguments, 0)?;
    }
    arguments
        .deserialize::<T>()
        .map_err(|whole| T::diagnose(arguments, whole))
}

handlers!(0);
handlers!(1, A1 0);
handlers!(2, A1 0, A2 1);
handlers!(3, A1 0, A2 1, A3 2);
handlers!(4, A1 0, A2 1, A3 2, A4 3);
handlers!(5, A1 0, A2 1, A3 2, A4 3, A5 4);
handlers!(6, A1 0, A2 1, A3 2, A4 3, A5 4, A6 5);
handlers!(7, A1 0, A2 1, A3 2, A4 3, A5 4, A6 5, A7 6);
handlers!(8, A1 0, A2 1, A3 2, A4 3, A5 4, A6 5, A7 6, A8 7);

/// What one handler produced.
pub(crate) enum Outcome {
    /// A plain handler: no value.
    Done,
    /// A client-result handler's value.
    Value(Payload),
    /// A client-result handler's error, for the server.
    Failed(String),
}

/// A registered handler, type-erased.
pub(crate) type HandlerFn = Arc<
    dyn Fn(&Arguments, PayloadFormat) -> Result<BoxFuture<'static, Outcome>, BindError>
        + Send
        + Sync,
>;

/// Erases a [`Handler`].
pub(crate) fn erase<A: 'static>(handler: impl Handler<A>) -> HandlerFn {
    Arc::new(move |args: &Arguments, _| Ok(handler.call(args)?.map(|()| Outcome::Done).boxed()))
}

/// Erases an [`InvokeHandler`].
pub(crate) fn erase_invoke<A: 'static, R: 'static>(handler: impl InvokeHandler<A, R>) -> HandlerFn {
    Arc::new(move |args: &Arguments, format| {
        Ok(handler
            .call(args, format)?
            .map(|answer| match answer {
                Ok(value) => Outcome::Value(value),
                Err(e) => Outcome::Failed(e),
            })
            .boxed())
    })
}

/// Callbacks with ids, so that each can be removed on its own.
pub(crate) struct Callbacks<F: ?Sized> {
    list: Mutex<Vec<(u64, Arc<F>)>>,
    next: AtomicU64,
}

impl<F: ?Sized> Default for Callbacks<F> {
    fn default() -> Self {
        Self {
            list: Mutex::new(Vec::new()),
            next: AtomicU64::new(0),
        }
    }
}

impl<F: ?Sized> Callbacks<F> {
    pub(crate) fn add(&self, f: Arc<F>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().push((id, f));
        id
    }

    pub(crate) fn remove(&self, id: u64) -> bool {
        let mut list = self.lock();
        let before = list.len();
        list.retain(|(i, _)| *i != id);
        list.len() != before
    }

    /// The callbacks now, to call without the lock held (a callback may add or remove one).
    pub(crate) fn snapshot(&self) -> Vec<Arc<F>> {
        self.lock().iter().map(|(_, f)| Arc::clone(f)).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Arc<F>)>> {
        self.list.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A callback for errors of handlers.
pub(crate) type ErrorHook = dyn Fn(&HubError) + Send + Sync;

/// The handlers of one target, in registration order, with their ids.
type HandlerList = Arc<Vec<(u64, HandlerFn)>>;

/// Registered handlers by lower-cased target (the official clients match case-insensitively),
/// and the hooks that hear of their failures.
///
/// Each target's list is shared, copied on write: a server invocation takes a snapshot (one
/// reference count) under the lock and runs the handlers after releasing it.
#[derive(Default)]
pub(crate) struct Handlers {
    map: Mutex<HashMap<String, HandlerList>>,
    next: AtomicU64,
    /// Bumped by every change, so that a reader may keep a list while it is unchanged.
    generation: AtomicU64,
    pub(crate) errors: Callbacks<ErrorHook>,
}

/// `target` lower-cased; borrowed when it is ASCII with no upper-case letter already (no
/// allocation per message for such names).
fn key(target: &str) -> std::borrow::Cow<'_, str> {
    if target
        .bytes()
        .any(|b| b.is_ascii_uppercase() || !b.is_ascii())
    {
        std::borrow::Cow::Owned(target.to_lowercase())
    } else {
        std::borrow::Cow::Borrowed(target)
    }
}

impl Handlers {
    pub(crate) fn add(&self, target: &str, f: HandlerFn) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut map = self.lock();
        let list = map.entry(key(target).into_owned()).or_default();
        Arc::make_mut(list).push((id, f));
        self.generation.fetch_add(1, Ordering::Release);
        id
    }

    /// Removes the handler `id` of `target`; whether it was there.
    pub(crate) fn remove(&self, target: &str, id: u64) -> bool {
        let mut map = self.lock();
        let key = key(target);
        let mut removed = false;
        if let Some(list) = map.get_mut(key.as_ref()) {
            let before = list.len();
            Arc::make_mut(list).retain(|(i, _)| *i != id);
            removed = list.len() != before;
            if list.is_empty() {
                map.remove(key.as_ref());
            }
        }
        self.generation.fetch_add(1, Ordering::Release);
        removed
    }

    /// Removes every handler of `target`; how many there were.
    pub(crate) fn remove_all(&self, target: &str) -> usize {
        let removed = self
            .lock()
            .remove(key(target).as_ref())
            .map_or(0, |l| l.len());
        self.generation.fetch_add(1, Ordering::Release);
        removed
    }

    fn get(&self, target: &str) -> Option<HandlerList> {
        self.lock().get(key(target).as_ref()).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HandlerList>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells the error hooks.
    fn report(&self, error: &HubError) {
        for hook in self.errors.snapshot() {
            hook(error);
        }
    }
}

/// A registration made by [`HubConnection::on`](crate::HubConnection::on), `on_invoke`, or one
/// of the event callbacks (`on_reconnecting`, `on_reconnected`, `on_close`,
/// `on_handler_error`). It stays until it is removed on purpose: with [`remove`](Self::remove),
/// or for client methods with [`HubConnection::off`](crate::HubConnection::off). Dropping this
/// handle removes nothing, as in the official clients.
pub struct Subscription {
    what: String,
    remove: Box<dyn FnOnce() -> bool + Send + Sync>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("what", &self.what)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    pub(crate) fn new(what: String, remove: impl FnOnce() -> bool + Send + Sync + 'static) -> Self {
        Self {
            what,
            remove: Box::new(remove),
        }
    }

    /// Removes the registration; `false` when it was already gone (removed by `off`).
    pub fn remove(self) -> bool {
        (self.remove)()
    }
}

/// A call from the server for the handlers.
pub(crate) use crate::core::ServerCall as Dispatch;

/// Runs handlers one invocation at a time, in arrival order, off the driver task so that slow
/// handlers never delay pings or timeouts. Client-result answers go back on `answers`.
pub(crate) async fn run(
    handlers: Arc<Handlers>,
    trace: Propagation,
    format: PayloadFormat,
    mut incoming: mpsc::Receiver<Vec<Dispatch>>,
    answers: mpsc::UnboundedSender<Box<Completion>>,
) {
    let mut lookup = Lookup::default();
    while let Some(batch) = incoming.recv().await {
        for d in batch {
            let found = lookup.get(&handlers, &d.target);
            // The call's span (crate docs, "Tracing and metrics"): a child of the server's trace context
            // when the call carries one (feature `opentelemetry`), else a root, as ASP.NET
            // Core's hub-method activities are (not under the long-lived connection).
            let span = tracing::info_span!(
                "signalr.handler",
                otel.kind = "server",
                rpc.system = "signalr",
                rpc.method = d.target.as_str(),
                signalr.invocation_id = d.invocation_id.as_deref(),
                signalr.handlers = found.len(),
            );
            trace.set_parent(&span, &d.headers);
            let handled = handle(&handlers, found, format, d, &answers)
                .instrument(span)
                .await;
            if !handled {
                return;
            }
        }
    }
}

/// The handlers of the last target looked up, kept while no handler is added or removed: a
/// burst of invocations of one target takes the lock and hashes its name once.
#[derive(Default)]
struct Lookup {
    target: String,
    generation: u64,
    list: Option<HandlerList>,
}

impl Lookup {
    fn get(&mut self, handlers: &Handlers, target: &str) -> HandlerList {
        let generation = handlers.generation.load(Ordering::Acquire);
        match &self.list {
            Some(list) if generation == self.generation && self.target == target => {
                Arc::clone(list)
            }
            _ => {
                // Read after the generation: a change meanwhile only makes the next call look
                // again.
                let list = handlers.get(target).unwrap_or_default();
                target.clone_into(&mut self.target);
                self.generation = generation;
                self.list = Some(Arc::clone(&list));
                list
            }
        }
    }
}

/// Runs the handlers `found` for one invocation; `false` once answers can no longer be sent.
async fn handle(
    handlers: &Handlers,
    found: HandlerList,
    format: PayloadFormat,
    d: Dispatch,
    answers: &mpsc::UnboundedSender<Box<Completion>>,
) -> bool {
    let Dispatch {
        target,
        arguments,
        invocation_id,
        ..
    } = d;
    if found.is_empty() {
        // The JavaScript client's warning, word for word.
        warn!(
            "No client method with the name '{}' found.",
            target.to_lowercase()
        );
    }
    let mut values = Vec::new();
    let mut failure = None;
    for (_, f) in found.iter() {
        // A handler may panic when called (a plain `fn` that makes its future) or when polled:
        // either fails this invocation, not the task.
        let called = std::panic::catch_unwind(AssertUnwindSafe(|| f(&arguments, format)));
        let outcome = match called {
            Ok(Ok(future)) => AssertUnwindSafe(future).catch_unwind().await.ok(),
            Ok(Err(unbound)) => {
                let error = unbound.into_hub_error(&target);
                warn!(
                    method = target,
                    error = format!("{error:#}"),
                    "a server call does not fit its handler; the handler did not run"
                );
                handlers.report(&error);
                failure.get_or_insert_with(|| error.to_string());
                continue;
            }
            Err(_) => None,
        };
        match outcome {
            Some(Outcome::Done) => {}
            Some(Outcome::Value(v)) => values.push(v),
            Some(Outcome::Failed(e)) => {
                failure.get_or_insert(e);
            }
            None => {
                let error = HubError::HandlerPanicked {
                    method: target.clone(),
                };
                warn!(method = target, "{error}");
                handlers.report(&error);
                failure.get_or_insert_with(|| error.to_string());
            }
        }
    }
    let Some(id) = invocation_id else {
        return true;
    };
    // The official clients' answers: one value, or these errors.
    let completion = match (values.len(), failure) {
        (_, Some(e)) if values.is_empty() => Completion::error(id, e),
        (1, _) => Completion::value(id, values.remove(0)),
        (0, _) => Completion::error(id, "Client didn't provide a result."),
        _ => Completion::error(id, "Client provided multiple results."),
    };
    answers.send(Box::new(completion)).is_ok()
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use signalr_protocol::{Arguments, PayloadFormat};

    use super::{BindError, Handler, key};

    #[test]
    fn keys_are_lower_case_and_borrowed_when_already_so() {
        assert!(matches!(key("seq"), Cow::Borrowed("seq")));
        assert_eq!(key("ReceiveMessage"), "receivemessage");
        assert_eq!(key("ÄrgerNIS"), "ärgernis");
        assert_eq!(key("ǅemal"), "ǆemal"); // title case: not upper case, still folded
    }

    fn args(values: &serde_json::Value) -> Arguments {
        Arguments::from_values(PayloadFormat::Json, values).unwrap()
    }

    fn call<A>(h: &impl Handler<A>, values: &serde_json::Value) -> Result<(), BindError> {
        h.call(&args(values)).map(drop)
    }

    #[derive(serde::Deserialize)]
    struct Tick {
        #[allow(dead_code)]
        price: f64,
    }

    #[test]
    fn each_parameter_binds_one_argument() {
        let two = |_: String, _: i64| async {};
        assert!(call(&two, &serde_json::json!(["a", 1])).is_ok());
        assert!(matches!(
            call(&two, &serde_json::json!(["a"])),
            Err(BindError::Count {
                expected: 2,
                got: 1
            })
        ));
        assert!(matches!(
            call(&two, &serde_json::json!(["a", "b"])),
            Err(BindError::Argument { position: 1, .. })
        ));
        let none = || async {};
        assert!(call(&none, &serde_json::json!([])).is_ok());
        assert!(matches!(
            call(&none, &serde_json::json!([1])),
            Err(BindError::Count {
                expected: 0,
                got: 1
            })
        ));
        // One parameter of a struct type takes one argument, not the list.
        let tick = |_: Tick| async {};
        assert!(call(&tick, &serde_json::json!([{"price": 1.5}])).is_ok());
        assert!(matches!(
            call(&tick, &serde_json::json!([{"cost": 1.5}])),
            Err(BindError::Argument { position: 0, .. })
        ));
    }
}
