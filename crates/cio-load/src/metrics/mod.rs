//! What a load test measures, per scenario, per operation and per status, and how thresholds
//! and reports read it.
//!
//! | metric | kind | tags | what |
//! |---|---|---|---|
//! | `iterations` | counter | scenario, operation, status | iterations completed |
//! | `dropped_iterations` | counter | scenario | iterations due while every VU was busy: never started |
//! | `interrupted_iterations` | counter | scenario | iterations still running at the end of `graceful_stop` (or an abort) |
//! | `errors` | rate | scenario, operation, status | share of completed iterations that failed |
//! | `entries` | counter | scenario, operation, status | operations carried (a v2 batch of 50 counts 50) |
//! | `failed_entries` | counter | scenario, operation, status | operations refused (a 207's entries) |
//! | `latency` | trend, ms | scenario, operation, status | from the *scheduled* start to the end: what a user of the system sees |
//! | `service_time` | trend, ms | scenario, operation, status | from the actual send to the end: what the server took |
//! | `vus` | gauge | none | VUs running an iteration (sampled once a second: `value` the last, `min`; `max` also counts each scenario's exact peak) |
//! | `vus_max` | gauge | none | VUs allocated (the same) |
//!
//! k6's names work too, for the same numbers: `http_reqs` is `iterations` (one iteration is
//! one request, or one batch), `http_req_failed` is `errors`, `http_req_duration` is
//! `service_time` (k6 times the request from its send), `iteration_duration` is `latency` (from
//! the iteration's scheduled start; k6 has no scheduled start and times from the actual one, so
//! under an arrival-rate executor that falls behind, ours is the larger and the honest one).
//!
//! Trends are [`hdrhistogram`] histograms of microseconds with 3 significant figures (a
//! percentile is within 0.1 %), growing as needed. For the closed model (the `-vus` executors)
//! the scheduled start is the moment the VU started the iteration, so latency and service time
//! differ only by the time spent building the payload.
//!
//! # Why one lock per scenario
//!
//! An iteration's completion updates one entry of a map keyed by (operation, status) and the
//! scenario's one-second window, under one `std::sync::Mutex` of its scenario, held for a few
//! hundred nanoseconds and never across an `.await`. On this project's 2-core machine that is far
//! below the cost of the HTTP exchange it measures; scenarios never contend with each other.

pub(crate) mod trend;

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;

pub use trend::{TrendColumn, TrendStats, DEFAULT_TREND_COLUMNS};

use crate::samples::Samples;
use crate::workload::Outcome;

/// The metrics a threshold can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Iterations completed.
    Iterations,
    /// Iterations never started because every VU was busy.
    DroppedIterations,
    /// Iterations cut off by the end of `graceful_stop` or an abort.
    InterruptedIterations,
    /// Share of completed iterations that failed.
    Errors,
    /// Operations carried.
    Entries,
    /// Operations refused.
    FailedEntries,
    /// Scheduled start to end, ms.
    Latency,
    /// Actual send to end, ms.
    ServiceTime,
    /// VUs running an iteration (a gauge).
    Vus,
    /// VUs allocated (a gauge).
    VusMax,
    /// k6's `http_reqs`: [`Metric::Iterations`].
    HttpReqs,
    /// k6's `http_req_failed`: [`Metric::Errors`].
    HttpReqFailed,
    /// k6's `http_req_duration`: [`Metric::ServiceTime`].
    HttpReqDuration,
    /// k6's `iteration_duration`: [`Metric::Latency`].
    IterationDuration,
}

/// How a metric aggregates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// A count (`count`, and `rate` per second of the test).
    Counter,
    /// A share of iterations (`rate` from 0 to 1, and `count` of failures).
    Rate,
    /// A distribution in ms (`avg`, `min`, `med`, `max`, `p(N)`, `count`).
    Trend,
    /// A level sampled once a second (`value`, the last; `min`; `max`).
    Gauge,
}

