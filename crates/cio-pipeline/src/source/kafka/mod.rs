//! [`KafkaSource`]: a member of a Kafka consumer group (feature `kafka`).
//!
//! # Delivery
//!
//! At least once. Offsets are committed by this source, never by librdkafka on its own
//! (`enable.auto.commit` and `enable.auto.offset.store` are forced off), and only up to the
//! contiguous acknowledged prefix of each partition ([`AckTracker`](crate::checkpoint::AckTracker),
//! the file checkpoint's rule): acks arrive in any order, and a partition's commit moves over a
//! record only once every earlier record of the partition is settled. A record nacked or
//! dropped holds its partition's commit: it is read again, with everything after it, after a
//! restart or a rebalance (Kafka has no per-record redelivery; the processor nacks only at
//! shutdown). Records are spans from the end of the previous record handed out, so offsets that
//! carry no record (transaction markers, compaction) never leave a gap.
//!
//! Commits happen every [`commit_interval`](KafkaSourceBuilder::commit_interval) (a task the
//! source owns), when partitions are revoked, and on [`Source::close`]; all synchronous and
//! serialized, so a periodic commit can never land after the revocation's.
//!
//! # Rebalances
//!
//! A [`ConsumerContext`](rdkafka::consumer::ConsumerContext) sees each rebalance before
//! librdkafka applies it, on the task that polls the consumer (inside [`Source::next`]):
//! - **revoked** partitions are forgotten at once: their messages still queued in the consumer
//!   are skipped, not handed out; their acknowledged prefix is committed while this consumer
//!   still owns them; acks of their messages still in flight ("late acks") are ignored, so they
//!   cannot commit on top of the next owner's progress. The next owner reads those messages
//!   again (the processor's deterministic event ids make the duplicates harmless);
//! - **assigned** partitions start under a new epoch; an ack carries the epoch of its
//!   message's assignment, so a partition revoked and assigned back does not take acks from
//!   before.
//!
//! A rebalance is served only while `next` is being polled, like any librdkafka consumer; the
//! processor polls whenever it has room for a message.
//!
//! # Read-ahead
//!
//! A record that does not settle (a request hung, a batch retrying through an outage) holds its
//! partition's commit, and every later record of the partition that settles waits behind it in
//! the partition's tracker. So each partition may run at most
//! [`read_ahead`](KafkaSourceBuilder::read_ahead) records (default 10,000) past its first
//! unacknowledged one: there it is paused (`rd_kafka_pause_partitions`), while the other
//! partitions go on, and resumed from the record after the last one handed out once half the
//! bound is free. A stuck partition costs its own progress, never the memory of the process.
//!
//! # Lag
//!
//! [`KafkaSource::lag_probe`] gives a [`KafkaLag`]: per assigned partition, the high watermark
//! minus the first offset this consumer has not acknowledged, summed.
//!
//! # Building librdkafka
//!
//! The `kafka` feature builds librdkafka from the copy inside `rdkafka-sys`, with its own
//! `./configure` and `make` (rdkafka's default build; about a minute and a half on two cores,
//! once per target directory). It needs only a C compiler, make, perl and zlib (its headers or
//! libz-sys' bundled copy): no `cmake`, and no `librdkafka-dev`, whose Debian 12 version (2.0.2)
//! is older than the 2.12 rdkafka 0.39 links dynamically against.
//!
//! ```no_run
//! use std::time::Duration;
//! use cio_pipeline::source::{Acknowledge, KafkaSource, LagProbe, Source};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut source = KafkaSource::builder("kafka-1:9092,kafka-2:9092", "cio-workers")
//!     .topic("customer-events")
//!     .commit_interval(Duration::from_secs(1))
//!     .set("session.timeout.ms", "10000")
//!     .open()
//!     .await?;
//! let lag = source.lag_probe(); // for /metrics, while the processor owns the source
//! while let Some(message) = source.next().await? {
//!     // ... deliver message.payload ...
//!     message.ack.ack().await?;
//!     if lag.lag().await? == 0 {
//!         break;
//!     }
//! }
//! source.close().await?; // the last commit, then the group is left
//! # Ok(()) }
//! ```

mod ack;
mod lag;
mod partitions;

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::{Message, Position, Source, SourceError};
pub use ack::KafkaAck;
pub use lag::{KafkaLag, PartitionLag};
use partitions::{GroupContext, Partitions};

