//! `cio replay`: send dead letters again, through the same stack as `cio pipe`.
//!
//! Each record of the dead-letter file gives back its original payload and position
//! ([`Replay`]), so an event without an `id` gets the id it had the first time and Customer.io
//! de-duplicates what it had in fact accepted. Filters choose which letters go again; the rest
//! stay where they are, in the file replayed, which `cio replay` never writes to. What fails
//! again goes to a new dead-letter file, with the new reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use cio_pipeline::cio::{EntryDecoder, OperationDecoder};
use cio_pipeline::dead_letter::{Replay, ReplayCounts, ReplayFilter, Skip, Stage};
use cio_pipeline::source::{Acknowledge, FileSource, Source};
use cio_pipeline::Decode;
use clap::Args;
use serde_json::json;

use crate::common::{parse_duration, print_line, TargetArgs};
use crate::delivery::DeliverySettings;
use crate::pipe::{deliver, exit_code, DeliveryArgs, OutputArgs};

/// Flags of `cio replay`.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
cio replay cio-dead-letters.jsonl --endpoint http://127.0.0.1:7070 --dry-run\n  \
CIO_SITE_ID=site CIO_API_KEY=key cio replay cio-dead-letters.jsonl --region us --retryable-only --since 2h\n\n\
The file replayed is only read. Letters the filters leave out stay in it; what fails again goes to\n\
--dead-letter (default: a new FILE.replay-<UTC time>.jsonl next to it), with the new reason.\n\
Exit status: 0 when every letter replayed was delivered, 1 when any failed again or the run failed,\n\
2 for bad flags.")]
pub struct ReplayArgs {
    /// Dead-letter files (as `cio pipe` and `cio worker` write them), read in order.
    #[arg(value_name = "FILE", required = true)]
    files: Vec<PathBuf>,
    /// Only delivery failures whose last error was retryable (5xx, 429, timeouts: retries ran
    /// out or --give-up-after passed). Leaves out decode failures and permanent refusals.
    #[arg(long)]
    retryable_only: bool,
    /// Only letters of this stage: `decode` (the line could not become an operation) or
    /// `deliver` (Customer.io refused it, or retries ran out).
    #[arg(long, value_enum, value_name = "decode|deliver")]
    stage: Option<StageArg>,
    /// Only letters written at or after this time: an RFC 3339 time (2026-12-06T09:30:00Z) or
    /// a duration back from now (2h, 30m).
    #[arg(long, value_parser = parse_since, value_name = "TIME|DURATION")]
    since: Option<SystemTime>,
    /// Send nothing: read the letters, apply the filters, check each payload as it would be
    /// sent, and report what a replay would do. Needs no credentials.
    #[arg(long, conflicts_with = "checkpoint")]
    dry_run: bool,
    /// Where what fails again goes [default: FILE.replay-<UTC time>.jsonl, new each run].
    #[arg(long, value_name = "FILE")]
    dead_letter: Option<PathBuf>,
    /// Resume from and record progress in this file: an interrupted replay goes on where it
    /// stopped.
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    delivery: DeliveryArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// `--stage`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum StageArg {
    Decode,
    Deliver,
}

impl From<StageArg> for Stage {
    fn from(s: StageArg) -> Stage {
        match s {
            StageArg::Decode => Stage::Decode,
            StageArg::Deliver => Stage::Deliver,
        }
    }
}

/// `--since`: an RFC 3339 time, or a duration before now.
fn parse_since(s: &str) -> Result<SystemTime, String> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t);
    }
    match parse_duration(s) {
        Ok(d) => SystemTime::now()
            .checked_sub(d)
            .ok_or_else(|| format!("{s:?} reaches back before 1970")),
        Err(_) => Err(format!(
            "{s:?} is neither a time nor a duration: give e.g. 2026-12-06T09:30:00Z or 2h"
        )),
    }
}

