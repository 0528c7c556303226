//! Run with: `cargo run -p examples --bin custom_stack`
//!
//! A custom stack from the lower crates alone, without `signalr-client`: `signalr-transport`
//! negotiates and opens a transport (long polling here, to show it works alike), and
//! `signalr-protocol` does the handshake and the messages.

use std::sync::Arc;

use bytes::BytesMut;
use signalr_protocol::{
    Arguments, CompletionResult, HandshakeRequest, HandshakeResponse, HubMessage, HubProtocol,
    Invocation, MessageDecoder, MessagePackHubProtocol, TransportKind,
};
use signalr_testserver::{ServerConfig, TestServer};
use signalr_transport::{HttpOptions, connect};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = TestServer::start(ServerConfig::default()).await?;
    let protocol: Arc<dyn HubProtocol> = Arc::new(MessagePackHubProtocol::new());
    let options = HttpOptions::default().transports([TransportKind::LongPolling]);
    let mut conn = connect(server.url(), protocol.transfer_format(), &options).await?;
    println!(
        "negotiated {:?} over {:?}",
        conn.connection_id(),
        conn.transport.kind()
    );

    // Handshake and one invocation, in one send.
    let mut out = BytesMut::new();
    HandshakeRequest::new(protocol.name(), 1).encode(&mut out);
    let args = Arguments::from_values(protocol.payload_format(), &(40, 2))?;
    protocol.encode(
        &HubMessage::Invocation(Invocation::new("1", "Add", args)),
        &mut out,
    )?;
    conn.transport.send(out.freeze()).await?;

    let mut buf = BytesMut::new();
    let mut decoder = None;
    while let Some(chunk) = conn.transport.recv().await {
        let chunk = chunk?;
        let decoder = if let Some(d) = &mut decoder {
            MessageDecoder::push(d, &chunk);
            d
        } else {
            buf.extend_from_slice(&chunk);
            let Some(response) = HandshakeResponse::decode(&mut buf, 1 << 16)? else {
                continue;
            };
            println!("handshake: {}", response.error.as_deref().unwrap_or("ok"));
            decoder.insert(MessageDecoder::with_buffer(
                Arc::clone(&protocol),
                buf.split(),
            ))
        };
        while let Some(message) = decoder.next_message()? {
            match message {
                HubMessage::Completion(c) => {
                    if let CompletionResult::Value(v) = c.result {
                        println!("Add(40, 2) = {}", v.deserialize::<i64>()?);
                    }
                    conn.transport.close().await?;
                    server.shutdown().await;
                    return Ok(());
                }
                other => println!("received {:?}", other.message_type()),
            }
        }
    }
    Err("the server closed before answering".into())
}
