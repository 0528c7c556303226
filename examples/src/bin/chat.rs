//! Run with: `cargo run -p examples --bin chat [-- URL]`
//!
//! Two people in a chat room: each client joins the group "room" and sends messages to it; the
//! other sees them. Without a URL the test server is started in this process.

use std::time::Duration;

use signalr_client::{HubConnection, HubConnectionBuilder};
use signalr_testserver::{ServerConfig, TestServer};

async fn join(url: &str, name: &'static str) -> Result<HubConnection, Box<dyn std::error::Error>> {
    let conn = HubConnectionBuilder::new(url)
        .with_automatic_reconnect()
        .build()?;
    // SendToGroup delivers its payload as the one argument: here a (from, text) pair, which
    // binds to a tuple type.
    conn.on("chat", move |(from, text): (String, String)| async move {
        if from != name {
            println!("  [{name} sees] {from}: {text}");
        }
    });
    conn.start().await?;
    conn.invoke::<String>("JoinGroup", ("room",)).await?;
    Ok(conn)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = match std::env::args().nth(1) {
        Some(_) => None,
        None => Some(TestServer::start(ServerConfig::default()).await?),
    };
    let url = std::env::args().nth(1).unwrap_or_else(|| {
        server
            .as_ref()
            .map(|s| s.url().to_owned())
            .unwrap_or_default()
    });
    let alice = join(&url, "alice").await?;
    let bob = join(&url, "bob").await?;
    for (conn, name, text) in [
        (&alice, "alice", "hi bob!"),
        (&bob, "bob", "hey alice, what's up?"),
        (&alice, "alice", "shipping the client today"),
    ] {
        println!("{name} says: {text}");
        // SendToGroup(group, method, payload): the payload here is a [from, text] pair.
        conn.send("SendToGroup", ("room", "chat", (name, text)))
            .await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    alice.stop().await?;
    bob.stop().await?;
    if let Some(server) = server {
        server.shutdown().await;
    }
    Ok(())
}
