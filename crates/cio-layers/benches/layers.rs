//! Each layer's cost per call on a ready no-op service, next to the bare service and the nearest
//! existing equivalent (tower's layers, governor's raw check).
//!
//! ```text
//! cargo bench -p cio-layers --bench layers
//! ```
//!
//! Every case drives `ready().await` then `call().await` on a current-thread runtime, so the
//! difference from `bare` is what the layer adds on the happy path.

use std::convert::Infallible;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration;

use cio_layers::deadline::{DeadlineLayer, Elapsed};
use cio_layers::rate_limit::{Quota, RateLimitLayer};
use cio_layers::retry::{RetryConfig, RetryLayer};
use cio_layers::{ClassifyError, Failure};
use criterion::{criterion_group, criterion_main, Criterion};
use tower::{Layer, Service, ServiceExt};

/// The bench error type: absorbs what the layers may produce.
#[derive(Debug)]
struct BenchError;

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("bench error")
    }
}
impl std::error::Error for BenchError {}
impl From<Elapsed> for BenchError {
    fn from(_: Elapsed) -> Self {
        BenchError
    }
}
impl From<Infallible> for BenchError {
    fn from(e: Infallible) -> Self {
        match e {}
    }
}
impl ClassifyError for BenchError {
    fn classify(&self) -> Failure {
        Failure::PERMANENT
    }
}

/// A ready no-op service.
#[derive(Clone, Copy)]
struct Noop;

impl Service<u64> for Noop {
    type Response = u64;
    type Error = BenchError;
    type Future = std::future::Ready<Result<u64, BenchError>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BenchError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, x: u64) -> Self::Future {
        std::future::ready(Ok(x))
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime")
}

/// Benchmarks `ready + call` through `svc`.
fn bench_service<S>(c: &mut Criterion, group: &str, name: &str, mut svc: S)
where
    S: Service<u64, Response = u64> + 'static,
    S::Error: std::fmt::Debug,
{
    let rt = runtime();
    c.benchmark_group(group).bench_function(name, |b| {
        // One runtime entry per sample, not per call: the loop runs inside the runtime.
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = std::time::Instant::now();
                for i in 0..iters {
                    let r = svc.ready().await.expect("ready");
                    black_box(r.call(black_box(i)).await.expect("call"));
                }
                start.elapsed()
            })
        })
    });
}

fn huge_quota() -> Quota {
    // Never waits during a bench: a billion a second, a burst of a million.
    Quota::per_second(NonZeroU32::new(1_000_000_000).unwrap_or(NonZeroU32::MAX))
        .with_burst(NonZeroU32::new(1_000_000).unwrap_or(NonZeroU32::MAX))
}

fn rate_limit(c: &mut Criterion) {
    bench_service(c, "rate_limit", "bare", Noop);
    bench_service(
        c,
        "rate_limit",
        "cio_layers::RateLimit",
        RateLimitLayer::new(huge_quota()).layer(Noop),
    );
    // tower's fixed window: not Clone-shared, but the nearest equivalent.
    bench_service(
        c,
        "rate_limit",
        "tower::limit::RateLimit",
        tower::limit::RateLimitLayer::new(u64::MAX / 2, Duration::from_secs(1)).layer(
            tower::util::MapErrLayer::new(|e: BenchError| -> tower::BoxError { Box::new(e) })
                .layer(Noop),
        ),
    );
    let governor = governor::RateLimiter::direct(governor::Quota::per_second(
        NonZeroU32::new(1_000_000_000).unwrap_or(NonZeroU32::MAX),
    ));
    c.benchmark_group("rate_limit")
        .bench_function("governor::check (raw, no service)", |b| {
            b.iter(|| black_box(governor.check().is_ok()))
        });
    let local = cio_layers::rate_limit::LocalBackend::new(huge_quota());
    c.benchmark_group("rate_limit")
        .bench_function("LocalBackend::reserve_now (raw, no service)", |b| {
            b.iter(|| black_box(local.reserve_now()))
        });
}

fn retry(c: &mut Criterion) {
    bench_service(c, "retry", "bare", Noop);
    bench_service(
        c,
        "retry",
        "cio_layers::Retry",
        RetryLayer::by_error(RetryConfig::default()).layer(Noop),
    );
    #[derive(Clone)]
    struct Never;
    impl tower::retry::Policy<u64, u64, BenchError> for Never {
        type Future = std::future::Ready<()>;
        fn retry(&mut self, _: &mut u64, _: &mut Result<u64, BenchError>) -> Option<Self::Future> {
            None
        }
        fn clone_request(&mut self, r: &u64) -> Option<u64> {
            Some(*r)
        }
    }
    bench_service(
        c,
        "retry",
        "tower::retry::Retry",
        tower::retry::RetryLayer::new(Never).layer(Noop),
    );
}

fn deadline(c: &mut Criterion) {
    bench_service(c, "deadline", "bare", Noop);
    bench_service(
        c,
        "deadline",
        "cio_layers::Deadline",
        DeadlineLayer::new(Duration::from_secs(10)).layer(Noop),
    );
    bench_service(
        c,
        "deadline",
        "tower::timeout::Timeout",
        tower::timeout::TimeoutLayer::new(Duration::from_secs(10)).layer(Noop),
    );
}

criterion_group!(benches, rate_limit, retry, deadline);
criterion_main!(benches);
