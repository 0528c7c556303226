//! The hub messages of the SignalR protocol (spec message types 1–9).

use std::collections::BTreeMap;

use crate::payload::{Arguments, Payload};

/// Message headers: a string-to-string map on message types 1–5. No header is defined by the
/// protocol; receivers keep what they get and ignore what they do not understand.
pub type Headers = BTreeMap<String, String>;

/// An invocation id: a non-empty string chosen by the sender, unique among its in-flight
/// invocations.
pub type InvocationId = String;

/// The numeric message type on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageType {
    /// `1`: call a method, with or without an invocation id.
    Invocation = 1,
    /// `2`: one item of a stream.
    StreamItem = 2,
    /// `3`: the end of an invocation or stream.
    Completion = 3,
    /// `4`: call a streaming method.
    StreamInvocation = 4,
    /// `5`: stop a stream (or an invocation).
    CancelInvocation = 5,
    /// `6`: keep-alive.
    Ping = 6,
    /// `7`: the sender is closing the connection.
    Close = 7,
    /// `8`: stateful reconnect acknowledgement.
    Ack = 8,
    /// `9`: stateful reconnect resume point.
    Sequence = 9,
}

impl MessageType {
    /// The type for a wire value, or `None` for a type this crate does not know.
    pub fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            1 => Self::Invocation,
            2 => Self::StreamItem,
            3 => Self::Completion,
            4 => Self::StreamInvocation,
            5 => Self::CancelInvocation,
            6 => Self::Ping,
            7 => Self::Close,
            8 => Self::Ack,
            9 => Self::Sequence,
            _ => return None,
        })
    }

    /// The wire value.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The spec's name for the type, used in error messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Invocation => "Invocation",
            Self::StreamItem => "StreamItem",
            Self::Completion => "Completion",
            Self::StreamInvocation => "StreamInvocation",
            Self::CancelInvocation => "CancelInvocation",
            Self::Ping => "Ping",
            Self::Close => "Close",
            Self::Ack => "Ack",
            Self::Sequence => "Sequence",
        }
    }

    /// Whether stateful reconnect numbers, buffers and acknowledges this type (types 1–5).
    pub fn is_trackable(self) -> bool {
        (self as u8) <= 5
    }
}

/// One hub message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HubMessage {
    /// Type 1.
    Invocation(Invocation),
    /// Type 2.
    StreamItem(StreamItem),
    /// Type 3.
    Completion(Completion),
    /// Type 4.
    StreamInvocation(StreamInvocation),
    /// Type 5.
    CancelInvocation(CancelInvocation),
    /// Type 6.
    Ping,
    /// Type 7.
    Close(Close),
    /// Type 8.
    Ack(Ack),
    /// Type 9.
    Sequence(Sequence),
}

impl HubMessage {
    /// The message's wire type.
    pub fn message_type(&self) -> MessageType {
        match self {
            Self::Invocation(_) => MessageType::Invocation,
            Self::StreamItem(_) => MessageType::StreamItem,
            Self::Completion(_) => MessageType::Completion,
            Self::StreamInvocation(_) => MessageType::StreamInvocation,
            Self::CancelInvocation(_) => MessageType::CancelInvocation,
            Self::Ping => MessageType::Ping,
            Self::Close(_) => MessageType::Close,
            Self::Ack(_) => MessageType::Ack,
            Self::Sequence(_) => MessageType::Sequence,
        }
    }

    /// The headers of a type 1–5 message; `None` for the others, which cannot carry headers.
    pub fn headers(&self) -> Option<&Headers> {
        match self {
            Self::Invocation(m) => Some(&m.headers),
            Self::StreamItem(m) => Some(&m.headers),
            Self::Completion(m) => Some(&m.headers),
            Self::StreamInvocation(m) => Some(&m.headers),
            Self::CancelInvocation(m) => Some(&m.headers),
            Self::Ping | Self::Close(_) | Self::Ack(_) | Self::Sequence(_) => None,
        }
    }

    /// The invocation id the message carries, if any.
    pub fn invocation_id(&self) -> Option<&str> {
        match self {
            Self::Invocation(m) => m.invocation_id.as_deref(),
            Self::StreamItem(m) => Some(&m.invocation_id),
            Self::Completion(m) => Some(&m.invocation_id),
            Self::StreamInvocation(m) => Some(&m.invocation_id),
            Self::CancelInvocation(m) => Some(&m.invocation_id),
            Self::Ping | Self::Close(_) | Self::Ack(_) | Self::Sequence(_) => None,
        }
    }
}

/// Type 1: call `target` with `arguments`. Without an invocation id it is fire-and-forget (the
/// callee must not answer); with one, the callee answers with a [`Completion`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Invocation {
    /// Message headers.
    pub headers: Headers,
    /// `None` for a non-blocking call.
    pub invocation_id: Option<InvocationId>,
    /// The method name.
    pub target: String,
    /// The arguments, without the stream arguments named in `stream_ids`.
    pub arguments: Arguments,
    /// Ids of client-to-server streams that are arguments of this call.
    pub stream_ids: Vec<String>,
}

impl Invocation {
    /// A call that expects a [`Completion`] with `invocation_id`.
    pub fn new(
        invocation_id: impl Into<InvocationId>,
        target: impl Into<String>,
        arguments: Arguments,
    ) -> Self {
        Self {
            headers: Headers::new(),
            invocation_id: Some(invocation_id.into()),
            target: target.into(),
            arguments,
            stream_ids: Vec::new(),
        }
    }

