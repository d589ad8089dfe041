//! What a load test reports: the [`Report`] (printed by [`Report::render`], exported as JSON by
//! `--summary-export`, drawn as HTML by [`Report::html`] for `--report`) and the one-second
//! [`Point`]s of the time series (`--out series=FILE`). k6's per-sample outputs (`--out json=`,
//! `--out csv=`) are [`crate::SampleFormat`].
//!
//! The JSON shapes are stable (`version` 1); `docs/load-testing.md` documents them too, and a
//! test (`crates/cio-cli/tests/load_command.rs`) checks that both tables match a real export.
//!
//! # `--summary-export`: [`Report`]
//!
//! Trend objects are `{count, avg, min, p50, p90, p95, p99, max}` in milliseconds; `*` is every
//! key of a map; `{a,b}` lists alternatives.
//!
//! <!-- summary-fields -->
//! | field | type | meaning |
//! |---|---|---|
//! | `version` | number | 2 |
//! | `root_group.{name,path,id}` | strings | k6's root group (empty name and path, k6's id): this tool has no groups |
//! | `root_group.{groups,checks}` | objects | empty: no groups, no checks |
//! | `started_at` | string | start of the test, RFC 3339 UTC |
//! | `duration_s` | number | how long it ran, seconds |
//! | `target` | string | `mock (URL)`, the URL, `us`, `eu` (`custom` in code) |
//! | `passed` | bool | every threshold held |
//! | `aborted` | string or null | why the test stopped early (an aborting threshold, a bound, Ctrl-C) |
//! | `warnings` | array of strings | warnings, in order |
//! | `summary_trend_stats` | array of strings | the statistics each trend lists, in order (k6's `summaryTrendStats`) |
//! | `metrics.{iterations,http_reqs,dropped_iterations,interrupted_iterations,entries,failed_entries}.{count,rate}` | numbers | k6 counter: count, and per second of the test |
//! | `metrics.{errors,http_req_failed}.{passes,fails,value}` | numbers | k6 rate: failed iterations (k6 counts a true sample as a pass), the others, and the failed share 0–1 |
//! | `metrics.{latency,iteration_duration,service_time,http_req_duration}.{avg,min,med,max,p(90),p(95)}` | numbers | k6 trend, ms: the statistics of `summary_trend_stats` (these by default) |
//! | `metrics.{vus,vus_max}.{value,min,max}` | numbers | k6 gauge: the last sample, the least and the most |
//! | `metrics.*.thresholds.*` | bools, optional | on a metric with thresholds: each expression and whether it **failed** (k6's convention) |
//! | `metrics.*.{count,rate,passes,fails,value,min,max,avg,med,p(90),p(95)}` | numbers, optional | a tagged series a threshold names (`errors{scenario:x}`, k6's submetric), with its metric's fields |
//! | `scenarios.*.executor` | string | `constant-arrival-rate`, … |
//! | `scenarios.*.plan` | string | the plan in words |
//! | `scenarios.*.{start_time_s,duration_s}` | numbers | its start time and planned duration, seconds (for the `-iterations` executors, how long it ran) |
//! | `scenarios.*.{planned_iterations,target_rate}` | number or null | iterations planned (open model and `-iterations` executors, else null) and their rate per second (open model only, else null) |
//! | `scenarios.*.{started,iterations,dropped_iterations,interrupted_iterations}` | numbers | iterations started, completed, dropped, interrupted |
//! | `scenarios.*.achieved_rate` | number | `started / duration_s` |
//! | `scenarios.*.{errors,error_rate,entries,failed_entries}` | numbers | failed iterations and share, operations carried and refused |
//! | `scenarios.*.{vus_max,peak_vus}` | numbers | VUs allocated at the end, most VUs busy at once |
//! | `scenarios.*.{latency,service_time}.{count,avg,min,p50,p90,p95,p99,max}` | numbers | TREND, ms |
//! | `scenarios.*.operations.*.{iterations,rate,errors,error_rate,entries,failed_entries}` | numbers | per operation |
//! | `scenarios.*.operations.*.{latency,service_time}.{count,avg,min,p50,p90,p95,p99,max}` | numbers | TREND, ms |
//! | `scenarios.*.operations.*.statuses.*.{iterations,errors,entries}` | numbers | per status |
//! | `scenarios.*.operations.*.statuses.*.{latency,service_time}.{count,avg,min,p50,p90,p95,p99,max}` | numbers | TREND, ms |
//! | `thresholds[].{metric,expression}` | strings | the key (`latency{scenario:x}`) and the expression (`p(95)<500`) |
//! | `thresholds[].{ok,abort_on_fail}` | bools | its verdict, and whether it aborts |
//! | `thresholds[].value` | number | the value compared (ms, 0–1, a count, per second) |
//! | `mock` | object, optional | what the embedded mock counted (its `/__mock/stats`); only against `mock` |
//! <!-- /summary-fields -->
//!
//! # `--out series=FILE`: one [`Point`] per line
//!
//! <!-- series-fields -->
//! | field | type | meaning |
//! |---|---|---|
//! | `time` | string | end of the window, RFC 3339 UTC |
//! | `elapsed_s` | number | end of the window, seconds since the start |
//! | `scenario` | string | the scenario |
//! | `target_rate` | number or null | arrival rate planned at the end of the window (null for VU executors) |
//! | `{started,iterations,dropped_iterations,errors,entries}` | numbers | in the window |
//! | `errors_by_status.*` | numbers, optional | failed iterations of the window by status (`503`, `timeout`); absent when none failed |
//! | `window_s` | number | the window's length, seconds (1; the last is shorter) |
//! | `rate` | number | iterations completed per second of the window |
//! | `error_rate` | number | `errors / iterations` |
//! | `{latency,service_time}.{count,avg,min,p50,p90,p95,p99,max}` | numbers | TREND of the iterations completed in the window, ms |
//! | `{vus,vus_max}` | numbers | VUs busy and allocated at the end of the window |
//! <!-- /series-fields -->

