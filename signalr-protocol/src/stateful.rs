//! The bookkeeping of stateful reconnect: numbering, the replay buffer, Ack and Sequence.
//!
//! Each side numbers its trackable messages (types 1–5) from 1 without ever putting the number
//! on the wire, keeps what it sent until the peer acknowledges it, and after a new socket opens
//! sends `Sequence` plus everything unacknowledged. The receiver drops messages until the peer's
//! `Sequence` arrives, and drops replayed messages it already processed. [`MessageBuffer`] does
//! all of this for one side, bytes in and decisions out; when to send an Ack (about once a
//! second) is the caller's choice.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::{
    error::{ProtocolError, Result},
    message::{Ack, HubMessage, Sequence},
    protocol::HubProtocol,
};

/// One side's stateful-reconnect state.
///
/// ```
/// use bytes::Bytes;
/// use signalr_protocol::stateful::MessageBuffer;
///
/// let mut ours = MessageBuffer::new(100_000);
/// ours.on_sent(Bytes::from_static(b"first"));
/// ours.on_sent(Bytes::from_static(b"second"));
/// ours.on_ack(1)?;                        // the peer processed message 1
/// let (sequence, replay) = ours.resume(); // a new socket: what to send first
/// assert_eq!(sequence.sequence_id, 2);
/// assert_eq!(replay, [Bytes::from_static(b"second")]);
/// # Ok::<(), signalr_protocol::ProtocolError>(())
/// ```
#[derive(Debug)]
pub struct MessageBuffer {
    limit: usize,
    /// The id of the last trackable message sent.
    sent: u64,
    /// Sent and not yet acknowledged, oldest first.
    buffer: VecDeque<(u64, Bytes)>,
    buffered_bytes: usize,
    /// The highest incoming id processed.
    received: u64,
    /// What our last Ack said.
    acked: u64,
    /// The id the next incoming trackable message has.
    next_incoming: u64,
    /// After a resume, incoming messages are dropped until the peer's Sequence.
    awaiting_sequence: bool,
}

fn invalid(message_type: &'static str, reason: String) -> ProtocolError {
    ProtocolError::InvalidField {
        message_type,
        field: "sequenceId",
        reason,
    }
}

