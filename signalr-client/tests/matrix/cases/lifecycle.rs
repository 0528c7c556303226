//! Rows 3.38 (re-entrancy) and 3.39 (long polling's own answers), and the rows the test
//! server must refuse.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use signalr_client::{HubConnectionBuilder, HubConnectionState, HubError, protocol::TransportKind};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::{
    Case,
    support::{
        ALL, Events, ONCE, Pair, Peer, binary_frame, describe, quick_retries, scripted, server,
        spawn_start, within,
    },
};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!("3.38", two_starts_at_once_connect_once, ALL),
        case!("3.38", stop_during_start_cancels_it, ALL),
        case!(
            "3.38",
            start_from_the_closed_callback_and_stop_from_reconnecting,
            ALL
        ),
        case!(
            "3.38",
            dropping_the_client_while_reconnecting_ends_everything,
            ALL
        ),
        case!("3.39", a_server_end_is_a_clean_close, ALL),
        case!("S.1", the_server_refuses_a_message_over_its_limit, ALL),
        case!("S.2", the_server_runs_one_invocation_at_a_time, ALL),
        case!("S.5", the_server_refuses_a_negative_sequence_id, ONCE),
        case!("S.7", the_server_survives_deep_messagepack_nesting, ONCE),
        case!("S.8", the_server_drops_a_slowloris_handshake, ONCE),
        case!("S.9", the_server_refuses_a_huge_upgrade_header, ONCE),
    ]
}

async fn two_starts_at_once_connect_once(pair: Pair) {
    let (server, mut script) = scripted(|_| {}).await;
    let conn = pair.builder(server.url()).build().unwrap();
    let first = spawn_start(&conn);
    let second = spawn_start(&conn);
    let peer = Peer::connected(&mut script, pair).await;
    let (a, b) = (within(first).await.unwrap(), within(second).await.unwrap());
    // One connects; the other is refused with a typed error (or waited for it).
    assert!(a.is_ok() || b.is_ok(), "{a:?} {b:?}");
    for r in [&a, &b] {
        if let Err(e) = r {
            assert!(
                matches!(e, HubError::InvalidState { .. }),
                "{}",
                describe(e)
            );
        }
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(script.try_accept().is_none(), "two connections");
    conn.stop().await.unwrap();
    drop(peer);
    server.shutdown().await;
}

async fn stop_during_start_cancels_it(pair: Pair) {
    let (server, mut script) = scripted(|_| {}).await;
    let conn = pair.builder(server.url()).build().unwrap();
    let start = spawn_start(&conn);
    let peer = Peer::accept(&mut script, pair).await; // the handshake is never answered
    within(conn.stop()).await.unwrap();
    let err = within(start).await.unwrap().unwrap_err();
    assert!(matches!(err, HubError::Stopped), "{}", describe(&err));
    assert_eq!(conn.state(), HubConnectionState::Disconnected);
    drop(peer);
    server.shutdown().await;
}

async fn start_from_the_closed_callback_and_stop_from_reconnecting(pair: Pair) {
    let s = server(|_| {}).await;
    let conn = pair
        .builder(s.url())
        .with_automatic_reconnect_policy(quick_retries())
        .build()
        .unwrap();
    let events = Events::attach(&conn);
    // Stop from inside the reconnecting callback: no deadlock.
    let c = conn.clone();
    conn.on_reconnecting(move |_| {
        let c = c.clone();
        tokio::spawn(async move { c.stop().await });
    });
    conn.start().await.unwrap();
    s.controls().abort_all();
    events.wait_for("closed").await;
    assert_eq!(conn.state(), HubConnectionState::Disconnected);
    // Start again from inside the closed callback.
    let conn2 = pair.builder(s.url()).build().unwrap();
    let c = conn2.clone();
    let restarted = std::sync::Arc::new(tokio::sync::Notify::new());
    let r = std::sync::Arc::clone(&restarted);
    conn2.on_close(move |_| {
        let c = c.clone();
        let r = std::sync::Arc::clone(&r);
        tokio::spawn(async move {
            if c.start().await.is_ok() {
                r.notify_one();
            }
        });
    });
    conn2.start().await.unwrap();
    let _ = conn2.invoke::<()>("CloseMe", ("again", false)).await;
    within(restarted.notified()).await;
    assert_eq!(conn2.invoke::<i64>("Add", (1, 1)).await.unwrap(), 2);
    conn2.stop().await.unwrap();
    s.shutdown().await;
}

async fn dropping_the_client_while_reconnecting_ends_everything(pair: Pair) {
    let s = server(|_| {}).await;
    let conn = pair
        .builder(s.url())
        .with_automatic_reconnect_policy(signalr_client::reconnect::FixedDelays::from_millis(&[
            60_000,
        ]))
        .build()
        .unwrap();
    let events = Events::attach(&conn);
    conn.start().await.unwrap();
    s.controls().abort_all();
    events.wait_for("reconnecting").await;
    drop(conn); // the runner checks that every task ended
    s.shutdown().await;
}

async fn a_server_end_is_a_clean_close(pair: Pair) {
    let (server, mut script) = scripted(|_| {}).await;
    let conn = pair.builder(server.url()).build().unwrap();
    let events = Events::attach(&conn);
    let start = spawn_start(&conn);
    let peer = Peer::connected(&mut script, pair).await;
    within(start).await.unwrap().unwrap();
    peer.conn.close().await; // 204 to the next poll, a close frame, the end of the stream
    let closed = events.wait_for("closed").await;
    assert_eq!(conn.state(), HubConnectionState::Disconnected);
    if pair.transport == TransportKind::LongPolling {
        assert!(closed.contains("ended the connection"), "{closed}");
    }
    // Stopping a connection the server has already forgotten is fine (its DELETE gets 404).
    within(conn.stop()).await.unwrap();
    server.shutdown().await;
}

async fn the_server_refuses_a_message_over_its_limit(pair: Pair) {
    // 32 KiB, as ASP.NET Core; the reason in the Close message, as with EnableDetailedErrors.
    let s = server(|c| c.detailed_errors = true).await;
    let conn = pair.builder(s.url()).build().unwrap();
    let events = Events::attach(&conn);
    conn.start().await.unwrap();
    let err = conn
        .invoke::<String>("Echo", ("x".repeat(40 * 1024),))
        .await
        .unwrap_err();
    assert!(
        matches!(err, HubError::ConnectionLost(_)),
        "{}",
        describe(&err)
    );
    let closed = events.wait_for("closed").await;
    assert!(
        closed.contains("exceeds the maximum of 32768 bytes"),
        "{closed}"
    );
    s.shutdown().await;
}

async fn the_server_drops_a_slowloris_handshake(_: Pair) {
    let s = server(|c| c.handshake_timeout = Duration::from_millis(300)).await;
    // A WebSocket that sends the handshake without its terminator, then nothing.
    let url = s.url().replace("http://", "ws://");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        "{\"protocol\":\"json\",\"version\":1}",
    ))
    .await
    .unwrap();
    // The server gives up at its handshake timeout: the socket ends.
    within(async {
        while let Some(Ok(m)) = ws.next().await {
            if m.is_close() {
                break;
            }
        }
    })
    .await;
    assert_eq!(s.controls().connection_count(), 0);
    s.shutdown().await;
}

