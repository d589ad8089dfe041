//! Scenarios and executors in k6's vocabulary: what starts iterations, when, and with how many
//! virtual users (VUs).
//!
//! | executor | model | iterations start | VUs |
//! |---|---|---|---|
//! | [`Executor::ConstantArrivalRate`] | open | `rate` per `time_unit`, at scheduled instants | a pool from `pre_allocated_vus` up to `max_vus` |
//! | [`Executor::RampingArrivalRate`] | open | from `start_rate`, linearly through `stages` | the same pool |
//! | [`Executor::ConstantVus`] | closed | each VU starts its next iteration when the last ends | `vus` |
//! | [`Executor::RampingVus`] | closed | the same | from `start_vus`, linearly through `stages` |
//! | [`Executor::SharedIterations`] | closed | `iterations` in all, each free VU takes the next, within `max_duration` | `vus` |
//! | [`Executor::PerVuIterations`] | closed | `iterations` per VU, back to back, within `max_duration` | `vus` |
//!
//! In the open model an iteration whose instant has come while every VU is busy (and `max_vus`
//! are in use) is counted in `dropped_iterations`: it is never started late, so a slow target
//! shows as drops and as latency measured from the scheduled instant, not as a lower rate that
//! looks healthy (coordinated omission).

use std::sync::Arc;
use std::time::Duration;

use crate::workload::Workload;

/// One step of a ramp: reach `target` (iterations per `time_unit`, or VUs) linearly over
/// `duration`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stage {
    /// The rate or VU count at the end of the stage.
    pub target: u32,
    /// How long the ramp to it takes.
    pub duration: Duration,
}

impl Stage {
    /// A stage.
    pub fn new(target: u32, duration: Duration) -> Self {
        Stage { target, duration }
    }
}

/// What starts iterations, in k6's terms.
#[derive(Clone, Debug, PartialEq)]
pub enum Executor {
    /// `constant-arrival-rate`: `rate` iterations per `time_unit` for `duration`.
    ConstantArrivalRate {
        /// Iterations per `time_unit`.
        rate: u32,
        /// The unit of `rate` (k6's `timeUnit`, default 1 s).
        time_unit: Duration,
        /// How long iterations are started.
        duration: Duration,
        /// VUs ready at the start.
        pre_allocated_vus: u32,
        /// VUs at most; more are added on demand up to this.
        max_vus: u32,
    },
    /// `ramping-arrival-rate`: from `start_rate`, linearly through `stages`.
    RampingArrivalRate {
        /// Iterations per `time_unit` at the start.
        start_rate: u32,
        /// The unit of the rates.
        time_unit: Duration,
        /// The ramp.
        stages: Vec<Stage>,
        /// VUs ready at the start.
        pre_allocated_vus: u32,
        /// VUs at most.
        max_vus: u32,
    },
    /// `constant-vus`: `vus` VUs loop iterations back to back for `duration`.
    ConstantVus {
        /// The VUs.
        vus: u32,
        /// How long.
        duration: Duration,
    },
    /// `ramping-vus`: from `start_vus`, linearly through `stages` (targets are VU counts).
    RampingVus {
        /// VUs at the start.
        start_vus: u32,
        /// The ramp.
        stages: Vec<Stage>,
        /// How long a VU removed by a ramp-down may take to finish the iteration it is running
        /// before that iteration is interrupted (k6's `gracefulRampDown`;
        /// [`DEFAULT_GRACEFUL_RAMP_DOWN`] in scenario files).
        graceful_ramp_down: Duration,
    },
    /// `shared-iterations`: `iterations` in all, shared by `vus` VUs (a VU that is free takes
    /// the next, so a fast VU does more); the scenario ends when all are done, or at
    /// `max_duration`.
    SharedIterations {
        /// The VUs.
        vus: u32,
        /// Iterations in all (at least `vus`).
        iterations: u64,
        /// The longest the scenario may run (k6's `maxDuration`, [`DEFAULT_ITERATIONS_MAX_DURATION`] in
        /// scenario files); no iteration starts after it.
        max_duration: Duration,
    },
    /// `per-vu-iterations`: each of `vus` VUs runs `iterations` back to back; the scenario ends
    /// when every VU is done, or at `max_duration`.
    PerVuIterations {
        /// The VUs.
        vus: u32,
        /// Iterations per VU.
        iterations: u64,
        /// The longest the scenario may run.
        max_duration: Duration,
    },
}

