//! Stateful reconnect against the test server: a dropped socket is replaced and nothing is lost
//! or duplicated in either direction; when the resume fails the retry policy takes over.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use signalr_client::{
    HubConnection, HubConnectionBuilder, HubConnectionState, HubError, reconnect::FixedDelays,
};

use crate::support::{Events, WAIT, server, wait_len};

fn collector(
    conn: &HubConnection,
    target: &str,
) -> (Arc<Mutex<Vec<i32>>>, signalr_client::Subscription) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let sub = conn.on(target, move |i: i32| {
        let s = Arc::clone(&s);
        async move { s.lock().unwrap().push(i) }
    });
    (seen, sub)
}

fn stateful(url: &str, messagepack: bool) -> HubConnection {
    let b = HubConnectionBuilder::new(url)
        .with_stateful_reconnect(100_000)
        .with_automatic_reconnect_policy(FixedDelays::from_millis(&[0, 100, 100]));
    if messagepack { b.with_messagepack() } else { b }
        .build()
        .unwrap()
}

#[tokio::test]
async fn server_to_client_messages_survive_aborts_exactly_once_in_order() {
    let s = server(|c| c.stateful_reconnect = true).await;
    for messagepack in [false, true] {
        let conn = stateful(s.url(), messagepack);
        let events = Events::attach(&conn);
        let (seen, _sub) = collector(&conn, "seq");
        conn.start().await.unwrap();
        let id = conn.connection_id();
        let total = 3000;
        let call = {
            let conn = conn.clone();
            tokio::spawn(async move { conn.invoke::<i32>("Sequence", (total,)).await })
        };
        // Cut the socket three times while the items flow.
        for cut in [200, 1200, 2200] {
            wait_len(&seen, cut).await;
            s.controls().abort_all();
        }
        assert_eq!(
            call.await.unwrap().unwrap(),
            total,
            "the call itself survives"
        );
        wait_len(&seen, usize::try_from(total).unwrap()).await;
        let got = seen.lock().unwrap().clone();
        assert_eq!(
            got,
            (0..total).collect::<Vec<_>>(),
            "none lost, duplicated or reordered"
        );
        assert_eq!(conn.connection_id(), id, "resumed, not reconnected");
        assert!(
            events.list().is_empty(),
            "a resume is silent, as in the official clients: {:?}",
            events.list()
        );
        assert_eq!(conn.state(), HubConnectionState::Connected);
        conn.stop().await.unwrap();
    }
}

#[tokio::test]
async fn client_to_server_messages_survive_aborts_exactly_once_in_order() {
    let s = server(|c| c.stateful_reconnect = true).await;
    let conn = stateful(s.url(), false);
    let (seen, _sub) = collector(&conn, "echoed");
    conn.start().await.unwrap();
    let total = 1500;
    let sender = {
        let conn = conn.clone();
        tokio::spawn(async move {
            for i in 0..total {
                conn.send("SendToCaller", ("echoed", i)).await.unwrap();
            }
        })
    };
    for cut in [100, 700] {
        wait_len(&seen, cut).await;
        s.controls().abort_all();
    }
    sender.await.unwrap();
    wait_len(&seen, usize::try_from(total).unwrap()).await;
    assert_eq!(*seen.lock().unwrap(), (0..total).collect::<Vec<_>>());
}

#[tokio::test]
async fn abort_me_completes_after_the_resume() {
    let s = server(|c| c.stateful_reconnect = true).await;
    let conn = stateful(s.url(), true);
    conn.start().await.unwrap();
    let id = conn.connection_id();
    // The server drops the socket, then its Completion is replayed on the new one.
    conn.invoke::<()>("AbortMe", ()).await.unwrap();
    assert_eq!(conn.connection_id(), id);
    assert_eq!(conn.invoke::<i64>("Add", (20, 22)).await.unwrap(), 42);
}

#[tokio::test]
async fn a_refused_resume_is_retried_and_succeeds() {
    let s = server(|c| c.stateful_reconnect = true).await;
    let conn = stateful(s.url(), false);
    let events = Events::attach(&conn);
    conn.start().await.unwrap();
    let id = conn.connection_id();
    // The first resume attempts get 503; the server still holds the session, so the client keeps
    // trying within its resume window and the invocation completes on the same connection.
    s.controls().refuse_for(Duration::from_millis(150));
    conn.invoke::<()>("AbortMe", ()).await.unwrap();
    assert_eq!(conn.connection_id(), id, "resumed, not reconnected");
    assert!(events.list().is_empty(), "{:?}", events.list());
    assert_eq!(conn.invoke::<i64>("Add", (1, 1)).await.unwrap(), 2);
}

#[tokio::test]
async fn a_failed_resume_falls_back_to_the_retry_policy() {
    let s = server(|c| {
        c.stateful_reconnect = true;
        c.disconnect_timeout = Duration::from_millis(50);
    })
    .await;
    let conn = stateful(s.url(), false);
    let events = Events::attach(&conn);
    conn.start().await.unwrap();
    let id = conn.connection_id();
    // The resume is refused until the server has forgotten the connection: then it gets 404.
    s.controls().refuse_for(Duration::from_millis(800));
    let err = conn.invoke::<()>("AbortMe", ()).await.unwrap_err();
    assert!(matches!(err, HubError::ConnectionLost(_)), "{err}");
    // Not silent: the AbortMe invocation was never acknowledged, and the event says so.
    let reconnecting = events.wait_for("reconnecting").await;
    assert!(
        reconnecting.contains("could not be resumed; 1 messages"),
        "{reconnecting}"
    );
    events.wait_for("reconnected").await;
    assert_ne!(conn.connection_id(), id, "a new connection");
    assert_eq!(conn.invoke::<i64>("Add", (1, 1)).await.unwrap(), 2);
}

#[tokio::test]
async fn without_the_servers_grant_it_is_a_plain_reconnect() {
    let s = server(|_| {}).await; // stateful reconnect not allowed by the hub
    let conn = stateful(s.url(), false);
    let events = Events::attach(&conn);
    conn.start().await.unwrap();
    let _ = conn.invoke::<()>("AbortMe", ()).await;
    events.wait_for("reconnected").await;
    assert_eq!(conn.invoke::<i64>("Add", (1, 2)).await.unwrap(), 3);
}

#[tokio::test]
async fn an_upload_survives_a_cut_socket() {
    use futures_util::StreamExt as _;
    use signalr_client::Upload;
    let s = server(|c| c.stateful_reconnect = true).await;
    let conn = stateful(s.url(), false);
    conn.start().await.unwrap();
    let produced = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = Arc::clone(&produced);
    let items = futures_util::stream::iter(1..=2000_i64).then(move |i| {
        let count = Arc::clone(&count);
        async move {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if i % 100 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            i
        }
    });
    let call = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.invoke::<i64>("Sum", (Upload::new(items),)).await })
    };
    tokio::time::timeout(WAIT, async {
        while produced.load(std::sync::atomic::Ordering::Relaxed) < 700 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .unwrap();
    s.controls().abort_all();
    assert_eq!(
        call.await.unwrap().unwrap(),
        2000 * 2001 / 2,
        "every item counted once"
    );
}
