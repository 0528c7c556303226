//! [`Reconnect`]: a retry policy applied to the connection lifecycle, as a sans-IO machine.

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{RetryContext, RetryPolicy};

/// Why a connection was lost or an attempt failed: a shared error, so that the machine, the
/// policy and the client's events can all hold the original error (and downcast it).
pub type Reason = Arc<dyn Error + Send + Sync + 'static>;

/// Where a [`Reconnect`] machine is in the connection lifecycle.
///
/// `attempt` numbers the retry that is scheduled or running: 1 for the first retry after the
/// connection was lost (or after the initial start failed). In [`Starting`](Self::Starting),
/// `attempt` 0 is the initial start itself. `next_attempt_at` is `Some` while waiting out a
/// delay and `None` while the attempt runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReconnectState {
    /// Connected; a loss starts reconnecting (or disconnects, without a policy).
    Connected,
    /// Not connected and not trying: never started, stopped, refused by the server, or the
    /// policy gave up.
    Disconnected,
    /// The connection was lost and the retry policy is being followed.
    Reconnecting {
        /// The retry scheduled or running, from 1.
        attempt: u32,
        /// When the connection was lost.
        since: Instant,
        /// When the scheduled attempt starts; `None` while it runs.
        next_attempt_at: Option<Instant>,
    },
    /// The first connection is being made, retried with the initial-start policy.
    Starting {
        /// The attempt scheduled or running: 0 for the initial start, then 1, 2, ...
        attempt: u32,
        /// When the start was requested.
        since: Instant,
        /// When the scheduled attempt starts; `None` while it runs.
        next_attempt_at: Option<Instant>,
    },
}

/// What the driver must do after a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use = "the driver must either schedule the retry or report the connection closed"]
#[non_exhaustive]
pub enum ReconnectDecision {
    /// Stop: the machine is [`Disconnected`](ReconnectState::Disconnected). The reason is one
    /// of: no policy, the policy returned `None`, the server closed without `allowReconnect`,
    /// a stop was requested, or the delay was too long to represent as an [`Instant`].
    GiveUp,
    /// Start the next attempt at this instant: [`Reconnect::poll_timeout`] returns it, and
    /// [`Reconnect::handle_timeout`] reports [`ReconnectEvent::StartAttempt`] from then on.
    RetryAt(Instant),
}

/// What the driver must do when a [`Reconnect`] deadline passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReconnectEvent {
    /// The delay is over: open a new connection (negotiate, transport, handshake) now, then
    /// report [`Reconnect::on_connected`] or [`Reconnect::on_attempt_failed`].
    StartAttempt {
        /// The attempt, as in [`ReconnectState`]: 1 for the first retry.
        attempt: u32,
    },
}

/// What is known about the current (or last) outage, for the client's events and logs.
///
/// Kept from the first failure until the next connection or start, so it is still readable
/// after [`ReconnectDecision::GiveUp`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Outage {
    /// When it began: when the connection was lost, or when the start was requested.
    pub since: Instant,
    /// The `previous_retry_count` of the last policy call: 0 after the loss itself (or the
    /// failed initial start), then the number of failed retries.
    pub previous_retry_count: u32,
    /// The error that began it: why the connection was lost (what the official clients pass to
    /// their `Reconnecting` event), or why the initial start failed.
    pub reason: Reason,
    /// The most recent error: the reason of the last policy call.
    pub last_error: Reason,
}

impl Outage {
    /// Time since the outage began.
    pub fn elapsed(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.since)
    }
}

