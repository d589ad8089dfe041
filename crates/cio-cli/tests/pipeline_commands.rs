//! `cio pipe`, `cio worker` and `cio demo` as processes against the embedded mock.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cio_mock::MockServer;

mod common;
use common::{http_get, worker_admin};

fn cio() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cio"));
    c.env("CIO_SITE_ID", "site")
        .env("CIO_API_KEY", "key")
        .env("RUST_LOG", "warn");
    c
}

fn write_events(path: &Path, from: usize, to: usize, bad_every: Option<usize>) -> usize {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut good = 0;
    for i in from..to {
        if bad_every.is_some_and(|n| i % n == n - 1) {
            writeln!(
                f,
                r#"{{"type":"person","action":"event","name":"no identifier {i}"}}"#
            )
            .unwrap();
        } else {
            good += 1;
            writeln!(
                f,
                r#"{{"type":"person","identifiers":{{"id":"u{}"}},"action":"event","name":"e","id":"01J{i:023}"}}"#,
                i % 50
            )
            .unwrap();
        }
    }
    good
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipe_delivers_reports_and_fails_loudly_on_dead_letters() {
    let mock = MockServer::builder().unlimited().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let good = write_events(&input, 0, 3000, Some(1000));
    let dead = dir.path().join("dead.jsonl");
    let report = dir.path().join("report.json");
    let out = cio()
        .args(["pipe", "--input"])
        .arg(&input)
        .args([
            "--endpoint",
            &mock.url(),
            "--rate",
            "1000",
            "--linger-ms",
            "20",
            "--dead-letter",
        ])
        .arg(&dead)
        .arg("--report-json")
        .arg(&report)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("3 operation(s) could not be delivered") && err.contains("dead.jsonl"),
        "{err}"
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["delivered"], good as u64);
    assert_eq!(r["dead_lettered"], 3);
    let letters = std::fs::read_to_string(&dead).unwrap();
    assert_eq!(letters.lines().count(), 3);
    assert!(letters.contains("identifiers"), "{letters}");
    assert_eq!(mock.stats().unique_event_ids, good as u64);

    // The same file again, unbatched, to a fresh mock: exit 0 on a clean file.
    let clean = dir.path().join("clean.jsonl");
    let n = write_events(&clean, 0, 200, None);
    let mock2 = MockServer::builder().unlimited().start().await.unwrap();
    let out = cio()
        .args(["pipe", "--no-batch", "--rate", "1000", "--input"])
        .arg(&clean)
        .args(["--endpoint", &mock2.url(), "--dead-letter"])
        .arg(dir.path().join("dead2.jsonl"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = mock2.stats();
    assert_eq!(stats.requests, n as u64, "one v1 request per operation");
    assert_eq!(stats.unique_event_ids, n as u64);
}

#[test]
fn pipe_errors_name_the_problem_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    write_events(&input, 0, 1, None);
    let cases: Vec<(Vec<&str>, bool, &str)> = vec![
        (
            vec![
                "pipe",
                "--input",
                "/nonexistent/x.jsonl",
                "--endpoint",
                "http://127.0.0.1:9",
            ],
            true,
            "cannot read --input /nonexistent/x.jsonl",
        ),
        (
            vec![
                "pipe",
                "--input",
                input.to_str().unwrap(),
                "--endpoint",
                "http://127.0.0.1:9",
            ],
            false,
            "missing credentials",
        ),
        (
            vec![
                "pipe",
                "--input",
                input.to_str().unwrap(),
                "--endpoint",
                "localhost:7070",
            ],
            true,
            "http://",
        ),
        (
            vec!["pipe", "--input", input.to_str().unwrap()],
            true,
            "no destination",
        ),
        (
            vec![
                "pipe",
                "--input",
                input.to_str().unwrap(),
                "--concurrency",
                "0",
                "--endpoint",
                "http://127.0.0.1:9",
            ],
            true,
            "give a number of requests",
        ),
        (
            vec![
                "pipe",
                "--input",
                input.to_str().unwrap(),
                "--region",
                "mars",
            ],
            true,
            "--region us or --region eu",
        ),
        (
            vec![
                "pipe",
                "--input",
                "-",
                "--checkpoint",
                "cp",
                "--endpoint",
                "http://127.0.0.1:9",
            ],
            true,
            "cannot be used with stdin",
        ),
    ];
    for (args, with_creds, expect) in cases {
        let mut c = if with_creds {
            cio()
        } else {
            Command::new(env!("CARGO_BIN_EXE_cio"))
        };
        if !with_creds {
            c.env_remove("CIO_SITE_ID").env_remove("CIO_API_KEY");
        }
        let out = c.args(&args).stdin(Stdio::null()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(expect), "{args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_follows_exports_metrics_drains_on_sigterm_and_resumes_exactly() {
    let mock = MockServer::builder().unlimited().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    write_events(&input, 0, 500, None);
    let config = dir.path().join("worker.toml");
    std::fs::write(
        &config,
        format!(
            "source = \"file:{}\"\nendpoint = \"{}\"\nrate = 1000\nlinger_ms = 20\nadmin_listen = \"127.0.0.1:0\"\nshutdown_timeout = \"5s\"\ndead_letter = \"{}\"\n",
            input.display(),
            mock.url(),
            dir.path().join("dead.jsonl").display()
        ),
    )
    .unwrap();
    let start_worker = || {
        let mut child = cio()
            .args(["worker", "--config"])
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (stdout, admin) = worker_admin(&mut child);
        (child, stdout, admin)
    };
    let wait_delivered = |admin: &str, n: u64| {
        let started = Instant::now();
        loop {
            let (_, metrics) = http_get(admin, "/metrics");
            if metrics.contains(&format!("cio_worker_delivered_total {n}")) {
                return metrics;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "never reached {n}: {metrics}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    let (mut child, mut stdout, admin) = start_worker();
    assert_eq!(http_get(&admin, "/healthz").0, 200);
    assert_eq!(http_get(&admin, "/readyz").0, 200);
    wait_delivered(&admin, 500);
    // It follows the file as it grows.
    write_events(&input, 500, 800, None);
    let metrics = wait_delivered(&admin, 800);
    assert!(
        metrics.contains("cio_worker_concurrency_limit"),
        "{metrics}"
    );
    assert!(metrics.contains("cio_requests_total"), "{metrics}");
    std::thread::sleep(Duration::from_millis(1200)); // a checkpoint and a lag sample
    assert!(http_get(&admin, "/metrics")
        .1
        .contains("cio_worker_source_lag_bytes 0"));

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    let mut report = String::new();
    stdout.read_line(&mut report).unwrap();
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["delivered"], 800);
    assert_eq!(report["unacknowledged"], 0);
    let checkpoint = std::fs::read_to_string(format!("{}.checkpoint", input.display())).unwrap();
    let len = std::fs::metadata(&input).unwrap().len();
    assert!(
        checkpoint.contains(&format!("\"offset\":{len}")),
        "{checkpoint} vs {len}"
    );

    // A restart resumes after the checkpoint: nothing is sent twice.
    write_events(&input, 800, 900, None);
    let (mut child, _stdout, admin) = start_worker();
    wait_delivered(&admin, 100);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    let stats = mock.stats();
    assert_eq!(stats.unique_event_ids, 900);
    assert_eq!(stats.duplicate_event_ids, 0);
}

#[test]
fn worker_config_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("w.toml");
    std::fs::write(&config, "source = \"file:/tmp/x\"\nrate_limit = 5\n").unwrap();
    let out = cio()
        .args(["worker", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("invalid config file") && err.contains("rate_limit"),
        "{err}"
    );
    let out = cio()
        .args(["worker", "--endpoint", "http://127.0.0.1:9"])
        .env_remove("CIO_SOURCE")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no work source"));
    let out = cio()
        .args([
            "worker",
            "--source",
            "s3://bucket",
            "--endpoint",
            "http://127.0.0.1:9",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("use file:PATH"));
}

#[test]
fn demo_proves_exactly_once_and_compares_the_paths() {
    demo(false);
}

#[test]
fn demo_over_tls_proves_exactly_once_and_compares_the_paths() {
    demo(true);
}

fn demo(tls: bool) {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("demo.json");
    let mut c = cio();
    c.args(["demo", "--events", "20000", "--summary-json"])
        .arg(&summary);
    if tls {
        c.arg("--tls");
    }
    let out = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("every event arrived exactly once"),
        "{stdout}"
    );
    assert!(stdout.contains("side by side"), "{stdout}");
    assert_eq!(
        stdout.contains("mock Customer.io on https://"),
        tls,
        "{stdout}"
    );
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(s["exactly_once"], true);
    assert_eq!(s["batched"]["delivered"], 20000);
    assert_eq!(s["batched"]["rate_limited_by_mock"], 0);
    assert_eq!(s["unbatched"]["rate_limited_by_mock"], 0);
    let ratio = s["batched"]["events_per_second"].as_f64().unwrap()
        / s["unbatched"]["events_per_second"].as_f64().unwrap();
    assert!(ratio > 10.0, "batched only {ratio:.1}x the unbatched path");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipe_off_a_terminal_prints_a_status_line_unless_told_not_to() {
    let mock = MockServer::builder().unlimited().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    // 250 requests at 100/s, one per operation: about 2.5 s.
    let n = write_events(&input, 0, 250, None);
    let size = std::fs::metadata(&input).unwrap().len();
    let run = |extra: &[&str]| {
        let out = cio()
            .args(["pipe", "--input"])
            .arg(&input)
            .args(["--endpoint", &mock.url(), "--rate", "100", "--no-batch"])
            .arg("--dead-letter")
            .arg(dir.path().join("dead.jsonl"))
            .args(["--status-every", "1s"])
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&[]);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("cio pipe ")).collect();
    assert!(lines.len() >= 2, "{err}");
    // What was read of the whole, delivered with its rate, in flight, dead letters.
    let first = lines[0];
    assert!(first.starts_with("cio pipe 1s | "), "{first}");
    assert!(
        first.contains(&format!("of {} read", indicatif::HumanBytes(size))),
        "{first}"
    );
    for part in ["delivered ", "/s) | in flight ", "| dead letters 0"] {
        assert!(first.contains(part), "{first}");
    }
    assert!(n > 0);
    let quiet = run(&["--no-progress"]);
    assert!(!quiet.contains("cio pipe "), "{quiet}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_json_on_request_and_never_hold_the_api_key_at_any_level() {
    use base64::Engine as _;
    const SITE: &str = "site-7f3a";
    const KEY: &str = "key-sekrit-91c2e";
    let mock = MockServer::builder()
        .unlimited()
        .track_credentials(SITE, KEY)
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    write_events(&input, 0, 300, Some(100));
    // The Authorization header's value, as it goes over the wire.
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{SITE}:{KEY}"));
    for format in ["text", "json"] {
        let out = cio()
            .args(["pipe", "--input"])
            .arg(&input)
            // One request per operation: the most requests, the most chances to log a header.
            .args(["--endpoint", &mock.url(), "--rate", "1000", "--no-batch"])
            .args(["--site-id", SITE, "--api-key", KEY, "--log-format", format])
            .arg("--dead-letter")
            .arg(dir.path().join(format!("dead-{format}.jsonl")))
            .env("RUST_LOG", "trace")
            .output()
            .unwrap();
        // Three bad lines are dead letters: exit 1, and plenty was logged.
        assert_eq!(out.status.code(), Some(1), "{format}");
        let all = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(all.lines().count() > 300, "{format}: {all}");
        for secret in [KEY, basic.as_str()] {
            assert!(!all.contains(secret), "{format}: the key is in the logs");
        }
        if format == "json" {
            let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stderr)
                .lines()
                .filter(|l| l.starts_with('{'))
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect();
            assert!(events.len() > 300, "{}", events.len());
            assert!(events
                .iter()
                .all(|e| e["level"].is_string() && e["timestamp"].is_string()));
            assert!(events.iter().any(|e| e["level"] == "TRACE"));
            assert!(!String::from_utf8_lossy(&out.stderr).contains(" INFO "));
        }
    }
}

/// `/healthz` tells a stall from idleness: 200 while the worker waits for input, 503 while a
/// batch hangs (Customer.io answers after 4 s, the attempt may take a minute, the stall
/// timeout is 1 s), 200 again once it settles, and 200 through idleness past the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_healthz_is_503_while_stalled_and_200_while_idle() {
    let mock = MockServer::builder()
        .unlimited()
        .faults(cio_mock::Faults {
            latency_ms: Some(cio_mock::Latency::fixed(Duration::from_secs(4))),
            ..cio_mock::Faults::default()
        })
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    std::fs::write(&input, "").unwrap();
    let mut child = cio()
        .args(["worker", "--source"])
        .arg(format!("file:{}", input.display()))
        .args(["--endpoint", &mock.url(), "--linger-ms", "20"])
        .args(["--stall-timeout", "1s", "--request-timeout", "60s"])
        .args(["--admin-listen", "127.0.0.1:0", "--shutdown-timeout", "5s"])
        .arg("--dead-letter")
        .arg(dir.path().join("dead.jsonl"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let admin = line
        .trim()
        .rsplit("admin http://")
        .next()
        .unwrap()
        .to_owned();
    let health = || http_get(&admin, "/healthz");

    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        health().0,
        200,
        "idle, past the stall timeout: {:?}",
        health()
    );

    write_events(&input, 0, 10, None);
    let started = Instant::now();
    let stalled = loop {
        let (status, body) = health();
        if status == 503 {
            break body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "never 503: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        stalled.contains("stalled: 10 operation(s) in flight")
            && stalled.contains("threshold 1.0 s"),
        "{stalled}"
    );
    assert_eq!(
        http_get(&admin, "/readyz").0,
        200,
        "liveness is not readiness"
    );
    let recovered = loop {
        let (status, body) = health();
        if status == 200 {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never 200 again: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(recovered >= Duration::from_secs(3), "{recovered:?}");
    assert_eq!(mock.stats().unique_event_ids, 10);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(health().0, 200, "idle again: {:?}", health());

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}
