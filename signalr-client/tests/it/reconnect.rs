//! Losing the connection: automatic reconnect, Close with and without allowReconnect, giving
//! up, stop during a reconnect delay, and a half-open link found by the server timeout.

use std::time::Duration;

use signalr_client::{HubConnectionBuilder, HubConnectionState, HubError, reconnect::FixedDelays};

use crate::support::{Events, PAIRS, builder, server};

fn ms(v: &[u64]) -> FixedDelays {
    FixedDelays::from_millis(v)
}

#[tokio::test]
async fn aborted_transport_reconnects_on_every_transport() {
    let s = server(|_| {}).await;
    for (transport, messagepack) in PAIRS {
        let conn = builder(s.url(), transport, messagepack)
            .with_automatic_reconnect_policy(ms(&[0, 100, 100]))
            .build()
            .unwrap();
        let events = Events::attach(&conn);
        conn.start().await.unwrap();
        let first_id = conn.connection_id();
        // The call that aborts fails: the connection went away under it.
        let err = conn.invoke::<()>("AbortMe", ()).await.unwrap_err();
        assert!(
            matches!(err, HubError::ConnectionLost(_)),
            "{transport:?}: {err}"
        );
        events.wait_for("reconnecting").await;
        let reconnected = events.wait_for("reconnected").await;
        assert_eq!(conn.state(), HubConnectionState::Connected);
        assert_ne!(conn.connection_id(), first_id, "a new connection");
        assert_eq!(
            reconnected,
            format!("reconnected: {}", conn.connection_id().unwrap())
        );
        assert_eq!(
            conn.invoke::<i64>("Add", (1, 2)).await.unwrap(),
            3,
            "{transport:?}"
        );
        conn.stop().await.unwrap();
    }
}

#[tokio::test]
async fn close_without_allow_reconnect_ends_the_connection() {
    let s = server(|_| {}).await;
    let conn = HubConnectionBuilder::new(s.url())
        .with_automatic_reconnect()
        .build()
        .unwrap();
    let events = Events::attach(&conn);
    conn.start().await.unwrap();
    let _ = conn.invoke::<()>("CloseMe", ("going away", false)).await;
    let closed = events.wait_for("closed").await;
    assert_eq!(
        closed,
        "closed: the server closed the connection: going away"
    );
    assert!(
        !events.list().iter().any(|e| e.starts_with("reconnecting")),
        "{:?}",
        events.list()
    );
    assert_eq!(conn.state(), HubConnectionState::Disconnected);
}

#[tokio::test]
async fn close_with_allow_reconnect_reconnects() {
    let s = server(|_| {}).await;
    let conn = HubConnectionBuilder::new(s.url())
        .with_automatic_reconnect_policy(ms(&[0]))
        .build()
        .unwrap();
    let events = Events::attach(&conn);
    conn.start().await.unwrap();
    let _ = conn.invoke::<()>("CloseMe", ((), true)).await;
    assert_eq!(
        events.wait_for("reconnecting").await,
        "reconnecting: the server closed the connection"
    );
    events.wait_for("reconnected").await;
    assert_eq!(conn.invoke::<i64>("Add", (2, 2)).await.unwrap(), 4);
}

#[tokio::test]
async fn without_a_policy_a_loss_is_the_end() {
    let s = server(|_| {}).await;
    let conn = HubConnectionBuilder::new(s.url()).build().unwrap();
    let events = Events::attach(&conn);
    conn.start().await.unwrap();
    s.controls().abort_all();
    let closed = events.wait_for("closed").await;
    assert!(
        closed.len() > "closed: ".len(),
        "the error is reported: {closed}"
    );
    assert_eq!(conn.state(), HubConnectionState::Disconnected);
}

#[tokio::test]
async fn gives_up_when_the_policy_is_exhausted() {
    let s = server(|_| {}).await;
    let conn = HubConnectionBuilder::new(s.url())
        .with_automatic_reconnect_policy(ms(&[0, 50, 50]))
        .build()
        .unwrap();
    let events = Events::attach(&conn);
    conn.start().await.unwrap();
    s.controls().refuse_for(Duration::from_secs(60)); // a server that stays down
    s.controls().abort_all();
    events.wait_for("closed").await;
    assert_eq!(conn.state(), HubConnectionState::Disconnected);
    let list = events.list();
    assert!(list[0].starts_with("reconnecting"), "{list:?}");
    assert!(
        list.iter().all(|e| !e.starts_with("reconnected")),
        "{list:?}"
    );
    let err = conn.invoke::<i64>("Add", (1, 1)).await.unwrap_err();
    assert!(matches!(err, HubError::NotConnected { .. }), "{err}");
}

#[tokio::test]
async fn stop_during_a_reconnect_delay_ends_at_once() {
    let s = server(|_| {}).await;
    let conn = HubConnectionBuilder::new(s.url())
        .with_automatic_reconnect_policy(ms(&[60_000]))
        .build()
        .unwrap();
    let events = Events::attach(&conn);
    conn.start().await.unwrap();
    s.controls().abort_all();
    events.wait_for("reconnecting").await;
    assert_eq!(conn.state(), HubConnectionState::Reconnecting);
    // A call made now waits in the outbox ...
    let queued = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.invoke::<i64>("Add", (1, 1)).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    tokio::time::timeout(Duration::from_secs(2), conn.stop())
        .await
        .expect("stop does not wait for the delay")
        .unwrap();
    assert_eq!(conn.state(), HubConnectionState::Disconnected);
    assert_eq!(events.wait_for("closed").await, "closed: ");
    // ... and fails with Stopped when the connection is stopped instead.
    let err = queued.await.unwrap().unwrap_err();
    assert!(matches!(err, HubError::Stopped), "{err}");
}