pub mod html;
mod progress;
mod text;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

pub use progress::{Live, Progress, ProgressMode, ScenarioLive};

use crate::metrics::{
    Aggregate, Metric, MetricsStore, ScenarioMetrics, Series, TagFilter, TrendColumn, TrendStats,
};
use crate::scenario::{Executor, Scenario};
use crate::threshold::{Threshold, Verdict};

/// The version of the JSON shapes.
pub const SUMMARY_VERSION: u32 = 2;

/// The result of a load test (also the `--summary-export` JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Version of this shape (2: `metrics` in k6's shape).
    pub version: u32,
    /// k6's root group, for scripts that read it: this tool has no groups or checks, so it is
    /// always the empty root.
    pub root_group: RootGroup,
    /// When the test started (RFC 3339, UTC).
    pub started_at: String,
    /// How long it ran, seconds.
    pub duration_s: f64,
    /// The target (`mock`, a URL, `us`, `eu`, or `custom` for a test built in code).
    pub target: String,
    /// Whether every threshold held (true when there are none).
    pub passed: bool,
    /// Why the test stopped early, if it did (an aborting threshold, a safety bound, Ctrl-C).
    pub aborted: Option<String>,
    /// Warnings, in the order they happened.
    pub warnings: Vec<String>,
    /// Every metric over all scenarios, by name (ours and k6's), and each tagged series a
    /// threshold names (`latency{scenario:checkout}`), in k6's `--summary-export` shape.
    pub metrics: BTreeMap<String, MetricSummary>,
    /// The statistics a trend lists, in order (k6's `summaryTrendStats`).
    pub summary_trend_stats: Vec<String>,
    /// Per scenario, then per operation and status.
    pub scenarios: BTreeMap<String, ScenarioSummary>,
    /// Every threshold and its verdict.
    pub thresholds: Vec<ThresholdSummary>,
    /// What the embedded mock counted (`cio load` against the mock only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mock: Option<serde_json::Value>,
    /// The time series (written separately by `--out series=FILE`).
    #[serde(skip)]
    pub time_series: Vec<Point>,
}

