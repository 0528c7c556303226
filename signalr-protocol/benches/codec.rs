//! Encode and decode throughput of both hub protocols, against bare serde_json / rmp-serde doing
//! the same work on the same bytes.
//!
//! Run with `cargo bench -p signalr-protocol --bench codec` (add `-- --quick` for a short run).
//! Each case runs 7 interleaved rounds (3 with `--quick`) and prints the median. The baselines
//! serialize and parse a plain struct with the same fields as the hub message, plus the same
//! framing (record separator or VarInt prefix), and bind the arguments to the same Rust types:
//! they are what a hand-rolled codec would cost, without our lazy payloads, validation or
//! error reporting.
// A bench binary: one long table-building `main` is clearer than helpers here.
#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::too_many_lines,
    clippy::many_single_char_names,
    missing_docs
)]

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};
use signalr_protocol::{
    Arguments, HubMessage, HubProtocol, Invocation, JsonHubProtocol, MessageDecoder,
    MessagePackHubProtocol, Payload, PayloadFormat, StreamItem, framing,
};

#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
struct Tick {
    seq: u64,
    label: String,
    values: [f64; 4],
}

fn tick(i: u64) -> Tick {
    Tick {
        seq: i,
        label: format!("tick-{i}"),
        values: [1.5, 2.5, 3.5, 4.5],
    }
}

/// The bare-serde twin of `Invocation{id, "Echo", [text]}` in JSON.
#[derive(Serialize, Deserialize)]
struct JsonInvocation {
    #[serde(rename = "type")]
    kind: u8,
    #[serde(rename = "invocationId")]
    invocation_id: String,
    target: String,
    arguments: (String,),
}

/// The bare-serde twin of `StreamItem{id, tick}` in JSON.
#[derive(Serialize, Deserialize)]
struct JsonItem {
    #[serde(rename = "type")]
    kind: u8,
    #[serde(rename = "invocationId")]
    invocation_id: String,
    item: Tick,
}

type MsgpackInvocation = (
    u8,
    std::collections::BTreeMap<String, String>,
    String,
    String,
    (String,),
    Vec<String>,
);
type MsgpackItem = (u8, std::collections::BTreeMap<String, String>, String, Tick);

const TEXT: &str = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxyzAB";

struct Case {
    name: String,
    run: Box<dyn Fn(usize) -> usize>,
}

#[allow(clippy::disallowed_methods)] // a benchmark measures wall time
fn time(f: &dyn Fn(usize) -> usize, n: usize) -> (Duration, usize) {
    let start = Instant::now();
    let bytes = f(n);
    (start.elapsed(), bytes)
}

fn invocation(format: PayloadFormat, i: usize) -> HubMessage {
    HubMessage::Invocation(Invocation::new(
        i.to_string(),
        "Echo",
        Arguments::from_values(format, &(TEXT,)).unwrap(),
    ))
}

fn item(format: PayloadFormat, i: usize) -> HubMessage {
    HubMessage::StreamItem(StreamItem::new(
        i.to_string(),
        Payload::from_value(format, &tick(i as u64)).unwrap(),
    ))
}

/// Our encoder: build the message (serializing the payload) and frame it.
fn ours_encode<P: HubProtocol + Clone>(
    p: &P,
    make: fn(PayloadFormat, usize) -> HubMessage,
) -> impl Fn(usize) -> usize + use<P> {
    let p = p.clone();
    move |n| {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut total = 0;
        for i in 0..n {
            p.encode(&make(p.payload_format(), i), &mut buf).unwrap();
            if buf.len() > 60 * 1024 {
                total += buf.len();
                buf.clear();
            }
        }
        total + buf.len()
    }
}

/// Our decoder: split, parse, and bind the payload to its type.
fn ours_decode<P: HubProtocol + Clone>(
    p: &P,
    make: fn(PayloadFormat, usize) -> HubMessage,
    n: usize,
) -> impl Fn(usize) -> usize + use<P> {
    let mut wire = BytesMut::new();
    for i in 0..n {
        p.encode(&make(p.payload_format(), i), &mut wire).unwrap();
    }
    let wire = wire.freeze();
    let p = p.clone();
    move |_| {
        let mut decoder = MessageDecoder::new(p.clone());
        for chunk in wire.chunks(16 * 1024) {
            decoder.push(chunk);
            while let Some(m) = decoder.next_message().unwrap() {
                match m {
                    HubMessage::Invocation(inv) => {
                        black_box(inv.arguments.deserialize::<(String,)>().unwrap());
                    }
                    HubMessage::StreamItem(it) => {
                        black_box(it.item.deserialize::<Tick>().unwrap());
                    }
                    _ => unreachable!(),
                }
            }
        }
        wire.len()
    }
}

