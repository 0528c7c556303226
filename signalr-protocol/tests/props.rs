//! Property tests: every message type round-trips through both protocols, any chunking of a
//! byte stream decodes to the same messages as the whole stream, and arbitrary bytes never
//! panic a decoder.
#![allow(clippy::unwrap_used)]

use std::{collections::BTreeMap, sync::Arc};

use bytes::BytesMut;
use proptest::prelude::*;
use serde_json::Value;
use signalr_protocol::{
    Ack, Arguments, CancelInvocation, Close, Completion, Decoded, HandshakeResponse, HubMessage,
    HubProtocol, Invocation, JsonHubProtocol, MessageDecoder, MessagePackHubProtocol, Payload,
    PayloadFormat, ProtocolError, Sequence, StreamInvocation, StreamItem,
};

fn protocols() -> [Arc<dyn HubProtocol>; 2] {
    [
        Arc::new(JsonHubProtocol::new()),
        Arc::new(MessagePackHubProtocol::new()),
    ]
}

/// JSON-compatible values, including the characters that matter to framing (`\u{1e}`, quotes,
/// non-ASCII).
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        "[a-z\u{1e}\"\\\\é😀 ]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn id() -> impl Strategy<Value = String> {
    "[0-9a-zA-Z\u{1e}\"-]{1,8}"
}

fn headers() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map("[a-zA-Z-]{1,6}", "[ -~]{1,6}", 0..3)
}

/// A message description, turned into a `HubMessage` for a given payload format.
#[derive(Clone, Debug)]
enum Shape {
    Invocation {
        headers: BTreeMap<String, String>,
        id: Option<String>,
        target: String,
        args: Vec<Value>,
        streams: Vec<String>,
    },
    StreamInvocation {
        id: String,
        target: String,
        args: Vec<Value>,
        streams: Vec<String>,
    },
    StreamItem {
        headers: BTreeMap<String, String>,
        id: String,
        item: Value,
    },
    Completion {
        id: String,
        outcome: Option<Result<Value, String>>,
    },
    Cancel {
        id: String,
    },
    Ping,
    Close {
        error: Option<String>,
        allow_reconnect: bool,
    },
    Ack(u64),
    Sequence(u64),
}

fn shape() -> impl Strategy<Value = Shape> {
    let args = || prop::collection::vec(value(), 0..4);
    let streams = || prop::collection::vec(id(), 0..3);
    prop_oneof![
        (
            headers(),
            prop::option::of(id()),
            "[A-Za-z]{1,10}",
            args(),
            streams()
        )
            .prop_map(|(headers, id, target, args, streams)| Shape::Invocation {
                headers,
                id,
                target,
                args,
                streams
            }),
        (id(), "[A-Za-z]{1,10}", args(), streams()).prop_map(|(id, target, args, streams)| {
            Shape::StreamInvocation {
                id,
                target,
                args,
                streams,
            }
        }),
        (headers(), id(), value()).prop_map(|(headers, id, item)| Shape::StreamItem {
            headers,
            id,
            item
        }),
        (
            id(),
            prop::option::of(prop::result::maybe_ok(value(), "[ -~]{0,10}"))
        )
            .prop_map(|(id, outcome)| Shape::Completion { id, outcome }),
        id().prop_map(|id| Shape::Cancel { id }),
        Just(Shape::Ping),
        (prop::option::of("[ -~\u{1e}]{0,10}"), any::<bool>()).prop_map(
            |(error, allow_reconnect)| Shape::Close {
                error,
                allow_reconnect
            }
        ),
        (0..=i64::MAX as u64).prop_map(Shape::Ack),
        (0..=i64::MAX as u64).prop_map(Shape::Sequence),
    ]
}

fn build(shape: &Shape, format: PayloadFormat) -> HubMessage {
    let payload = |v: &Value| Payload::from_value(format, v).unwrap();
    let args = |a: &Vec<Value>| Arguments::from_values(format, a).unwrap();
    match shape.clone() {
        Shape::Invocation {
            headers,
            id,
            target,
            args: a,
            streams,
        } => {
            let m = match id {
                Some(id) => Invocation::new(id, target, args(&a)),
                None => Invocation::non_blocking(target, args(&a)),
            };
            HubMessage::Invocation(m.with_headers(headers).with_stream_ids(streams))
        }
        Shape::StreamInvocation {
            id,
            target,
            args: a,
            streams,
        } => HubMessage::StreamInvocation(
            StreamInvocation::new(id, target, args(&a)).with_stream_ids(streams),
        ),
        Shape::StreamItem { headers, id, item } => {
            let mut m = StreamItem::new(id, payload(&item));
            m.headers = headers;
            HubMessage::StreamItem(m)
        }
        Shape::Completion { id, outcome } => HubMessage::Completion(match outcome {
            None => Completion::void(id),
            Some(Ok(v)) => Completion::value(id, payload(&v)),
            Some(Err(e)) => Completion::error(id, e),
        }),
        Shape::Cancel { id } => HubMessage::CancelInvocation(CancelInvocation::new(id)),
        Shape::Ping => HubMessage::Ping,
        Shape::Close {
            error,
            allow_reconnect,
        } => HubMessage::Close(Close::new(error, allow_reconnect)),
        Shape::Ack(n) => HubMessage::Ack(Ack::new(n)),
        Shape::Sequence(n) => HubMessage::Sequence(Sequence::new(n)),
    }
}

