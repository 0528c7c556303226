//! The driver: one task per started connection. It owns the transport, the decoder, the
//! keep-alive and reconnect state machines and the table of calls in flight; handles talk to it
//! over channels. Its one timer sleeps until the earlier of the keep-alive and reconnect
//! deadlines, read from the sans-IO machines.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    task::Poll,
    time::Duration,
};

use bytes::BytesMut;
use signalr_protocol::stateful::MessageBuffer;
use signalr_protocol::{
    CancelInvocation, Close, CompletionResult, HandshakeRequest, HandshakeResponse, HubMessage,
    HubProtocol, Invocation, MessageDecoder, Payload, StreamInvocation, TransferFormat,
    TransportKind,
};
use signalr_reconnect::{
    ExponentialBackoff, KeepAlive, KeepAliveEvent, Reason, Reconnect, ReconnectDecision,
    ReconnectEvent, RetryContext, RetryPolicy as _,
};
use signalr_transport::{Negotiated, Transport};
use tokio::{
    sync::{mpsc, oneshot},
    time::{Instant, sleep_until},
};
use tracing::{debug, info, warn};

use crate::{
    command::{Command, ENVELOPE, send_size},
    config::{Config, Opener},
    error::{HandshakeError, HubError, Result},
    handlers::{self, Dispatch},
    meter::{CloseReason, Meters},
    rt,
    shared::Shared,
    state::HubConnectionState,
    target::ReconnectAttempt,
};

/// About how many bytes `message` takes on the wire.
fn wire_size(message: &HubMessage) -> usize {
    match message {
        HubMessage::Invocation(m) => send_size(&m.target, &m.arguments),
        HubMessage::StreamItem(m) => ENVELOPE + m.item.as_bytes().len(),
        _ => ENVELOPE,
    }
}

enum Pending {
    Invoke(oneshot::Sender<Result<CompletionResult>>),
    Stream(mpsc::Sender<Result<Payload>>),
}

/// One physical connection after a successful handshake.
struct Session {
    transport: Box<dyn Transport>,
    decoder: MessageDecoder<Arc<dyn HubProtocol>>,
    keep_alive: KeepAlive,
    connection_id: Option<String>,
    /// Server invocations for the handler task, a batch per read.
    dispatch: mpsc::Sender<Vec<Dispatch>>,
    /// Invocations decoded from the current read, sent as one batch once it is drained.
    to_dispatch: Vec<Dispatch>,
    /// Client-result answers from the handler task (boxed: an idle connection's channel
    /// allocates a block of slots up front).
    answers: mpsc::UnboundedReceiver<Box<signalr_protocol::Completion>>,
    /// Stateful reconnect, when the server granted it on a WebSocket: the replay buffer and
    /// the negotiated connection to resume.
    stateful: Option<(MessageBuffer, Negotiated)>,
    /// When the next Ack is due (about a second after the first unacknowledged message).
    ack_due: Option<Instant>,
    /// A stream item waiting for room in its consumer's buffer: nothing more is read from the
    /// server until it is taken (backpressure), while calls, pings, Acks and timeouts go on.
    /// Boxed: rare, and an idle connection should not carry its size.
    held: Option<Box<Held>>,
}

/// A stream item its consumer has no room for yet.
struct Held {
    item: signalr_protocol::StreamItem,
    /// A clone of the stream's sender, to wait for room on.
    items: mpsc::Sender<Result<Payload>>,
    /// When the stream is given up as too slow (the stream consumer timeout).
    deadline: Instant,
}

/// Why a connected session ended.
enum Exit {
    /// `stop()`; the replies to send once disconnected.
    Stopped(Vec<oneshot::Sender<()>>),
    /// Every handle was dropped.
    Abandoned,
    /// The connection was lost (or closed by the server); reconnect if allowed.
    Lost(HubError),
}

fn to_instant(i: std::time::Instant) -> Instant {
    Instant::from_std(i)
}

/// Negotiates, opens a transport and completes the handshake.
async fn connect(config: &Config, opener: &Opener, shared: &Arc<Shared>) -> Result<Session> {
    let protocol = Arc::clone(&config.protocol);
    let opened = match opener {
        Opener::Connector(connector) => connector.connect(protocol.transfer_format()).await,
        Opener::Http(client) => {
            let target = shared.target();
            let mut http = config.http.clone();
            http.headers = target.headers;
            signalr_transport::connect_with(client, &target.url, protocol.transfer_format(), &http)
                .await
        }
    };
    let mut conn = opened.map_err(HubError::Transport)?;
    // Version 2 asks for stateful reconnect; only WebSockets resume.
    let stateful = config.stateful_buffer.is_some()
        && conn.stateful_reconnect()
        && conn.transport.kind() == TransportKind::WebSockets;
    let mut hello = BytesMut::new();
    HandshakeRequest::new(protocol.name(), if stateful { 2 } else { 1 }).encode(&mut hello);
    conn.transport
        .send(hello.freeze())
        .await
        .map_err(HubError::Transport)?;
    let handshake_timeout = config.keep_alive.handshake_timeout;
    let mut buf = BytesMut::new();
    let response = tokio::time::timeout(handshake_timeout, async {
        loop {
            match conn.transport.recv().await {
                Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                Some(Err(e)) => return Err(HubError::Transport(e)),
                None => {
                    return Err(HubError::Handshake(HandshakeError::Closed));
                }
            }
            match HandshakeResponse::decode(&mut buf, protocol.max_message_size()) {
                Ok(Some(r)) => return Ok(r),
                Ok(None) => {}
                Err(e) => return Err(HubError::Handshake(HandshakeError::Malformed(e))),
            }
        }
    })
    .await
    .map_err(|_| HubError::HandshakeTimeout)??;
    if let Some(error) = response.error {
        let _ = conn.transport.close().await;
        return Err(HubError::Handshake(HandshakeError::Refused(error)));
    }
    let now = rt::now();
    // `HubConnectionBuilder::build` refused any keep-alive settings this could refuse, and they
    // cannot change after: not a failure a connection can meet.
    let mut keep_alive = KeepAlive::new(config.keep_alive, now)
        .expect("keep-alive settings are checked by HubConnectionBuilder::build");
    keep_alive.on_handshake_completed(now);
    if conn.transport.kind() == TransportKind::LongPolling {
        // The poll cycle keeps long polling alive; the official clients neither ping nor time
        // out the server there.
        keep_alive.set_pings_enabled(false);
        keep_alive.set_server_timeout_enabled(false);
    }
    let connection_id = conn.connection_id().map(str::to_owned);
    let (dispatch, incoming) = mpsc::channel(64);
    let (answer_tx, answers) = mpsc::unbounded_channel();
    let handlers = tokio::spawn(handlers::run(
        Arc::clone(&shared.handlers),
        config.trace.clone(),
        protocol.payload_format(),
        incoming,
        answer_tx,
    ));
    shared.track_handlers(handlers.abort_handle());
    info!(
        transport = conn.transport.kind().as_str(),
        connection_id = connection_id.as_deref().unwrap_or("-"),
        "connected"
    );
    let stateful = match (stateful, config.stateful_buffer, conn.negotiated) {
        (true, Some(limit), Some(negotiated)) => Some((MessageBuffer::new(limit), negotiated)),
        _ => None,
    };
    Ok(Session {
        transport: conn.transport,
        decoder: MessageDecoder::with_buffer(protocol, buf),
        keep_alive,
        connection_id,
        dispatch,
        to_dispatch: Vec::new(),
        answers,
        stateful,
        ack_due: None,
        held: None,
    })
}

