//! `cio worker`: a long-running pipeline with an admin server, for Kubernetes.
//!
//! Configuration comes from flags, then environment variables (`CIO_*`), then an optional TOML
//! file (`--config`), in that order of precedence; every setting has the same name in all three
//! (`--batch-max-items`, `CIO_BATCH_MAX_ITEMS`, `batch_max_items`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use cio_pipeline::dead_letter::JsonLinesFile;
use cio_pipeline::source::FileSource;
use cio_pipeline::{Progress, StopReason};
use clap::Args;
use metrics_exporter_prometheus::PrometheusBuilder;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, Admin, AdminServer, Readiness};
use crate::common::{
    duration_opt, parse_duration, print_line, wait_for_signal, ConcurrencyArg, TargetArgs,
};
use crate::delivery::{Delivery, DeliverySettings, SharedLimit};
use crate::liveness::{self, Liveness, Sample};

/// Flags of `cio worker`. Every one can also come from `CIO_<NAME>` or the `--config` file.
#[derive(Args, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(after_help = "Example:\n  \
CIO_SITE_ID=site CIO_API_KEY=key cio worker --source file:/var/lib/cio/events.jsonl \\\n    \
--endpoint http://127.0.0.1:7070 --rate 100 --admin-listen 0.0.0.0:9090 --shutdown-timeout 30s\n\n\
The file source follows the file as it grows and resumes from its checkpoint (default: FILE.checkpoint).\n\
Admin endpoints: /metrics (Prometheus), /healthz (503 when stalled past --stall-timeout), /readyz (503 while draining).\n\
SIGTERM or SIGINT: stop reading, drain within --shutdown-timeout, persist the checkpoint, exit 0.\n\
Precedence: flags, then CIO_* environment variables, then the --config TOML file (keys in snake_case).")]
pub struct WorkerArgs {
    /// A TOML file with any of these settings (lowest precedence).
    #[arg(long, env = "CIO_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Where work comes from: `file:PATH` (followed as it grows),
    /// `redis://HOST:PORT/?stream=S&group=G[&consumer=C][&claim_idle_ms=N][&prune_idle_ms=N]`
    /// (Redis Streams, feature `redis`) or
    /// `kafka://BROKER[,BROKER]/?topic=T&group=G[&read_ahead=N]` (feature `kafka`).
    #[arg(long, env = "CIO_SOURCE", value_name = "URL")]
    source: Option<String>,
    /// Share the rate limit with every replica through Redis: `redis://HOST:PORT/KEY`
    /// (feature `redis`). Every replica must give the same key and --rate.
    #[arg(long, env = "CIO_SHARED_LIMIT", value_name = "URL")]
    shared_limit: Option<String>,
    /// With --shared-limit: when Redis is unreachable, fall back to rate/N locally (N replicas).
    /// Without it the limit fails closed: requests wait until Redis answers.
    #[arg(long, env = "CIO_REPLICAS", value_name = "N")]
    replicas: Option<u32>,
    #[command(flatten)]
    #[serde(flatten)]
    target: TargetArgs,
    /// Checkpoint file of a file source [default: PATH.checkpoint].
    #[arg(long, env = "CIO_CHECKPOINT", value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Where undeliverable operations go [default: cio-dead-letters.jsonl].
    #[arg(long, env = "CIO_DEAD_LETTER", value_name = "FILE")]
    dead_letter: Option<PathBuf>,
    /// Requests per second [default: 100].
    #[arg(long, env = "CIO_RATE", value_name = "N")]
    rate: Option<u32>,
    /// Burst [default: 10].
    #[arg(long, env = "CIO_BURST", value_name = "N")]
    burst: Option<u32>,
    /// Requests in flight: a number or `auto` [default: auto].
    #[arg(long, env = "CIO_CONCURRENCY", value_name = "N|auto")]
    concurrency: Option<ConcurrencyArg>,
    /// Entries per v2 batch [default: 5000; batches are limited by bytes first].
    #[arg(long, env = "CIO_BATCH_MAX_ITEMS", value_name = "N")]
    batch_max_items: Option<usize>,
    /// Bytes per v2 batch body [default: 512000].
    #[arg(long, env = "CIO_BATCH_MAX_BYTES", value_name = "BYTES")]
    batch_max_bytes: Option<usize>,
    /// How long a batch may wait to fill, ms [default: 200].
    #[arg(long, env = "CIO_LINGER_MS", value_name = "MS")]
    linger_ms: Option<u64>,
    /// One Track v1 request per operation instead of v2 batches.
    #[arg(long, env = "CIO_NO_BATCH")]
    #[serde(default)]
    no_batch: bool,
    /// Operations in flight at most [default: 20000].
    #[arg(long, env = "CIO_MAX_IN_FLIGHT", value_name = "N")]
    max_in_flight: Option<usize>,
    /// Admin server address (/metrics, /healthz, /readyz) [default: 127.0.0.1:9090].
    #[arg(long, env = "CIO_ADMIN_LISTEN", value_name = "ADDR")]
    admin_listen: Option<SocketAddr>,
    /// How long draining may take after SIGTERM [default: 30s].
    #[arg(long, env = "CIO_SHUTDOWN_TIMEOUT", value_parser = parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "duration_opt")]
    shutdown_timeout: Option<Duration>,
    /// Dead-letter a batch still failing after this long of retries (e.g. 6h). Default: never;
    /// during an outage the worker holds the queue back and retries until Customer.io answers.
    #[arg(long, env = "CIO_GIVE_UP_AFTER", value_parser = parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "duration_opt")]
    give_up_after: Option<Duration>,
    /// /healthz answers 503 when, for this long, the worker had work (operations in flight, or
    /// input waiting) and read, settled and retried nothing, or its runtime stopped running
    /// [default: 2m]. Idle, or waiting out a Retry-After, it stays healthy.
    #[arg(long, env = "CIO_STALL_TIMEOUT", value_parser = parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "duration_opt")]
    stall_timeout: Option<Duration>,
    /// Prefix of the delivery stack's metrics: `PREFIX_requests_total`,
    /// `PREFIX_request_duration_seconds`, `PREFIX_in_flight` [default: cio]. The worker's own
    /// (`cio_worker_*`, `cio_build_info`) keep their names.
    #[arg(long, env = "CIO_METRICS_PREFIX", value_name = "PREFIX")]
    metrics_prefix: Option<String>,
}

