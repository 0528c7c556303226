//! [`Command`]: what the handles ask of the driver, and what each costs on the wire.

use signalr_protocol::{Arguments, CompletionResult, Headers, Payload};
use tokio::sync::{mpsc, oneshot};

use crate::{error::Result, shared::Reservation};

/// Requests from handles to the driver.
pub(crate) enum Command {
    Invoke {
        id: String,
        target: String,
        /// Its trace context (feature `opentelemetry`), else empty.
        headers: Headers,
        arguments: Arguments,
        /// Ids of client-to-server streams that are arguments of this call.
        stream_ids: Vec<String>,
        reply: oneshot::Sender<Result<CompletionResult>>,
    },
    Send {
        target: String,
        headers: Headers,
        arguments: Arguments,
        /// Ids of client-to-server streams that are arguments of this call.
        stream_ids: Vec<String>,
        /// `None` for a send already reported done when it was queued.
        reply: Option<oneshot::Sender<Result<()>>>,
        /// Its share of the replay buffer's room, for a send done once queued.
        reservation: Option<Reservation>,
    },
    Stream {
        id: String,
        target: String,
        headers: Headers,
        arguments: Arguments,
        /// Ids of client-to-server streams that are arguments of this call.
        stream_ids: Vec<String>,
        items: mpsc::Sender<Result<Payload>>,
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
        reply: oneshot::Sender<()>,
    },
}

/// About how many bytes a message's envelope takes on the wire beside its target and payload.
pub(crate) const ENVELOPE: usize = 64;

/// About how many bytes a call of `target` with `arguments` takes on the wire: the size a send
/// done once queued reserves, and [`Command::size_hint`] of every call.
pub(crate) fn send_size(target: &str, arguments: &Arguments) -> usize {
    ENVELOPE + target.len() + arguments.as_bytes().len()
}

impl Command {
    /// About how many bytes the command's message takes on the wire (its payload plus the
    /// envelope), for the replay buffer's budget.
    pub(crate) fn size_hint(&self) -> usize {
        match self {
            Self::Invoke {
                target, arguments, ..
            }
            | Self::Send {
                target, arguments, ..
            }
            | Self::Stream {
                target, arguments, ..
            } => send_size(target, arguments),
            Self::UploadItem { item, .. } => ENVELOPE + item.as_bytes().len(),
            Self::Cancel { .. } | Self::UploadDone { .. } | Self::Stop { .. } => ENVELOPE,
        }
    }
}
