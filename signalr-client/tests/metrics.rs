//! The metrics of the crate docs ("Metrics", feature `metrics`) after a scripted session,
//! through `metrics-util`'s recording sink: exact counts of connections started, reconnect
//! attempts, closes by reason, messages and bytes each way (checked against what the scripted
//! server saw and sent), the invocation latency and reconnect duration histograms, and the
//! outbox's depth and rejections.
#![cfg(feature = "metrics")]
#![allow(clippy::unwrap_used)]
// The gauges hold whole numbers of calls and bytes, exact in an f64.
#![allow(clippy::float_cmp)]

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use bytes::BytesMut;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use signalr_client::{
    HubConnectionBuilder, HubConnectionState, HubError,
    protocol::{
        Completion, HandshakeRequest, HandshakeResponse, HubMessage, HubProtocol, JsonHubProtocol,
        MessageDecoder, Payload, PayloadFormat,
    },
    reconnect::FixedDelays,
    transport::memory::{self, MemoryListener, MemoryPeer},
};

/// The server side of one connection, counting what it reads after the handshake and what
/// it sends after its answer.
struct Peer {
    link: MemoryPeer,
    decoder: MessageDecoder<Arc<dyn HubProtocol>>,
    read_bytes: usize,
    read_messages: usize,
    sent_bytes: usize,
}

impl Peer {
    async fn accept(listener: &MemoryListener) -> Self {
        let mut peer = listener.accept().await.unwrap();
        let mut buf = BytesMut::new();
        while HandshakeRequest::decode(&mut buf, 1 << 16)
            .unwrap()
            .is_none()
        {
            buf.extend_from_slice(&peer.recv().await.unwrap());
        }
        let read_bytes = buf.len(); // anything after the request
        let protocol: Arc<dyn HubProtocol> = Arc::new(JsonHubProtocol::new());
        Self {
            link: peer,
            decoder: MessageDecoder::with_buffer(protocol, buf),
            read_bytes,
            read_messages: 0,
            sent_bytes: 0,
        }
    }

    fn answer_handshake(&self) {
        let mut out = BytesMut::new();
        HandshakeResponse::ok().encode(&mut out);
        assert!(self.link.send(out.freeze()));
    }

    fn send(&mut self, message: &HubMessage) {
        let mut out = BytesMut::new();
        JsonHubProtocol::new().encode(message, &mut out).unwrap();
        self.sent_bytes += out.len();
        assert!(self.link.send(out.freeze()));
    }

    async fn recv(&mut self) -> Option<HubMessage> {
        loop {
            if let Some(m) = self.decoder.next_message().unwrap() {
                self.read_messages += 1;
                return Some(m);
            }
            let bytes = self.link.recv().await?;
            self.read_bytes += bytes.len();
            self.decoder.push(&bytes);
        }
    }

    /// Reads until the client closes; the invocations it read.
    async fn drain(&mut self) -> Vec<String> {
        let mut targets = Vec::new();
        while let Some(m) = self.recv().await {
            if let HubMessage::Invocation(i) = m {
                targets.push(i.target);
            }
        }
        targets
    }
}

/// Every series as `name{label=value,…}` (labels sorted), accumulated over snapshots: the
/// sink hands out each value and starts again from zero, so counters and gauges add up (a gauge
/// moves by increments and decrements) and histograms append.
#[derive(Default)]
struct Totals {
    counters: BTreeMap<String, u64>,
    gauges: BTreeMap<String, f64>,
    histograms: BTreeMap<String, usize>,
}

impl Totals {
    fn update(&mut self, snapshotter: &Snapshotter) -> &Self {
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            match value {
                DebugValue::Counter(n) => *self.counters.entry(name).or_default() += n,
                DebugValue::Gauge(v) => *self.gauges.entry(name).or_default() += v.into_inner(),
                DebugValue::Histogram(v) => *self.histograms.entry(name).or_default() += v.len(),
            }
        }
        self
    }

    fn counter(&self, key: &str) -> u64 {
        self.counters.get(key).copied().unwrap_or_default()
    }

    fn gauge(&self, key: &str) -> f64 {
        self.gauges.get(key).copied().unwrap_or_default()
    }

    fn samples(&self, key: &str) -> usize {
        self.histograms.get(key).copied().unwrap_or_default()
    }
}

async fn wait_state(conn: &signalr_client::HubConnection, state: HubConnectionState) {
    tokio::time::timeout(
        Duration::from_secs(10),
        conn.state_changes().wait_for(|s| *s == state),
    )
    .await
    .unwrap()
    .unwrap();
}

