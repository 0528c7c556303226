//! The errors of the client.

use std::{fmt, sync::Arc, time::Duration};

use signalr_protocol::ProtocolError;
use signalr_transport::TransportError;

use crate::state::HubConnectionState;

/// Errors returned by [`HubConnection`](crate::HubConnection) operations.
///
/// `{}` shows the error's own level only (the hyper convention), `{:#}` the whole chain of
/// causes, `: `-separated; the causes are also in [`std::error::Error::source`].
///
/// ```
/// use signalr_client::HubError;
/// use signalr_client::transport::TransportError;
///
/// let e = HubError::Transport(TransportError::Status { what: "negotiate", status: 401 });
/// assert_eq!(e.to_string(), "transport error");
/// assert_eq!(format!("{e:#}"), "transport error: negotiate returned HTTP 401");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// The hub method ran on the server and reported failure (`Completion.error`).
    Invocation {
        /// The server's message.
        message: String,
    },
    /// The operation needs a connected hub; the connection was in `state`.
    NotConnected {
        /// The state at the time.
        state: HubConnectionState,
    },
    /// The connection was lost while the operation was in flight; the cause is attached.
    ConnectionLost(#[source] Arc<Self>),
    /// The connection was stopped while the operation was in flight.
    Stopped,
    /// Nothing arrived from the server within the server timeout.
    ServerTimeout,
    /// The server sent a Close message.
    ServerClosed {
        /// The Close message's error, if any.
        error: Option<String>,
        /// Whether the server allowed reconnecting.
        allow_reconnect: bool,
    },
    /// The transport ended without an error and without a Close message.
    ConnectionClosed,
    /// The handshake failed: refused by the server, cut short, or answered with something that
    /// is not a handshake response.
    Handshake(#[source] HandshakeError),
    /// The handshake did not complete within the handshake timeout.
    HandshakeTimeout,
    /// A payload could not be serialized or bound: a call's arguments, one argument of a
    /// server-to-client call, a result or a stream item.
    Payload {
        /// The hub method (or client method) the payload belongs to.
        method: String,
        /// Which part of the message.
        part: PayloadPart,
        /// serde's reason.
        #[source]
        source: ProtocolError,
    },
    /// A server-to-client call came with another number of arguments than its handler takes.
    ArgumentCount {
        /// The client method.
        method: String,
        /// How many the handler takes.
        expected: usize,
        /// How many the server sent.
        got: usize,
    },
    /// A handler for a server-to-client call panicked.
    HandlerPanicked {
        /// The client method.
        method: String,
    },
    /// The server violated the hub protocol.
    Protocol(#[source] ProtocolError),
    /// A stream's consumer fell behind by more than the stream buffer; the stream was
    /// cancelled.
    StreamConsumerTooSlow,
    /// A call made while reconnecting found the outbox full; it was not queued.
    OutboxFull {
        /// The configured capacity.
        capacity: usize,
    },
    /// A stateful connection could not be resumed; a new one replaces it, and the messages the
    /// server had not acknowledged are lost (they may or may not have reached it).
    ResumeFailed {
        /// How many sent messages were never acknowledged.
        unacknowledged: usize,
        /// Why the connection was lost in the first place.
        #[source]
        cause: Arc<Self>,
    },
    /// The automatic-reconnect policy gave up: the connection is closed for good.
    ReconnectFailed {
        /// How many reconnect attempts were made.
        attempts: u32,
        /// How long it tried, from the loss.
        elapsed: Duration,
        /// Why the last attempt failed.
        #[source]
        last: Arc<Self>,
    },
    /// The underlying transport failed.
    Transport(#[source] TransportError),
    /// The operation was not valid in the connection's state (for example `start` twice).
    InvalidState {
        /// What was attempted.
        operation: &'static str,
        /// The state at the time.
        state: HubConnectionState,
    },
}

/// Which part of a hub message a [`HubError::Payload`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PayloadPart {
    /// A call's arguments could not be serialized.
    Arguments,
    /// The argument at this position (from 0) of a server-to-client call did not bind to the
    /// handler's parameter.
    Argument(usize),
    /// An invocation's result did not bind to the type asked for.
    Result,
    /// A stream item did not bind to the stream's type.
    StreamItem,
}

impl fmt::Display for PayloadPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Arguments => f.write_str("the arguments"),
            Self::Argument(i) => write!(f, "argument {i}"),
            Self::Result => f.write_str("the result"),
            Self::StreamItem => f.write_str("a stream item"),
        }
    }
}

