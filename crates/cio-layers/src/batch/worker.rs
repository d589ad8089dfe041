//! The background task: takes items off the queue, forms batches, drives them through the inner
//! service and sends each caller its own item's outcome.
//!
//! It is one hand-written future rather than an `async` loop so that, while it waits for the
//! inner service to become ready, it keeps driving the batches already in flight (a concurrency
//! limit inside only frees a permit when one of them finishes) and keeps filling the open batch.

use std::any::Any;
use std::fmt::Display;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use pin_project_lite::pin_project;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{DropGuard, WaitForCancellationFutureOwned};
use tower::Service;

use super::chunk::ChunkRef;
use super::future::ItemResult;
use super::handle::Shared;
use super::open_batch::{OpenBatch, Reply};
use super::{BatchConfig, BatchError, BatchOutcomes};

/// The answer one caller of `Batch<S, T>` receives.
pub(crate) type Answer<S, T> = ItemResult<
    <<S as Service<Vec<T>>>::Response as BatchOutcomes>::Item,
    <<S as Service<Vec<T>>>::Response as BatchOutcomes>::ItemError,
    <S as Service<Vec<T>>>::Error,
>;

/// Items on their way from a caller to the worker.
pub(crate) enum Message<T, A> {
    /// One item ([`Batch`](super::Batch)).
    One {
        item: T,
        /// Weighed by the caller, once.
        weight: usize,
        answer: oneshot::Sender<A>,
        /// The queue slot the caller reserved in `poll_ready`; held until the item is handed
        /// to the inner service.
        slot: OwnedSemaphorePermit,
    },
    /// A chunk's items ([`BatchChunks`](super::BatchChunks)), with one slot each.
    Many {
        items: Vec<Waiting<T>>,
        chunk: ChunkRef<A>,
        slot: OwnedSemaphorePermit,
    },
}

/// An item of a chunk, weighed by the caller, with its place in the chunk.
pub(crate) struct Waiting<T> {
    pub(crate) index: u32,
    pub(crate) item: T,
    pub(crate) weight: usize,
}

/// Items accepted but not yet in a batch: the rest of a message whose next item did not fit in
/// the open batch (it starts the next one).
struct Held<T, A> {
    next: Option<Waiting<T>>,
    rest: std::vec::IntoIter<Waiting<T>>,
    to: HeldReply<A>,
}

enum HeldReply<A> {
    One(Option<oneshot::Sender<A>>),
    Chunk(ChunkRef<A>),
}

impl<T, A> Held<T, A> {
    /// Answers every item still held with an outcome made by `make`.
    fn answer_all(self, make: impl FnMut() -> A) {
        let mut make = make;
        match self.to {
            HeldReply::One(answer) => {
                if let Some(answer) = answer {
                    let _ = answer.send(make());
                }
            }
            HeldReply::Chunk(chunk) => {
                let indices = self.next.into_iter().chain(self.rest).map(|w| w.index);
                chunk.fill_with(indices, make);
            }
        }
    }
}

pin_project! {
    /// A batch handed to the inner service, with the callers waiting for it. Catches a panic in
    /// the inner future so that the worker, not the runtime, decides what callers see.
    struct InFlight<F, A> {
        #[pin]
        response: F,
        answers: Vec<Reply<A>>,
        items: usize,
    }
}

impl<F: Future, A> Future for InFlight<F, A> {
    type Output = (std::thread::Result<F::Output>, Vec<Reply<A>>, usize);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = this.response;
        let outcome = match catch_unwind(AssertUnwindSafe(|| response.as_mut().poll(cx))) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(output)) => Ok(output),
            Err(panic) => Err(panic),
        };
        Poll::Ready((outcome, std::mem::take(this.answers), *this.items))
    }
}

/// The worker of one `Batch` layer instance. Spawned by `Batch::new`; runs until its queue is
/// closed (every clone dropped, a close asked for, or a failure) and every accepted item was
/// answered.
pub(crate) struct Worker<S, T>
where
    S: Service<Vec<T>>,
    S::Response: BatchOutcomes,
{
    queue: mpsc::UnboundedReceiver<Message<T, Answer<S, T>>>,
    /// `None` once the worker failed: a panicked or failed service is not called again.
    inner: Option<S>,
    config: BatchConfig,
    open: OpenBatch<T, Answer<S, T>>,
    /// Items that would have pushed the open batch over a limit: they start the next one.
    held: Option<Held<T, Answer<S, T>>>,
    /// Fires `max_linger` after the open batch's first item; armed only while that batch has
    /// items.
    linger: Pin<Box<Sleep>>,
    in_flight: FuturesUnordered<InFlight<S::Future, Answer<S, T>>>,
    close_requested: Pin<Box<WaitForCancellationFutureOwned>>,
    closing: bool,
    /// The queue is closed and empty: nothing more can arrive.
    queue_drained: bool,
    /// Every accepted item was answered; set right before the worker returns.
    done: bool,
    shared: Arc<Shared>,
    /// Cancels `Shared::finished` when dropped. Declared last so that it is dropped last, after
    /// every unanswered caller's sender is gone.
    _finished: DropGuard,
}

