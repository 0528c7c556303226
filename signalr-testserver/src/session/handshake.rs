//! The handshake: the client's request picks the hub protocol and its version; refusals read
//! as ASP.NET Core's (`HubConnectionHandler`, `DefaultHubDispatcher`).

use std::{sync::Arc, time::Duration};

use bytes::BytesMut;
use signalr_protocol::{
    HandshakeRequest, HandshakeResponse, HubProtocol, JsonHubProtocol, MessageDecoder,
    MessagePackHubProtocol, TransferFormat, TransportKind,
};
use tokio::time::timeout;
use tracing::{debug, info, warn};

use super::{Exit, Live, Phase, Session, keeps_alive, stateful::Stateful, timers::Timer};

impl Session {
    /// Reads the handshake request from what has arrived; `Ok(true)` once it is done (the bytes
    /// after it are then in the decoder), `Ok(false)` while it is incomplete.
    pub(super) async fn on_handshake_bytes(&mut self) -> Result<bool, Exit> {
        let max = self.config().max_message_size;
        let Phase::Handshaking(buf) = &mut self.phase else {
            return Ok(true);
        };
        let request = match HandshakeRequest::decode(buf, max) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(false),
            Err(e) => {
                debug!(error = %e, "malformed handshake");
                self.refuse_handshake("An unexpected error occurred during connection handshake.")?;
                return Ok(false);
            }
        };
        self.on_handshake(&request).await?;
        Ok(true)
    }

    /// Answers the handshake with `error` and ends the connection.
    pub(super) fn refuse_handshake(&mut self, error: &str) -> Result<(), Exit> {
        info!(error, "handshake refused");
        let mut buf = BytesMut::new();
        HandshakeResponse::error(error).encode(&mut buf);
        self.send_frame(buf.freeze(), false)?;
        Err(Exit::Closed)
    }

    async fn on_handshake(&mut self, request: &HandshakeRequest) -> Result<(), Exit> {
        let max = self.config().max_message_size;
        let protocol: Arc<dyn HubProtocol> = match request.protocol.as_str() {
            "json" => Arc::new(JsonHubProtocol::new().with_max_message_size(max)),
            "messagepack" => Arc::new(MessagePackHubProtocol::new().with_max_message_size(max)),
            other => {
                return self.refuse_handshake(&format!("The protocol '{other}' is not supported."));
            }
        };
        if request.version > protocol.version() {
            let error = format!(
                "The server does not support version {} of the '{}' protocol.",
                request.version,
                protocol.name()
            );
            return self.refuse_handshake(&error);
        }
        let transport = self.entry.transport();
        let binary = protocol.transfer_format() == TransferFormat::Binary;
        if binary && transport == Some(TransportKind::ServerSentEvents) {
            let error = format!(
                "Cannot use the '{}' protocol on the current transport. The transport does not support 'Binary' transfer format.",
                protocol.name()
            );
            return self.refuse_handshake(&error);
        }
        // Stateful reconnect needs it granted at negotiate and version 2 in the handshake; the
        // .NET server silently disables it otherwise.
        let stateful = (self.entry.stateful
            && request.version >= 2
            && transport == Some(TransportKind::WebSockets))
        .then(|| Stateful::new(self.config().stateful_buffer_bytes));
        info!(
            protocol = protocol.name(),
            version = request.version,
            ?transport,
            stateful = stateful.is_some(),
            "handshake"
        );
        let leftover = match std::mem::replace(&mut self.phase, Phase::Handshaking(BytesMut::new()))
        {
            Phase::Handshaking(buf) => buf,
            Phase::Live(_) => BytesMut::new(),
        };
        let keeps_alive = keeps_alive(transport);
        self.phase = Phase::Live(Live {
            decoder: MessageDecoder::with_buffer(Arc::clone(&protocol), leftover),
            protocol,
            binary,
            keeps_alive,
            stateful,
        });
        self.timers.stop(Timer::Handshake);
        if self.stateful().is_some() {
            self.timers
                .set(Timer::Ack, crate::now() + super::stateful::ACK_PERIOD);
        }
        if keeps_alive {
            let at = crate::now() + self.config().client_timeout;
            self.timers.set(Timer::ClientTimeout, at);
        } else if transport == Some(TransportKind::LongPolling) {
            self.arm_poll();
        }
        // The response alone in its frame: the official JS client does not count messages that
        // share a read with it.
        let mut buf = BytesMut::new();
        HandshakeResponse::ok().encode(&mut buf);
        self.send_frame(buf.freeze(), binary)?;
        self.app.on_connected(&self.entry).await;
        if let Some(hook) = self.hub.connected_handler() {
            // Awaited, so that what it sends precedes the answers to the client's first calls.
            let ctx = self.context(Vec::new());
            if timeout(Duration::from_secs(5), hook(ctx)).await.is_err() {
                warn!("on_connected hook took longer than 5 s");
            }
        }
        Ok(())
    }
}
