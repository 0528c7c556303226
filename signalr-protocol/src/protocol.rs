//! The [`HubProtocol`] trait that the JSON and MessagePack encodings implement.

use std::{fmt, sync::Arc};

use bytes::BytesMut;

use crate::{
    error::ProtocolError,
    framing::{FrameDecoder, TransferFormat, encode_framed},
    message::{Decoded, HubMessage},
    payload::PayloadFormat,
};

/// The default maximum size of one framed message a decoder accepts: 1 MiB.
///
/// The .NET server's own default is 32 KiB (`MaximumReceiveMessageSize`); the official clients
/// have no limit. A client needs one so that a hostile or broken server cannot make it buffer
/// without bound; raise it when your hub sends larger messages.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1024 * 1024;

/// A hub protocol: how hub messages are encoded and framed. Implementations do no I/O and
/// never read a clock.
///
/// The required methods work on one message body (no framing); [`encode`](Self::encode) and
/// [`decode`](Self::decode) add the framing of the protocol's [`TransferFormat`]. For a byte
/// stream that arrives in pieces, use [`MessageDecoder`](crate::MessageDecoder), which does not
/// rescan bytes it has already seen.
pub trait HubProtocol: fmt::Debug + Send + Sync + 'static {
    /// The name sent in the handshake: `"json"` or `"messagepack"`.
    fn name(&self) -> &'static str;

    /// The highest protocol version this implementation speaks (2 = stateful reconnect).
    fn version(&self) -> u32;

    /// How frames travel: text (record separator) or binary (length prefix).
    fn transfer_format(&self) -> TransferFormat;

    /// The encoding of arguments, items and results.
    fn payload_format(&self) -> PayloadFormat;

    /// The largest framed message the decoder accepts, in bytes.
    fn max_message_size(&self) -> usize;

    /// Appends one message body, without framing, to `dst`.
    fn write_message(&self, message: &HubMessage, dst: &mut BytesMut) -> Result<(), ProtocolError>;

    /// Parses one message body, without framing.
    fn parse_message(&self, body: &[u8]) -> Result<Decoded, ProtocolError>;

    /// Appends one framed message (body plus record separator or length prefix) to `dst`. On
    /// error `dst` is left as it was.
    fn encode(&self, message: &HubMessage, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        encode_framed(self.transfer_format(), dst, |dst| {
            self.write_message(message, dst)
        })
    }

    /// Takes one framed message off the front of `src`; `Ok(None)` = need more bytes.
    ///
    /// This scans `src` from its start on every call; a [`MessageDecoder`](crate::MessageDecoder)
    /// remembers where it stopped.
    fn decode(&self, src: &mut BytesMut) -> Result<Option<Decoded>, ProtocolError> {
        match FrameDecoder::new(self.transfer_format(), self.max_message_size()).decode(src)? {
            Some(body) => self.parse_message(&body).map(Some),
            None => Ok(None),
        }
    }
}

macro_rules! forward_hub_protocol {
    ($($wrapper:ident),*) => {$(
        impl<P: HubProtocol + ?Sized> HubProtocol for $wrapper<P> {
            fn name(&self) -> &'static str {
                (**self).name()
            }
            fn version(&self) -> u32 {
                (**self).version()
            }
            fn transfer_format(&self) -> TransferFormat {
                (**self).transfer_format()
            }
            fn payload_format(&self) -> PayloadFormat {
                (**self).payload_format()
            }
            fn max_message_size(&self) -> usize {
                (**self).max_message_size()
            }
            fn write_message(&self, message: &HubMessage, dst: &mut BytesMut) -> Result<(), ProtocolError> {
                (**self).write_message(message, dst)
            }
            fn parse_message(&self, body: &[u8]) -> Result<Decoded, ProtocolError> {
                (**self).parse_message(body)
            }
        }
    )*};
}

forward_hub_protocol!(Arc, Box);

/// Checks that every payload of `message` is in `format` and that ids are well-formed, so
/// that encoders never write a message a peer would reject.
pub(crate) fn check_encodable(
    message: &HubMessage,
    format: PayloadFormat,
) -> Result<(), ProtocolError> {
    let name = message.message_type().name();
    let wrong = |what: &str, got: PayloadFormat| ProtocolError::InvalidMessage {
        message_type: name,
        reason: format!(
            "{what} is a {} payload but the protocol is {}",
            got.name(),
            format.name()
        ),
    };
    match message {
        HubMessage::Invocation(m) if m.arguments.format() != format => {
            return Err(wrong("arguments", m.arguments.format()));
        }
        HubMessage::StreamInvocation(m) if m.arguments.format() != format => {
            return Err(wrong("arguments", m.arguments.format()));
        }
        HubMessage::StreamItem(m) if m.item.format() != format => {
            return Err(wrong("item", m.item.format()));
        }
        HubMessage::Completion(m) => {
            if let crate::CompletionResult::Value(v) = &m.result {
                if v.format() != format {
                    return Err(wrong("result", v.format()));
                }
            }
        }
        HubMessage::Ack(crate::Ack { sequence_id })
        | HubMessage::Sequence(crate::Sequence { sequence_id })
            if i64::try_from(*sequence_id).is_err() =>
        {
            return Err(ProtocolError::InvalidMessage {
                message_type: name,
                reason: "sequenceId is larger than i64::MAX".into(),
            });
        }
        _ => {}
    }
    if message.invocation_id() == Some("") {
        return Err(ProtocolError::InvalidMessage {
            message_type: name,
            reason: "the invocation id is empty".into(),
        });
    }
    let stream_ids = match message {
        HubMessage::Invocation(m) => &m.stream_ids[..],
        HubMessage::StreamInvocation(m) => &m.stream_ids[..],
        _ => &[],
    };
    if stream_ids.iter().any(String::is_empty) {
        return Err(ProtocolError::InvalidMessage {
            message_type: name,
            reason: "a stream id is empty".into(),
        });
    }
    Ok(())
}
