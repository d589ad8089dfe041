//! The batch layer on paused time: when batches flush, who gets which outcome, what a failing or
//! panicking inner service does to callers, back-pressure, and a shutdown that loses nothing.

use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use cio_layers::batch::{
    Batch, BatchChunks, BatchConfig, BatchError, BatchLayer, ChunkFuture, ResponseFuture, Weigh,
};
use cio_layers::BoxError;
use tokio::time::{advance, timeout, Instant};
use tower::{Layer, Service, ServiceExt};

#[derive(Clone, Debug, PartialEq)]
struct Entry {
    id: u32,
    weight: usize,
}

impl Weigh for Entry {
    fn weight(&self) -> usize {
        self.weight
    }
}

fn entry(id: u32) -> Entry {
    Entry { id, weight: 1 }
}

/// An item with this id makes the inner service reject its whole batch.
const REJECT_BATCH: u32 = 1000;
/// An item with this id makes the inner service panic (in `call` or in its future).
const PANIC: u32 = 2000;
/// An item with this id makes the inner service answer one outcome short.
const SHORT: u32 = 3000;

#[derive(Clone, Copy, Default)]
enum Panics {
    #[default]
    Never,
    InCall,
    InFuture,
}

type Outcomes = Vec<Result<u32, String>>;

/// Records every batch it receives; after `delay`, answers `id * 10` for an even id and
/// `"odd {id}"` for an odd one, or fails / panics / answers short on the marker ids above.
#[derive(Clone, Default)]
struct Recorder {
    batches: Arc<Mutex<Vec<Vec<u32>>>>,
    delay: Duration,
    panics: Panics,
}

impl Recorder {
    fn batches(&self) -> Vec<Vec<u32>> {
        self.batches.lock().unwrap().clone()
    }
}

impl Service<Vec<Entry>> for Recorder {
    type Response = Outcomes;
    type Error = String;
    type Future = Pin<Box<dyn Future<Output = Result<Outcomes, String>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), String>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, batch: Vec<Entry>) -> Self::Future {
        let ids: Vec<u32> = batch.iter().map(|e| e.id).collect();
        self.batches.lock().unwrap().push(ids.clone());
        let (delay, panics) = (self.delay, self.panics);
        if matches!(panics, Panics::InCall) && ids.contains(&PANIC) {
            panic!("boom in call");
        }
        Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if matches!(panics, Panics::InFuture) && ids.contains(&PANIC) {
                panic!("boom in future");
            }
            if ids.contains(&REJECT_BATCH) {
                return Err("batch rejected".to_string());
            }
            let mut outcomes: Outcomes = ids
                .iter()
                .map(|id| {
                    if id % 2 == 1 {
                        Err(format!("odd {id}"))
                    } else {
                        Ok(id * 10)
                    }
                })
                .collect();
            if ids.contains(&SHORT) {
                outcomes.pop();
            }
            Ok(outcomes)
        })
    }
}

type Svc = Batch<Recorder, Entry>;
type Outcome = Result<u32, BatchError<String, String>>;

fn config(max_items: usize, max_weight: usize, linger_ms: u64, queue: usize) -> BatchConfig {
    BatchConfig {
        max_items: NonZeroUsize::new(max_items).unwrap(),
        max_weight,
        max_linger: Duration::from_millis(linger_ms),
        queue_capacity: NonZeroUsize::new(queue).unwrap(),
        ..BatchConfig::default()
    }
}

/// Reserves a slot and hands over one item, without letting the worker run in between.
async fn submit(svc: &mut Svc, item: Entry) -> ResponseFuture<u32, String, String> {
    svc.ready().await.expect("a free slot").call(item)
}

/// Lets every other task run until it waits (without letting paused time auto-advance).
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// Awaits every caller, failing the test (instead of hanging) if one never resolves.
async fn outcomes(futures: Vec<ResponseFuture<u32, String, String>>) -> Vec<Outcome> {
    let all = futures_util::future::join_all(futures);
    timeout(Duration::from_secs(60), all)
        .await
        .expect("a caller hangs")
}

/// Whether the outcome is the one the inner service gives this id on its own.
fn item_outcome(id: u32) -> Outcome {
    if id % 2 == 1 {
        Err(BatchError::Item(format!("odd {id}")))
    } else {
        Ok(id * 10)
    }
}

