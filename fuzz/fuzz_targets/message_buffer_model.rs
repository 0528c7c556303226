// The `message_buffer` oracles: a reference model of `MessageBuffer` and a two-sided link
// simulation. Shared by the fuzz target (`include!`) and by
// signalr-protocol/tests/fuzz_corpus.rs (`#[path]` module), so both replay an input the same way.
use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use signalr_protocol::{
    HubMessage, HubProtocol, JsonHubProtocol, MessagePackHubProtocol, Sequence,
    stateful::MessageBuffer,
};

/// The replay-buffer limits an input can pick (its first byte).
const LIMITS: [usize; 8] = [0, 1, 10, 64, 100, 1000, 100_000, usize::MAX];

/// Inputs stop after this many operations: enough for every state, cheap for every input.
const MAX_OPS: usize = 1024;

/// The frame of outgoing message `id`: at least `len` bytes that start with the id, so a
/// replayed frame says which message it is (or, for `len` 0, an empty frame).
fn frame(id: u64, len: usize) -> Bytes {
    if len == 0 {
        return Bytes::new();
    }
    let mut f = format!("{id}:").into_bytes();
    f.resize(len.max(f.len()), b'.');
    Bytes::from(f)
}

/// The message id a [`frame`] carries.
fn frame_id(frame: &[u8]) -> u64 {
    let end = frame
        .iter()
        .position(|&b| b == b':')
        .expect("a frame has an id");
    std::str::from_utf8(&frame[..end])
        .expect("ASCII")
        .parse()
        .expect("an id")
}

/// Operations read from the fuzzer's bytes; the input ends where the bytes do.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    /// An id near `base` (the boundary the operation is about), or a far or extreme one.
    fn id_near(&mut self, base: u64) -> u64 {
        let b = self.byte().unwrap_or(0);
        let small = u64::from(b & 0x3f);
        match b >> 6 {
            0 => base.saturating_sub(small),
            1 => base.saturating_add(small),
            2 => small,
            _ => [
                0,
                1,
                base,
                base.saturating_add(1),
                u64::MAX,
                u64::MAX - 1,
                u64::MAX / 2,
                1 << 32,
            ][usize::from(b & 7)],
        }
    }

    fn len(&mut self) -> usize {
        match self.byte().unwrap_or(0) {
            255 => 3000,
            254 => 0,
            b => usize::from(b % 64) + 1,
        }
    }
}

/// The reference model: what `MessageBuffer` should do, written as plainly as possible.
#[derive(Debug, Default)]
struct Model {
    limit: usize,
    sent: u64,
    unacked: VecDeque<(u64, Bytes)>,
    received: u64,
    acked: u64,
    next_incoming: u64,
    awaiting_sequence: bool,
}

impl Model {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            next_incoming: 1,
            ..Self::default()
        }
    }
    fn bytes(&self) -> usize {
        self.unacked.iter().map(|(_, f)| f.len()).sum()
    }
    fn is_full(&self) -> bool {
        self.bytes() >= self.limit
    }
    fn on_sent(&mut self, frame: Bytes) {
        self.sent += 1;
        self.unacked.push_back((self.sent, frame));
    }
    /// `false`: an error (an Ack for a message never sent), nothing changed.
    fn on_ack(&mut self, id: u64) -> bool {
        if id > self.sent {
            return false;
        }
        self.unacked.retain(|(seq, _)| *seq > id);
        true
    }
    /// Whether the message is delivered, and its id if so.
    fn on_received(&mut self) -> Option<u64> {
        if self.awaiting_sequence {
            return None;
        }
        let id = self.next_incoming;
        self.next_incoming += 1;
        (id == self.received + 1).then(|| {
            self.received = id;
            id
        })
    }
    /// `false`: an error (0, or a gap after what was processed), nothing changed.
    fn on_sequence(&mut self, id: u64) -> bool {
        if id == 0 || id > self.received + 1 {
            return false;
        }
        self.next_incoming = id;
        self.awaiting_sequence = false;
        true
    }
    fn take_ack(&mut self) -> Option<u64> {
        (self.received > self.acked && !self.awaiting_sequence).then(|| {
            self.acked = self.received;
            self.received
        })
    }
    fn resume(&mut self) -> (u64, Vec<Bytes>) {
        self.awaiting_sequence = true;
        self.acked = 0;
        let first = self.unacked.front().map_or(self.sent + 1, |(id, _)| *id);
        (first, self.unacked.iter().map(|(_, f)| f.clone()).collect())
    }
}