impl WorkerArgs {
    /// Fills what flags and environment left unset from the config file.
    fn merge(self, file: WorkerArgs) -> WorkerArgs {
        WorkerArgs {
            config: self.config,
            source: self.source.or(file.source),
            shared_limit: self.shared_limit.or(file.shared_limit),
            replicas: self.replicas.or(file.replicas),
            target: self.target.or(file.target),
            checkpoint: self.checkpoint.or(file.checkpoint),
            dead_letter: self.dead_letter.or(file.dead_letter),
            rate: self.rate.or(file.rate),
            burst: self.burst.or(file.burst),
            concurrency: self.concurrency.or(file.concurrency),
            batch_max_items: self.batch_max_items.or(file.batch_max_items),
            batch_max_bytes: self.batch_max_bytes.or(file.batch_max_bytes),
            linger_ms: self.linger_ms.or(file.linger_ms),
            no_batch: self.no_batch || file.no_batch,
            max_in_flight: self.max_in_flight.or(file.max_in_flight),
            admin_listen: self.admin_listen.or(file.admin_listen),
            shutdown_timeout: self.shutdown_timeout.or(file.shutdown_timeout),
            give_up_after: self.give_up_after.or(file.give_up_after),
            stall_timeout: self.stall_timeout.or(file.stall_timeout),
            metrics_prefix: self.metrics_prefix.or(file.metrics_prefix),
        }
    }
}

fn read_config(path: &Path) -> Result<WorkerArgs, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read --config {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("invalid config file {}: {e}", path.display()))
}

/// A parsed `--source`. (Redis and Kafka fields are read only in builds with their feature.)
#[cfg_attr(not(all(feature = "redis", feature = "kafka")), allow(dead_code))]
enum SourceUrl {
    File(PathBuf),
    Redis {
        url: String,
        stream: String,
        group: String,
        consumer: Option<String>,
        claim_idle: Option<Duration>,
        prune_idle: Option<Duration>,
    },
    Kafka {
        brokers: String,
        topic: String,
        group: String,
        read_ahead: Option<u64>,
    },
}

