//! Options shared by negotiate and the transports.

use std::{fmt, future::Future, sync::Arc, time::Duration};

use futures_util::{FutureExt as _, future::BoxFuture};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use signalr_protocol::TransportKind;

use crate::{cookies::CookieJar, error::BoxError, proxy::Proxy};

/// An async function that returns the bearer token to send; called for every negotiate and
/// every transport connect, so it can refresh tokens. An empty string sends no token.
pub type AccessTokenFactory =
    Arc<dyn Fn() -> BoxFuture<'static, Result<String, BoxError>> + Send + Sync>;

/// What happens to credentials when negotiate redirects to another origin (scheme, host and
/// port).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CrossOriginRedirects {
    /// Follow, but send the other origin only the redirect's own `accessToken` (or no token),
    /// and none of the user's headers. The default: a token from your factory is never sent to
    /// a host you did not name.
    #[default]
    DropCredentials,
    /// Follow and keep sending the factory's token and the user's headers, as the official
    /// JavaScript client does. Only for redirects you trust.
    KeepCredentials,
    /// Refuse redirects to another origin.
    Refuse,
}

/// Options for the WebSockets transport.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WebSocketOptions {
    /// Bytes read from the socket at a time (4 KiB). tungstenite's 128 KiB default would be
    /// resident on every connection.
    pub read_buffer_size: usize,
    /// Bytes buffered before a write goes to the socket (4 KiB).
    pub write_buffer_size: usize,
    /// The most bytes queued for writing before sends fail (1 MiB): backpressure instead of
    /// unbounded memory when the server stops reading.
    pub max_write_buffer_size: usize,
}

impl Default for WebSocketOptions {
    fn default() -> Self {
        Self {
            read_buffer_size: 4 * 1024,
            write_buffer_size: 4 * 1024,
            max_write_buffer_size: 1024 * 1024,
        }
    }
}

/// How to negotiate and connect.
#[derive(Clone)]
#[non_exhaustive]
pub struct HttpOptions {
    /// The transports the client may use, tried in this order among those the server offers
    /// (all three: WebSockets, Server-Sent Events, long polling).
    pub transports: Vec<TransportKind>,
    /// Connect a WebSocket straight to the URL without negotiate (WebSockets only; no
    /// connection token, so no stateful reconnect).
    pub skip_negotiation: bool,
    /// Where bearer tokens come from.
    pub access_token_factory: Option<AccessTokenFactory>,
    /// Also put the token in an `access_token` query parameter on WebSocket and SSE connects,
    /// for servers behind proxies that drop the `Authorization` header on upgrades. Off: the
    /// header is sent on every request, which keeps tokens out of URLs (and server logs).
    pub access_token_in_query: bool,
    /// Headers sent with every request.
    pub headers: HeaderMap,
    /// The most negotiate redirects followed (100, the official clients' limit).
    pub max_redirects: u32,
    /// What redirects to another origin may carry.
    pub cross_origin_redirects: CrossOriginRedirects,
    /// Ask the server for stateful reconnect.
    pub stateful_reconnect: bool,
    /// Limit for negotiate, sends and other short requests (100 s, as the JS client).
    pub request_timeout: Duration,
    /// Limit for opening a transport (15 s).
    pub connect_timeout: Duration,
    /// How long one long poll may take before it is abandoned and re-issued (100 s, longer than
    /// the server's 90 s hold).
    pub poll_timeout: Duration,
    /// The largest message accepted from the server (1 MiB); bounds WebSocket messages and SSE
    /// lines (SSE events to twice it).
    pub max_message_size: usize,
    /// WebSocket buffer sizes.
    pub websocket: WebSocketOptions,
    /// Which certificates to trust and which to present (`https`/`wss`).
    pub tls: crate::TlsOptions,
    /// Which proxy to use ([`Proxy::System`], the environment's, by default), for every
    /// transport.
    pub proxy: Proxy,
    /// The cookie jar of negotiate, every transport request and every reconnect; a new one by
    /// default, shared by the clones of these options. `None` sends and keeps no cookies.
    pub cookies: Option<Arc<CookieJar>>,
    /// A reqwest client to send negotiate, SSE and long-polling requests with (a shared
    /// connection pool); one is built from these options when `None`. A client given here
    /// brings its own TLS and proxy settings for those requests (the WebSocket still uses
    /// [`tls`](Self::tls) and [`proxy`](Self::proxy)); leave its own cookie store off, since
    /// [`cookies`](Self::cookies) are added to every request.
    pub http_client: Option<reqwest::Client>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            transports: TransportKind::ALL.to_vec(),
            skip_negotiation: false,
            access_token_factory: None,
            access_token_in_query: false,
            headers: HeaderMap::new(),
            max_redirects: 100,
            cross_origin_redirects: CrossOriginRedirects::default(),
            stateful_reconnect: false,
            request_timeout: Duration::from_secs(100),
            connect_timeout: Duration::from_secs(15),
            poll_timeout: Duration::from_secs(100),
            max_message_size: signalr_protocol::DEFAULT_MAX_MESSAGE_SIZE,
            websocket: WebSocketOptions::default(),
            tls: crate::TlsOptions::default(),
            proxy: Proxy::default(),
            cookies: Some(Arc::new(CookieJar::new())),
            http_client: None,
        }
    }
}

