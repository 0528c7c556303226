//! Rows 3.22–3.32: hostile or odd messages from a server that frames them correctly.

use std::time::Duration;

use futures_util::StreamExt as _;
use signalr_client::{
    HubConnectionState, HubError,
    protocol::{Close, Completion, CompletionResult, HubMessage, Invocation, StreamItem},
};

use crate::{
    Case,
    support::{
        ALL, Events, Pair, Peer, STREAMING, TEXT, binary_frame, call, connected, describe, record,
        wait_len, within,
    },
};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!("3.22", unknown_message_types_are_ignored, ALL),
        case!(
            "3.23",
            messages_with_missing_or_wrong_fields_close_the_connection,
            ALL
        ),
        case!(
            "3.24",
            a_completion_with_result_and_error_never_succeeds,
            TEXT
        ),
        case!("3.25", answers_for_unknown_ids_are_ignored, ALL),
        case!("3.26", a_second_completion_for_an_id_is_ignored, ALL),
        case!(
            "3.27",
            stream_items_for_invoke_and_results_for_streams_fail_the_call,
            ALL
        ),
        case!("3.28", server_invocations_that_fail_are_answered, ALL),
        case!(
            "3.28",
            a_handler_that_never_returns_blocks_nothing_else,
            ALL
        ),
        case!("3.30", messages_after_a_close_are_ignored, ALL),
        case!("3.31", a_ping_flood_gets_no_replies, ALL),
        case!(
            "3.32",
            a_silent_server_times_out_while_the_client_pings,
            STREAMING
        ),
    ]
}

/// A call from the client that the peer sees; returns the call's future and its id.
async fn pending_invoke(
    conn: &signalr_client::HubConnection,
    peer: &mut Peer,
) -> (tokio::task::JoinHandle<signalr_client::Result<i32>>, String) {
    let call = tokio::spawn({
        let conn = conn.clone();
        async move { conn.invoke::<i32>("Anything", ()).await }
    });
    let id = peer.next_call().await;
    (call, id)
}

fn value(pair: Pair, id: &str, v: i32) -> HubMessage {
    HubMessage::Completion(Completion::value(
        id,
        signalr_client::protocol::Payload::from_value(pair.format(), &v).unwrap(),
    ))
}

async fn unknown_message_types_are_ignored(pair: Pair) {
    let (server, _script, conn, peer) = connected(pair, |b| b).await;
    let (_n, seen) = record(&conn, "n");
    if pair.messagepack {
        peer.raw(vec![0x02, 0x91, 0x63]).await; // [99]
        peer.raw(vec![0x03, 0x92, 0x63, 0x01]).await; // [99, 1]
    } else {
        peer.raw(&b"{\"type\":99}\x1e{\"type\":42,\"x\":[1]}\x1e"[..])
            .await;
    }
    peer.send(&call(pair, "n", 1)).await;
    wait_len(&seen, 1).await;
    assert_eq!(conn.state(), HubConnectionState::Connected);
    conn.stop().await.unwrap();
    drop(peer);
    server.shutdown().await;
}

async fn messages_with_missing_or_wrong_fields_close_the_connection(pair: Pair) {
    let bad: Vec<Vec<u8>> = if pair.messagepack {
        [
            &[0x91, 0x01][..],                           // Invocation with no fields
            &[0x95, 0x01, 0x80, 0xc0, 0x01, 0x90],       // target is an int
            &[0x95, 0x01, 0x80, 0xc0, 0xa1, b'n', 0x01], // arguments not an array
            &[0x94, 0x03, 0x80, 0xa1, b'0', 0x05],       // result kind 5
            &[0x93, 0x02, 0x80, 0x01],                   // StreamItem without item
            &[0x92, 0x07, 0x01],                         // Close: error not a string
            &[0xa3, b'a', b'b', b'c'],                   // not an array
        ]
        .iter()
        .map(|body| binary_frame(body))
        .collect()
    } else {
        [
            &b"{\"type\":1}\x1e"[..],
            b"{\"type\":1,\"target\":5,\"arguments\":[]}\x1e",
            b"{\"type\":1,\"target\":\"n\",\"arguments\":{}}\x1e",
            b"{\"type\":3}\x1e",
            b"{\"type\":2,\"invocationId\":\"0\"}\x1e",
            b"{\"type\":\"1\",\"target\":\"n\",\"arguments\":[]}\x1e",
            b"{\"target\":\"n\",\"arguments\":[]}\x1e",
            b"[1,2,3]\x1e",
            b"not json\x1e",
        ]
        .iter()
        .map(|b| b.to_vec())
        .collect()
    };
    for bytes in bad {
        let shown = String::from_utf8_lossy(&bytes).into_owned();
        let (server, _script, conn, mut peer) = connected(pair, |b| b).await;
        let events = Events::attach(&conn);
        let (call, _) = pending_invoke(&conn, &mut peer).await;
        peer.raw(bytes).await;
        let closed = events.wait_for("closed").await;
        assert!(closed.contains("protocol error"), "{shown}: {closed}");
        // The pending call fails with the cause, typed.
        let err = within(call).await.unwrap().unwrap_err();
        assert!(
            matches!(&err, HubError::ConnectionLost(cause) if matches!(**cause, HubError::Protocol(_))),
            "{shown}: {}",
            describe(&err)
        );
        drop(peer);
        server.shutdown().await;
    }
}

