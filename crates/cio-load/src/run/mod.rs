//! A load test: scenarios side by side, thresholds, safety bounds, and the task that runs them
//! and samples their numbers once a second.
//!
//! [`LoadTest::start`] spawns one owner task. It starts each scenario's executor at its
//! `start_time` (each in a `JoinSet` it owns), and once a second takes every scenario's window
//! of numbers: a [`Point`](crate::report::Point) of the time series (written as a JSON line when asked), the
//! [`Live`] view for a progress line, and the check of `abort_on_fail` thresholds. When every
//! scenario has ended (or the run was stopped: an aborting threshold, the `max_duration` or
//! `max_iterations` bound, [`RunHandle::stop`]) it evaluates the thresholds and returns the
//! [`Report`].
//!
//! **Where it runs.** By default the owner task is spawned on the caller's runtime. With
//! [`LoadTest::threads`] the test gets a runtime of its own on threads of its own: one thread is a
//! single-threaded runtime, where a VU handed an iteration, a connection that answers and the
//! scheduler that wakes all run on one thread with no cross-thread wake-up. On tokio's
//! multi-threaded runtime each of those wakes another worker to steal work (a `futex` and an
//! `eventfd` write): at 10,000 requests/s that was a quarter of `cio load`'s CPU per request
//! (docs/benchmarks.md). Whatever else the process runs (the embedded mock, the progress line)
//! stays on the caller's runtime and off the generator's threads.

mod orchestrate;

use std::io::Write;
use std::num::NonZeroUsize;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::metrics::{TrendColumn, DEFAULT_TREND_COLUMNS};
pub use crate::report::Live;
use crate::report::Report;
use crate::samples::SampleFormat;
use crate::scenario::Scenario;
use crate::threshold::Threshold;
use crate::LoadError;

pub(crate) use crate::warnings::Warnings;

/// Default bound on a test's length: one hour.
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(3600);
/// Default bound on the iterations a test starts: fifty million.
pub const DEFAULT_MAX_ITERATIONS: u64 = 50_000_000;
/// Default bound on the VUs of all scenarios together.
pub const DEFAULT_MAX_VUS: u64 = 20_000;

/// Safety bounds: a test that would exceed them is refused before it starts, and one that
/// reaches them while running (a closed-model scenario cannot be planned exactly) is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// The longest a test may last, graceful stops included.
    pub max_duration: Duration,
    /// The most iterations it may start.
    pub max_iterations: u64,
    /// The most VUs of all scenarios together.
    pub max_vus: u64,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            max_duration: DEFAULT_MAX_DURATION,
            max_iterations: DEFAULT_MAX_ITERATIONS,
            max_vus: DEFAULT_MAX_VUS,
        }
    }
}

/// A load test defined in code (or from a scenario file, through [`crate::config::Plan`]).
///
/// ```
/// use std::time::Duration;
/// use cio_load::{Executor, LoadTest, Outcome, Scenario, Threshold};
/// use cio_load::workload::workload_fn;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), cio_load::LoadError> {
/// let report = LoadTest::new()
///     .scenario(Scenario::new(
///         "ping",
///         Executor::ConstantArrivalRate {
///             rate: 100,
///             time_unit: Duration::from_secs(1),
///             duration: Duration::from_secs(2),
///             pre_allocated_vus: 5,
///             max_vus: 10,
///         },
///         workload_fn(|it| async move {
///             tokio::time::sleep(Duration::from_millis(10)).await; // the "request"
///             Outcome::success("ping", "200", it.scheduled)
///         }),
///     ))
///     .threshold(Threshold::parse("latency", "p(95)<50").expect("valid"))
///     .run()
///     .await?;
/// assert!(report.passed);
/// assert_eq!(report.scenarios["ping"].iterations, 200);
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct LoadTest {
    scenarios: Vec<Scenario>,
    thresholds: Vec<Threshold>,
    bounds: Bounds,
    time_series: Option<Box<dyn Write + Send>>,
    target: String,
    warnings: Vec<String>,
    threads: Option<NonZeroUsize>,
    trend_columns: Vec<TrendColumn>,
    samples: Vec<(SampleFormat, Box<dyn Write + Send>)>,
}

