//! The layer stack every high-volume path uses, built once: callers send single
//! [`Operation`]s and get each one's own outcome, while batches of entries go to
//! `POST /api/v2/batch` within Customer.io's limits.
//!
//! ```text
//! (Operation -> Entry) -> Batch -> (Vec<Entry> -> PreparedBatch) -> Metrics -> Retry -> AttemptMetrics
//!     -> RateLimit -> Concurrency (fixed or adaptive) -> BatchClient
//! ```
//!
//! **Encoded once.** An operation is checked against the limits and serialized once, into an
//! [`Entry`], before the batch layer ([`BatchedStack::service`]); a pipeline whose decoder makes
//! entries itself skips that step ([`BatchedStack::entries`]). The batch layer weighs an entry
//! by its length, a batch body is the entries' bytes joined ([`PreparedBatch`]), and the retry
//! sends that same `Bytes` again: nothing on the path validates or serializes an entry twice.
//!
//! The rate and concurrency limits sit inside the retry, so retries wait for a token too. The
//! outer metrics count what callers see per batch (a 429 that a retry got through counts as a
//! success there); the attempt metrics inside the retry count every request sent, 429s and 5xx
//! included.
//!
//! ## How long an attempt may take: one place
//!
//! Each attempt is bounded by the client it was built with, and by nothing else in the stack:
//! [`ClientOptions::timeout`](crate::ClientOptions::timeout) (default 10 s) covers connecting,
//! sending, redirects and reading the answer, and
//! [`ClientOptions::connect_timeout`](crate::ClientOptions::connect_timeout) (default 5 s) the
//! TCP and TLS handshake within it. A timed-out attempt is an [`Error::Timeout`], which the
//! retry layer retries within [`RetryConfig`](cio_layers::retry::RetryConfig)'s budget. (Before,
//! the stack had a 30 s per-attempt deadline of its own that could never fire behind the
//! transport's 10 s.) Time spent waiting for a rate-limit token is not an attempt; a caller
//! that must bound its total wait, tokens included, puts a
//! [`DeadlineLayer`](cio_layers::deadline::DeadlineLayer) above the stack.
//!
//! ```no_run
//! # async fn run() {
//! use cio_api::stack::{BatchedStack, StackConfig};
//! use cio_api::{BatchClient, Operation, Region, TrackCredentials};
//! use tower::ServiceExt;
//!
//! let client = BatchClient::new(Region::Us, TrackCredentials::new("site", "key"));
//! let stack = BatchedStack::new(client, StackConfig::default()).expect("a valid config");
//! let op = Operation::from_json(br#"{"type":"person","identifiers":{"id":"42"},"action":"delete"}"#).unwrap();
//! stack.service().oneshot(op).await.expect("delivered");
//! stack.close().await; // flushes what is still batched
//! # }
//! ```

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use cio_layers::batch::{BatchConfig, BatchError, BatchHandle, BatchLayer};
use cio_layers::concurrency::{AdaptiveConcurrencyLayer, AdaptiveConfig, AdaptiveController};
use cio_layers::metrics::{MetricsHandle, MetricsLayer};
use cio_layers::rate_limit::{LocalBackend, Quota, RateLimitBackend, RateLimitLayer};
use cio_layers::retry::{RetryConfig, RetryHandle, RetryLayer};
use tower::util::{BoxCloneService, BoxCloneSyncService};
use tower::Layer;
use tower::ServiceBuilder;

use crate::encode::{Entry, PreparedBatch};
use crate::{BatchClient, EntryError, Error, Operation, TrackClient, TrackResponse};

/// How many requests may be in flight.
#[derive(Clone, Debug)]
pub enum Concurrency {
    /// At most this many.
    Fixed(usize),
    /// Found by AIMD on latency and back-pressure.
    Adaptive(AdaptiveConfig),
}

