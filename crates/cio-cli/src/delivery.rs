//! The delivery path of `cio pipe`, `cio worker` and `cio demo`: a source through the processor
//! into the batched stack (v2) or the unbatched one (v1), with the same layers around both.

use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use std::time::Duration;

use cio_api::stack::{BatchedStack, Concurrency, StackConfig, UnbatchedStack, CHUNK_ENTRIES};
use cio_api::{BatchClient, ClientOptions, Limits, Region, TrackClient, TrackCredentials};
use cio_layers::batch::BatchConfig;
use cio_layers::concurrency::{AdaptiveConfig, AdaptiveController};
use cio_layers::metrics::MetricsHandle;
use cio_layers::rate_limit::Quota;
use cio_layers::retry::{RetryConfig, RetryHandle, RetryStatus};
use cio_layers::ByError;
use cio_pipeline::cio::{EntryDecoder, OperationDecoder};
use cio_pipeline::dead_letter::DeadLetterSink;
use cio_pipeline::processor::{Chunks, Handoff, PerItem};
use cio_pipeline::{Processor, Progress, Report, Source};
use tokio_util::sync::CancellationToken;

use crate::common::ConcurrencyArg;

/// How operations are delivered.
#[derive(Clone, Debug)]
pub struct DeliverySettings {
    /// Batch through `/api/v2/batch` (else one v1 request per operation).
    pub batch: bool,
    /// Entries per batch at most.
    pub batch_max_items: usize,
    /// Bytes per batch body at most (Customer.io's limit is 500 KB).
    pub batch_max_bytes: usize,
    /// How long a batch may wait to fill.
    pub linger: Duration,
    /// Requests per second (the workspace limit you were given).
    pub rate: u32,
    /// Requests allowed at once after an idle period.
    pub burst: u32,
    /// Requests in flight: fixed or adaptive.
    pub concurrency: ConcurrencyArg,
    /// Operations between read and settled at most.
    pub max_in_flight: usize,
    /// After a stop request, how long in-flight work may take.
    pub drain_deadline: Duration,
    /// How long one batch (or operation) may keep being retried before its items go to the
    /// dead letters (`--give-up-after`). `None`, the default: until it goes through, so an
    /// outage costs time, not data.
    pub give_up_after: Option<Duration>,
    /// The clients' options: the request and connect timeouts (the one place an attempt's time
    /// is set), TLS roots.
    pub client: ClientOptions,
    /// Prefix of the stack's metric names (`cio` gives `cio_requests_total`, ...).
    pub metrics_prefix: String,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            batch: true,
            batch_max_items: 5000,
            batch_max_bytes: Limits::default().batch_bytes,
            linger: Duration::from_millis(200),
            rate: 100,
            burst: 10,
            concurrency: ConcurrencyArg::Auto,
            max_in_flight: 20_000,
            drain_deadline: Duration::from_secs(30),
            give_up_after: None,
            client: ClientOptions::default(),
            metrics_prefix: cio_layers::metrics::DEFAULT_PREFIX.into(),
        }
    }
}

impl DeliverySettings {
    /// Checks the numbers, with messages naming the flag.
    pub fn check(&self) -> Result<(), String> {
        let limits = Limits::default();
        if self.batch_max_items == 0 {
            return Err("--batch-max-items must be at least 1".into());
        }
        if self.batch_max_bytes < 1024 || self.batch_max_bytes > limits.batch_bytes {
            return Err(format!(
                "--batch-max-bytes {} is out of range: give 1024 to {} (Customer.io's 500 KB batch limit)",
                self.batch_max_bytes, limits.batch_bytes
            ));
        }
        if self.rate == 0 {
            return Err("--rate must be at least 1 request per second".into());
        }
        if self.max_in_flight == 0 {
            return Err("--max-in-flight must be at least 1".into());
        }
        check_metrics_prefix(&self.metrics_prefix)?;
        Ok(())
    }

    /// Customer.io's limits with the batch size asked for.
    pub fn limits(&self) -> Limits {
        Limits {
            batch_bytes: self.batch_max_bytes,
            ..Limits::default()
        }
    }

