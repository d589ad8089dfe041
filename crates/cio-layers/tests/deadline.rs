//! The deadline covers waiting for readiness as well as the call.

use std::convert::Infallible;
use std::num::NonZeroU32;
use std::time::Duration;

use cio_layers::deadline::{DeadlineLayer, Elapsed};
use cio_layers::rate_limit::{Quota, RateLimitLayer};
use tokio::time::Instant;
use tower::{service_fn, ServiceBuilder, ServiceExt};

#[derive(Debug, PartialEq)]
enum TestError {
    Elapsed(Elapsed),
}

impl From<Elapsed> for TestError {
    fn from(e: Elapsed) -> Self {
        TestError::Elapsed(e)
    }
}

impl From<Infallible> for TestError {
    fn from(e: Infallible) -> Self {
        match e {}
    }
}

fn sleeper(
    d: Duration,
) -> impl tower::Service<u32, Response = u32, Error = TestError, Future = impl Send> + Clone {
    service_fn(move |x: u32| async move {
        tokio::time::sleep(d).await;
        Ok(x)
    })
}

#[tokio::test(start_paused = true)]
async fn a_request_behind_a_rate_limit_cannot_wait_forever() {
    let limit = RateLimitLayer::new(Quota::per_second(NonZeroU32::MIN)); // 1 a second
    let svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_millis(500)))
        .layer(limit)
        .service(sleeper(Duration::ZERO));
    svc.clone().oneshot(1).await.unwrap();
    let start = Instant::now();
    let err = svc.oneshot(2).await.unwrap_err();
    assert_eq!(
        err,
        TestError::Elapsed(Elapsed {
            after: Duration::from_millis(500),
            waiting_for_readiness: true
        })
    );
    assert_eq!(start.elapsed(), Duration::from_millis(500));
}

#[tokio::test(start_paused = true)]
async fn a_slow_call_times_out() {
    let svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_secs(1)))
        .service(sleeper(Duration::from_secs(2)));
    let start = Instant::now();
    let err = svc.oneshot(1).await.unwrap_err();
    assert_eq!(
        err,
        TestError::Elapsed(Elapsed {
            after: Duration::from_secs(1),
            waiting_for_readiness: false
        })
    );
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn time_spent_waiting_is_taken_from_the_call() {
    // 600 ms waiting for the rate limit leaves 400 ms of a 1 s deadline: a 600 ms call misses it,
    // though it would fit in a deadline that started at `call` (tower's Timeout).
    let limit = RateLimitLayer::new(Quota::per_second(NonZeroU32::MIN));
    let svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_secs(1)))
        .layer(limit)
        .service(sleeper(Duration::from_millis(600)));
    tokio::spawn(svc.clone().oneshot(1)); // takes the slot at t=0
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Asked at t=400 ms, admitted at t=1 s: 600 ms spent waiting.
    let start = Instant::now();
    let err = svc.oneshot(2).await.unwrap_err();
    assert!(
        matches!(
            err,
            TestError::Elapsed(Elapsed {
                waiting_for_readiness: false,
                ..
            })
        ),
        "{err:?}"
    );
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn fast_calls_pass() {
    let svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_secs(1)))
        .service(sleeper(Duration::from_millis(999)));
    assert_eq!(svc.oneshot(5).await, Ok(5));
}