async fn a_completion_with_result_and_error_never_succeeds(pair: Pair) {
    let (server, _script, conn, mut peer) = connected(pair, |b| b).await;
    let (call, id) = pending_invoke(&conn, &mut peer).await;
    peer.raw(format!(
        "{{\"type\":3,\"invocationId\":\"{id}\",\"result\":1,\"error\":\"x\"}}\x1e"
    ))
    .await;
    let err = within(call).await.unwrap().unwrap_err();
    assert!(
        describe(&err).contains("protocol error"),
        "{}",
        describe(&err)
    );
    drop(peer);
    server.shutdown().await;
}

async fn answers_for_unknown_ids_are_ignored(pair: Pair) {
    let (server, _script, conn, mut peer) = connected(pair, |b| b).await;
    let (call, id) = pending_invoke(&conn, &mut peer).await;
    peer.send(&value(pair, "no-such-id", 5)).await;
    peer.send(&HubMessage::StreamItem(StreamItem::new(
        "other",
        signalr_client::protocol::Payload::from_value(pair.format(), &6).unwrap(),
    )))
    .await;
    peer.send(&HubMessage::Completion(Completion::void("x")))
        .await;
    peer.send(&value(pair, &id, 7)).await;
    assert_eq!(within(call).await.unwrap().unwrap(), 7);
    assert_eq!(conn.state(), HubConnectionState::Connected);
    conn.stop().await.unwrap();
    drop(peer);
    server.shutdown().await;
}

async fn a_second_completion_for_an_id_is_ignored(pair: Pair) {
    let (server, _script, conn, mut peer) = connected(pair, |b| b).await;
    let (call, id) = pending_invoke(&conn, &mut peer).await;
    peer.send(&value(pair, &id, 1)).await;
    peer.send(&value(pair, &id, 2)).await;
    peer.send(&HubMessage::Completion(Completion::error(
        id.as_str(),
        "late",
    )))
    .await;
    peer.send(&HubMessage::StreamItem(StreamItem::new(
        id.as_str(),
        signalr_client::protocol::Payload::from_value(pair.format(), &3).unwrap(),
    )))
    .await;
    assert_eq!(within(call).await.unwrap().unwrap(), 1);
    // Still serving: the next call is answered.
    let (call, id) = pending_invoke(&conn, &mut peer).await;
    peer.send(&value(pair, &id, 4)).await;
    assert_eq!(within(call).await.unwrap().unwrap(), 4);
    conn.stop().await.unwrap();
    drop(peer);
    server.shutdown().await;
}

async fn stream_items_for_invoke_and_results_for_streams_fail_the_call(pair: Pair) {
    let (server, _script, conn, mut peer) = connected(pair, |b| b).await;
    let (call, id) = pending_invoke(&conn, &mut peer).await;
    peer.send(&HubMessage::StreamItem(StreamItem::new(
        id.as_str(),
        signalr_client::protocol::Payload::from_value(pair.format(), &1).unwrap(),
    )))
    .await;
    let err = within(call).await.unwrap().unwrap_err();
    assert!(matches!(err, HubError::Protocol(_)), "{}", describe(&err));

    let stream = tokio::spawn({
        let conn = conn.clone();
        async move {
            let s = conn.stream::<i32>("Numbers", ()).await?;
            Ok::<_, HubError>(s.collect::<Vec<_>>().await)
        }
    });
    let id = peer.next_call().await;
    peer.send(&value(pair, &id, 9)).await;
    let items = within(stream).await.unwrap().unwrap();
    assert!(
        matches!(items.as_slice(), [Err(HubError::Protocol(_))]),
        "{items:?}"
    );
    assert_eq!(conn.state(), HubConnectionState::Connected);
    conn.stop().await.unwrap();
    drop(peer);
    server.shutdown().await;
}

/// Sends a client-result invocation and returns the client's Completion.
async fn ask(
    peer: &mut Peer,
    id: &str,
    target: &str,
    args: signalr_client::protocol::Arguments,
) -> CompletionResult {
    peer.send(&HubMessage::Invocation(Invocation::new(id, target, args)))
        .await;
    match peer.recv().await {
        Some(HubMessage::Completion(c)) => {
            assert_eq!(c.invocation_id, id);
            c.result
        }
        other => panic!("expected a Completion, got {other:?}"),
    }
}

