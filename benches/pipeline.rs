//! End to end: a memory source of Track v2 entries through the full delivery stack (decode and
//! encode once, rate limit, adaptive concurrency, retry, metrics, v2 batches) to the embedded
//! mock over loopback HTTP, as `cio pipe` runs it. Criterion reports events per second.
//!
//! ```text
//! cargo bench --bench pipeline
//! ```
//!
//! The mock shares the machine (on the 2-core VM it takes about 40 % of the time): read the
//! figure next to others of the same session, not as Customer.io's throughput.

use std::num::NonZeroU32;
use std::time::Duration;

use bytes::Bytes;
use cio_api::stack::{BatchedStack, StackConfig, CHUNK_ENTRIES};
use cio_api::{BatchClient, TrackCredentials};
use cio_layers::rate_limit::Quota;
use cio_layers::ByError;
use cio_pipeline::cio::EntryDecoder;
use cio_pipeline::dead_letter::InMemory;
use cio_pipeline::processor::Chunks;
use cio_pipeline::source::MemorySource;
use cio_pipeline::Processor;
mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tokio_util::sync::CancellationToken;

const EVENTS: u64 = 50_000;

/// Events of 50 people with a few attributes, each with its own id (about 200 bytes a line).
fn lines() -> Vec<Bytes> {
    (0..EVENTS)
        .map(|i| {
            Bytes::from(format!(
                r#"{{"type":"person","identifiers":{{"id":"u{}"}},"action":"event","name":"purchase","id":"01J{i:023}","attributes":{{"plan":"pro","amount":{},"currency":"EUR"}}}}"#,
                i % 50,
                i % 997
            ))
        })
        .collect()
}

fn pipeline(c: &mut Criterion) {
    let (rt, mock) = common::runtime_and_mock();
    let lines = lines();
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(EVENTS));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("memory_source_full_stack_to_mock", |b| {
        b.to_async(&rt).iter(|| {
            let lines = lines.clone();
            let region = mock.region();
            async move {
                let client = BatchClient::new(region, TrackCredentials::new("site", "key"));
                let config = StackConfig {
                    // Above what the run needs: the limit is there, it does not bind.
                    rate: Quota::per_second(NonZeroU32::new(1000).unwrap_or(NonZeroU32::MIN)),
                    ..StackConfig::default()
                };
                let stack = BatchedStack::new(client, config).expect("a stack");
                let closing = stack.clone();
                let report = Processor::with_handoff(
                    MemorySource::new(lines),
                    EntryDecoder::default(),
                    Chunks::new(stack.entry_chunks(), CHUNK_ENTRIES),
                    InMemory::new(),
                )
                .max_in_flight(20_000)
                .classify_errors(ByError)
                .when_input_ends(move || closing.close_now())
                .run(CancellationToken::new())
                .await;
                stack.close().await;
                assert_eq!(report.delivered, EVENTS, "{}", report.to_json());
            }
        })
    });
    group.finish();
    let stats = mock.stats();
    // Every event reached the mock (each iteration sends the same ids again).
    assert_eq!(
        (stats.rejected, stats.unique_event_ids),
        (0, EVENTS),
        "{stats:?}"
    );
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
