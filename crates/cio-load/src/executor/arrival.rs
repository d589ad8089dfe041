//! The open model: iterations start at their scheduled instants, on a free VU of the pool, and
//! are counted in `dropped_iterations` when there is none.
//!
//! The scheduler is one task per scenario. It sleeps until the next instant in the
//! [`ArrivalSchedule`](crate::schedule::ArrivalSchedule) and then starts every iteration that is
//! due (tokio's timer has millisecond resolution, so at 2,000/s it starts about two per wake-up;
//! each keeps its own scheduled instant, from which its latency is measured). A VU is a
//! long-lived task, as in k6: the scheduler hands a due iteration to a free one over its own
//! channel, and the VU puts itself back on the free list when the iteration ends (no task is
//! spawned per iteration). The pool starts at `pre_allocated_vus` and grows one VU at a time up
//! to `max_vus`. With `max_vus` busy, a due iteration is dropped and counted, never queued:
//! queueing it would start it late and hide the wait from nobody but the report.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{sleep_until, Instant};

use super::{drain, ScenarioContext};
use crate::scenario::Executor;
use crate::schedule::ArrivalSchedule;

/// Runs an arrival-rate scenario that starts at `start`, then waits `graceful_stop` for the
/// iterations still running.
pub(crate) async fn run(
    ctx: ScenarioContext,
    executor: &Executor,
    start: Instant,
    graceful_stop: Duration,
) {
    let (pre, max) = match executor {
        Executor::ConstantArrivalRate {
            pre_allocated_vus,
            max_vus,
            ..
        }
        | Executor::RampingArrivalRate {
            pre_allocated_vus,
            max_vus,
            ..
        } => (u64::from(*pre_allocated_vus), u64::from(*max_vus)),
        _ => return,
    };
    let mut pool = Pool::new(&ctx, pre);
    let mut warned_growth = false;
    let mut warned_drop = false;
    let end = start + executor.duration();

    for (number, offset) in ArrivalSchedule::new(executor) {
        let due = start + offset;
        if due > Instant::now() {
            tokio::select! {
                biased;
                _ = ctx.abort.cancelled() => break,
                _ = sleep_until(due) => {}
            }
        } else if ctx.abort.is_cancelled() {
            break;
        }
        let vu = match pool.take_free() {
            Some(vu) => vu,
            None if pool.len() < max => {
                if !warned_growth {
                    warned_growth = true;
                    tracing::debug!(scenario = %ctx.name, pre_allocated_vus = pre, "all pre-allocated VUs busy; adding VUs up to max_vus");
                }
                pool.add(&ctx)
            }
            None => {
                ctx.metrics.dropped.fetch_add(1, Relaxed);
                if !warned_drop {
                    warned_drop = true;
                    ctx.warnings.push(format!(
                        "scenario {:?}: insufficient VUs: all {max} VUs are busy and iterations are being dropped; raise max_vus (about rate x latency in seconds)",
                        ctx.name
                    ));
                }
                continue;
            }
        };
        if !ctx.budget.take() {
            ctx.budget_spent();
            break;
        }
        if !pool.start(vu, number, due) {
            ctx.metrics.dropped.fetch_add(1, Relaxed);
        }
    }
    let mut set = pool.close();
    drain(
        &mut set,
        end.max(Instant::now()) + graceful_stop,
        &ctx.abort,
    )
    .await;
}

/// An iteration handed to a VU: its number and the instant it was due.
type Job = (u64, Instant);

/// The scenario's VUs: a task each, with a channel to hand it an iteration.
struct Pool {
    jobs: Vec<mpsc::Sender<Job>>,
    /// The VUs with nothing to do, most recently freed last.
    free: Arc<Mutex<Vec<usize>>>,
    tasks: JoinSet<()>,
}

impl Pool {
    fn new(ctx: &ScenarioContext, size: u64) -> Pool {
        let mut pool = Pool {
            jobs: Vec::new(),
            free: Arc::new(Mutex::new(Vec::new())),
            tasks: JoinSet::new(),
        };
        for _ in 0..size {
            let vu = pool.add(ctx);
            pool.free.lock().unwrap_or_else(|p| p.into_inner()).push(vu);
        }
        pool
    }

    fn len(&self) -> u64 {
        self.jobs.len() as u64
    }

    /// Adds a VU, busy (the caller hands it an iteration or puts it on the free list).
    fn add(&mut self, ctx: &ScenarioContext) -> usize {
        let index = self.jobs.len();
        let (tx, rx) = mpsc::channel(1);
        self.jobs.push(tx);
        ctx.metrics.allocated_vus.store(self.len(), Relaxed);
        self.tasks
            .spawn(vu(ctx.clone(), index, rx, self.free.clone()));
        index
    }

    fn take_free(&self) -> Option<usize> {
        self.free.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    /// Hands iteration `number` to `vu`, which is free: its channel is empty, so this never
    /// waits. False if the VU has ended (only a bug can end a VU before `close`).
    fn start(&self, vu: usize, number: u64, due: Instant) -> bool {
        self.jobs[vu].try_send((number, due)).is_ok()
    }

    /// Closes every VU's channel, which ends each after its current iteration, and returns the
    /// tasks to wait for.
    fn close(self) -> JoinSet<()> {
        self.tasks
    }
}

/// One VU: runs the iterations it is handed, one at a time, and goes back on the free list after
/// each. A panic in an iteration (a bug in the workload) is reported and the VU goes on.
async fn vu(
    ctx: ScenarioContext,
    index: usize,
    mut jobs: mpsc::Receiver<Job>,
    free: Arc<Mutex<Vec<usize>>>,
) {
    while let Some((number, due)) = jobs.recv().await {
        if AssertUnwindSafe(ctx.iterate(number, due))
            .catch_unwind()
            .await
            .is_err()
        {
            ctx.warnings.push(format!(
                "scenario {:?}: an iteration panicked (a bug in the workload)",
                ctx.name
            ));
        }
        free.lock().unwrap_or_else(|p| p.into_inner()).push(index);
    }
}
