//! `cio load FILE`: run a scenario file (k6 vocabulary) against the embedded mock, a URL, or
//! Customer.io, print a k6-like summary, and exit 99 when a threshold fails.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cio_load::metrics::TrendColumn;
use cio_load::report::{Progress, ProgressMode};
use cio_load::{Connection, Credentials, Endpoint, Plan, SampleFormat};
use cio_mock::{Faults, Latency, MockServer};
use clap::Args;

/// k6's exit code for failed thresholds.
const THRESHOLDS_FAILED: u8 = 99;

/// Flags of `cio load`.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  cio load crates/cio-load/scenarios/smoke.toml\n  \
cio load plan.toml --target http://127.0.0.1:7070 --summary-export summary.json --out json=samples.jsonl --out csv=samples.csv\n  \
cio load plan.toml --report report.html\n  \
CIO_SITE_ID=... CIO_API_KEY=... cio load plan.toml --target eu --workspace-rate-limit 100\n\n\
Exit codes: 0 every threshold held, 99 a threshold failed, 1 anything else (a bad file, the\n\
test stopped early by a safety bound or Ctrl-C). The file format is in docs/load-testing.md."
)]
pub struct LoadArgs {
    /// The scenario file: TOML, or JSON (`.json`).
    file: PathBuf,
    /// Where to send: `mock` (an embedded mock), `us`, `eu`, or an http(s):// URL. Overrides
    /// `[target] endpoint`. Customer.io needs CIO_SITE_ID and CIO_API_KEY (and CIO_APP_KEY for
    /// transactional sends).
    #[arg(long, value_parser = Endpoint::parse)]
    target: Option<Endpoint>,
    /// Track requests/s your workspace allows; a plan above it is warned about. Overrides
    /// `[target] workspace_rate_limit`.
    #[arg(long)]
    workspace_rate_limit: Option<u32>,
    /// Write the end-of-test summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    summary_export: Option<PathBuf>,
    /// Write an HTML report to this file: one self-contained page with charts per scenario
    /// (target against achieved rate, latency percentiles, errors by status, VUs and dropped
    /// iterations over time), the thresholds and the summary. Opens from disk; fetches nothing.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Write results while the test runs, as k6 does: `json=FILE` (k6's NDJSON of Metric and
    /// Point lines, a point per sample), `csv=FILE` (k6's CSV columns), or `series=FILE` (ours:
    /// one JSON object per second and scenario). May be given more than once.
    #[arg(long, value_name = "KIND=FILE", value_parser = parse_out)]
    out: Vec<Out>,
    /// The statistics each trend lists in the summary and its export, comma-separated (k6's
    /// --summary-trend-stats), e.g. `avg,med,p(99),p(99.9)`. Overrides
    /// `[options] summary_trend_stats`; default avg,min,med,max,p(90),p(95).
    #[arg(long, value_name = "STATS", value_parser = parse_trend_stats)]
    summary_trend_stats: Option<TrendStats>,
    /// Stop after this long whatever the file says (a safety bound, default 1h).
    #[arg(long, value_parser = cio_load::parse_duration, value_name = "DURATION")]
    max_duration: Option<Duration>,
    /// Start at most this many iterations (a safety bound, default 50,000,000).
    #[arg(long)]
    max_iterations: Option<u64>,
    /// No progress: neither the bars (on a terminal) nor the status lines (elsewhere).
    #[arg(long)]
    no_progress: bool,
    /// Off a terminal, print a status line per scenario this often (e.g. 30s).
    #[arg(long, default_value = "10s", value_parser = cio_load::parse_duration, value_name = "DURATION")]
    status_every: Duration,
    /// Do not print the summary (the exit code and --summary-export still tell).
    #[arg(long, short)]
    quiet: bool,
    /// Also trust the CA certificates in this PEM file for https (e.g. `cio mock --tls
    /// --tls-ca-out ca.pem`'s, or a staging proxy's).
    #[arg(long, env = "CIO_CA_CERT", value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Trust the system's certificate store instead of the built-in webpki roots.
    #[arg(long, env = "CIO_NATIVE_ROOTS")]
    native_roots: bool,
    /// Threads that run the VUs and their connections. One (the default) costs the least CPU
    /// per request and drove 25,000 requests/s on a 2-core VM; raise it when `cio load` itself
    /// keeps a core busy and iterations are dropped. The embedded mock runs on other threads.
    #[arg(long, env = "CIO_LOAD_THREADS", default_value = "1", value_name = "N")]
    threads: std::num::NonZeroUsize,
}

/// One `--out`.
#[derive(Clone, Debug)]
enum Out {
    /// k6's per-sample formats.
    Samples(SampleFormat, PathBuf),
    /// Our one-second series.
    Series(PathBuf),
}

fn parse_out(s: &str) -> Result<Out, String> {
    let usage = "write it json=FILE (k6's NDJSON), csv=FILE (k6's CSV) or series=FILE (one JSON object per second and scenario)";
    let Some((kind, path)) = s.split_once('=') else {
        return Err(format!("{s:?}: {usage}"));
    };
    if path.is_empty() {
        return Err(format!("{s:?}: no file after `=`; {usage}"));
    }
    let path = PathBuf::from(path);
    match kind {
        "json" => Ok(Out::Samples(SampleFormat::Json, path)),
        "csv" => Ok(Out::Samples(SampleFormat::Csv, path)),
        "series" => Ok(Out::Series(path)),
        other => Err(format!(
            "{s:?}: unknown output `{other}` (k6's influxdb, prometheus and cloud outputs are not built in); {usage}"
        )),
    }
}

