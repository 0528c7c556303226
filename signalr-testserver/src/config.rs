//! Server settings, with ASP.NET Core's defaults.

use std::{collections::HashMap, fmt, time::Duration};

use signalr_protocol::TransportKind;

/// Everything the server can be told; every field has ASP.NET Core's default.
#[derive(Clone)]
#[non_exhaustive]
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent switches: ASP.NET Core options and faults"
)]
pub struct ServerConfig {
    /// The hub's path, `/hub` by default.
    pub hub_path: String,
    /// Send a Ping when nothing was sent for this long (15 s). Not on long polling, whose poll
    /// cycle keeps the connection alive.
    pub keep_alive_interval: Duration,
    /// Drop a client from which nothing arrived for this long (30 s). Not on long polling.
    pub client_timeout: Duration,
    /// Drop a connection whose handshake has not completed after this long (15 s).
    pub handshake_timeout: Duration,
    /// The largest framed message accepted from a client (32 KiB); a larger one closes the
    /// connection with an error.
    pub max_message_size: usize,
    /// Whether the hub allows stateful reconnect (off).
    pub stateful_reconnect: bool,
    /// Unacknowledged bytes kept for replay before sends wait for an Ack (100,000).
    pub stateful_buffer_bytes: usize,
    /// The transports offered, in the order negotiate lists them (all three).
    pub transports: Vec<TransportKind>,
    /// The highest negotiate version the server speaks: `0` or `1` (1).
    pub negotiate_version: u32,
    /// Answer negotiate with a redirect to this hub URL and access token instead.
    pub redirect: Option<Redirect>,
    /// Require this bearer token (header or `access_token` query parameter); 401 otherwise.
    pub required_token: Option<String>,
    /// Bearer tokens and the user each stands for (none). When set, every request must carry
    /// one of these tokens (header or `access_token` query parameter; 401 otherwise), a
    /// connection belongs to the user who made it, and a request on it from another user (a
    /// stateful resume above all, aspnetcore#67311) is refused with 403.
    pub users: HashMap<String, String>,
    /// The longest invocation or stream id accepted from a client (256 bytes); a longer one
    /// closes the connection with an error. ASP.NET Core sets none; ids are server state here.
    pub max_invocation_id_length: usize,
    /// Stateful resumes of one connection: how many may come at once (200), and how many per
    /// second are allowed after that (100). More are refused with 429, so that a storm of
    /// reattaches cannot keep the server cutting sockets and replaying its buffer.
    pub resume_burst: u32,
    /// See [`ServerConfig::resume_burst`].
    pub resumes_per_second: u32,
    /// Serve the `/admin/…` fault controls (off).
    pub admin: bool,
    /// How long a connection without a transport is kept: a long-polling client between polls,
    /// a stateful connection waiting to be resumed (15 s).
    pub disconnect_timeout: Duration,
    /// How long a long poll is held before it is answered empty (90 s).
    pub poll_timeout: Duration,
    /// Items buffered per client-to-server stream before reading from the client waits (10).
    pub stream_buffer_capacity: usize,
    /// Offer WebSockets in negotiate but answer every upgrade with 503: a fault for testing a
    /// client's transport fallback (off).
    pub refuse_websockets: bool,
    /// How a connection's non-streaming hub methods run ([`Invocations::Sequential`]).
    pub invocations: Invocations,
    /// Put the reason in the Close message when the server closes a connection with an error,
    /// as ASP.NET Core's `EnableDetailedErrors` does: `Connection closed with an error.
    /// InvalidDataException: <reason>` (the reason in this server's words, which are more
    /// specific than ASP.NET Core's). Off by default, as in ASP.NET Core: the Close error is
    /// then exactly `Connection closed with an error.` The reason is always logged.
    pub detailed_errors: bool,
    /// This instance's name, which the hub method `GetServerName` returns: in a deployment of
    /// several instances, it tells a client which one holds its connection. A random name
    /// (`server-` and eight letters or digits) by default.
    pub server_name: String,
    /// Let a connection's credentials expire this long after it was created (by negotiate, or
    /// by a WebSocket connected without it), as a JWT's `exp` would: after that every request
    /// on the connection (a poll, a send, an event-stream connect, a WebSocket resume) is
    /// answered 401, and only a new connection, with a fresh negotiate, goes on. `None`: they
    /// never expire.
    pub token_lifetime: Option<Duration>,
    /// Share the hub with every other instance on this Redis (`redis://host:port`), in ASP.NET
    /// Core's backplane format: broadcasts, groups, sends to a connection or a user, and
    /// client results reach connections on any instance. `None`: this instance alone.
    pub redis: Option<String>,
    /// The hub's name on the backplane, the prefix of every channel: for ASP.NET Core the hub
    /// class's .NET full name (`typeof(THub).FullName`). `SignalRTestServer.TestHub` by default.
    pub hub_name: String,
    /// How long a group change or a client result for a connection on another instance waits
    /// for that instance (30 s, ASP.NET Core's group ack threshold).
    pub backplane_timeout: Duration,
    /// Serve `https`/`wss` with this certificate, optionally requiring client certificates
    /// (plain `http` when `None`).
    pub tls: Option<crate::ServerTls>,
}

