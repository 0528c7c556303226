//! Run with: `cargo run -p examples --bin demo`
//!
//! The end-to-end demo: it starts the test server in this process, connects two clients to it
//! (one JSON, one MessagePack), makes calls, streams, answers a client-result call, talks
//! through a group, and survives two faults: a dropped transport (`AbortMe`) and a half-open
//! link (`Blackhole`), found by the client's server timeout. It ends by showing the bytes of one
//! call in both hub protocols.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use signalr_client::{
    HubConnection, HubConnectionBuilder, HubConnectionState,
    protocol::{
        Arguments, HubMessage, HubProtocol, Invocation, JsonHubProtocol, MessagePackHubProtocol,
    },
    reconnect::FixedDelays,
};
use signalr_testserver::{ServerConfig, TestServer};

#[derive(Debug, Serialize, Deserialize)]
struct Reading {
    sensor: String,
    celsius: f64,
}

fn events(name: &'static str, conn: &HubConnection, started: Instant) {
    let at = move || format!("{:>5} ms", started.elapsed().as_millis());
    conn.on_reconnecting(move |e| {
        println!(
            "  [{}] {name}: reconnecting ({})",
            at(),
            e.map(|e| format!("{e:#}")).unwrap_or_default()
        );
    });
    let at = move || format!("{:>5} ms", started.elapsed().as_millis());
    conn.on_reconnected(move |id| {
        println!("  [{}] {name}: reconnected as {}", at(), id.unwrap_or("-"));
    });
    let at = move || format!("{:>5} ms", started.elapsed().as_millis());
    conn.on_close(move |e| {
        println!(
            "  [{}] {name}: closed{}",
            at(),
            e.map(|e| format!(" ({e:#})")).unwrap_or_default()
        );
    });
}

#[allow(clippy::disallowed_methods)] // the demo prints wall-clock timings
fn clock() -> Instant {
    Instant::now()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = clock();
    let server = TestServer::start(ServerConfig::default()).await?;
    println!("test server listening on {}", server.url());

    // Alice speaks JSON, with a short keep-alive so that a dead link is found in about a second.
    let alice = HubConnectionBuilder::new(server.url())
        .with_automatic_reconnect_policy(FixedDelays::from_millis(&[0, 200, 500, 1000]))
        .with_keep_alive_interval(Duration::from_millis(300))
        .with_server_timeout(Duration::from_secs(1))
        .build()?;
    // Bob speaks MessagePack.
    let bob = HubConnectionBuilder::new(server.url())
        .with_messagepack()
        .with_automatic_reconnect()
        .build()?;
    events("alice", &alice, started);
    events("bob", &bob, started);
    // Handlers take one parameter per argument and stay until removed on purpose.
    bob.on("news", |text: String| async move {
        println!("  bob got news: {text}");
    });
    alice.on_invoke("confirm", |what: String| async move {
        Ok::<_, std::convert::Infallible>(format!("yes, {what}"))
    });
    alice.start().await?;
    bob.start().await?;
    println!(
        "alice connected as {:?}, bob as {:?}",
        alice.connection_id(),
        bob.connection_id()
    );

    println!("\n== calls");
    let sum: i64 = alice.invoke("Add", (40, 2)).await?;
    println!("  Add(40, 2) = {sum}");
    let echoed: Reading = bob
        .invoke(
            "Echo",
            (Reading {
                sensor: "hall".into(),
                celsius: 21.5,
            },),
        )
        .await?;
    println!("  Echo(reading) = {echoed:?}");
    match alice.invoke::<()>("Fail", ("on purpose",)).await {
        Err(e) => println!("  Fail(\"on purpose\") -> error: {e}"),
        Ok(()) => println!("  Fail unexpectedly succeeded"),
    }
    let answer: String = alice.invoke("AskClient", ("confirm", "the order")).await?;
    println!("  AskClient: the server asked alice and got {answer:?}");

    println!("\n== streams");
    let counted: Vec<i32> = alice
        .stream::<i32>("Counter", (5, 20))
        .await?
        .filter_map(|i| async move { i.ok() })
        .collect()
        .await;
    println!("  Counter(5) = {counted:?}");
    let mut long = bob.stream::<i32>("Counter", (1_000_000, 1)).await?;
    let first: Vec<i32> = long
        .by_ref()
        .take(3)
        .filter_map(|i| async move { i.ok() })
        .collect()
        .await;
    drop(long);
    println!("  Counter(1000000) cancelled after {first:?}");

    println!("\n== groups");
    bob.invoke::<String>("JoinGroup", ("ops",)).await?;
    alice
        .invoke::<String>("SendToGroup", ("ops", "news", "deploy at 5"))
        .await?;
    tokio::time::sleep(Duration::from_millis(100)).await;

    println!("\n== faults");
    println!("  alice asks the server to drop her transport (AbortMe)");
    let _ = alice.invoke::<()>("AbortMe", ()).await;
    wait_for(&alice, HubConnectionState::Connected).await;
    println!(
        "  alice after the reconnect: Add(1, 2) = {}",
        alice.invoke::<i64>("Add", (1, 2)).await?
    );
    println!("  the server blackholes alice's link for 3 s (a pulled cable: no FIN, no RST)");
    alice.send("Blackhole", (3000,)).await?;
    wait_for(&alice, HubConnectionState::Reconnecting).await;
    wait_for(&alice, HubConnectionState::Connected).await;
    println!(
        "  alice after the second reconnect: Add(2, 3) = {}",
        alice.invoke::<i64>("Add", (2, 3)).await?
    );

    show_wire_format()?;

    alice.stop().await?;
    bob.stop().await?;
    server.shutdown().await;
    println!("\ndone in {} ms", started.elapsed().as_millis());
    Ok(())
}

/// Prints one call's bytes in both hub protocols.
fn show_wire_format() -> Result<(), Box<dyn std::error::Error>> {
    println!("\n== on the wire: Invocation Add(40, 2), id 7");
    for protocol in [
        &JsonHubProtocol::new() as &dyn HubProtocol,
        &MessagePackHubProtocol::new(),
    ] {
        let args = Arguments::from_values(protocol.payload_format(), &(40, 2))?;
        let mut wire = BytesMut::new();
        protocol.encode(
            &HubMessage::Invocation(Invocation::new("7", "Add", args)),
            &mut wire,
        )?;
        let shown = if protocol.name() == "json" {
            String::from_utf8_lossy(&wire).replace('\u{1e}', "<RS>")
        } else {
            wire.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!("  {:<11} {shown}", protocol.name());
    }
    Ok(())
}

/// Waits (up to 10 s) until the connection is in `state`.
async fn wait_for(conn: &HubConnection, state: HubConnectionState) {
    let mut states = conn.state_changes();
    let _ = tokio::time::timeout(Duration::from_secs(10), states.wait_for(|s| *s == state)).await;
}
