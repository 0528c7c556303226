//! Keep-alive and reconnect timing on a paused clock, against a scripted in-memory server: no
//! sockets and no real time, so every instant below is exact.

use std::{sync::Arc, time::Duration};

use bytes::BytesMut;
use signalr_client::{
    HubConnection, HubConnectionBuilder, HubConnectionState, HubError,
    protocol::{
        HandshakeRequest, HandshakeResponse, HubMessage, HubProtocol, JsonHubProtocol,
        MessageDecoder,
    },
    reconnect::FixedDelays,
    transport::memory::{self, MemoryListener, MemoryPeer},
};
use tokio::time::Instant;

#[allow(clippy::disallowed_methods)] // the test reads the paused clock to check the instants
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// The server side of one connection, scripted by the test (also used by `violations`).
pub(crate) struct Peer {
    peer: MemoryPeer,
    decoder: MessageDecoder<Arc<dyn HubProtocol>>,
}

impl Peer {
    /// Accepts the next connection and reads the client's handshake request (not answered yet).
    pub(crate) async fn accept(listener: &MemoryListener) -> Self {
        let mut peer = listener.accept().await.expect("a connection");
        let mut buf = BytesMut::new();
        loop {
            if let Some(request) = HandshakeRequest::decode(&mut buf, 1 << 16).unwrap() {
                assert_eq!(request.protocol, "json");
                break;
            }
            buf.extend_from_slice(&peer.recv().await.expect("a handshake request"));
        }
        let protocol: Arc<dyn HubProtocol> = Arc::new(JsonHubProtocol::new());
        Self {
            peer,
            decoder: MessageDecoder::with_buffer(protocol, buf),
        }
    }

    pub(crate) fn answer_handshake(&self) {
        let mut out = BytesMut::new();
        HandshakeResponse::ok().encode(&mut out);
        assert!(self.peer.send(out.freeze()));
    }

    pub(crate) fn send(&self, message: &HubMessage) {
        let mut out = BytesMut::new();
        JsonHubProtocol::new().encode(message, &mut out).unwrap();
        let _ = self.peer.send(out.freeze());
    }

    pub(crate) async fn recv(&mut self) -> Option<HubMessage> {
        loop {
            if let Some(m) = self.decoder.next_message().unwrap() {
                return Some(m);
            }
            let bytes = self.peer.recv().await?;
            self.decoder.push(&bytes);
        }
    }
}

pub(crate) async fn started(
    builder: HubConnectionBuilder,
) -> (HubConnection, MemoryListener, Peer, Instant) {
    let (connector, listener) = memory::connector();
    let conn = builder.with_connector(connector).build().unwrap();
    let starting = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.start().await })
    };
    let peer = Peer::accept(&listener).await;
    peer.answer_handshake();
    starting.await.unwrap().unwrap();
    (conn, listener, peer, now())
}

async fn wait_state(conn: &HubConnection, state: HubConnectionState) {
    conn.state_changes()
        .wait_for(|s| *s == state)
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn pings_at_exactly_15_s_of_silence_and_the_server_dies_at_30() {
    let (conn, _listener, mut peer, t0) = started(HubConnectionBuilder::new("memory://hub")).await;
    assert_eq!(peer.recv().await, Some(HubMessage::Ping));
    assert_eq!(now() - t0, Duration::from_secs(15));
    // The peer stays silent: at 30 s the client declares the server dead.
    wait_state(&conn, HubConnectionState::Disconnected).await;
    assert_eq!(now() - t0, Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn traffic_from_the_server_resets_the_timeout_and_sending_resets_the_ping() {
    let (conn, _listener, mut peer, t0) = started(HubConnectionBuilder::new("memory://hub")).await;
    assert_eq!(peer.recv().await, Some(HubMessage::Ping));
    assert_eq!(now() - t0, Duration::from_secs(15), "the first ping");
    tokio::time::sleep_until(t0 + Duration::from_secs(20)).await;
    peer.send(&HubMessage::Ping); // the server timeout moves from 30 s to 50 s
    tokio::time::sleep_until(t0 + Duration::from_secs(25)).await;
    conn.send("Anything", ()).await.unwrap(); // the next ping moves from 30 s to 40 s
    assert!(matches!(peer.recv().await, Some(HubMessage::Invocation(_))));
    assert_eq!(peer.recv().await, Some(HubMessage::Ping));
    assert_eq!(
        now() - t0,
        Duration::from_secs(40),
        "15 s after the last send"
    );
    wait_state(&conn, HubConnectionState::Disconnected).await;
    assert_eq!(
        now() - t0,
        Duration::from_secs(50),
        "30 s after the server's last message"
    );
}

#[tokio::test(start_paused = true)]
async fn the_handshake_times_out_at_exactly_15_s() {
    let (connector, listener) = memory::connector();
    let conn = HubConnectionBuilder::new("memory://hub")
        .with_connector(connector)
        .build()
        .unwrap();
    let t0 = now();
    let starting = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.start().await })
    };
    let _silent = Peer::accept(&listener).await; // reads the request, never answers
    let err = starting.await.unwrap().unwrap_err();
    assert!(matches!(err, HubError::HandshakeTimeout), "{err}");
    assert_eq!(now() - t0, Duration::from_secs(15));
}

#[tokio::test(start_paused = true)]
async fn the_default_policy_retries_after_0_2_10_and_30_s_then_gives_up() {
    let (conn, listener, mut peer, _t0) =
        started(HubConnectionBuilder::new("memory://hub").with_automatic_reconnect()).await;
    let (tx, mut closed) = tokio::sync::mpsc::unbounded_channel();
    conn.on_close(move |e| {
        let _ = tx.send(e.map(ToString::to_string));
    });
    peer.peer.close(); // the server goes away
    let lost = now();
    let mut attempts = Vec::new();
    for _ in 0..4 {
        let mut failing = Peer::accept(&listener).await;
        attempts.push((now() - lost).as_secs());
        failing.peer.close(); // the handshake never completes: the attempt fails
    }
    assert_eq!(
        attempts,
        [0, 2, 12, 42],
        "delays 0, 2, 10, 30 s between attempts"
    );
    let error = closed.recv().await.unwrap();
    assert!(error.is_some(), "closed with the last error");
    assert_eq!((now() - lost).as_secs(), 42, "no fifth attempt");
    assert_eq!(conn.state(), HubConnectionState::Disconnected);
}

#[tokio::test(start_paused = true)]
async fn a_reconnect_after_a_server_timeout_is_exact_too() {
    let builder = HubConnectionBuilder::new("memory://hub")
        .with_automatic_reconnect_policy(FixedDelays::from_secs(&[5]));
    let (conn, listener, _peer, t0) = started(builder).await;
    let next = Peer::accept(&listener).await; // timed out at 30 s, retried 5 s later
    assert_eq!(now() - t0, Duration::from_secs(35));
    assert_eq!(conn.state(), HubConnectionState::Reconnecting);
    next.answer_handshake();
    wait_state(&conn, HubConnectionState::Connected).await;
    assert_eq!(now() - t0, Duration::from_secs(35));
}
