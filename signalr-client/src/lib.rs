//! An ASP.NET Core SignalR client: [`HubConnection`] with invoke, send, streams, client methods
//! and client results, keep-alive, and automatic reconnect.
//!
//! ```no_run
//! use std::time::Duration;
//! use futures_util::StreamExt as _;
//! use signalr_client::{HubConnectionBuilder, reconnect::ExponentialBackoff};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let conn = HubConnectionBuilder::new("http://localhost:5000/hub")
//!     .with_automatic_reconnect_policy(ExponentialBackoff::new(Duration::from_secs(1)))
//!     .build()?;
//! // One parameter per argument; the handler stays until removed (`off`, or `.remove()`).
//! conn.on("ReceiveMessage", |user: String, text: String| async move {
//!     println!("{user}: {text}");
//! });
//! conn.start().await?;
//!
//! let sum: i64 = conn.invoke("Add", (40, 2)).await?;     // the arguments: a tuple
//! let echo: String = conn.invoke("Echo", ("hi",)).await?; // one argument: a one-tuple
//! conn.send("Broadcast", ("chat", "hello")).await?;      // fire and forget
//! let mut counter = conn.stream::<i32>("Counter", (10, 100)).await?;
//! while let Some(i) = counter.next().await {             // dropping it cancels on the server
//!     println!("{}", i?);
//! }
//! conn.stop().await?;
//! # Ok(()) }
//! ```
//!
//! # Behaviour
//!
//! - One driver task per started connection owns the transport and a sans-IO connection core
//!   that holds the protocol state and makes every protocol decision; handles
//!   are cheap clones that talk to it over channels, and dropping the last one stops it (a live
//!   [`HubStream`] counts as one). A handler that captures a clone of its own connection would
//!   keep it alive for ever: capture [`HubConnection::downgrade`] instead.
//! - Handlers ([`HubConnection::on`], [`HubConnection::on_invoke`]) and event callbacks stay
//!   registered until removed on purpose ([`Subscription::remove`], [`HubConnection::off`]);
//!   dropping the [`Subscription`] removes nothing. A server call whose arguments do not fit its
//!   handler is logged (method, argument, serde's reason) and reaches
//!   [`HubConnection::on_handler_error`].
//! - Errors print their own level with `{}` and the whole chain of causes with `{:#}`.
//! - Keep-alive: a Ping after 15 s without sending; the connection is lost after 30 s without
//!   receiving anything, so a half-open link is found (not on long polling, whose poll cycle
//!   does this). Both are configurable.
//! - Automatic reconnect runs the configured [`reconnect::RetryPolicy`] after a loss, or after a
//!   Close that allows it; a Close without `allowReconnect` ends the connection. Calls in flight
//!   when the connection is lost fail with [`HubError::ConnectionLost`] (at most once: without
//!   stateful reconnect nobody knows whether the server saw them); calls made while
//!   reconnecting wait in a bounded outbox and go out in order once connected again
//!   ([`HubConnectionBuilder::with_outbox_size`]). An optional policy retries the initial start
//!   ([`HubConnectionBuilder::with_initial_start_policy`]).
//! - Server-to-client calls run one at a time in arrival order on their own task, so slow
//!   handlers never delay pings or timeouts.
//! - Field networking: a cookie jar per connection (load-balancer affinity survives negotiate,
//!   reconnects and resumes), proxies from the environment or the builder (the WebSocket
//!   through a `CONNECT` tunnel), the operating system's trust store and client certificates
//!   ([`HubConnectionBuilder::with_tls`]). While disconnected or reconnecting,
//!   [`HubConnection::set_url`] and [`HubConnection::set_headers`] change where the next attempt
//!   goes, and [`HubConnectionBuilder::with_before_reconnect`] may change it before each one. A
//!   401 or 403 on a started connection is a loss that reconnects with a fresh token.
//!
//! # Logging
//!
//! The crates log through [`tracing`](https://docs.rs/tracing) and install no subscriber; add
//! one (`tracing_subscriber::fmt().init()`) to see them. Targets and levels:
//!
//! - `signalr_client` — `info`: connected (transport, connection id), a stateful resume, a
//!   retried start. `warn`: the connection lost (with the cause), a resume that failed, a server
//!   call with no handler ("No client method with the name 'x' found.", as the JavaScript
//!   client), a server call that does not fit its handler, a handler that panicked, sends that
//!   will not go out. `debug`: each reconnect and resume attempt, the outbox being sent, Acks.
//!   `trace`: `data sent` and `data received` for every transport write and read
//!   (`signalr.bytes`; with [`HubConnectionBuilder::with_log_message_content`], the JavaScript
//!   client's `logMessageContent`, also `signalr.content`: the JSON text, or MessagePack bytes in
//!   hex).
//! - `signalr_transport` — `warn`: a transport that failed to start (the next is tried).
//!   `debug`: negotiate requests and redirects, each transport opening, a WebSocket through a
//!   proxy, cookies stored (counts only).
//!
//! Tokens, cookie values and proxy credentials never appear: URLs are logged with their
//! `access_token` redacted, header values never. Message payloads are not logged unless
//! `with_log_message_content(true)` asks for them.
//!
//! # Tracing and metrics
//!
//! Spans, all at `info`, with field names after OpenTelemetry's RPC conventions where there is
//! one (`rpc.system = "signalr"`, `rpc.method`, `otel.kind`); a span nobody listens to costs a
//! check and no clock read:
//!
//! | span | fields | lives |
//! |---|---|---|
//! | `signalr.connection` | `rpc.system`, `signalr.protocol` (`json`, `messagepack`), `signalr.connection_id`, `signalr.transport` (`WebSockets`, `ServerSentEvents`, `LongPolling`), `signalr.stateful` (the last three recorded when connected, again after each reconnect) | from `start` until the connection closes; the driver's events are in it |
//! | `signalr.invoke` | `otel.kind = "client"`, `rpc.system`, `rpc.method`, `signalr.invocation_id`, `signalr.outcome`, `signalr.duration_us` | one `invoke`, a child of the caller's span |
//! | `signalr.send` | `otel.kind = "client"`, `rpc.system`, `rpc.method`, `signalr.outcome`, `signalr.duration_us` | one `send` (until it is queued or written, as `send` returns) |
//! | `signalr.stream` | `otel.kind = "client"`, `rpc.system`, `rpc.method`, `signalr.invocation_id`, `signalr.outcome`, `signalr.items`, `signalr.duration_us` | a stream, until it is dropped |
//! | `signalr.handler` | `otel.kind = "server"`, `rpc.system`, `rpc.method` (the client method), `signalr.invocation_id` (client results), `signalr.handlers` (how many ran) | the handlers of one server call; a root span (as ASP.NET Core's hub-method activities are not under the connection), or the child of the trace context the call carries |
//!
//! `signalr.outcome` is `ok`, `hub_error` (the hub method failed), `payload_error` (an argument,
//! result or item did not bind), `connection_error` (lost, stopped, not connected) or, for a
//! stream dropped before its end, `cancelled`. Events in the connection span: `reconnect
//! attempt scheduled` (`signalr.attempt`, `signalr.delay_ms`, `signalr.reason`), `reconnect gave
//! up` (`signalr.attempts`, `signalr.reason`), `server timeout: nothing received from the server`
//! (`signalr.server_timeout_ms`, `warn`) and `close received` (`signalr.close_error`,
//! `signalr.allow_reconnect`). Reasons are errors with their causes (`{:#}`), which carry no
//! credentials; no payload is ever in a span or an event.
//!
//! **Trace context across the hub** (feature `opentelemetry`). An `invoke`, `send` or `stream`
//! made where an OpenTelemetry context is current (its span recorded by a
//! `tracing_opentelemetry` layer, or a context attached through OpenTelemetry's own API)
//! carries `traceparent` (the call span's id) and `tracestate` in its message headers, as the
//! .NET client does since .NET 9, so that an ASP.NET Core server continues the trace (its
//! hub-method activity takes them as its parent; so does the test server's
//! `signalr.hub_method` span with its feature `opentelemetry`). A server call with such headers
//! becomes the parent of its `signalr.handler` span. W3C trace context by default;
//! `HubConnectionBuilder::with_trace_propagator` for another (baggage too, say). Without the
//! feature no header is written.
//!
//! What it costs (BENCHMARKS.md, "Tracing and metrics overhead"): nothing measurable with the
//! features on and nothing installed, or with a metrics recorder; about 3 µs per span recorded
//! through the OpenTelemetry SDK, and a span per send and per server call. At high message
//! rates, filter those out of the OpenTelemetry layer:
//! `.with_filter(filter_fn(|m| !matches!(m.name(), "signalr.send" | "signalr.handler")))`.
//!
//! **Metrics** (feature `metrics`), through the [`metrics`](https://docs.rs/metrics) facade, so
//! any exporter (Prometheus, OpenTelemetry, statsd) records them. Handles are registered when a
//! connection is built and started: install the recorder first. Series are shared by all
//! connections of the process.
//!
//! | name | kind, unit | labels | what |
//! |---|---|---|---|
//! | `signalr.client.connections.started` | counter | `transport`, `protocol` | a `start` that connected (reconnects are counted below) |
//! | `signalr.client.connections.closed` | counter | `reason` (`stopped`, `server_closed`, `reconnect_gave_up`, `lost`), `protocol` | a connection closed for good |
//! | `signalr.client.reconnect.attempts` | counter | `outcome` (`succeeded`, `failed`) | one reconnect attempt (not a stateful resume) |
//! | `signalr.client.reconnect.duration` | histogram, seconds | `kind` (`reconnect`, `resume`) | from losing the connection to having it back |
//! | `signalr.client.messages.sent`, `signalr.client.messages.received` | counter, messages | `protocol` | hub messages written (the handshake and replayed messages excluded) and decoded |
//! | `signalr.client.bytes.sent`, `signalr.client.bytes.received` | counter, bytes | `protocol` | their encoded bytes (received: everything read after the handshake response) |
//! | `signalr.client.invocation.duration` | histogram, seconds | `rpc.method`, `outcome` (as `signalr.outcome`) | one `invoke`, from the call to its result |
//! | `signalr.client.outbox.depth` | gauge, calls | | calls held while reconnecting, summed over connections |
//! | `signalr.client.outbox.rejected` | counter, calls | | calls refused by a full outbox (`HubError::OutboxFull`) |
//! | `signalr.client.replay_buffer.bytes` | gauge, bytes | | unacknowledged bytes kept for stateful reconnect, summed over connections |
//!
//! The `observability` example exports the spans through `opentelemetry-stdout` and prints the
//! metrics at the end.
//!
//! # Cancel safety
//!
//! Dropping an `invoke` future abandons its result (the call may still run on the server) and
//! stops its uploads. Dropping a [`HubStream`] sends `CancelInvocation` and stops its uploads.
//!
//! # Stability
//!
//! The API is young (0.x) and may change between minor versions.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod args;
mod builder;
mod command;
mod config;
mod connection;
mod core;
mod driver;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod handlers;
mod meter;
mod rt;
mod shared;
mod state;
mod stream;
mod target;
mod trace;
mod upload;

pub use args::{Argument, IntoArguments};
pub use builder::HubConnectionBuilder;
pub use connection::{HubConnection, WeakHubConnection};
pub use error::{BuildError, HandshakeError, HubError, PayloadPart, Result};
#[doc(hidden)]
pub use handlers::BindError;
pub use handlers::{Handler, InvokeHandler, Subscription};
pub use signalr_protocol as protocol;
pub use signalr_reconnect as reconnect;
pub use signalr_transport as transport;
pub use state::HubConnectionState;
pub use stream::HubStream;
pub use target::{ConnectTarget, ReconnectAttempt};
pub use upload::Upload;
