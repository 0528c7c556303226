//! The driver: the shell around the connection [`Core`]. One task per started connection, one
//! loop, one timer. It reads the clock in one place, does the I/O the core asks for (connect,
//! write, read, resume, close) and hands the core what happened; every protocol decision is
//! the core's.

use std::{future::Future, pin::Pin, sync::Arc, task::Poll, time::Duration};

use bytes::Bytes;
use signalr_protocol::Completion;
use signalr_protocol::TransportKind;
use signalr_transport::{Connection, Negotiated, Transport, TransportError};
use tokio::{
    sync::{mpsc, oneshot},
    time::{Instant, sleep_until},
};

use crate::{
    command::{Channels, Command},
    config::{Config, Opener},
    core::{Action, Core, Event, Opened},
    error::{HubError, Result},
    handlers::{self, Dispatch},
    rt,
    shared::Shared,
    target::ReconnectAttempt,
};

/// What an operation the core asked for came to.
enum Done {
    Connected(Result<Box<Connection>>),
    Resumed(std::result::Result<Box<dyn Transport>, TransportError>),
    /// Close was written (its size), or not.
    Closed(Option<usize>),
}

/// A connect, resume or close in progress. On the heap, and only while it runs: negotiate, TLS,
/// a proxy tunnel and the upgrade make a future of several KiB, which would otherwise be part
/// of the driver task for the connection's whole life.
type Op = Pin<Box<dyn Future<Output = Done> + Send>>;

