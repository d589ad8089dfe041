//! k6-style thresholds: `p(95)<500` on `latency`, `rate<0.01` on `errors`, `count>1000` on
//! `iterations`, optionally on tagged series (`latency{scenario:checkout,operation:track}`), and
//! `abort_on_fail` to stop the test as soon as one fails.
//!
//! | aggregation | metrics | value |
//! |---|---|---|
//! | `p(N)` (N from 0 to 100, decimals allowed), `avg`, `min`, `med`, `max` | trends (`latency`, `service_time`) | milliseconds |
//! | `count` | every metric | samples (trends), events (counters), failures (`errors`) |
//! | `rate` | counters | per second of the test so far |
//! | `rate` | `errors` | share of completed iterations that failed, 0 to 1 |
//! | `value` (the last sample), `min`, `max` | gauges (`vus`, `vus_max`) | VUs |
//!
//! k6's metric names are accepted for the same numbers (`http_req_duration{scenario:x}` is
//! `service_time{scenario:x}`; see [`crate::metrics`]).
//!
//! Comparisons: `<`, `<=`, `>`, `>=`, `==`, `!=`.
//!
//! ```
//! use cio_load::Threshold;
//! let t = Threshold::parse("latency{scenario:checkout}", "p(95)<500").unwrap();
//! assert_eq!(t.filter.scenario.as_deref(), Some("checkout"));
//! assert!(Threshold::parse("latency", "rate<0.01").is_err()); // a trend has no rate
//! ```

use std::time::Duration;

use crate::metrics::{Aggregate, Metric, MetricKind, MetricsStore, TagFilter, TrendColumn};

/// How the values of a metric are reduced to one number.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Aggregation {
    /// `p(N)`, N in percent.
    Percentile(f64),
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
    /// `rate`.
    Rate,
    /// `value`: a gauge's last sample.
    Value,
}

impl Aggregation {
    /// The trend statistic it reads (`count` for those a trend does not have).
    fn trend_column(self) -> TrendColumn {
        match self {
            Aggregation::Percentile(p) => TrendColumn::Percentile(p),
            Aggregation::Avg => TrendColumn::Avg,
            Aggregation::Min => TrendColumn::Min,
            Aggregation::Med => TrendColumn::Med,
            Aggregation::Max => TrendColumn::Max,
            Aggregation::Count | Aggregation::Rate | Aggregation::Value => TrendColumn::Count,
        }
    }
}

/// A comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Comparison {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Comparison::Lt => a < b,
            Comparison::Le => a <= b,
            Comparison::Gt => a > b,
            Comparison::Ge => a >= b,
            Comparison::Eq => a == b,
            Comparison::Ne => a != b,
        }
    }
}

/// One threshold.
#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    /// The key as written (`latency{scenario:checkout}`).
    pub key: String,
    /// The expression as written (`p(95)<500`).
    pub expression: String,
    /// The metric.
    pub metric: Metric,
    /// The tagged series it looks at.
    pub filter: TagFilter,
    /// The aggregation.
    pub aggregation: Aggregation,
    /// The comparison.
    pub comparison: Comparison,
    /// The bound.
    pub value: f64,
    /// Stop the whole test as soon as it fails (checked every second).
    pub abort_on_fail: bool,
    /// Do not check `abort_on_fail` before this much of the test has passed (k6's
    /// `delayAbortEval`), so a few slow first requests do not abort it.
    pub delay_abort_eval: Duration,
}

/// A threshold's verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// Whether it held.
    pub ok: bool,
    /// The aggregated value it was compared with.
    pub value: f64,
}

