//! One task per connection: handshake, message dispatch, keep-alive, timeouts, client results,
//! streams both ways, faults, and the server side of stateful reconnect.
//!
//! The HTTP layer moves bytes: it pushes what the client sent into `inbound` and forwards
//! `outbound` frames to whichever transport is attached. Everything the protocol says happens
//! here.

use std::{
    collections::{HashMap, VecDeque},
    panic::AssertUnwindSafe,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt as _, StreamExt as _};
use signalr_protocol::{
    Arguments, CancelInvocation, Close, Completion, CompletionResult, HandshakeRequest,
    HandshakeResponse, HubMessage, HubProtocol, Invocation, JsonHubProtocol, MessageDecoder,
    MessagePackHubProtocol, Payload, PayloadFormat, StreamItem, TransferFormat, TransportKind,
    stateful::MessageBuffer,
};
use tokio::{
    sync::{mpsc, oneshot},
    task::AbortHandle,
    time::{Instant, sleep_until, timeout},
};
use tracing::{Instrument as _, debug, info, info_span, warn};

use crate::{
    hub::{Handler, HubContext, HubError, HubResult, UploadStream},
    registry::{ConnEntry, Outbound, Shared, lock},
};

/// Requests to a session from its own method tasks and from other connections.
#[derive(Debug)]
pub(crate) enum Command {
    /// A message already in this session's payload format (completions, stream items).
    Send(HubMessage),
    /// Call `target(args…)` on this client; payloads are converted to its format if needed.
    Call { target: String, args: Vec<Payload> },
    /// Call `target` on this client with arguments already in its format.
    CallWith {
        target: String,
        arguments: signalr_protocol::Arguments,
    },
    /// Call `target(args…)` on this client and hand back its result (a client result).
    InvokeClient {
        target: String,
        args: Vec<Payload>,
        reply: oneshot::Sender<HubResult<Payload>>,
    },
    /// Send a Close message with these fields and end the connection.
    Close {
        error: Option<String>,
        allow_reconnect: bool,
    },
    /// An invocation from another instance, serialized in every protocol it had; with `ask`,
    /// a client-result request whose answer goes to `(invocation id, return channel)`.
    Backplane {
        messages: Arc<[(String, Bytes)]>,
        ask: Option<(String, String)>,
    },
}

/// Out-of-band events, never queued behind data.
#[derive(Debug)]
pub(crate) enum Control {
    /// Drop the transport at once, without a Close message.
    Abort,
    /// Stop reading and writing for a while.
    Blackhole(Duration),
    /// The transport attached as generation `.0` (WebSocket or SSE stream) ended. A notice from
    /// a socket that was already replaced is ignored.
    TransportClosed(u64),
    /// A WebSocket with this connection's token wants to resume it (stateful reconnect) as
    /// generation `.1`. The answer is the new socket's own outbound channel (`None`: refused),
    /// so nothing queued for a replaced socket can reach it, and nothing meant for it can be
    /// taken by the socket it replaces. A socket still attached is cut first: the client has
    /// already given up on it.
    Reattach(oneshot::Sender<Option<mpsc::Receiver<Outbound>>>, u64),
    /// The client ended the connection (long-polling DELETE).
    End,
    /// The server stops: end the connection at once, resumable or not.
    Shutdown,
}

/// The channels a session is built from.
#[derive(Debug)]
pub(crate) struct Channels {
    pub(crate) shared: Arc<Shared>,
    pub(crate) entry: Arc<ConnEntry>,
    pub(crate) inbound: mpsc::Receiver<(u64, Bytes)>,
    pub(crate) outbound: mpsc::Sender<Outbound>,
    pub(crate) control: mpsc::UnboundedReceiver<Control>,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) commands_tx: mpsc::Sender<Command>,
}

pub(crate) fn spawn(channels: Channels) {
    let span = info_span!("connection", id = %channels.entry.connection_id);
    tokio::spawn(Session::new(channels).run().instrument(span));
}

