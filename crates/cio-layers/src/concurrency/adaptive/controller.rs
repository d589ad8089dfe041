//! The AIMD state of one adaptive limit and the permits it hands out.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::rtt::{PastRtt, Window};
use super::{AdaptiveConfig, AdaptiveConfigError};

/// The controller of one adaptive concurrency limit: its current limit, the requests in flight,
/// and the round-trip-time statistics that move the limit.
///
/// Cloning is cheap: the state lives behind an `Arc`, and every clone of the controller — like
/// every [`super::AdaptiveConcurrency`] service and [`super::AdaptiveConcurrencyLayer`] that
/// holds one — shares the same limit. Keep a clone to export the limit as a gauge:
///
/// ```
/// use cio_layers::concurrency::{AdaptiveConcurrencyLayer, AdaptiveConfig};
/// use cio_layers::Failure;
///
/// let layer = AdaptiveConcurrencyLayer::new(AdaptiveConfig::default(), |_: &std::io::Error| {
///     Failure { retryable: true, back_pressure: true, retry_after: None }
/// })
/// .expect("the default configuration is valid");
/// let gauge = layer.controller().clone();
/// // ... later, from a metrics task:
/// assert_eq!((gauge.limit(), gauge.in_flight()), (1, 0));
/// ```
///
/// Reading [`limit`](Self::limit) and [`in_flight`](Self::in_flight) takes no lock. Starting a
/// request touches atomics only; a completed request takes a short lock (never across an
/// `.await`) to record its RTT and, once per window, to move the limit.
#[derive(Clone)]
pub struct AdaptiveController {
    shared: Arc<Shared>,
}

struct Shared {
    config: AdaptiveConfig,
    /// One permit per request allowed in flight. Only `State` (under the lock) adds or retires
    /// permits, so the number of permits in circulation is `limit + surplus`.
    semaphore: Arc<Semaphore>,
    /// Mirror of `State::limit` for lock-free reads.
    limit: AtomicUsize,
    in_flight: AtomicUsize,
    /// Some request started with the limit fully used during the current window: evidence that
    /// callers want more than the limit gives them.
    reached_limit: AtomicBool,
    state: Mutex<State>,
}

struct State {
    limit: usize,
    /// Permits held by requests that a decrease has condemned: retired as they come back, so a
    /// smaller limit never cancels a request already in flight.
    surplus: usize,
    /// What past windows say the RTT is; `None` until a first success.
    past_rtt: Option<PastRtt>,
    window: Window,
    /// When the current window closes; `None` closes it at the next response.
    window_end: Option<Instant>,
}

/// How a request ended, as the controller reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The service answered: its RTT is a valid measure of the service's load.
    Success,
    /// The service pushed back (429, 503, a timeout, anything retryable): decrease.
    BackPressure,
    /// A failure that says nothing about load (a permanent error).
    Failed,
    /// The response future was dropped before it finished.
    Cancelled,
}

impl AdaptiveController {
    /// A controller starting at `config.initial`, or the reason `config` cannot work.
    pub fn new(config: AdaptiveConfig) -> Result<Self, AdaptiveConfigError> {
        config.validate()?;
        Ok(AdaptiveController {
            shared: Arc::new(Shared {
                config,
                semaphore: Arc::new(Semaphore::new(config.initial)),
                limit: AtomicUsize::new(config.initial),
                in_flight: AtomicUsize::new(0),
                reached_limit: AtomicBool::new(false),
                state: Mutex::new(State {
                    limit: config.initial,
                    surplus: 0,
                    past_rtt: None,
                    window: Window::default(),
                    window_end: None,
                }),
            }),
        })
    }

    /// The current limit: how many requests may be in flight at once. Always within
    /// `[config.min, config.max]`.
    pub fn limit(&self) -> usize {
        self.shared.limit.load(Ordering::Relaxed)
    }

