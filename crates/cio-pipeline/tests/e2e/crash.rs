//! SIGKILL at random points, five times, then a run to the end: nothing lost, and each restart
//! re-sends at most the unpersisted window.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::support::{checkpoint_mark, mock_with_latency, write_events, Child, Files, Scheme};

const LINES: usize = 6000;
const IN_FLIGHT: u64 = 32;
/// `--max-unpersisted`: lines read past the checkpoint on disk, at most.
const WINDOW: u64 = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_sigkills_lose_nothing_and_each_restart_resends_at_most_the_window_over_http() {
    tokio::time::timeout(Duration::from_secs(120), run(Scheme::Http))
        .await
        .expect("the crash test finishes in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_sigkills_lose_nothing_and_each_restart_resends_at_most_the_window_over_https() {
    tokio::time::timeout(Duration::from_secs(120), run(Scheme::Https))
        .await
        .expect("the crash test finishes in time");
}

async fn run(scheme: Scheme) {
    let files = Files::new();
    let ends = write_events(&files.input, LINES);
    let mock = mock_with_latency(scheme).await;
    assert_eq!(mock.url().starts_with("https://"), scheme == Scheme::Https);
    let args = [
        "--max-in-flight",
        &IN_FLIGHT.to_string(),
        "--checkpoint-every",
        "16",
        "--checkpoint-interval-ms",
        "50",
        "--max-unpersisted",
        &WINDOW.to_string(),
    ]
    .map(str::to_owned);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut rng = SmallRng::seed_from_u64(0x5EED_C4A5);

    // For each kill: events Customer.io had when the process died, and where the next run resumed.
    let mut delivered_at_kill: Vec<u64> = Vec::new();
    let mut resent: Vec<u64> = Vec::new();
    for kill in 0..5 {
        let mut child = Child::spawn(&files, &mock, &args).await;
        if let Some(&had) = delivered_at_kill.last() {
            resent.push(
                had.checked_sub(child.resumed_line())
                    .expect("a checkpoint never passes what was delivered"),
            );
        }
        let delay = Duration::from_millis(rng.gen_range(150..450));
        tokio::time::sleep(delay).await;
        assert!(
            child.child.try_wait().unwrap().is_none(),
            "kill {kill} must land mid-run (the child finished within {delay:?})"
        );
        child.child.kill().await.unwrap(); // SIGKILL
                                           // Requests already in the mock's socket buffers are still served after the kill.
        tokio::time::sleep(Duration::from_millis(100)).await;
        delivered_at_kill.push(mock.stats().unique_event_ids);
    }
    let last = Child::spawn(&files, &mock, &args).await;
    if let Some(&had) = delivered_at_kill.last() {
        resent.push(
            had.checked_sub(last.resumed_line())
                .expect("a checkpoint never passes what was delivered"),
        );
    }
    let (status, report) = last.finish().await;
    assert!(status.success(), "{report:?}");
    assert!(report.is_complete() && report.is_balanced(), "{report:?}");

    let stats = mock.stats();
    let n = LINES as u64;
    eprintln!(
        "crash test over {scheme:?}: delivered at each kill {delivered_at_kill:?}; re-sent after each kill {resent:?} \
         (window {WINDOW}, in flight {IN_FLIGHT}); duplicates seen by the mock {}; requests {}",
        stats.duplicate_event_ids, stats.requests
    );
    // Nothing lost: every line's event is there, once per id.
    assert_eq!(stats.unique_event_ids, n);
    assert_eq!(
        stats.events_without_id, 0,
        "every event had an id before its first attempt"
    );
    assert_eq!(
        stats.accepted.get("event").copied(),
        Some(n + stats.duplicate_event_ids)
    );
    // Re-sent lines per kill are within the window, and they account for every duplicate.
    assert_eq!(resent.len(), 5);
    for (kill, r) in resent.iter().enumerate() {
        assert!(
            *r <= WINDOW,
            "kill {kill}: {r} lines re-sent, more than the window of {WINDOW}"
        );
    }
    assert!(stats.duplicate_event_ids <= resent.iter().sum::<u64>());
    // The checkpoint ends past the last line, and nothing was dead-lettered.
    assert_eq!(
        checkpoint_mark(&files.checkpoint),
        Some((ends[LINES - 1], n))
    );
    let dead = std::fs::read_to_string(&files.dead_letters).unwrap_or_default();
    assert!(dead.is_empty(), "{dead}");
}