    fn stack_config(&self, name: &str) -> StackConfig {
        let limits = self.limits();
        StackConfig {
            rate: Quota::per_second(NonZeroU32::new(self.rate).unwrap_or(NonZeroU32::MIN))
                .with_burst(NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN)),
            concurrency: match self.concurrency {
                ConcurrencyArg::Fixed(n) => Concurrency::Fixed(n),
                ConcurrencyArg::Auto => Concurrency::Adaptive(AdaptiveConfig {
                    max: 64,
                    ..AdaptiveConfig::default()
                }),
            },
            // Retryable means retried: 5xx, 429, timeouts and broken connections go again with
            // backoff (full jitter, capped at 30 s) or after their Retry-After (up to 1 h),
            // while the processor holds the source back. Only permanent errors, or a batch past
            // --give-up-after, reach the dead letters.
            retry: RetryConfig::until_permanent(self.give_up_after),
            batch: BatchConfig {
                max_items: NonZeroUsize::new(self.batch_max_items).unwrap_or(NonZeroUsize::MIN),
                max_weight: limits.batch_weight(),
                max_linger: self.linger,
                queue_capacity: NonZeroUsize::new(self.max_in_flight.max(self.batch_max_items))
                    .unwrap_or(NonZeroUsize::MIN),
                max_concurrent_batches: NonZeroUsize::new(64).unwrap_or(NonZeroUsize::MIN),
            },
            metrics_name: name.to_owned(),
            metrics_prefix: self.metrics_prefix.clone(),
        }
    }
}

/// A Prometheus metric name prefix: `[a-zA-Z_][a-zA-Z0-9_]*`, without the `_` that joins it.
fn check_metrics_prefix(prefix: &str) -> Result<(), String> {
    let mut chars = prefix.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') || prefix.ends_with('_') {
        return Err(format!(
            "--metrics-prefix {prefix:?} cannot start a Prometheus metric name: give letters, digits and underscores, not starting with a digit nor ending with `_` (e.g. cio, acme_cio)"
        ));
    }
    Ok(())
}

/// A rate limit shared by every replica, kept in Redis (`--shared-limit redis://HOST:PORT/KEY`).
#[derive(Clone, Debug)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))] // read only in builds with the feature
pub struct SharedLimit {
    /// The Redis URL, without the key.
    pub url: String,
    /// The key holding the limit's state (the same on every replica).
    pub key: String,
    /// With `Some(n)`: when Redis is unreachable, fall back to `rate / n` locally. With `None`:
    /// fail closed (requests wait until Redis answers).
    pub replicas: Option<NonZeroU32>,
}

impl SharedLimit {
    /// Parses `redis://HOST:PORT/KEY`.
    pub fn parse(s: &str, replicas: Option<u32>) -> Result<SharedLimit, String> {
        let rest = s
            .strip_prefix("redis://")
            .ok_or_else(|| format!("--shared-limit {s:?}: expected redis://HOST:PORT/KEY"))?;
        let (host, key) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() || key.is_empty() {
            return Err(format!(
                "--shared-limit {s:?}: expected redis://HOST:PORT/KEY, e.g. redis://127.0.0.1:6379/cio:limit:workspace"
            ));
        }
        let replicas = match replicas {
            None => None,
            Some(n) => Some(NonZeroU32::new(n).ok_or("--replicas must be at least 1")?),
        };
        Ok(SharedLimit {
            url: format!("redis://{host}"),
            key: key.to_owned(),
            replicas,
        })
    }
}

/// A built delivery path.
#[derive(Clone, Debug)]
pub enum Delivery {
    /// v2 batches.
    Batched(BatchedStack),
    /// v1, one request per operation.
    Unbatched(UnbatchedStack),
}

impl Delivery {
    /// Builds the path (inside a runtime).
    pub fn build(
        region: Region,
        credentials: TrackCredentials,
        settings: &DeliverySettings,
    ) -> Result<Delivery, String> {
        Self::build_shared(region, credentials, settings, None)
    }

    /// Builds the path, with the rate limit shared through Redis when `shared` is given.
    pub fn build_shared(
        region: Region,
        credentials: TrackCredentials,
        settings: &DeliverySettings,
        shared: Option<&SharedLimit>,
    ) -> Result<Delivery, String> {
        settings.check()?;
        let options = &settings.client;
        if let Some(shared) = shared {
            if !settings.batch {
                return Err("--shared-limit works with batches only: drop --no-batch".into());
            }
            return Self::build_redis(region, credentials, settings, shared);
        }
        if settings.batch {
            let client = BatchClient::builder(region, credentials)
                .options(options.clone())
                .build();
            BatchedStack::new(client, settings.stack_config("customerio_batch"))
                .map(Delivery::Batched)
                .map_err(|e| e.to_string())
        } else {
            let client = TrackClient::builder(region, credentials)
                .options(options.clone())
                .build();
            UnbatchedStack::new(client, settings.stack_config("customerio_track"))
                .map(Delivery::Unbatched)
                .map_err(|e| e.to_string())
        }
    }

