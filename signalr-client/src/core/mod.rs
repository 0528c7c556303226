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

pub(crate) mod fake;
mod inbound;
mod lifecycle;
mod outbound;
mod outbox;
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
    Arguments, Headers, HubMessage, HubProtocol, MessageDecoder, ProtocolError, StreamItem,
    TransportKind, stateful::MessageBuffer,
};
use signalr_reconnect::{ExponentialBackoff, KeepAlive, KeepAliveConfig, Reconnect, RetryPolicy};
use tracing::warn;

pub(crate) use request::{Answer, ENVELOPE, Request, Room, Sinks, StreamSink, send_size};
use timers::TimerTable;

use crate::{
    error::{HubError, PayloadPart},
    meter::Meters,
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
    /// The outcome of the start (boxed: the event queue is sized by its largest event).
    Started(std::result::Result<(), Box<HubError>>),
    Reconnecting(Arc<HubError>),
    Reconnected(Option<String>),
    /// Closed for good: `None` after a stop.
    Closed(Option<Arc<HubError>>),
    /// The stops to acknowledge: the connection is down.
    Stopped(Vec<S::Stop>),
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
    settings: Arc<Settings>,
    phase: Phase,
    reconnect: Reconnect,
    timers: TimerTable,
    pending: HashMap<String, Pending<S>>,
    /// Calls made while reconnecting (or held back by a full replay buffer), in order.
    outbox: outbox::Outbox<S>,
    link: Option<Box<Link>>,
    out: Out<S>,
    /// The write the shell is doing.
    flight: Option<Out<S>>,
    events: VecDeque<Event<S>>,
    /// Calls for the client's handlers, taken as one batch by [`Core::poll_calls`].
    calls: Vec<ServerCall>,
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
    pub(crate) fn new(settings: Arc<Settings>) -> Self {
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
            outbox: outbox::Outbox::default(),
            link: None,
            out: Out::default(),
            flight: None,
            events: VecDeque::new(),
            calls: Vec::new(),
            actions: VecDeque::new(),
            stops: Vec::new(),
            closed: None,
            last: None,
            attempts: 0,
        }
    }

    /// The next thing to report.
    pub(crate) fn poll_event(&mut self) -> Option<Event<S>> {
        let event = self.events.pop_front();
        if event.is_none() && self.events.capacity() > 0 {
            // Events come in bursts (a connection, a loss): an idle connection keeps no room
            // for them.
            self.events = VecDeque::new();
        }
        event
    }

    /// The server's calls decoded since the last poll, in order: one batch for the handlers.
    pub(crate) fn poll_calls(&mut self) -> Vec<ServerCall> {
        std::mem::take(&mut self.calls)
    }

    /// The next thing to do.
    pub(crate) fn poll_action(&mut self) -> Option<Action> {
        if let Some(action) = self.actions.pop_front() {
            return Some(action);
        }
        if self.actions.capacity() > 0 {
            self.actions = VecDeque::new();
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