/// How a session ended.
#[derive(Debug)]
enum Exit {
    /// Normally (Close from either side, DELETE, transport closed): close the transport cleanly.
    Closed,
    /// Drop the transport without a Close message (abort, timeout, lost resume window).
    Aborted(&'static str),
    /// Because of an error: send Close with it, then close.
    Error(String),
}

struct Session {
    shared: Arc<Shared>,
    entry: Arc<ConnEntry>,
    inbound: mpsc::Receiver<(u64, Bytes)>,
    outbound: mpsc::Sender<Outbound>,
    control: mpsc::UnboundedReceiver<Control>,
    commands: mpsc::Receiver<Command>,
    commands_tx: mpsc::Sender<Command>,
    protocol: Option<Arc<dyn HubProtocol>>,
    decoder: Option<MessageDecoder<Arc<dyn HubProtocol>>>,
    handshake: BytesMut,
    started: Instant,
    last_sent: Instant,
    last_received: Instant,
    pending_calls: HashMap<String, oneshot::Sender<HubResult<Payload>>>,
    /// Client-result requests from other instances: invocation id → return channel.
    remote_calls: HashMap<String, String>,
    next_call_id: u64,
    /// Invocations in progress by id; the handle aborts a stream's task (sequential hub methods
    /// share the worker, so theirs is `None`).
    running: HashMap<String, Option<AbortHandle>>,
    /// Runs the connection's non-streaming hub methods one after the other (sequential mode).
    unary_worker: Option<(mpsc::UnboundedSender<UnaryJob>, AbortHandle)>,
    /// Sequential hub methods queued on the worker or running there.
    unary_outstanding: Arc<AtomicUsize>,
    uploads: HashMap<String, mpsc::Sender<HubResult<Payload>>>,
    /// Stateful reconnect's bookkeeping (signalr-protocol's `MessageBuffer`), when in use.
    stateful: Option<MessageBuffer>,
    /// `false` while a stateful connection waits to be resumed.
    attached: bool,
    /// Which socket is attached: 0 for the first, then one more per resume.
    generation: u64,
    /// Events that arrived while a send was waiting, handled next.
    deferred: VecDeque<Control>,
    /// Bytes were taken in while a send was waiting; their messages are handled next.
    input_pending: bool,
    /// Messages encoded while handling a run of commands, sent as one frame when it ends.
    out: BytesMut,
    /// The ranges of `out` that stateful reconnect keeps for replay.
    tracked: Vec<std::ops::Range<usize>>,
    /// Handling a run of commands: `write` appends to `out` instead of sending.
    batching: bool,
    detached_since: Option<Instant>,
    blackhole_until: Option<Instant>,
}

impl Session {
    fn new(c: Channels) -> Self {
        let now = crate::now();
        Self {
            shared: c.shared,
            entry: c.entry,
            inbound: c.inbound,
            outbound: c.outbound,
            control: c.control,
            commands: c.commands,
            commands_tx: c.commands_tx,
            protocol: None,
            decoder: None,
            handshake: BytesMut::new(),
            started: now,
            last_sent: now,
            last_received: now,
            pending_calls: HashMap::new(),
            remote_calls: HashMap::new(),
            next_call_id: 0,
            running: HashMap::new(),
            unary_worker: None,
            unary_outstanding: Arc::new(AtomicUsize::new(0)),
            uploads: HashMap::new(),
            stateful: None,
            attached: true,
            generation: 0,
            deferred: VecDeque::new(),
            input_pending: false,
            out: BytesMut::new(),
            tracked: Vec::new(),
            batching: false,
            detached_since: None,
            blackhole_until: None,
        }
    }

    fn config(&self) -> &crate::ServerConfig {
        &self.shared.config
    }

    fn tick_period(&self) -> Duration {
        let c = self.config();
        [
            Duration::from_secs(1),
            c.keep_alive_interval / 2,
            c.client_timeout / 4,
            c.handshake_timeout / 4,
        ]
        .into_iter()
        .filter(|d| !d.is_zero())
        .min()
        .unwrap_or(Duration::from_secs(1))
        .max(Duration::from_millis(10))
    }

    fn buffer_full(&self) -> bool {
        self.stateful.as_ref().is_some_and(MessageBuffer::is_full)
    }

    async fn run(mut self) {
        let exit = self.serve().await;
        self.finish(exit).await;
    }

    async fn serve(&mut self) -> Exit {
        let mut tick = tokio::time::interval(self.tick_period());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if let Some(until) = self.blackhole_until {
                // A pulled cable: read nothing, write nothing, until it is plugged back in.
                tokio::select! {
                    control = self.control.recv() => match control {
                        Some(Control::Blackhole(d)) => self.blackhole_until = Some(crate::now() + d),
                        Some(c) => if let Err(exit) = self.on_control(c).await { return exit },
                        None => return Exit::Closed,
                    },
                    () = sleep_until(until) => {
                        debug!("blackhole over");
                        self.blackhole_until = None;
                    }
                }
                continue;
            }
            if self.input_pending {
                if let Err(exit) = self.process_input().await {
                    return exit;
                }
                continue;
            }
            if let Some(control) = self.deferred.pop_front() {
                if let Err(exit) = self.on_control(control).await {
                    return exit;
                }
                continue;
            }
            let accept_commands = self.protocol.is_some() && !self.buffer_full();
            let result = tokio::select! {
                biased;
                control = self.control.recv() => match control {
                    Some(c) => self.on_control(c).await,
                    None => Err(Exit::Closed),
                },
                bytes = self.inbound.recv() => match bytes {
                    Some((generation, bytes)) if self.is_current(generation) => {
                        self.on_bytes(&bytes).await
                    }
                    Some(_) => Ok(()),
                    None => Err(Exit::Closed),
                },
                command = self.commands.recv(), if accept_commands => match command {
                    Some(c) => self.on_commands(c).await,
                    None => Err(Exit::Closed),
                },
                _ = tick.tick() => self.on_tick().await,
            };
            if let Err(exit) = result {
                return exit;
            }
        }
    }

    async fn finish(&mut self, exit: Exit) {
        match &exit {
            Exit::Closed => debug!("connection closed"),
            Exit::Aborted(why) => info!(why, "connection aborted"),
            Exit::Error(e) => info!(error = %e, "connection closed with an error"),
        }
        self.shared.remove(&self.entry);
        for task in self.running.drain().filter_map(|(_, task)| task) {
            task.abort();
        }
        if let Some((_, worker)) = self.unary_worker.take() {
            worker.abort();
        }
        self.uploads.clear();
        self.pending_calls.clear();
        // Another instance waits for these: tell it, as ASP.NET Core's target server does.
        for (id, channel) in std::mem::take(&mut self.remote_calls) {
            let error = Completion::error(id, "Connection disconnected.");
            self.forward_completion(channel, &HubMessage::Completion(error));
        }
        let last = match exit {
            Exit::Error(detail) => {
                if self.protocol.is_some() && self.attached {
                    // ASP.NET Core's words: the detail only with detailed errors on.
                    let error = if self.config().detailed_errors {
                        format!("Connection closed with an error. InvalidDataException: {detail}")
                    } else {
                        "Connection closed with an error.".to_owned()
                    };
                    let _ = self
                        .write(&HubMessage::Close(Close::new(Some(error), false)))
                        .await;
                }
                Outbound::Close
            }
            Exit::Closed => Outbound::Close,
            Exit::Aborted(_) => Outbound::Abort(None),
        };
        let _ = timeout(Duration::from_secs(1), self.outbound.send(last)).await;
    }

