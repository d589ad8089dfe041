//! `cio-pipeline-file`: a file pipeline with a checkpoint, sending to a Customer.io Track
//! endpoint (the mock, in tests) until the input ends or SIGTERM / Ctrl-C arrives.
//!
//! ```text
//! cio-pipeline-file --endpoint http://127.0.0.1:7070 --checkpoint cp.json \
//!     --dead-letters dead.jsonl [options] FILE...
//! ```
//!
//! By default each operation is one Track v1 request (`TrackClient`) behind a retry layer. With
//! `--batch` the operations go through the batching stack to `/api/v2/batch`:
//! `Batch -> Retry -> ConcurrencyLimit(8) -> Deadline(5 s) -> BatchClient` (give it a
//! `--max-in-flight` of a few batches, e.g. 1000, or batches cannot fill).
//!
//! It prints one JSON line to stderr when it starts (where each file resumes) and the run's
//! report as one JSON line to stdout when it stops. Exit status: 0 when the input ended or a
//! signal stopped it cleanly, 1 when it stopped on an error, 2 for bad arguments.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cio_api::{BatchClient, ClientOptions, Region, TrackClient, TrackCredentials};
use cio_layers::batch::{BatchConfig, BatchLayer};
use cio_layers::concurrency::ConcurrencyLimitLayer;
use cio_layers::deadline::DeadlineLayer;
use cio_layers::retry::{RetryConfig, RetryLayer};
use cio_layers::ByError;
use cio_pipeline::cio::OperationDecoder;
use cio_pipeline::dead_letter::JsonLinesFile;
use cio_pipeline::source::FileSource;
use cio_pipeline::{Processor, StopReason};
use tokio_util::sync::CancellationToken;

const USAGE: &str = "usage: cio-pipeline-file --endpoint URL [--ca-cert PEM] --checkpoint PATH --dead-letters PATH [--max-in-flight N] [--checkpoint-every N] [--checkpoint-interval-ms N] [--max-unpersisted N] [--drain-deadline-ms N] [--follow] [--batch] FILE...";

