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
    /// The transport's first request got 404 for the connection negotiate had just created:
    /// behind a load balancer, it reached another server instance. Such deployments need
    /// sticky sessions (session affinity), or WebSockets with negotiation skipped.
    #[error(
        "{what} answered 404 for the connection negotiate had just created: behind a load balancer, enable sticky sessions (session affinity) or skip negotiation with WebSockets"
    )]
    UnknownConnection {
        /// What was requested: `"WebSocket upgrade"`, `"event stream"`, `"first poll"`.
        what: &'static str,
    },
    /// A request on a started connection (a poll, a send, an event stream) was answered 401 or
    /// 403: its token expired or was revoked. Retryable: a new connection negotiates again and
    /// asks the token factory for a fresh token.
    #[error("{what} was refused with HTTP {status}; the credentials expired or were revoked")]
    Unauthorized {
        /// What was requested.
        what: &'static str,
        /// 401 or 403.
        status: u16,
    },
    /// A proxy answered a request or a `CONNECT` with something other than success: 407 wants
    /// credentials (in the proxy URL's userinfo), 403 forbids the destination, 502 or 503 could
    /// not reach it.
    #[error("proxy {proxy} refused with HTTP {status}")]
    ProxyRefused {
        /// The proxy, as `scheme://host:port` (credentials removed).
        proxy: String,
        /// The proxy's status code.
        status: u16,
    },
    /// A proxy could not be reached, or broke the tunnel.
    #[error("proxy {proxy} failed")]
    Proxy {
        /// The proxy, as `scheme://host:port` (credentials removed).
        proxy: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// A peer (the server, a proxy, a load balancer) answered with an HTTP head that is not
    /// valid or is larger than allowed.
    #[error("malformed {what} response: {reason}")]
    MalformedResponse {
        /// What was requested: `"WebSocket upgrade"`, `"proxy CONNECT"`.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// We did not accept the server's certificate (unknown issuer, wrong name, expired), or
    /// there was no root to check it against. Not retryable: the configuration must change.
    #[error("the server's TLS certificate is not trusted")]
    UntrustedCertificate {
        /// What rustls said about the certificate.
        detail: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// The server refused our TLS client certificate, or asked for one and got none. Not
    /// retryable: the identity must change.
    #[error("the server rejected the TLS client certificate ({alert})")]
    CertificateRejected {
        /// The TLS alert the server sent (`CertificateRequired`, `UnknownCA`, …).
        alert: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// A client identity (certificate chain and key) could not be read or used.
    #[error("invalid TLS client identity: {reason}")]
    InvalidIdentity {
        /// What is wrong with it.
        reason: String,
    },
    /// A cookie could not be added to a jar.
    #[error("invalid cookie: {reason}")]
    InvalidCookie {
        /// What is wrong with it.
        reason: String,
    },
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
            Self::Status { status, .. } | Self::ProxyRefused { status, .. } => {
                *status >= 500 || *status == 408 || *status == 429
            }
            Self::Http { .. }
            | Self::Proxy { .. }
            | Self::Unauthorized { .. }
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
