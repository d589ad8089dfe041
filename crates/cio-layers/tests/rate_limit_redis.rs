//! The Redis rate-limit backend against a private `redis-server` of this test binary (or
//! `REDIS_URL`; see `cio-test-redis`), in real time: two replicas share one limit; fail-closed and fall-back when
//! Redis cannot be reached. Each test uses a key of its own and deletes it.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cio_layers::rate_limit::{
    Quota, RateLimitBackend, RateLimitLayer, RedisBackend, RedisLimitError, Unreachable,
};
use cio_layers::BoxError;
use redis::AsyncCommands;
use tokio::time::Instant;
use tower::{service_fn, Layer, Service, ServiceExt};

fn url() -> String {
    cio_test_redis::url()
}

fn quota(rate: u32, burst: u32) -> Quota {
    Quota::per_second(NonZeroU32::new(rate).unwrap()).with_burst(NonZeroU32::new(burst).unwrap())
}

fn unique_key(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("cio-test:rate:{test}:{}:{nanos}", std::process::id())
}

async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Calls through `backend` from `tasks` tasks as fast as the limit lets them, for `run`;
/// returns when each call was let through, relative to `start`.
fn hammer(
    backend: RedisBackend,
    tasks: usize,
    start: Instant,
    run: Duration,
    times: Arc<Mutex<Vec<Duration>>>,
) -> tokio::task::JoinSet<()> {
    let svc = RateLimitLayer::with_backend(backend)
        .layer(service_fn(|x: u32| async move { Ok::<_, BoxError>(x) }));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let mut svc = svc.clone();
        let times = times.clone();
        set.spawn(async move {
            while start.elapsed() < run {
                svc.ready().await.unwrap();
                times.lock().unwrap().push(start.elapsed());
                svc.call(1).await.unwrap();
            }
        });
    }
    set
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_together_stay_within_rate_times_t_plus_burst() {
    let (rate, burst) = (20u32, 5u32);
    let t = Duration::from_secs(2);
    let key = unique_key("replicas");
    // Two replicas: separate backends, so separate connections, on one key.
    let a = RedisBackend::builder(url(), &key, quota(rate, burst))
        .build()
        .unwrap();
    let b = RedisBackend::builder(url(), &key, quota(rate, burst))
        .build()
        .unwrap();
    let (times_a, times_b) = (Arc::default(), Arc::default());
    let start = Instant::now();
    let mut set_a = hammer(a.clone(), 4, start, t, Arc::clone(&times_a));
    let mut set_b = hammer(b.clone(), 4, start, t, Arc::clone(&times_b));
    while set_a.join_next().await.is_some() {}
    while set_b.join_next().await.is_some() {}

    let (times_a, times_b) = (
        times_a.lock().unwrap().clone(),
        times_b.lock().unwrap().clone(),
    );
    let in_t = |v: &[Duration]| v.iter().filter(|d| **d < t).count();
    let (n_a, n_b) = (in_t(&times_a), in_t(&times_b));
    let bound = (rate as usize) * t.as_secs() as usize + burst as usize;
    assert!(
        n_a + n_b <= bound,
        "{n_a} + {n_b} calls in {t:?}: more than {bound}"
    );
    assert!(
        n_a + n_b >= bound * 8 / 10,
        "only {} calls in {t:?}: the shared limit throttles too hard",
        n_a + n_b
    );
    assert!(
        n_a > 0 && n_b > 0,
        "both replicas got calls through: {n_a}, {n_b}"
    );
    // In any one-second window: at most the rate plus the burst.
    let mut all: Vec<Duration> = times_a.iter().chain(&times_b).copied().collect();
    all.sort();
    for (i, s) in all.iter().enumerate() {
        let window = all[i..]
            .iter()
            .take_while(|u| **u < *s + Duration::from_secs(1))
            .count();
        assert!(
            window <= (rate + burst) as usize,
            "{window} calls in the second after {s:?}"
        );
    }
    assert_eq!(a.local_decisions() + b.local_decisions(), 0);
    assert_eq!(a.failures() + b.failures(), 0);

    // The key expires once idle: its TTL is the time to its TAT plus a second at most.
    let mut conn = redis().await;
    let ttl: i64 = conn.pttl(&key).await.unwrap();
    assert!(
        ttl > 0 && ttl <= 1_000 + 1_000 / rate as i64 * burst as i64 + 1_000,
        "PTTL {ttl}"
    );
    let _: () = conn.del(&key).await.unwrap();
}

