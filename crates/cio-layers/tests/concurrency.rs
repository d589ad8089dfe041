//! The adaptive concurrency limit against simulated services, on paused tokio time.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use cio_layers::concurrency::{
    AdaptiveConcurrency, AdaptiveConcurrencyLayer, AdaptiveConfig, AdaptiveConfigError,
    AdaptiveController,
};
use cio_layers::{BoxError, ClassifyError, Failure};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::task::JoinSet;
use tokio::time::{sleep, Instant};
use tower::{service_fn, Layer, Service, ServiceBuilder, ServiceExt};
use tower_test::mock;

/// The simulated server's "slow down" (a 429).
#[derive(Debug)]
struct Overloaded;

impl std::fmt::Display for Overloaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("too many requests")
    }
}

impl std::error::Error for Overloaded {}

impl ClassifyError for Overloaded {
    fn classify(&self) -> Failure {
        Failure {
            retryable: true,
            back_pressure: true,
            retry_after: None,
        }
    }
}

/// Classifies the boxed errors of `tower_test`'s mock and of tower's `Timeout`.
fn classify_boxed(error: &BoxError) -> Failure {
    if error.is::<Overloaded>() || error.is::<tower::timeout::error::Elapsed>() {
        Overloaded.classify()
    } else {
        Failure::PERMANENT
    }
}

/// How a simulated server answers when `in_flight` requests (this one included) are in it.
#[derive(Clone, Copy)]
enum Behaviour {
    /// 50 ms up to `capacity`, then `50 ms * (in_flight / capacity)^2`.
    SlowsDown { capacity: usize },
    /// 50 ms up to `capacity`; above it, a 429 after 5 ms.
    Rejects { capacity: usize },
    /// 10 ms, whatever the load.
    Fast,
    /// A 429 after 5 ms, whatever the load.
    AlwaysRejects,
}

const BASE: Duration = Duration::from_millis(50);

/// A server simulated on paused time; counts the requests inside it.
#[derive(Clone)]
struct SimulatedServer {
    behaviour: Behaviour,
    in_flight: Arc<AtomicUsize>,
    /// Spreads each latency uniformly by up to this fraction, from a seeded generator.
    jitter: Option<(f64, Arc<Mutex<SmallRng>>)>,
}

/// Leaves the server's in-flight count when the request ends, however it ends.
struct Inside(Arc<AtomicUsize>);

impl Drop for Inside {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl SimulatedServer {
    fn new(behaviour: Behaviour) -> Self {
        SimulatedServer {
            behaviour,
            in_flight: Arc::new(AtomicUsize::new(0)),
            jitter: None,
        }
    }

    fn with_jitter(self, fraction: f64, seed: u64) -> Self {
        let rng = Arc::new(Mutex::new(SmallRng::seed_from_u64(seed)));
        SimulatedServer {
            jitter: Some((fraction, rng)),
            ..self
        }
    }
}

impl Service<()> for SimulatedServer {
    type Response = ();
    type Error = Overloaded;
    type Future = Pin<Box<dyn Future<Output = Result<(), Overloaded>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Overloaded>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (): ()) -> Self::Future {
        let n = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let inside = Inside(self.in_flight.clone());
        let (latency, answer) = match self.behaviour {
            Behaviour::SlowsDown { capacity } if n > capacity => {
                let load = n as f64 / capacity as f64;
                (BASE.mul_f64(load * load), Ok(()))
            }
            Behaviour::SlowsDown { .. } => (BASE, Ok(())),
            Behaviour::Rejects { capacity } if n > capacity => {
                (Duration::from_millis(5), Err(Overloaded))
            }
            Behaviour::Rejects { .. } => (BASE, Ok(())),
            Behaviour::Fast => (Duration::from_millis(10), Ok(())),
            Behaviour::AlwaysRejects => (Duration::from_millis(5), Err(Overloaded)),
        };
        let latency = match &self.jitter {
            Some((fraction, rng)) => {
                let mut rng = rng.lock().unwrap_or_else(PoisonError::into_inner);
                latency.mul_f64(1.0 + rng.gen_range(-fraction..=*fraction))
            }
            None => latency,
        };
        Box::pin(async move {
            sleep(latency).await;
            drop(inside);
            answer
        })
    }
}

