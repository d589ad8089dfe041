use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cio_layers::Failure;

use super::*;
use crate::dead_letter::{DeadLetterError, InMemory};
use crate::decode::DecodeError;
use crate::source::{MemorySource, Message, Position, SourceError};
use tower::Service;

fn numbers(n: u32) -> MemorySource {
    MemorySource::new((0..n).map(|i| i.to_string()))
}

fn parse(b: &[u8], _: &Position) -> Result<u32, DecodeError> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| DecodeError::new("not a number"))
}

#[tokio::test(start_paused = true)]
async fn delivers_everything_with_bounded_in_flight_work() {
    let source = numbers(500);
    let acks = source.ack_log();
    let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let service = {
        let (now, peak) = (now.clone(), peak.clone());
        tower::service_fn(move |n: u32| {
            let (now, peak) = (now.clone(), peak.clone());
            async move {
                let in_flight = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(in_flight, Ordering::SeqCst);
                // Answers come back out of order.
                tokio::time::sleep(Duration::from_millis(u64::from(n * 7 % 13))).await;
                now.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, Infallible>(())
            }
        })
    };
    let report = Processor::new(source, parse, service, InMemory::new())
        .max_in_flight(16)
        .run(CancellationToken::new())
        .await;
    assert_eq!((report.read, report.delivered), (500, 500));
    assert!(report.is_complete() && report.is_balanced(), "{report:?}");
    assert_eq!(peak.load(Ordering::SeqCst), 16);
    let mut acked = acks.acked();
    assert_ne!(
        acked,
        (0..500).collect::<Vec<_>>(),
        "acks should arrive out of order"
    );
    acked.sort_unstable();
    assert_eq!(acked, (0..500).collect::<Vec<_>>());
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["stop"]["kind"], "end_of_input");
    assert_eq!(json["delivered"], 500);
}

#[tokio::test(start_paused = true)]
async fn failures_are_dead_lettered_with_the_reason_then_acked() {
    let source = MemorySource::new(["1", "oops", "3", "4"]);
    let acks = source.ack_log();
    let service = tower::service_fn(|n: u32| async move {
        match n {
            3 => Err("400 Bad Request: name too long".to_owned()),
            4 => Err("503 (gave up after 4 attempts)".to_owned()),
            _ => Ok(()),
        }
    });
    let letters = InMemory::new();
    let classify = |e: &String| Failure {
        retryable: e.starts_with("503"),
        ..Failure::PERMANENT
    };
    let report = Processor::new(source, parse, service, letters.clone())
        .classify_errors(classify)
        .run(CancellationToken::new())
        .await;
    assert_eq!(
        (
            report.delivered,
            report.decode_failures,
            report.delivery_failures
        ),
        (1, 1, 2)
    );
    assert!(report.is_complete() && report.is_balanced());
    let mut got: Vec<_> = letters
        .letters()
        .into_iter()
        .map(|l| {
            (
                l.position.to_string(),
                l.stage,
                l.reason,
                l.retryable,
                l.payload,
            )
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        [
            (
                "memory#1".into(),
                Stage::Decode,
                "not a number".into(),
                None,
                "oops".into()
            ),
            (
                "memory#2".into(),
                Stage::Deliver,
                "400 Bad Request: name too long".into(),
                Some(false),
                "3".into()
            ),
            (
                "memory#3".into(),
                Stage::Deliver,
                "503 (gave up after 4 attempts)".into(),
                Some(true),
                "4".into()
            ),
        ]
    );
    let mut acked = acks.acked();
    acked.sort_unstable();
    assert_eq!(acked, [0, 1, 2, 3]);
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_reading_finishes_what_it_can_and_nacks_the_rest() {
    let source = numbers(1000);
    let acks = source.ack_log();
    // Even numbers answer after 1 s; odd ones never.
    let service = tower::service_fn(|n: u32| async move {
        if n % 2 == 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        } else {
            std::future::pending::<()>().await;
        }
        Ok::<_, Infallible>(())
    });
    let shutdown = CancellationToken::new();
    let stopper = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        stopper.cancel();
    });
    let started = Instant::now();
    let report = Processor::new(source, parse, service, InMemory::new())
        .max_in_flight(10)
        .drain_deadline(Duration::from_secs(2))
        .run(shutdown)
        .await;
    // 10 read (the window), 5 finished during the drain, 5 abandoned at the deadline.
    assert_eq!(report.stop, StopReason::Cancelled);
    assert_eq!(
        (report.read, report.delivered, report.unacknowledged),
        (10, 5, 5)
    );
    assert!(report.is_balanced() && !report.is_complete());
    assert_eq!(started.elapsed(), Duration::from_millis(2500));
    let (mut acked, mut nacked) = (acks.acked(), acks.nacked());
    acked.sort_unstable();
    nacked.sort_unstable();
    assert_eq!(acked, [0, 2, 4, 6, 8]);
    assert_eq!(nacked, [1, 3, 5, 7, 9]);
}

