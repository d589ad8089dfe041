//! The batch being filled, the count and weight rules that decide when it is full, and whom
//! to answer for its items.

use std::ops::Range;

use tokio::sync::oneshot;

use super::chunk::ChunkRef;
use super::BatchConfig;

/// Whom to answer for one or more consecutive items of a batch.
pub(crate) enum Reply<A> {
    /// A single item's caller ([`Batch`](super::Batch)).
    One(oneshot::Sender<A>),
    /// A run of items of one chunk ([`BatchChunks`](super::BatchChunks)), at these indices of
    /// the chunk.
    Run {
        chunk: ChunkRef<A>,
        indices: Range<u32>,
    },
}

impl<A> Reply<A> {
    /// How many items of the batch this reply covers.
    pub(crate) fn len(&self) -> usize {
        match self {
            Reply::One(_) => 1,
            Reply::Run { indices, .. } => indices.len(),
        }
    }

    /// Whether nobody waits for the outcome any more.
    pub(crate) fn is_abandoned(&self) -> bool {
        match self {
            Reply::One(answer) => answer.is_closed(),
            Reply::Run { chunk, .. } => chunk.is_abandoned(),
        }
    }

    /// Answers this reply's items with the next outcomes.
    pub(crate) fn answer(self, outcomes: &mut impl Iterator<Item = A>) {
        match self {
            Reply::One(answer) => {
                if let Some(outcome) = outcomes.next() {
                    let _ = answer.send(outcome);
                }
            }
            Reply::Run { chunk, indices } => chunk.fill(indices, outcomes),
        }
    }

    /// Answers every item of this reply with an outcome made by `make`.
    pub(crate) fn answer_all(self, make: impl FnMut() -> A) {
        let mut make = make;
        match self {
            Reply::One(answer) => {
                let _ = answer.send(make());
            }
            Reply::Run { chunk, indices } => chunk.fill_with(indices, make),
        }
    }
}

/// The batch being filled.
pub(crate) struct OpenBatch<T, A> {
    items: Vec<T>,
    replies: Vec<Reply<A>>,
    weight: usize,
}

impl<T, A> OpenBatch<T, A> {
    pub(crate) fn new() -> Self {
        OpenBatch {
            items: Vec::new(),
            replies: Vec::new(),
            weight: 0,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether an item of `weight` can join without breaking a limit. An empty batch takes any
    /// item (heavier ones were refused by the caller), so the worker always makes progress.
    pub(crate) fn fits(&self, weight: usize, config: &BatchConfig) -> bool {
        self.is_empty()
            || (self.items.len() < config.max_items.get()
                && self
                    .weight
                    .checked_add(weight)
                    .is_some_and(|total| total <= config.max_weight))
    }

    /// Whether no further item can join (one of weight zero aside), so waiting is pointless.
    pub(crate) fn is_full(&self, config: &BatchConfig) -> bool {
        self.items.len() >= config.max_items.get()
            || (!self.is_empty() && self.weight >= config.max_weight)
    }

    /// Adds a single caller's item.
    pub(crate) fn push_one(&mut self, item: T, weight: usize, answer: oneshot::Sender<A>) {
        self.items.push(item);
        self.replies.push(Reply::One(answer));
        self.weight += weight;
    }

    /// Adds the item at `index` of `chunk`: it extends the last run when that run is the same
    /// chunk's and ends right before `index`.
    pub(crate) fn push_part(&mut self, item: T, weight: usize, chunk: &ChunkRef<A>, index: u32) {
        self.items.push(item);
        self.weight += weight;
        if let Some(Reply::Run {
            chunk: last,
            indices,
        }) = self.replies.last_mut()
        {
            if indices.end == index && last.same_chunk(chunk) {
                indices.end += 1;
                return;
            }
        }
        self.replies.push(Reply::Run {
            chunk: chunk.clone(),
            indices: index..index + 1,
        });
    }

    pub(crate) fn take(&mut self) -> (Vec<T>, Vec<Reply<A>>) {
        self.weight = 0;
        (
            std::mem::take(&mut self.items),
            std::mem::take(&mut self.replies),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;

    use super::*;

    fn limits(max_items: usize, max_weight: usize) -> BatchConfig {
        BatchConfig {
            max_items: NonZeroUsize::new(max_items).unwrap(),
            max_weight,
            ..BatchConfig::default()
        }
    }

    fn add(batch: &mut OpenBatch<u32, ()>, weight: usize) {
        let (answer, _) = oneshot::channel();
        batch.push_one(0, weight, answer);
    }

    #[test]
    fn an_item_that_reaches_max_weight_exactly_fits_and_fills_the_batch() {
        let config = limits(10, 10);
        let mut batch = OpenBatch::new();
        add(&mut batch, 4);
        assert!(batch.fits(6, &config));
        assert!(!batch.fits(7, &config));
        add(&mut batch, 6);
        assert!(batch.is_full(&config));
    }

    #[test]
    fn the_item_count_fills_a_batch_at_max_items() {
        let config = limits(2, usize::MAX);
        let mut batch = OpenBatch::new();
        add(&mut batch, 1);
        assert!(!batch.is_full(&config));
        add(&mut batch, 1);
        assert!(batch.is_full(&config) && !batch.fits(0, &config));
    }

    #[test]
    fn an_empty_batch_takes_any_item_and_weights_never_overflow() {
        let config = limits(10, usize::MAX);
        let mut batch = OpenBatch::new();
        assert!(
            !batch.is_full(&limits(1, 0)),
            "an empty batch is never full"
        );
        assert!(batch.fits(usize::MAX, &config));
        add(&mut batch, usize::MAX - 1);
        assert!(!batch.fits(2, &config), "no wrap-around past usize::MAX");
        let (items, answers) = batch.take();
        assert_eq!((items.len(), answers.len()), (1, 1));
        assert!(batch.is_empty() && batch.fits(usize::MAX, &config));
    }
}