#[tokio::test]
async fn a_cancelled_reservation_is_handed_back_when_it_is_the_last() {
    let key = unique_key("cancel");
    let backend = RedisBackend::builder(url(), &key, quota(10, 1))
        .build()
        .unwrap();
    let first = backend.reserve().await.unwrap();
    assert_eq!(first.wait, Duration::ZERO);
    let second = backend.reserve().await.unwrap();
    assert!(second.wait > Duration::from_millis(80), "{:?}", second.wait);
    backend.cancel(second);
    backend.close().await;
    let third = backend.reserve().await.unwrap();
    assert!(
        third.wait <= second.wait && third.wait > Duration::from_millis(50),
        "the slot was handed back: {:?} then {:?}",
        second.wait,
        third.wait
    );
    // Not the last any more: cancelling the first changes nothing.
    backend.cancel(first);
    let fourth = backend.reserve().await.unwrap();
    assert!(
        fourth.wait > third.wait + Duration::from_millis(80),
        "{:?}",
        fourth.wait
    );
    let _: () = redis().await.del(&key).await.unwrap();
}

#[tokio::test]
async fn fail_closed_refuses_decisions_while_redis_is_unreachable() {
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let backend = RedisBackend::builder("redis://127.0.0.1:1", "k", quota(10, 1))
        .timeout(Duration::from_millis(500))
        .retry_after(Duration::from_secs(60))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = backend.reserve().await.unwrap_err();
    assert!(matches!(err, RedisLimitError::Unreachable(_)), "{err}");
    assert!(err.is_retryable());
    // Then Redis is left alone: the next decision fails without trying.
    let err = backend.reserve().await.unwrap_err();
    assert!(matches!(err, RedisLimitError::CircuitOpen(_)), "{err}");
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!((backend.failures(), backend.decisions()), (1, 2));

    // Through the layer, a caller waits instead: nothing passes the limit, and no error from
    // poll_ready (which would end a batch worker) reaches it. It asks again with a backoff.
    let svc = RateLimitLayer::with_backend(backend.clone())
        .layer(service_fn(|x: u32| async move { Ok::<_, BoxError>(x) }));
    let waited = tokio::time::timeout(Duration::from_millis(1500), svc.oneshot(1)).await;
    assert!(
        waited.is_err(),
        "the call must wait while Redis is unreachable"
    );
    let asked = backend.decisions() - 2;
    assert!((3..=6).contains(&asked), "{asked} decisions in 1.5 s");
}

#[tokio::test]
async fn fall_back_decides_locally_at_rate_over_replicas() {
    // 20/s burst 4 over 2 replicas: 10/s burst 2 each.
    let backend = RedisBackend::builder("redis://127.0.0.1:1", "k", quota(20, 4))
        .on_unreachable(Unreachable::FallBack {
            replicas: NonZeroU32::new(2).unwrap(),
        })
        .build()
        .unwrap();
    let started = Instant::now();
    let mut waits = Vec::new();
    for _ in 0..5 {
        waits.push(backend.reserve().await.unwrap().wait);
    }
    let elapsed = started.elapsed();
    let expected = [0u64, 0, 100, 200, 300].map(Duration::from_millis);
    for (w, e) in waits.iter().zip(expected) {
        assert!(
            *w <= e && e <= *w + elapsed + Duration::from_millis(1),
            "waits {waits:?}"
        );
    }
    assert_eq!((backend.local_decisions(), backend.failures()), (5, 1));
    // A local reservation is handed back locally.
    let last = backend.reserve().await.unwrap();
    backend.cancel(last);
    let again = backend.reserve().await.unwrap();
    assert!(
        again.wait <= last.wait,
        "{:?} then {:?}",
        last.wait,
        again.wait
    );
}

#[tokio::test]
async fn a_redis_that_does_not_answer_costs_one_timeout_then_nothing() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let timeout = Duration::from_millis(150);
    let backend = RedisBackend::builder(format!("redis://127.0.0.1:{port}"), "k", quota(10, 1))
        .timeout(timeout)
        .build()
        .unwrap();
    let started = Instant::now();
    let err = backend.reserve().await.unwrap_err();
    assert!(matches!(err, RedisLimitError::Timeout(_)), "{err}");
    let first = started.elapsed();
    assert!(first >= timeout && first < timeout * 4, "{first:?}");
    let err = backend.reserve().await.unwrap_err();
    assert!(matches!(err, RedisLimitError::CircuitOpen(_)), "{err}");
    assert!(started.elapsed() - first < Duration::from_millis(20));
    silent.abort();
}

#[test]
fn a_bad_url_is_refused_at_build_and_debug_hides_it() {
    let err = RedisBackend::builder("http://x", "k", quota(1, 1))
        .build()
        .unwrap_err();
    assert!(matches!(err, RedisLimitError::InvalidUrl(_)));
    assert!(!err.is_retryable());
    let builder = RedisBackend::builder("redis://:hunter2@127.0.0.1:6379", "k", quota(1, 1));
    assert!(!format!("{builder:?}").contains("hunter2"));
    let backend = builder.build().unwrap();
    assert!(!format!("{backend:?}").contains("hunter2"));
}
