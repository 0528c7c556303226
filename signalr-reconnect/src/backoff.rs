//! [`ExponentialBackoff`]: a growing, capped delay with optional limits and jitter.

use std::time::Duration;

use crate::jitter::random_seed;
use crate::{Jitter, RetryContext, RetryPolicy};

/// Exponential backoff: `min(initial × factor^n, max_delay)` before retry `n`
/// (`n = previous_retry_count`), then [`Jitter`], with optional limits on the number of attempts
/// and on the total time.
///
/// Defaults: factor 2, `max_delay` 60 s, no attempt or time limit, no jitter.
/// [`Default`] starts at 1 s, so it waits 1, 2, 4, 8, 16, 32, 60, 60, .. seconds.
///
/// - The arithmetic saturates: any attempt count, however large, gives `max_delay` and never
///   panics. A factor below 1 (or NaN) is treated as 1, a constant delay.
/// - Jitter applies to the capped delay, so a jittered delay never exceeds `max_delay`.
/// - [`with_max_elapsed`](Self::with_max_elapsed) gives up when the next attempt would start
///   later than the limit after reconnecting began (`elapsed + delay > max_elapsed`), the same
///   rule as [`RetryPolicyExt::max_elapsed`](crate::RetryPolicyExt::max_elapsed).
/// - The policy is stateless: the jitter of retry `n` is a function of the seed and `n` (see
///   [`Jitter`]). Without [`with_jitter_seed`](Self::with_jitter_seed) the seed is random, drawn
///   once at construction.
///
/// ```
/// use std::time::Duration;
/// use signalr_reconnect::{ExponentialBackoff, Jitter, RetryContext, RetryPolicy};
///
/// let s = Duration::from_secs;
/// let policy = ExponentialBackoff::new(s(1))
///     .with_max_delay(s(10))
///     .with_max_attempts(6);
/// let reason = std::io::Error::other("connection reset");
/// let delays: Vec<_> = (0..10)
///     .map_while(|n| policy.next_retry_delay(&RetryContext::new(n, Duration::ZERO, &reason)))
///     .collect();
/// assert_eq!(delays, [s(1), s(2), s(4), s(8), s(10), s(10)]);
///
/// // Full jitter with a fixed seed: exact and repeatable, each delay in [0, backoff].
/// let jittered = ExponentialBackoff::new(s(1)).with_jitter(Jitter::Full).with_jitter_seed(7);
/// let ctx = RetryContext::new(3, Duration::ZERO, &reason);
/// let d = jittered.next_retry_delay(&ctx).unwrap();
/// assert!(d <= s(8));
/// assert_eq!(jittered.next_retry_delay(&ctx), Some(d));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ExponentialBackoff {
    initial: Duration,
    factor: f64,
    max_delay: Duration,
    max_attempts: Option<u32>,
    max_elapsed: Option<Duration>,
    jitter: Jitter,
    seed: u64,
}

impl ExponentialBackoff {
    /// The default factor: each delay doubles.
    pub const DEFAULT_FACTOR: f64 = 2.0;
    /// The default cap on a single delay: 60 seconds.
    pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(60);

    /// Starts at `initial` (the delay before the first attempt), doubling up to 60 s, forever,
    /// without jitter.
    pub fn new(initial: Duration) -> Self {
        Self {
            initial,
            factor: Self::DEFAULT_FACTOR,
            max_delay: Self::DEFAULT_MAX_DELAY,
            max_attempts: None,
            max_elapsed: None,
            jitter: Jitter::None,
            seed: random_seed(),
        }
    }