/// One metric in k6's `--summary-export` shape. `thresholds` maps each expression on it to
/// whether it **failed** (k6's convention), and is left out when there is none.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MetricSummary {
    /// A count and its rate per second of the test.
    Counter {
        /// The count.
        count: u64,
        /// Per second.
        rate: f64,
        /// Expression -> failed.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        thresholds: BTreeMap<String, bool>,
    },
    /// A share of iterations, as k6 counts a rate: `passes` are the samples that were true
    /// (for `errors` and `http_req_failed`, the failed iterations), `fails` the others.
    Rate {
        /// True samples (failed iterations).
        passes: u64,
        /// False samples (iterations that succeeded).
        fails: u64,
        /// `passes / (passes + fails)`, 0 to 1.
        value: f64,
        /// Expression -> failed.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        thresholds: BTreeMap<String, bool>,
    },
    /// A level sampled once a second.
    Gauge {
        /// The last sample.
        value: f64,
        /// The least sampled.
        min: f64,
        /// The most sampled.
        max: f64,
        /// Expression -> failed.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        thresholds: BTreeMap<String, bool>,
    },
    /// A distribution: the statistics of [`Report::summary_trend_stats`] (`avg`, `med`,
    /// `p(95)`, ...), in ms.
    Trend {
        /// Statistic -> value.
        #[serde(flatten)]
        stats: BTreeMap<String, f64>,
        /// Expression -> failed.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        thresholds: BTreeMap<String, bool>,
    },
}

impl MetricSummary {
    fn of(aggregate: Aggregate, secs: f64, columns: &[TrendColumn]) -> MetricSummary {
        let thresholds = BTreeMap::new();
        match aggregate {
            Aggregate::Counter { count } => MetricSummary::Counter {
                count,
                rate: count as f64 / secs,
                thresholds,
            },
            Aggregate::Rate { failed, total } => MetricSummary::Rate {
                passes: failed,
                fails: total - failed.min(total),
                value: ratio(failed, total),
                thresholds,
            },
            Aggregate::Gauge(g) => MetricSummary::Gauge {
                value: g.value as f64,
                min: g.min as f64,
                max: g.max as f64,
                thresholds,
            },
            Aggregate::Trend(h) => MetricSummary::Trend {
                stats: columns.iter().map(|c| (c.name(), c.of(&h))).collect(),
                thresholds,
            },
        }
    }

    /// Expression -> failed, for the thresholds on this metric.
    pub fn thresholds(&self) -> &BTreeMap<String, bool> {
        match self {
            MetricSummary::Counter { thresholds, .. }
            | MetricSummary::Rate { thresholds, .. }
            | MetricSummary::Gauge { thresholds, .. }
            | MetricSummary::Trend { thresholds, .. } => thresholds,
        }
    }

    fn thresholds_mut(&mut self) -> &mut BTreeMap<String, bool> {
        match self {
            MetricSummary::Counter { thresholds, .. }
            | MetricSummary::Rate { thresholds, .. }
            | MetricSummary::Gauge { thresholds, .. }
            | MetricSummary::Trend { thresholds, .. } => thresholds,
        }
    }
}

/// k6's root group: name, path and id of the root, and no groups or checks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RootGroup {
    /// Empty: the root.
    pub name: String,
    /// Empty: the root.
    pub path: String,
    /// k6's id of the root group (the MD5 of its empty path).
    pub id: String,
    /// No groups.
    pub groups: BTreeMap<String, serde_json::Value>,
    /// No checks.
    pub checks: BTreeMap<String, serde_json::Value>,
}

impl Default for RootGroup {
    fn default() -> Self {
        RootGroup {
            name: String::new(),
            path: String::new(),
            id: "d41d8cd98f00b204e9800998ecf8427e".into(),
            groups: BTreeMap::new(),
            checks: BTreeMap::new(),
        }
    }
}

