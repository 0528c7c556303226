//! The WebSockets transport: text frames for JSON, binary frames for MessagePack; connections
//! without negotiate; resuming a stateful connection on a new socket.

use std::{collections::HashMap, sync::Arc};

use axum::{
    extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code},
    http::StatusCode,
    response::Response,
};
use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use signalr_protocol::TransportKind;
use tokio::sync::{mpsc, oneshot};
use tracing::{Instrument as _, debug, info_span};

use super::{User, lookup, offered, status};
use crate::{
    app::App,
    wire::{ConnEntry, Control, Outbound},
};

/// How long a resuming socket waits for the replaced one to let go of the connection.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Read buffer per socket: tungstenite's default of 128 KiB is resident on every connection,
/// and tungstenite zero-fills up to this much of it before every read, so a small one is also
/// cheaper per message (the client's default is 4 KiB too).
const READ_BUFFER: usize = 4 * 1024;

pub(super) fn connect(
    app: &Arc<App>,
    params: &HashMap<String, String>,
    user: &User,
    upgrade: WebSocketUpgrade,
) -> Result<Response, Response> {
    offered(app, TransportKind::WebSockets)?;
    if app.config.refuse_websockets {
        return Err(status(
            StatusCode::SERVICE_UNAVAILABLE,
            "WebSockets are refused (fault injection)",
        ));
    }
    let (entry, resume) = if params.contains_key("id") {
        let entry = lookup(app, params, user)?;
        let resume = entry.transport() == Some(TransportKind::WebSockets);
        if !entry.bind(TransportKind::WebSockets) {
            return Err(status(
                StatusCode::BAD_REQUEST,
                "the connection uses another transport",
            ));
        }
        if resume && !entry.stateful {
            return Err(status(
                StatusCode::CONFLICT,
                "the connection already has a WebSocket",
            ));
        }
        let config = &app.config;
        if resume && !entry.take_resume(config.resume_burst, config.resumes_per_second) {
            debug!(connection_id = %entry.connection_id, "resume refused: too many");
            return Err(status(
                StatusCode::TOO_MANY_REQUESTS,
                "too many resumes of this connection",
            ));
        }
        (entry, resume)
    } else {
        // Skip negotiation: the connection is created by the upgrade itself.
        let entry = app.create_connection(false, false, false, user.clone());
        entry.bind(TransportKind::WebSockets);
        (entry, false)
    };
    let max = app.config.socket_message_limit();
    let span = info_span!("websocket", id = %entry.connection_id, resume);
    Ok(upgrade
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(READ_BUFFER)
        .max_write_buffer_size(4 * 1024 * 1024)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| serve(entry, socket, resume).instrument(span)))
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

enum End {
    /// The session ended the connection; the socket was closed (or dropped, on abort).
    BySession,
    /// The client went away or the socket failed.
    BySocket,
}

/// Where this socket's outgoing frames come from.
enum Feed {
    /// The connection's first socket: the channel it was created with.
    First(tokio::sync::OwnedMutexGuard<mpsc::Receiver<Outbound>>),
    /// A resumed socket: a channel of its own, handed over by the session.
    Resumed(mpsc::Receiver<Outbound>),
}

impl Feed {
    fn rx(&mut self) -> &mut mpsc::Receiver<Outbound> {
        match self {
            Self::First(guard) => guard,
            Self::Resumed(rx) => rx,
        }
    }
}

/// Takes this socket's outbound channel: the connection's own for the first socket, a fresh one
/// from the session on a resume. `None` (the socket already closed) when refused.
async fn attach(
    entry: &Arc<ConnEntry>,
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    resume: bool,
) -> Option<(Feed, u64)> {
    if resume {
        let generation = entry
            .generations
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel)
            + 1;
        let (ready, is_ready) = oneshot::channel();
        let _ = entry.control.send(Control::Reattach(ready, generation));
        let Ok(Some(rx)) = is_ready.await else {
            debug!("resume refused");
            refuse(sink, "cannot resume").await;
            return None;
        };
        return Some((Feed::Resumed(rx), generation));
    }
    let Ok(outbound) =
        tokio::time::timeout(LOCK_WAIT, Arc::clone(&entry.outbound).lock_owned()).await
    else {
        refuse(sink, "already connected").await;
        return None;
    };
    Some((Feed::First(outbound), 0))
}

/// Closes a socket that may not attach, with a policy-violation close frame.
async fn refuse(
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    reason: &'static str,
) {
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code: close_code::POLICY,
            reason: reason.into(),
        })))
        .await;
}

async fn serve(entry: Arc<ConnEntry>, socket: WebSocket, resume: bool) {
    let (mut sink, mut stream) = socket.split();
    let Some((mut outbound, generation)) = attach(&entry, &mut sink, resume).await else {
        return;
    };
    // The reader runs on its own: forwarding into a full inbound queue must never stop this
    // loop from draining the outbound one (the session may be waiting on it), or both wait.
    let inbound = entry.inbound.clone();
    let mut reader = tokio::spawn(async move {
        loop {
            let bytes = match stream.next().await {
                Some(Ok(Message::Text(text))) => Bytes::from(text),
                Some(Ok(Message::Binary(bytes))) => bytes,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(_))) | None => return End::BySocket,
                Some(Err(e)) => {
                    debug!(error = %e, "socket error");
                    return End::BySocket;
                }
            };
            if inbound.send((generation, bytes)).await.is_err() {
                return End::BySession;
            }
        }
    });
    // However this loop ends, the reader goes with it.
    let _reader_guard = AbortOnDrop(reader.abort_handle());
    let end = loop {
        tokio::select! {
            ended = &mut reader => break ended.unwrap_or(End::BySocket),
            out = outbound.rx().recv() => {
                let mut next = out;
                // Feed everything that is ready, then flush once.
                loop {
                    match next {
                        Some(Outbound::Frame { bytes, binary }) => {
                            let message = if binary {
                                Message::Binary(bytes)
                            } else {
                                match Utf8Bytes::try_from(bytes) {
                                    Ok(text) => Message::Text(text),
                                    Err(_) => Message::Binary(Bytes::new()),
                                }
                            };
                            if sink.feed(message).await.is_err() {
                                break;
                            }
                        }
                        Some(Outbound::Close) | None => {
                            let _ = sink.send(Message::Close(Some(CloseFrame { code: close_code::NORMAL, reason: Utf8Bytes::default() }))).await;
                            return;
                        }
                        // A cut meant for the socket this one replaced: not ours.
                        Some(Outbound::Abort(Some(target))) if target != generation => {}
                        Some(Outbound::Abort(_)) => {
                            // Dropping both halves closes the TCP connection without a close frame.
                            debug!("socket aborted");
                            drop(outbound);
                            drop(sink);
                            reader.abort();
                            let _ = entry.control.send(Control::TransportClosed(generation));
                            return;
                        }
                    }
                    match outbound.rx().try_recv() {
                        Ok(more) => next = Some(more),
                        Err(_) => break,
                    }
                }
                if sink.flush().await.is_err() {
                    break End::BySocket;
                }
            }
        }
    };
    drop(outbound);
    if let End::BySocket = end {
        debug!("socket closed by the client");
        let _ = entry.control.send(Control::TransportClosed(generation));
    }
}