pub(crate) struct Driver {
    config: Arc<Config>,
    opener: Arc<Opener>,
    shared: Arc<Shared>,
    commands: mpsc::Receiver<Box<Command>>,
    core: Core<Channels>,
    transport: Option<Box<dyn Transport>>,
    /// The negotiated connection, to resume (stateful reconnect).
    negotiated: Option<Box<Negotiated>>,
    /// Server invocations for the session's handler task, a batch per read.
    dispatch: Option<mpsc::Sender<Vec<Dispatch>>>,
    /// Client-result answers from the session's handler task (boxed: an idle connection's
    /// channel allocates a block of slots up front).
    answers: Option<mpsc::UnboundedReceiver<Box<Completion>>>,
    started: Option<oneshot::Sender<Result<()>>>,
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
            core: Core::new(Arc::clone(&config.core)),
            config,
            opener,
            shared,
            commands,
            transport: None,
            negotiated: None,
            dispatch: None,
            answers: None,
            started: None,
        }
    }

    /// Connects (reporting the outcome on `started`), then serves until stopped or given up.
    pub(crate) async fn run(mut self, started: oneshot::Sender<Result<()>>) {
        self.started = Some(started);
        self.core.handle_start(rt::now());
        // One timer, moved when the next deadline moves (each message sent or received moves
        // it later, which tokio does without touching its timer wheel).
        let timer = sleep_until(Instant::from_std(rt::now()) + Duration::from_secs(86_400 * 365));
        tokio::pin!(timer);
        let mut op: Option<Op> = None;
        loop {
            self.apply(&mut op).await;
            if self.core.is_finished() {
                return;
            }
            if let Some(frames) = self.core.poll_transmit(rt::now()) {
                self.write(frames).await;
                continue;
            }
            let wake = self.core.poll_timeout().map(Instant::from_std);
            if let Some(wake) = wake {
                if timer.deadline() != wake {
                    timer.as_mut().reset(wake);
                }
            }
            let accepting = self.core.wants_requests();
            let answering = self.answers.is_some() && self.core.wants_answers();
            // A stream item waiting for its consumer holds reading back, nothing else.
            let blocked = self.core.blocked_stream().cloned();
            let reading = self.transport.is_some() && self.core.wants_read();
            // Unbiased: a flood of calls must not starve receiving (and with it pings, Acks and
            // the server timeout), nor a flood of messages starve the calls.
            tokio::select! {
                command = self.commands.recv(), if accepting => match command {
                    Some(first) => self.on_commands(*first),
                    None => self.core.handle_abandoned(rt::now()),
                },
                // Calls held back: a stop must still get through. The calls read past on the
                // way keep their order in the outbox.
                () = self.shared.stop_requested.notified(), if !accepting => {
                    let now = rt::now();
                    while let Ok(command) = self.commands.try_recv() {
                        self.core.handle_request(now, *command);
                    }
                }
                answer = async { self.answers.as_mut()?.recv().await }, if answering => {
                    match answer {
                        Some(completion) => self.core.handle_answer(rt::now(), *completion),
                        // The session's handlers have ended.
                        None => self.answers = None,
                    }
                }
                permits = async { blocked.as_ref()?.reserve_many(2).await.ok() }, if blocked.is_some() => {
                    // Given back first: the core hands the item over itself.
                    drop(permits);
                    self.core.handle_stream_room(rt::now());
                }
                chunk = async { self.transport.as_mut()?.recv().await }, if reading => {
                    let now = rt::now();
                    match chunk {
                        Some(Ok(bytes)) => self.core.handle_received(now, &bytes),
                        Some(Err(e)) => self.core.handle_transport_error(now, HubError::Transport(e)),
                        None => self.core.handle_transport_closed(now),
                    }
                }
                done = async { op.as_mut()?.await.into() }, if op.is_some() => {
                    op = None;
                    if let Some(done) = done {
                        self.on_done(done);
                    }
                }
                () = &mut timer, if wake.is_some() => self.core.handle_timeout(rt::now()),
            }
        }
    }

    /// Hands `first` and whatever else is queued to the core, so that their messages go out in
    /// one write.
    fn on_commands(&mut self, first: Command) {
        let now = rt::now();
        self.core.handle_request(now, first);
        for _ in 1..256 {
            if !self.core.wants_requests() {
                break;
            }
            match self.commands.try_recv() {
                Ok(command) => self.core.handle_request(now, *command),
                Err(_) => break,
            }
        }
    }

    /// Does what the core asks and reports what it says, until it has nothing more.
    async fn apply(&mut self, op: &mut Option<Op>) {
        loop {
            let mut idle = true;
            while let Some(action) = self.core.poll_action() {
                idle = false;
                self.on_action(action, op).await;
            }
            while let Some(event) = self.core.poll_event() {
                idle = false;
                self.on_event(event);
            }
            let batch = self.core.poll_calls();
            // What arrived in one read reaches the handlers as one batch. Waits only when 64
            // batches are queued behind slow handlers.
            if let (false, Some(dispatch)) = (batch.is_empty(), &self.dispatch) {
                let _ = dispatch.send(batch).await;
            }
            if idle {
                return;
            }
        }
    }

    async fn on_action(&mut self, action: Action, op: &mut Option<Op>) {
        match action {
            Action::Connect(attempt) => {
                if let (Some(attempt), Some(hook)) = (attempt, &self.config.before_reconnect) {
                    let attempt = ReconnectAttempt {
                        attempt: attempt.number,
                        elapsed: attempt.elapsed,
                        reason: &attempt.reason,
                    };
                    self.shared
                        .update_target(|target| (hook.0)(target, &attempt));
                }
                *op = Some(Box::pin(connect(
                    Arc::clone(&self.config),
                    Arc::clone(&self.opener),
                    Arc::clone(&self.shared),
                )));
            }
            Action::Resume => {
                let Some(negotiated) = self.negotiated.as_deref().cloned() else {
                    self.core
                        .handle_resume_failed(rt::now(), &HubError::ConnectionClosed);
                    return;
                };
                let config = Arc::clone(&self.config);
                *op = Some(Box::pin(async move {
                    let format = config.core.protocol.transfer_format();
                    let opened = negotiated.reconnect_websocket(format, &config.http).await;
                    Done::Resumed(opened.map(|t| Box::new(t) as Box<dyn Transport>))
                }));
            }
            Action::Close(frame) => match self.transport.take() {
                Some(transport) => *op = Some(Box::pin(close(transport, frame))),
                None => self.core.handle_closed(rt::now(), None),
            },
            Action::Discard => {
                if let Some(mut transport) = self.transport.take() {
                    let _ = transport.close().await;
                }
            }
        }
    }

    fn on_event(&mut self, event: Event<Channels>) {
        match event {
            Event::Connected {
                kind,
                connection_id,
                stateful,
            } => {
                // A new session: its own handler task.
                let (dispatch, incoming) = mpsc::channel(64);
                let (answer_tx, answers) = mpsc::unbounded_channel();
                let task = tokio::spawn(handlers::run(
                    Arc::clone(&self.shared.handlers),
                    self.config.trace.clone(),
                    self.config.core.protocol.payload_format(),
                    incoming,
                    answer_tx,
                ));
                self.shared.track_handlers(task.abort_handle());
                self.dispatch = Some(dispatch);
                self.answers = Some(answers);
                // The driver runs in the connection's span.
                let span = tracing::Span::current();
                span.record(
                    "signalr.connection_id",
                    connection_id.as_deref().unwrap_or(""),
                );
                span.record("signalr.transport", kind.as_str());
                span.record("signalr.stateful", stateful);
            }
            Event::State(state) => self.shared.set_state(state),
            Event::ConnectionId(id) => self.shared.set_connection_id(id),
            Event::Started(result) => {
                if let Some(started) = self.started.take() {
                    let _ = started.send(result.map_err(|e| *e));
                }
            }
            Event::Reconnecting(error) => self.shared.emit_reconnecting(&error),
            Event::Reconnected(id) => self.shared.emit_reconnected(id.as_deref()),
            Event::Closed(reason) => {
                // Calls still queued get the same answer, rather than a dropped reply.
                self.commands.close();
                let now = rt::now();
                while let Ok(command) = self.commands.try_recv() {
                    self.core.handle_request(now, *command);
                }
                self.shared.closed(reason);
            }
            Event::Stopped(replies) => {
                for reply in replies {
                    let _ = reply.send(());
                }
            }
            Event::SendRoom(room) => self.shared.set_send_room(room),
            Event::ReplayBytes(bytes) => self.shared.note_replay_bytes(bytes),
        }
    }

    fn on_done(&mut self, done: Done) {
        let now = rt::now();
        match done {
            Done::Connected(Ok(conn)) => {
                let opened = Opened {
                    kind: conn.transport.kind(),
                    connection_id: conn.connection_id().map(str::to_owned),
                    stateful: conn.stateful_reconnect(),
                };
                let conn = *conn;
                // Kept only when the core may resume it (stateful reconnect on a WebSocket).
                let resumable = self.config.core.stateful_buffer.is_some()
                    && opened.stateful
                    && opened.kind == TransportKind::WebSockets;
                self.negotiated = conn.negotiated.filter(|_| resumable).map(Box::new);
                self.transport = Some(conn.transport);
                self.core.handle_transport_opened(now, opened);
            }
            Done::Connected(Err(e)) => self.core.handle_connect_failed(now, e),
            Done::Resumed(Ok(transport)) => {
                self.transport = Some(transport);
                self.core.handle_resumed(now);
            }
            Done::Resumed(Err(e)) => self.core.handle_resume_failed(now, &HubError::Transport(e)),
            Done::Closed(sent) => self.core.handle_closed(now, sent),
        }
    }

    /// Writes `frames`; a write that cannot finish may take until the core's write deadline.
    async fn write(&mut self, frames: Bytes) {
        let deadline = self.core.write_deadline().map(Instant::from_std);
        let Some(transport) = self.transport.as_mut() else {
            self.core
                .handle_write_failed(rt::now(), HubError::ConnectionClosed);
            return;
        };
        // Polled once first: a write that finishes at once (nearly all) needs no timer.
        let mut send = transport.send(frames);
        let sent = match std::future::poll_fn(|cx| Poll::Ready(send.as_mut().poll(cx))).await {
            Poll::Ready(sent) => Some(sent),
            Poll::Pending => match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, send).await.ok(),
                None => Some(send.await),
            },
        };
        let now = rt::now();
        match sent {
            Some(Ok(())) => self.core.handle_written(now),
            Some(Err(e)) => self.core.handle_write_failed(now, HubError::Transport(e)),
            None => self.core.handle_write_timeout(now),
        }
    }
}

/// Negotiates and opens a transport.
async fn connect(config: Arc<Config>, opener: Arc<Opener>, shared: Arc<Shared>) -> Done {
    let format = config.core.protocol.transfer_format();
    let opened = match &*opener {
        Opener::Connector(connector) => connector.connect(format).await,
        Opener::Http(client) => {
            let target = shared.target();
            let mut http = config.http.clone();
            http.headers = target.headers;
            signalr_transport::connect_with(client, &target.url, format, &http).await
        }
    };
    Done::Connected(opened.map(Box::new).map_err(HubError::Transport))
}

/// Writes Close (best effort) and closes the transport.
async fn close(mut transport: Box<dyn Transport>, frame: Option<Bytes>) -> Done {
    let mut sent = None;
    if let Some(frame) = frame {
        let bytes = frame.len();
        if transport.send(frame).await.is_ok() {
            sent = Some(bytes);
        }
    }
    let _ = transport.close().await;
    Done::Closed(sent)
}