/// `key=value&...` after a `?`.
fn query(s: &str) -> std::collections::HashMap<String, String> {
    s.split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn parse_source(s: &str) -> Result<SourceUrl, String> {
    if let Some(path) = s.strip_prefix("file:") {
        let path = path.trim_start_matches("//");
        if path.is_empty() {
            return Err("--source file: needs a path, e.g. file:/var/lib/cio/events.jsonl".into());
        }
        return Ok(SourceUrl::File(PathBuf::from(path)));
    }
    if let Some(rest) = s.strip_prefix("redis://") {
        let host = rest.split(['/', '?']).next().unwrap_or("");
        let q = query(rest);
        let (Some(stream), Some(group)) = (q.get("stream"), q.get("group")) else {
            return Err(format!(
                "--source {s:?}: a Redis Streams source needs ?stream=NAME&group=NAME, e.g. redis://127.0.0.1:6379/?stream=events&group=cio"
            ));
        };
        let ms = |key: &str| -> Result<Option<Duration>, String> {
            q.get(key)
                .map(|v| {
                    v.parse().map(Duration::from_millis).map_err(|_| {
                        format!("--source: {key}={v:?} is not a number of milliseconds")
                    })
                })
                .transpose()
        };
        let claim_idle = ms("claim_idle_ms")?;
        let prune_idle = ms("prune_idle_ms")?;
        return Ok(SourceUrl::Redis {
            url: format!("redis://{host}"),
            stream: stream.clone(),
            group: group.clone(),
            consumer: q.get("consumer").cloned(),
            claim_idle,
            prune_idle,
        });
    }
    if let Some(rest) = s.strip_prefix("kafka://") {
        let brokers = rest.split(['/', '?']).next().unwrap_or("").to_owned();
        let q = query(rest);
        let (Some(topic), Some(group)) = (q.get("topic"), q.get("group")) else {
            return Err(format!(
                "--source {s:?}: a Kafka source needs ?topic=NAME&group=NAME, e.g. kafka://127.0.0.1:9092/?topic=events&group=cio"
            ));
        };
        if brokers.is_empty() {
            return Err(format!("--source {s:?}: no broker address"));
        }
        let read_ahead = q
            .get("read_ahead")
            .map(|v| match v.parse::<u64>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!(
                    "--source: read_ahead={v:?} is not a number of records (1 or more)"
                )),
            })
            .transpose()?;
        return Ok(SourceUrl::Kafka {
            brokers,
            topic: topic.clone(),
            group: group.clone(),
            read_ahead,
        });
    }
    Err(format!(
        "--source {s:?} is not supported: use file:PATH, redis://HOST:PORT/?stream=S&group=G or kafka://BROKERS/?topic=T&group=G"
    ))
}

