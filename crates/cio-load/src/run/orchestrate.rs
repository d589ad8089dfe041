//! The owner task of a run: it starts the scenarios, samples their numbers once a second (time
//! series, live view, aborting thresholds), enforces `max_duration`, and builds the report.

use std::io::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::{Live, LoadTest, Warnings};
use crate::executor::{self, IterationBudget, ScenarioContext};
use crate::metrics::{MetricsStore, ScenarioMetrics, TagFilter, TrendStats, Window};
use crate::report::ScenarioLive;
use crate::report::{Point, Report};
use crate::samples::Samples;
use crate::scenario::Scenario;
use crate::threshold::Threshold;

struct Running {
    scenario: Scenario,
    metrics: Arc<ScenarioMetrics>,
    last_started: u64,
    last_dropped: u64,
    done: bool,
}

pub(super) async fn orchestrate(
    test: LoadTest,
    abort: CancellationToken,
    live: watch::Sender<Live>,
) -> Report {
    let LoadTest {
        scenarios,
        thresholds,
        bounds,
        mut time_series,
        target,
        warnings: early_warnings,
        threads: _,
        trend_columns,
        samples,
    } = test;
    let samples = (!samples.is_empty()).then(|| {
        Arc::new(Samples::new(
            samples,
            thresholds
                .iter()
                .map(|t| (t.key.clone(), t.expression.clone())),
        ))
    });
    let warnings = Warnings::default();
    for w in early_warnings {
        warnings.push(w);
    }
    let t0 = Instant::now();
    let started_at = SystemTime::now();
    let budget = Arc::new(IterationBudget::new(bounds.max_iterations));
    let mut running: Vec<Running> = Vec::new();
    let mut set: JoinSet<usize> = JoinSet::new();
    for (index, scenario) in scenarios.into_iter().enumerate() {
        let metrics = Arc::new(ScenarioMetrics::new(scenario.name.clone(), samples.clone()));
        let ctx = ScenarioContext {
            name: scenario.name.clone(),
            workload: scenario.workload.clone(),
            metrics: metrics.clone(),
            budget: budget.clone(),
            abort: abort.clone(),
            warnings: warnings.clone(),
        };
        let s = scenario.clone();
        set.spawn(async move {
            let start = t0 + s.start_time;
            tokio::select! {
                biased;
                _ = ctx.abort.cancelled() => {}
                _ = sleep_until(start) => {
                    if s.executor.is_arrival_rate() {
                        executor::arrival::run(ctx.clone(), &s.executor, start, s.graceful_stop).await;
                    } else {
                        executor::vus::run(ctx.clone(), &s.executor, start, s.graceful_stop).await;
                    }
                    ctx.metrics.ran(start.elapsed());
                }
            }
            s.workload.close().await;
            index
        });
        running.push(Running {
            scenario,
            metrics,
            last_started: 0,
            last_dropped: 0,
            done: false,
        });
    }
    let store = MetricsStore::new(
        running.iter().map(|r| r.metrics.clone()).collect(),
        samples.clone(),
    );
    let hard_deadline = t0 + bounds.max_duration;
    let mut series: Vec<Point> = Vec::new();
    let mut next_sample = t0 + Duration::from_secs(1);
    let mut last_sample = t0;
    loop {
        tokio::select! {
            biased;
            done = set.join_next() => match done {
                Some(Ok(i)) => {
                    if let Some(r) = running.get_mut(i) {
                        r.done = true;
                    }
                }
                Some(Err(e)) => warnings.push(format!("a scenario task failed: {e}")),
                None => break,
            },
            _ = sleep_until(hard_deadline), if !abort.is_cancelled() => {
                warnings.abort(&abort, "the test reached max_duration");
            }
            _ = sleep_until(next_sample) => {
                let now = Instant::now();
                sample(&mut running, &store, t0, now - last_sample, now, &mut series, &mut time_series, &live, &warnings);
                last_sample = now;
                next_sample += Duration::from_secs(1);
                check_aborts(&thresholds, &store, now - t0, &abort, &warnings);
            }
        }
    }
    if abort.is_cancelled() && warnings.abort_reason().is_none() {
        warnings.abort(&abort, "stopped before the end (interrupted)");
    }
    let now = Instant::now();
    if now > last_sample + Duration::from_millis(10) {
        sample(
            &mut running,
            &store,
            t0,
            now - last_sample,
            now,
            &mut series,
            &mut time_series,
            &live,
            &warnings,
        );
    }
    if let Some(out) = time_series.as_mut() {
        if let Err(e) = out.flush() {
            warnings.push(format!("cannot write the time series: {e}"));
        }
    }
    if let Some(failure) = samples.as_ref().and_then(|s| s.finish()) {
        warnings.push(failure);
    }
    let elapsed = now - t0;
    for r in &running {
        let dropped = r.metrics.dropped.load(Relaxed);
        if dropped > 0 {
            warnings.push(format!(
                "scenario {:?}: {dropped} iterations were dropped because all {} VUs were busy (peak {} busy); raise max_vus",
                &*r.scenario.name,
                r.metrics.allocated_vus.load(Relaxed),
                r.metrics.peak_vus.load(Relaxed),
            ));
        }
    }
    let verdicts: Vec<_> = thresholds
        .iter()
        .map(|t| (t.clone(), t.evaluate(&store, elapsed)))
        .collect();
    let scenarios: Vec<_> = running
        .iter()
        .map(|r| (r.scenario.clone(), r.metrics.clone()))
        .collect();
    Report::build(crate::report::BuildInput {
        started_at,
        elapsed,
        target,
        scenarios: &scenarios,
        store: &store,
        verdicts,
        aborted: warnings.abort_reason(),
        warnings: warnings.list(),
        time_series: series,
        trend_columns: &trend_columns,
    })
}

