//! [`RedisStreamSource`]: a member of a Redis Streams consumer group (feature `redis`).
//!
//! # Delivery
//!
//! At least once, by the group's pending entries list (PEL):
//! - new entries come from `XREADGROUP ... STREAMS <stream> >` (up to
//!   [`batch`](RedisStreamSourceBuilder::batch) at a time, blocking up to
//!   [`block`](RedisStreamSourceBuilder::block)) and enter the PEL under this consumer's name;
//! - [`ack`](crate::source::Acknowledge::ack) is `XACK`; a nack or a dropped handle leaves the
//!   entry pending;
//! - every [`claim_every`](RedisStreamSourceBuilder::claim_every), `XAUTOCLAIM` takes over
//!   entries pending longer than [`claim_idle`](RedisStreamSourceBuilder::claim_idle) under any
//!   consumer of the group: a nacked entry, or the work of a member that died (its process
//!   killed, its machine gone). The claim makes them this consumer's and counts a delivery;
//! - an entry whose delivery count (read with `XPENDING` after the claim) exceeds
//!   [`max_deliveries`](RedisStreamSourceBuilder::max_deliveries) is a poison entry: it is
//!   copied to the [dead-letter stream](RedisStreamSourceBuilder::dead_letter_stream) with its
//!   fields and the reason, and `XACK`ed, in one `MULTI`/`EXEC`. So is an entry without the
//!   [payload field](RedisStreamSourceBuilder::field).
//!
//! Members that are gone leave their names in the group (every process is a new member by
//! default). After each sweep of the pending list, members idle longer than
//! [`prune_idle`](RedisStreamSourceBuilder::prune_idle) (default 1 h) with nothing pending,
//! their entries claimed by the sweep, are removed (`XGROUP DELCONSUMER`, checked and done in
//! one script so a member that comes back cannot lose an entry to it).
//!
//! The group is created (`XGROUP CREATE ... MKSTREAM`) if it does not exist, at
//! [`group_start`](RedisStreamSourceBuilder::group_start) (default `0`: the whole stream).
//! Positions are [`Position::Id`] with the stream key and the entry id, the same for every
//! redelivery, so derived event ids de-duplicate them.
//!
//! **Cancel safety.** Entries read and not yet handed out wait in the source. If `next` is
//! dropped while `XREADGROUP` is on the wire, what it returns is pending under this consumer's
//! name and is claimed again after `claim_idle`: late, not lost.
//!
//! **Connections.** Two [`ConnectionManager`]s (each reconnects by itself): one only for the
//! blocking `XREADGROUP`, which would hold up every command queued behind it on a shared
//! connection, and one for acks, claims, dead letters and the lag.
//!
//! # Lag
//!
//! [`RedisStreamSource::lag_probe`] gives a [`RedisStreamLag`]: `XINFO GROUPS` `lag`
//! (entries not delivered to the group yet) plus `pending` (delivered, not acknowledged).
//!
//! ```no_run
//! use std::time::Duration;
//! use cio_pipeline::source::{Acknowledge, RedisStreamSource, Source};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut source = RedisStreamSource::builder("redis://127.0.0.1:6379", "events", "cio-workers")
//!     .claim_idle(Duration::from_secs(30))
//!     .max_deliveries(std::num::NonZeroU32::new(5).unwrap())
//!     .open()
//!     .await?;
//! while let Some(message) = source.next().await? {
//!     // ... deliver message.payload ...
//!     message.ack.ack().await?;
//! }
//! # Ok(()) }
//! ```

mod ack;
mod claim;
mod lag;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{StreamId, StreamPendingCountReply, StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, ErrorKind, RedisError, Value};
use tokio::time::Instant;

use super::{Message, Position, Source, SourceError};
pub use ack::RedisStreamAck;
use claim::field_bytes;
pub use lag::{RedisStreamLag, StreamBacklog};

/// Configures a [`RedisStreamSource`]. See the [module docs](self).
#[derive(Clone)]
pub struct RedisStreamSourceBuilder {
    url: String,
    stream: String,
    group: String,
    consumer: Option<String>,
    field: String,
    batch: usize,
    block: Duration,
    claim_idle: Duration,
    claim_every: Option<Duration>,
    max_deliveries: NonZeroU32,
    dead_letter_stream: Option<String>,
    group_start: String,
    until_drained: bool,
    timeout: Duration,
    prune_idle: Option<Duration>,
}