    /// How many requests are in flight now (called and not yet finished). Right after a
    /// decrease this may exceed [`limit`](Self::limit) until those requests finish.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Relaxed)
    }

    /// The smoothed round-trip time the limit is judged against; `None` before a first
    /// successful response.
    pub fn smoothed_rtt(&self) -> Option<Duration> {
        let past = self.shared.lock().past_rtt?;
        Duration::try_from_secs_f64(past.mean).ok()
    }

    /// The configuration this controller was built with.
    pub fn config(&self) -> &AdaptiveConfig {
        &self.shared.config
    }

    /// A permit if one is free now, without allocating.
    pub(crate) fn try_reserve(&self) -> Option<Permit> {
        let permit = self.shared.semaphore.clone().try_acquire_owned().ok()?;
        Some(Permit::new(self.clone(), permit))
    }

    /// A future that waits, in the semaphore's fair queue, for the next free permit.
    pub(crate) fn reserve(&self) -> Reserve {
        let controller = self.clone();
        let semaphore = self.shared.semaphore.clone();
        Box::pin(async move {
            let permit = semaphore
                .acquire_owned()
                .await
                .expect("the adaptive controller never closes its semaphore");
            Permit::new(controller, permit)
        })
    }
}

impl fmt::Debug for AdaptiveController {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveController")
            .field("limit", &self.limit())
            .field("in_flight", &self.in_flight())
            .field("config", &self.shared.config)
            .finish()
    }
}

/// The boxed wait for a permit that a service keeps between calls to `poll_ready`.
pub(crate) type Reserve = Pin<Box<dyn Future<Output = Permit> + Send + Sync>>;

/// One slot under the limit: reserved by `poll_ready`, started by `call`, and given back
/// (with the request's outcome) when the response future finishes or is dropped.
pub(crate) struct Permit {
    controller: AdaptiveController,
    permit: Option<OwnedSemaphorePermit>,
    started: Option<Instant>,
}

impl Permit {
    fn new(controller: AdaptiveController, permit: OwnedSemaphorePermit) -> Self {
        Permit {
            controller,
            permit: Some(permit),
            started: None,
        }
    }

    /// The request is being sent: count it in flight and start its clock.
    pub(crate) fn start(&mut self) {
        let shared = &self.controller.shared;
        let in_flight = shared.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        if in_flight >= shared.limit.load(Ordering::Relaxed) {
            shared.reached_limit.store(true, Ordering::Relaxed);
        }
        self.started = Some(Instant::now());
    }

    /// The request ended with `outcome`; give the permit back.
    pub(crate) fn finish(mut self, outcome: Outcome) {
        self.settle(outcome);
    }

