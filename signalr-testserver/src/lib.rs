//! The SignalR test server (work in progress).
//!
//! This crate will hold an axum server that implements the server side of the SignalR protocol
//! (negotiate, WebSockets, SSE, long polling, both hub protocols, stateful reconnect), serves the hub
//! of `shared/design/hub-contract.md` and injects faults on demand. It builds on
//! [`signalr_protocol`]; the handshake it will answer looks like this:
//!
//! ```
//! use signalr_protocol::handshake::HandshakeResponse;
//! use bytes::BytesMut;
//!
//! let mut buf = BytesMut::new();
//! HandshakeResponse::ok().encode(&mut buf);
//! assert_eq!(&buf[..], b"{}\x1e");
//! ```