    async fn on_control(&mut self, control: Control) -> Result<(), Exit> {
        match control {
            Control::Abort => {
                match (
                    self.stateful.is_some() && self.protocol.is_some(),
                    self.attached,
                ) {
                    (true, true) => {
                        // The client will resume this connection on a new socket.
                        info!("transport aborted; waiting for the client to resume");
                        let _ = self
                            .outbound
                            .send(Outbound::Abort(Some(self.generation)))
                            .await;
                        self.detach();
                        Ok(())
                    }
                    // Waiting for a resume: there is no transport to drop.
                    (true, false) => Ok(()),
                    (false, _) => Err(Exit::Aborted("aborted by the server")),
                }
            }
            Control::Blackhole(d) => {
                info!(ms = d.as_millis(), "blackholing the connection");
                self.blackhole_until = Some(crate::now() + d);
                Ok(())
            }
            Control::TransportClosed(generation) if generation != self.generation => {
                debug!(
                    generation,
                    current = self.generation,
                    "a replaced socket closed"
                );
                Ok(())
            }
            Control::TransportClosed(_) => {
                if self.stateful.is_some() && self.protocol.is_some() {
                    if self.attached {
                        info!("transport lost; waiting for the client to resume");
                        self.detach();
                    }
                    Ok(())
                } else {
                    Err(Exit::Closed)
                }
            }
            Control::Reattach(ready, generation) => self.reattach(ready, generation).await,
            Control::End => Err(Exit::Closed),
            Control::Shutdown => Err(Exit::Aborted("the server is shutting down")),
        }
    }

    /// Whether bytes read by the socket of `generation` count: a replaced socket may still
    /// forward what it read before it went, and the client replays that on the new one.
    fn is_current(&self, generation: u64) -> bool {
        let current = generation == self.generation;
        if !current {
            debug!(generation, "dropped bytes read by a replaced socket");
        }
        current
    }

    fn detach(&mut self) {
        self.attached = false;
        self.detached_since = Some(crate::now());
    }

    /// Resumes a stateful connection on a new socket: Sequence, then every unacknowledged
    /// message, as the .NET server does.
    async fn reattach(
        &mut self,
        ready: oneshot::Sender<Option<mpsc::Receiver<Outbound>>>,
        generation: u64,
    ) -> Result<(), Exit> {
        if self.stateful.is_none() || self.protocol.is_none() {
            let _ = ready.send(None);
            return Ok(());
        }
        // The new socket gets a channel of its own. The old one goes with the socket it fed:
        // its writer sees the Abort (or the end of the channel) after any frames still queued,
        // which only ever reach the replaced socket and are in the replay buffer anyway.
        let (tx, rx) = mpsc::channel(self.outbound.max_capacity());
        let old = std::mem::replace(&mut self.outbound, tx);
        if self.attached {
            // The client replaced a socket we still think is alive (it saw the break first).
            info!("a resume replaces a socket that was still attached");
        }
        let _ = old.try_send(Outbound::Abort(Some(self.generation)));
        drop(old);
        self.generation = generation;
        let (Some(buffer), Some(protocol)) = (self.stateful.as_mut(), &self.protocol) else {
            return Ok(());
        };
        // Sequence and the whole replay as one frame: one slot in the outbound channel, however
        // much it is.
        let mut frame = BytesMut::new();
        let (sequence, replayed) = match buffer.resume_into(protocol.as_ref(), &mut frame) {
            Ok(resumed) => resumed,
            Err(e) => return Err(Exit::Error(format!("could not encode a Sequence: {e}"))),
        };
        // A frame cut off with the old socket is resent whole on the new one (the client replays
        // from a message boundary), so the partial bytes go; complete ones were handled already.
        self.decoder = Some(MessageDecoder::new(Arc::clone(protocol)));
        self.attached = true;
        self.detached_since = None;
        self.last_received = crate::now();
        if ready.send(Some(rx)).is_err() {
            self.detach();
            return Ok(());
        }
        info!(
            sequence = sequence.sequence_id,
            replayed, "connection resumed"
        );
        self.push(frame.freeze()).await
    }

    async fn on_tick(&mut self) -> Result<(), Exit> {
        let now = crate::now();
        let config = self.config().clone();
        if self.protocol.is_none() {
            if now.duration_since(self.started) >= config.handshake_timeout {
                return self.refuse_handshake("Handshake was canceled.").await;
            }
            return Ok(());
        }
        if let Some(since) = self.detached_since {
            if now.duration_since(since) >= config.disconnect_timeout {
                return Err(Exit::Aborted("not resumed within the disconnect timeout"));
            }
            return Ok(());
        }
        match self.entry.transport() {
            Some(TransportKind::LongPolling) => {
                let poll = lock(&self.entry.poll);
                if !poll.active && now.duration_since(poll.last_change) >= config.disconnect_timeout
                {
                    return Err(Exit::Aborted("no poll within the disconnect timeout"));
                }
            }
            Some(_) => {
                if now.duration_since(self.last_received) >= config.client_timeout {
                    return Err(Exit::Aborted("client timed out"));
                }
                if now.duration_since(self.last_sent) >= config.keep_alive_interval {
                    self.write(&HubMessage::Ping).await?;
                }
            }
            None => {}
        }
        if let Some(ack) = self.stateful.as_mut().and_then(MessageBuffer::take_ack) {
            self.write(&HubMessage::Ack(ack)).await?;
        }
        Ok(())
    }

