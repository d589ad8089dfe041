//! `cio replay` as a process against the embedded mock: dead letters of a real outage go
//! again, filtered, without being counted twice by Customer.io.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use cio_mock::{Faults, Latency, MockServer};

fn cio(key: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cio"));
    c.env("CIO_SITE_ID", "site")
        .env("CIO_API_KEY", key)
        .env("RUST_LOG", "warn");
    c
}

fn run(c: &mut Command) -> (Option<i32>, serde_json::Value, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = c.output().unwrap();
    let err = String::from_utf8_lossy(&stderr).into_owned();
    let out = String::from_utf8_lossy(&stdout);
    let json = out
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(serde_json::Value::Null);
    (status.code(), json, err)
}

/// `with_id` events with ids, `without_id` without (they get ids from their position), then
/// `bad` lines that cannot decode.
fn write_input(path: &Path, tag: &str, with_id: usize, without_id: usize, bad: usize) {
    let mut f = std::fs::File::create(path).unwrap();
    for i in 0..with_id {
        writeln!(
            f,
            r#"{{"type":"person","identifiers":{{"id":"u{i}"}},"action":"event","name":"e","id":"01J{tag}{i:020}"}}"#
        )
        .unwrap();
    }
    for i in 0..without_id {
        writeln!(
            f,
            r#"{{"type":"person","identifiers":{{"id":"v{i}"}},"action":"event","name":"no id {tag}"}}"#
        )
        .unwrap();
    }
    for i in 0..bad {
        writeln!(
            f,
            r#"{{"type":"person","action":"event","name":"no identifier {i}"}}"#
        )
        .unwrap();
    }
}

