//! `cio pipe`: send JSON-lines operations (files or stdin) to Customer.io, then report.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use cio_api::{Region, TrackCredentials};
use cio_load::report::ProgressMode;
use cio_pipeline::dead_letter::JsonLinesFile;
use cio_pipeline::source::{FileSource, ReadProgress};
use cio_pipeline::{Progress, Report, Source, StopReason};

use crate::status::PipeStatus;
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::common::{parse_duration, print_line, wait_for_signal, ConcurrencyArg, TargetArgs};
use crate::delivery::{Delivery, DeliverySettings};

/// Flags of `cio pipe`.
#[derive(Args, Debug)]
#[command(after_help = "Each input line is one Track v2 entry, e.g.\n  \
{\"type\":\"person\",\"identifiers\":{\"id\":\"42\"},\"action\":\"event\",\"name\":\"signup\",\"id\":\"01J...\"}\n\n\
Example (against the mock started by `cio mock`):\n  \
CIO_SITE_ID=site CIO_API_KEY=key cio pipe --input events.jsonl --endpoint http://127.0.0.1:7070 \\\n    \
--rate 100 --dead-letter dead.jsonl --checkpoint events.checkpoint --report-json report.json\n\n\
Exit status: 0 when every line was delivered, 1 when any was dead-lettered or the run failed, 2 for bad flags.")]
pub struct PipeArgs {
    /// Input file of JSON lines; `-` reads stdin. Repeat for several files, read in order.
    #[arg(long = "input", short = 'i', value_name = "FILE|-", required = true)]
    inputs: Vec<String>,
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    delivery: DeliveryArgs,
    /// Where operations that cannot be delivered go, with the reason (JSON lines, appended).
    #[arg(long, value_name = "FILE", default_value = "cio-dead-letters.jsonl")]
    dead_letter: PathBuf,
    /// Resume from and record progress in this file (not with stdin).
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    #[command(flatten)]
    output: OutputArgs,
}

/// How operations are delivered: the flags `cio pipe` and `cio replay` share.
#[derive(Args, Debug)]
pub struct DeliveryArgs {
    /// Entries per v2 batch at most (Customer.io limits batches by bytes; this is a cap on top).
    #[arg(long, default_value_t = 5000, value_name = "N")]
    batch_max_items: usize,
    /// Bytes per v2 batch body at most (Customer.io allows 500 KB).
    #[arg(long, default_value_t = 512_000, value_name = "BYTES")]
    batch_max_bytes: usize,
    /// How long a batch may wait to fill, in ms.
    #[arg(long, default_value_t = 200, value_name = "MS")]
    linger_ms: u64,
    /// Requests per second (your workspace's limit; Customer.io's documented default is 100).
    #[arg(long, default_value_t = 100, value_name = "N")]
    rate: u32,
    /// Requests allowed at once after an idle period.
    #[arg(long, default_value_t = 10, value_name = "N")]
    burst: u32,
    /// Requests in flight: a number, or `auto` to adapt to latency and 429s.
    #[arg(long, default_value = "auto", value_name = "N|auto")]
    concurrency: ConcurrencyArg,
    /// One Track v1 request per operation instead of v2 batches.
    #[arg(long)]
    no_batch: bool,
    /// Operations between read and settled at most.
    #[arg(long, default_value_t = 20_000, value_name = "N")]
    max_in_flight: usize,
    /// After Ctrl-C or SIGTERM, how long in-flight work may take (e.g. 30s).
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    shutdown_timeout: Duration,
    /// Dead-letter a batch still failing after this long of retries (e.g. 1h). Default: never;
    /// during an outage the run holds the input back and retries until Customer.io answers,
    /// saying what it waits for every 10 s.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    give_up_after: Option<Duration>,
}

impl DeliveryArgs {
    /// The settings these flags ask for, with the client options of `target`.
    pub fn settings(&self, target: &TargetArgs) -> Result<DeliverySettings, String> {
        let settings = DeliverySettings {
            batch: !self.no_batch,
            batch_max_items: self.batch_max_items,
            batch_max_bytes: self.batch_max_bytes,
            linger: Duration::from_millis(self.linger_ms),
            rate: self.rate,
            burst: self.burst.max(1),
            concurrency: self.concurrency,
            max_in_flight: self.max_in_flight,
            drain_deadline: self.shutdown_timeout,
            give_up_after: self.give_up_after,
            client: target.client_options()?,
            ..DeliverySettings::default()
        };
        settings.check()?;
        Ok(settings)
    }
}

