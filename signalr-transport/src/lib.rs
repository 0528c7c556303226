//! SignalR transports (work in progress).
//!
//! This crate will hold the negotiate client and the three SignalR transports — WebSockets,
//! Server-Sent Events and long polling — each usable on its own, behind one `Transport` trait, with
//! fallback in the order WebSockets → SSE → long polling. It builds on the frame formats of
//! [`signalr_protocol`]:
//!
//! ```
//! use signalr_protocol::TransferFormat;
//!
//! // WebSockets and long polling carry both formats; SSE carries text only.
//! assert_eq!(TransferFormat::Text.as_str(), "Text");
//! ```
