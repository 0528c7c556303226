//! [`Request`]: what the application asks of a connection, and [`Sinks`]: how the core answers
//! it, without naming the channels the answers travel on.

use signalr_protocol::{Arguments, CompletionResult, Headers, Payload};

use crate::error::{HubError, Result};

/// How the core hands answers back. The shell implements it over its channels, tests over
/// plain values: the core never waits on any of them.
pub(crate) trait Sinks {
    /// Where an invocation's completion goes.
    type Invoke: Answer<CompletionResult>;
    /// Where the outcome of a send that waits for it goes.
    type Send: Answer<()>;
    /// Where a stream's items and end go.
    type Stream: StreamSink;
    /// Told once the connection is down after a stop.
    type Stop;
    /// Dropped once its send is written or refused (room in the replay buffer given back).
    type Reservation;
}

/// A one-time answer.
pub(crate) trait Answer<T> {
    fn answer(self, result: Result<T>);
}

/// Whether a stream's consumer can take an item now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Room {
    /// There is room (and the last slot is still free for the stream's end).
    Free,
    /// Full: the item waits, and reading with it (backpressure).
    Full,
    /// The consumer has gone: the stream is cancelled.
    Closed,
}

/// A stream's consumer.
pub(crate) trait StreamSink {
    /// Whether an item fits now.
    fn room(&self) -> Room;
    /// Hands over an item (after [`room`](Self::room) said `Free`) or the stream's end (an
    /// error; the last slot is kept for it).
    fn push(&self, item: Result<Payload>);
}

/// A request from the application.
pub(crate) enum Request<S: Sinks> {
    Invoke {
        id: String,
        target: String,
        /// Its trace context (feature `opentelemetry`), else empty.
        headers: Headers,
        arguments: Arguments,
        /// Ids of client-to-server streams that are arguments of this call.
        stream_ids: Vec<String>,
        reply: S::Invoke,
    },
    Send {
        target: String,
        headers: Headers,
        arguments: Arguments,
        /// Ids of client-to-server streams that are arguments of this call.
        stream_ids: Vec<String>,
        /// `None` for a send already reported done when it was queued.
        reply: Option<S::Send>,
        /// Its share of the replay buffer's room, for a send done once queued.
        reservation: Option<S::Reservation>,
    },
    Stream {
        id: String,
        target: String,
        headers: Headers,
        arguments: Arguments,
        /// Ids of client-to-server streams that are arguments of this call.
        stream_ids: Vec<String>,
        items: S::Stream,
    },
    Cancel {
        id: String,
    },
    /// One item of client-to-server stream `id`.
    UploadItem {
        id: String,
        item: Payload,
    },
    /// The end of client-to-server stream `id`, with an error if it failed.
    UploadDone {
        id: String,
        error: Option<String>,
    },
    Stop {
        reply: S::Stop,
    },
}

/// About how many bytes a message's envelope takes on the wire beside its target and payload.
pub(crate) const ENVELOPE: usize = 64;

/// About how many bytes a call of `target` with `arguments` takes on the wire: the size a send
/// done once queued reserves.
pub(crate) fn send_size(target: &str, arguments: &Arguments) -> usize {
    ENVELOPE + target.len() + arguments.as_bytes().len()
}

impl<S: Sinks> Request<S> {
    /// Answers a request that will not be carried out with `error`; `true` for a send that was
    /// reported done when queued (nobody learns of it but the log). A stop is handed back.
    pub(crate) fn refuse(self, error: impl Fn() -> HubError) -> Refused<S> {
        match self {
            Self::Invoke { reply, .. } => reply.answer(Err(error())),
            Self::Send {
                reply: Some(reply), ..
            } => reply.answer(Err(error())),
            Self::Send { .. } => return Refused::Unsent,
            Self::Stream { items, .. } => items.push(Err(error())),
            // The items of an upload whose call could not be made go nowhere.
            Self::Cancel { .. } | Self::UploadItem { .. } | Self::UploadDone { .. } => {}
            Self::Stop { reply } => return Refused::Stop(reply),
        }
        Refused::Answered
    }
}

/// What refusing a request left to do.
pub(crate) enum Refused<S: Sinks> {
    /// Its caller has the error (or there was no caller).
    Answered,
    /// A send reported done when queued: only the log can tell.
    Unsent,
    /// A stop, to acknowledge once the connection is down.
    Stop(S::Stop),
}