/// The reconnect lifecycle as a sans-IO state machine: a [`RetryPolicy`] applied to
/// `Connected → Reconnecting → Connected | Disconnected`.
///
/// ```text
///              on_start_requested                on_connected
/// Disconnected ──────────────────► Starting ─────────────────────► Connected
///      ▲                              │ on_start_failed:                │ on_connection_lost,
///      │ GiveUp (no policy, policy    │ RetryAt → wait, StartAttempt    │ on_close_message
///      │ says None, allowReconnect    ▼                                 ▼
///      │ false, on_stop_requested) ◄──┴──────────────────────── Reconnecting
///      └──────────────────────────────── on_attempt_failed: RetryAt → wait, StartAttempt
/// ```
///
/// - **Policies.** The retry policy runs after a loss; without one, a loss disconnects. The
///   initial-start policy (opt-in; the official clients never retry the first start) runs when
///   the first connection fails, with its own attempt count and elapsed time from
///   [`on_start_requested`](Self::on_start_requested). Both are asked with
///   `previous_retry_count` 0 for the first failure (the loss, or the initial start), then 1, 2,
///   ... as retries fail, and `elapsed` since the outage (or start) began.
/// - **Server Close.** [`on_close_message`](Self::on_close_message) with `allow_reconnect:
///   false` disconnects without consulting any policy.
/// - **Stop.** [`on_stop_requested`](Self::on_stop_requested) disconnects at once from any state;
///   a pending delay is dropped, and no further attempt is reported.
/// - **Time.** Every input takes `now`; the machine never reads a clock.
///   [`poll_timeout`](Self::poll_timeout) is the instant of the next attempt while waiting;
///   [`handle_timeout`](Self::handle_timeout) reports it once due (early calls return `None`).
/// - **Reasons** are [`Reason`]s (`Arc<dyn Error + Send + Sync>`), kept in [`Outage`].
///
/// ```
/// use std::sync::Arc;
/// use std::time::{Duration, Instant};
/// use signalr_reconnect::{FixedDelays, Reason, Reconnect, ReconnectDecision, ReconnectEvent};
///
/// fn run(t0: Instant) {
///     let s = Duration::from_secs;
///     let mut rc = Reconnect::new().with_retry_policy(FixedDelays::dotnet_default());
///     rc.on_connected();
///     let lost: Reason = Arc::new(std::io::Error::other("connection reset"));
///     assert_eq!(rc.on_connection_lost(t0, lost), ReconnectDecision::RetryAt(t0));
///     assert_eq!(rc.handle_timeout(t0), Some(ReconnectEvent::StartAttempt { attempt: 1 }));
///     let refused: Reason = Arc::new(std::io::Error::other("connection refused"));
///     assert_eq!(rc.on_attempt_failed(t0 + s(1), refused), ReconnectDecision::RetryAt(t0 + s(3)));
///     assert_eq!(rc.poll_timeout(), Some(t0 + s(3)));
///     assert_eq!(rc.handle_timeout(t0 + s(2)), None); // too early
///     assert_eq!(rc.handle_timeout(t0 + s(3)), Some(ReconnectEvent::StartAttempt { attempt: 2 }));
///     rc.on_connected();
///     assert!(rc.outage().is_none());
/// }
/// # run(Instant::now()); // the driver passes its runtime's clock in
/// ```
#[derive(Clone, Debug)]
pub struct Reconnect {
    retry_policy: Option<Arc<dyn RetryPolicy>>,
    start_policy: Option<Arc<dyn RetryPolicy>>,
    state: ReconnectState,
    outage: Option<Outage>,
}

impl Reconnect {
    /// A disconnected machine without policies: a loss disconnects and a failed start gives up.
    pub const fn new() -> Self {
        Self {
            retry_policy: None,
            start_policy: None,
            state: ReconnectState::Disconnected,
            outage: None,
        }
    }

    /// Reconnects after a loss as `policy` says.
    #[must_use]
    pub fn with_retry_policy(mut self, policy: impl RetryPolicy) -> Self {
        self.retry_policy = Some(Arc::new(policy));
        self
    }

    /// Retries a failed initial start as `policy` says (the official clients do not).
    #[must_use]
    pub fn with_start_policy(mut self, policy: impl RetryPolicy) -> Self {
        self.start_policy = Some(Arc::new(policy));
        self
    }

    /// The current state.
    pub const fn state(&self) -> ReconnectState {
        self.state
    }

    /// The current or last outage; `None` before any failure and once connected again.
    pub const fn outage(&self) -> Option<&Outage> {
        self.outage.as_ref()
    }

    /// Time since reconnecting (or starting) began, while reconnecting or starting.
    pub fn elapsed(&self, now: Instant) -> Option<Duration> {
        match self.state {
            ReconnectState::Reconnecting { since, .. } | ReconnectState::Starting { since, .. } => {
                Some(now.saturating_duration_since(since))
            }
            ReconnectState::Connected | ReconnectState::Disconnected => None,
        }
    }

    /// Call when the user starts the connection, before the first attempt runs. Starts over
    /// from any state.
    pub fn on_start_requested(&mut self, now: Instant) {
        self.outage = None;
        self.state = ReconnectState::Starting {
            attempt: 0,
            since: now,
            next_attempt_at: None,
        };
    }

    /// Call when a connection (first or reconnected) completed its handshake. Forgets the outage.
    pub fn on_connected(&mut self) {
        self.outage = None;
        self.state = ReconnectState::Connected;
    }

    /// Call when an established connection was lost (transport error, server timeout, a Close
    /// that allows reconnecting). Asks the retry policy with `previous_retry_count` 0.
    ///
    /// While starting or reconnecting this is the same as
    /// [`on_attempt_failed`](Self::on_attempt_failed); when disconnected it gives up.
    pub fn on_connection_lost(&mut self, now: Instant, reason: Reason) -> ReconnectDecision {
        match self.state {
            ReconnectState::Connected => {
                self.outage = Some(Outage {
                    since: now,
                    previous_retry_count: 0,
                    reason: Arc::clone(&reason),
                    last_error: reason,
                });
                self.state = ReconnectState::Reconnecting {
                    attempt: 0,
                    since: now,
                    next_attempt_at: None,
                };
                self.consult(now)
            }
            ReconnectState::Reconnecting { .. } | ReconnectState::Starting { .. } => {
                self.on_attempt_failed(now, reason)
            }
            ReconnectState::Disconnected => ReconnectDecision::GiveUp,
        }
    }

