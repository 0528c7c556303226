//! What cost a new user time, point by point (issue #20): each test fails on the API as it
//! was, and shows what a user sees now.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::StreamExt as _;
use signalr_client::{
    HubConnectionBuilder, HubConnectionState, HubError, PayloadPart, Upload, reconnect::FixedDelays,
};
use signalr_testserver::{ServerConfig, TestServer, hub::HubError as ServerError};

use crate::support::{WAIT, server};

/// Collects what a handler is called with.
fn sink<T: Send + 'static>() -> (Arc<Mutex<Vec<T>>>, impl Fn(T) + Clone + Send + Sync) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = Arc::clone(&got);
    (got, move |v| g.lock().unwrap().push(v))
}

async fn until(cond: impl Fn() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("in time");
}

#[derive(Debug, serde::Deserialize, PartialEq)]
struct Tick {
    symbol: String,
    price: f64,
}

// 1. A registration lives until removed on purpose: `let _ =` and a bare statement keep it.
#[tokio::test]
async fn a_dropped_handle_removes_nothing_and_remove_and_off_do() {
    let s = server(|_| {}).await;
    let conn = HubConnectionBuilder::new(s.url()).build().unwrap();
    let (got, push) = sink::<String>();
    let p = push.clone();
    let _ = conn.on("note", move |text: String| {
        let p = p.clone();
        async move { p(format!("first {text}")) }
    });
    let p = push.clone();
    let second = conn.on("note", move |text: String| {
        let p = p.clone();
        async move { p(format!("second {text}")) }
    });
    conn.start().await.unwrap();
    conn.invoke::<()>("SendToCaller", ("note", "a"))
        .await
        .unwrap();
    until(|| got.lock().unwrap().len() == 2).await;
    assert!(second.remove(), "removed on purpose");
    conn.invoke::<()>("SendToCaller", ("note", "b"))
        .await
        .unwrap();
    until(|| got.lock().unwrap().len() == 3).await;
    assert_eq!(conn.off("NOTE"), 1, "off matches case-insensitively");
    conn.invoke::<()>("SendToCaller", ("note", "c"))
        .await
        .unwrap();
    // A client result with no handler left: the server's call fails, the connection lives.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        *got.lock().unwrap(),
        ["first a", "second a", "first b"],
        "the handle dropped at once kept its handler"
    );
    // The event callbacks too: removable, and alive until removed.
    let (events, push) = sink::<String>();
    let p = push.clone();
    let _ = conn.on_close(move |_| p("close".into()));
    let removed = conn.on_close(move |_| push("removed".into()));
    assert!(removed.remove());
    conn.stop().await.unwrap();
    assert_eq!(*events.lock().unwrap(), ["close"]);
}

// 2. One parameter per argument, no one-tuple; a call that does not bind says why.
#[tokio::test]
async fn handlers_take_one_parameter_per_argument_and_misfits_are_reported() {
    let s = server(|_| {}).await;
    let conn = HubConnectionBuilder::new(s.url()).build().unwrap();
    let (ticks, push) = sink::<Tick>();
    conn.on("tick", move |tick: Tick| {
        let push = push.clone();
        async move { push(tick) }
    });
    let (errors, report) = sink::<String>();
    let e = report.clone();
    conn.on_handler_error(move |err| {
        e(format!("{err:#}"));
        if let HubError::Payload { method, part, .. } = err {
            assert_eq!((method.as_str(), *part), ("tick", PayloadPart::Argument(0)));
        }
    });
    conn.start().await.unwrap();
    let tick = serde_json::json!({"symbol": "ACME", "price": 12.5});
    conn.invoke::<()>("SendToCaller", ("tick", &tick))
        .await
        .unwrap();
    until(|| !ticks.lock().unwrap().is_empty()).await;
    assert_eq!(
        ticks.lock().unwrap()[0],
        Tick {
            symbol: "ACME".into(),
            price: 12.5
        }
    );
    // A payload of the wrong shape: not called, and the hook hears why, serde's words included.
    conn.invoke::<()>("SendToCaller", ("tick", "not a tick"))
        .await
        .unwrap();
    until(|| !errors.lock().unwrap().is_empty()).await;
    let error = errors.lock().unwrap()[0].clone();
    assert!(
        error.starts_with("argument 0 of 'tick' does not bind:") && error.contains("invalid type"),
        "{error}"
    );
    assert_eq!(ticks.lock().unwrap().len(), 1);
    // Two parameters, and a count that does not fit.
    let (pairs, push) = sink::<(String, i64)>();
    conn.on("pair", move |name: String, n: i64| {
        let push = push.clone();
        async move { push((name, n)) }
    });
    conn.invoke::<()>("SendToCaller", ("pair", 1))
        .await
        .unwrap();
    until(|| errors.lock().unwrap().len() == 2).await;
    assert_eq!(
        errors.lock().unwrap()[1],
        "the server called 'pair' with 1 argument(s); its handler takes 2"
    );
    assert!(pairs.lock().unwrap().is_empty());
    conn.stop().await.unwrap();
}