impl fmt::Debug for RedisStreamSourceBuilder {
    /// Leaves the URL out: it may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStreamSourceBuilder")
            .field("stream", &self.stream)
            .field("group", &self.group)
            .field("consumer", &self.consumer)
            .field("claim_idle", &self.claim_idle)
            .field("max_deliveries", &self.max_deliveries)
            .finish_non_exhaustive()
    }
}

impl RedisStreamSourceBuilder {
    /// This member's name in the group (default: unique to the process and the source, so a
    /// restart is a new member and the old name's pending entries are claimed after
    /// `claim_idle`). Two live members must never share a name.
    pub fn consumer(mut self, name: impl Into<String>) -> Self {
        self.consumer = Some(name.into());
        self
    }

    /// The entry field that holds the payload (default `payload`).
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = field.into();
        self
    }

    /// Entries asked for per `XREADGROUP` or `XAUTOCLAIM` (default 100, at least 1).
    pub fn batch(mut self, n: usize) -> Self {
        self.batch = n.max(1);
        self
    }

    /// How long one `XREADGROUP` waits for new entries (default 1 s, at least 1 ms).
    pub fn block(mut self, block: Duration) -> Self {
        self.block = block.max(Duration::from_millis(1));
        self
    }

    /// How long an entry stays pending under a consumer before another may claim it (default
    /// 60 s). Longer than the slowest delivery, or an entry still being worked on is delivered
    /// twice (harmless with event ids, but wasted).
    pub fn claim_idle(mut self, idle: Duration) -> Self {
        self.claim_idle = idle.max(Duration::from_millis(1));
        self
    }

    /// How often to look for idle entries to claim (default: half of `claim_idle`, between
    /// 100 ms and 30 s).
    pub fn claim_every(mut self, every: Duration) -> Self {
        self.claim_every = Some(every.max(Duration::from_millis(1)));
        self
    }

    /// Deliveries after which an entry is a poison entry and goes to the dead-letter stream
    /// instead of being delivered again (default 5).
    pub fn max_deliveries(mut self, n: NonZeroU32) -> Self {
        self.max_deliveries = n;
        self
    }

    /// How long a member of the group must have been idle, with nothing pending, to be
    /// removed as gone (default 1 h; `None` never removes any). Idle means no read and no
    /// claim: a live member reads every [`block`](Self::block). Keep it well above
    /// `claim_idle`, so the sweep has claimed a dead member's entries first.
    pub fn prune_idle(mut self, idle: Option<Duration>) -> Self {
        self.prune_idle = idle;
        self
    }

    /// The stream poison entries go to (default `<stream>:dead`).
    pub fn dead_letter_stream(mut self, stream: impl Into<String>) -> Self {
        self.dead_letter_stream = Some(stream.into());
        self
    }

    /// Where a group created by this source starts: `0` (default, every entry in the stream)
    /// or `$` (only entries added from now on).
    pub fn group_start(mut self, id: impl Into<String>) -> Self {
        self.group_start = id.into();
        self
    }

    /// Ends the source (`next` gives `Ok(None)`) once the group has nothing left: no entry
    /// undelivered and none pending under any member. For batch runs and tests; a worker
    /// normally follows the stream until it is stopped.
    pub fn until_drained(mut self) -> Self {
        self.until_drained = true;
        self
    }

    /// How long any command but the blocking read may take (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connects (two connections), creates the group if it does not exist, and returns the
    /// source.
    pub async fn open(self) -> Result<RedisStreamSource, SourceError> {
        if self.stream.is_empty() || self.group.is_empty() || self.field.is_empty() {
            return Err(SourceError::Config(
                "a Redis Streams source needs a stream, a group and a payload field".into(),
            ));
        }
        let client = redis::Client::open(self.url.as_str())
            .map_err(|e| SourceError::Config(format!("invalid Redis URL: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout)
            // One quick retry: the processor backs off on a retryable error by itself.
            .set_number_of_retries(1)
            .set_max_delay(200);
        let writer = ConnectionManager::new_with_config(client.clone(), config.clone())
            .await
            .map_err(redis_error)?;
        let reader = ConnectionManager::new_with_config(
            client,
            config.set_response_timeout(self.block + self.timeout),
        )
        .await
        .map_err(redis_error)?;
        let stream: Arc<str> = Arc::from(self.stream.as_str());
        let claim_every = self.claim_every.unwrap_or_else(|| {
            (self.claim_idle / 2).clamp(Duration::from_millis(100), Duration::from_secs(30))
        });
        let mut source = RedisStreamSource {
            dead_letters: self
                .dead_letter_stream
                .unwrap_or_else(|| format!("{}:dead", self.stream)),
            stream,
            group: Arc::from(self.group.as_str()),
            consumer: self
                .consumer
                .unwrap_or_else(|| super::unique_origin("cio").to_string()),
            field: self.field,
            batch: self.batch,
            block: self.block,
            claim_idle: self.claim_idle,
            claim_every,
            max_deliveries: u64::from(self.max_deliveries.get()),
            group_start: self.group_start,
            until_drained: self.until_drained,
            reader,
            writer,
            buffer: VecDeque::new(),
            claim_cursor: "0-0".into(),
            next_claim: Instant::now(),
            prune_idle: self.prune_idle,
            closed: false,
            stats: Arc::default(),
        };
        source.create_group().await?;
        Ok(source)
    }
}

/// Counts of what the source did besides handing out entries.
#[derive(Debug, Default)]
struct Stats {
    claimed: AtomicU64,
    dead_lettered: AtomicU64,
    pruned: AtomicU64,
}

/// An entry read or claimed, not handed out yet.
struct Entry {
    id: String,
    fields: HashMap<String, Value>,
    deliveries: u64,
}

/// A member of a Redis Streams consumer group. See the [module docs](self).
pub struct RedisStreamSource {
    stream: Arc<str>,
    group: Arc<str>,
    consumer: String,
    field: String,
    dead_letters: String,
    batch: usize,
    block: Duration,
    claim_idle: Duration,
    claim_every: Duration,
    max_deliveries: u64,
    group_start: String,
    until_drained: bool,
    reader: ConnectionManager,
    writer: ConnectionManager,
    buffer: VecDeque<Entry>,
    claim_cursor: String,
    next_claim: Instant,
    prune_idle: Option<Duration>,
    closed: bool,
    stats: Arc<Stats>,
}

impl fmt::Debug for RedisStreamSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStreamSource")
            .field("stream", &self.stream)
            .field("group", &self.group)
            .field("consumer", &self.consumer)
            .field("buffered", &self.buffer.len())
            .finish_non_exhaustive()
    }
}

