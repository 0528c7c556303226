//! Runs the byte-level vectors of `tests/vectors/vectors.json` (see its README): every vector is
//! decoded whole and one byte at a time, and `accept` vectors marked `encode` are re-encoded and
//! compared byte for byte.
#![allow(clippy::unwrap_used, clippy::type_complexity)]

use std::sync::Arc;

use bytes::BytesMut;
use serde::Deserialize;
use serde_json::{Value, json};
use signalr_protocol::{
    Arguments, CancelInvocation, Close, Completion, Decoded, FrameDecoder, HandshakeRequest,
    HandshakeResponse, HubMessage, HubProtocol, Invocation, JsonHubProtocol, MessageDecoder,
    MessagePackHubProtocol, Payload, PayloadFormat, ProtocolError, Sequence, StreamInvocation,
    StreamItem, TransferFormat, framing,
};

#[derive(Deserialize)]
struct Vector {
    id: String,
    name: String,
    format: String,
    verdict: String,
    hex: String,
    expect: Option<Vec<Value>>,
    error: Option<String>,
    encode: bool,
}

fn load() -> Vec<Vector> {
    let text = include_str!("vectors/vectors.json");
    serde_json::from_str(text).expect("vectors.json parses")
}

fn unhex(hex: &str) -> Vec<u8> {
    hex.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap_or_else(|_| panic!("bad hex byte {b}")))
        .collect()
}

fn protocol(format: &str) -> Arc<dyn HubProtocol> {
    match format {
        "json" => Arc::new(JsonHubProtocol::new()),
        "msgpack" => Arc::new(MessagePackHubProtocol::new()),
        other => panic!("unknown format {other}"),
    }
}

/// A decoded message in the vectors' JSON notation.
fn describe(decoded: &Decoded) -> Value {
    let value = |p: &Payload| p.deserialize::<Value>().expect("payload converts to JSON");
    let args = |a: &Arguments| a.deserialize::<Value>().expect("arguments convert to JSON");
    let mut v = match decoded {
        Decoded::Unknown { message_type } => {
            return json!({"kind": "Unknown", "type": message_type});
        }
        Decoded::Message(m) => match m {
            HubMessage::Invocation(m) => {
                json!({"kind": "Invocation", "invocationId": m.invocation_id, "target": m.target, "arguments": args(&m.arguments), "streamIds": m.stream_ids})
            }
            HubMessage::StreamInvocation(m) => {
                json!({"kind": "StreamInvocation", "invocationId": m.invocation_id, "target": m.target, "arguments": args(&m.arguments), "streamIds": m.stream_ids})
            }
            HubMessage::StreamItem(m) => {
                json!({"kind": "StreamItem", "invocationId": m.invocation_id, "item": value(&m.item)})
            }
            HubMessage::Completion(m) => {
                let mut v = json!({"kind": "Completion", "invocationId": m.invocation_id});
                match &m.result {
                    signalr_protocol::CompletionResult::Void => {}
                    signalr_protocol::CompletionResult::Value(p) => v["result"] = value(p),
                    signalr_protocol::CompletionResult::Error(e) => v["error"] = json!(e),
                }
                v
            }
            HubMessage::CancelInvocation(m) => {
                json!({"kind": "CancelInvocation", "invocationId": m.invocation_id})
            }
            HubMessage::Ping => json!({"kind": "Ping"}),
            HubMessage::Close(c) => {
                json!({"kind": "Close", "error": c.error, "allowReconnect": c.allow_reconnect})
            }
            HubMessage::Ack(a) => json!({"kind": "Ack", "sequenceId": a.sequence_id}),
            HubMessage::Sequence(s) => json!({"kind": "Sequence", "sequenceId": s.sequence_id}),
            other => panic!("unexpected message {other:?}"),
        },
        other => panic!("unexpected outcome {other:?}"),
    };
    if let Decoded::Message(m) = decoded {
        if let Some(h) = m.headers() {
            v["headers"] = json!(h);
        }
    }
    v
}