/// Settings of the stack. The defaults suit a Customer.io workspace limited to 100 requests/s.
#[derive(Clone, Debug)]
pub struct StackConfig {
    /// Requests per second and burst (default 100/s, burst 10).
    pub rate: Quota,
    /// In-flight requests (default adaptive, up to 64).
    pub concurrency: Concurrency,
    /// Retries (default: the Node SDK's policy, 4 attempts).
    pub retry: RetryConfig,
    /// Batching (default: up to 5000 entries within the 500 KB byte budget, 200 ms linger).
    pub batch: BatchConfig,
    /// Name of the metrics (the `name` label); the attempt metrics are `{metrics_name}_attempt`.
    pub metrics_name: String,
    /// Prefix of the metric names: `{metrics_prefix}_requests_total` and so on (default
    /// [`DEFAULT_PREFIX`](cio_layers::metrics::DEFAULT_PREFIX), `cio`).
    pub metrics_prefix: String,
}

impl Default for StackConfig {
    fn default() -> Self {
        StackConfig {
            rate: Quota::per_second(NonZeroU32::new(100).unwrap_or(NonZeroU32::MIN))
                .with_burst(NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN)),
            concurrency: Concurrency::Adaptive(AdaptiveConfig {
                max: 64,
                ..AdaptiveConfig::default()
            }),
            retry: RetryConfig::default(),
            batch: BatchConfig {
                // Customer.io limits a batch by bytes, not entries: let the weight decide.
                max_items: std::num::NonZeroUsize::new(5000).unwrap_or(std::num::NonZeroUsize::MIN),
                max_weight: crate::Limits::default().batch_weight(),
                max_linger: Duration::from_millis(200),
                // Room for a few full batches waiting while others are in flight.
                queue_capacity: std::num::NonZeroUsize::new(20_000)
                    .unwrap_or(std::num::NonZeroUsize::MIN),
                ..BatchConfig::default()
            },
            metrics_name: "customerio_batch".into(),
            metrics_prefix: cio_layers::metrics::DEFAULT_PREFIX.into(),
        }
    }
}

/// What a caller of the stack can get back for one operation.
pub type StackError = BatchError<EntryError, Error>;

/// The stack as one cloneable service of single operations (each validated and encoded once,
/// on the way in).
pub type StackService = BoxCloneSyncService<Operation, (), StackError>;

/// The stack as one cloneable service of entries validated and encoded already (a pipeline's
/// decoder makes them): nothing checks or serializes them again.
pub type EntryService = BoxCloneSyncService<Entry, (), StackError>;

/// The stack as one cloneable service of chunks of entries (up to [`CHUNK_ENTRIES`] per call),
/// answered with each entry's own outcome, in order: the same batches as [`EntryService`], with
/// one queue message and one answer per chunk instead of per entry.
pub type ChunkService = BoxCloneSyncService<Vec<Entry>, Vec<Result<(), StackError>>, StackError>;

/// The most entries one call of a [`ChunkService`] takes.
pub const CHUNK_ENTRIES: usize = 64;

/// A built stack: the service, and handles to flush it and to read its state.
#[derive(Clone)]
pub struct BatchedStack {
    service: StackService,
    entries: EntryService,
    chunks: ChunkService,
    batch: BatchHandle,
    metrics: MetricsHandle,
    attempts: MetricsHandle,
    retries: RetryHandle,
    concurrency: Option<AdaptiveController>,
}

impl std::fmt::Debug for BatchedStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchedStack").finish_non_exhaustive()
    }
}

/// An invalid [`StackConfig`].
#[derive(Debug, thiserror::Error)]
#[error("invalid stack configuration: {0}")]
pub struct StackConfigError(String);

impl BatchedStack {
    /// Builds the stack over `client`. Must be called inside a tokio runtime (the batch worker is
    /// spawned).
    pub fn new(client: BatchClient, config: StackConfig) -> Result<Self, StackConfigError> {
        let backend = LocalBackend::new(config.rate);
        Self::with_rate_limit(client, config, backend)
    }

