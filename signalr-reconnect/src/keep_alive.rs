//! [`KeepAlive`]: pings, the server timeout and the handshake timeout, as a sans-IO machine.

use std::time::{Duration, Instant};

use crate::ConfigError;

/// Timing settings for [`KeepAlive`], with the official clients' defaults.
///
/// # Validation rule
///
/// [`validate`](Self::validate) rejects a zero duration and a `server_timeout` that is not
/// longer than `keep_alive_interval` (the client would give up on a healthy server before its
/// next ping could arrive). The official guidance is a server timeout of at least **twice** the
/// server's keep-alive interval (the defaults: 30 s and 15 s), so that one lost or late ping is
/// tolerated. Settings between the two are accepted, since they may be deliberate, and
/// [`is_recommended`](Self::is_recommended) tells them apart so that a client can log a warning.
///
/// The client's own keep-alive interval is compared here because the server's is unknown to the
/// client; keep both at the same value (15 s by default on both sides).
///
/// ```
/// use std::time::Duration;
/// use signalr_reconnect::{ConfigError, KeepAliveConfig};
///
/// let s = Duration::from_secs;
/// let config = KeepAliveConfig::default();
/// assert_eq!((config.keep_alive_interval, config.server_timeout), (s(15), s(30)));
/// assert!(config.validate().is_ok() && config.is_recommended());
///
/// let tight = config.server_timeout(s(20)); // accepted, but less than 2 × 15 s
/// assert!(tight.validate().is_ok() && !tight.is_recommended());
///
/// let broken = config.server_timeout(s(15));
/// assert!(matches!(broken.validate(), Err(ConfigError::ServerTimeoutTooShort { .. })));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct KeepAliveConfig {
    /// Send a `Ping` when nothing was sent for this long. Default 15 s.
    pub keep_alive_interval: Duration,
    /// Treat the server as dead when nothing was received for this long. Default 30 s.
    pub server_timeout: Duration,
    /// Give up on the handshake when its response has not arrived after this long. Default 15 s.
    pub handshake_timeout: Duration,
}

impl KeepAliveConfig {
    /// The default keep-alive interval of the official clients and server: 15 seconds.
    pub const DEFAULT_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(15);
    /// The default server timeout of the official clients: 30 seconds.
    pub const DEFAULT_SERVER_TIMEOUT: Duration = Duration::from_secs(30);
    /// The default handshake timeout of the .NET client and server: 15 seconds.
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

    /// The defaults: 15 s keep-alive interval, 30 s server timeout, 15 s handshake timeout.
    pub const fn new() -> Self {
        Self {
            keep_alive_interval: Self::DEFAULT_KEEP_ALIVE_INTERVAL,
            server_timeout: Self::DEFAULT_SERVER_TIMEOUT,
            handshake_timeout: Self::DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// Sets [`keep_alive_interval`](Self#structfield.keep_alive_interval).
    #[must_use]
    pub const fn keep_alive_interval(mut self, interval: Duration) -> Self {
        self.keep_alive_interval = interval;
        self
    }

    /// Sets [`server_timeout`](Self#structfield.server_timeout).
    #[must_use]
    pub const fn server_timeout(mut self, timeout: Duration) -> Self {
        self.server_timeout = timeout;
        self
    }

    /// Sets [`handshake_timeout`](Self#structfield.handshake_timeout).
    #[must_use]
    pub const fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Checks the [validation rule](Self#validation-rule): no zero duration, and a server timeout
    /// longer than the keep-alive interval.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, value) in [
            ("keep_alive_interval", self.keep_alive_interval),
            ("server_timeout", self.server_timeout),
            ("handshake_timeout", self.handshake_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::ZeroDuration { field });
            }
        }
        if self.server_timeout <= self.keep_alive_interval {
            return Err(ConfigError::ServerTimeoutTooShort {
                server_timeout: self.server_timeout,
                keep_alive_interval: self.keep_alive_interval,
            });
        }
        Ok(())
    }