impl Threshold {
    /// Parses a key (`metric` or `metric{tag:value,...}`) and an expression (`p(95)<500`).
    pub fn parse(key: &str, expression: &str) -> Result<Threshold, String> {
        let (metric, filter) = parse_key(key)?;
        let (aggregation, comparison, value) = parse_expression(expression)?;
        let allowed = match (metric.kind(), aggregation) {
            (MetricKind::Gauge, a) => {
                matches!(a, Aggregation::Value | Aggregation::Min | Aggregation::Max)
            }
            (_, Aggregation::Value) => false,
            (_, Aggregation::Count) => true,
            (MetricKind::Trend, Aggregation::Rate) => false,
            (MetricKind::Trend, _) => true,
            (_, Aggregation::Rate) => true,
            _ => false,
        };
        if !allowed {
            let valid = match metric.kind() {
                MetricKind::Trend => "p(N), avg, min, med, max or count",
                MetricKind::Counter | MetricKind::Rate => "count or rate",
                MetricKind::Gauge => "value, min or max",
            };
            return Err(format!(
                "`{}` does not apply to `{}`; use {valid}",
                expression.trim(),
                metric.as_str()
            ));
        }
        Ok(Threshold {
            key: key.trim().to_owned(),
            expression: expression.trim().to_owned(),
            metric,
            filter,
            aggregation,
            comparison,
            value,
            abort_on_fail: false,
            delay_abort_eval: Duration::ZERO,
        })
    }

    /// With `abort_on_fail`.
    pub fn abort_on_fail(mut self, yes: bool) -> Self {
        self.abort_on_fail = yes;
        self
    }

    /// With `delay_abort_eval`.
    pub fn delay_abort_eval(mut self, d: Duration) -> Self {
        self.delay_abort_eval = d;
        self
    }

    pub(crate) fn evaluate(&self, store: &MetricsStore, elapsed: Duration) -> Verdict {
        let value = match (store.aggregate(self.metric, &self.filter), self.aggregation) {
            (Aggregate::Counter { count }, Aggregation::Rate) => {
                count as f64 / elapsed.as_secs_f64().max(1e-9)
            }
            (Aggregate::Counter { count }, _) => count as f64,
            (Aggregate::Rate { failed, total }, Aggregation::Rate) => {
                if total == 0 {
                    0.0
                } else {
                    failed as f64 / total as f64
                }
            }
            (Aggregate::Rate { failed, .. }, _) => failed as f64,
            (Aggregate::Gauge(g), Aggregation::Min) => g.min as f64,
            (Aggregate::Gauge(g), Aggregation::Max) => g.max as f64,
            (Aggregate::Gauge(g), _) => g.value as f64,
            (Aggregate::Trend(h), agg) => agg.trend_column().of(&h),
        };
        Verdict {
            ok: self.comparison.holds(value, self.value),
            value,
        }
    }
}

fn parse_key(key: &str) -> Result<(Metric, TagFilter), String> {
    let key = key.trim();
    let (name, tags) = match key.split_once('{') {
        None => (key, None),
        Some((name, rest)) => {
            let inner = rest.strip_suffix('}').ok_or_else(|| {
                format!("`{key}`: a tag filter ends with `}}`, e.g. latency{{scenario:checkout}}")
            })?;
            (name.trim(), Some(inner))
        }
    };
    let metric = Metric::parse(name).ok_or_else(|| {
        let names: Vec<_> = Metric::ALL.iter().map(|m| m.as_str()).collect();
        let guess = crate::config::closest_name(name, names.iter().copied())
            .map(|n| format!("did you mean `{n}`? "))
            .unwrap_or_default();
        format!(
            "unknown metric `{name}`; {guess}known metrics: {}",
            names.join(", ")
        )
    })?;
    if tags.is_some_and(|t| !t.trim().is_empty()) && !metric.has_tags() {
        return Err(format!(
            "`{}` has no tags: it counts the VUs of every scenario together, as k6's does",
            metric.as_str()
        ));
    }
    let mut filter = TagFilter::default();
    for pair in tags.into_iter().flat_map(|t| t.split(',')) {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let (tag, value) = pair.split_once(':').ok_or_else(|| {
            format!("`{pair}`: a tag is written tag:value, e.g. scenario:checkout")
        })?;
        let (tag, value) = (tag.trim(), value.trim().to_owned());
        let slot = match tag {
            "scenario" => &mut filter.scenario,
            "operation" if metric.has_operation_tags() => &mut filter.operation,
            "status" if metric.has_operation_tags() => &mut filter.status,
            "operation" | "status" => {
                return Err(format!(
                    "`{}` has only the scenario tag (those iterations never ran)",
                    metric.as_str()
                ))
            }
            other => {
                return Err(format!(
                    "unknown tag `{other}`; tags are scenario, operation and status"
                ))
            }
        };
        *slot = Some(value);
    }
    Ok((metric, filter))
}

