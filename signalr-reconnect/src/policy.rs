//! The [`RetryPolicy`] trait and the [`RetryContext`] it is given.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Decides whether, and after how long, to try reconnecting. `None` gives up.
///
/// This is the shape of the official clients' `IRetryPolicy`: the policy is a pure function of
/// its [`RetryContext`]. It takes `&self`, keeps no state between calls and never reads a clock,
/// so one policy can be shared by many connections as an `Arc<dyn RetryPolicy>` (which is itself
/// a policy) and tested as a plain function.
///
/// Implemented by the built-ins ([`FixedDelays`](crate::FixedDelays),
/// [`FixedInterval`](crate::FixedInterval), [`ExponentialBackoff`](crate::ExponentialBackoff)),
/// by closures through [`retry_fn`](crate::retry_fn), by `[Duration; N]`, `[Duration]` and
/// `Vec<Duration>` (the delays in order, then stop), and by `Arc`, `Box` and `&'static` of any
/// policy. [`RetryPolicyExt`](crate::RetryPolicyExt) adds combinators.
///
/// ```
/// use std::time::Duration;
/// use signalr_reconnect::{RetryContext, RetryPolicy};
///
/// /// Retries every second for a minute.
/// #[derive(Debug)]
/// struct EverySecondForAMinute;
///
/// impl RetryPolicy for EverySecondForAMinute {
///     fn next_retry_delay(&self, ctx: &RetryContext<'_>) -> Option<Duration> {
///         (ctx.elapsed < Duration::from_secs(60)).then_some(Duration::from_secs(1))
///     }
/// }
///
/// let reason = std::io::Error::other("connection reset");
/// let ctx = RetryContext::new(3, Duration::from_secs(59), &reason);
/// assert_eq!(EverySecondForAMinute.next_retry_delay(&ctx), Some(Duration::from_secs(1)));
/// ```
pub trait RetryPolicy: fmt::Debug + Send + Sync + 'static {
    /// The delay before the next attempt, or `None` to stop retrying.
    ///
    /// `Some(Duration::ZERO)` retries at once.
    fn next_retry_delay(&self, ctx: &RetryContext<'_>) -> Option<Duration>;
}

/// What a [`RetryPolicy`] knows about the current outage.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct RetryContext<'a> {
    /// Consecutive failed attempts so far: 0 on the first call after the connection was lost
    /// (or after the initial start failed), 1 after the first retry failed, and so on.
    pub previous_retry_count: u32,
    /// Time since reconnecting (or starting) began.
    pub elapsed: Duration,
    /// Why the connection was lost, or why the last attempt failed. From `signalr-client` it is
    /// a `signalr_client::HubError`; downcast it to decide by cause:
    ///
    /// ```ignore
    /// use signalr_client::{HubError, reconnect::retry_fn};
    ///
    /// let policy = retry_fn(|ctx| match ctx.reason.downcast_ref::<HubError>() {
    ///     // The server said why it closed and that reconnecting will not help.
    ///     Some(HubError::ServerClosed { allow_reconnect: false, .. }) => None,
    ///     _ => Some(std::time::Duration::from_secs(2)),
    /// });
    /// ```
    ///
    /// (This crate does not depend on the client; the example runs in the client's docs, on
    /// `HubConnectionBuilder::with_automatic_reconnect_policy`.)
    pub reason: &'a (dyn Error + Send + Sync + 'static),
}

impl<'a> RetryContext<'a> {
    /// A context for one call to [`RetryPolicy::next_retry_delay`].
    pub const fn new(
        previous_retry_count: u32,
        elapsed: Duration,
        reason: &'a (dyn Error + Send + Sync + 'static),
    ) -> Self {
        Self {
            previous_retry_count,
            elapsed,
            reason,
        }
    }
}

impl<P: RetryPolicy + ?Sized> RetryPolicy for Arc<P> {
    fn next_retry_delay(&self, ctx: &RetryContext<'_>) -> Option<Duration> {
        (**self).next_retry_delay(ctx)
    }
}

impl<P: RetryPolicy + ?Sized> RetryPolicy for Box<P> {
    fn next_retry_delay(&self, ctx: &RetryContext<'_>) -> Option<Duration> {
        (**self).next_retry_delay(ctx)
    }
}

impl<P: RetryPolicy + ?Sized> RetryPolicy for &'static P {
    fn next_retry_delay(&self, ctx: &RetryContext<'_>) -> Option<Duration> {
        (**self).next_retry_delay(ctx)
    }
}

/// The delays in order, indexed by `previous_retry_count`; `None` past the last one.
impl RetryPolicy for [Duration] {
    fn next_retry_delay(&self, ctx: &RetryContext<'_>) -> Option<Duration> {
        let index = usize::try_from(ctx.previous_retry_count).ok()?;
        self.get(index).copied()
    }
}

/// The delays in order, indexed by `previous_retry_count`; `None` past the last one.
impl<const N: usize> RetryPolicy for [Duration; N] {
    fn next_retry_delay(&self, ctx: &RetryContext<'_>) -> Option<Duration> {
        self.as_slice().next_retry_delay(ctx)
    }
}

/// The delays in order, indexed by `previous_retry_count`; `None` past the last one.
impl RetryPolicy for Vec<Duration> {
    fn next_retry_delay(&self, ctx: &RetryContext<'_>) -> Option<Duration> {
        self.as_slice().next_retry_delay(ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{TestError, delays, secs};

    static SLICE: &[Duration] = &[Duration::from_secs(1), Duration::from_secs(3)];

    #[test]
    fn arrays_vecs_and_slices_give_their_delays_then_stop() {
        let array = [
            secs(1),
            secs(3),
            secs(5),
            secs(6),
            secs(7),
            secs(87),
            secs(3),
        ];
        let expected: Vec<_> = [1, 3, 5, 6, 7, 87, 3].map(secs).to_vec();
        assert_eq!(delays(&array, 10), expected);
        assert_eq!(delays(&array.to_vec(), 10), expected);
        assert_eq!(delays(&SLICE, 10), vec![secs(1), secs(3)]);
        assert_eq!(delays(&[Duration::ZERO; 0], 10), Vec::<Duration>::new());
    }

    #[test]
    fn huge_retry_counts_stop_instead_of_panicking() {
        let ctx = RetryContext::new(u32::MAX, Duration::MAX, &TestError);
        assert_eq!([secs(1)].next_retry_delay(&ctx), None);
    }

    #[test]
    fn shared_and_boxed_policies_are_policies() {
        let shared: Arc<dyn RetryPolicy> = Arc::new([secs(2)]);
        let boxed: Box<dyn RetryPolicy> = Box::new(vec![secs(4)]);
        let ctx = RetryContext::new(0, Duration::ZERO, &TestError);
        assert_eq!(shared.next_retry_delay(&ctx), Some(secs(2)));
        assert_eq!(Arc::clone(&shared).next_retry_delay(&ctx), Some(secs(2)));
        assert_eq!(boxed.next_retry_delay(&ctx), Some(secs(4)));
        let nested: Arc<dyn RetryPolicy> = Arc::new(shared);
        assert_eq!(nested.next_retry_delay(&ctx), Some(secs(2)));
    }

    #[test]
    fn context_carries_the_reason() {
        let ctx = RetryContext::new(2, secs(5), &TestError);
        assert_eq!(ctx.previous_retry_count, 2);
        assert_eq!(ctx.elapsed, secs(5));
        assert_eq!(ctx.reason.to_string(), "test error");
    }
}
