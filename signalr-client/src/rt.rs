//! The only clock read in the workspace.

/// Now, through tokio, so that every timeout obeys `tokio::time::pause()` in tests.
#[allow(clippy::disallowed_methods)]
pub(crate) fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// Microseconds since `started`, for a span's `signalr.duration_us`.
pub(crate) fn micros_since(started: std::time::Instant) -> u64 {
    u64::try_from(now().saturating_duration_since(started).as_micros()).unwrap_or(u64::MAX)
}
