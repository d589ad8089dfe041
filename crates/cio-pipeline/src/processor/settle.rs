//! The work of one message after it is read: deliver or dead-letter, then settle.

use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use crate::dead_letter::{DeadLetter, DeadLetterSink, Stage};
use crate::source::{Acknowledge, Position};

use super::{JudgeError, Progress};

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

/// What every task needs besides its message.
pub(super) struct Shared<L, J> {
    pub(super) dead_letters: Arc<L>,
    pub(super) judge: Arc<J>,
    pub(super) abandon: CancellationToken,
    pub(super) fatal: Fatal,
}

impl<L, J> Clone for Shared<L, J> {
    fn clone(&self) -> Self {
        Shared {
            dead_letters: self.dead_letters.clone(),
            judge: self.judge.clone(),
            abandon: self.abandon.clone(),
            fatal: self.fatal.clone(),
        }
    }
}

pub(super) async fn ack_ok<A: Acknowledge>(ack: A, position: &Position) -> bool {
    match ack.ack().await {
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

/// Awaits the service's answer (unless abandoned), then acks, or dead-letters and acks, and
/// publishes the outcome. Spawned as it is: a wrapping `async` block would hold this future
/// twice (captured, then awaited).
#[allow(clippy::too_many_arguments)] // one message's parts, moved in once
pub(super) async fn deliver<F, R, E, A, L, J>(
    answer: F,
    payload: Bytes,
    position: Position,
    ack: A,
    permit: OwnedSemaphorePermit,
    shared: Shared<L, J>,
    progress: Arc<Progress>,
) -> Settled
where
    F: Future<Output = Result<R, E>>,
    E: Display,
    A: Acknowledge,
    L: DeadLetterSink,
    J: JudgeError<E>,
{
    let _permit = permit;
    let settled = async {
        // The cold paths are boxed: inline, their state made every message's task (the happy
        // path) 3 KB instead of 656 B, and a task is copied when spawned; at 20,000 in flight
        // that was a fifth of `cio pipe`'s CPU in copies and page faults.
        let answer = tokio::select! {
            biased;
            a = answer => a,
            _ = shared.abandon.cancelled() => {
                tracing::debug!(%position, "abandoned at the shutdown deadline");
                let ack_failed = Box::pin(nack_ok(ack, &position)).await;
                return Settled::Unacknowledged { ack_failed };
            }
        };
        match answer {
            Ok(_) => Settled::Delivered {
                ack_failed: ack_ok(ack, &position).await,
            },
            Err(e) => {
                let letter = delivery_letter(e, payload, position, &*shared.judge);
                Box::pin(keep(letter, ack, &shared)).await
            }
        }
    }
    .await;
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
