//! From the file as written to a [`Plan`]: k6's defaults filled in, and every semantic rule
//! checked with the path of the field that breaks it (`stages` on a constant executor, a
//! threshold on a scenario that does not exist, a batch over 500 KB).

mod workload;

use workload::workload;

use std::time::Duration;

use super::file::{FilePlan, FileScenario, FileThreshold};
use super::guess;
use super::locate::FieldPath;
use super::{MockOptions, Plan, ScenarioPlan, TargetSpec};
use crate::metrics::{TrendColumn, DEFAULT_TREND_COLUMNS};
use crate::run::Bounds;
use crate::scenario::{
    Executor, Stage, DEFAULT_GRACEFUL_RAMP_DOWN, DEFAULT_GRACEFUL_STOP,
    DEFAULT_ITERATIONS_MAX_DURATION,
};
use crate::target::Endpoint;
use crate::threshold::Threshold;

pub(crate) type Problems = Vec<(FieldPath, String)>;

const EXECUTORS: [&str; 6] = [
    "constant-arrival-rate",
    "ramping-arrival-rate",
    "constant-vus",
    "ramping-vus",
    "shared-iterations",
    "per-vu-iterations",
];

pub(crate) fn plan(file: FilePlan) -> Result<Plan, Problems> {
    let mut problems = Problems::new();
    let root = FieldPath::default();
    let bounds = Bounds {
        max_duration: file
            .options
            .max_duration
            .map(|d| d.0)
            .unwrap_or(Bounds::default().max_duration),
        max_iterations: file
            .options
            .max_iterations
            .unwrap_or(Bounds::default().max_iterations),
        max_vus: file.options.max_vus.unwrap_or(Bounds::default().max_vus),
    };
    let mut summary_trend_stats = Vec::new();
    for (i, stat) in file
        .options
        .summary_trend_stats
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        match TrendColumn::parse(stat) {
            Ok(c) => summary_trend_stats.push(c),
            Err(e) => problems.push((root.key("options").key("summary_trend_stats").index(i), e)),
        }
    }
    if summary_trend_stats.is_empty() {
        summary_trend_stats = DEFAULT_TREND_COLUMNS.to_vec();
    }
    let target = target(file.target, &root.key("target"), &mut problems);
    if file.scenarios.is_empty() {
        problems.push((
            root.key("scenarios"),
            "the file defines no scenario; add one, e.g. [scenarios.smoke] with executor = \"constant-arrival-rate\"".into(),
        ));
    }
    let mut scenarios = Vec::new();
    for (name, s) in file.scenarios {
        let path = root.key("scenarios").key(&name);
        if name.trim().is_empty() || name.contains(['{', '}', ',', ':']) {
            problems.push((path.clone(), "a scenario name needs at least one character and none of { } , : (they separate tags in thresholds)".into()));
        }
        if let Some(p) = scenario(&name, s, &path, &mut problems) {
            if p.start_time + p.executor.duration() + p.graceful_stop > bounds.max_duration {
                problems.push((path.clone(), format!(
                    "it may last {} (start_time + duration + graceful_stop), more than options.max_duration ({}); shorten it or raise max_duration",
                    humantime::format_duration(p.start_time + p.executor.duration() + p.graceful_stop),
                    humantime::format_duration(bounds.max_duration)
                )));
            }
            scenarios.push(p);
        }
    }
    let names: Vec<String> = scenarios.iter().map(|s| s.name.clone()).collect();
    let mut thresholds = Vec::new();
    for (key, list) in file.thresholds {
        let path = root.key("thresholds").key(&key);
        for (i, t) in list.into_vec().into_iter().enumerate() {
            let (expr, abort, delay) = match t {
                FileThreshold::Expression(e) => (e, false, Duration::ZERO),
                FileThreshold::Table(t) => (
                    t.threshold,
                    t.abort_on_fail,
                    t.delay_abort_eval.map(|d| d.0).unwrap_or_default(),
                ),
            };
            match Threshold::parse(&key, &expr) {
                Ok(th) => {
                    if let Some(s) = th.filter.scenario.as_ref().filter(|s| !names.contains(s)) {
                        problems.push((
                            path.clone(),
                            format!(
                                "no scenario is named {s:?} (scenarios: {})",
                                names.join(", ")
                            ),
                        ));
                    }
                    thresholds.push(th.abort_on_fail(abort).delay_abort_eval(delay));
                }
                Err(e) => problems.push((path.index(i), e)),
            }
        }
    }
    let vus: u64 = scenarios
        .iter()
        .map(|s| u64::from(s.executor.max_vus()))
        .sum();
    if vus > bounds.max_vus {
        problems.push((root.key("options").key("max_vus"), format!(
            "the scenarios use up to {vus} VUs together, more than the bound of {} (default {}); lower their max_vus or raise options.max_vus",
            bounds.max_vus, Bounds::default().max_vus
        )));
    }
    let iterations: u64 = scenarios
        .iter()
        .filter_map(|s| s.executor.planned_iterations())
        .sum();
    if iterations > bounds.max_iterations {
        problems.push((root.key("options").key("max_iterations"), format!(
            "the scenarios plan {iterations} iterations, more than the bound of {}; lower the rates or raise options.max_iterations",
            bounds.max_iterations
        )));
    }
    if problems.is_empty() {
        Ok(Plan {
            bounds,
            target,
            thresholds,
            scenarios,
            summary_trend_stats,
        })
    } else {
        Err(problems)
    }
}