struct Args {
    endpoint: String,
    ca_cert: Option<PathBuf>,
    checkpoint: PathBuf,
    dead_letters: PathBuf,
    files: Vec<PathBuf>,
    max_in_flight: usize,
    checkpoint_every: u64,
    checkpoint_interval: Duration,
    max_unpersisted: u64,
    drain_deadline: Duration,
    follow: bool,
    batch: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut endpoint, mut checkpoint, mut dead_letters) = (None, None, None);
    let mut args = Args {
        endpoint: String::new(),
        ca_cert: None,
        checkpoint: PathBuf::new(),
        dead_letters: PathBuf::new(),
        files: Vec::new(),
        max_in_flight: 64,
        checkpoint_every: 100,
        checkpoint_interval: Duration::from_millis(200),
        max_unpersisted: 1000,
        drain_deadline: Duration::from_secs(10),
        follow: false,
        batch: false,
    };
    fn number<T: std::str::FromStr>(flag: &str, v: Option<String>) -> Result<T, String> {
        let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
        v.parse()
            .map_err(|_| format!("{flag} expects a number, got {v:?}"))
    }
    while let Some(a) = it.next() {
        match a.as_str() {
            "--endpoint" => endpoint = it.next(),
            "--ca-cert" => args.ca_cert = it.next().map(PathBuf::from),
            "--checkpoint" => checkpoint = it.next().map(PathBuf::from),
            "--dead-letters" => dead_letters = it.next().map(PathBuf::from),
            "--max-in-flight" => args.max_in_flight = number(&a, it.next())?,
            "--checkpoint-every" => args.checkpoint_every = number(&a, it.next())?,
            "--checkpoint-interval-ms" => {
                args.checkpoint_interval = Duration::from_millis(number(&a, it.next())?)
            }
            "--max-unpersisted" => args.max_unpersisted = number(&a, it.next())?,
            "--drain-deadline-ms" => {
                args.drain_deadline = Duration::from_millis(number(&a, it.next())?)
            }
            "--follow" => args.follow = true,
            "--batch" => args.batch = true,
            "-h" | "--help" => return Err(String::new()),
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            file => args.files.push(PathBuf::from(file)),
        }
    }
    args.endpoint = endpoint.ok_or("--endpoint is required")?;
    args.checkpoint = checkpoint.ok_or("--checkpoint is required")?;
    args.dead_letters = dead_letters.ok_or("--dead-letters is required")?;
    if args.files.is_empty() {
        return Err("give at least one input FILE".into());
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    // Listen before announcing the start, so a SIGTERM sent right after it is never missed.
    let shutdown = CancellationToken::new();
    let signals = tokio::spawn(stop_on_signal(shutdown.clone(), listen_for_sigterm()?));
    let region = Region::custom(&args.endpoint)?;
    let source = FileSource::builder()
        .paths(&args.files)
        .follow(args.follow)
        .checkpoint(&args.checkpoint)
        .checkpoint_every(args.checkpoint_every)
        .checkpoint_interval(args.checkpoint_interval)
        .max_unpersisted(args.max_unpersisted)
        .open()
        .await?;
    let resumed: Vec<_> = source
        .resumed_from()
        .into_iter()
        .map(|(path, mark)| serde_json::json!({"path": &*path, "offset": mark.offset, "line": mark.line}))
        .collect();
    eprintln!(
        "{}",
        serde_json::json!({"event": "started", "pid": std::process::id(), "resumed_from": resumed})
    );

    let dead_letters = JsonLinesFile::create(&args.dead_letters).await?;
    let mut tls = cio_api::TlsOptions::default();
    if let Some(ca) = &args.ca_cert {
        tls = tls.with_ca_file(ca)?;
    }
    let options = ClientOptions {
        timeout: Duration::from_secs(5),
        tls,
        ..ClientOptions::default()
    };
    let credentials = TrackCredentials::new("site", "key");
    let retry = RetryLayer::by_error(RetryConfig {
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(500),
        max_retry_after: Duration::from_millis(500),
        ..RetryConfig::default()
    });
    let report = if args.batch {
        let client = BatchClient::builder(region, credentials)
            .options(options.clone())
            .build();
        let batch = BatchLayer::new(BatchConfig {
            max_weight: options.limits.batch_weight(),
            max_linger: Duration::from_millis(20),
            ..BatchConfig::default()
        });
        let service = tower::ServiceBuilder::new()
            .layer(batch)
            .layer(retry)
            .layer(ConcurrencyLimitLayer::new(8))
            .layer(DeadlineLayer::new(options.timeout))
            .service(client);
        Processor::new(source, OperationDecoder::new(), service, dead_letters)
            .max_in_flight(args.max_in_flight)
            .drain_deadline(args.drain_deadline)
            .classify_errors(ByError)
            .run(shutdown.clone())
            .await
    } else {
        let client = TrackClient::builder(region, credentials)
            .options(options.clone())
            .build();
        let service = tower::ServiceBuilder::new().layer(retry).service(client);
        Processor::new(source, OperationDecoder::new(), service, dead_letters)
            .max_in_flight(args.max_in_flight)
            .drain_deadline(args.drain_deadline)
            .classify_errors(ByError)
            .run(shutdown.clone())
            .await
    };
    signals.abort();
    println!("{}", report.to_json());
    let clean = matches!(report.stop, StopReason::EndOfInput | StopReason::Cancelled)
        && report.close_errors.is_empty();
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(unix)]
type Terminate = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Terminate = ();

#[cfg(unix)]
fn listen_for_sigterm() -> std::io::Result<Terminate> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
}

#[cfg(not(unix))]
fn listen_for_sigterm() -> std::io::Result<Terminate> {
    Ok(())
}

/// Cancels `shutdown` on SIGTERM or Ctrl-C (SIGINT).
#[allow(unused_mut, unused_variables)]
async fn stop_on_signal(shutdown: CancellationToken, mut term: Terminate) {
    #[cfg(unix)]
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    shutdown.cancel();
}
