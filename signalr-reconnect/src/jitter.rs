//! Deterministic jitter: a pure function of `(seed, previous_retry_count)`.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::Duration;

/// How to randomise a delay so that many clients that lost the same server do not all come back
/// at the same instant.
///
/// The random draw is a [splitmix64] mix of `(seed, previous_retry_count)`: no state, no clock,
/// no I/O. The same seed gives the same delays, which makes tests exact
/// ([`ExponentialBackoff::with_jitter_seed`](crate::ExponentialBackoff::with_jitter_seed),
/// [`Jittered::with_jitter_seed`](crate::Jittered::with_jitter_seed)); without a seed the
/// policies derive one at construction from std's `RandomState`, so it differs between
/// processes and between policies. The same policy therefore jitters each outage the same way;
/// different clients jitter differently.
///
/// [splitmix64]: https://prng.di.unimi.it/splitmix64.c
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Jitter {
    /// "Equal jitter": half the delay, plus a uniform draw in `[0, delay / 2]`. Keeps at least
    /// half of the backoff.
    Equal,
    /// "Full jitter": a uniform draw in `[0, delay]`. Spreads clients the most.
    Full,
    /// No jitter: the delay is used as is.
    #[default]
    None,
}

impl Jitter {
    /// Applies this jitter to `delay` for the retry numbered `previous_retry_count`.
    ///
    /// Deterministic: the same arguments always give the same result, and the result is never
    /// longer than `delay`. Draws have nanosecond resolution; a delay longer than `u64::MAX`
    /// nanoseconds (about 584 years) is jittered as if it were that long.
    ///
    /// ```
    /// use std::time::Duration;
    /// use signalr_reconnect::Jitter;
    ///
    /// let d = Duration::from_secs(10);
    /// let full = Jitter::Full.apply(d, 42, 0);
    /// assert!(full <= d);
    /// assert_eq!(full, Jitter::Full.apply(d, 42, 0)); // same seed, same draw
    /// let equal = Jitter::Equal.apply(d, 42, 0);
    /// assert!(equal >= d / 2 && equal <= d);
    /// assert_eq!(Jitter::None.apply(d, 42, 0), d);
    /// ```
    pub fn apply(self, delay: Duration, seed: u64, previous_retry_count: u32) -> Duration {
        let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        let draw = draw(seed, previous_retry_count);
        match self {
            Self::None => delay,
            Self::Full => Duration::from_nanos(uniform_inclusive(draw, nanos)),
            Self::Equal => {
                let half = nanos / 2;
                Duration::from_nanos(nanos - half + uniform_inclusive(draw, half))
            }
        }
    }
}

/// A fresh seed, random per process and per call (std's `RandomState`): no clock, no I/O.
pub(crate) fn random_seed() -> u64 {
    RandomState::new().hash_one(0x5EED_u64)
}

/// The `previous_retry_count + 1`-th output of a splitmix64 generator seeded with `seed`.
fn draw(seed: u64, previous_retry_count: u32) -> u64 {
    const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
    let step = (u64::from(previous_retry_count) + 1).wrapping_mul(GOLDEN_GAMMA);
    let mut z = seed.wrapping_add(step);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Maps a uniform 64-bit draw onto `[0, max]` (Lemire's multiply-shift; the bias is at most
/// `max / 2^64`, far below a nanosecond for any real delay).
fn uniform_inclusive(draw: u64, max: u64) -> u64 {
    let scaled = (u128::from(draw) * (u128::from(max) + 1)) >> 64;
    // `scaled <= max` because `draw < 2^64`.
    u64::try_from(scaled).unwrap_or(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{millis, secs};

    #[test]
    fn draw_matches_the_splitmix64_reference() {
        // splitmix64 seeded with 1234567: the first outputs of the reference implementation.
        assert_eq!(draw(1_234_567, 0), 6_457_827_717_110_365_317);
        assert_eq!(draw(1_234_567, 1), 3_203_168_211_198_807_973);
        assert_eq!(draw(1_234_567, 2), 9_817_491_932_198_370_423);
    }

    #[test]
    fn no_jitter_is_the_identity() {
        for d in [Duration::ZERO, millis(1), secs(60), Duration::MAX] {
            assert_eq!(Jitter::None.apply(d, 7, 3), d);
        }
    }

    #[test]
    fn full_jitter_stays_in_bounds_and_spreads_over_thousands_of_draws() {
        let d = secs(10);
        let mut sum = 0_u128;
        let (mut lo, mut hi) = (d, Duration::ZERO);
        let mut count = 0_u32;
        for seed in 0..10_u64 {
            for n in 0..1_000 {
                let j = Jitter::Full.apply(d, seed, n);
                assert!(j <= d, "seed {seed} attempt {n}: {j:?}");
                sum += j.as_nanos();
                lo = lo.min(j);
                hi = hi.max(j);
                count += 1;
            }
        }
        let mean = Duration::from_nanos(u64::try_from(sum / u128::from(count)).unwrap());
        assert!(
            mean > millis(4_800) && mean < millis(5_200),
            "mean {mean:?}"
        );
        assert!(lo < millis(100), "min {lo:?}");
        assert!(hi > millis(9_900), "max {hi:?}");
    }

    #[test]
    fn equal_jitter_stays_in_bounds_and_spreads_over_thousands_of_draws() {
        let d = secs(10);
        let mut sum = 0_u128;
        let (mut lo, mut hi) = (d, Duration::ZERO);
        let mut count = 0_u32;
        for seed in 100..110_u64 {
            for n in 0..1_000 {
                let j = Jitter::Equal.apply(d, seed, n);
                assert!(j >= secs(5) && j <= d, "seed {seed} attempt {n}: {j:?}");
                sum += j.as_nanos();
                lo = lo.min(j);
                hi = hi.max(j);
                count += 1;
            }
        }
        let mean = Duration::from_nanos(u64::try_from(sum / u128::from(count)).unwrap());
        assert!(
            mean > millis(7_400) && mean < millis(7_600),
            "mean {mean:?}"
        );
        assert!(lo < millis(5_050), "min {lo:?}");
        assert!(hi > millis(9_950), "max {hi:?}");
    }

    #[test]
    fn same_seed_same_sequence_different_seed_different_sequence() {
        let seq = |seed| {
            (0..100)
                .map(|n| Jitter::Full.apply(secs(30), seed, n))
                .collect::<Vec<_>>()
        };
        assert_eq!(seq(42), seq(42));
        assert_ne!(seq(42), seq(43));
        // Within one sequence the draws differ from attempt to attempt.
        let s = seq(42);
        assert!(s.windows(2).all(|w| w[0] != w[1]));
    }

    #[test]
    fn random_seeds_differ() {
        assert_ne!(random_seed(), random_seed());
    }

    #[test]
    fn extreme_delays_do_not_overflow() {
        for n in [0, 1, u32::MAX] {
            for seed in [0, u64::MAX] {
                assert!(Jitter::Full.apply(Duration::MAX, seed, n) <= Duration::MAX);
                assert!(Jitter::Equal.apply(Duration::MAX, seed, n) <= Duration::MAX);
                assert_eq!(Jitter::Full.apply(Duration::ZERO, seed, n), Duration::ZERO);
                assert_eq!(Jitter::Equal.apply(Duration::ZERO, seed, n), Duration::ZERO);
                assert!(Jitter::Equal.apply(Duration::from_nanos(1), seed, n) <= millis(1));
            }
        }
        assert_eq!(uniform_inclusive(u64::MAX, u64::MAX), u64::MAX);
        assert_eq!(uniform_inclusive(0, u64::MAX), 0);
    }
}