/// Settings the source relies on; [`KafkaSourceBuilder::set`] cannot change them.
const FORCED: [(&str, &str); 3] = [
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
    ("enable.partition.eof", "false"),
];

/// Configures a [`KafkaSource`]. See the [module docs](self).
#[derive(Clone)]
pub struct KafkaSourceBuilder {
    brokers: String,
    group: String,
    topics: Vec<String>,
    properties: Vec<(String, String)>,
    commit_interval: Duration,
    broker_timeout: Duration,
    read_ahead: u64,
}

impl fmt::Debug for KafkaSourceBuilder {
    /// Leaves the librdkafka properties out: they may hold credentials (`sasl.password`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSourceBuilder")
            .field("brokers", &self.brokers)
            .field("group", &self.group)
            .field("topics", &self.topics)
            .field("properties", &format_args!("{} set", self.properties.len()))
            .field("commit_interval", &self.commit_interval)
            .field("read_ahead", &self.read_ahead)
            .finish()
    }
}

impl KafkaSourceBuilder {
    /// How many records of one partition may be handed out past its first unacknowledged
    /// record (default 10,000): records in flight, and records acknowledged behind that gap,
    /// which the commit cannot pass yet and this source must remember. At the bound the
    /// partition is paused (librdkafka stops fetching it and drops what it had fetched); it
    /// resumes, from the record after the last one handed out, once its first
    /// unacknowledged records settle and half the bound is free. One stuck record so costs
    /// one partition, not memory, and the other partitions go on.
    pub fn read_ahead(mut self, records: u64) -> Self {
        self.read_ahead = records.max(1);
        self
    }

    /// Subscribes to `topic` too.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topics.push(topic.into());
        self
    }

    /// How often the acknowledged prefixes are committed (default 1 s). A crash re-reads at most
    /// what was acknowledged in the last interval, plus what was in flight.
    pub fn commit_interval(mut self, every: Duration) -> Self {
        self.commit_interval = every.max(Duration::from_millis(10));
        self
    }

    /// How long a broker request of the lag probe may take (default 5 s).
    pub fn broker_timeout(mut self, timeout: Duration) -> Self {
        self.broker_timeout = timeout;
        self
    }

    /// Sets any librdkafka consumer property (`session.timeout.ms`, `security.protocol`,
    /// `sasl.password`, ...). `auto.offset.reset` defaults to `earliest`, so a new group reads
    /// the topic from its start. The commit settings the delivery guarantee rests on
    /// (`enable.auto.commit`, `enable.auto.offset.store`) cannot be changed.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((key.into(), value.into()));
        self
    }

    /// Creates the consumer, subscribes, and starts the committer task (owned by the source,
    /// stopped by [`Source::close`] or a drop). Joining the group happens on the first
    /// [`Source::next`]. Call it inside a tokio runtime.
    pub async fn open(self) -> Result<KafkaSource, SourceError> {
        if self.group.trim().is_empty() {
            return Err(SourceError::Config(
                "a Kafka source needs a consumer group".into(),
            ));
        }
        if self.topics.is_empty() || self.topics.iter().any(|t| t.trim().is_empty()) {
            return Err(SourceError::Config(
                "a Kafka source needs at least one topic, and no empty topic name".into(),
            ));
        }
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group)
            .set("auto.offset.reset", "earliest");
        for (k, v) in &self.properties {
            if FORCED.iter().any(|(f, _)| f == k) {
                tracing::warn!(property = %k, "ignored: the Kafka source commits offsets itself");
                continue;
            }
            config.set(k, v);
        }
        for (k, v) in FORCED {
            config.set(k, v);
        }
        let partitions = Arc::new(Partitions::new(self.read_ahead));
        let context = GroupContext {
            partitions: partitions.clone(),
        };
        let consumer: StreamConsumer<GroupContext> = config
            .create_with_context(context)
            .map_err(|e| SourceError::Config(format!("cannot create the Kafka consumer: {e}")))?;
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| SourceError::Config(format!("cannot subscribe to {topics:?}: {e}")))?;
        let consumer = Arc::new(consumer);
        let cancel = CancellationToken::new();
        let committer = tokio::spawn(run_committer(
            Arc::downgrade(&consumer),
            partitions.clone(),
            self.commit_interval,
            cancel.clone(),
        ));
        Ok(KafkaSource {
            consumer: Some(consumer),
            partitions,
            committer: Some(committer),
            cancel,
            broker_timeout: self.broker_timeout,
        })
    }
}

