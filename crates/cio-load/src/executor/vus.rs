//! The closed model: each VU starts its next iteration as soon as its last one ends.
//!
//! Every VU the executor may use is a task from the start (for `ramping-vus`, the highest stage
//! target), owned by a [`JoinSet`]. A controller publishes the number of VUs that should run on a
//! `watch` channel every 50 ms; VU `i` runs while `i` is below it and otherwise waits for it to
//! change. A VU removed by a ramp-down (`ramping-vus`) has `graceful_ramp_down` to finish its
//! current iteration, which is interrupted after that. At the end of the duration no VU starts
//! another iteration, and those still running get `graceful_stop`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::{drain, ScenarioContext};
use crate::scenario::Executor;
use crate::schedule::target_vus;

const CONTROL_PERIOD: Duration = Duration::from_millis(50);

/// Runs a VU scenario that starts at `start`.
pub(crate) async fn run(
    ctx: ScenarioContext,
    executor: &Executor,
    start: Instant,
    graceful_stop: Duration,
) {
    let max = executor.max_vus();
    let end = start + executor.duration();
    let (tx, rx) = watch::channel(target_vus(executor, Duration::ZERO).unwrap_or(0));
    let ended = CancellationToken::new();
    let counter = Arc::new(AtomicU64::new(0));
    let ramp_down = match executor {
        Executor::RampingVus {
            graceful_ramp_down, ..
        } => Some(*graceful_ramp_down),
        _ => None,
    };
    ctx.metrics.allocated_vus.store(u64::from(max), Relaxed);
    let mut set: JoinSet<()> = JoinSet::new();
    for i in 0..max {
        set.spawn(vu_loop(
            ctx.clone(),
            i,
            rx.clone(),
            ended.clone(),
            end,
            counter.clone(),
            ramp_down,
        ));
    }
    // The controller: publish the wanted VU count until the end.
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        match target_vus(executor, now - start) {
            Some(n) => {
                tx.send_if_modified(|v| std::mem::replace(v, n) != n);
            }
            None => break,
        }
        tokio::select! {
            biased;
            _ = ctx.abort.cancelled() => break,
            _ = sleep_until((now + CONTROL_PERIOD).min(end)) => {}
        }
    }
    ended.cancel();
    drain(
        &mut set,
        end.max(Instant::now()) + graceful_stop,
        &ctx.abort,
    )
    .await;
}

async fn vu_loop(
    ctx: ScenarioContext,
    index: u32,
    mut wanted: watch::Receiver<u32>,
    ended: CancellationToken,
    end: Instant,
    counter: Arc<AtomicU64>,
    ramp_down: Option<Duration>,
) {
    loop {
        if ended.is_cancelled() || ctx.abort.is_cancelled() || Instant::now() >= end {
            return;
        }
        if index >= *wanted.borrow_and_update() {
            tokio::select! {
                _ = ended.cancelled() => return,
                _ = ctx.abort.cancelled() => return,
                changed = wanted.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
            continue;
        }
        if !ctx.budget.take() {
            ctx.budget_spent();
            return;
        }
        let number = counter.fetch_add(1, Relaxed);
        let iteration = ctx.iterate(number, Instant::now());
        match ramp_down {
            // A constant VU count never ramps down: nothing to watch.
            None => iteration.await,
            Some(grace) => ramped_down_within(iteration, index, &mut wanted, grace).await,
        }
    }
}

/// Runs `iteration`; if meanwhile the wanted VU count falls to `index` or below (this VU is ramped
/// down), the iteration has `grace` to finish and is dropped after it (counted as interrupted).
/// Ramping back up before then lifts the deadline.
async fn ramped_down_within(
    iteration: impl std::future::Future<Output = ()>,
    index: u32,
    wanted: &mut watch::Receiver<u32>,
    grace: Duration,
) {
    tokio::pin!(iteration);
    let mut deadline: Option<Instant> = None;
    let mut watching = true;
    loop {
        tokio::select! {
            () = &mut iteration => return,
            changed = wanted.changed(), if watching => {
                if changed.is_err() {
                    watching = false;
                } else if index >= *wanted.borrow() {
                    deadline.get_or_insert(Instant::now() + grace);
                } else {
                    deadline = None;
                }
            }
            () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => return,
        }
    }
}