/// One scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioSummary {
    /// The executor (`constant-arrival-rate`, ...).
    pub executor: String,
    /// The plan in words (`2000.00 iterations/s for 5s (maxVUs: 100-200, gracefulStop: 30s)`).
    pub plan: String,
    /// Its `start_time`, seconds.
    pub start_time_s: f64,
    /// Its planned duration (without graceful stop), seconds.
    pub duration_s: f64,
    /// Iterations planned (open model), else null.
    pub planned_iterations: Option<u64>,
    /// `planned_iterations / duration_s` (open model), else null.
    pub target_rate: Option<f64>,
    /// Iterations started.
    pub started: u64,
    /// Iterations completed.
    pub iterations: u64,
    /// `started / duration_s`.
    pub achieved_rate: f64,
    /// Iterations dropped (no free VU).
    pub dropped_iterations: u64,
    /// Iterations interrupted (graceful stop ran out, or the test stopped early).
    pub interrupted_iterations: u64,
    /// Failed iterations.
    pub errors: u64,
    /// `errors / iterations`.
    pub error_rate: f64,
    /// Operations carried.
    pub entries: u64,
    /// Operations refused.
    pub failed_entries: u64,
    /// VUs allocated at the end (the pool).
    pub vus_max: u64,
    /// The most VUs busy at once.
    pub peak_vus: u64,
    /// From the scheduled start, ms.
    pub latency: TrendStats,
    /// From the actual send, ms.
    pub service_time: TrendStats,
    /// Per operation.
    pub operations: BTreeMap<String, OperationSummary>,
}

/// One operation of a scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperationSummary {
    /// Iterations completed.
    pub iterations: u64,
    /// Per second of the scenario's duration.
    pub rate: f64,
    /// Failed iterations.
    pub errors: u64,
    /// `errors / iterations`.
    pub error_rate: f64,
    /// Operations carried.
    pub entries: u64,
    /// Operations refused.
    pub failed_entries: u64,
    /// From the scheduled start, ms.
    pub latency: TrendStats,
    /// From the actual send, ms.
    pub service_time: TrendStats,
    /// Per status.
    pub statuses: BTreeMap<String, StatusSummary>,
}

/// One status of an operation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusSummary {
    /// Iterations completed.
    pub iterations: u64,
    /// Of which failed.
    pub errors: u64,
    /// Operations carried.
    pub entries: u64,
    /// From the scheduled start, ms.
    pub latency: TrendStats,
    /// From the actual send, ms.
    pub service_time: TrendStats,
}

/// A threshold's verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThresholdSummary {
    /// The metric key (`latency{scenario:checkout}`).
    pub metric: String,
    /// The expression (`p(95)<500`).
    pub expression: String,
    /// Whether it held.
    pub ok: bool,
    /// The value compared (ms for trends, 0 to 1 for `errors` rates, counts, per second).
    pub value: f64,
    /// Whether it stops the test when it fails.
    pub abort_on_fail: bool,
}

/// One second of one scenario (a line of `--out series=FILE`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// End of the window (RFC 3339, UTC).
    pub time: String,
    /// End of the window, seconds since the test started.
    pub elapsed_s: f64,
    /// The scenario.
    pub scenario: String,
    /// The arrival rate planned at the end of the window (open model), else null.
    pub target_rate: Option<f64>,
    /// Iterations started in the window.
    pub started: u64,
    /// Iterations completed in the window.
    pub iterations: u64,
    /// `iterations` per second of the window.
    pub rate: f64,
    /// Iterations dropped in the window.
    pub dropped_iterations: u64,
    /// Iterations that failed in the window.
    pub errors: u64,
    /// Of those, by status (`503`, `timeout`, ...); left out of the JSON when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors_by_status: BTreeMap<String, u64>,
    /// `errors / iterations`.
    pub error_rate: f64,
    /// Operations carried.
    pub entries: u64,
    /// The window's length, seconds (1, but the last one of a scenario is shorter).
    pub window_s: f64,
    /// Latency of the iterations completed in the window, ms.
    pub latency: TrendStats,
    /// Service time of the same, ms.
    pub service_time: TrendStats,
    /// VUs busy at the end of the window.
    pub vus: u64,
    /// VUs allocated at the end of the window.
    pub vus_max: u64,
}

