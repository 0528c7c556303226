//! Combinators that wrap any [`RetryPolicy`]: [`RetryPolicyExt`] and the types it returns.

use std::fmt;
use std::time::Duration;

use crate::jitter::random_seed;
use crate::{Jitter, RetryContext, RetryPolicy};

/// Combinators for every [`RetryPolicy`].
///
/// ```
/// use std::time::Duration;
/// use signalr_reconnect::{FixedInterval, Jitter, RetryContext, RetryPolicy, RetryPolicyExt};
///
/// let s = Duration::from_secs;
/// // Every 5 s, at most 10 times, for at most 30 s, jittered in [2.5 s, 5 s].
/// let policy = FixedInterval::new(s(5))
///     .max_attempts(10)
///     .max_elapsed(s(30))
///     .with_jitter(Jitter::Equal);
/// let reason = std::io::Error::other("connection reset");
/// let first = policy.next_retry_delay(&RetryContext::new(0, Duration::ZERO, &reason)).unwrap();
/// assert!(first >= s(5) / 2 && first <= s(5));
/// assert_eq!(policy.next_retry_delay(&RetryContext::new(10, s(1), &reason)), None);
/// assert_eq!(policy.next_retry_delay(&RetryContext::new(1, s(30), &reason)), None);
/// ```
pub trait RetryPolicyExt: RetryPolicy + Sized {
    /// Stops after `max_attempts` attempts (when `previous_retry_count` reaches it), or earlier
    /// if the inner policy stops; `0` never retries.
    fn max_attempts(self, max_attempts: u32) -> MaxAttempts<Self> {
        MaxAttempts {
            inner: self,
            max_attempts,
        }
    }

    /// Stops when the next attempt would start more than `max_elapsed` after reconnecting began,
    /// that is when `elapsed + delay > max_elapsed`. An attempt may still be running at that
    /// moment; this bounds when attempts start, not how long they take.
    fn max_elapsed(self, max_elapsed: Duration) -> MaxElapsed<Self> {
        MaxElapsed {
            inner: self,
            max_elapsed,
        }
    }

    /// Randomises each delay of the inner policy with `jitter` and a random seed; fix the seed
    /// with [`Jittered::with_jitter_seed`].
    fn with_jitter(self, jitter: Jitter) -> Jittered<Self> {
        Jittered {
            inner: self,
            jitter,
            seed: random_seed(),
        }
    }

