//! A session's deadlines on a paused clock: each test drives one session through its channels
//! (no HTTP, no sockets) and asserts the exact instant of what it does: pings, the client
//! timeout, the handshake timeout, the disconnect timeout between polls and while detached,
//! Acks, a blackhole, a transport that stops reading.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use signalr_protocol::TransportKind;
use tokio::{
    sync::{OwnedMutexGuard, mpsc},
    time::{Instant, sleep},
};

use super::HubAcceptor;
use crate::{
    ServerConfig,
    app::App,
    wire::{ConnEntry, Control, Outbound},
};

const SECOND: Duration = Duration::from_secs(1);
const PING: &[u8] = b"{\"type\":6}\x1e";

/// The client's side of one connection, as a transport would see it.
struct Client {
    app: Arc<App>,
    entry: Arc<ConnEntry>,
    outbound: OwnedMutexGuard<mpsc::Receiver<Outbound>>,
    t0: Instant,
}

impl Client {
    /// A connection to the contract hub bound to `transport`, negotiated with stateful
    /// reconnect when `stateful`; `t0` is its creation.
    async fn new(config: ServerConfig, transport: TransportKind, stateful: bool) -> Self {
        let hub = crate::contract::contract_hub();
        let app = Arc::new(App::new(config, Box::new(HubAcceptor::new(hub))));
        let entry = app.create_connection(true, false, stateful, None);
        assert!(entry.bind(transport));
        let outbound = Arc::clone(&entry.outbound).lock_owned().await;
        Self {
            app,
            entry,
            outbound,
            t0: crate::now(),
        }
    }

    async fn connected(transport: TransportKind) -> Self {
        let mut client = Self::new(ServerConfig::default(), transport, false).await;
        client.handshake(1).await;
        client
    }

    async fn send(&self, bytes: &[u8]) {
        let bytes = Bytes::copy_from_slice(bytes);
        self.entry.inbound.send((0, bytes)).await.unwrap();
    }

    async fn handshake(&mut self, version: u32) {
        let request = format!("{{\"protocol\":\"json\",\"version\":{version}}}\x1e");
        self.send(request.as_bytes()).await;
        assert_eq!(self.frame().await, &b"{}\x1e"[..]);
        // The contract hub greets every connection.
        let welcome = self.frame().await;
        assert!(
            welcome.starts_with(b"{\"type\":1,\"target\":\"welcome\""),
            "{welcome:?}"
        );
    }

    async fn next(&mut self) -> Outbound {
        self.outbound.recv().await.unwrap()
    }

