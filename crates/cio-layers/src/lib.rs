//! Tower layers for calling a rate-limited API at volume. Nothing here knows which API: the
//! knowledge a layer needs (which errors are retryable, what `Retry-After` said, how much an item
//! weighs, how a batch answer maps back to its items) comes through small traits that the API
//! crate implements ([`Classifier`], [`batch::Weigh`], [`batch::BatchOutcomes`]).
//!
//! | module | layer | what it closes over tower's own |
//! |---|---|---|
//! | [`rate_limit`] | GCRA with rate and burst, shared by every clone, pluggable backend | tower's `RateLimit` is a fixed window and each clone has its own |
//! | [`concurrency`] | fixed (tower's) and adaptive (AIMD on RTT and back-pressure) | tower has no adaptive limit |
//! | [`batch`] | items in, batches out, each caller gets its own item's outcome | tower has no batch layer |
//! | [`retry`] | backoff with full jitter, `Retry-After`, attempts, total cap, budget | tower's `Retry` knows no `Retry-After` |
//! | [`metrics`] | outcome counts, in-flight, latency percentiles, `metrics` facade | tower has none |
//! | [`deadline`] | a timeout that covers waiting for readiness | tower's `Timeout` starts at `call` |
//!
//! The order the pipeline uses, outermost first:
//!
//! ```text
//! Batch -> Metrics -> Retry -> RateLimit -> Concurrency -> Deadline -> client
//! ```
//!
//! The rate and concurrency limits sit inside the retry, so every retry waits for a token too;
//! metrics sit outside, so they see what callers see.

#![warn(missing_docs)]

pub mod batch;
mod classify;
pub mod concurrency;
pub mod deadline;
pub mod metrics;
pub mod rate_limit;
pub mod retry;

pub use classify::{ByError, Classifier, ClassifyError, Failure};

/// The boxed error type of tower.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