fn assert_item_outcomes(ids: &[u32], got: &[Outcome]) {
    assert_eq!(ids.len(), got.len());
    for (id, outcome) in ids.iter().zip(got) {
        match (item_outcome(*id), outcome) {
            (Ok(want), Ok(got)) => assert_eq!(want, *got, "item {id}"),
            (Err(BatchError::Item(want)), Err(BatchError::Item(got))) => {
                assert_eq!(&want, got, "item {id}")
            }
            (want, got) => panic!("item {id}: want {want:?}, got {got:?}"),
        }
    }
}

fn assert_worker_failed(outcome: &Outcome, reason: &str) {
    match outcome {
        Err(BatchError::WorkerFailed(why)) => assert!(why.contains(reason), "{why}"),
        other => panic!("want WorkerFailed({reason}), got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn flushes_as_soon_as_a_batch_has_max_items() {
    let recorder = Recorder::default();
    let mut svc = Batch::new(recorder.clone(), config(3, usize::MAX, 100, 100));
    let start = Instant::now();

    let mut futures = Vec::new();
    for id in 0..3 {
        futures.push(submit(&mut svc, entry(id)).await);
    }
    settle().await;
    assert_eq!(
        recorder.batches(),
        vec![vec![0, 1, 2]],
        "the third item fills the batch"
    );
    for id in 3..7 {
        futures.push(submit(&mut svc, entry(id)).await);
    }
    settle().await;
    assert_eq!(recorder.batches(), vec![vec![0, 1, 2], vec![3, 4, 5]]);
    assert_eq!(Instant::now(), start, "full batches leave without waiting");

    advance(Duration::from_millis(100)).await;
    settle().await;
    assert_eq!(
        recorder.batches(),
        vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]
    );
    assert_item_outcomes(&[0, 1, 2, 3, 4, 5, 6], &outcomes(futures).await);
}

#[tokio::test(start_paused = true)]
async fn flushes_before_an_item_would_push_the_batch_over_max_weight() {
    let recorder = Recorder::default();
    let mut svc = Batch::new(recorder.clone(), config(100, 10, 100, 100));
    let weights = [3, 7, 5, 5, 4, 2, 9, 1];

    let mut futures = Vec::new();
    for (id, weight) in (0..).zip(weights) {
        futures.push(submit(&mut svc, Entry { id, weight }).await);
    }
    settle().await;

    // A batch that reaches 10 exactly is full and leaves at once; 4 + 2 + 9 would be 15, so
    // [4, 5] leaves when 9 arrives and 9 starts the next batch.
    let batches = recorder.batches();
    assert_eq!(
        batches,
        vec![vec![0, 1], vec![2, 3], vec![4, 5], vec![6, 7]]
    );
    for batch in &batches {
        let weight: usize = batch.iter().map(|id| weights[*id as usize]).sum();
        assert!(weight <= 10, "batch {batch:?} weighs {weight}");
    }
    assert_item_outcomes(&[0, 1, 2, 3, 4, 5, 6, 7], &outcomes(futures).await);
}

#[tokio::test(start_paused = true)]
async fn flushes_max_linger_after_the_first_item_of_the_batch() {
    let recorder = Recorder::default();
    let mut svc = Batch::new(recorder.clone(), config(100, usize::MAX, 100, 100));
    let ms = Duration::from_millis;

    let first = vec![submit(&mut svc, entry(0)).await];
    settle().await;
    advance(ms(30)).await;
    let second = vec![submit(&mut svc, entry(1)).await];
    settle().await;
    advance(ms(69)).await;
    settle().await;
    assert!(recorder.batches().is_empty(), "flushed before 100 ms");
    advance(ms(1)).await;
    settle().await;
    assert_eq!(
        recorder.batches(),
        vec![vec![0, 1]],
        "flushed 100 ms after item 0"
    );

    // The next batch's clock starts at its own first item.
    let third = vec![submit(&mut svc, entry(2)).await];
    settle().await;
    advance(ms(99)).await;
    settle().await;
    assert_eq!(recorder.batches().len(), 1);
    advance(ms(1)).await;
    settle().await;
    assert_eq!(recorder.batches(), vec![vec![0, 1], vec![2]]);

    assert_item_outcomes(&[0], &outcomes(first).await);
    assert_item_outcomes(&[1], &outcomes(second).await);
    assert_item_outcomes(&[2], &outcomes(third).await);
}

#[tokio::test(start_paused = true)]
async fn a_partial_failure_reaches_exactly_the_failed_items_callers() {
    let recorder = Recorder::default();
    let mut svc = Batch::new(recorder.clone(), config(6, usize::MAX, 100, 100));
    let mut futures = Vec::new();
    for id in [4, 7, 10, 13, 16, 19] {
        futures.push(submit(&mut svc, entry(id)).await);
    }
    let got = outcomes(futures).await;
    assert_eq!(recorder.batches(), vec![vec![4, 7, 10, 13, 16, 19]]);
    assert_eq!(got[0], Ok(40));
    assert!(matches!(&got[1], Err(BatchError::Item(e)) if e == "odd 7"));
    assert_eq!(got[2], Ok(100));
    assert!(matches!(&got[3], Err(BatchError::Item(e)) if e == "odd 13"));
    assert_eq!(got[4], Ok(160));
    assert!(matches!(&got[5], Err(BatchError::Item(e)) if e == "odd 19"));
}

#[tokio::test(start_paused = true)]
async fn a_whole_batch_error_reaches_every_caller_of_that_batch_only() {
    let recorder = Recorder::default();
    let mut svc = Batch::new(recorder.clone(), config(3, usize::MAX, 100, 100));
    let mut futures = Vec::new();
    for id in [0, 2, 4, 6, REJECT_BATCH, 8] {
        futures.push(submit(&mut svc, entry(id)).await);
    }
    let got = outcomes(futures).await;
    assert_eq!(
        recorder.batches(),
        vec![vec![0, 2, 4], vec![6, REJECT_BATCH, 8]]
    );
    assert_eq!(got[..3], [Ok(0), Ok(20), Ok(40)]);
    let shared: Vec<&Arc<String>> = got[3..]
        .iter()
        .map(|outcome| match outcome {
            Err(BatchError::Batch(error)) => error,
            other => panic!("want the batch error, got {other:?}"),
        })
        .collect();
    assert_eq!(shared[0].as_str(), "batch rejected");
    assert!(
        shared.iter().all(|e| Arc::ptr_eq(e, shared[0])),
        "one error, shared"
    );
}

#[tokio::test(start_paused = true)]
async fn a_wrong_number_of_outcomes_fails_that_batch_clearly_not_the_layer() {
    let recorder = Recorder::default();
    let mut svc = Batch::new(recorder.clone(), config(3, usize::MAX, 100, 100));
    let mut futures = Vec::new();
    for id in [0, SHORT, 2, 4, 6, 8] {
        futures.push(submit(&mut svc, entry(id)).await);
    }
    let got = outcomes(futures).await;
    for outcome in &got[..3] {
        assert!(
            matches!(
                outcome,
                Err(BatchError::OutcomeMismatch {
                    expected: 3,
                    got: 2
                })
            ),
            "{outcome:?}"
        );
    }
    assert_eq!(got[3..], [Ok(40), Ok(60), Ok(80)]);
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_call_fails_every_pending_and_later_caller() {
    let recorder = Recorder {
        panics: Panics::InCall,
        ..Recorder::default()
    };
    let mut svc = Batch::new(recorder.clone(), config(2, usize::MAX, 100, 4));
    let handle = svc.handle();
    let mut other_clone = svc.clone();

    // [0, PANIC] is full and flushed (the panic), [2, 3] is queued behind it.
    let mut futures = Vec::new();
    for id in [0, PANIC, 2, 3] {
        futures.push(submit(&mut svc, entry(id)).await);
    }
    // A caller waiting for a slot (the queue of 4 is full).
    let mut waiter = svc.clone();
    let waiting = tokio::spawn(async move { waiter.ready().await.map(|_| ()) });

    for outcome in outcomes(futures).await {
        assert_worker_failed(&outcome, "panicked in call: boom in call");
    }
    let waited = timeout(Duration::from_secs(60), waiting)
        .await
        .expect("hangs");
    assert!(matches!(waited.unwrap(), Err(BatchError::WorkerFailed(_))));
    let later = timeout(Duration::from_secs(60), other_clone.ready())
        .await
        .expect("hangs");
    assert!(matches!(later, Err(BatchError::WorkerFailed(_))));
    timeout(Duration::from_secs(60), handle.close())
        .await
        .expect("close hangs");
    assert_eq!(
        recorder.batches(),
        vec![vec![0, PANIC]],
        "nothing sent after the panic"
    );
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_the_response_future_fails_the_layer_but_other_batches_in_flight_finish() {
    let recorder = Recorder {
        panics: Panics::InFuture,
        delay: Duration::from_millis(10),
        ..Recorder::default()
    };
    let cfg = BatchConfig {
        max_concurrent_batches: NonZeroUsize::new(2).unwrap(),
        ..config(2, usize::MAX, 100, 100)
    };
    let mut svc = Batch::new(recorder.clone(), cfg);

    // In flight: [0, PANIC] and [2, 4]. Waiting for a free batch slot: [6, 8]. Queued: 10.
    let mut futures = Vec::new();
    for id in [0, PANIC, 2, 4, 6, 8, 10] {
        futures.push(submit(&mut svc, entry(id)).await);
    }
    settle().await;
    assert_eq!(recorder.batches(), vec![vec![0, PANIC], vec![2, 4]]);

    let got = outcomes(futures).await;
    assert_worker_failed(&got[0], "response future panicked: boom in future");
    assert_worker_failed(&got[1], "response future panicked: boom in future");
    assert_eq!(
        got[2..4],
        [Ok(20), Ok(40)],
        "the other batch in flight still answers"
    );
    for outcome in &got[4..] {
        assert_worker_failed(outcome, "boom in future");
    }
    let later = timeout(Duration::from_secs(60), svc.ready())
        .await
        .expect("hangs");
    assert!(matches!(later, Err(BatchError::WorkerFailed(_))));
    assert_eq!(recorder.batches().len(), 2, "nothing sent after the panic");
}

#[tokio::test(start_paused = true)]
async fn an_inner_poll_ready_error_fails_every_clone() {
    let failing = tower::service_fn(|_: Vec<Entry>| async { Ok::<Outcomes, String>(Vec::new()) });
    let failing = NeverReady(failing);
    let mut svc = Batch::new(failing, config(10, usize::MAX, 10, 10));
    let mut clone = svc.clone();

    let item = svc.ready().await.unwrap().call(entry(0));
    let got = timeout(Duration::from_secs(60), item).await.expect("hangs");
    match got {
        Err(BatchError::WorkerFailed(why)) => assert!(why.contains("link down"), "{why}"),
        other => panic!("want WorkerFailed, got {other:?}"),
    }
    let later = timeout(Duration::from_secs(60), clone.ready())
        .await
        .expect("hangs");
    assert!(matches!(later, Err(BatchError::WorkerFailed(_))));
}

/// A service whose `poll_ready` fails.
#[derive(Clone)]
struct NeverReady<S>(S);

impl<S: Service<Vec<Entry>, Error = String>> Service<Vec<Entry>> for NeverReady<S> {
    type Response = S::Response;
    type Error = String;
    type Future = S::Future;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), String>> {
        Poll::Ready(Err("link down".to_string()))
    }

    fn call(&mut self, batch: Vec<Entry>) -> S::Future {
        self.0.call(batch)
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_holds_callers_in_poll_ready_until_the_inner_service_takes_a_batch() {
    let (mock, mut inner) = tower_test::mock::pair::<Vec<Entry>, Outcomes>();
    inner.allow(0); // the inner service is not ready: batches cannot leave
    let mut svc: Batch<_, Entry> = Batch::new(mock, config(10, usize::MAX, 10, 2));

    let first = submit_to(&mut svc, entry(0)).await;
    let second = submit_to(&mut svc, entry(2)).await;
    {
        // Dropped at once: a waiter that is never polled again would keep its place in line.
        let mut third = svc.clone();
        let waker = Waker::noop();
        assert!(third
            .poll_ready(&mut Context::from_waker(waker))
            .is_pending());
    }

    // Time passes, the batch is due, but the inner service is still not ready.
    let mut third = svc.clone();
    let waiting = tokio::spawn(async move { third.ready().await.map(|_| ()) });
    advance(Duration::from_secs(1)).await;
    settle().await;
    assert!(
        !waiting.is_finished(),
        "a third item got in past a full queue"
    );

    // The inner service takes the batch: its two slots are free again.
    inner.allow(1);
    let (batch, respond) = timeout(Duration::from_secs(60), inner.next_request())
        .await
        .expect("hangs")
        .expect("a batch");
    assert_eq!(batch, vec![entry(0), entry(2)]);
    settle().await;
    assert!(waiting.is_finished());
    assert!(waiting.await.unwrap().is_ok());

    respond.send_response(vec![Ok(0), Err("refused".to_string())]);
    assert_eq!(first.await.unwrap(), 0);
    assert!(matches!(second.await, Err(BatchError::Item(e)) if e == "refused"));
}

async fn submit_to<S>(
    svc: &mut Batch<S, Entry>,
    item: Entry,
) -> <Batch<S, Entry> as Service<Entry>>::Future
where
    S: Service<Vec<Entry>>,
    S::Response: cio_layers::batch::BatchOutcomes,
    S::Error: std::fmt::Debug,
    <S::Response as cio_layers::batch::BatchOutcomes>::ItemError: std::fmt::Debug,
{
    svc.ready().await.expect("a free slot").call(item)
}

#[tokio::test(start_paused = true)]
async fn at_most_max_concurrent_batches_are_in_flight() {
    let recorder = Recorder {
        delay: Duration::from_millis(10),
        ..Recorder::default()
    };
    let cfg = BatchConfig {
        max_concurrent_batches: NonZeroUsize::new(2).unwrap(),
        ..config(1, usize::MAX, 100, 100)
    };
    let mut svc = Batch::new(recorder.clone(), cfg);
    let mut futures = Vec::new();
    for id in 0..5 {
        futures.push(submit(&mut svc, entry(id)).await);
    }
    settle().await;
    assert_eq!(recorder.batches().len(), 2);
    advance(Duration::from_millis(10)).await;
    settle().await;
    assert_eq!(recorder.batches().len(), 4);
    assert_item_outcomes(&[0, 1, 2, 3, 4], &outcomes(futures).await);
}

#[tokio::test(start_paused = true)]
async fn close_flushes_everything_queued_and_waits_for_every_answer() {
    let recorder = Recorder {
        delay: Duration::from_millis(50),
        ..Recorder::default()
    };
    // A linger of an hour: only the close can send the last batch in time.
    let mut svc = Batch::new(recorder.clone(), config(3, usize::MAX, 3_600_000, 100));
    let handle = svc.handle();
    let mut futures = Vec::new();
    for id in 0..5 {
        futures.push(submit(&mut svc, entry(id)).await);
    }
    settle().await;
    assert_eq!(
        recorder.batches(),
        vec![vec![0, 1, 2]],
        "[3, 4] waits for its linger"
    );

    let start = Instant::now();
    timeout(Duration::from_secs(60), handle.close())
        .await
        .expect("close hangs");
    assert!(
        Instant::now() - start >= Duration::from_millis(50),
        "waited for the batches"
    );
    assert_eq!(recorder.batches(), vec![vec![0, 1, 2], vec![3, 4]]);
    assert!(handle.is_finished());

    // Every caller was answered by the time close returned.
    let mut got = Vec::new();
    for future in futures {
        got.push(
            timeout(Duration::ZERO, future)
                .await
                .expect("answered before close returned"),
        );
    }
    assert_item_outcomes(&[0, 1, 2, 3, 4], &got);
    assert!(matches!(svc.ready().await, Err(BatchError::Closed)));
}

#[tokio::test(start_paused = true)]
async fn dropping_every_clone_flushes_and_stops_the_worker() {
    let recorder = Recorder::default();
    let mut svc = Batch::new(recorder.clone(), config(100, usize::MAX, 3_600_000, 100));
    let handle = svc.handle();
    let mut futures = Vec::new();
    for id in 0..3 {
        futures.push(submit(&mut svc, entry(id)).await);
    }
    drop(svc);
    assert_item_outcomes(&[0, 1, 2], &outcomes(futures).await);
    assert_eq!(recorder.batches(), vec![vec![0, 1, 2]]);
    timeout(Duration::from_secs(60), handle.close())
        .await
        .expect("close hangs");
}

#[tokio::test(start_paused = true)]
async fn an_item_heavier_than_a_batch_is_refused_and_frees_its_slot() {
    let recorder = Recorder::default();
    let mut svc = Batch::new(recorder.clone(), config(100, 10, 10, 1));
    let refused = submit(&mut svc, Entry { id: 0, weight: 11 }).await;
    assert!(matches!(
        refused.await,
        Err(BatchError::TooHeavy {
            weight: 11,
            max: 10
        })
    ));
    // The single slot is free again, and an item of exactly max_weight goes through.
    let fits = submit(&mut svc, Entry { id: 2, weight: 10 }).await;
    assert_eq!(outcomes(vec![fits]).await, vec![Ok(20)]);
    assert_eq!(recorder.batches(), vec![vec![2]]);
}

#[tokio::test(start_paused = true)]
async fn an_item_whose_caller_went_away_is_not_sent() {
    let recorder = Recorder::default();
    let mut svc = Batch::new(recorder.clone(), config(100, usize::MAX, 10, 100));
    let handle = svc.handle();
    let kept = submit(&mut svc, entry(0)).await;
    drop(submit(&mut svc, entry(1)).await); // before the worker takes it
    let also_kept = submit(&mut svc, entry(2)).await;
    let dropped_later = submit(&mut svc, entry(4)).await;
    settle().await;
    drop(dropped_later); // in the open batch, before it leaves
    handle.close().await;
    assert_eq!(recorder.batches(), vec![vec![0, 2]]);
    assert_eq!(outcomes(vec![kept, also_kept]).await, vec![Ok(0), Ok(20)]);
}

#[tokio::test(start_paused = true)]
async fn call_without_poll_ready_is_refused_not_a_panic() {
    let mut svc = Batch::new(Recorder::default(), config(10, usize::MAX, 10, 10));
    assert!(matches!(
        svc.call(entry(0)).await,
        Err(BatchError::NotReady)
    ));
}

#[tokio::test(start_paused = true)]
async fn the_layer_handle_closes_every_service_the_layer_built() {
    let layer = BatchLayer::new(config(100, usize::MAX, 3_600_000, 100));
    let handle = layer.handle();
    let (one, two) = (Recorder::default(), Recorder::default());
    let mut svc_one = layer.layer(one.clone());
    let mut svc_two = layer.layer(two.clone());
    let a = submit(&mut svc_one, entry(0)).await;
    let b = submit(&mut svc_two, entry(2)).await;
    timeout(Duration::from_secs(60), handle.close())
        .await
        .expect("close hangs");
    assert_eq!(outcomes(vec![a, b]).await, vec![Ok(0), Ok(20)]);
    assert_eq!(
        (one.batches(), two.batches()),
        (vec![vec![0]], vec![vec![2]])
    );

    // A service built after the close starts closed.
    let mut late = layer.layer(Recorder::default());
    let refused = timeout(Duration::from_secs(60), late.ready())
        .await
        .expect("hangs");
    assert!(matches!(refused, Err(BatchError::Closed)));
}

#[test]
fn errors_say_what_happened() {
    let too_heavy: BatchError<String, BoxError> = BatchError::TooHeavy {
        weight: 11,
        max: 10,
    };
    assert_eq!(
        too_heavy.to_string(),
        "item weighs 11, more than a batch may carry (10); it was not sent"
    );
    let mismatch: BatchError<String, BoxError> = BatchError::OutcomeMismatch {
        expected: 3,
        got: 2,
    };
    assert!(mismatch.to_string().contains("2 outcomes for a batch of 3"));
}

/// A runtime of its own, with paused time, for tests that drop one with work in it.
fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

/// An inner service that answers each batch only after an hour.
fn stuck_recorder() -> Recorder {
    Recorder {
        delay: Duration::from_secs(3_600),
        ..Recorder::default()
    }
}

#[test]
fn a_worker_stopped_by_its_runtime_shutting_down_fails_its_callers_instead_of_hanging() {
    let (first, recorder) = (paused_runtime(), stuck_recorder());
    let (mut svc, in_flight, queued) = first.block_on(async {
        let mut svc = Batch::new(recorder.clone(), config(1, usize::MAX, 10, 10));
        let in_flight = submit(&mut svc, entry(0)).await;
        let queued = submit(&mut svc, entry(2)).await;
        settle().await;
        (svc, in_flight, queued)
    });
    drop(first); // the worker task is dropped with a batch in flight and one waiting

    let second = paused_runtime();
    second.block_on(async {
        for outcome in outcomes(vec![in_flight, queued]).await {
            assert_worker_failed(&outcome, "stopped before it finished");
        }
        let later = timeout(Duration::from_secs(60), svc.ready())
            .await
            .expect("hangs");
        assert!(matches!(later, Err(BatchError::WorkerFailed(_))));
    });
}

// ---- Chunks: many items per call, the same worker and batches ----

type Chunks = BatchChunks<Recorder, Entry>;

fn chunks_of(svc: &Svc, max: usize) -> Chunks {
    svc.chunks(NonZeroUsize::new(max).unwrap())
}

/// Reserves a chunk's slots and hands the chunk over, without letting the worker run between.
async fn submit_chunk(chunks: &mut Chunks, ids: &[u32]) -> ChunkFuture<u32, String, String> {
    chunks
        .ready()
        .await
        .expect("free slots")
        .call(ids.iter().map(|&id| entry(id)).collect())
}

async fn chunk_outcomes(future: ChunkFuture<u32, String, String>) -> Vec<Outcome> {
    timeout(Duration::from_secs(60), future)
        .await
        .expect("a chunk's caller hangs")
        .expect("the chunk was accepted")
}

#[tokio::test(start_paused = true)]
async fn a_chunk_straddling_batches_gets_every_items_own_outcome_in_order() {
    let recorder = Recorder::default();
    let mut svc = Batch::new(recorder.clone(), config(5, usize::MAX, 10, 100));
    let handle = svc.handle();
    let mut chunks = chunks_of(&svc, 8);
    let first = submit_chunk(&mut chunks, &[0, 1, 2, 3, 4, 5, 6, 7]).await;
    let single = submit(&mut svc, entry(8)).await;
    let second = submit_chunk(&mut chunks, &[9, 10, 11, 12]).await;
    handle.close().await;

    assert_eq!(
        recorder.batches(),
        vec![vec![0, 1, 2, 3, 4], vec![5, 6, 7, 8, 9], vec![10, 11, 12]],
        "chunks and single items share batches, in the order handed over"
    );
    assert_item_outcomes(&[0, 1, 2, 3, 4, 5, 6, 7], &chunk_outcomes(first).await);
    assert_eq!(outcomes(vec![single]).await, vec![Ok(80)]);
    assert_item_outcomes(&[9, 10, 11, 12], &chunk_outcomes(second).await);
}

#[tokio::test(start_paused = true)]
async fn a_heavy_item_in_a_chunk_is_refused_alone_and_every_slot_comes_back() {
    let recorder = Recorder::default();
    let svc = Batch::new(recorder.clone(), config(100, 10, 10, 3));
    let mut chunks = chunks_of(&svc, 3);
    let heavy = chunks.ready().await.expect("slots").call(vec![
        entry(0),
        Entry { id: 2, weight: 11 },
        entry(4),
    ]);
    let got = chunk_outcomes(heavy).await;
    assert_eq!(got[0], Ok(0));
    assert!(matches!(
        got[1],
        Err(BatchError::TooHeavy {
            weight: 11,
            max: 10
        })
    ));
    assert_eq!(got[2], Ok(40));
    // All three slots are free again: a chunk of three goes through, then one of nothing.
    let next = submit_chunk(&mut chunks, &[6, 7, 8]).await;
    assert_item_outcomes(&[6, 7, 8], &chunk_outcomes(next).await);
    assert_eq!(
        chunk_outcomes(submit_chunk(&mut chunks, &[]).await).await,
        vec![]
    );
    assert_eq!(recorder.batches(), vec![vec![0, 4], vec![6, 7, 8]]);
}

#[tokio::test(start_paused = true)]
async fn a_chunk_waits_for_free_slots_and_is_refused_when_too_large_or_not_ready() {
    let recorder = Recorder {
        delay: Duration::from_millis(100),
        ..Recorder::default()
    };
    let mut svc = Batch::new(recorder.clone(), config(2, usize::MAX, 10, 5));
    let mut chunks = chunks_of(&svc, 4);
    assert_eq!(chunks.max_chunk(), 4);
    assert_eq!(
        chunks_of(&svc, 64).max_chunk(),
        5,
        "a chunk never needs more slots than the queue has"
    );
    assert!(matches!(
        chunks.call(vec![entry(0)]).await,
        Err(BatchError::NotReady)
    ));
    // Two items hold two of five slots until their batch is handed over: a chunk service that
    // reserves four must wait.
    let a = submit(&mut svc, entry(0)).await;
    let b = submit(&mut svc, entry(2)).await;
    let c = submit(&mut svc, entry(4)).await;
    let mut waiting = chunks.clone();
    assert!(
        futures_util::poll!(Box::pin(waiting.ready())).is_pending(),
        "3 of 5 slots taken: no room for 4"
    );
    let ready = timeout(Duration::from_secs(60), waiting.ready())
        .await
        .expect("slots come back once batches are handed over")
        .is_ok();
    assert!(ready);
    let too_large = waiting.call((0..5).map(entry).collect());
    assert!(matches!(
        too_large.await,
        Err(BatchError::ChunkTooLarge { items: 5, max: 4 })
    ));
    assert_eq!(outcomes(vec![a, b, c]).await, vec![Ok(0), Ok(20), Ok(40)]);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_chunk_sends_none_of_its_items_not_yet_handed_over() {
    let recorder = Recorder::default();
    let svc = Batch::new(recorder.clone(), config(4, usize::MAX, 10, 100));
    let handle = svc.handle();
    let mut chunks = chunks_of(&svc, 8);
    let kept = submit_chunk(&mut chunks, &[0, 2]).await;
    let dropped = submit_chunk(&mut chunks, &[4, 6, 8, 10, 12]).await;
    // The worker fills [0, 2, 4, 6] and sends it; 8, 10, 12 wait in the open batch.
    settle().await;
    drop(dropped);
    let after = submit_chunk(&mut chunks, &[14]).await;
    handle.close().await;
    assert_eq!(recorder.batches(), vec![vec![0, 2, 4, 6], vec![14]]);
    assert_eq!(chunk_outcomes(kept).await, vec![Ok(0), Ok(20)]);
    assert_eq!(chunk_outcomes(after).await, vec![Ok(140)]);
}

#[tokio::test(start_paused = true)]
async fn a_failed_batch_or_worker_answers_every_item_of_a_chunk() {
    let recorder = Recorder {
        panics: Panics::InCall,
        ..Recorder::default()
    };
    let svc = Batch::new(recorder.clone(), config(2, usize::MAX, 10, 100));
    let mut chunks = chunks_of(&svc, 8);
    // [0, REJECT_BATCH] fails as a batch; [2, 4] succeeds; [PANIC, 6] panics the worker; the
    // rest is refused with the failure.
    let got = chunk_outcomes(submit_chunk(&mut chunks, &[0, REJECT_BATCH, 2, 4]).await).await;
    assert!(matches!(&got[0], Err(BatchError::Batch(e)) if e.as_str() == "batch rejected"));
    assert!(matches!(&got[1], Err(BatchError::Batch(_))));
    assert_eq!(got[2..], [Ok(20), Ok(40)]);
    let got = chunk_outcomes(submit_chunk(&mut chunks, &[PANIC, 6, 8, 10, 12]).await).await;
    assert_eq!(got.len(), 5);
    for outcome in &got {
        assert_worker_failed(outcome, "panicked in call");
    }
    let later = timeout(Duration::from_secs(60), chunks.ready())
        .await
        .expect("hangs");
    assert!(matches!(later, Err(BatchError::WorkerFailed(_))));
}

#[test]
// The chunk's future is carried out of its runtime on purpose, to be awaited in another.
#[allow(clippy::async_yields_async)]
fn a_chunk_whose_worker_was_stopped_by_its_runtime_is_answered_not_left_hanging() {
    let (first, recorder) = (paused_runtime(), stuck_recorder());
    let future = first.block_on(async {
        let svc = Batch::new(recorder.clone(), config(2, usize::MAX, 10, 10));
        let mut chunks = chunks_of(&svc, 5);
        // [0, 2] in flight, [4, 6] and 8 waiting in the worker.
        let future = submit_chunk(&mut chunks, &[0, 2, 4, 6, 8]).await;
        settle().await;
        future
    });
    drop(first);

    paused_runtime().block_on(async {
        let got = chunk_outcomes(future).await;
        assert_eq!(got.len(), 5);
        for outcome in &got {
            assert_worker_failed(outcome, "stopped before it finished");
        }
    });
}