/// A member of a Kafka consumer group: messages of the partitions assigned to it, with
/// per-partition contiguous commits. See the [module docs](self).
///
/// Positions are [`Position::Sequence`] with origin `topic/partition` and the offset as index:
/// the same for every redelivery, so derived event ids de-duplicate them.
pub struct KafkaSource {
    consumer: Option<Arc<StreamConsumer<GroupContext>>>,
    partitions: Arc<Partitions>,
    committer: Option<JoinHandle<()>>,
    cancel: CancellationToken,
    broker_timeout: Duration,
}

impl fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSource")
            .field("assigned", &self.partitions.assigned())
            .field("open", &self.consumer.is_some())
            .finish()
    }
}

impl KafkaSource {
    /// A source in consumer group `group` of the cluster reached at `brokers`
    /// (`host:port,host:port`).
    pub fn builder(brokers: impl Into<String>, group: impl Into<String>) -> KafkaSourceBuilder {
        KafkaSourceBuilder {
            brokers: brokers.into(),
            group: group.into(),
            topics: Vec::new(),
            properties: Vec::new(),
            commit_interval: Duration::from_secs(1),
            broker_timeout: Duration::from_secs(5),
            read_ahead: DEFAULT_READ_AHEAD,
        }
    }

    /// A probe of this consumer's lag, usable while the processor owns the source.
    pub fn lag_probe(&self) -> KafkaLag {
        KafkaLag {
            consumer: self
                .consumer
                .as_ref()
                .map(Arc::downgrade)
                .unwrap_or_default(),
            partitions: self.partitions.clone(),
            timeout: self.broker_timeout,
        }
    }

    /// The partitions assigned to this consumer now, as `(topic, partition)`, sorted.
    pub fn assignment(&self) -> Vec<(String, i32)> {
        self.partitions.assigned()
    }

    /// Acks that arrived after their partition was revoked, and so were not committed.
    pub fn late_acks(&self) -> u64 {
        self.partitions.late_acks.load(Ordering::Relaxed)
    }

    /// Times a partition was paused at its [read-ahead](KafkaSourceBuilder::read_ahead).
    pub fn pauses(&self) -> u64 {
        self.partitions.pauses.load(Ordering::Relaxed)
    }

    /// Commits that failed (each is retried at the next interval).
    pub fn commit_failures(&self) -> u64 {
        self.partitions.commit_failures.load(Ordering::Relaxed)
    }

    /// Commits the acknowledged prefixes now, without waiting for the interval.
    pub async fn commit(&self) -> Result<(), SourceError> {
        let Some(consumer) = self.consumer.clone() else {
            return Err(closed());
        };
        let partitions = self.partitions.clone();
        tokio::task::spawn_blocking(move || partitions.commit(&*consumer))
            .await
            .map_err(|e| SourceError::Other {
                retryable: true,
                source: e.to_string().into(),
            })?
            .map(drop)
            .map_err(kafka_error)
    }
}

impl Source for KafkaSource {
    type Ack = KafkaAck;

