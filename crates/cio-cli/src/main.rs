//! `cio`: the command line of the Customer.io load and scale toolkit.

mod admin;
mod common;
mod delivery;
mod demo;
mod liveness;
mod load;
mod mock;
mod pipe;
mod replay;
mod status;
mod worker;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// glibc's allocator spent about a fifth of `cio pipe`'s CPU in a profile (`perf record`, 200,000
/// events): every operation allocates its attribute maps and strings. mimalloc is faster at
/// many small, short-lived allocations across threads. Built with `no_thp` (the workspace's
/// Cargo.toml): with transparent huge pages its arenas grew resident memory in 2 MiB steps, and
/// `cio pipe` on 1M lines peaked at 86-104 MB instead of about 70 MB, at the same CPU
/// (`MIMALLOC_ALLOW_THP=0`, crates/cio-pipeline/benches/vs-node.sh, 2026-12-06).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Push people, events and messages into Customer.io, and know it holds under load.
#[derive(Parser, Debug)]
#[command(name = "cio", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines are written on stderr: `text` for people, `json` (one object per line)
    /// for log pipelines such as Kubernetes'. The level comes from RUST_LOG.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// `--log-format`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (tracing-subscriber's json: timestamp, level, target, fields).
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The whole point in one command: a local Customer.io with limits and faults, 200,000 events
    /// through the batched pipeline with proof that each arrived once, and the unbatched path for
    /// comparison.
    Demo(demo::DemoArgs),
    /// Send JSON-lines operations (files or stdin) to Customer.io or the mock, then report.
    Pipe(pipe::PipeArgs),
    /// Send dead letters again (filtered by stage, retryability, time) through the same stack
    /// as `pipe`; what fails again goes to a new dead-letter file.
    Replay(replay::ReplayArgs),
    /// Run a long-lived pipeline (file follow, Redis Streams, Kafka) with /metrics, /healthz and
    /// /readyz, for Kubernetes.
    Worker(worker::WorkerArgs),
    /// Run a load test from a scenario file (k6 vocabulary): open-model rates, thresholds, reports.
    Load(load::LoadArgs),
    /// Run a mock Customer.io server (Track v1/v2, App API, Pipelines) with limits and faults.
    Mock(mock::MockArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints its own summary; other commands log what they do.
    let default_filter = match cli.command {
        Command::Demo(_) => "warn",
        _ => "info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match cli.log_format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logs.json().with_current_span(false).init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The command runs as a task on a worker thread, not on this thread through `block_on`:
    // tasks it spawns (one per message in the pipeline) then go to that worker's local queue
    // instead of waking a worker through the runtime's shared queue each time, which measured
    // as a fifth of `cio pipe`'s CPU in system calls and context switches.
    let command = runtime.spawn(async move {
        match cli.command {
            Command::Demo(args) => demo::run(args).await,
            Command::Pipe(args) => pipe::run(args).await,
            Command::Replay(args) => replay::run(args).await,
            Command::Worker(args) => worker::run(args).await,
            Command::Mock(args) => mock::run(args).await.map(|()| ExitCode::SUCCESS),
            Command::Load(args) => load::run(args).await,
        }
    });
    let result = runtime
        .block_on(command)
        .unwrap_or_else(|e| Err(format!("the command stopped unexpectedly: {e}")));
    // Background tasks (the batch worker, connection pools) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
