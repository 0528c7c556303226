//! Run with: `cargo run -p examples --bin demo`
//!
//! Until the client and the test server exist, the demo shows the protocol layer: it encodes a
//! handshake and a conversation of hub messages in both hub protocols, prints the bytes, then
//! decodes them back one byte at a time, as a transport that delivers tiny reads would.

use std::{fmt::Write as _, sync::Arc};

use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use signalr_protocol::{
    Ack, Arguments, CancelInvocation, Close, Completion, CompletionResult, HandshakeRequest,
    HandshakeResponse, HubMessage, HubProtocol, Invocation, JsonHubProtocol, MessageDecoder,
    MessagePackHubProtocol, Payload, ProtocolError, StreamInvocation, StreamItem,
};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Tick {
    seq: u32,
    label: String,
}

fn conversation(protocol: &dyn HubProtocol) -> Result<Vec<HubMessage>, ProtocolError> {
    let f = protocol.payload_format();
    Ok(vec![
        HubMessage::Invocation(Invocation::new(
            "0",
            "Add",
            Arguments::from_values(f, &(40, 2))?,
        )),
        HubMessage::Completion(Completion::value("0", Payload::from_value(f, &42)?)),
        HubMessage::Invocation(Invocation::non_blocking(
            "Broadcast",
            Arguments::from_values(f, &("chat", "hello \u{1e} world"))?,
        )),
        HubMessage::StreamInvocation(StreamInvocation::new(
            "1",
            "Counter",
            Arguments::from_values(f, &(3, 10))?,
        )),
        HubMessage::StreamItem(StreamItem::new(
            "1",
            Payload::from_value(
                f,
                &Tick {
                    seq: 0,
                    label: "zero".into(),
                },
            )?,
        )),
        HubMessage::CancelInvocation(CancelInvocation::new("1")),
        HubMessage::Completion(Completion::error("2", "Client didn't provide a result.")),
        HubMessage::Ping,
        HubMessage::Ack(Ack::new(1394)),
        HubMessage::Close(Close::new(Some("server restarting".into()), true)),
    ])
}

fn show(bytes: &[u8], text: bool) -> String {
    if text {
        String::from_utf8_lossy(bytes).replace('\u{1e}', "<RS>")
    } else {
        bytes.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x} ");
            s
        })
    }
}

fn run(protocol: &Arc<dyn HubProtocol>) -> Result<(), Box<dyn std::error::Error>> {
    let text = protocol.name() == "json";
    println!(
        "== {} protocol (version {}, {:?} transfer format)",
        protocol.name(),
        protocol.version(),
        protocol.transfer_format()
    );

    let mut handshake = BytesMut::new();
    HandshakeRequest::new(protocol.name(), 1).encode(&mut handshake);
    println!("client handshake  {}", show(&handshake, true));

    // What a server sends back: the handshake response and, in the same read, the conversation.
    let mut wire = BytesMut::new();
    HandshakeResponse::ok().encode(&mut wire);
    let messages = conversation(&**protocol)?;
    for m in &messages {
        let start = wire.len();
        protocol.encode(m, &mut wire)?;
        println!(
            "  {:<16} {}",
            format!("{:?}", m.message_type()),
            show(&wire[start..], text)
        );
    }

    // Decode it back one byte at a time.
    let mut pending = wire.clone();
    let mut fed = BytesMut::new();
    let response = loop {
        let Some(&byte) = pending.first() else {
            return Err("no handshake response".into());
        };
        let _ = pending.split_to(1);
        fed.extend_from_slice(&[byte]);
        if let Some(r) = HandshakeResponse::decode(&mut fed, 1024)? {
            break r;
        }
    };
    println!("server handshake  {response:?}");
    let mut decoder = MessageDecoder::with_buffer(Arc::clone(protocol), fed);
    let mut decoded = Vec::new();
    for byte in &pending {
        decoder.push(std::slice::from_ref(byte));
        while let Some(m) = decoder.next_message()? {
            decoded.push(m);
        }
    }
    decoder.finish()?;
    assert_eq!(decoded, messages, "decoding gives back what was encoded");
    println!(
        "decoded {} messages one byte at a time, identical to what was sent",
        decoded.len()
    );

    // Payloads stay raw until a type is asked for.
    if let HubMessage::StreamItem(item) = &decoded[4] {
        println!(
            "stream item bound to a type: {:?}",
            item.item.deserialize::<Tick>()?
        );
    }
    if let HubMessage::Completion(Completion {
        result: CompletionResult::Value(v),
        ..
    }) = &decoded[1]
    {
        println!("Add(40, 2) completed with {}", v.deserialize::<i64>()?);
    }
    println!();
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    run(&(Arc::new(JsonHubProtocol::new()) as Arc<dyn HubProtocol>))?;
    run(&(Arc::new(MessagePackHubProtocol::new()) as Arc<dyn HubProtocol>))?;
    println!(
        "The end-to-end demo (client against the embedded test server) arrives with signalr-client."
    );
    Ok(())
}
