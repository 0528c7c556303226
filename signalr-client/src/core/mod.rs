//! The connection core: the client's whole protocol as a state machine, in the shape of
//! quinn-proto's `Connection`. No runtime, no clock read, no I/O: every input comes with the
//! instant it happened, and every effect is polled.
//!
//! - **Inputs**: [`Core::handle_start`], [`Core::handle_request`] (the application's calls,
//!   sends, streams, cancels, upload items and stop), [`Core::handle_answer`] (a client result),
//!   [`Core::handle_transport_opened`] / [`Core::handle_connect_failed`],
//!   [`Core::handle_received`], [`Core::handle_transport_error`],
//!   [`Core::handle_transport_closed`], [`Core::handle_written`] /
//!   [`Core::handle_write_failed`], [`Core::handle_resumed`] / [`Core::handle_resume_failed`],
//!   [`Core::handle_closed`], [`Core::handle_stream_room`] (a stream consumer made room) and
//!   [`Core::handle_timeout`].
//! - **Outputs**: [`Core::poll_transmit`] (bytes to write, one write at a time),
//!   [`Core::poll_timeout`] (the one deadline to sleep until), [`Core::poll_event`] (state
//!   changes, server invocations, the lifecycle's callbacks) and [`Core::poll_action`] (connect,
//!   resume, close, drop the transport).
//!
//! Answers to the application's requests go straight into the [`Sinks`] the requests carry
//! (never waiting), so that every request is answered by the core that holds it.
//!
//! It owns the calls in flight, the stream consumers' backpressure, the outbox, keep-alive, the
//! stateful-reconnect buffer and Acks, and the start, retry, reconnect and resume lifecycle
//! (through `signalr-reconnect`'s [`Reconnect`], [`KeepAlive`] and policies). All its deadlines
//! live in one [`TimerTable`].

mod request;
#[cfg(test)]
mod tests;
mod timers;

use std::{
    collections::{HashMap, VecDeque},
    ops::Range,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use signalr_protocol::{
    Arguments, CancelInvocation, Close, Completion, CompletionResult, HandshakeRequest,
    HandshakeResponse, Headers, HubMessage, HubProtocol, Invocation, MessageDecoder, ProtocolError,
    StreamInvocation, StreamItem, TransferFormat, TransportKind, stateful::MessageBuffer,
};
use signalr_reconnect::{
    ExponentialBackoff, KeepAlive, KeepAliveConfig, KeepAliveEvent, Reason, Reconnect,
    ReconnectDecision, ReconnectEvent, RetryContext, RetryPolicy,
};
use tracing::{debug, info, warn};

pub(crate) use request::{Answer, ENVELOPE, Refused, Request, Room, Sinks, StreamSink, send_size};
use timers::{Timer, TimerTable};

use crate::{
    error::{HandshakeError, HubError, PayloadPart, Result},
    meter::{CloseReason, Meters},
    state::HubConnectionState,
};

/// What the core is built with.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) protocol: Arc<dyn HubProtocol>,
    pub(crate) keep_alive: KeepAliveConfig,
    /// Stateful reconnect's replay-buffer limit in bytes, when enabled.
    pub(crate) stateful_buffer: Option<usize>,
    /// How many calls wait while reconnecting.
    pub(crate) outbox_capacity: usize,
    /// How long a full stream consumer may hold reading back before its stream fails.
    pub(crate) stream_consumer_timeout: Duration,
    pub(crate) retry: Option<Arc<dyn RetryPolicy>>,
    pub(crate) start_policy: Option<Arc<dyn RetryPolicy>>,
    /// Message content in the `trace` events.
    pub(crate) log_message_content: bool,
}

/// A call from the server to one of the client's handlers.
#[derive(Debug)]
pub(crate) struct ServerCall {
    pub(crate) target: String,
    /// The call's headers: its trace context, if the server sent one.
    pub(crate) headers: Headers,
    pub(crate) arguments: Arguments,
    /// Present for client results: the answer goes back as a Completion.
    pub(crate) invocation_id: Option<String>,
}

