//! The Redis Streams source against a private `redis-server` of this test binary (or
//! `REDIS_URL`; see `cio-test-redis`).
//! Each test works on a stream of its own and deletes it at the end.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::num::NonZeroU32;
use std::time::Duration;

use cio_pipeline::source::{
    Acknowledge, LagProbe, Position, RedisStreamAck, RedisStreamSource, RedisStreamSourceBuilder,
    Source,
};
use cio_pipeline::{dead_letter, DecodeError, Processor};
use redis::aio::MultiplexedConnection;
use redis::streams::StreamRangeReply;
use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;

fn url() -> String {
    cio_test_redis::url()
}

/// A stream name no other test or run uses, and a connection to add entries and look.
struct Stream {
    name: String,
    conn: MultiplexedConnection,
}

impl Stream {
    async fn new(test: &str) -> Stream {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let client = redis::Client::open(url()).unwrap();
        Stream {
            name: format!("cio-test:{test}:{}:{nanos}", std::process::id()),
            conn: client.get_multiplexed_async_connection().await.unwrap(),
        }
    }

    fn source(&self, group: &str) -> RedisStreamSourceBuilder {
        RedisStreamSource::builder(url(), &self.name, group)
    }

    /// Adds entries with these payloads; returns their ids.
    async fn add(&mut self, payloads: impl IntoIterator<Item = String>) -> Vec<String> {
        let mut ids = Vec::new();
        for p in payloads {
            let id: String = self
                .conn
                .xadd(&self.name, "*", &[("payload", p)])
                .await
                .unwrap();
            ids.push(id);
        }
        ids
    }

    /// A member of group `workers` that has read nothing.
    async fn create_member(&mut self, name: &str) {
        let _: () = redis::cmd("XGROUP")
            .arg("CREATECONSUMER")
            .arg(&self.name)
            .arg("workers")
            .arg(name)
            .query_async(&mut self.conn)
            .await
            .unwrap();
    }

    async fn dead_letters(&mut self) -> StreamRangeReply {
        self.conn
            .xrange_all(format!("{}:dead", self.name))
            .await
            .unwrap()
    }

    async fn delete(mut self) {
        let _: () = self
            .conn
            .del(&[self.name.clone(), format!("{}:dead", self.name)])
            .await
            .unwrap();
    }
}

fn id_of(position: &Position) -> String {
    match position {
        Position::Id { id, .. } => id.clone(),
        other => panic!("unexpected position {other:?}"),
    }
}

/// Reads `n` messages, each within 10 s.
async fn take(source: &mut RedisStreamSource, n: usize) -> Vec<(String, RedisStreamAck)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let m = tokio::time::timeout(Duration::from_secs(10), source.next())
            .await
            .expect("a message within 10 s")
            .unwrap()
            .expect("the source does not end here");
        out.push((id_of(&m.position), m.ack));
    }
    out
}

/// A member `name` reads `n` entries and is killed: no ack, no nack, no close. Their ids.
async fn read_and_die(stream: &Stream, name: &str, n: usize) -> Vec<String> {
    let mut dead = stream
        .source("workers")
        .consumer(name)
        .open()
        .await
        .unwrap();
    let taken = take(&mut dead, n).await;
    taken.into_iter().map(|(id, _)| id).collect()
}

#[tokio::test]
async fn a_processor_consumes_and_acks_everything_then_the_drained_source_ends() {
    let mut stream = Stream::new("consume").await;
    let ids = stream.add((0..50).map(|i| i.to_string())).await;
    let source = stream
        .source("workers")
        .until_drained()
        .block(Duration::from_millis(50))
        .open()
        .await
        .unwrap();
    let lag = source.lag_probe();
    assert_eq!(lag.lag().await.unwrap(), 50);
    let decode = |b: &[u8], _: &Position| {
        std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
            .ok_or_else(|| DecodeError::new("not a number"))
    };
    let service = tower::service_fn(|n: u32| async move { Ok::<_, Infallible>(n) });
    let report = tokio::time::timeout(
        Duration::from_secs(30),
        Processor::new(source, decode, service, dead_letter::InMemory::new())
            .run(CancellationToken::new()),
    )
    .await
    .expect("the drained source ends the run");
    assert_eq!(
        (report.read, report.delivered, report.unacknowledged),
        (50, 50, 0),
        "{}",
        report.to_json()
    );
    assert_eq!(lag.lag().await.unwrap(), 0);
    let pending: redis::streams::StreamPendingReply =
        stream.conn.xpending(&stream.name, "workers").await.unwrap();
    assert_eq!(pending.count(), 0);
    assert_eq!(ids.len(), 50);
    stream.delete().await;
}

