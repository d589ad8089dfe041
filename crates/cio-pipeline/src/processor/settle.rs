//! The work of one message after it is read: deliver or dead-letter, then settle. Messages
//! are settled in groups, one task per group (see [`group`]).

use std::fmt::Display;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use crate::dead_letter::{DeadLetter, DeadLetterSink, Stage};
use crate::source::{AckError, Acknowledge, Position};

use super::handoff::Answers;
use super::{JudgeError, Progress, Tally};

/// How one message ended.
pub(super) enum Settled {
    Delivered { ack_failed: bool },
    DeadLettered { stage: Stage, ack_failed: bool },
    Unacknowledged { ack_failed: bool },
}

/// The first fatal failure of a task; it stops the reading loop.
#[derive(Clone)]
pub(super) struct Fatal {
    reason: Arc<Mutex<Option<String>>>,
    stop: CancellationToken,
}

impl Fatal {
    pub(super) fn new(stop: CancellationToken) -> Self {
        Fatal {
            reason: Arc::default(),
            stop,
        }
    }

    fn fail(&self, reason: String) {
        let mut slot = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(reason);
        }
        drop(slot);
        self.stop.cancel();
    }

    pub(super) fn take(&self) -> Option<String> {
        self.reason.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// What every message's work needs besides its message; one per run, behind one `Arc`.
pub(super) struct Shared<L, J> {
    pub(super) dead_letters: L,
    pub(super) judge: J,
    pub(super) abandon: CancellationToken,
    pub(super) fatal: Fatal,
}

/// The work handed to one settling task: the answers to calls of the service, the parts of
/// the messages they cover (in the order handed over), and dead letters of payloads that did
/// not decode. Every message holds its in-flight permit.
pub(super) struct Group<F, A> {
    pub(super) parts: Vec<Parts<A>>,
    /// Each call's answer with the range of `parts` it covers.
    pub(super) answers: Vec<(F, std::ops::Range<usize>)>,
    pub(super) letters: Vec<(DeadLetter, A, OwnedSemaphorePermit)>,
}

impl<F, A> Group<F, A> {
    pub(super) fn with_capacity(n: usize) -> Self {
        Group {
            parts: Vec::with_capacity(n),
            answers: Vec::new(),
            letters: Vec::new(),
        }
    }

    /// Messages in the group.
    pub(super) fn len(&self) -> usize {
        self.parts.len() + self.letters.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A message handed to the service, kept by its group while the answer is awaited.
pub(super) struct Parts<A> {
    pub(super) payload: Bytes,
    pub(super) position: Position,
    pub(super) ack: A,
    pub(super) permit: OwnedSemaphorePermit,
}

/// How a message's work ended, before it is settled.
enum Ending {
    Delivered(Position),
    Keep(DeadLetter),
    Abandoned(Position),
}

/// Why an item of an answer was not delivered.
enum Failure<E> {
    /// Its own error.
    Error(E),
    /// Its call's error, shared by every item of the call: the reason and whether retryable.
    Call(Arc<(String, Option<bool>)>),
    /// No outcome can be trusted to be this item's: the answer's future panicked, or answered
    /// another number of outcomes than items.
    Lost,
}

/// The outcomes of one answer, item by item.
enum Outcomes<E> {
    Each(std::vec::IntoIter<Result<(), E>>),
    Delivered,
    Failed(Arc<(String, Option<bool>)>),
    Lost,
}

impl<E> Outcomes<E> {
    fn next(&mut self) -> Result<(), Failure<E>> {
        match self {
            Outcomes::Each(each) => match each.next() {
                Some(outcome) => outcome.map_err(Failure::Error),
                None => Err(Failure::Lost),
            },
            Outcomes::Delivered => Ok(()),
            Outcomes::Failed(call) => Err(Failure::Call(Arc::clone(call))),
            Outcomes::Lost => Err(Failure::Lost),
        }
    }
}

/// Settles a group of messages, each as soon as its own answer comes, and counts them.
///
/// Only the answers are awaited as futures of their own (one per call of the service: a chunk
/// of messages, or one); the messages' parts wait in a slot of the group. Whole per-message
/// futures were copied into the set one by one, and each watched the abandon token itself:
/// both showed in `cio pipe`'s profile. At the drain deadline (abandon) the messages still
/// waiting for an answer are nacked; those already settling (a dead letter being written, an
/// ack) finish. A panic in an answer's future (a bug) leaves its messages unacknowledged
/// (their acks are dropped); the others go on.
pub(super) async fn group<F, E, A, L, J>(
    work: Group<F, A>,
    shared: Arc<Shared<L, J>>,
    progress: Arc<Progress>,
) -> Tally
where
    F: Future<Output = Answers<E>>,
    E: Display,
    A: Acknowledge,
    L: DeadLetterSink,
    J: JudgeError<E>,
{
    let mut tally = Tally::default();
    let Group {
        parts,
        answers: calls,
        letters,
    } = work;
    let mut slots: Vec<Option<Parts<A>>> = parts.into_iter().map(Some).collect();
    let mut answers = FuturesUnordered::new();
    for (answer, range) in calls {
        answers.push(
            AssertUnwindSafe(answer)
                .catch_unwind()
                .map(move |answer| (range, answer)),
        );
    }
    let mut settling = FuturesUnordered::new();
    for (letter, ack, permit) in letters {
        settling.push(finish(Ending::Keep(letter), ack, permit, &shared));
    }
    let mut abandon = pin!(shared.abandon.cancelled());
    loop {
        tokio::select! {
            biased;
            Some((range, answer)) = answers.next(), if !answers.is_empty() => {
                let mut outcomes = match answer {
                    Ok(Answers::Each(each)) if each.len() == range.len() => {
                        Outcomes::Each(each.into_iter())
                    }
                    Ok(Answers::Each(each)) => {
                        tracing::error!(items = range.len(), outcomes = each.len(), "the service answered another number of outcomes than items; the messages stay unacknowledged");
                        Outcomes::Lost
                    }
                    Ok(Answers::All(Ok(()))) => Outcomes::Delivered,
                    Ok(Answers::All(Err(e))) => {
                        let retryable = shared.judge.retryable(&e);
                        Outcomes::Failed(Arc::new((e.to_string(), retryable)))
                    }
                    Err(_) => {
                        tracing::error!(items = range.len(), "the service's future panicked; the messages stay unacknowledged");
                        Outcomes::Lost
                    }
                };
                for i in range {
                    let outcome = outcomes.next();
                    let Some(Parts { payload, position, ack, permit }) = slots[i].take() else {
                        continue;
                    };
                    match outcome {
                        // Delivered, and the source acks without waiting: settled here.
                        Ok(()) => match ack.ack_now() {
                            Ok(acked) => {
                                drop(permit);
                                let settled = Settled::Delivered {
                                    ack_failed: ack_result(acked, &position),
                                };
                                progress.settled(&settled);
                                tally.add(settled);
                            }
                            Err(ack) => settling.push(finish(
                                Ending::Delivered(position),
                                ack,
                                permit,
                                &shared,
                            )),
                        },
                        Err(Failure::Error(e)) => {
                            let letter = delivery_letter(e, payload, position, &shared.judge);
                            settling.push(finish(Ending::Keep(letter), ack, permit, &shared));
                        }
                        Err(Failure::Call(call)) => {
                            let letter = DeadLetter {
                                reason: call.0.clone(),
                                retryable: call.1,
                                payload,
                                position,
                                stage: Stage::Deliver,
                                time: SystemTime::now(),
                            };
                            settling.push(finish(Ending::Keep(letter), ack, permit, &shared));
                        }
                        Err(Failure::Lost) => {
                            tracing::debug!(%position, "no outcome for this message; it stays unacknowledged");
                            drop((ack, permit));
                            progress.settled(&Settled::Unacknowledged { ack_failed: false });
                            tally.unacknowledged += 1;
                        }
                    }
                }
            }
            Some(settled) = settling.next(), if !settling.is_empty() => {
                progress.settled(&settled);
                tally.add(settled);
            }
            _ = &mut abandon, if !answers.is_empty() => {
                answers.clear();
                for Parts { position, ack, permit, .. } in slots.iter_mut().filter_map(Option::take) {
                    tracing::debug!(%position, "abandoned at the shutdown deadline");
                    settling.push(finish(Ending::Abandoned(position), ack, permit, &shared));
                }
            }
            else => break,
        }
    }
    tally
}

/// Acks a delivered message, or keeps its dead letter and acks, or nacks an abandoned one.
async fn finish<A, L, J>(
    ending: Ending,
    ack: A,
    permit: OwnedSemaphorePermit,
    shared: &Shared<L, J>,
) -> Settled
where
    A: Acknowledge,
    L: DeadLetterSink,
{
    let _permit = permit;
    // The cold paths are boxed: inline, they would enlarge every message's future.
    match ending {
        Ending::Delivered(position) => Settled::Delivered {
            ack_failed: ack_ok(ack, &position).await,
        },
        Ending::Keep(letter) => Box::pin(keep(letter, ack, shared)).await,
        Ending::Abandoned(position) => Settled::Unacknowledged {
            ack_failed: Box::pin(nack_ok(ack, &position)).await,
        },
    }
}

pub(super) async fn ack_ok<A: Acknowledge>(ack: A, position: &Position) -> bool {
    ack_result(ack.ack().await, position)
}

/// Whether an ack failed, logged.
fn ack_result(acked: Result<(), AckError>, position: &Position) -> bool {
    match acked {
        Ok(()) => false,
        Err(e) => {
            tracing::warn!(%position, error = %e, "ack failed; the message will be delivered again");
            true
        }
    }
}

pub(super) async fn nack_ok<A: Acknowledge>(ack: A, position: &Position) -> bool {
    match ack.nack().await {
        Ok(()) => false,
        Err(e) => {
            tracing::warn!(%position, error = %e, "nack failed");
            true
        }
    }
}

/// Nacks a message that never reached the service (read ahead, or in hand when the run
/// stopped) and publishes it as unacknowledged.
pub(super) async fn not_handed_over<A: Acknowledge>(
    ack: A,
    position: &Position,
    progress: &Progress,
) -> Settled {
    let settled = Settled::Unacknowledged {
        ack_failed: nack_ok(ack, position).await,
    };
    progress.settled(&settled);
    settled
}

/// The dead letter of a failed delivery, made before anything is awaited (an error held across
/// an await would enlarge every message's future).
fn delivery_letter<E: Display, J: JudgeError<E>>(
    e: E,
    payload: Bytes,
    position: Position,
    judge: &J,
) -> DeadLetter {
    DeadLetter {
        reason: e.to_string(),
        retryable: judge.retryable(&e),
        payload,
        position,
        stage: Stage::Deliver,
        time: SystemTime::now(),
    }
}

/// Writes a dead letter, then acks; if it cannot be kept, nacks and stops the processor.
pub(super) async fn keep<A, L, J>(letter: DeadLetter, ack: A, shared: &Shared<L, J>) -> Settled
where
    A: Acknowledge,
    L: DeadLetterSink,
{
    let stage = letter.stage;
    let position = letter.position.clone();
    tracing::debug!(%position, ?stage, reason = %letter.reason, "dead letter");
    match shared.dead_letters.send(letter).await {
        Ok(()) => Settled::DeadLettered {
            stage,
            ack_failed: ack_ok(ack, &position).await,
        },
        Err(e) => {
            tracing::error!(%position, error = %e, "dead letter not kept; stopping");
            shared.fatal.fail(e.to_string());
            Settled::Unacknowledged {
                ack_failed: nack_ok(ack, &position).await,
            }
        }
    }
}
