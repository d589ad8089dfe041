//! The state a batch worker shares with its callers, and the handle that closes it.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{ready, Context, Poll};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::{CancellationToken, PollSemaphore};

use super::BatchError;

/// What one worker shares with every clone of its [`Batch`](super::Batch), every response future
/// and every [`BatchHandle`], behind an `Arc`.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Why the worker failed, set once, before the queue is closed, so that whoever finds the
    /// queue closed can tell a failure from a close.
    failure: OnceLock<String>,
    /// The queue slots (see `BatchConfig::queue_capacity`).
    pub(crate) slots: Arc<Semaphore>,
    /// How many slots there are in all.
    pub(crate) capacity: usize,
    /// Cancelled to ask the worker to stop accepting, flush and exit.
    pub(crate) close: CancellationToken,
    /// Cancelled when the worker is gone, after it answered every item it accepted.
    pub(crate) finished: CancellationToken,
}

impl Shared {
    pub(crate) fn new(queue_capacity: usize) -> Self {
        let capacity = queue_capacity.min(Semaphore::MAX_PERMITS);
        Shared {
            failure: OnceLock::new(),
            slots: Arc::new(Semaphore::new(capacity)),
            capacity,
            close: CancellationToken::new(),
            finished: CancellationToken::new(),
        }
    }

    /// Records why the worker failed (the first reason wins) and returns the recorded reason.
    pub(crate) fn record_failure(&self, reason: String) -> &str {
        self.failure.get_or_init(|| reason)
    }

    /// The error for a caller that found the queue closed: the failure if there was one.
    pub(crate) fn closed_error<IE, E>(&self) -> BatchError<IE, E> {
        match self.failure.get() {
            Some(reason) => BatchError::WorkerFailed(reason.clone()),
            None => BatchError::Closed,
        }
    }

    /// Asks the worker to close, and refuses new reservations at once (callers already holding
    /// a slot may still hand their item over; it is flushed with the rest).
    pub(crate) fn request_close(&self) {
        self.close.cancel();
        self.slots.close();
    }

    /// The failure error, if the worker failed.
    pub(crate) fn failure_error<IE, E>(&self) -> Option<BatchError<IE, E>> {
        self.failure
            .get()
            .map(|reason| BatchError::WorkerFailed(reason.clone()))
    }
}

/// A caller's queue slots: reserved in `poll_ready`, spent in `call`.
pub(crate) struct Reservation {
    slots: PollSemaphore,
    pub(crate) held: Option<OwnedSemaphorePermit>,
}

impl Reservation {
    pub(crate) fn new(shared: &Shared) -> Self {
        Reservation {
            slots: PollSemaphore::new(Arc::clone(&shared.slots)),
            held: None,
        }
    }

    /// Free slots in the queue now.
    pub(crate) fn available(&self) -> usize {
        self.slots.available_permits()
    }

    /// Reserves `wanted` slots (once; `Ready` at once while they are held). Fails with the
    /// worker's failure once it failed, or [`BatchError::Closed`] once closed.
    pub(crate) fn poll_reserve<IE, E>(
        &mut self,
        shared: &Shared,
        cx: &mut Context<'_>,
        wanted: u32,
    ) -> Poll<Result<(), BatchError<IE, E>>> {
        if let Some(error) = shared.failure_error() {
            self.held = None;
            return Poll::Ready(Err(error));
        }
        if self.held.is_some() {
            return Poll::Ready(Ok(()));
        }
        match ready!(self.slots.poll_acquire_many(cx, wanted)) {
            Some(slots) => {
                self.held = Some(slots);
                Poll::Ready(Ok(()))
            }
            None => Poll::Ready(Err(shared.closed_error())),
        }
    }
}

impl Clone for Reservation {
    /// A clone shares the queue but not the slots held.
    fn clone(&self) -> Self {
        Reservation {
            slots: self.slots.clone(),
            held: None,
        }
    }
}

/// Closes batch layers without losing an item: stops accepting, flushes what is queued, waits
/// for the batches in flight, and returns once every accepted item was answered.
///
/// Got from [`Batch::handle`](super::Batch::handle) (that layer instance) or
/// [`BatchLayer::handle`](super::BatchLayer::handle) (every instance that layer built, and any it
/// builds after the close, which start closed). Cloning a handle is cheap; clones close the same
/// layers. A handle does not keep a worker alive: dropping every `Batch` clone still flushes and
/// stops it.
#[derive(Clone, Debug, Default)]
pub struct BatchHandle {
    registry: Arc<Mutex<Registry>>,
}

#[derive(Debug, Default)]
struct Registry {
    closed: bool,
    workers: Vec<Arc<Shared>>,
}

impl BatchHandle {
    /// Adds a worker to close with this handle (closed at once if the handle was closed).
    pub(crate) fn register(&self, shared: Arc<Shared>) {
        let mut registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        if registry.closed {
            shared.request_close();
        }
        registry
            .workers
            .retain(|worker| !worker.finished.is_cancelled());
        registry.workers.push(shared);
    }

    /// Stops accepting items, flushes every item already accepted, waits for every batch in
    /// flight, and returns when all of them were answered. Callers that arrive after the close
    /// get [`BatchError::Closed`].
    ///
    /// Waits as long as the inner service takes: wrap it in a timeout to bound shutdown.
    pub async fn close(&self) {
        for worker in &self.request_close() {
            worker.finished.cancelled().await;
        }
    }

    /// Starts the [`close`](Self::close) and returns at once: no further item is accepted, and
    /// what is queued or in the open batch goes to the inner service now, without waiting for
    /// `max_linger`. For a caller whose input has ended (a pipeline at the end of its file), so
    /// that the last batch does not wait for more items that cannot come.
    pub fn close_now(&self) {
        self.request_close();
    }

    fn request_close(&self) -> Vec<Arc<Shared>> {
        let workers = {
            let mut registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
            registry.closed = true;
            registry.workers.clone()
        };
        for worker in &workers {
            worker.request_close();
        }
        workers
    }

    /// Whether every worker this handle covers has finished (after a close, a failure, or the
    /// last clone dropped).
    pub fn is_finished(&self) -> bool {
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        registry
            .workers
            .iter()
            .all(|worker| worker.finished.is_cancelled())
    }
}
