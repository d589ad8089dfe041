//! Summary statistics of a trend, in milliseconds.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// A trend's statistics in milliseconds (from a histogram of microseconds). All zero when it has
/// no samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrendStats {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub avg: f64,
    /// Smallest.
    pub min: f64,
    /// Median (k6's `med`).
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl TrendStats {
    /// The statistics of `h` (microseconds).
    pub fn of(h: &Histogram<u64>) -> TrendStats {
        if h.is_empty() {
            return TrendStats::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        TrendStats {
            count: h.len(),
            avg: h.mean() / 1000.0,
            min: ms(h.min()),
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }
}

/// The value of `p(N)` (N in percent) of `h`, in ms.
pub(crate) fn percentile_ms(h: &Histogram<u64>, percent: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile((percent / 100.0).clamp(0.0, 1.0)) as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_are_in_milliseconds() {
        let mut h = crate::metrics::new_histogram();
        for ms in 1..=100u64 {
            h.record(ms * 1000).unwrap();
        }
        let s = TrendStats::of(&h);
        assert_eq!(s.count, 100);
        assert!((s.avg - 50.5).abs() < 0.1, "{s:?}");
        assert!((s.p95 - 95.0).abs() < 0.1, "{s:?}");
        assert!((s.max - 100.0).abs() < 0.1, "{s:?}");
        assert!((percentile_ms(&h, 99.0) - 99.0).abs() < 0.1);
        assert_eq!(
            TrendStats::of(&crate::metrics::new_histogram()),
            TrendStats::default()
        );
    }
}