impl RedisStreamSource {
    /// A source reading `stream` as a member of `group`, on the Redis at `url`
    /// (`redis://[:password@]host:port[/db]`).
    pub fn builder(
        url: impl Into<String>,
        stream: impl Into<String>,
        group: impl Into<String>,
    ) -> RedisStreamSourceBuilder {
        RedisStreamSourceBuilder {
            url: url.into(),
            stream: stream.into(),
            group: group.into(),
            consumer: None,
            field: "payload".into(),
            batch: 100,
            block: Duration::from_secs(1),
            claim_idle: Duration::from_secs(60),
            claim_every: None,
            max_deliveries: NonZeroU32::new(5).unwrap_or(NonZeroU32::MIN),
            dead_letter_stream: None,
            group_start: "0".into(),
            until_drained: false,
            timeout: Duration::from_secs(5),
            prune_idle: Some(Duration::from_secs(3600)),
        }
    }

    /// A probe of the group's backlog, usable while the processor owns the source.
    pub fn lag_probe(&self) -> RedisStreamLag {
        RedisStreamLag {
            conn: self.writer.clone(),
            stream: self.stream.clone(),
            group: self.group.clone(),
        }
    }

    /// This member's name in the group.
    pub fn consumer_name(&self) -> &str {
        &self.consumer
    }

    /// The dead-letter stream.
    pub fn dead_letter_stream(&self) -> &str {
        &self.dead_letters
    }

    /// Entries this source claimed from idle pending lists (its own or other members').
    pub fn claimed(&self) -> u64 {
        self.stats.claimed.load(Ordering::Relaxed)
    }

    /// Members of the group this source removed as gone.
    pub fn pruned(&self) -> u64 {
        self.stats.pruned.load(Ordering::Relaxed)
    }

    /// Entries this source moved to the dead-letter stream.
    pub fn dead_lettered(&self) -> u64 {
        self.stats.dead_lettered.load(Ordering::Relaxed)
    }

    async fn create_group(&mut self) -> Result<(), SourceError> {
        let created: Result<(), RedisError> = self
            .writer
            .xgroup_create_mkstream(&*self.stream, &*self.group, &self.group_start)
            .await;
        match created {
            Ok(()) => {
                tracing::info!(stream = %self.stream, group = %self.group, start = %self.group_start, "consumer group created");
                Ok(())
            }
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(redis_error(e)),
        }
    }

