//! Rows 3.15–3.21 (and 3.40's split events): how records arrive, and records that are cut
//! short, too large, too deep or not text.

use signalr_client::{
    HubConnectionState,
    protocol::{JsonHubProtocol, MessagePackHubProtocol},
};
use signalr_testserver::proxy::{FaultProxy, Mode};

use crate::{
    Case,
    support::{
        ALL, BINARY, Events, Pair, Peer, binary_frame, call, connected, record, scripted,
        spawn_start, wait_len, within,
    },
};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!(
            "3.15",
            records_split_at_every_byte_or_coalesced_arrive_in_order,
            ALL
        ),
        case!("3.16", a_record_cut_short_by_the_end_is_an_error, ALL),
        case!("3.17", a_record_over_the_maximum_is_refused_early, ALL),
        case!("3.18", bad_varint_prefixes_are_protocol_errors, BINARY),
        case!("3.19", huge_messagepack_lengths_are_errors, BINARY),
        case!("3.20", deep_nesting_is_an_error_not_a_crash, ALL),
        case!("3.21", invalid_utf8_is_an_error, ALL),
    ]
}

async fn records_split_at_every_byte_or_coalesced_arrive_in_order(pair: Pair) {
    // Every byte on the wire alone (the proxy), and every record byte in a message of its own.
    let (server, mut script) = scripted(|_| {}).await;
    let proxy = FaultProxy::start(server.local_addr()).await.unwrap();
    proxy.set_mode(Mode::OneByteChunks);
    let conn = pair.builder(&proxy.url(server.url())).build().unwrap();
    let (_n, seen) = record(&conn, "n");
    let start = spawn_start(&conn);
    let peer = Peer::connected(&mut script, pair).await;
    within(start).await.unwrap().unwrap();
    let split: Vec<u8> = (0..5)
        .flat_map(|i| pair.encode(&call(pair, "n", i)))
        .collect();
    for byte in split {
        peer.raw(vec![byte]).await;
    }
    let whole: Vec<u8> = (5..20)
        .flat_map(|i| pair.encode(&call(pair, "n", i)))
        .collect();
    peer.raw(whole).await;
    wait_len(&seen, 20).await;
    assert_eq!(*seen.lock().unwrap(), (0..20).collect::<Vec<_>>());
    conn.stop().await.unwrap();
    drop(peer);
    drop(proxy);
    server.shutdown().await;
}

async fn a_record_cut_short_by_the_end_is_an_error(pair: Pair) {
    let (server, _script, conn, peer) = connected(pair, |b| b).await;
    let events = Events::attach(&conn);
    let record = pair.encode(&call(pair, "n", 1));
    peer.raw(record.slice(..record.len() / 2)).await;
    peer.conn.close().await;
    let closed = events.wait_for("closed").await;
    assert!(closed.contains("ended inside a message"), "{closed}");
    server.shutdown().await;
}

async fn a_record_over_the_maximum_is_refused_early(pair: Pair) {
    const MAX: usize = 64 * 1024;
    let (server, _script, conn, peer) = connected(pair, |b| {
        if pair.messagepack {
            b.with_protocol(MessagePackHubProtocol::new().with_max_message_size(MAX))
        } else {
            b.with_protocol(JsonHubProtocol::new().with_max_message_size(MAX))
        }
    })
    .await;
    let events = Events::attach(&conn);
    if pair.messagepack {
        // A length prefix that announces 1 MiB.
        peer.raw(vec![0x80, 0x80, 0x40]).await;
    } else {
        // A record that never ends, sent in pieces: refused once past the maximum.
        let piece = vec![b' '; 16 * 1024];
        for _ in 0..=(MAX / piece.len()) {
            peer.raw(piece.clone()).await;
        }
    }
    let closed = events.wait_for("closed").await;
    assert!(
        closed.contains("too large") || closed.contains("exceeds"),
        "{closed}"
    );
    assert_eq!(conn.state(), HubConnectionState::Disconnected);
    drop(peer);
    server.shutdown().await;
}

/// Opens a connection, sends `bytes`, and expects the client to close with a protocol error.
async fn expect_protocol_error(pair: Pair, bytes: Vec<u8>) {
    let (server, _script, conn, peer) = connected(pair, |b| b).await;
    let events = Events::attach(&conn);
    peer.raw(bytes).await;
    let closed = events.wait_for("closed").await;
    assert!(
        closed.contains("protocol error") || closed.contains("transport error"),
        "{closed}"
    );
    drop(peer);
    server.shutdown().await;
}