impl fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values and tokens may be secrets: only names are shown.
        let headers: Vec<&HeaderName> = self.headers.keys().collect();
        f.debug_struct("HttpOptions")
            .field("transports", &self.transports)
            .field("skip_negotiation", &self.skip_negotiation)
            .field(
                "access_token_factory",
                &self.access_token_factory.as_ref().map(|_| "<factory>"),
            )
            .field("access_token_in_query", &self.access_token_in_query)
            .field("headers", &headers)
            .field("max_redirects", &self.max_redirects)
            .field("cross_origin_redirects", &self.cross_origin_redirects)
            .field("stateful_reconnect", &self.stateful_reconnect)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("poll_timeout", &self.poll_timeout)
            .field("max_message_size", &self.max_message_size)
            .field("websocket", &self.websocket)
            .field("tls", &self.tls)
            .field("proxy", &self.proxy)
            .field("cookies", &self.cookies)
            .finish_non_exhaustive()
    }
}

impl HttpOptions {
    /// Restricts the transports (in the order to try them).
    #[must_use]
    pub fn transports(mut self, transports: impl IntoIterator<Item = TransportKind>) -> Self {
        self.transports = transports.into_iter().collect();
        self
    }

    /// Connects WebSockets without negotiate.
    #[must_use]
    pub fn skip_negotiation(mut self, skip: bool) -> Self {
        self.skip_negotiation = skip;
        self
    }

    /// Sets the access-token factory.
    #[must_use]
    pub fn access_token_factory<F, Fut>(mut self, factory: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, BoxError>> + Send + 'static,
    {
        self.access_token_factory = Some(Arc::new(move || factory().boxed()));
        self
    }

    /// Adds a header sent with every request.
    #[must_use]
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Sets the cross-origin redirect policy.
    #[must_use]
    pub fn cross_origin_redirects(mut self, policy: CrossOriginRedirects) -> Self {
        self.cross_origin_redirects = policy;
        self
    }

    /// Asks for stateful reconnect.
    #[must_use]
    pub fn stateful_reconnect(mut self, on: bool) -> Self {
        self.stateful_reconnect = on;
        self
    }

    /// Sets how many negotiate requests one start may make (at most 100).
    #[must_use]
    pub fn max_redirects(mut self, max: u32) -> Self {
        self.max_redirects = max;
        self
    }

    /// Also sends the token as an `access_token` query parameter on connects.
    #[must_use]
    pub fn access_token_in_query(mut self, on: bool) -> Self {
        self.access_token_in_query = on;
        self
    }

    /// Sets the limit for negotiate, sends and other short requests.
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the limit for opening a transport.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets which certificates to trust.
    #[must_use]
    pub fn tls(mut self, tls: crate::TlsOptions) -> Self {
        self.tls = tls;
        self
    }

    /// Sets the largest message accepted from the server.
    #[must_use]
    pub fn max_message_size(mut self, max: usize) -> Self {
        self.max_message_size = max;
        self
    }

    /// Sets which proxy to use.
    #[must_use]
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        self.proxy = proxy;
        self
    }

    /// Sets the cookie jar (`None`: no cookies).
    #[must_use]
    pub fn cookies(mut self, jar: Option<Arc<CookieJar>>) -> Self {
        self.cookies = jar;
        self
    }
}