#[tokio::test(start_paused = true)]
async fn at_the_end_of_input_it_waits_for_slow_work_without_a_deadline() {
    let service = tower::service_fn(|_: u32| async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok::<_, Infallible>(())
    });
    let report = Processor::new(numbers(3), parse, service, InMemory::new())
        .drain_deadline(Duration::from_secs(1))
        .run(CancellationToken::new())
        .await;
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.delivered, 3);
}

/// A sink that cannot keep anything.
struct Broken;

impl DeadLetterSink for Broken {
    async fn send(&self, _: DeadLetter) -> Result<(), DeadLetterError> {
        Err(DeadLetterError::Write {
            path: "/full-disk".into(),
            reason: "No space left on device".into(),
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_dead_letter_that_cannot_be_kept_is_not_acked_and_stops_the_run() {
    let source = MemorySource::new(["1", "x", "3", "4", "5"]);
    let acks = source.ack_log();
    let service = tower::service_fn(|_: u32| async move { Ok::<_, Infallible>(()) });
    let report = Processor::new(source, parse, service, Broken)
        .max_in_flight(1)
        .run(CancellationToken::new())
        .await;
    assert!(
        matches!(&report.stop, StopReason::DeadLetterFailed { error } if error.contains("No space")),
        "{report:?}"
    );
    assert_eq!(
        (
            report.delivered,
            report.dead_lettered,
            report.unacknowledged
        ),
        (1, 0, 1)
    );
    assert!(report.is_balanced());
    assert_eq!(acks.nacked(), [1]);
    assert_eq!(acks.acked(), [0]);
}

/// Fails transiently twice, then fatally.
struct Flaky {
    calls: u32,
}

impl Source for Flaky {
    type Ack = crate::source::MemoryAck;

    async fn next(&mut self) -> Result<Option<Message<Self::Ack>>, SourceError> {
        self.calls += 1;
        Err(SourceError::Other {
            retryable: self.calls <= 2,
            source: format!("broker unreachable (call {})", self.calls).into(),
        })
    }
}

#[tokio::test(start_paused = true)]
async fn transient_source_errors_are_retried_and_others_stop_the_run() {
    let service = tower::service_fn(|_: u32| async move { Ok::<_, Infallible>(()) });
    let started = Instant::now();
    let report = Processor::new(Flaky { calls: 0 }, parse, service, InMemory::new())
        .run(CancellationToken::new())
        .await;
    assert_eq!(report.source_errors, 2);
    assert_eq!(
        report.stop,
        StopReason::SourceFailed {
            error: "broker unreachable (call 3)".into()
        }
    );
    // Backoff 100 ms then 200 ms.
    assert_eq!(started.elapsed(), Duration::from_millis(300));
}

/// A service whose `poll_ready` fails after two calls.
#[derive(Clone)]
struct Wearing {
    calls: u32,
}

impl Service<u32> for Wearing {
    type Response = ();
    type Error = String;
    type Future = std::future::Ready<Result<(), String>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), String>> {
        std::task::Poll::Ready(if self.calls < 2 {
            Ok(())
        } else {
            Err("worker gone".into())
        })
    }

    fn call(&mut self, _: u32) -> Self::Future {
        self.calls += 1;
        std::future::ready(Ok(()))
    }
}

#[tokio::test(start_paused = true)]
async fn a_service_that_fails_readiness_stops_the_run_and_the_message_in_hand_is_nacked() {
    let source = numbers(5);
    let acks = source.ack_log();
    let report = Processor::new(source, parse, Wearing { calls: 0 }, InMemory::new())
        .run(CancellationToken::new())
        .await;
    assert_eq!(
        report.stop,
        StopReason::ServiceFailed {
            error: "worker gone".into()
        }
    );
    // The reader reads ahead of the service: the message in hand and those read after it are
    // nacked.
    assert_eq!(
        (report.read, report.delivered, report.unacknowledged),
        (5, 2, 3)
    );
    let mut nacked = acks.nacked();
    nacked.sort_unstable();
    assert_eq!(nacked, [2, 3, 4]);
}

#[tokio::test(start_paused = true)]
async fn messages_read_before_shutdown_are_still_handed_over_within_the_drain_deadline() {
    let (report, acks, took) = stop_at_200_ms_one_slow_call_at_a_time(Duration::from_secs(5)).await;
    // The reader read all 100 ahead. Everything read is still handed to the service until the
    // drain deadline (0.2 s + 5 s): messages 0 to 5 are taken (one a second), 0 to 4 answered;
    // at the deadline message 5 is abandoned and the rest, never handed over, nacked.
    assert_eq!(
        (report.read, report.delivered, report.unacknowledged),
        (100, 5, 95),
        "{report:?}"
    );
    assert_eq!(report.stop, StopReason::Cancelled);
    assert!(report.is_balanced());
    assert_eq!(took, Duration::from_millis(5200));
    let mut acked = acks.acked();
    acked.sort_unstable();
    assert_eq!(acked, [0, 1, 2, 3, 4]);
    let mut nacked = acks.nacked();
    nacked.sort_unstable();
    assert_eq!(nacked, (5..100).collect::<Vec<_>>());

    // With a deadline shorter than the wait, the message in hand is nacked at the deadline.
    let (report, acks, took) =
        stop_at_200_ms_one_slow_call_at_a_time(Duration::from_millis(500)).await;
    assert_eq!(
        (report.read, report.delivered, report.unacknowledged),
        (100, 0, 100),
        "{report:?}"
    );
    assert!(report.is_balanced());
    assert_eq!(took, Duration::from_millis(700));
    let mut nacked = acks.nacked();
    nacked.sort_unstable();
    assert_eq!(nacked, (0..100).collect::<Vec<_>>());
}

/// 100 messages into a service taking one call at a time, each taking 1 s, with shutdown at
/// 0.2 s: message 0 is then in the service, message 1 waits for readiness and the rest wait
/// behind it, read ahead. Returns the report, the acks and how long the run took.
async fn stop_at_200_ms_one_slow_call_at_a_time(
    drain: Duration,
) -> (Report, crate::source::AckLog, Duration) {
    let source = numbers(100);
    let acks = source.ack_log();
    let service = tower::ServiceBuilder::new()
        .layer(cio_layers::concurrency::ConcurrencyLimitLayer::new(1))
        .service(tower::service_fn(|_: u32| async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, Infallible>(())
        }));
    let shutdown = CancellationToken::new();
    let stopper = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stopper.cancel();
    });
    let started = Instant::now();
    let report = Processor::new(source, parse, service, InMemory::new())
        .drain_deadline(drain)
        .run(shutdown)
        .await;
    (report, acks, started.elapsed())
}

