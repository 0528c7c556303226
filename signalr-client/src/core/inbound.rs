//! What comes in: the handshake response, the server's messages, stream backpressure.

use std::time::Instant;

use signalr_protocol::{
    CancelInvocation, CompletionResult, HandshakeResponse, HubMessage, HubProtocol, ProtocolError,
    StreamItem, TransferFormat,
};
use tracing::{debug, info};

use super::request::{Answer, Room, Sinks, StreamSink};
use super::timers::Timer;
use super::{ACK_DELAY, Core, Event, Held, Pending, Phase, ServerCall};
use crate::error::{HandshakeError, HubError, Result};

impl<S: Sinks> Core<S> {
    /// The consumer of the held stream item may have room now.
    pub(crate) fn handle_stream_room(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Connected) {
            self.release_held();
            self.drain(now);
        }
    }

    /// Bytes from the server.
    pub(crate) fn handle_received(&mut self, now: Instant, bytes: &[u8]) {
        self.trace_data("data received", bytes);
        let Some(link) = self.link.as_mut() else {
            return;
        };
        match self.phase {
            Phase::Handshaking { initial } => {
                let Some(buf) = link.handshake.as_mut() else {
                    return;
                };
                buf.extend_from_slice(bytes);
                match HandshakeResponse::decode(buf, self.settings.protocol.max_message_size()) {
                    Ok(None) => {}
                    Ok(Some(response)) => match response.error {
                        Some(error) => self.attempt_failed(
                            now,
                            HubError::Handshake(HandshakeError::Refused(error)),
                        ),
                        None => self.handshake_completed(now, initial),
                    },
                    Err(e) => {
                        self.attempt_failed(now, HubError::Handshake(HandshakeError::Malformed(e)));
                    }
                }
            }
            Phase::Connected => {
                // Counted once connected, as the server's hub messages (not the handshake).
                self.meters.received_bytes(bytes.len());
                link.keep_alive.on_message_received(now);
                link.decoder.push(bytes);
                self.drain(now);
            }
            _ => {}
        }
        self.update_timers();
    }

    /// The transport failed.
    pub(crate) fn handle_transport_error(&mut self, now: Instant, error: HubError) {
        match self.phase {
            Phase::Handshaking { .. } => self.attempt_failed(now, error),
            Phase::Connected => self.lost(now, error),
            _ => {}
        }
        self.update_timers();
    }

    /// The server closed the transport.
    pub(crate) fn handle_transport_closed(&mut self, now: Instant) {
        match self.phase {
            Phase::Handshaking { .. } => {
                self.attempt_failed(now, HubError::Handshake(HandshakeError::Closed));
            }
            Phase::Connected => {
                // A record cut short is an error, not a clean end.
                let finished = self.link.as_mut().map_or(Ok(()), |l| l.decoder.finish());
                let error =
                    finished.map_or_else(HubError::Protocol, |()| HubError::ConnectionClosed);
                self.lost(now, error);
            }
            _ => {}
        }
        self.update_timers();
    }

    /// Handles the decoded messages until none is left, a stream item waits for room, or the
    /// connection is lost.
    pub(super) fn drain(&mut self, now: Instant) {
        while matches!(self.phase, Phase::Connected) {
            let Some(link) = self.link.as_mut() else {
                return;
            };
            if link.held.is_some() {
                return;
            }
            match link.decoder.next_message() {
                Ok(Some(message)) => {
                    if let Err(e) = self.on_message(now, message) {
                        self.lost(now, e);
                    }
                }
                Ok(None) => return,
                Err(e) => self.lost(now, HubError::Protocol(e)),
            }
        }
    }

    pub(super) fn on_message(&mut self, now: Instant, message: HubMessage) -> Result<()> {
        self.meters.received_message();
        if let Some(buffer) = self.link.as_mut().and_then(|l| l.stateful.as_mut()) {
            let kind = message.message_type();
            if kind.is_trackable() || matches!(message, HubMessage::Sequence(_)) {
                // Duplicates too: the server replays them because it missed our Ack, and its
                // full buffer waits for one.
                if self.timers.get(Timer::Ack).is_none() {
                    self.timers.set(Timer::Ack, now + ACK_DELAY);
                }
            }
            if kind.is_trackable() && !buffer.on_received() {
                return Ok(()); // a replayed duplicate, or before the server's Sequence
            }
        }
        match message {
            HubMessage::Invocation(m) => {
                self.calls.push(ServerCall {
                    headers: m.headers,
                    target: m.target,
                    arguments: m.arguments,
                    invocation_id: m.invocation_id,
                });
            }
            HubMessage::StreamItem(item) => self.on_stream_item(now, item),
            HubMessage::Completion(c) => match self.pending.remove(&c.invocation_id) {
                Some(Pending::Invoke(reply)) => reply.answer(Ok(c.result)),
                Some(Pending::Stream(items)) => match c.result {
                    CompletionResult::Void => {}
                    CompletionResult::Error(message) => {
                        items.push(Err(HubError::Invocation { message }));
                    }
                    CompletionResult::Value(_) => {
                        items.push(Err(HubError::Protocol(ProtocolError::UnexpectedMessage {
                            message_type: "Completion",
                            reason: "a stream completed with a result".into(),
                        })));
                    }
                },
                None => debug!(
                    id = c.invocation_id,
                    "completion for an unknown invocation ignored"
                ),
            },
            HubMessage::Close(close) => {
                info!(
                    signalr.close_error = close.error.as_deref(),
                    signalr.allow_reconnect = close.allow_reconnect,
                    "close received"
                );
                return Err(HubError::ServerClosed {
                    error: close.error,
                    allow_reconnect: close.allow_reconnect,
                });
            }
            HubMessage::Ack(ack) => {
                if let Some(buffer) = self.link.as_mut().and_then(|l| l.stateful.as_mut()) {
                    buffer.on_ack(ack.sequence_id).map_err(HubError::Protocol)?;
                    let (buffered, room) = (buffer.buffered_bytes(), buffer.room());
                    self.meters.replay_bytes(buffered);
                    self.events.push_back(Event::SendRoom(room));
                }
            }
            HubMessage::Sequence(seq) => {
                if let Some(buffer) = self.link.as_mut().and_then(|l| l.stateful.as_mut()) {
                    buffer
                        .on_sequence(seq.sequence_id)
                        .map_err(HubError::Protocol)?;
                }
            }
            // Ping: received traffic already reset the server timeout.
            _ => {}
        }
        Ok(())
    }

    /// A stream item: to its stream's consumer (holding reading back while it is full), or an
    /// error for a call that is not a stream.
    pub(super) fn on_stream_item(&mut self, now: Instant, item: StreamItem) {
        match self.pending.get(&item.invocation_id) {
            Some(Pending::Stream(items)) => match items.room() {
                Room::Free => items.push(Ok(item.item)),
                Room::Closed => self.cancel_stream(item.invocation_id),
                Room::Full => {
                    // Backpressure: nothing more is read until the consumer takes an item, for
                    // up to the stream consumer timeout.
                    if let Some(link) = self.link.as_mut() {
                        link.held = Some(Box::new(Held {
                            item,
                            expired: false,
                        }));
                        self.timers.set(
                            Timer::StreamConsumer,
                            now + self.settings.stream_consumer_timeout,
                        );
                    }
                }
            },
            Some(Pending::Invoke(_)) => {
                if let Some(Pending::Invoke(reply)) = self.pending.remove(&item.invocation_id) {
                    reply.answer(Err(HubError::Protocol(ProtocolError::UnexpectedMessage {
                        message_type: "StreamItem",
                        reason: "a stream item for a non-streaming invocation".into(),
                    })));
                }
            }
            None => debug!(
                id = item.invocation_id,
                "stream item for an unknown invocation ignored"
            ),
        }
    }

    /// The held stream item, once its consumer may have room or its time is up: delivered, or
    /// its stream cancelled.
    pub(super) fn release_held(&mut self) {
        let Some(held) = self.link.as_mut().and_then(|l| l.held.take()) else {
            return;
        };
        let room = match self.pending.get(&held.item.invocation_id) {
            Some(Pending::Stream(items)) => items.room(),
            _ => Room::Closed,
        };
        match room {
            Room::Free => {
                self.timers.stop(Timer::StreamConsumer);
                if let Some(Pending::Stream(items)) = self.pending.get(&held.item.invocation_id) {
                    items.push(Ok(held.item.item));
                }
            }
            Room::Full if !held.expired => {
                if let Some(link) = self.link.as_mut() {
                    link.held = Some(held);
                }
            }
            // The consumer took nothing for the whole stream consumer timeout, or has gone.
            Room::Full | Room::Closed => {
                self.timers.stop(Timer::StreamConsumer);
                self.cancel_stream(held.item.invocation_id);
            }
        }
    }

    /// Gives up stream `id`: its consumer gets `StreamConsumerTooSlow` (or has gone), the server
    /// a `CancelInvocation`. A full buffer is never grown without bound.
    pub(super) fn cancel_stream(&mut self, id: String) {
        let Some(Pending::Stream(items)) = self.pending.remove(&id) else {
            return;
        };
        items.push(Err(HubError::StreamConsumerTooSlow));
        let _ = self.encode(&HubMessage::CancelInvocation(CancelInvocation::new(id)));
    }

    /// A `trace` event for `data` going out or coming in: its size, and its content only when
    /// the user asked for it.
    pub(super) fn trace_data(&self, what: &'static str, data: &[u8]) {
        if !tracing::enabled!(tracing::Level::TRACE) {
            return;
        }
        if !self.settings.log_message_content {
            tracing::trace!(signalr.bytes = data.len(), "{what}");
            return;
        }
        let content = match self.settings.protocol.transfer_format() {
            TransferFormat::Text => String::from_utf8_lossy(data).into_owned(),
            _ => data.iter().fold(String::new(), |mut hex, b| {
                use std::fmt::Write as _;
                let _ = write!(hex, "{}{b:02x}", if hex.is_empty() { "" } else { " " });
                hex
            }),
        };
        tracing::trace!(
            signalr.bytes = data.len(),
            signalr.content = content,
            "{what}"
        );
    }
}