    async fn frame(&mut self) -> Bytes {
        match self.next().await {
            Outbound::Frame { bytes, .. } => bytes,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// Time since the connection was created.
    fn elapsed(&self) -> Duration {
        crate::now().duration_since(self.t0)
    }

    fn control(&self, control: Control) {
        self.entry.control.send(control).unwrap();
    }

    /// Sleeps until `at` after creation.
    async fn until(&self, at: Duration) {
        sleep(at.saturating_sub(self.elapsed())).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_ping_follows_the_last_frame_sent_by_the_keep_alive_interval() {
    let mut c = Client::connected(TransportKind::WebSockets).await;
    assert_eq!(c.frame().await, PING);
    assert_eq!(c.elapsed(), 15 * SECOND);
    // What the client sends does not move the ping; an answer sent to it does.
    c.until(20 * SECOND).await;
    c.send(b"{\"type\":1,\"invocationId\":\"1\",\"target\":\"Echo\",\"arguments\":[\"x\"]}\x1e")
        .await;
    let answer = c.frame().await;
    assert!(
        answer.starts_with(b"{\"type\":3,\"invocationId\":\"1\""),
        "{answer:?}"
    );
    assert_eq!(c.elapsed(), 20 * SECOND);
    assert_eq!(c.frame().await, PING);
    assert_eq!(c.elapsed(), 35 * SECOND);
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_dropped_after_the_client_timeout() {
    let mut c = Client::connected(TransportKind::ServerSentEvents).await;
    // Anything the client sends moves the timeout: a Ping at 10 s, so 40 s.
    c.until(10 * SECOND).await;
    c.send(PING).await;
    assert_eq!(c.frame().await, PING); // 15 s
    assert_eq!(c.frame().await, PING); // 30 s
    assert!(matches!(c.next().await, Outbound::Abort(None)));
    assert_eq!(c.elapsed(), 40 * SECOND);
    assert_eq!(c.app.registry.connection_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_handshake_not_done_in_time_is_refused() {
    let mut c = Client::new(ServerConfig::default(), TransportKind::WebSockets, false).await;
    c.send(b"{\"protocol\":").await; // half a request
    assert_eq!(
        c.frame().await,
        &b"{\"error\":\"Handshake was canceled.\"}\x1e"[..]
    );
    assert_eq!(c.elapsed(), 15 * SECOND);
    assert!(matches!(c.next().await, Outbound::Close));
}

#[tokio::test(start_paused = true)]
async fn between_polls_the_disconnect_timeout_runs_and_a_poll_holds_it() {
    let mut c = Client::connected(TransportKind::LongPolling).await;
    // No pings on long polling, and no timeout while a poll is held, even when a second poll
    // (refused: one at a time) comes and goes beside it.
    c.control(Control::Polling(true));
    c.until(10 * SECOND).await;
    c.control(Control::Polling(true));
    c.control(Control::Polling(false));
    let held = tokio::time::timeout(50 * SECOND, c.next()).await;
    assert!(held.is_err(), "{held:?}");
    c.control(Control::Polling(false));
    assert!(matches!(c.next().await, Outbound::Abort(None)));
    assert_eq!(c.elapsed(), 75 * SECOND);
}

#[tokio::test(start_paused = true)]
async fn a_stateful_connection_without_its_socket_waits_the_disconnect_timeout() {
    let mut c = Client::new(ServerConfig::default(), TransportKind::WebSockets, true).await;
    c.handshake(2).await;
    c.until(5 * SECOND).await;
    c.control(Control::TransportClosed(0));
    // No ping at 15 s while detached: the end comes first, 15 s after the socket went.
    assert!(matches!(c.next().await, Outbound::Abort(None)));
    assert_eq!(c.elapsed(), 20 * SECOND);
}

#[tokio::test(start_paused = true)]
async fn acks_go_out_on_a_one_second_period() {
    let mut c = Client::new(ServerConfig::default(), TransportKind::WebSockets, true).await;
    c.handshake(2).await;
    c.until(3 * SECOND + Duration::from_millis(500)).await;
    // Two sends (non-blocking: nothing is answered), acknowledged together.
    c.send(b"{\"type\":1,\"target\":\"Echo\",\"arguments\":[\"x\"]}\x1e")
        .await;
    c.send(b"{\"type\":1,\"target\":\"Echo\",\"arguments\":[\"y\"]}\x1e")
        .await;
    assert_eq!(c.frame().await, &b"{\"type\":8,\"sequenceId\":2}\x1e"[..]);
    assert_eq!(c.elapsed(), 4 * SECOND);
}

#[tokio::test(start_paused = true)]
async fn a_blackhole_holds_pings_and_timeouts_until_it_ends() {
    let mut c = Client::connected(TransportKind::WebSockets).await;
    c.control(Control::Blackhole(20 * SECOND));
    // The ping due at 15 s goes when the blackhole ends; the client timeout still ends it at
    // 30 s, since the client sent nothing.
    assert_eq!(c.frame().await, PING);
    assert_eq!(c.elapsed(), 20 * SECOND);
    assert!(matches!(c.next().await, Outbound::Abort(None)));
    assert_eq!(c.elapsed(), 30 * SECOND);
}

#[tokio::test(start_paused = true)]
async fn a_transport_that_stops_reading_is_dropped_after_the_disconnect_timeout() {
    let c = Client::connected(TransportKind::WebSockets).await;
    // Answers, one frame each, until the outbound channel (1,024 frames) is full and one more
    // waits; nothing reads them. The session then reads nothing either, so the calls are
    // sent from a task of their own.
    let inbound = c.entry.inbound.clone();
    tokio::spawn(async move {
        for i in 0..1100 {
            let call = format!(
                "{{\"type\":1,\"invocationId\":\"{i}\",\"target\":\"Echo\",\"arguments\":[1]}}\x1e"
            );
            if inbound.send((0, Bytes::from(call))).await.is_err() {
                return;
            }
        }
    });
    c.until(14 * SECOND + Duration::from_millis(999)).await;
    assert_eq!(c.app.registry.connection_count(), 1);
    c.until(15 * SECOND + Duration::from_millis(1)).await;
    assert_eq!(c.app.registry.connection_count(), 0);
}