#[tokio::test(start_paused = true)]
async fn work_in_flight_settles_while_the_source_has_nothing_to_give() {
    // Each message's work runs alongside reading: a source that waits for its next message must
    // not hold back the settlement of those already read.
    let (tx, source) = crate::source::channel(8);
    let service = tower::service_fn(|n: u32| async move {
        tokio::time::sleep(Duration::from_millis(u64::from(n))).await;
        Ok::<_, Infallible>(())
    });
    let processor = Processor::new(source, parse, service, InMemory::new()).max_in_flight(8);
    let progress = processor.progress();
    let run = tokio::spawn(processor.run(CancellationToken::new()));
    let receipts = [
        tx.send_with_receipt("5").await.unwrap(),
        tx.send_with_receipt("10").await.unwrap(),
    ];
    for r in receipts {
        // The sender is still open: the source is waiting, and the work settles anyway.
        let settled = tokio::time::timeout(Duration::from_secs(5), r.settled()).await;
        assert_eq!(settled.ok(), Some(crate::source::Settlement::Acked));
    }
    assert_eq!(progress.in_flight(), 0);
    drop(tx);
    let report = run.await.unwrap();
    assert_eq!((report.read, report.delivered), (2, 2));
    assert!(report.is_complete() && report.is_balanced(), "{report:?}");
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_one_message_leaves_it_unacknowledged_and_the_rest_delivered() {
    let source = numbers(20);
    let acks = source.ack_log();
    let service = tower::service_fn(|n: u32| async move {
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_ne!(n, 7, "a bug in the service's future");
        Ok::<_, Infallible>(())
    });
    let report = Processor::new(source, parse, service, InMemory::new())
        .max_in_flight(4)
        .run(CancellationToken::new())
        .await;
    assert_eq!(
        (report.read, report.delivered, report.unacknowledged),
        (20, 19, 1)
    );
    assert!(report.is_balanced(), "{report:?}");
    let mut acked = acks.acked();
    acked.sort_unstable();
    assert_eq!(acked, (0..20).filter(|&i| i != 7).collect::<Vec<_>>());
    assert_eq!(acks.dropped(), vec![7]);
}

/// A deadline that passes while the service is not ready (a rate limit of 1/s here, Redis down
/// or a full concurrency limit in life) fails that one message, not the run: tower's
/// `poll_ready` error would mean the service is finished, so the deadline fails the response
/// future instead, and the processor goes on with the next messages.
#[tokio::test(start_paused = true)]
async fn a_deadline_passing_in_readiness_fails_one_message_and_the_run_goes_on() {
    use cio_layers::deadline::{DeadlineLayer, Elapsed};
    use cio_layers::rate_limit::{Quota, RateLimitLayer};
    use tower::ServiceBuilder;

    #[derive(Debug)]
    struct Late(Elapsed);
    impl From<Elapsed> for Late {
        fn from(e: Elapsed) -> Self {
            Late(e)
        }
    }
    impl std::fmt::Display for Late {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}", self.0)
        }
    }
    let source = numbers(6);
    let acks = source.ack_log();
    let service = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_millis(600)))
        .layer(RateLimitLayer::new(Quota::per_second(
            std::num::NonZeroU32::MIN,
        )))
        .service(tower::service_fn(|_: u32| async { Ok::<_, Late>(()) }));
    let letters = InMemory::new();
    let report = Processor::new(source, parse, service, letters.clone())
        .max_in_flight(1)
        .run(CancellationToken::new())
        .await;
    assert_eq!(report.stop, StopReason::EndOfInput, "{report:?}");
    assert_eq!(report.read, 6);
    // One a second passes; the message behind each waits 600 ms and fails, the next goes.
    assert_eq!(
        (report.delivered, report.dead_lettered),
        (3, 3),
        "{report:?}"
    );
    assert!(
        letters.letters()[0].reason.contains("600ms"),
        "{:?}",
        letters.letters()[0]
    );
    assert_eq!(acks.acked().len(), 6);
}

