//! The caller's side for chunks: a `Service<Vec<T>>` that hands many items to the same worker
//! in one message, and one future that resolves with every item's own outcome.
//!
//! Per item, [`Batch`](super::Batch) costs a oneshot channel, a queue send, a queue slot and a
//! future the caller awaits. A caller that has items in hand by the dozen (a pipeline reads and
//! decodes its input in chunks) pays those once per chunk here: one message, one reservation of
//! slots, one shared answer that the worker fills a run of items at a time, one wake-up when the
//! last of them is answered. In `cio pipe` the per-item path was about a fifth of its CPU.
//!
//! A chunk may straddle two batches (the worker fills the open batch and starts the next with
//! the rest); the future resolves when every item was answered.

use std::fmt;
use std::future::Future;
use std::num::NonZeroUsize;
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::sync::mpsc;
use tower::Service;

use super::future::ItemResult;
use super::handle::{Reservation, Shared};
use super::worker::{Answer, Message, Waiting};
use super::{Batch, BatchError, BatchOutcomes, Weigh};

/// The answers to one chunk, filled by the worker and read by the caller's [`ChunkFuture`].
pub(crate) struct ChunkAnswer<A> {
    state: Mutex<ChunkState<A>>,
    /// Set when the caller dropped its future: the worker sends none of the chunk's items that
    /// it has not handed to the inner service yet.
    abandoned: AtomicBool,
}

struct ChunkState<A> {
    /// One per item of the chunk, in order; `None` until answered.
    outcomes: Vec<Option<A>>,
    /// Items not answered yet.
    pending: usize,
    /// Worker-side references ([`ChunkRef`]) alive. None left while items are pending means
    /// the worker dropped them unanswered (it failed, or its runtime stopped).
    refs: usize,
    waker: Option<Waker>,
}

impl<A> ChunkAnswer<A> {
    fn lock(&self) -> MutexGuard<'_, ChunkState<A>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The worker's reference to a chunk's answers. Counted, so that the caller learns when the
/// worker let go of items it never answered.
pub(crate) struct ChunkRef<A>(Arc<ChunkAnswer<A>>);

impl<A> ChunkRef<A> {
    fn new(answer: &Arc<ChunkAnswer<A>>) -> Self {
        answer.lock().refs += 1;
        ChunkRef(Arc::clone(answer))
    }

    pub(crate) fn is_abandoned(&self) -> bool {
        self.0.abandoned.load(Ordering::Relaxed)
    }

    pub(crate) fn same_chunk(&self, other: &ChunkRef<A>) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Answers the items at `indices`, in order, from `outcomes`.
    pub(crate) fn fill(&self, indices: Range<u32>, outcomes: &mut impl Iterator<Item = A>) {
        self.answer(|state| {
            for i in indices {
                let Some(outcome) = outcomes.next() else {
                    break;
                };
                let slot = &mut state.outcomes[i as usize];
                if slot.is_none() {
                    state.pending -= 1;
                }
                *slot = Some(outcome);
            }
        });
    }

    /// Answers the items at `indices` with outcomes made by `make`.
    pub(crate) fn fill_with(
        &self,
        indices: impl Iterator<Item = u32>,
        mut make: impl FnMut() -> A,
    ) {
        self.answer(|state| {
            for i in indices {
                let slot = &mut state.outcomes[i as usize];
                if slot.is_none() {
                    state.pending -= 1;
                    *slot = Some(make());
                }
            }
        });
    }