pub async fn run(args: WorkerArgs) -> Result<ExitCode, String> {
    let args = match &args.config {
        Some(path) => {
            let file = read_config(path)?;
            args.merge(file)
        }
        None => args,
    };
    let source = parse_source(args.source.as_deref().ok_or(
        "no work source: pass --source file:PATH (or CIO_SOURCE, or `source` in --config)",
    )?)?;
    let (region, credentials) = args.target.resolve()?;
    let settings = DeliverySettings {
        batch: !args.no_batch,
        batch_max_items: args.batch_max_items.unwrap_or(5000),
        batch_max_bytes: args.batch_max_bytes.unwrap_or(512_000),
        linger: Duration::from_millis(args.linger_ms.unwrap_or(200)),
        rate: args.rate.unwrap_or(100),
        burst: args.burst.unwrap_or(10).max(1),
        concurrency: args.concurrency.unwrap_or(ConcurrencyArg::Auto),
        max_in_flight: args.max_in_flight.unwrap_or(20_000),
        drain_deadline: args.shutdown_timeout.unwrap_or(Duration::from_secs(30)),
        give_up_after: args.give_up_after,
        client: args.target.client_options()?,
        metrics_prefix: args
            .metrics_prefix
            .clone()
            .unwrap_or_else(|| cio_layers::metrics::DEFAULT_PREFIX.into()),
    };
    settings.check()?;
    let stall_timeout = args.stall_timeout.unwrap_or(DEFAULT_STALL_TIMEOUT);
    if stall_timeout < Duration::from_secs(1) {
        return Err(format!(
            "--stall-timeout {stall_timeout:?} is too short: progress is sampled once a second; give 1s or more (default 2m)"
        ));
    }
    let admin_addr = args
        .admin_listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9090)));
    let listener = admin::bind(admin_addr).await?;
    let admin_url = listener
        .local_addr()
        .map(|a| format!("http://{a}"))
        .unwrap_or_default();
    // The recorder must exist before the layers register their metrics.
    // Latency as a histogram (aggregatable across pods), in seconds.
    let prometheus = PrometheusBuilder::new()
        .set_buckets(&[
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ])
        .map_err(|e| format!("cannot configure the metrics exporter: {e}"))?
        .install_recorder()
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
    let shared = args
        .shared_limit
        .as_deref()
        .map(|s| SharedLimit::parse(s, args.replicas))
        .transpose()?;
    let delivery = Delivery::build_shared(region, credentials, &settings, shared.as_ref())?;
    let dead_letter = args
        .dead_letter
        .clone()
        .unwrap_or_else(|| PathBuf::from("cio-dead-letters.jsonl"));
    let dead_letters = JsonLinesFile::create(&dead_letter).await.map_err(|e| {
        format!(
            "cannot open the dead-letter file {}: {e}",
            dead_letter.display()
        )
    })?;
    let context = Running {
        delivery,
        settings,
        stall_timeout,
        listener,
        admin_url,
        prometheus,
    };

    match source {
        SourceUrl::File(path) => {
            let checkpoint = args
                .checkpoint
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("{}.checkpoint", path.display())));
            let source = FileSource::builder()
                .path(&path)
                .follow(true)
                .checkpoint(&checkpoint)
                .max_unpersisted(context.settings.max_in_flight as u64 * 2)
                .open()
                .await
                .map_err(|e| format!("cannot open --source {}: {e}", path.display()))?;
            let label = format!("{} (checkpoint {})", path.display(), checkpoint.display());
            let read = source.read_progress();
            context
                .run(
                    source,
                    dead_letters,
                    label,
                    Lag::File {
                        path,
                        checkpoint,
                        read,
                    },
                )
                .await
        }
        #[cfg(feature = "redis")]
        SourceUrl::Redis {
            url,
            stream,
            group,
            consumer,
            claim_idle,
            prune_idle,
        } => {
            use cio_pipeline::source::RedisStreamSource;
            let mut builder = RedisStreamSource::builder(url.as_str(), stream.as_str(), group.as_str());
            if let Some(c) = consumer {
                builder = builder.consumer(c);
            }
            if let Some(idle) = claim_idle {
                builder = builder.claim_idle(idle);
            }
            if let Some(idle) = prune_idle {
                builder = builder.prune_idle(Some(idle));
            }
            let source = builder
                .open()
                .await
                .map_err(|e| format!("cannot open --source {url} stream {stream}: {e}"))?;
            let probe = source.lag_probe();
            let lag = Lag::Messages(Arc::new(move || {
                let probe = probe.clone();
                Box::pin(async move {
                    let b = probe.backlog().await.ok()?;
                    // What no member has read: with it waiting, an idle member is not reading.
                    // (Pending entries may be other members' work in flight.)
                    Some(QueueLag {
                        lag: b.total(),
                        unread: Some(b.undelivered),
                    })
                })
            }));
            let label = format!("{url} stream {stream} group {group} as {}", source.consumer_name());
            context.run(source, dead_letters, label, lag).await
        }
        #[cfg(feature = "kafka")]
        SourceUrl::Kafka {
            brokers,
            topic,
            group,
            read_ahead,
        } => {
            use cio_pipeline::source::{KafkaSource, LagProbe};
            let mut builder = KafkaSource::builder(brokers.as_str(), group.as_str()).topic(topic.as_str());
            if let Some(n) = read_ahead {
                builder = builder.read_ahead(n);
            }
            let source = builder
                .open()
                .await
                .map_err(|e| format!("cannot open --source kafka://{brokers} topic {topic}: {e}"))?;
            let probe = source.lag_probe();
            let lag = Lag::Messages(Arc::new(move || {
                let probe = probe.clone();
                Box::pin(async move {
                    // This member's own partitions: what is not acknowledged, in flight included.
                    Some(QueueLag {
                        lag: probe.lag().await.ok()?,
                        unread: None,
                    })
                })
            }));
            let label = format!("kafka://{brokers} topic {topic} group {group}");
            context.run(source, dead_letters, label, lag).await
        }
        #[allow(unreachable_patterns)]
        _ => Err("this --source needs a build with its feature: `cargo build --release -p cio-cli --features redis,kafka`".into()),
    }
}

/// `--stall-timeout` when not given: longer than any wait the stack makes by itself (a request
/// attempt 10 s, a backoff at most 30 s, a batch's linger), short enough to restart a stuck
/// worker within minutes.
const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(120);

