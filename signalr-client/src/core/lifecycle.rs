//! The lifecycle: start, handshake, retries, reconnects, resumes, stop and the end; the
//! transport's opening and closing, and the timers.

use std::{sync::Arc, time::Instant};

use bytes::BytesMut;
use signalr_protocol::{
    Close, HandshakeRequest, HubMessage, HubProtocol, MessageDecoder, TransportKind,
    stateful::MessageBuffer,
};
use signalr_reconnect::{
    KeepAlive, KeepAliveEvent, Reason, Reconnect, ReconnectDecision, ReconnectEvent, RetryContext,
    RetryPolicy,
};
use tracing::{debug, info, warn};

use super::request::Sinks;
use super::timers::Timer;
use super::{
    ACK_DELAY, Action, Attempt, CLOSE_GRACE, Core, Event, Link, Opened, Out, Phase, resumable,
    resume_backoff,
};
use crate::{error::HubError, meter::CloseReason, state::HubConnectionState};

impl<S: Sinks> Core<S> {
    /// Starts the connection: the first attempt (retried by the initial-start policy).
    pub(crate) fn handle_start(&mut self, now: Instant) {
        if !matches!(self.phase, Phase::Idle) {
            return;
        }
        self.reconnect.on_start_requested(now);
        self.phase = Phase::Connecting { initial: true };
        self.actions.push_back(Action::Connect(None));
    }

    /// The shell opened a transport: the handshake goes out.
    pub(crate) fn handle_transport_opened(&mut self, now: Instant, opened: Opened) {
        let Phase::Connecting { initial } = self.phase else {
            return;
        };
        // Version 2 asks for stateful reconnect; only WebSockets resume.
        let stateful = self
            .settings
            .stateful_buffer
            .filter(|_| opened.stateful && opened.kind == TransportKind::WebSockets);
        let protocol = &self.settings.protocol;
        HandshakeRequest::new(protocol.name(), if stateful.is_some() { 2 } else { 1 })
            .encode(&mut self.out.buf);
        // `HubConnectionBuilder::build` refused any keep-alive settings this could refuse, and
        // they cannot change after: not a failure a connection can meet.
        let keep_alive = KeepAlive::new(self.settings.keep_alive, now)
            .expect("keep-alive settings are checked by HubConnectionBuilder::build");
        self.link = Some(Box::new(Link {
            kind: opened.kind,
            connection_id: opened.connection_id,
            handshake: Some(BytesMut::new()),
            decoder: MessageDecoder::new(Arc::clone(protocol)),
            keep_alive,
            stateful: stateful.map(MessageBuffer::new),
            held: None,
        }));
        self.phase = Phase::Handshaking { initial };
        self.update_timers();
    }

    /// The attempt to open a transport failed.
    pub(crate) fn handle_connect_failed(&mut self, now: Instant, error: HubError) {
        if matches!(self.phase, Phase::Connecting { .. }) {
            self.attempt_failed(now, error);
        }
    }

    /// The new WebSocket to the connection being resumed is open: the replay goes out.
    pub(crate) fn handle_resumed(&mut self, now: Instant) {
        let Phase::Resuming { replaying, .. } = &mut self.phase else {
            return;
        };
        *replaying = true;
        let Some(link) = self.link.as_mut() else {
            return;
        };
        link.decoder = MessageDecoder::new(Arc::clone(&self.settings.protocol));
        link.keep_alive.on_message_received(now);
        let replay = link
            .stateful
            .as_mut()
            .map(|b| b.resume_into(self.settings.protocol.as_ref(), &mut self.out.buf));
        match replay {
            Some(Ok((_, replayed))) => {
                self.out.messages += replayed + 1;
                debug!(replayed, "replaying");
            }
            _ => self.resume_failed(now, &HubError::ConnectionClosed),
        }
        self.update_timers();
    }

    /// The attempt to resume failed.
    pub(crate) fn handle_resume_failed(&mut self, now: Instant, error: &HubError) {
        if matches!(self.phase, Phase::Resuming { .. }) {
            self.resume_failed(now, error);
        }
    }