    /// Cancel safe: `StreamConsumer::recv` is, and nothing is held between its return and this
    /// one's. Messages of partitions no longer assigned are skipped. A partition at its
    /// read-ahead is paused here, and resumed here once acks freed half of it.
    async fn next(&mut self) -> Result<Option<Message<KafkaAck>>, SourceError> {
        let consumer = self.consumer.as_ref().ok_or_else(closed)?;
        loop {
            let resumable = self.partitions.take_resumable();
            if !resumable.is_empty() {
                let tpl = partition_list(&resumable);
                tracing::debug!(partitions = ?resumable, "read-ahead free again: partitions resumed");
                consumer.resume(&tpl).map_err(kafka_error)?;
            }
            let message = tokio::select! {
                m = consumer.recv() => m.map_err(kafka_error)?,
                // An ack freed a paused partition: resume it, then wait again.
                _ = self.partitions.wake.notified() => continue,
            };
            let (topic, partition, offset) =
                (message.topic(), message.partition(), message.offset());
            let Some(handed) = self.partitions.hand_out(topic, partition, offset) else {
                tracing::debug!(
                    topic,
                    partition,
                    offset,
                    "message of a revoked partition skipped"
                );
                continue;
            };
            if handed.pause {
                let tpl = partition_list(&[(Arc::from(topic), partition)]);
                tracing::debug!(
                    topic,
                    partition,
                    offset,
                    "partition paused: its read-ahead is full behind its first unacknowledged record"
                );
                consumer.pause(&tpl).map_err(kafka_error)?;
            }
            let payload = Bytes::copy_from_slice(message.payload().unwrap_or_default());
            let ack = KafkaAck {
                partitions: self.partitions.clone(),
                topic: Arc::from(topic),
                partition,
                epoch: handed.epoch,
                start: handed.start,
                end: handed.end,
            };
            return Ok(Some(Message::new(
                payload,
                Position::Sequence {
                    origin: handed.origin,
                    index: handed.end.offset - 1,
                },
                ack,
            )));
        }
    }

    /// Stops the committer, commits the acknowledged prefixes, and leaves the group (the last
    /// revocation commits acks that arrived meanwhile), in a blocking thread.
    async fn close(&mut self) -> Result<(), SourceError> {
        self.cancel.cancel();
        if let Some(committer) = self.committer.take() {
            let _ = committer.await;
        }
        let Some(consumer) = self.consumer.take() else {
            return Ok(());
        };
        let partitions = self.partitions.clone();
        let committed = tokio::task::spawn_blocking(move || {
            let committed = partitions.commit(&*consumer);
            consumer.unsubscribe();
            // The last strong reference (lag probes hold weak ones): librdkafka's close, which
            // serves the final revocation and leaves the group, runs here.
            drop(consumer);
            committed
        })
        .await
        .map_err(|e| SourceError::Other {
            retryable: false,
            source: e.to_string().into(),
        })?;
        committed.map(drop).map_err(kafka_error)
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        // The committer holds the consumer only weakly; stopping it is enough. Dropping the
        // consumer here closes it in this thread (librdkafka blocks until the group is left):
        // call `close` to do that off the runtime.
        self.cancel.cancel();
    }
}

async fn run_committer(
    consumer: Weak<StreamConsumer<GroupContext>>,
    partitions: Arc<Partitions>,
    every: Duration,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(consumer) = consumer.upgrade() else {
            return;
        };
        let partitions = partitions.clone();
        let done = tokio::task::spawn_blocking(move || partitions.commit(&*consumer)).await;
        match done {
            Ok(Ok(n)) if n > 0 => tracing::trace!(partitions = n, "offsets committed"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "offset commit failed; retrying at the next interval")
            }
            Err(e) => tracing::error!(error = %e, "offset commit task failed"),
        }
    }
}

/// [`KafkaSourceBuilder::read_ahead`]'s default: per partition, about 400 KB of acks waiting
/// behind a gap at the worst.
const DEFAULT_READ_AHEAD: u64 = 10_000;

fn partition_list(partitions: &[(Arc<str>, i32)]) -> rdkafka::TopicPartitionList {
    let mut tpl = rdkafka::TopicPartitionList::with_capacity(partitions.len());
    for (topic, partition) in partitions {
        tpl.add_partition(topic, *partition);
    }
    tpl
}

fn closed() -> SourceError {
    SourceError::Config("the Kafka source is closed".into())
}

/// A librdkafka error as a source error: consumption errors are transient (a broker away, a
/// leader moving); fatal ones and the rest are not.
pub(crate) fn kafka_error(e: KafkaError) -> SourceError {
    let retryable = match &e {
        KafkaError::MessageConsumptionFatal(_) => false,
        KafkaError::MessageConsumption(_)
        | KafkaError::ConsumerCommit(_)
        | KafkaError::MetadataFetch(_)
        | KafkaError::OffsetFetch(_) => true,
        other => other.rdkafka_error_code().is_some_and(|c| {
            use rdkafka::types::RDKafkaErrorCode as C;
            matches!(
                c,
                C::BrokerTransportFailure
                    | C::AllBrokersDown
                    | C::RequestTimedOut
                    | C::OperationTimedOut
            )
        }),
    };
    SourceError::Other {
        retryable,
        source: Box::new(e),
    }
}
