//! Items in, batches out: each caller sends one item and awaits that item's own outcome, while a
//! background worker groups items into batches for an inner service that takes a `Vec` of them.
//!
//! ```text
//!  caller ──poll_ready (reserve a queue slot)──► Batch<S, T> ──item──► worker ──Vec<T>──► S
//!  caller ◄────────────── its own item's outcome (oneshot) ◄──────────────── BatchOutcomes
//! ```
//!
//! A caller that has items by the dozen takes [`Batch::chunks`] instead: a [`BatchChunks`], a
//! `Service<Vec<T>>` that hands a whole chunk to the same worker in one message and answers
//! every item's own outcome from one [`ChunkFuture`]. Batches, limits and outcomes are the
//! same; a chunk may straddle two batches. Its `poll_ready` reserves a chunk's worth of slots,
//! and a chunk larger than that is refused ([`BatchError::ChunkTooLarge`]).
//!
//! # Flushing
//!
//! The worker keeps one open batch and hands it to the inner service when the first of these
//! happens ([`BatchConfig`]):
//!
//! - it holds [`max_items`](BatchConfig::max_items) items;
//! - the next item would push its weight over [`max_weight`](BatchConfig::max_weight) (the batch
//!   is flushed *before* that item is added, so a batch never exceeds the limit);
//! - [`max_linger`](BatchConfig::max_linger) has passed since its first item arrived;
//! - the layer is closing (every clone dropped, or [`BatchHandle::close`]).
//!
//! An item whose own weight exceeds `max_weight` is refused at [`call`](tower::Service::call)
//! with [`BatchError::TooHeavy`] rather than sent alone over the limit.
//!
//! # Back-pressure
//!
//! [`poll_ready`](tower::Service::poll_ready) reserves one of
//! [`queue_capacity`](BatchConfig::queue_capacity) slots. A slot is held until the item is handed
//! to the inner service, so `queue_capacity` bounds the items waiting in this layer, queued and in
//! the open batch alike. The worker calls the inner service's `poll_ready` before each flush, so a
//! rate limit or concurrency limit inside holds batches back, the queue fills, and callers wait in
//! `poll_ready`. Up to [`max_concurrent_batches`](BatchConfig::max_concurrent_batches) batches are
//! driven at once by the worker itself (no task per batch).
//!
//! # Failure
//!
//! The inner service answers a batch with a response that implements [`BatchOutcomes`]: one
//! outcome per item, in order, so a partial failure reaches exactly the callers whose items
//! failed ([`BatchError::Item`]). A whole-batch error reaches every caller of that batch
//! ([`BatchError::Batch`], one shared `Arc`). A response with the wrong number of outcomes fails
//! that batch's callers with [`BatchError::OutcomeMismatch`].
//!
//! A panic in the inner service (in `poll_ready`, `call`, its future or `into_outcomes`) or an
//! error from its `poll_ready` fails the layer for good: the batches already in flight still
//! finish and answer their callers, and every other pending caller, every later caller and every
//! clone gets [`BatchError::WorkerFailed`] with the reason. Nobody is left waiting.
//!
//! # Shutdown
//!
//! [`BatchHandle::close`] stops accepting items, flushes everything queued, waits for the batches
//! in flight, and returns once every accepted item has been answered. Dropping every [`Batch`]
//! clone does the same without the wait. Callers refused after the close see
//! [`BatchError::Closed`].
//!
//! # Why by hand
//!
//! No maintained crate turns a `Service<Vec<T>>` into a `Service<T>` with per-item outcomes:
//! tower has no batch layer, and zebra's `tower-batch-control` hands items to the inner service
//! one by one (its `Item`/`Flush` protocol) and has no byte limit or per-item result mapping.
//! The worker follows its ideas (a weight per item, a maximum latency, a worker failure visible on
//! every clone) and Vector's batcher limits (count, bytes, timeout; flush before overflow).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use cio_layers::batch::{BatchConfig, BatchLayer, Weigh};
//! use cio_layers::BoxError;
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//!
//! struct Event(String);
//!
//! impl Weigh for Event {
//!     // The serialized size plus one byte for the comma that separates entries.
//!     fn weight(&self) -> usize {
//!         self.0.len() + 1
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! // The inner service takes a batch and answers one outcome per entry, in order.
//! let send_batch = service_fn(|events: Vec<Event>| async move {
//!     let outcomes: Vec<Result<usize, String>> = events
//!         .iter()
//!         .map(|e| if e.0.is_empty() { Err("empty event".to_string()) } else { Ok(e.0.len()) })
//!         .collect();
//!     Ok::<_, BoxError>(outcomes)
//! });
//!
//! let layer = BatchLayer::new(BatchConfig {
//!     max_weight: 500_000,
//!     max_linger: Duration::from_millis(20),
//!     ..BatchConfig::default()
//! });
//! let handle = layer.handle();
//! let mut events = ServiceBuilder::new().layer(layer).service(send_batch);
//!
//! let ok = events.ready().await?.call(Event("signed_up".into()));
//! let refused = events.ready().await?.call(Event(String::new()));
//! assert_eq!(ok.await?, 9);
//! assert!(refused.await.is_err());
//!
//! handle.close().await; // flush what is left, wait for the answers
//! # Ok(())
//! # }
//! ```

mod chunk;
mod config;
mod error;
mod future;
mod handle;
mod layer;
mod open_batch;
mod service;
mod worker;

pub use chunk::{BatchChunks, ChunkFuture};
pub use config::BatchConfig;
pub use error::BatchError;
pub use future::ResponseFuture;
pub use handle::BatchHandle;
pub use layer::BatchLayer;
pub use service::Batch;

/// How much an item counts against [`BatchConfig::max_weight`].
///
/// For an API that limits the size of a request body, the item's serialized size plus its
/// separator (a JSON array entry weighs its length + 1 for the comma); leave room for the
/// envelope of the body when choosing `max_weight`.
pub trait Weigh {
    /// This item's weight, in the unit of [`BatchConfig::max_weight`] (bytes, usually).
    fn weight(&self) -> usize;
}

/// The inner service's answer to a batch, split into one outcome per item.
///
/// Implemented by the response of the service that [`Batch`] wraps: for an API that answers a
/// batch with per-entry errors (an HTTP 207, say), the mapping from that answer back to the
/// entries, in the order they were sent. `Vec<Result<I, E>>` implements it as is.
pub trait BatchOutcomes {
    /// What a caller receives when its item succeeded.
    type Item;
    /// Why the inner service refused one item (the others may have succeeded).
    type ItemError;

    /// One outcome per item of the batch, in the order the items were sent.
    ///
    /// `batch_len` is the number of items sent. If the returned vector has another length, no
    /// outcome can be trusted to belong to its item: every caller of the batch then receives
    /// [`BatchError::OutcomeMismatch`].
    fn into_outcomes(self, batch_len: usize) -> Vec<Result<Self::Item, Self::ItemError>>;
}

impl<I, E> BatchOutcomes for Vec<Result<I, E>> {
    type Item = I;
    type ItemError = E;

    fn into_outcomes(self, _batch_len: usize) -> Vec<Result<I, E>> {
        self
    }
}
