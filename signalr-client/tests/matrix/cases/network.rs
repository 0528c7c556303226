//! Rows 3.1–3.6, 3.29, 3.30, 3.33 and 3.34: the server or the network fails.

use std::time::Duration;

use futures_util::StreamExt as _;
use signalr_client::{HubConnectionState, HubError, reconnect::FixedDelays};
use signalr_testserver::proxy::{FaultProxy, Mode};

use crate::{
    Case,
    support::{
        ALL, Events, Pair, Peer, STREAMING, WEBSOCKETS, call, describe, quick_retries, record,
        scripted, server, short_timeouts, spawn_start, wait_len, within,
    },
    wall,
};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!("3.1", a_server_that_dies_mid_call_fails_the_call_once, ALL),
        case!("3.2", a_reset_mid_record_delivers_no_garbage, ALL),
        case!(
            "3.3",
            a_pulled_cable_is_found_by_the_server_timeout,
            STREAMING
        ),
        case!("3.4", a_silent_network_fails_start_in_time, ALL),
        case!("3.5", a_silent_upgrade_fails_start_in_time, WEBSOCKETS),
        case!("3.6", a_refused_upgrade_is_a_typed_error, WEBSOCKETS),
        case!("3.29", close_with_allow_reconnect_reconnects, ALL),
        case!("3.30", close_without_allow_reconnect_closes, ALL),
        case!("3.33", a_stream_nobody_reads_is_cancelled_not_buffered, ALL),
        case!(
            "3.34",
            sends_to_a_server_that_reads_nothing_end_in_time,
            ALL
        ),
    ]
}

async fn a_server_that_dies_mid_call_fails_the_call_once(pair: Pair) {
    let (server, mut script) = scripted(|_| {}).await;
    let conn = pair
        .builder(server.url())
        .with_automatic_reconnect_policy(FixedDelays::from_millis(&[0]))
        .build()
        .unwrap();
    let events = Events::attach(&conn);
    let start = spawn_start(&conn);
    let mut peer = Peer::connected(&mut script, pair).await;
    within(start).await.unwrap().unwrap();
    let invoke = tokio::spawn({
        let conn = conn.clone();
        async move { conn.invoke::<i32>("Slow", ()).await }
    });
    let stream = tokio::spawn({
        let conn = conn.clone();
        async move {
            conn.stream::<i32>("Items", ())
                .await
                .unwrap()
                .collect::<Vec<_>>()
                .await
        }
    });
    peer.next_call().await;
    peer.next_call().await;
    peer.conn.abort().await; // the process died: FIN, no Close message
    let err = within(invoke).await.unwrap().unwrap_err();
    assert!(
        matches!(err, HubError::ConnectionLost(_)),
        "{}",
        describe(&err)
    );
    let items = within(stream).await.unwrap();
    assert!(
        matches!(items.as_slice(), [Err(HubError::ConnectionLost(_))]),
        "{items:?}"
    );
    let again = Peer::connected(&mut script, pair).await;
    events.wait_for("reconnected").await;
    assert_eq!(events.count("reconnecting"), 1, "{:?}", events.list());
    conn.stop().await.unwrap();
    assert_eq!(events.count("closed"), 1, "{:?}", events.list());
    drop(again);
    server.shutdown().await;
}

