// The decoder targets' oracles. Each target is one function here, which the fuzz target calls
// (`include!`) and signalr-protocol/tests/fuzz_corpus.rs replays (`#[path]` module) on the
// committed seeds and minimised corpus.
use std::sync::Arc;

use bytes::BytesMut;
use signalr_protocol::{
    Decoded, HandshakeRequest, HandshakeResponse, HubProtocol, JsonHubProtocol, MessageDecoder,
    MessagePackHubProtocol, NegotiateResponse,
};

/// Text framing and the JSON protocol over a chunked stream: no panic, split invariance, bounded
/// buffering (the limit is small so the fuzzer reaches it).
pub(crate) fn text_framing(data: &[u8]) {
    let protocol: Arc<dyn HubProtocol> =
        Arc::new(JsonHubProtocol::new().with_max_message_size(256));
    split_invariance(&protocol, data);
}

/// VarInt framing and the MessagePack protocol over a chunked stream: no panic, split
/// invariance, bounded buffering, the 2 GiB rule.
pub(crate) fn binary_framing(data: &[u8]) {
    let protocol: Arc<dyn HubProtocol> =
        Arc::new(MessagePackHubProtocol::new().with_max_message_size(256));
    split_invariance(&protocol, data);
}

/// One JSON message body: no panic; whatever parses re-encodes and parses to the same message;
/// binding payloads to a JSON value never panics.
pub(crate) fn json_message(data: &[u8]) {
    let protocol = JsonHubProtocol::new();
    // The fast path for the common messages agrees with the general parser, errors included.
    assert_eq!(
        format!("{:?}", protocol.parse_message(data)),
        format!("{:?}", protocol.parse_message_without_fast_path(data)),
        "the fast path and the general parser disagree"
    );
    round_trip(&protocol, data);
    bind_payloads(&protocol, data);
}

/// One MessagePack message body: the same oracles as [`json_message`].
pub(crate) fn msgpack_message(data: &[u8]) {
    let protocol = MessagePackHubProtocol::new();
    round_trip(&protocol, data);
    bind_payloads(&protocol, data);
}

/// Handshake request and response parsing: no panic; what follows the response's record
/// separator is left in the buffer exactly; a parsed message re-encodes to something that parses
/// to the same value.
pub(crate) fn handshake(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    if let Ok(Some(response)) = HandshakeResponse::decode(&mut buf, 1024) {
        let separator = data
            .iter()
            .position(|&b| b == 0x1e)
            .expect("a parsed response had a separator");
        assert_eq!(&buf[..], &data[separator + 1..]);
        let mut again = BytesMut::new();
        response.encode(&mut again);
        assert_eq!(
            HandshakeResponse::decode(&mut again, usize::MAX).expect("re-parses"),
            Some(response)
        );
    }
    let mut buf = BytesMut::from(data);
    if let Ok(Some(request)) = HandshakeRequest::decode(&mut buf, 1024) {
        let mut again = BytesMut::new();
        request.encode(&mut again);
        assert_eq!(
            HandshakeRequest::decode(&mut again, usize::MAX).expect("re-parses"),
            Some(request)
        );
    }
}

/// Negotiate response parsing: no panic, typed errors; what parses serializes and parses back to
/// the same value.
pub(crate) fn negotiate_response(data: &[u8]) {
    if let Ok(response) = NegotiateResponse::parse(data) {
        assert_eq!(
            NegotiateResponse::parse(&response.to_json()).expect("re-parses"),
            response
        );
    }
}

/// Decodes `data` pushed in pieces of `chunk` bytes; returns the messages (or the error text)
/// and checks that the decoder never holds more than the maximum plus one piece.
fn decode_chunked(
    protocol: &Arc<dyn HubProtocol>,
    data: &[u8],
    chunk: usize,
) -> Result<Vec<Decoded>, String> {
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
        assert!(
            decoder.buffered() <= max + piece.len(),
            "buffered {} > max {max} + {}",
            decoder.buffered(),
            piece.len()
        );
    }
    decoder.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

/// Split invariance: any chunking yields what the whole input yields. Errors may be detected at
/// different points, so only "both failed" is required of failures, except that a chunked run
/// must not fail where the whole one succeeded.
fn split_invariance(protocol: &Arc<dyn HubProtocol>, data: &[u8]) {
    let Some((&chunk, data)) = data.split_first() else {
        return;
    };
    let whole = decode_chunked(protocol, data, data.len());
    let pieces = decode_chunked(protocol, data, usize::from(chunk % 17) + 1);
    match (&whole, &pieces) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        _ => panic!("whole {whole:?} vs chunked {pieces:?}"),
    }
}

/// Anything that decodes re-encodes, and decodes again to the same message.
fn round_trip(protocol: &dyn HubProtocol, body: &[u8]) {
    if let Ok(Decoded::Message(m)) = protocol.parse_message(body) {
        let mut wire = BytesMut::new();
        protocol
            .encode(&m, &mut wire)
            .expect("a decoded message re-encodes");
        let again = protocol
            .decode(&mut wire)
            .expect("re-encoded message decodes");
        assert_eq!(again, Some(Decoded::Message(m)));
        assert!(wire.is_empty());
    }
}

/// Binding any decoded payload to a JSON value must fail cleanly or succeed, never panic.
fn bind_payloads(protocol: &dyn HubProtocol, body: &[u8]) {
    use signalr_protocol::{CompletionResult, HubMessage};
    let Ok(Decoded::Message(m)) = protocol.parse_message(body) else {
        return;
    };
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
