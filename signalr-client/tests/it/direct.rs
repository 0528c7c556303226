//! Sends written from the caller's task (WebSockets without stateful reconnect): order, calls
//! made in one burst, a caller that gives up while leading a write, and the fallback through
//! the driver everywhere else.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::future::join_all;
use signalr_client::{HubConnection, protocol::TransportKind};

use crate::support::{PAIRS, WAIT, builder, server};

/// Records every `n(i32)` call the server makes.
fn record(conn: &HubConnection) -> (signalr_client::Subscription, Arc<Mutex<Vec<i32>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let sub = conn.on("n", move |(n,): (i32,)| {
        s.lock().unwrap().push(n);
        std::future::ready(())
    });
    (sub, seen)
}

/// Polls `f` once, with this task's waker.
async fn poll_once<F: std::future::Future + Unpin>(f: &mut F) -> std::task::Poll<F::Output> {
    std::future::poll_fn(|cx| std::task::Poll::Ready(std::pin::Pin::new(&mut *f).poll(cx))).await
}

async fn wait_len(seen: &Mutex<Vec<i32>>, n: usize) {
    tokio::time::timeout(WAIT, async {
        while seen.lock().unwrap().len() < n {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {n} arrived", seen.lock().unwrap().len()));
}

/// Sends made in one burst, up to the command channel's capacity (1,024) where they go through
/// the driver, arrive once and in the order they were polled.
#[tokio::test]
async fn a_burst_of_sends_arrives_once_and_in_order_on_every_transport() {
    const N: i32 = 1000;
    let s = server(|_| {}).await;
    for (transport, messagepack) in PAIRS {
        let conn = builder(s.url(), transport, messagepack).build().unwrap();
        let (_n, seen) = record(&conn);
        conn.start().await.unwrap();
        // All polled in one pass: on WebSockets they share a few writes.
        let sends = (0..N).map(|i| conn.send("SendToCaller", ("n", i)));
        for r in join_all(sends).await {
            r.unwrap();
        }
        // And one at a time, each its own write.
        for i in N..N + 10 {
            conn.send("SendToCaller", ("n", i)).await.unwrap();
        }
        wait_len(&seen, usize::try_from(N + 10).unwrap()).await;
        let got = seen.lock().unwrap().clone();
        let expected: Vec<i32> = (0..N + 10).collect();
        if got != expected {
            let at = got.iter().zip(&expected).position(|(a, b)| a != b);
            panic!(
                "{transport:?}/{messagepack}: {} arrived, first difference at {at:?}: {:?}",
                got.len(),
                at.map(|i| got[i.saturating_sub(3)..(i + 3).min(got.len())].to_vec())
            );
        }
        conn.stop().await.unwrap();
    }
    s.shutdown().await;
}

#[tokio::test]
async fn a_caller_that_gives_up_while_leading_a_write_strands_no_one() {
    let s = server(|_| {}).await;
    let conn = builder(s.url(), TransportKind::WebSockets, false)
        .build()
        .unwrap();
    let (_n, seen) = record(&conn);
    conn.start().await.unwrap();
    let mut first = Box::pin(conn.send("SendToCaller", ("n", 1)));
    // One poll: it queued its message, leads the write and yields before writing.
    assert!(poll_once(&mut first).await.is_pending());
    let mut second = Box::pin(conn.send("SendToCaller", ("n", 2)));
    // It joins the write the first leads.
    assert!(poll_once(&mut second).await.is_pending());
    drop(first);
    // The second takes the lead over and writes both.
    tokio::time::timeout(WAIT, second)
        .await
        .expect("the second send was stranded")
        .unwrap();
    wait_len(&seen, 2).await;
    assert_eq!(*seen.lock().unwrap(), [1, 2]);
    conn.send("SendToCaller", ("n", 3)).await.unwrap();
    wait_len(&seen, 3).await;
    conn.stop().await.unwrap();
    s.shutdown().await;
}

#[tokio::test]
async fn sends_keep_a_quiet_connection_alive_without_pings() {
    // Keep-alive 100 ms, server timeout 300 ms on both sides: a client that only sends (and
    // reads only the server's pings) must keep the server from timing it out.
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
    // Idle longer than the server's timeout: the client's own pings carry it.
    tokio::time::sleep(Duration::from_millis(700)).await;
    conn.send("SendToCaller", ("n", 20)).await.unwrap();
    wait_len(&seen, 21).await;
    assert_eq!(conn.state(), signalr_client::HubConnectionState::Connected);
    conn.stop().await.unwrap();
    s.shutdown().await;
}