/// Runs one input: the first byte picks the limit, whether sends respect backpressure and which
/// oracle runs (the differential model or the two-sided link).
pub(crate) fn message_buffer(data: &[u8]) {
    let mut input = Input(data);
    let Some(config) = input.byte() else { return };
    let limit = LIMITS[usize::from(config & 7)];
    let backpressure = config & 0x08 == 0;
    if config & 0x10 == 0 {
        differential(limit, backpressure, input);
    } else {
        link(limit, input);
    }
}

fn check_same(real: &MessageBuffer, model: &Model) {
    assert_eq!(real.unacknowledged(), model.unacked.len(), "unacknowledged");
    assert_eq!(real.buffered_bytes(), model.bytes(), "buffered bytes");
    assert_eq!(real.is_full(), model.is_full(), "is_full");
}

/// Every operation, on the real buffer and on the model, must give the same answers.
fn differential(limit: usize, backpressure: bool, mut input: Input<'_>) {
    let mut real = MessageBuffer::new(limit);
    let mut model = Model::new(limit);
    let mut delivered = 0;
    for _ in 0..MAX_OPS {
        let Some(op) = input.byte() else { break };
        match op % 8 {
            0 => {
                let len = input.len();
                if backpressure && real.is_full() {
                    continue;
                }
                let f = frame(model.sent + 1, len);
                let len = f.len();
                real.on_sent(f.clone());
                model.on_sent(f);
                if backpressure {
                    // Sends wait while full: the buffer exceeds its limit by one message at most.
                    assert!(
                        real.buffered_bytes() < limit.saturating_add(len.max(1)),
                        "over the limit"
                    );
                }
            }
            1 => {
                let id = input.id_near(model.sent);
                let ok = real.on_ack(id).is_ok();
                assert_eq!(ok, model.on_ack(id), "Ack({id}) after {} sent", model.sent);
            }
            2 => {
                let got = model.on_received();
                assert_eq!(real.on_received(), got.is_some(), "on_received");
                if let Some(id) = got {
                    assert_eq!(id, delivered + 1, "delivered ids go up by one");
                    delivered = id;
                }
            }
            3 => {
                let id = input.id_near(model.received + 1);
                let ok = real.on_sequence(id).is_ok();
                assert_eq!(
                    ok,
                    model.on_sequence(id),
                    "Sequence({id}) after {} received",
                    model.received
                );
            }
            4 => assert_eq!(
                real.take_ack().map(|a| a.sequence_id),
                model.take_ack(),
                "take_ack"
            ),
            5 => {
                let (sequence, frames) = real.resume();
                assert_eq!((sequence.sequence_id, frames), model.resume(), "resume");
            }
            p => {
                let protocol: &dyn HubProtocol = if p == 6 {
                    &JsonHubProtocol::new()
                } else {
                    &MessagePackHubProtocol::new()
                };
                let mut out = BytesMut::from(&b"x"[..]);
                let (sequence, count) = real
                    .resume_into(protocol, &mut out)
                    .expect("a Sequence encodes");
                let (first, frames) = model.resume();
                assert_eq!(
                    (sequence.sequence_id, count),
                    (first, frames.len()),
                    "resume_into"
                );
                let mut want = BytesMut::from(&b"x"[..]);
                protocol
                    .encode(&HubMessage::Sequence(Sequence::new(first)), &mut want)
                    .expect("encodes");
                for f in &frames {
                    want.extend_from_slice(f);
                }
                assert_eq!(
                    out, want,
                    "resume_into writes the Sequence, then the replay"
                );
            }
        }
        check_same(&real, &model);
    }
}

/// What travels on one direction of the current socket.
#[derive(Debug)]
enum Wire {
    Message(Bytes),
    Ack(u64),
    Sequence(u64),
}

/// One end of a stateful connection: its buffer, what it sent, what it delivered in order.
struct Side {
    buffer: MessageBuffer,
    sent: u64,
    delivered: u64,
    largest: usize,
}

