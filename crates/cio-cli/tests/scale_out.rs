//! Proof with many workers: 4 `cio worker` processes share one Redis stream and one 100
//! requests/s limit kept in Redis, against a mock whose own limit is 100/s; 20,000 events; one
//! worker is killed with SIGKILL midway. Nothing is lost, the mock never answers a 429 of its
//! own, and no second carries more than the limit plus the burst.
//!
//! Brings its own Redis (a private `redis-server`, or `REDIS_URL`; see `cio-test-redis`) and
//! needs the `redis` feature.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cio_mock::MockServer;

const EVENTS: usize = 20_000;
const RATE: u64 = 100;
const BURST: u64 = 10;

/// A worker and its stdout (kept open: the worker prints its report there when it stops).
fn spawn_worker(
    i: usize,
    source: &str,
    limit: &str,
    mock: &str,
    dir: &std::path::Path,
) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cio"))
        .env("CIO_SITE_ID", "site")
        .env("CIO_API_KEY", "key")
        .env("RUST_LOG", "warn")
        .args(["worker", "--source"])
        .arg(format!("{source}&consumer=worker-{i}"))
        .args([
            "--shared-limit",
            limit,
            "--rate",
            &RATE.to_string(),
            "--burst",
            &BURST.to_string(),
        ])
        .args([
            "--endpoint",
            mock,
            "--batch-max-items",
            "50",
            "--linger-ms",
            "50",
        ])
        .args([
            "--admin-listen",
            "127.0.0.1:0",
            "--shutdown-timeout",
            "5s",
            "--dead-letter",
        ])
        .arg(dir.join(format!("dead-{i}.jsonl")))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut line).unwrap();
    assert!(line.starts_with("worker ready"), "worker {i}: {line:?}");
    (child, stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_share_a_stream_and_a_limit_and_lose_nothing_when_one_dies() {
    let base = cio_test_redis::url();
    let client = redis::Client::open(base.as_str()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let tag = format!(
        "{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let stream = format!("cio-scale-out-{tag}");
    let limit_key = format!("cio-scale-out-limit-{tag}");
    for chunk in (0..EVENTS).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            let line = format!(
                r#"{{"type":"person","identifiers":{{"id":"user-{}"}},"action":"event","name":"order_completed","id":"01J{i:023}","attributes":{{"n":{i}}}}}"#,
                i % 500
            );
            pipe.cmd("XADD")
                .arg(&stream)
                .arg("*")
                .arg("payload")
                .arg(line)
                .ignore();
        }
        let () = pipe.query_async(&mut redis).await.unwrap();
    }

    let mock = MockServer::builder()
        .track_rate(100, 100)
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let source = format!("{base}/?stream={stream}&group=cio&claim_idle_ms=2000");
    let limit = format!("{base}/{limit_key}");
    let (mut workers, _stdouts): (Vec<Child>, Vec<_>) = (0..4)
        .map(|i| spawn_worker(i, &source, &limit, &mock.url(), dir.path()))
        .unzip();

    // Kill one midway.
    let started = Instant::now();
    while mock.stats().unique_event_ids < (EVENTS / 4) as u64 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no progress: {:?}",
            mock.stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    workers[0].kill().unwrap(); // SIGKILL
    workers[0].wait().unwrap();
    let at_kill = mock.stats().unique_event_ids;
    assert!(
        at_kill < EVENTS as u64,
        "the kill came too late to prove anything"
    );

    // The survivors reclaim what the dead one held and finish.
    while mock.stats().unique_event_ids < EVENTS as u64 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "stalled at {} of {EVENTS}: {:?}",
            mock.stats().unique_event_ids,
            mock.stats()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for w in workers.iter_mut().skip(1) {
        Command::new("kill")
            .args(["-TERM", &w.id().to_string()])
            .status()
            .unwrap();
    }
    for w in workers.iter_mut().skip(1) {
        assert!(w.wait().unwrap().success());
    }

    let stats = mock.stats();
    eprintln!("killed at {at_kill}; {stats:?}");
    assert_eq!(stats.unique_event_ids, EVENTS as u64, "every event arrived");
    assert_eq!(
        stats.rate_limited, 0,
        "the mock never had to refuse for its own limit"
    );
    assert!(
        stats.max_track_requests_in_a_second <= RATE + BURST,
        "{} requests in one second",
        stats.max_track_requests_in_a_second
    );
    let dead: usize = (0..4)
        .map(|i| {
            std::fs::read_to_string(dir.path().join(format!("dead-{i}.jsonl")))
                .map(|s| s.lines().count())
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(dead, 0, "nothing dead-lettered");

    let () = redis::cmd("DEL")
        .arg(&stream)
        .arg(format!("{stream}:dead"))
        .arg(&limit_key)
        .query_async(&mut redis)
        .await
        .unwrap();
}
