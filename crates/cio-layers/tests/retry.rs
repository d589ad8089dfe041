//! The retry layer on paused time.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cio_layers::retry::{RetryConfig, RetryLayer, TpsBudget};
use cio_layers::{ClassifyError, Failure};
use tokio::time::Instant;
use tower::{service_fn, Layer, ServiceExt};

#[derive(Debug, Clone, PartialEq)]
enum TestError {
    /// Retryable, optionally with a Retry-After hint.
    Busy(Option<Duration>),
    /// Never retryable.
    Fatal,
}

impl std::fmt::Display for TestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl ClassifyError for TestError {
    fn classify(&self) -> Failure {
        match self {
            TestError::Busy(after) => Failure {
                retryable: true,
                back_pressure: true,
                retry_after: *after,
            },
            TestError::Fatal => Failure::PERMANENT,
        }
    }
}

/// A service that answers from a script (then succeeds), recording when each attempt came.
fn scripted(
    script: Vec<TestError>,
) -> (
    impl tower::Service<u32, Response = u32, Error = TestError, Future = impl Send> + Clone,
    Arc<Mutex<Vec<Instant>>>,
) {
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let script = Arc::new(Mutex::new(std::collections::VecDeque::from(script)));
    let a = attempts.clone();
    let svc = service_fn(move |x: u32| {
        a.lock().unwrap().push(Instant::now());
        let next = script.lock().unwrap().pop_front();
        async move {
            match next {
                Some(e) => Err(e),
                None => Ok(x),
            }
        }
    });
    (svc, attempts)
}

