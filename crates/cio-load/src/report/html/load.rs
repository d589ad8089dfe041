//! A load test's [`Report`] as a [`Page`]: the test's verdict and thresholds, then per scenario
//! its rates, latency, errors by status and VUs over time, its thresholds and its numbers, and
//! at the end the terminal summary.

use std::collections::BTreeSet;

use super::{Chart, Line, Page, Row, Section, Table};
use crate::metrics::TrendStats;
use crate::report::{number, Point, Report, ScenarioSummary, ThresholdSummary};

impl Report {
    /// This report as one self-contained HTML file (`cio load --report FILE`).
    ///
    /// ```
    /// # use cio_load::{Executor, LoadTest, Outcome, Scenario};
    /// # use cio_load::workload::workload_fn;
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), cio_load::LoadError> {
    /// let report = LoadTest::new()
    ///     .scenario(Scenario::new(
    ///         "ping",
    ///         Executor::ConstantArrivalRate {
    ///             rate: 50,
    ///             time_unit: Duration::from_secs(1),
    ///             duration: Duration::from_secs(3),
    ///             pre_allocated_vus: 5,
    ///             max_vus: 5,
    ///         },
    ///         workload_fn(|it| async move { Outcome::success("ping", "200", it.scheduled) }),
    ///     ))
    ///     .run()
    ///     .await?;
    /// let html = report.html();
    /// assert!(html.contains("<svg") && html.contains("ping"));
    /// # Ok(()) }
    /// ```
    pub fn html(&self) -> String {
        self.page().render()
    }

    /// This report as a [`Page`], to render or to put next to others.
    pub fn page(&self) -> Page {
        let mut meta = vec![
            format!(
                "started {} · ran {:.1} s · target {}",
                self.started_at, self.duration_s, self.target
            ),
            format!(
                "{} scenario{}: {}",
                self.scenarios.len(),
                if self.scenarios.len() == 1 { "" } else { "s" },
                self.scenarios
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ];
        if let Some(reason) = &self.aborted {
            meta.push(format!("stopped early: {reason}"));
        }
        for w in &self.warnings {
            meta.push(format!("warning: {w}"));
        }
        let mut rows = Vec::new();
        if !self.thresholds.is_empty() {
            rows.push(vec![Section {
                title: "Thresholds".into(),
                subtitle: format!(
                    "{} of {} held",
                    self.thresholds.iter().filter(|t| t.ok).count(),
                    self.thresholds.len()
                ),
                tables: vec![thresholds_table("every threshold", self.thresholds.iter())],
                ..Section::default()
            }]);
        }
        for (name, summary) in &self.scenarios {
            rows.push(vec![self.scenario_section(name, summary)]);
        }
        rows.push(vec![Section {
            title: "End-of-test summary".into(),
            text: Some(self.render()),
            ..Section::default()
        }]);
        Page {
            title: "cio load report".into(),
            meta,
            passed: Some(self.passed && self.aborted.is_none()),
            rows,
        }
    }

    fn scenario_section(&self, name: &str, s: &ScenarioSummary) -> Section {
        let points: Vec<&Point> = self
            .time_series
            .iter()
            .filter(|p| p.scenario == name)
            .collect();
        let tag = format!("scenario:{name}");
        let own: Vec<&ThresholdSummary> = self
            .thresholds
            .iter()
            .filter(|t| t.metric.contains(&tag))
            .collect();
        let mut tables = Vec::new();
        if !own.is_empty() {
            tables.push(thresholds_table("its thresholds", own.into_iter()));
        }
        tables.push(numbers_table(s));
        tables.push(operations_table(s));
        Section {
            title: format!("scenario {name}"),
            subtitle: format!("{}: {}", s.executor, s.plan),
            charts: vec![
                rate_chart(&points),
                latency_chart(&points),
                errors_chart(&points),
                vus_chart(&points),
            ],
            tables,
            text: None,
        }
    }
}

fn series(points: &[&Point], value: impl Fn(&Point) -> Option<f64>) -> Vec<(f64, f64)> {
    points
        .iter()
        .filter_map(|p| value(p).map(|v| (p.elapsed_s, v)))
        .collect()
}

fn per_second(n: u64, p: &Point) -> f64 {
    n as f64 / p.window_s.max(1e-9)
}

fn rate_chart(points: &[&Point]) -> Chart {
    let mut chart = Chart::new("Iterations: target against achieved", "per second");
    if points.iter().any(|p| p.target_rate.is_some()) {
        chart = chart.line(Line::target("target", series(points, |p| p.target_rate)));
    }
    chart
        .line(Line::new(
            "started",
            series(points, |p| Some(per_second(p.started, p))),
        ))
        .line(Line::new(
            "completed",
            series(points, |p| Some(per_second(p.iterations, p))),
        ))
}

fn latency_chart(points: &[&Point]) -> Chart {
    let done = |p: &Point| p.latency.count > 0;
    Chart::new("Latency from the scheduled start", "ms")
        .line(Line::new(
            "p50",
            series(points, |p| done(p).then_some(p.latency.p50)),
        ))
        .line(Line::new(
            "p95",
            series(points, |p| done(p).then_some(p.latency.p95)),
        ))
        .line(Line::new(
            "p99",
            series(points, |p| done(p).then_some(p.latency.p99)),
        ))
}

fn errors_chart(points: &[&Point]) -> Chart {
    let statuses: BTreeSet<&str> = points
        .iter()
        .flat_map(|p| p.errors_by_status.keys().map(String::as_str))
        .collect();
    let mut chart = Chart::new("Failed iterations by status", "per second");
    if statuses.is_empty() {
        return chart.line(Line::new("failed", series(points, |_| Some(0.0))));
    }
    for status in statuses {
        chart = chart.line(Line::new(
            status,
            series(points, |p| {
                Some(per_second(
                    p.errors_by_status.get(status).copied().unwrap_or(0),
                    p,
                ))
            }),
        ));
    }
    chart
}

fn vus_chart(points: &[&Point]) -> Chart {
    Chart::new("VUs and dropped iterations", "VUs · dropped per second")
        .line(Line::new(
            "VUs busy",
            series(points, |p| Some(p.vus as f64)),
        ))
        .line(Line::target(
            "VUs allocated",
            series(points, |p| Some(p.vus_max as f64)),
        ))
        .line(Line::new(
            "dropped",
            series(points, |p| Some(per_second(p.dropped_iterations, p))),
        ))
}

fn thresholds_table<'a>(
    caption: &str,
    thresholds: impl Iterator<Item = &'a ThresholdSummary>,
) -> Table {
    Table {
        caption: caption.into(),
        head: ["metric", "expression", "value", "verdict"]
            .map(String::from)
            .to_vec(),
        rows: thresholds
            .map(|t| Row {
                cells: vec![
                    t.metric.clone(),
                    t.expression.clone(),
                    number(t.value),
                    if t.ok { "pass" } else { "fail" }.to_string()
                        + if t.abort_on_fail { " (aborts)" } else { "" },
                ],
                verdict: Some(t.ok),
            })
            .collect(),
    }
}

