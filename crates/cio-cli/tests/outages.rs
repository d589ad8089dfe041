//! Outages cost time, not data: `cio pipe` and `cio worker` as processes against a mock that
//! fails for a while (5xx, 429 with a long `Retry-After`, dropped connections, the shared
//! limit's Redis gone), and a SIGTERM in the middle of one. Each case ends with every event id
//! delivered, no dead letter and exit 0. The cases run side by side (one test each); the
//! longest honours a 90 s `Retry-After`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::worker_admin;

use cio_mock::{Faults, MockHandle, MockServer};

fn cio() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cio"));
    c.env("CIO_SITE_ID", "site")
        .env("CIO_API_KEY", "key")
        // What a user sees by default: the outage lines are WARN, the recovery line INFO.
        .env("RUST_LOG", "info");
    c
}

/// `n` events with unique ids, for 50 people.
fn write_events(path: &Path, n: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..n {
        writeln!(
            f,
            r#"{{"type":"person","identifiers":{{"id":"u{}"}},"action":"event","name":"e","id":"01J{i:023}"}}"#,
            i % 50
        )
        .unwrap();
    }
}

struct Run {
    _dir: tempfile::TempDir,
    input: PathBuf,
    dead: PathBuf,
    report: PathBuf,
    checkpoint: PathBuf,
}

impl Run {
    fn new(events: usize) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.jsonl");
        write_events(&input, events);
        Run {
            input,
            dead: dir.path().join("dead.jsonl"),
            report: dir.path().join("report.json"),
            checkpoint: dir.path().join("in.checkpoint"),
            _dir: dir,
        }
    }

    /// `cio pipe` at 20 requests/s of up to 250 events (about 5,000 events/s), with a checkpoint.
    fn pipe(&self, mock: &MockHandle, extra: &[&str]) -> Child {
        cio()
            .args(["pipe", "--input"])
            .arg(&self.input)
            .args(["--endpoint", &mock.url(), "--rate", "20", "--burst", "1"])
            .args(["--batch-max-items", "250", "--linger-ms", "20"])
            .args(["--max-in-flight", "5000", "--dead-letter"])
            .arg(&self.dead)
            .arg("--report-json")
            .arg(&self.report)
            .arg("--checkpoint")
            .arg(&self.checkpoint)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn report(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&self.report).unwrap()).unwrap()
    }

    fn dead_letters(&self) -> usize {
        std::fs::read_to_string(&self.dead)
            .unwrap_or_default()
            .lines()
            .count()
    }
}

async fn wait(child: Child) -> Output {
    tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap()
}

async fn unlimited_mock() -> MockHandle {
    MockServer::builder().unlimited().start().await.unwrap()
}

/// Sets `faults` on `mock` after `at`, then healthy again after `lasting`.
async fn outage(mock: &MockHandle, at: Duration, faults: Faults, lasting: Duration) {
    tokio::time::sleep(at).await;
    mock.set_faults(faults).unwrap();
    tokio::time::sleep(lasting).await;
    mock.set_faults(Faults::default()).unwrap();
}