    #[cfg(feature = "redis")]
    fn build_redis(
        region: Region,
        credentials: TrackCredentials,
        settings: &DeliverySettings,
        shared: &SharedLimit,
    ) -> Result<Delivery, String> {
        use cio_layers::rate_limit::{RedisBackend, Unreachable};
        let config = settings.stack_config("customerio_batch");
        let unreachable = match shared.replicas {
            Some(replicas) => Unreachable::FallBack { replicas },
            None => Unreachable::FailClosed,
        };
        let backend = RedisBackend::builder(shared.url.as_str(), shared.key.as_str(), config.rate)
            .on_unreachable(unreachable)
            .build()
            .map_err(|e| format!("--shared-limit {}/{}: {e}", shared.url, shared.key))?;
        // Fail closed: while Redis is unreachable the rate limit makes requests wait.
        let client = BatchClient::builder(region, credentials)
            .options(settings.client.clone())
            .build();
        BatchedStack::with_rate_limit(client, config, backend)
            .map(Delivery::Batched)
            .map_err(|e| e.to_string())
    }

    #[cfg(not(feature = "redis"))]
    fn build_redis(
        _: Region,
        _: TrackCredentials,
        _: &DeliverySettings,
        _: &SharedLimit,
    ) -> Result<Delivery, String> {
        Err("--shared-limit needs the redis feature: build with `cargo build --release --features redis -p cio-cli`".into())
    }

    /// Request metrics.
    pub fn metrics(&self) -> &MetricsHandle {
        match self {
            Delivery::Batched(s) => s.metrics(),
            Delivery::Unbatched(s) => s.metrics(),
        }
    }

    /// The adaptive controller, if concurrency is adaptive.
    pub fn concurrency(&self) -> Option<&AdaptiveController> {
        match self {
            Delivery::Batched(s) => s.concurrency(),
            Delivery::Unbatched(s) => s.concurrency(),
        }
    }

    /// What the retries are doing now.
    pub fn retries(&self) -> &RetryHandle {
        match self {
            Delivery::Batched(s) => s.retries(),
            Delivery::Unbatched(s) => s.retries(),
        }
    }

    /// Runs `source` to its end (or to `shutdown`), then flushes what is batched.
    pub async fn run<S, L>(
        &self,
        source: S,
        dead_letters: L,
        settings: &DeliverySettings,
        progress: Arc<Progress>,
        shutdown: CancellationToken,
    ) -> Report
    where
        S: Source + 'static,
        L: DeadLetterSink,
    {
        let status = tokio::spawn(report_outages(
            self.retries().clone(),
            progress.clone(),
            OUTAGE_REPORT_EVERY,
        ));
        let report = match self {
            Delivery::Batched(stack) => {
                // Each line is checked and encoded once, here; the batch only joins the bytes.
                let decoder = EntryDecoder::with_limits(settings.limits());
                let stopped = shutdown.clone();
                let report = process(
                    source,
                    decoder,
                    Chunks::new(stack.entry_chunks(), CHUNK_ENTRIES),
                    dead_letters,
                    settings,
                    progress,
                    shutdown,
                    {
                        // The last batch goes out at once, not after its linger.
                        let stack = stack.clone();
                        move || stack.close_now()
                    },
                )
                .await;
                if stopped.is_cancelled() {
                    // A stop during an outage must not wait for batches that retry until
                    // Customer.io answers: their operations were not acknowledged (the
                    // processor nacked what had not settled), so they come again on restart.
                    if tokio::time::timeout(settings.drain_deadline, stack.close())
                        .await
                        .is_err()
                    {
                        tracing::warn!(
                            "batches still retrying at the shutdown timeout are abandoned; their operations were not acknowledged and are delivered after a restart"
                        );
                    }
                } else {
                    stack.close().await;
                }
                report
            }
            Delivery::Unbatched(stack) => {
                let decoder = OperationDecoder::with_limits(settings.limits());
                process(
                    source,
                    decoder,
                    PerItem(stack.service()),
                    dead_letters,
                    settings,
                    progress,
                    shutdown,
                    || {},
                )
                .await
            }
        };
        status.abort();
        report
    }
}

/// How often a line says what an outage is doing.
pub const OUTAGE_REPORT_EVERY: Duration = Duration::from_secs(10);