/// k6's default `maxDuration` for the `-iterations` executors: ten minutes.
pub const DEFAULT_ITERATIONS_MAX_DURATION: Duration = Duration::from_secs(600);

impl Executor {
    /// The k6 name (`constant-arrival-rate`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Executor::ConstantArrivalRate { .. } => "constant-arrival-rate",
            Executor::RampingArrivalRate { .. } => "ramping-arrival-rate",
            Executor::ConstantVus { .. } => "constant-vus",
            Executor::RampingVus { .. } => "ramping-vus",
            Executor::SharedIterations { .. } => "shared-iterations",
            Executor::PerVuIterations { .. } => "per-vu-iterations",
        }
    }

    /// Whether iterations start on a schedule (the open model).
    pub fn is_arrival_rate(&self) -> bool {
        matches!(
            self,
            Executor::ConstantArrivalRate { .. } | Executor::RampingArrivalRate { .. }
        )
    }

    /// Whether it runs a fixed number of iterations (`shared-iterations`, `per-vu-iterations`)
    /// and ends when they are done.
    pub fn is_iteration_count(&self) -> bool {
        matches!(
            self,
            Executor::SharedIterations { .. } | Executor::PerVuIterations { .. }
        )
    }

    /// How long iterations are started (without `start_time` and `graceful_stop`); for the
    /// `-iterations` executors, the most: `max_duration`.
    pub fn duration(&self) -> Duration {
        match self {
            Executor::ConstantArrivalRate { duration, .. }
            | Executor::ConstantVus { duration, .. } => *duration,
            Executor::SharedIterations { max_duration, .. }
            | Executor::PerVuIterations { max_duration, .. } => *max_duration,
            Executor::RampingArrivalRate { stages, .. } | Executor::RampingVus { stages, .. } => {
                stages.iter().map(|s| s.duration).sum()
            }
        }
    }

    /// The most VUs it may use.
    pub fn max_vus(&self) -> u32 {
        match self {
            Executor::ConstantArrivalRate { max_vus, .. }
            | Executor::RampingArrivalRate { max_vus, .. } => *max_vus,
            Executor::ConstantVus { vus, .. }
            | Executor::SharedIterations { vus, .. }
            | Executor::PerVuIterations { vus, .. } => *vus,
            Executor::RampingVus {
                start_vus, stages, ..
            } => stages.iter().map(|s| s.target).fold(*start_vus, u32::max),
        }
    }

    /// The rate (per second) at the start and at the end of each segment, for the open model:
    /// `(start, end, duration)` triples. Empty for the closed model.
    pub fn rate_segments(&self) -> Vec<(f64, f64, Duration)> {
        match self {
            Executor::ConstantArrivalRate {
                rate,
                time_unit,
                duration,
                ..
            } => {
                let r = per_second(*rate, *time_unit);
                vec![(r, r, *duration)]
            }
            Executor::RampingArrivalRate {
                start_rate,
                time_unit,
                stages,
                ..
            } => {
                let mut from = per_second(*start_rate, *time_unit);
                stages
                    .iter()
                    .map(|s| {
                        let to = per_second(s.target, *time_unit);
                        let seg = (from, to, s.duration);
                        from = to;
                        seg
                    })
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    /// The arrival rate (per second) planned at `t` after the scenario started; `None` for the
    /// closed model.
    pub fn rate_at(&self, t: Duration) -> Option<f64> {
        if !self.is_arrival_rate() {
            return None;
        }
        let mut start = Duration::ZERO;
        for (from, to, d) in self.rate_segments() {
            if t < start + d {
                let frac = (t - start).as_secs_f64() / d.as_secs_f64().max(f64::MIN_POSITIVE);
                return Some(from + (to - from) * frac);
            }
            start += d;
        }
        Some(0.0)
    }

    /// The highest arrival rate (per second) it plans; `None` for the closed model.
    pub fn peak_rate(&self) -> Option<f64> {
        if !self.is_arrival_rate() {
            return None;
        }
        Some(
            self.rate_segments()
                .iter()
                .map(|(a, b, _)| a.max(*b))
                .fold(0.0, f64::max),
        )
    }

    /// The iterations it plans to start: the open model's schedule, or the `-iterations`
    /// executors' count; `None` for `constant-vus` and `ramping-vus`.
    pub fn planned_iterations(&self) -> Option<u64> {
        match self {
            Executor::SharedIterations { iterations, .. } => return Some(*iterations),
            Executor::PerVuIterations {
                vus, iterations, ..
            } => return Some(u64::from(*vus).saturating_mul(*iterations)),
            _ if !self.is_arrival_rate() => return None,
            _ => {}
        }
        let total: f64 = self
            .rate_segments()
            .iter()
            .map(|(a, b, d)| (a + b) / 2.0 * d.as_secs_f64())
            .sum();
        Some(total.ceil() as u64)
    }

    /// Checks the rules k6 applies: positive rates and durations, `max_vus >= pre_allocated_vus`,
    /// at least one stage. Returns `(field, message)` pairs; field names are those of the file.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let positive = |out: &mut Vec<_>, field, d: Duration| {
            if d.is_zero() {
                out.push((field, "must be more than zero (e.g. \"30s\")".to_owned()));
            }
        };
        match self {
            Executor::ConstantArrivalRate {
                rate,
                time_unit,
                duration,
                pre_allocated_vus,
                max_vus,
            } => {
                if *rate == 0 {
                    out.push(("rate", "must be at least 1".to_owned()));
                }
                positive(&mut out, "time_unit", *time_unit);
                positive(&mut out, "duration", *duration);
                vus_pool(&mut out, *pre_allocated_vus, *max_vus);
            }
            Executor::RampingArrivalRate {
                time_unit,
                stages,
                pre_allocated_vus,
                max_vus,
                ..
            } => {
                positive(&mut out, "time_unit", *time_unit);
                stages_ok(&mut out, stages);
                vus_pool(&mut out, *pre_allocated_vus, *max_vus);
            }
            Executor::ConstantVus { vus, duration } => {
                if *vus == 0 {
                    out.push(("vus", "must be at least 1".to_owned()));
                }
                positive(&mut out, "duration", *duration);
            }
            Executor::RampingVus { stages, .. } => stages_ok(&mut out, stages),
            Executor::SharedIterations {
                vus,
                iterations,
                max_duration,
            } => {
                iterations_ok(&mut out, *vus, *iterations, *max_duration);
                if *iterations < u64::from(*vus) {
                    out.push((
                        "iterations",
                        format!(
                            "is {iterations}, fewer than vus ({vus}): every VU needs at least one iteration to share (k6 refuses this too)"
                        ),
                    ));
                }
            }
            Executor::PerVuIterations {
                vus,
                iterations,
                max_duration,
            } => iterations_ok(&mut out, *vus, *iterations, *max_duration),
        }
        out
    }
}

