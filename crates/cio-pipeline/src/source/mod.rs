//! [`Source`]: where messages come from, and how they are acknowledged.
//!
//! A source yields [`Message`]s. Each carries its payload, its [`Position`] in the input (for
//! dead letters and deterministic ids) and an acknowledgement handle ([`Acknowledge`]) that
//! settles it exactly once: [`ack`](Acknowledge::ack) when its outcome is final (delivered, or
//! safely dead-lettered), [`nack`](Acknowledge::nack) to leave it for redelivery. A handle
//! dropped without either counts as a nack.
//!
//! # The contract
//!
//! - **Pull, so back-pressure is explicit.** The processor calls [`Source::next`] only when it
//!   has room for another message in flight; a source never has to buffer more than it was
//!   asked for. Producers into a [`ChannelSource`] wait when its bounded queue is full.
//! - **Ending is explicit.** `Ok(None)` means the input is exhausted (a finite file, a closed
//!   channel). A source that follows a growing input never ends by itself: the processor's
//!   cancellation token stops it.
//! - **Errors say whether to go on.** [`SourceError::is_retryable`]: a transient failure (a
//!   broker briefly unreachable) is retried with a backoff; any other stops the processor, which
//!   still drains what is in flight and closes the source.
//! - **Settling is decoupled from reading.** Handles are owned values that any task may settle,
//!   in any order, while the source keeps reading. A source that commits positions (a file
//!   checkpoint, Kafka offsets) moves its commit only over a contiguous settled prefix.
//! - **[`Source::close`] persists.** Called once, after every message handed out has been
//!   settled or abandoned: flush acknowledgements, write the checkpoint.
//! - **Cancel safety.** `next` may be dropped before it completes (on shutdown); an adapter must
//!   then not lose data it had already taken from its input, or must leave it unacknowledged so
//!   that it is redelivered.
//!
//! # Why this shape fits the queues of the scale-out work
//!
//! It follows apalis's split between a backend that streams tasks and a separate
//! acknowledgement hook, and Vector's driver, which acknowledges to its source only the
//! contiguous prefix of completed requests (ideas, not code).
//!
//! - **Kafka** (per-partition contiguous offsets): `next` is the consumer's `recv`; the handle
//!   holds `(partition, offset)` and marks it in a per-partition tracker like the file source's;
//!   the tracker stores `offset + 1` of the contiguous acked prefix for the consumer to commit,
//!   and `close` commits synchronously. A nack holds the partition's commit back, so the record
//!   is redelivered after a restart or rebalance. [`Position::Sequence`] carries
//!   `topic/partition` and the offset, which makes deterministic event ids stable across
//!   redeliveries.
//! - **Redis Streams** (XACK by id, pending reclaim): `next` is `XREADGROUP` (and, from time to
//!   time, `XAUTOCLAIM` of entries idle in the pending list too long, which is how an unacked
//!   entry comes back); the handle's `ack` is `XACK` of its id (async, hence async `ack`), `nack`
//!   leaves it pending to be reclaimed. Order does not matter, so no tracker is needed.
//!   [`Position::Id`] carries the stream key and entry id.
//! - **SQS, NATS JetStream** fit the same way: ack is delete / `+ACK`, nack is a visibility
//!   reset / `-NAK`.
//!
//! The adapters here: [`MemorySource`] (tests and examples; records every settlement),
//! [`ChannelSource`] (producers in the same process), [`FileSource`] (JSON lines from files
//! or stdin, follow mode, checkpoints), and for several machines `KafkaSource` (feature `kafka`:
//! a consumer group, per-partition contiguous commits, rebalances) and `RedisStreamSource`
//! (feature `redis`: a Streams consumer group, `XAUTOCLAIM`, a dead-letter stream). Both give a
//! [`LagProbe`] for autoscaling.

mod channel;
pub mod file;
#[cfg(feature = "kafka")]
pub mod kafka;
mod memory;
#[cfg(feature = "redis")]
pub mod redis;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use channel::{channel, ChannelAck, ChannelSender, ChannelSource, Closed, Receipt, Settlement};
pub use file::{FileAck, FileSource, FileSourceBuilder, ReadProgress};
#[cfg(feature = "kafka")]
pub use kafka::{KafkaAck, KafkaLag, KafkaSource, KafkaSourceBuilder};
pub use memory::{AckLog, MemoryAck, MemorySource};
#[cfg(feature = "redis")]
pub use redis::{RedisStreamAck, RedisStreamLag, RedisStreamSource, RedisStreamSourceBuilder};

