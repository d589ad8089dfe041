//! Processor overhead per message: a memory source, a trivial decode and a no-op service, so
//! what is measured is the processor itself (read, permit, task, settle, ack).
//!
//! ```text
//! cargo bench -p cio-pipeline --bench processor
//! ```

use std::convert::Infallible;

use cio_pipeline::dead_letter::InMemory;
use cio_pipeline::source::{MemorySource, Position};
use cio_pipeline::{DecodeError, Processor};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tokio_util::sync::CancellationToken;

const MESSAGES: u64 = 20_000;

fn processor_overhead(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let mut group = c.benchmark_group("processor");
    group.throughput(Throughput::Elements(MESSAGES));
    group.sample_size(20);
    for in_flight in [1usize, 256] {
        group.bench_function(format!("memory_noop_in_flight_{in_flight}"), |b| {
            b.to_async(&rt).iter(|| async move {
                let source = MemorySource::new((0..MESSAGES).map(|_| &b"{\"n\":1}"[..]));
                let decode = |b: &[u8], _: &Position| Ok::<_, DecodeError>(b.len());
                let service = tower::service_fn(|n: usize| async move { Ok::<_, Infallible>(n) });
                let report = Processor::new(source, decode, service, InMemory::new())
                    .max_in_flight(in_flight)
                    .run(CancellationToken::new())
                    .await;
                assert_eq!(report.delivered, MESSAGES);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, processor_overhead);
criterion_main!(benches);
