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
    driver::Command,
    error::{HubError, Result},
};

/// The items of a streaming call, bound to `T`. Ends after the last item; an error item ends it
/// too. Dropping it before the end sends `CancelInvocation`, and the server stops producing.
#[must_use = "a stream does nothing unless polled; dropping it cancels the call"]
pub struct HubStream<T> {
    pub(crate) id: String,
    pub(crate) items: mpsc::Receiver<Result<Payload>>,
    pub(crate) commands: mpsc::Sender<Box<Command>>,
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
            Poll::Ready(Some(Ok(payload))) => {
                Poll::Ready(Some(payload.deserialize::<T>().map_err(HubError::Payload)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T> Drop for HubStream<T> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.commands.try_send(Box::new(Command::Cancel {
                id: std::mem::take(&mut self.id),
            }));
        }
    }
}
