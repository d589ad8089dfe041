//! What `cio demo --report` draws: a sample every quarter second of each run (events delivered,
//! requests the mock answered and by which status, latency per call, events in flight), and
//! the page that puts the batched and the unbatched run side by side.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use cio_layers::metrics::{MetricsHandle, Snapshot};
use cio_load::report::html::{Chart, Line, Page, Row, Section, Table};
use cio_pipeline::Progress;

use super::Run;

/// One window of a run.
#[derive(Clone, Debug)]
pub(super) struct Sample {
    /// End of the window, seconds since the run started.
    at: f64,
    /// Length of the window, seconds.
    window: f64,
    delivered: u64,
    dead_lettered: u64,
    /// Requests the mock answered in the window, by status.
    statuses: BTreeMap<String, u64>,
    /// Calls of the stack that ended in the window (retries inside are one call).
    calls: Snapshot,
    in_flight: u64,
}

/// Takes the samples of one run.
pub(super) struct Timeline {
    progress: Arc<Progress>,
    metrics: MetricsHandle,
    started: Instant,
    last_at: f64,
    last_delivered: u64,
    last_dead: u64,
    last_statuses: BTreeMap<String, u64>,
    samples: Vec<Sample>,
}

impl Timeline {
    /// Starts a timeline now (after the mock's stats were reset).
    pub(super) fn start(progress: Arc<Progress>, metrics: MetricsHandle) -> Self {
        metrics.window();
        Timeline {
            progress,
            metrics,
            started: Instant::now(),
            last_at: 0.0,
            last_delivered: 0,
            last_dead: 0,
            last_statuses: BTreeMap::new(),
            samples: Vec::new(),
        }
    }

    /// Takes the sample of the window since the last one; `statuses` is what the mock has
    /// answered so far, by status.
    pub(super) fn sample(&mut self, statuses: BTreeMap<String, u64>) {
        let at = self.started.elapsed().as_secs_f64();
        let delivered = self.progress.delivered();
        let dead = self.progress.dead_lettered();
        let window = statuses
            .iter()
            .map(|(s, n)| {
                let before = self.last_statuses.get(s).copied().unwrap_or(0);
                (s.clone(), n.saturating_sub(before))
            })
            .collect();
        self.samples.push(Sample {
            at,
            window: (at - self.last_at).max(1e-9),
            delivered: delivered.saturating_sub(self.last_delivered),
            dead_lettered: dead.saturating_sub(self.last_dead),
            statuses: window,
            calls: self.metrics.window(),
            in_flight: self.progress.in_flight(),
        });
        self.last_at = at;
        self.last_delivered = delivered;
        self.last_dead = dead;
        self.last_statuses = statuses;
    }

    /// The samples taken.
    pub(super) fn into_samples(self) -> Vec<Sample> {
        self.samples
    }
}

/// The demo's page: what it ran, then its runs side by side.
pub(super) fn page(meta: Vec<String>, passed: bool, runs: &[(&str, &Run)], limit: u32) -> Page {
    Page {
        title: "cio demo report".into(),
        meta,
        passed: Some(passed),
        rows: vec![runs
            .iter()
            .map(|(title, run)| section(title, run, limit))
            .collect()],
    }
}

fn section(title: &str, run: &Run, limit: u32) -> Section {
    let s = &run.samples;
    let line = |name: &str, value: &dyn Fn(&Sample) -> f64| {
        Line::new(name, s.iter().map(|x| (x.at, value(x))).collect())
    };
    let per_second = |n: u64, x: &Sample| n as f64 / x.window;
    let mut statuses: Vec<&str> = s
        .iter()
        .flat_map(|x| x.statuses.keys().map(String::as_str))
        .collect();
    statuses.sort_unstable();
    statuses.dedup();

    let events = Chart::new("Events delivered", "per second")
        .line(line("delivered", &|x| per_second(x.delivered, x)))
        .line(line("dead-lettered", &|x| per_second(x.dead_lettered, x)));
    let mut requests =
        Chart::new("Requests answered by the mock, by status", "per second").line(Line::target(
            format!("Track limit ({limit}/s)"),
            s.iter().map(|x| (x.at, f64::from(limit))).collect(),
        ));
    for status in statuses {
        requests = requests.line(line(status, &|x| {
            per_second(x.statuses.get(status).copied().unwrap_or(0), x)
        }));
    }
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let called = |x: &Sample| x.calls.count > 0;
    let latency_line = |name: &str, pick: fn(&Snapshot) -> std::time::Duration| {
        Line::new(
            name,
            s.iter()
                .filter(|x| called(x))
                .map(|x| (x.at, ms(pick(&x.calls))))
                .collect(),
        )
    };
    let latency = Chart::new("Latency per call, retries included", "ms")
        .line(latency_line("p50", |c| c.p50))
        .line(latency_line("p95", |c| c.p95))
        .line(latency_line("p99", |c| c.p99));
    let in_flight =
        Chart::new("Events in flight", "events").line(line("in flight", &|x| x.in_flight as f64));

    let r = &run.report;
    let rows = [
        ("events read", r.read.to_string()),
        ("delivered", r.delivered.to_string()),
        ("dead-lettered", r.dead_lettered.to_string()),
        ("unacknowledged", r.unacknowledged.to_string()),
        (
            "events per second",
            format!("{:.0}", r.delivered as f64 / run.elapsed.as_secs_f64()),
        ),
        ("ran", format!("{:.2?}", run.elapsed)),
        ("requests at the mock", run.stats.requests.to_string()),
        (
            "calls (retries inside count once)",
            run.requests.to_string(),
        ),
        (
            "latency per call p50 / p95 / p99",
            format!("{:.1?} / {:.1?} / {:.1?}", run.p50, run.p95, run.p99),
        ),
        (
            "busiest second at the mock",
            format!("{} requests", run.stats.max_track_requests_in_a_second),
        ),
    ];
    Section {
        title: title.to_owned(),
        subtitle: String::new(),
        charts: vec![events, requests, latency, in_flight],
        tables: vec![Table {
            caption: "its numbers".into(),
            head: vec![String::new(), "value".into()],
            rows: rows
                .into_iter()
                .map(|(k, v)| Row::new(vec![k.into(), v]))
                .collect(),
        }],
        text: None,
    }
}
