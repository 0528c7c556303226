//! Sans-IO retry policies and keep-alive state machines for SignalR clients (work in progress).
//!
//! This crate does no I/O and never reads a clock.