/// While requests keep failing and being retried, says so every `every` on stderr: what
/// Customer.io answers, for how long, how much is held, and when the next try is; and, within a
/// second, when it answers again.
async fn report_outages(retries: RetryHandle, progress: Arc<Progress>, every: Duration) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_line: Option<tokio::time::Instant> = None;
    loop {
        tick.tick().await;
        let now = tokio::time::Instant::now();
        let status = retries.status();
        match outage_line(&status, progress.in_flight(), now) {
            Some(line) => {
                // The first line once the outage is `every` old, then one every `every`.
                let since = status.failing_since.unwrap_or(now);
                let due = match last_line {
                    None => now.saturating_duration_since(since) >= every,
                    Some(t) => now.saturating_duration_since(t) >= every,
                };
                if due {
                    tracing::warn!("{line}");
                    last_line = Some(now);
                }
            }
            None if last_line.is_some() && status.failing_since.is_none() => {
                tracing::info!(
                    "Customer.io answers again: delivering ({} operations in flight)",
                    progress.in_flight()
                );
                last_line = None;
            }
            None => {}
        }
    }
}

/// `Customer.io failing for 40 s (HTTP 503 ...): 20,000 operations held, 3 requests retrying
/// (oldest 38 s), next try in 8 s`, or `None` when nothing is failing.
pub fn outage_line(status: &RetryStatus, held: u64, now: tokio::time::Instant) -> Option<String> {
    let since = status.failing_since?;
    if status.retrying == 0 {
        return None;
    }
    let next = status
        .next_try
        .map(|t| {
            format!(
                "next try in {} s",
                t.saturating_duration_since(now).as_secs()
            )
        })
        .unwrap_or_else(|| "trying again now".into());
    Some(format!(
        "Customer.io failing for {} s ({}): {} operations held, {} request(s) retrying (oldest {} s), {next}",
        now.saturating_duration_since(since).as_secs(),
        status.last_failure.as_deref().unwrap_or("unknown error"),
        group_thousands(held),
        status.retrying,
        status.oldest_age(now).as_secs(),
    ))
}

/// `20000` as `20,000`.
fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One run of the processor over `handoff`, whichever path it is: lines decoded by `decoder`
/// into what it takes (chunks of v2 entries encoded once for batches, operations for v1).
/// `input_ends` runs when the input has ended and everything was handed over.
#[allow(clippy::too_many_arguments)]
async fn process<S, D, H, L>(
    source: S,
    decoder: D,
    handoff: H,
    dead_letters: L,
    settings: &DeliverySettings,
    progress: Arc<Progress>,
    shutdown: CancellationToken,
    input_ends: impl FnOnce() + Send + 'static,
) -> Report
where
    S: Source + 'static,
    L: DeadLetterSink,
    D: cio_pipeline::Decode,
    H: Handoff<D::Item>,
    H::Error: cio_layers::ClassifyError,
{
    Processor::with_handoff(source, decoder, handoff, dead_letters)
        .max_in_flight(settings.max_in_flight)
        .drain_deadline(settings.drain_deadline)
        .with_progress(progress)
        .classify_errors(ByError)
        .when_input_ends(input_ends)
        .run(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    #[test]
    fn the_outage_line_says_what_fails_how_long_what_is_held_and_when_next() {
        let now = Instant::now();
        let quiet = RetryStatus {
            retrying: 0,
            oldest: None,
            failing_since: None,
            last_failure: None,
            next_try: None,
            retries: 0,
        };
        assert_eq!(outage_line(&quiet, 5, now), None);
        let failing = RetryStatus {
            retrying: 3,
            oldest: Some(now - Duration::from_secs(38)),
            failing_since: Some(now - Duration::from_secs(40)),
            last_failure: Some("HTTP 503 from Customer.io".into()),
            next_try: Some(now + Duration::from_secs(8)),
            retries: 12,
        };
        assert_eq!(
            outage_line(&failing, 20_000, now).as_deref(),
            Some("Customer.io failing for 40 s (HTTP 503 from Customer.io): 20,000 operations held, 3 request(s) retrying (oldest 38 s), next try in 8 s")
        );
        // A streak whose calls all ended (given up, or gone through elsewhere) is not an outage
        // line: nothing is held by retries.
        let ended = RetryStatus {
            retrying: 0,
            ..failing
        };
        assert_eq!(outage_line(&ended, 0, now), None);
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1_234_567), "1,234,567");
    }
}
