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

/// One statistic of a trend in a summary (k6's `summaryTrendStats`): `avg`, `min`, `med`,
/// `max`, `count` or `p(N)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TrendColumn {
    /// `avg`.
    Avg,
    /// `min`.
    Min,
    /// `med`.
    Med,
    /// `max`.
    Max,
    /// `count`.
    Count,
    /// `p(N)`, N in percent.
    Percentile(f64),
}

/// k6's default `summaryTrendStats`.
pub const DEFAULT_TREND_COLUMNS: [TrendColumn; 6] = [
    TrendColumn::Avg,
    TrendColumn::Min,
    TrendColumn::Med,
    TrendColumn::Max,
    TrendColumn::Percentile(90.0),
    TrendColumn::Percentile(95.0),
];

impl TrendColumn {
    /// Parses `avg`, `min`, `med`, `max`, `count` or `p(N)` (N from 0 to 100).
    pub fn parse(s: &str) -> Result<TrendColumn, String> {
        let s = s.trim();
        Ok(match s {
            "avg" => TrendColumn::Avg,
            "min" => TrendColumn::Min,
            "med" => TrendColumn::Med,
            "max" => TrendColumn::Max,
            "count" => TrendColumn::Count,
            p if p.starts_with("p(") && p.ends_with(')') => {
                let n: f64 = p[2..p.len() - 1]
                    .trim()
                    .parse()
                    .ok()
                    .filter(|n| (0.0..=100.0).contains(n))
                    .ok_or_else(|| format!("`{p}`: the percentile is a number between 0 and 100, e.g. p(99.9)"))?;
                TrendColumn::Percentile(n)
            }
            other => {
                return Err(format!(
                    "unknown trend statistic `{other}`; use avg, min, med, max, count or p(N), e.g. p(99)"
                ))
            }
        })
    }

    /// Its name in a summary (`p(99.9)`).
    pub fn name(self) -> String {
        match self {
            TrendColumn::Avg => "avg".into(),
            TrendColumn::Min => "min".into(),
            TrendColumn::Med => "med".into(),
            TrendColumn::Max => "max".into(),
            TrendColumn::Count => "count".into(),
            TrendColumn::Percentile(n) => format!("p({n})"),
        }
    }

    /// Its value over `h` (microseconds), in ms (a count for `count`); 0 when empty.
    pub fn of(self, h: &Histogram<u64>) -> f64 {
        if h.is_empty() {
            return 0.0;
        }
        match self {
            TrendColumn::Avg => h.mean() / 1000.0,
            TrendColumn::Min => h.min() as f64 / 1000.0,
            TrendColumn::Med => percentile_ms(h, 50.0),
            TrendColumn::Max => h.max() as f64 / 1000.0,
            TrendColumn::Count => h.len() as f64,
            TrendColumn::Percentile(n) => percentile_ms(h, n),
        }
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
        let cols: Vec<_> = ["avg", "med", "p(99.9)", "count"]
            .map(|c| TrendColumn::parse(c).unwrap())
            .to_vec();
        assert_eq!(
            cols.iter().map(|c| c.name()).collect::<Vec<_>>(),
            ["avg", "med", "p(99.9)", "count"]
        );
        assert!((cols[1].of(&h) - 50.0).abs() < 0.1);
        assert_eq!(cols[3].of(&h), 100.0);
        assert!(TrendColumn::parse("p(101)").is_err());
        assert!(TrendColumn::parse("mean").unwrap_err().contains("use avg"));
    }
}
