//! [`TimerTable`]: every deadline of a connection in one place (quinn-proto's `TimerTable`).
//! The shell sleeps until [`TimerTable::next`] and hands the core the instant it woke.

use std::time::Instant;

/// The connection's timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// The keep-alive machine's next deadline: the handshake timeout, the next ping or the
    /// server timeout, whichever is first.
    KeepAlive,
    /// An Ack is due (stateful reconnect).
    Ack,
    /// The next start or reconnect attempt.
    Retry,
    /// The next attempt to resume a stateful connection.
    ResumeRetry,
    /// How long closing may take after a stop.
    CloseGrace,
    /// How long a full stream consumer may hold reading back.
    StreamConsumer,
}

const COUNT: usize = 6;

impl Timer {
    const ALL: [Self; COUNT] = [
        Self::KeepAlive,
        Self::Ack,
        Self::Retry,
        Self::ResumeRetry,
        Self::CloseGrace,
        Self::StreamConsumer,
    ];

    const fn index(self) -> usize {
        self as usize
    }
}

/// One optional deadline per [`Timer`].
#[derive(Clone, Debug, Default)]
pub(crate) struct TimerTable {
    data: [Option<Instant>; COUNT],
}

impl TimerTable {
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.data[timer.index()] = Some(at);
    }

    /// Sets `timer` to `at`, or stops it for `None`.
    pub(crate) fn set_opt(&mut self, timer: Timer, at: Option<Instant>) {
        self.data[timer.index()] = at;
    }

    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.data[timer.index()]
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        self.data[timer.index()] = None;
    }

    pub(crate) fn stop_all(&mut self) {
        self.data = [None; COUNT];
    }

    /// The earliest deadline, if any timer runs.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.data.iter().flatten().min().copied()
    }

    /// A timer whose deadline is at or before `now`, stopped as it is returned; `None` once
    /// none is due. Spurious early wake-ups find nothing.
    pub(crate) fn expire(&mut self, now: Instant) -> Option<Timer> {
        let timer = Timer::ALL
            .into_iter()
            .find(|t| self.get(*t).is_some_and(|at| at <= now))?;
        self.stop(timer);
        Some(timer)
    }
}
