//! [`Command`]: what the handles ask of the driver — the core's [`Request`] over tokio's
//! channels, each answer sent by the core that holds it and, if a request is ever dropped
//! unanswered (the runtime shutting down), by its [`Reply`]'s `Drop` (hyper's reply-on-drop).

use signalr_protocol::{CompletionResult, Payload};
use tokio::sync::{mpsc, oneshot};

pub(crate) use crate::core::send_size;
use crate::{
    core::{Answer, Request, Room, Sinks, StreamSink},
    error::{HubError, Result},
    shared::Reservation,
};

/// Requests from handles to the driver.
pub(crate) type Command = Request<Channels>;

/// The core's sinks over tokio's channels.
pub(crate) struct Channels;

impl Sinks for Channels {
    type Invoke = Reply<CompletionResult>;
    type Send = Reply<()>;
    type Stream = mpsc::Sender<Result<Payload>>;
    type Stop = oneshot::Sender<()>;
    type Reservation = Reservation;
}

/// A one-time answer that is always given: by [`Answer::answer`], or when dropped unanswered,
/// [`HubError::Stopped`].
pub(crate) struct Reply<T>(Option<oneshot::Sender<Result<T>>>);

impl<T> Reply<T> {
    /// A reply and the receiver its answer arrives on.
    pub(crate) fn new() -> (Self, oneshot::Receiver<Result<T>>) {
        let (tx, rx) = oneshot::channel();
        (Self(Some(tx)), rx)
    }
}

impl<T> Answer<T> for Reply<T> {
    fn answer(mut self, result: Result<T>) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(result);
        }
    }
}

impl<T> Drop for Reply<T> {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(Err(HubError::Stopped));
        }
    }
}

impl StreamSink for mpsc::Sender<Result<Payload>> {
    fn room(&self) -> Room {
        // The last slot is kept for the stream's end (an error, the connection's loss), so that
        // a consumer always learns why a stream stopped.
        if self.is_closed() {
            Room::Closed
        } else if self.capacity() > 1 {
            Room::Free
        } else {
            Room::Full
        }
    }

    fn push(&self, item: Result<Payload>) {
        // Only a full or closed stream refuses: an item was checked for room, an end has the
        // last slot.
        let _ = self.try_send(item);
    }
}
