//! Scripted connections: the server's transports (negotiate, WebSockets, SSE, long polling)
//! with the hub replaced by the test, which reads the client's raw bytes and writes whatever
//! bytes it likes back — a garbage handshake, a Completion for an id never used, a record that
//! never ends, a flood of pings. Hostile-server tests run over every real transport this way.
//!
//! ```no_run
//! use signalr_testserver::{ServerConfig, TestServer};
//!
//! # async fn run() -> std::io::Result<()> {
//! let (server, mut script) = TestServer::start_scripted(ServerConfig::default()).await?;
//! // … a client connects to server.url() …
//! let mut conn = script.accept().await.expect("a connection");
//! let handshake = conn.recv().await; // the client's raw handshake request
//! conn.send(&b"<html>502 Bad Gateway</html>"[..], false).await; // not a handshake response
//! # Ok(()) }
//! ```

use std::{fmt, sync::Arc};

use bytes::Bytes;
use signalr_protocol::TransportKind;
use tokio::sync::mpsc;

use crate::{
    app::{Accept, App, Channels},
    wire::{Command, ConnEntry, Control, Outbound},
};

/// Where the server hands over each new connection when it is scripted.
pub struct Script {
    accepted: mpsc::UnboundedReceiver<ScriptedConnection>,
}

impl fmt::Debug for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Script").finish_non_exhaustive()
    }
}

/// Hands each new connection to the test instead of a hub session.
#[derive(Debug)]
pub(crate) struct ScriptAcceptor(mpsc::UnboundedSender<ScriptedConnection>);

impl Accept for ScriptAcceptor {
    fn accept(&self, connection: Channels) {
        // Nobody accepting any more: the connection ends as it is dropped.
        drop(self.0.send(ScriptedConnection::new(connection)));
    }
}

impl Script {
    pub(crate) fn channel() -> (ScriptAcceptor, Self) {
        let (tx, accepted) = mpsc::unbounded_channel();
        (ScriptAcceptor(tx), Self { accepted })
    }

    /// The next connection a client opened (negotiated, or a WebSocket without negotiate);
    /// `None` once the server is gone.
    pub async fn accept(&mut self) -> Option<ScriptedConnection> {
        self.accepted.recv().await
    }

    /// A connection that is already waiting, if any.
    pub fn try_accept(&mut self) -> Option<ScriptedConnection> {
        self.accepted.try_recv().ok()
    }
}

/// One client connection whose server side is the test. Bytes go out unchanged (no framing is
/// added: write whole records, or half of one); nothing is sent unless the test sends it, not
/// even pings. Dropping it ends the connection cleanly, as [`close`](Self::close) does.
pub struct ScriptedConnection {
    app: Arc<App>,
    entry: Arc<ConnEntry>,
    inbound: mpsc::Receiver<(u64, Bytes)>,
    outbound: mpsc::Sender<Outbound>,
    control: mpsc::UnboundedReceiver<Control>,
    /// Kept so that broadcasts to this connection are accepted and dropped.
    _commands: mpsc::Receiver<Command>,
    ended: bool,
}

impl fmt::Debug for ScriptedConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptedConnection")
            .field("connection_id", &self.entry.connection_id)
            .field("transport", &self.entry.transport())
            .finish_non_exhaustive()
    }
}

impl ScriptedConnection {
    /// The test's side of a new connection: the channels a hub session would have used.
    fn new(channels: Channels) -> Self {
        let ends = channels.ends;
        Self {
            app: channels.app,
            entry: channels.entry,
            inbound: ends.inbound,
            outbound: ends.outbound,
            control: ends.control,
            _commands: ends.commands,
            ended: false,
        }
    }

    /// The connection id negotiate gave the client.
    pub fn connection_id(&self) -> &str {
        &self.entry.connection_id
    }

    /// The transport the client attached with, once it has.
    pub fn transport(&self) -> Option<TransportKind> {
        self.entry.transport()
    }

    /// The next bytes the client sent (one WebSocket message, one POST body); `None` once the
    /// client's transport has gone (socket closed, event stream dropped, `DELETE`).
    pub async fn recv(&mut self) -> Option<Bytes> {
        if self.ended {
            return None;
        }
        loop {
            tokio::select! {
                bytes = self.inbound.recv() => match bytes {
                    Some((_, bytes)) => return Some(bytes),
                    None => break,
                },
                control = self.control.recv() => match control {
                    Some(Control::Abort | Control::Shutdown) => {
                        let _ = self.outbound.try_send(Outbound::Abort(None));
                        break;
                    }
                    Some(Control::TransportClosed(_) | Control::End) | None => break,
                    // A scripted connection cannot be resumed, and is never blackholed.
                    Some(Control::Reattach(answer, _)) => { let _ = answer.send(None); }
                    Some(Control::Blackhole(_) | Control::Polling(_)) => {}
                },
            }
        }
        self.ended = true;
        None
    }

    /// Sends `bytes` as they are: one WebSocket message (binary or text; text that is not
    /// UTF-8 goes as an empty binary message), one SSE event, or part of a poll's body.
    /// `false` once the transport is gone.
    pub async fn send(&self, bytes: impl Into<Bytes>, binary: bool) -> bool {
        self.outbound
            .send(Outbound::Frame {
                bytes: bytes.into(),
                binary,
            })
            .await
            .is_ok()
    }

    /// Ends the connection cleanly (WebSocket close frame, end of the event stream, 204 to
    /// the next poll).
    pub async fn close(self) {
        let _ = self.outbound.send(Outbound::Close).await;
    }

    /// Drops the transport at once: no close frame, the TCP connection simply ends.
    pub async fn abort(self) {
        let _ = self.outbound.send(Outbound::Abort(None)).await;
    }
}

impl Drop for ScriptedConnection {
    fn drop(&mut self) {
        self.app.remove(&self.entry);
    }
}
