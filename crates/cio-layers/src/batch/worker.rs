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

use super::future::ItemResult;
use super::handle::Shared;
use super::open_batch::{Accepted, OpenBatch};
use super::{BatchConfig, BatchError, BatchOutcomes};

/// The answer one caller of `Batch<S, T>` receives.
pub(crate) type Answer<S, T> = ItemResult<
    <<S as Service<Vec<T>>>::Response as BatchOutcomes>::Item,
    <<S as Service<Vec<T>>>::Response as BatchOutcomes>::ItemError,
    <S as Service<Vec<T>>>::Error,
>;

/// One item on its way from a caller to the worker.
pub(crate) struct Message<T, A> {
    pub(crate) item: T,
    /// Weighed by the caller, once.
    pub(crate) weight: usize,
    pub(crate) answer: oneshot::Sender<A>,
    /// The queue slot the caller reserved in `poll_ready`; held until the item is handed to the
    /// inner service.
    pub(crate) slot: OwnedSemaphorePermit,
}

pin_project! {
    /// A batch handed to the inner service, with the callers waiting for it. Catches a panic in
    /// the inner future so that the worker, not the runtime, decides what callers see.
    struct InFlight<F, A> {
        #[pin]
        response: F,
        answers: Vec<oneshot::Sender<A>>,
    }
}

impl<F: Future, A> Future for InFlight<F, A> {
    type Output = (std::thread::Result<F::Output>, Vec<oneshot::Sender<A>>);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = this.response;
        let outcome = match catch_unwind(AssertUnwindSafe(|| response.as_mut().poll(cx))) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(output)) => Ok(output),
            Err(panic) => Err(panic),
        };
        Poll::Ready((outcome, std::mem::take(this.answers)))
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
    /// An item that would have pushed the open batch over `max_weight`: it starts the next one.
    held: Option<Accepted<T, Answer<S, T>>>,
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
        while let Poll::Ready(Some((outcome, answers))) = self.in_flight.poll_next_unpin(cx) {
            progress = true;
            self.answer_batch(outcome, answers);
        }
        progress
    }

    fn answer_batch(
        &mut self,
        outcome: std::thread::Result<Result<S::Response, S::Error>>,
        answers: Vec<oneshot::Sender<Answer<S, T>>>,
    ) {
        let expected = answers.len();
        match outcome {
            Ok(Ok(response)) => {
                match catch_unwind(AssertUnwindSafe(|| response.into_outcomes(expected))) {
                    Ok(outcomes) if outcomes.len() == expected => {
                        for (answer, outcome) in answers.into_iter().zip(outcomes) {
                            let _ = answer.send(outcome.map_err(BatchError::Item));
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
                            let _ = answer.send(Err(BatchError::OutcomeMismatch { expected, got }));
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
                    let _ = answer.send(Err(BatchError::Batch(Arc::clone(&error))));
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
        while !self.queue_drained && self.held.is_none() && !self.open.is_full(&self.config) {
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

    fn accept(&mut self, message: Message<T, Answer<S, T>>) {
        let Message {
            item,
            weight,
            answer,
            slot,
        } = message;
        if let Some(error) = self.shared.failure_error() {
            let _ = answer.send(Err(error));
            return;
        }
        if answer.is_closed() {
            // The caller dropped its response future: nobody waits for this item, send nothing.
            return;
        }
        // The slot stays taken until the item is handed to the inner service (`flush`).
        slot.forget();
        let accepted = Accepted {
            item,
            weight,
            answer,
        };
        if self.open.fits(weight, &self.config) {
            self.join_open(accepted);
        } else {
            self.held = Some(accepted);
        }
    }

    fn join_open(&mut self, accepted: Accepted<T, Answer<S, T>>) {
        if self.open.is_empty() {
            let now = Instant::now();
            let deadline = now
                .checked_add(self.config.max_linger)
                .unwrap_or_else(|| now + Duration::from_secs(60 * 60 * 24 * 365 * 30));
            self.linger.as_mut().reset(deadline);
        }
        self.open.push(accepted);
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
        self.shared.slots.add_permits(answers.len());
        if let Some(held) = self.held.take() {
            self.join_open(held);
        }
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
        match catch_unwind(AssertUnwindSafe(|| inner.call(items))) {
            Ok(response) => self.in_flight.push(InFlight { response, answers }),
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
        let held = self.held.take().map(|held| held.answer);
        for answer in answers.into_iter().chain(held) {
            let _ = answer.send(Err(BatchError::WorkerFailed(reason.clone())));
        }
        reason
    }

    /// [`fail`](Self::fail), and answer `answers` (a batch's callers) with the failure too.
    fn fail_all(&mut self, reason: String, answers: Vec<oneshot::Sender<Answer<S, T>>>) {
        let reason = self.fail(reason);
        for answer in answers {
            let _ = answer.send(Err(BatchError::WorkerFailed(reason.clone())));
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
fn without_abandoned<T, A>(
    items: Vec<T>,
    answers: Vec<oneshot::Sender<A>>,
) -> (Vec<T>, Vec<oneshot::Sender<A>>) {
    if !answers.iter().any(oneshot::Sender::is_closed) {
        return (items, answers);
    }
    items
        .into_iter()
        .zip(answers)
        .filter(|(_, answer)| !answer.is_closed())
        .unzip()
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