fn vus_pool(out: &mut Vec<(&'static str, String)>, pre: u32, max: u32) {
    if pre == 0 {
        out.push((
            "pre_allocated_vus",
            "must be at least 1 (about rate x expected latency in seconds)".to_owned(),
        ));
    }
    if max < pre {
        out.push((
            "max_vus",
            format!("is {max}, less than pre_allocated_vus ({pre}); leave it out to use pre_allocated_vus"),
        ));
    }
}

fn stages_ok(out: &mut Vec<(&'static str, String)>, stages: &[Stage]) {
    if stages.is_empty() {
        out.push((
            "stages",
            "needs at least one stage, e.g. [{ target = 100, duration = \"30s\" }]".to_owned(),
        ));
    } else if stages.iter().all(|s| s.duration.is_zero()) {
        out.push(("stages", "the stages last zero seconds in total".to_owned()));
    }
}

fn iterations_ok(out: &mut Vec<(&'static str, String)>, vus: u32, iterations: u64, max: Duration) {
    if vus == 0 {
        out.push(("vus", "must be at least 1".to_owned()));
    }
    if iterations == 0 {
        out.push(("iterations", "must be at least 1".to_owned()));
    }
    if max.is_zero() {
        out.push((
            "max_duration",
            "must be more than zero (e.g. \"10m\", k6's default)".to_owned(),
        ));
    }
}

/// A rate per `unit` as a rate per second.
pub(crate) fn per_second(rate: u32, unit: Duration) -> f64 {
    f64::from(rate) / unit.as_secs_f64().max(f64::MIN_POSITIVE)
}

/// One scenario: an executor, when it starts, how long it may take to finish, and its workload.
///
/// ```
/// use std::time::Duration;
/// use cio_load::{Executor, Outcome, Scenario};
/// use cio_load::workload::workload_fn;
///
/// let scenario = Scenario::new(
///     "smoke",
///     Executor::ConstantVus { vus: 2, duration: Duration::from_secs(1) },
///     workload_fn(|it| async move { Outcome::success("noop", "ok", it.scheduled) }),
/// )
/// .start_time(Duration::from_millis(500));
/// assert_eq!(scenario.name(), "smoke");
/// ```
#[derive(Clone)]
pub struct Scenario {
    pub(crate) name: Arc<str>,
    pub(crate) executor: Executor,
    pub(crate) start_time: Duration,
    pub(crate) graceful_stop: Duration,
    pub(crate) workload: Arc<dyn Workload>,
}

impl std::fmt::Debug for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scenario")
            .field("name", &self.name)
            .field("executor", &self.executor)
            .field("start_time", &self.start_time)
            .field("graceful_stop", &self.graceful_stop)
            .finish_non_exhaustive()
    }
}

/// k6's default `gracefulStop`.
pub const DEFAULT_GRACEFUL_STOP: Duration = Duration::from_secs(30);

/// `graceful_ramp_down` when a `ramping-vus` scenario does not set it (k6's default).
pub const DEFAULT_GRACEFUL_RAMP_DOWN: Duration = Duration::from_secs(30);

impl Scenario {
    /// A scenario starting at once, with k6's default graceful stop of 30 s.
    pub fn new(name: impl Into<String>, executor: Executor, workload: impl Workload) -> Self {
        Scenario::with_shared_workload(name, executor, Arc::new(workload))
    }

    /// The same, with a workload shared with other scenarios.
    pub fn with_shared_workload(
        name: impl Into<String>,
        executor: Executor,
        workload: Arc<dyn Workload>,
    ) -> Self {
        Scenario {
            name: Arc::from(name.into()),
            executor,
            start_time: Duration::ZERO,
            graceful_stop: DEFAULT_GRACEFUL_STOP,
            workload,
        }
    }

    /// Start this long after the test starts (k6's `startTime`).
    pub fn start_time(mut self, d: Duration) -> Self {
        self.start_time = d;
        self
    }

    /// Let iterations still running at the end finish for up to this long, then interrupt them
    /// (k6's `gracefulStop`).
    pub fn graceful_stop(mut self, d: Duration) -> Self {
        self.graceful_stop = d;
        self
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The executor.
    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    /// When it ends at the latest, counted from the start of the test: `start_time`, the
    /// executor's duration, and `graceful_stop`.
    pub fn max_end(&self) -> Duration {
        self.start_time + self.executor.duration() + self.graceful_stop
    }
}