#[tokio::test]
async fn a_killed_consumers_entries_are_claimed_by_another_after_the_idle_time() {
    let mut stream = Stream::new("reclaim").await;
    let ids = stream.add((0..10).map(|i| format!("e{i}"))).await;
    assert_eq!(read_and_die(&stream, "dead", 10).await, ids);
    let later = stream.add((10..15).map(|i| format!("e{i}"))).await;

    let idle = Duration::from_millis(400);
    let started = tokio::time::Instant::now();
    let mut heir = stream
        .source("workers")
        .consumer("heir")
        .claim_idle(idle)
        .claim_every(Duration::from_millis(50))
        .block(Duration::from_millis(50))
        .until_drained()
        .open()
        .await
        .unwrap();
    let mut seen = Vec::new();
    while let Some(m) = tokio::time::timeout(Duration::from_secs(10), heir.next())
        .await
        .unwrap()
        .unwrap()
    {
        let id = id_of(&m.position);
        if ids.contains(&id) {
            assert!(
                started.elapsed() >= idle / 2,
                "claimed {id} before it was idle long enough"
            );
            assert_eq!(m.ack.deliveries(), 2, "the claim counts a second delivery");
        } else {
            assert_eq!(m.ack.deliveries(), 1);
        }
        seen.push(id);
        m.ack.ack().await.unwrap();
    }
    let seen: BTreeSet<String> = seen.into_iter().collect();
    let all: BTreeSet<String> = ids.iter().chain(&later).cloned().collect();
    assert_eq!(
        seen, all,
        "every entry, the dead consumer's included, exactly once"
    );
    assert_eq!(heir.claimed(), 10);
    heir.close().await.unwrap();
    assert_eq!(heir.lag_probe().lag().await.unwrap(), 0);
    stream.delete().await;
}

#[tokio::test]
async fn a_poison_entry_goes_to_the_dead_letter_stream_after_max_deliveries() {
    let mut stream = Stream::new("poison").await;
    let poison = stream.add(["poison".to_owned()]).await.remove(0);
    let _: String = stream
        .conn
        .xadd(&stream.name, "*", &[("other", "no payload field")])
        .await
        .unwrap();
    let mut source = stream
        .source("workers")
        .claim_idle(Duration::from_millis(100))
        .claim_every(Duration::from_millis(20))
        .block(Duration::from_millis(20))
        .max_deliveries(NonZeroU32::new(3).unwrap())
        .until_drained()
        .open()
        .await
        .unwrap();
    let mut deliveries = Vec::new();
    while let Some(m) = tokio::time::timeout(Duration::from_secs(10), source.next())
        .await
        .unwrap()
        .unwrap()
    {
        assert_eq!(id_of(&m.position), poison);
        deliveries.push(m.ack.deliveries());
        // Fails every time: nacked, or dropped.
        if deliveries.len() % 2 == 0 {
            m.ack.nack().await.unwrap();
        } else {
            drop(m);
        }
    }
    assert_eq!(
        deliveries,
        [1, 2, 3],
        "handed out max_deliveries times, then dead-lettered"
    );
    assert_eq!(source.dead_lettered(), 2);

    let letters = stream.dead_letters().await.ids;
    assert_eq!(letters.len(), 2);
    let field = |i: usize, k: &str| -> String { letters[i].get(k).unwrap_or_default() };
    // The entry without a payload field went first, at its first read.
    assert_eq!(field(0, "other"), "no payload field");
    assert!(field(0, "dead_letter_reason").contains("no field `payload`"));
    assert_eq!(field(1, "payload"), "poison");
    assert_eq!(field(1, "dead_letter_id"), poison);
    assert_eq!(field(1, "dead_letter_deliveries"), "4");
    assert!(
        field(1, "dead_letter_reason").contains("delivered 4 times"),
        "{}",
        field(1, "dead_letter_reason")
    );
    assert_eq!(field(1, "dead_letter_stream"), stream.name);
    assert_eq!(
        source.lag_probe().lag().await.unwrap(),
        0,
        "dead letters are acknowledged"
    );
    stream.delete().await;
}

