//! What this consumer holds of each assigned partition: the epoch of its assignment, the
//! contiguous acknowledged prefix, and what was committed; and the rebalance callback that keeps
//! it in step with the group.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::{Offset, TopicPartitionList};

use crate::checkpoint::{AckTracker, Mark};

/// State shared by the source, its acknowledgement handles, the committer, the lag probe and the
/// rebalance callback. Two locks, always taken in this order: `commit` (serializes commits, so a
/// periodic commit cannot land after the revocation's) then `state` (short sections, never held
/// across a broker call or an `.await`).
#[derive(Debug)]
pub(crate) struct Partitions {
    state: Mutex<HashMap<Arc<str>, HashMap<i32, Assigned>>>,
    commit: Mutex<()>,
    next_epoch: AtomicU64,
    /// Records a partition may have handed out past its first unacknowledged one (in flight,
    /// or acknowledged behind that gap) before it is paused.
    read_ahead: u64,
    /// Paused partitions whose prefix moved enough to read again; `wake` tells the source.
    to_resume: Mutex<Vec<(Arc<str>, i32)>>,
    pub(crate) wake: tokio::sync::Notify,
    /// Acks that arrived for a partition revoked since the message was read: not committed.
    pub(crate) late_acks: AtomicU64,
    /// Commits the broker refused or that timed out (retried at the next interval).
    pub(crate) commit_failures: AtomicU64,
    /// Times a partition was paused at its read-ahead.
    pub(crate) pauses: AtomicU64,
}

impl Default for Partitions {
    fn default() -> Self {
        Partitions::new(u64::MAX)
    }
}

/// One assigned partition, for one assignment (its epoch).
#[derive(Debug)]
struct Assigned {
    origin: Arc<str>,
    epoch: u64,
    /// `None` until the first message of this assignment: its offset starts the prefix.
    tracker: Option<AckTracker>,
    /// The end of the last record handed out: where the next one starts.
    frontier: u64,
    /// Messages handed out in this assignment.
    handed: u64,
    /// The offset last committed in this assignment (at first, where reading started).
    committed: Option<u64>,
    /// Paused at the read-ahead: nothing more is fetched until the prefix moves.
    paused: bool,
}

impl Assigned {
    /// Records handed out past the first unacknowledged one.
    fn outstanding(&self) -> u64 {
        let acked = self.tracker.as_ref().map_or(0, |t| t.committed().line);
        self.handed.saturating_sub(acked)
    }
}

/// What [`Partitions::hand_out`] gives a message: its origin and the record its ack settles.
pub(crate) struct HandedOut {
    pub(crate) origin: Arc<str>,
    pub(crate) epoch: u64,
    /// The record spans `[start, end.offset)`: from the end of the previous message of the
    /// partition, so offsets that carry no message (transaction markers, compacted records)
    /// never leave a gap that holds the commit back.
    pub(crate) start: u64,
    pub(crate) end: Mark,
    /// This record filled the partition's read-ahead: pause it.
    pub(crate) pause: bool,
}

/// One partition's lag inputs: where its acknowledged prefix ends, if anything was read.
pub(crate) struct Prefix {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    pub(crate) next_uncommitted: Option<u64>,
}

impl Partitions {
    /// Partitions paused once `read_ahead` records are handed out past their first
    /// unacknowledged one.
    pub(crate) fn new(read_ahead: u64) -> Self {
        Partitions {
            state: Mutex::default(),
            commit: Mutex::default(),
            next_epoch: AtomicU64::new(0),
            read_ahead: read_ahead.max(1),
            to_resume: Mutex::default(),
            wake: tokio::sync::Notify::new(),
            late_acks: AtomicU64::new(0),
            commit_failures: AtomicU64::new(0),
            pauses: AtomicU64::new(0),
        }
    }

