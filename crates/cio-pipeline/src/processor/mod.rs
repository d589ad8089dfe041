//! [`Processor`]: drives a [`Source`] into any `tower::Service`, with bounded in-flight work,
//! dead letters, acknowledgements and graceful shutdown.
//!
//! For each message: decode it ([`Decode`]); call the service; on success ack; on failure (a
//! permanent error, or whatever the retry layer inside the service gave up on) write a
//! [`DeadLetter`] and then ack, so one bad item never stalls the
//! pipeline. A payload that does not decode is dead-lettered with its position at once.
//!
//! # In flight
//!
//! At most [`max_in_flight`](Processor::max_in_flight) messages are between "read" and
//! "settled"; the processor asks the source for the next message only when one settles, so
//! back-pressure reaches the source (and through a channel, the producers). The service's own
//! back-pressure (`poll_ready`, e.g. a rate or concurrency limit inside) holds the loop too.
//! Reading runs in a task of its own and decoding in chunks of 64 on spawned tasks, ahead of
//! the loop that hands items to the service (in the order read), so they overlap and use every
//! core: decoding was most of the processor's CPU, and one loop doing everything was the
//! pipeline's bottleneck.
//!
//! The loop hands items over through a [`Handoff`]: one call per item with
//! [`Processor::new`] (any `Service<T>`), or one call per chunk of up to `max_chunk` items with
//! [`Processor::chunked`] (a `Service<Vec<T>>` that answers each item, such as the batch
//! layer's [`BatchChunks`](cio_layers::batch::BatchChunks)); it gathers as many decoded items
//! as are ready, up to that size, and never waits for more to fill a chunk. Each call's work
//! after the call (await the answers, ack or dead-letter) runs in a task of a `JoinSet` the
//! processor owns, up to 64 messages per task: a group goes out when it is full or whenever the
//! loop would wait, and each of its messages settles as soon as its own answer comes. A hook set
//! with [`when_input_ends`](Processor::when_input_ends) runs once the last item of a finite
//! input was handed over (the CLI closes its batch layer there, so the last batch goes at once
//! instead of after its linger).
//!
//! With a batch layer in the service, items wait in the open batch while they count as in
//! flight, so `max_in_flight` caps the batch size: give it room for a few full batches (e.g.
//! 1000 for batches of 100 and a concurrency of 8), or batches only ever flush on their age.
//!
//! # Shutdown
//!
//! When the token passed to [`run`](Processor::run) is cancelled:
//! 1. reading stops at once (a message being read stays with the source, unacknowledged);
//!    messages already read (the one waiting for the service to be ready and those read ahead
//!    of it, at most 1024) are still handed to the service while it takes them within
//!    [`drain_deadline`](Processor::drain_deadline); those it has not taken by then are nacked;
//! 2. work in flight gets the same deadline to finish; what has not finished by then is
//!    abandoned and nacked (a batch layer inside the service flushes on its own age limit
//!    meanwhile);
//! 3. the service is dropped, the source is closed (the file source writes its last checkpoint)
//!    and the dead-letter sink is closed;
//! 4. the [`Report`] says how many messages were delivered, dead-lettered and left unacknowledged.
//!
//! At the end of the input the processor waits for all work in flight without a deadline (the
//! service's own timeouts bound it), then closes the same way. A source error that retrying
//! cannot fix, a service whose `poll_ready` fails, or a dead letter that cannot be kept stops
//! reading the same way too, and the report's [`StopReason`] says which.

mod handoff;
mod read;
mod report;
mod settle;

use std::fmt::Display;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, SystemTime};

use futures_util::future::poll_fn;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::dead_letter::{DeadLetter, DeadLetterSink, Stage};
use crate::decode::Decode;
use crate::source::Source;

pub use handoff::{Answers, Chunks, Handoff, PerItem};
pub use report::{Progress, Report, StopReason};
use settle::{Fatal, Group, Parts, Settled, Shared};