/// Writes `e`'s own level, then (for `{:#}`) each of its causes after `: `.
fn chain(
    e: &(dyn std::error::Error + 'static),
    f: &mut fmt::Formatter<'_>,
    level: impl FnOnce(&mut fmt::Formatter<'_>) -> fmt::Result,
) -> fmt::Result {
    level(f)?;
    if f.alternate() {
        let mut cause = e.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
    }
    Ok(())
}

impl fmt::Display for HubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        chain(self, f, |f| match self {
            Self::Invocation { message } => write!(f, "hub method failed: {message}"),
            Self::NotConnected { state } => write!(f, "connection is {state}, not Connected"),
            Self::ConnectionLost(_) => f.write_str("the connection was lost"),
            Self::Stopped => f.write_str("the connection was stopped"),
            Self::ServerTimeout => f.write_str("server timed out"),
            Self::ServerClosed { error: None, .. } => {
                f.write_str("the server closed the connection")
            }
            Self::ServerClosed { error: Some(e), .. } => {
                write!(f, "the server closed the connection: {e}")
            }
            Self::ConnectionClosed => f.write_str("the server ended the connection"),
            Self::Handshake(_) => f.write_str("handshake failed"),
            Self::HandshakeTimeout => f.write_str("handshake timed out"),
            Self::Payload {
                method,
                part: part @ PayloadPart::Arguments,
                ..
            } => write!(f, "{part} of '{method}' could not be serialized"),
            Self::Payload { method, part, .. } => write!(f, "{part} of '{method}' does not bind"),
            Self::ArgumentCount {
                method,
                expected,
                got,
            } => write!(
                f,
                "the server called '{method}' with {got} argument(s); its handler takes {expected}"
            ),
            Self::HandlerPanicked { method } => write!(f, "the handler for '{method}' panicked"),
            Self::Protocol(_) => f.write_str("protocol error"),
            Self::StreamConsumerTooSlow => {
                f.write_str("stream consumer too slow; the stream was cancelled")
            }
            Self::OutboxFull { capacity } => write!(
                f,
                "the outbox is full ({capacity} calls wait for the reconnect)"
            ),
            Self::ResumeFailed { unacknowledged, .. } => write!(
                f,
                "the connection could not be resumed; {unacknowledged} messages the server had not acknowledged are lost"
            ),
            Self::ReconnectFailed {
                attempts, elapsed, ..
            } => write!(
                f,
                "reconnect gave up after {attempts} attempt{} in {:.1} s",
                if *attempts == 1 { "" } else { "s" },
                elapsed.as_secs_f64()
            ),
            Self::Transport(_) => f.write_str("transport error"),
            Self::InvalidState { operation, state } => {
                write!(f, "cannot {operation} a connection that is {state}")
            }
        })
    }
}

/// Why a handshake failed ([`HubError::Handshake`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The server answered with an error, in its words (for example "Requested protocol
    /// 'messagepack' is not available.").
    #[error("the server refused it: {0}")]
    Refused(String),
    /// The transport ended before the server answered.
    #[error("the server closed the connection during the handshake")]
    Closed,
    /// The answer is not a handshake response (a proxy's error page, a server that does not
    /// speak SignalR).
    #[error("the answer is not a handshake response")]
    Malformed(#[source] ProtocolError),
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

/// A setting `HubConnectionBuilder::build` refused. `{:#}` shows the causes too.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The hub URL cannot be used.
    Url(#[source] TransportError),
    /// The proxy or TLS settings cannot be used (a malformed proxy URL, a root that is not a
    /// certificate, an identity whose key does not fit).
    Transport(#[source] TransportError),
    /// Keep-alive, server timeout or handshake timeout do not fit together.
    KeepAlive(#[source] signalr_reconnect::ConfigError),
    /// Skipping negotiation needs the WebSockets transport.
    SkipNegotiationNeedsWebSockets,
    /// No transport is allowed.
    NoTransport,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        chain(self, f, |f| {
            f.write_str(match self {
                Self::Url(_) => "invalid hub URL",
                Self::Transport(_) => "invalid transport settings",
                Self::KeepAlive(_) => "invalid keep-alive settings",
                Self::SkipNegotiationNeedsWebSockets => {
                    "skip negotiation requires the WebSockets transport"
                }
                Self::NoTransport => "no transport is allowed",
            })
        })
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = HubError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alternate_form_shows_every_cause() {
        let lost =
            HubError::ConnectionLost(Arc::new(HubError::Transport(TransportError::Status {
                what: "poll",
                status: 500,
            })));
        assert_eq!(lost.to_string(), "the connection was lost");
        assert_eq!(
            format!("{lost:#}"),
            "the connection was lost: transport error: poll returned HTTP 500"
        );
        let gave_up = HubError::ReconnectFailed {
            attempts: 4,
            elapsed: Duration::from_millis(42_300),
            last: Arc::new(HubError::ServerTimeout),
        };
        assert_eq!(
            format!("{gave_up:#}"),
            "reconnect gave up after 4 attempts in 42.3 s: server timed out"
        );
        let bind = HubError::Payload {
            method: "tick".into(),
            part: PayloadPart::Argument(0),
            source: ProtocolError::Deserialize {
                format: "JSON",
                source: "invalid type: string \"x\", expected i64".into(),
            },
        };
        assert_eq!(bind.to_string(), "argument 0 of 'tick' does not bind");
        assert_eq!(
            format!("{bind:#}"),
            "argument 0 of 'tick' does not bind: could not deserialize a JSON payload: invalid type: string \"x\", expected i64"
        );
    }
}
