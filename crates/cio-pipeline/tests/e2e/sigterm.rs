//! SIGTERM mid-run: a graceful stop with an exact checkpoint, and a restart that finishes the
//! rest without re-sending anything.

use std::time::Duration;

use cio_pipeline::StopReason;

use crate::support::{
    checkpoint_mark, mock_with_latency, until_accepted, write_events, Child, Files,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_gracefully_with_an_exact_checkpoint_and_a_restart_finishes() {
    let v1 = run(2500, &["--max-in-flight", "32"]);
    tokio::time::timeout(Duration::from_secs(60), v1)
        .await
        .expect("the SIGTERM test finishes in time");
}

/// The same through the batching stack: batches open at the signal are flushed, not lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_open_batches() {
    let batched = run(30_000, &["--batch", "--max-in-flight", "500"]);
    tokio::time::timeout(Duration::from_secs(60), batched)
        .await
        .expect("the SIGTERM test finishes in time");
}

async fn run(lines: usize, extra: &[&str]) {
    let files = Files::new();
    let ends = write_events(&files.input, lines);
    let mock = mock_with_latency(crate::support::Scheme::Http).await;
    // No periodic checkpoint during the run: the one on disk is the shutdown's.
    let mut args = extra.to_vec();
    args.extend([
        "--checkpoint-every",
        "1000000",
        "--checkpoint-interval-ms",
        "3600000",
        "--max-unpersisted",
        "1000000",
    ]);
    let child = Child::spawn(&files, &mock, &args).await;
    until_accepted(&mock, 300).await;
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let (status, report) = child.finish().await;
    eprintln!("SIGTERM {extra:?}: {}", report.to_json());
    assert!(status.success(), "{report:?}");
    assert_eq!(report.stop, StopReason::Cancelled);
    assert!(
        report.read < lines as u64,
        "the stop must land mid-run: {report:?}"
    );
    assert_eq!(
        (report.unacknowledged, report.dead_lettered),
        (0, 0),
        "{report:?}"
    );

    // Everything acknowledged was delivered, once.
    let stats = mock.stats();
    assert_eq!(stats.unique_event_ids, report.delivered);
    assert_eq!(stats.duplicate_event_ids, 0);
    // The checkpoint is exact: right after the last line read (all of them were acknowledged).
    let read = report.read as usize;
    assert_eq!(
        checkpoint_mark(&files.checkpoint),
        Some((ends[read - 1], read as u64))
    );

    // A restart resumes there and finishes the rest, re-sending nothing.
    let child = Child::spawn(&files, &mock, extra).await;
    assert_eq!(child.resumed_line(), read as u64);
    let (status, rest) = child.finish().await;
    assert!(status.success() && rest.is_complete(), "{rest:?}");
    assert_eq!(rest.read, (lines - read) as u64);
    let stats = mock.stats();
    assert_eq!(stats.unique_event_ids, lines as u64);
    assert_eq!(stats.duplicate_event_ids, 0);
    assert_eq!(
        checkpoint_mark(&files.checkpoint),
        Some((ends[lines - 1], lines as u64))
    );
}
