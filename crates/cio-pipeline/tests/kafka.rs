//! The Kafka source against librdkafka's mock cluster (no broker runs here): out-of-order acks
//! commit only contiguous prefixes, a restart sees exactly what was not committed, a
//! rebalance revokes partitions and late acks do not commit, lag falls to zero.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cio_pipeline::source::{
    Acknowledge, KafkaAck, KafkaSource, LagProbe, Message, Position, Source,
};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

/// A message's `(partition, offset)`.
fn at(m: &Message<KafkaAck>) -> (i32, u64) {
    match &m.position {
        Position::Sequence { index, .. } => (m.ack.partition(), *index),
        other => panic!("unexpected position {other:?}"),
    }
}

/// `per_partition` records in each of `partitions` partitions of a new `topic`; payload
/// `p{partition}-{offset}`.
fn produce(
    cluster: &MockCluster<'_, impl rdkafka::ClientContext>,
    topic: &str,
    partitions: i32,
    per_partition: u64,
) {
    cluster.create_topic(topic, partitions, 1).unwrap();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .create()
        .unwrap();
    for p in 0..partitions {
        for o in 0..per_partition {
            let payload = format!("p{p}-{o}");
            producer
                .send(
                    BaseRecord::<(), _>::to(topic)
                        .partition(p)
                        .payload(&payload),
                )
                .unwrap();
        }
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

async fn open(
    cluster: &MockCluster<'_, impl rdkafka::ClientContext>,
    group: &str,
    topic: &str,
) -> KafkaSource {
    KafkaSource::builder(cluster.bootstrap_servers(), group)
        .topic(topic)
        // Long: only revocation, `commit` and `close` commit in these tests.
        .commit_interval(Duration::from_secs(3600))
        // The mock holds a group's first join 3 s and waits `session.timeout.ms - 1 s` for
        // members to rejoin a rebalance: short, but longer than that first join.
        .set("session.timeout.ms", "4000")
        .set("heartbeat.interval.ms", "100")
        .set("topic.metadata.refresh.interval.ms", "500")
        .open()
        .await
        .unwrap()
}

/// Reads until `want` messages came, or `quiet` passes without one.
async fn read(source: &mut KafkaSource, want: usize, quiet: Duration) -> Vec<Message<KafkaAck>> {
    let mut out = Vec::new();
    let mut last = tokio::time::Instant::now();
    while out.len() < want && last.elapsed() < quiet {
        match tokio::time::timeout(quiet, source.next()).await {
            Ok(Ok(m)) => {
                out.push(m.expect("a Kafka source never ends"));
                last = tokio::time::Instant::now();
            }
            // What the processor retries (a mock broker's connection being reset).
            Ok(Err(e)) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(50)).await,
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => break,
        }
    }
    out
}

/// Polls until the group gave `source` its partitions, then reads until `quiet` passes
/// without a message.
async fn read_all(source: &mut KafkaSource, quiet: Duration) -> Vec<Message<KafkaAck>> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while source.assignment().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not assigned within 30 s"
        );
        out.extend(read(source, usize::MAX, Duration::from_millis(100)).await);
    }
    out.extend(read(source, usize::MAX, quiet).await);
    out
}

