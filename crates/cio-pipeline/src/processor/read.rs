//! The reading stage: takes a permit, reads the next message and decodes it, in a task of its
//! own, so that reading and decoding (most of a message's CPU in the processor) overlap with
//! handing messages to the service and settling them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::decode::Decode;
use crate::source::{Message, Position, Source};

use super::{settle, Progress, StopReason};

const SOURCE_BACKOFF_MIN: Duration = Duration::from_millis(100);
const SOURCE_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A message read and decoded (or not), holding its in-flight permit.
pub(super) struct Read<A, T> {
    pub(super) permit: OwnedSemaphorePermit,
    pub(super) payload: Bytes,
    pub(super) position: Position,
    pub(super) ack: A,
    /// The item, or why the payload is a dead letter.
    pub(super) decoded: Result<T, String>,
}

/// How the reading stage ended.
pub(super) struct Ended<S = ()> {
    /// The source, to be closed once every message it gave is settled.
    pub(super) source: S,
    /// `EndOfInput` or `SourceFailed`; `None` when it was told to stop.
    pub(super) reason: Option<StopReason>,
    pub(super) read: u64,
    pub(super) source_errors: u64,
    /// Read but never handed over (the processing stage had stopped), and nacked.
    pub(super) nacked: u64,
    pub(super) nack_errors: u64,
}

/// Reads until the input ends, the source fails, `halt` is cancelled or `out` is closed.
/// Reading stops at once on `halt`: a message being read stays with the source.
pub(super) async fn read<S, D>(
    mut source: S,
    decoder: D,
    permits: Arc<Semaphore>,
    out: mpsc::Sender<Read<S::Ack, D::Item>>,
    halt: CancellationToken,
    progress: Arc<Progress>,
) -> Ended<S>
where
    S: Source,
    D: Decode,
{
    let mut ended: Ended = Ended {
        source: (),
        reason: None,
        read: 0,
        source_errors: 0,
        nacked: 0,
        nack_errors: 0,
    };
    let mut backoff = SOURCE_BACKOFF_MIN;
    loop {
        let permit = tokio::select! {
            biased;
            _ = halt.cancelled() => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let next = tokio::select! {
            biased;
            _ = halt.cancelled() => break,
            n = source.next() => n,
        };
        let Message {
            payload,
            position,
            oversize,
            ack,
        } = match next {
            Ok(Some(m)) => {
                backoff = SOURCE_BACKOFF_MIN;
                m
            }
            Ok(None) => {
                ended.reason = Some(StopReason::EndOfInput);
                break;
            }
            Err(e) if e.is_retryable() => {
                ended.source_errors += 1;
                tracing::warn!(error = %e, retry_in = ?backoff, "source error; retrying");
                tokio::select! {
                    _ = halt.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(SOURCE_BACKOFF_MAX);
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "source failed; stopping");
                ended.reason = Some(StopReason::SourceFailed {
                    error: e.to_string(),
                });
                break;
            }
        };
        ended.read += 1;
        progress.read_one();

        let decoded = match oversize {
            Some(size) => Err(format!(
                "the input is {size} bytes, over the source's limit of {} bytes",
                payload.len()
            )),
            None => decoder
                .decode(&payload, &position)
                .map_err(|e| e.reason().to_owned()),
        };
        // A slot first, so that a message is never left inside a send that gets cancelled.
        let slot = tokio::select! {
            biased;
            s = out.reserve() => s.ok(),
            _ = halt.cancelled() => None,
        };
        let Some(slot) = slot else {
            ended.nacked += 1;
            ended.nack_errors += u64::from(settle::nack_ok(ack, &position).await);
            progress.settled(&settle::Settled::Unacknowledged { ack_failed: false });
            break;
        };
        slot.send(Read {
            permit,
            payload,
            position,
            ack,
            decoded,
        });
    }
    Ended {
        source,
        reason: ended.reason,
        read: ended.read,
        source_errors: ended.source_errors,
        nacked: ended.nacked,
        nack_errors: ended.nack_errors,
    }
}