/// Messages read and decoded ahead of the loop that hands them to the service, at most.
const READ_AHEAD: usize = 1024;

/// Messages settled by one task at most. A task per message cost a fifth of `cio pipe`'s CPU
/// (spawning, the task list, join handles, a copy of each message's future); a group is handed
/// over whenever the loop would wait, so no message waits for its group to fill.
const GROUP: usize = 64;

/// Hands the group in hand to a task of its own, which settles each message as its answer
/// comes.
struct Groups<F, A, L, J> {
    tasks: JoinSet<Tally>,
    /// The group being filled.
    filling: Group<F, A>,
    /// Messages handed to group tasks so far: those their tallies do not account for were lost
    /// with an aborted task, and stay unacknowledged.
    handed: u64,
    /// What the finished group tasks settled.
    settled: Tally,
    shared: Arc<Shared<L, J>>,
    progress: Arc<Progress>,
}

impl<F, E, A, L, J> Groups<F, A, L, J>
where
    F: std::future::Future<Output = Answers<E>> + Send + 'static,
    E: Display + Send + 'static,
    A: crate::source::Acknowledge,
    L: DeadLetterSink,
    J: JudgeError<E>,
{
    /// A payload that did not decode: its dead letter is kept by the group.
    fn push_letter(&mut self, letter: DeadLetter, ack: A, permit: OwnedSemaphorePermit) {
        self.filling.letters.push((letter, ack, permit));
        self.spawn_if_full();
    }

    /// One call's answer, and the messages it covers (taken out of `parts`).
    fn push_answer(&mut self, answer: F, parts: &mut Vec<Parts<A>>) {
        let start = self.filling.parts.len();
        self.filling.parts.append(parts);
        let range = start..self.filling.parts.len();
        self.filling.answers.push((answer, range));
        self.spawn_if_full();
    }

    fn spawn_if_full(&mut self) {
        if self.filling.len() >= GROUP {
            self.spawn();
        }
    }

    /// Hands the group in hand to a task of its own.
    fn spawn(&mut self) {
        if self.filling.is_empty() {
            return;
        }
        let work = std::mem::replace(&mut self.filling, Group::with_capacity(GROUP));
        self.handed += work.len() as u64;
        let (shared, progress) = (self.shared.clone(), self.progress.clone());
        self.tasks.spawn(settle::group(work, shared, progress));
    }

    fn count(&mut self, done: Result<Tally, tokio::task::JoinError>) {
        match done {
            Ok(tally) => self.settled.merge(&tally),
            Err(e) if e.is_panic() => {
                tracing::error!(error = %e, "a settling task panicked; its messages stay unacknowledged");
            }
            Err(_) => {} // aborted at the end of the grace period
        }
    }

    fn reap(&mut self) {
        while let Some(done) = self.tasks.try_join_next() {
            self.count(done);
        }
    }

    /// What the group tasks settled, with the messages lost with a task as unacknowledged.
    fn into_tally(self) -> Tally {
        let mut tally = self.settled;
        let lost = self.handed - tally.settled();
        tally.unacknowledged += lost;
        for _ in 0..lost {
            self.progress
                .settled(&Settled::Unacknowledged { ack_failed: false });
        }
        tally
    }
}

/// Says whether a service error was retryable, for the dead letter's `retryable` field.
/// [`Unjudged`] (the default) leaves it out; [`Processor::classify_errors`] plugs in a
/// [`cio_layers::Classifier`].
pub trait JudgeError<E>: Send + Sync + 'static {
    /// `Some(retryable)`, or `None` when unknown.
    fn retryable(&self, error: &E) -> Option<bool>;
}

/// No classifier: dead letters do not say whether the error was retryable.
#[derive(Clone, Copy, Debug, Default)]
pub struct Unjudged;

impl<E> JudgeError<E> for Unjudged {
    fn retryable(&self, _: &E) -> Option<bool> {
        None
    }
}