async fn bad_varint_prefixes_are_protocol_errors(pair: Pair) {
    // 5th byte over 7 (more than 2 GB); six continuation bytes.
    expect_protocol_error(pair, vec![0x80, 0x80, 0x80, 0x80, 0x08, 0x90]).await;
    expect_protocol_error(pair, vec![0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]).await;
    // A truncated prefix, then the end: cut short.
    let (server, _script, conn, peer) = connected(pair, |b| b).await;
    let events = Events::attach(&conn);
    peer.raw(vec![0x80]).await;
    peer.conn.close().await;
    let closed = events.wait_for("closed").await;
    assert!(closed.contains("ended inside a message"), "{closed}");
    server.shutdown().await;
}

async fn huge_messagepack_lengths_are_errors(pair: Pair) {
    // array32, map32, str32, bin32 and ext32 headers claiming 2^32 - 1 with one byte of data.
    for marker in [0xdd, 0xdf, 0xdb, 0xc6, 0xc9] {
        let body = [marker, 0xff, 0xff, 0xff, 0xff, 0x01];
        expect_protocol_error(pair, binary_frame(&body)).await;
    }
}

async fn deep_nesting_is_an_error_not_a_crash(pair: Pair) {
    const DEPTH: usize = 500_000;
    let bytes = if pair.messagepack {
        // [1, {}, nil, "n", [[[[…]]]]]
        let mut body = vec![0x95, 0x01, 0x80, 0xc0, 0xa1, b'n', 0x91];
        body.extend(std::iter::repeat_n(0x91, DEPTH));
        body.push(0x90);
        binary_frame(&body)
    } else {
        let mut text = b"{\"type\":1,\"target\":\"n\",\"arguments\":[".to_vec();
        text.extend(std::iter::repeat_n(b'[', DEPTH));
        text.extend(std::iter::repeat_n(b']', DEPTH));
        text.extend_from_slice(b"]}\x1e");
        text
    };
    let (server, _script, conn, peer) = connected(pair, |b| {
        // Large enough to take the whole message: the depth, not the size, must stop it.
        if pair.messagepack {
            b.with_protocol(MessagePackHubProtocol::new().with_max_message_size(4 << 20))
        } else {
            b.with_protocol(JsonHubProtocol::new().with_max_message_size(4 << 20))
        }
    })
    .await;
    let events = Events::attach(&conn);
    let (_n, seen) = record(&conn, "n");
    peer.raw(bytes).await;
    // Either the connection closes with a protocol error, or the handler's arguments fail to
    // bind (logged): what must not happen is a crash, a hang, or a call.
    peer.send(&call(pair, "n", 1)).await;
    let outcome = within(async {
        loop {
            if let Some(e) = events.list().into_iter().find(|e| e.starts_with("closed")) {
                return e;
            }
            if !seen.lock().unwrap().is_empty() {
                return "alive".to_owned();
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        outcome == "alive" || outcome.contains("protocol error"),
        "{outcome}"
    );
    assert_eq!(
        *seen.lock().unwrap(),
        if outcome == "alive" { vec![1] } else { vec![] }
    );
    drop(peer);
    server.shutdown().await;
}

async fn invalid_utf8_is_an_error(pair: Pair) {
    let bytes = if pair.messagepack {
        // [1, {}, nil, <str 2: ff fe>, []]
        binary_frame(&[0x95, 0x01, 0x80, 0xc0, 0xa2, 0xff, 0xfe, 0x90])
    } else {
        b"{\"type\":1,\"target\":\"\xff\xfe\",\"arguments\":[]}\x1e".to_vec()
    };
    let (server, _script, conn, peer) = connected(pair, |b| b).await;
    let events = Events::attach(&conn);
    // Binary even for JSON: a WebSocket text message must be UTF-8, so this is what a broken
    // server can send.
    let _ = peer.conn.send(bytes, true).await;
    let closed = events.wait_for("closed").await;
    assert!(
        closed.contains("protocol error") || closed.contains("transport error"),
        "{closed}"
    );
    drop(peer);
    server.shutdown().await;
}
