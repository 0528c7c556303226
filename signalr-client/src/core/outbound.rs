//! What goes out: the application's requests (carried, held in the outbox or refused), the
//! encoding into the next write, the replay buffer's share of it, and the write's outcome.

use std::{sync::Arc, time::Instant};

use bytes::Bytes;
use signalr_protocol::{
    CancelInvocation, Completion, HubMessage, HubProtocol, Invocation, ProtocolError,
    StreamInvocation, StreamItem,
};
use tracing::{debug, warn};

use super::request::{Answer, Refused, Request, Sinks, StreamSink};
use super::timers::Timer;
use super::{
    BATCH, Core, Event, Out, Pending, Phase, failure, note_unsent, unencodable, wire_size,
};
use crate::{error::HubError, state::HubConnectionState};

impl<S: Sinks> Core<S> {
    /// A request from the application.
    pub(crate) fn handle_request(&mut self, now: Instant, request: Request<S>) {
        if let Request::Stop { reply } = request {
            self.stop(now, Some(reply));
            return;
        }
        match self.phase {
            Phase::Connected => {
                if let Request::Cancel { id } = &request {
                    if self.unqueue_stream(id) {
                        return;
                    }
                }
                if !self.outbox.is_empty() || self.full() {
                    // Behind the calls already held back, in order.
                    self.outbox.push_back(request);
                } else {
                    self.carry(now, request);
                }
            }
            Phase::Idle => Self::reject(request, HubConnectionState::Disconnected),
            Phase::Connecting { initial: true }
            | Phase::Handshaking { initial: true }
            | Phase::Waiting { initial: true } => {
                Self::reject(request, HubConnectionState::Connecting);
            }
            Phase::Connecting { .. }
            | Phase::Handshaking { .. }
            | Phase::Waiting { .. }
            | Phase::Resuming { .. } => self.hold(request),
            Phase::Disconnecting { .. } => {
                let unsent = request.refuse(|| HubError::Stopped);
                self.note_refused(unsent, &HubError::Stopped);
            }
            Phase::Disconnected => {
                let error = self
                    .closed
                    .clone()
                    .unwrap_or_else(|| Arc::new(HubError::Stopped));
                let unsent = request.refuse(|| failure(&error));
                self.note_refused(unsent, &error);
            }
        }
    }

    /// A client-result answer from the handlers.
    pub(crate) fn handle_answer(&mut self, _now: Instant, completion: Completion) {
        if matches!(self.phase, Phase::Connected) {
            // An answer of the session's handlers; a new session has new handlers.
            let _ = self.encode(&HubMessage::Completion(completion));
        }
    }

    /// The last [`poll_transmit`](Self::poll_transmit) was written.
    pub(crate) fn handle_written(&mut self, now: Instant) {
        let Some(flight) = self.flight.take() else {
            return;
        };
        if flight.messages > 0 {
            self.meters.sent(flight.messages, flight.written);
        }
        for reply in flight.sends {
            reply.answer(Ok(()));
        }
        drop(flight.reservations);
        if let Some(link) = self.link.as_mut() {
            link.keep_alive.on_message_sent(now);
        }
        if let Phase::Resuming {
            replaying: true, ..
        } = self.phase
        {
            self.resume_completed(now);
        }
        self.update_timers();
    }

    /// The last [`poll_transmit`](Self::poll_transmit) could not be written.
    pub(crate) fn handle_write_failed(&mut self, now: Instant, error: HubError) {
        let Some(flight) = self.flight.take() else {
            return;
        };
        match self.phase {
            Phase::Handshaking { .. } => self.attempt_failed(now, error),
            Phase::Connected => {
                // With stateful reconnect a message that could not be written is in the replay
                // buffer and goes out after the resume: accepted, not failed.
                let stateful = self.link.as_ref().is_some_and(|l| l.stateful.is_some());
                let requests = flight.requests;
                let cause = Arc::new(error);
                Self::settle(flight, stateful, &cause);
                let error = if requests {
                    HubError::ConnectionLost(cause)
                } else {
                    Arc::try_unwrap(cause).unwrap_or_else(HubError::ConnectionLost)
                };
                self.lost(now, error);
            }
            Phase::Resuming {
                replaying: true, ..
            } => self.resume_failed(now, &error),
            // Closing: the close goes on.
            _ => Self::settle(flight, false, &Arc::new(error)),
        }
        self.update_timers();
    }