// The only test in this binary: the recorder is global.
#[tokio::test]
async fn a_scripted_session_counts_exactly() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let (connector, listener) = memory::connector();
    let conn = HubConnectionBuilder::new("memory://hub")
        .with_connector(connector)
        .with_automatic_reconnect_policy(FixedDelays::from_millis(&[0]))
        .with_outbox_size(1)
        .build()
        .unwrap();
    let starting = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.start().await })
    };
    let mut first = Peer::accept(&listener).await;
    first.answer_handshake();
    starting.await.unwrap().unwrap();

    // One invocation, answered.
    let call = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.invoke::<i64>("Add", (1, 2)).await })
    };
    let id = loop {
        if let Some(HubMessage::Invocation(i)) = first.recv().await {
            break i.invocation_id.unwrap();
        }
    };
    let three = Payload::from_value(PayloadFormat::Json, &3).unwrap();
    first.send(&HubMessage::Completion(Completion::value(id, three)));
    assert_eq!(call.await.unwrap().unwrap(), 3);

    // The server goes away: a reconnect, whose handshake waits while a send is held in the
    // outbox (room for one) and a second one is refused.
    first.link.close();
    let mut second = Peer::accept(&listener).await;
    wait_state(&conn, HubConnectionState::Reconnecting).await;
    let held = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.send("Echo", ("held",)).await })
    };
    let mut totals = Totals::default();
    tokio::time::timeout(Duration::from_secs(10), async {
        while totals
            .update(&snapshotter)
            .gauge("signalr.client.outbox.depth{}")
            < 1.0
        {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    let refused = conn.send("Echo", ("refused",)).await.unwrap_err();
    assert!(
        matches!(refused, HubError::OutboxFull { capacity: 1 }),
        "{refused}"
    );
    let during = totals.update(&snapshotter);
    assert_eq!(during.gauge("signalr.client.outbox.depth{}"), 1.0);
    assert_eq!(during.counter("signalr.client.outbox.rejected{}"), 1);

    second.answer_handshake();
    wait_state(&conn, HubConnectionState::Connected).await;
    held.await.unwrap().unwrap();
    conn.stop().await.unwrap();
    let first_targets = first.drain().await;
    let second_targets = second.drain().await;
    assert!(first_targets.is_empty(), "{first_targets:?}"); // Add was read above
    assert_eq!(second_targets, ["Echo"]);

    assert_session_totals(totals.update(&snapshotter), &first, &second);
}

/// What the whole session must have recorded.
fn assert_session_totals(all: &Totals, first: &Peer, second: &Peer) {
    let started: Vec<_> = all
        .counters
        .keys()
        .filter(|k| k.starts_with("signalr.client.connections.started{"))
        .collect();
    assert_eq!(started.len(), 1, "{:#?}", all.counters);
    assert!(started[0].contains("protocol=json"), "{started:?}");
    assert_eq!(all.counter(started[0]), 1);
    assert_eq!(
        all.counter("signalr.client.reconnect.attempts{outcome=succeeded}"),
        1
    );
    assert_eq!(
        all.counter("signalr.client.reconnect.attempts{outcome=failed}"),
        0
    );
    assert_eq!(
        all.samples("signalr.client.reconnect.duration{kind=reconnect}"),
        1
    );
    assert_eq!(
        all.counter("signalr.client.connections.closed{protocol=json,reason=stopped}"),
        1
    );
    // What the server read after each handshake (the call, pings if any, the held send, the
    // Close) and what it sent after its answers (the completion).
    let read_messages = (first.read_messages + second.read_messages) as u64;
    let read_bytes = (first.read_bytes + second.read_bytes) as u64;
    assert_eq!(
        all.counter("signalr.client.messages.sent{protocol=json}"),
        read_messages
    );
    assert_eq!(
        all.counter("signalr.client.bytes.sent{protocol=json}"),
        read_bytes
    );
    assert_eq!(
        all.counter("signalr.client.messages.received{protocol=json}"),
        1
    );
    assert_eq!(
        all.counter("signalr.client.bytes.received{protocol=json}"),
        (first.sent_bytes + second.sent_bytes) as u64
    );
    assert_eq!(
        all.samples("signalr.client.invocation.duration{outcome=ok,rpc.method=Add}"),
        1
    );
    assert_eq!(all.gauge("signalr.client.outbox.depth{}"), 0.0);
    assert_eq!(all.gauge("signalr.client.replay_buffer.bytes{}"), 0.0);
}