/// The boxed error type adapters wrap their own errors in.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A source of messages with acknowledgements. See the [module docs](self) for the contract.
///
/// ```
/// use cio_pipeline::source::{Acknowledge, MemorySource, Source};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut source = MemorySource::new(["a", "b"]);
/// let log = source.ack_log();
/// while let Some(message) = source.next().await? {
///     assert!(!message.payload.is_empty());
///     message.ack.ack().await?;
/// }
/// assert_eq!(log.acked(), [0, 1]);
/// # Ok(()) }
/// ```
pub trait Source: Send {
    /// The acknowledgement handle of this source's messages.
    type Ack: Acknowledge;

    /// The next message; `Ok(None)` when the input is exhausted. Called only when the caller has
    /// room for one more message in flight.
    fn next(
        &mut self,
    ) -> impl Future<Output = Result<Option<Message<Self::Ack>>, SourceError>> + Send;

    /// Stops the source for good and persists what settled (commits, checkpoints). Called once,
    /// after every message handed out was settled or abandoned. The default does nothing.
    fn close(&mut self) -> impl Future<Output = Result<(), SourceError>> + Send {
        async { Ok(()) }
    }
}

/// Settles one message: exactly one of [`ack`](Self::ack) or [`nack`](Self::nack), or a drop,
/// which counts as a nack.
pub trait Acknowledge: Send + 'static {
    /// The message's outcome is final (delivered, or kept in the dead-letter sink): the source
    /// may forget it.
    fn ack(self) -> impl Future<Output = Result<(), AckError>> + Send;

    /// The message was not processed: the source should deliver it again (for a file: after a
    /// restart, from the checkpoint; for a broker: after its redelivery delay).
    fn nack(self) -> impl Future<Output = Result<(), AckError>> + Send;

    /// Acks at once when that needs no waiting (no I/O): `Ok` with what [`ack`](Self::ack)
    /// would give, or the handle back to be acked with `ack().await`. The processor settles
    /// most messages this way, without a future of their own for the ack. The default gives
    /// the handle back.
    fn ack_now(self) -> Result<Result<(), AckError>, Self>
    where
        Self: Sized,
    {
        Err(self)
    }
}

/// How many messages of a source's input are not acknowledged yet: its consumer lag, the
/// number an autoscaler scales workers on.
///
/// A probe is taken from a source before the processor takes the source (`KafkaSource::lag_probe`
/// with feature `kafka`, `RedisStreamSource::lag_probe` with feature `redis`), is cheap to clone
/// and may be asked from any task (a `/metrics` handler) while the source runs. After the source
/// is closed it answers with an error.
pub trait LagProbe: Clone + Send + Sync + 'static {
    /// Messages not acknowledged yet: delivered to no consumer, or delivered and not settled.
    fn lag(&self) -> impl Future<Output = Result<u64, SourceError>> + Send;
}

/// One input: payload, position and acknowledgement handle.
#[derive(Debug)]
pub struct Message<A> {
    /// The raw bytes (one line of a file, without its line ending).
    pub payload: Bytes,
    /// Where the message was in its input.
    pub position: Position,
    /// Set when the source cut the payload at its size limit: the full size in bytes. The
    /// processor dead-letters such a message without decoding it.
    pub oversize: Option<u64>,
    /// Settles the message.
    pub ack: A,
}

impl<A> Message<A> {
    /// A message of `payload` at `position`.
    pub fn new(payload: impl Into<Bytes>, position: Position, ack: A) -> Self {
        Message {
            payload: payload.into(),
            position,
            oversize: None,
            ack,
        }
    }
}

/// Where a message was in its input: what a dead letter records, and what a deterministic event
/// id is derived from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Position {
    /// A line of a file (`origin` is its canonical path) or of standard input (`origin` `-@`
    /// and a name unique to the run: stdin has no identity that survives the run).
    Line {
        /// The canonical path, or `-@<unique>`.
        origin: Arc<str>,
        /// 1-based line number.
        line: u64,
        /// Byte offset of the line's first byte.
        offset: u64,
    },
    /// The n-th message of an ordered input: a memory source, a channel, a Kafka partition
    /// (`origin` `topic/partition`, `index` the offset).
    Sequence {
        /// What the input is.
        origin: Arc<str>,
        /// 0-based index (or broker offset).
        index: u64,
    },
    /// A message named by an id its broker assigned: a Redis Streams entry id, an SQS message id.
    Id {
        /// The stream or queue.
        origin: Arc<str>,
        /// The broker's id.
        id: String,
    },
}

impl Position {
    /// A stable 128-bit hash of what identifies this position, the same in every process and
    /// version: xxh3-128 of the kind, the origin and the offset (files: byte offset; sequences:
    /// index; ids: the id). The line number is left out: the byte offset already names the line.
    pub fn stable_hash(&self) -> u128 {
        let mut key = Vec::with_capacity(64);
        match self {
            Position::Line { origin, offset, .. } => {
                key.extend_from_slice(b"line\0");
                key.extend_from_slice(origin.as_bytes());
                key.push(0);
                key.extend_from_slice(&offset.to_le_bytes());
            }
            Position::Sequence { origin, index } => {
                key.extend_from_slice(b"seq\0");
                key.extend_from_slice(origin.as_bytes());
                key.push(0);
                key.extend_from_slice(&index.to_le_bytes());
            }
            Position::Id { origin, id } => {
                key.extend_from_slice(b"id\0");
                key.extend_from_slice(origin.as_bytes());
                key.push(0);
                key.extend_from_slice(id.as_bytes());
            }
        }
        xxhash_rust::xxh3::xxh3_128(&key)
    }

