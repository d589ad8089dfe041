//! The numbers, proven against the embedded mock over loopback (real time, real sockets).
//!
//! These tests run one at a time (a lock), each on its own 2-worker runtime, and measure what a
//! busy machine cannot blur: iterations started against iterations scheduled, drops against the
//! iterations due during a stall, latency against the stall's length. Wall-clock windows are
//! only used where the expected count is computed for the window actually sampled.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use cio_load::report::Report;
use cio_load::workload::{CioWorkload, PayloadGenerator, PayloadSpec, Through};
use cio_load::{Connection, Executor, LoadTest, Scenario, Stage};
use cio_mock::{Faults, Latency, MockHandle, MockServer};

static SERIAL: Mutex<()> = Mutex::new(());

fn run<F: Future<Output = ()>>(f: F) {
    let _guard = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f);
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn connection(mock: &MockHandle) -> Connection {
    Connection::new(
        mock.region(),
        cio_api::TrackCredentials::new("site", "key"),
        cio_api::AppCredentials::new("app"),
    )
}

fn workload(mock: &MockHandle, name: &str, spec: PayloadSpec, through: Through) -> CioWorkload {
    CioWorkload::new(
        &connection(mock),
        through,
        PayloadGenerator::new(spec, name),
        name,
    )
    .unwrap()
}

