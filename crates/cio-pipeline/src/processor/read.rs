//! The reading stage: takes a permit and reads the next message in a task of its own, and
//! decodes messages in chunks on spawned tasks, so that reading, decoding (most of a message's
//! CPU in the processor, and a bottleneck when one loop did everything) and handing items to
//! the service overlap and use every core. Order is kept: chunks are handed over in the order
//! they were read.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::decode::Decode;
use crate::source::{Message, Position, Source};

use super::{settle, Progress, StopReason};

const SOURCE_BACKOFF_MIN: Duration = Duration::from_millis(100);
const SOURCE_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Messages decoded by one task at most: enough to make the spawn negligible, few enough that
/// a chunk never holds messages back (a chunk is also handed over whenever reading would wait).
pub(super) const CHUNK: usize = 64;

/// A message read and decoded (or not), holding its in-flight permit.
pub(super) struct Read<A, T> {
    pub(super) permit: OwnedSemaphorePermit,
    pub(super) payload: Bytes,
    pub(super) position: Position,
    pub(super) ack: A,
    /// The item, or why the payload is a dead letter.
    pub(super) decoded: Result<T, String>,
}

/// A message read and not decoded yet.
struct Undecoded<A> {
    permit: OwnedSemaphorePermit,
    message: Message<A>,
}

/// A chunk being decoded, with its length (to account for it if its task fails).
type Chunk<A, T> = (usize, JoinHandle<Vec<Read<A, T>>>);

/// How the reading stage ended.
pub(super) struct Ended<S> {
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

/// The receiving end: decoded messages in the order they were read.
pub(super) struct Reads<A, T> {
    chunks: mpsc::Receiver<Chunk<A, T>>,
    ready: VecDeque<Read<A, T>>,
    /// Messages lost with a decoding task that panicked (their handles were dropped: nacks).
    pub(super) lost: u64,
}

impl<A, T> Reads<A, T> {
    /// The next message, or `None` once the reader is done and everything was handed over.
    pub(super) async fn next(&mut self) -> Option<Read<A, T>> {
        loop {
            if let Some(read) = self.ready.pop_front() {
                return Some(read);
            }
            let (len, chunk) = self.chunks.recv().await?;
            match chunk.await {
                Ok(reads) => self.ready.extend(reads),
                Err(e) => {
                    tracing::error!(error = %e, messages = len, "a decoding task failed; its messages stay unacknowledged");
                    self.lost += len as u64;
                }
            }
        }
    }

    /// The next message if one is decoded and in hand already (never waits).
    pub(super) fn try_next(&mut self) -> Option<Read<A, T>> {
        self.ready.pop_front()
    }

