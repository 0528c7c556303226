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
//! let _sub = conn.on("ReceiveMessage", |(user, text): (String, String)| async move {
//!     println!("{user}: {text}");
//! }); // dropping the Subscription unregisters the handler
//! conn.start().await?;
//!
//! let sum: i64 = conn.invoke("Add", (40, 2)).await?;     // any Serialize tuple
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
//! - One driver task per started connection owns the transport and the protocol state; handles
//!   are cheap clones that talk to it over channels, and dropping the last one stops it.
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
//! # Cancel safety
//!
//! Dropping an `invoke` future abandons its result (the call may still run on the server).
//! Dropping a [`HubStream`] sends `CancelInvocation`.
//!
//! # Stability
//!
//! The API is young (0.x) and may change between minor versions.

mod builder;
mod connection;
mod driver;
mod error;
mod handlers;
mod rt;
mod stream;
mod target;
mod upload;

pub use builder::HubConnectionBuilder;
pub use connection::{HubConnection, HubConnectionState};
pub use error::{BuildError, HubError, Result};
pub use handlers::Subscription;
pub use signalr_protocol as protocol;
pub use signalr_reconnect as reconnect;
pub use signalr_transport as transport;
pub use stream::HubStream;
pub use target::{ConnectTarget, ReconnectAttempt};
pub use upload::Upload;