async fn a_reset_mid_record_delivers_no_garbage(pair: Pair) {
    let (server, mut script) = scripted(|_| {}).await;
    let proxy = FaultProxy::start(server.local_addr()).await.unwrap();
    let conn = pair
        .builder(&proxy.url(server.url()))
        .with_automatic_reconnect_policy(FixedDelays::from_millis(&[0]))
        .build()
        .unwrap();
    let events = Events::attach(&conn);
    let (_n, seen) = record(&conn, "n");
    let start = spawn_start(&conn);
    let mut peer = Peer::connected(&mut script, pair).await;
    within(start).await.unwrap().unwrap();
    let invoke = tokio::spawn({
        let conn = conn.clone();
        async move { conn.invoke::<i32>("Slow", ()).await }
    });
    peer.next_call().await;
    let record = pair.encode(&call(pair, "n", 1));
    peer.raw(record.slice(..record.len() - 2)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    proxy.reset_all();
    let err = within(invoke).await.unwrap().unwrap_err();
    assert!(
        matches!(err, HubError::ConnectionLost(_)),
        "{}",
        describe(&err)
    );
    let again = Peer::connected(&mut script, pair).await;
    events.wait_for("reconnected").await;
    again.send(&call(pair, "n", 2)).await;
    wait_len(&seen, 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(*seen.lock().unwrap(), [2]);
    conn.stop().await.unwrap();
    drop((peer, again, proxy));
    server.shutdown().await;
}

async fn a_pulled_cable_is_found_by_the_server_timeout(pair: Pair) {
    const TIMEOUT: Duration = Duration::from_millis(500);
    let s = server(|_| {}).await;
    let proxy = FaultProxy::start(s.local_addr()).await.unwrap();
    let conn = pair
        .builder(&proxy.url(s.url()))
        .with_keep_alive_interval(Duration::from_millis(100))
        .with_server_timeout(TIMEOUT)
        .with_automatic_reconnect_policy(quick_retries())
        .build()
        .unwrap();
    let events = Events::attach(&conn);
    conn.start().await.unwrap();
    assert_eq!(conn.invoke::<i64>("Add", (1, 1)).await.unwrap(), 2);
    let cut = wall();
    proxy.set_mode(Mode::Blackhole); // no FIN, no RST: silence
    let reconnecting = events.wait_for("reconnecting").await;
    let found = cut.elapsed();
    assert!(reconnecting.contains("server timed out"), "{reconnecting}");
    // Within the server timeout plus 1 s, as faults.md asks.
    assert!(
        found <= TIMEOUT + Duration::from_secs(1),
        "found after {found:?}"
    );
    proxy.set_mode(Mode::Pass);
    events.wait_for("reconnected").await;
    assert_eq!(conn.invoke::<i64>("Add", (2, 2)).await.unwrap(), 4);
    conn.stop().await.unwrap();
    drop(proxy);
    s.shutdown().await;
}

async fn a_silent_network_fails_start_in_time(pair: Pair) {
    let s = server(|_| {}).await;
    let proxy = FaultProxy::start(s.local_addr()).await.unwrap();
    proxy.set_mode(Mode::Blackhole); // TCP is accepted, nothing ever answers
    let conn = pair
        .builder(&proxy.url(s.url()))
        .with_http_options(short_timeouts(pair))
        .build()
        .unwrap();
    let err = within(conn.start()).await.unwrap_err();
    assert!(matches!(err, HubError::Transport(_)), "{}", describe(&err));
    assert!(describe(&err).contains("timed out"), "{}", describe(&err));
    assert_eq!(conn.state(), HubConnectionState::Disconnected);
    drop(proxy);
    s.shutdown().await;
}

async fn a_silent_upgrade_fails_start_in_time(pair: Pair) {
    let s = server(|_| {}).await;
    let proxy = FaultProxy::start(s.local_addr()).await.unwrap();
    proxy.set_mode(Mode::Blackhole);
    let conn = pair
        .builder(&proxy.url(s.url()))
        .with_http_options(short_timeouts(pair).skip_negotiation(true))
        .build()
        .unwrap();
    let err = within(conn.start()).await.unwrap_err();
    assert!(describe(&err).contains("timed out"), "{}", describe(&err));
    drop(proxy);
    s.shutdown().await;
}

async fn a_refused_upgrade_is_a_typed_error(pair: Pair) {
    let s = server(|c| c.refuse_websockets = true).await;
    let conn = pair.builder(s.url()).build().unwrap();
    let err = within(conn.start()).await.unwrap_err();
    assert!(describe(&err).contains("503"), "{}", describe(&err));
    s.shutdown().await;
}

async fn close_with_allow_reconnect_reconnects(pair: Pair) {
    let s = server(|_| {}).await;
    let conn = pair
        .builder(s.url())
        .with_automatic_reconnect_policy(quick_retries())
        .build()
        .unwrap();
    let events = Events::attach(&conn);
    conn.start().await.unwrap();
    let _ = conn.invoke::<()>("CloseMe", ("going down", true)).await;
    let reconnecting = events.wait_for("reconnecting").await;
    assert!(reconnecting.contains("going down"), "{reconnecting}");
    events.wait_for("reconnected").await;
    assert_eq!(conn.invoke::<i64>("Add", (1, 2)).await.unwrap(), 3);
    conn.stop().await.unwrap();
    s.shutdown().await;
}

async fn close_without_allow_reconnect_closes(pair: Pair) {
    let s = server(|_| {}).await;
    let conn = pair
        .builder(s.url())
        .with_automatic_reconnect_policy(quick_retries())
        .build()
        .unwrap();
    let events = Events::attach(&conn);
    conn.start().await.unwrap();
    let _ = conn.invoke::<()>("CloseMe", ("bye", false)).await;
    let closed = events.wait_for("closed").await;
    assert!(closed.contains("bye"), "{closed}");
    assert_eq!(events.count("reconnecting"), 0, "{:?}", events.list());
    assert_eq!(conn.state(), HubConnectionState::Disconnected);
    s.shutdown().await;
}

async fn a_stream_nobody_reads_is_cancelled_not_buffered(pair: Pair) {
    let s = server(|_| {}).await;
    let conn = pair
        .builder(s.url())
        .with_stream_buffer(16)
        .with_stream_consumer_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    conn.start().await.unwrap();
    // A consumer that keeps up gets everything: a full buffer holds reading back.
    let mut fast = conn.stream::<i32>("Counter", (2000, 0)).await.unwrap();
    let mut n = 0;
    while let Some(item) = within(fast.next()).await {
        assert_eq!(item.unwrap(), n);
        n += 1;
    }
    assert_eq!(n, 2000);
    // Nobody reads: once reading was held back for the timeout, the stream is cancelled.
    let mut stream = conn.stream::<i32>("Counter", (1_000_000, 0)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut items = 0;
    let end = within(async {
        loop {
            match stream.next().await {
                Some(Ok(_)) => items += 1,
                Some(Err(e)) => return Some(e),
                None => return None,
            }
        }
    })
    .await;
    assert!(
        matches!(end, Some(HubError::StreamConsumerTooSlow)),
        "{end:?} after {items} items"
    );
    assert_eq!(items, 16, "the buffer holds 16 items");
    // The connection is fine, and the server stopped streaming.
    assert_eq!(conn.invoke::<i64>("Add", (2, 3)).await.unwrap(), 5);
    conn.stop().await.unwrap();
    s.shutdown().await;
}

async fn sends_to_a_server_that_reads_nothing_end_in_time(pair: Pair) {
    let s = server(|_| {}).await;
    let proxy = FaultProxy::start(s.local_addr()).await.unwrap();
    let conn = pair
        .builder(&proxy.url(s.url()))
        .with_http_options(short_timeouts(pair))
        .with_keep_alive_interval(Duration::from_millis(100))
        .with_server_timeout(Duration::from_millis(600))
        .build()
        .unwrap();
    let events = Events::attach(&conn);
    conn.start().await.unwrap();
    proxy.set_mode(Mode::Blackhole);
    let payload = "x".repeat(1024);
    let sends: Vec<_> = (0..2000)
        .map(|_| {
            let conn = conn.clone();
            let payload = payload.clone();
            tokio::spawn(async move { conn.send("Echo", (payload,)).await })
        })
        .collect();
    // Every send ends (queued, or failed with a typed error): none hangs.
    let mut failed = 0;
    for send in sends {
        if let Err(e) = within(send).await.unwrap() {
            assert!(
                matches!(
                    e,
                    HubError::ConnectionLost(_) | HubError::NotConnected { .. }
                ),
                "{}",
                describe(&e)
            );
            failed += 1;
        }
    }
    let closed = events.wait_for("closed").await;
    assert!(
        closed.contains("timed out") || closed.contains("transport"),
        "{closed} ({failed} sends failed)"
    );
    // A send is done once queued while connected (as .NET's `SendAsync` once the message is in
    // the pipe), so sends stuck behind a blackholed POST end without an error of their own: the
    // closed event above says why they did not go out.
    drop(proxy);
    s.shutdown().await;
}