/// A [`cio_layers::Classifier`] judging service errors.
#[derive(Clone, Debug)]
pub struct Judged<C>(pub C);

impl<E, C: cio_layers::Classifier<E>> JudgeError<E> for Judged<C> {
    fn retryable(&self, error: &E) -> Option<bool> {
        Some(self.0.classify(error).retryable)
    }
}

/// Drives a source into a service. See the [module docs](self).
///
/// ```
/// use std::convert::Infallible;
/// use cio_pipeline::{dead_letter, source::MemorySource, DecodeError, Processor, source::Position};
/// use tokio_util::sync::CancellationToken;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let source = MemorySource::new(["1", "2", "x", "4"]);
/// let acks = source.ack_log();
/// let decode = |b: &[u8], _: &Position| {
///     std::str::from_utf8(b).ok().and_then(|s| s.parse::<u32>().ok()).ok_or_else(|| DecodeError::new("not a number"))
/// };
/// let service = tower::service_fn(|n: u32| async move { Ok::<_, Infallible>(n * 2) });
/// let letters = dead_letter::InMemory::new();
///
/// let report = Processor::new(source, decode, service, letters.clone())
///     .max_in_flight(8)
///     .run(CancellationToken::new())
///     .await;
/// assert_eq!((report.read, report.delivered, report.dead_lettered), (4, 3, 1));
/// assert!(report.is_complete() && report.is_balanced());
/// assert_eq!(letters.letters()[0].reason, "not a number");
/// assert_eq!(acks.acked().len(), 4); // the bad one too: it is kept in the dead letters
/// # }
/// ```
pub struct Processor<S, D, Svc, L, J = Unjudged> {
    source: S,
    decoder: D,
    service: Svc,
    dead_letters: L,
    judge: J,
    max_in_flight: usize,
    drain_deadline: Duration,
    progress: Arc<Progress>,
    on_input_end: Option<InputEnd>,
}

/// What to do once the input has ended and every item was handed over.
type InputEnd = Box<dyn FnOnce() + Send>;

impl<S, D, Svc, L> Processor<S, D, PerItem<Svc>, L, Unjudged> {
    /// A processor that calls `service` (any `tower::Service` of the decoded items) once per
    /// item, with 256 messages in flight at most and a 30 s drain deadline.
    pub fn new(source: S, decoder: D, service: Svc, dead_letters: L) -> Self {
        Processor::with_handoff(source, decoder, PerItem(service), dead_letters)
    }
}

impl<S, D, Svc, L> Processor<S, D, Chunks<Svc>, L, Unjudged> {
    /// A processor that calls `service` with chunks of up to `max_chunk` decoded items at once,
    /// read one after another (a `Service<Vec<Item>>` that answers each item's outcome, in
    /// order, such as [`BatchChunks`](cio_layers::batch::BatchChunks)); otherwise as
    /// [`new`](Processor::new).
    pub fn chunked(source: S, decoder: D, service: Svc, max_chunk: usize, dead_letters: L) -> Self {
        Processor::with_handoff(
            source,
            decoder,
            Chunks::new(service, max_chunk),
            dead_letters,
        )
    }
}

impl<S, D, H, L> Processor<S, D, H, L, Unjudged> {
    /// A processor that hands items over through `handoff` ([`PerItem`] or [`Chunks`]).
    pub fn with_handoff(source: S, decoder: D, handoff: H, dead_letters: L) -> Self {
        Processor {
            source,
            decoder,
            service: handoff,
            dead_letters,
            judge: Unjudged,
            max_in_flight: 256,
            drain_deadline: Duration::from_secs(30),
            progress: Arc::default(),
            on_input_end: None,
        }
    }
}

impl<S, D, Svc, L, J> Processor<S, D, Svc, L, J> {
    /// At most `n` messages between read and settled (at least 1).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// How long work in flight may take to finish after shutdown is requested; what is left is
    /// abandoned and nacked.
    pub fn drain_deadline(mut self, deadline: Duration) -> Self {
        self.drain_deadline = deadline;
        self
    }