    /// Runs `fill` under the lock, then wakes the caller (outside it) if nothing is pending.
    fn answer(&self, fill: impl FnOnce(&mut ChunkState<A>)) {
        let waker = {
            let mut guard = self.0.lock();
            fill(&mut guard);
            if guard.pending == 0 {
                guard.waker.take()
            } else {
                None
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<A> Clone for ChunkRef<A> {
    fn clone(&self) -> Self {
        ChunkRef::new(&self.0)
    }
}

impl<A> Drop for ChunkRef<A> {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.0.lock();
            state.refs -= 1;
            if state.refs == 0 && state.pending > 0 {
                state.waker.take()
            } else {
                None
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// Resolves with one outcome per item given to [`BatchChunks::call`], in order, or with a
/// [`BatchError`] for the whole chunk when it was not accepted at all (the layer closed or
/// failed, no `poll_ready` first, more items than [`Batch::chunks`] allows).
///
/// Dropping it takes the chunk's items that were not handed to the inner service yet out: nobody
/// would see their outcome, so they are not sent.
pub struct ChunkFuture<R, IE, E> {
    state: FutureState<ItemResult<R, IE, E>, BatchError<IE, E>>,
}

enum FutureState<A, B> {
    Waiting {
        answer: Arc<ChunkAnswer<A>>,
        shared: Arc<Shared>,
    },
    Answered(Vec<A>),
    Refused(B),
    Done,
}

impl<R, IE, E> ChunkFuture<R, IE, E> {
    fn refused(error: BatchError<IE, E>) -> Self {
        ChunkFuture {
            state: FutureState::Refused(error),
        }
    }
}

// Nothing is pinned: the state is moved out on completion.
impl<R, IE, E> Unpin for ChunkFuture<R, IE, E> {}

impl<R, IE, E> Future for ChunkFuture<R, IE, E> {
    type Output = Result<Vec<ItemResult<R, IE, E>>, BatchError<IE, E>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let FutureState::Waiting { answer, .. } = &this.state {
            let mut state = answer.lock();
            if state.pending > 0 && state.refs > 0 {
                if !state
                    .waker
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    state.waker = Some(cx.waker().clone());
                }
                return Poll::Pending;
            }
        }
        match std::mem::replace(&mut this.state, FutureState::Done) {
            FutureState::Waiting { answer, shared } => {
                let outcomes = std::mem::take(&mut answer.lock().outcomes);
                // Unanswered items were dropped by a worker that failed or was stopped.
                Poll::Ready(Ok(outcomes
                    .into_iter()
                    .map(|o| o.unwrap_or_else(|| Err(shared.closed_error())))
                    .collect()))
            }
            FutureState::Answered(outcomes) => Poll::Ready(Ok(outcomes)),
            FutureState::Refused(error) => Poll::Ready(Err(error)),
            // Polled again after completion: keep answering an error rather than panic.
            FutureState::Done => Poll::Ready(Err(BatchError::Closed)),
        }
    }
}

impl<R, IE, E> Drop for ChunkFuture<R, IE, E> {
    fn drop(&mut self) {
        if let FutureState::Waiting { answer, .. } = &self.state {
            answer.abandoned.store(true, Ordering::Relaxed);
        }
    }
}

impl<R, IE, E> fmt::Debug for ChunkFuture<R, IE, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            FutureState::Waiting { .. } => "waiting",
            FutureState::Answered(_) => "answered",
            FutureState::Refused(_) => "refused",
            FutureState::Done => "done",
        };
        f.debug_struct("ChunkFuture")
            .field("state", &state)
            .finish()
    }
}

/// A `Service<Vec<T>>` feeding the same worker as the [`Batch`] it came from
/// ([`Batch::chunks`]): each call hands over up to `max_chunk` items in one message and answers
/// each item's own outcome. See the [module docs](self).
///
/// `poll_ready` reserves `max_chunk` queue slots; `call` keeps one per item it queues and frees
/// the rest. An item heavier than `max_weight` gets [`BatchError::TooHeavy`] in its place of
/// the answer and is not sent.
pub struct BatchChunks<S, T>
where
    S: Service<Vec<T>>,
    S::Response: BatchOutcomes,
{
    queue: mpsc::UnboundedSender<Message<T, Answer<S, T>>>,
    slots: Reservation,
    shared: Arc<Shared>,
    max_weight: usize,
    max_chunk: usize,
}

impl<S, T> Batch<S, T>
where
    S: Service<Vec<T>>,
    S::Response: BatchOutcomes,
{
    /// A service of chunks of up to `max_chunk` items (at most the queue's capacity), feeding
    /// this layer's worker: the same batches, limits, back-pressure and close as this `Batch`.
    pub fn chunks(&self, max_chunk: NonZeroUsize) -> BatchChunks<S, T> {
        BatchChunks {
            queue: self.queue().clone(),
            slots: Reservation::new(self.shared()),
            shared: Arc::clone(self.shared()),
            max_weight: self.max_weight(),
            max_chunk: max_chunk.get().min(self.shared().capacity),
        }
    }
}

impl<S, T> BatchChunks<S, T>
where
    S: Service<Vec<T>>,
    S::Response: BatchOutcomes,
{
    /// The most items one call takes.
    pub fn max_chunk(&self) -> usize {
        self.max_chunk
    }
}

type ChunkOutcome<S, T> = ItemResult<
    <<S as Service<Vec<T>>>::Response as BatchOutcomes>::Item,
    <<S as Service<Vec<T>>>::Response as BatchOutcomes>::ItemError,
    <S as Service<Vec<T>>>::Error,
>;

impl<S, T> Service<Vec<T>> for BatchChunks<S, T>
where
    S: Service<Vec<T>>,
    S::Response: BatchOutcomes,
    T: Weigh,
{
    type Response = Vec<ChunkOutcome<S, T>>;
    type Error = BatchError<<S::Response as BatchOutcomes>::ItemError, S::Error>;
    type Future = ChunkFuture<
        <S::Response as BatchOutcomes>::Item,
        <S::Response as BatchOutcomes>::ItemError,
        S::Error,
    >;

    /// Reserves `max_chunk` queue slots; `Pending` while the queue has not that many free.
    /// Fails with [`BatchError::WorkerFailed`] once the worker failed, [`BatchError::Closed`]
    /// once closed.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let wanted = u32::try_from(self.max_chunk).unwrap_or(u32::MAX);
        self.slots.poll_reserve(&self.shared, cx, wanted)
    }