    async fn refuse_handshake(&mut self, error: &str) -> Result<(), Exit> {
        info!(error, "handshake refused");
        let mut buf = BytesMut::new();
        HandshakeResponse::error(error).encode(&mut buf);
        self.push_with_binary(buf.freeze(), false).await?;
        Err(Exit::Closed)
    }

    async fn on_bytes(&mut self, bytes: &[u8]) -> Result<(), Exit> {
        self.last_received = crate::now();
        if self.protocol.is_none() {
            self.handshake.extend_from_slice(bytes);
            let max = self.config().max_message_size;
            let request = match HandshakeRequest::decode(&mut self.handshake, max) {
                Ok(Some(r)) => r,
                Ok(None) => return Ok(()),
                Err(e) => {
                    debug!(error = %e, "malformed handshake");
                    return self
                        .refuse_handshake(
                            "An unexpected error occurred during connection handshake.",
                        )
                        .await;
                }
            };
            self.on_handshake(&request).await?;
        } else if let Some(decoder) = &mut self.decoder {
            decoder.push(bytes);
        }
        self.process_input().await
    }

    /// Handles every complete message the decoder holds.
    async fn process_input(&mut self) -> Result<(), Exit> {
        self.input_pending = false;
        loop {
            let next = match &mut self.decoder {
                Some(decoder) => decoder.next_message(),
                None => return Ok(()),
            };
            match next {
                Ok(Some(message)) => self.on_message(message).await?,
                Ok(None) => return Ok(()),
                Err(e) => return Err(Exit::Error(HubError::from(e).to_string())),
            }
        }
    }

    async fn on_handshake(&mut self, request: &HandshakeRequest) -> Result<(), Exit> {
        let max = self.config().max_message_size;
        let protocol: Arc<dyn HubProtocol> = match request.protocol.as_str() {
            "json" => Arc::new(JsonHubProtocol::new().with_max_message_size(max)),
            "messagepack" => Arc::new(MessagePackHubProtocol::new().with_max_message_size(max)),
            other => {
                return self
                    .refuse_handshake(&format!("The protocol '{other}' is not supported."))
                    .await;
            }
        };
        if request.version > protocol.version() {
            let error = format!(
                "The server does not support version {} of the '{}' protocol.",
                request.version,
                protocol.name()
            );
            return self.refuse_handshake(&error).await;
        }
        let transport = self.entry.transport();
        if protocol.transfer_format() == TransferFormat::Binary
            && transport == Some(TransportKind::ServerSentEvents)
        {
            let error = format!(
                "Cannot use the '{}' protocol on the current transport. The transport does not support 'Binary' transfer format.",
                protocol.name()
            );
            return self.refuse_handshake(&error).await;
        }
        // Stateful reconnect needs it granted at negotiate and version 2 in the handshake; the
        // .NET server silently disables it otherwise.
        if self.entry.stateful
            && request.version >= 2
            && transport == Some(TransportKind::WebSockets)
        {
            self.stateful = Some(MessageBuffer::new(self.config().stateful_buffer_bytes));
        }
        info!(
            protocol = protocol.name(),
            version = request.version,
            ?transport,
            stateful = self.stateful.is_some(),
            "handshake"
        );
        let mut buf = BytesMut::new();
        HandshakeResponse::ok().encode(&mut buf);
        let binary = protocol.transfer_format() == TransferFormat::Binary;
        self.push_with_binary(buf.freeze(), binary).await?;
        let leftover = std::mem::take(&mut self.handshake);
        self.decoder = Some(MessageDecoder::with_buffer(Arc::clone(&protocol), leftover));
        self.protocol = Some(protocol);
        self.shared.on_connected(&self.entry).await;
        if let Some(hook) = self.shared.hub.connected_handler() {
            // Awaited, so that what it sends precedes the answers to the client's first calls.
            let ctx = self.context(Vec::new());
            if timeout(Duration::from_secs(5), hook(ctx)).await.is_err() {
                warn!("on_connected hook took longer than 5 s");
            }
        }
        Ok(())
    }

    fn context(&self, uploads: Vec<Option<UploadStream>>) -> HubContext {
        HubContext {
            connection_id: Arc::clone(&self.entry.connection_id),
            format: self.format(),
            caller: self.commands_tx.clone(),
            shared: Arc::clone(&self.shared),
            uploads: (!uploads.is_empty()).then(|| Arc::new(std::sync::Mutex::new(uploads))),
            headers: None,
        }
    }

    /// A hub method's context and the span it runs in (continuing the caller's trace).
    fn call_context(
        &self,
        uploads: Vec<Option<UploadStream>>,
        target: &str,
        id: Option<&str>,
        headers: signalr_protocol::Headers,
    ) -> (HubContext, tracing::Span) {
        let span = crate::trace::hub_method_span(&self.config().hub_name, target, id, &headers);
        let mut ctx = self.context(uploads);
        if !headers.is_empty() {
            ctx.headers = Some(Arc::new(headers));
        }
        (ctx, span)
    }