/// What a transport the shell opened offers.
#[derive(Clone, Debug)]
pub(crate) struct Opened {
    pub(crate) kind: TransportKind,
    pub(crate) connection_id: Option<String>,
    /// The server offered stateful reconnect, and there is a negotiated connection to resume.
    pub(crate) stateful: bool,
}

/// The next reconnect attempt, for the hook that may change where it goes.
#[derive(Clone, Debug)]
pub(crate) struct Attempt {
    /// From 1.
    pub(crate) number: u32,
    /// Since the connection was lost.
    pub(crate) elapsed: Duration,
    /// Why the last attempt failed (or the connection was lost).
    pub(crate) reason: Arc<HubError>,
}

/// What the shell must do.
#[derive(Debug)]
pub(crate) enum Action {
    /// Negotiate and open a transport, then report [`Core::handle_transport_opened`] or
    /// [`Core::handle_connect_failed`]. `None` for the start, else a reconnect attempt.
    Connect(Option<Attempt>),
    /// Open a WebSocket to the same negotiated connection, then report
    /// [`Core::handle_resumed`] or [`Core::handle_resume_failed`].
    Resume,
    /// Write `frame` (best effort) and close the transport, then report
    /// [`Core::handle_closed`]; the core gives up waiting on its own timer.
    Close(Option<Bytes>),
    /// Close and drop the current transport (lost, or its handshake failed).
    Discard,
}

/// What the core reports.
pub(crate) enum Event<S: Sinks> {
    /// A new session (not a resume): its handlers start.
    Connected {
        kind: TransportKind,
        connection_id: Option<String>,
        stateful: bool,
    },
    State(HubConnectionState),
    ConnectionId(Option<String>),
    /// The outcome of the start.
    Started(Result<()>),
    Reconnecting(Arc<HubError>),
    Reconnected(Option<String>),
    /// Closed for good: `None` after a stop.
    Closed(Option<Arc<HubError>>),
    /// The stops to acknowledge: the connection is down.
    Stopped(Vec<S::Stop>),
    /// A call for the client's handlers.
    Invocation(ServerCall),
    /// Room in the replay buffer (`usize::MAX` without one), for sends done once queued.
    SendRoom(usize),
    /// Bytes held in the replay buffer after a write.
    ReplayBytes(usize),
}

/// How long after the first unacknowledged message an Ack goes out, as the official clients do.
const ACK_DELAY: Duration = Duration::from_secs(1);

/// How long a stop may take to write Close and close the transport.
const CLOSE_GRACE: Duration = Duration::from_secs(6);

/// How long a lost stateful connection is tried to be resumed before a new one is made: under
/// the server's default disconnect timeout (15 s), after which it forgets the connection.
const RESUME_WINDOW: Duration = Duration::from_secs(10);

/// The most messages in one write.
const BATCH: usize = 256;

/// The delays between resume attempts (the first goes at once): 10 ms doubling to 500 ms, no
/// jitter (one client resuming its own connection has nobody to spread out from), while the
/// next attempt starts within [`RESUME_WINDOW`].
fn resume_backoff() -> ExponentialBackoff {
    ExponentialBackoff::new(Duration::from_millis(10))
        .with_max_delay(Duration::from_millis(500))
        .with_max_elapsed(RESUME_WINDOW)
}

enum Pending<S: Sinks> {
    Invoke(S::Invoke),
    Stream(S::Stream),
}

#[derive(Debug)]
enum Phase {
    /// Not started.
    Idle,
    /// An attempt to open a transport runs; `initial` for the start and its retries.
    Connecting {
        initial: bool,
    },
    /// The transport is open and the handshake runs.
    Handshaking {
        initial: bool,
    },
    /// Waiting for the next start or reconnect attempt.
    Waiting {
        initial: bool,
    },
    Connected,
    /// A lost stateful connection is being resumed; `replaying` once the new WebSocket is open
    /// and the replay is being written.
    Resuming {
        began: Instant,
        failures: u32,
        loss: Arc<HubError>,
        replaying: bool,
    },
    /// Stopping: what was queued before the stop is written, then Close.
    Disconnecting {
        /// The Close message (when it could be encoded).
        close: Option<Bytes>,
        /// [`Action::Close`] was given.
        closing: bool,
    },
    Disconnected,
}

