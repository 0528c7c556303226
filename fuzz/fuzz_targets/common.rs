// Shared oracles, included by each target with `include!`.
use std::sync::Arc;

use signalr_protocol::{Decoded, HubProtocol, MessageDecoder};

/// Decodes `data` pushed in pieces of `chunk` bytes; returns the messages (or the error text)
/// and checks that the decoder never holds more than the maximum plus one piece.
#[allow(dead_code)]
fn decode_chunked(protocol: &Arc<dyn HubProtocol>, data: &[u8], chunk: usize) -> Result<Vec<Decoded>, String> {
    let max = protocol.max_message_size();
    let mut decoder = MessageDecoder::new(Arc::clone(protocol));
    let mut out = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        decoder.push(piece);
        loop {
            match decoder.next_decoded() {
                Ok(Some(d)) => out.push(d),
                Ok(None) => break,
                Err(e) => return Err(e.to_string()),
            }
        }
        assert!(decoder.buffered() <= max + piece.len(), "buffered {} > max {max} + {}", decoder.buffered(), piece.len());
    }
    decoder.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

/// Split invariance: any chunking yields what the whole input yields. Errors may be detected at
/// different points, so only "both failed" is required of failures, except that a chunked run
/// must not fail where the whole one succeeded.
#[allow(dead_code)]
fn split_invariance(protocol: Arc<dyn HubProtocol>, data: &[u8]) {
    let Some((&chunk, data)) = data.split_first() else { return };
    let whole = decode_chunked(&protocol, data, data.len());
    let pieces = decode_chunked(&protocol, data, usize::from(chunk % 17) + 1);
    match (&whole, &pieces) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        _ => panic!("whole {whole:?} vs chunked {pieces:?}"),
    }
}

/// Anything that decodes re-encodes, and decodes again to the same message.
#[allow(dead_code)]
fn round_trip(protocol: &dyn HubProtocol, body: &[u8]) {
    if let Ok(Decoded::Message(m)) = protocol.parse_message(body) {
        let mut wire = bytes::BytesMut::new();
        protocol.encode(&m, &mut wire).expect("a decoded message re-encodes");
        let again = protocol.decode(&mut wire).expect("re-encoded message decodes");
        assert_eq!(again, Some(Decoded::Message(m)));
        assert!(wire.is_empty());
    }
}

/// Binding any decoded payload to a JSON value must fail cleanly or succeed, never panic.
#[allow(dead_code)]
fn bind_payloads(protocol: &dyn HubProtocol, body: &[u8]) {
    use signalr_protocol::{CompletionResult, HubMessage};
    let Ok(Decoded::Message(m)) = protocol.parse_message(body) else { return };
    match m {
        HubMessage::Invocation(i) => {
            let _ = i.arguments.deserialize::<serde_json::Value>();
            let _ = i.arguments.to_payloads();
        }
        HubMessage::StreamItem(i) => drop(i.item.deserialize::<serde_json::Value>()),
        HubMessage::Completion(c) => {
            if let CompletionResult::Value(v) = c.result {
                let _ = v.deserialize::<serde_json::Value>();
            }
        }
        _ => {}
    }
}
