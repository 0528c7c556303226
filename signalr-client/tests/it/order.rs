//! Sends: a burst keeps its order on every transport, a client that only sends stays connected
//! on its keep-alive, and when `send` returns.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::future::join_all;
use signalr_client::{HubConnection, HubConnectionState, protocol::TransportKind};

use crate::support::{PAIRS, builder, server, wait_len};

/// Records every `n(i32)` call the server makes.
fn record(conn: &HubConnection) -> (signalr_client::Subscription, Arc<Mutex<Vec<i32>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let sub = conn.on("n", move |n: i32| {
        s.lock().unwrap().push(n);
        std::future::ready(())
    });
    (sub, seen)
}

/// Sends made in one burst, within the command queue's capacity (8,192), arrive once and in the
/// order they were polled. (They used to be reordered by tokio's task budget, which made the
/// 128th send of a burst wait.)
#[tokio::test]
async fn a_burst_of_sends_arrives_once_and_in_order_on_every_transport() {
    const N: i32 = 1000;
    let s = server(|_| {}).await;
    for (transport, messagepack) in PAIRS {
        let conn = builder(s.url(), transport, messagepack).build().unwrap();
        let (_n, seen) = record(&conn);
        conn.start().await.unwrap();
        let sends = (0..N).map(|i| conn.send("SendToCaller", ("n", i)));
        for r in join_all(sends).await {
            r.unwrap();
        }
        for i in N..N + 10 {
            conn.send("SendToCaller", ("n", i)).await.unwrap();
        }
        wait_len(&seen, usize::try_from(N + 10).unwrap()).await;
        let got = seen.lock().unwrap().clone();
        let expected: Vec<i32> = (0..N + 10).collect();
        if got != expected {
            let at = got.iter().zip(&expected).position(|(a, b)| a != b);
            panic!(
                "{transport:?}/{messagepack}: {} arrived, first difference at {at:?}",
                got.len()
            );
        }
        conn.stop().await.unwrap();
    }
    s.shutdown().await;
}

#[tokio::test]
async fn a_client_that_only_sends_stays_connected() {
    // Keep-alive 100 ms, timeouts 300 ms on both sides: sends, then silence longer than the
    // server's timeout, carried by the client's pings.
    let s = server(|c| {
        c.keep_alive_interval = Duration::from_millis(100);
        c.client_timeout = Duration::from_millis(300);
    })
    .await;
    let conn = builder(s.url(), TransportKind::WebSockets, false)
        .with_keep_alive_interval(Duration::from_millis(100))
        .with_server_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let (_n, seen) = record(&conn);
    conn.start().await.unwrap();
    for i in 0..20 {
        conn.send("SendToCaller", ("n", i)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    conn.send("SendToCaller", ("n", 20)).await.unwrap();
    wait_len(&seen, 21).await;
    assert_eq!(conn.state(), HubConnectionState::Connected);
    conn.stop().await.unwrap();
    s.shutdown().await;
}

/// While connected, `send` returns once the message is queued, before the driver has written it
/// (on this current-thread runtime, before any other task has run), as the official .NET
/// client's `SendAsync` returns once the message is in the transport's pipe. While reconnecting
/// it waits in the outbox until written. Either way each message arrives once, in order.
#[tokio::test]
async fn a_send_returns_once_queued_while_connected_and_once_written_while_reconnecting() {
    use futures_util::FutureExt as _;
    let s = server(|_| {}).await;
    let conn = signalr_client::HubConnectionBuilder::new(s.url())
        .with_automatic_reconnect_policy(signalr_client::reconnect::FixedDelays::from_millis(&[
            300,
        ]))
        .build()
        .unwrap();
    let events = crate::support::Events::attach(&conn);
    let (_n, seen) = record(&conn);
    conn.start().await.unwrap();
    for i in 0..3 {
        let send = conn.send("SendToCaller", ("n", i)).now_or_never();
        assert!(
            matches!(send, Some(Ok(()))),
            "send {i} did not return at once"
        );
    }
    wait_len(&seen, 3).await;
    s.controls().abort_all();
    events.wait_for("reconnecting").await;
    let mut waiting = Box::pin(conn.send("SendToCaller", ("n", 3)));
    assert!(
        (&mut waiting).now_or_never().is_none(),
        "a send while reconnecting returned before it was written"
    );
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .unwrap()
        .unwrap();
    events.wait_for("reconnected").await;
    wait_len(&seen, 4).await;
    assert_eq!(*seen.lock().unwrap(), [0, 1, 2, 3]);
    conn.stop().await.unwrap();
    s.shutdown().await;
}
