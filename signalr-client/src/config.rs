//! What a connection was built with: the settings `HubConnectionBuilder::build` checked.

use std::sync::Arc;

use signalr_protocol::HubProtocol;
use signalr_reconnect::{KeepAliveConfig, RetryPolicy};
use signalr_transport::HttpOptions;

use crate::target::BeforeReconnect;

/// What a connection is built with: the builder's settings, which `build` checks, and the
/// connection's from then on.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) url: String,
    pub(crate) protocol: Arc<dyn HubProtocol>,
    pub(crate) http: HttpOptions,
    pub(crate) retry: Option<Arc<dyn RetryPolicy>>,
    pub(crate) start_policy: Option<Arc<dyn RetryPolicy>>,
    pub(crate) outbox_capacity: usize,
    /// Stateful reconnect's replay-buffer limit in bytes, when enabled.
    pub(crate) stateful_buffer: Option<usize>,
    pub(crate) keep_alive: KeepAliveConfig,
    pub(crate) stream_buffer: usize,
    /// How long a full stream buffer may hold reading back before the stream fails.
    pub(crate) stream_consumer_timeout: std::time::Duration,
    /// Called before each reconnect attempt, to change where it goes.
    pub(crate) before_reconnect: Option<BeforeReconnect>,
    /// How trace context goes into calls' headers and comes out of the server's.
    pub(crate) trace: crate::trace::Propagation,
    /// Message content in the `trace` events (the JavaScript client's `logMessageContent`).
    pub(crate) log_message_content: bool,
}

/// How a connection's attempts open their transport (made by `build`).
pub(crate) enum Opener {
    /// Negotiate and a transport over HTTP, every attempt sharing this client (its connection
    /// pool, TLS configuration and cookie jar).
    Http(signalr_transport::HttpClient),
    /// The user's connector (the URL is only a label then).
    Connector(Arc<dyn signalr_transport::Connector>),
}
