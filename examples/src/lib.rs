//! Runnable examples for the `signalr-*` crates. The end-to-end demo: `cargo run -p examples --bin demo`.
//!
//! The library holds what the examples and their tests share: [`contract::run`], every method of
//! the hub contract (`shared/design/hub-contract.md`) checked with our client.

/// The hub contract, step by step.
pub mod contract {
    use std::{collections::BTreeMap, time::Duration};

    use futures_util::StreamExt as _;
    use serde_json::{Value, json};
    use signalr_client::{HubConnection, HubError, Upload};

    /// The outcome of one step.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum Step {
        /// It did what the contract says.
        Passed,
        /// It did not: what happened instead.
        Failed(String),
        /// An optional method the server lacks.
        Skipped(String),
    }

    /// Runs every step on `conn` (started), by name. Handlers it registers are removed again.
    // One step per hub method, read top to bottom: splitting it would only scatter the list.
    #[allow(clippy::too_many_lines)]
    pub async fn run(conn: &HubConnection) -> BTreeMap<&'static str, Step> {
        let mut results = BTreeMap::new();
        macro_rules! step {
            ($name:literal, $body:expr) => {
                let outcome: Result<(), String> = async { $body }.await;
                results.insert($name, outcome.map_or_else(Step::Failed, |()| Step::Passed));
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
                .invoke("Sum", (Upload::new(futures_util::stream::iter(1..=10)),))
                .await
                .map_err(|e| e.to_string())?;
            check(got == 55, format!("got {got}"))
        });
        step!("SendToCaller", {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let _sub = conn.on("interopEcho", move |v: String| {
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
            let _sub = conn.on("interopGroup", move |v: i32| {
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
            let _sub = conn.on_invoke(
                "interopQuestion",
                |x: i64| async move { Ok::<_, String>(x + 1) },
            );
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
            let _sub = conn.on("seq", move |i: i32| {
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
        // Optional methods: a server may lack them ("unknown method"), which skips the step.
        let name = conn.invoke::<String>("GetServerName", ()).await;
        results.insert(
            "GetServerName",
            match name {
                Ok(name) if !name.is_empty() => Step::Passed,
                Ok(_) => Step::Failed("an empty name".into()),
                Err(e) if unknown_method(&e) => Step::Skipped("the server does not have it".into()),
                Err(e) => Step::Failed(e.to_string()),
            },
        );
        results
    }

    /// Whether `e` is the hub's answer to a method it does not have (ASP.NET Core: "Unknown hub
    /// method 'X'"; the test server names the method as well).
    fn unknown_method(e: &HubError) -> bool {
        matches!(e, HubError::Invocation { message } if message.to_lowercase().contains("unknown") || message.contains("not found"))
    }
}
