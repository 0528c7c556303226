//! One task per connection: the server side of one client's connection.
//!
//! The HTTP layer moves bytes: it pushes what the client sent into `inbound` and forwards
//! `outbound` frames to whichever transport is attached. Everything the protocol says happens
//! here, in one loop over five sources (control events first, then a frame waiting for room in
//! the transport, the client's bytes, commands from hub methods and other connections, and one
//! timer for every deadline), split by concern:
//!
//! - [`handshake`]: the handshake request, the protocol, refusals in ASP.NET Core's words;
//! - [`dispatch`]: what the client sends, hub methods and their scheduling, client results;
//! - [`outbound`]: commands, encoding, one frame per loop turn, backpressure from the transport;
//! - [`stateful`]: stateful reconnect (numbering, Acks, detach, resume and replay);
//! - [`timers`]: every deadline (handshake, ping, client timeout, disconnect, Ack, a stalled
//!   write, a blackhole's end).
//!
//! A session is in one [`Phase`]: handshaking, then live; a live stateful session may be
//! detached, waiting for its client to resume it on a new socket.

mod dispatch;
mod handshake;
mod outbound;
mod stateful;
#[cfg(test)]
mod tests;
mod timers;

use std::{sync::Arc, time::Duration};

use bytes::BytesMut;
use signalr_protocol::{HubProtocol, MessageDecoder, PayloadFormat, TransportKind};
use tokio::{
    sync::mpsc,
    time::{Instant, sleep_until, timeout},
};
use tracing::{Instrument as _, debug, info, info_span};

use self::{
    dispatch::Calls,
    outbound::Out,
    stateful::Stateful,
    timers::{Timer, Timers},
};
use crate::{
    app::{Accept, App, Channels},
    hub::Hub,
    wire::{Command, ConnEntry, Control, Outbound},
};

/// Starts a hub session for each new connection.
#[derive(Debug)]
pub(crate) struct HubAcceptor {
    hub: Arc<Hub>,
}

impl HubAcceptor {
    pub(crate) fn new(hub: Hub) -> Self {
        Self { hub: Arc::new(hub) }
    }
}

impl Accept for HubAcceptor {
    fn accept(&self, connection: Channels) {
        let span = info_span!("connection", id = %connection.entry.connection_id);
        let session = Session::new(connection, Arc::clone(&self.hub));
        tokio::spawn(session.run().instrument(span));
    }
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

/// Where a session is in its life.
enum Phase {
    /// Waiting for the handshake request: what has arrived of it.
    Handshaking(BytesMut),
    /// The handshake is done.
    Live(Live),
}

/// A connection past its handshake.
struct Live {
    protocol: Arc<dyn HubProtocol>,
    decoder: MessageDecoder<Arc<dyn HubProtocol>>,
    /// MessagePack: frames go as binary WebSocket messages.
    binary: bool,
    /// Pings and the client timeout run (WebSockets, SSE; long polling's poll cycle keeps the
    /// connection alive instead).
    keeps_alive: bool,
    /// Stateful reconnect, when negotiated (WebSockets only).
    stateful: Option<Stateful>,
}

/// A long-polling client's poll cycle, as the HTTP layer reports it.
#[derive(Clone, Copy, Debug)]
struct Poll {
    /// Polls in progress (a second one, refused with 409, comes and goes beside the first).
    active: usize,
    /// When the last poll ended (or the connection began).
    since: Instant,
}

struct Session {
    app: Arc<App>,
    hub: Arc<Hub>,
    entry: Arc<ConnEntry>,
    inbound: mpsc::Receiver<(u64, bytes::Bytes)>,
    outbound: mpsc::Sender<Outbound>,
    control: mpsc::UnboundedReceiver<Control>,
    commands: mpsc::Receiver<Command>,
    commands_tx: mpsc::Sender<Command>,
    phase: Phase,
    /// Which socket is attached: 0 for the first, then one more per resume.
    generation: u64,
    /// What is written and not yet handed to the transport.
    out: Out,
    /// A frame the transport had no room for: nothing more goes out until it has.
    pending: Option<Outbound>,
    /// The decoder holds bytes read while a frame waited, not yet handled.
    unprocessed: bool,
    poll: Poll,
    timers: Timers,
    calls: Calls,
}

/// The timer's deadline is reset only when an earlier one appears; a later one (traffic moves
/// the ping and client-timeout deadlines with every message) is found when the armed one
/// fires, so a busy connection does not touch the timer wheel per message.
fn rearm(
    sleep: std::pin::Pin<&mut tokio::time::Sleep>,
    armed: &mut Option<Instant>,
    next: Option<Instant>,
) {
    match (next, *armed) {
        (Some(next), Some(at)) if next >= at => {}
        (Some(next), _) => {
            sleep.reset(next);
            *armed = Some(next);
        }
        (None, _) => *armed = None,
    }
}

impl Session {
    fn new(c: Channels, hub: Arc<Hub>) -> Self {
        let now = crate::now();
        let ends = c.ends;
        let mut timers = Timers::default();
        timers.set(Timer::Handshake, now + c.app.config.handshake_timeout);
        Self {
            app: c.app,
            hub,
            entry: c.entry,
            inbound: ends.inbound,
            outbound: ends.outbound,
            control: ends.control,
            commands: ends.commands,
            commands_tx: ends.commands_tx,
            phase: Phase::Handshaking(BytesMut::new()),
            generation: 0,
            out: Out::default(),
            pending: None,
            unprocessed: false,
            poll: Poll {
                active: 0,
                since: now,
            },
            timers,
            calls: Calls::default(),
        }
    }

