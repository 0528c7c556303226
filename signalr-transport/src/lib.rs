//! SignalR transports: negotiate, WebSockets, Server-Sent Events and long polling, each usable
//! on its own.
//!
//! [`connect`] negotiates (following SignalR redirects), picks the first allowed transport the
//! server offers for the transfer format (WebSockets, then Server-Sent Events, then long
//! polling), falls back when one fails to start, and hands back a [`Transport`]: bytes out, bytes
//! in. The hub handshake and messages are the caller's ([`signalr_protocol`]), which is how the
//! client uses this crate, and how a custom stack can:
//!
//! ```no_run
//! use bytes::BytesMut;
//! use signalr_protocol::{HandshakeRequest, HandshakeResponse, HubProtocol, JsonHubProtocol, MessageDecoder};
//! use signalr_transport::{HttpOptions, connect};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let protocol = JsonHubProtocol::new();
//! let mut conn = connect("http://localhost:5000/hub", protocol.transfer_format(), &HttpOptions::default()).await?;
//! let mut hello = BytesMut::new();
//! HandshakeRequest::new(protocol.name(), 1).encode(&mut hello);
//! conn.transport.send(hello.freeze()).await?;
//! let mut buf = BytesMut::new();
//! while let Some(chunk) = conn.transport.recv().await {
//!     buf.extend_from_slice(&chunk?);
//!     if let Some(response) = HandshakeResponse::decode(&mut buf, 1 << 16)? {
//!         assert!(response.error.is_none());
//!         let mut decoder = MessageDecoder::with_buffer(protocol, buf);
//!         // … push further chunks into `decoder` and read hub messages.
//!         break;
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Tokens and logs
//!
//! The access-token factory is called for every negotiate and every transport start. The token
//! goes in an `Authorization: Bearer` header on every request, WebSocket upgrades included (a
//! native client can set headers there, unlike a browser). Set
//! [`HttpOptions::access_token_in_query`] to also send it as `access_token`, for proxies that drop
//! headers on upgrades. URLs are logged and put in errors only through [`redact`], header values
//! never, and reqwest's errors are stripped of their URLs.
//!
//! # Redirects
//!
//! Negotiate redirects are followed up to [`HttpOptions::max_redirects`] negotiate requests (100).
//! A redirect to the same URL, or from `https` to `http`, fails at once. A redirect to another
//! origin sends neither the factory's token nor the user's headers unless
//! [`CrossOriginRedirects::KeepCredentials`] is chosen; the redirect's own `accessToken` is used
//! there. HTTP 3xx redirects are not followed at all.
//!
//! # TLS
//!
//! With the default `rustls` feature, `https`/`wss` use rustls (aws-lc-rs provider, as
//! reqwest's own TLS) and trust the operating system's store by default
//! ([`Roots::Platform`], through `rustls-platform-verifier`: a corporate root installed by an
//! administrator is trusted, as in a browser), or Mozilla's roots ([`Roots::Mozilla`]), plus
//! [`TlsOptions::extra_roots`]. A client certificate ([`Identity`], PEM) is presented to
//! servers that ask for one (mutual TLS). One configuration serves every transport and an
//! `https` proxy, so verification is on for all of them, or, with
//! [`TlsOptions::danger_accept_invalid_certs`] (tests only), off for all of them. A certificate
//! we refuse is [`TransportError::UntrustedCertificate`], one the server refuses
//! [`TransportError::CertificateRejected`]; neither is retryable.
//!
//! # Cookies
//!
//! [`HttpOptions::cookies`] holds a [`CookieJar`] (a new one by default): negotiate, every
//! transport request (the WebSocket upgrade too) and every resume send what the servers set,
//! so a load balancer's affinity cookie keeps a connection on its instance. Bounded (50
//! `Set-Cookie` per response, 4 KiB each, 300 in all); values never reach logs.
//!
//! # Proxies
//!
//! [`Proxy::System`] (the default) reads `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and
//! `NO_PROXY` exactly as reqwest does, for the WebSocket too; [`Proxy::url`] names one (Basic
//! credentials as userinfo), [`Proxy::None`] goes direct. The WebSocket goes through a `CONNECT`
//! tunnel (TLS to an `https` proxy, then TLS to the hub inside it for `wss`); negotiate, SSE and
//! long polling through reqwest. A refusal is [`TransportError::ProxyRefused`] with the proxy's
//! status, a proxy that cannot be reached [`TransportError::Proxy`]; both name the proxy
//! without its credentials.
//!
//! # Behind a load balancer
//!
//! A 404 on a transport's first request for the connection negotiate had just created is
//! [`TransportError::UnknownConnection`]: another instance answered, and the deployment needs
//! sticky sessions (or WebSockets without negotiate). A 401 or 403 on a started connection's
//! poll or send is [`TransportError::Unauthorized`]: its token expired, and a new connection
//! (with a fresh negotiate and token) may succeed.