fn bare_json_encode_invocation(n: usize) -> usize {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut total = 0;
    for i in 0..n {
        let m = JsonInvocation {
            kind: 1,
            invocation_id: i.to_string(),
            target: "Echo".into(),
            arguments: (TEXT.into(),),
        };
        serde_json::to_writer((&mut buf).writer(), &m).unwrap();
        buf.put_u8(0x1e);
        if buf.len() > 60 * 1024 {
            total += buf.len();
            buf.clear();
        }
    }
    total + buf.len()
}

fn bare_json_encode_item(n: usize) -> usize {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut total = 0;
    for i in 0..n {
        let m = JsonItem {
            kind: 2,
            invocation_id: i.to_string(),
            item: tick(i as u64),
        };
        serde_json::to_writer((&mut buf).writer(), &m).unwrap();
        buf.put_u8(0x1e);
        if buf.len() > 60 * 1024 {
            total += buf.len();
            buf.clear();
        }
    }
    total + buf.len()
}

fn bare_json_decode<T: for<'de> Deserialize<'de>>(wire: bytes::Bytes) -> impl Fn(usize) -> usize {
    move |_| {
        for record in wire.split(|&b| b == 0x1e).filter(|r| !r.is_empty()) {
            black_box(serde_json::from_slice::<T>(record).unwrap());
        }
        wire.len()
    }
}

fn bare_msgpack_encode<T: Serialize>(make: fn(usize) -> T) -> impl Fn(usize) -> usize {
    move |n| {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut body = Vec::with_capacity(256);
        let mut total = 0;
        for i in 0..n {
            body.clear();
            rmp_serde::encode::write_named(&mut body, &make(i)).unwrap();
            framing::write_varint(u32::try_from(body.len()).unwrap(), &mut buf).unwrap();
            buf.put_slice(&body);
            if buf.len() > 60 * 1024 {
                total += buf.len();
                buf.clear();
            }
        }
        total + buf.len()
    }
}

fn bare_msgpack_decode<T: for<'de> Deserialize<'de>>(
    wire: bytes::Bytes,
) -> impl Fn(usize) -> usize {
    move |_| {
        let mut rest = &wire[..];
        while !rest.is_empty() {
            let (len, prefix) = framing::read_varint(rest).unwrap().unwrap();
            let end = prefix + len as usize;
            black_box(rmp_serde::from_slice::<T>(&rest[prefix..end]).unwrap());
            rest = &rest[end..];
        }
        wire.len()
    }
}