// The worker never pins its fields (the inner service is only used through `&mut`, in-flight
// futures are boxed inside `FuturesUnordered`), so it is `Unpin` whatever `S` and `T` are.
impl<S, T> Unpin for Worker<S, T>
where
    S: Service<Vec<T>>,
    S::Response: BatchOutcomes,
{
}

impl<S, T> Worker<S, T>
where
    S: Service<Vec<T>>,
    S::Response: BatchOutcomes,
    S::Error: Display,
{
    pub(crate) fn new(
        inner: S,
        queue: mpsc::UnboundedReceiver<Message<T, Answer<S, T>>>,
        config: BatchConfig,
        shared: Arc<Shared>,
    ) -> Self {
        Worker {
            queue,
            inner: Some(inner),
            config,
            open: OpenBatch::new(),
            held: None,
            linger: Box::pin(tokio::time::sleep(Duration::ZERO)),
            in_flight: FuturesUnordered::new(),
            close_requested: Box::pin(shared.close.clone().cancelled_owned()),
            closing: false,
            queue_drained: false,
            done: false,
            _finished: shared.finished.clone().drop_guard(),
            shared,
        }
    }

    /// Answers the batches that finished. Returns whether any did.
    fn answer_finished_batches(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        while let Poll::Ready(Some((outcome, answers, items))) = self.in_flight.poll_next_unpin(cx)
        {
            progress = true;
            self.answer_batch(outcome, answers, items);
        }
        progress
    }

    fn answer_batch(
        &mut self,
        outcome: std::thread::Result<Result<S::Response, S::Error>>,
        answers: Vec<Reply<Answer<S, T>>>,
        expected: usize,
    ) {
        match outcome {
            Ok(Ok(response)) => {
                match catch_unwind(AssertUnwindSafe(|| response.into_outcomes(expected))) {
                    Ok(outcomes) if outcomes.len() == expected => {
                        let mut outcomes =
                            outcomes.into_iter().map(|o| o.map_err(BatchError::Item));
                        for answer in answers {
                            answer.answer(&mut outcomes);
                        }
                    }
                    Ok(outcomes) => {
                        let got = outcomes.len();
                        tracing::warn!(
                            expected,
                            got,
                            "batch answered with the wrong number of outcomes"
                        );
                        for answer in answers {
                            answer
                                .answer_all(|| Err(BatchError::OutcomeMismatch { expected, got }));
                        }
                    }
                    Err(panic) => {
                        let reason = format!(
                            "mapping the inner service's response to outcomes panicked: {}",
                            panic_message(&*panic)
                        );
                        self.fail_all(reason, answers);
                    }
                }
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, items = expected, "batch failed");
                let error = Arc::new(error);
                for answer in answers {
                    answer.answer_all(|| Err(BatchError::Batch(Arc::clone(&error))));
                }
            }
            Err(panic) => {
                let reason = format!(
                    "the inner service's response future panicked: {}",
                    panic_message(&*panic)
                );
                self.fail_all(reason, answers);
            }
        }
    }

    /// Starts the close once it is asked for. Returns whether it started now.
    fn watch_close(&mut self, cx: &mut Context<'_>) -> bool {
        if self.closing || self.close_requested.as_mut().poll(cx).is_pending() {
            return false;
        }
        tracing::debug!("batch layer closing: flushing what is queued");
        self.stop_accepting();
        true
    }

    /// No new item can enter: the queue takes no more sends (those already in it are still
    /// drained), and callers waiting for a slot are woken to find it closed.
    fn stop_accepting(&mut self) {
        self.closing = true;
        self.queue.close();
        self.shared.slots.close();
    }

    /// Takes items off the queue while the open batch can take them. Returns whether it took any
    /// or found the queue drained.
    fn take_items(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        loop {
            if !self.place_held() {
                break;
            }
            if self.queue_drained || self.open.is_full(&self.config) {
                break;
            }
            match self.queue.poll_recv(cx) {
                Poll::Ready(Some(message)) => {
                    progress = true;
                    self.accept(message);
                }
                Poll::Ready(None) => {
                    progress = true;
                    self.queue_drained = true;
                }
                Poll::Pending => break,
            }
        }
        progress
    }

    /// Takes a message's items in: they are held, and [`place_held`](Self::place_held) moves
    /// them into the open batch.
    fn accept(&mut self, message: Message<T, Answer<S, T>>) {
        let (held, slot) = match message {
            Message::One {
                item,
                weight,
                answer,
                slot,
            } => {
                if let Some(error) = self.shared.failure_error() {
                    let _ = answer.send(Err(error));
                    return;
                }
                if answer.is_closed() {
                    // The caller dropped its response future: nobody waits for this item.
                    return;
                }
                let next = Waiting {
                    index: 0,
                    item,
                    weight,
                };
                let held = Held {
                    next: Some(next),
                    rest: Vec::new().into_iter(),
                    to: HeldReply::One(Some(answer)),
                };
                (held, slot)
            }
            Message::Many { items, chunk, slot } => {
                if self.shared.failure_error::<(), ()>().is_some() {
                    let shared = &self.shared;
                    let indices = items.iter().map(|w| w.index);
                    chunk.fill_with(indices, || Err(shared.closed_error()));
                    return;
                }
                if chunk.is_abandoned() {
                    return;
                }
                let held = Held {
                    next: None,
                    rest: items.into_iter(),
                    to: HeldReply::Chunk(chunk),
                };
                (held, slot)
            }
        };
        // The slots stay taken until the items are handed to the inner service (`flush`).
        slot.forget();
        self.held = Some(held);
    }

    /// Moves held items into the open batch while they fit. Returns whether none is left held.
    fn place_held(&mut self) -> bool {
        let Some(held) = self.held.as_mut() else {
            return true;
        };
        loop {
            let Some(waiting) = held.next.take().or_else(|| held.rest.next()) else {
                self.held = None;
                return true;
            };
            if !self.open.fits(waiting.weight, &self.config) {
                held.next = Some(waiting);
                return false;
            }
            if self.open.is_empty() {
                let now = Instant::now();
                let deadline = now
                    .checked_add(self.config.max_linger)
                    .unwrap_or_else(|| now + Duration::from_secs(60 * 60 * 24 * 365 * 30));
                self.linger.as_mut().reset(deadline);
            }
            match &mut held.to {
                HeldReply::One(answer) => {
                    if let Some(answer) = answer.take() {
                        self.open.push_one(waiting.item, waiting.weight, answer);
                    }
                }
                HeldReply::Chunk(chunk) => {
                    self.open
                        .push_part(waiting.item, waiting.weight, chunk, waiting.index);
                }
            }
        }
    }

    /// Hands the open batch to the inner service if it is due and the inner service is ready.
    /// Returns whether something changed.
    fn flush_if_due(&mut self, cx: &mut Context<'_>) -> bool {
        if self.open.is_empty() {
            return false;
        }
        let due = self.open.is_full(&self.config)
            || self.held.is_some()
            || self.queue_drained
            || self.linger.as_mut().poll(cx).is_ready();
        if !due || self.in_flight.len() >= self.config.max_concurrent_batches.get() {
            return false;
        }
        let Some(inner) = self.inner.as_mut() else {
            // Unreachable: a failure answers the open batch and no item joins one afterwards.
            let (_, answers) = self.open.take();
            self.fail_all("the inner service is gone".to_owned(), answers);
            return true;
        };
        match catch_unwind(AssertUnwindSafe(|| inner.poll_ready(cx))) {
            Ok(Poll::Pending) => false,
            Ok(Poll::Ready(Ok(()))) => {
                self.flush();
                true
            }
            Ok(Poll::Ready(Err(error))) => {
                self.fail(format!("the inner service failed in poll_ready: {error}"));
                true
            }
            Err(panic) => {
                let reason = format!(
                    "the inner service panicked in poll_ready: {}",
                    panic_message(&*panic)
                );
                self.fail(reason);
                true
            }
        }
    }

    /// Calls the (ready) inner service with the open batch, less the items whose callers went
    /// away while it filled. The held item, if any, starts the next batch.
    fn flush(&mut self) {
        let (items, answers) = self.open.take();
        // Every item leaves the layer now, sent or dropped: its queue slot is free again.
        self.shared.slots.add_permits(items.len());
        // What was held starts the next batch.
        self.place_held();
        let (items, answers) = without_abandoned(items, answers);
        if items.is_empty() {
            // Nobody waits: send nothing (the inner service keeps its readiness for the next).
            return;
        }
        let Some(inner) = self.inner.as_mut() else {
            self.fail_all("the inner service is gone".to_owned(), answers);
            return;
        };
        tracing::trace!(
            items = items.len(),
            in_flight = self.in_flight.len(),
            "flushing a batch"
        );
        let count = items.len();
        match catch_unwind(AssertUnwindSafe(|| inner.call(items))) {
            Ok(response) => self.in_flight.push(InFlight {
                response,
                answers,
                items: count,
            }),
            Err(panic) => {
                let reason = format!(
                    "the inner service panicked in call: {}",
                    panic_message(&*panic)
                );
                self.fail_all(reason, answers);
            }
        }
    }

    /// The layer fails for good: records why (before closing anything, so that whoever finds the
    /// queue closed can tell), drops the inner service, stops accepting and answers every item
    /// not yet handed to the inner service. Batches in flight still finish. Returns the recorded
    /// reason.
    fn fail(&mut self, reason: String) -> String {
        let reason = self.shared.record_failure(reason).to_owned();
        tracing::error!(%reason, "batch worker failed; every pending and later item is refused");
        self.inner = None;
        self.stop_accepting();
        let (_, answers) = self.open.take();
        for answer in answers {
            answer.answer_all(|| Err(BatchError::WorkerFailed(reason.clone())));
        }
        if let Some(held) = self.held.take() {
            held.answer_all(|| Err(BatchError::WorkerFailed(reason.clone())));
        }
        reason
    }

    /// [`fail`](Self::fail), and answer `answers` (a batch's callers) with the failure too.
    fn fail_all(&mut self, reason: String, answers: Vec<Reply<Answer<S, T>>>) {
        let reason = self.fail(reason);
        for answer in answers {
            answer.answer_all(|| Err(BatchError::WorkerFailed(reason.clone())));
        }
    }

    fn is_done(&self) -> bool {
        self.queue_drained
            && self.open.is_empty()
            && self.held.is_none()
            && self.in_flight.is_empty()
    }
}

