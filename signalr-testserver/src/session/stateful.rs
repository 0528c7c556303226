//! The server side of stateful reconnect: numbering and Acks through signalr-protocol's
//! `MessageBuffer`, detaching when the socket goes, and resuming on a new one with Sequence
//! and every unacknowledged message, as the .NET server does.

use std::{sync::Arc, time::Duration};

use bytes::BytesMut;
use signalr_protocol::{HubMessage, MessageDecoder, stateful::MessageBuffer};
use tokio::sync::{mpsc, oneshot};
use tracing::info;

use super::{Exit, Phase, Session, timers::Timer};
use crate::{error::HubError, wire::Outbound};

/// How often what arrived is acknowledged: ASP.NET Core acks on a one-second periodic timer
/// (`MessageBuffer`'s `PeriodicTimer`, src/SignalR/common/Shared/MessageBuffer.cs at 1d262661),
/// whether or not anything arrived.
pub(super) const ACK_PERIOD: Duration = Duration::from_secs(1);

/// Stateful reconnect's part of a live connection.
#[derive(Debug)]
pub(super) struct Stateful {
    pub(super) buffer: MessageBuffer,
    /// The socket is gone and the client may resume on a new one (until the disconnect
    /// timeout); what is written meanwhile goes to the replay buffer only.
    pub(super) detached: bool,
}

impl Stateful {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            buffer: MessageBuffer::new(limit),
            detached: false,
        }
    }
}

impl Session {
    pub(super) fn stateful(&self) -> Option<&Stateful> {
        self.live().and_then(|l| l.stateful.as_ref())
    }

    fn stateful_mut(&mut self) -> Option<&mut Stateful> {
        match &mut self.phase {
            Phase::Live(live) => live.stateful.as_mut(),
            Phase::Handshaking(_) => None,
        }
    }

    /// Applies stateful-reconnect numbering to an incoming trackable message; `false` = drop it
    /// (a replayed message already handled).
    pub(super) fn accept_incoming(&mut self) -> bool {
        self.stateful_mut().is_none_or(|s| s.buffer.on_received())
    }

    pub(super) fn on_ack(&mut self, id: u64) -> Result<(), Exit> {
        match self.stateful_mut() {
            Some(s) => s
                .buffer
                .on_ack(id)
                .map_err(|e| Exit::Error(HubError::from(e).to_string())),
            None => Ok(()),
        }
    }

    pub(super) fn on_sequence(&mut self, id: u64) -> Result<(), Exit> {
        match self.stateful_mut() {
            Some(s) => s
                .buffer
                .on_sequence(id)
                .map_err(|e| Exit::Error(HubError::from(e).to_string())),
            None => Ok(()),
        }
    }

    /// Acknowledges what arrived since the last Ack, every [`ACK_PERIOD`] (nothing while
    /// detached: the Ack goes out after the resume).
    pub(super) fn send_ack(&mut self, now: tokio::time::Instant) {
        self.timers.set(Timer::Ack, now + ACK_PERIOD);
        let ack = match self.stateful_mut() {
            Some(s) if !s.detached => s.buffer.take_ack(),
            _ => None,
        };
        if let Some(ack) = ack {
            self.write(&HubMessage::Ack(ack));
        }
    }

    /// The socket is gone: what is written waits in the replay buffer until the client resumes,
    /// for the disconnect timeout.
    pub(super) fn detach(&mut self) {
        let disconnect = self.config().disconnect_timeout;
        if let Some(s) = self.stateful_mut() {
            s.detached = true;
        }
        // A frame that waited for the old socket is in the replay buffer too.
        self.pending = None;
        for timer in [Timer::Ping, Timer::ClientTimeout, Timer::Write] {
            self.timers.stop(timer);
        }
        self.timers
            .set(Timer::Disconnect, crate::now() + disconnect);
    }

    /// Resumes a stateful connection on a new socket: Sequence, then every unacknowledged
    /// message, as the .NET server does.
    pub(super) fn reattach(
        &mut self,
        ready: oneshot::Sender<Option<mpsc::Receiver<Outbound>>>,
        generation: u64,
    ) -> Result<(), Exit> {
        let Some(attached) = self.stateful().map(|s| !s.detached) else {
            let _ = ready.send(None);
            return Ok(());
        };
        if attached {
            // The client replaced a socket we still think is alive (it saw the break first).
            info!("a resume replaces a socket that was still attached");
            self.detach();
        }
        // What was written for the old socket joins the replay.
        self.flush()?;
        // The new socket gets a channel of its own. The old one goes with the socket it fed:
        // its writer sees the Abort (or the end of the channel) after any frames still queued,
        // which only ever reach the replaced socket and are in the replay buffer anyway.
        let (tx, rx) = mpsc::channel(self.outbound.max_capacity());
        let old = std::mem::replace(&mut self.outbound, tx);
        let _ = old.try_send(Outbound::Abort(Some(self.generation)));
        drop(old);
        self.generation = generation;
        let Phase::Live(live) = &mut self.phase else {
            return Ok(());
        };
        let binary = live.binary;
        let Some(stateful) = live.stateful.as_mut() else {
            return Ok(());
        };
        // Sequence and the whole replay as one frame: one slot in the outbound channel, however
        // much it is.
        let mut frame = BytesMut::new();
        let (sequence, replayed) = stateful
            .buffer
            .resume_into(live.protocol.as_ref(), &mut frame)
            .map_err(|e| Exit::Error(format!("could not encode a Sequence: {e}")))?;
        stateful.detached = false;
        // A frame cut off with the old socket is resent whole on the new one (the client replays
        // from a message boundary), so the partial bytes go; complete ones were handled already.
        live.decoder = MessageDecoder::new(Arc::clone(&live.protocol));
        self.unprocessed = false;
        let now = crate::now();
        self.timers.stop(Timer::Disconnect);
        self.timers
            .set(Timer::ClientTimeout, now + self.config().client_timeout);
        if ready.send(Some(rx)).is_err() {
            self.detach();
            return Ok(());
        }
        info!(
            sequence = sequence.sequence_id,
            replayed, "connection resumed"
        );
        self.send_frame(frame.freeze(), binary)
    }
}
