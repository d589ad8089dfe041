//! The closed model: each VU starts its next iteration as soon as its last one ends.
//!
//! Every VU the executor may use is a task from the start (for `ramping-vus`, the highest stage
//! target), owned by a [`JoinSet`]. A controller publishes the number of VUs that should run on a
//! `watch` channel every 50 ms; VU `i` runs while `i` is below it and otherwise waits for it to
//! change. A VU removed by a ramp-down (`ramping-vus`) has `graceful_ramp_down` to finish its
//! current iteration, which is interrupted after that. At the end of the duration no VU starts
//! another iteration, and those still running get `graceful_stop`.
//!
//! The `-iterations` executors run the same VUs with an [`Allowance`]: `shared-iterations` hands
//! out one count from a shared pool to whichever VU is free, `per-vu-iterations` gives each VU
//! its own. A VU whose allowance is spent ends; the scenario ends when every VU has, or at
//! `max_duration` (then `graceful_stop`), whichever comes first.

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
    let shared = match executor {
        Executor::SharedIterations { iterations, .. } => {
            Some(Arc::new(AtomicU64::new(*iterations)))
        }
        _ => None,
    };
    let allowance = || match (executor, &shared) {
        (_, Some(pool)) => Allowance::Shared(Arc::clone(pool)),
        (Executor::PerVuIterations { iterations, .. }, _) => Allowance::Own(*iterations),
        _ => Allowance::Unlimited,
    };
    ctx.metrics.allocated_vus.store(u64::from(max), Relaxed);
    let mut set: JoinSet<()> = JoinSet::new();
    for i in 0..max {
        set.spawn(vu_loop(
            ctx.clone(),
            Vu {
                index: i,
                wanted: rx.clone(),
                ended: ended.clone(),
                end,
                counter: counter.clone(),
                ramp_down,
                allowance: allowance(),
            },
        ));
    }
    if executor.is_iteration_count() {
        // A fixed VU count: nothing to control; wait for every VU to spend its allowance, or
        // for `max_duration`.
        loop {
            tokio::select! {
                biased;
                _ = ctx.abort.cancelled() => break,
                _ = sleep_until(end) => break,
                next = set.join_next() => {
                    if next.is_none() {
                        return;
                    }
                }
            }
        }
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

/// One VU of a scenario and what it goes by.
struct Vu {
    /// It runs while the wanted VU count is above its index.
    index: u32,
    wanted: watch::Receiver<u32>,
    /// Cancelled when the scenario's duration is over.
    ended: CancellationToken,
    end: Instant,
    /// Numbers the iterations of the scenario.
    counter: Arc<AtomicU64>,
    /// `graceful_ramp_down` for `ramping-vus`.
    ramp_down: Option<Duration>,
    allowance: Allowance,
}

async fn vu_loop(ctx: ScenarioContext, vu: Vu) {
    let Vu {
        index,
        mut wanted,
        ended,
        end,
        counter,
        ramp_down,
        mut allowance,
    } = vu;
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
        if !allowance.take() {
            return;
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

/// How many more iterations a VU may start.
enum Allowance {
    /// As many as fit in the duration (`constant-vus`, `ramping-vus`).
    Unlimited,
    /// One at a time from a pool every VU of the scenario shares (`shared-iterations`).
    Shared(Arc<AtomicU64>),
    /// Its own count (`per-vu-iterations`).
    Own(u64),
}

impl Allowance {
    /// Takes one iteration; false when none is left.
    fn take(&mut self) -> bool {
        match self {
            Allowance::Unlimited => true,
            Allowance::Shared(pool) => pool
                .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
                .is_ok(),
            Allowance::Own(left) => match left.checked_sub(1) {
                Some(rest) => {
                    *left = rest;
                    true
                }
                None => false,
            },
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
