//! The channel protocol between the HTTP layer, the sessions and the hub: what goes to a
//! session ([`Command`], [`Control`]), what a session hands its transport ([`Outbound`]), and a
//! connection as the HTTP layer sees it ([`ConnEntry`]). A leaf: it names no other module but
//! the error type.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64},
    },
    time::Duration,
};

use bytes::Bytes;
use signalr_protocol::{Arguments, Payload, PayloadFormat, TransportKind};
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};

use crate::{
    error::{HubError, HubResult},
    lock,
};

/// Requests to a session from its own method tasks and from other connections.
#[derive(Debug)]
pub(crate) enum Command {
    /// A message already in this session's payload format (completions, stream items).
    Send(signalr_protocol::HubMessage),
    /// Call `target(args…)` on this client; payloads are converted to its format if needed.
    Call { target: String, args: Vec<Payload> },
    /// Call `target` on this client with arguments already in its format.
    CallWith {
        target: String,
        arguments: Arguments,
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
    /// A long poll started (`true`) or ended (`false`), however it ended: while none is in
    /// progress, the disconnect timeout runs.
    Polling(bool),
    /// The client ended the connection (long-polling DELETE).
    End,
    /// The server stops: end the connection at once, resumable or not.
    Shutdown,
}

/// Frames the session hands to whichever transport is attached.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// One or more framed messages; `binary` selects the WebSocket frame type.
    Frame { bytes: Bytes, binary: bool },
    /// The connection ended normally: close the transport cleanly.
    Close,
    /// Drop the transport at once (no close frame): the `AbortMe` fault. With a generation,
    /// only the socket of that generation obeys (a resume cutting the socket it replaces); other
    /// writers skip it.
    Abort(Option<u64>),
}

/// One connection as the HTTP layer sees it: the channels to its session and which transport it
/// is bound to.
#[derive(Debug)]
pub(crate) struct ConnEntry {
    pub(crate) connection_id: Arc<str>,
    /// `None` for a WebSocket connection made without negotiate.
    pub(crate) token: Option<String>,
    /// Whether negotiate granted stateful reconnect.
    pub(crate) stateful: bool,
    /// What the client sent, tagged with the transport generation that read it (0 for the
    /// first socket and for HTTP POSTs), so bytes from a replaced socket can be told apart.
    pub(crate) inbound: mpsc::Sender<(u64, Bytes)>,
    pub(crate) outbound: Arc<tokio::sync::Mutex<mpsc::Receiver<Outbound>>>,
    pub(crate) control: mpsc::UnboundedSender<Control>,
    transport: Mutex<Option<TransportKind>>,
    /// Long polling: the first poll of a new connection is answered at once.
    pub(crate) first_poll: AtomicBool,
    /// The last socket generation handed out (stateful resumes count up from 0).
    pub(crate) generations: AtomicU64,
    /// The user who made the connection (`ServerConfig::users`), if users are configured.
    pub(crate) user: Option<Arc<str>>,
    /// Stateful resumes: a token bucket of (tokens, when last filled).
    resumes: Mutex<(f64, Instant)>,
    /// When the connection's credentials expire (`ServerConfig::token_lifetime`).
    expires: Option<Instant>,
    /// What was sent by POST before any transport connected (a long-polling client may send its
    /// handshake before its first poll): delivered, in order, when the transport binds.
    early: Mutex<Vec<Bytes>>,
}

/// The most bytes kept from POSTs made before a transport connects.
pub(crate) const MAX_EARLY_BYTES: usize = 1024 * 1024;

/// The session's ends of a new connection's channels.
#[derive(Debug)]
pub(crate) struct SessionEnds {
    pub(crate) inbound: mpsc::Receiver<(u64, Bytes)>,
    pub(crate) outbound: mpsc::Sender<Outbound>,
    pub(crate) control: mpsc::UnboundedReceiver<Control>,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) commands_tx: mpsc::Sender<Command>,
}