/// Fills in the defaults the vectors leave out, so that expectations compare with `describe`.
fn normalize(mut v: Value) -> Value {
    let kind = v["kind"].as_str().expect("kind").to_owned();
    let obj = v.as_object_mut().expect("object");
    if matches!(
        kind.as_str(),
        "Invocation" | "StreamItem" | "Completion" | "StreamInvocation" | "CancelInvocation"
    ) {
        obj.entry("headers").or_insert_with(|| json!({}));
    }
    if matches!(kind.as_str(), "Invocation" | "StreamInvocation") {
        obj.entry("streamIds").or_insert_with(|| json!([]));
        obj.entry("invocationId").or_insert(Value::Null);
    }
    if kind == "Close" {
        obj.entry("error").or_insert(Value::Null);
        obj.entry("allowReconnect").or_insert(json!(false));
    }
    v
}

/// Builds the message an expectation describes, with payloads in `format`.
fn build(v: &Value, format: PayloadFormat) -> HubMessage {
    let s = |k: &str| v[k].as_str().map(str::to_owned);
    let payload = |k: &str| Payload::from_value(format, &v[k]).expect("payload");
    let args = || Arguments::from_values(format, &v["arguments"]).expect("arguments");
    let headers = || {
        serde_json::from_value(v.get("headers").cloned().unwrap_or_else(|| json!({})))
            .expect("headers")
    };
    let streams = || {
        serde_json::from_value(v.get("streamIds").cloned().unwrap_or_else(|| json!([])))
            .expect("streamIds")
    };
    let id = || s("invocationId").expect("invocationId");
    match v["kind"].as_str().expect("kind") {
        "Invocation" => {
            let m = match s("invocationId") {
                Some(id) => Invocation::new(id, s("target").expect("target"), args()),
                None => Invocation::non_blocking(s("target").expect("target"), args()),
            };
            HubMessage::Invocation(m.with_headers(headers()).with_stream_ids(streams()))
        }
        "StreamInvocation" => HubMessage::StreamInvocation(
            StreamInvocation::new(id(), s("target").expect("target"), args())
                .with_stream_ids(streams()),
        ),
        "StreamItem" => HubMessage::StreamItem(StreamItem::new(id(), payload("item"))),
        "Completion" => HubMessage::Completion(if v.get("result").is_some() {
            Completion::value(id(), payload("result"))
        } else if let Some(e) = s("error") {
            Completion::error(id(), e)
        } else {
            Completion::void(id())
        }),
        "CancelInvocation" => HubMessage::CancelInvocation(CancelInvocation::new(id())),
        "Ping" => HubMessage::Ping,
        "Close" => HubMessage::Close(Close::new(
            s("error"),
            v["allowReconnect"].as_bool().unwrap_or(false),
        )),
        "Ack" => HubMessage::Ack(signalr_protocol::Ack::new(
            v["sequenceId"].as_u64().expect("sequenceId"),
        )),
        "Sequence" => {
            HubMessage::Sequence(Sequence::new(v["sequenceId"].as_u64().expect("sequenceId")))
        }
        other => panic!("cannot build {other}"),
    }
}

/// Decodes hub messages from `bytes`, pushed in chunks of `chunk` bytes.
fn decode_chunked(
    protocol: &Arc<dyn HubProtocol>,
    bytes: &[u8],
    chunk: usize,
) -> (
    Result<Vec<Decoded>, ProtocolError>,
    MessageDecoder<Arc<dyn HubProtocol>>,
) {
    let mut decoder = MessageDecoder::new(Arc::clone(protocol));
    let mut out = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        decoder.push(piece);
        loop {
            match decoder.next_decoded() {
                Ok(Some(d)) => out.push(d),
                Ok(None) => break,
                Err(e) => return (Err(e), decoder),
            }
        }
    }
    (Ok(out), decoder)
}