fn letters(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_sends_dead_letters_again_filtered_and_never_counted_twice() {
    let mock = MockServer::builder()
        .unlimited()
        .track_credentials("site", "key")
        // Customer.io takes every request, then answers after the client gave up: the events
        // are in, and the client only sees timeouts.
        .faults(Faults {
            latency_ms: Some(Latency::fixed(Duration::from_millis(1500))),
            ..Faults::default()
        })
        .start()
        .await
        .unwrap();
    let url = mock.url();
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.jsonl");
    let pipe = |input: &Path, key: &str| {
        let mut c = cio(key);
        c.args(["pipe", "--no-progress", "--input"])
            .arg(input)
            .args(["--endpoint", &url, "--rate", "1000", "--linger-ms", "20"])
            .args(["--request-timeout", "300ms", "--give-up-after", "1s"])
            .arg("--dead-letter")
            .arg(&dead);
        c
    };

    // 1. An "outage" that is not one: 250 events reach Customer.io, every answer comes late.
    let input = dir.path().join("in.jsonl");
    write_input(&input, "A", 200, 50, 3);
    let (code, report, err) = run(&mut pipe(&input, "key"));
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(report["dead_lettered"], 253, "{err}");
    assert_eq!(mock.stats().unique_event_ids, 250, "the mock took them all");
    // 2. A wrong key: refused for good (401), nothing taken.
    mock.set_faults(Faults::default()).unwrap();
    let input2 = dir.path().join("in2.jsonl");
    write_input(&input2, "B", 20, 0, 0);
    let (code, _, err) = run(&mut pipe(&input2, "wrong"));
    assert_eq!(code, Some(1), "{err}");
    let all = letters(&dead);
    let count = |stage: &str, retryable: Option<bool>| {
        all.iter()
            .filter(|l| l["stage"] == stage && l["retryable"].as_bool() == retryable)
            .count()
    };
    assert_eq!(
        (
            count("deliver", Some(true)),
            count("deliver", Some(false)),
            count("decode", None)
        ),
        (250, 20, 3),
        "{all:?}"
    );
    let dead_before = std::fs::read(&dead).unwrap();
    let replay = |args: &[&str]| {
        let mut c = cio("key");
        c.arg("replay")
            .arg(&dead)
            .args(["--no-progress", "--endpoint", &url, "--rate", "1000"])
            .args(["--linger-ms", "20"])
            .args(args);
        c
    };

    // A dry run sends nothing and says what would happen.
    let requests = mock.stats().requests;
    let (code, dry, err) = run(&mut replay(&["--dry-run", "--retryable-only"]));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(dry["replayed"], 250, "{dry}");
    assert_eq!(dry["would_send"], 250, "{dry}");
    assert_eq!(dry["skipped"]["not_retryable"], 23, "{dry}");
    let (_, dry, err) = run(&mut replay(&["--dry-run", "--stage", "decode"]));
    assert_eq!(
        (&dry["replayed"], &dry["would_fail"]),
        (&3.into(), &3.into()),
        "{dry}"
    );
    assert!(err.contains("dry run"), "{err}");
    let (_, dry, _) = run(&mut replay(&[
        "--dry-run",
        "--since",
        "2100-01-01T00:00:00Z",
    ]));
    assert_eq!(
        (&dry["replayed"], &dry["skipped"]["older"]),
        (&0.into(), &273.into()),
        "{dry}"
    );
    let (_, dry, _) = run(&mut replay(&["--dry-run", "--since", "1h"]));
    assert_eq!(dry["replayed"], 273, "{dry}");
    assert_eq!(mock.stats().requests, requests, "a dry run sends nothing");

    // The retryable ones go again: delivered, and Customer.io, which had them, keeps one each.
    let again = dir.path().join("again.jsonl");
    let mut c = replay(&["--retryable-only", "--dead-letter"]);
    c.arg(&again);
    let (code, out, err) = run(&mut c);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        (&out["delivered"], &out["replay"]["replayed"]),
        (&250.into(), &250.into()),
        "{out}"
    );
    assert_eq!(out["replay"]["skipped"]["not_retryable"], 23, "{out}");
    assert!(
        err.contains("replayed 250 letter(s): 250 delivered, 0 failed again"),
        "{err}"
    );
    let stats = mock.stats();
    assert_eq!(
        stats.unique_event_ids, 250,
        "no event counted twice: {stats:?}"
    );
    assert!(stats.duplicate_event_ids >= 250, "{stats:?}");
    assert!(letters(&again).is_empty());

    // Decode failures fail again, into a new file, with the reason and their first position.
    let (code, _, err) = run(&mut replay(&["--stage", "decode"]));
    assert_eq!(code, Some(1), "{err}");
    let new_files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("dead.replay-"))
        .collect();
    assert_eq!(new_files.len(), 1, "{new_files:?}");
    let failed = letters(&new_files[0]);
    assert_eq!(failed.len(), 3);
    for l in &failed {
        assert_eq!(l["stage"], "decode");
        assert!(l["reason"].as_str().unwrap().contains("identifier"), "{l}");
        assert!(
            l["position"]["origin"]
                .as_str()
                .unwrap()
                .ends_with("in.jsonl"),
            "{l}"
        );
    }
    assert!(
        err.contains("3 operation(s) could not be delivered"),
        "{err}"
    );

    // With the key fixed, every delivery failure goes: the 20 refused ones are new, the 250
    // are de-duplicated once more.
    let (code, out, err) = run(&mut replay(&["--stage", "deliver"]));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out["delivered"], 270, "{out}");
    assert_eq!(mock.stats().unique_event_ids, 270);

    // The file replayed was only read; it cannot be the file failures go to.
    assert_eq!(std::fs::read(&dead).unwrap(), dead_before);
    let mut c = replay(&["--dead-letter"]);
    c.arg(&dead);
    let (code, _, err) = run(&mut c);
    assert_eq!(code, Some(1));
    assert!(err.contains("is the file being replayed"), "{err}");
    let (code, _, err) = run(&mut replay(&["--stage", "decode", "--retryable-only"]));
    assert_eq!(code, Some(1));
    assert!(err.contains("selects nothing"), "{err}");
}