async fn the_server_refuses_a_huge_upgrade_header(_: Pair) {
    let s = server(|_| {}).await;
    let mut socket = tokio::net::TcpStream::connect(s.local_addr())
        .await
        .unwrap();
    let huge = "a".repeat(1024 * 1024);
    let request = format!(
        "GET /hub HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Huge: {huge}\r\n\r\n"
    );
    let _ = socket.write_all(request.as_bytes()).await; // may fail once the server gave up
    let mut answer = Vec::new();
    let _ = within(socket.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(!text.contains(" 101 "), "upgraded: {text}");
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 431"),
        "{text}"
    );
    assert_eq!(s.controls().connection_count(), 0);
    s.shutdown().await;
}

async fn the_server_runs_one_invocation_at_a_time(pair: Pair) {
    // ASP.NET Core's default of one invocation per client at a time: a second call waits for
    // the first, whatever the client sends meanwhile.
    let s = server(|_| {}).await;
    let conn = pair.builder(s.url()).build().unwrap();
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let r = std::sync::Arc::clone(&release);
    let _wait = conn.on_invoke("wait", move |n: i32| {
        let r = std::sync::Arc::clone(&r);
        async move {
            r.notified().await;
            Ok::<_, String>(n)
        }
    });
    conn.start().await.unwrap();
    let first = tokio::spawn({
        let conn = conn.clone();
        async move { conn.invoke::<i32>("AskClient", ("wait", 7)).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = tokio::spawn({
        let conn = conn.clone();
        async move { conn.invoke::<i64>("Add", (1, 2)).await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        !second.is_finished(),
        "the second invocation ran beside the first"
    );
    release.notify_one();
    assert_eq!(within(first).await.unwrap().unwrap(), 7);
    assert_eq!(within(second).await.unwrap().unwrap(), 3);
    conn.stop().await.unwrap();
    s.shutdown().await;
}

async fn the_server_survives_deep_messagepack_nesting(_: Pair) {
    let s = server(|c| c.max_message_size = 1 << 20).await;
    let url = s.url().replace("http://", "ws://");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        "{\"protocol\":\"messagepack\",\"version\":1}\u{1e}",
    ))
    .await
    .unwrap();
    // [1, {}, "1", "Echo", [[[[…100,000 deep…]]]]]
    let mut body = vec![
        0x95, 0x01, 0x80, 0xa1, b'1', 0xa4, b'E', b'c', b'h', b'o', 0x91,
    ];
    body.extend(std::iter::repeat_n(0x91, 100_000));
    body.push(0x90);
    let frame = binary_frame(&body);
    ws.send(tokio_tungstenite::tungstenite::Message::binary(frame))
        .await
        .unwrap();
    // The server answers with an error (a Completion or a Close) or closes; it does not crash.
    let answered = within(async {
        while let Some(Ok(m)) = ws.next().await {
            if m.is_close() || m.into_data().len() > 3 {
                return true;
            }
        }
        true
    })
    .await;
    assert!(answered);
    // And it still serves.
    let conn = HubConnectionBuilder::new(s.url())
        .with_messagepack()
        .build()
        .unwrap();
    conn.start().await.unwrap();
    assert_eq!(conn.invoke::<i64>("Add", (2, 2)).await.unwrap(), 4);
    conn.stop().await.unwrap();
    s.shutdown().await;
}

async fn the_server_refuses_a_negative_sequence_id(_: Pair) {
    let s = server(|_| {}).await;
    let url = s.url().replace("http://", "ws://");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        "{\"protocol\":\"json\",\"version\":1}\u{1e}{\"type\":9,\"sequenceId\":-1}\u{1e}",
    ))
    .await
    .unwrap();
    // A Close with an error, then the end: never silence.
    let close = within(async {
        while let Some(Ok(m)) = ws.next().await {
            let text = m.into_text().unwrap_or_default();
            if text.as_str().contains("\"type\":7") {
                return Some(text.as_str().to_owned());
            }
        }
        None
    })
    .await;
    let close = close.expect("closed without a Close message");
    assert!(close.contains("\"error\""), "{close}");
    s.shutdown().await;
}