    /// The origin (path, stream, queue).
    pub fn origin(&self) -> &str {
        match self {
            Position::Line { origin, .. }
            | Position::Sequence { origin, .. }
            | Position::Id { origin, .. } => origin,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Line {
                origin,
                line,
                offset,
            } => write!(f, "{origin}:{line} (byte {offset})"),
            Position::Sequence { origin, index } => write!(f, "{origin}#{index}"),
            Position::Id { origin, id } => write!(f, "{origin} id {id}"),
        }
    }
}

/// A name no other source instance has had, in this process or another: the time, the process
/// id and a counter. Origins without a stable identity (stdin, a channel) carry one, so the ids
/// derived from their positions never repeat those of an earlier run.
pub(crate) fn unique_origin(prefix: &str) -> Arc<str> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static INSTANCES: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let n = INSTANCES.fetch_add(1, Ordering::Relaxed);
    Arc::from(format!("{prefix}@{nanos:x}.{}.{n}", std::process::id()))
}

/// Why a source could not give the next message.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Reading the input failed.
    #[error("cannot read {what}: {source}")]
    Io {
        /// What was being read (a path, `stdin`).
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The checkpoint could not be read, parsed or written.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The checkpoint file.
        path: String,
        /// What went wrong, and what to do.
        reason: String,
    },
    /// A file is shorter than the position already processed: it was truncated or replaced, and
    /// resuming would skip or repeat lines.
    #[error("{path} is {len} bytes, shorter than the {offset} bytes already processed: it was truncated or replaced (remove the checkpoint to start over)")]
    Truncated {
        /// The file.
        path: String,
        /// Its length now.
        len: u64,
        /// The offset already processed.
        offset: u64,
    },
    /// The source was configured in a way that cannot work.
    #[error("invalid source configuration: {0}")]
    Config(String),
    /// An adapter's own error (a broker client's).
    #[error("{source}")]
    Other {
        /// Whether trying again can help.
        retryable: bool,
        /// The adapter's error.
        source: BoxError,
    },
}

impl SourceError {
    /// Whether calling [`Source::next`] again can help. Only adapters' transient errors are
    /// retryable; a file that cannot be read or a bad checkpoint stops the processor.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SourceError::Other {
                retryable: true,
                ..
            }
        )
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        SourceError::Io {
            what: what.into(),
            source,
        }
    }
}

/// An acknowledgement that did not reach its source (a broker that did not answer an XACK). The
/// message is then redelivered: at-least-once holds, and event ids let Customer.io de-duplicate.
#[derive(Debug, thiserror::Error)]
#[error("acknowledgement failed: {0}")]
pub struct AckError(#[source] pub BoxError);

impl AckError {
    /// Wraps an adapter's error.
    pub fn new(e: impl Into<BoxError>) -> Self {
        AckError(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_hash_depends_on_origin_and_offset_only() {
        let a = Position::Line {
            origin: "/data/a.jsonl".into(),
            line: 3,
            offset: 120,
        };
        let same_offset_other_line = Position::Line {
            origin: "/data/a.jsonl".into(),
            line: 4,
            offset: 120,
        };
        let other_offset = Position::Line {
            origin: "/data/a.jsonl".into(),
            line: 3,
            offset: 121,
        };
        let other_file = Position::Line {
            origin: "/data/b.jsonl".into(),
            line: 3,
            offset: 120,
        };
        assert_eq!(a.stable_hash(), same_offset_other_line.stable_hash());
        assert_ne!(a.stable_hash(), other_offset.stable_hash());
        assert_ne!(a.stable_hash(), other_file.stable_hash());
        // Pinned: the hash must never change between versions, or redelivered lines would get
        // new ids after an upgrade.
        assert_eq!(
            Position::Sequence {
                origin: "memory".into(),
                index: 0
            }
            .stable_hash(),
            xxhash_rust::xxh3::xxh3_128(b"seq\0memory\0\0\0\0\0\0\0\0\0")
        );
    }

    #[test]
    fn positions_serialize_with_their_kind() {
        let p = Position::Line {
            origin: "/x".into(),
            line: 2,
            offset: 10,
        };
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"line","origin":"/x","line":2,"offset":10}"#
        );
        assert_eq!(serde_json::from_str::<Position>(&json).unwrap(), p);
        assert_eq!(p.to_string(), "/x:2 (byte 10)");
    }
}