/// `--summary-trend-stats`: one flag, many statistics.
#[derive(Clone, Debug)]
struct TrendStats(Vec<TrendColumn>);

fn parse_trend_stats(s: &str) -> Result<TrendStats, String> {
    // p(N) holds no comma, so a plain split is enough.
    s.split(',')
        .filter(|c| !c.trim().is_empty())
        .map(TrendColumn::parse)
        .collect::<Result<Vec<_>, _>>()
        .and_then(|v| {
            if v.is_empty() {
                Err("name at least one statistic, e.g. avg,p(95)".into())
            } else {
                Ok(TrendStats(v))
            }
        })
}

pub async fn run(args: LoadArgs) -> Result<ExitCode, String> {
    let mut plan = Plan::from_file(&args.file).map_err(|e| e.to_string())?;
    if let Some(t) = args.target {
        plan.target.endpoint = t;
    }
    if let Some(l) = args.workspace_rate_limit {
        plan.target.workspace_rate_limit = l;
    }
    if let Some(d) = args.max_duration {
        plan.bounds.max_duration = d;
    }
    if let Some(n) = args.max_iterations {
        plan.bounds.max_iterations = n;
    }

    let mock = match plan.target.endpoint {
        Endpoint::Mock => Some(start_mock(&plan).await?),
        _ => None,
    };
    let tls = crate::common::tls_options(args.ca_cert.as_deref(), args.native_roots)?;
    let connection = Connection::resolve(
        &plan.target.endpoint,
        mock.as_ref().map(|m| m.url()).as_deref(),
        Credentials::from_env(),
        plan.needs_app(),
        cio_api::ClientOptions {
            tls,
            ..plan.client_options()
        },
    )
    .map_err(|e| e.to_string())?;
    if plan.target.endpoint.is_customer_io() {
        tracing::warn!(
            "sending real traffic to Customer.io ({}): use a test workspace",
            plan.target.endpoint.as_str()
        );
    }

    let mut test = plan.load_test(&connection).map_err(|e| e.to_string())?;
    // Opened now, so that a path that cannot be written fails before the test, not after it.
    let html = match &args.report {
        Some(path) => Some((
            path,
            File::create(path)
                .map_err(|e| format!("cannot write --report {}: {e}", path.display()))?,
        )),
        None => None,
    };
    if let Some(mock) = &mock {
        test = test.target_label(format!("mock ({})", mock.url()));
    }
    for out in &args.out {
        let (Out::Samples(_, path) | Out::Series(path)) = out;
        let file = BufWriter::new(
            File::create(path)
                .map_err(|e| format!("cannot write --out {}: {e}", path.display()))?,
        );
        test = match out {
            Out::Samples(format, _) => test.samples(*format, file),
            Out::Series(_) => test.time_series(file),
        };
    }
    if let Some(stats) = &args.summary_trend_stats {
        test = test.summary_trend_stats(stats.0.clone());
    }
    let mut handle = test
        .threads(args.threads)
        .start()
        .map_err(|e| e.to_string())?;
    let progress = Progress::start(
        handle.live(),
        ProgressMode::for_stderr(args.no_progress, args.status_every),
    );
    let report = tokio::select! {
        r = handle.finish() => r,
        _ = tokio::signal::ctrl_c() => {
            tracing::warn!("interrupted: stopping the test (Ctrl-C again to quit at once)");
            handle.stop();
            tokio::select! {
                r = handle.finish() => r,
                _ = tokio::signal::ctrl_c() => return Ok(ExitCode::FAILURE),
            }
        }
    };
    progress.finish().await;
    let mut report = report.map_err(|e| e.to_string())?;
    if let Some(mock) = mock {
        report.mock = serde_json::to_value(mock.stats()).ok();
        mock.shutdown().await;
    }
    if !args.quiet {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(report.render().as_bytes());
        let _ = out.flush();
    }
    if let Some(path) = &args.summary_export {
        let json = serde_json::to_vec_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if let Some((path, mut file)) = html {
        file.write_all(report.html().as_bytes())
            .and_then(|()| file.flush())
            .map_err(|e| format!("cannot write --report {}: {e}", path.display()))?;
    }
    if !report.passed {
        return Ok(ExitCode::from(THRESHOLDS_FAILED));
    }
    if let Some(reason) = &report.aborted {
        return Err(format!("the test stopped early: {reason}"));
    }
    Ok(ExitCode::SUCCESS)
}

async fn start_mock(plan: &Plan) -> Result<cio_mock::MockHandle, String> {
    let m = &plan.target.mock;
    let latency = m.latency_ms.map(|p50| Latency {
        p50,
        p99: m.latency_p99_ms,
    });
    MockServer::builder()
        .track_rate(m.track_rate, m.track_burst.unwrap_or(m.track_rate))
        .app_limit(std::num::NonZeroU32::new(m.app_rate).map(cio_mock::RateLimit::per_second))
        .faults(Faults {
            latency_ms: latency,
            error_rate: m.error_rate,
            throttle_rate: m.throttle_rate,
            drop_rate: 0.0,
            retry_after_s: None,
        })
        .start()
        .await
        .map_err(|e| format!("cannot start the embedded mock: {e}"))
}