    fn config(&self) -> &crate::ServerConfig {
        &self.app.config
    }

    fn live(&self) -> Option<&Live> {
        match &self.phase {
            Phase::Live(live) => Some(live),
            Phase::Handshaking(_) => None,
        }
    }

    fn format(&self) -> PayloadFormat {
        self.live()
            .map_or(PayloadFormat::Json, |l| l.protocol.payload_format())
    }

    fn blackholed(&self) -> bool {
        self.timers.is_set(Timer::Blackhole)
    }

    /// Whether to read the client's bytes now. While a frame waits for room they are read
    /// only on a stateful connection, into the decoder and no further (a client blocked on its
    /// own full socket stops reading us, so one of the two has to read), up to one more socket
    /// message.
    fn reading(&self) -> bool {
        if self.blackholed() {
            return false;
        }
        match (&self.phase, &self.pending) {
            (_, None) | (Phase::Handshaking(_), _) => true,
            (Phase::Live(live), Some(_)) => {
                live.stateful.is_some()
                    && live.decoder.buffered() < self.config().socket_message_limit()
            }
        }
    }

    /// Whether to take commands now: live, the transport keeping up, and room in the replay
    /// buffer (past it, what hub methods send waits for an Ack).
    fn accepting(&self) -> bool {
        self.live().is_some() && self.pending.is_none() && !self.blackholed() && self.has_room()
    }

    async fn run(mut self) {
        let exit = self.serve().await;
        self.finish(exit).await;
    }