    /// Retries only while `predicate` holds for the context (typically for its `reason`); gives
    /// up at once otherwise, without asking the inner policy.
    ///
    /// ```
    /// use std::time::Duration;
    /// use signalr_reconnect::{FixedDelays, RetryContext, RetryPolicy, RetryPolicyExt};
    ///
    /// // Do not retry when the server refused our credentials.
    /// let policy = FixedDelays::dotnet_default()
    ///     .retry_if(|ctx| !ctx.reason.to_string().contains("401"));
    /// let unauthorized = std::io::Error::other("negotiate failed: 401 Unauthorized");
    /// let ctx = RetryContext::new(0, Duration::ZERO, &unauthorized);
    /// assert_eq!(policy.next_retry_delay(&ctx), None);
    /// ```
    fn retry_if<F>(self, predicate: F) -> RetryIf<Self, F>
    where
        F: Fn(&RetryContext<'_>) -> bool + Send + Sync + 'static,
    {
        RetryIf {
            inner: self,
            predicate,
        }
    }
}

impl<P: RetryPolicy> RetryPolicyExt for P {}

/// A policy limited to a number of attempts; see [`RetryPolicyExt::max_attempts`].
#[derive(Clone, Debug)]
pub struct MaxAttempts<P> {
    inner: P,
    max_attempts: u32,
}

impl<P: RetryPolicy> RetryPolicy for MaxAttempts<P> {
    fn next_retry_delay(&self, ctx: &RetryContext<'_>) -> Option<Duration> {
        if ctx.previous_retry_count >= self.max_attempts {
            return None;
        }
        self.inner.next_retry_delay(ctx)
    }
}

/// A policy limited in total time; see [`RetryPolicyExt::max_elapsed`].
#[derive(Clone, Debug)]
pub struct MaxElapsed<P> {
    inner: P,
    max_elapsed: Duration,
}

impl<P: RetryPolicy> RetryPolicy for MaxElapsed<P> {
    fn next_retry_delay(&self, ctx: &RetryContext<'_>) -> Option<Duration> {
        let delay = self.inner.next_retry_delay(ctx)?;
        (ctx.elapsed.saturating_add(delay) <= self.max_elapsed).then_some(delay)
    }
}

/// A policy whose delays are jittered; see [`RetryPolicyExt::with_jitter`].
#[derive(Clone, Debug)]
pub struct Jittered<P> {
    inner: P,
    jitter: Jitter,
    seed: u64,
}

impl<P> Jittered<P> {
    /// Fixes the jitter seed, so that the delays are exactly reproducible (for tests).
    #[must_use]
    pub fn with_jitter_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

impl<P: RetryPolicy> RetryPolicy for Jittered<P> {
    fn next_retry_delay(&self, ctx: &RetryContext<'_>) -> Option<Duration> {
        let delay = self.inner.next_retry_delay(ctx)?;
        Some(
            self.jitter
                .apply(delay, self.seed, ctx.previous_retry_count),
        )
    }
}

/// A policy that retries only while a predicate holds; see [`RetryPolicyExt::retry_if`].
#[derive(Clone)]
pub struct RetryIf<P, F> {
    inner: P,
    predicate: F,
}

impl<P: fmt::Debug, F> fmt::Debug for RetryIf<P, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryIf")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<P, F> RetryPolicy for RetryIf<P, F>
where
    P: RetryPolicy,
    F: Fn(&RetryContext<'_>) -> bool + Send + Sync + 'static,
{
    fn next_retry_delay(&self, ctx: &RetryContext<'_>) -> Option<Duration> {
        if !(self.predicate)(ctx) {
            return None;
        }
        self.inner.next_retry_delay(ctx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::test_util::{TestError, delays, delays_in_time, secs};
    use crate::{ExponentialBackoff, FixedDelays, FixedInterval, retry_fn};

    #[test]
    fn max_attempts_limits_any_policy() {
        let forever = FixedInterval::new(secs(2));
        assert_eq!(delays(&forever.max_attempts(4), 100), vec![secs(2); 4]);
        // The inner policy may stop earlier.
        assert_eq!(
            delays(&FixedDelays::dotnet_default().max_attempts(10), 100).len(),
            4
        );
        assert_eq!(delays(&forever.max_attempts(0), 100), vec![]);
    }

    #[test]
    fn max_elapsed_caps_total_time() {
        // Attempts would start at 5, 10, 15, 20, 25 s; 30 s is allowed, 35 s is not.
        let policy = FixedInterval::new(secs(5)).max_elapsed(secs(30));
        assert_eq!(delays_in_time(&policy, 100), vec![secs(5); 6]);
        let ctx = RetryContext::new(0, Duration::MAX, &TestError);
        assert_eq!(policy.next_retry_delay(&ctx), None);
        let zero = FixedInterval::new(Duration::ZERO).max_elapsed(Duration::MAX);
        assert_eq!(zero.next_retry_delay(&ctx), Some(Duration::ZERO));
    }

    #[test]
    fn jitter_wraps_any_policy_and_is_reproducible_with_a_seed() {
        let base = FixedInterval::new(secs(10));
        let full = base.with_jitter(Jitter::Full).with_jitter_seed(1);
        let equal = base.with_jitter(Jitter::Equal).with_jitter_seed(1);
        let f = delays(&full, 3_000);
        let e = delays(&equal, 3_000);
        assert!(f.iter().all(|d| *d <= secs(10)));
        assert!(e.iter().all(|d| *d >= secs(5) && *d <= secs(10)));
        assert_eq!(
            f,
            delays(&base.with_jitter(Jitter::Full).with_jitter_seed(1), 3_000)
        );
        assert_ne!(
            f,
            delays(&base.with_jitter(Jitter::Full).with_jitter_seed(2), 3_000)
        );
        for (i, n) in (0..50_u32).enumerate() {
            assert_eq!(f[i], Jitter::Full.apply(secs(10), 1, n));
        }
        // Stopping is preserved.
        let stops = FixedDelays::dotnet_default().with_jitter(Jitter::Full);
        assert_eq!(delays(&stops, 100).len(), 4);
        assert_eq!(
            delays(&FixedInterval::new(secs(1)).with_jitter(Jitter::None), 3),
            vec![secs(1); 3]
        );
    }

    #[test]
    fn retry_if_consults_the_predicate_first() {
        let policy = FixedDelays::dotnet_default().retry_if(|ctx| ctx.previous_retry_count != 2);
        assert_eq!(delays(&policy, 100), vec![secs(0), secs(2)]);
        let never =
            FixedInterval::new(secs(1)).retry_if(|ctx| ctx.reason.to_string() != "test error");
        assert_eq!(delays(&never, 100), vec![]);
        assert!(format!("{never:?}").starts_with("RetryIf { inner: FixedInterval"));
    }

    #[test]
    fn combinators_compose_and_share() {
        let policy: Arc<dyn RetryPolicy> = Arc::new(
            ExponentialBackoff::new(secs(1))
                .with_jitter_seed(3)
                .max_attempts(5)
                .max_elapsed(secs(10))
                .retry_if(|_| true),
        );
        // Attempts start at 1, 3, 7 s; the next would start at 15 s > 10 s.
        assert_eq!(
            delays_in_time(&policy, 100),
            vec![secs(1), secs(2), secs(4)]
        );
        let closure = retry_fn(|_| Some(secs(1))).max_attempts(2);
        assert_eq!(delays(&closure, 100), vec![secs(1); 2]);
    }
}