fn numbers_table(s: &ScenarioSummary) -> Table {
    let opt = |v: Option<f64>| v.map(number).unwrap_or_else(|| "-".into());
    let rows = [
        ("iterations started", s.started.to_string()),
        ("iterations completed", s.iterations.to_string()),
        (
            "planned iterations",
            opt(s.planned_iterations.map(|n| n as f64)),
        ),
        ("target rate /s", opt(s.target_rate)),
        ("achieved rate /s", number(s.achieved_rate)),
        ("dropped iterations", s.dropped_iterations.to_string()),
        (
            "interrupted iterations",
            s.interrupted_iterations.to_string(),
        ),
        (
            "failed iterations",
            format!("{} ({:.2} %)", s.errors, s.error_rate * 100.0),
        ),
        (
            "operations carried / refused",
            format!("{} / {}", s.entries, s.failed_entries),
        ),
        ("latency p50 / p95 / p99 ms", percentiles(&s.latency)),
        (
            "service time p50 / p95 / p99 ms",
            percentiles(&s.service_time),
        ),
        (
            "VUs allocated / busy at most",
            format!("{} / {}", s.vus_max, s.peak_vus),
        ),
    ];
    Table {
        caption: "its numbers".into(),
        head: vec!["".into(), "value".into()],
        rows: rows
            .into_iter()
            .map(|(k, v)| Row::new(vec![k.into(), v]))
            .collect(),
    }
}

fn percentiles(t: &TrendStats) -> String {
    format!("{} / {} / {}", number(t.p50), number(t.p95), number(t.p99))
}

fn operations_table(s: &ScenarioSummary) -> Table {
    let mut rows = Vec::new();
    for (op, o) in &s.operations {
        for (status, st) in &o.statuses {
            rows.push(Row::new(vec![
                op.clone(),
                status.clone(),
                st.iterations.to_string(),
                st.errors.to_string(),
                st.entries.to_string(),
                number(st.latency.p50),
                number(st.latency.p95),
                number(st.latency.p99),
            ]));
        }
    }
    Table {
        caption: "by operation and status".into(),
        head: [
            "operation",
            "status",
            "iterations",
            "failed",
            "operations",
            "p50 ms",
            "p95 ms",
            "p99 ms",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}