/// A source whose acks wait (a broker round trip, like Redis's XACK) and fail for odd numbers:
/// it has no `ack_now`, so every ack goes through its future.
struct SlowAcks(MemorySource);

struct SlowAck(crate::source::MemoryAck, bool);

impl crate::source::Acknowledge for SlowAck {
    async fn ack(self) -> Result<(), crate::source::AckError> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if self.1 {
            return Err(crate::source::AckError::new("broker said no"));
        }
        self.0.ack().await
    }

    async fn nack(self) -> Result<(), crate::source::AckError> {
        self.0.nack().await
    }
}

impl Source for SlowAcks {
    type Ack = SlowAck;

    async fn next(&mut self) -> Result<Option<Message<SlowAck>>, SourceError> {
        Ok(self.0.next().await?.map(|m| {
            let odd = m.payload.last().is_some_and(|d| d % 2 == 1);
            Message::new(m.payload, m.position, SlowAck(m.ack, odd))
        }))
    }
}

#[tokio::test(start_paused = true)]
async fn acks_that_wait_are_awaited_and_their_failures_counted() {
    let source = numbers(200);
    let acks = source.ack_log();
    let service = tower::service_fn(|_: u32| async { Ok::<_, Infallible>(()) });
    let report = Processor::new(SlowAcks(source), parse, service, InMemory::new())
        .max_in_flight(32)
        .run(CancellationToken::new())
        .await;
    assert_eq!(
        (report.read, report.delivered, report.ack_errors),
        (200, 200, 100)
    );
    assert!(report.is_balanced(), "{report:?}");
    let mut acked = acks.acked();
    acked.sort_unstable();
    assert_eq!(acked, (0..200).step_by(2).collect::<Vec<_>>());
}

/// One outcome per item of a chunk, in order.
type ItemOutcomes = Vec<Result<(), String>>;

/// A `Service<Vec<u32>>` for chunked processors: records each call's items and, after a delay,
/// answers each item (odd numbers fail), the whole call (a call holding 666 fails as a whole),
/// or one outcome short (a call holding 777).
fn chunk_service(
    calls: Arc<std::sync::Mutex<Vec<Vec<u32>>>>,
) -> impl Service<
    Vec<u32>,
    Response = ItemOutcomes,
    Error = String,
    Future = impl std::future::Future<Output = Result<ItemOutcomes, String>> + Send,
