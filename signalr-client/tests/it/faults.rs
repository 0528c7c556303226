//! The client behind `FaultProxy`: a network that splits, cuts, half-closes, blackholes and
//! refuses, between the client and the test server.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::StreamExt as _;
use signalr_client::{HubConnectionBuilder, HubConnectionState, HubError, reconnect::FixedDelays};
use signalr_testserver::proxy::{FaultProxy, Mode};

use crate::support::{Events, PAIRS, WAIT, builder, server};

fn retry() -> FixedDelays {
    FixedDelays::from_millis(&[0, 100, 100, 100, 100, 100, 100, 100, 100, 100])
}

#[tokio::test]
async fn every_transport_works_when_every_byte_arrives_alone() {
    let s = server(|_| {}).await;
    let proxy = FaultProxy::start(s.local_addr()).await.unwrap();
    proxy.set_mode(Mode::OneByteChunks);
    for (transport, messagepack) in PAIRS {
        let conn = builder(&proxy.url(s.url()), transport, messagepack)
            .build()
            .unwrap();
        conn.start().await.unwrap();
        let text = "record \u{1e} separator, \"quotes\" and é";
        assert_eq!(
            conn.invoke::<String>("Echo", (text,)).await.unwrap(),
            text,
            "{transport:?}"
        );
        let items: Vec<i32> = conn
            .stream::<i32>("Counter", (4, 0))
            .await
            .unwrap()
            .map(Result::unwrap)
            .collect()
            .await;
        assert_eq!(items, [0, 1, 2, 3], "{transport:?}");
        conn.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_reset_mid_call_fails_the_call_and_the_client_reconnects() {
    let s = server(|_| {}).await;
    let proxy = FaultProxy::start(s.local_addr()).await.unwrap();
    for (transport, messagepack) in PAIRS {
        let conn = builder(&proxy.url(s.url()), transport, messagepack)
            .with_automatic_reconnect_policy(retry())
            .build()
            .unwrap();
        let events = Events::attach(&conn);
        conn.start().await.unwrap();
        let mut slow = conn.stream::<i32>("Counter", (1000, 20)).await.unwrap();
        assert_eq!(slow.next().await.unwrap().unwrap(), 0);
        proxy.reset_all();
        let err = tokio::time::timeout(WAIT, async {
            loop {
                match slow.next().await {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return e,
                    None => panic!("the stream ended without an error"),
                }
            }
        })
        .await
        .unwrap();
        assert!(
            matches!(err, HubError::ConnectionLost(_)),
            "{transport:?}: {err}"
        );
        events.wait_for("reconnected").await;
        assert_eq!(
            conn.invoke::<i64>("Add", (1, 2)).await.unwrap(),
            3,
            "{transport:?}"
        );
        conn.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_pulled_cable_is_found_by_the_server_timeout() {
    let s = server(|_| {}).await;
    let proxy = FaultProxy::start(s.local_addr()).await.unwrap();
    let conn = HubConnectionBuilder::new(proxy.url(s.url()))
        .with_keep_alive_interval(Duration::from_millis(100))
        .with_server_timeout(Duration::from_millis(500))
        .with_automatic_reconnect_policy(retry())
        .build()
        .unwrap();
    let events = Events::attach(&conn);
    conn.start().await.unwrap();
    proxy.set_mode(Mode::Blackhole); // no FIN, no RST: only silence
    assert_eq!(
        events.wait_for("reconnecting").await,
        "reconnecting: server timed out"
    );
    proxy.set_mode(Mode::Pass); // plugged back in
    events.wait_for("reconnected").await;
    assert_eq!(conn.invoke::<i64>("Add", (2, 2)).await.unwrap(), 4);
}

#[tokio::test]
async fn a_half_closed_link_is_a_loss_and_is_reconnected() {
    let s = server(|_| {}).await;
    let proxy = FaultProxy::start(s.local_addr()).await.unwrap();
    let conn = HubConnectionBuilder::new(proxy.url(s.url()))
        .with_automatic_reconnect_policy(retry())
        .build()
        .unwrap();
    let events = Events::attach(&conn);
    conn.start().await.unwrap();
    proxy.half_close_all();
    events.wait_for("reconnecting").await;
    events.wait_for("reconnected").await;
    assert_eq!(conn.invoke::<i64>("Add", (3, 3)).await.unwrap(), 6);
}

#[tokio::test]
async fn a_server_that_refuses_for_a_while_is_reached_again() {
    let s = server(|_| {}).await;
    let proxy = FaultProxy::start(s.local_addr()).await.unwrap();
    let conn = HubConnectionBuilder::new(proxy.url(s.url()))
        .with_automatic_reconnect_policy(retry())
        .build()
        .unwrap();
    let events = Events::attach(&conn);
    conn.start().await.unwrap();
    proxy.refuse_for(Duration::from_millis(350));
    proxy.reset_all();
    events.wait_for("reconnected").await;
    assert_eq!(conn.state(), HubConnectionState::Connected);
    assert!(
        !events.list().iter().any(|e| e.starts_with("closed")),
        "{:?}",
        events.list()
    );
}

#[tokio::test]
async fn stateful_reconnect_survives_resets_without_loss() {
    let s = server(|c| c.stateful_reconnect = true).await;
    let proxy = FaultProxy::start(s.local_addr()).await.unwrap();
    let conn = HubConnectionBuilder::new(proxy.url(s.url()))
        .with_stateful_reconnect(100_000)
        .with_automatic_reconnect_policy(retry())
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = Arc::clone(&seen);
    let _seq = conn.on("seq", move |i: i32| {
        let s2 = Arc::clone(&s2);
        async move { s2.lock().unwrap().push(i) }
    });
    conn.start().await.unwrap();
    let id = conn.connection_id();
    let call = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.invoke::<i32>("Sequence", (2000,)).await })
    };
    for cut in [300, 1300] {
        tokio::time::timeout(WAIT, async {
            while seen.lock().unwrap().len() < cut {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .unwrap();
        proxy.reset_all();
    }
    assert_eq!(call.await.unwrap().unwrap(), 2000);
    tokio::time::timeout(WAIT, async {
        while seen.lock().unwrap().len() < 2000 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(*seen.lock().unwrap(), (0..2000).collect::<Vec<_>>());
    assert_eq!(conn.connection_id(), id);
}
