//! Invoke, send, streams, client methods and client results on every transport and protocol.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use signalr_client::{HubConnectionBuilder, HubConnectionState, HubError};

use crate::support::{Events, PAIRS, WAIT, builder, server};

#[derive(Debug, Serialize, Deserialize, PartialEq, Clone)]
struct Point {
    x: i32,
    label: String,
    tags: Vec<String>,
}

#[tokio::test]
async fn the_contract_on_every_transport_and_protocol() {
    let s = server(|_| {}).await;
    for (transport, messagepack) in PAIRS {
        let conn = builder(s.url(), transport, messagepack).build().unwrap();
        let events = Events::attach(&conn);
        let welcome = Arc::new(Mutex::new(None::<String>));
        let w = Arc::clone(&welcome);
        let _welcome = conn.on("welcome", move |id: String| {
            let w = Arc::clone(&w);
            async move {
                *w.lock().unwrap() = Some(id);
            }
        });
        conn.start().await.unwrap();
        assert_eq!(conn.state(), HubConnectionState::Connected);
        let case = format!(
            "{transport:?}/{}",
            if messagepack { "msgpack" } else { "json" }
        );

        assert_eq!(
            conn.invoke::<i64>("Add", (40, 2)).await.unwrap(),
            42,
            "{case}"
        );
        let p = Point {
            x: 7,
            label: "é \u{1e} \"q\"".into(),
            tags: vec!["a".into()],
        };
        assert_eq!(
            conn.invoke::<Point>("Echo", (&p,)).await.unwrap(),
            p,
            "{case}"
        );
        conn.invoke::<()>("NoResult", ()).await.unwrap();
        let id: String = conn.invoke("GetConnectionId", ()).await.unwrap();
        assert_eq!(Some(id.clone()), conn.connection_id(), "{case}");
        assert_eq!(
            welcome.lock().unwrap().clone(),
            Some(id),
            "{case}: welcome carries the id"
        );

        let err = conn.invoke::<()>("Fail", ("boom",)).await.unwrap_err();
        assert!(
            matches!(&err, HubError::Invocation { message } if message == "boom"),
            "{case}: {err}"
        );
        let err = conn.invoke::<()>("NoSuchMethod", ()).await.unwrap_err();
        assert!(err.to_string().contains("NoSuchMethod"), "{case}: {err}");

        // Server-to-client calls arrive in order.
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = Arc::clone(&seen);
        let _seq = conn.on("seq", move |i: i32| {
            let s2 = Arc::clone(&s2);
            async move { s2.lock().unwrap().push(i) }
        });
        assert_eq!(conn.invoke::<i32>("Sequence", (50,)).await.unwrap(), 50);
        tokio::time::timeout(WAIT, async {
            while seen.lock().unwrap().len() < 50 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        assert_eq!(*seen.lock().unwrap(), (0..50).collect::<Vec<_>>(), "{case}");

        // send is fire and forget; SendToCaller answers through a handler.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let _pong = conn.on("pong", move |v: String| {
            let tx = tx.clone();
            async move { tx.send(v).unwrap() }
        });
        conn.send("SendToCaller", ("pong", "hi")).await.unwrap();
        assert_eq!(
            tokio::time::timeout(WAIT, rx.recv())
                .await
                .unwrap()
                .unwrap(),
            "hi"
        );

        streams_and_client_results(&conn, &case).await;

        conn.stop().await.unwrap();
        assert_eq!(conn.state(), HubConnectionState::Disconnected);
        assert_eq!(events.list(), ["closed: "], "{case}");
        let err = conn.invoke::<i64>("Add", (1, 1)).await.unwrap_err();
        assert!(
            matches!(
                err,
                HubError::NotConnected {
                    state: HubConnectionState::Disconnected
                }
            ),
            "{err}"
        );
    }
}

/// Streams both ways of ending, and client results, on a started connection.
async fn streams_and_client_results(conn: &signalr_client::HubConnection, case: &str) {
    // Streams: all items, then the end.
    let items: Vec<i32> = conn
        .stream::<i32>("Counter", (5, 0))
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(items, [0, 1, 2, 3, 4], "{case}");
    // Dropped midway: cancelled, and the connection carries on.
    let mut slow = conn.stream::<i32>("Counter", (1000, 10)).await.unwrap();
    assert_eq!(slow.next().await.unwrap().unwrap(), 0);
    drop(slow);
    assert_eq!(conn.invoke::<i64>("Add", (1, 1)).await.unwrap(), 2);
    let err = conn
        .stream::<i32>("Add", (1, 2))
        .await
        .unwrap()
        .next()
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        err.to_string().contains("hub method failed"),
        "{case}: {err}"
    );

    // Client results: the handler's value, or the official error without a handler.
    let _double = conn.on_invoke("double", |x: i64| async move { Ok::<_, String>(x * 2) });
    assert_eq!(
        conn.invoke::<i64>("AskClient", ("double", 21))
            .await
            .unwrap(),
        42,
        "{case}"
    );
    let err = conn
        .invoke::<i64>("AskClient", ("nobody", 1))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("hub method failed"),
        "{case}: {err}"
    );
    let _failing = conn.on_invoke("failing", |_x: i64| async move {
        Err::<i32, _>("nope".to_owned())
    });
    let err = conn
        .invoke::<i64>("AskClient", ("failing", 1))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HubError::Invocation { message } if message.contains("nope")),
        "{case}: {err}"
    );
}

