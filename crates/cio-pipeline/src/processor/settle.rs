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

/// One message's work after it was read: await the service's answer, or keep the dead letter
/// of a payload that did not decode. It holds the message's in-flight permit.
pub(super) enum Work<F, A> {
    Deliver {
        answer: F,
        payload: Bytes,
        position: Position,
        ack: A,
        permit: OwnedSemaphorePermit,
    },
    Keep {
        letter: DeadLetter,
        ack: A,
        permit: OwnedSemaphorePermit,
    },
}

/// A delivered message's parts, kept by its group while the answer is awaited.
struct Parts<A> {
    payload: Bytes,
    position: Position,
    ack: A,
    permit: OwnedSemaphorePermit,
}

/// How a message's work ended, before it is settled.
enum Ending<E> {
    Answered(Result<(), E>, Bytes, Position),
    Undecodable(DeadLetter),
    Abandoned(Position),
}

/// Settles a group of messages, each as soon as its own answer comes, and counts them.
///
/// Only the answers are awaited as futures of their own (a pointer and an index each); the
/// messages' parts wait in a slot of the group. Whole per-message futures were copied into
/// the set one by one, and each watched the abandon token itself: both showed in `cio pipe`'s
/// profile. At the drain deadline (abandon) the messages still waiting for an answer are
/// nacked; those already settling (a dead letter being written, an ack) finish. A panic in an
/// answer's future (a bug) leaves that message unacknowledged (its ack is dropped); the others
/// go on.
pub(super) async fn group<F, R, E, A, L, J>(
    work: Vec<Work<F, A>>,
    shared: Arc<Shared<L, J>>,
    progress: Arc<Progress>,
) -> Tally
where
    F: Future<Output = Result<R, E>>,
    E: Display,
    A: Acknowledge,
    L: DeadLetterSink,
    J: JudgeError<E>,
{
    let mut tally = Tally::default();
    let mut slots: Vec<Option<Parts<A>>> = Vec::with_capacity(work.len());
    let mut answers = FuturesUnordered::new();
    let mut settling = FuturesUnordered::new();
    for w in work {
        match w {
            Work::Deliver {
                answer,
                payload,
                position,
                ack,
                permit,
            } => {
                let i = slots.len();
                slots.push(Some(Parts {
                    payload,
                    position,
                    ack,
                    permit,
                }));
                answers.push(
                    AssertUnwindSafe(answer)
                        .catch_unwind()
                        .map(move |answer| (i, answer.map(|a| a.map(drop)))),
                );
            }
            Work::Keep {
                letter,
                ack,
                permit,
            } => {
                settling.push(finish(Ending::Undecodable(letter), ack, permit, &shared));
            }
        }
    }
    let mut abandon = pin!(shared.abandon.cancelled());
    loop {
        tokio::select! {
            biased;
            Some((i, answer)) = answers.next(), if !answers.is_empty() => {
                let Some(Parts { payload, position, ack, permit }) = slots[i].take() else {
                    continue;
                };
                match answer {
                    // Delivered, and the source acks without waiting: settled here.
                    Ok(Ok(())) => match ack.ack_now() {
                        Ok(acked) => {
                            drop(permit);
                            let settled = Settled::Delivered {
                                ack_failed: ack_result(acked, &position),
                            };
                            progress.settled(&settled);
                            tally.add(settled);
                        }
                        Err(ack) => settling.push(finish(
                            Ending::Answered(Ok(()), payload, position),
                            ack,
                            permit,
                            &shared,
                        )),
                    },
                    Ok(answer) => settling.push(finish(
                        Ending::Answered(answer, payload, position),
                        ack,
                        permit,
                        &shared,
                    )),
                    Err(_) => {
                        tracing::error!(%position, "the service's future panicked; the message stays unacknowledged");
                        drop((ack, permit));
                        progress.settled(&Settled::Unacknowledged { ack_failed: false });
                        tally.unacknowledged += 1;
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
async fn finish<E, A, L, J>(
    ending: Ending<E>,
    ack: A,
    permit: OwnedSemaphorePermit,
    shared: &Shared<L, J>,
) -> Settled
where
    E: Display,
    A: Acknowledge,
    L: DeadLetterSink,
    J: JudgeError<E>,
{
    let _permit = permit;
    // The cold paths are boxed: inline, they would enlarge every message's future.
    match ending {
        Ending::Answered(Ok(()), _, position) => Settled::Delivered {
            ack_failed: ack_ok(ack, &position).await,
        },
        Ending::Answered(Err(e), payload, position) => {
            let letter = delivery_letter(e, payload, position, &shared.judge);
            Box::pin(keep(letter, ack, shared)).await
        }
        Ending::Undecodable(letter) => Box::pin(keep(letter, ack, shared)).await,
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

/// The dead letter of a failed delivery. A function of its own so that the error is gone
/// before the letter is written (held across that await, it would enlarge every message's
/// future).
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