/// Exit 0, every event delivered once as far as Customer.io counts, no dead letter.
fn assert_all_delivered(run: &Run, out: &Output, mock: &MockHandle, events: usize) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{err}");
    let r = run.report();
    assert_eq!(r["dead_lettered"], 0, "{r}");
    assert_eq!(run.dead_letters(), 0);
    let stats = mock.stats();
    assert_eq!(stats.unique_event_ids, events as u64, "{stats:?}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundreds_for_30_s_in_the_middle_of_a_50000_event_run() {
    let events = 50_000;
    let (mock, run) = (unlimited_mock().await, Run::new(events));
    let child = run.pipe(&mock, &[]);
    let five_hundreds = Faults {
        error_rate: 1.0,
        ..Faults::default()
    };
    outage(
        &mock,
        Duration::from_secs(3),
        five_hundreds,
        Duration::from_secs(30),
    )
    .await;
    let out = wait(child).await;
    let err = assert_all_delivered(&run, &out, &mock, events);
    assert_eq!(run.report()["delivered"], events as u64);
    assert!(mock.stats().injected_errors >= 30, "{:?}", mock.stats());
    // Said every 10 s while it lasted, in words a person can act on.
    let lines: Vec<_> = err
        .lines()
        .filter(|l| l.contains("Customer.io failing for"))
        .collect();
    assert!(lines.len() >= 2, "{err}");
    assert!(
        lines[0].contains("operations held") && lines[0].contains("next try in"),
        "{}",
        lines[0]
    );
    assert!(err.contains("Customer.io answers again"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_90_on_every_answer_for_5_s_is_waited_out() {
    let events = 10_000;
    let (mock, run) = (unlimited_mock().await, Run::new(events));
    let started = Instant::now();
    let child = run.pipe(&mock, &[]);
    let throttled = Faults {
        throttle_rate: 1.0,
        retry_after_s: Some(90),
        ..Faults::default()
    };
    outage(
        &mock,
        Duration::from_secs(1),
        throttled,
        Duration::from_secs(5),
    )
    .await;
    let out = wait(child).await;
    assert_all_delivered(&run, &out, &mock, events);
    assert!(mock.stats().injected_throttles > 0);
    // The hint was honoured, not cut to a retry budget.
    assert!(
        started.elapsed() >= Duration::from_secs(90),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_dropped_for_20_s() {
    let events = 20_000;
    let (mock, run) = (unlimited_mock().await, Run::new(events));
    let child = run.pipe(&mock, &[]);
    let dropped = Faults {
        drop_rate: 1.0,
        ..Faults::default()
    };
    outage(
        &mock,
        Duration::from_secs(1),
        dropped,
        Duration::from_secs(20),
    )
    .await;
    let out = wait(child).await;
    assert_all_delivered(&run, &out, &mock, events);
    assert!(mock.stats().dropped_connections > 10, "{:?}", mock.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_an_outage_exits_in_time_and_a_restart_delivers_all() {
    let events = 20_000;
    let (mock, run) = (unlimited_mock().await, Run::new(events));
    let child = run.pipe(&mock, &["--shutdown-timeout", "3s"]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    mock.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    })
    .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let term = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = wait(child).await;
    let took = term.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    // Reading stops, in-flight work gets 3 s, the stack's close 3 s more: well within 10 s.
    assert!(took < Duration::from_secs(10), "{took:?}: {err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
    let r = run.report();
    assert_eq!(r["dead_lettered"], 0, "{r}");
    assert!(r["unacknowledged"].as_u64().unwrap() > 0, "{r}");
    assert!(r["delivered"].as_u64().unwrap() < events as u64, "{r}");
    assert_eq!(run.dead_letters(), 0);

    // Customer.io is back; the restart resumes from the checkpoint and delivers the rest.
    mock.set_faults(Faults::default()).unwrap();
    let out = wait(run.pipe(&mock, &[])).await;
    assert_all_delivered(&run, &out, &mock, events);
}

/// `--shared-limit` needs the binary's `redis` feature (the README's test command has it).
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_limits_redis_stopped_for_15_s_then_back() {
    use cio_test_redis::PrivateRedis;
    const RATE: u64 = 20;
    const BURST: u64 = 2;
    let events = 20_000;
    let mut redis = PrivateRedis::start();
    let (mock, run) = (unlimited_mock().await, Run::new(events));
    let mut child = cio()
        .args(["worker", "--source"])
        .arg(format!("file:{}", run.input.display()))
        .args([
            "--shared-limit",
            &format!("redis://127.0.0.1:{}/cio:outage-test", redis.port),
        ])
        .args(["--rate", &RATE.to_string(), "--burst", &BURST.to_string()])
        .args(["--endpoint", &mock.url(), "--batch-max-items", "50"])
        .args(["--linger-ms", "20", "--admin-listen", "127.0.0.1:0"])
        .args(["--shutdown-timeout", "5s", "--dead-letter"])
        .arg(&run.dead)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.starts_with("worker ready"), "{line:?}");

    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.stop();
    let before = mock.stats().unique_event_ids;
    tokio::time::sleep(Duration::from_secs(15)).await;
    // Fail closed: nothing went out while the limit could not be kept (what was admitted just
    // before the stop may still have landed in the first second).
    let during = mock.stats().unique_event_ids;
    assert!(
        during - before <= (RATE + BURST) * 50,
        "{before} -> {during}"
    );
    redis.restart();

    let started = Instant::now();
    while mock.stats().unique_event_ids < events as u64 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "stuck at {:?}",
            mock.stats()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = wait(child).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("rate limit backend cannot decide"), "{err}");
    let mut report = String::new();
    stdout.read_line(&mut report).unwrap();
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["dead_lettered"], 0, "{report}");
    assert_eq!(run.dead_letters(), 0);
    let stats = mock.stats();
    assert_eq!(stats.unique_event_ids, events as u64);
    // The limit held before, during and after.
    assert!(
        stats.max_track_requests_in_a_second <= RATE + BURST,
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn give_up_after_is_the_one_way_an_outage_makes_dead_letters() {
    let events = 1_000;
    let (mock, run) = (unlimited_mock().await, Run::new(events));
    mock.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    })
    .unwrap();
    let started = Instant::now();
    let out = wait(run.pipe(&mock, &["--give-up-after", "3s"])).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(run.dead_letters(), events);
    let letter: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&run.dead)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(letter["retryable"], true, "{letter}");
    assert!(
        letter["reason"]
            .as_str()
            .unwrap()
            .contains("injected fault"),
        "the reason is the last answer: {letter}"
    );
}

/// `cio worker`'s /metrics during an outage: requests retrying, how long the oldest has tried,
/// how long nothing went through; all back to 0 once Customer.io answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_shows_an_outage_in_its_metrics() {
    let events = 2_000;
    let (mock, run) = (unlimited_mock().await, Run::new(events));
    mock.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    })
    .unwrap();
    let mut child = cio()
        .args(["worker", "--source"])
        .arg(format!("file:{}", run.input.display()))
        .args(["--endpoint", &mock.url(), "--rate", "100"])
        .args(["--linger-ms", "20", "--admin-listen", "127.0.0.1:0"])
        .args(["--shutdown-timeout", "5s", "--dead-letter"])
        .arg(&run.dead)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (_stdout, admin) = worker_admin(&mut child);
    let metric = |text: &str, name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(-1.0)
    };
    let scrape = || {
        let mut s = std::net::TcpStream::connect(&admin).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut body = String::new();
        std::io::Read::read_to_string(&mut s, &mut body).unwrap();
        body
    };
    let started = Instant::now();
    loop {
        let m = scrape();
        if metric(&m, "cio_worker_retrying") >= 1.0
            && metric(&m, "cio_worker_failing_seconds") >= 2.0
        {
            assert!(
                metric(&m, "cio_worker_oldest_retrying_seconds") >= 1.0,
                "{m}"
            );
            assert!(m.contains("# HELP cio_worker_retrying"), "{m}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{m}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    mock.set_faults(Faults::default()).unwrap();
    let started = Instant::now();
    loop {
        let m = scrape();
        if metric(&m, "cio_worker_delivered_total") == events as f64 {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let m = scrape();
            assert_eq!(metric(&m, "cio_worker_retrying"), 0.0, "{m}");
            assert_eq!(metric(&m, "cio_worker_failing_seconds"), 0.0, "{m}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{m}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(wait(child).await.status.success());
    assert_eq!(run.dead_letters(), 0);
}