    fn call(&mut self, items: Vec<T>) -> Self::Future {
        let Some(mut slot) = self.slots.held.take() else {
            return ChunkFuture::refused(BatchError::NotReady);
        };
        if items.len() > self.max_chunk {
            return ChunkFuture::refused(BatchError::ChunkTooLarge {
                items: items.len(),
                max: self.max_chunk,
            });
        }
        let mut outcomes = Vec::with_capacity(items.len());
        let mut waiting = Vec::with_capacity(items.len());
        for (index, item) in (0u32..).zip(items) {
            let weight = item.weight();
            if weight > self.max_weight {
                outcomes.push(Some(Err(BatchError::TooHeavy {
                    weight,
                    max: self.max_weight,
                })));
            } else {
                outcomes.push(None);
                waiting.push(Waiting {
                    index,
                    item,
                    weight,
                });
            }
        }
        if waiting.is_empty() {
            // Nothing to queue (no items, or all too heavy): the slots go back at once.
            return ChunkFuture {
                state: FutureState::Answered(outcomes.into_iter().flatten().collect()),
            };
        }
        // One slot per queued item; the rest of the reservation is freed with `slot`.
        let queued = slot.split(waiting.len()).unwrap_or(slot);
        let answer = Arc::new(ChunkAnswer {
            state: Mutex::new(ChunkState {
                pending: waiting.len(),
                outcomes,
                refs: 0,
                waker: None,
            }),
            abandoned: AtomicBool::new(false),
        });
        let message = Message::Many {
            items: waiting,
            chunk: ChunkRef::new(&answer),
            slot: queued,
        };
        match self.queue.send(message) {
            Ok(()) => ChunkFuture {
                state: FutureState::Waiting {
                    answer,
                    shared: Arc::clone(&self.shared),
                },
            },
            Err(_) => ChunkFuture::refused(self.shared.closed_error()),
        }
    }
}

impl<S, T> Clone for BatchChunks<S, T>
where
    S: Service<Vec<T>>,
    S::Response: BatchOutcomes,
{
    fn clone(&self) -> Self {
        BatchChunks {
            queue: self.queue.clone(),
            slots: self.slots.clone(),
            shared: Arc::clone(&self.shared),
            max_weight: self.max_weight,
            max_chunk: self.max_chunk,
        }
    }
}

impl<S, T> fmt::Debug for BatchChunks<S, T>
where
    S: Service<Vec<T>>,
    S::Response: BatchOutcomes,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchChunks")
            .field("max_chunk", &self.max_chunk)
            .field("max_weight", &self.max_weight)
            .field("holds_slots", &self.slots.held.is_some())
            .field("shared", &self.shared)
            .finish()
    }
}