    /// The last write took longer than [`write_deadline`](Self::write_deadline).
    pub(crate) fn handle_write_timeout(&mut self, now: Instant) {
        let error = if matches!(self.phase, Phase::Handshaking { .. }) {
            HubError::HandshakeTimeout
        } else {
            HubError::ServerTimeout
        };
        self.handle_write_failed(now, error);
    }

    /// A request made while not connected: queued in the outbox while reconnecting (until it
    /// is full).
    pub(super) fn hold(&mut self, request: Request<S>) {
        match request {
            Request::Cancel { id } => {
                // A stream dropped before it was ever sent: forget it.
                self.unqueue_stream(&id);
            }
            // Items in flight when the link broke follow their call through the outbox (the
            // pumps pause while not connected, so there are at most a few), and sends already
            // reported done are never refused (see `Outbox`).
            request
                if self
                    .outbox
                    .has_room_for(&request, self.settings.outbox_capacity) =>
            {
                self.outbox.push_back(request);
            }
            request => {
                self.meters.outbox_rejected();
                let capacity = self.settings.outbox_capacity;
                let error = || HubError::OutboxFull { capacity };
                let unsent = request.refuse(error);
                self.note_refused(unsent, &error());
            }
        }
        self.meters.outbox_depth(self.outbox.len());
    }

    /// Forgets stream `id` if it is still in the outbox; `true` if it was.
    pub(super) fn unqueue_stream(&mut self, id: &str) -> bool {
        self.outbox.remove_stream(id)
    }

    pub(super) fn reject(request: Request<S>, state: HubConnectionState) {
        let error = || HubError::NotConnected { state };
        if let Refused::Unsent = request.refuse(error) {
            note_unsent(1, &error());
        }
    }

    pub(super) fn note_refused(&mut self, refused: Refused<S>, error: &HubError) {
        match refused {
            Refused::Answered => {}
            Refused::Unsent => note_unsent(1, error),
            Refused::Stop(reply) => {
                self.events.push_back(Event::Stopped(vec![reply]));
            }
        }
    }

    /// Sends the calls held in the outbox, as far as the replay buffer has room.
    pub(super) fn flush_outbox(&mut self, now: Instant) {
        if !matches!(self.phase, Phase::Connected) || self.outbox.is_empty() || self.full() {
            return;
        }
        let before = self.outbox.len();
        while let Some(request) = self.outbox.pop_front() {
            self.carry(now, request);
            if self.out.messages >= BATCH || self.full() {
                break;
            }
        }
        debug!(calls = before - self.outbox.len(), "sending the outbox");
        self.meters.outbox_depth(self.outbox.len());
    }

    /// Encodes a request while connected.
    pub(super) fn carry(&mut self, now: Instant, request: Request<S>) {
        self.out.requests = true;
        match request {
            Request::Invoke {
                id,
                target,
                headers,
                arguments,
                stream_ids,
                reply,
            } => {
                let invocation = Invocation::new(id.clone(), target, arguments)
                    .with_stream_ids(stream_ids)
                    .with_headers(headers);
                let message = HubMessage::Invocation(invocation);
                match self.encode(&message) {
                    Ok(()) => {
                        self.pending.insert(id, Pending::Invoke(reply));
                    }
                    Err(e) => reply.answer(Err(unencodable(&message, e))),
                }
            }
            Request::Send {
                target,
                headers,
                arguments,
                stream_ids,
                reply,
                reservation,
            } => {
                let message = HubMessage::Invocation(
                    Invocation::non_blocking(target, arguments)
                        .with_stream_ids(stream_ids)
                        .with_headers(headers),
                );
                match (self.encode(&message), reply) {
                    (Ok(()), Some(reply)) => self.out.sends.push(reply),
                    (Ok(()), None) => self.out.done_sends += 1,
                    (Err(e), Some(reply)) => reply.answer(Err(unencodable(&message, e))),
                    (Err(e), None) => warn!(error = %e, "send not made"),
                }
                self.out.reservations.extend(reservation);
            }
            Request::Stream {
                id,
                target,
                headers,
                arguments,
                stream_ids,
                items,
            } => {
                let mut invocation = StreamInvocation::new(id.clone(), target, arguments)
                    .with_stream_ids(stream_ids);
                invocation.headers = headers;
                let message = HubMessage::StreamInvocation(invocation);
                match self.encode(&message) {
                    Ok(()) => {
                        self.pending.insert(id, Pending::Stream(items));
                    }
                    Err(e) => items.push(Err(unencodable(&message, e))),
                }
            }
            Request::Cancel { id } => {
                if self.pending.remove(&id).is_some() {
                    let message = HubMessage::CancelInvocation(CancelInvocation::new(id.clone()));
                    let _ = self.encode(&message);
                }
                // A cancelled stream's held item goes nowhere; reading goes on.
                let link = self.link.as_mut();
                if let Some(link) = link {
                    if link
                        .held
                        .as_ref()
                        .is_some_and(|h| h.item.invocation_id == id)
                    {
                        link.held = None;
                        self.timers.stop(Timer::StreamConsumer);
                        self.drain(now);
                    }
                }
            }
            Request::UploadItem { id, item } => {
                let _ = self.encode(&HubMessage::StreamItem(StreamItem::new(id, item)));
            }
            Request::UploadDone { id, error } => {
                let end = match error {
                    None => Completion::void(id),
                    Some(e) => Completion::error(id, e),
                };
                let _ = self.encode(&HubMessage::Completion(end));
            }
            Request::Stop { reply } => self.stop(now, Some(reply)),
        }
    }