    /// Builds the stack with the rate limit kept by `backend` (for example a
    /// `cio_layers::rate_limit::RedisBackend` shared by every replica). A backend that cannot
    /// decide (Redis down) makes requests wait until it can, and never fails the batch worker
    /// (see [`RateLimit`](cio_layers::rate_limit::RateLimit)). `config.rate` is then unused: the
    /// backend has its own quota.
    pub fn with_rate_limit<B>(
        client: BatchClient,
        config: StackConfig,
        backend: B,
    ) -> Result<Self, StackConfigError>
    where
        B: RateLimitBackend,
    {
        let limits = client.limits().clone();
        let metrics = MetricsLayer::builder(config.metrics_name.clone())
            .prefix(config.metrics_prefix.clone())
            .build();
        let metrics_handle = metrics.handle();
        let attempts = MetricsLayer::builder(format!("{}_attempt", config.metrics_name))
            .prefix(config.metrics_prefix.clone())
            .build();
        let attempts_handle = attempts.handle();
        let retry = RetryLayer::by_error(config.retry.clone());
        let retries = retry.handle();
        let rate = RateLimitLayer::with_backend(backend);
        let (inner, concurrency) = match &config.concurrency {
            Concurrency::Fixed(n) => {
                let svc = ServiceBuilder::new()
                    .map_request(|v: Vec<Entry>| PreparedBatch::from_entries(&v))
                    .layer(metrics)
                    .layer(retry)
                    .layer(attempts)
                    .layer(rate)
                    .concurrency_limit((*n).max(1))
                    .service(client);
                (BoxCloneService::new(svc), None)
            }
            Concurrency::Adaptive(cfg) => {
                let adaptive = AdaptiveConcurrencyLayer::by_error(*cfg)
                    .map_err(|e| StackConfigError(e.to_string()))?;
                let controller = adaptive.controller().clone();
                let svc = ServiceBuilder::new()
                    .map_request(|v: Vec<Entry>| PreparedBatch::from_entries(&v))
                    .layer(metrics)
                    .layer(retry)
                    .layer(attempts)
                    .layer(rate)
                    .layer(adaptive)
                    .service(client);
                (BoxCloneService::new(svc), Some(controller))
            }
        };
        let batch_layer = BatchLayer::new(config.batch);
        let batch_handle = batch_layer.handle();
        let batch = batch_layer.layer(inner);
        let chunk =
            std::num::NonZeroUsize::new(CHUNK_ENTRIES).unwrap_or(std::num::NonZeroUsize::MIN);
        let chunks = BoxCloneSyncService::new(batch.chunks(chunk));
        let entries = BoxCloneSyncService::new(batch);
        let service = BoxCloneSyncService::new(EncodeFirst {
            inner: entries.clone(),
            limits: Arc::new(limits),
        });
        Ok(BatchedStack {
            service,
            entries,
            chunks,
            batch: batch_handle,
            metrics: metrics_handle,
            attempts: attempts_handle,
            retries,
            concurrency,
        })
    }

    /// What the retries are doing now (batches retrying, since when requests keep failing, the
    /// next try), for a status line or a gauge.
    pub fn retries(&self) -> &RetryHandle {
        &self.retries
    }

    /// Per-attempt metrics: every request sent, retries included, by outcome (429s show as
    /// `back_pressure`).
    pub fn attempts(&self) -> &MetricsHandle {
        &self.attempts
    }

    /// A clone of the service; clones share everything.
    pub fn service(&self) -> StackService {
        self.service.clone()
    }

    /// The same stack for [`Entry`]s encoded already (a pipeline decodes each line into one).
    pub fn entries(&self) -> EntryService {
        self.entries.clone()
    }

    /// The same stack for chunks of [`Entry`]s (up to [`CHUNK_ENTRIES`] per call): what a
    /// pipeline that decodes its input in chunks hands over.
    pub fn entry_chunks(&self) -> ChunkService {
        self.chunks.clone()
    }

    /// Per-request metrics (one request carries a batch).
    pub fn metrics(&self) -> &MetricsHandle {
        &self.metrics
    }

