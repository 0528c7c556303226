//! The one error type of this crate.

use std::error::Error as StdError;

/// A boxed error from a dependency (serde_json, rmp-serde). Downcasting it is not part of the
/// stable API: the concrete types may change when dependencies are upgraded.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Everything that can go wrong while framing, encoding or decoding SignalR messages.
///
/// `Display` names what was wrong and where (which message type, which field); the underlying
/// parser error, when there is one, is in [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A framed message (including its record separator or length prefix) is larger than the
    /// configured maximum. Raised as soon as the size is known, before the message is buffered.
    #[error("message of at least {size} bytes exceeds the maximum of {max} bytes")]
    MessageTooLarge {
        /// The size of the framed message, or a lower bound when it is still incomplete.
        size: u64,
        /// The configured maximum.
        max: usize,
    },
    /// A MessagePack length prefix is longer than 5 bytes or encodes 2 GiB or more.
    #[error("invalid length prefix: {reason}")]
    InvalidLengthPrefix {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The input ended inside a message (no record separator yet, or a body shorter than its
    /// length prefix).
    #[error("input ended inside a message ({buffered} bytes buffered)")]
    PartialMessage {
        /// How many bytes of the unfinished message were buffered.
        buffered: usize,
    },
    /// The bytes of a message are not well-formed JSON or MessagePack.
    #[error("malformed {format} message")]
    Malformed {
        /// `"JSON"` or `"MessagePack"`.
        format: &'static str,
        /// The parser's error.
        #[source]
        source: BoxError,
    },
    /// The message has no `type`, or it is not an integer.
    #[error("message has no integer `type`")]
    MissingMessageType,
    /// A field the message type requires is absent.
    #[error("{message_type} message is missing required field `{field}`")]
    MissingField {
        /// The message type, e.g. `"Invocation"`.
        message_type: &'static str,
        /// The field, with its JSON name.
        field: &'static str,
    },
    /// A field is present but has the wrong type or an invalid value.
    #[error("{message_type} message has an invalid `{field}`: {reason}")]
    InvalidField {
        /// The message type, e.g. `"Completion"`.
        message_type: &'static str,
        /// The field, with its JSON name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A Completion carries both a result and an error, which the protocol forbids.
    #[error("Completion for invocation {invocation_id:?} has both a result and an error")]
    ResultAndError {
        /// The invocation the completion was for.
        invocation_id: String,
    },
    /// A message cannot be encoded as given (for example an empty invocation id, or a payload
    /// in another protocol's format).
    #[error("cannot encode {message_type} message: {reason}")]
    InvalidMessage {
        /// The message type, e.g. `"Invocation"`.
        message_type: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A well-formed message that the protocol does not allow where it came (for example a
    /// stream item for a non-streaming invocation, or a stream completed with a result): the
    /// peer broke the protocol.
    #[error("unexpected {message_type} message: {reason}")]
    UnexpectedMessage {
        /// The message type, e.g. `"StreamItem"`.
        message_type: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A handshake request or response is malformed.
    #[error("malformed handshake {what}: {reason}")]
    InvalidHandshake {
        /// `"request"` or `"response"`.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A value could not be serialized into a payload of the protocol's format.
    #[error("could not serialize a {format} payload")]
    Serialize {
        /// `"JSON"` or `"MessagePack"`.
        format: &'static str,
        /// The serializer's error.
        #[source]
        source: BoxError,
    },
    /// A payload could not be deserialized into the requested type.
    #[error("could not deserialize a {format} payload")]
    Deserialize {
        /// `"JSON"` or `"MessagePack"`.
        format: &'static str,
        /// The deserializer's error.
        #[source]
        source: BoxError,
    },
    /// A negotiate response is malformed or describes something this client cannot use.
    #[error("invalid negotiate response: {reason}")]
    InvalidNegotiate {
        /// What is wrong with it.
        reason: String,
    },
}

impl ProtocolError {
    pub(crate) fn invalid(
        message_type: &'static str,
        field: &'static str,
        reason: impl Into<String>,
    ) -> Self {
        Self::InvalidField {
            message_type,
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn missing(message_type: &'static str, field: &'static str) -> Self {
        Self::MissingField {
            message_type,
            field,
        }
    }
}

/// Shorthand for results of this crate.
pub(crate) type Result<T, E = ProtocolError> = std::result::Result<T, E>;