fn events() -> PayloadSpec {
    PayloadSpec {
        mix: [0, 1, 0, 0],
        ..PayloadSpec::default()
    }
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

/// One 5 s run at 2,000/s; `Err` says what missed.
async fn pace_once() -> Result<(), String> {
    let mock = MockServer::builder().unlimited().start().await.unwrap();
    let report = LoadTest::new()
        .scenario(Scenario::new(
            "pace",
            constant(2000, 5.0, 50, 1000),
            workload(&mock, "pace", events(), Through::Client),
        ))
        .run()
        .await
        .unwrap();
    let s = &report.scenarios["pace"];
    assert_eq!(s.planned_iterations, Some(10_000));
    // Every iteration that started was served, without error, and the mock saw it.
    assert_eq!(s.iterations, s.started);
    assert_eq!(s.errors, 0, "{:?}", s.operations);
    assert_eq!(mock.stats().accepted.get("event").copied(), Some(s.started));
    // Achieved: iterations started at their scheduled instant within the run, against those
    // scheduled. Drops (no free VU) are the only way to miss.
    let achieved = s.started as f64 / 10_000.0;
    if achieved < 0.98 || (s.achieved_rate - 2000.0).abs() > 40.0 {
        return Err(format!(
            "achieved {achieved:.4} ({:.1}/s), {} dropped, service p50 {:.1} ms",
            s.achieved_rate, s.dropped_iterations, s.service_time.p50
        ));
    }
    // Started on time: the median request was not queued behind the generator.
    if s.latency.p50 >= 50.0 {
        return Err(format!("latency p50 {:.1} ms", s.latency.p50));
    }
    Ok(())
}

/// On a quiet machine the debug build sustains 2,000/s with room to spare; on one shared with
/// compilers the mock and the client (both in this debug process) can fall behind for seconds,
/// so a miss is retried: the generator must show it can pace 2,000/s, not that the machine was
/// never busy.
#[test]
fn a_constant_2000_per_second_for_5_s_achieves_its_rate() {
    run(on_a_quiet_enough_run(pace_once));
}

#[test]
fn a_ramp_against_the_mock_follows_its_stages() {
    run(async {
        let mock = MockServer::builder().unlimited().start().await.unwrap();
        let ramp = Executor::RampingArrivalRate {
            start_rate: 0,
            time_unit: secs(1.0),
            stages: vec![
                Stage::new(1000, secs(2.0)),
                Stage::new(1000, secs(1.0)),
                Stage::new(0, secs(1.0)),
            ],
            pre_allocated_vus: 20,
            max_vus: 200,
        };
        let planned = |t: f64| -> f64 {
            // Iterations due by t: 250 t^2 up to 2 s, then 1000/s, then down to 0 at 4 s.
            match t {
                t if t <= 2.0 => 250.0 * t * t,
                t if t <= 3.0 => 1000.0 + 1000.0 * (t - 2.0),
                t if t <= 4.0 => 2000.0 + 1000.0 * (t - 3.0) - 500.0 * (t - 3.0) * (t - 3.0),
                _ => 2500.0,
            }
        };
        let report = LoadTest::new()
            .scenario(Scenario::new(
                "ramp",
                ramp,
                workload(&mock, "ramp", events(), Through::Client),
            ))
            .run()
            .await
            .unwrap();
        let s = &report.scenarios["ramp"];
        assert_eq!(s.planned_iterations, Some(2500));
        assert_eq!(s.started + s.dropped_iterations, 2500);
        assert_eq!(s.dropped_iterations, 0);
        // Each one-second window started what the ramp planned for that window.
        let mut from = 0.0f64;
        for p in report.time_series.iter().filter(|p| p.scenario == "ramp") {
            let to = p.elapsed_s.min(4.0);
            let want = planned(to) - planned(from.min(4.0));
            let got = p.started as f64;
            assert!(
                (got - want).abs() <= want * 0.05 + 10.0,
                "window to {to}: started {got}, planned {want:.0}"
            );
            from = p.elapsed_s;
        }
    });
}

/// 1,000/s for 10 s; every request that arrives between 3 s and 4 s is held for 1 s.
async fn stalled_run(pre: u32, max: u32) -> (Report, MockHandle) {
    let mock = MockServer::builder().unlimited().start().await.unwrap();
    let mut handle = LoadTest::new()
        .scenario(
            Scenario::new(
                "stall",
                constant(1000, 10.0, pre, max),
                workload(&mock, "stall", events(), Through::Client),
            )
            .graceful_stop(secs(5.0)),
        )
        .start()
        .unwrap();
    tokio::time::sleep(secs(3.0)).await;
    let stall = Faults {
        latency_ms: Some(Latency::fixed(secs(1.0))),
        ..Faults::default()
    };
    mock.set_faults(stall).unwrap();
    tokio::time::sleep(secs(1.0)).await;
    mock.set_faults(Faults::default()).unwrap();
    (handle.finish().await.unwrap(), mock)
}

/// Runs `attempt` up to three times while it reports `Err`: for the bounds a machine shared with
/// compilers can break (extra drops when the debug build falls behind), not for the invariants,
/// which each attempt asserts outright.
async fn on_a_quiet_enough_run<F, Fut>(attempt: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut misses = Vec::new();
    for _ in 0..3 {
        match attempt().await {
            Ok(()) => return,
            Err(e) => {
                eprintln!("missed (retrying): {e}");
                misses.push(e);
            }
        }
    }
    panic!("missed three times: {misses:#?}");
}

#[test]
fn coordinated_omission_a_stall_shows_in_latency_with_enough_vus() {
    run(on_a_quiet_enough_run(|| async {
        let (report, _mock) = stalled_run(200, 4000).await;
        let s = &report.scenarios["stall"];
        assert_eq!(s.started + s.dropped_iterations, 10_000);
        assert_eq!(s.iterations, s.started);
        // About a tenth of the iterations were due during the stall and waited about 1 s.
        assert!(
            s.latency.p99 >= 500.0,
            "p99 {} ms: {:?}",
            s.latency.p99,
            s.latency
        );
        assert!(s.latency.max >= 900.0, "{:?}", s.latency);
        assert!(s.peak_vus >= 500, "{}", s.peak_vus);
        if s.dropped_iterations > 100 {
            return Err(format!("{} dropped with 4,000 VUs", s.dropped_iterations));
        }
        Ok(())
    }));
}

#[test]
fn coordinated_omission_with_10_vus_the_stall_shows_as_dropped_iterations() {
    run(on_a_quiet_enough_run(|| async {
        let (report, _mock) = stalled_run(10, 10).await;
        let s = &report.scenarios["stall"];
        // Every scheduled iteration is accounted for: started (and measured) or dropped.
        assert_eq!(s.started + s.dropped_iterations, 10_000, "{s:?}");
        assert_eq!(s.iterations + s.interrupted_iterations, s.started);
        assert_eq!(s.latency.count, s.iterations);
        // The ~1,000 iterations due while the 10 VUs were stuck were dropped, not delayed.
        assert!(s.dropped_iterations >= 850, "{s:?}");
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.contains("insufficient VUs")),
            "{:?}",
            report.warnings
        );
        // The drops happened around the stall (seconds 3 to 5 of the series).
        let around: u64 = report
            .time_series
            .iter()
            .filter(|p| p.elapsed_s > 3.0 && p.elapsed_s < 6.0)
            .map(|p| p.dropped_iterations)
            .sum();
        if s.dropped_iterations > 1300 || around * 10 < s.dropped_iterations * 8 {
            return Err(format!(
                "{} dropped, {around} of them around the stall",
                s.dropped_iterations
            ));
        }
        Ok(())
    }));
}