fn config() -> RetryConfig {
    RetryConfig {
        seed: Some(42),
        ..RetryConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_429_with_retry_after_2_waits_exactly_2_seconds() {
    let (svc, attempts) = scripted(vec![TestError::Busy(Some(Duration::from_secs(2)))]);
    let svc = RetryLayer::by_error(config()).layer(svc);
    assert_eq!(svc.oneshot(7).await, Ok(7));
    let a = attempts.lock().unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!(a[1] - a[0], Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn a_permanent_error_is_tried_once() {
    let (svc, attempts) = scripted(vec![TestError::Fatal]);
    let svc = RetryLayer::by_error(config()).layer(svc);
    assert_eq!(svc.oneshot(7).await, Err(TestError::Fatal));
    assert_eq!(attempts.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn retryable_errors_stop_at_max_attempts_with_growing_jittered_backoff() {
    let (svc, attempts) = scripted(vec![TestError::Busy(None); 10]);
    let svc = RetryLayer::by_error(config()).layer(svc);
    assert_eq!(svc.oneshot(7).await, Err(TestError::Busy(None)));
    let a = attempts.lock().unwrap();
    assert_eq!(a.len(), 4, "1 attempt + 3 retries");
    let c = config();
    for (i, w) in a.windows(2).enumerate() {
        let gap = w[1] - w[0];
        assert!(gap <= c.ceiling(i as u32 + 1), "gap {i} = {gap:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_same_seed_gives_the_same_delays() {
    let mut runs = Vec::new();
    for _ in 0..2 {
        let (svc, attempts) = scripted(vec![TestError::Busy(None); 3]);
        RetryLayer::by_error(config())
            .layer(svc)
            .oneshot(1)
            .await
            .unwrap();
        let a = attempts.lock().unwrap();
        runs.push(a.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>());
    }
    assert_eq!(runs[0], runs[1]);
    assert!(runs[0].iter().any(|d| !d.is_zero()));
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_capped_and_total_backoff_is_bounded() {
    // A 1000 s hint is cut to max_retry_after (20 s); a second 20 s wait would pass the 30 s
    // total, so the call gives up after two attempts.
    let cfg = RetryConfig {
        max_retry_after: Duration::from_secs(20),
        ..config()
    };
    let (svc, attempts) = scripted(vec![TestError::Busy(Some(Duration::from_secs(1000))); 5]);
    let start = Instant::now();
    let r = RetryLayer::by_error(cfg).layer(svc).oneshot(1).await;
    assert!(r.is_err());
    assert_eq!(attempts.lock().unwrap().len(), 2);
    assert_eq!(start.elapsed(), Duration::from_secs(20));
}

#[tokio::test(start_paused = true)]
async fn an_exhausted_budget_stops_retries() {
    // No floor and no percentage: the budget never allows a retry.
    let layer =
        RetryLayer::by_error(config()).with_budget(TpsBudget::new(Duration::from_secs(10), 0, 0.0));
    let (svc, attempts) = scripted(vec![TestError::Busy(None); 10]);
    assert!(layer.layer(svc).oneshot(1).await.is_err());
    assert_eq!(attempts.lock().unwrap().len(), 1);

    // A budget of 10 % on top of the calls: 100 always-failing calls get about 10 retries, not 300.
    let layer =
        RetryLayer::by_error(config()).with_budget(TpsBudget::new(Duration::from_secs(10), 0, 0.1));
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let failing = service_fn(move |_: u32| {
        c.fetch_add(1, Ordering::Relaxed);
        async { Err::<u32, _>(TestError::Busy(None)) }
    });
    let svc = layer.layer(failing);
    for i in 0..100 {
        assert!(svc.clone().oneshot(i).await.is_err());
    }
    let total = calls.load(Ordering::Relaxed);
    assert!(
        (100..=112).contains(&total),
        "{total} attempts for 100 calls"
    );
}

#[tokio::test(start_paused = true)]
async fn until_permanent_retries_through_a_long_outage_and_honours_a_long_retry_after() {
    // 40 failures in a row, one of them with Retry-After: 3000 s (under the 1 h cap): the call
    // goes through in the end, and no sleep is longer than the 30 s backoff cap except the hint.
    let mut script = vec![TestError::Busy(None); 40];
    script[5] = TestError::Busy(Some(Duration::from_secs(3000)));
    let (svc, attempts) = scripted(script);
    let cfg = RetryConfig {
        seed: Some(7),
        ..RetryConfig::until_permanent(None)
    };
    let layer = RetryLayer::by_error(cfg);
    let handle = layer.handle();
    let svc = layer.layer(svc);
    let call = tokio::spawn(svc.oneshot(9));
    tokio::time::sleep(Duration::from_secs(60)).await;
    let status = handle.status();
    assert_eq!(status.retrying, 1, "{status:?}");
    assert!(status.failing_since.is_some());
    assert!(status.next_try.unwrap() > Instant::now() + Duration::from_secs(2000));
    assert!(status.last_failure.as_deref().unwrap().contains("Busy"));
    assert_eq!(call.await.unwrap(), Ok(9));
    let a = attempts.lock().unwrap();
    assert_eq!(a.len(), 41);
    let gaps: Vec<_> = a.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps[5], Duration::from_secs(3000));
    assert!(gaps
        .iter()
        .enumerate()
        .all(|(i, g)| i == 5 || *g <= Duration::from_secs(30)));
    let status = handle.status();
    assert_eq!(
        (status.retrying, status.failing_since),
        (0, None),
        "{status:?}"
    );
    assert_eq!(status.retries, 40);
}

#[tokio::test(start_paused = true)]
async fn give_up_after_bounds_a_call_and_a_permanent_error_still_stops_at_once() {
    let cfg = RetryConfig {
        seed: Some(1),
        ..RetryConfig::until_permanent(Some(Duration::from_secs(120)))
    };
    let (svc, attempts) = scripted(vec![TestError::Busy(None); 1000]);
    let start = Instant::now();
    let layer = RetryLayer::by_error(cfg.clone());
    let handle = layer.handle();
    assert_eq!(
        layer.layer(svc).oneshot(1).await,
        Err(TestError::Busy(None))
    );
    let took = start.elapsed();
    assert!(
        took <= Duration::from_secs(120) && took > Duration::from_secs(60),
        "{took:?}"
    );
    assert!(attempts.lock().unwrap().len() > 5);
    // The call ended: it is not counted as retrying, though the streak goes on.
    let status = handle.status();
    assert_eq!(status.retrying, 0);
    assert!(status.failing_since.is_some());

    // A Retry-After past the bound gives up at once rather than sleeping into it.
    let (svc, attempts) = scripted(vec![TestError::Busy(Some(Duration::from_secs(600)))]);
    let start = Instant::now();
    assert!(RetryLayer::by_error(cfg.clone())
        .layer(svc)
        .oneshot(1)
        .await
        .is_err());
    assert_eq!(
        (attempts.lock().unwrap().len(), start.elapsed()),
        (1, Duration::ZERO)
    );

    let (svc, attempts) = scripted(vec![TestError::Busy(None), TestError::Fatal]);
    assert_eq!(
        RetryLayer::by_error(cfg).layer(svc).oneshot(1).await,
        Err(TestError::Fatal)
    );
    assert_eq!(attempts.lock().unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_call_is_no_longer_counted_as_retrying() {
    let (svc, _) = scripted(vec![TestError::Busy(None); 100]);
    let layer = RetryLayer::by_error(RetryConfig::until_permanent(None));
    let handle = layer.handle();
    let call = tokio::spawn(layer.layer(svc).oneshot(1));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(handle.status().retrying, 1);
    call.abort();
    let _ = call.await;
    assert_eq!(handle.status().retrying, 0);
}