    /// Live counts of the run, readable while it runs (for a progress bar or `/metrics`).
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// Publishes the live counts into `progress` (shared with whoever displays them).
    pub fn with_progress(mut self, progress: Arc<Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// Calls `f` once the input has ended and every item read was handed to the service, before
    /// waiting for the answers: for example to close a batch layer inside the service, so that
    /// its last batch goes out at once instead of waiting for its linger for items that cannot
    /// come. Not called when the run stops for another reason.
    pub fn when_input_ends(mut self, f: impl FnOnce() + Send + 'static) -> Self {
        self.on_input_end = Some(Box::new(f));
        self
    }

    /// Records in each delivery dead letter whether `classifier` calls its error retryable
    /// (retries ran out) or permanent.
    pub fn classify_errors<C>(self, classifier: C) -> Processor<S, D, Svc, L, Judged<C>> {
        Processor {
            source: self.source,
            decoder: self.decoder,
            service: self.service,
            dead_letters: self.dead_letters,
            judge: Judged(classifier),
            max_in_flight: self.max_in_flight,
            drain_deadline: self.drain_deadline,
            progress: self.progress,
            on_input_end: self.on_input_end,
        }
    }
}

#[derive(Default)]
struct Tally {
    read: u64,
    delivered: u64,
    decode_failures: u64,
    delivery_failures: u64,
    unacknowledged: u64,
    ack_errors: u64,
    source_errors: u64,
}

impl Tally {
    /// Messages this tally has settled.
    fn settled(&self) -> u64 {
        self.delivered + self.decode_failures + self.delivery_failures + self.unacknowledged
    }

    fn merge(&mut self, other: &Tally) {
        self.delivered += other.delivered;
        self.decode_failures += other.decode_failures;
        self.delivery_failures += other.delivery_failures;
        self.unacknowledged += other.unacknowledged;
        self.ack_errors += other.ack_errors;
    }

