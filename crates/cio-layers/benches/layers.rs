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

use std::num::NonZeroUsize;
use std::sync::Arc;

use cio_layers::batch::{BatchConfig, BatchLayer, Weigh};
use cio_layers::concurrency::{AdaptiveConcurrencyLayer, AdaptiveConfig};
use cio_layers::deadline::{DeadlineLayer, Elapsed};
use cio_layers::metrics::MetricsLayer;
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
fn bench_service<S>(c: &mut Criterion, group: &str, name: &str, make: impl FnOnce() -> S)
where
    S: Service<u64, Response = u64> + 'static,
    S::Error: std::fmt::Debug,
{
    bench_service_in(c, runtime(), group, name, make)
}

/// [`bench_service`] with the service built and driven in `rt`.
fn bench_service_in<S>(
    c: &mut Criterion,
    rt: tokio::runtime::Runtime,
    group: &str,
    name: &str,
    make: impl FnOnce() -> S,
) where
    S: Service<u64, Response = u64> + 'static,
    S::Error: std::fmt::Debug,
{
    // Built inside the runtime: some services (tower's RateLimit) start a timer when built.
    let mut svc = {
        let _entered = rt.enter();
        make()
    };
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
    use cio_layers::rate_limit::{ClockSource, LocalBackend};
    bench_service(c, "rate_limit", "bare", || Noop);
    // Built in a current-thread runtime, the limit reads tokio's clock (tests pause it there).
    bench_service(
        c,
        "rate_limit",
        "cio_layers::RateLimit (tokio clock)",
        || RateLimitLayer::new(huge_quota()).layer(Noop),
    );
    // Built in a multi-thread runtime (the `cio` binary, a server), it reads the CPU counter.
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .expect("a runtime");
    bench_service_in(
        c,
        multi,
        "rate_limit",
        "cio_layers::RateLimit (TSC clock, multi-thread runtime)",
        || {
            let layer = RateLimitLayer::new(huge_quota());
            assert_eq!(layer.backend().clock(), ClockSource::Tsc);
            layer.layer(Noop)
        },
    );
    // tower's fixed window: not Clone-shared, but the nearest equivalent.
    bench_service(c, "rate_limit", "tower::limit::RateLimit", || {
        tower::limit::RateLimitLayer::new(u64::MAX / 2, Duration::from_secs(1)).layer(
            tower::util::MapErrLayer::new(|e: BenchError| -> tower::BoxError { Box::new(e) })
                .layer(Noop),
        )
    });
    let governor = governor::RateLimiter::direct(governor::Quota::per_second(
        NonZeroU32::new(1_000_000_000).unwrap_or(NonZeroU32::MAX),
    ));
    c.benchmark_group("rate_limit")
        .bench_function("governor::check (raw, no service)", |b| {
            b.iter(|| black_box(governor.check().is_ok()))
        });
    for (name, clock) in [
        (
            "LocalBackend::reserve_now (raw, TSC clock)",
            ClockSource::Tsc,
        ),
        (
            "LocalBackend::reserve_now (raw, tokio clock)",
            ClockSource::Tokio,
        ),
    ] {
        let local = LocalBackend::with_clock(huge_quota(), clock);
        c.benchmark_group("rate_limit")
            .bench_function(name, |b| b.iter(|| black_box(local.reserve_now())));
    }
    // The clocks a decision may read: tokio's (with tokio's `test-util` feature, on in this
    // bench through the dev-dependencies, it also checks for a paused clock), std's, and the
    // CPU counter through quanta.
    c.benchmark_group("rate_limit")
        .bench_function("tokio::time::Instant::now", |b| {
            b.iter(|| black_box(tokio::time::Instant::now()))
        });
    c.benchmark_group("rate_limit")
        .bench_function("std::time::Instant::now", |b| {
            b.iter(|| black_box(std::time::Instant::now()))
        });
    let tsc = quanta::Clock::new();
    c.benchmark_group("rate_limit")
        .bench_function("quanta::Clock::raw (the TSC read)", |b| {
            b.iter(|| black_box(tsc.raw()))
        });
}

fn retry(c: &mut Criterion) {
    bench_service(c, "retry", "bare", || Noop);
    bench_service(c, "retry", "cio_layers::Retry", || {
        RetryLayer::by_error(RetryConfig::default()).layer(Noop)
    });
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
    bench_service(c, "retry", "tower::retry::Retry", || {
        tower::retry::RetryLayer::new(Never).layer(Noop)
    });
}

fn deadline(c: &mut Criterion) {
    bench_service(c, "deadline", "bare", || Noop);
    bench_service(c, "deadline", "cio_layers::Deadline", || {
        DeadlineLayer::new(Duration::from_secs(10)).layer(Noop)
    });
    bench_service(c, "deadline", "tower::timeout::Timeout", || {
        tower::timeout::TimeoutLayer::new(Duration::from_secs(10)).layer(Noop)
    });
}

fn concurrency(c: &mut Criterion) {
    bench_service(c, "concurrency", "bare", || Noop);
    bench_service(c, "concurrency", "cio_layers::AdaptiveConcurrency", || {
        AdaptiveConcurrencyLayer::by_error(AdaptiveConfig::default())
            .expect("valid config")
            .layer(Noop)
    });
    bench_service(
        c,
        "concurrency",
        "tower::limit::ConcurrencyLimit (re-exported as the fixed limit)",
        || tower::limit::ConcurrencyLimitLayer::new(64).layer(Noop),
    );
}

fn metrics(c: &mut Criterion) {
    bench_service(c, "metrics", "bare", || Noop);
    bench_service(c, "metrics", "cio_layers::Metrics", || {
        MetricsLayer::new("bench").layer(Noop)
    });
}

