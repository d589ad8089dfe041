//! The state one [`MetricsLayer`](super::MetricsLayer) shares with every service it builds:
//! outcome counts and latency histograms in low-contention shards, the in-flight gauge, the
//! window start, and the `metrics` facade handles registered once at construction.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

use super::{
    Outcome, OutcomeCounts, Snapshot, IN_FLIGHT, NAME_LABEL, OUTCOME_LABEL, REQUESTS_TOTAL,
    REQUEST_DURATION_SECONDS,
};

/// Significant figures kept by every latency histogram.
const SIGNIFICANT_FIGURES: u8 = 3;

/// The range a shard's histogram covers before it first has to grow, in microseconds (10 s).
/// Slower calls still count: the histogram resizes itself (one allocation) to fit them.
const INITIAL_HIGHEST_MICROS: u64 = 10_000_000;

/// Most shards a recorder keeps, whatever the core count.
const MAX_SHARDS: usize = 16;

/// A cloneable view of the numbers kept by one [`MetricsLayer`](super::MetricsLayer): the layer,
/// every service it built and every clone of those share the same state behind an `Arc`, and so
/// does every handle.
///
/// ```
/// use cio_layers::metrics::MetricsLayer;
///
/// let layer = MetricsLayer::new("search");
/// let handle = layer.handle(); // keep it: the layer moves into a `ServiceBuilder`
/// let window = handle.snapshot_and_reset();
/// assert_eq!(window.count, 0);
/// assert_eq!(handle.name(), "search");
/// ```
#[derive(Clone, Debug)]
pub struct MetricsHandle {
    recorder: Arc<Recorder>,
}

impl MetricsHandle {
    pub(crate) fn new(recorder: Arc<Recorder>) -> Self {
        MetricsHandle { recorder }
    }

    /// The numbers since the layer was created or last reset, without resetting them.
    pub fn snapshot(&self) -> Snapshot {
        self.recorder.snapshot(false)
    }

    /// The numbers since the layer was created or last reset, and a new window starting now:
    /// what a load generator calls once a second. Every completion lands in exactly one window.
    pub fn snapshot_and_reset(&self) -> Snapshot {
        self.recorder.snapshot(true)
    }

    /// Starts a new window now: counts and latencies go back to zero. The in-flight gauge is a
    /// level, not a count, and is kept.
    pub fn reset(&self) {
        self.recorder.snapshot(true);
    }

    /// The numbers since the previous call of `window` (or since the layer was created or last
    /// reset), leaving [`snapshot`](Self::snapshot)'s totals alone: what a report that draws a
    /// time series and also prints the totals calls once a second. Every completion lands in
    /// exactly one window.
    ///
    /// ```
    /// use cio_layers::metrics::MetricsLayer;
    ///
    /// let handle = MetricsLayer::new("search").handle();
    /// assert_eq!(handle.window().count, 0);
    /// assert_eq!(handle.snapshot().count, 0);
    /// ```
    pub fn window(&self) -> Snapshot {
        self.recorder.take_window()
    }

    /// Calls started and not yet finished, right now (cheaper than a snapshot).
    pub fn in_flight(&self) -> u64 {
        self.recorder.in_flight.load(Ordering::Relaxed)
    }

    /// The value of the `name` label.
    pub fn name(&self) -> &str {
        &self.recorder.name
    }

    /// The prefix of the metric names given to the `metrics` facade.
    pub fn prefix(&self) -> &str {
        &self.recorder.prefix
    }
}

/// The shared state. Hot path per call: one `fetch_add` and one `fetch_sub` on the in-flight
/// counter, one uncontended shard lock, one histogram record, and the facade handles (no-ops when
/// no `metrics` recorder was installed when the layer was built).
pub(crate) struct Recorder {
    name: String,
    prefix: String,
    in_flight: AtomicU64,
    shards: Box<[Padded<Mutex<Shard>>]>,
    window_start: Mutex<Instant>,
    /// Start of the window [`MetricsHandle::window`] takes.
    series_start: Mutex<Instant>,
    facade: Facade,
}

impl Recorder {
    pub(crate) fn new(prefix: String, name: String) -> Self {
        let parallelism = std::thread::available_parallelism().map_or(4, NonZeroUsize::get);
        let count = (2 * parallelism).next_power_of_two().min(MAX_SHARDS);
        let shards = (0..count)
            .map(|_| Padded(Mutex::new(Shard::new())))
            .collect();
        let facade = Facade::register(&prefix, &name);
        Recorder {
            name,
            prefix,
            in_flight: AtomicU64::new(0),
            shards,
            window_start: Mutex::new(Instant::now()),
            series_start: Mutex::new(Instant::now()),
            facade,
        }
    }