fn by_partition(messages: &[Message<KafkaAck>]) -> BTreeMap<i32, Vec<u64>> {
    let mut out: BTreeMap<i32, Vec<u64>> = BTreeMap::new();
    for m in messages {
        let (p, o) = at(m);
        out.entry(p).or_default().push(o);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reads_again_exactly_what_was_not_committed() {
    let cluster = MockCluster::new(1).unwrap();
    produce(&cluster, "events", 3, 10);

    let mut first = open(&cluster, "workers", "events").await;
    let lag = first.lag_probe();
    let messages = read(&mut first, 30, Duration::from_secs(20)).await;
    assert_eq!(messages.len(), 30, "every record is read once");
    assert_eq!(
        by_partition(&messages)
            .values()
            .map(Vec::len)
            .collect::<Vec<_>>(),
        [10, 10, 10]
    );
    assert_eq!(
        &messages[0].payload[..],
        format!("p{}-{}", at(&messages[0]).0, at(&messages[0]).1).as_bytes()
    );

    // Partition 0: offsets 0..=6 acked in reverse order, 7..=9 not (nacked or dropped).
    // Partition 1: 0, 1, 2, 4, 5 acked, 3 and 6..=9 not: the commit stops at the gap at 3.
    // Partition 2: all acked, shuffled.
    let acked = |p: i32, o: u64| match p {
        0 => o <= 6,
        1 => matches!(o, 0..=2 | 4 | 5),
        _ => true,
    };
    let mut messages = messages;
    messages.sort_by_key(|m| std::cmp::Reverse((at(m).1 * 7919) % 31));
    let mut unacked = 0;
    for m in messages {
        let (p, o) = at(&m);
        if acked(p, o) {
            m.ack.ack().await.unwrap();
        } else if o % 2 == 0 {
            m.ack.nack().await.unwrap();
            unacked += 1;
        } else {
            drop(m);
            unacked += 1;
        }
    }
    assert_eq!(unacked, 3 + 5);
    // Lag counts from the first unacknowledged offset: 3 + 7 + 0.
    assert_eq!(lag.lag().await.unwrap(), 10);
    first.close().await.unwrap();
    assert!(lag.lag().await.is_err(), "a closed source's probe says so");

    let mut second = open(&cluster, "workers", "events").await;
    let again = read_all(&mut second, Duration::from_secs(1)).await;
    let seen = by_partition(&again);
    assert_eq!(
        seen.get(&0).cloned().unwrap_or_default(),
        [7, 8, 9],
        "partition 0: exactly the unacknowledged tail"
    );
    assert_eq!(
        seen.get(&1).cloned().unwrap_or_default(),
        [3, 4, 5, 6, 7, 8, 9],
        "partition 1: from the gap on (4 and 5 were acked after the gap: Kafka commits offsets, not records)"
    );
    assert_eq!(seen.get(&2), None, "partition 2: nothing again");

    let lag = second.lag_probe();
    assert_eq!(lag.lag().await.unwrap(), 10);
    for m in again {
        m.ack.ack().await.unwrap();
    }
    assert_eq!(
        lag.lag().await.unwrap(),
        0,
        "lag falls to zero once everything is acknowledged"
    );
    let detail = lag.partitions().await.unwrap();
    assert_eq!(
        detail.iter().map(|p| p.high_watermark).collect::<Vec<_>>(),
        [10, 10, 10]
    );
    second.close().await.unwrap();

    // The group's commits, where a new member would start.
    assert_eq!(committed(&cluster, "workers", "events", 3), [10, 10, 10]);
}

/// The offsets committed by `group` for partitions `0..partitions` of `topic`, asked without
/// joining the group.
fn committed(
    cluster: &MockCluster<'_, impl rdkafka::ClientContext>,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Vec<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let offsets = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    offsets
        .elements()
        .iter()
        .map(|e| e.offset().to_raw().unwrap_or(-1))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_partitions_stop_and_late_acks_do_not_commit() {
    let cluster = MockCluster::new(1).unwrap();
    produce(&cluster, "moves", 4, 5);

    let mut a = open(&cluster, "movers", "moves").await;
    let held = read(&mut a, 20, Duration::from_secs(20)).await;
    assert_eq!(held.len(), 20);
    assert_eq!(
        a.assignment().len(),
        4,
        "alone in the group, `a` has every partition"
    );
    // Offsets 0 and 1 of every partition are acked (out of order) and committed, as the
    // periodic commit would; then offset 2 of partitions 0 and 1 is acked, which only the
    // revocation can commit. The rest is still in flight when the rebalance comes.
    let (mut done, mut in_flight): (Vec<_>, Vec<_>) = held.into_iter().partition(|m| at(m).1 <= 1);
    done.reverse();
    for m in done {
        m.ack.ack().await.unwrap();
    }
    a.commit().await.unwrap();
    let (before_revocation, rest): (Vec<_>, Vec<_>) = in_flight
        .drain(..)
        .partition(|m| at(m).1 == 2 && at(m).0 <= 1);
    in_flight = rest;
    for m in before_revocation {
        m.ack.ack().await.unwrap();
    }

    // `b` joins: the group rebalances, which `a` serves while it polls.
    let mut b = open(&cluster, "movers", "moves").await;
    let b_reader = tokio::spawn(async move {
        let got = read_all(&mut b, Duration::from_secs(1)).await;
        (b, got)
    });
    let mut after = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while a.assignment().len() == 4 || a.assignment().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no rebalance within 30 s"
        );
        after.extend(read(&mut a, 100, Duration::from_millis(200)).await);
    }
    // The group may go through more than one round before it settles (on a busy machine the
    // mock cluster's session timers fire late): read until `a` holds the same share of the
    // partitions, neither none nor all, for two reads in a row.
    let mut mine: BTreeSet<i32> = BTreeSet::new();
    loop {
        after.extend(read(&mut a, 100, Duration::from_secs(1)).await);
        let now: BTreeSet<i32> = a.assignment().iter().map(|(_, p)| *p).collect();
        if !now.is_empty() && now.len() < 4 && now == mine {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the group did not settle within 30 s: {now:?}"
        );
        mine = now;
    }
    // Only what was read under the settled assignment is checked against it.
    let settled_from = after
        .iter()
        .rposition(|m| !mine.contains(&at(m).0))
        .map_or(0, |i| i + 1);
    let after: Vec<_> = after.split_off(settled_from);
    for m in &after {
        // Read again under the new assignment: only `a`'s partitions, never a committed record.
        assert!(
            mine.contains(&at(m).0),
            "{:?} is from a partition `a` no longer has",
            at(m)
        );
        assert!(at(m).1 >= 2, "{:?} was committed and is read again", at(m));
    }

    // The acks of the messages read before the rebalance come late: counted, not committed.
    let late = in_flight.len() as u64;
    assert_eq!(late, 4 * 3 - 2);
    for m in in_flight {
        m.ack.ack().await.unwrap();
    }
    assert_eq!(a.late_acks(), late);
    drop(after); // read again after the rebalance, never acked
    a.close().await.unwrap();
    let (mut b, b_got) = b_reader.await.unwrap();
    drop(b_got);
    b.close().await.unwrap();

    // Offsets 3 and 4 were acked only late, and 2 of partitions 2 and 3 not at all: read again.
    // Offset 2 of partitions 0 and 1 depends on the commit at revocation: a Kafka broker
    // accepts it (the group is preparing the rebalance), librdkafka's mock refuses every
    // commit while the group is joining (REBALANCE_IN_PROGRESS), so there it is read again.
    let mut c = open(&cluster, "movers", "moves").await;
    let again = by_partition(&read_all(&mut c, Duration::from_secs(1)).await);
    assert_eq!(again.len(), 4, "{again:?}");
    for (p, offsets) in &again {
        match (p, offsets.as_slice()) {
            (0 | 1, [2, 3, 4] | [3, 4]) | (2 | 3, [2, 3, 4]) => {}
            _ => panic!("partition {p} read again {offsets:?}"),
        }
    }
    c.close().await.unwrap();
}

#[tokio::test]
async fn a_source_without_topic_or_group_is_refused() {
    let err = KafkaSource::builder("127.0.0.1:1", "g")
        .open()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("at least one topic"), "{err}");
    let err = KafkaSource::builder("127.0.0.1:1", " ")
        .topic("t")
        .open()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("consumer group"), "{err}");
}