impl Metric {
    /// Every metric.
    pub const ALL: [Metric; 14] = [
        Metric::Iterations,
        Metric::DroppedIterations,
        Metric::InterruptedIterations,
        Metric::Errors,
        Metric::Entries,
        Metric::FailedEntries,
        Metric::Latency,
        Metric::ServiceTime,
        Metric::Vus,
        Metric::VusMax,
        Metric::HttpReqs,
        Metric::HttpReqFailed,
        Metric::HttpReqDuration,
        Metric::IterationDuration,
    ];

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Iterations => "iterations",
            Metric::DroppedIterations => "dropped_iterations",
            Metric::InterruptedIterations => "interrupted_iterations",
            Metric::Errors => "errors",
            Metric::Entries => "entries",
            Metric::FailedEntries => "failed_entries",
            Metric::Latency => "latency",
            Metric::ServiceTime => "service_time",
            Metric::Vus => "vus",
            Metric::VusMax => "vus_max",
            Metric::HttpReqs => "http_reqs",
            Metric::HttpReqFailed => "http_req_failed",
            Metric::HttpReqDuration => "http_req_duration",
            Metric::IterationDuration => "iteration_duration",
        }
    }

    /// The metric whose numbers a k6 name stands for (`http_req_duration` is
    /// `service_time`); every other metric is itself.
    pub fn canonical(self) -> Metric {
        match self {
            Metric::HttpReqs => Metric::Iterations,
            Metric::HttpReqFailed => Metric::Errors,
            Metric::HttpReqDuration => Metric::ServiceTime,
            Metric::IterationDuration => Metric::Latency,
            m => m,
        }
    }

    /// Whether it is one of k6's names for a metric of ours.
    pub fn is_k6_alias(self) -> bool {
        self.canonical() != self
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// Its kind.
    pub fn kind(self) -> MetricKind {
        match self.canonical() {
            Metric::Latency | Metric::ServiceTime => MetricKind::Trend,
            Metric::Errors => MetricKind::Rate,
            Metric::Vus | Metric::VusMax => MetricKind::Gauge,
            _ => MetricKind::Counter,
        }
    }

    /// Whether it carries tags at all (the VU gauges count every scenario together, as k6's
    /// do).
    pub fn has_tags(self) -> bool {
        self.kind() != MetricKind::Gauge
    }

    /// Whether it carries the operation and status tags (dropped and interrupted iterations
    /// never ran, so they have only the scenario).
    pub fn has_operation_tags(self) -> bool {
        self.has_tags()
            && !matches!(
                self,
                Metric::DroppedIterations | Metric::InterruptedIterations
            )
    }
}

/// A selection of tagged series: `latency{scenario:checkout,status:200}`. Absent tags match all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TagFilter {
    /// The scenario.
    pub scenario: Option<String>,
    /// The operation.
    pub operation: Option<String>,
    /// The status.
    pub status: Option<String>,
}

impl TagFilter {
    fn matches(&self, scenario: &str, operation: &str, status: &str) -> bool {
        self.scenario.as_deref().is_none_or(|s| s == scenario)
            && self.operation.as_deref().is_none_or(|o| o == operation)
            && self.status.as_deref().is_none_or(|s| s == status)
    }
}

type Key = (Cow<'static, str>, Cow<'static, str>);

/// The numbers of one (operation, status) series, or of a window.
#[derive(Clone, Debug)]
pub(crate) struct Series {
    pub latency: Histogram<u64>,
    pub service: Histogram<u64>,
    pub count: u64,
    pub failed: u64,
    pub entries: u64,
    pub failed_entries: u64,
}

impl Series {
    pub fn new() -> Series {
        Series {
            latency: new_histogram(),
            service: new_histogram(),
            count: 0,
            failed: 0,
            entries: 0,
            failed_entries: 0,
        }
    }

    fn record(&mut self, outcome: &Outcome, latency: Duration, service: Duration) {
        record(&mut self.latency, micros(latency));
        record(&mut self.service, micros(service));
        self.count += 1;
        self.failed += u64::from(outcome.failed);
        self.entries += u64::from(outcome.entries);
        self.failed_entries += u64::from(outcome.failed_entries);
    }

    pub fn add(&mut self, other: &Series) {
        // Both histograms auto-resize, so adding cannot fail on range.
        let _ = self.latency.add(&other.latency);
        let _ = self.service.add(&other.service);
        self.count += other.count;
        self.failed += other.failed;
        self.entries += other.entries;
        self.failed_entries += other.failed_entries;
    }
}

/// A histogram of microseconds, 3 significant figures, growing as needed.
pub(crate) fn new_histogram() -> Histogram<u64> {
    // `new` only fails for more than 5 significant figures.
    Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant figures are valid"))
}

