//! [`MessageDecoder`]: hub messages out of a byte stream that arrives in arbitrary pieces.

use bytes::BytesMut;

use crate::{
    error::Result,
    framing::FrameDecoder,
    message::{Decoded, HubMessage},
    protocol::HubProtocol,
};

/// Decodes hub messages from bytes pushed in pieces of any size, one byte at a time included,
/// yielding exactly the messages the whole buffer would.
///
/// Push what the transport delivered, then call [`next_message`](Self::next_message) until it
/// returns `Ok(None)`. Held memory is bounded by the protocol's maximum message size plus the
/// size of one push: an unterminated or oversized message fails as soon as it cannot fit.
/// Messages of unknown types are skipped and counted, as the official clients skip them.
///
/// ```
/// use signalr_protocol::{HubMessage, JsonHubProtocol, MessageDecoder};
///
/// let mut decoder = MessageDecoder::new(JsonHubProtocol::new());
/// decoder.push(b"{\"type\":6}\x1e{\"ty");
/// assert_eq!(decoder.next_message()?, Some(HubMessage::Ping));
/// assert_eq!(decoder.next_message()?, None);
/// decoder.push(b"pe\":99}\x1e{\"type\":6}\x1e");
/// assert_eq!(decoder.next_message()?, Some(HubMessage::Ping));
/// assert_eq!(decoder.unknown_messages(), 1);
/// decoder.finish()?; // nothing left over
/// # Ok::<(), signalr_protocol::ProtocolError>(())
/// ```
#[derive(Debug)]
pub struct MessageDecoder<P> {
    protocol: P,
    frames: FrameDecoder,
    buffer: BytesMut,
    unknown: u64,
}

impl<P: HubProtocol> MessageDecoder<P> {
    /// A decoder with an empty buffer.
    pub fn new(protocol: P) -> Self {
        Self::with_buffer(protocol, BytesMut::new())
    }

    /// A decoder that starts with `buffer`, for example the bytes that followed the handshake
    /// response in the same read.
    pub fn with_buffer(protocol: P, buffer: BytesMut) -> Self {
        let frames = FrameDecoder::new(protocol.transfer_format(), protocol.max_message_size());
        Self {
            protocol,
            frames,
            buffer,
            unknown: 0,
        }
    }

    /// Appends bytes received from the transport.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next message of a known type; `Ok(None)` = need more bytes. Unknown types are skipped
    /// (see [`unknown_messages`](Self::unknown_messages)).
    ///
    /// An error means the stream is broken (oversized or malformed message) and cannot be
    /// resynchronised: close the connection.
    pub fn next_message(&mut self) -> Result<Option<HubMessage>> {
        loop {
            match self.next_decoded()? {
                Some(Decoded::Message(m)) => return Ok(Some(m)),
                Some(Decoded::Unknown { .. }) => {}
                None => return Ok(None),
            }
        }
    }

    /// The next message, including messages of unknown types; `Ok(None)` = need more bytes.
    pub fn next_decoded(&mut self) -> Result<Option<Decoded>> {
        let Some(body) = self.frames.decode(&mut self.buffer)? else {
            return Ok(None);
        };
        let decoded = self.protocol.parse_message(&body)?;
        if let Decoded::Unknown { .. } = decoded {
            self.unknown += 1;
        }
        Ok(Some(decoded))
    }

    /// Call at the end of input: an error if part of a message is still buffered.
    pub fn finish(&self) -> Result<()> {
        self.frames.finish(&self.buffer)
    }

    /// Bytes buffered and not yet returned as messages.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// How many messages of unknown types were skipped so far.
    pub fn unknown_messages(&self) -> u64 {
        self.unknown
    }

    /// The protocol this decoder parses.
    pub fn protocol(&self) -> &P {
        &self.protocol
    }
}