    /// Paused partitions to resume now (their prefix moved to half the read-ahead or less).
    pub(crate) fn take_resumable(&self) -> Vec<(Arc<str>, i32)> {
        std::mem::take(&mut *self.to_resume.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, HashMap<i32, Assigned>>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_commits(&self) -> MutexGuard<'_, ()> {
        self.commit.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts tracking newly assigned partitions, each under a new epoch.
    fn assign(&self, tpl: &TopicPartitionList) {
        let mut state = self.lock();
        for e in tpl.elements() {
            let epoch = self.next_epoch.fetch_add(1, Ordering::Relaxed) + 1;
            let topic: Arc<str> = match state.get_key_value(e.topic()) {
                Some((k, _)) => k.clone(),
                None => Arc::from(e.topic()),
            };
            let assigned = Assigned {
                origin: Arc::from(format!("{}/{}", e.topic(), e.partition())),
                epoch,
                tracker: None,
                frontier: 0,
                handed: 0,
                committed: None,
                paused: false,
            };
            state
                .entry(topic)
                .or_default()
                .insert(e.partition(), assigned);
        }
    }

    /// The record a message of `topic`/`partition` at `offset` settles, or `None` when the
    /// partition is not assigned to this consumer (any more): such a message is not handed out.
    pub(crate) fn hand_out(&self, topic: &str, partition: i32, offset: i64) -> Option<HandedOut> {
        let offset = u64::try_from(offset).ok()?;
        let mut state = self.lock();
        let a = state.get_mut(topic)?.get_mut(&partition)?;
        if a.tracker.is_none() {
            // The group's committed offset (or the reset policy) put the consumer here: there
            // is nothing to commit until something is acknowledged.
            a.tracker = Some(AckTracker::new(Mark { offset, line: 0 }));
            a.frontier = offset;
            a.committed = Some(offset);
        }
        let start = a.frontier;
        if offset < start {
            // Already handed out in this assignment: librdkafka delivers a partition in order,
            // so this is a duplicate fetch and the first copy is still in flight.
            tracing::warn!(
                topic,
                partition,
                offset,
                "duplicate message in one assignment; skipped"
            );
            return None;
        }
        a.handed += 1;
        let end = Mark {
            offset: offset + 1,
            line: a.handed,
        };
        a.frontier = end.offset;
        let pause = !a.paused && a.outstanding() >= self.read_ahead;
        if pause {
            a.paused = true;
            self.pauses.fetch_add(1, Ordering::Relaxed);
        }
        Some(HandedOut {
            origin: a.origin.clone(),
            epoch: a.epoch,
            start,
            end,
            pause,
        })
    }

    /// Records an ack. Returns `false` (and counts a late ack) when the partition was revoked
    /// or reassigned since the message was read: that ack must not move any commit.
    pub(crate) fn ack(
        &self,
        topic: &str,
        partition: i32,
        epoch: u64,
        start: u64,
        end: Mark,
    ) -> bool {
        let mut state = self.lock();
        match state
            .get_mut(topic)
            .and_then(|t| t.get_mut(&partition))
            .filter(|a| a.epoch == epoch && a.tracker.is_some())
        {
            Some(a) => {
                if let Some(t) = a.tracker.as_mut() {
                    t.ack(start, end);
                }
                // Half the read-ahead free again: read on (not at once, or a partition stuck
                // near its bound would pause and resume at every ack).
                if a.paused && a.outstanding() <= self.read_ahead / 2 {
                    a.paused = false;
                    let topic = state
                        .get_key_value(topic)
                        .map(|(k, _)| k.clone())
                        .unwrap_or_else(|| Arc::from(topic));
                    drop(state);
                    self.to_resume
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((topic, partition));
                    self.wake.notify_one();
                }
                true
            }
            None => {
                drop(state);
                self.late_acks.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// The offsets that moved since the last commit: `(topic, partition, epoch, offset)`.
    fn movable(
        state: &HashMap<Arc<str>, HashMap<i32, Assigned>>,
        only: Option<&TopicPartitionList>,
    ) -> Vec<(Arc<str>, i32, u64, u64)> {
        let mut out = Vec::new();
        for (topic, parts) in state {
            for (&partition, a) in parts {
                if let Some(only) = only {
                    if only.find_partition(topic, partition).is_none() {
                        continue;
                    }
                }
                let Some(t) = &a.tracker else { continue };
                let safe = t.committed().offset;
                if a.committed.is_none_or(|c| safe > c) {
                    out.push((topic.clone(), partition, a.epoch, safe));
                }
            }
        }
        out
    }

    /// Commits, synchronously, every partition's acknowledged prefix that moved since its last
    /// commit. Returns how many partitions were committed.
    pub(crate) fn commit<C: ConsumerContext, K: Consumer<C>>(
        &self,
        consumer: &K,
    ) -> KafkaResult<usize> {
        let _serial = self.lock_commits();
        let moved = Self::movable(&self.lock(), None);
        if moved.is_empty() {
            return Ok(0);
        }
        commit_offsets(consumer, &moved).inspect_err(|_| {
            self.commit_failures.fetch_add(1, Ordering::Relaxed);
        })?;
        let mut state = self.lock();
        for (topic, partition, epoch, offset) in &moved {
            if let Some(a) = state
                .get_mut(topic)
                .and_then(|t| t.get_mut(partition))
                .filter(|a| a.epoch == *epoch)
            {
                a.committed = Some(a.committed.map_or(*offset, |c| c.max(*offset)));
            }
        }
        Ok(moved.len())
    }

    /// The partitions in `tpl` (all, for `None`) are being taken away: forget them, so that
    /// messages of theirs still in the consumer's queue are not handed out and acks of messages
    /// already handed out change nothing, then commit what was safe.
    fn revoke<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        tpl: Option<&TopicPartitionList>,
    ) {
        let _serial = self.lock_commits();
        let moved = {
            let mut state = self.lock();
            let moved = Self::movable(&state, tpl);
            let mut uncommitted = 0u64;
            for (topic, parts) in state.iter_mut() {
                parts.retain(|&p, a| {
                    let revoked = tpl.is_none_or(|only| only.find_partition(topic, p).is_some());
                    if revoked {
                        let acked = a.tracker.as_ref().map_or(0, |t| t.committed().line);
                        uncommitted += a.handed.saturating_sub(acked);
                    }
                    !revoked
                });
            }
            state.retain(|_, parts| !parts.is_empty());
            if uncommitted > 0 {
                tracing::info!(
                    uncommitted,
                    "partitions revoked with messages in flight or behind a gap: their next owner reads them again"
                );
            }
            moved
        };
        if moved.is_empty() {
            return;
        }
        match commit_offsets(consumer, &moved) {
            Ok(()) => tracing::debug!(partitions = moved.len(), "committed on revocation"),
            Err(e) => {
                self.commit_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "commit on revocation failed; the next owner reads again from the previous commit");
            }
        }
    }

    /// Each assigned partition and the end of its acknowledged prefix.
    pub(crate) fn prefixes(&self) -> Vec<Prefix> {
        let state = self.lock();
        let mut out = Vec::new();
        for (topic, parts) in state.iter() {
            for (&partition, a) in parts {
                out.push(Prefix {
                    topic: topic.clone(),
                    partition,
                    next_uncommitted: a.tracker.as_ref().map(|t| t.committed().offset),
                });
            }
        }
        out
    }

    /// The partitions assigned to this consumer, sorted.
    pub(crate) fn assigned(&self) -> Vec<(String, i32)> {
        let state = self.lock();
        let mut out: Vec<(String, i32)> = state
            .iter()
            .flat_map(|(t, parts)| parts.keys().map(move |&p| (t.to_string(), p)))
            .collect();
        out.sort();
        out
    }
}

fn commit_offsets<C: ConsumerContext, K: Consumer<C>>(
    consumer: &K,
    offsets: &[(Arc<str>, i32, u64, u64)],
) -> KafkaResult<()> {
    let mut tpl = TopicPartitionList::with_capacity(offsets.len());
    for (topic, partition, _, offset) in offsets {
        let offset = i64::try_from(*offset).unwrap_or(i64::MAX);
        tpl.add_partition_offset(topic, *partition, Offset::Offset(offset))?;
    }
    consumer.commit(&tpl, CommitMode::Sync)
}

/// The consumer's context: librdkafka's logs into `tracing`, and the rebalance callback.
pub(crate) struct GroupContext {
    pub(crate) partitions: Arc<Partitions>,
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", fac, "{message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", fac, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", error = %error, "{reason}");
    }
}

impl ConsumerContext for GroupContext {
    /// Runs on the task that polls the consumer (inside [`Source::next`](crate::Source::next)),
    /// before librdkafka changes the assignment: revoked partitions are forgotten and their safe
    /// offsets committed while this consumer still owns them; assigned ones get a new epoch.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = ?tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect::<Vec<_>>(), "partitions assigned");
                self.partitions.assign(tpl);
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions revoked");
                self.partitions.revoke(consumer, Some(tpl));
            }
            Rebalance::Error(e) => {
                // librdkafka unassigns everything after a rebalance error.
                tracing::warn!(error = %e, "rebalance failed; every partition is given up");
                self.partitions.revoke(consumer, None);
            }
        }
    }

    /// A partition assigned again starts unpaused, whatever an earlier assignment left.
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            if let Err(e) = consumer.resume(tpl) {
                tracing::warn!(error = %e, "cannot resume newly assigned partitions");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assign(p: &Partitions, partitions: &[i32]) {
        let mut tpl = TopicPartitionList::new();
        for &n in partitions {
            tpl.add_partition("t", n);
        }
        p.assign(&tpl);
    }

    fn movable(p: &Partitions) -> Vec<(i32, u64)> {
        let mut out: Vec<_> = Partitions::movable(&p.lock(), None)
            .into_iter()
            .map(|(_, partition, _, offset)| (partition, offset))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn offsets_without_records_leave_no_gap_and_acks_commit_only_a_contiguous_prefix() {
        let p = Partitions::default();
        assign(&p, &[0]);
        // Offsets 6 and 9 carry no record (transaction markers): records are 5, 7, 8, 10.
        let handed: Vec<HandedOut> = [5, 7, 8, 10]
            .iter()
            .map(|&o| p.hand_out("t", 0, o).unwrap())
            .collect();
        assert_eq!(
            handed.iter().map(|h| h.start).collect::<Vec<_>>(),
            [5, 6, 8, 9]
        );
        assert_eq!(movable(&p), [], "nothing acked: nothing to commit");
        let ack = |i: usize| p.ack("t", 0, handed[i].epoch, handed[i].start, handed[i].end);
        assert!(ack(2) && ack(1));
        assert_eq!(movable(&p), [], "offset 5 still holds the commit");
        assert!(ack(0));
        assert_eq!(movable(&p), [(0, 9)], "5, 7 and 8 acked: commit 9");
        assert!(ack(3));
        assert_eq!(movable(&p), [(0, 11)]);
        assert_eq!(handed[3].origin.as_ref(), "t/0");
    }

    #[test]
    fn acks_from_an_earlier_assignment_are_late_and_change_nothing() {
        let p = Partitions::default();
        assign(&p, &[0, 1]);
        let old = p.hand_out("t", 0, 0).unwrap();
        assert!(
            p.hand_out("t", 2, 0).is_none(),
            "not assigned: not handed out"
        );
        // Revoked and assigned back (a rebalance): a new epoch.
        assign(&p, &[0]);
        assert!(!p.ack("t", 0, old.epoch, old.start, old.end));
        assert_eq!(p.late_acks.load(Ordering::Relaxed), 1);
        let new = p.hand_out("t", 0, 0).unwrap();
        assert_ne!(new.epoch, old.epoch);
        assert!(p.ack("t", 0, new.epoch, new.start, new.end));
        assert_eq!(movable(&p), [(0, 1)]);
        assert_eq!(p.assigned(), [("t".to_owned(), 0), ("t".to_owned(), 1)]);
    }

    #[test]
    fn a_duplicate_fetch_within_one_assignment_is_skipped() {
        let p = Partitions::default();
        assign(&p, &[0]);
        assert!(p.hand_out("t", 0, 3).is_some());
        assert!(p.hand_out("t", 0, 3).is_none());
        assert!(p.hand_out("t", 0, 4).is_some());
    }
}
