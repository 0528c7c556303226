//! What a connection was built with: the settings `HubConnectionBuilder::build` checked.

use std::sync::Arc;

use signalr_transport::HttpOptions;

use crate::{core::Settings, target::BeforeReconnect};

/// What a connection is built with: the builder's settings, which `build` checks, and the
/// connection's from then on.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) url: String,
    /// What the connection core is built with (protocol, keep-alive, policies, buffers), shared
    /// with every core this connection starts.
    pub(crate) core: Arc<Settings>,
    pub(crate) http: HttpOptions,
    pub(crate) stream_buffer: usize,
    /// Called before each reconnect attempt, to change where it goes.
    pub(crate) before_reconnect: Option<BeforeReconnect>,
    /// How trace context goes into calls' headers and comes out of the server's.
    pub(crate) trace: crate::trace::Propagation,
}

/// How a connection's attempts open their transport (made by `build`).
pub(crate) enum Opener {
    /// Negotiate and a transport over HTTP, every attempt sharing this client (its connection
    /// pool, TLS configuration and cookie jar).
    Http(signalr_transport::HttpClient),
    /// The user's connector (the URL is only a label then).
    Connector(Arc<dyn signalr_transport::Connector>),
}