impl<S, T> Future for Worker<S, T>
where
    S: Service<Vec<T>>,
    S::Response: BatchOutcomes,
    S::Error: Display,
{
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        loop {
            // Each step registers for a wake-up on everything it waits for, and a step that
            // changed something may have unblocked another: go round until nothing moves.
            let mut progress = this.answer_finished_batches(cx);
            progress |= this.watch_close(cx);
            progress |= this.take_items(cx);
            progress |= this.flush_if_due(cx);
            if this.is_done() {
                this.done = true;
                tracing::debug!("batch worker finished: every item answered");
                return Poll::Ready(());
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }
}

impl<S, T> Drop for Worker<S, T>
where
    S: Service<Vec<T>>,
    S::Response: BatchOutcomes,
{
    fn drop(&mut self) {
        if !self.done {
            // The task panicked or was cancelled (its runtime shut down) with items unanswered.
            // Record why before the fields go: the callers whose senders are dropped next, and
            // the clones woken by the closed slots, read it.
            let reason = if std::thread::panicking() {
                "the batch worker panicked"
            } else {
                "the batch worker was stopped before it finished (its runtime shut down?)"
            };
            self.shared.record_failure(reason.to_owned());
        }
        self.shared.slots.close();
    }
}

/// Drops the items whose caller dropped its response future: nobody would see their outcome.
fn without_abandoned<T, A>(items: Vec<T>, answers: Vec<Reply<A>>) -> (Vec<T>, Vec<Reply<A>>) {
    if !answers.iter().any(Reply::is_abandoned) {
        return (items, answers);
    }
    let mut kept = (
        Vec::with_capacity(items.len()),
        Vec::with_capacity(answers.len()),
    );
    let mut items = items.into_iter();
    for answer in answers {
        let run = items.by_ref().take(answer.len());
        if answer.is_abandoned() {
            run.for_each(drop);
        } else {
            kept.0.extend(run);
            kept.1.push(answer);
        }
    }
    kept
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(message) = panic.downcast_ref::<&str>() {
        message
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message
    } else {
        "(no message)"
    }
}