/// What a run shows and writes besides delivering: the flags `cio pipe` and `cio replay` share.
#[derive(Args, Debug)]
pub struct OutputArgs {
    /// Write the final report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    report_json: Option<PathBuf>,
    /// No progress: neither the bar (on a terminal) nor the status lines (elsewhere).
    #[arg(long)]
    no_progress: bool,
    /// Off a terminal, print a status line (read, delivered, in flight, dead letters) this
    /// often (e.g. 30s).
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    status_every: Duration,
}

pub async fn run(args: PipeArgs) -> Result<ExitCode, String> {
    let (region, credentials) = args.target.resolve()?;
    let settings = args.delivery.settings(&args.target)?;
    let mut builder = FileSource::builder();
    for input in &args.inputs {
        if input == "-" {
            if args.checkpoint.is_some() {
                return Err("--checkpoint cannot be used with stdin (`--input -`): there is no offset to resume from".into());
            }
            builder = builder.stdin();
        } else {
            let path = PathBuf::from(input);
            if let Err(e) = std::fs::File::open(&path) {
                return Err(format!("cannot read --input {input}: {e}"));
            }
            builder = builder.path(path);
        }
    }
    if let Some(cp) = &args.checkpoint {
        builder = builder.checkpoint(cp);
    }
    let source = builder
        .max_unpersisted(settings.max_in_flight as u64 * 2)
        .open()
        .await
        .map_err(|e| format!("cannot open the input: {e}"))?;
    let read = source.read_progress();
    let report = deliver(
        source,
        read,
        (region, credentials),
        &settings,
        &args.dead_letter,
        &args.output,
    )
    .await?;
    print_line(report.to_json());
    Ok(exit_code(&report, &args.dead_letter))
}

/// 0 when everything read was delivered and the run ended cleanly, else 1 (saying why).
pub fn exit_code(report: &Report, dead_letter: &Path) -> ExitCode {
    if report.dead_lettered > 0 {
        eprintln!(
            "error: {} operation(s) could not be delivered; they are in {} with the reason",
            report.dead_lettered,
            dead_letter.display()
        );
        return ExitCode::FAILURE;
    }
    match report.stop {
        StopReason::EndOfInput | StopReason::Cancelled if report.close_errors.is_empty() => {
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "error: the run stopped early: {:?} {:?}",
                report.stop, report.close_errors
            );
            ExitCode::FAILURE
        }
    }
}

/// Runs `source` through the delivery stack to `target` until it ends (or Ctrl-C / SIGTERM), dead letters to
/// `dead_letter`, with the progress `output` asks for; prints the summary line on stderr and
/// writes `--report-json`.
pub async fn deliver<S: Source + 'static>(
    source: S,
    read: ReadProgress,
    target: (Region, TrackCredentials),
    settings: &DeliverySettings,
    dead_letter: &Path,
    output: &OutputArgs,
) -> Result<Report, String> {
    let delivery = Delivery::build(target.0, target.1, settings)?;
    let dead_letters = JsonLinesFile::create(dead_letter)
        .await
        .map_err(|e| format!("cannot open --dead-letter {}: {e}", dead_letter.display()))?;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let signals = tokio::spawn(async move {
        wait_for_signal().await;
        tracing::warn!("stopping: finishing in-flight work (Ctrl-C again to abort)");
        stop.cancel();
    });
    let progress = Arc::new(Progress::default());
    let status = PipeStatus::start(
        ProgressMode::for_stderr(output.no_progress, output.status_every),
        Arc::clone(&progress),
        read,
    );
    let report = delivery
        .run(source, dead_letters, settings, progress, shutdown)
        .await;
    status.finish().await;
    signals.abort();

    let m = delivery.metrics().snapshot();
    eprintln!(
        "read {} | delivered {} | dead-lettered {} | unacknowledged {} | {:.0} events/s | {} requests, p50 {:?}, p99 {:?}",
        report.read,
        report.delivered,
        report.dead_lettered,
        report.unacknowledged,
        report.events_per_second,
        m.count,
        m.p50,
        m.p99
    );
    if let Some(path) = &output.report_json {
        std::fs::write(path, report.to_json())
            .map_err(|e| format!("cannot write --report-json {}: {e}", path.display()))?;
    }
    Ok(report)
}