    /// Whether the settings are valid and follow the official advice: a server timeout of at
    /// least twice the keep-alive interval. `false` for valid but tight settings is worth a
    /// warning, not an error.
    pub fn is_recommended(&self) -> bool {
        self.validate().is_ok() && self.server_timeout >= self.keep_alive_interval.saturating_mul(2)
    }
}

impl Default for KeepAliveConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// Where a [`KeepAlive`] is in the life of one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeepAlivePhase {
    /// The handshake completed: pings and the server timeout apply.
    Connected,
    /// Waiting for the handshake response: only the handshake timeout applies.
    Handshaking,
    /// A [`KeepAliveEvent::HandshakeTimedOut`] or [`KeepAliveEvent::ServerTimedOut`] was
    /// reported; nothing more will be until [`KeepAlive::reset`].
    TimedOut,
}

/// What the driver must do when a keep-alive deadline passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeepAliveEvent {
    /// The handshake response did not arrive within `handshake_timeout`: fail the connection.
    HandshakeTimedOut,
    /// Nothing was sent for `keep_alive_interval`: send a `Ping`.
    SendPing,
    /// Nothing was received for `server_timeout`: treat the connection as lost.
    ServerTimedOut,
}

/// The keep-alive timers of one connection, as a sans-IO state machine in the style of quinn's
/// timers.
///
/// The driver tells it what happened (`on_*(now)`), sleeps until
/// [`poll_timeout`](Self::poll_timeout), and then calls [`handle_timeout`](Self::handle_timeout),
/// which says what to do. Spurious or early calls to `handle_timeout` return `None` and change
/// nothing; an `on_*` call with an older `now` than a previous one never moves a timer back.
///
/// # Phases
///
/// 1. **Handshaking** (from [`new`](Self::new) or [`reset`](Self::reset)): only the handshake
///    timeout applies, counted from that instant. No pings are due (the official clients send
///    none before the handshake completes) and received messages do not extend it: only
///    [`on_handshake_completed`](Self::on_handshake_completed) does.
/// 2. **Connected** (from `on_handshake_completed(now)`): a `Ping` is due `keep_alive_interval`
///    after the last message sent, and the server is dead `server_timeout` after the last
///    message received. Any received message counts, including a `Ping`; sent pings do not
///    extend the server timeout. When both are due at once, the server timeout wins.
/// 3. **`TimedOut`**: after a timeout event, the machine is inert until `reset(now)` starts the
///    handshake of a new connection.
///
/// Transports that keep themselves alive (long polling, which the official clients never ping
/// and never time out) turn both timers off with [`set_pings_enabled(false)`](Self::set_pings_enabled)
/// and [`set_server_timeout_enabled(false)`](Self::set_server_timeout_enabled).
///
/// A deadline too far away to be represented as an [`Instant`] counts as never.
///
/// ```
/// use std::time::{Duration, Instant};
/// use signalr_reconnect::{KeepAlive, KeepAliveConfig, KeepAliveEvent};
///
/// fn run(t0: Instant) -> Result<(), signalr_reconnect::ConfigError> {
///     let s = Duration::from_secs;
///     let mut ka = KeepAlive::new(KeepAliveConfig::default(), t0)?;
///     assert_eq!(ka.poll_timeout(), Some(t0 + s(15))); // the handshake deadline
///     ka.on_handshake_completed(t0 + s(1));
///     assert_eq!(ka.poll_timeout(), Some(t0 + s(16))); // first ping
///     assert_eq!(ka.handle_timeout(t0 + s(16)), Some(KeepAliveEvent::SendPing));
///     ka.on_message_received(t0 + s(20)); // server still alive: dead only at t0 + 50 s
///     assert_eq!(ka.handle_timeout(t0 + s(31)), Some(KeepAliveEvent::SendPing));
///     assert_eq!(ka.handle_timeout(t0 + s(46)), Some(KeepAliveEvent::SendPing));
///     assert_eq!(ka.handle_timeout(t0 + s(50)), Some(KeepAliveEvent::ServerTimedOut));
///     Ok(())
/// }
/// # run(Instant::now()).unwrap(); // the driver passes its runtime's clock in
/// ```
#[derive(Clone, Debug)]
pub struct KeepAlive {
    config: KeepAliveConfig,
    phase: KeepAlivePhase,
    pings_enabled: bool,
    server_timeout_enabled: bool,
    handshake_started: Instant,
    last_sent: Instant,
    last_received: Instant,
}

