//! Shared helpers: servers, builders for each transport and protocol, event recorders.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use signalr_client::{HubConnection, HubConnectionBuilder, protocol::TransportKind};
use signalr_testserver::{ServerConfig, TestServer};

pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// Logs to stderr when `RUST_LOG` is set (`RUST_LOG=debug cargo test ...`), for debugging.
pub(crate) fn logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

pub(crate) async fn server(configure: impl FnOnce(&mut ServerConfig)) -> TestServer {
    logs();
    let mut config = ServerConfig::default();
    configure(&mut config);
    TestServer::start(config).await.unwrap()
}

/// Every transport and protocol pair SignalR supports (SSE carries text only).
pub(crate) const PAIRS: [(TransportKind, bool); 5] = [
    (TransportKind::WebSockets, false),
    (TransportKind::WebSockets, true),
    (TransportKind::ServerSentEvents, false),
    (TransportKind::LongPolling, false),
    (TransportKind::LongPolling, true),
];

pub(crate) fn builder(
    url: &str,
    transport: TransportKind,
    messagepack: bool,
) -> HubConnectionBuilder {
    let b = HubConnectionBuilder::new(url).with_transports([transport]);
    if messagepack { b.with_messagepack() } else { b }
}

/// Records connection events in order.
#[derive(Clone, Default)]
pub(crate) struct Events(pub(crate) Arc<Mutex<Vec<String>>>);

impl Events {
    pub(crate) fn attach(conn: &HubConnection) -> Self {
        let events = Self::default();
        let e = events.clone();
        conn.on_reconnecting(move |err| {
            e.push(format!(
                "reconnecting: {}",
                err.map(ToString::to_string).unwrap_or_default()
            ));
        });
        let e = events.clone();
        conn.on_reconnected(move |id| e.push(format!("reconnected: {}", id.unwrap_or("-"))));
        let e = events.clone();
        conn.on_close(move |err| {
            e.push(format!(
                "closed: {}",
                err.map(ToString::to_string).unwrap_or_default()
            ));
        });
        events
    }

    fn push(&self, s: String) {
        self.0.lock().unwrap().push(s);
    }

    pub(crate) fn list(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// Waits until an event starting with `prefix` was recorded.
    pub(crate) async fn wait_for(&self, prefix: &str) -> String {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(e) = self.list().into_iter().find(|e| e.starts_with(prefix)) {
                    return e;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {prefix:?} event; got {:?}", self.list()))
    }
}

/// Waits until `seen` holds `n` values (up to [`WAIT`]).
pub(crate) async fn wait_len(seen: &Mutex<Vec<i32>>, n: usize) {
    tokio::time::timeout(WAIT, async {
        while seen.lock().unwrap().len() < n {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {n} arrived", seen.lock().unwrap().len()));
}
