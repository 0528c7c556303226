//! Simple built-in policies: a list of delays, a fixed interval, and closures.

use std::fmt;
use std::time::Duration;

use crate::{RetryContext, RetryPolicy};

/// A list of delays, used in order; stops after the last one.
///
/// The `n`-th delay (0-based) is used when `previous_retry_count == n`, exactly as the official
/// clients' default policy and `WithAutomaticReconnect(TimeSpan[])` do. An empty list never
/// retries.
///
/// ```
/// use std::time::Duration;
/// use signalr_reconnect::{FixedDelays, RetryContext, RetryPolicy};
///
/// let policy = FixedDelays::dotnet_default(); // 0, 2, 10, 30 s, then stop
/// let reason = std::io::Error::other("connection reset");
/// let delay = |n| policy.next_retry_delay(&RetryContext::new(n, Duration::ZERO, &reason));
/// assert_eq!(delay(0), Some(Duration::ZERO));
/// assert_eq!(delay(3), Some(Duration::from_secs(30)));
/// assert_eq!(delay(4), None);
///
/// let custom = FixedDelays::from_secs(&[1, 3, 5, 6, 7, 87, 3]);
/// assert_eq!(custom.delays().len(), 7);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FixedDelays {
    delays: Vec<Duration>,
}

impl FixedDelays {
    /// The delays of the official clients' default policy: 0, 2, 10 and 30 seconds, then stop.
    pub const DOTNET_DEFAULT: [Duration; 4] = [
        Duration::ZERO,
        Duration::from_secs(2),
        Duration::from_secs(10),
        Duration::from_secs(30),
    ];

    /// These delays, in order.
    pub fn new(delays: Vec<Duration>) -> Self {
        Self { delays }
    }

    /// The official clients' default: retry at once, then after 2, 10 and 30 seconds, then stop
    /// (four attempts over about 42 seconds plus the time the attempts take).
    pub fn dotnet_default() -> Self {
        Self::new(Self::DOTNET_DEFAULT.to_vec())
    }

    /// Delays given in whole seconds, e.g. `FixedDelays::from_secs(&[1, 3, 5])`.
    pub fn from_secs(secs: &[u64]) -> Self {
        Self::new(secs.iter().copied().map(Duration::from_secs).collect())
    }

    /// Delays given in milliseconds.
    pub fn from_millis(millis: &[u64]) -> Self {
        Self::new(millis.iter().copied().map(Duration::from_millis).collect())
    }

    /// The delays, in order.
    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }
}

/// The official clients' default, [`FixedDelays::dotnet_default`].
impl Default for FixedDelays {
    fn default() -> Self {
        Self::dotnet_default()
    }
}

impl From<Vec<Duration>> for FixedDelays {
    fn from(delays: Vec<Duration>) -> Self {
        Self::new(delays)
    }
}

impl RetryPolicy for FixedDelays {
    fn next_retry_delay(&self, ctx: &RetryContext<'_>) -> Option<Duration> {
        self.delays.as_slice().next_retry_delay(ctx)
    }
}

/// The same delay before every attempt ("raw" retries): forever, or at most
/// [`with_max_attempts`](Self::with_max_attempts) times.
///
/// ```
/// use std::time::Duration;
/// use signalr_reconnect::{FixedInterval, RetryContext, RetryPolicy};
///
/// let policy = FixedInterval::new(Duration::from_secs(5)).with_max_attempts(3);
/// let reason = std::io::Error::other("connection refused");
/// let delay = |n| policy.next_retry_delay(&RetryContext::new(n, Duration::ZERO, &reason));
/// assert_eq!(delay(2), Some(Duration::from_secs(5)));
/// assert_eq!(delay(3), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FixedInterval {
    interval: Duration,
    max_attempts: Option<u32>,
}

impl FixedInterval {
    /// Waits `interval` before every attempt, forever.
    pub const fn new(interval: Duration) -> Self {
        Self {
            interval,
            max_attempts: None,
        }
    }

    /// Stops after `max_attempts` attempts (when `previous_retry_count` reaches it); `0` never
    /// retries.
    #[must_use]
    pub const fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = Some(max_attempts);
        self
    }

    /// The delay before every attempt.
    pub const fn interval(&self) -> Duration {
        self.interval
    }

    /// The maximum number of attempts, or `None` for forever.
    pub const fn max_attempts(&self) -> Option<u32> {
        self.max_attempts
    }
}

impl RetryPolicy for FixedInterval {
    fn next_retry_delay(&self, ctx: &RetryContext<'_>) -> Option<Duration> {
        match self.max_attempts {
            Some(max) if ctx.previous_retry_count >= max => None,
            _ => Some(self.interval),
        }
    }
}

