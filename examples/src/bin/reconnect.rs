//! Run with: `cargo run -p examples --bin reconnect`
//!
//! What the client does when things break, with its events printed: a dropped transport
//! (`AbortMe`) and a Close that allows reconnecting are survived by the retry policy; a
//! half-open link (Blackhole) is found by the server timeout; with stateful reconnect a dropped
//! socket is resumed without losing a message; a Close without allowReconnect ends it.

use std::time::Duration;

use signalr_client::{
    HubConnection, HubConnectionBuilder, HubConnectionState, reconnect::ExponentialBackoff,
};
use signalr_testserver::{ServerConfig, TestServer};

fn narrate(conn: &HubConnection) {
    conn.on_reconnecting(|e| {
        println!(
            "  event: reconnecting ({})",
            e.map(|e| format!("{e:#}")).unwrap_or_default()
        );
    });
    conn.on_reconnected(|id| println!("  event: reconnected as {}", id.unwrap_or("-")));
    conn.on_close(|e| {
        println!(
            "  event: closed ({})",
            e.map_or_else(|| "stopped".into(), |e| format!("{e:#}"))
        );
    });
}

async fn wait_for(conn: &HubConnection, state: HubConnectionState) {
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        conn.state_changes().wait_for(|s| *s == state),
    )
    .await;
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = ServerConfig::default();
    config.stateful_reconnect = true;
    let server = TestServer::start(config).await?;
    let policy = ExponentialBackoff::new(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(2))
        .with_max_attempts(10);
    let conn = HubConnectionBuilder::new(server.url())
        .with_automatic_reconnect_policy(policy)
        .with_keep_alive_interval(Duration::from_millis(250))
        .with_server_timeout(Duration::from_secs(1))
        .build()?;
    narrate(&conn);
    conn.start().await?;

    println!("1. the server drops the transport (AbortMe)");
    let _ = conn.invoke::<()>("AbortMe", ()).await;
    wait_for(&conn, HubConnectionState::Reconnecting).await;
    wait_for(&conn, HubConnectionState::Connected).await;

    println!("2. the server closes with allowReconnect = true");
    let _ = conn.invoke::<()>("CloseMe", ("maintenance", true)).await;
    wait_for(&conn, HubConnectionState::Reconnecting).await;
    wait_for(&conn, HubConnectionState::Connected).await;

    println!(
        "3. a pulled cable: the server goes silent (Blackhole), the 1 s server timeout notices"
    );
    conn.send("Blackhole", (5000,)).await?;
    wait_for(&conn, HubConnectionState::Reconnecting).await;
    wait_for(&conn, HubConnectionState::Connected).await;

    println!(
        "4. stateful reconnect: the socket is cut mid-call and resumed on the same connection"
    );
    let stateful = HubConnectionBuilder::new(server.url())
        .with_stateful_reconnect(100_000)
        .with_automatic_reconnect()
        .build()?;
    stateful.start().await?;
    let before = stateful.connection_id();
    stateful.invoke::<()>("AbortMe", ()).await?; // its completion arrives on the new socket
    println!(
        "  AbortMe completed; same connection: {}",
        stateful.connection_id() == before
    );
    stateful.stop().await?;

    println!("5. the server closes without allowReconnect: the end");
    let _ = conn.invoke::<()>("CloseMe", ("goodbye", false)).await;
    wait_for(&conn, HubConnectionState::Disconnected).await;
    server.shutdown().await;
    Ok(())
}
