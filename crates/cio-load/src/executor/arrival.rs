//! The open model: iterations start at their scheduled instants, on a free VU of the pool, and
//! are counted in `dropped_iterations` when there is none.
//!
//! The scheduler is one task per scenario. It sleeps until the next instant in the
//! [`ArrivalSchedule`](crate::schedule::ArrivalSchedule) and then starts every iteration that is
//! due (tokio's timer has millisecond resolution, so at 2,000/s it starts about two per wake-up;
//! each keeps its own scheduled instant, from which its latency is measured). A VU is a slot in
//! the pool: an iteration runs as its own task in a [`JoinSet`] the scheduler owns, and the pool
//! is the number of those tasks allowed at once. It starts at `pre_allocated_vus` and grows one
//! VU at a time up to `max_vus` (as k6 does; a VU here costs nothing to add). With `max_vus`
//! busy, a due iteration is dropped and counted, never queued: queueing it would start it late
//! and hide the wait from nobody but the report.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

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
    let mut allocated = pre;
    ctx.metrics.allocated_vus.store(allocated, Relaxed);
    let mut set: JoinSet<()> = JoinSet::new();
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
        while let Some(done) = set.try_join_next() {
            if let Err(e) = done {
                if e.is_panic() {
                    ctx.warnings.push(format!(
                        "scenario {:?}: an iteration panicked (a bug in the workload)",
                        ctx.name
                    ));
                }
            }
        }
        if set.len() as u64 >= allocated {
            if allocated < max {
                allocated += 1;
                ctx.metrics.allocated_vus.store(allocated, Relaxed);
                if !warned_growth {
                    warned_growth = true;
                    tracing::debug!(scenario = %ctx.name, pre_allocated_vus = pre, "all pre-allocated VUs busy; adding VUs up to max_vus");
                }
            } else {
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
        }
        if !ctx.budget.take() {
            ctx.budget_spent();
            break;
        }
        let it = ctx.clone();
        set.spawn(async move { it.iterate(number, due).await });
    }
    drain(
        &mut set,
        end.max(Instant::now()) + graceful_stop,
        &ctx.abort,
    )
    .await;
}
