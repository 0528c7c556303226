//! Bounded memory under hostile input: a counting global allocator measures the live heap
//! while a scripted server (the in-memory transport, so no server or socket buffers share the
//! count) floods the client. The peak above the baseline stays within the maximum message size
//! plus 1 MiB, and the heap returns to the baseline after.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use signalr_client::{
    HubConnection, HubConnectionBuilder, HubConnectionState,
    protocol::{
        Completion, HandshakeRequest, HandshakeResponse, HubMessage, HubProtocol, JsonHubProtocol,
        MessagePackHubProtocol, Payload, StreamItem,
    },
    transport::memory::{self, MemoryPeer},
};

// peak_alloc counts live and peak bytes around the system allocator (the workspace forbids
// the unsafe code a hand-written one would need).
#[global_allocator]
static ALLOCATOR: peak_alloc::PeakAlloc = peak_alloc::PeakAlloc;

/// The client's maximum message size in these tests (its default).
const MAX: usize = 1024 * 1024;
const SLACK: usize = 1024 * 1024;

fn live() -> usize {
    ALLOCATOR.current_usage()
}

/// Starts the peak over from now.
fn reset_peak() -> usize {
    ALLOCATOR.reset_peak_usage();
    ALLOCATOR.peak_usage()
}

fn frame(protocol: &dyn HubProtocol, message: &HubMessage) -> Bytes {
    let mut out = BytesMut::new();
    protocol.encode(message, &mut out).unwrap();
    out.freeze()
}

/// A started client on the in-memory transport and the scripted server's end.
async fn started(messagepack: bool) -> (HubConnection, MemoryPeer, memory::MemoryListener) {
    let (connector, listener) = memory::connector();
    let b = HubConnectionBuilder::new("memory://hub").with_connector(connector);
    let conn = if messagepack { b.with_messagepack() } else { b }
        .build()
        .unwrap();
    let start = tokio::spawn({
        let conn = conn.clone();
        async move { conn.start().await }
    });
    let mut peer = listener.accept().await.unwrap();
    let mut buf = BytesMut::new();
    while HandshakeRequest::decode(&mut buf, 1 << 16)
        .unwrap()
        .is_none()
    {
        buf.extend_from_slice(&peer.recv().await.unwrap());
    }
    let mut ok = BytesMut::new();
    HandshakeResponse::ok().encode(&mut ok);
    assert!(peer.send(ok.freeze()));
    start.await.unwrap().unwrap();
    (conn, peer, listener)
}