/// A closure as a [`RetryPolicy`]; see [`retry_fn`].
#[derive(Clone, Copy)]
pub struct RetryFn<F> {
    f: F,
}

/// Makes a [`RetryPolicy`] from a closure over the [`RetryContext`], like tower's `layer_fn`.
///
/// ```
/// use std::time::Duration;
/// use signalr_reconnect::{RetryContext, RetryPolicy, retry_fn};
///
/// // The example from the ASP.NET Core docs: retry at random intervals for a minute.
/// // (Deterministic here: 1 s more per attempt.)
/// let policy = retry_fn(|ctx: &RetryContext<'_>| {
///     (ctx.elapsed < Duration::from_secs(60))
///         .then(|| Duration::from_secs(u64::from(ctx.previous_retry_count) + 1))
/// });
/// let reason = std::io::Error::other("connection reset");
/// let ctx = RetryContext::new(2, Duration::from_secs(10), &reason);
/// assert_eq!(policy.next_retry_delay(&ctx), Some(Duration::from_secs(3)));
/// ```
pub fn retry_fn<F>(f: F) -> RetryFn<F>
where
    F: Fn(&RetryContext<'_>) -> Option<Duration> + Send + Sync + 'static,
{
    RetryFn { f }
}

impl<F> fmt::Debug for RetryFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryFn").finish_non_exhaustive()
    }
}

impl<F> RetryPolicy for RetryFn<F>
where
    F: Fn(&RetryContext<'_>) -> Option<Duration> + Send + Sync + 'static,
{
    fn next_retry_delay(&self, ctx: &RetryContext<'_>) -> Option<Duration> {
        (self.f)(ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{TestError, delays, secs};

    #[test]
    fn dotnet_default_is_0_2_10_30_then_stop() {
        let expected = vec![secs(0), secs(2), secs(10), secs(30)];
        assert_eq!(delays(&FixedDelays::dotnet_default(), 100), expected);
        assert_eq!(delays(&FixedDelays::default(), 100), expected);
        assert_eq!(FixedDelays::default().delays(), FixedDelays::DOTNET_DEFAULT);
    }

    #[test]
    fn custom_delays_in_order_then_stop_after_the_last() {
        let policy = FixedDelays::from_secs(&[1, 3, 5, 6, 7, 87, 3]);
        assert_eq!(
            delays(&policy, 100),
            [1, 3, 5, 6, 7, 87, 3].map(secs).to_vec()
        );
        let millis = FixedDelays::from_millis(&[250, 500]);
        assert_eq!(
            delays(&millis, 100),
            vec![Duration::from_millis(250), Duration::from_millis(500)]
        );
        assert_eq!(
            FixedDelays::from(vec![secs(9)]),
            FixedDelays::new(vec![secs(9)])
        );
        assert_eq!(
            delays(&FixedDelays::new(Vec::new()), 100),
            Vec::<Duration>::new()
        );
        let ctx = RetryContext::new(u32::MAX, Duration::MAX, &TestError);
        assert_eq!(policy.next_retry_delay(&ctx), None);
    }

    #[test]
    fn fixed_interval_forever_or_up_to_max_attempts() {
        let forever = FixedInterval::new(secs(5));
        assert_eq!(delays(&forever, 1_000), vec![secs(5); 1_000]);
        let ctx = RetryContext::new(u32::MAX, Duration::MAX, &TestError);
        assert_eq!(forever.next_retry_delay(&ctx), Some(secs(5)));
        assert_eq!(forever.max_attempts(), None);

        let three = forever.with_max_attempts(3);
        assert_eq!(delays(&three, 100), vec![secs(5); 3]);
        assert_eq!((three.interval(), three.max_attempts()), (secs(5), Some(3)));
        assert_eq!(
            delays(&FixedInterval::new(secs(5)).with_max_attempts(0), 100),
            vec![]
        );
    }

    #[test]
    fn closures_are_policies() {
        let policy = retry_fn(|ctx: &RetryContext<'_>| {
            (ctx.previous_retry_count < 3).then(|| secs(u64::from(ctx.previous_retry_count) * 10))
        });
        assert_eq!(delays(&policy, 100), vec![secs(0), secs(10), secs(20)]);
        assert_eq!(format!("{policy:?}"), "RetryFn { .. }");
        let by_reason = retry_fn(|ctx| (ctx.reason.to_string() == "test error").then_some(secs(1)));
        assert_eq!(delays(&by_reason, 2), vec![secs(1); 2]);
    }
}
