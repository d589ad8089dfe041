//! What the load generator costs per request: a `shared-iterations` scenario (16 VUs, as fast
//! as they go) over a workload that does nothing, so only the generator is measured
//! (scheduling, VUs, the latency histograms, the per-second samples); and the same through
//! the raw Track client to the embedded mock, a real request each. Criterion reports
//! iterations per second; its time per element is the cost of one.
//!
//! ```text
//! cargo bench --bench load_generator
//! ```

use std::time::Duration;

use cio_load::workload::{workload_fn, CioWorkload, PayloadGenerator, PayloadSpec, Through};
use cio_load::{Connection, Executor, LoadTest, Outcome, Scenario};
mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const ITERATIONS: u64 = 20_000;

fn shared(iterations: u64) -> Executor {
    Executor::SharedIterations {
        vus: 16,
        iterations,
        max_duration: Duration::from_secs(60),
    }
}

fn load_generator(c: &mut Criterion) {
    let (rt, mock) = common::runtime_and_mock();
    let mut group = c.benchmark_group("load_generator");
    group.throughput(Throughput::Elements(ITERATIONS));
    group.sample_size(10);

    group.bench_function("noop_workload", |b| {
        b.to_async(&rt).iter(|| async {
            let workload =
                workload_fn(|it| async move { Outcome::success("noop", "ok", it.scheduled) });
            let report = LoadTest::new()
                .scenario(Scenario::new("noop", shared(ITERATIONS), workload))
                .run()
                .await
                .expect("a run");
            assert_eq!(report.scenarios["noop"].iterations, ITERATIONS);
        })
    });

    let conn = Connection::new(
        mock.region(),
        cio_api::TrackCredentials::new("site", "key"),
        cio_api::AppCredentials::new("app"),
    );
    group.bench_function("track_to_mock", |b| {
        b.to_async(&rt).iter(|| {
            let conn = conn.clone();
            async move {
                let events = PayloadSpec {
                    mix: [0, 1, 0, 0],
                    attributes: 5,
                    ..PayloadSpec::default()
                };
                let workload = CioWorkload::new(
                    &conn,
                    Through::Client,
                    PayloadGenerator::new(events, "events"),
                    "events",
                )
                .expect("a workload");
                let report = LoadTest::new()
                    .scenario(Scenario::new("events", shared(ITERATIONS), workload))
                    .run()
                    .await
                    .expect("a run");
                let s = &report.scenarios["events"];
                assert_eq!((s.iterations, s.errors), (ITERATIONS, 0));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, load_generator);
criterion_main!(benches);
