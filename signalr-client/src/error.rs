//! The errors of the client.

use std::sync::Arc;

use signalr_protocol::ProtocolError;
use signalr_transport::TransportError;

use crate::HubConnectionState;

/// Errors returned by [`HubConnection`](crate::HubConnection) operations.
///
/// `Display` shows its own level only; causes are in [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// The hub method ran on the server and reported failure (`Completion.error`).
    #[error("hub method failed: {message}")]
    Invocation {
        /// The server's message.
        message: String,
    },
    /// The operation needs a connected hub; the connection was in `state`.
    #[error("connection is {state:?}, not Connected")]
    NotConnected {
        /// The state at the time.
        state: HubConnectionState,
    },
    /// The connection was lost while the operation was in flight; the cause is attached.
    #[error("the connection was lost")]
    ConnectionLost(#[source] Arc<Self>),
    /// The connection was stopped while the operation was in flight.
    #[error("the connection was stopped")]
    Stopped,
    /// Nothing arrived from the server within the server timeout.
    #[error("server timed out")]
    ServerTimeout,
    /// The server sent a Close message.
    #[error("the server closed the connection{}", error.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    ServerClosed {
        /// The Close message's error, if any.
        error: Option<String>,
        /// Whether the server allowed reconnecting.
        allow_reconnect: bool,
    },
    /// The transport ended without an error and without a Close message.
    #[error("the server ended the connection")]
    ConnectionClosed,
    /// The server refused the handshake.
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// The handshake did not complete within the handshake timeout.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// Arguments or results could not be (de)serialized with the active protocol.
    #[error("could not (de)serialize a hub payload")]
    Payload(#[source] ProtocolError),
    /// The server violated the hub protocol.
    #[error("protocol error")]
    Protocol(#[source] ProtocolError),
    /// A stream's consumer fell behind by more than the stream buffer; the stream was
    /// cancelled.
    #[error("stream consumer too slow; the stream was cancelled")]
    StreamConsumerTooSlow,
    /// A call made while reconnecting found the outbox full; it was not queued.
    #[error("the outbox is full ({capacity} calls wait for the reconnect)")]
    OutboxFull {
        /// The configured capacity.
        capacity: usize,
    },
    /// A stateful connection could not be resumed; a new one replaces it, and the messages the
    /// server had not acknowledged are lost (they may or may not have reached it).
    #[error(
        "the connection could not be resumed; {unacknowledged} messages the server had not acknowledged are lost"
    )]
    ResumeFailed {
        /// How many sent messages were never acknowledged.
        unacknowledged: usize,
        /// Why the connection was lost in the first place.
        #[source]
        cause: Arc<Self>,
    },
    /// The underlying transport failed.
    #[error("transport error")]
    Transport(#[source] TransportError),
    /// The operation was not valid in the connection's state (for example `start` twice).
    #[error("cannot {operation} a connection that is {state:?}")]
    InvalidState {
        /// What was attempted.
        operation: &'static str,
        /// The state at the time.
        state: HubConnectionState,
    },
}

impl HubError {
    /// Whether the automatic-reconnect policy should be consulted for a connection lost with
    /// this error: transport failures, timeouts, a server close that allows reconnecting.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport(e) => e.is_retryable(),
            Self::ServerTimeout | Self::ConnectionClosed | Self::HandshakeTimeout => true,
            Self::ServerClosed {
                allow_reconnect, ..
            } => *allow_reconnect,
            Self::ConnectionLost(cause) | Self::ResumeFailed { cause, .. } => cause.is_retryable(),
            _ => false,
        }
    }
}

/// A setting `HubConnectionBuilder::build` refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The hub URL cannot be used.
    #[error("invalid hub URL")]
    Url(#[source] TransportError),
    /// The proxy or TLS settings cannot be used (a malformed proxy URL, a root that is not a
    /// certificate, an identity whose key does not fit).
    #[error("invalid transport settings")]
    Transport(#[source] TransportError),
    /// Keep-alive, server timeout or handshake timeout do not fit together.
    #[error("invalid keep-alive settings")]
    KeepAlive(#[source] signalr_reconnect::ConfigError),
    /// Skipping negotiation needs the WebSockets transport.
    #[error("skip negotiation requires the WebSockets transport")]
    SkipNegotiationNeedsWebSockets,
    /// No transport is allowed.
    #[error("no transport is allowed")]
    NoTransport,
}

/// Shorthand for results of this crate.
pub type Result<T, E = HubError> = std::result::Result<T, E>;