/// An item with a weight, for the batch layer.
#[derive(Clone, Copy)]
struct Item(u64);

impl Weigh for Item {
    fn weight(&self) -> usize {
        32
    }
}

/// A ready no-op batch service: every item succeeds.
#[derive(Clone, Copy)]
struct NoopBatch;

impl Service<Arc<[Item]>> for NoopBatch {
    type Response = Vec<Result<u64, BenchError>>;
    type Error = BenchError;
    type Future = std::future::Ready<Result<Self::Response, BenchError>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BenchError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, items: Arc<[Item]>) -> Self::Future {
        std::future::ready(Ok(items.iter().map(|i| Ok(i.0)).collect()))
    }
}

impl Service<Vec<Item>> for NoopBatch {
    type Response = Vec<Result<u64, BenchError>>;
    type Error = BenchError;
    type Future = std::future::Ready<Result<Self::Response, BenchError>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BenchError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, items: Vec<Item>) -> Self::Future {
        std::future::ready(Ok(items.iter().map(|i| Ok(i.0)).collect()))
    }
}

const WAVE: usize = 500;

/// Benchmarks items sent in waves of 500 concurrent calls (a batch layer needs concurrent callers
/// to fill a batch): per item, `ready + call`, then all 500 answers awaited.
fn bench_waves<S>(c: &mut Criterion, group: &str, name: &str, make: impl Fn() -> S)
where
    S: Service<Item> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: std::fmt::Debug,
{
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("a runtime");
    bench_waves_on(c, group, &format!("{name}, 2 worker threads"), &make, multi);
    bench_waves_on(
        c,
        group,
        &format!("{name}, current thread"),
        &make,
        runtime(),
    );
}

fn bench_waves_on<S>(
    c: &mut Criterion,
    group: &str,
    name: &str,
    make: &impl Fn() -> S,
    rt: tokio::runtime::Runtime,
) where
    S: Service<Item> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: std::fmt::Debug,
{
    let svc = rt.block_on(async { make() });
    c.benchmark_group(group).bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut svc = svc.clone();
            rt.block_on(async move {
                // Whole waves only: a partial wave would wait for the linger timer, which is
                // not a cost of the layer. The time is scaled back to `iters` items.
                let waves = (iters as usize).div_ceil(WAVE).max(1);
                let mut futures = Vec::with_capacity(WAVE);
                let start = std::time::Instant::now();
                for _ in 0..waves {
                    for i in 0..WAVE {
                        let r = svc.ready().await.expect("ready");
                        futures.push(r.call(Item(i as u64)));
                    }
                    for f in futures.drain(..) {
                        black_box(f.await.expect("item"));
                    }
                }
                start
                    .elapsed()
                    .mul_f64(iters as f64 / (waves * WAVE) as f64)
            })
        })
    });
}

fn batch_config() -> BatchConfig {
    BatchConfig {
        max_items: NonZeroUsize::new(WAVE).expect("non-zero"),
        max_linger: Duration::from_millis(50),
        queue_capacity: NonZeroUsize::new(2 * WAVE).expect("non-zero"),
        ..BatchConfig::default()
    }
}

fn batch(c: &mut Criterion) {
    bench_waves(
        c,
        "batch",
        "cio_layers::Batch (per item, batches of 500)",
        || BatchLayer::new(batch_config()).layer(NoopBatch),
    );
    bench_waves(
        c,
        "batch",
        "tower::buffer::Buffer (per call, the nearest hop)",
        || {
            tower::buffer::Buffer::new(
                tower::util::MapErrLayer::new(|e: BenchError| -> tower::BoxError { Box::new(e) })
                    .layer(tower::service_fn(|i: Item| async move {
                        Ok::<_, BenchError>(i.0)
                    })),
                2 * WAVE,
            )
        },
    );
}

/// The whole pipeline stack on a no-op batch service, per item.
fn stack(c: &mut Criterion) {
    bench_waves(
        c,
        "stack",
        "Batch -> Metrics -> Retry -> RateLimit -> Adaptive -> Deadline (per item)",
        || {
            let inner = tower::ServiceBuilder::new()
                .map_request(|v: Vec<Item>| Arc::<[Item]>::from(v))
                .layer(MetricsLayer::new("bench_stack"))
                .layer(RetryLayer::by_error(RetryConfig::default()))
                .layer(RateLimitLayer::new(huge_quota()))
                .layer(
                    AdaptiveConcurrencyLayer::by_error(AdaptiveConfig::default())
                        .expect("valid config"),
                )
                .layer(DeadlineLayer::new(Duration::from_secs(10)))
                .service(NoopBatch);
            BatchLayer::new(batch_config()).layer(inner)
        },
    );
    bench_service(
        c,
        "stack",
        "Metrics -> Retry -> RateLimit -> Adaptive -> Deadline (per call, no batch)",
        || {
            tower::ServiceBuilder::new()
                .layer(MetricsLayer::new("bench_stack_unbatched"))
                .layer(RetryLayer::by_error(RetryConfig::default()))
                .layer(RateLimitLayer::new(huge_quota()))
                .layer(
                    AdaptiveConcurrencyLayer::by_error(AdaptiveConfig::default())
                        .expect("valid config"),
                )
                .layer(DeadlineLayer::new(Duration::from_secs(10)))
                .service(Noop)
        },
    );
}

criterion_group!(
    benches,
    rate_limit,
    concurrency,
    batch,
    retry,
    metrics,
    deadline,
    stack
);
criterion_main!(benches);