async fn server_invocations_that_fail_are_answered(pair: Pair) {
    let (server, _script, conn, mut peer) = connected(pair, |b| b).await;
    let _double = conn.on_invoke("double", |n: i32| async move { Ok::<_, String>(n * 2) });
    let _boom = conn.on_invoke("boom", || async move {
        let fail =
            || -> Result<i32, String> { panic!("a deliberate panic in a handler (expected)") };
        fail()
    });
    let _refuse = conn.on_invoke("refuse", || async move { Err::<i32, _>("no".to_owned()) });
    assert_eq!(
        ask(&mut peer, "1", "unregistered", pair.args(&(1,))).await,
        CompletionResult::Error("Client didn't provide a result.".into())
    );
    let wrong = ask(&mut peer, "2", "double", pair.args(&("x", "y"))).await;
    assert!(matches!(wrong, CompletionResult::Error(_)), "{wrong:?}");
    let panicked = ask(&mut peer, "3", "boom", pair.args(&())).await;
    assert!(
        matches!(panicked, CompletionResult::Error(_)),
        "{panicked:?}"
    );
    assert_eq!(
        ask(&mut peer, "4", "refuse", pair.args(&())).await,
        CompletionResult::Error("no".into())
    );
    let ok = ask(&mut peer, "5", "double", pair.args(&(21,))).await;
    let CompletionResult::Value(v) = ok else {
        panic!("{ok:?}")
    };
    assert_eq!(v.deserialize::<i32>().unwrap(), 42);
    assert_eq!(conn.state(), HubConnectionState::Connected);
    conn.stop().await.unwrap();
    drop(peer);
    server.shutdown().await;
}

async fn a_handler_that_never_returns_blocks_nothing_else(pair: Pair) {
    let (server, _script, conn, mut peer) = connected(pair, |b| {
        b.with_keep_alive_interval(Duration::from_millis(50))
    })
    .await;
    let _stuck = conn.on("stuck", |_: i32| std::future::pending::<()>());
    peer.send(&call(pair, "stuck", 1)).await;
    // The driver still serves calls and pings while the handler waits forever.
    let (call, id) = pending_invoke(&conn, &mut peer).await;
    peer.send(&value(pair, &id, 3)).await;
    assert_eq!(within(call).await.unwrap().unwrap(), 3);
    if pair.transport != signalr_client::protocol::TransportKind::LongPolling {
        let sent = peer.drain(Duration::from_millis(300)).await;
        assert!(
            sent.iter()
                .filter(|m| matches!(m, HubMessage::Ping))
                .count()
                >= 2,
            "{sent:?}"
        );
    }
    // Stopping does not wait for the handler.
    within(conn.stop()).await.unwrap();
    drop(peer);
    server.shutdown().await;
}

async fn messages_after_a_close_are_ignored(pair: Pair) {
    let (server, mut script, conn, peer) = connected(pair, |b| {
        b.with_automatic_reconnect_policy(crate::support::quick_retries())
    })
    .await;
    let events = Events::attach(&conn);
    let (_n, seen) = record(&conn, "n");
    let mut frame = pair
        .encode(&HubMessage::Close(Close::new(Some("bye".into()), false)))
        .to_vec();
    frame.extend_from_slice(&pair.encode(&call(pair, "n", 1)));
    peer.raw(frame).await;
    let closed = events.wait_for("closed").await;
    assert!(closed.contains("bye"), "{closed}");
    assert_eq!(events.count("reconnecting"), 0, "{:?}", events.list());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(seen.lock().unwrap().is_empty());
    assert!(script.try_accept().is_none(), "the client reconnected");
    drop(peer);
    server.shutdown().await;
}

async fn a_ping_flood_gets_no_replies(pair: Pair) {
    let (server, _script, conn, mut peer) = connected(pair, |b| b).await;
    let ping = pair.encode(&HubMessage::Ping);
    let batch: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 2000)
        .collect();
    for _ in 0..100 {
        peer.raw(batch.clone()).await;
    }
    // 200,000 pings, and nothing comes back but the answer to a call.
    let (call, id) = pending_invoke(&conn, &mut peer).await;
    peer.send(&value(pair, &id, 8)).await;
    assert_eq!(within(call).await.unwrap().unwrap(), 8);
    let sent = peer.drain(Duration::from_millis(100)).await;
    assert!(sent.is_empty(), "{sent:?}");
    conn.stop().await.unwrap();
    drop(peer);
    server.shutdown().await;
}

async fn a_silent_server_times_out_while_the_client_pings(pair: Pair) {
    let (server, _script, conn, mut peer) = connected(pair, |b| {
        b.with_keep_alive_interval(Duration::from_millis(100))
            .with_server_timeout(Duration::from_millis(600))
    })
    .await;
    let events = Events::attach(&conn);
    let sent = peer.drain(Duration::from_secs(3)).await;
    let closed = events.wait_for("closed").await;
    assert!(closed.contains("server timed out"), "{closed}");
    let pings = sent
        .iter()
        .filter(|m| matches!(m, HubMessage::Ping))
        .count();
    // 600 ms at one ping per 100 ms; the exact cadence is timing.rs's (paused clock).
    assert!((3..=7).contains(&pings), "{pings} pings: {sent:?}");
    drop(peer);
    server.shutdown().await;
}