    /// No more chunks will be taken; [`next`](Self::next) still yields what was handed over.
    pub(super) fn close(&mut self) {
        self.chunks.close();
    }
}

/// The reading stage's two ends: decoded messages, and the task that gives the source back.
pub(super) type Stage<S, D> = (
    Reads<<S as Source>::Ack, <D as Decode>::Item>,
    JoinHandle<Ended<S>>,
);

/// Starts the reading stage: returns the receiving end and the task, which yields the source
/// back when it ends (the input ends, the source fails, `halt` is cancelled or the receiving
/// end is closed). Reading stops at once on `halt`: a message being read stays with the source.
pub(super) fn spawn<S, D>(
    source: S,
    decoder: D,
    permits: Arc<Semaphore>,
    read_ahead: usize,
    halt: CancellationToken,
    progress: Arc<Progress>,
) -> Stage<S, D>
where
    S: Source + 'static,
    D: Decode,
{
    let (tx, rx) = mpsc::channel(read_ahead.div_ceil(CHUNK).max(1));
    let reader = Reader {
        decoder: Arc::new(decoder),
        out: tx,
        halt,
        progress,
        chunk: Vec::with_capacity(CHUNK),
        nacked: 0,
        nack_errors: 0,
    };
    let task = tokio::spawn(reader.run(source, permits));
    let reads = Reads {
        chunks: rx,
        ready: VecDeque::new(),
        lost: 0,
    };
    (reads, task)
}

struct Reader<A, D: Decode> {
    decoder: Arc<D>,
    out: mpsc::Sender<Chunk<A, D::Item>>,
    halt: CancellationToken,
    progress: Arc<Progress>,
    chunk: Vec<Undecoded<A>>,
    nacked: u64,
    nack_errors: u64,
}

impl<A: crate::source::Acknowledge, D: Decode> Reader<A, D> {
    async fn run<S>(mut self, mut source: S, permits: Arc<Semaphore>) -> Ended<S>
    where
        S: Source<Ack = A>,
    {
        let (mut reason, mut read, mut source_errors) = (None, 0u64, 0u64);
        let mut backoff = SOURCE_BACKOFF_MIN;
        loop {
            // Before any wait, the chunk in hand goes out: its messages hold permits, and the
            // service may be waiting for them.
            let permit = match permits.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(TryAcquireError::Closed) => break,
                Err(TryAcquireError::NoPermits) => {
                    self.flush().await;
                    tokio::select! {
                        biased;
                        _ = self.halt.cancelled() => break,
                        p = permits.clone().acquire_owned() => match p {
                            Ok(p) => p,
                            Err(_) => break,
                        },
                    }
                }
            };
            if self.halt.is_cancelled() {
                break;
            }
            let next = {
                // Polled once; if it would wait, the chunk goes out and the same read goes on.
                let mut next = pin!(source.next());
                match futures_util::poll!(next.as_mut()) {
                    Poll::Ready(n) => n,
                    Poll::Pending => {
                        self.flush().await;
                        tokio::select! {
                            biased;
                            _ = self.halt.cancelled() => break,
                            n = next => n,
                        }
                    }
                }
            };
            let message = match next {
                Ok(Some(m)) => {
                    backoff = SOURCE_BACKOFF_MIN;
                    m
                }
                Ok(None) => {
                    reason = Some(StopReason::EndOfInput);
                    break;
                }
                Err(e) if e.is_retryable() => {
                    source_errors += 1;
                    tracing::warn!(error = %e, retry_in = ?backoff, "source error; retrying");
                    self.flush().await;
                    tokio::select! {
                        _ = self.halt.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(SOURCE_BACKOFF_MAX);
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "source failed; stopping");
                    reason = Some(StopReason::SourceFailed {
                        error: e.to_string(),
                    });
                    break;
                }
            };
            read += 1;
            self.progress.read_one();
            self.chunk.push(Undecoded { permit, message });
            if self.chunk.len() == CHUNK {
                self.flush().await;
            }
        }
        // Messages read are handed over even when stopping (the processor gives them the drain
        // deadline), unless the receiving end is gone.
        self.flush().await;
        Ended {
            source,
            reason,
            read,
            source_errors,
            nacked: self.nacked,
            nack_errors: self.nack_errors,
        }
    }

    /// Hands the chunk in hand to a decoding task, or nacks it if the receiving end is gone.
    /// Waiting for room cannot hang: the processor takes chunks until it stops, and then
    /// closes its end.
    async fn flush(&mut self) {
        if self.chunk.is_empty() {
            return;
        }
        let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK));
        let Ok(slot) = self.out.reserve().await else {
            for u in chunk {
                let Message { ack, position, .. } = u.message;
                self.nacked += 1;
                let settled = settle::not_handed_over(ack, &position, &self.progress).await;
                if let settle::Settled::Unacknowledged { ack_failed: true } = settled {
                    self.nack_errors += 1;
                }
            }
            return;
        };
        let decoder = self.decoder.clone();
        let len = chunk.len();
        slot.send((len, tokio::spawn(async move { decode(&*decoder, chunk) })));
    }
}

fn decode<A, D: Decode>(decoder: &D, chunk: Vec<Undecoded<A>>) -> Vec<Read<A, D::Item>> {
    chunk
        .into_iter()
        .map(|Undecoded { permit, message }| {
            let Message {
                payload,
                position,
                oversize,
                ack,
            } = message;
            let decoded = match oversize {
                Some(size) => Err(format!(
                    "the input is {size} bytes, over the source's limit of {} bytes",
                    payload.len()
                )),
                None => decoder
                    .decode_bytes(&payload, &position)
                    .map_err(|e| e.reason().to_owned()),
            };
            Read {
                permit,
                payload,
                position,
                ack,
                decoded,
            }
        })
        .collect()
}