fn decode_in_chunks(
    protocol: &Arc<dyn HubProtocol>,
    bytes: &[u8],
    cuts: &[usize],
) -> Result<Vec<HubMessage>, ProtocolError> {
    let mut decoder = MessageDecoder::new(Arc::clone(protocol));
    let mut out = Vec::new();
    let mut start = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.push(bytes.len());
    for end in cuts {
        decoder.push(&bytes[start..end.max(start)]);
        start = end.max(start);
        while let Some(m) = decoder.next_message()? {
            out.push(m);
        }
    }
    decoder.finish()?;
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_message_round_trips(shape in shape()) {
        for protocol in protocols() {
            let message = build(&shape, protocol.payload_format());
            let mut wire = BytesMut::new();
            protocol.encode(&message, &mut wire).unwrap();
            let decoded = protocol.decode(&mut wire).unwrap();
            prop_assert_eq!(decoded, Some(Decoded::Message(message)));
            prop_assert!(wire.is_empty());
        }
    }

    #[test]
    fn payload_values_survive(shape in shape()) {
        // Payload bytes may differ between encoders; the values they carry may not.
        if let Shape::StreamItem { item, id, .. } = &shape {
            for protocol in protocols() {
                let mut wire = BytesMut::new();
                protocol.encode(&build(&shape, protocol.payload_format()), &mut wire).unwrap();
                let Some(Decoded::Message(HubMessage::StreamItem(m))) = protocol.decode(&mut wire).unwrap() else {
                    return Err(TestCaseError::fail("not a stream item"));
                };
                prop_assert_eq!(&m.invocation_id, id);
                prop_assert_eq!(&m.item.deserialize::<Value>().unwrap(), item);
            }
        }
    }

    #[test]
    fn any_chunking_decodes_like_the_whole(shapes in prop::collection::vec(shape(), 1..8), cuts in prop::collection::vec(any::<usize>(), 0..12)) {
        for protocol in protocols() {
            let messages: Vec<HubMessage> = shapes.iter().map(|s| build(s, protocol.payload_format())).collect();
            let mut wire = BytesMut::new();
            // A handshake response in front, as on a real connection.
            HandshakeResponse::ok().encode(&mut wire);
            for m in &messages {
                protocol.encode(m, &mut wire).unwrap();
            }
            prop_assert_eq!(HandshakeResponse::decode(&mut wire, 1024).unwrap(), Some(HandshakeResponse::ok()));
            let whole = decode_in_chunks(&protocol, &wire, &[]).unwrap();
            prop_assert_eq!(&whole, &messages);
            let chunked = decode_in_chunks(&protocol, &wire, &cuts).unwrap();
            prop_assert_eq!(&chunked, &messages);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256), cuts in prop::collection::vec(any::<usize>(), 0..4)) {
        for protocol in protocols() {
            let _ = decode_in_chunks(&protocol, &bytes, &cuts);
            let _ = protocol.parse_message(&bytes);
        }
        let _ = HandshakeResponse::decode(&mut BytesMut::from(&bytes[..]), 64);
        let _ = signalr_protocol::NegotiateResponse::parse(&bytes);
    }

    #[test]
    fn corrupted_messages_never_panic(shape in shape(), flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
        for protocol in protocols() {
            let mut wire = BytesMut::new();
            protocol.encode(&build(&shape, protocol.payload_format()), &mut wire).unwrap();
            for (at, byte) in &flips {
                let i = at % wire.len();
                wire[i] = *byte;
            }
            if let Ok(Some(Decoded::Message(m))) = protocol.decode(&mut wire.clone()) {
                // Whatever decodes must re-encode (the decoder only accepts what it can write).
                let mut again = BytesMut::new();
                protocol.encode(&m, &mut again).unwrap();
            }
        }
    }
}