#[test]
fn too_few_vus_for_the_rate_drop_iterations_and_warn() {
    run(async {
        // 50 ms per request, 2 VUs: 40 iterations/s at most, 200/s asked.
        let mock = MockServer::builder()
            .unlimited()
            .faults(Faults {
                latency_ms: Some(Latency::fixed(Duration::from_millis(50))),
                ..Faults::default()
            })
            .start()
            .await
            .unwrap();
        let report = LoadTest::new()
            .scenario(Scenario::new(
                "starved",
                constant(200, 2.0, 1, 2),
                workload(&mock, "starved", events(), Through::Client),
            ))
            .run()
            .await
            .unwrap();
        let s = &report.scenarios["starved"];
        assert!(s.dropped_iterations > 0, "{s:?}");
        assert_eq!(s.started + s.dropped_iterations, 400);
        assert!(s.started <= 100, "{s:?}");
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.contains("starved") && w.contains("raise max_vus")),
            "{:?}",
            report.warnings
        );
    });
}

#[test]
fn every_operation_through_the_clients_and_the_stack_reaches_the_mock() {
    run(async {
        let mock = MockServer::builder().unlimited().start().await.unwrap();
        let mixed = PayloadSpec {
            mix: [2, 2, 1, 1],
            batch_size: 10,
            ..PayloadSpec::default()
        };
        let stacked = PayloadSpec {
            mix: [1, 1, 1, 0],
            batch_size: 10,
            ..PayloadSpec::default()
        };
        let stack = cio_api::stack::StackConfig {
            rate: cio_layers::rate_limit::Quota::per_second(
                std::num::NonZeroU32::new(1000).unwrap(),
            )
            .with_burst(std::num::NonZeroU32::new(100).unwrap()),
            ..cio_api::stack::StackConfig::default()
        };
        let report = LoadTest::new()
            .scenario(Scenario::new(
                "client",
                constant(200, 2.0, 10, 50),
                workload(&mock, "client", mixed, Through::Client),
            ))
            .scenario(Scenario::new(
                "stack",
                constant(200, 2.0, 50, 200),
                workload(&mock, "stack", stacked, Through::Stack(Box::new(stack))),
            ))
            .run()
            .await
            .unwrap();
        let client = &report.scenarios["client"];
        assert_eq!(client.errors, 0, "{:?}", client.operations);
        for op in ["identify", "track", "batch", "transactional"] {
            let o = &client.operations[op];
            assert!(o.iterations > 0, "{op}");
            // Track v1, v2 batch and the App API all answer 200.
            assert!(
                o.statuses.contains_key("200"),
                "{op}: {:?}",
                o.statuses.keys()
            );
        }
        let stack = &report.scenarios["stack"];
        assert_eq!(stack.errors, 0, "{:?}", stack.operations);
        assert_eq!(stack.started, 400);
        assert!(stack.operations["track"].statuses.contains_key("ok"));
        // Identify went as v1 PUT /customers/{id} (the seed sent it as POST), sends as App API.
        let stats = mock.stats();
        let entries = client.entries + stack.entries;
        let accepted: u64 = stats.accepted.values().sum();
        assert_eq!(accepted, entries, "{stats:?}");
        assert_eq!(
            stats.accepted.get("send_email").copied(),
            Some(client.operations["transactional"].iterations)
        );
        // The stack batched: far fewer requests than operations.
        assert!(
            stats.requests < entries,
            "{} requests for {entries} entries",
            stats.requests
        );
    });
}