    /// Encodes `message` into the next write.
    pub(super) fn encode(
        &mut self,
        message: &HubMessage,
    ) -> std::result::Result<(), ProtocolError> {
        let out = &mut self.out;
        let start = out.buf.len();
        out.buf.reserve(wire_size(message));
        if let Err(e) = self.settings.protocol.encode(message, &mut out.buf) {
            // Only a caller's payload in the wrong format gets here; that call alone fails.
            warn!(error = %e, "message not sent");
            out.buf.truncate(start);
            return Err(e);
        }
        let stateful = self.link.as_ref().is_some_and(|l| l.stateful.is_some());
        if stateful && message.message_type().is_trackable() {
            out.tracked.push(start..out.buf.len());
            out.tracked_bytes += out.buf.len() - start;
        }
        out.messages += 1;
        Ok(())
    }

    /// Puts the tracked messages of `out`, written as `frames`, in the replay buffer.
    pub(super) fn commit(&mut self, out: &mut Out<S>, frames: &Bytes) {
        let Some(buffer) = self.link.as_mut().and_then(|l| l.stateful.as_mut()) else {
            return;
        };
        if out.tracked.is_empty() {
            return;
        }
        // Kept for replay as slices of the bytes sent: no second copy.
        for range in out.tracked.drain(..) {
            buffer.on_sent(frames.slice(range));
        }
        out.tracked_bytes = 0;
        let buffered = buffer.buffered_bytes();
        let room = buffer.room();
        self.meters.replay_bytes(buffered);
        self.events.push_back(Event::ReplayBytes(buffered));
        self.events.push_back(Event::SendRoom(room));
    }

    /// Messages encoded and never written, at a loss: with stateful reconnect they join the
    /// replay; without, they are lost, as a write that failed.
    pub(super) fn settle_unwritten(
        &mut self,
        mut out: Out<S>,
        stateful: bool,
        error: &Arc<HubError>,
    ) {
        if stateful && !out.buf.is_empty() {
            let frames = out.buf.split().freeze();
            self.commit(&mut out, &frames);
        }
        Self::settle(out, stateful, error);
    }

    /// Answers the sends of a write that failed: accepted when the replay buffer has them.
    pub(super) fn settle(out: Out<S>, accepted: bool, error: &Arc<HubError>) {
        if !accepted {
            note_unsent(out.done_sends, error);
        }
        for reply in out.sends {
            reply.answer(if accepted {
                Ok(())
            } else {
                Err(failure(error))
            });
        }
    }

    /// Fails every call in flight, and every call waiting in the outbox, with `error`.
    pub(super) fn fail_pending(&mut self, error: &Arc<HubError>) {
        for (_, pending) in self.pending.drain() {
            match pending {
                Pending::Invoke(reply) => reply.answer(Err(failure(error))),
                Pending::Stream(items) => items.push(Err(failure(error))),
            }
        }
        let mut unsent = 0;
        for request in self.outbox.take() {
            match request.refuse(|| failure(error)) {
                Refused::Answered => {}
                Refused::Unsent => unsent += 1,
                Refused::Stop(reply) => self.stops.push(reply),
            }
        }
        self.meters.outbox_depth(0);
        note_unsent(unsent, error);
    }
}