impl Report {
    /// The verdict of the thresholds: `cio load` exits 99 when this is false.
    pub fn failed_thresholds(&self) -> impl Iterator<Item = &ThresholdSummary> {
        self.thresholds.iter().filter(|t| !t.ok)
    }

    pub(crate) fn build(input: BuildInput<'_>) -> Report {
        let BuildInput {
            started_at,
            elapsed,
            target,
            scenarios,
            store,
            verdicts,
            aborted,
            warnings,
            time_series,
            trend_columns,
        } = input;
        let secs = elapsed.as_secs_f64().max(1e-9);
        let mut metrics = BTreeMap::new();
        for m in Metric::ALL {
            let aggregate = store.aggregate(m, &TagFilter::default());
            metrics.insert(
                m.as_str().to_owned(),
                MetricSummary::of(aggregate, secs, trend_columns),
            );
        }
        // Each threshold's verdict on its metric, and a tagged series of its own (k6's
        // submetric, `latency{scenario:checkout}`) where it names tags.
        for (t, v) in &verdicts {
            let summary = metrics.entry(t.key.clone()).or_insert_with(|| {
                MetricSummary::of(store.aggregate(t.metric, &t.filter), secs, trend_columns)
            });
            summary.thresholds_mut().insert(t.expression.clone(), !v.ok);
        }
        let scenarios = scenarios
            .iter()
            .map(|(s, m)| (s.name.to_string(), scenario_summary(s, m)))
            .collect();
        let passed = verdicts.iter().all(|(_, v)| v.ok);
        let thresholds = verdicts
            .into_iter()
            .map(|(t, v)| ThresholdSummary {
                metric: t.key,
                expression: t.expression,
                ok: v.ok,
                value: v.value,
                abort_on_fail: t.abort_on_fail,
            })
            .collect();
        Report {
            version: SUMMARY_VERSION,
            root_group: RootGroup::default(),
            started_at: humantime::format_rfc3339_millis(started_at).to_string(),
            duration_s: elapsed.as_secs_f64(),
            target,
            passed,
            aborted,
            warnings,
            metrics,
            summary_trend_stats: trend_columns.iter().map(|c| c.name()).collect(),
            scenarios,
            thresholds,
            mock: None,
            time_series,
        }
    }

    /// The report as the terminal summary, like k6's.
    pub fn render(&self) -> String {
        text::render(self)
    }
}