    /// Multiplies the delay by `factor` after each attempt. Below 1 (or NaN) counts as 1; an
    /// infinite factor jumps to `max_delay` after the first attempt.
    #[must_use]
    pub fn with_factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }

    /// Caps every delay (before and after jitter) at `max_delay`.
    #[must_use]
    pub fn with_max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = max_delay;
        self
    }

    /// Stops after `max_attempts` attempts (when `previous_retry_count` reaches it); `0` never
    /// retries.
    #[must_use]
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = Some(max_attempts);
        self
    }

    /// Stops when the next attempt would start more than `max_elapsed` after reconnecting began.
    #[must_use]
    pub fn with_max_elapsed(mut self, max_elapsed: Duration) -> Self {
        self.max_elapsed = Some(max_elapsed);
        self
    }

    /// Randomises each delay with `jitter`.
    #[must_use]
    pub fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Fixes the jitter seed, so that the delays are exactly reproducible (for tests).
    #[must_use]
    pub fn with_jitter_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The delay before retry `n` before jitter: `min(initial × factor^n, max_delay)`.
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "float backoff arithmetic, range-checked before converting back"
    )]
    fn capped_delay(&self, n: u32) -> Duration {
        const U64_MAX_AS_F64: f64 = 18_446_744_073_709_551_616.0; // 2^64
        if self.initial.is_zero() {
            return Duration::ZERO;
        }
        let factor = self.factor.max(1.0); // NaN -> 1.0
        let exponent = i32::try_from(n).unwrap_or(i32::MAX);
        // Finite or +inf, never NaN: initial > 0 and factor >= 1.
        let nanos = self.initial.as_nanos() as f64 * factor.powi(exponent);
        if nanos >= self.max_delay.as_nanos() as f64 {
            return self.max_delay;
        }
        let delay = if nanos < U64_MAX_AS_F64 {
            Duration::from_nanos(nanos.round() as u64)
        } else {
            Duration::try_from_secs_f64(nanos / 1e9).unwrap_or(self.max_delay)
        };
        delay.min(self.max_delay)
    }
}

/// Starts at 1 s, doubling up to 60 s, forever, without jitter.
impl Default for ExponentialBackoff {
    fn default() -> Self {
        Self::new(Duration::from_secs(1))
    }
}