/// `callers` tasks, each with its own clone of `svc`, send requests back to back (errors are
/// not retried: the next request goes out at once). Every `every`, from `sample_from` until
/// `run` has passed, the limit is sampled. The callers are cancelled at the end.
async fn drive<S>(
    svc: S,
    controller: &AdaptiveController,
    callers: usize,
    run: Duration,
    sample_from: Duration,
    every: Duration,
) -> Vec<usize>
where
    S: Service<()> + Clone + Send + 'static,
    S::Future: Send,
{
    let mut workers = JoinSet::new();
    for _ in 0..callers {
        let mut svc = svc.clone();
        workers.spawn(async move {
            loop {
                let Ok(ready) = svc.ready().await else {
                    continue;
                };
                let _ = ready.call(()).await;
            }
        });
    }
    let start = Instant::now();
    let mut samples = Vec::new();
    loop {
        sleep(every).await;
        let elapsed = start.elapsed();
        if elapsed > run {
            break;
        }
        if elapsed >= sample_from {
            samples.push(controller.limit());
        }
    }
    workers.shutdown().await;
    samples
}

fn assert_settled(samples: &[usize], capacity: usize) {
    let low = (capacity as f64 * 0.7).ceil() as usize;
    let high = (capacity as f64 * 1.3).floor() as usize;
    let mean = samples.iter().sum::<usize>() as f64 / samples.len() as f64;
    println!(
        "limit over the last 30 %: {} samples, mean {mean:.2}, min {:?}, max {:?}: {samples:?}",
        samples.len(),
        samples.iter().min(),
        samples.iter().max()
    );
    assert!(samples.len() >= 100, "too few samples: {}", samples.len());
    for (i, &limit) in samples.iter().enumerate() {
        assert!(
            (low..=high).contains(&limit),
            "sample {i}: limit {limit} outside [{low}, {high}] for a capacity of {capacity}: {samples:?}"
        );
    }
}

/// Latency grows once more than C = 10 requests are in the server; 40 callers want more.
#[tokio::test(start_paused = true)]
async fn limit_settles_near_the_capacity_where_latency_grows() {
    const C: usize = 10;
    let layer = AdaptiveConcurrencyLayer::by_error(AdaptiveConfig::default()).expect("valid");
    let controller = layer.controller().clone();
    let svc = layer.layer(SimulatedServer::new(Behaviour::SlowsDown { capacity: C }));

    let samples = drive(
        svc,
        &controller,
        4 * C,
        Duration::from_secs(60),
        Duration::from_secs(42),
        Duration::from_millis(100),
    )
    .await;
    assert_settled(&samples, C);
}

/// The same server with ±10 % random latency, and a limit that starts far above C: the limit
/// comes down and stays near C (the noise sets how much slower a window must be to count).
#[tokio::test(start_paused = true)]
async fn limit_comes_down_to_the_capacity_under_noisy_latency() {
    const C: usize = 10;
    let config = AdaptiveConfig {
        initial: 4 * C,
        ..AdaptiveConfig::default()
    };
    let layer = AdaptiveConcurrencyLayer::by_error(config).expect("valid");
    let controller = layer.controller().clone();
    let server = SimulatedServer::new(Behaviour::SlowsDown { capacity: C }).with_jitter(0.1, 7);
    let svc = layer.layer(server);

    let samples = drive(
        svc,
        &controller,
        6 * C,
        Duration::from_secs(60),
        Duration::from_secs(42),
        Duration::from_millis(100),
    )
    .await;
    assert_settled(&samples, C);
}