impl KeepAlive {
    /// A machine in the handshaking phase, the handshake having started at `now`.
    ///
    /// Fails when `config` breaks the [validation rule](KeepAliveConfig#validation-rule).
    pub fn new(config: KeepAliveConfig, now: Instant) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            phase: KeepAlivePhase::Handshaking,
            pings_enabled: true,
            server_timeout_enabled: true,
            handshake_started: now,
            last_sent: now,
            last_received: now,
        })
    }

    /// The settings.
    pub const fn config(&self) -> &KeepAliveConfig {
        &self.config
    }

    /// The current phase.
    pub const fn phase(&self) -> KeepAlivePhase {
        self.phase
    }

    /// Turns pings on or off (on by default). Off for transports that keep themselves alive,
    /// such as long polling.
    pub fn set_pings_enabled(&mut self, enabled: bool) {
        self.pings_enabled = enabled;
    }

    /// Turns the server timeout on or off (on by default). Off for transports that keep
    /// themselves alive, such as long polling. The handshake timeout always applies.
    pub fn set_server_timeout_enabled(&mut self, enabled: bool) {
        self.server_timeout_enabled = enabled;
    }

    /// Starts over for a new connection whose handshake starts at `now`. Keeps the settings and
    /// the enabled timers.
    pub fn reset(&mut self, now: Instant) {
        self.phase = KeepAlivePhase::Handshaking;
        self.handshake_started = now;
        self.last_sent = now;
        self.last_received = now;
    }

    /// Call when the handshake response arrived: starts the ping and server timers from `now`.
    /// Ignored unless handshaking.
    pub fn on_handshake_completed(&mut self, now: Instant) {
        if self.phase == KeepAlivePhase::Handshaking {
            self.phase = KeepAlivePhase::Connected;
            self.last_sent = self.last_sent.max(now);
            self.last_received = self.last_received.max(now);
        }
    }

    /// Call after writing any message (including a `Ping`): pings are only needed on a quiet
    /// connection.
    pub fn on_message_sent(&mut self, now: Instant) {
        self.last_sent = self.last_sent.max(now);
    }

    /// Call after reading any message, including a `Ping`: it proves the server is alive.
    /// Ignored while handshaking (the handshake response calls
    /// [`on_handshake_completed`](Self::on_handshake_completed) instead).
    pub fn on_message_received(&mut self, now: Instant) {
        if self.phase == KeepAlivePhase::Connected {
            self.last_received = self.last_received.max(now);
        }
    }

    /// When a `Ping` is next due, if pings are enabled and the connection is up.
    pub fn next_ping_at(&self) -> Option<Instant> {
        if self.phase != KeepAlivePhase::Connected || !self.pings_enabled {
            return None;
        }
        self.last_sent.checked_add(self.config.keep_alive_interval)
    }

    /// When the server will be declared dead unless a message arrives, if the server timeout
    /// is enabled and the connection is up.
    pub fn server_deadline(&self) -> Option<Instant> {
        if self.phase != KeepAlivePhase::Connected || !self.server_timeout_enabled {
            return None;
        }
        self.last_received.checked_add(self.config.server_timeout)
    }

    /// When the handshake times out, while handshaking.
    pub fn handshake_deadline(&self) -> Option<Instant> {
        if self.phase != KeepAlivePhase::Handshaking {
            return None;
        }
        self.handshake_started
            .checked_add(self.config.handshake_timeout)
    }

    /// The next instant at which [`handle_timeout`](Self::handle_timeout) must be called, or
    /// `None` when nothing is due (timers off, or timed out).
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.handshake_deadline(),
            self.next_ping_at(),
            self.server_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Reports what is due at `now`, if anything. Spurious early calls return `None` and are
    /// harmless.
    ///
    /// A [`KeepAliveEvent::SendPing`] counts as a message sent at `now`, so that the next ping is
    /// due one interval later even if the driver does not call
    /// [`on_message_sent`](Self::on_message_sent). A timeout event moves the machine to
    /// [`KeepAlivePhase::TimedOut`] and is reported once.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<KeepAliveEvent> {
        if self.handshake_deadline().is_some_and(|at| now >= at) {
            self.phase = KeepAlivePhase::TimedOut;
            return Some(KeepAliveEvent::HandshakeTimedOut);
        }
        if self.server_deadline().is_some_and(|at| now >= at) {
            self.phase = KeepAlivePhase::TimedOut;
            return Some(KeepAliveEvent::ServerTimedOut);
        }
        if self.next_ping_at().is_some_and(|at| now >= at) {
            self.last_sent = now;
            return Some(KeepAliveEvent::SendPing);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{just_before, secs, test_epoch};

    const NS: Duration = Duration::from_nanos(1);

    fn connected(t0: Instant) -> KeepAlive {
        let mut ka = KeepAlive::new(KeepAliveConfig::default(), t0).unwrap();
        ka.on_handshake_completed(t0);
        ka
    }

    #[test]
    fn defaults_are_15_30_15_and_valid() {
        let c = KeepAliveConfig::default();
        assert_eq!(c, KeepAliveConfig::new());
        assert_eq!(
            (c.keep_alive_interval, c.server_timeout, c.handshake_timeout),
            (secs(15), secs(30), secs(15))
        );
        assert_eq!(c.validate(), Ok(()));
        assert!(c.is_recommended());
    }

    #[test]
    fn validation_rejects_zero_and_a_server_timeout_not_above_the_interval() {
        let c = KeepAliveConfig::default();
        for (config, field) in [
            (c.keep_alive_interval(Duration::ZERO), "keep_alive_interval"),
            (c.server_timeout(Duration::ZERO), "server_timeout"),
            (c.handshake_timeout(Duration::ZERO), "handshake_timeout"),
        ] {
            assert_eq!(config.validate(), Err(ConfigError::ZeroDuration { field }));
            assert!(!config.is_recommended());
            assert!(KeepAlive::new(config, test_epoch()).is_err());
        }
        for server_timeout in [secs(10), secs(15)] {
            let config = c.server_timeout(server_timeout);
            let err = ConfigError::ServerTimeoutTooShort {
                server_timeout,
                keep_alive_interval: secs(15),
            };
            assert_eq!(config.validate(), Err(err.clone()));
            assert_eq!(KeepAlive::new(config, test_epoch()).unwrap_err(), err);
        }
        // Valid but below the 2x advice; exactly 2x is recommended.
        assert!(c.server_timeout(secs(15) + NS).validate().is_ok());
        assert!(!c.server_timeout(secs(29)).is_recommended());
        assert!(c.server_timeout(secs(30)).is_recommended());
        assert!(
            c.keep_alive_interval(Duration::MAX)
                .server_timeout(Duration::MAX)
                .validate()
                .is_err()
        );
        // 2 x interval saturates instead of overflowing.
        let huge = c
            .keep_alive_interval(Duration::MAX / 2 + secs(1))
            .server_timeout(Duration::new(u64::MAX - 1, 0));
        assert!(huge.validate().is_ok() && !huge.is_recommended());
    }

    #[test]
    fn ping_at_exactly_15_s_of_silence() {
        let t0 = test_epoch();
        let mut ka = connected(t0);
        assert_eq!(ka.poll_timeout(), Some(t0 + secs(15)));
        assert_eq!(ka.handle_timeout(just_before(t0 + secs(15))), None);
        assert_eq!(
            ka.handle_timeout(t0 + secs(15)),
            Some(KeepAliveEvent::SendPing)
        );
        // The ping counts as sent: the next one is due 15 s later.
        assert_eq!(ka.next_ping_at(), Some(t0 + secs(30)));
        assert_eq!(ka.handle_timeout(t0 + secs(15)), None);
    }

    #[test]
    fn dead_server_declared_at_exactly_30_s() {
        let t0 = test_epoch();
        let mut ka = connected(t0);
        assert_eq!(
            ka.handle_timeout(t0 + secs(15)),
            Some(KeepAliveEvent::SendPing)
        );
        ka.on_message_sent(t0 + secs(15)); // our own pings do not keep the server alive
        assert_eq!(ka.server_deadline(), Some(t0 + secs(30)));
        assert_eq!(ka.handle_timeout(just_before(t0 + secs(30))), None);
        // Both due at 30 s: the server timeout wins.
        assert_eq!(ka.next_ping_at(), Some(t0 + secs(30)));
        assert_eq!(
            ka.handle_timeout(t0 + secs(30)),
            Some(KeepAliveEvent::ServerTimedOut)
        );
        assert_eq!(ka.phase(), KeepAlivePhase::TimedOut);
        // Reported once; then inert.
        assert_eq!(ka.poll_timeout(), None);
        assert_eq!(ka.handle_timeout(t0 + secs(100)), None);
        ka.on_message_received(t0 + secs(31));
        assert_eq!(ka.handle_timeout(t0 + secs(100)), None);
    }

    #[test]
    fn traffic_resets_the_timers() {
        let t0 = test_epoch();
        let mut ka = connected(t0);
        ka.on_message_sent(t0 + secs(10));
        assert_eq!(ka.handle_timeout(t0 + secs(15)), None);
        assert_eq!(ka.next_ping_at(), Some(t0 + secs(25)));
        ka.on_message_received(t0 + secs(20)); // any message, e.g. the server's Ping
        assert_eq!(ka.server_deadline(), Some(t0 + secs(50)));
        assert_eq!(ka.poll_timeout(), Some(t0 + secs(25)));
        assert_eq!(
            ka.handle_timeout(t0 + secs(25)),
            Some(KeepAliveEvent::SendPing)
        );
        assert_eq!(
            ka.handle_timeout(t0 + secs(40)),
            Some(KeepAliveEvent::SendPing)
        );
        assert_eq!(ka.handle_timeout(t0 + secs(49)), None);
        assert_eq!(
            ka.handle_timeout(t0 + secs(50)),
            Some(KeepAliveEvent::ServerTimedOut)
        );
    }

    #[test]
    fn steady_traffic_never_pings_or_times_out() {
        let t0 = test_epoch();
        let mut ka = connected(t0);
        for s in 1..=600 {
            let now = t0 + secs(s);
            assert_eq!(ka.handle_timeout(now), None, "at {s} s");
            ka.on_message_sent(now);
            ka.on_message_received(now);
        }
    }

    #[test]
    fn late_calls_catch_up_with_one_event() {
        let t0 = test_epoch();
        let mut ka = connected(t0);
        ka.on_message_received(t0 + secs(20));
        // The driver woke up very late: one ping, not a burst.
        assert_eq!(
            ka.handle_timeout(t0 + secs(45)),
            Some(KeepAliveEvent::SendPing)
        );
        assert_eq!(ka.handle_timeout(t0 + secs(45)), None);
    }

    #[test]
    fn handshake_times_out_at_exactly_15_s_and_sends_no_pings() {
        let t0 = test_epoch();
        let mut ka = KeepAlive::new(KeepAliveConfig::default(), t0).unwrap();
        assert_eq!(ka.phase(), KeepAlivePhase::Handshaking);
        assert_eq!((ka.next_ping_at(), ka.server_deadline()), (None, None));
        assert_eq!(ka.poll_timeout(), Some(t0 + secs(15)));
        ka.on_message_sent(t0 + secs(1));
        ka.on_message_received(t0 + secs(2)); // does not complete or extend the handshake
        assert_eq!(ka.handle_timeout(just_before(t0 + secs(15))), None);
        assert_eq!(
            ka.handle_timeout(t0 + secs(15)),
            Some(KeepAliveEvent::HandshakeTimedOut)
        );
        assert_eq!(ka.phase(), KeepAlivePhase::TimedOut);
        assert_eq!(ka.poll_timeout(), None);
        ka.on_handshake_completed(t0 + secs(16)); // too late: ignored
        assert_eq!(ka.phase(), KeepAlivePhase::TimedOut);
    }

    #[test]
    fn timers_start_when_the_handshake_completes() {
        let t0 = test_epoch();
        let mut ka = KeepAlive::new(KeepAliveConfig::default(), t0).unwrap();
        ka.on_handshake_completed(t0 + secs(14));
        assert_eq!(ka.phase(), KeepAlivePhase::Connected);
        assert_eq!(ka.handshake_deadline(), None);
        assert_eq!(ka.handle_timeout(t0 + secs(15)), None);
        assert_eq!(ka.poll_timeout(), Some(t0 + secs(29)));
        assert_eq!(ka.server_deadline(), Some(t0 + secs(44)));
        ka.on_handshake_completed(t0 + secs(20)); // repeated: ignored
        assert_eq!(ka.server_deadline(), Some(t0 + secs(44)));
    }

    #[test]
    fn reset_starts_a_new_handshake() {
        let t0 = test_epoch();
        let mut ka = connected(t0);
        assert_eq!(
            ka.handle_timeout(t0 + secs(30)),
            Some(KeepAliveEvent::ServerTimedOut)
        );
        ka.reset(t0 + secs(40));
        assert_eq!(ka.phase(), KeepAlivePhase::Handshaking);
        assert_eq!(ka.poll_timeout(), Some(t0 + secs(55)));
        ka.on_handshake_completed(t0 + secs(41));
        assert_eq!(ka.poll_timeout(), Some(t0 + secs(56)));
    }

    #[test]
    fn timers_can_be_turned_off_for_long_polling() {
        let t0 = test_epoch();
        let mut ka = connected(t0);
        ka.set_pings_enabled(false);
        assert_eq!(ka.poll_timeout(), Some(t0 + secs(30)));
        assert_eq!(ka.handle_timeout(t0 + secs(29)), None);
        ka.set_server_timeout_enabled(false);
        assert_eq!(ka.poll_timeout(), None);
        assert_eq!(ka.handle_timeout(t0 + secs(1_000)), None);
        ka.set_pings_enabled(true);
        assert_eq!(
            ka.handle_timeout(t0 + secs(1_000)),
            Some(KeepAliveEvent::SendPing)
        );
        // The handshake timeout still applies with both off.
        ka.reset(t0 + secs(1_000));
        assert_eq!(ka.poll_timeout(), Some(t0 + secs(1_015)));
    }

    #[test]
    fn out_of_order_instants_never_move_timers_back() {
        let t0 = test_epoch() + secs(100);
        let mut ka = connected(t0);
        ka.on_message_sent(t0 + secs(10));
        ka.on_message_sent(t0 + secs(5));
        ka.on_message_received(t0 + secs(10));
        ka.on_message_received(t0.checked_sub(secs(50)).unwrap());
        assert_eq!(ka.next_ping_at(), Some(t0 + secs(25)));
        assert_eq!(ka.server_deadline(), Some(t0 + secs(40)));
        assert_eq!(ka.handle_timeout(t0), None);
        assert_eq!(*ka.config(), KeepAliveConfig::default());
    }

    #[test]
    fn unrepresentable_deadlines_count_as_never() {
        let t0 = test_epoch();
        let config = KeepAliveConfig::new()
            .keep_alive_interval(Duration::new(u64::MAX - 1, 0))
            .server_timeout(Duration::MAX)
            .handshake_timeout(Duration::MAX);
        let mut ka = KeepAlive::new(config, t0).unwrap();
        assert_eq!(ka.poll_timeout(), None);
        ka.on_handshake_completed(t0);
        assert_eq!(ka.poll_timeout(), None);
        assert_eq!(ka.handle_timeout(t0 + secs(1_000_000)), None);
    }
}
