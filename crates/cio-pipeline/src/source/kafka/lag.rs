//! [`KafkaLag`]: how far this consumer's partitions are behind their high watermarks.

use std::sync::{Arc, Weak};
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Offset;

use super::kafka_error;
use super::partitions::{GroupContext, Partitions};
use crate::source::{LagProbe, SourceError};

/// The lag of one assigned partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionLag {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset the next produced record will get.
    pub high_watermark: i64,
    /// The first offset not acknowledged by this consumer (what it will commit), or where it
    /// will start reading when it has read nothing yet.
    pub next_uncommitted: i64,
    /// `high_watermark - next_uncommitted`, at least 0.
    pub lag: u64,
}

/// Reports the lag of the partitions assigned to a [`KafkaSource`](super::KafkaSource):
/// per partition, its high watermark minus the first offset this consumer has not acknowledged
/// (so records in flight count as lag until they are acknowledged), summed.
///
/// Where nothing was read from a partition in its current assignment, the start is the
/// consumer's fetch position; before the first fetch, the group's committed offset; with no
/// commit either, the low watermark (everything counts). Each call asks the partition leaders
/// for their watermarks (one round trip per partition, in a blocking thread), so call it at a
/// metrics scrape's pace, not per message. Every replica reports only its own partitions: the
/// group's lag is the sum over replicas.
#[derive(Clone)]
pub struct KafkaLag {
    pub(crate) consumer: Weak<StreamConsumer<GroupContext>>,
    pub(crate) partitions: Arc<Partitions>,
    pub(crate) timeout: Duration,
}

impl std::fmt::Debug for KafkaLag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLag")
            .field("open", &(self.consumer.strong_count() > 0))
            .finish()
    }
}

impl KafkaLag {
    /// The lag of each assigned partition, sorted by topic and partition.
    pub async fn partitions(&self) -> Result<Vec<PartitionLag>, SourceError> {
        let consumer = self.consumer.clone();
        let partitions = self.partitions.clone();
        let timeout = self.timeout;
        tokio::task::spawn_blocking(move || {
            let consumer = consumer
                .upgrade()
                .ok_or_else(|| SourceError::Config("the Kafka source is closed".into()))?;
            measure(&consumer, &partitions, timeout)
        })
        .await
        .map_err(|e| SourceError::Other {
            retryable: true,
            source: e.to_string().into(),
        })?
    }
}

impl LagProbe for KafkaLag {
    async fn lag(&self) -> Result<u64, SourceError> {
        Ok(self.partitions().await?.iter().map(|p| p.lag).sum())
    }
}

fn measure(
    consumer: &StreamConsumer<GroupContext>,
    partitions: &Partitions,
    timeout: Duration,
) -> Result<Vec<PartitionLag>, SourceError> {
    let prefixes = partitions.prefixes();
    let position = consumer.position().map_err(kafka_error)?;
    // Asked only when a partition has neither a prefix nor a fetch position.
    let mut committed = None;
    let mut out = Vec::with_capacity(prefixes.len());
    for p in prefixes {
        let (low, high) = consumer
            .fetch_watermarks(&p.topic, p.partition, timeout)
            .map_err(kafka_error)?;
        let known = |list: &rdkafka::TopicPartitionList| match list
            .find_partition(&p.topic, p.partition)
            .map(|e| e.offset())
        {
            Some(Offset::Offset(o)) if o >= 0 => Some(o),
            _ => None,
        };
        let start = match p.next_uncommitted {
            Some(o) => i64::try_from(o).unwrap_or(i64::MAX),
            None => match known(&position) {
                Some(o) => o,
                None => {
                    if committed.is_none() {
                        committed = Some(consumer.committed(timeout).map_err(kafka_error)?);
                    }
                    committed.as_ref().and_then(known).unwrap_or(low)
                }
            },
        };
        out.push(PartitionLag {
            topic: p.topic.to_string(),
            partition: p.partition,
            high_watermark: high,
            next_uncommitted: start,
            lag: u64::try_from(high - start).unwrap_or(0),
        });
    }
    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(out)
}