    fn format(&self) -> PayloadFormat {
        self.protocol
            .as_ref()
            .map_or(PayloadFormat::Json, HubProtocol::payload_format)
    }

    /// Applies stateful-reconnect numbering to an incoming trackable message; `false` = drop it.
    fn accept_incoming(&mut self) -> bool {
        self.stateful
            .as_mut()
            .is_none_or(MessageBuffer::on_received)
    }

    async fn on_message(&mut self, message: HubMessage) -> Result<(), Exit> {
        if message.message_type().is_trackable() && !self.accept_incoming() {
            return Ok(());
        }
        self.check_ids(&message)?;
        match message {
            HubMessage::Invocation(m) => {
                let headers = m.headers;
                self.dispatch(
                    m.invocation_id,
                    m.target,
                    m.arguments,
                    m.stream_ids,
                    false,
                    headers,
                )
                .await
            }
            HubMessage::StreamInvocation(m) => {
                self.dispatch(
                    Some(m.invocation_id),
                    m.target,
                    m.arguments,
                    m.stream_ids,
                    true,
                    m.headers,
                )
                .await
            }
            HubMessage::StreamItem(m) => {
                if let Some(tx) = self.uploads.get(&m.invocation_id) {
                    if tx.send(Ok(m.item)).await.is_err() {
                        self.uploads.remove(&m.invocation_id);
                    }
                } else {
                    debug!(
                        id = m.invocation_id,
                        "stream item for an unknown stream ignored"
                    );
                }
                Ok(())
            }
            HubMessage::Completion(m) => {
                self.on_completion(m).await;
                Ok(())
            }
            HubMessage::CancelInvocation(CancelInvocation { invocation_id, .. }) => {
                if let Some(task) = self.running.remove(&invocation_id) {
                    // A sequential hub method runs on (its result is dropped); a stream stops.
                    if let Some(task) = task {
                        task.abort();
                    }
                    debug!(id = invocation_id, "invocation cancelled by the client");
                    self.write(&HubMessage::Completion(Completion::void(invocation_id)))
                        .await?;
                }
                Ok(())
            }
            HubMessage::Close(_) => Err(Exit::Closed),
            HubMessage::Ack(ack) => self.on_ack(ack.sequence_id),
            HubMessage::Sequence(seq) => self.on_sequence(seq.sequence_id),
            // Ping, and types added by later protocol versions.
            _ => Ok(()),
        }
    }

    /// Refuses an invocation or stream id longer than the configured limit: ids are keys of
    /// this session's tables (calls running, streams coming in).
    fn check_ids(&self, message: &HubMessage) -> Result<(), Exit> {
        let (id, streams) = match message {
            HubMessage::Invocation(m) => (m.invocation_id.as_deref(), m.stream_ids.as_slice()),
            HubMessage::StreamInvocation(m) => {
                (Some(m.invocation_id.as_str()), m.stream_ids.as_slice())
            }
            _ => return Ok(()),
        };
        let max = self.config().max_invocation_id_length;
        let longest = id
            .into_iter()
            .chain(streams.iter().map(String::as_str))
            .map(str::len)
            .max()
            .unwrap_or(0);
        if longest > max {
            warn!(length = longest, max, "invocation id too long");
            return Err(Exit::Error(format!(
                "An invocation or stream id is longer than {max} bytes."
            )));
        }
        Ok(())
    }

    fn on_ack(&mut self, id: u64) -> Result<(), Exit> {
        match &mut self.stateful {
            Some(buffer) => buffer
                .on_ack(id)
                .map_err(|e| Exit::Error(HubError::from(e).to_string())),
            None => Ok(()),
        }
    }

    fn on_sequence(&mut self, id: u64) -> Result<(), Exit> {
        match &mut self.stateful {
            Some(buffer) => buffer
                .on_sequence(id)
                .map_err(|e| Exit::Error(HubError::from(e).to_string())),
            None => Ok(()),
        }
    }

    async fn on_completion(&mut self, m: Completion) {
        if let Some(channel) = self.remote_calls.remove(&m.invocation_id) {
            self.forward_completion(channel, &HubMessage::Completion(m));
        } else if let Some(reply) = self.pending_calls.remove(&m.invocation_id) {
            let answer = match m.result {
                CompletionResult::Value(v) => Ok(v),
                CompletionResult::Void => Ok(Payload::null(self.format())),
                CompletionResult::Error(e) => Err(HubError::new(e)),
            };
            let _ = reply.send(answer);
        } else if let Some(tx) = self.uploads.remove(&m.invocation_id) {
            if let CompletionResult::Error(e) = m.result {
                let _ = tx.send(Err(HubError::new(e))).await;
            }
        } else {
            debug!(
                id = m.invocation_id,
                "completion for an unknown invocation ignored"
            );
        }
    }