pub async fn run(args: ReplayArgs) -> Result<ExitCode, String> {
    for file in &args.files {
        if let Err(e) = std::fs::File::open(file) {
            return Err(format!("cannot read {}: {e}", file.display()));
        }
    }
    let filter = ReplayFilter {
        stage: args.stage.map(Stage::from),
        retryable_only: args.retryable_only,
        since: args.since,
    };
    if filter.stage == Some(Stage::Decode) && filter.retryable_only {
        return Err("--stage decode with --retryable-only selects nothing: a decode failure is never retryable (drop one of them)".into());
    }
    let mut builder = FileSource::builder()
        .paths(args.files.iter().cloned())
        // A record escapes its payload: give a line the room of the largest payload a source
        // takes (1 MiB) written out as JSON.
        .max_line_bytes(8 << 20);
    if let Some(cp) = &args.checkpoint {
        builder = builder.checkpoint(cp);
    }

    if args.dry_run {
        let settings = args.delivery.settings(&TargetArgs::default())?;
        let source = Replay::new(
            builder
                .open()
                .await
                .map_err(|e| format!("cannot open {}: {e}", list(&args.files)))?,
        )
        .with_filter(filter);
        return dry_run(source, &settings).await;
    }

    let dead_letter = match &args.dead_letter {
        Some(path) => path.clone(),
        None => default_dead_letter(&args.files[0], SystemTime::now()),
    };
    refuse_to_write_into_an_input(&dead_letter, &args.files)?;
    let (region, credentials) = args.target.resolve()?;
    let settings = args.delivery.settings(&args.target)?;
    let source = builder
        .max_unpersisted(settings.max_in_flight as u64 * 2)
        .open()
        .await
        .map_err(|e| format!("cannot open {}: {e}", list(&args.files)))?;
    let read = source.read_progress();
    let source = Replay::new(source).with_filter(filter);
    let counts = source.counts();
    let report = deliver(
        source,
        read,
        (region, credentials),
        &settings,
        &dead_letter,
        &args.output,
    )
    .await?;
    eprintln!(
        "replayed {} letter(s): {} delivered, {} failed again{}; {} left out by the filters ({}), still in {}",
        counts.replayed(),
        report.delivered,
        report.dead_lettered,
        if report.dead_lettered > 0 {
            format!(" (in {})", dead_letter.display())
        } else {
            String::new()
        },
        counts.skipped_total(),
        skipped_detail(&counts),
        list(&args.files),
    );
    let mut out: serde_json::Value =
        serde_json::from_str(&report.to_json()).unwrap_or_else(|_| json!({}));
    out["replay"] = json!({
        "replayed": counts.replayed(),
        "skipped": skipped_json(&counts),
        "not_records": counts.not_records(),
        "dead_letter": dead_letter.display().to_string(),
    });
    print_line(out);
    Ok(exit_code(&report, &dead_letter))
}

/// `dead.jsonl` -> `dead.replay-20261206T093000Z.jsonl`, next to it.
fn default_dead_letter(file: &Path, now: SystemTime) -> PathBuf {
    let stamp: String = humantime::format_rfc3339_seconds(now)
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dead-letters".into());
    file.with_file_name(format!("{stem}.replay-{stamp}.jsonl"))
}

/// Appending to a file being replayed would feed its own failures back to it, without end.
fn refuse_to_write_into_an_input(dead_letter: &Path, files: &[PathBuf]) -> Result<(), String> {
    let Ok(target) = std::fs::canonicalize(dead_letter) else {
        return Ok(()); // does not exist yet: not an input
    };
    for file in files {
        if std::fs::canonicalize(file).is_ok_and(|f| f == target) {
            return Err(format!(
                "--dead-letter {} is the file being replayed: what fails again would be read again; give another file (or leave --dead-letter out for a new one)",
                dead_letter.display()
            ));
        }
    }
    Ok(())
}