#[tokio::test]
async fn broadcast_and_groups_between_json_and_messagepack_clients() {
    let s = server(|_| {}).await;
    let a = HubConnectionBuilder::new(s.url()).build().unwrap();
    let b = HubConnectionBuilder::new(s.url())
        .with_messagepack()
        .build()
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, String)>();
    let mut subs = Vec::new();
    for (name, conn) in [("a", &a), ("b", &b)] {
        let tx = tx.clone();
        subs.push(conn.on("news", move |text: String| {
            let tx = tx.clone();
            async move { tx.send((name.to_owned(), text)).unwrap() }
        }));
        conn.start().await.unwrap();
    }
    assert_eq!(b.invoke::<String>("JoinGroup", ("g",)).await.unwrap(), "g");
    assert_eq!(
        a.invoke::<String>("SendToGroup", ("g", "news", "to the group"))
            .await
            .unwrap(),
        "sent"
    );
    assert_eq!(
        tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap()
            .unwrap(),
        ("b".to_owned(), "to the group".to_owned())
    );
    assert_eq!(
        a.invoke::<usize>("Broadcast", ("news", "to all"))
            .await
            .unwrap(),
        2
    );
    let mut got = vec![rx.recv().await.unwrap(), rx.recv().await.unwrap()];
    got.sort();
    assert_eq!(
        got,
        [
            ("a".to_owned(), "to all".to_owned()),
            ("b".to_owned(), "to all".to_owned())
        ]
    );
}

#[tokio::test]
async fn lifecycle_rules() {
    let s = server(|_| {}).await;
    let conn = HubConnectionBuilder::new(s.url()).build().unwrap();
    conn.start().await.unwrap();
    let err = conn.start().await.unwrap_err();
    assert!(
        matches!(
            err,
            HubError::InvalidState {
                operation: "start",
                state: HubConnectionState::Connected
            }
        ),
        "{err}"
    );
    conn.stop().await.unwrap();
    conn.stop().await.unwrap(); // stopping twice is fine
    conn.start().await.unwrap(); // and it starts again
    assert_eq!(conn.invoke::<i64>("Add", (2, 2)).await.unwrap(), 4);

    // Dropping every handle ends the connection on the server too.
    drop(conn);
    tokio::time::timeout(WAIT, async {
        while s.controls().connection_count() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the driver closes the connection when the last handle is dropped");

    // Bad settings are refused by build().
    assert!(HubConnectionBuilder::new("ftp://x/hub").build().is_err());
    let bad = HubConnectionBuilder::new(s.url())
        .with_keep_alive_interval(Duration::from_secs(30))
        .with_server_timeout(Duration::from_secs(10));
    assert!(bad.build().is_err());
    let wrong = HubConnectionBuilder::new(s.url())
        .with_transports([signalr_client::protocol::TransportKind::LongPolling])
        .with_skip_negotiation();
    assert!(wrong.build().is_err());
}

#[tokio::test]
async fn stop_cancels_a_start_that_hangs() {
    // A server that accepts and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hub", listener.local_addr().unwrap());
    let _keep = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let conn = HubConnectionBuilder::new(url).build().unwrap();
    let starting = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.start().await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(conn.state(), HubConnectionState::Connecting);
    tokio::time::timeout(WAIT, conn.stop())
        .await
        .unwrap()
        .unwrap();
    let result = tokio::time::timeout(WAIT, starting).await.unwrap().unwrap();
    assert!(matches!(result, Err(HubError::Stopped)), "{result:?}");
    assert_eq!(conn.state(), HubConnectionState::Disconnected);
}

#[tokio::test]
async fn uploads_on_every_transport_and_protocol() {
    use signalr_client::Upload;
    let s = server(|_| {}).await;
    for (transport, messagepack) in PAIRS {
        let conn = builder(s.url(), transport, messagepack).build().unwrap();
        conn.start().await.unwrap();
        let sum: i64 = conn
            .invoke("Sum", (Upload::new(futures_util::stream::iter(1..=100)),))
            .await
            .unwrap();
        assert_eq!(sum, 5050, "{transport:?}");
        // Items produced slowly, as a real stream would.
        let slow = futures_util::stream::iter(1..=5).then(|i| async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            i
        });
        assert_eq!(
            conn.invoke::<i64>("Sum", (Upload::new(slow),))
                .await
                .unwrap(),
            15
        );
        // A failing upload fails the call on the server with its message.
        let failing = futures_util::stream::iter([Ok(1), Err("sensor unplugged")]);
        let err = conn
            .invoke::<i64>("Sum", (Upload::fallible(failing),))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("sensor unplugged"),
            "{transport:?}: {err}"
        );
        conn.stop().await.unwrap();
    }
}

#[test]
fn handles_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<signalr_client::HubConnection>();
}

#[tokio::test]
async fn a_flood_of_sends_does_not_starve_receiving() {
    let s = server(|_| {}).await;
    let conn = HubConnectionBuilder::new(s.url()).build().unwrap();
    conn.start().await.unwrap();
    let (seen, _sub) = {
        let seen = Arc::new(Mutex::new(0_usize));
        let s2 = Arc::clone(&seen);
        let sub = conn.on("flood", move |_i: i32| {
            let s2 = Arc::clone(&s2);
            async move { *s2.lock().unwrap() += 1 }
        });
        (seen, sub)
    };
    // Eight tasks send as fast as they can while the server streams calls back.
    let senders: Vec<_> = (0..8)
        .map(|_| {
            let conn = conn.clone();
            tokio::spawn(async move {
                for i in 0..500 {
                    conn.send("SendToCaller", ("flood", i)).await.unwrap();
                }
            })
        })
        .collect();
    assert_eq!(
        conn.invoke::<i32>("Sequence", (10,)).await.unwrap(),
        10,
        "an invoke completes during the flood"
    );
    for s in senders {
        s.await.unwrap();
    }
    tokio::time::timeout(WAIT, async {
        while *seen.lock().unwrap() < 4000 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("every call came back");
}
