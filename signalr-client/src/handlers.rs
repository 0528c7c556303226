//! Client methods the server calls (`on`), client results, and the task that runs them.

use std::{
    collections::HashMap,
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex, PoisonError},
};

use futures_util::{FutureExt as _, future::BoxFuture};
use signalr_protocol::{Arguments, Completion, Payload, PayloadFormat};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// What one handler produced.
pub(crate) enum Outcome {
    /// A plain handler: no value.
    Done,
    /// A client-result handler's value.
    Value(Payload),
    /// The handler failed (an error, a panic).
    Failed(String),
    /// The arguments did not bind to the handler's types: why.
    Unbound(String),
}

pub(crate) type HandlerFn =
    Arc<dyn Fn(Arguments, PayloadFormat) -> BoxFuture<'static, Outcome> + Send + Sync>;

/// The handlers of one target, in registration order, with their ids.
type HandlerList = Arc<Vec<(u64, HandlerFn)>>;

/// Registered handlers by lower-cased target (the official clients match case-insensitively).
///
/// Each target's list is shared, copied on write: a server invocation takes a snapshot (one
/// reference count) under the lock and runs the handlers after releasing it.
#[derive(Default)]
pub(crate) struct Handlers {
    map: Mutex<HashMap<String, HandlerList>>,
    next: std::sync::atomic::AtomicU64,
    /// Bumped by every change, so that a reader may keep a list while it is unchanged.
    generation: std::sync::atomic::AtomicU64,
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
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut map = self.lock();
        let list = map.entry(key(target).into_owned()).or_default();
        Arc::make_mut(list).push((id, f));
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        id
    }

    pub(crate) fn remove(&self, target: &str, id: u64) {
        let mut map = self.lock();
        let key = key(target);
        if let Some(list) = map.get_mut(key.as_ref()) {
            Arc::make_mut(list).retain(|(i, _)| *i != id);
            if list.is_empty() {
                map.remove(key.as_ref());
            }
        }
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    fn get(&self, target: &str) -> Option<HandlerList> {
        self.lock().get(key(target).as_ref()).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HandlerList>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Unregisters its handler when dropped.
#[must_use = "dropping a Subscription unregisters the handler"]
pub struct Subscription {
    pub(crate) handlers: Arc<Handlers>,
    pub(crate) target: String,
    pub(crate) id: u64,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// Keeps the handler registered for the connection's whole life.
    pub fn forever(self) {
        std::mem::forget(self);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.handlers.remove(&self.target, self.id);
    }
}

/// A server-to-client invocation waiting for its handlers.
pub(crate) struct Dispatch {
    pub(crate) target: String,
    pub(crate) arguments: Arguments,
    /// Present for client results: the answer goes back as a Completion.
    pub(crate) invocation_id: Option<String>,
}

/// Runs handlers one invocation at a time, in arrival order, off the driver task so that slow
/// handlers never delay pings or timeouts. Client-result answers go back on `answers`.
pub(crate) async fn run(
    handlers: Arc<Handlers>,
    format: PayloadFormat,
    mut incoming: mpsc::Receiver<Vec<Dispatch>>,
    answers: mpsc::UnboundedSender<Box<Completion>>,
) {
    let mut lookup = Lookup::default();
    while let Some(batch) = incoming.recv().await {
        for d in batch {
            let found = lookup.get(&handlers, &d.target);
            if !handle(found, format, d, &answers).await {
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
        let generation = handlers
            .generation
            .load(std::sync::atomic::Ordering::Acquire);
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
    found: HandlerList,
    format: PayloadFormat,
    d: Dispatch,
    answers: &mpsc::UnboundedSender<Box<Completion>>,
) -> bool {
    if found.is_empty() {
        debug!(target = d.target, "no handler for a server invocation");
    }
    let Dispatch {
        target,
        arguments,
        invocation_id,
    } = d;
    let mut values = Vec::new();
    let mut failure = None;
    // Each handler gets the arguments; the last takes them, the others a copy.
    let mut arguments = Some(arguments);
    let last = found.len().saturating_sub(1);
    for (i, (_, f)) in found.iter().enumerate() {
        let args = if i == last {
            arguments.take()
        } else {
            arguments.clone()
        };
        let Some(args) = args else { break };
        // A handler may panic when called (binding its arguments, or a plain `fn` that makes
        // its future) or when polled: either fails this invocation, not the task.
        let panicked = || Outcome::Failed(format!("the handler for '{target}' panicked"));
        let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| f(args, format))) {
            Ok(future) => AssertUnwindSafe(future)
                .catch_unwind()
                .await
                .unwrap_or_else(|_| panicked()),
            Err(_) => panicked(),
        };
        match outcome {
            Outcome::Done => {}
            Outcome::Value(v) => values.push(v),
            Outcome::Failed(e) => {
                warn!(target, error = e, "handler failed");
                failure.get_or_insert(e);
            }
            Outcome::Unbound(e) => {
                let e = format!("arguments for '{target}' do not bind: {e}");
                warn!(target, error = e, "handler failed");
                failure.get_or_insert(e);
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

    use super::key;

    #[test]
    fn keys_are_lower_case_and_borrowed_when_already_so() {
        assert!(matches!(key("seq"), Cow::Borrowed("seq")));
        assert_eq!(key("ReceiveMessage"), "receivemessage");
        assert_eq!(key("ÄrgerNIS"), "ärgernis");
        assert_eq!(key("ǅemal"), "ǆemal"); // title case: not upper case, still folded
    }
}