//! # Features
//!
//! - `rustls` (default): TLS as above. Without it, `https`/`wss` (and `https` proxies) fail with
//!   a clear error.

mod auth;
mod connect;
mod cookies;
mod endpoint;
mod error;
mod head;
mod long_polling;
pub mod memory;
mod negotiate;
mod net;
mod options;
mod proxy;
mod redact;
mod sse;
mod tls;
mod websocket;

use async_trait::async_trait;
use bytes::Bytes;
pub use connect::{Connection, connect, connect_with, hub_url, open};
pub use cookies::{CookieJar, MAX_COOKIE_BYTES, MAX_COOKIES, MAX_SET_COOKIES};
pub use error::{BoxError, TransportError};
/// Header names, values and maps, from the `http` crate (the types reqwest and hyper use).
pub use http::header;
pub use long_polling::LongPollingTransport;
pub use negotiate::{Negotiated, negotiate};
pub use net::HttpClient;
pub use options::{AccessTokenFactory, CrossOriginRedirects, HttpOptions, WebSocketOptions};
pub use proxy::Proxy;
pub use redact::{Redacted, redact};
pub use signalr_protocol::{TransferFormat, TransportKind};
pub use sse::SseTransport;
pub use tls::{Identity, Roots, TlsOptions};
pub use websocket::WebSocketTransport;

/// Internals exposed for the fuzz targets and the corpus-replay tests. **Not part of the API**:
/// hidden from the docs, no stability promise; it may change or go away in any release.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::sse::parse_events as sse_events;
}

/// Opens connections: what a client calls to get a started transport. [`connect`] with
/// [`HttpOptions`] is the real one; [`memory::connector`] gives in-process ones for tests, and
/// users can bring their own (another network stack, a proxy, a recorder).
#[async_trait]
pub trait Connector: Send + Sync + std::fmt::Debug {
    /// Opens a transport carrying `format`, ready for the handshake.
    async fn connect(&self, format: TransferFormat) -> Result<Connection, TransportError>;
}

/// A started transport: bytes out, bytes in.
///
/// `send` takes one or more complete framed messages; batching several into one `send` is
/// encouraged (one WebSocket message, one HTTP request). `recv` returns chunks as they arrive,
/// which may hold several messages or part of one.
#[async_trait]
pub trait Transport: Send + std::fmt::Debug {
    /// Which transport this is.
    fn kind(&self) -> TransportKind;

    /// The transfer format it carries.
    fn transfer_format(&self) -> TransferFormat;

    /// Sends bytes. Not cancel-safe: a dropped send may have sent part of the data.
    async fn send(&mut self, data: Bytes) -> Result<(), TransportError>;

    /// The next chunk from the server; `None` when the server closed cleanly. Cancel-safe:
    /// dropping the future loses nothing, so it can be used in `select!`.
    async fn recv(&mut self) -> Option<Result<Bytes, TransportError>>;

    /// Closes the transport (WebSocket close 1000, long-polling `DELETE`, dropping the event
    /// stream).
    async fn close(&mut self) -> Result<(), TransportError>;
}
