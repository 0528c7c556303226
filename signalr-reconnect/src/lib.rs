//! Sans-IO retry policies, keep-alive and reconnect state machines for SignalR clients.
//!
//! This crate does no I/O and never reads a clock: every input carries `now` (an [`Instant`]
//! the caller read) or a [`RetryContext`], and every output is a value — a delay, an instant to
//! wake up at ([`KeepAlive::poll_timeout`], [`Reconnect::poll_timeout`]), or an event to act on
//! ([`KeepAlive::handle_timeout`], [`Reconnect::handle_timeout`]), in the style of quinn-proto.
//! The client driver owns the one timer and the clock and sleeps until the earlier of the two
//! `poll_timeout`s; everything here can therefore be tested by stepping through time explicitly,
//! without a runtime or real time.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::{Duration, Instant};
//! use signalr_reconnect::{
//!     ExponentialBackoff, Jitter, KeepAlive, KeepAliveConfig, KeepAliveEvent, Reason, Reconnect,
//!     ReconnectDecision, ReconnectEvent, RetryPolicyExt,
//! };
//!
//! fn drive(t0: Instant) -> Result<(), Box<dyn std::error::Error>> {
//!     let s = Duration::from_secs;
//!
//!     // Keep-alive: the handshake completes at t0, the server then goes silent.
//!     let mut keep_alive = KeepAlive::new(KeepAliveConfig::default(), t0)?;
//!     keep_alive.on_handshake_completed(t0);
//!     assert_eq!(keep_alive.poll_timeout(), Some(t0 + s(15)));
//!     assert_eq!(keep_alive.handle_timeout(t0 + s(15)), Some(KeepAliveEvent::SendPing));
//!     assert_eq!(keep_alive.handle_timeout(t0 + s(30)), Some(KeepAliveEvent::ServerTimedOut));
//!
//!     // Reconnect: exponential backoff from 1 s, capped at 60 s, for at most 5 minutes, with
//!     // equal jitter; the seed makes the delays exact (leave it out in production).
//!     let policy = ExponentialBackoff::new(s(1))
//!         .with_jitter(Jitter::Equal)
//!         .with_jitter_seed(42)
//!         .max_elapsed(s(300));
//!     let mut reconnect = Reconnect::new().with_retry_policy(policy);
//!     reconnect.on_connected();
//!     let timed_out: Reason = Arc::new(std::io::Error::other("server timed out"));
//!     let ReconnectDecision::RetryAt(at) = reconnect.on_connection_lost(t0 + s(30), timed_out)
//!     else {
//!         unreachable!("the policy retries")
//!     };
//!     assert!(at >= t0 + s(30) + Duration::from_millis(500) && at <= t0 + s(31));
//!     assert_eq!(reconnect.poll_timeout(), Some(at));
//!     assert_eq!(reconnect.handle_timeout(at), Some(ReconnectEvent::StartAttempt { attempt: 1 }));
//!     reconnect.on_connected(); // the attempt succeeded
//!     keep_alive.reset(at);     // new connection, new handshake
//!     Ok(())
//! }
//! # drive(Instant::now()).unwrap(); // the driver passes its runtime's clock in
//! ```
//!
//! # Contents
//!
//! - [`RetryPolicy`] and [`RetryContext`]: the official clients' `IRetryPolicy`, a pure function
//!   from (previous retry count, elapsed time, reason) to the next delay or `None`.
//! - Built-in policies: [`FixedDelays`] (with [`FixedDelays::dotnet_default`], 0/2/10/30 s),
//!   `[Duration; N]` and `Vec<Duration>`, [`FixedInterval`], [`ExponentialBackoff`], and
//!   closures through [`retry_fn`]; combinators in [`RetryPolicyExt`] (`max_attempts`,
//!   `max_elapsed`, `with_jitter`, `retry_if`); deterministic, seedable [`Jitter`].
//! - [`KeepAlive`]: pings, server timeout and handshake timeout, configured by
//!   [`KeepAliveConfig`] (15 s, 30 s and 15 s by default).
//! - [`Reconnect`]: the lifecycle `Connected → Reconnecting → Connected | Disconnected`, with an
//!   optional policy for retrying the initial start.
//!
//! # Features
//!
//! None. The crate depends only on `std` and `thiserror`.

mod backoff;
mod builtin;
mod combinators;
mod error;
mod jitter;
mod keep_alive;
mod policy;
mod reconnect;
#[cfg(test)]
mod test_util;

#[cfg(doc)]
use std::time::Instant;

pub use backoff::ExponentialBackoff;
pub use builtin::{FixedDelays, FixedInterval, RetryFn, retry_fn};
pub use combinators::{Jittered, MaxAttempts, MaxElapsed, RetryIf, RetryPolicyExt};
pub use error::ConfigError;
pub use jitter::Jitter;
pub use keep_alive::{KeepAlive, KeepAliveConfig, KeepAliveEvent, KeepAlivePhase};
pub use policy::{RetryContext, RetryPolicy};
pub use reconnect::{Outage, Reason, Reconnect, ReconnectDecision, ReconnectEvent, ReconnectState};