/// The server answers 429 once more than C = 10 requests are in it; 40 callers want more.
#[tokio::test(start_paused = true)]
async fn limit_settles_near_the_capacity_where_the_server_pushes_back() {
    const C: usize = 10;
    let layer = AdaptiveConcurrencyLayer::by_error(AdaptiveConfig::default()).expect("valid");
    let controller = layer.controller().clone();
    let server = SimulatedServer::new(Behaviour::Rejects { capacity: C });
    let svc = layer.layer(server);

    let samples = drive(
        svc,
        &controller,
        4 * C,
        Duration::from_secs(60),
        Duration::from_secs(42),
        Duration::from_millis(100),
    )
    .await;
    assert_settled(&samples, C);
}

/// A server that never pushes back drives the limit to `max` and no further; one that always
/// does drives it to `min` and no further.
#[tokio::test(start_paused = true)]
async fn limit_never_leaves_min_and_max() {
    let config = AdaptiveConfig {
        initial: 4,
        min: 3,
        max: 6,
        ..AdaptiveConfig::default()
    };
    let controller = AdaptiveController::new(config).expect("valid");
    let every = Duration::from_millis(5);
    let run = Duration::from_secs(5);

    let fast = AdaptiveConcurrency::with_controller(
        SimulatedServer::new(Behaviour::Fast),
        controller.clone(),
        cio_layers::ByError,
    );
    let samples = drive(fast, &controller, 20, run, Duration::ZERO, every).await;
    assert!(samples.iter().all(|l| (3..=6).contains(l)), "{samples:?}");
    assert_eq!(
        samples.last(),
        Some(&6),
        "a fast server reaches max: {samples:?}"
    );

    let rejecting = AdaptiveConcurrency::with_controller(
        SimulatedServer::new(Behaviour::AlwaysRejects),
        controller.clone(),
        cio_layers::ByError,
    );
    let samples = drive(rejecting, &controller, 20, run, Duration::ZERO, every).await;
    assert!(samples.iter().all(|l| (3..=6).contains(l)), "{samples:?}");
    assert_eq!(
        samples.last(),
        Some(&3),
        "constant 429s reach min: {samples:?}"
    );
}

/// A timeout that the classifier calls back-pressure lowers the limit; the same timeouts
/// under a classifier that calls them permanent do not.
#[tokio::test(start_paused = true)]
async fn timeouts_classified_as_back_pressure_decrease_the_limit() {
    let config = AdaptiveConfig {
        initial: 8,
        ..AdaptiveConfig::default()
    };
    let hanging = service_fn(|()| async {
        sleep(Duration::from_secs(10)).await;
        Ok::<_, BoxError>(())
    });

    let layer = AdaptiveConcurrencyLayer::new(config, classify_boxed).expect("valid");
    let controller = layer.controller().clone();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .timeout(Duration::from_millis(100))
        .service(hanging);
    let secs = Duration::from_secs(3);
    let samples = drive(svc, &controller, 8, secs, secs, Duration::from_millis(100)).await;
    assert_eq!(samples, [1], "timeouts push the limit down to min");

    let ignore = |_: &BoxError| Failure::PERMANENT;
    let layer = AdaptiveConcurrencyLayer::new(config, ignore).expect("valid");
    let controller = layer.controller().clone();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .timeout(Duration::from_millis(100))
        .service(hanging);
    let samples = drive(svc, &controller, 8, secs, secs, Duration::from_millis(100)).await;
    assert_eq!(
        samples,
        [8],
        "failures that are not back-pressure leave the limit alone"
    );
}

