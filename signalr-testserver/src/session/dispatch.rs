//! What the client sends: invocations dispatched to hub methods (one at a time by default, as
//! ASP.NET Core), stream items for upload streams, completions of client results, cancels.

use std::{
    collections::HashMap,
    panic::AssertUnwindSafe,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use futures_util::{FutureExt as _, StreamExt as _};
use signalr_protocol::{
    Arguments, CancelInvocation, Completion, CompletionResult, Headers, HubMessage, Payload,
    StreamItem,
};
use tokio::{
    sync::{mpsc, oneshot},
    task::AbortHandle,
};
use tracing::{Instrument as _, debug, warn};

use super::{Exit, Phase, Session, outbound::MAX_OUT};
use crate::{
    error::{HubError, HubResult},
    hub::{Handler, HubContext, UploadStream},
    wire::Command,
};

/// The hub calls of a session in both directions.
#[derive(Default)]
pub(super) struct Calls {
    /// Client results this session asked its client for, by invocation id.
    asked: HashMap<String, oneshot::Sender<HubResult<Payload>>>,
    /// Client-result requests from other instances: invocation id → return channel.
    pub(super) remote: HashMap<String, String>,
    next_id: u64,
    /// Invocations in progress by id; the handle aborts a stream's task (sequential hub methods
    /// share the worker, so theirs is `None`).
    running: HashMap<String, Option<AbortHandle>>,
    /// Runs the connection's non-streaming hub methods one after the other (sequential mode).
    unary_worker: Option<(mpsc::UnboundedSender<UnaryJob>, AbortHandle)>,
    /// Sequential hub methods queued on the worker or running there.
    unary_outstanding: Arc<AtomicUsize>,
    /// The client's upload streams by stream id.
    uploads: HashMap<String, mpsc::Sender<HubResult<Payload>>>,
}

impl Calls {
    /// The connection ended: every hub method stops, every client result waiting is dropped
    /// (its caller hears that the connection closed).
    pub(super) fn end(&mut self) {
        for task in self.running.drain().filter_map(|(_, task)| task) {
            task.abort();
        }
        if let Some((_, worker)) = self.unary_worker.take() {
            worker.abort();
        }
        self.uploads.clear();
        self.asked.clear();
    }

    /// A new id for a client result this session asks for.
    pub(super) fn ask(&mut self, reply: oneshot::Sender<HubResult<Payload>>) -> String {
        self.next_id += 1;
        let id = format!("s{}", self.next_id);
        self.asked.insert(id.clone(), reply);
        id
    }

    /// Whether a hub method's output still goes out: its invocation runs (a completion ends
    /// it; a cancelled one was already answered).
    pub(super) fn still_running(&mut self, message: &HubMessage) -> bool {
        match message {
            HubMessage::Completion(c) => self.running.remove(&c.invocation_id).is_some(),
            HubMessage::StreamItem(item) => self.running.contains_key(&item.invocation_id),
            _ => true,
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

impl Session {
    /// Handles every complete message the decoder holds; stops early when what it wrote fills
    /// the transport (the rest waits in the decoder).
    pub(super) async fn process_input(&mut self) -> Result<(), Exit> {
        self.unprocessed = false;
        loop {
            let Phase::Live(live) = &mut self.phase else {
                return Ok(());
            };
            match live.decoder.next_message() {
                Ok(Some(message)) => self.on_message(message).await?,
                Ok(None) => return Ok(()),
                Err(e) => return Err(Exit::Error(HubError::from(e).to_string())),
            }
            if self.out.len() >= MAX_OUT {
                self.flush()?;
                if self.pending.is_some() {
                    self.unprocessed = true;
                    return Ok(());
                }
            }
        }
    }

    pub(super) async fn on_message(&mut self, message: HubMessage) -> Result<(), Exit> {
        if message.message_type().is_trackable() && !self.accept_incoming() {
            return Ok(());
        }
        self.check_ids(&message)?;
        match message {
            HubMessage::Invocation(m) => self.dispatch(
                m.invocation_id,
                m.target,
                m.arguments,
                m.stream_ids,
                false,
                m.headers,
            ),
            HubMessage::StreamInvocation(m) => self.dispatch(
                Some(m.invocation_id),
                m.target,
                m.arguments,
                m.stream_ids,
                true,
                m.headers,
            ),
            HubMessage::StreamItem(m) => {
                if let Some(tx) = self.calls.uploads.get(&m.invocation_id) {
                    if tx.send(Ok(m.item)).await.is_err() {
                        self.calls.uploads.remove(&m.invocation_id);
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
                if let Some(task) = self.calls.running.remove(&invocation_id) {
                    // A sequential hub method runs on (its result is dropped); a stream stops.
                    if let Some(task) = task {
                        task.abort();
                    }
                    debug!(id = invocation_id, "invocation cancelled by the client");
                    self.write(&HubMessage::Completion(Completion::void(invocation_id)));
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

    async fn on_completion(&mut self, m: Completion) {
        if let Some(channel) = self.calls.remote.remove(&m.invocation_id) {
            self.forward_completion(channel, &HubMessage::Completion(m));
        } else if let Some(reply) = self.calls.asked.remove(&m.invocation_id) {
            let answer = match m.result {
                CompletionResult::Value(v) => Ok(v),
                CompletionResult::Void => Ok(Payload::null(self.format())),
                CompletionResult::Error(e) => Err(HubError::new(e)),
            };
            let _ = reply.send(answer);
        } else if let Some(tx) = self.calls.uploads.remove(&m.invocation_id) {
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

    /// The context a hub method (or the connected hook) runs with.
    pub(super) fn context(&self, uploads: Vec<Option<UploadStream>>) -> HubContext {
        HubContext {
            connection_id: Arc::clone(&self.entry.connection_id),
            format: self.format(),
            caller: self.commands_tx.clone(),
            app: Arc::clone(&self.app),
            uploads: (!uploads.is_empty()).then(|| Arc::new(std::sync::Mutex::new(uploads))),
            headers: None,
        }
    }

    fn dispatch(
        &mut self,
        id: Option<String>,
        target: String,
        args: Arguments,
        stream_ids: Vec<String>,
        streaming: bool,
        headers: Headers,
    ) -> Result<(), Exit> {
        let handler = self.hub.handler(&target).cloned();
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
                self.write(&HubMessage::Completion(Completion::error(id, error)));
            } else {
                debug!(target, error, "non-blocking invocation failed");
            }
            return Ok(());
        }
        let capacity = self.config().stream_buffer_capacity.max(1);
        let mut uploads = Vec::with_capacity(stream_ids.len());
        for stream_id in stream_ids {
            let (tx, rx) = mpsc::channel(capacity);
            self.calls.uploads.insert(stream_id, tx);
            uploads.push(Some(UploadStream::new(self.format(), rx)));
        }
        // The span continues the caller's trace.
        let span = crate::trace::hub_method_span(
            &self.config().hub_name,
            &target,
            id.as_deref(),
            &headers,
        );
        let mut ctx = self.context(uploads);
        if !headers.is_empty() {
            ctx.headers = Some(Arc::new(headers));
        }
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
                            self.calls.running.insert(id, None);
                        }
                        return Ok(());
                    }
                    Started::Done(completion) => return self.finished_at_once(completion),
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
                        .unwrap_or_else(|_| Some(Err(panicked(&target))))
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
            self.calls.running.insert(id, Some(task.abort_handle()));
        }
        Ok(())
    }

    /// A hub method that finished when first polled: what it sent (queued as commands while
    /// it ran) goes first, then its completion. What the replay buffer has no room for waits
    /// in the command queue for an Ack, and the completion waits behind it.
    fn finished_at_once(&mut self, completion: Option<Completion>) -> Result<(), Exit> {
        while self.has_room() {
            match self.commands.try_recv() {
                Ok(command) => self.on_command(command)?,
                Err(_) => break,
            }
        }
        let Some(completion) = completion else {
            return Ok(());
        };
        if self.control.is_empty() && self.commands.is_empty() {
            self.write(&HubMessage::Completion(completion));
            return Ok(());
        }
        // Behind what is still queued, or after the session has acted on a fault the method
        // asked for (Blackhole, AbortMe), as it would be from the worker.
        self.calls
            .running
            .insert(completion.invocation_id.clone(), None);
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
                let calls = &mut self.calls;
                if calls.unary_outstanding.load(Ordering::Acquire) == 0 {
                    let polled = AssertUnwindSafe(&mut job.call)
                        .catch_unwind()
                        .now_or_never();
                    if let Some(result) = polled {
                        let result = result.unwrap_or_else(|_| Err(panicked(&job.target)));
                        return Started::Done(job.id.map(|id| completion(id, result)));
                    }
                }
                let outstanding = Arc::clone(&calls.unary_outstanding);
                let (worker, _) = calls.unary_worker.get_or_insert_with(|| {
                    let (tx, rx) = mpsc::unbounded_channel();
                    let task = tokio::spawn(unary_worker(rx, out, outstanding).in_current_span());
                    (tx, task.abort_handle())
                });
                calls.unary_outstanding.fetch_add(1, Ordering::AcqRel);
                let _ = worker.send(job);
                Started::Queued
            }
            crate::Invocations::Concurrent => {
                Started::Task(tokio::spawn(run_unary(job, out).in_current_span()))
            }
        }
    }
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