    async fn serve(&mut self) -> Exit {
        let sleep = sleep_until(crate::now());
        tokio::pin!(sleep);
        let mut armed = None;
        loop {
            // What this turn wrote goes out as one frame; what was read while a frame waited is
            // handled once it has gone.
            if let Err(exit) = self.flush() {
                return exit;
            }
            if self.unprocessed && self.pending.is_none() {
                if let Err(exit) = self.process_input().await {
                    return exit;
                }
                continue;
            }
            rearm(sleep.as_mut(), &mut armed, self.timers.next());
            let (reading, accepting) = (self.reading(), self.accepting());
            let writing = self.pending.is_some() && !self.blackholed();
            let result = tokio::select! {
                biased;
                control = self.control.recv() => match control {
                    Some(c) => self.on_control(c).await,
                    None => Err(Exit::Closed),
                },
                // The permit is let go at once: the session is the channel's only sender.
                room = async { self.outbound.reserve().await.map(drop) }, if writing => match room {
                    Ok(()) => self.on_room(),
                    Err(_) => self.on_writer_gone(),
                },
                bytes = self.inbound.recv(), if reading => match bytes {
                    Some((generation, bytes)) if self.is_current(generation) => {
                        self.on_bytes(&bytes).await
                    }
                    Some(_) => Ok(()),
                    None => Err(Exit::Closed),
                },
                command = self.commands.recv(), if accepting => match command {
                    Some(c) => self.on_commands(c),
                    None => Err(Exit::Closed),
                },
                () = &mut sleep, if armed.is_some() => {
                    armed = None;
                    self.on_timeout(crate::now())
                }
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
        self.app.remove(&self.entry);
        self.calls.end();
        // Another instance waits for these: tell it, as ASP.NET Core's target server does.
        for (id, channel) in std::mem::take(&mut self.calls.remote) {
            let error = signalr_protocol::Completion::error(id, "Connection disconnected.");
            self.forward_completion(channel, &signalr_protocol::HubMessage::Completion(error));
        }
        let last = match exit {
            Exit::Error(detail) => {
                let attached = self
                    .live()
                    .is_some_and(|l| l.stateful.as_ref().is_none_or(|s| !s.detached));
                if attached {
                    // ASP.NET Core's words: the detail only with detailed errors on.
                    let error = if self.config().detailed_errors {
                        format!("Connection closed with an error. InvalidDataException: {detail}")
                    } else {
                        "Connection closed with an error.".to_owned()
                    };
                    self.write(&signalr_protocol::HubMessage::Close(
                        signalr_protocol::Close::new(Some(error), false),
                    ));
                }
                Outbound::Close
            }
            Exit::Closed => Outbound::Close,
            Exit::Aborted(_) => Outbound::Abort(None),
        };
        // What was written goes first (it may be the Close that says why), all within a second.
        let _ = self.flush();
        let outbound = self.outbound.clone();
        let pending = self.pending.take();
        let _ = timeout(Duration::from_secs(1), async move {
            if let Some(frame) = pending {
                outbound.send(frame).await?;
            }
            outbound.send(last).await
        })
        .await;
    }

    async fn on_control(&mut self, control: Control) -> Result<(), Exit> {
        match control {
            Control::Abort => match self.stateful().map(|s| s.detached) {
                Some(false) => {
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
                Some(true) => Ok(()),
                None => Err(Exit::Aborted("aborted by the server")),
            },
            Control::Blackhole(d) => {
                info!(ms = d.as_millis(), "blackholing the connection");
                self.timers.set(Timer::Blackhole, crate::now() + d);
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
            Control::TransportClosed(_) => self.on_transport_gone(),
            Control::Reattach(ready, generation) => self.reattach(ready, generation),
            Control::Polling(started) => {
                if started {
                    self.poll.active += 1;
                } else {
                    self.poll.active = self.poll.active.saturating_sub(1);
                    self.poll.since = crate::now();
                }
                if self.live().is_some() {
                    self.arm_poll();
                }
                Ok(())
            }
            Control::End => Err(Exit::Closed),
            Control::Shutdown => Err(Exit::Aborted("the server is shutting down")),
        }
    }

    /// The transport ended or its writer is gone: a stateful connection waits for its client to
    /// resume it, any other ends.
    fn on_transport_gone(&mut self) -> Result<(), Exit> {
        match self.stateful().map(|s| s.detached) {
            Some(false) => {
                info!("transport lost; waiting for the client to resume");
                self.detach();
                Ok(())
            }
            Some(true) => Ok(()),
            None => Err(Exit::Closed),
        }
    }

    /// Long polling: between polls, the disconnect timeout runs.
    fn arm_poll(&mut self) {
        if self.poll.active > 0 {
            self.timers.stop(Timer::Disconnect);
        } else {
            let at = self.poll.since + self.config().disconnect_timeout;
            self.timers.set(Timer::Disconnect, at);
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

    async fn on_bytes(&mut self, bytes: &[u8]) -> Result<(), Exit> {
        let client_timeout = self.config().client_timeout;
        match &mut self.phase {
            Phase::Handshaking(request) => {
                request.extend_from_slice(bytes);
                if !self.on_handshake_bytes().await? {
                    return Ok(());
                }
            }
            Phase::Live(live) => {
                live.decoder.push(bytes);
                if live.keeps_alive {
                    self.timers
                        .set(Timer::ClientTimeout, crate::now() + client_timeout);
                }
            }
        }
        if self.pending.is_some() {
            self.unprocessed = true; // handled once the transport has taken the waiting frame
            return Ok(());
        }
        self.process_input().await
    }

    /// The transport has room for the frame that waited: it goes (what was written and read
    /// meanwhile follows on the next turn).
    fn on_room(&mut self) -> Result<(), Exit> {
        if let Some(frame) = self.pending.take() {
            match self.outbound.try_send(frame) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(frame)) => {
                    self.pending = Some(frame);
                    return Ok(());
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return self.on_writer_gone(),
            }
        }
        self.timers.stop(Timer::Write);
        Ok(())
    }

    fn on_timeout(&mut self, now: Instant) -> Result<(), Exit> {
        // Nothing but the blackhole's end runs during a blackhole.
        let blackholed = self.blackholed();
        for timer in Timer::ALL {
            if !self.timers.expired(timer, now) || (blackholed && timer != Timer::Blackhole) {
                continue;
            }
            self.timers.stop(timer);
            match timer {
                Timer::Blackhole => debug!("blackhole over"),
                Timer::Handshake => {
                    return self.refuse_handshake("Handshake was canceled.");
                }
                Timer::ClientTimeout => return Err(Exit::Aborted("client timed out")),
                Timer::Disconnect if self.stateful().is_some() => {
                    return Err(Exit::Aborted("not resumed within the disconnect timeout"));
                }
                Timer::Disconnect => {
                    return Err(Exit::Aborted("no poll within the disconnect timeout"));
                }
                Timer::Write => return Err(Exit::Aborted("transport stopped reading")),
                Timer::Ack => self.send_ack(now),
                Timer::Ping => self.write(&signalr_protocol::HubMessage::Ping),
            }
        }
        Ok(())
    }
}

/// Whether a transport keeps the connection alive with pings and the client timeout.
fn keeps_alive(transport: Option<TransportKind>) -> bool {
    matches!(
        transport,
        Some(TransportKind::WebSockets | TransportKind::ServerSentEvents)
    )
}