/// tower's contract: `poll_ready` reserves the slot (and is pending while there is none, woken
/// when one frees up), `call` uses it, and a dropped service gives its slot back.
#[tokio::test(start_paused = true)]
async fn poll_ready_is_pending_without_a_free_slot() {
    let (inner, mut handle) = mock::pair::<&str, &str>();
    let config = AdaptiveConfig {
        initial: 2,
        ..AdaptiveConfig::default()
    };
    let svc = AdaptiveConcurrency::new(inner, config, classify_boxed).expect("valid");
    let mut first = mock::Spawn::new(svc);
    let mut second = first.clone();
    let mut third = first.clone();

    assert!(first.poll_ready().is_ready());
    assert!(second.poll_ready().is_ready());
    // Both slots are reserved, none used yet: a third caller waits.
    assert!(third.poll_ready().is_pending());
    assert!(!third.is_woken());

    let response = first.call("a");
    assert_eq!(first.get_ref().controller().in_flight(), 1);
    // Dropping a service with a reserved slot gives the slot to the waiter.
    drop(second);
    assert!(third.is_woken());
    assert!(third.poll_ready().is_ready());
    let pending = third.call("b");
    assert_eq!(third.get_ref().controller().in_flight(), 2);

    // Full again; a response frees a slot and wakes the waiter.
    assert!(first.poll_ready().is_pending());
    let (request, reply) = handle.next_request().await.expect("a request");
    assert_eq!(request, "a");
    reply.send_response("A");
    assert_eq!(response.await.expect("the response"), "A");
    assert!(first.is_woken());
    assert!(first.poll_ready().is_ready());
    assert_eq!(first.get_ref().controller().in_flight(), 1);

    drop(pending);
    assert_eq!(first.get_ref().controller().in_flight(), 0);
}

/// The service and its future can cross threads and sit in an axum `Router` (`Send + Sync`).
#[test]
fn service_and_future_are_send_and_sync() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    let svc = AdaptiveConcurrency::new(
        service_fn(|x: u32| async move { Ok::<_, Overloaded>(x) }),
        AdaptiveConfig::default(),
        cio_layers::ByError,
    )
    .expect("valid");
    send_sync(&svc);
    let mut svc = svc;
    let future = async move { svc.ready().await?.call(1).await };
    fn send<T: Send>(_: &T) {}
    send(&future);
}

#[tokio::test]
#[should_panic(expected = "call without a successful poll_ready")]
async fn call_without_poll_ready_panics() {
    let (inner, _handle) = mock::pair::<&str, &str>();
    let mut svc =
        AdaptiveConcurrency::new(inner, AdaptiveConfig::default(), classify_boxed).expect("valid");
    drop(svc.call("a"));
}

/// Clones (and every service built by one layer) share one controller: the slots, the
/// in-flight count and the limit.
#[tokio::test(start_paused = true)]
async fn clones_share_the_controller() {
    let (inner, mut handle) = mock::pair::<&str, &str>();
    let config = AdaptiveConfig {
        initial: 2,
        ..AdaptiveConfig::default()
    };
    let layer = AdaptiveConcurrencyLayer::new(config, classify_boxed).expect("valid");
    let gauge = layer.controller().clone();
    let mut a = mock::Spawn::new(layer.layer(inner.clone()));
    let mut b = mock::Spawn::new(layer.layer(inner)); // another service from the same layer
    let mut a2 = a.clone();

    assert!(a.poll_ready().is_ready());
    let first = a.call("one");
    assert!(b.poll_ready().is_ready());
    let second = b.call("two");
    assert_eq!(
        (gauge.in_flight(), a2.get_ref().controller().in_flight()),
        (2, 2)
    );
    assert!(
        a2.poll_ready().is_pending(),
        "the clone sees the shared limit of 2"
    );

    // A 429 seen through one service lowers the limit for all.
    let (_, reply) = handle.next_request().await.expect("a request");
    reply.send_error(Overloaded);
    assert!(first.await.is_err());
    assert_eq!(gauge.limit(), 1);
    assert_eq!(a2.get_ref().current_limit(), 1);
    assert_eq!(b.get_ref().current_limit(), 1);
    // The slot of the failed request was retired: one still in flight fills the new limit.
    assert!(a2.poll_ready().is_pending());

    let (_, reply) = handle.next_request().await.expect("a request");
    reply.send_response("TWO");
    assert_eq!(second.await.expect("the response"), "TWO");
    assert!(a2.is_woken());
    assert!(a2.poll_ready().is_ready());
}

