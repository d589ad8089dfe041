//! The rate limit on paused time: exact counts, shared by clones, no starvation.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cio_layers::rate_limit::{Quota, RateLimit, RateLimitLayer};
use tokio::time::Instant;
use tower::{service_fn, Layer, Service, ServiceExt};

fn quota(rate: u32, burst: u32) -> Quota {
    Quota::per_second(NonZeroU32::new(rate).unwrap()).with_burst(NonZeroU32::new(burst).unwrap())
}

type Echo =
    tower::util::ServiceFn<fn(u32) -> std::future::Ready<Result<u32, std::convert::Infallible>>>;

fn echo() -> Echo {
    service_fn(|x: u32| std::future::ready(Ok(x)))
}

/// Runs `tasks` callers, each calling as fast as the limit allows through its own clone, for
/// `run` of paused time; returns the instants (since start) at which calls were let through.
async fn hammer(layer: &RateLimitLayer, tasks: usize, run: Duration) -> Vec<Duration> {
    let start = Instant::now();
    let times = Arc::new(Mutex::new(Vec::new()));
    let svc = layer.layer(echo());
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
    while set.join_next().await.is_some() {}
    let mut t = times.lock().unwrap().clone();
    t.sort();
    t
}

#[tokio::test(start_paused = true)]
async fn at_100_per_second_with_burst_10_never_more_than_1010_in_10_seconds() {
    let layer = RateLimitLayer::new(quota(100, 10));
    let times = hammer(&layer, 50, Duration::from_secs(11)).await;
    let in_10s = times
        .iter()
        .filter(|t| **t <= Duration::from_secs(10))
        .count();
    assert!(in_10s <= 1010, "{in_10s} calls passed in 10 s");
    assert!(
        in_10s >= 1000,
        "only {in_10s} calls passed: the limit throttles too hard"
    );
    // In any one-second window: at most the rate plus the burst.
    for (i, t) in times.iter().enumerate() {
        let window = times[i..]
            .iter()
            .take_while(|u| **u < *t + Duration::from_secs(1))
            .count();
        assert!(window <= 110, "{window} calls in the second after {t:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn clones_and_services_from_one_layer_share_the_limit() {
    let layer = RateLimitLayer::new(quota(10, 1));
    let a = layer.layer(echo());
    let b = layer.layer(echo());
    let start = Instant::now();
    for i in 0..20 {
        let svc = if i % 2 == 0 { a.clone() } else { b.clone() };
        svc.oneshot(i).await.unwrap();
    }
    // 20 calls at 10/s with no burst: the last one goes at 1.9 s.
    assert_eq!(start.elapsed(), Duration::from_millis(1900));
}

#[tokio::test(start_paused = true)]
async fn many_waiters_are_served_in_order_and_all_progress() {
    let layer = RateLimitLayer::new(quota(10, 1));
    let svc = layer.layer(echo());
    let start = Instant::now();
    let mut handles = Vec::new();
    for i in 0..200u32 {
        let svc = svc.clone();
        handles.push(tokio::spawn(async move {
            svc.oneshot(i).await.unwrap();
            start.elapsed()
        }));
        // Let each waiter take its reservation before the next one asks.
        tokio::task::yield_now().await;
    }
    let mut done = Vec::new();
    for h in handles {
        done.push(h.await.unwrap());
    }
    for (i, t) in done.iter().enumerate() {
        assert_eq!(*t, Duration::from_millis(100) * i as u32, "waiter {i}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_waiter_that_gives_up_hands_its_slot_back() {
    let mut svc = RateLimit::new(echo(), quota(1, 1));
    svc.ready().await.unwrap();
    svc.call(0).await.unwrap();
    // The next slot is 1 s away; reserve it, then give up.
    let mut waiting = svc.clone();
    assert!(
        tokio::time::timeout(Duration::from_millis(10), waiting.ready())
            .await
            .is_err()
    );
    drop(waiting);
    let start = Instant::now();
    svc.ready().await.unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(990),
        "the dropped reservation was reused"
    );
}

#[tokio::test(start_paused = true)]
async fn poll_ready_is_pending_until_the_slot_then_ready_twice_is_fine() {
    let mut svc = RateLimit::new(echo(), quota(2, 1));
    svc.ready().await.unwrap();
    svc.ready().await.unwrap(); // already admitted: no second reservation
    svc.call(1).await.unwrap();
    assert!(!is_ready_now(&mut svc), "the second call must wait");
    tokio::time::advance(Duration::from_millis(500)).await;
    assert!(is_ready_now(&mut svc), "ready at its slot");
}

/// One poll of `poll_ready`, without waiting.
fn is_ready_now(svc: &mut RateLimit<Echo>) -> bool {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    matches!(
        Service::<u32>::poll_ready(svc, &mut cx),
        std::task::Poll::Ready(Ok(()))
    )
}

#[tokio::test]
#[should_panic(expected = "without a successful poll_ready")]
async fn call_without_poll_ready_is_a_contract_violation() {
    let mut svc = RateLimit::new(echo(), quota(1, 1));
    drop(svc.call(1));
}

/// A backend that fails its first `n` decisions, then admits.
#[derive(Clone)]
struct Flaky(Arc<std::sync::atomic::AtomicU32>);

#[derive(Debug, thiserror::Error)]
#[error("store unreachable")]
struct Unreachable;

impl cio_layers::rate_limit::RateLimitBackend for Flaky {
    type Error = Unreachable;
    type Future = std::future::Ready<Result<cio_layers::rate_limit::Reservation, Unreachable>>;

    fn reserve(&self) -> Self::Future {
        let left = self.0.load(std::sync::atomic::Ordering::Relaxed);
        if left > 0 {
            self.0.store(left - 1, std::sync::atomic::Ordering::Relaxed);
            return std::future::ready(Err(Unreachable));
        }
        std::future::ready(Ok(cio_layers::rate_limit::Reservation {
            wait: Duration::ZERO,
            token: 0,
        }))
    }
}

#[tokio::test(start_paused = true)]
async fn a_backend_that_cannot_decide_makes_callers_wait_not_fail() {
    // Three failed decisions: waited out with 100, 200 and 400 ms of backoff, never an error
    // from poll_ready (which would end a batch worker or a pipeline for good).
    let backend = Flaky(Arc::new(3.into()));
    let svc = RateLimitLayer::with_backend(backend.clone()).layer(echo());
    let start = Instant::now();
    assert_eq!(svc.clone().oneshot(5).await.unwrap(), 5);
    assert_eq!(start.elapsed(), Duration::from_millis(700));

    // A long outage: the wait between decisions stops growing at 2 s, and the caller goes on
    // as soon as the backend answers again.
    backend.0.store(12, std::sync::atomic::Ordering::Relaxed);
    let start = Instant::now();
    assert_eq!(svc.oneshot(6).await.unwrap(), 6);
    // 100 + 200 + 400 + 800 + 1600 ms, then 2 s for each of the other 7 failures.
    assert_eq!(start.elapsed(), Duration::from_millis(3100 + 7 * 2000));
}

#[test]
fn the_clock_is_tokios_where_time_can_be_paused_and_the_cpu_counter_elsewhere() {
    use cio_layers::rate_limit::{ClockSource, LocalBackend};
    let q = quota(100, 10);
    assert_eq!(
        ClockSource::detect(),
        ClockSource::Tsc,
        "outside any runtime"
    );
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    current.block_on(async {
        assert_eq!(LocalBackend::new(q).clock(), ClockSource::Tokio);
    });
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    multi.block_on(async {
        assert_eq!(LocalBackend::new(q).clock(), ClockSource::Tsc);
    });
    assert_eq!(
        LocalBackend::with_clock(q, ClockSource::Tokio).clock(),
        ClockSource::Tokio
    );
}

/// On the CPU's counter, in real time: however the callers race, no more pass than the burst
/// plus the rate times the time elapsed, and the limit is not stuck either.
#[test]
fn on_the_cpu_counter_the_limit_holds_in_real_time_across_threads() {
    use cio_layers::rate_limit::{ClockSource, LocalBackend};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let (passed, elapsed) = runtime.block_on(async {
        let layer = RateLimitLayer::with_backend(LocalBackend::new(quota(1000, 10)));
        let start = std::time::Instant::now();
        let run = Duration::from_millis(300);
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let mut svc = layer.layer(echo());
            set.spawn(async move {
                let mut n = 0u64;
                while start.elapsed() < run {
                    svc.ready().await.unwrap().call(0).await.unwrap();
                    n += 1;
                }
                n
            });
        }
        let mut passed = 0;
        while let Some(n) = set.join_next().await {
            passed += n.unwrap();
        }
        (passed, start.elapsed())
    });
    let allowed = 10.0 + 1000.0 * elapsed.as_secs_f64();
    assert!(
        passed as f64 <= allowed + 1.0,
        "{passed} passed in {elapsed:?}; at most {allowed:.0} allowed"
    );
    assert!(passed >= 100, "only {passed} passed in {elapsed:?}");
    assert_eq!(ClockSource::detect(), ClockSource::Tsc);
}
