//! When a batch is flushed and how much the layer holds.

use std::num::NonZeroUsize;
use std::time::Duration;

/// The limits of a [`Batch`](super::Batch) layer.
///
/// ```
/// use std::num::NonZeroUsize;
/// use std::time::Duration;
/// use cio_layers::batch::BatchConfig;
///
/// let config = BatchConfig {
///     max_items: NonZeroUsize::new(1_000).unwrap(),
///     max_weight: 500_000,
///     max_linger: Duration::from_millis(50),
///     ..BatchConfig::default()
/// };
/// assert_eq!(config.max_concurrent_batches.get(), 32);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchConfig {
    /// A batch holds at most this many items; it is flushed as soon as it has them.
    ///
    /// Default 100.
    pub max_items: NonZeroUsize,
    /// A batch weighs at most this much (the sum of its items' [`Weigh::weight`]); an item that
    /// would push the open batch over it is kept for the next batch, and an item heavier than
    /// this on its own is refused with [`BatchError::TooHeavy`].
    ///
    /// Default `usize::MAX` (no limit): only the API knows its request size limit.
    ///
    /// [`Weigh::weight`]: super::Weigh::weight
    /// [`BatchError::TooHeavy`]: super::BatchError::TooHeavy
    pub max_weight: usize,
    /// A batch is flushed at the latest this long after the worker took its first item off the
    /// queue, however small it is. Time an item spent queued behind a full batch (back-pressure)
    /// does not count, so a slow inner service does not shrink batches. Zero sends whatever has
    /// queued up by the time the worker looks.
    ///
    /// Default 50 ms: bounds the latency added to a trickle of items, while under load batches
    /// fill by count or weight long before.
    pub max_linger: Duration,
    /// At most this many items wait in the layer (queued, or in the open batch) before
    /// `poll_ready` makes callers wait. A slot is freed when its item is handed to the inner
    /// service. Keep it at least `max_items`, or batches can never fill by count.
    ///
    /// Default 1024 (about ten batches of the default size).
    pub queue_capacity: NonZeroUsize,
    /// At most this many batches are in flight (handed to the inner service and not yet
    /// answered) at once.
    ///
    /// Default 32. This is a memory bound (at most `max_concurrent_batches * max_items` items in
    /// flight), not the concurrency control: the worker asks the inner service's `poll_ready`
    /// before every flush, so a concurrency limit or rate limit inside decides how many batches
    /// really run. A default of 1 would cap that inner limit at one request at a time; 32 leaves
    /// room for an adaptive limit to grow on a high-latency link. Set it at or above the inner
    /// limit's maximum.
    pub max_concurrent_batches: NonZeroUsize,
}

const fn non_zero(n: usize) -> NonZeroUsize {
    match NonZeroUsize::new(n) {
        Some(n) => n,
        None => panic!("a non-zero default is zero"),
    }
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_items: non_zero(100),
            max_weight: usize::MAX,
            max_linger: Duration::from_millis(50),
            queue_capacity: non_zero(1024),
            max_concurrent_batches: non_zero(32),
        }
    }
}
