//! The SignalR client facade (work in progress).
//!
//! This crate will hold `HubConnection` and `HubConnectionBuilder`: invoke, send, streams in both
//! directions, client results, keep-alive and automatic or stateful reconnect, built on
//! [`signalr_protocol`], `signalr_transport` and `signalr_reconnect`. Until then it re-exports the
//! protocol crate:
//!
//! ```
//! use signalr_client::protocol::{HubMessage, HubProtocol, JsonHubProtocol};
//! use bytes::BytesMut;
//!
//! let mut buf = BytesMut::new();
//! JsonHubProtocol::default().encode(&HubMessage::Ping, &mut buf).unwrap();
//! assert_eq!(&buf[..], b"{\"type\":6}\x1e");
//! ```

pub use signalr_protocol as protocol;