/// How a connection's non-streaming hub methods run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Invocations {
    /// One at a time, in the order they were invoked, as ASP.NET Core does with its default
    /// `MaximumParallelInvocationsPerClient` of 1: what one sends precedes what the next sends.
    #[default]
    Sequential,
    /// Each starts on its own task at once, so their effects may interleave.
    Concurrent,
}

/// A negotiate redirect.
#[derive(Clone)]
#[non_exhaustive]
pub struct Redirect {
    /// The hub URL the client should negotiate with next.
    pub url: String,
    /// The access token it should use there.
    pub access_token: Option<String>,
}

impl Redirect {
    /// A redirect to `url`, with an optional token.
    pub fn new(url: impl Into<String>, access_token: Option<String>) -> Self {
        Self {
            url: url.into(),
            access_token,
        }
    }
}

impl ServerConfig {
    /// The largest WebSocket message read: at least 16 MiB, four times the largest hub
    /// message. The hub protocol enforces `max_message_size` per message and answers with a
    /// Close carrying the error, as .NET does; a WebSocket message may carry many messages (the
    /// official JS client joins every send queued while it was busy into one: 10,000 sends made
    /// at once arrive as one 1.4 MB message, and .NET streams it). tungstenite has to buffer a
    /// whole message, so the socket layer stops only messages far beyond that.
    pub(crate) fn socket_message_limit(&self) -> usize {
        self.max_message_size
            .saturating_mul(4)
            .max(16 * 1024 * 1024)
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            hub_path: "/hub".into(),
            keep_alive_interval: Duration::from_secs(15),
            client_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(15),
            max_message_size: 32 * 1024,
            stateful_reconnect: false,
            stateful_buffer_bytes: 100_000,
            transports: TransportKind::ALL.to_vec(),
            negotiate_version: 1,
            redirect: None,
            required_token: None,
            users: HashMap::new(),
            max_invocation_id_length: 256,
            resume_burst: 200,
            resumes_per_second: 100,
            admin: false,
            disconnect_timeout: Duration::from_secs(15),
            poll_timeout: Duration::from_secs(90),
            stream_buffer_capacity: 10,
            refuse_websockets: false,
            invocations: Invocations::Sequential,
            detailed_errors: false,
            server_name: format!("server-{}", crate::random_id(8)),
            token_lifetime: None,
            redis: None,
            hub_name: "SignalRTestServer.TestHub".into(),
            backplane_timeout: Duration::from_secs(30),
            tls: None,
        }
    }
}

fn redacted(token: Option<&String>) -> &'static str {
    if token.is_some() {
        "Some(<redacted>)"
    } else {
        "None"
    }
}

impl fmt::Debug for Redirect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redirect")
            .field("url", &self.url)
            .field("access_token", &redacted(self.access_token.as_ref()))
            .finish()
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("hub_path", &self.hub_path)
            .field("keep_alive_interval", &self.keep_alive_interval)
            .field("client_timeout", &self.client_timeout)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_message_size", &self.max_message_size)
            .field("stateful_reconnect", &self.stateful_reconnect)
            .field("stateful_buffer_bytes", &self.stateful_buffer_bytes)
            .field("transports", &self.transports)
            .field("negotiate_version", &self.negotiate_version)
            .field("redirect", &self.redirect)
            .field("required_token", &redacted(self.required_token.as_ref()))
            .field(
                "users",
                &format_args!("{} (tokens redacted)", self.users.len()),
            )
            .field("max_invocation_id_length", &self.max_invocation_id_length)
            .field("resume_burst", &self.resume_burst)
            .field("resumes_per_second", &self.resumes_per_second)
            .field("admin", &self.admin)
            .field("disconnect_timeout", &self.disconnect_timeout)
            .field("poll_timeout", &self.poll_timeout)
            .field("stream_buffer_capacity", &self.stream_buffer_capacity)
            .field("refuse_websockets", &self.refuse_websockets)
            .field("invocations", &self.invocations)
            .field("detailed_errors", &self.detailed_errors)
            .field("server_name", &self.server_name)
            .field("token_lifetime", &self.token_lifetime)
            // The URL may carry a password.
            .field("redis", &self.redis.as_ref().map(|_| "(set)"))
            .field("hub_name", &self.hub_name)
            .field("backplane_timeout", &self.backplane_timeout)
            .field("tls", &self.tls)
            .finish()
    }
}