impl ConnEntry {
    /// A new connection and the session's ends of its channels: it may resume `resume_burst`
    /// times at once, and its credentials expire at `expires`.
    pub(crate) fn new(
        connection_id: Arc<str>,
        token: Option<String>,
        stateful: bool,
        user: Option<Arc<str>>,
        resume_burst: u32,
        expires: Option<Instant>,
    ) -> (Arc<Self>, SessionEnds) {
        let (inbound_tx, inbound) = mpsc::channel(64);
        let (outbound, outbound_rx) = mpsc::channel(1024);
        let (control_tx, control) = mpsc::unbounded_channel();
        let (commands_tx, commands) = mpsc::channel(256);
        let entry = Arc::new(Self {
            connection_id,
            token,
            stateful,
            inbound: inbound_tx,
            outbound: Arc::new(tokio::sync::Mutex::new(outbound_rx)),
            control: control_tx,
            transport: Mutex::new(None),
            first_poll: AtomicBool::new(true),
            generations: AtomicU64::new(0),
            user,
            resumes: Mutex::new((f64::from(resume_burst), crate::now())),
            expires,
            early: Mutex::new(Vec::new()),
        });
        let ends = SessionEnds {
            inbound,
            outbound,
            control,
            commands,
            commands_tx,
        };
        (entry, ends)
    }

    /// Binds the connection to `kind` on first use, delivering what was sent by POST before it;
    /// `false` if it is bound to another transport.
    pub(crate) fn bind(&self, kind: TransportKind) -> bool {
        let mut transport = lock(&self.transport);
        match *transport {
            None => {
                *transport = Some(kind);
                let early = std::mem::take(&mut *lock(&self.early));
                if !early.is_empty() {
                    // One chunk, queued now: the session reads it before anything the new
                    // transport (or a later POST) brings, which can only come after this
                    // returns. Nothing else has been queued yet, so there is room.
                    let joined = Bytes::from(early.concat());
                    if let Err(mpsc::error::TrySendError::Full(chunk)) =
                        self.inbound.try_send((0, joined))
                    {
                        let inbound = self.inbound.clone();
                        tokio::spawn(async move { inbound.send(chunk).await });
                    }
                }
                true
            }
            Some(bound) => bound == kind,
        }
    }

    /// Keeps bytes sent by POST before any transport connected, as ASP.NET Core does (its pipe holds
    /// them until the transport starts the application); `false` when that would exceed
    /// [`MAX_EARLY_BYTES`]. When a transport is bound meanwhile, the bytes go to the session.
    pub(crate) async fn send_early(&self, bytes: Bytes) -> bool {
        {
            let transport = lock(&self.transport);
            if transport.is_none() {
                let mut early = lock(&self.early);
                let held: usize = early.iter().map(Bytes::len).sum();
                if held + bytes.len() > MAX_EARLY_BYTES {
                    return false;
                }
                early.push(bytes);
                return true;
            }
        }
        self.inbound.send((0, bytes)).await.is_ok()
    }

    pub(crate) fn transport(&self) -> Option<TransportKind> {
        *lock(&self.transport)
    }

    /// Whether the connection's credentials have expired.
    pub(crate) fn expired(&self) -> bool {
        self.expires.is_some_and(|at| crate::now() >= at)
    }

    /// Takes one resume from the connection's budget (`burst` at most, refilled at `per_second`);
    /// `false` when it is spent.
    pub(crate) fn take_resume(&self, burst: u32, per_second: u32) -> bool {
        let mut bucket = lock(&self.resumes);
        let now = crate::now();
        let refill = now.duration_since(bucket.1).as_secs_f64() * f64::from(per_second);
        bucket.0 = (bucket.0 + refill).min(f64::from(burst));
        bucket.1 = now;
        if bucket.0 >= 1.0 {
            bucket.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Converts payloads to `format`, through JSON values for those in the other format: what one
/// connection sends another that speaks the other protocol.
pub(crate) fn convert(format: PayloadFormat, args: &[Payload]) -> Result<Vec<Payload>, HubError> {
    args.iter()
        .map(|p| {
            if p.format() == format {
                Ok(p.clone())
            } else {
                let value: serde_json::Value = p.deserialize()?;
                Ok(Payload::from_value(format, &value)?)
            }
        })
        .collect()
}
