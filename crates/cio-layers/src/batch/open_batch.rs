//! The batch being filled, and the count and weight rules that decide when it is full.

use tokio::sync::oneshot;

use super::BatchConfig;

/// An accepted item: its slot is accounted for by the worker from here on.
pub(crate) struct Accepted<T, A> {
    pub(crate) item: T,
    pub(crate) weight: usize,
    pub(crate) answer: oneshot::Sender<A>,
}

/// The batch being filled.
pub(crate) struct OpenBatch<T, A> {
    items: Vec<T>,
    answers: Vec<oneshot::Sender<A>>,
    weight: usize,
}

impl<T, A> OpenBatch<T, A> {
    pub(crate) fn new() -> Self {
        OpenBatch {
            items: Vec::new(),
            answers: Vec::new(),
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

    pub(crate) fn push(&mut self, accepted: Accepted<T, A>) {
        self.items.push(accepted.item);
        self.answers.push(accepted.answer);
        self.weight += accepted.weight;
    }

    pub(crate) fn take(&mut self) -> (Vec<T>, Vec<oneshot::Sender<A>>) {
        self.weight = 0;
        (
            std::mem::take(&mut self.items),
            std::mem::take(&mut self.answers),
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
        batch.push(Accepted {
            item: 0,
            weight,
            answer,
        });
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
