//! The caller's side: a `Service` for single items.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{mpsc, oneshot};
use tower::Service;
use tracing::Instrument;

use super::handle::{Reservation, Shared};
use super::worker::{Answer, Message, Worker};
use super::{BatchConfig, BatchError, BatchHandle, BatchOutcomes, ResponseFuture, Weigh};

/// A `Service<T>` for single items in front of an inner `Service<Vec<T>>`: each call's future
/// resolves with that item's own outcome. See the [module docs](super).
///
/// Cloning is cheap: every clone feeds the same worker and queue, and shares its state (the queue
/// slots and the worker's failure) behind an `Arc`. A clone that got `Ready` from `poll_ready`
/// holds one queue slot until it calls (or is dropped).
pub struct Batch<S, T>
where
    S: Service<Vec<T>>,
    S::Response: BatchOutcomes,
{
    queue: mpsc::UnboundedSender<Message<T, Answer<S, T>>>,
    slots: Reservation,
    shared: Arc<Shared>,
    max_weight: usize,
}

impl<S, T> Batch<S, T>
where
    S: Service<Vec<T>> + Send + 'static,
    S::Future: Send + 'static,
    S::Response: BatchOutcomes,
    <S::Response as BatchOutcomes>::Item: Send + 'static,
    <S::Response as BatchOutcomes>::ItemError: Send + 'static,
    S::Error: fmt::Display + Send + Sync + 'static,
    T: Send + 'static,
{
    /// Wraps `inner` and spawns its worker on the current tokio runtime.
    ///
    /// The worker runs until every clone of this `Batch` is dropped or a [`BatchHandle`] closes
    /// it, and in both cases flushes and answers every accepted item first.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (as `tokio::spawn` does).
    pub fn new(inner: S, config: BatchConfig) -> Self {
        let shared = Arc::new(Shared::new(config.queue_capacity.get()));
        let (queue, receiver) = mpsc::unbounded_channel();
        let worker = Worker::new(inner, receiver, config, Arc::clone(&shared));
        // The task is owned through `shared`: `close` cancels it gracefully and `finished` tells
        // when it is gone; it also ends by itself once every clone is dropped.
        tokio::spawn(worker.instrument(tracing::debug_span!("batch_worker")));
        Batch {
            queue,
            slots: Reservation::new(&shared),
            shared,
            max_weight: config.max_weight,
        }
    }
}

impl<S, T> Batch<S, T>
where
    S: Service<Vec<T>>,
    S::Response: BatchOutcomes,
{
    /// A handle that closes this layer instance (and every clone of it) without losing an item.
    pub fn handle(&self) -> BatchHandle {
        let handle = BatchHandle::default();
        handle.register(Arc::clone(&self.shared));
        handle
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub(crate) fn queue(&self) -> &mpsc::UnboundedSender<Message<T, Answer<S, T>>> {
        &self.queue
    }

    pub(crate) fn max_weight(&self) -> usize {
        self.max_weight
    }
}

impl<S, T> Service<T> for Batch<S, T>
where
    S: Service<Vec<T>>,
    S::Response: BatchOutcomes,
    T: Weigh,
{
    type Response = <S::Response as BatchOutcomes>::Item;
    type Error = BatchError<<S::Response as BatchOutcomes>::ItemError, S::Error>;
    type Future = ResponseFuture<
        <S::Response as BatchOutcomes>::Item,
        <S::Response as BatchOutcomes>::ItemError,
        S::Error,
    >;

    /// Reserves a queue slot; `Pending` while the queue is full. Fails with
    /// [`BatchError::WorkerFailed`] once the worker failed, [`BatchError::Closed`] once closed.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.slots.poll_reserve(&self.shared, cx, 1)
    }

    /// Weighs the item and queues it in the slot `poll_ready` reserved. An item heavier than
    /// `max_weight` is refused ([`BatchError::TooHeavy`]) and its slot freed.
    fn call(&mut self, item: T) -> Self::Future {
        let Some(slot) = self.slots.held.take() else {
            return ResponseFuture::refused(BatchError::NotReady);
        };
        let weight = item.weight();
        if weight > self.max_weight {
            return ResponseFuture::refused(BatchError::TooHeavy {
                weight,
                max: self.max_weight,
            });
        }
        let (answer, answered) = oneshot::channel();
        let message = Message::One {
            item,
            weight,
            answer,
            slot,
        };
        match self.queue.send(message) {
            Ok(()) => ResponseFuture::waiting(answered, Arc::clone(&self.shared)),
            Err(_) => ResponseFuture::refused(self.shared.closed_error()),
        }
    }
}

impl<S, T> Clone for Batch<S, T>
where
    S: Service<Vec<T>>,
    S::Response: BatchOutcomes,
{
    fn clone(&self) -> Self {
        Batch {
            queue: self.queue.clone(),
            slots: self.slots.clone(),
            shared: Arc::clone(&self.shared),
            max_weight: self.max_weight,
        }
    }
}

impl<S, T> fmt::Debug for Batch<S, T>
where
    S: Service<Vec<T>>,
    S::Response: BatchOutcomes,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("max_weight", &self.max_weight)
            .field("holds_slot", &self.slots.held.is_some())
            .field("free_slots", &self.slots.available())
            .field("shared", &self.shared)
            .finish()
    }
}
