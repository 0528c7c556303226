//! A TCP proxy that breaks things on command, for testing clients against a hostile network.
//!
//! Put it between a client and a server (`127.0.0.1`, a free port) and choose what the network
//! does to the bytes of every connection: pass them, delay them, throttle them, split them into
//! 1-byte writes, or drop them all while keeping the sockets open (a pulled cable). On demand it
//! also cuts every connection with a TCP reset, half-closes them, or refuses new ones for a
//! while.
//!
//! ```no_run
//! use std::time::Duration;
//! use signalr_testserver::{ServerConfig, TestServer, proxy::{FaultProxy, Mode}};
//!
//! # async fn run() -> std::io::Result<()> {
//! let server = TestServer::start(ServerConfig::default()).await?;
//! let proxy = FaultProxy::start(server.local_addr()).await?;
//! let url = proxy.url(server.url()); // the hub URL, through the proxy
//! proxy.set_mode(Mode::Blackhole);     // every byte dropped, no FIN, no RST
//! proxy.reset_all();                   // every connection cut with RST
//! proxy.refuse_for(Duration::from_secs(1));
//! # Ok(()) }
//! ```

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
    time::Instant,
};

/// What the network does to the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// Forward everything as it comes.
    Pass,
    /// Hold every chunk this long before forwarding it.
    Delay(Duration),
    /// Forward at most this many bytes per second in each direction.
    Throttle(u32),
    /// Forward every chunk one byte per write, to exercise reassembly.
    OneByteChunks,
    /// Forward nothing and keep the sockets open: a pulled cable (no FIN, no RST).
    Blackhole,
}

/// Signals to every connection task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    None,
    /// Close with a TCP reset (generation).
    Reset(u64),
    /// Shut down the write side towards the client (generation).
    HalfClose(u64),
}

#[derive(Debug)]
struct State {
    mode: watch::Sender<Mode>,
    events: watch::Sender<Event>,
    refuse_until: std::sync::Mutex<Option<Instant>>,
    generation: std::sync::atomic::AtomicU64,
}

/// A running fault proxy; dropping it stops it (connections in flight are cut).
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.reset_all();
        self.task.abort();
    }
}

#[allow(clippy::disallowed_methods)] // the proxy's own deadlines, on tokio's (pausable) clock
fn now() -> Instant {
    Instant::now()
}

impl FaultProxy {
    /// Listens on `127.0.0.1` (a free port) and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            mode: watch::channel(Mode::Pass).0,
            events: watch::channel(Event::None).0,
            refuse_until: std::sync::Mutex::new(None),
            generation: std::sync::atomic::AtomicU64::new(0),
        });
        let accept_state = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let refusing = accept_state
                    .refuse_until
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .is_some_and(|until| now() < until);
                if refusing {
                    // A refused connection: reset at once.
                    let _ = client.set_zero_linger();
                    drop(client);
                    continue;
                }
                tokio::spawn(connection(client, upstream, Arc::clone(&accept_state)));
            }
        });
        Ok(Self { addr, state, task })
    }

    /// The proxy's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `url` (an `http://host:port/…` URL of the upstream) with the proxy's address instead.
    pub fn url(&self, url: &str) -> String {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let path = rest.find('/').map_or("", |i| &rest[i..]);
        format!("http://{}{path}", self.addr)
    }

    /// Sets what happens to the bytes of every connection, existing and new.
    pub fn set_mode(&self, mode: Mode) {
        self.state.mode.send_replace(mode);
    }

    /// Cuts every open connection with a TCP reset.
    pub fn reset_all(&self) {
        let g = self
            .state
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel)
            + 1;
        self.state.events.send_replace(Event::Reset(g));
    }

    /// Shuts down the direction towards the client on every open connection (the client reads
    /// end-of-stream; its writes still reach the server).
    pub fn half_close_all(&self) {
        let g = self
            .state
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel)
            + 1;
        self.state.events.send_replace(Event::HalfClose(g));
    }

    /// Resets every new connection for `duration` (a server that is down).
    pub fn refuse_for(&self, duration: Duration) {
        *self
            .state
            .refuse_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(now() + duration);
    }
}

async fn connection(client: TcpStream, upstream: SocketAddr, state: Arc<State>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        let _ = client.set_zero_linger();
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    // A second handle on the client's socket: closing the halves alone would send a FIN, so a
    // reset sets zero linger here and the last close of the socket sends the RST.
    let Ok((client, mut control)) = duplicate(client) else {
        return;
    };
    let mut events = state.events.subscribe();
    events.mark_unchanged();
    // tokio::io::split, not into_split: an OwnedWriteHalf shuts the socket down when dropped,
    // which would send a FIN ahead of a reset's RST.
    let (client_read, client_write) = tokio::io::split(client);
    let (server_read, server_write) = server.into_split();
    let mut up = tokio::spawn(pump(server_read, client_write, state.mode.subscribe()));
    let mut down = tokio::spawn(pump(client_read, server_write, state.mode.subscribe()));
    let (mut up_done, mut down_done) = (false, false);
    loop {
        tokio::select! {
            _ = &mut up, if !up_done => up_done = true,
            _ = &mut down, if !down_done => down_done = true,
            changed = events.changed() => {
                if changed.is_err() {
                    return;
                }
                let event = *events.borrow_and_update();
                match event {
                    Event::Reset(_) => {
                        let _ = control.set_zero_linger();
                        up.abort();
                        down.abort();
                        if !up_done {
                            let _ = up.await;
                        }
                        if !down_done {
                            let _ = down.await;
                        }
                        return; // the handle drops last: RST
                    }
                    // Dropping the write half towards the client shuts it down: a FIN.
                    // Stop forwarding to the client and send it a FIN.
                    Event::HalfClose(_) => {
                        up.abort();
                        let _ = control.shutdown().await;
                    }
                    Event::None => {}
                }
            }
        }
        // Both directions ended: let go.
        if up_done && down_done {
            return;
        }
    }
}

fn duplicate(stream: TcpStream) -> io::Result<(TcpStream, TcpStream)> {
    let std = stream.into_std()?;
    let copy = std.try_clone()?;
    Ok((TcpStream::from_std(std)?, TcpStream::from_std(copy)?))
}

/// Copies `from` to `to` as the mode says, until either side ends.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut mode: watch::Receiver<Mode>,
) -> Option<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // A blackhole reads nothing and writes nothing until the mode changes.
        while *mode.borrow() == Mode::Blackhole {
            mode.changed().await.ok()?;
        }
        let n = from.read(&mut buf).await.ok()?;
        if n == 0 {
            let _ = to.shutdown().await;
            return Some(());
        }
        let current = *mode.borrow();
        match current {
            Mode::Blackhole => {
                // Arrived as the cable was pulled: lost, as on a real network.
            }
            Mode::Pass => to.write_all(&buf[..n]).await.ok()?,
            Mode::Delay(d) => {
                tokio::time::sleep(d).await;
                to.write_all(&buf[..n]).await.ok()?;
            }
            Mode::Throttle(rate) => {
                let rate = u64::from(rate.max(1));
                for chunk in buf[..n].chunks(1024) {
                    to.write_all(chunk).await.ok()?;
                    tokio::time::sleep(Duration::from_micros(
                        chunk.len() as u64 * 1_000_000 / rate,
                    ))
                    .await;
                }
            }
            Mode::OneByteChunks => {
                for byte in &buf[..n] {
                    to.write_all(std::slice::from_ref(byte)).await.ok()?;
                    to.flush().await.ok()?;
                }
            }
        }
    }
}