/// How the backlog is measured.
enum Lag {
    /// File length minus the checkpointed offset (`cio_worker_source_lag_bytes`); what is not
    /// read yet, for liveness.
    File {
        path: PathBuf,
        checkpoint: PathBuf,
        read: cio_pipeline::source::ReadProgress,
    },
    /// The queue's own count (`cio_worker_source_lag_messages`).
    #[allow(dead_code)] // used with the redis or kafka feature
    Messages(LagReader),
}

/// A queue's backlog.
#[cfg_attr(not(any(feature = "redis", feature = "kafka")), allow(dead_code))]
struct QueueLag {
    /// Messages not acknowledged (`cio_worker_source_lag_messages`).
    lag: u64,
    /// Messages waiting to be read by this member, when the queue says; else `lag` minus what
    /// is in flight.
    unread: Option<u64>,
}

/// Reads a queue's backlog on demand (a boxed `LagProbe`).
type LagReader = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<QueueLag>> + Send>>
        + Send
        + Sync,
>;

/// What the worker runs with, whatever its source.
struct Running {
    delivery: Delivery,
    settings: DeliverySettings,
    stall_timeout: Duration,
    listener: tokio::net::TcpListener,
    admin_url: String,
    prometheus: metrics_exporter_prometheus::PrometheusHandle,
}

impl Running {
    async fn run<S: cio_pipeline::Source + 'static>(
        self,
        source: S,
        dead_letters: JsonLinesFile,
        label: String,
        lag: Lag,
    ) -> Result<ExitCode, String> {
        let Running {
            delivery,
            settings,
            stall_timeout,
            listener,
            admin_url,
            prometheus,
        } = self;
        let ready = Readiness::default();
        let liveness = Arc::new(Liveness::new(stall_timeout));
        let heartbeat = tokio::spawn(liveness::heartbeat(liveness.clone()));
        let admin = AdminServer::start(
            listener,
            Admin {
                prometheus: Some(prometheus),
                ready: ready.clone(),
                liveness: liveness.clone(),
            },
        )?;
        let progress = Arc::new(Progress::default());
        let gauges = tokio::spawn(export_gauges(
            progress.clone(),
            delivery.clone(),
            lag,
            liveness,
        ));
        // Ready before the line is printed: scripts (and the tests) probe /readyz as soon as
        // they read it, and a worker thread can be descheduled between two statements.
        ready.set(true);
        // Printed once the admin server answers, so scripts can wait for it.
        print_line(format_args!(
            "worker ready: source {label} | admin {admin_url}"
        ));
        tracing::info!(source = %label, admin = %admin_url, "worker started");

        let shutdown = CancellationToken::new();
        let signals = {
            let (shutdown, ready) = (shutdown.clone(), ready.clone());
            tokio::spawn(async move {
                wait_for_signal().await;
                ready.set(false);
                tracing::info!("signal received: draining");
                shutdown.cancel();
            })
        };
        let report = delivery
            .run(source, dead_letters, &settings, progress, shutdown)
            .await;
        ready.set(false);
        signals.abort();
        gauges.abort();
        heartbeat.abort();
        admin.stop().await;
        print_line(report.to_json());
        match report.stop {
            StopReason::EndOfInput | StopReason::Cancelled if report.close_errors.is_empty() => {
                Ok(ExitCode::SUCCESS)
            }
            _ => Err(format!(
                "the worker stopped on an error: {:?} {:?}",
                report.stop, report.close_errors
            )),
        }
    }
}

