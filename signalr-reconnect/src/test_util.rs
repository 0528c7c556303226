//! Helpers shared by the unit tests. The only place in the crate that reads a clock.

use std::fmt;
use std::time::{Duration, Instant};

use crate::{RetryContext, RetryPolicy};

/// An arbitrary base instant for tests; every other instant is `test_epoch() + offset`.
#[allow(clippy::disallowed_methods)]
pub(crate) fn test_epoch() -> Instant {
    Instant::now()
}

/// Shorthand for `Duration::from_secs`.
pub(crate) const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Shorthand for `Duration::from_millis`.
pub(crate) const fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// One nanosecond before `t`.
pub(crate) fn just_before(t: Instant) -> Instant {
    t.checked_sub(Duration::from_nanos(1)).unwrap()
}

/// A reason to hand to policies.
#[derive(Debug)]
pub(crate) struct TestError;

impl fmt::Display for TestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("test error")
    }
}

impl std::error::Error for TestError {}

/// The delays `policy` gives for retry counts 0, 1, 2, .. with no time elapsed, until it stops
/// or `limit` delays were produced.
pub(crate) fn delays(policy: &impl RetryPolicy, limit: u32) -> Vec<Duration> {
    (0..limit)
        .map_while(|n| policy.next_retry_delay(&RetryContext::new(n, Duration::ZERO, &TestError)))
        .collect()
}

/// The delays `policy` gives when every attempt fails instantly after its delay, so that
/// `elapsed` is the sum of the delays so far.
pub(crate) fn delays_in_time(policy: &impl RetryPolicy, limit: u32) -> Vec<Duration> {
    let mut elapsed = Duration::ZERO;
    let mut out = Vec::new();
    for n in 0..limit {
        let Some(d) = policy.next_retry_delay(&RetryContext::new(n, elapsed, &TestError)) else {
            break;
        };
        elapsed += d;
        out.push(d);
    }
    out
}
