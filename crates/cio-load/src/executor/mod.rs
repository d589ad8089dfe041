//! Running a scenario: the open-model scheduler ([`arrival`]) and the closed-model VU loops
//! ([`vus`]), and what both share: running one iteration and measuring it, the run-wide
//! iteration budget, and draining at the end.

pub(crate) mod arrival;
pub(crate) mod vus;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use tokio::task::JoinSet;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use crate::metrics::ScenarioMetrics;
use crate::warnings::Warnings;
use crate::workload::{Iteration, Workload};

/// What the executor of one scenario works with.
#[derive(Clone)]
pub(crate) struct ScenarioContext {
    pub name: Arc<str>,
    pub workload: Arc<dyn Workload>,
    pub metrics: Arc<ScenarioMetrics>,
    pub budget: Arc<IterationBudget>,
    /// Cancelled when the whole run stops early (abort, cap, Ctrl-C): stop at once.
    pub abort: CancellationToken,
    pub warnings: Warnings,
}

/// The run-wide cap on iterations started (a safety bound): once spent, the run stops.
pub(crate) struct IterationBudget {
    left: AtomicU64,
}

impl IterationBudget {
    pub fn new(max: u64) -> Self {
        IterationBudget {
            left: AtomicU64::new(max),
        }
    }

    /// Takes one iteration; false when none is left.
    pub fn take(&self) -> bool {
        self.left
            .fetch_update(Relaxed, Relaxed, |l| l.checked_sub(1))
            .is_ok()
    }
}

/// Counts a VU busy while it lives; an iteration dropped before it completed (aborted at the end
/// of `graceful_stop`) is counted as interrupted.
struct Busy<'a> {
    metrics: &'a ScenarioMetrics,
    completed: bool,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.metrics.vu_free();
        if !self.completed {
            self.metrics.interrupted.fetch_add(1, Relaxed);
        }
    }
}

impl ScenarioContext {
    /// Runs iteration `number`, due at `scheduled`, and records it: latency from `scheduled`,
    /// service time from the workload's actual send.
    pub async fn iterate(&self, number: u64, scheduled: Instant) {
        self.metrics.started.fetch_add(1, Relaxed);
        self.metrics.vu_busy();
        let mut busy = Busy {
            metrics: &self.metrics,
            completed: false,
        };
        let outcome = self
            .workload
            .iterate(Iteration {
                scenario: self.name.clone(),
                number,
                scheduled,
            })
            .await;
        let end = Instant::now();
        let sent = outcome.sent_at.clamp(scheduled, end);
        self.metrics.record(&outcome, end - scheduled, end - sent);
        busy.completed = true;
    }

    /// Stops the run because the iteration budget is spent.
    pub fn budget_spent(&self) {
        self.warnings.abort(
            &self.abort,
            "the iteration cap (max_iterations) was reached; the test stopped early",
        );
    }
}

/// Waits for the iterations in `set` until `deadline` (or an abort), then interrupts the rest.
pub(crate) async fn drain(set: &mut JoinSet<()>, deadline: Instant, abort: &CancellationToken) {
    loop {
        tokio::select! {
            biased;
            _ = abort.cancelled() => break,
            _ = sleep_until(deadline) => break,
            next = set.join_next() => {
                if next.is_none() {
                    return;
                }
            }
        }
    }
    set.abort_all();
    while set.join_next().await.is_some() {}
}
