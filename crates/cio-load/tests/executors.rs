//! The executors on tokio's paused clock: exact counts, drops, ramps, stops and thresholds,
//! with a workload that only sleeps (no sockets, no wall-clock noise).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cio_load::workload::workload_fn;
use cio_load::{Bounds, Executor, LoadTest, Outcome, Scenario, Stage, Threshold};
use tokio::time::Instant;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A workload whose every iteration takes `d` and succeeds.
fn sleeping(d: Duration) -> impl cio_load::Workload {
    workload_fn(move |_it| async move {
        let sent = Instant::now();
        tokio::time::sleep(d).await;
        Outcome::success("sleep", "200", sent)
    })
}

/// Runs `scenario` on its own, with the default bounds and no thresholds.
async fn run_alone(scenario: Scenario) -> cio_load::Report {
    LoadTest::new().scenario(scenario).run().await.unwrap()
}

fn constant(rate: u32, duration: f64, pre: u32, max: u32) -> Executor {
    Executor::ConstantArrivalRate {
        rate,
        time_unit: secs(1.0),
        duration: secs(duration),
        pre_allocated_vus: pre,
        max_vus: max,
    }
}

#[tokio::test(start_paused = true)]
async fn constant_rate_starts_every_planned_iteration_on_time() {
    let report = run_alone(Scenario::new(
        "c",
        constant(500, 4.0, 10, 20),
        sleeping(Duration::from_millis(5)),
    ))
    .await;
    let s = &report.scenarios["c"];
    assert_eq!(s.planned_iterations, Some(2000));
    assert_eq!(s.started, 2000);
    assert_eq!(s.iterations, 2000);
    assert_eq!(s.dropped_iterations, 0);
    assert_eq!(s.achieved_rate, 500.0);
    // Each iteration takes 5 ms of service; scheduled starts are honoured within the timer's
    // millisecond, so latency exceeds service time by at most about 1 ms.
    assert!(
        s.service_time.p50 >= 5.0 && s.service_time.p50 < 5.2,
        "{:?}",
        s.service_time
    );
    assert!(s.latency.max < 7.0, "{:?}", s.latency);
    // At 500/s and 5 ms, about 3 VUs are busy at once.
    assert!(s.peak_vus <= 4, "{}", s.peak_vus);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    // The time series has one point a second with the rate.
    let mid: Vec<_> = report
        .time_series
        .iter()
        .filter(|p| p.elapsed_s > 1.5 && p.elapsed_s < 3.5)
        .collect();
    assert!(!mid.is_empty());
    for p in mid {
        assert!((495..=505).contains(&p.started), "{p:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn too_few_vus_drop_iterations_and_warn() {
    // 100/s of 200 ms iterations needs about 20 VUs; 5 can start 25 a second.
    let report = run_alone(Scenario::new(
        "starved",
        constant(100, 2.0, 2, 5),
        sleeping(Duration::from_millis(200)),
    ))
    .await;
    let s = &report.scenarios["starved"];
    assert_eq!(s.started + s.dropped_iterations, 200, "{s:?}");
    assert!((45..=60).contains(&s.started), "{s:?}");
    assert_eq!(s.vus_max, 5);
    assert_eq!(s.peak_vus, 5);
    // Nothing silently delayed: every started iteration's latency is its service time.
    assert!(s.latency.max < 201.5, "{:?}", s.latency);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("insufficient VUs") && w.contains("starved")),
        "{:?}",
        report.warnings
    );
    match &report.metrics["dropped_iterations"] {
        cio_load::report::MetricSummary::Counter { count, .. } => {
            assert_eq!(*count, s.dropped_iterations)
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn the_pool_grows_from_pre_allocated_to_max() {
    let report = run_alone(Scenario::new(
        "grow",
        constant(100, 1.0, 1, 50),
        sleeping(Duration::from_millis(100)),
    ))
    .await;
    let s = &report.scenarios["grow"];
    assert_eq!(s.dropped_iterations, 0);
    assert!((10..=12).contains(&s.vus_max), "{}", s.vus_max);
}

#[tokio::test(start_paused = true)]
async fn a_ramp_follows_its_stages() {
    let ramp = Executor::RampingArrivalRate {
        start_rate: 0,
        time_unit: secs(1.0),
        stages: vec![
            Stage::new(200, secs(2.0)),
            Stage::new(200, secs(1.0)),
            Stage::new(0, secs(1.0)),
        ],
        pre_allocated_vus: 10,
        max_vus: 10,
    };
    let report = run_alone(Scenario::new(
        "ramp",
        ramp,
        sleeping(Duration::from_millis(1)),
    ))
    .await;
    let s = &report.scenarios["ramp"];
    assert_eq!(s.started, 500);
    let per_second: Vec<u64> = report.time_series.iter().map(|p| p.started).collect();
    // Integrals of the ramp over each second: 50, 150, 200, 100.
    let expected = [50u64, 150, 200, 100];
    for (i, want) in expected.iter().enumerate() {
        let got = per_second.get(i).copied().unwrap_or(0);
        assert!(
            got.abs_diff(*want) <= 2,
            "second {i}: {got} vs {want} ({per_second:?})"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn closed_model_vus_loop_and_ramp() {
    let report = LoadTest::new()
        .scenario(Scenario::new(
            "loop",
            Executor::ConstantVus {
                vus: 3,
                duration: secs(1.0),
            },
            sleeping(Duration::from_millis(100)),
        ))
        .scenario(
            Scenario::new(
                "rampvus",
                Executor::RampingVus {
                    start_vus: 0,
                    stages: vec![Stage::new(4, secs(1.0)), Stage::new(4, secs(1.0))],
                    graceful_ramp_down: secs(30.0),
                },
                sleeping(Duration::from_millis(100)),
            )
            .start_time(secs(0.5)),
        )
        .run()
        .await
        .unwrap();
    assert_eq!(report.scenarios["loop"].iterations, 30);
    assert_eq!(report.scenarios["loop"].peak_vus, 3);
    let r = &report.scenarios["rampvus"];
    assert_eq!(r.peak_vus, 4);
    // About 0+1+2+3 VUs over the first second (~15 iterations) and 4 VUs for the second (40).
    assert!((50..=60).contains(&r.iterations), "{r:?}");
}

#[tokio::test(start_paused = true)]
async fn graceful_stop_interrupts_what_runs_too_long() {
    let report = LoadTest::new()
        .scenario(
            Scenario::new(
                "slow",
                constant(10, 1.0, 20, 20),
                sleeping(Duration::from_secs(5)),
            )
            .graceful_stop(secs(1.0)),
        )
        .run()
        .await
        .unwrap();
    let s = &report.scenarios["slow"];
    assert_eq!(s.started, 10);
    assert_eq!(s.iterations, 0);
    assert_eq!(s.interrupted_iterations, 10);
    assert!(report.duration_s < 2.5, "{}", report.duration_s);
}

#[tokio::test(start_paused = true)]
async fn thresholds_pass_fail_and_abort() {
    let fails = Arc::new(AtomicU64::new(0));
    let f = fails.clone();
    let flaky = workload_fn(move |it| {
        let f = f.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if it.number % 2 == 0 {
                f.fetch_add(1, Ordering::Relaxed);
                Outcome::failure("op", "500", it.scheduled)
            } else {
                Outcome::success("op", "200", it.scheduled)
            }
        }
    });
    let report = LoadTest::new()
        .scenario(Scenario::new("flaky", constant(100, 10.0, 10, 10), flaky))
        .threshold(Threshold::parse("latency", "p(95)<500").unwrap())
        .threshold(Threshold::parse("errors{status:500}", "count>0").unwrap())
        .threshold(
            Threshold::parse("errors", "rate<0.1")
                .unwrap()
                .abort_on_fail(true)
                .delay_abort_eval(secs(2.0)),
        )
        .run()
        .await
        .unwrap();
    assert!(!report.passed);
    let verdicts: Vec<_> = report
        .thresholds
        .iter()
        .map(|t| (t.metric.as_str(), t.ok))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("latency", true),
            ("errors{status:500}", true),
            ("errors", false)
        ]
    );
    assert!((report.thresholds[2].value - 0.5).abs() < 0.01);
    // Aborted after the 2 s delay, long before the planned 10 s.
    let reason = report.aborted.as_deref().unwrap_or_default();
    assert!(reason.contains("abort_on_fail"), "{reason}");
    assert!(report.duration_s < 4.0, "{}", report.duration_s);
    assert!(report.scenarios["flaky"].started < 400);
}

#[tokio::test(start_paused = true)]
async fn safety_bounds_refuse_or_stop() {
    let too_long = LoadTest::new()
        .bounds(Bounds {
            max_duration: secs(10.0),
            ..Bounds::default()
        })
        .scenario(Scenario::new(
            "long",
            constant(1, 20.0, 1, 1),
            sleeping(Duration::ZERO),
        ))
        .check()
        .unwrap_err()
        .to_string();
    assert!(too_long.contains("max_duration"), "{too_long}");

    // A closed-model scenario cannot be planned: the iteration cap stops it while it runs.
    let report = LoadTest::new()
        .bounds(Bounds {
            max_iterations: 50,
            ..Bounds::default()
        })
        .scenario(Scenario::new(
            "busy",
            Executor::ConstantVus {
                vus: 2,
                duration: secs(60.0),
            },
            sleeping(Duration::from_millis(10)),
        ))
        .run()
        .await
        .unwrap();
    assert_eq!(report.scenarios["busy"].started, 50);
    assert!(report.aborted.unwrap().contains("max_iterations"));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_iteration_is_reported_and_its_vu_goes_on() {
    // One VU, 10 iterations a second for 1 s, every third panics: the VU must take every
    // iteration still (none dropped), and the panics must be reported, not lost.
    let report = run_alone(Scenario::new(
        "buggy",
        constant(10, 1.0, 1, 1),
        workload_fn(|it| async move {
            let sent = Instant::now();
            tokio::time::sleep(Duration::from_millis(5)).await;
            assert!(it.number % 3 != 1, "a bug in the workload");
            Outcome::success("sleep", "200", sent)
        }),
    ))
    .await;
    let s = &report.scenarios["buggy"];
    assert_eq!(s.started, 10, "{s:?}");
    assert_eq!(s.dropped_iterations, 0, "{s:?}");
    assert_eq!(s.iterations, 7, "{s:?}");
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("panicked") && w.contains("buggy")),
        "{:?}",
        report.warnings
    );
}

#[tokio::test(start_paused = true)]
async fn a_ramped_down_vu_gets_graceful_ramp_down_to_finish() {
    // Two VUs start 5 s iterations at once; after 1 s the ramp wants one. The VU removed has
    // `graceful_ramp_down` to finish: 0.5 s is too short (interrupted), 10 s is enough.
    for (grace, completed, interrupted) in [(0.5, 1, 1), (10.0, 2, 0)] {
        let report = run_alone(Scenario::new(
            "ramp",
            Executor::RampingVus {
                start_vus: 2,
                stages: vec![Stage::new(2, secs(1.0)), Stage::new(1, secs(2.0))],
                graceful_ramp_down: secs(grace),
            },
            sleeping(Duration::from_secs(5)),
        ))
        .await;
        let s = &report.scenarios["ramp"];
        assert_eq!(s.started, 2, "grace {grace}: {s:?}");
        assert_eq!(s.iterations, completed, "grace {grace}: {s:?}");
        assert_eq!(
            s.interrupted_iterations, interrupted,
            "grace {grace}: {s:?}"
        );
    }
}

/// A test on a runtime of its own (`LoadTest::threads`): one thread or several, on the real
/// clock. The iterations run on the test's threads, not the caller's, and the report and
/// `stop` work as on the caller's runtime.
#[tokio::test]
async fn a_test_runs_on_threads_of_its_own() {
    for threads in [1, 2] {
        let caller = std::thread::current().id();
        let on_caller = Arc::new(AtomicU64::new(0));
        let seen = on_caller.clone();
        let workload = workload_fn(move |_it| {
            let seen = seen.clone();
            async move {
                if std::thread::current().id() == caller {
                    seen.fetch_add(1, Ordering::Relaxed);
                }
                let sent = Instant::now();
                tokio::time::sleep(Duration::from_millis(2)).await;
                Outcome::success("sleep", "200", sent)
            }
        });
        let report = LoadTest::new()
            .scenario(Scenario::new("t", constant(200, 0.5, 5, 10), workload))
            .threads(std::num::NonZeroUsize::new(threads).unwrap())
            .run()
            .await
            .unwrap();
        let s = &report.scenarios["t"];
        assert_eq!(s.iterations, 100, "threads = {threads}");
        assert_eq!(s.dropped_iterations, 0, "threads = {threads}");
        assert_eq!(on_caller.load(Ordering::Relaxed), 0, "threads = {threads}");
    }

    // Stopped early, it still reports.
    let mut handle = LoadTest::new()
        .scenario(Scenario::new(
            "long",
            constant(100, 60.0, 5, 10),
            sleeping(Duration::from_millis(1)),
        ))
        .threads(std::num::NonZeroUsize::MIN)
        .start()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    handle.stop();
    let report = tokio::time::timeout(Duration::from_secs(10), handle.finish())
        .await
        .expect("a stopped test ends")
        .unwrap();
    assert!(report.aborted.is_some(), "{:?}", report.aborted);
    assert!(report.scenarios["long"].iterations < 6000);
}

/// When each iteration started, by iteration number.
type Starts = Arc<std::sync::Mutex<Vec<(u64, Instant)>>>;

/// A workload that records when each iteration started; iteration 0 takes `slow`, every other
/// one 10 ms.
fn recording(slow: Duration) -> (impl cio_load::Workload, Starts) {
    let starts = Starts::default();
    let log = Arc::clone(&starts);
    let workload = workload_fn(move |it| {
        let log = Arc::clone(&log);
        async move {
            let sent = Instant::now();
            log.lock().unwrap().push((it.number, sent));
            let d = if it.number == 0 {
                slow
            } else {
                Duration::from_millis(10)
            };
            tokio::time::sleep(d).await;
            Outcome::success("sleep", "200", sent)
        }
    });
    (workload, starts)
}

#[tokio::test(start_paused = true)]
async fn shared_iterations_run_the_count_once_with_free_vus_taking_the_next() {
    let t0 = Instant::now();
    let (workload, starts) = recording(Duration::from_secs(1));
    let report = run_alone(Scenario::new(
        "shared",
        Executor::SharedIterations {
            vus: 2,
            iterations: 4,
            max_duration: secs(600.0),
        },
        workload,
    ))
    .await;
    let s = &report.scenarios["shared"];
    assert_eq!((s.started, s.iterations), (4, 4));
    assert_eq!(s.planned_iterations, Some(4));
    assert_eq!(s.target_rate, None);
    // While one VU is stuck in iteration 0 for a second, the other takes 1, 2 and 3 at once.
    let starts = starts.lock().unwrap().clone();
    let last = starts.iter().find(|(n, _)| *n == 3).unwrap().1;
    assert!(last - t0 < Duration::from_millis(50), "{:?}", last - t0);
    // It ends when the iterations are done, and its duration and rate are over that time.
    assert!((s.duration_s - 1.0).abs() < 0.05, "{}", s.duration_s);
    assert!((s.achieved_rate - 4.0).abs() < 0.3, "{}", s.achieved_rate);
    assert!(report.duration_s < 1.1, "{}", report.duration_s);
    assert_eq!(
        s.plan,
        "4 iterations shared among 2 VUs (maxDuration: 10m, gracefulStop: 30s)"
    );
}

#[tokio::test(start_paused = true)]
async fn per_vu_iterations_give_each_vu_its_own_count() {
    let t0 = Instant::now();
    let (workload, starts) = recording(Duration::from_secs(1));
    let report = run_alone(Scenario::new(
        "each",
        Executor::PerVuIterations {
            vus: 2,
            iterations: 2,
            max_duration: secs(600.0),
        },
        workload,
    ))
    .await;
    let s = &report.scenarios["each"];
    assert_eq!((s.started, s.iterations), (4, 4));
    assert_eq!(s.planned_iterations, Some(4));
    // The free VU stops after its own two; the slow one's second iteration (number 3) starts
    // only when iteration 0 ends, a second in.
    let starts = starts.lock().unwrap().clone();
    let last = starts.iter().find(|(n, _)| *n == 3).unwrap().1;
    assert!(
        (last - t0).as_secs_f64() >= 1.0 && (last - t0).as_secs_f64() < 1.05,
        "{:?}",
        last - t0
    );
    assert!((s.duration_s - 1.01).abs() < 0.05, "{}", s.duration_s);
}

#[tokio::test(start_paused = true)]
async fn the_iteration_executors_stop_starting_at_max_duration() {
    for executor in [
        Executor::SharedIterations {
            vus: 1,
            iterations: 1_000,
            max_duration: secs(1.0),
        },
        Executor::PerVuIterations {
            vus: 1,
            iterations: 1_000,
            max_duration: secs(1.0),
        },
    ] {
        let name = executor.name();
        let report = run_alone(
            Scenario::new("capped", executor, sleeping(Duration::from_millis(300)))
                .graceful_stop(Duration::ZERO),
        )
        .await;
        let s = &report.scenarios["capped"];
        // Starts at 0, 0.3, 0.6 and 0.9 s; the one running at 1 s is interrupted (no grace).
        assert_eq!(s.started, 4, "{name}");
        assert_eq!((s.iterations, s.interrupted_iterations), (3, 1), "{name}");
        assert!(report.duration_s < 1.05, "{name}: {}", report.duration_s);
    }
}