impl std::fmt::Debug for LoadTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadTest")
            .field("scenarios", &self.scenarios)
            .field("thresholds", &self.thresholds)
            .field("bounds", &self.bounds)
            .finish_non_exhaustive()
    }
}

impl LoadTest {
    /// An empty test with the default [`Bounds`].
    pub fn new() -> Self {
        LoadTest {
            target: "custom".into(),
            trend_columns: DEFAULT_TREND_COLUMNS.to_vec(),
            ..LoadTest::default()
        }
    }

    /// Adds a scenario.
    pub fn scenario(mut self, scenario: Scenario) -> Self {
        self.scenarios.push(scenario);
        self
    }

    /// Adds a threshold.
    pub fn threshold(mut self, threshold: Threshold) -> Self {
        self.thresholds.push(threshold);
        self
    }

    /// Sets the safety bounds.
    pub fn bounds(mut self, bounds: Bounds) -> Self {
        self.bounds = bounds;
        self
    }

    /// Writes the one-second time series as JSON lines to `out` while it runs.
    pub fn time_series(mut self, out: impl Write + Send + 'static) -> Self {
        self.time_series = Some(Box::new(out));
        self
    }

    /// Writes every sample in one of k6's formats to `out` while it runs (`--out json=FILE`,
    /// `--out csv=FILE`; see [`SampleFormat`]). May be given more than once.
    pub fn samples(mut self, format: SampleFormat, out: impl Write + Send + 'static) -> Self {
        self.samples.push((format, Box::new(out)));
        self
    }

    /// Names the target in the report (`mock`, a URL, `us`, `eu`).
    pub fn target_label(mut self, label: impl Into<String>) -> Self {
        self.target = label.into();
        self
    }

    /// Runs the test on a runtime of its own with `threads` threads (one: a single-threaded
    /// runtime, the cheapest per request), instead of the caller's. See the module docs.
    pub fn threads(mut self, threads: NonZeroUsize) -> Self {
        self.threads = Some(threads);
        self
    }

    /// The statistics the summary lists for each trend, in order (k6's `summaryTrendStats`;
    /// default avg, min, med, max, p(90), p(95)).
    pub fn summary_trend_stats(mut self, columns: Vec<TrendColumn>) -> Self {
        self.trend_columns = columns;
        self
    }

    /// Adds a warning found before the start (listed in the report).
    pub fn warning(mut self, message: impl Into<String>) -> Self {
        self.warnings.push(message.into());
        self
    }

    /// The scenarios.
    pub fn scenarios(&self) -> &[Scenario] {
        &self.scenarios
    }

