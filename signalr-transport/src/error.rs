//! The one error type of this crate.

use std::error::Error as StdError;

use signalr_protocol::TransportKind;

/// A boxed error from a dependency (reqwest, tungstenite). Downcasting it is not part of the
/// stable API: the concrete types change with dependency upgrades.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Everything that can go wrong while negotiating, connecting or using a transport.
///
/// URLs in these errors have their `access_token` parameter redacted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The URL cannot be used (not http/https/ws/wss, or malformed).
    #[error("invalid URL {url}: {reason}")]
    InvalidUrl {
        /// The URL, redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server answered with an unexpected HTTP status.
    #[error("{what} returned HTTP {status}")]
    Status {
        /// What was requested: `"negotiate"`, `"send"`, `"poll"`, `"WebSocket upgrade"`, ….
        what: &'static str,
        /// The status code.
        status: u16,
    },
    /// The negotiate response said `error`.
    #[error("negotiate failed: {0}")]
    Negotiate(String),
    /// The negotiate response is malformed or unusable.
    #[error("invalid negotiate response")]
    InvalidNegotiate(#[source] signalr_protocol::ProtocolError),
    /// The server granted stateful reconnect although the client did not ask for it.
    #[error("the server granted stateful reconnect, which was not requested")]
    UnrequestedStatefulReconnect,
    /// Negotiate redirected more times than allowed.
    #[error("negotiate redirection limit exceeded ({limit})")]
    RedirectLimit {
        /// The limit.
        limit: u32,
    },
    /// A negotiate redirect pointed back at the URL it came from.
    #[error("negotiate redirect loop at {url}")]
    RedirectLoop {
        /// The URL, redacted.
        url: String,
    },
    /// A negotiate redirect went from https to http.
    #[error("refused negotiate redirect from a secure to an insecure URL: {url}")]
    InsecureRedirect {
        /// The target URL, redacted.
        url: String,
    },
    /// None of the allowed transports is offered by the server with the needed transfer format.
    #[error("no transport is both allowed and offered by the server for this transfer format")]
    NoCommonTransport,
    /// Every transport that was tried failed; each failure is listed.
    #[error("unable to connect with any transport: {}", summary(failures))]
    AllTransportsFailed {
        /// Each transport tried and why it failed, in order.
        failures: Vec<(TransportKind, Self)>,
    },
    /// Skip-negotiation is only possible with WebSockets.
    #[error("skipping negotiation is only supported with the WebSockets transport")]
    SkipNegotiationNeedsWebSockets,
    /// The access-token factory failed.
    #[error("the access token factory failed")]
    AccessToken(#[source] BoxError),
    /// An HTTP request failed below the HTTP status level (connect, TLS, I/O).
    #[error("{what} request failed")]
    Http {
        /// What was requested.
        what: &'static str,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// The WebSocket failed to open or broke.
    #[error("WebSocket error")]
    WebSocket(#[source] BoxError),
    /// The WebSocket was closed with a code other than 1000 (Normal Closure), or without a
    /// close frame (1006).
    #[error("WebSocket closed with status code {code}{}", if reason.is_empty() { String::new() } else { format!(" ({reason})") })]
    WebSocketClosed {
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
    /// An operation did not finish in time.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What timed out.
        what: &'static str,
        /// The limit.
        after: std::time::Duration,
    },
    /// A single received message or SSE line (or SSE event, twice it) was larger than the
    /// configured maximum.
    #[error("received data exceeds the maximum message size of {max} bytes")]
    MessageTooLarge {
        /// The maximum.
        max: usize,
    },
    /// The transport is closed.
    #[error("the transport is closed")]
    Closed,
    /// The server ended the connection (long polling: 204; SSE: the event stream ended).
    #[error("the server closed the connection")]
    ClosedByServer,
    /// The server no longer knows the connection (404 on poll or send).
    #[error("the server no longer knows this connection")]
    ConnectionGone,
}

fn summary(failures: &[(TransportKind, TransportError)]) -> String {
    failures
        .iter()
        .map(|(kind, e)| format!("{}: {e}", kind.as_str()))
        .collect::<Vec<_>>()
        .join("; ")
}

impl TransportError {
    /// Whether trying again later may succeed (network failures, timeouts, 5xx, a closed or
    /// lost connection), as opposed to configuration errors (bad URL, 4xx, no common transport).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Status { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            Self::Http { .. }
            | Self::WebSocket(_)
            | Self::WebSocketClosed { .. }
            | Self::Timeout { .. }
            | Self::Closed
            | Self::ClosedByServer
            | Self::ConnectionGone => true,
            Self::AllTransportsFailed { failures } => {
                failures.iter().any(|(_, e)| e.is_retryable())
            }
            _ => false,
        }
    }
}

pub(crate) type Result<T, E = TransportError> = std::result::Result<T, E>;