fn target(t: super::file::FileTarget, path: &FieldPath, problems: &mut Problems) -> TargetSpec {
    let mut spec = TargetSpec::default();
    if let Some(e) = t.endpoint {
        match Endpoint::parse(&e) {
            Ok(ep) => spec.endpoint = ep,
            Err(msg) => problems.push((path.key("endpoint"), msg)),
        }
    }
    if let Some(l) = t.workspace_rate_limit {
        spec.workspace_rate_limit = l;
    }
    if let Some(l) = t.app_rate_limit {
        spec.app_rate_limit = l;
    }
    if let Some(d) = t.timeout {
        if d.0.is_zero() {
            problems.push((path.key("timeout"), "must be more than zero".into()));
        }
        spec.timeout = d.0;
    }
    if let Some(m) = t.mock {
        if spec.endpoint != Endpoint::Mock {
            problems.push((
                path.key("mock"),
                "mock settings apply only to endpoint = \"mock\"".into(),
            ));
        }
        let mut o = MockOptions::default();
        o.track_rate = m.track_rate.unwrap_or(o.track_rate);
        o.track_burst = m.track_burst;
        o.app_rate = m.app_rate.unwrap_or(o.app_rate);
        o.latency_ms = m.latency_ms;
        o.latency_p99_ms = m.latency_p99_ms;
        o.error_rate = m.error_rate.unwrap_or(0.0);
        o.throttle_rate = m.throttle_rate.unwrap_or(0.0);
        for (field, v) in [
            ("error_rate", o.error_rate),
            ("throttle_rate", o.throttle_rate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                problems.push((
                    path.key("mock").key(field),
                    format!("{v} is not a fraction between 0 and 1 (0.01 means 1 %)"),
                ));
            }
        }
        for (field, v) in [
            ("latency_ms", o.latency_ms),
            ("latency_p99_ms", o.latency_p99_ms),
        ] {
            if v.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
                problems.push((
                    path.key("mock").key(field),
                    "must be a number of milliseconds, 0 or more".into(),
                ));
            }
        }
        if o.latency_p99_ms.is_some() && o.latency_p99_ms < o.latency_ms {
            problems.push((
                path.key("mock").key("latency_p99_ms"),
                "must not be below latency_ms (the median)".into(),
            ));
        }
        spec.mock = o;
    }
    spec
}