    /// `XREADGROUP >`: new entries into the buffer. Returns how many came.
    async fn read_new(&mut self) -> Result<usize, SourceError> {
        let options = StreamReadOptions::default()
            .group(&*self.group, &self.consumer)
            .count(self.batch)
            .block(self.block.as_millis().try_into().unwrap_or(usize::MAX));
        let read: Result<Option<StreamReadReply>, RedisError> = self
            .reader
            .xread_options(&[&*self.stream], &[">"], &options)
            .await;
        let reply = match read {
            Ok(reply) => reply,
            Err(e) if e.code() == Some("NOGROUP") => {
                // The stream or the group was deleted under us: start again.
                tracing::warn!(stream = %self.stream, group = %self.group, "consumer group gone; creating it again");
                self.create_group().await?;
                return Ok(0);
            }
            Err(e) => return Err(redis_error(e)),
        };
        let mut n = 0;
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            for StreamId { id, map } in key.ids {
                self.buffer.push_back(Entry {
                    id,
                    fields: map,
                    deliveries: 1,
                });
                n += 1;
            }
        }
        Ok(n)
    }

    /// Whether the group has nothing left at all (for `until_drained`).
    async fn drained(&self) -> Result<bool, SourceError> {
        let backlog = self.lag_probe().backlog().await?;
        Ok(self.buffer.is_empty() && backlog.total() == 0)
    }
}

impl Source for RedisStreamSource {
    type Ack = RedisStreamAck;

    /// See the module docs for cancel safety.
    async fn next(&mut self) -> Result<Option<Message<RedisStreamAck>>, SourceError> {
        if self.closed {
            return Err(SourceError::Config(
                "the Redis Streams source is closed".into(),
            ));
        }
        loop {
            if let Some(entry) = self.buffer.pop_front() {
                let Some(payload) = entry.fields.get(&self.field).map(field_bytes) else {
                    let reason = format!("the entry has no field `{}`", self.field);
                    self.dead_letter(&entry, &reason).await?;
                    continue;
                };
                let payload = Bytes::copy_from_slice(payload);
                let ack = RedisStreamAck {
                    conn: self.writer.clone(),
                    stream: self.stream.clone(),
                    group: self.group.clone(),
                    id: entry.id.clone(),
                    deliveries: entry.deliveries,
                };
                return Ok(Some(Message::new(
                    payload,
                    Position::Id {
                        origin: self.stream.clone(),
                        id: entry.id,
                    },
                    ack,
                )));
            }
            let now = Instant::now();
            if now >= self.next_claim {
                let more = self.claim().await?;
                if !more {
                    // A whole sweep done: what gone members held is claimed. Pruning is
                    // housekeeping: a Redis that refuses it (an ACL without EVAL) only warns.
                    if let Err(e) = self.prune().await {
                        tracing::warn!(stream = %self.stream, group = %self.group, error = %e, "cannot remove gone group members; they are left in the group");
                    }
                }
                self.next_claim = if more { now } else { now + self.claim_every };
                if !self.buffer.is_empty() {
                    continue;
                }
            }
            let read = self.read_new().await?;
            if read == 0 && self.until_drained && self.drained().await? {
                return Ok(None);
            }
        }
    }

    /// Leaves the group's member list if nothing is pending under this name (entries still
    /// pending keep the name, so that other members claim them).
    async fn close(&mut self) -> Result<(), SourceError> {
        if std::mem::replace(&mut self.closed, true) {
            return Ok(());
        }
        let mine: StreamPendingCountReply = self
            .writer
            .xpending_consumer_count(&*self.stream, &*self.group, "-", "+", 1, &self.consumer)
            .await
            .map_err(redis_error)?;
        if mine.ids.is_empty() {
            let _: usize = self
                .writer
                .xgroup_delconsumer(&*self.stream, &*self.group, &self.consumer)
                .await
                .map_err(redis_error)?;
        }
        Ok(())
    }
}

/// A Redis error as a source error: connection trouble and a server loading or failing over
/// are transient, the rest (a wrong type at the key, a refused command) is not.
pub(crate) fn redis_error(e: RedisError) -> SourceError {
    let retryable = matches!(
        e.kind(),
        ErrorKind::IoError
            | ErrorKind::BusyLoadingError
            | ErrorKind::TryAgain
            | ErrorKind::ClusterDown
            | ErrorKind::MasterDown
            | ErrorKind::ReadOnly
    ) || e.is_timeout()
        || e.is_connection_dropped();
    SourceError::Other {
        retryable,
        source: Box::new(e),
    }
}