pub(crate) struct Driver {
    config: Arc<Config>,
    opener: Arc<Opener>,
    shared: Arc<Shared>,
    commands: mpsc::Receiver<Box<Command>>,
    pending: HashMap<String, Pending>,
    /// Calls made while reconnecting, sent in order once connected again.
    outbox: VecDeque<Command>,
    /// Its metrics (feature `metrics`; empty without).
    meters: Meters,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // However the driver ends (stopped, closed, dropped), no handler outlives it.
        self.shared.cancel_handlers();
    }
}

impl Driver {
    pub(crate) fn new(
        config: Arc<Config>,
        opener: Arc<Opener>,
        shared: Arc<Shared>,
        commands: mpsc::Receiver<Box<Command>>,
    ) -> Self {
        Self {
            meters: Meters::new(config.protocol.name()),
            config,
            opener,
            shared,
            commands,
            pending: HashMap::new(),
            outbox: VecDeque::new(),
        }
    }

    /// Connects (reporting the outcome on `started`), then serves until stopped or given up.
    pub(crate) async fn run(mut self, started: oneshot::Sender<Result<()>>) {
        let mut reconnect = Reconnect::new();
        if let Some(policy) = &self.config.retry {
            reconnect = reconnect.with_retry_policy(Arc::clone(policy));
        }
        if let Some(policy) = &self.config.start_policy {
            reconnect = reconnect.with_start_policy(Arc::clone(policy));
        }
        let mut session = match self.start(&mut reconnect).await {
            Ok(s) => s,
            Err(error) => {
                self.shared.set_state(HubConnectionState::Disconnected);
                let _ = started.send(Err(error));
                return;
            }
        };
        self.connected(&session);
        self.meters.started(session.transport.kind());
        let _ = started.send(Ok(()));
        loop {
            let exit = self.serve(&mut session).await;
            match exit {
                Exit::Stopped(replies) => {
                    self.close_session(&mut session).await;
                    self.disconnected(None);
                    acknowledge(replies);
                    return;
                }
                Exit::Abandoned => {
                    self.close_session(&mut session).await;
                    self.disconnected(None);
                    return;
                }
                Exit::Lost(error) => {
                    let lost_at = rt::now();
                    let _ = session.transport.close().await;
                    let mut error = error;
                    if resumable(&error) && session.stateful.is_some() {
                        match self.resume(&mut session).await {
                            Ok(()) => {
                                self.meters.resumed(rt::now() - lost_at);
                                continue;
                            }
                            Err(Some(exit)) => {
                                // Stopped or abandoned during the resume.
                                self.finish(exit);
                                return;
                            }
                            Err(None) => {
                                let unacknowledged = session
                                    .stateful
                                    .as_ref()
                                    .map_or(0, |(b, _)| b.unacknowledged());
                                warn!(
                                    unacknowledged,
                                    error = format!("{error:#}"),
                                    "the connection could not be resumed; reconnecting"
                                );
                                if unacknowledged > 0 {
                                    error = HubError::ResumeFailed {
                                        unacknowledged,
                                        cause: Arc::new(error),
                                    };
                                }
                            }
                        }
                    }
                    let error = Arc::new(error);
                    self.fail_pending(&error);
                    warn!(error = format!("{error:#}"), "connection lost");
                    let decision = match &*error {
                        HubError::ServerClosed {
                            allow_reconnect: false,
                            ..
                        } => reconnect.on_close_message(
                            rt::now(),
                            false,
                            Arc::clone(&error) as Reason,
                        ),
                        _ => reconnect.on_connection_lost(rt::now(), Arc::clone(&error) as Reason),
                    };
                    match self.reconnect(&mut reconnect, decision, &error).await {
                        Ok(new) => session = new,
                        Err(None) => return,
                        Err(Some(final_error)) => {
                            self.disconnected(Some(final_error));
                            return;
                        }
                    }
                }
            }
        }
    }

    /// The first connection, retried by the initial-start policy when one is set.
    async fn start(&mut self, reconnect: &mut Reconnect) -> Result<Session> {
        reconnect.on_start_requested(rt::now());
        loop {
            let error = match self.connect_or_stop(HubConnectionState::Connecting).await {
                Ok(session) => {
                    reconnect.on_connected();
                    return Ok(session);
                }
                Err(Exit::Lost(e)) => Arc::new(e),
                Err(Exit::Stopped(replies)) => {
                    acknowledge(replies);
                    return Err(HubError::Stopped);
                }
                Err(Exit::Abandoned) => return Err(HubError::Stopped),
            };
            // What another attempt cannot fix (a 404, a refused token, a handshake error: the
            // configuration is wrong) fails start at once, whatever the policy.
            let decision = if error.is_retryable() {
                reconnect.on_start_failed(rt::now(), Arc::clone(&error) as Reason)
            } else {
                ReconnectDecision::GiveUp
            };
            let ReconnectDecision::RetryAt(at) = decision else {
                // The machine keeps the reasons it was given; the error goes back owned.
                *reconnect = Reconnect::new();
                return Err(Arc::try_unwrap(error).unwrap_or_else(HubError::ConnectionLost));
            };
            info!(error = format!("{error:#}"), "start failed; retrying");
            match self.wait_until(at, HubConnectionState::Connecting).await {
                Ok(()) => {}
                Err(Exit::Stopped(replies)) => {
                    acknowledge(replies);
                    return Err(HubError::Stopped);
                }
                Err(_) => return Err(HubError::Stopped),
            }
            let _ = reconnect.handle_timeout(rt::now());
        }
    }

