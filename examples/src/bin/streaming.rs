//! Run with: `cargo run -p examples --bin streaming [-- URL]`
//!
//! Streams both ways: a server-to-client stream read to its end, one cancelled by dropping it,
//! and a client-to-server upload fed from a server stream.

use futures_util::StreamExt as _;
use signalr_client::{HubConnectionBuilder, Upload};
use signalr_testserver::{ServerConfig, TestServer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = if std::env::args().nth(1).is_none() {
        Some(TestServer::start(ServerConfig::default()).await?)
    } else {
        None
    };
    let url = std::env::args().nth(1).unwrap_or_else(|| {
        server
            .as_ref()
            .map(|s| s.url().to_owned())
            .unwrap_or_default()
    });
    let conn = HubConnectionBuilder::new(url).with_messagepack().build()?;
    conn.start().await?;

    // Server to client, to the end.
    let mut counter = conn.stream::<i32>("Counter", (5, 50)).await?;
    while let Some(i) = counter.next().await {
        println!("server streamed {}", i?);
    }

    // Server to client, cancelled: dropping the stream sends CancelInvocation.
    let endless = conn.stream::<i32>("Counter", (i32::MAX, 10)).await?;
    let first: Vec<i32> = endless
        .take(3)
        .filter_map(|i| async move { i.ok() })
        .collect()
        .await;
    println!("took {first:?} from an endless stream, then dropped it");

    // Client to server: the squares of a server stream, uploaded and summed by the server.
    let squares = conn
        .stream::<i64>("Counter", (10, 0))
        .await?
        .filter_map(|i| async move { i.ok().map(|i| i * i) });
    let sum: i64 = conn.invoke("Sum", (Upload::new(squares),)).await?;
    println!("the server summed the uploaded squares of 0..10: {sum}");

    conn.stop().await?;
    if let Some(server) = server {
        server.shutdown().await;
    }
    Ok(())
}
