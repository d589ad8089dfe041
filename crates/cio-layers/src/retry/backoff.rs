use std::num::NonZeroU32;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// When and how often to retry. The defaults follow the official Customer.io Node SDK: 4
/// attempts (3 retries), backoff from 200 ms up to 5 s, at most 30 s of backoff in all,
/// `Retry-After` honoured up to 300 s. [`RetryConfig::until_permanent`] is the pipeline's
/// setting: retry whatever is retryable until it goes through, or until `give_up_after`.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryConfig {
    /// Attempts in all, the first included.
    pub max_attempts: NonZeroU32,
    /// The backoff ceiling before the first retry; doubled for each retry after.
    pub base_delay: Duration,
    /// The largest backoff ceiling.
    pub max_delay: Duration,
    /// The most time spent sleeping between attempts of one call; a retry that would pass it is
    /// not made.
    pub max_total_backoff: Duration,
    /// The longest `Retry-After` honoured; a longer hint is cut to this.
    pub max_retry_after: Duration,
    /// The most time from a call's first attempt to the start of its last: a retry that would
    /// start later is not made and the call fails with its last error. `None`: no such bound.
    pub give_up_after: Option<Duration>,
    /// Seed for the jitter, for reproducible tests. `None`: random.
    pub seed: Option<u64>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: NonZeroU32::new(4).unwrap_or(NonZeroU32::MIN),
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            max_total_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
            give_up_after: None,
            seed: None,
        }
    }
}

/// The longest `Retry-After` [`RetryConfig::until_permanent`] honours: one hour.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The largest backoff ceiling of [`RetryConfig::until_permanent`]: 30 s.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl RetryConfig {
    /// Retries everything retryable until it goes through: no cap on attempts or on total
    /// backoff, exponential backoff with full jitter from 200 ms up to [`MAX_BACKOFF`] (30 s),
    /// `Retry-After` honoured up to [`MAX_RETRY_AFTER`] (1 h), and, with `give_up_after`, a
    /// bound on how long one call may keep trying. For pipelines, where an outage must cost
    /// time, not data: put a rate or concurrency limit inside the retry, and bound memory in
    /// front of it (the callers wait while calls retry).
    pub fn until_permanent(give_up_after: Option<Duration>) -> Self {
        RetryConfig {
            max_attempts: NonZeroU32::MAX,
            base_delay: Duration::from_millis(200),
            max_delay: MAX_BACKOFF,
            max_total_backoff: Duration::MAX,
            max_retry_after: MAX_RETRY_AFTER,
            give_up_after,
            seed: None,
        }
    }

    /// The ceiling of the backoff before retry number `retry` (1 for the first retry):
    /// `min(max_delay, base_delay * 2^(retry-1))`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        capped_exponential(self.base_delay, self.max_delay, retry)
    }
}

/// `min(max, base * 2^(n-1))` for the `n`-th wait (1 for the first), without overflow.
pub(crate) fn capped_exponential(base: Duration, max: Duration, n: u32) -> Duration {
    let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
    base.checked_mul(factor).unwrap_or(max).min(max)
}

/// Full jitter: uniform in `[0, ceiling]`.
pub(crate) fn full_jitter(rng: &mut SmallRng, ceiling: Duration) -> Duration {
    let nanos = ceiling.as_nanos().min(u64::MAX as u128) as u64;
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rng.gen_range(0..=nanos))
}

pub(crate) fn rng(seed: u64) -> SmallRng {
    SmallRng::seed_from_u64(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_up_to_the_max() {
        let c = RetryConfig::default();
        let got: Vec<_> = (1..=7).map(|r| c.ceiling(r).as_millis()).collect();
        assert_eq!(got, [200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(c.ceiling(200), Duration::from_secs(5));
    }

    #[test]
    fn jitter_stays_within_the_ceiling_and_is_reproducible() {
        let mut a = rng(7);
        let mut b = rng(7);
        for _ in 0..1000 {
            let x = full_jitter(&mut a, Duration::from_millis(200));
            assert!(x <= Duration::from_millis(200));
            assert_eq!(x, full_jitter(&mut b, Duration::from_millis(200)));
        }
    }
}