impl Side {
    /// Takes in what the peer sent. An honest peer never causes an error.
    fn receive(&mut self, wire: Wire) {
        match wire {
            Wire::Message(f) => {
                if self.buffer.on_received() {
                    let id = frame_id(&f);
                    assert_eq!(
                        id,
                        self.delivered + 1,
                        "delivered in order, without gaps or duplicates"
                    );
                    self.delivered = id;
                }
            }
            Wire::Ack(id) => self.buffer.on_ack(id).expect("an honest Ack"),
            Wire::Sequence(id) => self.buffer.on_sequence(id).expect("an honest Sequence"),
        }
    }
}

/// Two buffers talking over a socket that the input breaks and replaces at will: every message
/// must be delivered exactly once and in order, and honest Acks and Sequences never fail.
fn link(limit: usize, mut input: Input<'_>) {
    let side = || Side {
        buffer: MessageBuffer::new(limit),
        sent: 0,
        delivered: 0,
        largest: 0,
    };
    let mut sides = [side(), side()];
    // links[i]: in flight from side i to the other.
    let mut links: [VecDeque<Wire>; 2] = [VecDeque::new(), VecDeque::new()];
    let reconnect = |sides: &mut [Side; 2], links: &mut [VecDeque<Wire>; 2]| {
        for (s, link) in sides.iter_mut().zip(links.iter_mut()) {
            link.clear();
            let (sequence, replay) = s.buffer.resume();
            assert_eq!(replay.len(), s.buffer.unacknowledged());
            if let Some(f) = replay.first() {
                assert_eq!(
                    frame_id(f),
                    sequence.sequence_id,
                    "the replay starts at the Sequence"
                );
            }
            link.push_back(Wire::Sequence(sequence.sequence_id));
            link.extend(replay.into_iter().map(Wire::Message));
        }
    };
    let deliver =
        |sides: &mut [Side; 2], links: &mut [VecDeque<Wire>; 2], from: usize, n: usize| {
            for _ in 0..n {
                let Some(wire) = links[from].pop_front() else {
                    break;
                };
                sides[1 - from].receive(wire);
            }
        };
    for _ in 0..MAX_OPS {
        let Some(op) = input.byte() else { break };
        let from = usize::from(op & 1);
        match (op >> 1) % 4 {
            0 => {
                let len = input.len().max(1);
                let s = &mut sides[from];
                if !s.buffer.is_full() {
                    s.sent += 1;
                    let f = frame(s.sent, len);
                    s.largest = s.largest.max(f.len());
                    s.buffer.on_sent(f.clone());
                    assert!(
                        s.buffer.buffered_bytes() < limit.saturating_add(f.len()),
                        "over the limit"
                    );
                    links[from].push_back(Wire::Message(f));
                }
            }
            1 => deliver(&mut sides, &mut links, from, usize::from(op >> 3) + 1),
            2 => {
                if let Some(ack) = sides[from].buffer.take_ack() {
                    assert_eq!(
                        ack.sequence_id, sides[from].delivered,
                        "an Ack says what was delivered"
                    );
                    links[from].push_back(Wire::Ack(ack.sequence_id));
                }
            }
            _ => reconnect(&mut sides, &mut links),
        }
        for s in &sides {
            assert!(
                s.buffer.buffered_bytes() < limit.saturating_add(s.largest).max(1),
                "over the limit"
            );
        }
    }
    // The end: one more socket, everything delivered, both sides acknowledge.
    reconnect(&mut sides, &mut links);
    for _ in 0..2 {
        for from in 0..2 {
            deliver(&mut sides, &mut links, from, usize::MAX);
            if let Some(ack) = sides[from].buffer.take_ack() {
                links[from].push_back(Wire::Ack(ack.sequence_id));
            }
        }
    }
    for from in 0..2 {
        deliver(&mut sides, &mut links, from, usize::MAX);
    }
    for i in 0..2 {
        assert_eq!(
            sides[i].delivered,
            sides[1 - i].sent,
            "every message delivered"
        );
        assert_eq!(
            sides[i].buffer.unacknowledged(),
            0,
            "every message acknowledged"
        );
        assert_eq!(sides[i].buffer.buffered_bytes(), 0);
    }
}
