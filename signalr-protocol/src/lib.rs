//! The ASP.NET Core SignalR hub protocol, sans-IO.
//!
//! This crate does no I/O and never reads a clock: bytes go in, messages come out, and the other
//! way round. It is the codec under `signalr-transport`, `signalr-client` and
//! `signalr-testserver`, and it can be used alone to build another client or server. It covers
//! the handshake, both framings (the `0x1E` record separator of the text format and the VarInt
//! length prefix of the binary format), every hub message type (1–9), the JSON and MessagePack
//! hub protocols, and the negotiate response.
//!
//! ```
//! use bytes::BytesMut;
//! use signalr_protocol::{
//!     Arguments, Completion, CompletionResult, HubMessage, HubProtocol, Invocation,
//!     JsonHubProtocol, MessageDecoder,
//! };
//!
//! let protocol = JsonHubProtocol::new();
//! let format = protocol.payload_format();
//!
//! // Encode an invocation: arguments are any `Serialize` sequence.
//! let add = Invocation::new("1", "Add", Arguments::from_values(format, &(40, 2))?);
//! let mut wire = BytesMut::new();
//! protocol.encode(&HubMessage::Invocation(add), &mut wire)?;
//! assert_eq!(&wire[..], b"{\"type\":1,\"invocationId\":\"1\",\"target\":\"Add\",\"arguments\":[40,2]}\x1e");
//!
//! // Decode an answer that arrives in two pieces; the result is bound to a type on demand.
//! let mut decoder = MessageDecoder::new(protocol);
//! decoder.push(b"{\"type\":3,\"invocationId\":\"1\",");
//! assert_eq!(decoder.next_message()?, None);
//! decoder.push(b"\"result\":42}\x1e");
//! let Some(HubMessage::Completion(done)) = decoder.next_message()? else { unreachable!() };
//! let CompletionResult::Value(value) = done.result else { unreachable!() };
//! assert_eq!(value.deserialize::<i64>()?, 42);
//! # Ok::<(), signalr_protocol::ProtocolError>(())
//! ```
//!
//! # Decoding rules
//!
//! - Decoders are incremental ([`MessageDecoder`], [`FrameDecoder`]): bytes may arrive in any
//!   pieces, and `Ok(None)` means "need more".
//! - Every decoder enforces a maximum message size before it buffers a message.
//! - Messages of unknown types decode to [`Decoded::Unknown`] (or are skipped and counted by
//!   [`MessageDecoder`]); unknown JSON properties and surplus MessagePack elements are ignored,
//!   as in the official implementations, so that old peers survive new ones.
//! - Arguments, stream items and results stay encoded ([`Payload`], [`Arguments`]) until
//!   [`Payload::deserialize`] binds them to a type.
//! - Nothing a peer sends can make these functions panic; see the `fuzz/` targets.
//!
//! # Features
//!
//! - `json` (default): [`JsonHubProtocol`].
//! - `messagepack` (default): `MessagePackHubProtocol`, with rmp-serde for values. Turn it off
//!   (`default-features = false, features = ["json"]`) to drop the rmp-serde dependency.

#![cfg_attr(docsrs, feature(doc_cfg))]
// Helpers shared by the two hub protocols are unused when one of them is compiled out.
#![cfg_attr(not(all(feature = "json", feature = "messagepack")), allow(dead_code))]

mod decoder;
mod error;
pub mod framing;
pub mod handshake;
#[cfg(feature = "json")]
mod json;
mod message;
#[cfg(feature = "messagepack")]
mod messagepack;
#[cfg(feature = "messagepack")]
mod msgpack_read;
mod msgpack_write;
pub mod negotiate;
mod payload;
mod protocol;
pub mod stateful;

pub use decoder::MessageDecoder;
pub use error::{BoxError, ProtocolError};
pub use framing::{FrameDecoder, RECORD_SEPARATOR, TransferFormat};
pub use handshake::{HandshakeRequest, HandshakeResponse};
#[cfg(feature = "json")]
pub use json::JsonHubProtocol;
pub use message::{
    Ack, CancelInvocation, Close, Completion, CompletionResult, Decoded, Headers, HubMessage,
    Invocation, InvocationId, MessageType, Sequence, StreamInvocation, StreamItem,
};
#[cfg(feature = "messagepack")]
pub use messagepack::MessagePackHubProtocol;
pub use negotiate::{AvailableTransport, NegotiateResponse, NegotiatedConnection, TransportKind};
pub use payload::{Arguments, MAX_DEPTH, Payload, PayloadFormat};
pub use protocol::{DEFAULT_MAX_MESSAGE_SIZE, HubProtocol};