    fn add(&mut self, settled: Settled) {
        let ack_failed = match settled {
            Settled::Delivered { ack_failed } => {
                self.delivered += 1;
                ack_failed
            }
            Settled::DeadLettered { stage, ack_failed } => {
                match stage {
                    Stage::Decode => self.decode_failures += 1,
                    Stage::Deliver => self.delivery_failures += 1,
                }
                ack_failed
            }
            Settled::Unacknowledged { ack_failed } => {
                self.unacknowledged += 1;
                ack_failed
            }
        };
        self.ack_errors += u64::from(ack_failed);
    }
}

async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl<S, D, Svc, L, J> Processor<S, D, Svc, L, J>
where
    S: Source + 'static,
    D: Decode,
    Svc: Handoff<D::Item>,
    L: DeadLetterSink,
    J: JudgeError<Svc::Error>,
{
    /// Runs until the source ends or `shutdown` is cancelled, then drains, closes, and reports.
    pub async fn run(self, shutdown: CancellationToken) -> Report {
        let Processor {
            source,
            decoder,
            mut service,
            dead_letters,
            judge,
            max_in_flight,
            drain_deadline,
            progress,
            on_input_end,
        } = self;
        let started = Instant::now();
        let stop = shutdown.child_token();
        let shared = Arc::new(Shared {
            dead_letters,
            judge,
            abandon: CancellationToken::new(),
            fatal: Fatal::new(stop.clone()),
        });
        let permits = Arc::new(Semaphore::new(max_in_flight));
        // The reader stops on shutdown, or when this loop stops first (a failed service).
        let halt_reading = stop.child_token();
        let (mut reads, reader) = read::spawn(
            source,
            decoder,
            permits.clone(),
            READ_AHEAD.min(max_in_flight),
            halt_reading.clone(),
            progress.clone(),
        );
        let mut groups = Groups {
            tasks: JoinSet::new(),
            filling: Group::with_capacity(GROUP),
            handed: 0,
            settled: Tally::default(),
            shared: shared.clone(),
            progress: progress.clone(),
        };
        let mut tally = Tally::default();
        let mut ended: Option<StopReason> = None;
        let mut stopped_at: Option<Instant> = None;
        let mut handed_over_all = false;
        let max_items = service.max_items().max(1);
        // The items of the next call, and their messages' parts.
        let mut items = Vec::with_capacity(max_items);
        let mut held = Vec::with_capacity(max_items);

        loop {
            groups.reap();
            // On shutdown the reader stops; what it read ahead is still handed to the service
            // as long as the service takes it within the drain deadline (below), then nacked.
            // Before any wait, the group in hand goes out: its messages hold permits.
            let next = {
                let mut next = pin!(reads.next());
                match futures_util::poll!(next.as_mut()) {
                    Poll::Ready(n) => n,
                    Poll::Pending => {
                        groups.spawn();
                        next.await
                    }
                }
            };
            let Some(first) = next else {
                // The reader is done and everything it read was handed over.
                handed_over_all = true;
                break;
            };
            // This message and those decoded right behind it, up to a call's worth of items.
            let mut next_read = Some(first);
            while let Some(read) = next_read.take() {
                let read::Read {
                    permit,
                    payload,
                    position,
                    ack,
                    decoded,
                } = read;
                match decoded {
                    Ok(item) => {
                        items.push(item);
                        held.push(Parts {
                            payload,
                            position,
                            ack,
                            permit,
                        });
                    }
                    Err(reason) => {
                        let letter = DeadLetter {
                            payload,
                            position,
                            stage: Stage::Decode,
                            reason,
                            retryable: None,
                            time: SystemTime::now(),
                        };
                        groups.push_letter(letter, ack, permit);
                    }
                }
                if items.len() < max_items {
                    next_read = reads.try_next();
                }
            }
            if items.is_empty() {
                continue;
            }

            // Messages in hand are work in flight: if shutdown comes while the service is not
            // ready, they still get the drain deadline to be taken.
            // Ready at once, or after the group in hand went out (its messages may be what the
            // service waits for).
            let mut ready = None;
            if stopped_at.is_none() {
                ready = match futures_util::poll!(poll_fn(|cx| service.poll_ready(cx))) {
                    Poll::Ready(r) => Some(r),
                    Poll::Pending => {
                        groups.spawn();
                        tokio::select! {
                            biased;
                            r = poll_fn(|cx| service.poll_ready(cx)) => Some(r),
                            _ = stop.cancelled() => None,
                        }
                    }
                };
            }
            if ready.is_none() {
                groups.spawn();
                let at = *stopped_at.get_or_insert_with(Instant::now) + drain_deadline;
                ready = tokio::select! {
                    biased;
                    r = poll_fn(|cx| service.poll_ready(cx)) => Some(r),
                    _ = tokio::time::sleep_until(at) => None,
                };
            }
            match ready {
                Some(Ok(())) => {
                    let answer = service.call(&mut items);
                    groups.push_answer(answer, &mut held);
                }
                other => {
                    if let Some(Err(e)) = other {
                        tracing::error!(error = %e, "service failed; stopping");
                        ended = Some(StopReason::ServiceFailed {
                            error: e.to_string(),
                        });
                    }
                    items.clear();
                    for part in held.drain(..) {
                        tally.add(
                            settle::not_handed_over(part.ack, &part.position, &progress).await,
                        );
                    }
                    break;
                }
            }
        }
        groups.spawn();
        // Whatever the reader still hands over is not going to the service: nack it.
        halt_reading.cancel();
        reads.close();
        while let Some(r) = reads.next().await {
            tally.add(settle::not_handed_over(r.ack, &r.position, &progress).await);
        }
        tally.unacknowledged += reads.lost;
        for _ in 0..reads.lost {
            progress.settled(&Settled::Unacknowledged { ack_failed: false });
        }
        let mut source = match reader.await {
            Ok(r) => {
                tally.read = r.read;
                tally.source_errors = r.source_errors;
                tally.unacknowledged += r.nacked;
                tally.ack_errors += r.nack_errors;
                // The end of the input counts only if everything read was handed over; a
                // source that failed stopped the run whatever else happened.
                match r.reason {
                    Some(reason) if handed_over_all => {
                        if matches!(reason, StopReason::EndOfInput) {
                            if let Some(f) = on_input_end {
                                f();
                            }
                        }
                        ended.get_or_insert(reason);
                    }
                    Some(failed @ StopReason::SourceFailed { .. }) => {
                        ended.get_or_insert(failed);
                    }
                    _ => {}
                }
                Some(r.source)
            }
            Err(e) => {
                // A panic in the source or the decoder: the source is gone, unclosed (a file
                // source then resumes from its last persisted checkpoint).
                tracing::error!(error = %e, "the reading task failed");
                if ended.is_none() {
                    ended = Some(StopReason::SourceFailed {
                        error: format!("the reading task failed: {e}"),
                    });
                }
                None
            }
        };

        // Reading has stopped: drain.
        let input_ended = matches!(ended, Some(StopReason::EndOfInput));
        let mut deadline = (!input_ended || stop.is_cancelled())
            .then(|| stopped_at.unwrap_or_else(Instant::now) + drain_deadline);
        let mut abort_at: Option<Instant> = None;
        let mut aborted = false;
        while !groups.tasks.is_empty() {
            tokio::select! {
                done = groups.tasks.join_next() => {
                    if let Some(done) = done {
                        groups.count(done);
                    }
                }
                _ = stop.cancelled(), if deadline.is_none() => {
                    deadline = Some(Instant::now() + drain_deadline);
                }
                _ = until(deadline), if abort_at.is_none() && !aborted => {
                    tracing::warn!(tasks = groups.tasks.len(), "drain deadline passed; abandoning the rest");
                    shared.abandon.cancel();
                    // Abandoned work nacks at once; a task stuck in a dead-letter write or an
                    // ack gets one more deadline before it is aborted.
                    abort_at = Some(Instant::now() + drain_deadline.max(Duration::from_secs(1)));
                }
                _ = until(abort_at), if !aborted => {
                    tracing::error!(tasks = groups.tasks.len(), "tasks still running after the grace period; aborting them");
                    groups.tasks.abort_all();
                    aborted = true;
                }
            }
        }
        drop(service);
        tally.merge(&groups.into_tally());

        let mut close_errors = Vec::new();
        if let Some(Err(e)) = match source.as_mut() {
            Some(source) => Some(source.close().await),
            None => None,
        } {
            tracing::error!(error = %e, "closing the source failed");
            close_errors.push(format!("source: {e}"));
        }
        if let Err(e) = shared.dead_letters.close().await {
            tracing::error!(error = %e, "closing the dead-letter sink failed");
            close_errors.push(format!("dead letters: {e}"));
        }

        let stop_reason = match (shared.fatal.take(), ended) {
            (Some(error), _) => StopReason::DeadLetterFailed { error },
            (None, Some(reason)) => reason,
            (None, None) => StopReason::Cancelled,
        };
        let duration = started.elapsed().as_secs_f64();
        let report = Report {
            read: tally.read,
            delivered: tally.delivered,
            dead_lettered: tally.decode_failures + tally.delivery_failures,
            decode_failures: tally.decode_failures,
            delivery_failures: tally.delivery_failures,
            unacknowledged: tally.unacknowledged,
            ack_errors: tally.ack_errors,
            source_errors: tally.source_errors,
            duration_seconds: duration,
            events_per_second: if duration > 0.0 {
                tally.delivered as f64 / duration
            } else {
                0.0
            },
            stop: stop_reason,
            close_errors,
        };
        tracing::info!(report = %report.to_json(), "pipeline stopped");
        report
    }
}

#[cfg(test)]
mod tests;