    /// A call has started: counts it in flight until the returned guard finishes or is dropped.
    pub(crate) fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.facade.in_flight.increment(1.0);
        InFlight {
            recorder: Arc::clone(self),
            start: Instant::now(),
            finished: false,
        }
    }

    /// A call has ended with `outcome`; `latency` is `None` for a cancelled call.
    fn finish(&self, outcome: Outcome, latency: Option<Duration>) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.facade.in_flight.decrement(1.0);
        let micros = latency.map(|l| u64::try_from(l.as_micros()).unwrap_or(u64::MAX));
        {
            let mut shard = self.shard();
            shard.total.record(outcome, micros);
            shard.window.record(outcome, micros);
        }
        self.facade.outcomes[outcome as usize].increment(1);
        if let Some(latency) = latency {
            self.facade.duration.record(latency.as_secs_f64());
        }
    }

    /// This thread's shard, or the first free one after it when another thread holds it (a
    /// snapshot merging it, or two threads sharing a hint). Blocks only when every shard is busy.
    fn shard(&self) -> MutexGuard<'_, Shard> {
        let n = self.shards.len();
        let home = shard_hint() % n;
        for i in 0..n {
            match self.shards[(home + i) % n].0.try_lock() {
                Ok(guard) => return guard,
                Err(TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        lock(&self.shards[home].0)
    }

    /// Merges every shard's totals; with `reset`, empties each (totals and window) as it is
    /// merged and starts a new window.
    pub(crate) fn snapshot(&self, reset: bool) -> Snapshot {
        let now = Instant::now();
        let since = {
            let mut start = lock(&self.window_start);
            let since = *start;
            if reset {
                *start = now;
                *lock(&self.series_start) = now;
            }
            since
        };
        let mut merged = Counts::new();
        for shard in self.shards.iter() {
            let mut shard = lock(&shard.0);
            merged.add(&shard.total, &self.name);
            if reset {
                shard.total.clear();
                shard.window.clear();
            }
        }
        merged.snapshot(now.saturating_duration_since(since), self.in_flight())
    }

    /// Merges and empties every shard's window, and starts the next.
    pub(crate) fn take_window(&self) -> Snapshot {
        let now = Instant::now();
        let since = std::mem::replace(&mut *lock(&self.series_start), now);
        let mut merged = Counts::new();
        for shard in self.shards.iter() {
            let mut shard = lock(&shard.0);
            merged.add(&shard.window, &self.name);
            shard.window.clear();
        }
        merged.snapshot(now.saturating_duration_since(since), self.in_flight())
    }

    fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("prefix", &self.prefix)
            .field("name", &self.name)
            .field("in_flight", &self.in_flight.load(Ordering::Relaxed))
            .field("shards", &self.shards.len())
            .finish()
    }
}

/// One call in flight. Finishing it records its outcome and latency; dropping it unfinished (the
/// caller abandoned the future, or the inner service panicked) records it as cancelled, so the
/// in-flight gauge always comes back down.
pub(crate) struct InFlight {
    recorder: Arc<Recorder>,
    start: Instant,
    finished: bool,
}

impl InFlight {
    pub(crate) fn finish(mut self, outcome: Outcome) {
        self.finished = true;
        self.recorder.finish(outcome, Some(self.start.elapsed()));
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.finished {
            self.recorder.finish(Outcome::Cancelled, None);
        }
    }
}

impl fmt::Debug for InFlight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InFlight")
            .field("name", &self.recorder.name)
            .field("start", &self.start)
            .finish()
    }
}

/// What one shard counts, since the layer was created or reset (`total`) and since the last
/// [`MetricsHandle::window`] (`window`).
struct Shard {
    total: Counts,
    window: Counts,
}

impl Shard {
    fn new() -> Self {
        Shard {
            total: Counts::new(),
            window: Counts::new(),
        }
    }
}

/// Calls by outcome and the latency of those that completed.
struct Counts {
    outcomes: [u64; Outcome::ALL.len()],
    histogram: Histogram<u64>,
}

