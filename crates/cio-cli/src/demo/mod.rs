//! `cio demo`: the whole point in one command. A local Customer.io that enforces a 100 requests/s
//! limit and injects faults; synthetic events through the full pipeline (file source -> batch ->
//! metrics -> retry -> rate limit -> adaptive concurrency -> v2 batch client); proof that every
//! event arrived exactly once; then the unbatched v1 path for the same time, side by side.

use std::io::{BufWriter, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cio_api::TrackCredentials;
use cio_mock::{Faults, Latency, MockHandle, MockServer, StatsSnapshot};
use cio_pipeline::dead_letter::JsonLinesFile;
use cio_pipeline::source::FileSource;
use cio_pipeline::{Progress, Report};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::common::ConcurrencyArg;
use crate::delivery::{Delivery, DeliverySettings};

mod timeline;

use timeline::Timeline;

/// Flags of `cio demo`.
#[derive(Args, Debug)]
#[command(after_help = "Example:\n  cio demo --events 200000\n\n\
Starts an embedded mock Customer.io (100 requests/s Track limit, ~20 ms latency with a tail, 1 % 5xx,\n\
occasional 429s), pushes the events through the batched pipeline, proves every event arrived exactly\n\
once, then runs the unbatched v1 path for the same time and compares events/s.\n\
Exit status: 0 when nothing was lost or duplicated, 1 otherwise.")]
pub struct DemoArgs {
    /// Synthetic events to generate.
    #[arg(long, default_value_t = 200_000, value_name = "N")]
    events: usize,
    /// The mock's (and the client's) Track limit, requests per second.
    #[arg(long, default_value_t = 100, value_name = "N")]
    rate: u32,
    /// Seed of the synthetic workload.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Skip the unbatched comparison.
    #[arg(long)]
    skip_unbatched: bool,
    /// Run the mock on https (a CA made at start, trusted by the clients): the path every
    /// production event takes, TLS included.
    #[arg(long)]
    tls: bool,
    /// Write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    summary_json: Option<std::path::PathBuf>,
    /// Write an HTML report to this file: the two runs side by side, with events delivered,
    /// requests by status against the limit, latency per call and events in flight over time.
    /// One self-contained page; fetches nothing.
    #[arg(long, value_name = "FILE")]
    report: Option<std::path::PathBuf>,
    /// Only write the synthetic events (JSON lines) to this file and exit: input for
    /// `cio pipe` benchmarks.
    #[arg(long, value_name = "FILE")]
    generate_only: Option<std::path::PathBuf>,
}

/// Writes `n` synthetic operations (events with ids, page views, identifies) as JSON lines;
/// returns how many carry an event id.
fn generate(path: &Path, n: usize, seed: u64) -> std::io::Result<u64> {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let names = [
        "order_completed",
        "cart_updated",
        "signed_in",
        "trial_started",
        "plan_changed",
    ];
    let plans = ["free", "starter", "pro", "enterprise"];
    let now = 1_795_800_000i64;
    let mut with_id = 0;
    for i in 0..n {
        let user = format!("user-{:06}", rng.gen_range(0..50_000));
        let roll: u32 = rng.gen_range(0..100);
        let line = if roll < 10 {
            json!({"type":"person","identifiers":{"id":user},"action":"identify","attributes":{
                "email": format!("{user}@example.com"), "plan": plans[rng.gen_range(0..plans.len())],
                "created_at": now - rng.gen_range(0..30_000_000), "seats": rng.gen_range(1..200)}})
        } else if roll < 25 {
            with_id += 1;
            json!({"type":"person","identifiers":{"id":user},"action":"page","name":"https://example.com/pricing",
                "id": ulid_like(seed, i), "timestamp": now + i as i64 / 1000,
                "attributes":{"referrer":"https://news.example.org/","utm_source":"newsletter"}})
        } else {
            with_id += 1;
            json!({"type":"person","identifiers":{"id":user},"action":"event","name":names[rng.gen_range(0..names.len())],
                "id": ulid_like(seed, i), "timestamp": now + i as i64 / 1000,
                "attributes":{"order_id": format!("ord-{i:08}"), "total": rng.gen_range(5..500) as f64 + 0.99,
                    "currency":"EUR", "items": rng.gen_range(1..6), "coupon": if roll % 3 == 0 { "SPRING" } else { "" }}})
        };
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(with_id)
}

/// A ULID-shaped id, unique per (seed, line): 10 characters of time, 16 of a mixed counter.
fn ulid_like(seed: u64, i: usize) -> String {
    const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let time = 1_795_800_000_000u64 + i as u64;
    let noise = (u128::from(seed) << 64 | i as u128)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
    let mut s = String::with_capacity(26);
    for k in (0..10).rev() {
        s.push(CROCKFORD[((time >> (5 * k)) & 31) as usize] as char);
    }
    for k in (0..16).rev() {
        s.push(CROCKFORD[((noise >> (5 * k)) & 31) as usize] as char);
    }
    s
}

/// How often `--report`'s charts take a sample: a batched run of the default size lasts a
/// few seconds.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

struct Run {
    report: Report,
    stats: StatsSnapshot,
    requests: u64,
    p50: Duration,
    p95: Duration,
    p99: Duration,
    elapsed: Duration,
    samples: Vec<timeline::Sample>,
}

async fn run_path(
    mock: &MockHandle,
    input: &Path,
    dead_letters: &Path,
    settings: &DeliverySettings,
    total: u64,
    budget: Option<Duration>,
    label: &str,
) -> Result<Run, String> {
    mock.reset();
    let delivery = Delivery::build(
        mock.region(),
        TrackCredentials::new("demo-site", "demo-key"),
        settings,
    )?;
    let source = FileSource::builder()
        .path(input)
        .max_unpersisted(settings.max_in_flight as u64 * 2)
        .open()
        .await
        .map_err(|e| format!("cannot read the generated events: {e}"))?;
    let letters = JsonLinesFile::create(dead_letters)
        .await
        .map_err(|e| format!("cannot create {}: {e}", dead_letters.display()))?;
    let progress = Arc::new(Progress::default());
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>10} [{elapsed_precise}] {bar:30} {pos}/{len} events ({per_sec}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(label.to_owned());
    let shutdown = CancellationToken::new();
    let mut timeline = Timeline::start(progress.clone(), delivery.metrics().clone());
    let limit = delivery.concurrency().cloned();
    let started = Instant::now();
    let report = {
        let run = delivery.run(
            source,
            letters,
            settings,
            progress.clone(),
            shutdown.clone(),
        );
        tokio::pin!(run);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_sample = SAMPLE_EVERY;
        loop {
            tokio::select! {
                report = &mut run => break report,
                _ = tick.tick() => {}
            }
            bar.set_position(progress.delivered() + progress.dead_lettered());
            bar.set_message(format!(
                "| in flight {} | concurrency {} | requests {}",
                progress.in_flight(),
                limit
                    .as_ref()
                    .map(|c| c.limit().to_string())
                    .unwrap_or_else(|| "-".into()),
                delivery.metrics().snapshot().count
            ));
            if started.elapsed() >= next_sample {
                timeline.sample(mock.stats().by_status);
                next_sample += SAMPLE_EVERY;
            }
            if budget.is_some_and(|b| started.elapsed() >= b) {
                shutdown.cancel();
            }
        }
    };
    let elapsed = started.elapsed();
    timeline.sample(mock.stats().by_status);
    bar.finish_and_clear();
    let m = delivery.metrics().snapshot();
    Ok(Run {
        stats: mock.stats(),
        requests: m.count,
        p50: m.p50,
        p95: m.p95,
        p99: m.p99,
        report,
        elapsed,
        samples: timeline.into_samples(),
    })
}

pub async fn run(args: DemoArgs) -> Result<ExitCode, String> {
    if args.events == 0 {
        return Err("--events must be at least 1".into());
    }
    if let Some(path) = &args.generate_only {
        let with_id = generate(path, args.events, args.seed)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!(
            "wrote {} operations ({with_id} events with ids) to {}",
            args.events,
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    // Opened now, so that a path that cannot be written fails before the runs, not after them.
    let mut html = match &args.report {
        Some(path) => Some((
            path,
            std::fs::File::create(path)
                .map_err(|e| format!("cannot write --report {}: {e}", path.display()))?,
        )),
        None => None,
    };
    let dir =
        tempfile::tempdir().map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let input = dir.path().join("events.jsonl");
    let started = Instant::now();
    let with_id = generate(&input, args.events, args.seed)
        .map_err(|e| format!("cannot write {}: {e}", input.display()))?;
    let size = std::fs::metadata(&input).map(|m| m.len()).unwrap_or(0);
    println!(
        "generated {} operations ({} events with ids, {:.1} MB) in {:.2?}",
        args.events,
        with_id,
        size as f64 / 1e6,
        started.elapsed()
    );

    let mut builder = MockServer::builder();
    if args.tls {
        builder = builder.tls();
    }
    let mock = builder
        .track_rate(args.rate, args.rate)
        .faults(Faults {
            latency_ms: Some(Latency {
                p50: 20.0,
                p99: Some(120.0),
            }),
            error_rate: 0.01,
            throttle_rate: 0.005,
            drop_rate: 0.0,
            retry_after_s: None,
        })
        .start()
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "mock Customer.io on {} | Track limit {}/s | latency p50 20 ms, p99 120 ms | 1 % 5xx | 0.5 % 429",
        mock.url(),
        args.rate
    );

    let batched_settings = DeliverySettings {
        batch: true,
        batch_max_items: 2000,
        rate: args.rate,
        burst: (args.rate / 10).max(1),
        concurrency: ConcurrencyArg::Auto,
        max_in_flight: 40_000,
        linger: Duration::from_millis(100),
        client: mock.client_options(),
        ..DeliverySettings::default()
    };
    let batched = run_path(
        &mock,
        &input,
        &dir.path().join("dead-batched.jsonl"),
        &batched_settings,
        args.events as u64,
        None,
        "batched",
    )
    .await?;
    print_run("batched: v2 /batch through the full stack", &batched);
    let exact = batched.report.delivered == args.events as u64
        && batched.report.dead_lettered == 0
        && batched.stats.unique_event_ids == with_id
        && batched.stats.duplicate_event_ids == 0
        && batched.stats.accepted.values().sum::<u64>() == args.events as u64;
    println!(
        "  proof: the mock accepted {} operations, {} distinct event ids of {} sent, {} duplicates -> {}",
        batched.stats.accepted.values().sum::<u64>(),
        batched.stats.unique_event_ids,
        with_id,
        batched.stats.duplicate_event_ids,
        if exact { "every event arrived exactly once" } else { "MISMATCH" }
    );

    let unbatched = if args.skip_unbatched {
        None
    } else {
        let budget = batched.elapsed.max(Duration::from_secs(2));
        let settings = DeliverySettings {
            batch: false,
            rate: args.rate,
            burst: (args.rate / 10).max(1),
            concurrency: ConcurrencyArg::Auto,
            max_in_flight: 256,
            drain_deadline: Duration::from_secs(5),
            client: mock.client_options(),
            ..DeliverySettings::default()
        };
        let run = run_path(
            &mock,
            &input,
            &dir.path().join("dead-unbatched.jsonl"),
            &settings,
            args.events as u64,
            Some(budget),
            "unbatched",
        )
        .await?;
        print_run(
            &format!("unbatched: v1, one request per operation, for the same {budget:.1?}"),
            &run,
        );
        Some(run)
    };

    let batched_rate = batched.report.delivered as f64 / batched.elapsed.as_secs_f64();
    if let Some(u) = &unbatched {
        let unbatched_rate = u.report.delivered as f64 / u.elapsed.as_secs_f64();
        println!(
            "\nside by side at {} requests/s: batched {:.0} events/s, unbatched {:.0} events/s: {:.0}x",
            args.rate,
            batched_rate,
            unbatched_rate,
            batched_rate / unbatched_rate.max(f64::MIN_POSITIVE)
        );
    }
    if let Some(path) = &args.summary_json {
        let summary = json!({
            "events": args.events, "event_ids": with_id, "rate_limit": args.rate,
            "batched": summary(&batched),
            "unbatched": unbatched.as_ref().map(summary),
            "exactly_once": exact,
        });
        std::fs::write(
            path,
            serde_json::to_vec_pretty(&summary).unwrap_or_default(),
        )
        .map_err(|e| format!("cannot write --summary-json {}: {e}", path.display()))?;
    }
    if let Some((path, file)) = html.as_mut() {
        let mut meta = vec![
            format!(
                "{} synthetic operations ({with_id} events with ids), seed {}, against the embedded mock{}",
                args.events,
                args.seed,
                if args.tls { " over https" } else { "" }
            ),
            format!(
                "mock: Track limit {}/s, latency p50 20 ms and p99 120 ms, 1 % 5xx, 0.5 % 429",
                args.rate
            ),
            format!(
                "proof: {} distinct event ids of {with_id} sent, {} duplicates: {}",
                batched.stats.unique_event_ids,
                batched.stats.duplicate_event_ids,
                if exact { "every event arrived exactly once" } else { "MISMATCH" }
            ),
        ];
        let mut runs = vec![("batched: v2 /batch through the full stack", &batched)];
        if let Some(u) = &unbatched {
            let unbatched_rate = u.report.delivered as f64 / u.elapsed.as_secs_f64();
            meta.push(format!(
                "side by side: batched {batched_rate:.0} events/s, unbatched {unbatched_rate:.0} events/s: {:.0}x",
                batched_rate / unbatched_rate.max(f64::MIN_POSITIVE)
            ));
            runs.push(("unbatched: v1, one request per operation", u));
        }
        let page = timeline::page(meta, exact, &runs, args.rate);
        file.write_all(page.render().as_bytes())
            .and_then(|()| file.flush())
            .map_err(|e| format!("cannot write --report {}: {e}", path.display()))?;
    }
    mock.shutdown().await;
    if exact {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: events were lost or duplicated (see the proof line above)");
        Ok(ExitCode::FAILURE)
    }
}

fn print_run(title: &str, r: &Run) {
    let s = &r.stats;
    let status_429 = s.by_status.get("429").copied().unwrap_or(0);
    println!("\n{title}");
    println!(
        "  events: read {} | delivered {} | dead-lettered {} | unacknowledged {} | {:.0} events/s in {:.2?}",
        r.report.read,
        r.report.delivered,
        r.report.dead_lettered,
        r.report.unacknowledged,
        r.report.delivered as f64 / r.elapsed.as_secs_f64(),
        r.elapsed
    );
    println!(
        "  requests: {} sent, {} retries | 429s seen {} ({} injected, {} from exceeding the limit) | 5xx {}",
        s.requests,
        s.requests.saturating_sub(r.requests),
        status_429,
        s.injected_throttles,
        s.rate_limited,
        s.injected_errors
    );
    println!(
        "  latency per call (retries included): p50 {:.1?} | p95 {:.1?} | p99 {:.1?} | busiest second at the mock: {} requests",
        r.p50, r.p95, r.p99, s.max_track_requests_in_a_second
    );
}

fn summary(r: &Run) -> serde_json::Value {
    json!({
        "read": r.report.read, "delivered": r.report.delivered, "dead_lettered": r.report.dead_lettered,
        "unacknowledged": r.report.unacknowledged, "seconds": r.elapsed.as_secs_f64(),
        "events_per_second": r.report.delivered as f64 / r.elapsed.as_secs_f64(),
        "requests": r.stats.requests, "calls": r.requests,
        "status_429": r.stats.by_status.get("429").copied().unwrap_or(0),
        "rate_limited_by_mock": r.stats.rate_limited, "injected_5xx": r.stats.injected_errors,
        "latency_ms": {"p50": r.p50.as_secs_f64() * 1e3, "p95": r.p95.as_secs_f64() * 1e3, "p99": r.p99.as_secs_f64() * 1e3},
        "mock": {"unique_event_ids": r.stats.unique_event_ids, "duplicate_event_ids": r.stats.duplicate_event_ids,
                 "accepted": r.stats.accepted, "max_requests_in_a_second": r.stats.max_track_requests_in_a_second},
    })
}