fn parse_expression(expr: &str) -> Result<(Aggregation, Comparison, f64), String> {
    let e = expr.trim();
    let hint = "write it like p(95)<500, avg<200, rate<0.01 or count>1000";
    let ops = [
        ("<=", Comparison::Le),
        (">=", Comparison::Ge),
        ("==", Comparison::Eq),
        ("!=", Comparison::Ne),
        ("<", Comparison::Lt),
        (">", Comparison::Gt),
    ];
    let (pos, len, comparison) = ops
        .iter()
        .filter_map(|(s, c)| e.find(s).map(|p| (p, s.len(), *c)))
        .min_by_key(|(p, len, _)| (*p, usize::MAX - len))
        .ok_or_else(|| format!("`{e}` has no comparison; {hint}"))?;
    let (lhs, rhs) = (e[..pos].trim(), e[pos + len..].trim());
    let value: f64 = rhs
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite())
        .ok_or_else(|| format!("`{rhs}` is not a number; {hint}"))?;
    let aggregation = match lhs {
        "rate" => Aggregation::Rate,
        "value" => Aggregation::Value,
        other => match TrendColumn::parse(other) {
            Ok(TrendColumn::Avg) => Aggregation::Avg,
            Ok(TrendColumn::Min) => Aggregation::Min,
            Ok(TrendColumn::Med) => Aggregation::Med,
            Ok(TrendColumn::Max) => Aggregation::Max,
            Ok(TrendColumn::Count) => Aggregation::Count,
            Ok(TrendColumn::Percentile(n)) => Aggregation::Percentile(n),
            Err(e) if other.starts_with("p(") => return Err(e),
            Err(_) => return Err(format!("unknown aggregation `{other}`; {hint}")),
        },
    };
    Ok((aggregation, comparison, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_k6_expressions() {
        let t = Threshold::parse("latency", "p(95) < 500").unwrap();
        assert_eq!(t.aggregation, Aggregation::Percentile(95.0));
        assert_eq!(t.comparison, Comparison::Lt);
        assert_eq!(t.value, 500.0);
        let t = Threshold::parse("errors{status:429}", "rate<=0.01").unwrap();
        assert_eq!(t.comparison, Comparison::Le);
        assert_eq!(t.filter.status.as_deref(), Some("429"));
        assert!(Threshold::parse("iterations", "count>1000").is_ok());
        assert!(Threshold::parse("service_time", "p(99.9)<1000").is_ok());
        // k6's names, tags included, stand for ours.
        let t = Threshold::parse("http_req_duration{scenario:x}", "p(95)<500").unwrap();
        assert_eq!(
            (t.metric.canonical(), t.filter.scenario.as_deref()),
            (Metric::ServiceTime, Some("x"))
        );
        for (key, expr) in [
            ("http_req_failed", "rate<0.01"),
            ("http_reqs", "count>10"),
            ("http_reqs", "rate>10"),
            ("iterations", "count>10"),
            ("dropped_iterations", "count==0"),
            ("iteration_duration", "med<100"),
            ("vus", "value<10"),
            ("vus_max", "max<=50"),
        ] {
            assert!(Threshold::parse(key, expr).is_ok(), "{key} {expr}");
        }
    }

    #[test]
    fn refuses_what_k6_would_refuse_with_a_hint() {
        for (key, expr, needle) in [
            ("latncy", "p(95)<500", "unknown metric"),
            ("latency", "p(95)", "no comparison"),
            ("latency", "p(101)<5", "between 0 and 100"),
            ("latency", "rate<1", "does not apply"),
            ("errors", "p(95)<1", "does not apply"),
            ("latency", "avg<fast", "not a number"),
            ("latency{scenario=a}", "avg<1", "tag:value"),
            (
                "dropped_iterations{status:200}",
                "count<1",
                "only the scenario tag",
            ),
            ("latency{region:us}", "avg<1", "unknown tag"),
            ("vus{scenario:a}", "value<10", "has no tags"),
            ("vus", "p(95)<10", "use value, min or max"),
            ("latency", "value<10", "does not apply"),
            (
                "http_req_duraton",
                "p(95)<1",
                "did you mean `http_req_duration`?",
            ),
        ] {
            let err = Threshold::parse(key, expr).unwrap_err();
            assert!(err.contains(needle), "{key} {expr}: {err}");
        }
    }
}
