//! Faults from the mock (5xx, 429, dropped connections, latency spikes) through the batching
//! stack: every good line is delivered.

use std::time::Duration;

use cio_layers::ByError;
use cio_mock::{Faults, Latency};
use cio_pipeline::cio::OperationDecoder;
use cio_pipeline::dead_letter::JsonLinesFile;
use cio_pipeline::source::FileSource;
use cio_pipeline::Processor;
use tokio_util::sync::CancellationToken;

use crate::support::{batching_stack, checkpoint_mark, write_events, Files, Scheme};

const LINES: usize = 3000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_good_line_is_delivered_through_mock_faults_over_http() {
    tokio::time::timeout(Duration::from_secs(60), run(Scheme::Http))
        .await
        .expect("the fault test finishes in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_good_line_is_delivered_through_mock_faults_over_https() {
    tokio::time::timeout(Duration::from_secs(60), run(Scheme::Https))
        .await
        .expect("the fault test finishes in time");
}

async fn run(scheme: Scheme) {
    let files = Files::new();
    let ends = write_events(&files.input, LINES);
    let mock = scheme
        .builder()
        .unlimited()
        .faults(Faults {
            // Each fault must happen for the test to mean anything. The file makes about 80
            // requests: at 5 % a dropped connection was missing from one CI run in ~50
            // (0.95^78 = 1.8 %); at 10 % that is 0.9^78 = 0.03 %.
            error_rate: 0.15,
            throttle_rate: 0.1,
            drop_rate: 0.1,
            retry_after_s: None,
            latency_ms: Some(Latency {
                p50: 2.0,
                p99: Some(150.0),
            }),
        })
        .start()
        .await
        .unwrap();
    let source = FileSource::builder()
        .path(&files.input)
        .checkpoint(&files.checkpoint)
        .checkpoint_every(100)
        .open()
        .await
        .unwrap();
    let dead_letters = JsonLinesFile::create(&files.dead_letters).await.unwrap();
    let report = Processor::new(
        source,
        OperationDecoder::new(),
        batching_stack(&mock),
        dead_letters,
    )
    .max_in_flight(500)
    .classify_errors(ByError)
    .run(CancellationToken::new())
    .await;
    let stats = mock.stats();
    eprintln!(
        "faults test over {scheme:?} ({}): {report:?}\nmock: {stats:?}",
        mock.url()
    );
    assert!(report.is_complete() && report.is_balanced(), "{report:?}");
    assert_eq!((report.delivered, report.dead_lettered), (LINES as u64, 0));
    assert_eq!(stats.unique_event_ids, LINES as u64);
    // The faults did happen.
    assert!(
        stats.injected_errors > 0 && stats.injected_throttles > 0 && stats.dropped_connections > 0
    );
    assert_eq!(
        checkpoint_mark(&files.checkpoint),
        Some((ends[LINES - 1], LINES as u64))
    );
}