    async fn dispatch(
        &mut self,
        id: Option<String>,
        target: String,
        args: Arguments,
        stream_ids: Vec<String>,
        streaming: bool,
        headers: signalr_protocol::Headers,
    ) -> Result<(), Exit> {
        let handler = self.shared.hub.handler(&target).cloned();
        let error = match (&handler, streaming) {
            (None, _) => Some(format!("Unknown hub method '{target}'")),
            (Some(Handler::Stream(_)), false) => Some(format!(
                "The client attempted to invoke the streaming '{target}' method with a non-streaming invocation."
            )),
            (Some(Handler::Unary(_)), true) => Some(format!(
                "The client attempted to invoke the non-streaming '{target}' method with a streaming invocation."
            )),
            _ => None,
        };
        if let Some(error) = error {
            debug!(target, error, "invocation refused");
            if let Some(id) = id {
                self.write(&HubMessage::Completion(Completion::error(id, error)))
                    .await?;
            } else {
                debug!(target, error, "non-blocking invocation failed");
            }
            return Ok(());
        }
        let capacity = self.config().stream_buffer_capacity.max(1);
        let mut uploads = Vec::with_capacity(stream_ids.len());
        for stream_id in stream_ids {
            let (tx, rx) = mpsc::channel(capacity);
            self.uploads.insert(stream_id, tx);
            uploads.push(Some(UploadStream::new(self.format(), rx)));
        }
        let (ctx, span) = self.call_context(uploads, &target, id.as_deref(), headers);
        let out = self.commands_tx.clone();
        let task_id = id.clone();
        let task = match handler {
            Some(Handler::Unary(f)) => {
                let call = f(ctx, args);
                let job = UnaryJob {
                    call: if span.is_disabled() {
                        call
                    } else {
                        Box::pin(call.instrument(span))
                    },
                    target,
                    id: task_id,
                };
                match self.start_unary(job, out) {
                    Started::Task(task) => task,
                    Started::Queued => {
                        if let Some(id) = id {
                            self.running.insert(id, None);
                        }
                        return Ok(());
                    }
                    Started::Done(completion) => return self.finished_at_once(completion).await,
                }
            }
            Some(Handler::Stream(f)) => tokio::spawn(
                async move {
                    let Some(id) = task_id else { return };
                    let mut items = f(ctx, args);
                    let mut end = Completion::void(id.clone());
                    while let Some(item) = AssertUnwindSafe(items.next())
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|_| {
                            Some(Err(HubError::new(format!(
                                "The hub method '{target}' panicked."
                            ))))
                        })
                    {
                        match item {
                            Ok(value) => {
                                let message =
                                    HubMessage::StreamItem(StreamItem::new(id.clone(), value));
                                if out.send(Command::Send(message)).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                end = Completion::error(id.clone(), e.message());
                                break;
                            }
                        }
                    }
                    let _ = out.send(Command::Send(HubMessage::Completion(end))).await;
                }
                .instrument(span),
            ),
            None => return Ok(()),
        };
        if let Some(id) = id {
            self.running.insert(id, Some(task.abort_handle()));
        }
        Ok(())
    }

    /// A hub method that finished when first polled: what it sent (queued as commands while
    /// it ran) goes first, then its completion. What the replay buffer has no room for waits
    /// in the command queue for an Ack, and the completion waits behind it.
    async fn finished_at_once(&mut self, completion: Option<Completion>) -> Result<(), Exit> {
        while !self.buffer_full() {
            match self.commands.try_recv() {
                Ok(command) => self.on_command(command).await?,
                Err(_) => break,
            }
        }
        let Some(completion) = completion else {
            return Ok(());
        };
        if self.control.is_empty() && self.commands.is_empty() {
            return self.write(&HubMessage::Completion(completion)).await;
        }
        // Behind what is still queued, or after the session has acted on a fault the method
        // asked for (Blackhole, AbortMe), as it would be from the worker.
        self.running.insert(completion.invocation_id.clone(), None);
        let message = Command::Send(HubMessage::Completion(completion));
        if let Err(full) = self.commands_tx.try_send(message) {
            // The queue is full: a sender of its own waits for room, behind the others.
            let out = self.commands_tx.clone();
            tokio::spawn(
                async move {
                    let _ = out.send(full.into_inner()).await;
                }
                .in_current_span(),
            );
        }
        Ok(())
    }

    /// Starts a non-streaming hub method. Sequential (the default): run at once when nothing
    /// is queued before it and it finishes without waiting (Echo, Add: the answer goes out
    /// without a hop to another task), else queued on the connection's worker. Concurrent: a
    /// task of its own.
    fn start_unary(&mut self, mut job: UnaryJob, out: mpsc::Sender<Command>) -> Started {
        match self.config().invocations {
            crate::Invocations::Sequential => {
                if self.unary_outstanding.load(Ordering::Acquire) == 0 {
                    let polled = AssertUnwindSafe(&mut job.call)
                        .catch_unwind()
                        .now_or_never();
                    if let Some(result) = polled {
                        let result = result.unwrap_or_else(|_| Err(panicked(&job.target)));
                        return Started::Done(job.id.map(|id| completion(id, result)));
                    }
                }
                let outstanding = Arc::clone(&self.unary_outstanding);
                let (worker, _) = self.unary_worker.get_or_insert_with(|| {
                    let (tx, rx) = mpsc::unbounded_channel();
                    let task = tokio::spawn(unary_worker(rx, out, outstanding).in_current_span());
                    (tx, task.abort_handle())
                });
                self.unary_outstanding.fetch_add(1, Ordering::AcqRel);
                let _ = worker.send(job);
                Started::Queued
            }
            crate::Invocations::Concurrent => {
                Started::Task(tokio::spawn(run_unary(job, out).in_current_span()))
            }
        }
    }

    /// Handles `first` and the commands already waiting behind it (up to 256, or 64 KiB of
    /// output), then sends everything they wrote as one frame: a hub method that sends a burst
    /// costs one channel hop and one WebSocket message per run, not per message.
    async fn on_commands(&mut self, first: Command) -> Result<(), Exit> {
        const MAX_RUN: usize = 256;
        const MAX_OUT: usize = 64 * 1024;
        self.batching = true;
        let mut result = self.on_command(first).await;
        let mut handled = 1;
        while result.is_ok() && handled < MAX_RUN && self.out.len() < MAX_OUT && self.room_for_out()
        {
            match self.commands.try_recv() {
                Ok(command) => result = self.on_command(command).await,
                Err(_) => break,
            }
            handled += 1;
        }
        self.batching = false;
        // Sent even when the run ends in an error: it may be the Close that says why.
        let flushed = self.flush().await;
        result.and(flushed)
    }

    /// Whether the replay buffer can take what is waiting in `out` and more.
    fn room_for_out(&self) -> bool {
        self.stateful
            .as_ref()
            .is_none_or(|b| b.room() > self.out.len())
    }

    async fn on_command(&mut self, command: Command) -> Result<(), Exit> {
        match command {
            Command::Send(message) => {
                if let HubMessage::Completion(c) = &message {
                    if self.running.remove(&c.invocation_id).is_none() {
                        // Cancelled meanwhile: its completion was already sent.
                        return Ok(());
                    }
                } else if let HubMessage::StreamItem(item) = &message {
                    if !self.running.contains_key(&item.invocation_id) {
                        return Ok(()); // late item of a cancelled stream
                    }
                }
                self.write(&message).await
            }
            Command::CallWith { target, arguments } => {
                self.write(&HubMessage::Invocation(Invocation::non_blocking(
                    target, arguments,
                )))
                .await
            }
            Command::Call { target, args } => match self.arguments(&args) {
                Ok(arguments) => {
                    self.write(&HubMessage::Invocation(Invocation::non_blocking(
                        target, arguments,
                    )))
                    .await
                }
                Err(e) => {
                    warn!(target, error = %e, "could not convert a call's arguments");
                    Ok(())
                }
            },
            Command::InvokeClient {
                target,
                args,
                reply,
            } => {
                let arguments = match self.arguments(&args) {
                    Ok(a) => a,
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return Ok(());
                    }
                };
                self.next_call_id += 1;
                let id = format!("s{}", self.next_call_id);
                self.pending_calls.insert(id.clone(), reply);
                self.write(&HubMessage::Invocation(Invocation::new(
                    id, target, arguments,
                )))
                .await
            }
            Command::Close {
                error,
                allow_reconnect,
            } => {
                self.write(&HubMessage::Close(Close::new(error, allow_reconnect)))
                    .await?;
                Err(Exit::Closed)
            }
            Command::Backplane { messages, ask } => {
                let Some(name) = self.protocol.as_ref().map(HubProtocol::name) else {
                    return Ok(());
                };
                let Some((_, bytes)) = messages.iter().find(|(n, _)| n == name) else {
                    // ASP.NET Core aborts a connection whose protocol another server did not
                    // serialize ("…did not have the requested protocol available").
                    return Err(Exit::Aborted(
                        "a backplane message lacks this connection's protocol",
                    ));
                };
                if let Some((id, channel)) = ask {
                    self.remote_calls.insert(id, channel);
                }
                self.write_framed(bytes.clone()).await
            }
        }
    }

    /// Publishes a Completion for another instance's client-result request, in this
    /// connection's protocol.
    fn forward_completion(&self, channel: String, message: &HubMessage) {
        let (Some(bp), Some(protocol)) = (self.shared.backplane.get(), self.protocol.as_ref())
        else {
            return;
        };
        let mut buf = BytesMut::new();
        if let Err(e) = protocol.encode(message, &mut buf) {
            warn!(error = %e, "could not encode a client result for another instance");
            return;
        }
        let (bp, name) = (Arc::clone(bp), protocol.name());
        tokio::spawn(async move { bp.forward_completion(&channel, name, buf.freeze()).await });
    }

    /// Writes one message already serialized in this connection's protocol (an Invocation,
    /// so trackable under stateful reconnect).
    async fn write_framed(&mut self, bytes: Bytes) -> Result<(), Exit> {
        let start = self.out.len();
        self.out.extend_from_slice(&bytes);
        if self.stateful.is_some() {
            self.tracked.push(start..self.out.len());
        }
        if self.batching {
            return Ok(());
        }
        self.flush().await
    }

    /// Builds an argument list in this connection's format, converting payloads from another
    /// connection's format through JSON values.
    fn arguments(&self, args: &[Payload]) -> HubResult<Arguments> {
        let format = self.format();
        if args.iter().all(|p| p.format() == format) {
            // The usual case (a hub method of this connection): no conversion, no copy.
            return Ok(Arguments::from_payloads(format, args)?);
        }
        let converted = crate::hub::convert(format, args)?;
        Ok(Arguments::from_payloads(format, &converted)?)
    }

    async fn write(&mut self, message: &HubMessage) -> Result<(), Exit> {
        let Some(protocol) = &self.protocol else {
            return Ok(());
        };
        let start = self.out.len();
        if let Err(e) = protocol.encode(message, &mut self.out) {
            warn!(error = %e, "could not encode a message");
            self.out.truncate(start);
            return Ok(());
        }
        if self.stateful.is_some() && message.message_type().is_trackable() {
            self.tracked.push(start..self.out.len());
        }
        if self.batching {
            return Ok(());
        }
        self.flush().await
    }

    /// Sends what `write` gathered as one frame, keeping the trackable messages for replay.
    async fn flush(&mut self) -> Result<(), Exit> {
        if self.out.is_empty() {
            return Ok(());
        }
        let frame = self.out.split().freeze();
        match &mut self.stateful {
            Some(buffer) => {
                for range in self.tracked.drain(..) {
                    buffer.on_sent(frame.slice(range));
                }
                self.shared.note_replay_bytes(buffer.buffered_bytes());
            }
            None => self.tracked.clear(),
        }
        self.push(frame).await
    }

    async fn push(&mut self, frame: Bytes) -> Result<(), Exit> {
        let binary = self
            .protocol
            .as_ref()
            .is_some_and(|p| p.transfer_format() == TransferFormat::Binary);
        self.push_with_binary(frame, binary).await
    }

    async fn push_with_binary(&mut self, bytes: Bytes, binary: bool) -> Result<(), Exit> {
        self.last_sent = crate::now();
        if !self.attached {
            return Ok(()); // kept in the replay buffer
        }
        // Room in the channel (nearly always): no timer, nor the clock read that sets it.
        let frame = match self.outbound.try_send(Outbound::Frame { bytes, binary }) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Full(frame)) => frame,
            Err(mpsc::error::TrySendError::Closed(frame)) if self.stateful.is_some() => frame,
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return Err(Exit::Aborted("transport gone"));
            }
        };
        // A transport that stops draining (a long-polling client that went away) must not hold
        // the session forever.
        let wait = self.config().disconnect_timeout.max(Duration::from_secs(1));
        let deadline = crate::now() + wait;
        if self.stateful.is_none() {
            return match timeout(wait, self.outbound.send(frame)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(Exit::Aborted("transport gone")),
                Err(_) => Err(Exit::Aborted("transport stopped reading")),
            };
        }
        // Stateful: while the channel is full, still notice the socket closing (the frame is in
        // the replay buffer, so detaching loses nothing) and keep other events for later.
        let outbound = self.outbound.clone();
        let send = outbound.send(frame);
        tokio::pin!(send);
        loop {
            tokio::select! {
                sent = &mut send => {
                    if sent.is_err() {
                        // The socket's writer is gone (its channel closed with it): the same as a
                        // transport-closed notice, and the frame is in the replay buffer.
                        info!("transport gone while sending; waiting for the client to resume");
                        self.detach();
                    }
                    return Ok(());
                }
                control = self.control.recv() => match control {
                    Some(Control::TransportClosed(generation)) if generation == self.generation => {
                        info!("transport lost while sending; waiting for the client to resume");
                        self.detach();
                        return Ok(());
                    }
                    Some(other) => self.deferred.push_back(other),
                    None => return Err(Exit::Closed),
                },
                // Keep reading while waiting to write: a client blocked on its own full socket
                // stops reading us, so one of the two has to. The bytes wait in the decoder
                // (bounded by the client's replay limit) and are handled right after.
                bytes = self.inbound.recv(), if self.decoder.is_some() => match bytes {
                    Some((generation, bytes)) if self.is_current(generation) => {
                        self.last_received = crate::now();
                        if let Some(decoder) = &mut self.decoder {
                            decoder.push(&bytes);
                        }
                        self.input_pending = true;
                    }
                    Some(_) => {}
                    None => return Err(Exit::Closed),
                },
                () = sleep_until(deadline) => return Err(Exit::Aborted("transport stopped reading")),
            }
        }
    }
}