impl Counts {
    fn new() -> Self {
        Counts {
            outcomes: [0; Outcome::ALL.len()],
            histogram: new_histogram(),
        }
    }

    fn record(&mut self, outcome: Outcome, micros: Option<u64>) {
        self.outcomes[outcome as usize] += 1;
        let Some(micros) = micros else { return };
        if self.histogram.record(micros).is_err() {
            // Past what the histogram can grow to (about 146,000 years): keep it, at the top.
            self.histogram.saturating_record(micros);
        }
    }

    fn add(&mut self, other: &Counts, name: &str) {
        if self.histogram.add(&other.histogram).is_err() {
            // Only possible if a histogram outgrew the address space; counts stay right.
            tracing::warn!(%name, "latency shard could not be merged");
        }
        for (total, count) in self.outcomes.iter_mut().zip(other.outcomes) {
            *total += count;
        }
    }

    fn clear(&mut self) {
        self.histogram.reset();
        self.outcomes = [0; Outcome::ALL.len()];
    }

    fn snapshot(&self, elapsed: Duration, in_flight: u64) -> Snapshot {
        let merged = &self.histogram;
        let outcomes = OutcomeCounts::from_array(self.outcomes);
        let count = outcomes.total();
        let rate = if elapsed.is_zero() {
            0.0
        } else {
            count as f64 / elapsed.as_secs_f64()
        };
        let at = |q: f64| micros(merged.value_at_quantile(q), merged);
        Snapshot {
            count,
            elapsed,
            rate,
            p50: at(0.50),
            p90: at(0.90),
            p95: at(0.95),
            p99: at(0.99),
            p999: at(0.999),
            max: micros(merged.max(), merged),
            mean: if merged.is_empty() {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(merged.mean() / 1e6)
            },
            outcomes,
            in_flight,
        }
    }
}

/// A histogram of microseconds with 3 significant figures that grows to fit slow calls.
fn new_histogram() -> Histogram<u64> {
    let mut histogram = Histogram::new_with_max(INITIAL_HIGHEST_MICROS, SIGNIFICANT_FIGURES)
        .or_else(|_| Histogram::new(SIGNIFICANT_FIGURES))
        .unwrap_or_else(|_| unreachable!("3 significant figures and 1 µs..10 s are valid bounds"));
    histogram.auto(true);
    histogram
}

fn micros(value: u64, histogram: &Histogram<u64>) -> Duration {
    if histogram.is_empty() {
        Duration::ZERO
    } else {
        Duration::from_micros(value)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Keeps each shard on its own cache line, so two threads recording into neighbouring shards do
/// not invalidate each other's line.
#[repr(align(128))]
struct Padded<T>(T);

/// Gives each thread a fixed shard index, handed out round-robin on its first call.
fn shard_hint() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static HINT: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    HINT.try_with(|hint| *hint).unwrap_or(0)
}

/// The `metrics` facade handles, registered once: recording through a kept handle costs no key
/// lookup, and a no-op handle (no recorder installed) costs a branch.
struct Facade {
    outcomes: [metrics::Counter; Outcome::ALL.len()],
    duration: metrics::Histogram,
    in_flight: metrics::Gauge,
}

impl Facade {
    fn register(prefix: &str, name: &str) -> Self {
        let requests = format!("{prefix}_{REQUESTS_TOTAL}");
        let duration = format!("{prefix}_{REQUEST_DURATION_SECONDS}");
        let in_flight = format!("{prefix}_{IN_FLIGHT}");
        metrics::describe_counter!(
            requests.clone(),
            metrics::Unit::Count,
            "Calls finished, by outcome (success, retryable_error, permanent_error, back_pressure, cancelled)."
        );
        metrics::describe_histogram!(
            duration.clone(),
            metrics::Unit::Seconds,
            "Time from call to completion of the calls that completed (cancelled calls excluded)."
        );
        metrics::describe_gauge!(
            in_flight.clone(),
            metrics::Unit::Count,
            "Calls started and not yet finished."
        );
        let outcomes = Outcome::ALL.map(|outcome| {
            metrics::counter!(
                requests.clone(),
                NAME_LABEL => name.to_owned(),
                OUTCOME_LABEL => outcome.as_str()
            )
        });
        Facade {
            outcomes,
            duration: metrics::histogram!(duration, NAME_LABEL => name.to_owned()),
            in_flight: metrics::gauge!(in_flight, NAME_LABEL => name.to_owned()),
        }
    }
}