// 4. `invoke::<()>` discards whatever came back.
#[tokio::test]
async fn unit_discards_any_result() {
    let s = server(|_| {}).await;
    let conn = HubConnectionBuilder::new(s.url()).build().unwrap();
    conn.start().await.unwrap();
    conn.invoke::<()>("Add", (1, 2)).await.unwrap();
    conn.invoke::<()>("Echo", (serde_json::json!({"a": [1, 2]}),))
        .await
        .unwrap();
    conn.invoke::<()>("NoResult", ()).await.unwrap();
    // A result that does not bind names the method and the part.
    let err = conn.invoke::<String>("Add", (1, 2)).await.unwrap_err();
    assert!(
        matches!(&err, HubError::Payload { method, part: PayloadPart::Result, .. } if method == "Add"),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "the result of 'Add' does not bind");
    conn.stop().await.unwrap();
}

// 5. `{:#}` prints the chain; giving up says so once.
#[tokio::test]
async fn errors_show_their_causes_and_giving_up_says_so() {
    let s = server(|c| c.required_token = Some("right".into())).await;
    let conn = HubConnectionBuilder::new(s.url())
        .with_access_token(|| async { Ok("wrong".to_owned()) })
        .build()
        .unwrap();
    let err = conn.start().await.unwrap_err();
    assert_eq!(err.to_string(), "transport error");
    assert_eq!(
        format!("{err:#}"),
        "transport error: negotiate returned HTTP 401"
    );
    // A reconnect that never succeeds: the close reason says it gave up, after how many.
    let s = server(|_| {}).await;
    let conn = HubConnectionBuilder::new(s.url())
        .with_automatic_reconnect_policy(FixedDelays::from_millis(&[0, 10, 10]))
        .build()
        .unwrap();
    conn.start().await.unwrap();
    s.controls().refuse_for(Duration::from_secs(60));
    let _ = conn.invoke::<()>("AbortMe", ()).await;
    let reason = tokio::time::timeout(WAIT, conn.closed())
        .await
        .unwrap()
        .expect("a reason");
    let text = format!("{reason:#}");
    assert!(
        text.starts_with("reconnect gave up after 3 attempts in "),
        "{text}"
    );
    assert!(text.ends_with("returned HTTP 503"), "{text}");
    assert_eq!(text.matches("connection was lost").count(), 0, "{text}");
    assert!(matches!(
        &*reason,
        HubError::ReconnectFailed { attempts: 3, .. }
    ));
}

// 6. A handler replying on its connection through a weak handle: no cycle, the connection
// stops when the last user handle is dropped.
#[tokio::test]
async fn a_weak_handle_in_a_handler_does_not_keep_the_connection_alive() {
    let s = server(|_| {}).await;
    let conn = HubConnectionBuilder::new(s.url()).build().unwrap();
    let weak = conn.downgrade();
    let (replies, push) = sink::<usize>();
    conn.on("ping", move |n: usize| {
        let weak = weak.clone();
        let push = push.clone();
        async move {
            if let Some(conn) = weak.upgrade() {
                push(conn.invoke::<usize>("Echo", (n + 1,)).await.unwrap());
            }
        }
    });
    conn.start().await.unwrap();
    conn.invoke::<()>("SendToCaller", ("ping", 41))
        .await
        .unwrap();
    until(|| *replies.lock().unwrap() == [42]).await;
    assert_eq!(s.controls().connection_count(), 1);
    drop(conn);
    until(|| s.controls().connection_count() == 0).await;
}