/// A smaller limit never cancels requests already in flight: they finish, and their slots are
/// retired as they come back.
#[tokio::test(start_paused = true)]
async fn shrinking_lets_requests_in_flight_finish() {
    let (inner, mut handle) = mock::pair::<u32, u32>();
    let config = AdaptiveConfig {
        initial: 3,
        ..AdaptiveConfig::default()
    };
    let svc = AdaptiveConcurrency::new(inner, config, classify_boxed).expect("valid");
    let mut responses = Vec::new();
    let mut callers = Vec::new();
    for i in 0..3 {
        let mut caller = mock::Spawn::new(svc.clone());
        assert!(caller.poll_ready().is_ready());
        responses.push(caller.call(i));
        callers.push(caller);
    }
    let mut waiter = mock::Spawn::new(svc.clone());
    assert!(waiter.poll_ready().is_pending());

    let mut replies = Vec::new();
    for _ in 0..3 {
        replies.push(handle.next_request().await.expect("a request"));
    }
    let mut replies = replies.into_iter();
    let (_, first) = replies.next().expect("three requests");
    first.send_error(Overloaded);
    let mut responses = responses.into_iter();
    assert!(responses.next().expect("three").await.is_err());
    assert_eq!(svc.current_limit(), 2);
    assert_eq!(svc.controller().in_flight(), 2);
    assert!(
        waiter.poll_ready().is_pending(),
        "two in flight fill the new limit of 2"
    );

    for ((request, reply), response) in replies.zip(responses) {
        reply.send_response(request * 10);
        assert!(response.await.is_ok(), "a request in flight finishes");
    }
    assert!(waiter.poll_ready().is_ready());
    assert_eq!(svc.controller().in_flight(), 0);
}

#[test]
fn invalid_configs_are_refused_with_the_setting_at_fault() {
    let ok = AdaptiveConfig::default();
    assert_eq!(ok.validate(), Ok(()));
    assert_eq!(
        (
            ok.initial,
            ok.min,
            ok.max,
            ok.decrease_ratio,
            ok.ewma_alpha,
            ok.rtt_deviation_scale
        ),
        (1, 1, 200, 0.9, 0.4, 2.5)
    );

    let cases = [
        (
            AdaptiveConfig {
                min: 0,
                initial: 0,
                ..ok
            },
            AdaptiveConfigError::ZeroMin,
        ),
        (
            AdaptiveConfig {
                min: 5,
                initial: 2,
                max: 10,
                ..ok
            },
            AdaptiveConfigError::Bounds {
                min: 5,
                initial: 2,
                max: 10,
            },
        ),
        (
            AdaptiveConfig {
                initial: 20,
                max: 10,
                ..ok
            },
            AdaptiveConfigError::Bounds {
                min: 1,
                initial: 20,
                max: 10,
            },
        ),
        (
            AdaptiveConfig {
                decrease_ratio: 1.0,
                ..ok
            },
            AdaptiveConfigError::DecreaseRatio(1.0),
        ),
        (
            AdaptiveConfig {
                decrease_ratio: 0.0,
                ..ok
            },
            AdaptiveConfigError::DecreaseRatio(0.0),
        ),
        (
            AdaptiveConfig {
                ewma_alpha: 0.0,
                ..ok
            },
            AdaptiveConfigError::EwmaAlpha(0.0),
        ),
        (
            AdaptiveConfig {
                rtt_deviation_scale: -1.0,
                ..ok
            },
            AdaptiveConfigError::DeviationScale(-1.0),
        ),
        (
            AdaptiveConfig {
                max: usize::MAX,
                ..ok
            },
            AdaptiveConfigError::MaxTooLarge {
                max: usize::MAX,
                largest: tokio::sync::Semaphore::MAX_PERMITS,
            },
        ),
    ];
    for (config, expected) in cases {
        assert_eq!(config.validate(), Err(expected));
        let err = AdaptiveConcurrencyLayer::by_error(config).expect_err("refused");
        assert_eq!(err, expected);
    }
    let nan = AdaptiveConfig {
        decrease_ratio: f64::NAN,
        ..ok
    };
    assert!(matches!(
        nan.validate(),
        Err(AdaptiveConfigError::DecreaseRatio(_))
    ));
    assert_eq!(
        AdaptiveConfigError::Bounds { min: 5, initial: 2, max: 10 }.to_string(),
        "adaptive concurrency: limits must satisfy min <= initial <= max, got min 5, initial 2, max 10"
    );
}