/// Reads until 2 s pass without a message: partition 1's records (and partition 0's with
/// `ack_partition_0`) are acked as they come, the others held.
async fn pump(
    source: &mut KafkaSource,
    held: &mut Vec<Message<KafkaAck>>,
    seen: &mut BTreeMap<i32, Vec<u64>>,
    ack_partition_0: bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let quiet = if source.assignment().is_empty() {
            30
        } else {
            2
        };
        let Ok(next) = tokio::time::timeout(Duration::from_secs(quiet), source.next()).await else {
            return;
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "still reading after 60 s"
        );
        let m = match next {
            Ok(m) => m.unwrap(),
            Err(e) if e.is_retryable() => continue,
            Err(e) => panic!("{e}"),
        };
        let (p, o) = at(&m);
        seen.entry(p).or_default().push(o);
        if p == 1 || ack_partition_0 {
            m.ack.ack().await.unwrap();
        } else {
            held.push(m);
        }
    }
}

/// One partition's first record never settles: that partition stops at its read-ahead (50
/// here), the other one is read to its end, and once the record settles the stuck partition
/// goes on from where it stopped, every record exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_partition_stops_at_its_read_ahead_while_the_others_go_on() {
    const PER_PARTITION: u64 = 400;
    const READ_AHEAD: u64 = 50;
    let cluster = MockCluster::new(1).unwrap();
    produce(&cluster, "events", 2, PER_PARTITION);
    let mut source = KafkaSource::builder(cluster.bootstrap_servers(), "workers")
        .topic("events")
        .commit_interval(Duration::from_secs(3600))
        .read_ahead(READ_AHEAD)
        .set("session.timeout.ms", "4000")
        .set("heartbeat.interval.ms", "100")
        .open()
        .await
        .unwrap();

    // Partition 1 is acked as it comes; partition 0's records are held.
    let mut held: Vec<Message<KafkaAck>> = Vec::new();
    let mut seen: BTreeMap<i32, Vec<u64>> = BTreeMap::new();
    pump(&mut source, &mut held, &mut seen, false).await;
    assert_eq!(
        seen[&1],
        (0..PER_PARTITION).collect::<Vec<_>>(),
        "the other partition goes on"
    );
    assert_eq!(
        seen[&0],
        (0..READ_AHEAD).collect::<Vec<_>>(),
        "the stuck partition stops at its read-ahead"
    );
    assert_eq!(source.pauses(), 1);

    // Everything but the first record settles: the gap still holds the partition.
    let first = held.remove(0);
    for m in held.drain(..) {
        m.ack.ack().await.unwrap();
    }
    pump(&mut source, &mut held, &mut seen, false).await;
    assert_eq!(seen[&0].len() as u64, READ_AHEAD, "{:?}", seen[&0]);

    // The first record settles: the partition resumes after its last record, to its end.
    first.ack.ack().await.unwrap();
    pump(&mut source, &mut held, &mut seen, true).await;
    assert_eq!(
        seen[&0],
        (0..PER_PARTITION).collect::<Vec<_>>(),
        "every record once, none skipped"
    );
    source.commit().await.unwrap();
    assert_eq!(source.lag_probe().lag().await.unwrap(), 0);
    source.close().await.unwrap();
}
