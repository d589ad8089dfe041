//! Fixtures shared by the end-to-end tests.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use cio_mock::{Faults, Latency, MockHandle, MockServer};
use cio_pipeline::checkpoint::Checkpoint;
use cio_pipeline::source::Position;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// One event line. Every third has no `id` (it gets the deterministic one); the others carry a
/// unique ULID of their own.
pub fn event_line(i: usize) -> String {
    let id = if i % 3 == 0 {
        String::new()
    } else {
        let own = cio_pipeline::cio::event_id(
            &Position::Sequence {
                origin: "fixture".into(),
                index: i as u64,
            },
            None,
        );
        format!(r#","id":"{own}""#)
    };
    format!(
        r#"{{"type":"person","identifiers":{{"id":"user-{}"}},"action":"event","name":"purchase","attributes":{{"n":{i}}}{id}}}"#,
        i % 97
    )
}

/// Writes `n` event lines; returns the byte offset after each line (`ends[i]` ends line `i + 1`).
pub fn write_events(path: &Path, n: usize) -> Vec<u64> {
    let mut text = String::new();
    let mut ends = Vec::with_capacity(n);
    for i in 0..n {
        text.push_str(&event_line(i));
        text.push('\n');
        ends.push(text.len() as u64);
    }
    std::fs::write(path, text).unwrap();
    ends
}

/// A mock without rate limits, answering after a few milliseconds (after it has accepted the
/// entries, as Customer.io would: a client killed while waiting leaves accepted events behind).
pub async fn mock_with_latency(scheme: Scheme) -> MockHandle {
    scheme
        .builder()
        .unlimited()
        .faults(Faults {
            latency_ms: Some(Latency {
                p50: 4.0,
                p99: Some(20.0),
            }),
            ..Faults::default()
        })
        .start()
        .await
        .unwrap()
}

/// Which scheme a test runs over: every end-to-end path runs over both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    /// A mock builder serving this scheme.
    pub fn builder(self) -> cio_mock::MockBuilder {
        match self {
            Scheme::Http => MockServer::builder(),
            Scheme::Https => MockServer::builder().tls(),
        }
    }
}

/// Reads the checkpoint's single file mark.
pub fn checkpoint_mark(path: &Path) -> Option<(u64, u64)> {
    Checkpoint::load(path)
        .unwrap()
        .and_then(|cp| cp.files.first().map(|f| (f.offset, f.line)))
}

/// Paths of one pipeline's files in a temp dir.
pub struct Files {
    pub _dir: tempfile::TempDir,
    pub input: PathBuf,
    pub checkpoint: PathBuf,
    pub dead_letters: PathBuf,
}

impl Files {
    pub fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        Files {
            input: dir.path().join("events.jsonl"),
            checkpoint: dir.path().join("checkpoint.json"),
            dead_letters: dir.path().join("dead-letters.jsonl"),
            _dir: dir,
        }
    }
}

/// The pipeline binary, running.
pub struct Child {
    pub child: tokio::process::Child,
    /// The first line it printed to stderr (`{"event":"started","resumed_from":[...]}`).
    pub started: serde_json::Value,
}

impl Child {
    /// Starts the binary on `files` against `mock` and waits for its start line.
    pub async fn spawn(files: &Files, mock: &MockHandle, extra: &[&str]) -> Child {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_cio-pipeline-file"));
        if let Some(pem) = mock.ca_pem() {
            let ca = files.checkpoint.with_extension("ca.pem");
            std::fs::write(&ca, pem).unwrap();
            command.arg("--ca-cert").arg(ca);
        }
        let mut child = command
            .arg("--endpoint")
            .arg(mock.url())
            .arg("--checkpoint")
            .arg(&files.checkpoint)
            .arg("--dead-letters")
            .arg(&files.dead_letters)
            .args(extra)
            .arg(&files.input)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        tokio::time::timeout(Duration::from_secs(20), stderr.read_line(&mut first))
            .await
            .expect("the child announces its start")
            .unwrap();
        let started: serde_json::Value =
            serde_json::from_str(&first).unwrap_or_else(|e| panic!("start line {first:?}: {e}"));
        // Keep draining stderr so the child never blocks on a full pipe.
        tokio::spawn(async move {
            let mut rest = String::new();
            let _ = stderr.read_to_string(&mut rest).await;
            if !rest.is_empty() {
                eprintln!("child stderr: {rest}");
            }
        });
        Child { child, started }
    }

    /// The line the child resumed from (lines already done before it).
    pub fn resumed_line(&self) -> u64 {
        self.started["resumed_from"][0]["line"].as_u64().unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    /// Waits for the child to exit; returns its exit status and the report it printed.
    pub async fn finish(mut self) -> (std::process::ExitStatus, cio_pipeline::Report) {
        let mut out = String::new();
        let mut stdout = self.child.stdout.take().unwrap();
        let status = tokio::time::timeout(Duration::from_secs(60), async {
            stdout.read_to_string(&mut out).await.unwrap();
            self.child.wait().await.unwrap()
        })
        .await
        .expect("the child exits");
        let report =
            serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("report {out:?}: {e}"));
        (status, report)
    }
}

/// Waits until the mock has accepted at least `n` events.
pub async fn until_accepted(mock: &MockHandle, n: u64) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while mock.stats().accepted.get("event").copied().unwrap_or(0) < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the mock receives events");
}

/// The production stack: `Batch -> Retry -> ConcurrencyLimit -> Deadline -> BatchClient`, with
/// retries fast enough for tests.
pub fn batching_stack(
    mock: &MockHandle,
) -> impl tower::Service<
    cio_api::Operation,
    Response = (),
    Error = cio_layers::batch::BatchError<cio_api::EntryError, cio_api::Error>,
    Future = impl Send + 'static,
> + Send {
    use cio_layers::batch::{BatchConfig, BatchLayer};
    use cio_layers::concurrency::ConcurrencyLimitLayer;
    use cio_layers::deadline::DeadlineLayer;
    use cio_layers::retry::{RetryConfig, RetryLayer};

    let limits = cio_api::Limits::default();
    let client =
        cio_api::BatchClient::builder(mock.region(), cio_api::TrackCredentials::new("site", "key"))
            .options(mock.client_options())
            .build();
    tower::ServiceBuilder::new()
        .layer(BatchLayer::new(BatchConfig {
            max_items: std::num::NonZeroUsize::new(50).unwrap(),
            max_weight: limits.batch_weight(),
            max_linger: Duration::from_millis(10),
            ..BatchConfig::default()
        }))
        .layer(RetryLayer::by_error(RetryConfig {
            max_attempts: std::num::NonZeroU32::new(20).unwrap(),
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(100),
            max_retry_after: Duration::from_millis(20),
            max_total_backoff: Duration::from_secs(20),
            give_up_after: None,
            seed: Some(7),
        }))
        .layer(ConcurrencyLimitLayer::new(8))
        .layer(DeadlineLayer::new(Duration::from_secs(2)))
        .service(client)
}
