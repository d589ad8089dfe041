use std::num::NonZeroU32;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// When and how often to retry. The defaults follow the official Customer.io Node SDK: 4
/// attempts (3 retries), backoff from 200 ms up to 5 s, at most 30 s of backoff in all,
/// `Retry-After` honoured up to 300 s.
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
            seed: None,
        }
    }
}

impl RetryConfig {
    /// The ceiling of the backoff before retry number `retry` (1 for the first retry):
    /// `min(max_delay, base_delay * 2^(retry-1))`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }
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