    /// The adaptive concurrency controller, when the limit is adaptive.
    pub fn concurrency(&self) -> Option<&AdaptiveController> {
        self.concurrency.as_ref()
    }

    /// Starts [`close`](Self::close) and returns at once: what is batched goes out now,
    /// without waiting for the linger (the input ended), and nothing more is accepted.
    pub fn close_now(&self) {
        self.batch.close_now();
    }

    /// Stops accepting operations, flushes what is batched and waits for every answer.
    pub async fn close(&self) {
        self.batch.close().await;
    }
}

/// Validates and encodes an operation into an [`Entry`], once, before the batch layer; an
/// invalid one is answered at once as [`BatchError::Item`] and never queued.
#[derive(Clone)]
struct EncodeFirst<S> {
    inner: S,
    limits: Arc<crate::Limits>,
}

impl<S> tower::Service<Operation> for EncodeFirst<S>
where
    S: tower::Service<Entry, Response = (), Error = StackError>,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = StackError;
    type Future =
        futures_util::future::Either<S::Future, std::future::Ready<Result<(), StackError>>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), StackError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, op: Operation) -> Self::Future {
        // A refused operation leaves the slot `poll_ready` reserved to the next call.
        match Entry::new(&op, &self.limits) {
            Ok(entry) => futures_util::future::Either::Left(self.inner.call(entry)),
            Err(e) => futures_util::future::Either::Right(std::future::ready(Err(
                BatchError::Item(EntryError::Invalid(e)),
            ))),
        }
    }
}

/// The unbatched path as one cloneable service: one Track v1 request per operation.
pub type UnbatchedService = BoxCloneSyncService<Operation, TrackResponse, Error>;

/// The unbatched v1 path, for callers that need a synchronous answer per operation:
///
/// ```text
/// Metrics -> Retry -> RateLimit -> Concurrency (fixed or adaptive) -> TrackClient
/// ```
///
/// `config.batch` is ignored.
#[derive(Clone)]
pub struct UnbatchedStack {
    service: UnbatchedService,
    metrics: MetricsHandle,
    retries: RetryHandle,
    concurrency: Option<AdaptiveController>,
}

impl std::fmt::Debug for UnbatchedStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnbatchedStack").finish_non_exhaustive()
    }
}

impl UnbatchedStack {
    /// Builds the stack over `client`.
    pub fn new(client: TrackClient, config: StackConfig) -> Result<Self, StackConfigError> {
        let metrics = MetricsLayer::builder(config.metrics_name.clone())
            .prefix(config.metrics_prefix.clone())
            .build();
        let metrics_handle = metrics.handle();
        let retry = RetryLayer::by_error(config.retry.clone());
        let retries = retry.handle();
        let base = ServiceBuilder::new()
            .layer(metrics)
            .layer(retry)
            .layer(RateLimitLayer::new(config.rate));
        let (service, concurrency) = match config.concurrency {
            Concurrency::Fixed(n) => (
                BoxCloneSyncService::new(base.concurrency_limit(n.max(1)).service(client)),
                None,
            ),
            Concurrency::Adaptive(cfg) => {
                let adaptive = AdaptiveConcurrencyLayer::by_error(cfg)
                    .map_err(|e| StackConfigError(e.to_string()))?;
                let controller = adaptive.controller().clone();
                (
                    BoxCloneSyncService::new(base.layer(adaptive).service(client)),
                    Some(controller),
                )
            }
        };
        Ok(UnbatchedStack {
            service,
            metrics: metrics_handle,
            retries,
            concurrency,
        })
    }

    /// What the retries are doing now.
    pub fn retries(&self) -> &RetryHandle {
        &self.retries
    }

    /// A clone of the service.
    pub fn service(&self) -> UnbatchedService {
        self.service.clone()
    }

    /// Per-request metrics.
    pub fn metrics(&self) -> &MetricsHandle {
        &self.metrics
    }

    /// The adaptive concurrency controller, when the limit is adaptive.
    pub fn concurrency(&self) -> Option<&AdaptiveController> {
        self.concurrency.as_ref()
    }
}