impl RetryPolicy for ExponentialBackoff {
    fn next_retry_delay(&self, ctx: &RetryContext<'_>) -> Option<Duration> {
        let n = ctx.previous_retry_count;
        if self.max_attempts.is_some_and(|max| n >= max) {
            return None;
        }
        let delay = self.jitter.apply(self.capped_delay(n), self.seed, n);
        if self
            .max_elapsed
            .is_some_and(|limit| ctx.elapsed.saturating_add(delay) > limit)
        {
            return None;
        }
        Some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{TestError, delays, delays_in_time, millis, secs};

    #[test]
    fn default_doubles_from_one_second_up_to_sixty() {
        let expected = [1, 2, 4, 8, 16, 32, 60, 60, 60].map(secs).to_vec();
        assert_eq!(delays(&ExponentialBackoff::default(), 9), expected);
    }

    #[test]
    fn base_factor_and_cap() {
        let policy = ExponentialBackoff::new(millis(100))
            .with_factor(3.0)
            .with_max_delay(secs(5));
        let expected = [100, 300, 900, 2_700, 5_000, 5_000].map(millis).to_vec();
        assert_eq!(delays(&policy, 6), expected);
        let fractional = ExponentialBackoff::new(millis(500)).with_factor(1.5);
        let expected = vec![
            millis(500),
            millis(750),
            millis(1_125),
            Duration::from_micros(1_687_500),
        ];
        assert_eq!(delays(&fractional, 4), expected);
    }

    #[test]
    fn max_attempts_stops_after_that_many() {
        let policy = ExponentialBackoff::new(secs(1)).with_max_attempts(3);
        assert_eq!(delays(&policy, 100), vec![secs(1), secs(2), secs(4)]);
        assert_eq!(
            delays(&ExponentialBackoff::default().with_max_attempts(0), 100),
            vec![]
        );
    }

    #[test]
    fn max_elapsed_stops_before_an_attempt_past_the_limit() {
        // Attempts start at 1, 3, 7, 15, 31 s; the next would start at 63 s > 60 s.
        let policy = ExponentialBackoff::new(secs(1)).with_max_elapsed(secs(60));
        assert_eq!(
            delays_in_time(&policy, 100),
            [1, 2, 4, 8, 16].map(secs).to_vec()
        );
        // Exactly on the limit is allowed.
        let exact = ExponentialBackoff::new(secs(1)).with_max_elapsed(secs(31));
        assert_eq!(
            delays_in_time(&exact, 100),
            [1, 2, 4, 8, 16].map(secs).to_vec()
        );
    }

    #[test]
    fn saturates_for_huge_attempt_counts_and_factors() {
        let ctx = |n| RetryContext::new(n, Duration::ZERO, &TestError);
        let policy = ExponentialBackoff::default();
        for n in [63, 64, 1_000, 2_147_483_647, 2_147_483_648, u32::MAX] {
            assert_eq!(policy.next_retry_delay(&ctx(n)), Some(secs(60)), "n = {n}");
        }
        let uncapped = ExponentialBackoff::new(secs(1)).with_max_delay(Duration::MAX);
        assert_eq!(
            uncapped.next_retry_delay(&ctx(u32::MAX)),
            Some(Duration::MAX)
        );
        assert_eq!(uncapped.next_retry_delay(&ctx(40)), Some(secs(1 << 40)));
        let huge = ExponentialBackoff::new(Duration::MAX).with_max_delay(Duration::MAX);
        assert_eq!(huge.next_retry_delay(&ctx(0)), Some(Duration::MAX));
        let infinite = ExponentialBackoff::new(secs(1)).with_factor(f64::INFINITY);
        assert_eq!(delays(&infinite, 3), vec![secs(1), secs(60), secs(60)]);
        let elapsed = RetryContext::new(0, Duration::MAX, &TestError);
        let limited = ExponentialBackoff::default().with_max_elapsed(Duration::MAX);
        assert_eq!(limited.next_retry_delay(&elapsed), Some(secs(1)));
    }

    #[test]
    fn odd_factors_and_zero_initial_delay() {
        for factor in [0.5, 0.0, -2.0, f64::NAN] {
            let policy = ExponentialBackoff::new(secs(3)).with_factor(factor);
            assert_eq!(delays(&policy, 4), vec![secs(3); 4], "factor {factor}");
        }
        assert_eq!(
            delays(&ExponentialBackoff::new(Duration::ZERO), 3),
            vec![Duration::ZERO; 3]
        );
        let low_cap = ExponentialBackoff::new(secs(10)).with_max_delay(secs(1));
        assert_eq!(delays(&low_cap, 3), vec![secs(1); 3]);
    }

    #[test]
    fn seeded_jitter_is_exact_and_bounded_over_thousands_of_draws() {
        let full = ExponentialBackoff::new(secs(1))
            .with_jitter(Jitter::Full)
            .with_jitter_seed(9);
        let equal = ExponentialBackoff::new(secs(1))
            .with_jitter(Jitter::Equal)
            .with_jitter_seed(9);
        let plain = ExponentialBackoff::new(secs(1));
        let (f, e, p) = (
            delays(&full, 5_000),
            delays(&equal, 5_000),
            delays(&plain, 5_000),
        );
        for n in 0..5_000 {
            assert!(f[n] <= p[n] && e[n] <= p[n] && e[n] >= p[n] / 2, "n = {n}");
            assert!(f[n] <= secs(60));
        }
        assert_eq!(f, delays(&full, 5_000));
        let other_seed = full.with_jitter_seed(10);
        assert_ne!(f, delays(&other_seed, 5_000));
        // Exact values: the jitter is Jitter::apply with the seed and the retry count.
        for (i, n) in (0..10_u32).enumerate() {
            assert_eq!(f[i], Jitter::Full.apply(p[i], 9, n));
            assert_eq!(e[i], Jitter::Equal.apply(p[i], 9, n));
        }
    }

    #[test]
    fn unseeded_policies_get_different_seeds() {
        let a = ExponentialBackoff::default().with_jitter(Jitter::Full);
        let b = ExponentialBackoff::default().with_jitter(Jitter::Full);
        assert_ne!(delays(&a, 20), delays(&b, 20));
    }
}
