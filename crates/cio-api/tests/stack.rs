//! The full stack (batch -> metrics -> retry -> rate limit -> adaptive concurrency -> deadline ->
//! BatchClient) against the mock with faults on: every item ends delivered or with a permanent
//! error, none is lost or duplicated by the layers, and the mock never sees more than the rate.

use std::num::NonZeroU32;
use std::time::Duration;

use cio_api::stack::{BatchedStack, Concurrency, StackConfig};
use cio_api::{BatchClient, EntryError, Operation, TrackCredentials};
use cio_layers::batch::{BatchConfig, BatchError};
use cio_layers::concurrency::AdaptiveConfig;
use cio_layers::rate_limit::Quota;
use cio_layers::retry::RetryConfig;
use cio_mock::{Faults, Latency, MockServer};
use serde_json::json;
use tower::ServiceExt;

const RATE: u32 = 40;
const BURST: u32 = 4;

fn event(i: usize) -> Operation {
    Operation::from_value(json!({
        "type": "person", "identifiers": {"id": format!("user-{}", i % 97)}, "action": "event",
        "name": "order_completed", "id": format!("01J{i:023}"),
        "attributes": {"total": i, "currency": "EUR"}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_item_is_delivered_once_or_refused_and_the_rate_holds_under_faults() {
    let mock = MockServer::builder()
        // The mock enforces the same rate with more burst: only the client's pacing keeps it
        // from answering 429 on its own account.
        .track_rate(RATE, BURST * 3)
        .faults(Faults {
            latency_ms: Some(Latency {
                p50: 5.0,
                p99: Some(40.0),
            }),
            error_rate: 0.1,
            throttle_rate: 0.1,
            drop_rate: 0.0,
            retry_after_s: None,
        })
        .start()
        .await
        .unwrap();
    let client = BatchClient::new(mock.region(), TrackCredentials::new("site", "key"));
    let config = StackConfig {
        rate: Quota::per_second(NonZeroU32::new(RATE).unwrap())
            .with_burst(NonZeroU32::new(BURST).unwrap()),
        concurrency: Concurrency::Adaptive(AdaptiveConfig {
            max: 16,
            ..AdaptiveConfig::default()
        }),
        retry: RetryConfig {
            max_attempts: NonZeroU32::new(12).unwrap(),
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            seed: Some(7),
            ..RetryConfig::default()
        },
        batch: BatchConfig {
            max_items: std::num::NonZeroUsize::new(25).unwrap(),
            max_linger: Duration::from_millis(20),
            ..StackConfig::default().batch
        },
        ..StackConfig::default()
    };
    let stack = BatchedStack::new(client, config).unwrap();

    const N: usize = 3000;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..N {
        let svc = stack.service();
        // Every 100th entry breaks a limit (a 101-byte event name): a permanent refusal.
        let op = if i % 100 == 42 {
            Operation::from_value(json!({"type":"person","identifiers":{"id":"x"},"action":"event","name":"n".repeat(101),"id":format!("01J{i:023}")})).unwrap()
        } else {
            event(i)
        };
        tasks.spawn(async move { (i, svc.oneshot(op).await) });
    }
    let mut delivered = 0;
    let mut refused = 0;
    while let Some(r) = tasks.join_next().await {
        let (i, outcome) = r.unwrap();
        match outcome {
            Ok(()) => delivered += 1,
            Err(BatchError::Item(EntryError::Invalid(e))) if i % 100 == 42 => {
                // Refused on the way in, before any batch: the field is the entry's own.
                assert_eq!(e.field(), "name", "{e}");
                refused += 1;
            }
            Err(e) => panic!("item {i}: {e}"),
        }
    }
    stack.close().await;
    assert_eq!(refused, N / 100);
    assert_eq!(delivered, N - N / 100);

    let stats = mock.stats();
    assert_eq!(
        stats.unique_event_ids as usize, delivered,
        "every delivered item arrived"
    );
    assert_eq!(
        stats.duplicate_event_ids, 0,
        "the layers duplicated nothing"
    );
    assert!(
        stats.injected_errors + stats.injected_throttles > 0,
        "faults were injected and retried"
    );
    assert_eq!(stats.rate_limited, 0, "the mock's own limit was never hit");
    assert!(
        stats.max_track_requests_in_a_second <= u64::from(RATE + BURST),
        "{} requests in one second",
        stats.max_track_requests_in_a_second
    );
    let m = stack.metrics().snapshot();
    eprintln!("mock: {stats:?}\nstack: {m:?}");
    assert!(m.count > 0);
    let limit = stack.concurrency().unwrap().limit();
    assert!((1..=16).contains(&limit), "{limit}");
}
