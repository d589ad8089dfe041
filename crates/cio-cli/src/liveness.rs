//! What `/healthz` answers: whether the pipeline makes progress when it has work.
//!
//! A worker is *stalled* when it has work (operations in flight, or input waiting to be read)
//! and for longer than `--stall-timeout` nothing was read, nothing settled and no request was
//! retried; or when its runtime has not run a heartbeat task for that long (a task blocking
//! every worker thread). An idle worker, with nothing in flight and nothing to read, is
//! healthy however long it waits, and so is one waiting out a retry delay it was given
//! (Customer.io's `Retry-After`, a backoff): restarting would only start that wait again.
//!
//! The admin server runs on a thread of its own, so `/healthz` still answers (503) when the
//! pipeline's runtime is stuck. No crate fits: tower-http and the Kubernetes probes know
//! nothing of a pipeline's progress, and this is a few comparisons of counters and times.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One look at the pipeline, taken once a second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// Messages read so far.
    pub read: u64,
    /// Messages settled so far (delivered, dead-lettered, left unacknowledged).
    pub settled: u64,
    /// Retries made so far.
    pub retries: u64,
    /// Operations between read and settled.
    pub in_flight: u64,
    /// Input waiting to be read (bytes of a file, messages of a queue); `None` when unknown.
    pub backlog: Option<u64>,
    /// A retry is waiting for a time it was given (Retry-After, a backoff) that has not come.
    pub waiting_to_retry: bool,
}

impl Sample {
    fn has_work(&self) -> bool {
        self.in_flight > 0 || self.backlog.unwrap_or(0) > 0
    }
}

/// The state `/healthz` judges from; shared by the sampler, the heartbeat and the admin thread.
#[derive(Debug)]
pub struct Liveness {
    started: Instant,
    threshold: Duration,
    /// Milliseconds after `started` of the last heartbeat and of the last progress (or idle
    /// moment).
    heartbeat_ms: AtomicU64,
    progress_ms: AtomicU64,
    last: Mutex<Sample>,
}

impl Liveness {
    /// Stalled after `threshold` without progress while there is work.
    pub fn new(threshold: Duration) -> Liveness {
        Liveness {
            started: Instant::now(),
            threshold,
            heartbeat_ms: AtomicU64::new(0),
            progress_ms: AtomicU64::new(0),
            last: Mutex::new(Sample::default()),
        }
    }

    fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.started).as_millis() as u64
    }

    /// The pipeline's runtime is running (called from a task on it).
    pub fn beat(&self, now: Instant) {
        self.heartbeat_ms.store(self.ms(now), Relaxed);
    }

    /// Records a sample: progress when anything moved since the last one, when there is
    /// nothing to do, or while a retry waits for its given time.
    pub fn observe(&self, sample: Sample, now: Instant) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let moved = (sample.read, sample.settled, sample.retries)
            != (last.read, last.settled, last.retries);
        if moved || !sample.has_work() || sample.waiting_to_retry {
            self.progress_ms.store(self.ms(now), Relaxed);
        }
        *last = sample;
    }

    /// `Ok` while healthy, else what is stuck, for the 503's body.
    pub fn verdict(&self, now: Instant) -> Result<(), String> {
        let now_ms = self.ms(now);
        let limit = self.threshold.as_millis() as u64;
        let since_beat = now_ms.saturating_sub(self.heartbeat_ms.load(Relaxed));
        if since_beat > limit {
            return Err(format!(
                "stalled: the pipeline's runtime has not run for {:.1} s (threshold {:.1} s): a task is blocking its threads",
                since_beat as f64 / 1000.0,
                self.threshold.as_secs_f64()
            ));
        }
        let since_progress = now_ms.saturating_sub(self.progress_ms.load(Relaxed));
        if since_progress > limit {
            let last = *self.last.lock().unwrap_or_else(|p| p.into_inner());
            let backlog = last
                .backlog
                .map(|b| format!("{b} waiting to be read"))
                .unwrap_or_else(|| "input of unknown size".into());
            return Err(format!(
                "stalled: {} operation(s) in flight and {backlog}, but nothing read, settled or retried for {:.1} s (threshold {:.1} s)",
                last.in_flight,
                since_progress as f64 / 1000.0,
                self.threshold.as_secs_f64()
            ));
        }
        Ok(())
    }
}

/// Beats for `liveness` every 250 ms, as long as the runtime it was spawned on runs its tasks.
pub async fn heartbeat(liveness: std::sync::Arc<Liveness>) {
    loop {
        liveness.beat(Instant::now());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(l: &Liveness, s: u64) -> Instant {
        l.started + Duration::from_secs(s)
    }

    #[test]
    fn stalled_only_with_work_and_no_progress_past_the_threshold() {
        let l = Liveness::new(Duration::from_secs(10));
        let beat_to = |s: u64| {
            for t in 0..=s {
                l.beat(at(&l, t));
            }
        };
        let busy = Sample {
            read: 100,
            settled: 50,
            in_flight: 50,
            backlog: Some(0),
            ..Sample::default()
        };
        l.observe(busy, at(&l, 0));
        beat_to(10);
        assert_eq!(l.verdict(at(&l, 10)), Ok(()));
        // The same numbers for 11 s, with work in flight: stalled.
        l.observe(busy, at(&l, 11));
        beat_to(11);
        let e = l.verdict(at(&l, 11)).unwrap_err();
        assert!(
            e.contains("50 operation(s) in flight") && e.contains("11.0 s"),
            "{e}"
        );
        // One settlement is progress.
        l.observe(
            Sample {
                settled: 51,
                ..busy
            },
            at(&l, 12),
        );
        beat_to(12);
        assert_eq!(l.verdict(at(&l, 12)), Ok(()));
        // A retry waiting for its Retry-After is not a stall, however long.
        l.observe(
            Sample {
                settled: 51,
                waiting_to_retry: true,
                ..busy
            },
            at(&l, 40),
        );
        beat_to(40);
        assert_eq!(l.verdict(at(&l, 40)), Ok(()));
        // Input waiting and never read, nothing in flight: stalled.
        let unread = Sample {
            settled: 100,
            in_flight: 0,
            backlog: Some(4096),
            ..busy
        };
        l.observe(unread, at(&l, 41));
        l.observe(unread, at(&l, 60));
        beat_to(60);
        let e = l.verdict(at(&l, 60)).unwrap_err();
        assert!(e.contains("4096 waiting to be read"), "{e}");
        // Idle: nothing in flight, nothing to read, for an hour: healthy.
        let idle = Sample {
            backlog: Some(0),
            ..unread
        };
        l.observe(idle, at(&l, 61));
        l.observe(idle, at(&l, 3600));
        beat_to(3600);
        assert_eq!(l.verdict(at(&l, 3600)), Ok(()));
    }

    #[test]
    fn a_runtime_that_stops_beating_is_stalled_even_when_idle() {
        let l = Liveness::new(Duration::from_secs(5));
        l.observe(Sample::default(), at(&l, 0));
        l.beat(at(&l, 0));
        l.observe(Sample::default(), at(&l, 6));
        let e = l.verdict(at(&l, 6)).unwrap_err();
        assert!(e.contains("runtime has not run for 6.0 s"), "{e}");
    }
}