> + Send {
    tower::service_fn(move |items: Vec<u32>| {
        calls.lock().unwrap().push(items.clone());
        async move {
            tokio::time::sleep(Duration::from_millis(u64::from(items[0] % 7))).await;
            if items.contains(&666) {
                return Err("503 Service Unavailable (gave up)".to_owned());
            }
            let mut each: Vec<Result<(), String>> = items
                .iter()
                .map(|n| {
                    if n % 2 == 1 {
                        Err(format!("odd {n}"))
                    } else {
                        Ok(())
                    }
                })
                .collect();
            if items.contains(&777) {
                each.pop();
            }
            Ok(each)
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_chunked_processor_hands_items_over_in_order_in_chunks_and_settles_each() {
    let source = MemorySource::new((0..300).map(|i| {
        if i == 100 {
            "x".to_owned()
        } else {
            i.to_string()
        }
    }));
    let acks = source.ack_log();
    let calls = Arc::default();
    let letters = InMemory::new();
    let report = Processor::chunked(
        source,
        parse,
        chunk_service(Arc::clone(&calls)),
        16,
        letters.clone(),
    )
    .max_in_flight(64)
    .run(CancellationToken::new())
    .await;
    assert!(report.is_complete() && report.is_balanced(), "{report:?}");
    assert_eq!(report.read, 300);
    // 299 numbers: the 149 even ones delivered, the 150 odd ones and "x" dead-lettered.
    assert_eq!(
        (
            report.delivered,
            report.delivery_failures,
            report.decode_failures
        ),
        (149, 150, 1)
    );
    let calls = calls.lock().unwrap().clone();
    assert!(
        calls.iter().all(|c| !c.is_empty() && c.len() <= 16),
        "{calls:?}"
    );
    assert!(calls.iter().any(|c| c.len() > 1), "items go over in chunks");
    let handed: Vec<u32> = calls.concat();
    let want: Vec<u32> = (0..300).filter(|&i| i != 100).collect();
    assert_eq!(handed, want, "every item once, in the order read");
    let mut acked = acks.acked();
    acked.sort_unstable();
    assert_eq!(acked, (0..300).collect::<Vec<_>>());
    let odd = letters
        .letters()
        .into_iter()
        .find(|l| &l.payload[..] == b"7")
        .unwrap();
    assert_eq!(odd.reason, "odd 7");
}

#[tokio::test(start_paused = true)]
async fn a_chunk_failed_as_a_whole_dead_letters_each_item_and_a_short_answer_acks_none() {
    let source = MemorySource::new(["2", "666", "4", "777", "8"]);
    let acks = source.ack_log();
    let calls = Arc::default();
    let letters = InMemory::new();
    let classify = |e: &String| Failure {
        retryable: e.starts_with("503"),
        ..Failure::PERMANENT
    };
    // Chunks of two: [2, 666] fails as a whole, [4, 777] is answered one outcome short,
    // [8] is delivered.
    let report = Processor::chunked(
        source,
        parse,
        chunk_service(Arc::clone(&calls)),
        2,
        letters.clone(),
    )
    .classify_errors(classify)
    .run(CancellationToken::new())
    .await;
    assert_eq!(
        calls.lock().unwrap().clone(),
        vec![vec![2, 666], vec![4, 777], vec![8]]
    );
    assert_eq!(
        (
            report.delivered,
            report.delivery_failures,
            report.unacknowledged
        ),
        (1, 2, 2)
    );
    let letters = letters.letters();
    assert_eq!(letters.len(), 2);
    for letter in &letters {
        assert_eq!(letter.reason, "503 Service Unavailable (gave up)");
        assert_eq!(letter.retryable, Some(true));
    }
    let mut acked = acks.acked();
    acked.sort_unstable();
    assert_eq!(
        acked,
        vec![0, 1, 4],
        "the short answer's items are not acknowledged"
    );
}

#[tokio::test(start_paused = true)]
async fn the_input_end_hook_runs_once_everything_was_handed_over_and_not_on_a_stop() {
    let ran = Arc::new(AtomicUsize::new(0));
    let hook = {
        let ran = ran.clone();
        move || {
            ran.fetch_add(1, Ordering::SeqCst);
        }
    };
    let service = tower::service_fn(|_: u32| async { Ok::<_, Infallible>(()) });
    let report = Processor::new(numbers(10), parse, service, InMemory::new())
        .when_input_ends(hook.clone())
        .run(CancellationToken::new())
        .await;
    assert_eq!((report.delivered, ran.load(Ordering::SeqCst)), (10, 1));

    let stopped = CancellationToken::new();
    stopped.cancel();
    let service = tower::service_fn(|_: u32| async { Ok::<_, Infallible>(()) });
    let report = Processor::new(numbers(10), parse, service, InMemory::new())
        .when_input_ends(hook)
        .run(stopped)
        .await;
    assert!(!report.is_complete());
    assert_eq!(
        ran.load(Ordering::SeqCst),
        1,
        "not run when the run was stopped"
    );
}