fn scenario(
    name: &str,
    s: FileScenario,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<ScenarioPlan> {
    let before = problems.len();
    let kind = s.executor.trim();
    if !EXECUTORS.contains(&kind) {
        let guess = match (guess::executor_hint(kind), guess::closest(kind, EXECUTORS)) {
            (Some(hint), _) => format!("; {hint}"),
            (None, Some(name)) => format!("; did you mean {name:?}?"),
            (None, None) => String::new(),
        };
        problems.push((
            path.key("executor"),
            format!(
                "unknown executor {:?}{guess}; expected one of {}",
                s.executor,
                EXECUTORS.join(", ")
            ),
        ));
        return None;
    }
    // Which fields apply to which executor, as k6 has them.
    const ARRIVAL: &[&str] = &["constant-arrival-rate", "ramping-arrival-rate"];
    const ITERATIONS: &[&str] = &["shared-iterations", "per-vu-iterations"];
    let fields: [(&str, bool, &[&str]); 12] = [
        ("rate", s.rate.is_some(), &["constant-arrival-rate"]),
        (
            "start_rate",
            s.start_rate.is_some(),
            &["ramping-arrival-rate"],
        ),
        ("time_unit", s.time_unit.is_some(), ARRIVAL),
        (
            "duration",
            s.duration.is_some(),
            &["constant-arrival-rate", "constant-vus"],
        ),
        (
            "stages",
            s.stages.is_some(),
            &["ramping-arrival-rate", "ramping-vus"],
        ),
        ("pre_allocated_vus", s.pre_allocated_vus.is_some(), ARRIVAL),
        ("max_vus", s.max_vus.is_some(), ARRIVAL),
        (
            "vus",
            s.vus.is_some(),
            &["constant-vus", "shared-iterations", "per-vu-iterations"],
        ),
        ("iterations", s.iterations.is_some(), ITERATIONS),
        ("max_duration", s.max_duration.is_some(), ITERATIONS),
        ("start_vus", s.start_vus.is_some(), &["ramping-vus"]),
        (
            "graceful_ramp_down",
            s.graceful_ramp_down.is_some(),
            &["ramping-vus"],
        ),
    ];
    for (field, present, applies) in fields {
        if present && !applies.contains(&kind) {
            problems.push((
                path.key(field),
                format!(
                    "`{field}` does not apply to executor {kind:?}; it belongs to {}",
                    applies.join(" and ")
                ),
            ));
        }
    }
    let need = |problems: &mut Problems, field: &str, present: bool, example: &str| {
        if !present {
            problems.push((
                path.key(field),
                format!("executor {kind:?} needs `{field}`, e.g. {field} = {example}"),
            ));
        }
    };
    let time_unit = s.time_unit.map(|d| d.0).unwrap_or(Duration::from_secs(1));
    let stages: Vec<Stage> = s
        .stages
        .unwrap_or_default()
        .into_iter()
        .map(|st| Stage::new(st.target, st.duration.0))
        .collect();
    let pre = s.pre_allocated_vus.unwrap_or(0);
    let executor = match kind {
        "constant-arrival-rate" => {
            need(problems, "rate", s.rate.is_some(), "100");
            need(problems, "duration", s.duration.is_some(), "\"30s\"");
            need(
                problems,
                "pre_allocated_vus",
                s.pre_allocated_vus.is_some(),
                "50",
            );
            Executor::ConstantArrivalRate {
                rate: s.rate.unwrap_or(0),
                time_unit,
                duration: s.duration.map(|d| d.0).unwrap_or_default(),
                pre_allocated_vus: pre,
                max_vus: s.max_vus.unwrap_or(pre),
            }
        }
        "ramping-arrival-rate" => {
            need(
                problems,
                "stages",
                !stages.is_empty(),
                "[{ target = 100, duration = \"30s\" }]",
            );
            need(
                problems,
                "pre_allocated_vus",
                s.pre_allocated_vus.is_some(),
                "50",
            );
            Executor::RampingArrivalRate {
                start_rate: s.start_rate.unwrap_or(0),
                time_unit,
                stages,
                pre_allocated_vus: pre,
                max_vus: s.max_vus.unwrap_or(pre),
            }
        }
        "constant-vus" => {
            need(problems, "duration", s.duration.is_some(), "\"30s\"");
            Executor::ConstantVus {
                vus: s.vus.unwrap_or(1),
                duration: s.duration.map(|d| d.0).unwrap_or_default(),
            }
        }
        "shared-iterations" | "per-vu-iterations" => {
            // k6's defaults: one VU, one iteration, ten minutes at most.
            let (vus, iterations) = (s.vus.unwrap_or(1), s.iterations.unwrap_or(1));
            let max_duration = s
                .max_duration
                .map(|d| d.0)
                .unwrap_or(DEFAULT_ITERATIONS_MAX_DURATION);
            if kind == "shared-iterations" {
                Executor::SharedIterations {
                    vus,
                    iterations,
                    max_duration,
                }
            } else {
                Executor::PerVuIterations {
                    vus,
                    iterations,
                    max_duration,
                }
            }
        }
        _ => {
            need(
                problems,
                "stages",
                !stages.is_empty(),
                "[{ target = 10, duration = \"30s\" }]",
            );
            Executor::RampingVus {
                start_vus: s.start_vus.unwrap_or(1),
                stages,
                graceful_ramp_down: s
                    .graceful_ramp_down
                    .map(|d| d.0)
                    .unwrap_or(DEFAULT_GRACEFUL_RAMP_DOWN),
            }
        }
    };
    if problems.len() == before {
        for (field, msg) in executor.problems() {
            problems.push((path.key(field), msg));
        }
    }
    let (payload, through) = workload(name, s.workload, &path.key("workload"), problems);
    (problems.len() == before).then(|| ScenarioPlan {
        name: name.to_owned(),
        executor,
        start_time: s.start_time.map(|d| d.0).unwrap_or_default(),
        graceful_stop: s
            .graceful_stop
            .map(|d| d.0)
            .unwrap_or(DEFAULT_GRACEFUL_STOP),
        payload,
        through,
    })
}