    /// Call when an attempt (a retry, or the initial start) failed. Asks the policy of the
    /// current phase, with `previous_retry_count` = the number of the failed attempt.
    ///
    /// When connected this is the same as [`on_connection_lost`](Self::on_connection_lost);
    /// when disconnected (for example after a stop) it gives up and changes nothing.
    pub fn on_attempt_failed(&mut self, now: Instant, reason: Reason) -> ReconnectDecision {
        match self.state {
            ReconnectState::Connected => self.on_connection_lost(now, reason),
            ReconnectState::Disconnected => ReconnectDecision::GiveUp,
            ReconnectState::Reconnecting { since, .. } | ReconnectState::Starting { since, .. } => {
                self.record_failure(since, reason);
                self.consult(now)
            }
        }
    }

    /// Call when the initial start failed; the same as [`on_attempt_failed`](Self::on_attempt_failed),
    /// named for readability. Gives up unless an initial-start policy is set.
    pub fn on_start_failed(&mut self, now: Instant, reason: Reason) -> ReconnectDecision {
        self.on_attempt_failed(now, reason)
    }

    /// Call when the server sent a `Close` message. Without `allow_reconnect` the machine
    /// disconnects and no policy is consulted; with it, this is a loss
    /// ([`on_connection_lost`](Self::on_connection_lost)). `reason` is the Close's error (or a
    /// "server closed the connection" error).
    pub fn on_close_message(
        &mut self,
        now: Instant,
        allow_reconnect: bool,
        reason: Reason,
    ) -> ReconnectDecision {
        if allow_reconnect {
            return self.on_connection_lost(now, reason);
        }
        match self.state {
            ReconnectState::Disconnected => {}
            ReconnectState::Connected => {
                self.outage = Some(Outage {
                    since: now,
                    previous_retry_count: 0,
                    reason: Arc::clone(&reason),
                    last_error: reason,
                });
            }
            ReconnectState::Reconnecting { since, .. } | ReconnectState::Starting { since, .. } => {
                self.record_failure(since, reason);
            }
        }
        self.state = ReconnectState::Disconnected;
        ReconnectDecision::GiveUp
    }

    /// Call when the user stops the connection: disconnects at once from any state. A pending
    /// delay is dropped and no further attempt is reported; the driver should abandon an attempt
    /// that is running.
    pub fn on_stop_requested(&mut self) {
        self.state = ReconnectState::Disconnected;
    }

    /// The instant of the next attempt while waiting out a delay; `None` otherwise.
    pub const fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            ReconnectState::Reconnecting {
                next_attempt_at, ..
            }
            | ReconnectState::Starting {
                next_attempt_at, ..
            } => next_attempt_at,
            ReconnectState::Connected | ReconnectState::Disconnected => None,
        }
    }

    /// Reports the attempt to start once its delay is over, once. Spurious early calls return
    /// `None` and are harmless.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<ReconnectEvent> {
        match &mut self.state {
            ReconnectState::Reconnecting {
                attempt,
                next_attempt_at,
                ..
            }
            | ReconnectState::Starting {
                attempt,
                next_attempt_at,
                ..
            } => {
                let due = next_attempt_at.is_some_and(|at| now >= at);
                if !due {
                    return None;
                }
                *next_attempt_at = None;
                Some(ReconnectEvent::StartAttempt { attempt: *attempt })
            }
            ReconnectState::Connected | ReconnectState::Disconnected => None,
        }
    }

    /// Records a failed attempt in the outage, creating it on the first failure of a start.
    fn record_failure(&mut self, since: Instant, reason: Reason) {
        match &mut self.outage {
            Some(outage) => outage.last_error = reason,
            None => {
                self.outage = Some(Outage {
                    since,
                    previous_retry_count: 0,
                    reason: Arc::clone(&reason),
                    last_error: reason,
                });
            }
        }
    }

    /// Asks the policy of the current phase about the attempt that just failed (or the loss),
    /// and moves to waiting or to `Disconnected`.
    fn consult(&mut self, now: Instant) -> ReconnectDecision {
        let (attempt, since, policy) = match self.state {
            ReconnectState::Reconnecting { attempt, since, .. } => {
                (attempt, since, self.retry_policy.as_ref())
            }
            ReconnectState::Starting { attempt, since, .. } => {
                (attempt, since, self.start_policy.as_ref())
            }
            ReconnectState::Connected | ReconnectState::Disconnected => {
                return ReconnectDecision::GiveUp;
            }
        };
        let next_at = self.outage.as_mut().and_then(|outage| {
            outage.previous_retry_count = attempt;
            let elapsed = now.saturating_duration_since(since);
            let ctx = RetryContext::new(attempt, elapsed, &*outage.last_error);
            policy?
                .next_retry_delay(&ctx)
                .and_then(|delay| now.checked_add(delay))
        });
        let Some(at) = next_at else {
            self.state = ReconnectState::Disconnected;
            return ReconnectDecision::GiveUp;
        };
        let (attempt, next_attempt_at) = (attempt.saturating_add(1), Some(at));
        self.state = if matches!(self.state, ReconnectState::Starting { .. }) {
            ReconnectState::Starting {
                attempt,
                since,
                next_attempt_at,
            }
        } else {
            ReconnectState::Reconnecting {
                attempt,
                since,
                next_attempt_at,
            }
        };
        ReconnectDecision::RetryAt(at)
    }
}

impl Default for Reconnect {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests;