fn wire_of<T: Serialize>(n: usize, make: fn(usize) -> T, msgpack: bool) -> bytes::Bytes {
    let mut buf = BytesMut::new();
    for i in 0..n {
        if msgpack {
            let body = rmp_serde::to_vec_named(&make(i)).unwrap();
            framing::write_varint(u32::try_from(body.len()).unwrap(), &mut buf).unwrap();
            buf.put_slice(&body);
        } else {
            serde_json::to_writer((&mut buf).writer(), &make(i)).unwrap();
            buf.put_u8(0x1e);
        }
    }
    buf.freeze()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (n, rounds) = if quick { (20_000, 3) } else { (200_000, 7) };
    let json = JsonHubProtocol::new();
    let msgpack = MessagePackHubProtocol::new();

    let mp_inv = |i: usize| -> MsgpackInvocation {
        (
            1,
            std::collections::BTreeMap::default(),
            i.to_string(),
            "Echo".into(),
            (TEXT.into(),),
            Vec::new(),
        )
    };
    let mp_item = |i: usize| -> MsgpackItem {
        (
            2,
            std::collections::BTreeMap::default(),
            i.to_string(),
            tick(i as u64),
        )
    };
    let js_inv = |i: usize| JsonInvocation {
        kind: 1,
        invocation_id: i.to_string(),
        target: "Echo".into(),
        arguments: (TEXT.into(),),
    };
    let js_item = |i: usize| JsonItem {
        kind: 2,
        invocation_id: i.to_string(),
        item: tick(i as u64),
    };

    // (group, ours, baseline)
    let groups: Vec<(&str, Case, Case)> = vec![
        (
            "JSON encode Invocation(Echo, 100 B)",
            Case {
                name: "ours".into(),
                run: Box::new(ours_encode(&json, invocation)),
            },
            Case {
                name: "serde_json".into(),
                run: Box::new(bare_json_encode_invocation),
            },
        ),
        (
            "JSON decode Invocation(Echo, 100 B)",
            Case {
                name: "ours".into(),
                run: Box::new(ours_decode(&json, invocation, n)),
            },
            Case {
                name: "serde_json".into(),
                run: Box::new(bare_json_decode::<JsonInvocation>(wire_of(
                    n, js_inv, false,
                ))),
            },
        ),
        (
            "JSON encode StreamItem(struct)",
            Case {
                name: "ours".into(),
                run: Box::new(ours_encode(&json, item)),
            },
            Case {
                name: "serde_json".into(),
                run: Box::new(bare_json_encode_item),
            },
        ),
        (
            "JSON decode StreamItem(struct)",
            Case {
                name: "ours".into(),
                run: Box::new(ours_decode(&json, item, n)),
            },
            Case {
                name: "serde_json".into(),
                run: Box::new(bare_json_decode::<JsonItem>(wire_of(n, js_item, false))),
            },
        ),
        (
            "MessagePack encode Invocation(Echo, 100 B)",
            Case {
                name: "ours".into(),
                run: Box::new(ours_encode(&msgpack, invocation)),
            },
            Case {
                name: "rmp-serde".into(),
                run: Box::new(bare_msgpack_encode(mp_inv)),
            },
        ),
        (
            "MessagePack decode Invocation(Echo, 100 B)",
            Case {
                name: "ours".into(),
                run: Box::new(ours_decode(&msgpack, invocation, n)),
            },
            Case {
                name: "rmp-serde".into(),
                run: Box::new(bare_msgpack_decode::<MsgpackInvocation>(wire_of(
                    n, mp_inv, true,
                ))),
            },
        ),
        (
            "MessagePack encode StreamItem(struct)",
            Case {
                name: "ours".into(),
                run: Box::new(ours_encode(&msgpack, item)),
            },
            Case {
                name: "rmp-serde".into(),
                run: Box::new(bare_msgpack_encode(mp_item)),
            },
        ),
        (
            "MessagePack decode StreamItem(struct)",
            Case {
                name: "ours".into(),
                run: Box::new(ours_decode(&msgpack, item, n)),
            },
            Case {
                name: "rmp-serde".into(),
                run: Box::new(bare_msgpack_decode::<MsgpackItem>(wire_of(
                    n, mp_item, true,
                ))),
            },
        ),
    ];

    println!("codec bench: {n} messages per round, {rounds} interleaved rounds, median shown");
    println!(
        "{:<44} {:>12} {:>9} {:>12} {:>9} {:>7}",
        "case", "ours msg/s", "MB/s", "bare msg/s", "MB/s", "ratio"
    );
    for (group, ours, bare) in &groups {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let (mut bytes_a, mut bytes_b) = (0, 0);
        for _ in 0..rounds {
            let (t, x) = time(&ours.run, n);
            a.push(t);
            bytes_a = x;
            let (t, x) = time(&bare.run, n);
            b.push(t);
            bytes_b = x;
        }
        a.sort();
        b.sort();
        let (ta, tb) = (a[rounds / 2].as_secs_f64(), b[rounds / 2].as_secs_f64());
        let rate = |t: f64| n as f64 / t;
        let mbs = |bytes: usize, t: f64| bytes as f64 / t / 1e6;
        println!(
            "{group:<44} {:>12.0} {:>9.1} {:>12.0} {:>9.1} {:>7.2}   ({} vs {})",
            rate(ta),
            mbs(bytes_a, ta),
            rate(tb),
            mbs(bytes_b, tb),
            tb / ta,
            ours.name,
            bare.name
        );
    }
    println!("ratio = ours throughput / bare throughput (1.00 = as fast as bare serde)");
}