/// Publishes the pipeline's live state as gauges every second, and gives it to `liveness`.
async fn export_gauges(
    progress: Arc<Progress>,
    delivery: Delivery,
    lag_source: Lag,
    liveness: Arc<Liveness>,
) {
    let read = metrics::counter!("cio_worker_read_total");
    let delivered = metrics::counter!("cio_worker_delivered_total");
    let dead = metrics::counter!("cio_worker_dead_lettered_total");
    let in_flight = metrics::gauge!("cio_worker_in_flight");
    let retrying = metrics::gauge!("cio_worker_retrying");
    let oldest_retrying = metrics::gauge!("cio_worker_oldest_retrying_seconds");
    let failing = metrics::gauge!("cio_worker_failing_seconds");
    let limit = metrics::gauge!("cio_worker_concurrency_limit");
    let lag_bytes = metrics::gauge!("cio_worker_source_lag_bytes");
    let lag_messages = metrics::gauge!("cio_worker_source_lag_messages");
    describe_worker_metrics();
    loop {
        read.absolute(progress.read());
        delivered.absolute(progress.delivered());
        dead.absolute(progress.dead_lettered());
        in_flight.set(progress.in_flight() as f64);
        let status = delivery.retries().status();
        let now = tokio::time::Instant::now();
        retrying.set(status.retrying as f64);
        oldest_retrying.set(status.oldest_age(now).as_secs_f64());
        failing.set(
            status
                .failing_since
                .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64()),
        );
        if let Some(c) = delivery.concurrency() {
            limit.set(c.limit() as f64);
        }
        let backlog = match &lag_source {
            Lag::File {
                path,
                checkpoint,
                read,
            } => {
                if let Some(l) = file_lag(path, checkpoint) {
                    lag_bytes.set(l as f64);
                }
                read.bytes_unread()
            }
            Lag::Messages(probe) => {
                // A broker that does not answer must not hold the sampling (and liveness) up.
                let l = tokio::time::timeout(Duration::from_secs(2), probe())
                    .await
                    .ok()
                    .flatten();
                l.map(|l| {
                    lag_messages.set(l.lag as f64);
                    l.unread
                        .unwrap_or_else(|| l.lag.saturating_sub(progress.in_flight()))
                })
            }
        };
        liveness.observe(
            Sample {
                read: progress.read(),
                settled: progress.delivered()
                    + progress.dead_lettered()
                    + progress.unacknowledged(),
                retries: status.retries,
                in_flight: progress.in_flight(),
                backlog,
                waiting_to_retry: status.retrying > 0
                    && status
                        .next_try
                        .is_some_and(|t| t > tokio::time::Instant::now()),
            },
            std::time::Instant::now(),
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// HELP texts of the worker's own metrics, and `cio_build_info` (set once: 1).
fn describe_worker_metrics() {
    use metrics::Unit;
    for (name, unit, help) in [
        ("cio_worker_read_total", Unit::Count, "Messages read from the source since the process started"),
        ("cio_worker_delivered_total", Unit::Count, "Operations delivered (Customer.io accepted them) since the process started"),
        ("cio_worker_dead_lettered_total", Unit::Count, "Operations written to the dead-letter file since the process started (invalid, refused for good, or past --give-up-after)"),
    ] {
        metrics::describe_counter!(name, unit, help);
    }
    for (name, unit, help) in [
        ("cio_worker_in_flight", Unit::Count, "Operations read and not yet settled (delivered, dead-lettered or left for redelivery)"),
        ("cio_worker_retrying", Unit::Count, "Requests between a retryable failure and their outcome (an outage shows here; their operations are held, not dead-lettered)"),
        ("cio_worker_oldest_retrying_seconds", Unit::Seconds, "How long the oldest retrying request has been trying"),
        ("cio_worker_failing_seconds", Unit::Seconds, "How long requests have kept failing without one success (0: the last went through)"),
        ("cio_worker_concurrency_limit", Unit::Count, "Requests the adaptive concurrency limit lets in flight now"),
        ("cio_worker_source_lag_bytes", Unit::Bytes, "Bytes of the source file not yet covered by the checkpoint (scale on this)"),
        ("cio_worker_source_lag_messages", Unit::Count, "Messages of the queue not yet acknowledged by the group (scale on this)"),
        ("cio_build_info", Unit::Count, "Always 1; the labels say which build runs: version, features"),
    ] {
        metrics::describe_gauge!(name, unit, help);
    }
    let features: Vec<&str> = [
        ("redis", cfg!(feature = "redis")),
        ("kafka", cfg!(feature = "kafka")),
    ]
    .into_iter()
    .filter_map(|(f, on)| on.then_some(f))
    .collect();
    metrics::gauge!(
        "cio_build_info",
        "version" => env!("CARGO_PKG_VERSION"),
        "features" => features.join(",")
    )
    .set(1.0);
}

/// File length minus the smallest checkpointed offset: what is left to deliver.
fn file_lag(path: &Path, checkpoint: &Path) -> Option<u64> {
    let len = std::fs::metadata(path).ok()?.len();
    let offset = std::fs::read(checkpoint)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| {
            v.get("files")?
                .as_array()?
                .iter()
                .filter(|f| f.get("path").and_then(|p| p.as_str()) == path.to_str())
                .filter_map(|f| f.get("offset")?.as_u64())
                .min()
        })
        .unwrap_or(0);
    Some(len.saturating_sub(offset))
}