    /// The transport given to [`Action::Close`] is closed; `close_sent` when Close was written.
    pub(crate) fn handle_closed(&mut self, _now: Instant, close_sent: Option<usize>) {
        if let Some(bytes) = close_sent {
            self.meters.sent(1, bytes);
        }
        if matches!(self.phase, Phase::Disconnecting { .. }) {
            self.disconnected(None);
        }
    }

    /// A deadline of [`poll_timeout`](Self::poll_timeout) passed.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.expire(now) {
            match timer {
                Timer::KeepAlive => self.keep_alive_timeout(now),
                Timer::Ack => {
                    let ack = self
                        .link
                        .as_mut()
                        .and_then(|l| l.stateful.as_mut())
                        .and_then(MessageBuffer::take_ack);
                    // Not connected: the Ack goes out once resumed.
                    if let (Some(ack), Phase::Connected) = (ack, &self.phase) {
                        debug!(sequence_id = ack.sequence_id, "sending Ack");
                        let _ = self.encode(&HubMessage::Ack(ack));
                    }
                }
                Timer::Retry => self.retry_due(now),
                Timer::ResumeRetry => {
                    if matches!(self.phase, Phase::Resuming { .. }) {
                        self.actions.push_back(Action::Resume);
                    }
                }
                Timer::CloseGrace => {
                    if matches!(self.phase, Phase::Disconnecting { .. }) {
                        debug!("closing took too long; given up");
                        self.disconnected(None);
                    }
                }
                Timer::StreamConsumer => {
                    if let Some(held) = self.link.as_mut().and_then(|l| l.held.as_mut()) {
                        held.expired = true;
                    }
                    if matches!(self.phase, Phase::Connected) {
                        self.release_held();
                        self.drain(now);
                    }
                }
            }
        }
        self.update_timers();
    }

    pub(super) fn handshake_completed(&mut self, now: Instant, initial: bool) {
        let protocol = Arc::clone(&self.settings.protocol);
        let Some(link) = self.link.as_mut() else {
            return;
        };
        let rest = link.handshake.take().unwrap_or_default();
        // Messages that came in the same read as the handshake response are decoded next.
        link.decoder = MessageDecoder::with_buffer(protocol, rest);
        link.keep_alive.on_handshake_completed(now);
        if link.kind == TransportKind::LongPolling {
            // The poll cycle keeps long polling alive; the official clients neither ping nor
            // time out the server there.
            link.keep_alive.set_pings_enabled(false);
            link.keep_alive.set_server_timeout_enabled(false);
        }
        let kind = link.kind;
        let connection_id = link.connection_id.clone();
        let stateful = link.stateful.is_some();
        let room = link
            .stateful
            .as_ref()
            .map_or(usize::MAX, MessageBuffer::room);
        info!(
            transport = kind.as_str(),
            connection_id = connection_id.as_deref().unwrap_or("-"),
            "connected"
        );
        if !initial {
            let outage = self.reconnect.outage().map(|o| o.elapsed(now));
            self.meters
                .reconnect_attempt(Some(outage.unwrap_or_default()));
        }
        self.reconnect.on_connected();
        self.phase = Phase::Connected;
        self.last = None;
        self.events.push_back(Event::Connected {
            kind,
            connection_id: connection_id.clone(),
            stateful,
        });
        self.events.push_back(Event::SendRoom(room));
        self.events
            .push_back(Event::ConnectionId(connection_id.clone()));
        self.events
            .push_back(Event::State(HubConnectionState::Connected));
        if initial {
            self.meters.started(kind);
            self.events.push_back(Event::Started(Ok(())));
        } else {
            self.events.push_back(Event::Reconnected(connection_id));
        }
        self.drain(now);
    }

    /// An attempt (the start, or a reconnect) failed before the connection was up.
    pub(super) fn attempt_failed(&mut self, now: Instant, error: HubError) {
        let (Phase::Connecting { initial } | Phase::Handshaking { initial }) = self.phase else {
            return;
        };
        self.drop_link();
        if initial {
            let error = Arc::new(error);
            // What another attempt cannot fix (a 404, a refused token, a handshake error: the
            // configuration is wrong) fails start at once, whatever the policy.
            let decision = if error.is_retryable() {
                self.reconnect
                    .on_start_failed(now, Arc::clone(&error) as Reason)
            } else {
                ReconnectDecision::GiveUp
            };
            if let ReconnectDecision::RetryAt(at) = decision {
                info!(error = format!("{error:#}"), "start failed; retrying");
                self.phase = Phase::Waiting { initial: true };
                self.timers.set(Timer::Retry, at);
                return;
            }
            // The machine keeps the reasons it was given; the error goes back owned.
            self.reconnect = Reconnect::new();
            let error = Arc::try_unwrap(error).unwrap_or_else(HubError::ConnectionLost);
            self.start_failed(error);
        } else {
            self.meters.reconnect_attempt(None);
            debug!(error = format!("{error:#}"), "reconnect attempt failed");
            let error = Arc::new(error);
            self.last = Some(Arc::clone(&error));
            let decision = self.reconnect.on_attempt_failed(now, error as Reason);
            self.schedule(now, decision);
        }
    }

    /// The start failed for good (or was stopped): no close event, as in the official clients.
    pub(super) fn start_failed(&mut self, error: HubError) {
        self.drop_link();
        self.timers.stop_all();
        self.phase = Phase::Disconnected;
        self.closed = Some(Arc::new(HubError::Stopped));
        self.events
            .push_back(Event::State(HubConnectionState::Disconnected));
        self.events.push_back(Event::Started(Err(Box::new(error))));
        let stops = std::mem::take(&mut self.stops);
        if !stops.is_empty() {
            self.events.push_back(Event::Stopped(stops));
        }
    }

    /// The next reconnect attempt after `decision`, or the end.
    pub(super) fn schedule(&mut self, now: Instant, decision: ReconnectDecision) {
        let last = self
            .last
            .clone()
            .unwrap_or_else(|| Arc::new(HubError::ConnectionClosed));
        if let ReconnectDecision::RetryAt(at) = decision {
            info!(
                signalr.attempt = self.attempts + 1,
                signalr.delay_ms = u64::try_from(at.saturating_duration_since(now).as_millis())
                    .unwrap_or(u64::MAX),
                signalr.reason = format!("{last:#}"),
                "reconnect attempt scheduled"
            );
            self.phase = Phase::Waiting { initial: false };
            self.timers.set(Timer::Retry, at);
        } else {
            info!(
                signalr.attempts = self.attempts,
                signalr.reason = format!("{last:#}"),
                "reconnect gave up"
            );
            // Said once: why it gave up, with the last attempt's error as the cause.
            let elapsed = self
                .reconnect
                .outage()
                .map(|o| o.elapsed(now))
                .unwrap_or_default();
            let error = HubError::ReconnectFailed {
                attempts: self.attempts,
                elapsed,
                last,
            };
            self.disconnected(Some(Arc::new(error)));
        }
    }

    /// The retry timer fired: the next attempt starts.
    pub(super) fn retry_due(&mut self, now: Instant) {
        let Phase::Waiting { initial } = self.phase else {
            return;
        };
        let Some(ReconnectEvent::StartAttempt { attempt }) = self.reconnect.handle_timeout(now)
        else {
            self.timers
                .set_opt(Timer::Retry, self.reconnect.poll_timeout());
            return;
        };
        self.phase = Phase::Connecting { initial };
        if initial {
            self.actions.push_back(Action::Connect(None));
            return;
        }
        let attempt = Attempt {
            number: attempt,
            elapsed: self.reconnect.elapsed(now).unwrap_or_default(),
            reason: self
                .last
                .clone()
                .unwrap_or_else(|| Arc::new(HubError::ConnectionClosed)),
        };
        self.attempts += 1;
        self.actions.push_back(Action::Connect(Some(attempt)));
    }

    /// The connected session ended with `error`: resume it when it can be, else reconnect.
    pub(super) fn lost(&mut self, now: Instant, error: HubError) {
        if !matches!(self.phase, Phase::Connected) {
            return;
        }
        let stateful = self.link.as_ref().is_some_and(|l| l.stateful.is_some());
        let error = Arc::new(error);
        // What was encoded and not yet written: with stateful reconnect it is replayed.
        let out = std::mem::take(&mut self.out);
        self.settle_unwritten(out, stateful, &error);
        self.actions.push_back(Action::Discard);
        self.timers.stop(Timer::Ack);
        if stateful && resumable(&error) {
            self.phase = Phase::Resuming {
                began: now,
                failures: 0,
                loss: error,
                replaying: false,
            };
            self.actions.push_back(Action::Resume);
            return;
        }
        self.reconnect_after(now, error);
    }

    /// A full reconnect after a loss (or a resume that could not be done).
    pub(super) fn reconnect_after(&mut self, now: Instant, error: Arc<HubError>) {
        self.link = None;
        for timer in [
            Timer::KeepAlive,
            Timer::Ack,
            Timer::StreamConsumer,
            Timer::ResumeRetry,
        ] {
            self.timers.stop(timer);
        }
        self.fail_pending(&error);
        warn!(error = format!("{error:#}"), "connection lost");
        let decision = match &*error {
            HubError::ServerClosed {
                allow_reconnect: false,
                ..
            } => self
                .reconnect
                .on_close_message(now, false, Arc::clone(&error) as Reason),
            _ => self
                .reconnect
                .on_connection_lost(now, Arc::clone(&error) as Reason),
        };
        if matches!(decision, ReconnectDecision::GiveUp) {
            self.disconnected(Some(error));
            return;
        }
        self.events
            .push_back(Event::State(HubConnectionState::Reconnecting));
        self.events.push_back(Event::ConnectionId(None));
        self.events
            .push_back(Event::Reconnecting(Arc::clone(&error)));
        self.last = Some(error);
        self.attempts = 0;
        self.schedule(now, decision);
    }

    pub(super) fn resume_failed(&mut self, now: Instant, error: &HubError) {
        let Phase::Resuming {
            began,
            failures,
            loss,
            replaying,
        } = &mut self.phase
        else {
            return;
        };
        self.actions.push_back(Action::Discard);
        self.out = Out::default();
        // A 4xx answer means the server gave the connection up; then a new one is the only way.
        let gone = matches!(
            error,
            HubError::Transport(signalr_transport::TransportError::Status {
                status: 400..=499,
                ..
            })
        );
        if gone {
            debug!("the server no longer has the connection");
        } else {
            debug!(error = %error, "resume attempt failed");
            let ctx = RetryContext::new(*failures, now.saturating_duration_since(*began), error);
            if let Some(delay) = resume_backoff().next_retry_delay(&ctx) {
                *failures += 1;
                // The next attempt opens a new WebSocket.
                *replaying = false;
                self.timers.set(Timer::ResumeRetry, now + delay);
                return;
            }
        }
        let loss = Arc::clone(loss);
        let unacknowledged = self
            .link
            .as_ref()
            .and_then(|l| l.stateful.as_ref())
            .map_or(0, MessageBuffer::unacknowledged);
        warn!(
            unacknowledged,
            error = format!("{loss:#}"),
            "the connection could not be resumed; reconnecting"
        );
        let error = if unacknowledged > 0 {
            Arc::new(HubError::ResumeFailed {
                unacknowledged,
                cause: loss,
            })
        } else {
            loss
        };
        self.reconnect_after(now, error);
    }

    pub(super) fn resume_completed(&mut self, now: Instant) {
        let Phase::Resuming { began, .. } = self.phase else {
            return;
        };
        self.meters.resumed(now.saturating_duration_since(began));
        info!("connection resumed");
        self.phase = Phase::Connected;
        // Whatever the server sent before the cut may still need its Ack.
        self.timers.set(Timer::Ack, now + ACK_DELAY);
        if let Some(link) = &self.link {
            let room = link
                .stateful
                .as_ref()
                .map_or(usize::MAX, MessageBuffer::room);
            self.events.push_back(Event::SendRoom(room));
        }
        self.release_held();
        self.drain(now);
    }

    /// A stop (or every handle dropped, `reply` `None`).
    pub(super) fn stop(&mut self, now: Instant, reply: Option<S::Stop>) {
        self.stops.extend(reply);
        match self.phase {
            Phase::Idle
            | Phase::Connecting { initial: true }
            | Phase::Handshaking { initial: true }
            | Phase::Waiting { initial: true } => {
                self.reconnect = Reconnect::new();
                self.start_failed(HubError::Stopped);
            }
            Phase::Connecting { .. }
            | Phase::Handshaking { .. }
            | Phase::Waiting { .. }
            | Phase::Resuming { .. } => {
                self.reconnect.on_stop_requested();
                self.disconnected(None);
            }
            Phase::Connected => {
                self.events
                    .push_back(Event::State(HubConnectionState::Disconnecting));
                let mut frame = BytesMut::new();
                let close = self
                    .settings
                    .protocol
                    .encode(&HubMessage::Close(Close::default()), &mut frame)
                    .ok()
                    .map(|()| frame.freeze());
                self.phase = Phase::Disconnecting {
                    close,
                    closing: false,
                };
                for timer in [Timer::KeepAlive, Timer::Ack, Timer::StreamConsumer] {
                    self.timers.stop(timer);
                }
                self.timers.set(Timer::CloseGrace, now + CLOSE_GRACE);
            }
            Phase::Disconnecting { .. } => {}
            Phase::Disconnected => {
                let stops = std::mem::take(&mut self.stops);
                if !stops.is_empty() {
                    self.events.push_back(Event::Stopped(stops));
                }
            }
        }
    }

    /// Closed for good: `reason` is what `on_close` gets (`None` after a stop); calls in flight
    /// and queued fail with it (or with `Stopped`).
    pub(super) fn disconnected(&mut self, reason: Option<Arc<HubError>>) {
        let error = reason
            .clone()
            .unwrap_or_else(|| Arc::new(HubError::Stopped));
        if let Some(flight) = self.flight.take() {
            Self::settle(flight, false, &error);
        }
        let out = std::mem::take(&mut self.out);
        self.settle_unwritten(out, false, &error);
        self.fail_pending(&error);
        self.drop_link();
        self.timers.stop_all();
        self.phase = Phase::Disconnected;
        self.closed = Some(error);
        self.meters.closed(match reason.as_deref() {
            None => CloseReason::Stopped,
            Some(HubError::ReconnectFailed { .. }) => CloseReason::GaveUp,
            Some(HubError::ServerClosed { .. }) => CloseReason::ByServer,
            Some(_) => CloseReason::Lost,
        });
        self.events.push_back(Event::ConnectionId(None));
        self.events.push_back(Event::Closed(reason));
        let stops = std::mem::take(&mut self.stops);
        if !stops.is_empty() {
            self.events.push_back(Event::Stopped(stops));
        }
    }

    /// Drops the current link, telling the shell to close its transport.
    pub(super) fn drop_link(&mut self) {
        if self.link.take().is_some() {
            self.actions.push_back(Action::Discard);
        }
        self.timers.stop(Timer::KeepAlive);
    }

    /// Keeps the keep-alive timer on the machine's next deadline.
    pub(super) fn update_timers(&mut self) {
        let at = match self.phase {
            Phase::Connected | Phase::Handshaking { .. } => {
                self.link.as_ref().and_then(|l| l.keep_alive.poll_timeout())
            }
            _ => None,
        };
        self.timers.set_opt(Timer::KeepAlive, at);
    }

    pub(super) fn keep_alive_timeout(&mut self, now: Instant) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        match link.keep_alive.handle_timeout(now) {
            Some(KeepAliveEvent::SendPing) if matches!(self.phase, Phase::Connected) => {
                let _ = self.encode(&HubMessage::Ping);
            }
            Some(KeepAliveEvent::ServerTimedOut) => {
                warn!(
                    signalr.server_timeout_ms =
                        u64::try_from(self.settings.keep_alive.server_timeout.as_millis())
                            .unwrap_or(u64::MAX),
                    "server timeout: nothing received from the server"
                );
                self.lost(now, HubError::ServerTimeout);
            }
            Some(KeepAliveEvent::HandshakeTimedOut) => {
                self.attempt_failed(now, HubError::HandshakeTimeout);
            }
            _ => {}
        }
    }

    /// Every handle was dropped: closes as a stop would, with nobody to tell.
    pub(crate) fn handle_abandoned(&mut self, now: Instant) {
        self.stop(now, None);
    }
}