/// Sends `chunk` `times` times, letting the client keep up.
async fn flood(peer: &MemoryPeer, chunk: &Bytes, times: usize) {
    for i in 0..times {
        if !peer.send(chunk.clone()) {
            return; // the client closed: what an oversized record should cause
        }
        if i % 16 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Runs one scenario and checks the peak over the baseline, then the return to it.
async fn bounded<F, Fut>(name: &str, messagepack: bool, scenario: F)
where
    F: FnOnce(HubConnection, MemoryPeer) -> Fut,
    Fut: Future<Output = ()>,
{
    // Warm up once so that lazily built statics (tracing callsites, tokio's) are in the
    // baseline, not the peak.
    let (conn, peer, listener) = started(messagepack).await;
    conn.stop().await.unwrap();
    drop((conn, peer, listener));
    tokio::time::sleep(Duration::from_millis(50)).await;

    let before = live();
    let (conn, peer, listener) = started(messagepack).await;
    let base = reset_peak();
    scenario(conn.clone(), peer).await;
    let peak = ALLOCATOR.peak_usage().saturating_sub(base);
    let _ = conn.stop().await;
    drop((conn, listener));
    // Back to where it started, once the connection's tasks have ended.
    let mut after = live();
    for _ in 0..200 {
        if after <= before + 64 * 1024 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        after = live();
    }
    println!(
        "{name} ({}): peak {} KiB over the baseline, {} KiB left after",
        if messagepack { "messagepack" } else { "json" },
        peak / 1024,
        after.saturating_sub(before) / 1024
    );
    assert!(
        peak <= MAX + SLACK,
        "{name}: peak {peak} bytes over the baseline"
    );
    assert!(
        after <= before + 64 * 1024,
        "{name}: {} bytes not freed",
        after - before
    );
}

fn protocol(messagepack: bool) -> Box<dyn HubProtocol> {
    if messagepack {
        Box::new(MessagePackHubProtocol::new())
    } else {
        Box::new(JsonHubProtocol::new())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_floods_stay_within_the_message_size_plus_one_mib() {
    for messagepack in [false, true] {
        let p = protocol(messagepack);
        let ping = frame(&*p, &HubMessage::Ping);
        let pings: Bytes = ping
            .iter()
            .copied()
            .cycle()
            .take(ping.len() * 8192)
            .collect();
        bounded("a million pings", messagepack, |conn, peer| async move {
            flood(&peer, &pings, 1_000_000 / 8192).await;
            assert_eq!(
                drained(&conn, &peer, messagepack).await,
                HubConnectionState::Connected
            );
            drop(peer);
        })
        .await;

        // 64 MiB of one record that never ends (no separator; a length prefix that claims
        // 64 MiB): refused once past the maximum, without buffering it.
        let mut opening = if messagepack {
            vec![0x80, 0x80, 0x80, 0x20] // 64 MiB
        } else {
            b"{\"type\":1,\"target\":\"n\",\"arguments\":[\"".to_vec()
        };
        opening.resize(64 * 1024, b'a');
        let chunk = Bytes::from(opening);
        let rest = Bytes::from(vec![b'a'; 64 * 1024]);
        bounded("a 64 MiB record", messagepack, |conn, peer| async move {
            peer.send(chunk);
            flood(&peer, &rest, 1024).await;
            wait_closed(&conn).await;
        })
        .await;

        let unknown: Bytes = (0..4096)
            .flat_map(|i| {
                frame(
                    &*p,
                    &HubMessage::Completion(Completion::void(format!("unknown-{i}"))),
                )
            })
            .collect();
        bounded(
            "a million answers to unknown ids",
            messagepack,
            |conn, peer| async move {
                flood(&peer, &unknown, 1_000_000 / 4096).await;
                assert_eq!(
                    drained(&conn, &peer, messagepack).await,
                    HubConnectionState::Connected
                );
                drop(peer);
            },
        )
        .await;

        let format = p.payload_format();
        bounded(
            "a stream nobody reads",
            messagepack,
            |conn, mut peer| async move {
                let stream = conn.stream::<String>("Items", ()).await.unwrap();
                let mut decoder =
                    signalr_client::protocol::MessageDecoder::new(protocol(messagepack));
                let id = loop {
                    decoder.push(&peer.recv().await.unwrap());
                    if let Some(HubMessage::StreamInvocation(s)) = decoder.next_message().unwrap() {
                        break s.invocation_id;
                    }
                };
                let item = Payload::from_value(format, &"x".repeat(1000)).unwrap();
                let one = frame(
                    &*p,
                    &HubMessage::StreamItem(StreamItem::new(id.as_str(), item)),
                );
                let items: Bytes = one.iter().copied().cycle().take(one.len() * 256).collect();
                flood(&peer, &items, 1_000_000 / 256).await;
                assert_eq!(
                    drained(&conn, &peer, messagepack).await,
                    HubConnectionState::Connected
                );
                drop((stream, peer));
            },
        )
        .await;
    }
}

async fn wait_closed(conn: &HubConnection) {
    tokio::time::timeout(
        Duration::from_secs(10),
        conn.state_changes()
            .wait_for(|s| *s == HubConnectionState::Disconnected),
    )
    .await
    .unwrap()
    .unwrap();
}

/// Waits until the client has handled everything sent so far (a `done()` call sent after it
/// has reached its handler); returns the state then.
async fn drained(conn: &HubConnection, peer: &MemoryPeer, messagepack: bool) -> HubConnectionState {
    let notify = std::sync::Arc::new(tokio::sync::Notify::new());
    let n = std::sync::Arc::clone(&notify);
    let _done = conn.on("done", move || {
        let n = std::sync::Arc::clone(&n);
        async move { n.notify_one() }
    });
    let p = protocol(messagepack);
    let args = signalr_client::protocol::Arguments::empty(p.payload_format());
    peer.send(frame(
        &*p,
        &HubMessage::Invocation(signalr_client::protocol::Invocation::non_blocking(
            "done", args,
        )),
    ));
    tokio::time::timeout(Duration::from_secs(20), notify.notified())
        .await
        .unwrap();
    conn.state()
}
