//! [`MemorySource`]: messages from a `Vec` or any iterator, with a log of every settlement.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::{AckError, Acknowledge, Message, Position, Source, SourceError};

/// Messages from a `Vec` or an iterator, for tests, examples and benches. Every settlement is
/// recorded in an [`AckLog`], so a test can check which messages were acked, nacked or dropped.
///
/// Message `i` (0-based) has [`Position::Sequence`] `{origin: "memory", index: i}`, the same in
/// every run, so derived event ids are reproducible in tests. Before sending real events without
/// ids through one, give it an origin of its own ([`MemorySource::with_origin`]): two runs under
/// the same origin derive the same ids, and Customer.io would drop the second run's events as
/// duplicates. The source ends when the iterator does.
///
/// ```
/// use cio_pipeline::source::{Acknowledge, MemorySource, Source};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut source = MemorySource::new(vec!["first", "second", "third"]);
/// let log = source.ack_log();
/// let first = source.next().await?.expect("a message");
/// let second = source.next().await?.expect("a message");
/// second.ack.ack().await?;
/// first.ack.nack().await?;
/// drop(source.next().await?); // the third message's handle is dropped unsettled
/// assert_eq!((log.acked(), log.nacked(), log.dropped()), (vec![1], vec![0], vec![2]));
/// # Ok(()) }
/// ```
pub struct MemorySource {
    items: Box<dyn Iterator<Item = Bytes> + Send>,
    next_index: u64,
    origin: Arc<str>,
    log: AckLog,
}

impl std::fmt::Debug for MemorySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySource")
            .field("next_index", &self.next_index)
            .finish()
    }
}

impl MemorySource {
    /// A source of these payloads, in order. The iterator is consumed lazily, so a generator of
    /// a million messages costs no memory up front.
    pub fn new<I>(items: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<Bytes> + 'static,
        I::IntoIter: Send + 'static,
    {
        MemorySource {
            items: Box::new(items.into_iter().map(Into::into)),
            next_index: 0,
            origin: Arc::from("memory"),
            log: AckLog::default(),
        }
    }

    /// Names the origin in positions (default `memory`): two memory sources with different
    /// origins give different deterministic ids for the same index.
    pub fn with_origin(mut self, origin: &str) -> Self {
        self.origin = Arc::from(origin);
        self
    }

    /// The log of settlements, shared with every handle this source gives out.
    pub fn ack_log(&self) -> AckLog {
        self.log.clone()
    }
}

impl Source for MemorySource {
    type Ack = MemoryAck;

    async fn next(&mut self) -> Result<Option<Message<MemoryAck>>, SourceError> {
        let Some(payload) = self.items.next() else {
            return Ok(None);
        };
        let index = self.next_index;
        self.next_index += 1;
        Ok(Some(Message::new(
            payload,
            Position::Sequence {
                origin: self.origin.clone(),
                index,
            },
            MemoryAck {
                index,
                log: Some(self.log.clone()),
            },
        )))
    }
}

/// Which messages of a [`MemorySource`] were acked, nacked, or dropped unsettled, in the order
/// it happened. Clones share one log.
#[derive(Clone, Debug, Default)]
pub struct AckLog {
    inner: Arc<Mutex<Settled>>,
}

#[derive(Debug, Default)]
struct Settled {
    acked: Vec<u64>,
    nacked: Vec<u64>,
    dropped: Vec<u64>,
}

impl AckLog {
    fn lock(&self) -> MutexGuard<'_, Settled> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Indices acked, in the order of the acks.
    pub fn acked(&self) -> Vec<u64> {
        self.lock().acked.clone()
    }

    /// Indices nacked, in order.
    pub fn nacked(&self) -> Vec<u64> {
        self.lock().nacked.clone()
    }

    /// Indices whose handle was dropped without ack or nack, in order.
    pub fn dropped(&self) -> Vec<u64> {
        self.lock().dropped.clone()
    }
}

/// The handle of a [`MemorySource`] message: records its settlement in the [`AckLog`].
#[derive(Debug)]
pub struct MemoryAck {
    index: u64,
    log: Option<AckLog>,
}

impl MemoryAck {
    /// The message's index.
    pub fn index(&self) -> u64 {
        self.index
    }
}

impl Acknowledge for MemoryAck {
    async fn ack(self) -> Result<(), AckError> {
        self.ack_now().unwrap_or(Ok(()))
    }

    fn ack_now(mut self) -> Result<Result<(), AckError>, Self> {
        if let Some(log) = self.log.take() {
            log.lock().acked.push(self.index);
        }
        Ok(Ok(()))
    }

    async fn nack(mut self) -> Result<(), AckError> {
        if let Some(log) = self.log.take() {
            log.lock().nacked.push(self.index);
        }
        Ok(())
    }
}

impl Drop for MemoryAck {
    fn drop(&mut self) {
        if let Some(log) = self.log.take() {
            log.lock().dropped.push(self.index);
        }
    }
}