#[allow(clippy::too_many_arguments)]
fn sample(
    running: &mut [Running],
    store: &MetricsStore,
    t0: Instant,
    window: Duration,
    now: Instant,
    series: &mut Vec<Point>,
    out: &mut Option<Box<dyn Write + Send>>,
    live: &watch::Sender<Live>,
    warnings: &Warnings,
) {
    let elapsed = now - t0;
    let wall = SystemTime::now();
    let secs = window.as_secs_f64().max(1e-9);
    let mut dropped_now: Vec<(Arc<str>, u64)> = Vec::new();
    let mut view = Live {
        elapsed,
        planned: live.borrow().planned,
        ..Live::default()
    };
    for r in running.iter_mut() {
        let Window {
            series: w,
            errors_by_status,
        } = r.metrics.take_window();
        let started = r.metrics.started.load(Relaxed);
        let dropped = r.metrics.dropped.load(Relaxed);
        let (d_started, d_dropped) = (started - r.last_started, dropped - r.last_dropped);
        r.last_started = started;
        r.last_dropped = dropped;
        dropped_now.push((r.scenario.name.clone(), d_dropped));
        let since_start = elapsed.checked_sub(r.scenario.start_time);
        let target_rate = since_start.and_then(|t| r.scenario.executor.rate_at(t));
        let active = since_start.is_some() && !(r.done && w.count == 0 && d_started == 0);
        let vus = r.metrics.active_vus.load(Relaxed);
        let vus_max = r.metrics.allocated_vus.load(Relaxed);
        view.target_rate += target_rate.unwrap_or(0.0);
        view.achieved_rate += d_started as f64 / secs;
        view.vus += vus;
        view.vus_max += vus_max;
        let totals = r.metrics.merged(&TagFilter::default());
        view.scenarios.push(ScenarioLive {
            name: r.scenario.name.to_string(),
            elapsed: since_start
                .unwrap_or_default()
                .min(r.scenario.executor.duration()),
            planned: r.scenario.executor.duration(),
            target_rate,
            achieved_rate: if since_start.is_some() && !r.done {
                d_started as f64 / secs
            } else {
                0.0
            },
            vus,
            vus_max,
            iterations: totals.count,
            errors: totals.failed,
            dropped,
            done: r.done,
        });
        if !active {
            continue;
        }
        let point = Point {
            time: humantime::format_rfc3339_millis(wall).to_string(),
            elapsed_s: elapsed.as_secs_f64(),
            scenario: r.scenario.name.to_string(),
            target_rate,
            started: d_started,
            iterations: w.count,
            rate: w.count as f64 / secs,
            dropped_iterations: d_dropped,
            errors: w.failed,
            errors_by_status: errors_by_status.into_iter().collect(),
            error_rate: if w.count == 0 {
                0.0
            } else {
                w.failed as f64 / w.count as f64
            },
            entries: w.entries,
            window_s: secs,
            latency: TrendStats::of(&w.latency),
            service_time: TrendStats::of(&w.service),
            vus,
            vus_max,
        };
        if let Some(o) = out.as_mut() {
            let written = serde_json::to_writer(&mut *o, &point)
                .map_err(std::io::Error::from)
                .and_then(|()| o.write_all(b"\n"));
            if let Err(e) = written {
                warnings.push(format!("cannot write the time series: {e}"));
                *out = None;
            }
        }
        series.push(point);
    }
    if let Some(o) = out.as_mut() {
        let _ = o.flush();
    }
    let all = store.aggregate(crate::metrics::Metric::Errors, &Default::default());
    if let crate::metrics::Aggregate::Rate { failed, total } = all {
        view.iterations = total;
        view.errors = failed;
    }
    view.dropped = running
        .iter()
        .map(|r| r.metrics.dropped.load(Relaxed))
        .sum();
    let dropped: Vec<(&str, u64)> = dropped_now.iter().map(|(s, n)| (&**s, *n)).collect();
    store.sample_gauges(&dropped);
    live.send_replace(view);
}

fn check_aborts(
    thresholds: &[Threshold],
    store: &MetricsStore,
    elapsed: Duration,
    abort: &CancellationToken,
    warnings: &Warnings,
) {
    for t in thresholds.iter().filter(|t| t.abort_on_fail) {
        if elapsed < t.delay_abort_eval {
            continue;
        }
        let v = t.evaluate(store, elapsed);
        if !v.ok {
            warnings.abort(
                abort,
                &format!(
                    "threshold {} {} failed (value {}) and has abort_on_fail",
                    t.key,
                    t.expression,
                    crate::report::number(v.value)
                ),
            );
            return;
        }
    }
}
