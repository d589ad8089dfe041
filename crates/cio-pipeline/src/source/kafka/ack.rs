//! [`KafkaAck`]: settles one record of one partition assignment.

use std::future::{ready, Future};
use std::sync::Arc;

use super::partitions::Partitions;
use crate::checkpoint::Mark;
use crate::source::{AckError, Acknowledge};

/// The acknowledgement handle of a [`KafkaSource`](super::KafkaSource) message.
///
/// An ack marks the record settled; the partition's commit moves over it once every earlier
/// record of the partition is settled too (the committer commits every
/// [`commit_interval`](super::KafkaSourceBuilder::commit_interval), on revocation and on
/// [`close`](crate::Source::close)). A nack, or a drop, holds the partition's commit before the
/// record, so it is read again after a restart or a rebalance; Kafka has no per-record
/// redelivery.
///
/// An ack that arrives after its partition was revoked (or revoked and assigned again) is
/// ignored: the next owner reads the record again from the commit made at revocation.
pub struct KafkaAck {
    pub(crate) partitions: Arc<Partitions>,
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    pub(crate) epoch: u64,
    pub(crate) start: u64,
    pub(crate) end: Mark,
}

impl KafkaAck {
    /// The record's offset.
    pub fn offset(&self) -> u64 {
        self.end.offset - 1
    }

    /// The record's partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }
}

impl std::fmt::Debug for KafkaAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaAck")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("offset", &self.offset())
            .field("epoch", &self.epoch)
            .finish()
    }
}

impl Acknowledge for KafkaAck {
    /// Never fails: the commit itself happens later, on the committer's schedule.
    fn ack(self) -> impl Future<Output = Result<(), AckError>> + Send {
        ready(self.ack_now().unwrap_or(Ok(())))
    }

    fn ack_now(self) -> Result<Result<(), AckError>, Self> {
        let applied = self.partitions.ack(
            &self.topic,
            self.partition,
            self.epoch,
            self.start,
            self.end,
        );
        if !applied {
            tracing::debug!(topic = %self.topic, partition = self.partition, offset = self.offset(),
                "ack after the partition was revoked; the next owner reads the record again");
        }
        Ok(Ok(()))
    }

    fn nack(self) -> impl Future<Output = Result<(), AckError>> + Send {
        ready(Ok(()))
    }
}