impl MessageBuffer {
    /// A buffer that counts as full (sends should wait) from `limit` unacknowledged bytes on.
    /// The official default is 100,000.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            sent: 0,
            buffer: VecDeque::new(),
            buffered_bytes: 0,
            received: 0,
            acked: 0,
            next_incoming: 1,
            awaiting_sequence: false,
        }
    }

    /// Whether the unacknowledged bytes reached the limit: further sends should wait for an Ack
    /// (backpressure, not failure).
    pub fn is_full(&self) -> bool {
        self.buffered_bytes >= self.limit
    }

    /// Bytes that may still be sent before the buffer is full.
    pub fn room(&self) -> usize {
        self.limit.saturating_sub(self.buffered_bytes)
    }

    /// Messages sent and not yet acknowledged.
    pub fn unacknowledged(&self) -> usize {
        self.buffer.len()
    }

    /// Unacknowledged bytes held for replay.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered_bytes
    }

    /// Records a trackable message just sent (its whole frame), giving it the next id.
    pub fn on_sent(&mut self, frame: Bytes) {
        self.sent += 1;
        self.buffered_bytes += frame.len();
        self.buffer.push_back((self.sent, frame));
    }

    /// The peer processed everything up to `id`: those messages leave the buffer. An Ack for a
    /// message never sent is a protocol error; one going backwards changes nothing.
    pub fn on_ack(&mut self, id: u64) -> Result<()> {
        if id > self.sent {
            return Err(invalid(
                "Ack",
                format!("{id} is beyond the {} messages sent", self.sent),
            ));
        }
        while self.buffer.front().is_some_and(|(seq, _)| *seq <= id) {
            if let Some((_, frame)) = self.buffer.pop_front() {
                self.buffered_bytes -= frame.len();
            }
        }
        Ok(())
    }

    /// Call for each trackable message received, before processing it: `false` means drop it
    /// (a duplicate of one already processed, or one that came before the peer's Sequence).
    pub fn on_received(&mut self) -> bool {
        if self.awaiting_sequence {
            return false;
        }
        let id = self.next_incoming;
        self.next_incoming += 1;
        if id <= self.received {
            return false;
        }
        self.received = id;
        true
    }

    /// The peer's Sequence after a resume: its next message has `id`. An id beyond what we
    /// processed plus one (messages we can never get) or 0 is a protocol error.
    pub fn on_sequence(&mut self, id: u64) -> Result<()> {
        if id == 0 || id > self.received + 1 {
            return Err(invalid(
                "Sequence",
                format!("{id} is not between 1 and {}", self.received + 1),
            ));
        }
        self.next_incoming = id;
        self.awaiting_sequence = false;
        Ok(())
    }

    /// The Ack to send now, if anything was processed since the last one.
    pub fn take_ack(&mut self) -> Option<Ack> {
        (self.received > self.acked && !self.awaiting_sequence).then(|| {
            self.acked = self.received;
            Ack::new(self.received)
        })
    }

    /// A new socket replaces a lost one: returns the Sequence to send first and the frames to
    /// send after it, in order, and starts dropping incoming messages until the peer's Sequence.
    pub fn resume(&mut self) -> (Sequence, Vec<Bytes>) {
        self.awaiting_sequence = true;
        // The last Ack may have died with the old socket: the next take_ack says it again, or
        // two full buffers would wait on each other's Acks forever.
        self.acked = 0;
        (
            self.sequence(),
            self.buffer.iter().map(|(_, f)| f.clone()).collect(),
        )
    }

    /// [`resume`](Self::resume), ready for the wire: appends the Sequence, encoded with
    /// `protocol`, and every unacknowledged frame after it to `dst`, to go out as one write.
    /// Returns the Sequence and how many frames follow it.
    ///
    /// # Errors
    ///
    /// The protocol could not encode the Sequence; nothing was changed then.
    pub fn resume_into<P: HubProtocol + ?Sized>(
        &mut self,
        protocol: &P,
        dst: &mut BytesMut,
    ) -> Result<(Sequence, usize)> {
        protocol.encode(&HubMessage::Sequence(self.sequence()), dst)?;
        let (sequence, replay) = self.resume();
        dst.reserve(replay.iter().map(Bytes::len).sum());
        for frame in &replay {
            dst.extend_from_slice(frame);
        }
        Ok((sequence, replay.len()))
    }

    /// The Sequence a resume sends: the id of the oldest unacknowledged message.
    fn sequence(&self) -> Sequence {
        Sequence::new(self.buffer.front().map_or(self.sent + 1, |(id, _)| *id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn acks_free_the_buffer_and_backpressure_follows() {
        let mut b = MessageBuffer::new(10);
        b.on_sent(frame("12345"));
        assert!(!b.is_full());
        b.on_sent(frame("67890"));
        assert!(b.is_full());
        b.on_ack(1).unwrap();
        assert_eq!(b.buffered_bytes(), 5);
        assert!(!b.is_full());
        b.on_ack(1).unwrap(); // backwards or repeated: nothing
        assert_eq!(b.buffered_bytes(), 5);
        assert!(b.on_ack(3).is_err(), "an Ack beyond what was sent");
    }

    #[test]
    fn resume_replays_the_unacknowledged_in_order() {
        let mut b = MessageBuffer::new(1000);
        for f in ["a", "b", "c"] {
            b.on_sent(frame(f));
        }
        b.on_ack(1).unwrap();
        let (seq, replay) = b.resume();
        assert_eq!(seq.sequence_id, 2);
        assert_eq!(replay, [frame("b"), frame("c")]);
        // Nothing buffered: the next id to be used.
        let mut empty = MessageBuffer::new(1000);
        empty.on_sent(frame("a"));
        empty.on_ack(1).unwrap();
        assert_eq!(empty.resume().0.sequence_id, 2);
    }

    #[test]
    fn duplicates_and_early_messages_are_dropped() {
        let mut b = MessageBuffer::new(1000);
        assert!(b.on_received()); // 1
        assert!(b.on_received()); // 2
        assert!(b.on_received()); // 3
        assert_eq!(b.take_ack(), Some(Ack::new(3)));
        assert_eq!(b.take_ack(), None);
        let _ = b.resume();
        assert!(!b.on_received(), "before the peer's Sequence");
        // The peer replays from 2: 2 and 3 are duplicates, 4 is new.
        b.on_sequence(2).unwrap();
        assert!(!b.on_received());
        assert!(!b.on_received());
        assert!(b.on_received());
        assert_eq!(b.take_ack(), Some(Ack::new(4)));
    }

    #[test]
    fn a_resume_repeats_the_last_ack() {
        let mut b = MessageBuffer::new(1000);
        assert!(b.on_received());
        assert_eq!(b.take_ack(), Some(Ack::new(1)));
        let _ = b.resume(); // that Ack may have been lost with the socket
        b.on_sequence(1).unwrap();
        assert!(!b.on_received(), "the replayed message is a duplicate");
        assert_eq!(
            b.take_ack(),
            Some(Ack::new(1)),
            "acknowledged again on the new socket"
        );
    }

    #[test]
    fn resume_into_writes_the_sequence_then_the_replay() {
        let protocol = crate::JsonHubProtocol::new();
        let mut b = MessageBuffer::new(1000);
        b.on_sent(Bytes::from_static(b"one\x1e"));
        b.on_sent(Bytes::from_static(b"two\x1e"));
        b.on_ack(1).unwrap();
        let mut out = BytesMut::from(&b"before"[..]);
        let (sequence, replayed) = b.resume_into(&protocol, &mut out).unwrap();
        assert_eq!((sequence, replayed), (Sequence::new(2), 1));
        assert_eq!(&out[..], b"before{\"type\":9,\"sequenceId\":2}\x1etwo\x1e");
    }

    #[test]
    fn impossible_sequences_are_errors() {
        let mut b = MessageBuffer::new(1000);
        assert!(b.on_received());
        let _ = b.resume();
        assert!(b.on_sequence(0).is_err());
        assert!(b.on_sequence(3).is_err(), "message 2 would be lost");
        b.on_sequence(2).unwrap();
    }
}
