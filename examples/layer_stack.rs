//! The full layer stack, built by hand with `ServiceBuilder`, sending events to an embedded mock
//! Customer.io that injects 5xx and 429s:
//!
//! ```text
//! Batch -> Metrics -> Retry -> RateLimit -> AdaptiveConcurrency -> Deadline -> BatchClient
//! ```
//!
//! Run it with `cargo run --release --example layer_stack`. `cio_api::stack::BatchedStack` builds
//! the same stack in one call; this example shows the parts so you can rearrange them.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cio_toolkit::api::{BatchClient, Limits, Operation, TrackCredentials};
use cio_toolkit::layers::batch::{BatchConfig, BatchLayer};
use cio_toolkit::layers::concurrency::{AdaptiveConcurrencyLayer, AdaptiveConfig};
use cio_toolkit::layers::deadline::DeadlineLayer;
use cio_toolkit::layers::metrics::MetricsLayer;
use cio_toolkit::layers::rate_limit::{Quota, RateLimitLayer};
use cio_toolkit::layers::retry::{RetryConfig, RetryLayer};
use cio_toolkit::mock::{Faults, MockServer};
use tower::{ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A workspace limited to 100 requests/s, with 2 % 5xx and 2 % 429 injected.
    let mock = MockServer::builder()
        .track_rate(100, 100)
        .faults(Faults {
            error_rate: 0.02,
            throttle_rate: 0.02,
            ..Faults::default()
        })
        .start()
        .await?;
    let client = BatchClient::new(mock.region(), TrackCredentials::new("site", "key"));

    let metrics = MetricsLayer::new("customerio_batch");
    let adaptive = AdaptiveConcurrencyLayer::by_error(AdaptiveConfig {
        max: 32,
        ..AdaptiveConfig::default()
    })?;
    let controller = adaptive.controller().clone();
    let inner = ServiceBuilder::new()
        // Retries resend the batch: share it instead of copying the entries.
        .map_request(|v: Vec<Operation>| Arc::<[Operation]>::from(v))
        .layer(metrics.clone())
        .layer(RetryLayer::by_error(RetryConfig::default()))
        .layer(RateLimitLayer::new(
            Quota::per_second(NonZeroU32::new(100).expect("non-zero"))
                .with_burst(NonZeroU32::new(10).expect("non-zero")),
        ))
        .layer(adaptive)
        .layer(DeadlineLayer::new(Duration::from_secs(30)))
        .service(client);
    let batch = BatchLayer::new(BatchConfig {
        max_items: 500.try_into()?,
        max_weight: Limits::default().batch_weight(),
        max_linger: Duration::from_millis(100),
        ..BatchConfig::default()
    });
    let handle = batch.handle();
    let stack = ServiceBuilder::new().layer(batch).service(inner);

    let n = 50_000;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let svc = stack.clone();
        let line = format!(
            r#"{{"type":"person","identifiers":{{"id":"user-{}"}},"action":"event","name":"page_viewed","id":"01J{i:023}","attributes":{{"path":"/pricing","n":{i}}}}}"#,
            i % 1000
        );
        let op = Operation::from_json(line.as_bytes())?;
        tasks.spawn(async move { svc.oneshot(op).await });
    }
    let mut failed = 0;
    while let Some(r) = tasks.join_next().await {
        if r?.is_err() {
            failed += 1;
        }
    }
    handle.close().await;
    let elapsed = started.elapsed();

    let m = metrics.snapshot();
    let s = mock.stats();
    println!(
        "{n} events in {elapsed:.2?}: {:.0} events/s, {failed} failed",
        n as f64 / elapsed.as_secs_f64()
    );
    println!(
        "requests: {} (p50 {:?}, p99 {:?}); adaptive concurrency limit now {}",
        m.count,
        m.p50,
        m.p99,
        controller.limit()
    );
    println!(
        "mock: {} unique event ids, {} duplicates, {} injected 5xx, {} injected 429, {} over its limit",
        s.unique_event_ids, s.duplicate_event_ids, s.injected_errors, s.injected_throttles, s.rate_limited
    );
    mock.shutdown().await;
    Ok(())
}
