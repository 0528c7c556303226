//! [`HubConnectionBuilder`].

use std::{future::Future, sync::Arc, time::Duration};

use signalr_protocol::{HubProtocol, JsonHubProtocol, MessagePackHubProtocol, TransportKind};
use signalr_reconnect::{FixedDelays, KeepAliveConfig, RetryPolicy};
use signalr_transport::{BoxError, CookieJar, HttpClient, HttpOptions, Proxy, TlsOptions, hub_url};

use crate::{
    ConnectTarget, HubConnection, ReconnectAttempt,
    config::{Config, Opener},
    core::Settings,
    error::BuildError,
    target::BeforeReconnect,
};

/// Builds a [`HubConnection`]. Settings are checked by [`build`](Self::build), never by the
/// setters.
#[derive(Debug)]
pub struct HubConnectionBuilder {
    /// What the connection will be built with (the builder's settings are the connection's:
    /// one copy of every field, reqwest-style).
    config: Config,
    connector: Option<Arc<dyn signalr_transport::Connector>>,
}

impl HubConnectionBuilder {
    /// The core's settings, to change (the builder holds the only reference until `build`).
    fn settings(&mut self) -> &mut Settings {
        Arc::make_mut(&mut self.config.core)
    }

    /// A builder for the hub at `url` (`http`, `https`, `ws` or `wss`).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            config: Config {
                url: url.into(),
                core: Arc::new(Settings {
                    protocol: Arc::new(JsonHubProtocol::new()),
                    keep_alive: KeepAliveConfig::default(),
                    stateful_buffer: None,
                    outbox_capacity: 1024,
                    stream_consumer_timeout: Duration::from_secs(5),
                    retry: None,
                    start_policy: None,
                    log_message_content: false,
                }),
                http: HttpOptions::default(),
                stream_buffer: 256,
                before_reconnect: None,
                trace: crate::trace::Propagation::default(),
            },
            connector: None,
        }
    }

    /// Uses `protocol` (JSON by default).
    #[must_use]
    pub fn with_protocol(mut self, protocol: impl HubProtocol) -> Self {
        self.settings().protocol = Arc::new(protocol);
        self
    }

    /// Uses the MessagePack hub protocol.
    #[must_use]
    pub fn with_messagepack(self) -> Self {
        self.with_protocol(MessagePackHubProtocol::new())
    }

    /// Restricts the transports, tried in this order among those the server offers.
    #[must_use]
    pub fn with_transports(mut self, transports: impl IntoIterator<Item = TransportKind>) -> Self {
        self.config.http = self.config.http.transports(transports);
        self
    }

    /// Connects a WebSocket straight to the URL, without negotiate.
    #[must_use]
    pub fn with_skip_negotiation(mut self) -> Self {
        self.config.http = self.config.http.skip_negotiation(true);
        self
    }

    /// Gets bearer tokens from `factory`, called for every negotiate and every (re)connect, so
    /// it can refresh them; a 401 on negotiate asks it once more. An empty string sends no
    /// token.
    ///
    /// ```
    /// # fn run() -> Result<(), signalr_client::BuildError> {
    /// let conn = signalr_client::HubConnectionBuilder::new("https://hub.example/hub")
    ///     .with_access_token(|| async {
    ///         // Fetch or refresh it here; errors fail the attempt.
    ///         Ok(std::env::var("HUB_TOKEN")?)
    ///     })
    ///     .build()?;
    /// # let _ = conn; Ok(()) }
    /// ```
    #[must_use]
    pub fn with_access_token<F, Fut>(mut self, factory: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, BoxError>> + Send + 'static,
    {
        self.config.http = self.config.http.access_token_factory(factory);
        self
    }

    /// Sends `name: value` with every request (negotiate, polls, sends, the WebSocket upgrade).
    /// Header values are never logged.
    #[must_use]
    pub fn with_header(
        mut self,
        name: signalr_transport::header::HeaderName,
        value: signalr_transport::header::HeaderValue,
    ) -> Self {
        self.config.http = self.config.http.header(name, value);
        self
    }

    /// Uses `jar` for cookies: share one between connections, or preset it (an authentication
    /// cookie). By default each connection has a jar of its own, used by negotiate, every
    /// transport request, every reconnect and every stateful resume, as the .NET client's
    /// `CookieContainer` is: a load balancer's affinity cookie keeps the connection on the
    /// instance that negotiated it.
    #[must_use]
    pub fn with_cookie_jar(mut self, jar: Arc<CookieJar>) -> Self {
        self.config.http = self.config.http.cookies(Some(jar));
        self
    }

    /// Sends and keeps no cookies.
    #[must_use]
    pub fn without_cookies(mut self) -> Self {
        self.config.http = self.config.http.cookies(None);
        self
    }

    /// Which proxy every transport goes through: [`Proxy::System`] (the default) reads
    /// `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` as reqwest does,
    /// [`Proxy::None`] goes direct, [`Proxy::url`] names one (credentials as userinfo). The
    /// WebSocket goes through a `CONNECT` tunnel, with TLS to the hub inside it for `wss`.
    #[must_use]
    pub fn with_proxy(mut self, proxy: Proxy) -> Self {
        self.config.http = self.config.http.proxy(proxy);
        self
    }

    /// Which certificates to trust (the operating system's by default) and which client
    /// identity to present (mutual TLS), for every transport.
    ///
    /// ```no_run
    /// # fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use signalr_client::HubConnectionBuilder;
    /// use signalr_client::transport::{Identity, TlsOptions};
    ///
    /// let identity = Identity::from_pem(&std::fs::read("client.pem")?)?; // cert + key
    /// let conn = HubConnectionBuilder::new("https://hub.example/hub")
    ///     .with_tls(TlsOptions::default().identity(identity))
    ///     .build()?;
    /// # let _ = conn; Ok(()) }
    /// ```
    #[must_use]
    pub fn with_tls(mut self, tls: TlsOptions) -> Self {
        self.config.http = self.config.http.tls(tls);
        self
    }

    /// Calls `hook` before every reconnect attempt (not before the first start, nor before a
    /// stateful resume, which continues the same connection) with where the attempt will go,
    /// which it may change: a resume cursor in the query, a new routing header, another
    /// region. [`HubConnection::set_url`](crate::HubConnection::set_url) and
    /// [`set_headers`](crate::HubConnection::set_headers) change the same target from outside.
    ///
    /// ```
    /// # fn run() -> Result<(), signalr_client::BuildError> {
    /// use signalr_client::HubConnectionBuilder;
    ///
    /// let conn = HubConnectionBuilder::new("http://localhost:5000/hub")
    ///     .with_automatic_reconnect()
    ///     .with_before_reconnect(|target, attempt| {
    ///         // Tell the server where this client left off.
    ///         target.url = format!("http://localhost:5000/hub?attempt={}", attempt.attempt);
    ///     })
    ///     .build()?;
    /// # let _ = conn; Ok(()) }
    /// ```
    #[must_use]
    pub fn with_before_reconnect(
        mut self,
        hook: impl Fn(&mut ConnectTarget, &ReconnectAttempt<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.config.before_reconnect = Some(BeforeReconnect(Arc::new(hook)));
        self
    }

    /// Carries trace context in hub message headers with `propagator` (feature
    /// `opentelemetry`), instead of W3C trace context (`traceparent`, `tracestate`: what the
    /// .NET client and ASP.NET Core use by default). For example, a composite with
    /// `opentelemetry_sdk::propagation::BaggagePropagator` to carry baggage too.
    ///
    /// ```
    /// # fn run() -> Result<(), signalr_client::BuildError> {
    /// use opentelemetry::propagation::TextMapCompositePropagator;
    /// use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
    /// use signalr_client::HubConnectionBuilder;
    ///
    /// let both = TextMapCompositePropagator::new(vec![
    ///     Box::new(TraceContextPropagator::new()),
    ///     Box::new(BaggagePropagator::new()),
    /// ]);
    /// let conn = HubConnectionBuilder::new("http://localhost:5000/hub")
    ///     .with_trace_propagator(both)
    ///     .build()?;
    /// # let _ = conn; Ok(()) }
    /// ```
    #[cfg(feature = "opentelemetry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
    #[must_use]
    pub fn with_trace_propagator(
        mut self,
        propagator: impl opentelemetry::propagation::TextMapPropagator + Send + Sync + 'static,
    ) -> Self {
        self.config.trace = crate::trace::Propagation::with(propagator);
        self
    }

    /// Replaces the transport options (headers, TLS, timeouts, redirects, …).
    #[must_use]
    pub fn with_http_options(mut self, http: HttpOptions) -> Self {
        self.config.http = http;
        self
    }

    /// Opens connections with `connector` instead of negotiating and starting a transport:
    /// your own network stack, or `signalr_transport::memory::connector()` for tests that script
    /// the server and run on a paused clock.
    #[must_use]
    pub fn with_connector(
        mut self,
        connector: impl signalr_transport::Connector + 'static,
    ) -> Self {
        self.connector = Some(Arc::new(connector));
        self
    }

    /// Reconnects automatically with the SignalR default delays: 0, 2, 10 and 30 s, then gives up.
    #[must_use]
    pub fn with_automatic_reconnect(self) -> Self {
        self.with_automatic_reconnect_policy(FixedDelays::dotnet_default())
    }

    /// Reconnects automatically as `policy` says: any `signalr_reconnect` policy, or your own.
    /// Fixed delays are `FixedDelays::from_millis(&[0, 2000, 10000])` (the .NET client's
    /// `WithAutomaticReconnect(TimeSpan[])`); exponential backoff with jitter and a cap is
    /// `ExponentialBackoff`; a closure is `retry_fn`. The policy's `ctx.reason` is the
    /// [`HubError`](crate::HubError) that lost the connection or failed the last attempt:
    ///
    /// ```
    /// use std::time::Duration;
    /// use signalr_client::{HubConnectionBuilder, HubError, reconnect::{FixedDelays, retry_fn}};
    ///
    /// # fn run() -> Result<(), signalr_client::BuildError> {
    /// let fixed = HubConnectionBuilder::new("http://localhost:5000/hub")
    ///     .with_automatic_reconnect_policy(FixedDelays::from_millis(&[0, 2000, 10000]))
    ///     .build()?;
    /// let by_cause = HubConnectionBuilder::new("http://localhost:5000/hub")
    ///     .with_automatic_reconnect_policy(retry_fn(|ctx| {
    ///         match ctx.reason.downcast_ref::<HubError>() {
    ///             Some(HubError::Transport(e)) if !e.is_retryable() => None, // a 404, say
    ///             _ if ctx.previous_retry_count < 10 => Some(Duration::from_secs(1)),
    ///             _ => None,
    ///         }
    ///     }))
    ///     .build()?;
    /// # let _ = (fixed, by_cause); Ok(()) }
    /// ```
    #[must_use]
    pub fn with_automatic_reconnect_policy(mut self, policy: impl RetryPolicy) -> Self {
        self.settings().retry = Some(Arc::new(policy));
        self
    }

    /// Retries a failing `start` as `policy` says, before the first connection. The official
    /// clients never retry the initial start; without this, neither does this one. Only
    /// failures another attempt may fix are retried ([`HubError::is_retryable`]: 5xx, 408, 429,
    /// timeouts, network errors); a 404, a second 401 or a handshake error fails at once.
    ///
    /// [`HubError::is_retryable`]: crate::HubError::is_retryable
    #[must_use]
    pub fn with_initial_start_policy(mut self, policy: impl RetryPolicy) -> Self {
        self.settings().start_policy = Some(Arc::new(policy));
        self
    }

    /// How many calls made while reconnecting may wait to be sent (1024). They go out in order
    /// once connected again; one more fails at once with
    /// [`HubError::OutboxFull`](crate::HubError::OutboxFull), and all of them fail if the
    /// reconnect gives up. Calls already sent when the connection was lost fail with
    /// `ConnectionLost`: without stateful reconnect nobody knows whether the server saw them.
    /// `0` turns the outbox off.
    ///
    /// ```no_run
    /// # async fn run() -> signalr_client::Result<()> {
    /// use signalr_client::{HubConnectionBuilder, HubError};
    ///
    /// let conn = HubConnectionBuilder::new("http://localhost:5000/hub")
    ///     .with_automatic_reconnect()
    ///     .with_outbox_size(100)
    ///     .build()
    ///     .unwrap();
    /// conn.start().await?;
    /// // While reconnecting, this waits in the outbox and goes out once connected again.
    /// match conn.send("Log", ("reading", 21.5)).await {
    ///     Err(HubError::OutboxFull { capacity }) => eprintln!("{capacity} calls already wait"),
    ///     other => other?,
    /// }
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_outbox_size(mut self, calls: usize) -> Self {
        self.settings().outbox_capacity = calls;
        self
    }

    /// Asks for stateful reconnect: when the server grants it on a WebSocket, a lost socket is
    /// replaced by a new one to the same connection, and every message either side sent and the
    /// other had not acknowledged is replayed, so nothing is lost or duplicated. Up to
    /// `buffer_bytes` (the official default is 100,000) unacknowledged bytes are kept; beyond
    /// that, calls wait for the server's Ack. If the resume fails, the automatic-reconnect policy
    /// takes over with a new connection.
    #[must_use]
    pub fn with_stateful_reconnect(mut self, buffer_bytes: usize) -> Self {
        self.settings().stateful_buffer = Some(buffer_bytes.max(1));
        self
    }

    /// Sends a Ping after this long without sending anything (15 s).
    #[must_use]
    pub fn with_keep_alive_interval(mut self, interval: Duration) -> Self {
        self.settings().keep_alive.keep_alive_interval = interval;
        self
    }

    /// Declares the server gone after this long without receiving anything (30 s).
    #[must_use]
    pub fn with_server_timeout(mut self, timeout: Duration) -> Self {
        self.settings().keep_alive.server_timeout = timeout;
        self
    }

    /// Gives up on a handshake after this long (15 s).
    #[must_use]
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.settings().keep_alive.handshake_timeout = timeout;
        self
    }

    /// Items buffered per server-to-client stream (256). When a stream's buffer is full the
    /// client stops reading from the server until its consumer takes an item (backpressure: the
    /// server's own stream buffer fills and its producer waits), for up to the
    /// [stream consumer timeout](Self::with_stream_consumer_timeout); then the stream is cancelled
    /// and its consumer gets
    /// [`HubError::StreamConsumerTooSlow`](crate::HubError::StreamConsumerTooSlow).
    #[must_use]
    pub fn with_stream_buffer(mut self, items: usize) -> Self {
        self.config.stream_buffer = items;
        self
    }

    /// How long a stream whose buffer is full may hold the connection's reading back (5 s).
    /// Meanwhile nothing more is read from the server (what it sends waits, in order), while
    /// calls, pings and Acks still go out; since nothing is received either, keep it below the
    /// [server timeout](Self::with_server_timeout) (30 s by default).
    #[must_use]
    pub fn with_stream_consumer_timeout(mut self, timeout: Duration) -> Self {
        self.settings().stream_consumer_timeout = timeout;
        self
    }

    /// Puts the content of every message sent and received in the client's `trace`-level
    /// events (`data sent` / `data received`, field `signalr.content`: the text of JSON frames,
    /// the bytes of MessagePack ones in hex), as the JavaScript client's `logMessageContent`.
    /// Off by default: those events then carry only `signalr.bytes`, and no payload reaches
    /// any log or span. Message content can hold whatever the application sends (personal
    /// data, its own tokens): turn it on only where such logs may go.
    #[must_use]
    pub fn with_log_message_content(mut self, on: bool) -> Self {
        self.settings().log_message_content = on;
        self
    }

    /// Checks the settings and builds the connection (not yet started).
    pub fn build(self) -> Result<HubConnection, BuildError> {
        let Self {
            mut config,
            connector,
        } = self;
        // With a connector the URL is only a label; without one it must be usable.
        if connector.is_none() {
            hub_url(&config.url).map_err(BuildError::Url)?;
        }
        config
            .core
            .keep_alive
            .validate()
            .map_err(BuildError::KeepAlive)?;
        // Built once for the connection's life: every reconnect shares its connection pool,
        // TLS configuration (the OS trust store is read here, once) and cookie jar.
        let opener = match connector {
            Some(connector) => Opener::Connector(connector),
            None => Opener::Http(HttpClient::new(&config.http).map_err(BuildError::Transport)?),
        };
        if config.http.transports.is_empty() {
            return Err(BuildError::NoTransport);
        }
        if config.http.skip_negotiation
            && !config.http.transports.contains(&TransportKind::WebSockets)
        {
            return Err(BuildError::SkipNegotiationNeedsWebSockets);
        }
        config.http = config
            .http
            .max_message_size(config.core.protocol.max_message_size())
            .stateful_reconnect(config.core.stateful_buffer.is_some());
        config.stream_buffer = config.stream_buffer.max(1);
        Ok(HubConnection::new(config, opener))
    }
}