pub(crate) struct BuildInput<'a> {
    pub started_at: SystemTime,
    pub elapsed: Duration,
    pub target: String,
    pub scenarios: &'a [(Scenario, Arc<ScenarioMetrics>)],
    pub store: &'a MetricsStore,
    pub verdicts: Vec<(Threshold, Verdict)>,
    pub aborted: Option<String>,
    pub warnings: Vec<String>,
    pub time_series: Vec<Point>,
    pub trend_columns: &'a [TrendColumn],
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn scenario_summary(s: &Scenario, m: &ScenarioMetrics) -> ScenarioSummary {
    // The `-iterations` executors end when their iterations are done: their rate is over the
    // time they ran, not over `max_duration`.
    let ran = m.ran_micros.load(Relaxed);
    let duration = if s.executor.is_iteration_count() && ran > 0 {
        ran as f64 / 1e6
    } else {
        s.executor.duration().as_secs_f64()
    };
    let per_sec = |n: u64| n as f64 / duration.max(1e-9);
    let mut all = Series::new();
    let mut operations: BTreeMap<String, (Series, BTreeMap<String, Series>)> = BTreeMap::new();
    for (op, status, series) in m.totals() {
        all.add(&series);
        let entry = operations
            .entry(op)
            .or_insert_with(|| (Series::new(), BTreeMap::new()));
        entry.0.add(&series);
        entry.1.insert(status, series);
    }
    let planned = s.executor.planned_iterations();
    let started = m.started.load(Relaxed);
    ScenarioSummary {
        executor: s.executor.name().to_owned(),
        plan: describe(s),
        start_time_s: s.start_time.as_secs_f64(),
        duration_s: duration,
        planned_iterations: planned,
        target_rate: planned
            .filter(|_| s.executor.is_arrival_rate())
            .map(per_sec),
        started,
        iterations: all.count,
        achieved_rate: per_sec(started),
        dropped_iterations: m.dropped.load(Relaxed),
        interrupted_iterations: m.interrupted.load(Relaxed),
        errors: all.failed,
        error_rate: ratio(all.failed, all.count),
        entries: all.entries,
        failed_entries: all.failed_entries,
        vus_max: m.allocated_vus.load(Relaxed),
        peak_vus: m.peak_vus.load(Relaxed),
        latency: TrendStats::of(&all.latency),
        service_time: TrendStats::of(&all.service),
        operations: operations
            .into_iter()
            .map(|(op, (series, statuses))| {
                let summary = OperationSummary {
                    iterations: series.count,
                    rate: per_sec(series.count),
                    errors: series.failed,
                    error_rate: ratio(series.failed, series.count),
                    entries: series.entries,
                    failed_entries: series.failed_entries,
                    latency: TrendStats::of(&series.latency),
                    service_time: TrendStats::of(&series.service),
                    statuses: statuses
                        .into_iter()
                        .map(|(st, s)| {
                            (
                                st,
                                StatusSummary {
                                    iterations: s.count,
                                    errors: s.failed,
                                    entries: s.entries,
                                    latency: TrendStats::of(&s.latency),
                                    service_time: TrendStats::of(&s.service),
                                },
                            )
                        })
                        .collect(),
                };
                (op, summary)
            })
            .collect(),
    }
}

fn describe(s: &Scenario) -> String {
    let d = |d: Duration| humantime::format_duration(d).to_string();
    let stop = d(s.graceful_stop);
    let start = if s.start_time.is_zero() {
        String::new()
    } else {
        format!(", startTime: {}", d(s.start_time))
    };
    match &s.executor {
        Executor::ConstantArrivalRate {
            pre_allocated_vus,
            max_vus,
            duration,
            ..
        } => format!(
            "{:.2} iterations/s for {} (maxVUs: {pre_allocated_vus}-{max_vus}, gracefulStop: {stop}{start})",
            s.executor.peak_rate().unwrap_or(0.0),
            d(*duration)
        ),
        Executor::RampingArrivalRate {
            stages,
            pre_allocated_vus,
            max_vus,
            ..
        } => format!(
            "up to {:.2} iterations/s over {} in {} stages (maxVUs: {pre_allocated_vus}-{max_vus}, gracefulStop: {stop}{start})",
            s.executor.peak_rate().unwrap_or(0.0),
            d(s.executor.duration()),
            stages.len()
        ),
        Executor::ConstantVus { vus, duration } => format!(
            "{vus} looping VUs for {} (gracefulStop: {stop}{start})",
            d(*duration)
        ),
        Executor::RampingVus { stages, .. } => format!(
            "up to {} looping VUs over {} in {} stages (gracefulStop: {stop}{start})",
            s.executor.max_vus(),
            d(s.executor.duration()),
            stages.len()
        ),
        Executor::SharedIterations {
            vus,
            iterations,
            max_duration,
        } => format!(
            "{iterations} iterations shared among {vus} VUs (maxDuration: {}, gracefulStop: {stop}{start})",
            d(*max_duration)
        ),
        Executor::PerVuIterations {
            vus,
            iterations,
            max_duration,
        } => format!(
            "{iterations} iterations for each of {vus} VUs (maxDuration: {}, gracefulStop: {stop}{start})",
            d(*max_duration)
        ),
    }
}

/// A number for people: no needless decimals.
pub(crate) fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    }
}
