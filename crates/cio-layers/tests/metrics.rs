//! The metrics layer: percentiles of known latencies, outcome classes, the in-flight gauge,
//! cancellation, shared state, windows, and what the `metrics` facade receives.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Context;
use std::time::Duration;

use cio_layers::metrics::{
    MetricsLayer, Outcome, OutcomeCounts, DEFAULT_PREFIX, IN_FLIGHT, REQUESTS_TOTAL,
    REQUEST_DURATION_SECONDS,
};
use cio_layers::{ClassifyError, Failure};
use futures_util::future::join_all;
use futures_util::task::noop_waker_ref;
use tower::{service_fn, Layer, Service, ServiceExt};

/// An error that knows its class, as an API crate's error would.
#[derive(Debug, Clone, Copy, PartialEq)]
enum TestError {
    Unavailable,
    Invalid,
    TooManyRequests,
}

impl ClassifyError for TestError {
    fn classify(&self) -> Failure {
        match self {
            TestError::Unavailable => Failure {
                retryable: true,
                ..Failure::PERMANENT
            },
            TestError::Invalid => Failure::PERMANENT,
            TestError::TooManyRequests => Failure {
                retryable: true,
                back_pressure: true,
                retry_after: Some(Duration::from_secs(1)),
            },
        }
    }
}

/// A service that answers request `ms` after `ms` milliseconds.
fn sleeper() -> impl Service<u64, Response = u64, Error = TestError, Future: Send> + Clone {
    service_fn(|ms: u64| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, TestError>(ms)
    })
}