/// Records `v`, growing the histogram as needed. (`saturating_record` would clamp to the
/// current range instead of growing it.)
fn record(h: &mut Histogram<u64>, v: u64) {
    if h.record(v).is_err() {
        h.saturating_record(v);
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

struct State {
    /// By (operation, status): a handful of keys, found faster by a scan than by hashing.
    totals: Vec<(Key, Series)>,
    window: Series,
    /// Failed iterations of the window, by status.
    window_errors: Vec<(Cow<'static, str>, u64)>,
}

/// One window of a scenario: its numbers and its failed iterations by status.
pub(crate) struct Window {
    pub series: Series,
    pub errors_by_status: Vec<(String, u64)>,
}

/// The live numbers of one scenario, shared by its executor, its iterations and the sampler.
pub(crate) struct ScenarioMetrics {
    pub name: Arc<str>,
    state: Mutex<State>,
    /// Iterations started.
    pub started: AtomicU64,
    /// Iterations dropped (no free VU, or the iteration cap).
    pub dropped: AtomicU64,
    /// Iterations interrupted.
    pub interrupted: AtomicU64,
    /// VUs running an iteration now.
    pub active_vus: AtomicU64,
    /// VUs allocated now (the pool).
    pub allocated_vus: AtomicU64,
    /// The most VUs that ran an iteration at once.
    pub peak_vus: AtomicU64,
    /// How long its executor ran, µs (set when it ends; 0 before).
    pub ran_micros: AtomicU64,
    /// k6's per-sample outputs (`--out json=`, `--out csv=`), when asked for.
    samples: Option<Arc<Samples>>,
}

impl ScenarioMetrics {
    pub fn new(name: Arc<str>, samples: Option<Arc<Samples>>) -> Self {
        ScenarioMetrics {
            name,
            state: Mutex::new(State {
                totals: Vec::new(),
                window: Series::new(),
                window_errors: Vec::new(),
            }),
            started: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            interrupted: AtomicU64::new(0),
            active_vus: AtomicU64::new(0),
            allocated_vus: AtomicU64::new(0),
            peak_vus: AtomicU64::new(0),
            ran_micros: AtomicU64::new(0),
            samples,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a completed iteration.
    pub fn record(&self, outcome: &Outcome, latency: Duration, service: Duration) {
        if let Some(samples) = &self.samples {
            samples.iteration(&self.name, outcome, latency, service);
        }
        let mut state = self.lock();
        let State {
            totals,
            window,
            window_errors,
        } = &mut *state;
        window.record(outcome, latency, service);
        if outcome.failed {
            match window_errors
                .iter_mut()
                .find(|(st, _)| *st == outcome.status)
            {
                Some((_, n)) => *n += 1,
                None => window_errors.push((outcome.status.clone(), 1)),
            }
        }
        let found = totals
            .iter()
            .position(|((op, st), _)| *op == outcome.operation && *st == outcome.status);
        let i = found.unwrap_or_else(|| {
            let key = (outcome.operation.clone(), outcome.status.clone());
            totals.push((key, Series::new()));
            totals.len() - 1
        });
        totals[i].1.record(outcome, latency, service);
    }

    /// A VU started an iteration: count it and the peak.
    pub fn vu_busy(&self) -> u64 {
        let now = self.active_vus.fetch_add(1, Relaxed) + 1;
        self.peak_vus.fetch_max(now, Relaxed);
        now
    }

    /// Its executor ended, `ran` after it started.
    pub fn ran(&self, ran: Duration) {
        self.ran_micros.store(micros(ran), Relaxed);
    }

    /// A VU is free again.
    pub fn vu_free(&self) {
        self.active_vus.fetch_sub(1, Relaxed);
    }

    /// Takes the window since the last call and starts a new one.
    pub fn take_window(&self) -> Window {
        let fresh = Series::new();
        let mut state = self.lock();
        let series = std::mem::replace(&mut state.window, fresh);
        let errors_by_status = state
            .window_errors
            .drain(..)
            .map(|(st, n)| (st.into_owned(), n))
            .collect();
        Window {
            series,
            errors_by_status,
        }
    }

    /// A copy of the totals, by (operation, status).
    pub fn totals(&self) -> Vec<(String, String, Series)> {
        self.lock()
            .totals
            .iter()
            .map(|((op, st), s)| (op.to_string(), st.to_string(), s.clone()))
            .collect()
    }

    /// The sum of the totals matching `filter`.
    pub fn merged(&self, filter: &TagFilter) -> Series {
        let mut out = Series::new();
        if filter.scenario.as_deref().is_some_and(|s| s != &*self.name) {
            return out;
        }
        for ((op, st), s) in &self.lock().totals {
            if filter.matches(&self.name, op, st) {
                out.add(s);
            }
        }
        out
    }
}

/// Every scenario's numbers: what thresholds and reports read.
#[derive(Clone)]
pub(crate) struct MetricsStore {
    pub scenarios: Vec<Arc<ScenarioMetrics>>,
    /// `vus` and `vus_max`, sampled once a second.
    pub gauges: Arc<Mutex<Gauges>>,
    /// k6's per-sample outputs, which get the gauges too.
    samples: Option<Arc<Samples>>,
}

/// The VU gauges over the test: each the last value sampled, and the least and most.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Gauges {
    pub vus: Gauge,
    pub vus_max: Gauge,
}

/// One gauge: the last value sampled, and the least and most seen.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Gauge {
    pub value: u64,
    pub min: u64,
    pub max: u64,
    sampled: bool,
}

impl Gauge {
    /// Records a sample.
    pub fn sample(&mut self, v: u64) {
        self.value = v;
        self.min = if self.sampled { self.min.min(v) } else { v };
        self.max = self.max.max(v);
        self.sampled = true;
    }
}

impl MetricsStore {
    pub fn new(scenarios: Vec<Arc<ScenarioMetrics>>, samples: Option<Arc<Samples>>) -> Self {
        MetricsStore {
            scenarios,
            gauges: Arc::default(),
            samples,
        }
    }

    /// Samples the VU gauges now, over every scenario; `dropped` is each scenario's iterations
    /// dropped since the last call, for the per-sample outputs.
    pub fn sample_gauges(&self, dropped: &[(&str, u64)]) {
        let sum = |f: fn(&ScenarioMetrics) -> u64| self.scenarios.iter().map(|s| f(s)).sum();
        let vus = sum(|s| s.active_vus.load(Relaxed));
        let vus_max = sum(|s| s.allocated_vus.load(Relaxed));
        let mut g = self.gauges.lock().unwrap_or_else(PoisonError::into_inner);
        g.vus.sample(vus);
        g.vus_max.sample(vus_max);
        if let Some(samples) = &self.samples {
            samples.second(vus, vus_max, dropped);
        }
    }
}

/// The value of a metric under a filter, ready for a threshold's aggregation.
#[derive(Clone, Debug)]
pub(crate) enum Aggregate {
    Counter { count: u64 },
    Rate { failed: u64, total: u64 },
    Trend(Box<Histogram<u64>>),
    Gauge(Gauge),
}

impl MetricsStore {
    pub fn aggregate(&self, metric: Metric, filter: &TagFilter) -> Aggregate {
        let metric = metric.canonical();
        if metric.kind() == MetricKind::Gauge {
            let g = *self.gauges.lock().unwrap_or_else(PoisonError::into_inner);
            return Aggregate::Gauge(if metric == Metric::Vus {
                // A second's sample misses short bursts; each scenario knows its own peak
                // exactly, so `max` is at least the highest of those.
                let peak = self
                    .scenarios
                    .iter()
                    .map(|s| s.peak_vus.load(Relaxed))
                    .max()
                    .unwrap_or(0);
                Gauge {
                    max: g.vus.max.max(peak),
                    ..g.vus
                }
            } else {
                g.vus_max
            });
        }
        let scenarios = self
            .scenarios
            .iter()
            .filter(|s| filter.scenario.as_deref().is_none_or(|n| n == &*s.name));
        match metric {
            Metric::DroppedIterations => Aggregate::Counter {
                count: scenarios.map(|s| s.dropped.load(Relaxed)).sum(),
            },
            Metric::InterruptedIterations => Aggregate::Counter {
                count: scenarios.map(|s| s.interrupted.load(Relaxed)).sum(),
            },
            _ => {
                let mut all = Series::new();
                for s in scenarios {
                    all.add(&s.merged(filter));
                }
                match metric {
                    Metric::Iterations => Aggregate::Counter { count: all.count },
                    Metric::Entries => Aggregate::Counter { count: all.entries },
                    Metric::FailedEntries => Aggregate::Counter {
                        count: all.failed_entries,
                    },
                    Metric::Errors => Aggregate::Rate {
                        failed: all.failed,
                        total: all.count,
                    },
                    Metric::Latency => Aggregate::Trend(Box::new(all.latency)),
                    _ => Aggregate::Trend(Box::new(all.service)),
                }
            }
        }
    }
}