/// A non-streaming hub method to run, and where its completion goes.
struct UnaryJob {
    call: futures_util::future::BoxFuture<'static, HubResult<Option<Payload>>>,
    target: String,
    /// The invocation id of a blocking call (a completion is sent), `None` for a send.
    id: Option<String>,
}

/// How a non-streaming hub method was started.
enum Started {
    /// On a task of its own (concurrent invocations).
    Task(tokio::task::JoinHandle<()>),
    /// Queued on the connection's worker.
    Queued,
    /// Already finished; the completion to send for a blocking call.
    Done(Option<Completion>),
}

/// Runs a connection's non-streaming hub methods one after the other, in arrival order;
/// `outstanding` counts those queued or running.
async fn unary_worker(
    mut jobs: mpsc::UnboundedReceiver<UnaryJob>,
    out: mpsc::Sender<Command>,
    outstanding: Arc<AtomicUsize>,
) {
    while let Some(job) = jobs.recv().await {
        run_unary(job, out.clone()).await;
        outstanding.fetch_sub(1, Ordering::AcqRel);
    }
}

fn panicked(target: &str) -> HubError {
    HubError::new(format!("The hub method '{target}' panicked."))
}

fn completion(id: String, result: HubResult<Option<Payload>>) -> Completion {
    match result {
        Ok(Some(value)) => Completion::value(id, value),
        Ok(None) => Completion::void(id),
        Err(e) => Completion::error(id, e.message()),
    }
}

/// Runs one non-streaming hub method and queues its completion for a blocking invocation.
async fn run_unary(job: UnaryJob, out: mpsc::Sender<Command>) {
    let UnaryJob { call, target, id } = job;
    let result = AssertUnwindSafe(call)
        .catch_unwind()
        .await
        .unwrap_or_else(|_| Err(panicked(&target)));
    if let Some(id) = id {
        let message = HubMessage::Completion(completion(id, result));
        let _ = out.send(Command::Send(message)).await;
    }
}