    /// Sleeps until `at` while holding or refusing calls; `Err` when stopped or abandoned.
    async fn wait_until(
        &mut self,
        at: std::time::Instant,
        state: HubConnectionState,
    ) -> std::result::Result<(), Exit> {
        let wake = to_instant(at);
        loop {
            tokio::select! {
                () = sleep_until(wake) => return Ok(()),
                command = self.commands.recv() => match command.map(|c| *c) {
                    Some(Command::Stop { reply }) => return Err(Exit::Stopped(vec![reply])),
                    Some(other) => self.hold(other, state),
                    None => return Err(Exit::Abandoned),
                }
            }
        }
    }

    /// A call made while not connected: queued in the outbox while reconnecting (until it is
    /// full), refused otherwise.
    fn hold(&mut self, command: Command, state: HubConnectionState) {
        if state != HubConnectionState::Reconnecting {
            return Self::reject(command, state);
        }
        match command {
            // Items in flight when the link broke follow their call through the outbox; the
            // pumps pause while not connected, so there are at most a few.
            Command::UploadItem { .. } | Command::UploadDone { .. } => {
                self.outbox.push_back(command);
            }
            Command::Cancel { id } => {
                // A stream dropped before it was ever sent: forget it.
                self.outbox
                    .retain(|c| !matches!(c, Command::Stream { id: queued, .. } if *queued == id));
            }
            command if self.outbox.len() < self.config.outbox_capacity => {
                self.outbox.push_back(command);
            }
            command => {
                self.meters.outbox_rejected();
                let capacity = self.config.outbox_capacity;
                let error = || HubError::OutboxFull { capacity };
                note_unsent(usize::from(refuse(command, error)), &error());
            }
        }
        self.meters.outbox_depth(self.outbox.len());
    }

    /// Resumes a stateful connection on a new WebSocket: no negotiate, no handshake; Sequence and
    /// the unacknowledged messages go out first. `Err(None)` when it cannot be resumed (fall back
    /// to a full reconnect), `Err(Some(exit))` when stopped meanwhile.
    async fn resume(&mut self, session: &mut Session) -> std::result::Result<(), Option<Exit>> {
        let Some((_, negotiated)) = &session.stateful else {
            return Err(None);
        };
        let negotiated = negotiated.clone();
        let config = Arc::clone(&self.config);
        // The server keeps the connection for its disconnect timeout (15 s by default): keep
        // trying within that, since a cut can land on the resume itself. A 4xx answer means the
        // server gave the connection up; then a new connection is the only way.
        let backoff = resume_backoff();
        let began = rt::now();
        let mut failures = 0;
        loop {
            // Boxed, as in `connect_or_stop`: the upgrade's future is large.
            let mut attempt = Box::pin(
                negotiated.reconnect_websocket(config.protocol.transfer_format(), &config.http),
            );
            let result = loop {
                tokio::select! {
                    result = &mut attempt => break result,
                    command = self.commands.recv() => match command.map(|c| *c) {
                        Some(Command::Stop { reply }) => return Err(Some(Exit::Stopped(vec![reply]))),
                        // Held in the outbox; sent after the replay.
                        Some(other) => self.hold(other, HubConnectionState::Reconnecting),
                        None => return Err(Some(Exit::Abandoned)),
                    }
                }
            };
            let failure = match result {
                Ok(transport) => match Self::replay(session, Box::new(transport), &config).await {
                    Ok(()) => return Ok(()),
                    Err(e) => e,
                },
                Err(signalr_transport::TransportError::Status {
                    status: 400..=499, ..
                }) => {
                    debug!("the server no longer has the connection");
                    return Err(None);
                }
                Err(e) => e,
            };
            debug!(error = %failure, "resume attempt failed");
            let now = rt::now();
            let ctx = RetryContext::new(failures, now - began, &failure);
            let Some(delay) = backoff.next_retry_delay(&ctx) else {
                return Err(None);
            };
            failures += 1;
            self.wait_until(now + delay, HubConnectionState::Reconnecting)
                .await
                .map_err(Some)?;
        }
    }

    /// Puts `transport` in place and sends Sequence and every unacknowledged message on it.
    async fn replay(
        session: &mut Session,
        transport: Box<dyn Transport>,
        config: &Config,
    ) -> std::result::Result<(), signalr_transport::TransportError> {
        session.transport = transport;
        session.decoder = MessageDecoder::new(Arc::clone(&config.protocol));
        let now = rt::now();
        session.keep_alive.on_message_received(now);
        let Some((buffer, _)) = &mut session.stateful else {
            return Err(signalr_transport::TransportError::Closed);
        };
        let mut out = BytesMut::new();
        let Ok((_, replayed)) = buffer.resume_into(config.protocol.as_ref(), &mut out) else {
            return Err(signalr_transport::TransportError::Closed);
        };
        session.transport.send(out.freeze()).await?;
        session.keep_alive.on_message_sent(now);
        info!(replayed, "connection resumed");
        Ok(())
    }

    /// Ends the driver after a stop or abandonment outside the serve loop.
    fn finish(&mut self, exit: Exit) {
        self.disconnected(None);
        if let Exit::Stopped(replies) = exit {
            acknowledge(replies);
        }
    }

    fn connected(&self, session: &Session) {
        self.shared.set_send_room(
            session
                .stateful
                .as_ref()
                .map_or(usize::MAX, |(b, _)| b.room()),
        );
        self.shared.set_connection_id(session.connection_id.clone());
        self.shared.set_state(HubConnectionState::Connected);
        // The driver runs in the connection's span.
        let span = tracing::Span::current();
        span.record(
            "signalr.connection_id",
            session.connection_id.as_deref().unwrap_or(""),
        );
        span.record("signalr.transport", session.transport.kind().as_str());
        span.record("signalr.stateful", session.stateful.is_some());
    }

