//! Every deadline of a session in one table (quinn-proto's `TimerTable`): the loop sleeps
//! until the earliest, one `Sleep` for them all.

use tokio::time::Instant;

/// What a session waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Timer {
    /// A blackhole ends: until then no other timer runs.
    Blackhole,
    /// The handshake must have completed.
    Handshake,
    /// Nothing was received for the client timeout: the client is gone (WebSockets, SSE).
    ClientTimeout,
    /// No transport for the disconnect timeout: no poll (long polling), or no resume (a
    /// stateful connection that lost its socket).
    Disconnect,
    /// The transport took no frame for the disconnect timeout: it stopped reading.
    Write,
    /// An Ack is due (stateful reconnect).
    Ack,
    /// Nothing was sent for the keep-alive interval: a Ping is due (WebSockets, SSE).
    Ping,
}

impl Timer {
    /// Every timer, in the order the expired ones are handled.
    pub(super) const ALL: [Self; 7] = [
        Self::Blackhole,
        Self::Handshake,
        Self::ClientTimeout,
        Self::Disconnect,
        Self::Write,
        Self::Ack,
        Self::Ping,
    ];
}

/// The deadline of each [`Timer`], if set.
#[derive(Debug, Default)]
pub(super) struct Timers([Option<Instant>; Timer::ALL.len()]);

impl Timers {
    pub(super) fn set(&mut self, timer: Timer, at: Instant) {
        self.0[timer as usize] = Some(at);
    }

    pub(super) fn stop(&mut self, timer: Timer) {
        self.0[timer as usize] = None;
    }

    pub(super) fn get(&self, timer: Timer) -> Option<Instant> {
        self.0[timer as usize]
    }

    pub(super) fn is_set(&self, timer: Timer) -> bool {
        self.0[timer as usize].is_some()
    }

    /// Whether `timer` is set and due at `now`.
    pub(super) fn expired(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|at| at <= now)
    }

    /// The earliest deadline: a blackhole's end alone while one lasts, since nothing else
    /// runs meanwhile.
    pub(super) fn next(&self) -> Option<Instant> {
        if let Some(end) = self.get(Timer::Blackhole) {
            return Some(end);
        }
        self.0.iter().flatten().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_earliest_deadline_wins_but_a_blackhole_hides_the_rest() {
        let t0 = crate::now();
        let mut timers = Timers::default();
        assert_eq!(timers.next(), None);
        timers.set(Timer::Ping, t0 + Duration::from_secs(15));
        timers.set(Timer::ClientTimeout, t0 + Duration::from_secs(30));
        timers.set(Timer::Ack, t0 + Duration::from_secs(1));
        assert_eq!(timers.next(), Some(t0 + Duration::from_secs(1)));
        timers.stop(Timer::Ack);
        assert_eq!(timers.next(), Some(t0 + Duration::from_secs(15)));
        assert!(!timers.expired(Timer::Ping, t0 + Duration::from_secs(14)));
        assert!(timers.expired(Timer::Ping, t0 + Duration::from_secs(15)));
        timers.set(Timer::Blackhole, t0 + Duration::from_secs(60));
        assert_eq!(timers.next(), Some(t0 + Duration::from_secs(60)));
        assert!(timers.is_set(Timer::Blackhole));
        timers.stop(Timer::Blackhole);
        assert_eq!(timers.next(), Some(t0 + Duration::from_secs(15)));
    }
}