fn check_handshake(v: &Vector, bytes: &[u8]) -> Result<(), String> {
    let mut buf = BytesMut::from(bytes);
    if v.id == "H01" || v.id == "H02" {
        let req = HandshakeRequest::decode(&mut buf, 1024)
            .map_err(|e| e.to_string())?
            .ok_or("incomplete request")?;
        let want = &v.expect.as_ref().ok_or("no expectation")?[0];
        let expected = HandshakeRequest::new(
            want["protocol"].as_str().unwrap_or_default(),
            u32::try_from(want["version"].as_u64().unwrap_or(0)).unwrap_or(0),
        );
        if req != expected {
            return Err(format!("decoded {req:?}, want {expected:?}"));
        }
        let mut out = BytesMut::new();
        req.encode(&mut out);
        return if &out[..] == bytes {
            Ok(())
        } else {
            Err(format!("encoded {out:02x?}"))
        };
    }
    let response = HandshakeResponse::decode(&mut buf, 1024);
    if v.verdict == "reject" {
        let err = response
            .err()
            .ok_or("accepted a hub message as a handshake response")?
            .to_string();
        let want = v.error.as_deref().unwrap_or_default();
        return if err.contains(want) {
            Ok(())
        } else {
            Err(format!("error {err:?} lacks {want:?}"))
        };
    }
    let response = response
        .map_err(|e| e.to_string())?
        .ok_or("incomplete response")?;
    let expect = v.expect.as_ref().ok_or("no expectation")?;
    let want_error = expect[0]
        .get("error")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if response.error != want_error {
        return Err(format!(
            "response error {:?}, want {want_error:?}",
            response.error
        ));
    }
    let mut encoded = BytesMut::new();
    response.encode(&mut encoded);
    // The rest of the buffer belongs to the hub protocol (binary for H06).
    let rest = buf.to_vec();
    let protocol = protocol(if v.id == "H06" { "msgpack" } else { "json" });
    let (decoded, _) = decode_chunked(&protocol, &rest, rest.len());
    let decoded = decoded.map_err(|e| e.to_string())?;
    let got: Vec<Value> = decoded.iter().map(describe).collect();
    let want: Vec<Value> = expect[1..].iter().cloned().map(normalize).collect();
    if got != want {
        return Err(format!("after the response: {got:?}, want {want:?}"));
    }
    for d in &decoded {
        let Decoded::Message(m) = d else { continue };
        protocol
            .encode(m, &mut encoded)
            .map_err(|e| e.to_string())?;
    }
    if &encoded[..] == bytes {
        Ok(())
    } else {
        Err(format!("re-encoded {encoded:02x?}"))
    }
}

fn check_framing(v: &Vector) -> Result<(), String> {
    match v.id.as_str() {
        "F01" => {
            let mut prefix = Vec::new();
            framing::write_varint(5248, &mut prefix).map_err(|e| e.to_string())?;
            if prefix != [0x80, 0x29] {
                return Err(format!("5248 encodes as {prefix:02x?}"));
            }
            let mut buf = BytesMut::from(&prefix[..]);
            buf.extend_from_slice(&[0x2a; 5248]);
            let mut frames = FrameDecoder::new(TransferFormat::Binary, 1 << 20);
            let body = frames
                .decode(&mut buf)
                .map_err(|e| e.to_string())?
                .ok_or("5248-byte body not split")?;
            if body.len() == 5248 && buf.is_empty() {
                Ok(())
            } else {
                Err(format!("body of {} bytes", body.len()))
            }
        }
        "F02" => {
            let bytes = unhex(&v.hex);
            match framing::read_varint(&bytes) {
                Ok(Some((0x7fff_ffff, 5))) => {}
                other => return Err(format!("read {other:?}")),
            }
            // With an unlimited maximum the decoder waits for the body ...
            let mut frames = FrameDecoder::new(TransferFormat::Binary, usize::MAX);
            if !matches!(frames.decode(&mut BytesMut::from(&bytes[..])), Ok(None)) {
                return Err("not incomplete".into());
            }
            // ... and with a real one it refuses at once, before buffering anything.
            let mut frames = FrameDecoder::new(TransferFormat::Binary, 1 << 20);
            match frames.decode(&mut BytesMut::from(&bytes[..])) {
                Err(ProtocolError::MessageTooLarge { .. }) => Ok(()),
                other => Err(format!("with a 1 MiB limit: {other:?}")),
            }
        }
        _ => unreachable!(),
    }
}

