//! [`HubStream`]: the items of a server-to-client stream.

use std::{
    marker::PhantomData,
    pin::Pin,
    task::{Context, Poll},
};

use futures_util::Stream;
use serde::de::DeserializeOwned;
use signalr_protocol::Payload;
use tokio::sync::mpsc;

use crate::{
    command::Command,
    error::{HubError, PayloadPart, Result},
};

/// The items of a streaming call, bound to `T`. Ends after the last item; an error ends it
/// too: the server's, a lost connection, or an item that does not bind to `T` (which also
/// cancels the call). Dropping it before the end sends `CancelInvocation`, and the server stops
/// producing; the call's uploads stop with it.
///
/// While it lives it holds the connection's command queue: the connection is not stopped by
/// dropping every [`HubConnection`](crate::HubConnection) until its streams are dropped too.
#[must_use = "a stream does nothing unless polled; dropping it cancels the call"]
pub struct HubStream<T> {
    pub(crate) span: StreamSpan,
    pub(crate) id: String,
    pub(crate) method: String,
    pub(crate) items: mpsc::Receiver<Result<Payload>>,
    pub(crate) commands: mpsc::Sender<Box<Command>>,
    /// The call's uploads, stopped when the stream is dropped.
    pub(crate) pumps: Vec<tokio::task::JoinHandle<()>>,
    pub(crate) done: bool,
    pub(crate) _type: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for HubStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubStream")
            .field("id", &self.id)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<T: DeserializeOwned> Stream for HubStream<T> {
    type Item = Result<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.items.poll_recv(cx) {
            Poll::Ready(Some(Ok(payload))) => match payload.deserialize::<T>() {
                Ok(item) => {
                    self.span.items += 1;
                    Poll::Ready(Some(Ok(item)))
                }
                Err(source) => {
                    // The stream ends with the error: the rest could not bind either.
                    self.span.outcome = "payload_error";
                    self.cancel();
                    Poll::Ready(Some(Err(HubError::Payload {
                        method: self.method.clone(),
                        part: PayloadPart::StreamItem,
                        source,
                    })))
                }
            },
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                self.span.outcome = if matches!(e, HubError::Invocation { .. }) {
                    "hub_error"
                } else {
                    "connection_error"
                };
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.done = true;
                self.span.outcome = "ok";
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T> HubStream<T> {
    /// Cancels the call on the server, once.
    fn cancel(&mut self) {
        if !self.done {
            self.done = true;
            let _ = self.commands.try_send(Box::new(Command::Cancel {
                id: std::mem::take(&mut self.id),
            }));
        }
    }
}

impl<T> Drop for HubStream<T> {
    fn drop(&mut self) {
        self.cancel();
        for pump in &self.pumps {
            pump.abort();
        }
    }
}

/// A stream's `signalr.stream` span: closed, with its outcome (`cancelled` when dropped before
/// its end), item count and duration, when the stream is dropped.
pub(crate) struct StreamSpan {
    span: tracing::Span,
    started: Option<std::time::Instant>,
    items: u64,
    outcome: &'static str,
}

impl StreamSpan {
    pub(crate) fn new(span: tracing::Span) -> Self {
        // No clock read when nobody listens.
        let started = (!span.is_disabled()).then(crate::rt::now);
        Self {
            span,
            started,
            items: 0,
            outcome: "cancelled",
        }
    }
}

impl Drop for StreamSpan {
    fn drop(&mut self) {
        if let Some(started) = self.started {
            self.span.record("signalr.outcome", self.outcome);
            self.span.record("signalr.items", self.items);
            self.span
                .record("signalr.duration_us", crate::rt::micros_since(started));
        }
    }
}
