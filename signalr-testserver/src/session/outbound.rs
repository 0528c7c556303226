//! What the session sends: commands from hub methods and other connections, encoded into one
//! buffer that goes to the transport as one frame per loop turn, and the transport's
//! backpressure (a frame it has no room for waits, and nothing more goes out until it is
//! taken, or the connection ends after the disconnect timeout).

use std::{ops::Range, sync::Arc, time::Duration};

use bytes::{Bytes, BytesMut};
use signalr_protocol::{Arguments, Close, HubMessage, HubProtocol, Invocation, Payload};
use tokio::sync::mpsc;
use tracing::warn;

use super::{Exit, Phase, Session, timers::Timer};
use crate::{error::HubResult, wire::Command, wire::Outbound};

/// The most commands handled in one run, and the most bytes written by one: one channel hop
/// and one transport message per run, not per message.
const MAX_RUN: usize = 256;
pub(super) const MAX_OUT: usize = 64 * 1024;

/// Messages written and not yet handed to the transport.
#[derive(Debug, Default)]
pub(super) struct Out {
    buf: BytesMut,
    /// Where each message the replay buffer keeps lies in `buf`.
    tracked: Vec<Range<usize>>,
}

impl Out {
    pub(super) fn len(&self) -> usize {
        self.buf.len()
    }
}

impl Session {
    /// Whether the replay buffer (stateful reconnect) can take what is written and more.
    pub(super) fn has_room(&self) -> bool {
        self.stateful()
            .is_none_or(|s| s.buffer.room() > self.out.len())
    }

    /// Handles `first` and the commands already waiting behind it (up to [`MAX_RUN`], or
    /// [`MAX_OUT`] bytes of output, or as much as the replay buffer has room for); what they
    /// write goes out as one frame.
    pub(super) fn on_commands(&mut self, first: Command) -> Result<(), Exit> {
        self.on_command(first)?;
        for _ in 1..MAX_RUN {
            if self.out.len() >= MAX_OUT || !self.has_room() {
                break;
            }
            match self.commands.try_recv() {
                Ok(command) => self.on_command(command)?,
                Err(_) => break,
            }
        }
        Ok(())
    }

    pub(super) fn on_command(&mut self, command: Command) -> Result<(), Exit> {
        match command {
            Command::Send(message) => {
                // A late item or completion of a cancelled invocation (already answered).
                if self.calls.still_running(&message) {
                    self.write(&message);
                }
            }
            Command::CallWith { target, arguments } => {
                self.write(&HubMessage::Invocation(Invocation::non_blocking(
                    target, arguments,
                )));
            }
            Command::Call { target, args } => match self.arguments(&args) {
                Ok(arguments) => self.write(&HubMessage::Invocation(Invocation::non_blocking(
                    target, arguments,
                ))),
                Err(e) => warn!(target, error = %e, "could not convert a call's arguments"),
            },
            Command::InvokeClient {
                target,
                args,
                reply,
            } => match self.arguments(&args) {
                Ok(arguments) => {
                    let id = self.calls.ask(reply);
                    self.write(&HubMessage::Invocation(Invocation::new(
                        id, target, arguments,
                    )));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Close {
                error,
                allow_reconnect,
            } => {
                self.write(&HubMessage::Close(Close::new(error, allow_reconnect)));
                return Err(Exit::Closed);
            }
            Command::Backplane { messages, ask } => {
                let Some(name) = self.live().map(|l| l.protocol.name()) else {
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
                    self.calls.remote.insert(id, channel);
                }
                self.write_encoded(bytes);
            }
        }
        Ok(())
    }

    /// Publishes a Completion for another instance's client-result request, in this
    /// connection's protocol.
    pub(super) fn forward_completion(&self, channel: String, message: &HubMessage) {
        let (Some(bp), Some(protocol)) =
            (self.app.backplane.get(), self.live().map(|l| &l.protocol))
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

    /// Builds an argument list in this connection's format, converting payloads from another
    /// connection's format through JSON values.
    fn arguments(&self, args: &[Payload]) -> HubResult<Arguments> {
        let format = self.format();
        if args.iter().all(|p| p.format() == format) {
            // The usual case (a hub method of this connection): no conversion, no copy.
            return Ok(Arguments::from_payloads(format, args)?);
        }
        let converted = crate::wire::convert(format, args)?;
        Ok(Arguments::from_payloads(format, &converted)?)
    }

    /// Encodes `message` into what goes out next (nothing before the handshake).
    pub(super) fn write(&mut self, message: &HubMessage) {
        let Phase::Live(live) = &self.phase else {
            return;
        };
        let start = self.out.buf.len();
        if let Err(e) = live.protocol.encode(message, &mut self.out.buf) {
            warn!(error = %e, "could not encode a message");
            self.out.buf.truncate(start);
            return;
        }
        if live.stateful.is_some() && message.message_type().is_trackable() {
            self.out.tracked.push(start..self.out.buf.len());
        }
    }

    /// Appends one message already serialized in this connection's protocol (an Invocation,
    /// so trackable under stateful reconnect).
    fn write_encoded(&mut self, bytes: &[u8]) {
        let Phase::Live(live) = &self.phase else {
            return;
        };
        let start = self.out.buf.len();
        self.out.buf.extend_from_slice(bytes);
        if live.stateful.is_some() {
            self.out.tracked.push(start..self.out.buf.len());
        }
    }

    /// Hands what was written to the transport as one frame, the replay buffer keeping the
    /// trackable messages; while a frame waits for room, what is written waits behind it.
    pub(super) fn flush(&mut self) -> Result<(), Exit> {
        if self.out.buf.is_empty() || self.pending.is_some() {
            return Ok(());
        }
        let frame = self.out.buf.split().freeze();
        let Phase::Live(live) = &mut self.phase else {
            return Ok(());
        };
        let binary = live.binary;
        match &mut live.stateful {
            Some(stateful) => {
                // Kept for replay as slices of the bytes sent: no second copy.
                for range in self.out.tracked.drain(..) {
                    stateful.buffer.on_sent(frame.slice(range));
                }
                self.app.note_replay_bytes(stateful.buffer.buffered_bytes());
                if stateful.detached {
                    return Ok(()); // kept in the replay buffer for the resume
                }
            }
            None => self.out.tracked.clear(),
        }
        self.send_frame(frame, binary)
    }

    /// Hands `bytes` to the attached transport, or keeps the frame until it has room.
    pub(super) fn send_frame(&mut self, bytes: Bytes, binary: bool) -> Result<(), Exit> {
        let now = crate::now();
        if self.live().is_some_and(|l| l.keeps_alive) {
            self.timers
                .set(Timer::Ping, now + self.config().keep_alive_interval);
        }
        match self.outbound.try_send(Outbound::Frame { bytes, binary }) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(frame)) => {
                // A transport that stops draining (a long-polling client that went away) must
                // not hold the session forever.
                let wait = self.config().disconnect_timeout.max(Duration::from_secs(1));
                self.timers.set(Timer::Write, now + wait);
                self.pending = Some(frame);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => self.on_writer_gone(),
        }
    }

    /// The socket's writer is gone (its channel closed with it): a stateful connection waits
    /// for a resume (what was written is in the replay buffer), any other ends.
    pub(super) fn on_writer_gone(&mut self) -> Result<(), Exit> {
        if self.stateful().is_some() {
            self.on_transport_gone()
        } else {
            Err(Exit::Aborted("transport gone"))
        }
    }
}