    /// The connection is closed for good: `reason` is what `on_close` gets (`None` after a
    /// stop); calls in flight and queued fail with it (or with `Stopped`).
    fn disconnected(&mut self, reason: Option<Arc<HubError>>) {
        let pending_error = reason
            .clone()
            .unwrap_or_else(|| Arc::new(HubError::Stopped));
        self.fail_pending(&pending_error);
        // Calls still queued get the same answer, rather than a dropped reply.
        self.commands.close();
        let mut unsent = 0;
        while let Ok(command) = self.commands.try_recv() {
            unsent += usize::from(refuse(*command, || failure(&pending_error)));
        }
        note_unsent(unsent, &pending_error);
        self.meters.closed(match reason.as_deref() {
            None => CloseReason::Stopped,
            Some(HubError::ReconnectFailed { .. }) => CloseReason::GaveUp,
            Some(HubError::ServerClosed { .. }) => CloseReason::ByServer,
            Some(_) => CloseReason::Lost,
        });
        self.shared.set_connection_id(None);
        self.shared.closed(reason);
    }

    /// Waits out reconnect delays and tries again. `Ok` with a new session, `Err(None)` when
    /// stopped (already reported), `Err(Some(e))` when the policy gave up.
    async fn reconnect(
        &mut self,
        reconnect: &mut Reconnect,
        mut decision: ReconnectDecision,
        error: &Arc<HubError>,
    ) -> std::result::Result<Session, Option<Arc<HubError>>> {
        if let ReconnectDecision::GiveUp = decision {
            return Err(Some(Arc::clone(error)));
        }
        self.shared.set_state(HubConnectionState::Reconnecting);
        self.shared.set_connection_id(None);
        self.shared.emit_reconnecting(error);
        let mut last = Arc::clone(error);
        let mut attempts = 0;
        loop {
            let ReconnectDecision::RetryAt(at) = decision else {
                info!(
                    signalr.attempts = attempts,
                    signalr.reason = format!("{last:#}"),
                    "reconnect gave up"
                );
                // Said once: why it gave up, with the last attempt's error as the cause.
                let elapsed = reconnect
                    .outage()
                    .map(|o| o.elapsed(rt::now()))
                    .unwrap_or_default();
                return Err(Some(Arc::new(HubError::ReconnectFailed {
                    attempts,
                    elapsed,
                    last,
                })));
            };
            info!(
                signalr.attempt = attempts + 1,
                signalr.delay_ms =
                    u64::try_from(at.saturating_duration_since(rt::now()).as_millis())
                        .unwrap_or(u64::MAX),
                signalr.reason = format!("{last:#}"),
                "reconnect attempt scheduled"
            );
            // Wait for the delay; calls made meanwhile wait in the outbox.
            match self.wait_until(at, HubConnectionState::Reconnecting).await {
                Ok(()) => {}
                Err(Exit::Stopped(replies)) => {
                    reconnect.on_stop_requested();
                    self.disconnected(None);
                    acknowledge(replies);
                    return Err(None);
                }
                Err(_) => {
                    self.disconnected(None);
                    return Err(None);
                }
            }
            let now = rt::now();
            let Some(ReconnectEvent::StartAttempt { attempt }) = reconnect.handle_timeout(now)
            else {
                continue;
            };
            if let Some(hook) = &self.config.before_reconnect {
                let attempt = ReconnectAttempt {
                    attempt,
                    elapsed: reconnect.elapsed(now).unwrap_or_default(),
                    reason: &*last,
                };
                self.shared
                    .update_target(|target| (hook.0)(target, &attempt));
            }
            attempts += 1;
            match self.connect_or_stop(HubConnectionState::Reconnecting).await {
                Ok(session) => {
                    let outage = reconnect.outage().map(|o| o.elapsed(rt::now()));
                    self.meters
                        .reconnect_attempt(Some(outage.unwrap_or_default()));
                    reconnect.on_connected();
                    self.connected(&session);
                    self.shared
                        .emit_reconnected(session.connection_id.as_deref());
                    return Ok(session);
                }
                Err(Exit::Lost(e)) => {
                    self.meters.reconnect_attempt(None);
                    debug!(error = format!("{e:#}"), "reconnect attempt failed");
                    last = Arc::new(e);
                    decision = reconnect.on_attempt_failed(rt::now(), Arc::clone(&last) as Reason);
                }
                Err(Exit::Stopped(replies)) => {
                    reconnect.on_stop_requested();
                    self.disconnected(None);
                    acknowledge(replies);
                    return Err(None);
                }
                Err(Exit::Abandoned) => {
                    self.disconnected(None);
                    return Err(None);
                }
            }
        }
    }

    /// Connects while answering commands: a stop abandons the attempt at once.
    async fn connect_or_stop(
        &mut self,
        state: HubConnectionState,
    ) -> std::result::Result<Session, Exit> {
        let config = Arc::clone(&self.config);
        let shared = Arc::clone(&self.shared);
        // On the heap, and only while it runs: negotiate, TLS, a proxy tunnel and the upgrade
        // make a future of several KiB, which would otherwise be part of the driver task for
        // the connection's whole life.
        let opener = Arc::clone(&self.opener);
        let mut attempt = Box::pin(connect(&config, &opener, &shared));
        loop {
            tokio::select! {
                result = &mut attempt => return result.map_err(Exit::Lost),
                command = self.commands.recv() => match command.map(|c| *c) {
                    Some(Command::Stop { reply }) => return Err(Exit::Stopped(vec![reply])),
                    Some(other) => self.hold(other, state),
                    None => return Err(Exit::Abandoned),
                }
            }
        }
    }

    /// Answers a command that cannot run now.
    fn reject(command: Command, state: HubConnectionState) {
        let error = || HubError::NotConnected { state };
        note_unsent(usize::from(refuse(command, error)), &error());
    }