/// A stream item its consumer has no room for yet.
struct Held {
    item: StreamItem,
    /// The stream consumer timeout passed while it could not be handled.
    expired: bool,
}

/// One physical connection, from the transport's opening.
struct Link {
    kind: TransportKind,
    connection_id: Option<String>,
    /// While handshaking: what has arrived of the handshake response.
    handshake: Option<BytesMut>,
    decoder: MessageDecoder<Arc<dyn HubProtocol>>,
    keep_alive: KeepAlive,
    /// The replay buffer, when stateful reconnect was asked for (granted once connected).
    stateful: Option<MessageBuffer>,
    /// A stream item waiting for room: nothing more is decoded until it is taken, while calls,
    /// pings, Acks and timeouts go on. Boxed: rare.
    held: Option<Box<Held>>,
}

/// Messages encoded and not yet handed to the shell, with the answers that wait on them.
struct Out<S: Sinks> {
    buf: BytesMut,
    /// Where each message the replay buffer keeps lies in `buf`.
    tracked: Vec<Range<usize>>,
    tracked_bytes: usize,
    messages: usize,
    /// It carries application requests: a failed write loses the connection as
    /// `ConnectionLost`.
    requests: bool,
    sends: Vec<S::Send>,
    reservations: Vec<S::Reservation>,
    /// Sends reported done when queued.
    done_sends: usize,
    /// Bytes handed to the shell.
    written: usize,
}

impl<S: Sinks> Default for Out<S> {
    fn default() -> Self {
        Self {
            buf: BytesMut::new(),
            tracked: Vec::new(),
            tracked_bytes: 0,
            messages: 0,
            requests: false,
            sends: Vec::new(),
            reservations: Vec::new(),
            done_sends: 0,
            written: 0,
        }
    }
}

/// The connection core. See the [module docs](self).
pub(crate) struct Core<S: Sinks> {
    settings: Settings,
    phase: Phase,
    reconnect: Reconnect,
    timers: TimerTable,
    pending: HashMap<String, Pending<S>>,
    /// Calls made while reconnecting (or held back by a full replay buffer), in order.
    outbox: VecDeque<Request<S>>,
    link: Option<Box<Link>>,
    out: Out<S>,
    /// The write the shell is doing.
    flight: Option<Out<S>>,
    events: VecDeque<Event<S>>,
    actions: VecDeque<Action>,
    stops: Vec<S::Stop>,
    /// Why the connection closed for good: what requests made after it get.
    closed: Option<Arc<HubError>>,
    /// The reconnect in progress: its last error and attempts so far.
    last: Option<Arc<HubError>>,
    attempts: u32,
    meters: Meters,
}

impl<S: Sinks> Core<S> {
    pub(crate) fn new(settings: Settings) -> Self {
        let mut reconnect = Reconnect::new();
        if let Some(policy) = &settings.retry {
            reconnect = reconnect.with_retry_policy(Arc::clone(policy));
        }
        if let Some(policy) = &settings.start_policy {
            reconnect = reconnect.with_start_policy(Arc::clone(policy));
        }
        Self {
            meters: Meters::new(settings.protocol.name()),
            settings,
            phase: Phase::Idle,
            reconnect,
            timers: TimerTable::default(),
            pending: HashMap::new(),
            outbox: VecDeque::new(),
            link: None,
            out: Out::default(),
            flight: None,
            events: VecDeque::new(),
            actions: VecDeque::new(),
            stops: Vec::new(),
            closed: None,
            last: None,
            attempts: 0,
        }
    }

    // ---- outputs ----