fn check_messages(v: &Vector, bytes: &[u8]) -> Result<(), String> {
    let protocol = protocol(&v.format);
    let (whole, decoder) = decode_chunked(&protocol, bytes, bytes.len());
    let (bytewise, _) = decode_chunked(&protocol, bytes, 1);
    let same = match (&whole, &bytewise) {
        (Ok(a), Ok(b)) => a == b,
        (Err(a), Err(b)) => a.to_string() == b.to_string(),
        _ => false,
    };
    if !same {
        return Err(format!(
            "whole {whole:?} differs from byte-at-a-time {bytewise:?}"
        ));
    }
    match v.verdict.as_str() {
        "accept" | "ignore" => {
            let decoded = whole.map_err(|e| format!("decode failed: {e}"))?;
            decoder.finish().map_err(|e| format!("leftover: {e}"))?;
            let got: Vec<Value> = decoded.iter().map(describe).collect();
            let want: Vec<Value> = v
                .expect
                .clone()
                .ok_or("no expectation")?
                .into_iter()
                .map(normalize)
                .collect();
            if got != want {
                return Err(format!("decoded {got:?}\n     want {want:?}"));
            }
            if v.encode {
                let mut out = BytesMut::new();
                for w in v.expect.as_ref().ok_or("no expectation")? {
                    protocol
                        .encode(&build(w, protocol.payload_format()), &mut out)
                        .map_err(|e| e.to_string())?;
                }
                if &out[..] != bytes {
                    return Err(format!("encoded {:02x?}", &out[..]));
                }
            }
            Ok(())
        }
        "reject" => {
            let err = whole.err().ok_or("accepted")?.to_string();
            let want = v.error.as_deref().unwrap_or_default();
            if err.contains(want) {
                Ok(())
            } else {
                Err(format!("error {err:?} lacks {want:?}"))
            }
        }
        "incomplete" => {
            let decoded = whole.map_err(|e| format!("error instead of need-more: {e}"))?;
            if !decoded.is_empty() {
                return Err(format!("decoded {decoded:?}"));
            }
            match decoder.finish() {
                Err(ProtocolError::PartialMessage { buffered }) if buffered == bytes.len() => {
                    Ok(())
                }
                other => Err(format!("finish gave {other:?}")),
            }
        }
        other => Err(format!("unknown verdict {other}")),
    }
}

#[test]
fn all_vectors() {
    let vectors = load();
    assert_eq!(vectors.len(), 59, "the digest has 59 vectors");
    let mut failures = Vec::new();
    for v in &vectors {
        let result = if v.id.starts_with('H') {
            check_handshake(v, &unhex(&v.hex))
        } else if v.id.starts_with('F') {
            check_framing(v)
        } else {
            check_messages(v, &unhex(&v.hex))
        };
        if let Err(e) = result {
            failures.push(format!("{} {}: {e}", v.id, v.name));
        }
    }
    let encoded = vectors.iter().filter(|v| v.encode).count();
    println!(
        "{} vectors decoded, {encoded} re-encoded byte for byte, {} failed",
        vectors.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "failing vectors:\n{}",
        failures.join("\n")
    );
}

#[test]
fn a_mutated_vector_fails() {
    // The checks are live: one wrong byte in M01 makes it fail.
    let vectors = load();
    let m01 = vectors.iter().find(|v| v.id == "M01").expect("M01");
    let mut bytes = unhex(&m01.hex);
    bytes[6] = b'q';
    assert!(check_messages(m01, &bytes).is_err());
}