    /// Fails every call in flight, and every call waiting in the outbox, with `error`.
    fn fail_pending(&mut self, error: &Arc<HubError>) {
        let make = || failure(error);
        for (_, pending) in self.pending.drain() {
            match pending {
                Pending::Invoke(reply) => drop(reply.send(Err(make()))),
                Pending::Stream(items) => drop(items.try_send(Err(make()))),
            }
        }
        let mut unsent = 0;
        for command in self.outbox.drain(..) {
            unsent += usize::from(refuse(command, make));
        }
        self.meters.outbox_depth(0);
        note_unsent(unsent, error);
    }

    /// A `trace` event for `data` going out or coming in: its size, and its content only when
    /// the user asked for it ([`with_log_message_content`](crate::HubConnectionBuilder::with_log_message_content)).
    fn trace_data(&self, what: &'static str, data: &[u8]) {
        if !tracing::enabled!(tracing::Level::TRACE) {
            return;
        }
        if !self.config.log_message_content {
            tracing::trace!(signalr.bytes = data.len(), "{what}");
            return;
        }
        let content = match self.config.protocol.transfer_format() {
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

    /// Sends Close (best effort) and closes the transport.
    async fn close_session(&mut self, session: &mut Session) {
        self.shared.set_state(HubConnectionState::Disconnecting);
        let mut buf = BytesMut::new();
        if self
            .config
            .protocol
            .encode(&HubMessage::Close(Close::default()), &mut buf)
            .is_ok()
        {
            let bytes = buf.len();
            let sent =
                tokio::time::timeout(Duration::from_secs(1), session.transport.send(buf.freeze()))
                    .await;
            if matches!(sent, Ok(Ok(()))) {
                self.meters.sent(1, bytes);
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), session.transport.close()).await;
    }

    /// Serves a connected session until it ends.
    async fn serve(&mut self, session: &mut Session) -> Exit {
        // Messages that came in the same read as the handshake response (or the resume) are
        // already buffered: nothing would wake the loop for them.
        if let Err(e) = self.drain_messages(session).await {
            return Exit::Lost(e);
        }
        // One timer for the session, moved when the next deadline moves (each message sent or
        // received moves it later, which tokio does without touching its timer wheel), rather
        // than a timer made and dropped on every turn of the loop.
        let timer = tokio::time::sleep_until(far_future());
        tokio::pin!(timer);
        loop {
            let full = session.stateful.as_ref().is_some_and(|(b, _)| b.is_full());
            // Calls held while reconnecting go first, as far as the replay buffer has room;
            // new calls wait behind them.
            if !self.outbox.is_empty() && !full {
                let batch = self.outbox_batch(session);
                debug!(calls = batch.len(), "sending the outbox");
                if let Err(exit) = self.on_batch(session, batch).await {
                    return exit;
                }
                continue;
            }
            let wake = [
                session.keep_alive.poll_timeout().map(to_instant),
                session.ack_due,
                session.held.as_ref().map(|h| h.deadline),
            ]
            .into_iter()
            .flatten()
            .min();
            if let Some(wake) = wake {
                if timer.deadline() != wake {
                    timer.as_mut().reset(wake);
                }
            }
            // A full replay buffer holds new calls back until the server acknowledges.
            let accepting = !full && self.outbox.is_empty();
            // A stream item waiting for its consumer holds reading back, nothing else.
            let held = session.held.as_ref().map(|h| h.items.clone());
            // Unbiased: a flood of calls must not starve receiving (and with it pings, Acks and
            // the server timeout), nor a flood of messages starve the calls.
            tokio::select! {
                command = self.commands.recv(), if accepting => {
                    let Some(first) = command else { return Exit::Abandoned };
                    if let Err(exit) = self.on_commands(session, *first).await {
                        return exit;
                    }
                }
                // Calls held back: a stop must still get through. The calls read past on the
                // way keep their order in the outbox, which goes out first once there is room.
                () = self.shared.stop_requested.notified(), if !accepting => {
                    let mut stops = Vec::new();
                    while let Ok(command) = self.commands.try_recv() {
                        match *command {
                            Command::Stop { reply } => stops.push(reply),
                            other => self.outbox.push_back(other),
                        }
                    }
                    if !stops.is_empty() {
                        return Exit::Stopped(stops);
                    }
                }
                // Answers to the server's calls are tracked messages too: they wait for room.
                answer = session.answers.recv(), if !full => {
                    if let Some(completion) = answer {
                        if let Err(e) = self.write(session, &[HubMessage::Completion(*completion)]).await {
                            return Exit::Lost(e);
                        }
                    }
                }
                permits = async { held.as_ref()?.reserve_many(2).await.ok() }, if held.is_some() => {
                    if let Err(e) = self.release_held(session, permits).await {
                        return Exit::Lost(e);
                    }
                }
                chunk = session.transport.recv(), if held.is_none() => match chunk {
                    Some(Ok(bytes)) => {
                        session.keep_alive.on_message_received(rt::now());
                        self.meters.received_bytes(bytes.len());
                        self.trace_data("data received", &bytes);
                        session.decoder.push(&bytes);
                        if let Err(e) = self.drain_messages(session).await {
                            return Exit::Lost(e);
                        }
                    }
                    Some(Err(e)) => return Exit::Lost(HubError::Transport(e)),
                    // A record cut short is an error, not a clean end.
                    None => return Exit::Lost(session.decoder.finish().map_or_else(HubError::Protocol, |()| HubError::ConnectionClosed)),
                },
                () = &mut timer, if wake.is_some() => {
                    if let Err(e) = self.on_timer(session).await {
                        return Exit::Lost(e);
                    }
                }
            }
        }
    }

    /// The session's timer fired: a held stream item whose time is up, an Ack due, a ping due,
    /// or the server's silence past the server timeout (`Err`: the connection is lost).
    async fn on_timer(&mut self, session: &mut Session) -> Result<()> {
        let now = to_instant(rt::now());
        if session.held.as_ref().is_some_and(|h| h.deadline <= now) {
            // The consumer took nothing for the whole stream consumer timeout.
            self.release_held(session, None).await?;
        }
        if session.ack_due.is_some_and(|due| due <= now) {
            session.ack_due = None;
            if let Some(ack) = session.stateful.as_mut().and_then(|(b, _)| b.take_ack()) {
                debug!(sequence_id = ack.sequence_id, "sending Ack");
                self.write(session, &[HubMessage::Ack(ack)]).await?;
            }
        }
        match session.keep_alive.handle_timeout(rt::now()) {
            Some(KeepAliveEvent::SendPing) => self.write(session, &[HubMessage::Ping]).await,
            Some(KeepAliveEvent::ServerTimedOut) => {
                warn!(
                    signalr.server_timeout_ms =
                        u64::try_from(self.config.keep_alive.server_timeout.as_millis())
                            .unwrap_or(u64::MAX),
                    "server timeout: nothing received from the server"
                );
                Err(HubError::ServerTimeout)
            }
            _ => Ok(()),
        }
    }

    /// The next calls of the outbox to send: at least one, then as many as the replay buffer
    /// has room for (at most 256).
    fn outbox_batch(&mut self, session: &Session) -> Vec<Command> {
        let mut room = session
            .stateful
            .as_ref()
            .map_or(usize::MAX, |(b, _)| b.room());
        let mut batch = Vec::new();
        while batch.is_empty() || (room > 0 && batch.len() < 256) {
            let Some(command) = self.outbox.pop_front() else {
                break;
            };
            room = room.saturating_sub(command.size_hint());
            batch.push(command);
        }
        self.meters.outbox_depth(self.outbox.len());
        batch
    }

    /// Handles `first` and whatever else is queued, writing all their messages in one send.
    async fn on_commands(
        &mut self,
        session: &mut Session,
        first: Command,
    ) -> std::result::Result<(), Exit> {
        // With stateful reconnect, a batch stops where the replay buffer would be full, so
        // that it holds at most its limit plus one message (the rest wait for an Ack).
        let mut room = session
            .stateful
            .as_ref()
            .map_or(usize::MAX, |(b, _)| b.room())
            .saturating_sub(first.size_hint());
        let mut batch = vec![first];
        while batch.len() < 256 && room > 0 && !matches!(batch.last(), Some(Command::Stop { .. })) {
            match self.commands.try_recv() {
                Ok(command) => {
                    room = room.saturating_sub(command.size_hint());
                    batch.push(*command);
                }
                Err(_) => break,
            }
        }
        self.on_batch(session, batch).await
    }

    /// Handles `commands` in order and writes all their messages in one send.
    async fn on_batch(
        &mut self,
        session: &mut Session,
        commands: Vec<Command>,
    ) -> std::result::Result<(), Exit> {
        let mut messages = Vec::new();
        let mut sent_replies = Vec::new();
        // Given back once written, when the replay buffer's room is published again.
        let mut reservations = Vec::new();
        let mut done_sends = 0;
        let mut stops = Vec::new();
        for command in commands {
            match command {
                Command::Invoke {
                    id,
                    target,
                    headers,
                    arguments,
                    stream_ids,
                    reply,
                } => {
                    self.pending.insert(id.clone(), Pending::Invoke(reply));
                    let invocation = Invocation::new(id, target, arguments)
                        .with_stream_ids(stream_ids)
                        .with_headers(headers);
                    messages.push(HubMessage::Invocation(invocation));
                }
                Command::UploadItem { id, item } => {
                    messages.push(HubMessage::StreamItem(signalr_protocol::StreamItem::new(
                        id, item,
                    )));
                }
                Command::UploadDone { id, error } => {
                    let end = match error {
                        None => signalr_protocol::Completion::void(id),
                        Some(e) => signalr_protocol::Completion::error(id, e),
                    };
                    messages.push(HubMessage::Completion(end));
                }
                Command::Send {
                    target,
                    headers,
                    arguments,
                    stream_ids,
                    reply,
                    reservation,
                } => {
                    messages.push(HubMessage::Invocation(
                        Invocation::non_blocking(target, arguments)
                            .with_stream_ids(stream_ids)
                            .with_headers(headers),
                    ));
                    done_sends += usize::from(reply.is_none());
                    sent_replies.extend(reply);
                    reservations.extend(reservation);
                }
                Command::Stream {
                    id,
                    target,
                    headers,
                    arguments,
                    stream_ids,
                    items,
                } => {
                    self.pending.insert(id.clone(), Pending::Stream(items));
                    let mut invocation =
                        StreamInvocation::new(id, target, arguments).with_stream_ids(stream_ids);
                    invocation.headers = headers;
                    messages.push(HubMessage::StreamInvocation(invocation));
                }
                Command::Cancel { id } => {
                    if self.pending.remove(&id).is_some() {
                        messages.push(HubMessage::CancelInvocation(CancelInvocation::new(id)));
                    }
                }
                Command::Stop { reply } => stops.push(reply),
            }
        }
        let written = if messages.is_empty() {
            Ok(())
        } else {
            self.write(session, &messages).await.map_err(Arc::new)
        };
        // With stateful reconnect a message that could not be written is in the replay buffer
        // and goes out after the resume: accepted, not failed.
        let accepted = written.is_ok() || session.stateful.is_some();
        drop(reservations);
        if let (Err(e), false) = (&written, accepted) {
            note_unsent(done_sends, e);
        }
        for reply in sent_replies {
            let _ = reply.send(match &written {
                Err(e) if !accepted => Err(HubError::ConnectionLost(Arc::clone(e))),
                _ => Ok(()),
            });
        }
        if !stops.is_empty() {
            return Err(Exit::Stopped(stops));
        }
        written.map_err(|e| Exit::Lost(HubError::ConnectionLost(e)))
    }

    /// Encodes `messages` and sends them as one transport write.
    async fn write(&mut self, session: &mut Session, messages: &[HubMessage]) -> Result<()> {
        // Sized up front: grown from empty, one Echo call took five reallocations.
        let mut buf = BytesMut::with_capacity(messages.iter().map(wire_size).sum());
        // Where each message the replay buffer keeps lies in `buf` (stateful reconnect only).
        let mut tracked = Vec::new();
        let stateful = session.stateful.is_some();
        for m in messages {
            let start = buf.len();
            let encoded = self.config.protocol.encode(m, &mut buf);
            if stateful && encoded.is_ok() && m.message_type().is_trackable() {
                tracked.push(start..buf.len());
            }
            if let Err(e) = encoded {
                // Only a caller's payload in the wrong format gets here; fail that call alone.
                warn!(error = %e, "message not sent");
                if let Some(id) = m.invocation_id() {
                    if let Some(pending) = self.pending.remove(id) {
                        let method = match m {
                            HubMessage::Invocation(i) => i.target.clone(),
                            HubMessage::StreamInvocation(i) => i.target.clone(),
                            _ => String::new(),
                        };
                        let err = HubError::Payload {
                            method,
                            part: crate::error::PayloadPart::Arguments,
                            source: e,
                        };
                        match pending {
                            Pending::Invoke(reply) => drop(reply.send(Err(err))),
                            Pending::Stream(items) => drop(items.try_send(Err(err))),
                        }
                    }
                }
            }
        }
        if buf.is_empty() {
            return Ok(());
        }
        let frames = buf.freeze();
        if let Some((buffer, _)) = &mut session.stateful {
            // Kept for replay as slices of the bytes sent: no second copy.
            for range in tracked {
                buffer.on_sent(frames.slice(range));
            }
            self.shared.note_replay_bytes(buffer.buffered_bytes());
            self.meters.replay_bytes(buffer.buffered_bytes());
            self.shared.set_send_room(buffer.room());
        }
        let bytes = frames.len();
        self.trace_data("data sent", &frames);
        // A write that cannot finish (a blackholed socket's full buffer, a POST nobody
        // answers) must not keep the loop from noticing the server's silence: it may take
        // until the server timeout, no longer.
        // Polled once first: a write that finishes at once (nearly all) needs no timer.
        let mut send = session.transport.send(frames);
        let sent = match std::future::poll_fn(|cx| Poll::Ready(send.as_mut().poll(cx))).await {
            Poll::Ready(sent) => sent,
            Poll::Pending => match session.keep_alive.server_deadline() {
                Some(deadline) => tokio::time::timeout_at(to_instant(deadline), send)
                    .await
                    .map_err(|_| HubError::ServerTimeout)?,
                None => send.await,
            },
        };
        sent.map_err(HubError::Transport)?;
        self.meters.sent(messages.len(), bytes);
        session.keep_alive.on_message_sent(rt::now());
        Ok(())
    }

    async fn drain_messages(&mut self, session: &mut Session) -> Result<()> {
        let result = loop {
            // A held stream item keeps the rest where they are, in order.
            if session.held.is_some() {
                break Ok(());
            }
            let message = match session.decoder.next_message() {
                Ok(Some(m)) => m,
                Ok(None) => break Ok(()),
                Err(e) => break Err(HubError::Protocol(e)),
            };
            // Synchronous but for a stream item, which may have to cancel its stream: no future
            // is made per message.
            match self.on_message(session, message) {
                Ok(None) => {}
                Ok(Some(item)) => {
                    if let Err(e) = self.on_stream_item(session, item).await {
                        break Err(e);
                    }
                }
                Err(e) => break Err(e),
            }
        };
        // What arrived before a bad message still reaches its handlers. Waits only when 64
        // batches are queued behind slow handlers.
        if !session.to_dispatch.is_empty() {
            let batch = std::mem::take(&mut session.to_dispatch);
            let _ = session.dispatch.send(batch).await;
        }
        result
    }

    /// A stream item: to its stream's consumer (holding reading back while the buffer is full),
    /// or an error for a call that is not a stream.
    async fn on_stream_item(
        &mut self,
        session: &mut Session,
        item: signalr_protocol::StreamItem,
    ) -> Result<()> {
        match self.pending.get(&item.invocation_id) {
            Some(Pending::Stream(items)) => {
                // The last slot is kept for the stream's end (an error, the connection's
                // loss), so that a consumer always learns why a stream stopped.
                if items.is_closed() {
                    return self.cancel_stream(session, item.invocation_id).await;
                }
                if items.capacity() > 1 {
                    // Only a closed stream refuses, and that was checked.
                    let _ = items.try_send(Ok(item.item));
                } else {
                    // Full: hold reading back (backpressure) until the consumer takes an item,
                    // for up to the stream consumer timeout; see `serve`.
                    session.held = Some(Box::new(Held {
                        items: items.clone(),
                        deadline: to_instant(rt::now()) + self.config.stream_consumer_timeout,
                        item,
                    }));
                }
            }
            Some(Pending::Invoke(_)) => {
                if let Some(Pending::Invoke(reply)) = self.pending.remove(&item.invocation_id) {
                    let e = signalr_protocol::ProtocolError::UnexpectedMessage {
                        message_type: "StreamItem",
                        reason: "a stream item for a non-streaming invocation".into(),
                    };
                    let _ = reply.send(Err(HubError::Protocol(e)));
                }
            }
            None => debug!(
                id = item.invocation_id,
                "stream item for an unknown invocation ignored"
            ),
        }
        Ok(())
    }

    /// Gives up stream `id`: its consumer gets `StreamConsumerTooSlow` (or has gone), the server
    /// a `CancelInvocation`. A full buffer is never grown without bound. Nothing to do for a
    /// stream already cancelled (its consumer dropped it meanwhile).
    async fn cancel_stream(&mut self, session: &mut Session, id: String) -> Result<()> {
        let Some(Pending::Stream(items)) = self.pending.remove(&id) else {
            return Ok(());
        };
        let _ = items.try_send(Err(HubError::StreamConsumerTooSlow));
        let cancel = HubMessage::CancelInvocation(CancelInvocation::new(id));
        self.write(session, &[cancel]).await
    }

    /// The held stream item, once its consumer has room (`permits`) or its time is up (`None`):
    /// delivered or its stream cancelled; then reading goes on with what is already buffered.
    async fn release_held(
        &mut self,
        session: &mut Session,
        permits: Option<mpsc::PermitIterator<'_, Result<Payload>>>,
    ) -> Result<()> {
        let Some(held) = session.held.take() else {
            return Ok(());
        };
        match permits.and_then(|mut p| p.next()) {
            Some(permit) => permit.send(Ok(held.item.item)),
            None => self.cancel_stream(session, held.item.invocation_id).await?,
        }
        self.drain_messages(session).await
    }

    /// Handles `message`, but for a stream item, handed back for [`Self::on_stream_item`].
    fn on_message(
        &mut self,
        session: &mut Session,
        message: HubMessage,
    ) -> Result<Option<signalr_protocol::StreamItem>> {
        self.meters.received_message();
        if let Some((buffer, _)) = &mut session.stateful {
            let kind = message.message_type();
            if kind.is_trackable() || matches!(message, HubMessage::Sequence(_)) {
                // Duplicates too: the server replays them because it missed our Ack, and its
                // full buffer waits for one.
                if session.ack_due.is_none() {
                    session.ack_due = Some(to_instant(rt::now()) + ACK_DELAY);
                }
            }
            if kind.is_trackable() && !buffer.on_received() {
                return Ok(None); // a replayed duplicate, or before the server's Sequence
            }
        }
        match message {
            HubMessage::Invocation(m) => {
                let dispatch = Dispatch {
                    headers: m.headers,
                    target: m.target,
                    arguments: m.arguments,
                    invocation_id: m.invocation_id,
                };
                session.to_dispatch.push(dispatch);
            }
            HubMessage::StreamItem(item) => return Ok(Some(item)),
            HubMessage::Completion(c) => match self.pending.remove(&c.invocation_id) {
                Some(Pending::Invoke(reply)) => {
                    let _ = reply.send(Ok(c.result));
                }
                Some(Pending::Stream(items)) => match c.result {
                    CompletionResult::Void => {}
                    CompletionResult::Error(message) => {
                        drop(items.try_send(Err(HubError::Invocation { message })));
                    }
                    CompletionResult::Value(_) => {
                        let e = signalr_protocol::ProtocolError::UnexpectedMessage {
                            message_type: "Completion",
                            reason: "a stream completed with a result".into(),
                        };
                        drop(items.try_send(Err(HubError::Protocol(e))));
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
                if let Some((buffer, _)) = &mut session.stateful {
                    buffer.on_ack(ack.sequence_id).map_err(HubError::Protocol)?;
                    self.meters.replay_bytes(buffer.buffered_bytes());
                    self.shared.set_send_room(buffer.room());
                }
            }
            HubMessage::Sequence(seq) => {
                if let Some((buffer, _)) = &mut session.stateful {
                    buffer
                        .on_sequence(seq.sequence_id)
                        .map_err(HubError::Protocol)?;
                }
            }
            // Ping: received traffic already reset the server timeout.
            _ => {}
        }
        Ok(None)
    }
}

/// How long a lost stateful connection is tried to be resumed before a new one is made: under
/// the server's default disconnect timeout (15 s), after which it forgets the connection.
const RESUME_WINDOW: Duration = Duration::from_secs(10);

/// The delays between resume attempts (the first goes at once): 10 ms doubling to 500 ms, no
/// jitter (one client resuming its own connection has nobody to spread out from), while the
/// next attempt starts within [`RESUME_WINDOW`].
fn resume_backoff() -> ExponentialBackoff {
    ExponentialBackoff::new(Duration::from_millis(10))
        .with_max_delay(Duration::from_millis(500))
        .with_max_elapsed(RESUME_WINDOW)
}

/// How long after the first unacknowledged message an Ack goes out, as the official clients do.
const ACK_DELAY: Duration = Duration::from_secs(1);

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

/// Answers a call that will not be made with the error `make` builds.
/// What a call in flight fails with when the connection ends with `error`.
fn failure(error: &Arc<HubError>) -> HubError {
    match &**error {
        HubError::Stopped => HubError::Stopped,
        _ => HubError::ConnectionLost(Arc::clone(error)),
    }
}

/// `true` for a send that was reported done when queued: nobody learns of it but the log.
fn refuse(command: Command, make: impl Fn() -> HubError) -> bool {
    match command {
        Command::Invoke { reply, .. } => drop(reply.send(Err(make()))),
        Command::Send {
            reply: Some(reply), ..
        } => drop(reply.send(Err(make()))),
        Command::Send { .. } => return true,
        Command::Stream { items, .. } => drop(items.try_send(Err(make()))),
        // The items of an upload whose call could not be made go nowhere.
        Command::Cancel { .. } | Command::UploadItem { .. } | Command::UploadDone { .. } => {}
        Command::Stop { reply } => acknowledge(vec![reply]),
    }
    false
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

/// Tells every `stop()` caller that the connection is down.
fn acknowledge(replies: Vec<oneshot::Sender<()>>) {
    for reply in replies {
        let _ = reply.send(());
    }
}

fn far_future() -> Instant {
    Instant::from_std(rt::now()) + Duration::from_secs(86_400 * 365)
}

/// Binds a completion of `method` to the caller's type; `()` takes any result and discards it.
pub(crate) fn bind<T: serde::de::DeserializeOwned + 'static>(
    result: CompletionResult,
    format: signalr_protocol::PayloadFormat,
    method: &str,
) -> Result<T> {
    let payload = match result {
        CompletionResult::Error(message) => return Err(HubError::Invocation { message }),
        CompletionResult::Value(p)
            if std::any::TypeId::of::<T>() != std::any::TypeId::of::<()>() =>
        {
            p
        }
        // Void, or a value the caller does not want.
        _ => Payload::null(format),
    };
    payload.deserialize().map_err(|source| HubError::Payload {
        method: method.to_owned(),
        part: crate::error::PayloadPart::Result,
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use signalr_reconnect::{RetryContext, RetryPolicy as _};

    use super::{RESUME_WINDOW, resume_backoff};

    #[test]
    fn resume_attempts_back_off_from_10_ms_to_500_ms_within_the_window() {
        let backoff = resume_backoff();
        let reason = std::io::Error::other("reset");
        let ms = Duration::from_millis;
        // Each attempt takes no time here: the delays alone.
        let mut elapsed = Duration::ZERO;
        let mut delays = Vec::new();
        while let Some(d) = backoff.next_retry_delay(&RetryContext::new(
            delays.len().try_into().unwrap(),
            elapsed,
            &reason,
        )) {
            delays.push(d);
            elapsed += d;
        }
        assert_eq!(
            delays[..7],
            [ms(10), ms(20), ms(40), ms(80), ms(160), ms(320), ms(500)]
        );
        assert!(delays[7..].iter().all(|d| *d == ms(500)));
        assert!(elapsed <= RESUME_WINDOW);
        assert!(elapsed + ms(500) > RESUME_WINDOW, "{elapsed:?}");
    }
}