    /// The next thing to report.
    pub(crate) fn poll_event(&mut self) -> Option<Event<S>> {
        self.events.pop_front()
    }

    /// The next thing to do.
    pub(crate) fn poll_action(&mut self) -> Option<Action> {
        if let Some(action) = self.actions.pop_front() {
            return Some(action);
        }
        // A stop closes once what was queued before it is written.
        if let Phase::Disconnecting { close, closing } = &mut self.phase {
            if !*closing && self.flight.is_none() && self.out.buf.is_empty() {
                *closing = true;
                return Some(Action::Close(close.take()));
            }
        }
        None
    }

    /// The bytes to write next, once the previous write was reported. Calls waiting in the
    /// outbox go first, as far as the replay buffer has room.
    pub(crate) fn poll_transmit(&mut self, now: Instant) -> Option<Bytes> {
        if self.flight.is_some() {
            return None;
        }
        self.flush_outbox(now);
        if self.out.buf.is_empty() {
            return None;
        }
        let mut out = std::mem::take(&mut self.out);
        let frames = out.buf.split().freeze();
        out.written = frames.len();
        self.commit(&mut out, &frames);
        self.trace_data("data sent", &frames);
        self.flight = Some(out);
        Some(frames)
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// How long a write may take: a write that cannot finish (a blackholed socket's full
    /// buffer, a POST nobody answers) may hold the connection until the server timeout (or the
    /// handshake timeout), no longer. Then [`handle_write_timeout`](Self::handle_write_timeout).
    pub(crate) fn write_deadline(&self) -> Option<Instant> {
        let link = self.link.as_ref()?;
        link.keep_alive
            .server_deadline()
            .or_else(|| link.keep_alive.handshake_deadline())
    }

    /// Whether the shell should read the application's requests now: not while a full replay
    /// buffer (or the outbox before it) holds them back, nor while closing.
    pub(crate) fn wants_requests(&self) -> bool {
        match self.phase {
            Phase::Connected => self.outbox.is_empty() && !self.full() && self.out.messages < BATCH,
            Phase::Disconnecting { .. } | Phase::Disconnected | Phase::Idle => false,
            _ => true,
        }
    }

    /// Whether client-result answers may be written now (they are tracked messages too).
    pub(crate) fn wants_answers(&self) -> bool {
        matches!(self.phase, Phase::Connected) && !self.full()
    }

    /// Whether the shell should read the transport now: not while a stream item waits for room.
    pub(crate) fn wants_read(&self) -> bool {
        matches!(self.phase, Phase::Connected | Phase::Handshaking { .. })
            && self.link.as_ref().is_some_and(|l| l.held.is_none())
    }

    /// The consumer a held stream item waits for: when it has room, call
    /// [`handle_stream_room`](Self::handle_stream_room).
    pub(crate) fn blocked_stream(&self) -> Option<&S::Stream> {
        let held = self.link.as_ref()?.held.as_ref()?;
        match self.pending.get(&held.item.invocation_id)? {
            Pending::Stream(items) => Some(items),
            Pending::Invoke(_) => None,
        }
    }

    /// Disconnected for good: nothing more will happen.
    pub(crate) fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Disconnected)
    }

    /// The replay buffer has no room (counting what is encoded and not yet written).
    fn full(&self) -> bool {
        self.link
            .as_ref()
            .and_then(|l| l.stateful.as_ref())
            .is_some_and(|b| b.room() <= self.out.tracked_bytes)
    }

    // ---- lifecycle inputs ----

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

    // ---- application inputs ----

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

    /// Every handle was dropped: closes as a stop would, with nobody to tell.
    pub(crate) fn handle_abandoned(&mut self, now: Instant) {
        self.stop(now, None);
    }

    /// A client-result answer from the handlers.
    pub(crate) fn handle_answer(&mut self, _now: Instant, completion: Completion) {
        if matches!(self.phase, Phase::Connected) {
            // An answer of the session's handlers; a new session has new handlers.
            let _ = self.encode(&HubMessage::Completion(completion));
        }
    }

    /// The consumer of the held stream item may have room now.
    pub(crate) fn handle_stream_room(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Connected) {
            self.release_held();
            self.drain(now);
        }
    }

    // ---- transport inputs ----

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

    // ---- the lifecycle ----

    fn handshake_completed(&mut self, now: Instant, initial: bool) {
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
    fn attempt_failed(&mut self, now: Instant, error: HubError) {
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
    fn start_failed(&mut self, error: HubError) {
        self.drop_link();
        self.timers.stop_all();
        self.phase = Phase::Disconnected;
        self.closed = Some(Arc::new(HubError::Stopped));
        self.events
            .push_back(Event::State(HubConnectionState::Disconnected));
        self.events.push_back(Event::Started(Err(error)));
        let stops = std::mem::take(&mut self.stops);
        if !stops.is_empty() {
            self.events.push_back(Event::Stopped(stops));
        }
    }

    /// The next reconnect attempt after `decision`, or the end.
    fn schedule(&mut self, now: Instant, decision: ReconnectDecision) {
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
    fn retry_due(&mut self, now: Instant) {
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
    fn lost(&mut self, now: Instant, error: HubError) {
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
    fn reconnect_after(&mut self, now: Instant, error: Arc<HubError>) {
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

    fn resume_failed(&mut self, now: Instant, error: &HubError) {
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

    fn resume_completed(&mut self, now: Instant) {
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
    fn stop(&mut self, now: Instant, reply: Option<S::Stop>) {
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
    fn disconnected(&mut self, reason: Option<Arc<HubError>>) {
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
    fn drop_link(&mut self) {
        if self.link.take().is_some() {
            self.actions.push_back(Action::Discard);
        }
        self.timers.stop(Timer::KeepAlive);
    }

    /// Keeps the keep-alive timer on the machine's next deadline.
    fn update_timers(&mut self) {
        let at = match self.phase {
            Phase::Connected | Phase::Handshaking { .. } => {
                self.link.as_ref().and_then(|l| l.keep_alive.poll_timeout())
            }
            _ => None,
        };
        self.timers.set_opt(Timer::KeepAlive, at);
    }

    fn keep_alive_timeout(&mut self, now: Instant) {
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

    // ---- requests ----

    /// A request made while not connected: queued in the outbox while reconnecting (until it
    /// is full).
    fn hold(&mut self, request: Request<S>) {
        match request {
            // Items in flight when the link broke follow their call through the outbox; the
            // pumps pause while not connected, so there are at most a few.
            Request::UploadItem { .. } | Request::UploadDone { .. } => {
                self.outbox.push_back(request);
            }
            Request::Cancel { id } => {
                // A stream dropped before it was ever sent: forget it.
                self.unqueue_stream(&id);
            }
            request if self.outbox.len() < self.settings.outbox_capacity => {
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
    fn unqueue_stream(&mut self, id: &str) -> bool {
        let before = self.outbox.len();
        self.outbox
            .retain(|r| !matches!(r, Request::Stream { id: queued, .. } if queued == id));
        before != self.outbox.len()
    }

    fn reject(request: Request<S>, state: HubConnectionState) {
        let error = || HubError::NotConnected { state };
        if let Refused::Unsent = request.refuse(error) {
            note_unsent(1, &error());
        }
    }

    fn note_refused(&mut self, refused: Refused<S>, error: &HubError) {
        match refused {
            Refused::Answered => {}
            Refused::Unsent => note_unsent(1, error),
            Refused::Stop(reply) => {
                self.events.push_back(Event::Stopped(vec![reply]));
            }
        }
    }

    /// Sends the calls held in the outbox, as far as the replay buffer has room.
    fn flush_outbox(&mut self, now: Instant) {
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
    fn carry(&mut self, now: Instant, request: Request<S>) {
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
    fn encode(&mut self, message: &HubMessage) -> std::result::Result<(), ProtocolError> {
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
    fn commit(&mut self, out: &mut Out<S>, frames: &Bytes) {
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
    fn settle_unwritten(&mut self, mut out: Out<S>, stateful: bool, error: &Arc<HubError>) {
        if stateful && !out.buf.is_empty() {
            let frames = out.buf.split().freeze();
            self.commit(&mut out, &frames);
        }
        Self::settle(out, stateful, error);
    }

    /// Answers the sends of a write that failed: accepted when the replay buffer has them.
    fn settle(out: Out<S>, accepted: bool, error: &Arc<HubError>) {
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
    fn fail_pending(&mut self, error: &Arc<HubError>) {
        for (_, pending) in self.pending.drain() {
            match pending {
                Pending::Invoke(reply) => reply.answer(Err(failure(error))),
                Pending::Stream(items) => items.push(Err(failure(error))),
            }
        }
        let mut unsent = 0;
        for request in std::mem::take(&mut self.outbox) {
            match request.refuse(|| failure(error)) {
                Refused::Answered => {}
                Refused::Unsent => unsent += 1,
                Refused::Stop(reply) => self.stops.push(reply),
            }
        }
        self.meters.outbox_depth(0);
        note_unsent(unsent, error);
    }

    // ---- messages from the server ----

    /// Handles the decoded messages until none is left, a stream item waits for room, or the
    /// connection is lost.
    fn drain(&mut self, now: Instant) {
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

    fn on_message(&mut self, now: Instant, message: HubMessage) -> Result<()> {
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
                self.events.push_back(Event::Invocation(ServerCall {
                    headers: m.headers,
                    target: m.target,
                    arguments: m.arguments,
                    invocation_id: m.invocation_id,
                }));
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
    fn on_stream_item(&mut self, now: Instant, item: StreamItem) {
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
    fn release_held(&mut self) {
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
    fn cancel_stream(&mut self, id: String) {
        let Some(Pending::Stream(items)) = self.pending.remove(&id) else {
            return;
        };
        items.push(Err(HubError::StreamConsumerTooSlow));
        let _ = self.encode(&HubMessage::CancelInvocation(CancelInvocation::new(id)));
    }

    /// A `trace` event for `data` going out or coming in: its size, and its content only when
    /// the user asked for it.
    fn trace_data(&self, what: &'static str, data: &[u8]) {
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

/// About how many bytes `message` takes on the wire.
fn wire_size(message: &HubMessage) -> usize {
    match message {
        HubMessage::Invocation(m) => send_size(&m.target, &m.arguments),
        HubMessage::StreamItem(m) => ENVELOPE + m.item.as_bytes().len(),
        _ => ENVELOPE,
    }
}

/// The error for a call whose arguments the protocol cannot encode.
fn unencodable(message: &HubMessage, source: ProtocolError) -> HubError {
    let method = match message {
        HubMessage::Invocation(i) => i.target.clone(),
        HubMessage::StreamInvocation(i) => i.target.clone(),
        _ => String::new(),
    };
    HubError::Payload {
        method,
        part: PayloadPart::Arguments,
        source,
    }
}

/// Whether a loss may be repaired by resuming the same connection: a broken socket, yes; a
/// Close, a protocol violation or a stop, no.
fn resumable(error: &HubError) -> bool {
    matches!(
        error,
        HubError::Transport(_)
            | HubError::ConnectionClosed
            | HubError::ServerTimeout
            | HubError::ConnectionLost(_)
    )
}

/// What a call in flight fails with when the connection ends with `error`.
fn failure(error: &Arc<HubError>) -> HubError {
    match &**error {
        HubError::Stopped => HubError::Stopped,
        _ => HubError::ConnectionLost(Arc::clone(error)),
    }
}

/// Logs the sends reported done when queued that will not go out.
fn note_unsent(unsent: usize, error: &HubError) {
    if unsent > 0 {
        warn!(
            unsent,
            error = format!("{error:#}"),
            "sends queued before the connection was lost were not sent"
        );
    }
}