#[tokio::test]
async fn a_blackholed_link_is_found_by_the_server_timeout() {
    let s = server(|_| {}).await;
    for (transport, messagepack) in PAIRS
        .into_iter()
        .filter(|(t, _)| *t != signalr_client::protocol::TransportKind::LongPolling)
    {
        let conn = builder(s.url(), transport, messagepack)
            .with_keep_alive_interval(Duration::from_millis(100))
            .with_server_timeout(Duration::from_millis(500))
            .with_automatic_reconnect_policy(ms(&[0, 100, 100, 100, 100]))
            .build()
            .unwrap();
        let events = Events::attach(&conn);
        conn.start().await.unwrap();
        conn.send("Blackhole", (3000,)).await.unwrap();
        assert_eq!(
            events.wait_for("reconnecting").await,
            "reconnecting: server timed out",
            "{transport:?}"
        );
        events.wait_for("reconnected").await;
        assert_eq!(conn.invoke::<i64>("Add", (3, 4)).await.unwrap(), 7);
        conn.stop().await.unwrap();
    }
}

#[tokio::test]
async fn calls_made_while_reconnecting_wait_and_go_out_in_order() {
    let s = server(|_| {}).await;
    let conn = HubConnectionBuilder::new(s.url())
        .with_automatic_reconnect_policy(ms(&[300]))
        .build()
        .unwrap();
    let events = Events::attach(&conn);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let _order = conn.on("order", move |i: i32| {
        let tx = tx.clone();
        async move { tx.send(i).unwrap() }
    });
    conn.start().await.unwrap();
    s.controls().abort_all();
    events.wait_for("reconnecting").await;
    // Made during the 300 ms delay: queued, not failed.
    let mut calls = Vec::new();
    for i in 0..5 {
        let conn = conn.clone();
        calls.push(tokio::spawn(async move {
            conn.send("SendToCaller", ("order", i)).await
        }));
        tokio::task::yield_now().await;
    }
    let sum = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.invoke::<i64>("Add", (20, 22)).await })
    };
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(sum.await.unwrap().unwrap(), 42);
    events.wait_for("reconnected").await;
    let mut order = Vec::new();
    while order.len() < 5 {
        order.push(
            tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert_eq!(
        order,
        [0, 1, 2, 3, 4],
        "the outbox keeps the order of the calls"
    );
}

#[tokio::test]
async fn the_outbox_is_bounded_and_fails_when_the_reconnect_gives_up() {
    let s = server(|_| {}).await;
    let conn = HubConnectionBuilder::new(s.url())
        .with_automatic_reconnect_policy(ms(&[200]))
        .with_outbox_size(1)
        .build()
        .unwrap();
    let events = Events::attach(&conn);
    conn.start().await.unwrap();
    s.controls().refuse_for(Duration::from_secs(60));
    s.controls().abort_all();
    events.wait_for("reconnecting").await;
    let queued = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.invoke::<i64>("Add", (1, 1)).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let err = conn.invoke::<i64>("Add", (2, 2)).await.unwrap_err();
    assert!(matches!(err, HubError::OutboxFull { capacity: 1 }), "{err}");
    // The one reconnect attempt fails (the server refuses): the queued call fails too.
    let err = queued.await.unwrap().unwrap_err();
    assert!(matches!(err, HubError::ConnectionLost(_)), "{err}");
    events.wait_for("closed").await;
}

#[tokio::test]
async fn the_initial_start_is_retried_only_with_a_start_policy() {
    let s = server(|_| {}).await;
    s.controls().refuse_for(Duration::from_millis(400));
    let plain = HubConnectionBuilder::new(s.url()).build().unwrap();
    let err = plain.start().await.unwrap_err();
    assert!(err.to_string().contains("transport"), "{err}");
    assert_eq!(plain.state(), HubConnectionState::Disconnected);

    let patient = HubConnectionBuilder::new(s.url())
        .with_initial_start_policy(FixedDelays::from_millis(&[100; 20]))
        .build()
        .unwrap();
    patient.start().await.unwrap();
    assert_eq!(patient.invoke::<i64>("Add", (1, 2)).await.unwrap(), 3);

    // A stop during a start delay ends the start at once.
    s.controls().refuse_for(Duration::from_secs(60));
    let stopped = HubConnectionBuilder::new(s.url())
        .with_initial_start_policy(ms(&[60_000]))
        .build()
        .unwrap();
    let starting = {
        let c = stopped.clone();
        tokio::spawn(async move { c.start().await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    tokio::time::timeout(Duration::from_secs(2), stopped.stop())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(starting.await.unwrap(), Err(HubError::Stopped)));
}

#[tokio::test]
async fn a_server_restart_is_survived() {
    let s = server(|_| {}).await;
    let conn = HubConnectionBuilder::new(s.url())
        .with_header("x-tenant".parse().unwrap(), "acme".parse().unwrap())
        .with_automatic_reconnect_policy(ms(&[0, 100, 100, 100, 100, 100, 100, 100]))
        .build()
        .unwrap();
    let events = Events::attach(&conn);
    conn.start().await.unwrap();
    // The server goes down (every connection dropped, new ones refused) and comes back 400 ms later.
    s.controls().refuse_for(Duration::from_millis(400));
    s.controls().abort_all();
    events.wait_for("reconnected").await;
    assert_eq!(conn.invoke::<i64>("Add", (5, 5)).await.unwrap(), 10);
    assert!(
        events.list().iter().all(|e| !e.starts_with("closed")),
        "{:?}",
        events.list()
    );
}
