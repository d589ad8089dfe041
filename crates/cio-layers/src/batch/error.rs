//! What a caller of the batch layer can receive instead of its item's outcome.

use std::sync::Arc;

use crate::classify::{ClassifyError, Failure};

/// Why a caller did not get its item's success.
///
/// `IE` is the inner service's per-item error ([`BatchOutcomes::ItemError`]), `E` the inner
/// service's own error (the whole batch failed).
///
/// [`BatchOutcomes::ItemError`]: super::BatchOutcomes::ItemError
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum BatchError<IE, E> {
    /// The inner service refused this item; the other items of its batch may have succeeded.
    #[error("item refused: {0}")]
    Item(IE),
    /// The whole batch failed; every caller of that batch shares this error.
    #[error("the batch failed: {0}")]
    Batch(Arc<E>),
    /// The item weighs more than a whole batch may; it was not sent. Split it or raise
    /// `max_weight`.
    #[error("item weighs {weight}, more than a batch may carry ({max}); it was not sent")]
    TooHeavy {
        /// The item's weight.
        weight: usize,
        /// [`BatchConfig::max_weight`](super::BatchConfig::max_weight).
        max: usize,
    },
    /// The inner service answered a batch with a number of outcomes other than its number of
    /// items, so no outcome could be matched to its item. The batch was sent: some items may
    /// have been delivered. A bug in the [`BatchOutcomes`](super::BatchOutcomes) mapping.
    #[error(
        "the inner service answered {got} outcomes for a batch of {expected} items; \
         outcomes cannot be matched to items"
    )]
    OutcomeMismatch {
        /// The number of items in the batch.
        expected: usize,
        /// The number of outcomes the response held.
        got: usize,
    },
    /// The layer was closed (by [`BatchHandle::close`](super::BatchHandle::close) or because
    /// every clone was dropped) before this item was accepted; it was not sent.
    #[error("the batch layer is closed; the item was not sent")]
    Closed,
    /// The layer failed for good: the inner service panicked or its `poll_ready` failed, or the
    /// worker stopped (its runtime shut down). Every pending and later caller gets this.
    #[error("the batch worker failed: {0}")]
    WorkerFailed(String),
    /// `call` was made without a successful `poll_ready` first (the tower contract); the item was
    /// not sent.
    #[error("call() without a successful poll_ready(); the item was not sent")]
    NotReady,
    /// A chunk of more items than the chunk service reserved slots for
    /// ([`Batch::chunks`](super::Batch::chunks)); none of them was sent.
    #[error("a chunk of {items} items, more than the {max} one call may take; none was sent")]
    ChunkTooLarge {
        /// The number of items in the chunk.
        items: usize,
        /// The most one call takes.
        max: usize,
    },
}

/// Per-item and whole-batch errors are judged by their own classification; the layer's own
/// errors are permanent (retrying against a closed or failed layer cannot help, a refused item
/// stays too heavy).
impl<IE: ClassifyError, E: ClassifyError> ClassifyError for BatchError<IE, E> {
    fn classify(&self) -> Failure {
        match self {
            BatchError::Item(error) => error.classify(),
            BatchError::Batch(error) => error.classify(),
            BatchError::TooHeavy { .. }
            | BatchError::OutcomeMismatch { .. }
            | BatchError::Closed
            | BatchError::WorkerFailed(_)
            | BatchError::NotReady
            | BatchError::ChunkTooLarge { .. } => Failure::PERMANENT,
        }
    }
}
