//! Run with: `cargo run -p examples --bin interop_client -- URL [ws|sse|lp|auto] [json|messagepack]`
//!
//! Runs every method of the hub contract (`shared/design/hub-contract.md`) against the server at
//! URL with our client, prints one JSON object with a result per step, and exits 0 only when
//! every step passed: a way to check this client against any server that implements the
//! contract (ours, ASP.NET Core, another language's).

use std::{collections::BTreeMap, time::Duration};

use futures_util::StreamExt as _;
use serde_json::{Value, json};
use signalr_client::{HubConnection, HubConnectionBuilder, Upload, protocol::TransportKind};

// One step per hub method, read top to bottom: splitting it would only scatter the list.
#[allow(clippy::too_many_lines)]
async fn steps(conn: &HubConnection) -> BTreeMap<&'static str, Result<(), String>> {
    let mut results = BTreeMap::new();
    macro_rules! step {
        ($name:literal, $body:expr) => {
            let outcome: Result<(), String> = async { $body }.await;
            results.insert($name, outcome);
        };
    }
    let check = |ok: bool, what: String| if ok { Ok(()) } else { Err(what) };
    step!("Echo", {
        let v = json!({"a": [1, "two", null, true], "b": 1.5});
        let got: Value = conn
            .invoke("Echo", (&v,))
            .await
            .map_err(|e| e.to_string())?;
        check(got == v, format!("got {got}"))
    });
    step!("Add", {
        let got: i64 = conn
            .invoke("Add", (40, 2))
            .await
            .map_err(|e| e.to_string())?;
        check(got == 42, format!("got {got}"))
    });
    step!("Counter", {
        let items: Vec<i32> = conn
            .stream::<i32>("Counter", (5, 10))
            .await
            .map_err(|e| e.to_string())?
            .filter_map(|i| async move { i.ok() })
            .collect()
            .await;
        check(items == [0, 1, 2, 3, 4], format!("got {items:?}"))
    });
    step!("Sum", {
        let got: i64 = conn
            .invoke_with_uploads(
                "Sum",
                (),
                vec![Upload::new(futures_util::stream::iter(1..=10))],
            )
            .await
            .map_err(|e| e.to_string())?;
        check(got == 55, format!("got {got}"))
    });
    step!("SendToCaller", {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let _sub = conn.on("interopEcho", move |(v,): (String,)| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(v);
            }
        });
        let ack: String = conn
            .invoke("SendToCaller", ("interopEcho", "ping"))
            .await
            .map_err(|e| e.to_string())?;
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .map_err(|_| "no call back".to_owned())?;
        check(
            ack == "sent" && got.as_deref() == Some("ping"),
            format!("got {ack} / {got:?}"),
        )
    });
    step!("Broadcast", {
        let n: i64 = conn
            .invoke("Broadcast", ("interopBroadcast", 1))
            .await
            .map_err(|e| e.to_string())?;
        check(n >= 1, format!("reached {n}"))
    });
    step!("Groups", {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let _sub = conn.on("interopGroup", move |(v,): (i32,)| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(v);
            }
        });
        let g: String = conn
            .invoke("JoinGroup", ("interop",))
            .await
            .map_err(|e| e.to_string())?;
        conn.invoke::<String>("SendToGroup", ("interop", "interopGroup", 7))
            .await
            .map_err(|e| e.to_string())?;
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .map_err(|_| "no group message".to_owned())?;
        let left: String = conn
            .invoke("LeaveGroup", ("interop",))
            .await
            .map_err(|e| e.to_string())?;
        check(
            g == "interop" && left == "interop" && got == Some(7),
            format!("got {g} / {got:?} / {left}"),
        )
    });
    step!("Fail", {
        match conn.invoke::<()>("Fail", ("expected failure",)).await {
            Err(e) => check(
                e.to_string().contains("expected failure"),
                format!("wrong error {e}"),
            ),
            Ok(()) => Err("succeeded".into()),
        }
    });
    step!("UnknownMethod", {
        match conn.invoke::<()>("NoSuchMethodHere", ()).await {
            Err(e) => check(
                e.to_string().contains("NoSuchMethodHere"),
                format!("error does not name the method: {e}"),
            ),
            Ok(()) => Err("succeeded".into()),
        }
    });
    step!("AskClient", {
        let _sub = conn.on_invoke("interopQuestion", |(x,): (i64,)| async move {
            Ok::<_, String>(x + 1)
        });
        let got: i64 = conn
            .invoke("AskClient", ("interopQuestion", 41))
            .await
            .map_err(|e| e.to_string())?;
        check(got == 42, format!("got {got}"))
    });
    step!(
        "NoResult",
        conn.invoke::<()>("NoResult", ())
            .await
            .map_err(|e| e.to_string())
    );
    step!("GetConnectionId", {
        let id: String = conn
            .invoke("GetConnectionId", ())
            .await
            .map_err(|e| e.to_string())?;
        // Without negotiate there is no id to compare with.
        check(
            conn.connection_id().is_none_or(|c| c == id),
            format!("got {id}, expected {:?}", conn.connection_id()),
        )
    });
    step!("Sequence", {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let _sub = conn.on("seq", move |(i,): (i32,)| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(i);
            }
        });
        let n: i32 = conn
            .invoke("Sequence", (100,))
            .await
            .map_err(|e| e.to_string())?;
        let mut got = Vec::new();
        while got.len() < 100 {
            match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
                Ok(Some(i)) => got.push(i),
                _ => break,
            }
        }
        check(
            n == 100 && got == (0..100).collect::<Vec<_>>(),
            format!(
                "returned {n}, got {} in order? {}",
                got.len(),
                got.windows(2).all(|w| w[0] < w[1])
            ),
        )
    });
    results
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(url) = args.first() else {
        eprintln!("usage: interop_client URL [ws|sse|lp|auto] [json|messagepack]");
        std::process::exit(2);
    };
    let transport = args.get(1).map_or("auto", String::as_str);
    let protocol = args.get(2).map_or("json", String::as_str);
    let mut builder = HubConnectionBuilder::new(url.as_str());
    builder = match transport {
        "ws" => builder.with_transports([TransportKind::WebSockets]),
        "sse" => builder.with_transports([TransportKind::ServerSentEvents]),
        "lp" => builder.with_transports([TransportKind::LongPolling]),
        _ => builder,
    };
    if protocol == "messagepack" {
        builder = builder.with_messagepack();
    }
    let report = |steps: Value, passed: usize, failed: usize| {
        println!(
            "{}",
            json!({"url": url, "transport": transport, "protocol": protocol, "steps": steps, "passed": passed, "failed": failed})
        );
    };
    let conn = match builder.build() {
        Ok(c) => c,
        Err(e) => {
            report(json!({"build": e.to_string()}), 0, 1);
            std::process::exit(1);
        }
    };
    if let Err(e) = conn.start().await {
        report(json!({"start": e.to_string()}), 0, 1);
        std::process::exit(1);
    }
    let results = steps(&conn).await;
    let _ = conn.stop().await;
    let failed = results.values().filter(|r| r.is_err()).count();
    let steps: serde_json::Map<String, Value> = results
        .into_iter()
        .map(|(k, r)| (k.to_owned(), r.map_or_else(Value::String, |()| json!("ok"))))
        .collect();
    report(Value::Object(steps.clone()), steps.len() - failed, failed);
    std::process::exit(i32::from(failed > 0));
}
