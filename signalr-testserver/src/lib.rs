//! A SignalR server on axum for testing clients: the server side of the protocol, the hub of
//! `shared/design/hub-contract.md`, and faults on demand.
//!
//! It speaks negotiate (versions 0 and 1, redirects, bearer tokens), WebSockets (also without
//! negotiate), Server-Sent Events and long polling, the JSON and MessagePack hub protocols,
//! keep-alive pings, client and handshake timeouts, streams both ways, client results, groups,
//! and stateful reconnect. Faults come from hub methods (`CloseMe`, `AbortMe`, `Blackhole`), from
//! [`Controls`], or from `/admin/…` endpoints when [`ServerConfig::admin`] is on.
//!
//! ```no_run
//! use signalr_testserver::{ServerConfig, TestServer};
//!
//! # async fn run() -> std::io::Result<()> {
//! let server = TestServer::start(ServerConfig::default()).await?; // 127.0.0.1, a free port
//! println!("hub at {}", server.url());                            // http://127.0.0.1:PORT/hub
//! server.controls().abort_all();                                  // every client loses its link
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! The binary `signalr-testserver` takes the same settings as flags (`--help`) and prints
//! `listening on http://127.0.0.1:PORT/hub` as its first line.

// Modules, leaves first (no import cycles: examples/tests/layout.rs): `error`, `wire` (the
// channel protocol), `registry` (this instance's connections), `backplane`, `app` (the server
// as requests and sessions see it), `hub`, `session` (one connection's server side), `script`
// and `http`.
mod app;
pub mod backplane;
mod config;
pub mod contract;
mod error;
mod http;
pub mod hub;
pub mod proxy;
mod registry;
pub mod script;
mod session;
mod tls;
mod trace;
mod wire;

use std::{
    io,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

pub use config::{Invocations, Redirect, ServerConfig};
use rand::{Rng as _, distr::Alphanumeric};
pub use tls::{ServerTls, pki};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use crate::{app::App, session::HubAcceptor};

/// The one clock read of the server, through tokio so that tests can pause time.
#[allow(clippy::disallowed_methods)]
pub(crate) fn now() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

/// Locks `m`, whether or not a holder panicked (the state it guards stays consistent).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A random URL-safe id of `len` characters.
pub(crate) fn random_id(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// A running server. Dropping it stops the server.
#[derive(Debug)]
pub struct TestServer {
    url: String,
    local_addr: SocketAddr,
    app: Arc<App>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// Fault controls for a running server, cheap to clone.
#[derive(Clone, Debug)]
pub struct Controls {
    app: Arc<App>,
}

impl Controls {
    /// Drops every connection's transport at once, without a Close message (stateful
    /// connections may resume); returns how many.
    pub fn abort_all(&self) -> usize {
        self.app.abort_all()
    }

    /// Answers negotiate and transport requests with 503 for `duration`: a restarting server.
    pub fn refuse_for(&self, duration: Duration) {
        self.app.refuse_for(duration);
    }

    /// Stops reading from and writing to every connection for `duration`, leaving the sockets
    /// open: a pulled cable. Returns how many.
    pub fn blackhole_all(&self, duration: Duration) -> usize {
        self.app.blackhole_all(duration)
    }

    /// Live connections.
    pub fn connection_count(&self) -> usize {
        self.app.registry.connection_count()
    }

    /// The most bytes any stateful connection's replay buffer has held unacknowledged since
    /// the server started: at most [`ServerConfig::stateful_buffer_bytes`] plus one run of
    /// messages written together (sends wait for an Ack beyond that).
    pub fn replay_buffer_high_water(&self) -> usize {
        self.app.replay_high_water()
    }
}

impl TestServer {
    /// Starts the contract hub on `127.0.0.1` with a free port.
    pub async fn start(config: ServerConfig) -> io::Result<Self> {
        Self::start_with(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            config,
            contract::contract_hub(),
        )
        .await
    }

    /// Starts `hub` on `addr` (port 0 picks a free port).
    pub async fn start_with(
        addr: SocketAddr,
        config: ServerConfig,
        hub: hub::Hub,
    ) -> io::Result<Self> {
        Self::serve(addr, config, Box::new(HubAcceptor::new(hub))).await
    }

    /// Starts a server whose connections are scripted by the test instead of served by a hub:
    /// negotiate and the transports work as usual, and every connection is handed over through
    /// the returned [`Script`](script::Script).
    pub async fn start_scripted(config: ServerConfig) -> io::Result<(Self, script::Script)> {
        let (acceptor, script) = script::Script::channel();
        let server = Self::serve(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            config,
            Box::new(acceptor),
        )
        .await?;
        Ok((server, script))
    }

    async fn serve(
        addr: SocketAddr,
        config: ServerConfig,
        accept: Box<dyn app::Accept>,
    ) -> io::Result<Self> {
        let tls = config.tls.as_ref().map(tls::server_config).transpose()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let path = config.hub_path.trim_end_matches('/').to_owned();
        let url = format!("{scheme}://{local_addr}{path}");
        let app = Arc::new(App::new(config, accept));
        if let Some(redis) = &app.config.redis {
            let backplane = backplane::Backplane::connect(
                redis,
                &app.config.hub_name,
                &app.config.server_name,
                app.config.backplane_timeout,
                app.config.max_message_size,
                Arc::downgrade(&app.registry),
            )
            .await?;
            let _ = app.backplane.set(backplane);
        }
        let router = http::router(Arc::clone(&app));
        let (stop, stopped) = oneshot::channel::<()>();
        let listener = tls::Listener::new(listener, tls);
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "server failed");
            }
        });
        tracing::info!(%url, "test server listening");
        Ok(Self {
            url,
            local_addr,
            app,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The hub URL, `http://127.0.0.1:PORT/hub` (`https` with [`ServerConfig::tls`]).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The fault controls.
    pub fn controls(&self) -> Controls {
        Controls {
            app: Arc::clone(&self.app),
        }
    }

    /// Closes every connection and stops the server.
    pub async fn shutdown(mut self) {
        self.app.shutdown_all();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            // Connections that do not finish promptly are cut.
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.app.shutdown_all();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