    /// Checks names, executors, thresholds and bounds without running anything.
    pub fn check(&self) -> Result<(), LoadError> {
        if self.scenarios.is_empty() {
            return Err(LoadError::in_code(
                "scenarios",
                "a test needs at least one scenario",
            ));
        }
        let mut vus = 0u64;
        let mut iterations = 0u64;
        for (i, s) in self.scenarios.iter().enumerate() {
            if s.name.trim().is_empty() {
                return Err(LoadError::in_code(
                    format!("scenarios[{i}]"),
                    "a scenario needs a name",
                ));
            }
            if self.scenarios[..i].iter().any(|o| o.name == s.name) {
                return Err(LoadError::in_code(
                    format!("scenarios.{}", s.name),
                    "two scenarios have this name",
                ));
            }
            if let Some((field, msg)) = s.executor.problems().into_iter().next() {
                return Err(LoadError::in_code(
                    format!("scenarios.{}.{field}", s.name),
                    msg,
                ));
            }
            if s.max_end() > self.bounds.max_duration {
                return Err(LoadError::in_code(
                    format!("scenarios.{}", s.name),
                    format!(
                        "it may last {} (start_time + duration + graceful_stop), more than max_duration ({}); shorten it or raise max_duration",
                        humantime::format_duration(s.max_end()),
                        humantime::format_duration(self.bounds.max_duration)
                    ),
                ));
            }
            vus += u64::from(s.executor.max_vus());
            iterations += s.executor.planned_iterations().unwrap_or(0);
        }
        if vus > self.bounds.max_vus {
            return Err(LoadError::in_code(
                "max_vus",
                format!("the scenarios use up to {vus} VUs together, more than the bound of {}; lower max_vus or raise the bound", self.bounds.max_vus),
            ));
        }
        if iterations > self.bounds.max_iterations {
            return Err(LoadError::in_code(
                "max_iterations",
                format!("the scenarios plan {iterations} iterations, more than the bound of {}; lower the rates or raise the bound", self.bounds.max_iterations),
            ));
        }
        for t in &self.thresholds {
            if let Some(s) = &t.filter.scenario {
                if !self.scenarios.iter().any(|sc| &*sc.name == s) {
                    return Err(LoadError::in_code(
                        format!("thresholds.{}", t.key),
                        format!("no scenario is named {s:?}"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks the test and starts it in the background: on the caller's runtime (so it must be
    /// called inside one), or on a runtime of its own with [`LoadTest::threads`].
    pub fn start(mut self) -> Result<RunHandle, LoadError> {
        self.check()?;
        let planned = self
            .scenarios
            .iter()
            .map(|s| s.start_time + s.executor.duration())
            .max()
            .unwrap_or_default();
        let (live_tx, live_rx) = watch::channel(Live {
            planned,
            ..Live::default()
        });
        let abort = CancellationToken::new();
        let (report_tx, task) = oneshot::channel();
        let threads = self.threads.take();
        let run = orchestrate::orchestrate(self, abort.clone(), live_tx);
        match threads {
            None => {
                tokio::spawn(async move {
                    let _ = report_tx.send(run.await);
                });
            }
            Some(threads) => {
                let runtime = if threads.get() == 1 {
                    tokio::runtime::Builder::new_current_thread()
                } else {
                    let mut b = tokio::runtime::Builder::new_multi_thread();
                    b.worker_threads(threads.get());
                    b
                }
                .enable_all()
                .thread_name("cio-load")
                .build()
                .map_err(|e| {
                    LoadError::in_code("threads", format!("cannot start the test's runtime: {e}"))
                })?;
                std::thread::Builder::new()
                    .name("cio-load".into())
                    .spawn(move || {
                        // On a multi-threaded runtime the owner is a task on a worker, so that
                        // what it spawns lands on that worker's queue, not the shared one.
                        let report = if threads.get() == 1 {
                            Some(runtime.block_on(run))
                        } else {
                            runtime.block_on(runtime.spawn(run)).ok()
                        };
                        if let Some(report) = report {
                            let _ = report_tx.send(report);
                        }
                        // Connections and pool sweeps of the test end with its runtime.
                        runtime.shutdown_timeout(Duration::from_secs(1));
                    })
                    .map_err(|e| {
                        LoadError::in_code(
                            "threads",
                            format!("cannot start the test's thread: {e}"),
                        )
                    })?;
            }
        }
        Ok(RunHandle {
            live: live_rx,
            abort,
            task,
        })
    }

    /// Runs the test to its end and returns the report.
    pub async fn run(self) -> Result<Report, LoadError> {
        let mut handle = self.start()?;
        handle.finish().await
    }
}

/// A running test.
#[derive(Debug)]
pub struct RunHandle {
    live: watch::Receiver<Live>,
    abort: CancellationToken,
    /// Closed without a report when the owner task panicked.
    task: oneshot::Receiver<Report>,
}

impl RunHandle {
    /// The live numbers, updated once a second.
    pub fn live(&self) -> watch::Receiver<Live> {
        self.live.clone()
    }

    /// Stops the test now (iterations in flight are interrupted); the report still comes.
    pub fn stop(&self) {
        self.abort.cancel();
    }

    /// Waits for the end and returns the report. Cancel-safe: call it again after a `select!`
    /// that stopped waiting (to [`RunHandle::stop`] on Ctrl-C, say).
    pub async fn finish(&mut self) -> Result<Report, LoadError> {
        (&mut self.task).await.map_err(|_| {
            LoadError::in_code(
                "run",
                "the load test stopped without a report (a panic: see the log above)",
            )
        })
    }
}