    fn settle(&mut self, outcome: Outcome) {
        if let Some(permit) = self.permit.take() {
            self.controller
                .shared
                .complete(self.started, outcome, permit);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.settle(Outcome::Cancelled);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing under this lock panics; should it ever, the state is still consistent
        // enough to keep limiting, which beats poisoning every caller.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records how a request ended, closes the window when it is due, and returns the permit,
    /// retiring it instead if a decrease left a surplus.
    fn complete(&self, started: Option<Instant>, outcome: Outcome, permit: OwnedSemaphorePermit) {
        let mut state = self.lock();
        if let Some(started) = started {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            let now = Instant::now();
            let rtt = now.saturating_duration_since(started);
            match outcome {
                Outcome::Success => state.window.record(rtt),
                Outcome::BackPressure => state.window.back_pressure = true,
                Outcome::Failed | Outcome::Cancelled => {}
            }
            let due = state.window_end.is_none_or(|end| now >= end);
            if due && matches!(outcome, Outcome::Success | Outcome::BackPressure) {
                self.close_window(&mut state, now, rtt);
            }
        }
        // Under the lock, so a decrease never sees a permit "in transit".
        if state.surplus > 0 {
            state.surplus -= 1;
            permit.forget();
        } else {
            drop(permit);
        }
    }

    /// Moves the limit once per window (about one smoothed RTT), then starts the next window.
    ///
    /// - back-pressure in the window, or a mean RTT above `past mean + scale * deviation`
    ///   (the deviation of one window's mean, see `PastRtt`): multiply the limit by
    ///   `decrease_ratio`;
    /// - otherwise, if the window's mean RTT is at most the past mean and some request found
    ///   the limit fully used: add one;
    /// - in between: hold.
    fn close_window(&self, state: &mut State, now: Instant, last_rtt: Duration) {
        let config = &self.config;
        let current = state.window.rtt();
        let back_pressure = state.window.back_pressure;
        let reached_limit = self.reached_limit.swap(false, Ordering::Relaxed);

        match state.past_rtt {
            Some(past) => {
                let fast = current.is_some_and(|rtt| past.not_slower(rtt));
                let slow =
                    current.is_some_and(|rtt| past.congested(rtt, config.rtt_deviation_scale));
                if back_pressure || slow {
                    self.decrease(state);
                } else if fast && reached_limit {
                    self.increase(state);
                }
            }
            // No success yet to compare with: only explicit back-pressure can move the limit.
            None if back_pressure => self.decrease(state),
            None => {}
        }

        if let Some(rtt) = current {
            state.past_rtt = Some(match state.past_rtt {
                Some(past) => past.update(rtt, config.ewma_alpha),
                None => PastRtt::first(rtt),
            });
        }
        // The window lasts one smoothed RTT; before any success, the RTT of the last response.
        let length = state
            .past_rtt
            .and_then(|past| Duration::try_from_secs_f64(past.mean).ok())
            .unwrap_or(last_rtt);
        state.window_end = Some(now.checked_add(length).unwrap_or(now));
        state.window = Window::default();
    }

    fn increase(&self, state: &mut State) {
        if state.limit >= self.config.max {
            return;
        }
        if state.surplus > 0 {
            state.surplus -= 1;
        } else {
            self.semaphore.add_permits(1);
        }
        state.limit += 1;
        self.limit.store(state.limit, Ordering::Relaxed);
        tracing::trace!(limit = state.limit, "adaptive concurrency limit increased");
    }

    fn decrease(&self, state: &mut State) {
        if state.limit <= self.config.min {
            return;
        }
        // Rounding down makes the new limit strictly smaller, as `decrease_ratio < 1`.
        let target = (state.limit as f64 * self.config.decrease_ratio) as usize;
        let target = target.max(self.config.min);
        for _ in target..state.limit {
            match self.semaphore.try_acquire() {
                Ok(free) => free.forget(),
                Err(_) => state.surplus += 1,
            }
        }
        tracing::debug!(
            from = state.limit,
            to = target,
            "adaptive concurrency limit decreased"
        );
        state.limit = target;
        self.limit.store(state.limit, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_decrease_retires_free_permits_at_once_and_busy_ones_on_return() {
        let config = AdaptiveConfig {
            initial: 10,
            ..AdaptiveConfig::default()
        };
        let controller = AdaptiveController::new(config).expect("valid");
        let mut busy: Vec<Permit> = (0..4)
            .map(|_| controller.try_reserve().expect("free"))
            .collect();
        {
            let mut state = controller.shared.lock();
            controller.shared.decrease(&mut state); // 10 -> 9, a free permit retired
            assert_eq!(state.surplus, 0);
            for _ in 0..4 {
                controller.shared.decrease(&mut state); // 9 -> 8 -> 7 -> 6 -> 5
            }
            // Five of the six free permits are retired; one is still free.
            assert_eq!((state.limit, state.surplus), (5, 0));
            controller.shared.decrease(&mut state); // 5 -> 4: the last free permit
            controller.shared.decrease(&mut state); // 4 -> 3: one busy permit condemned
            assert_eq!((state.limit, state.surplus), (3, 1));
        }
        assert_eq!(controller.shared.semaphore.available_permits(), 0);
        busy.pop(); // retired, not freed
        assert_eq!(controller.shared.semaphore.available_permits(), 0);
        busy.pop(); // freed
        assert_eq!(controller.shared.semaphore.available_permits(), 1);
        assert_eq!(controller.limit(), 3);
    }
}