/// `actual` is within hdrhistogram's 3 significant figures of `expected`.
fn assert_close(what: &str, actual: Duration, expected: Duration) {
    let tolerance = expected / 1000;
    let diff = actual.abs_diff(expected);
    assert!(
        diff <= tolerance,
        "{what}: {actual:?} is not within {tolerance:?} of {expected:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn known_latencies_give_the_expected_percentiles() {
    let layer = MetricsLayer::new("sleeper");
    let svc = layer.layer(sleeper());

    // Request i sleeps i ms, all started at once: latencies are exactly 1..=1000 ms.
    let answers = join_all((1..=1000).map(|ms| svc.clone().oneshot(ms))).await;
    assert!(answers.iter().all(Result::is_ok));

    let snap = layer.snapshot();
    assert_eq!(snap.count, 1000);
    assert_eq!(snap.outcomes.success, 1000);
    assert_eq!(snap.in_flight, 0);
    let ms = Duration::from_millis;
    assert_close("p50", snap.p50, ms(500));
    assert_close("p90", snap.p90, ms(900));
    assert_close("p95", snap.p95, ms(950));
    assert_close("p99", snap.p99, ms(990));
    assert_close("p99.9", snap.p999, ms(999));
    assert_close("max", snap.max, ms(1000));
    assert_close("mean", snap.mean, Duration::from_micros(500_500));
    // 1000 calls over the 1 s of paused time the slowest took.
    assert_eq!(snap.elapsed, ms(1000));
    assert!((snap.rate - 1000.0).abs() < 1e-9, "rate {}", snap.rate);
}

#[tokio::test(start_paused = true)]
async fn errors_are_counted_by_class() {
    let layer = MetricsLayer::new("classes");
    let svc = layer.layer(service_fn(|kind: u8| async move {
        match kind {
            0 => Ok(()),
            1 => Err(TestError::Unavailable),
            2 => Err(TestError::Invalid),
            _ => Err(TestError::TooManyRequests),
        }
    }));
    let kinds = [0, 0, 0, 1, 1, 2, 3, 3, 3, 3];
    for kind in kinds {
        let _ = svc.clone().oneshot(kind).await;
    }

    let snap = layer.snapshot();
    assert_eq!(
        snap.outcomes,
        OutcomeCounts {
            success: 3,
            retryable_error: 2,
            permanent_error: 1,
            back_pressure: 4,
            cancelled: 0,
        }
    );
    assert_eq!(snap.outcomes.errors(), 7);
    assert_eq!(snap.count, 10);
    assert_eq!(snap.outcomes.get(Outcome::BackPressure), 4);
}

#[tokio::test(start_paused = true)]
async fn a_closure_classifies_errors_that_do_not_classify_themselves() {
    let layer = MetricsLayer::builder("closure")
        .classifier(|e: &&'static str| Failure {
            retryable: *e == "busy",
            ..Failure::PERMANENT
        })
        .build();
    let svc = layer.layer(service_fn(|e: &'static str| async move { Err::<(), _>(e) }));
    let _ = svc.clone().oneshot("busy").await;
    let _ = svc.clone().oneshot("bad").await;
    let snap = layer.snapshot();
    assert_eq!(snap.outcomes.retryable_error, 1);
    assert_eq!(snap.outcomes.permanent_error, 1);
}

#[tokio::test(start_paused = true)]
async fn in_flight_goes_up_and_back_to_zero() {
    let layer = MetricsLayer::new("gauge");
    let handle = layer.handle();
    let mut svc = layer.layer(sleeper());

    let mut calls = Vec::new();
    for ms in [10, 20, 30] {
        calls.push(svc.ready().await.unwrap().call(ms));
    }
    assert_eq!(handle.in_flight(), 3);
    assert_eq!(handle.snapshot().in_flight, 3);
    assert_eq!(handle.snapshot().count, 0);

    let mut calls = calls.into_iter();
    calls.next().unwrap().await.unwrap();
    assert_eq!(handle.in_flight(), 2);
    join_all(calls).await;
    assert_eq!(handle.in_flight(), 0);
    assert_eq!(handle.snapshot().outcomes.success, 3);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_future_is_cancelled_and_leaves_flight() {
    let layer = MetricsLayer::new("cancel");
    let handle = layer.handle();
    let mut svc = layer.layer(sleeper());

    // Dropped after being polled once (the inner sleep has started).
    {
        let mut call = pin!(svc.ready().await.unwrap().call(1_000));
        let mut cx = Context::from_waker(noop_waker_ref());
        assert!(call.as_mut().poll(&mut cx).is_pending());
        assert_eq!(handle.in_flight(), 1);
    }
    // Dropped by a timeout that fires first.
    let late = tokio::time::timeout(
        Duration::from_millis(50),
        svc.ready().await.unwrap().call(1_000),
    )
    .await;
    assert!(late.is_err());
    // Dropped without ever being polled.
    drop(svc.ready().await.unwrap().call(5));

    let snap = handle.snapshot();
    assert_eq!(snap.outcomes.cancelled, 3);
    assert_eq!(snap.count, 3);
    assert_eq!(snap.in_flight, 0);
    // Cancelled calls are counted but not timed.
    assert_eq!(snap.max, Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_inner_service_does_not_leave_a_call_in_flight() {
    let layer = MetricsLayer::new("panic");
    let mut svc = layer.layer(service_fn(
        |_: ()| -> std::future::Ready<Result<(), TestError>> {
            panic!("the inner service is broken")
        },
    ));
    svc.ready().await.unwrap();
    let caught = std::panic::catch_unwind(AssertUnwindSafe(|| svc.call(())));
    assert!(caught.is_err());
    let snap = layer.snapshot();
    assert_eq!(snap.in_flight, 0);
    assert_eq!(snap.outcomes.cancelled, 1);
}

#[tokio::test(start_paused = true)]
async fn clones_of_layer_and_service_share_one_state() {
    let layer = MetricsLayer::new("shared");
    let layer_clone = layer.clone();
    let a = layer.layer(sleeper());
    let b = layer_clone.layer(sleeper());
    let a2 = a.clone();

    a.oneshot(1).await.unwrap();
    b.oneshot(2).await.unwrap();
    let handle = a2.handle();
    a2.oneshot(3).await.unwrap();

    for snap in [layer.snapshot(), layer_clone.snapshot(), handle.snapshot()] {
        assert_eq!(snap.count, 3);
    }
    // Another layer keeps its own numbers.
    assert_eq!(MetricsLayer::new("shared").snapshot().count, 0);
}

#[tokio::test(start_paused = true)]
async fn windows_reset_counts_and_rate() {
    let layer = MetricsLayer::new("windows");
    let handle = layer.handle();
    let svc = layer.layer(sleeper());

    for _ in 0..10 {
        svc.clone().oneshot(0).await.unwrap();
    }
    tokio::time::advance(Duration::from_secs(2)).await;
    let first = handle.snapshot_and_reset();
    assert_eq!(first.count, 10);
    assert_eq!(first.elapsed, Duration::from_secs(2));
    assert!((first.rate - 5.0).abs() < 1e-9, "rate {}", first.rate);

    let empty = handle.snapshot();
    assert_eq!(empty.count, 0);
    assert_eq!(empty.rate, 0.0);
    assert_eq!(empty.p99, Duration::ZERO);

    // A call in flight across the reset is counted in the window it ends in, and stays in flight.
    let mut svc2 = svc.clone();
    let pending = svc2.ready().await.unwrap().call(500);
    handle.reset();
    assert_eq!(handle.in_flight(), 1);
    pending.await.unwrap();
    let second = handle.snapshot();
    assert_eq!(second.count, 1);
    assert_eq!(second.elapsed, Duration::from_millis(500));
    assert_close("p50", second.p50, Duration::from_millis(500));
}

#[tokio::test(start_paused = true)]
async fn windows_of_a_time_series_leave_the_totals_alone() {
    let layer = MetricsLayer::new("series");
    let handle = layer.handle();
    let svc = layer.layer(sleeper());

    for _ in 0..4 {
        svc.clone().oneshot(100).await.unwrap();
    }
    let first = handle.window();
    assert_eq!(
        (first.count, first.elapsed),
        (4, Duration::from_millis(400))
    );
    assert_close("first p50", first.p50, Duration::from_millis(100));

    for _ in 0..2 {
        svc.clone().oneshot(300).await.unwrap();
    }
    let second = handle.window();
    assert_eq!(
        (second.count, second.elapsed),
        (2, Duration::from_millis(600))
    );
    assert_close("second p50", second.p50, Duration::from_millis(300));

    // The totals still hold every call, and a reset starts both over.
    let total = handle.snapshot();
    assert_eq!((total.count, total.elapsed), (6, Duration::from_secs(1)));
    assert_close("total max", total.max, Duration::from_millis(300));
    svc.clone().oneshot(50).await.unwrap();
    handle.reset();
    assert_eq!((handle.window().count, handle.snapshot().count), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_recording_loses_nothing() {
    let layer = MetricsLayer::new("threads");
    let handle = layer.handle();
    let svc = layer.layer(service_fn(|_: ()| async { Ok::<_, TestError>(()) }));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move {
                for _ in 0..2_000 {
                    svc.clone().oneshot(()).await.unwrap();
                }
            })
        })
        .collect();
    // Snapshots taken while recording must not lose or double anything.
    let mut seen = 0;
    while !tasks.iter().all(|t| t.is_finished()) {
        seen += handle.snapshot_and_reset().count;
        tokio::task::yield_now().await;
    }
    for task in tasks {
        task.await.unwrap();
    }
    seen += handle.snapshot_and_reset().count;
    assert_eq!(seen, 16_000);
    assert_eq!(handle.in_flight(), 0);
}

/// A small `metrics` recorder that keeps every value it is given, keyed by
/// `name{label="value",...}` with the labels in order.
#[derive(Clone, Default)]
struct TestRecorder {
    counters: Arc<Mutex<HashMap<String, Arc<TestCounter>>>>,
    gauges: Arc<Mutex<HashMap<String, Arc<TestGauge>>>>,
    histograms: Arc<Mutex<HashMap<String, Arc<TestHistogram>>>>,
    descriptions: Arc<Mutex<HashMap<String, Option<metrics::Unit>>>>,
}

#[derive(Default)]
struct TestCounter(AtomicU64);
#[derive(Default)]
struct TestGauge {
    value: Mutex<f64>,
    peak: Mutex<f64>,
}
#[derive(Default)]
struct TestHistogram(Mutex<Vec<f64>>);

impl metrics::CounterFn for TestCounter {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.0.fetch_max(value, Ordering::Relaxed);
    }
}

impl metrics::GaugeFn for TestGauge {
    fn increment(&self, value: f64) {
        let mut v = self.value.lock().unwrap();
        *v += value;
        let mut peak = self.peak.lock().unwrap();
        *peak = peak.max(*v);
    }
    fn decrement(&self, value: f64) {
        *self.value.lock().unwrap() -= value;
    }
    fn set(&self, value: f64) {
        *self.value.lock().unwrap() = value;
    }
}

impl metrics::HistogramFn for TestHistogram {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

fn key_string(key: &metrics::Key) -> String {
    let labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}=\"{}\"", l.key(), l.value()))
        .collect();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

fn entry<T: Default>(map: &Mutex<HashMap<String, Arc<T>>>, key: &metrics::Key) -> Arc<T> {
    Arc::clone(map.lock().unwrap().entry(key_string(key)).or_default())
}

impl metrics::Recorder for TestRecorder {
    fn describe_counter(
        &self,
        key: metrics::KeyName,
        unit: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
        self.descriptions
            .lock()
            .unwrap()
            .insert(key.as_str().to_owned(), unit);
    }
    fn describe_gauge(
        &self,
        key: metrics::KeyName,
        unit: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
        self.descriptions
            .lock()
            .unwrap()
            .insert(key.as_str().to_owned(), unit);
    }
    fn describe_histogram(
        &self,
        key: metrics::KeyName,
        unit: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
        self.descriptions
            .lock()
            .unwrap()
            .insert(key.as_str().to_owned(), unit);
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::from_arc(entry(&self.counters, key))
    }
    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::from_arc(entry(&self.gauges, key))
    }
    fn register_histogram(
        &self,
        key: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::from_arc(entry(&self.histograms, key))
    }
}

impl TestRecorder {
    fn counter(&self, key: &str) -> u64 {
        self.counters.lock().unwrap()[key].0.load(Ordering::Relaxed)
    }
    fn gauge(&self, key: &str) -> (f64, f64) {
        let gauge = &self.gauges.lock().unwrap()[key];
        let value = *gauge.value.lock().unwrap();
        let peak = *gauge.peak.lock().unwrap();
        (value, peak)
    }
    fn histogram(&self, key: &str) -> Vec<f64> {
        self.histograms.lock().unwrap()[key]
            .0
            .lock()
            .unwrap()
            .clone()
    }
}

#[tokio::test(start_paused = true)]
async fn the_facade_receives_the_same_values() {
    let recorder = TestRecorder::default();
    // The handles are registered at build time, with the recorder installed then; they keep
    // recording into it after the closure returns.
    let layer = metrics::with_local_recorder(&recorder, || {
        MetricsLayer::builder("api").prefix("test").build()
    });
    let svc = layer.layer(service_fn(|ms: u64| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        match ms {
            429 => Err(TestError::TooManyRequests),
            _ => Ok(()),
        }
    }));

    let ok = svc.clone().oneshot(20);
    let throttled = svc.clone().oneshot(429);
    let (ok, throttled) = tokio::join!(ok, throttled);
    assert!(ok.is_ok() && throttled.is_err());
    let mut abandoned = svc.clone();
    drop(abandoned.ready().await.unwrap().call(1));

    let requests = |outcome: &str| {
        recorder.counter(&format!(
            "test_{REQUESTS_TOTAL}{{name=\"api\",outcome=\"{outcome}\"}}"
        ))
    };
    assert_eq!(requests("success"), 1);
    assert_eq!(requests("back_pressure"), 1);
    assert_eq!(requests("cancelled"), 1);
    assert_eq!(requests("retryable_error"), 0);
    assert_eq!(requests("permanent_error"), 0);

    let (in_flight, peak) = recorder.gauge(&format!("test_{IN_FLIGHT}{{name=\"api\"}}"));
    assert_eq!(in_flight, 0.0);
    assert_eq!(peak, 2.0);

    let mut seconds =
        recorder.histogram(&format!("test_{REQUEST_DURATION_SECONDS}{{name=\"api\"}}"));
    seconds.sort_by(f64::total_cmp);
    assert_eq!(seconds, vec![0.02, 0.429]);

    let descriptions = recorder.descriptions.lock().unwrap();
    assert_eq!(
        descriptions["test_requests_total"],
        Some(metrics::Unit::Count)
    );
    assert_eq!(
        descriptions["test_request_duration_seconds"],
        Some(metrics::Unit::Seconds)
    );
    assert_eq!(descriptions["test_in_flight"], Some(metrics::Unit::Count));

    // The in-process numbers agree.
    let snap = layer.snapshot();
    assert_eq!(snap.outcomes.success, 1);
    assert_eq!(snap.outcomes.back_pressure, 1);
    assert_eq!(snap.outcomes.cancelled, 1);
}

#[tokio::test(start_paused = true)]
async fn the_default_prefix_names_the_metrics() {
    let recorder = TestRecorder::default();
    let layer = metrics::with_local_recorder(&recorder, || MetricsLayer::new("plain"));
    layer.layer(sleeper()).oneshot(1).await.unwrap();
    let key = format!("{DEFAULT_PREFIX}_{REQUESTS_TOTAL}{{name=\"plain\",outcome=\"success\"}}");
    assert_eq!(
        key,
        "cio_requests_total{name=\"plain\",outcome=\"success\"}"
    );
    assert_eq!(recorder.counter(&key), 1);
}

#[tokio::test(start_paused = true)]
async fn without_a_recorder_the_facade_is_a_no_op() {
    // No recorder installed: recording must still work in process, and not panic.
    let layer = MetricsLayer::new("quiet");
    layer.layer(sleeper()).oneshot(1).await.unwrap();
    assert_eq!(layer.snapshot().count, 1);
}
