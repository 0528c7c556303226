//! Where a connection goes: the hub URL and the headers of every request, which may change
//! while the connection is down (the JavaScript client's `baseUrl` setter), and the hook that
//! may change them before each reconnect attempt.

use std::{fmt, sync::Arc, time::Duration};

use signalr_transport::{Redacted, header::HeaderMap};

/// The hub URL and the headers sent with every request of the next connection attempt.
#[derive(Clone)]
#[non_exhaustive]
pub struct ConnectTarget {
    /// The hub URL (`http`, `https`, `ws` or `wss`).
    pub url: String,
    /// Headers sent with negotiate, every transport request and the WebSocket upgrade.
    pub headers: HeaderMap,
}

impl fmt::Debug for ConnectTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values may be credentials: names only.
        f.debug_struct("ConnectTarget")
            .field("url", &Redacted(&self.url))
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// What a [before-reconnect hook](crate::HubConnectionBuilder::with_before_reconnect) knows
/// about the attempt it runs before.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct ReconnectAttempt<'a> {
    /// The retry about to start: 1 for the first after the connection was lost.
    pub attempt: u32,
    /// Time since the connection was lost.
    pub elapsed: Duration,
    /// Why the connection was lost, or why the last attempt failed (a
    /// [`HubError`](crate::HubError); downcast it to branch on the cause).
    pub reason: &'a (dyn std::error::Error + Send + Sync + 'static),
}

/// The function of a before-reconnect hook.
type Hook = dyn Fn(&mut ConnectTarget, &ReconnectAttempt<'_>) + Send + Sync;

/// A before-reconnect hook.
#[derive(Clone)]
pub(crate) struct BeforeReconnect(pub(crate) Arc<Hook>);

impl fmt::Debug for BeforeReconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<before-reconnect hook>")
    }
}