#[tokio::test]
async fn lag_counts_undelivered_and_pending_entries_down_to_zero() {
    let mut stream = Stream::new("lag").await;
    stream.add((0..30).map(|i| i.to_string())).await;
    let mut source = stream.source("workers").batch(10).open().await.unwrap();
    let lag = source.lag_probe();
    let backlog = lag.backlog().await.unwrap();
    assert_eq!(
        (backlog.undelivered, backlog.pending, backlog.exact),
        (30, 0, true)
    );

    let first = take(&mut source, 10).await;
    let backlog = lag.backlog().await.unwrap();
    assert_eq!(
        (backlog.undelivered, backlog.pending),
        (20, 10),
        "read, not acked: still lag"
    );
    for (_, ack) in first {
        ack.ack().await.unwrap();
    }
    assert_eq!(lag.lag().await.unwrap(), 20);
    for (_, ack) in take(&mut source, 20).await {
        ack.ack().await.unwrap();
    }
    assert_eq!(lag.lag().await.unwrap(), 0);

    // Trimming unread entries makes Redis lose the exact lag: the probe counts instead.
    stream.add((0..5).map(|i| i.to_string())).await;
    let _: usize = redis::cmd("XDEL")
        .arg(&stream.name)
        .arg(take_first_id(&mut stream).await)
        .query_async(&mut stream.conn)
        .await
        .unwrap();
    let backlog = lag.backlog().await.unwrap();
    assert_eq!(backlog.undelivered, 4);
    source.close().await.unwrap();
    stream.delete().await;
}

/// The id of the first entry not yet delivered to group `workers`.
async fn take_first_id(stream: &mut Stream) -> String {
    let info: redis::streams::StreamInfoGroupsReply =
        stream.conn.xinfo_groups(&stream.name).await.unwrap();
    let after = format!("({}", info.groups[0].last_delivered_id);
    let range: StreamRangeReply = stream
        .conn
        .xrange_count(&stream.name, after, "+", 1)
        .await
        .unwrap();
    range.ids[0].id.clone()
}

#[tokio::test]
async fn an_unreachable_redis_is_a_retryable_error_and_a_bad_url_is_not() {
    let err = RedisStreamSource::builder("redis://127.0.0.1:1", "s", "g")
        .timeout(Duration::from_millis(200))
        .open()
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let err = RedisStreamSource::builder("http://nope", "s", "g")
        .open()
        .await
        .unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("invalid Redis URL"), "{err}");
}

/// The group's member names, with what each has pending.
async fn members(stream: &mut Stream, group: &str) -> BTreeSet<(String, usize)> {
    let info: redis::streams::StreamInfoConsumersReply = stream
        .conn
        .xinfo_consumers(&stream.name, group)
        .await
        .unwrap();
    info.consumers
        .into_iter()
        .map(|c| (c.name, c.pending))
        .collect()
}

/// A member killed with entries pending, and one that never read, are removed once idle past
/// `prune_idle`, the first only after its entries were claimed; a recent member stays.
#[tokio::test]
async fn gone_members_are_removed_after_their_entries_are_claimed() {
    let mut stream = Stream::new("prune").await;
    let ids = stream.add((0..5).map(|i| format!("e{i}"))).await;
    assert_eq!(read_and_die(&stream, "dead", 5).await, ids);
    stream.create_member("never-read").await;
    let prune_idle = Duration::from_millis(2500);
    tokio::time::sleep(prune_idle + Duration::from_millis(200)).await;
    stream.create_member("recent").await;
    assert_eq!(
        members(&mut stream, "workers").await,
        [
            ("dead".into(), 5),
            ("never-read".into(), 0),
            ("recent".into(), 0)
        ]
        .into(),
    );

    let mut heir = stream
        .source("workers")
        .consumer("heir")
        .claim_idle(Duration::from_millis(500))
        .claim_every(Duration::from_millis(50))
        .block(Duration::from_millis(50))
        .prune_idle(Some(prune_idle))
        .open()
        .await
        .unwrap();
    let claimed = take(&mut heir, 5).await;
    assert_eq!(
        claimed.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(),
        ids
    );
    for (_, ack) in claimed {
        ack.ack().await.unwrap();
    }
    // The sweeps go on while the source waits for more.
    let _ = tokio::time::timeout(Duration::from_millis(500), heir.next()).await;
    assert_eq!(heir.pruned(), 2);
    assert_eq!(
        members(&mut stream, "workers").await,
        [("heir".into(), 0), ("recent".into(), 0)].into(),
        "the gone ones removed, the recent one and this one kept"
    );
    heir.close().await.unwrap();
    stream.delete().await;
}