// 7. Client results may fail with any error that displays: `?` works.
#[tokio::test]
async fn client_results_take_any_displayable_error() {
    let s = server(|_| {}).await;
    let conn = HubConnectionBuilder::new(s.url()).build().unwrap();
    conn.on_invoke("parse", |text: String| async move {
        let n: i64 = text.parse()?;
        Ok::<_, std::num::ParseIntError>(n * 2)
    });
    conn.start().await.unwrap();
    let doubled: i64 = conn.invoke("AskClient", ("parse", "21")).await.unwrap();
    assert_eq!(doubled, 42);
    let err = conn
        .invoke::<i64>("AskClient", ("parse", "twenty-one"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("invalid digit found in string"),
        "{err}"
    );
    conn.stop().await.unwrap();
}

/// A hub with streaming methods that take uploads, for `send` and `stream` with streams.
async fn upload_hub() -> TestServer {
    let hub = signalr_testserver::contract::contract_hub()
        .stream("Doubles", |ctx, (): ()| {
            let upload = ctx.take_upload(0);
            futures_util::stream::unfold(upload, |upload| async move {
                let mut upload = upload?;
                match upload.next::<i64>().await {
                    Some(Ok(v)) => Some((Ok(v * 2), Some(upload))),
                    Some(Err(e)) => Some((Err(e), None)),
                    None => None,
                }
            })
        })
        .action("Tally", |ctx, (label,): (String,)| async move {
            let mut upload = ctx
                .take_upload(0)
                .ok_or_else(|| ServerError::new("Tally expects a stream"))?;
            let mut sum = 0;
            while let Some(v) = upload.next::<i64>().await {
                sum += v?;
            }
            ctx.send_args_to_caller("tallied", (label, sum)).await
        });
    TestServer::start_with(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        ServerConfig::default(),
        hub,
    )
    .await
    .unwrap()
}

// 8. Uploads in `send` and `stream`, in any position.
#[tokio::test]
async fn send_and_stream_take_uploads() {
    let s = upload_hub().await;
    let conn = HubConnectionBuilder::new(s.url()).build().unwrap();
    let (tallies, push) = sink::<(String, i64)>();
    conn.on("tallied", move |label: String, sum: i64| {
        let push = push.clone();
        async move { push((label, sum)) }
    });
    conn.start().await.unwrap();
    conn.send(
        "Tally",
        ("apples", Upload::new(futures_util::stream::iter([1, 2, 3]))),
    )
    .await
    .unwrap();
    until(|| !tallies.lock().unwrap().is_empty()).await;
    assert_eq!(tallies.lock().unwrap()[0], ("apples".to_owned(), 6));
    let doubled: Vec<i64> = conn
        .stream::<i64>(
            "Doubles",
            (Upload::new(futures_util::stream::iter([1, 2, 3])),),
        )
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(doubled, [2, 4, 6]);
    conn.stop().await.unwrap();
}

// 11. A stream item that does not bind ends the stream with that error.
#[tokio::test]
async fn a_stream_item_that_does_not_bind_ends_the_stream() {
    let s = server(|_| {}).await;
    let conn = HubConnectionBuilder::new(s.url()).build().unwrap();
    conn.start().await.unwrap();
    let mut items = conn.stream::<String>("Counter", (100, 1)).await.unwrap();
    let first = items.next().await.unwrap().unwrap_err();
    assert!(
        matches!(&first, HubError::Payload { method, part: PayloadPart::StreamItem, .. } if method == "Counter"),
        "{first:?}"
    );
    assert!(items.next().await.is_none(), "the stream ended");
    // The call was cancelled: the connection goes on.
    assert_eq!(conn.invoke::<i64>("Add", (1, 1)).await.unwrap(), 2);
    conn.stop().await.unwrap();
}

// 11. `closed()` returns the reason; the state displays as its name.
#[tokio::test]
async fn closed_returns_the_reason_and_states_display() {
    let s = server(|_| {}).await;
    let conn = HubConnectionBuilder::new(s.url()).build().unwrap();
    assert!(conn.closed().await.is_none(), "never connected: at once");
    conn.start().await.unwrap();
    assert_eq!(conn.state().to_string(), "Connected");
    let waiter = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.closed().await })
    };
    let _ = conn.invoke::<()>("CloseMe", ("maintenance", false)).await;
    let reason = tokio::time::timeout(WAIT, waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        reason.to_string(),
        "the server closed the connection: maintenance"
    );
    assert_eq!(conn.state(), HubConnectionState::Disconnected);
    assert_eq!(
        format!("{}", HubConnectionState::Reconnecting),
        "Reconnecting"
    );
    // After stop: None.
    conn.start().await.unwrap();
    conn.stop().await.unwrap();
    assert!(conn.closed().await.is_none());
}