fn list(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn skipped_json(counts: &ReplayCounts) -> serde_json::Value {
    json!({
        "stage": counts.skipped(Skip::Stage),
        "not_retryable": counts.skipped(Skip::NotRetryable),
        "older": counts.skipped(Skip::Older),
    })
}

fn skipped_detail(counts: &ReplayCounts) -> String {
    format!(
        "{} other stage, {} not retryable, {} older than --since",
        counts.skipped(Skip::Stage),
        counts.skipped(Skip::NotRetryable),
        counts.skipped(Skip::Older)
    )
}

/// `--dry-run`: what a replay would send, and what would fail before sending.
async fn dry_run<S: Source>(
    mut source: Replay<S>,
    settings: &DeliverySettings,
) -> Result<ExitCode, String> {
    let counts = source.counts();
    type Check = dyn Fn(&[u8], &cio_pipeline::source::Position) -> Result<(), String> + Send + Sync;
    let check: Box<Check> = if settings.batch {
        let d = EntryDecoder::with_limits(settings.limits());
        Box::new(move |p, pos| {
            d.decode(p, pos)
                .map(drop)
                .map_err(|e| e.reason().to_owned())
        })
    } else {
        let d = OperationDecoder::with_limits(settings.limits());
        Box::new(move |p, pos| {
            d.decode(p, pos)
                .map(drop)
                .map_err(|e| e.reason().to_owned())
        })
    };
    let (mut would_send, mut would_fail) = (0u64, 0u64);
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    loop {
        let message = match source.next().await {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(e) => return Err(format!("cannot read the dead letters: {e}")),
        };
        let result = match message.oversize {
            Some(n) => Err(format!(
                "line of {n} bytes is over the 8 MiB a record may take"
            )),
            None => check(&message.payload, &message.position),
        };
        match result {
            Ok(()) => would_send += 1,
            Err(reason) => {
                would_fail += 1;
                *reasons.entry(shorten(&reason)).or_default() += 1;
            }
        }
        // Nothing was done: leave it as it was (no checkpoint moves).
        let _ = message.ack.nack().await;
    }
    let _ = source.close().await;
    eprintln!(
        "dry run: {} letter(s) would be replayed: {would_send} would be sent, {would_fail} would fail before sending; {} left out by the filters ({})",
        counts.replayed(),
        counts.skipped_total(),
        skipped_detail(&counts),
    );
    for (reason, n) in &reasons {
        eprintln!("  {n} x {reason}");
    }
    print_line(json!({
        "dry_run": true,
        "replayed": counts.replayed(),
        "would_send": would_send,
        "would_fail": would_fail,
        "failures": reasons,
        "skipped": skipped_json(&counts),
        "not_records": counts.not_records(),
    }));
    Ok(ExitCode::SUCCESS)
}

/// A reason as a key to count by: its first line, at most 200 characters.
fn shorten(reason: &str) -> String {
    let first = reason.lines().next().unwrap_or_default();
    match first.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &first[..i]),
        None => first.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn since_takes_a_time_or_a_duration_back() {
        let t = parse_since("2026-12-06T09:30:00Z").unwrap();
        assert_eq!(
            humantime::format_rfc3339_seconds(t).to_string(),
            "2026-12-06T09:30:00Z"
        );
        let ago = SystemTime::now()
            .duration_since(parse_since("2h").unwrap())
            .unwrap();
        assert!((Duration::from_secs(7199)..Duration::from_secs(7300)).contains(&ago));
        assert!(parse_since("yesterday").unwrap_err().contains("e.g."));
    }

    #[test]
    fn the_default_dead_letter_file_is_new_and_next_to_the_input() {
        let t = humantime::parse_rfc3339("2026-12-06T09:30:00Z").unwrap();
        assert_eq!(
            default_dead_letter(Path::new("/var/cio/dead.jsonl"), t),
            PathBuf::from("/var/cio/dead.replay-20261206T093000Z.jsonl")
        );
    }
}