    /// A fire-and-forget call (no invocation id, no answer).
    pub fn non_blocking(target: impl Into<String>, arguments: Arguments) -> Self {
        Self {
            headers: Headers::new(),
            invocation_id: None,
            target: target.into(),
            arguments,
            stream_ids: Vec::new(),
        }
    }

    /// Sets the client-to-server stream ids.
    #[must_use]
    pub fn with_stream_ids(mut self, stream_ids: Vec<String>) -> Self {
        self.stream_ids = stream_ids;
        self
    }

    /// Sets the headers.
    #[must_use]
    pub fn with_headers(mut self, headers: Headers) -> Self {
        self.headers = headers;
        self
    }
}

/// Type 4: call a streaming method; the callee answers with [`StreamItem`]s and one
/// [`Completion`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamInvocation {
    /// Message headers.
    pub headers: Headers,
    /// The id of the stream.
    pub invocation_id: InvocationId,
    /// The method name.
    pub target: String,
    /// The arguments, without the stream arguments named in `stream_ids`.
    pub arguments: Arguments,
    /// Ids of client-to-server streams that are arguments of this call.
    pub stream_ids: Vec<String>,
}

impl StreamInvocation {
    /// A streaming call.
    pub fn new(
        invocation_id: impl Into<InvocationId>,
        target: impl Into<String>,
        arguments: Arguments,
    ) -> Self {
        Self {
            headers: Headers::new(),
            invocation_id: invocation_id.into(),
            target: target.into(),
            arguments,
            stream_ids: Vec::new(),
        }
    }

    /// Sets the client-to-server stream ids.
    #[must_use]
    pub fn with_stream_ids(mut self, stream_ids: Vec<String>) -> Self {
        self.stream_ids = stream_ids;
        self
    }
}

/// Type 2: one item of a server-to-client or client-to-server stream.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamItem {
    /// Message headers.
    pub headers: Headers,
    /// The stream (invocation id or stream id) the item belongs to.
    pub invocation_id: InvocationId,
    /// The item.
    pub item: Payload,
}

impl StreamItem {
    /// An item of stream `invocation_id`.
    pub fn new(invocation_id: impl Into<InvocationId>, item: Payload) -> Self {
        Self {
            headers: Headers::new(),
            invocation_id: invocation_id.into(),
            item,
        }
    }
}

/// How an invocation or stream ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompletionResult {
    /// Success without a value (a `void` method, or the end of a stream).
    Void,
    /// Success with a value, which may be `null`.
    Value(Payload),
    /// Failure, with the callee's message.
    Error(String),
}

/// Type 3: the end of an invocation or stream.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Completion {
    /// Message headers.
    pub headers: Headers,
    /// The invocation or stream that ended.
    pub invocation_id: InvocationId,
    /// How it ended.
    pub result: CompletionResult,
}

impl Completion {
    /// A completion with the given outcome.
    pub fn new(invocation_id: impl Into<InvocationId>, result: CompletionResult) -> Self {
        Self {
            headers: Headers::new(),
            invocation_id: invocation_id.into(),
            result,
        }
    }

    /// Success without a value.
    pub fn void(invocation_id: impl Into<InvocationId>) -> Self {
        Self::new(invocation_id, CompletionResult::Void)
    }

    /// Success with `value`.
    pub fn value(invocation_id: impl Into<InvocationId>, value: Payload) -> Self {
        Self::new(invocation_id, CompletionResult::Value(value))
    }

    /// Failure with `message`.
    pub fn error(invocation_id: impl Into<InvocationId>, message: impl Into<String>) -> Self {
        Self::new(invocation_id, CompletionResult::Error(message.into()))
    }
}

/// Type 5: stop the stream (or invocation) `invocation_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CancelInvocation {
    /// Message headers.
    pub headers: Headers,
    /// The stream to stop.
    pub invocation_id: InvocationId,
}

impl CancelInvocation {
    /// Cancel `invocation_id`.
    pub fn new(invocation_id: impl Into<InvocationId>) -> Self {
        Self {
            headers: Headers::new(),
            invocation_id: invocation_id.into(),
        }
    }
}

/// Type 7: the sender is closing the connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Close {
    /// Why, when the close is because of an error.
    pub error: Option<String>,
    /// Whether the client may run its automatic-reconnect policy. `false` when absent.
    pub allow_reconnect: bool,
}

impl Close {
    /// A close with the given fields.
    pub fn new(error: Option<String>, allow_reconnect: bool) -> Self {
        Self {
            error,
            allow_reconnect,
        }
    }
}

/// Type 8: "I have processed every trackable message up to `sequence_id`" (stateful reconnect).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Ack {
    /// The highest sequence id processed. At most `i64::MAX`.
    pub sequence_id: u64,
}

impl Ack {
    /// An acknowledgement up to `sequence_id`.
    pub fn new(sequence_id: u64) -> Self {
        Self { sequence_id }
    }
}

/// Type 9: "my next trackable message has id `sequence_id`" (sent after a stateful resume).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sequence {
    /// The id of the sender's oldest unacknowledged message. At most `i64::MAX`.
    pub sequence_id: u64,
}

impl Sequence {
    /// A resume point at `sequence_id`.
    pub fn new(sequence_id: u64) -> Self {
        Self { sequence_id }
    }
}

/// The outcome of parsing one framed message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decoded {
    /// A message of a known type.
    Message(HubMessage),
    /// A message whose `type` this crate does not know. The official clients skip such
    /// messages so that old clients survive new servers; so should callers (log or count it).
    Unknown {
        /// The wire type.
        message_type: i64,
    },
}
