use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// A rate and a burst: `per_second` calls a second on average, up to `burst` at once after an
/// idle period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Sustained calls per second.
    pub per_second: NonZeroU32,
    /// Calls allowed at once (1 means strictly spaced).
    pub burst: NonZeroU32,
}

impl Quota {
    /// `per_second` with a burst of 1.
    pub fn per_second(per_second: NonZeroU32) -> Self {
        Quota {
            per_second,
            burst: NonZeroU32::MIN,
        }
    }

    /// The same rate with this burst.
    pub fn with_burst(self, burst: NonZeroU32) -> Self {
        Quota { burst, ..self }
    }

    /// The time between two calls at the sustained rate, in nanoseconds.
    pub fn emission_interval_nanos(&self) -> u64 {
        1_000_000_000 / u64::from(self.per_second.get())
    }
}

/// A permit taken from a backend: usable after `wait`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// How long to wait before the call may go (zero: now).
    pub wait: Duration,
    /// Backend-specific token identifying the reservation (for [`RateLimitBackend::cancel`]).
    pub token: u64,
}

/// Where the limit's state lives: in this process ([`LocalBackend`]) or in a store shared by
/// every replica (`RedisBackend`, feature `redis`).
///
/// A backend reserves a slot per call and says how long to wait for it; it never makes the
/// caller poll again. Implementations must be cheap to clone (they share their state).
pub trait RateLimitBackend: Clone + Send + Sync + 'static {
    /// Why a decision could not be made (the store is unreachable, ...).
    type Error: std::error::Error + Send + Sync + 'static;
    /// The decision. `Unpin` so the service can hold it without boxing.
    type Future: Future<Output = Result<Reservation, Self::Error>> + Send + Unpin + 'static;

    /// Reserves one slot.
    fn reserve(&self) -> Self::Future;

    /// Gives back a reservation that will not be used, if the backend can (best effort).
    fn cancel(&self, _reservation: Reservation) {}
}

/// An in-process GCRA, lock-free: one atomic compare-and-swap per decision.
#[derive(Clone, Debug)]
pub struct LocalBackend {
    state: Arc<Gcra>,
}

#[derive(Debug)]
struct Gcra {
    /// Theoretical arrival time of the next call, in nanoseconds since `origin`.
    tat: AtomicU64,
    /// Time between calls at the sustained rate.
    interval: u64,
    /// How far ahead of its slot a call may go: `(burst - 1) * interval`.
    tolerance: u64,
    origin: Instant,
}

impl LocalBackend {
    /// A new, independent limit.
    pub fn new(quota: Quota) -> Self {
        let interval = quota.emission_interval_nanos();
        LocalBackend {
            state: Arc::new(Gcra {
                tat: AtomicU64::new(0),
                interval,
                tolerance: interval * u64::from(quota.burst.get() - 1),
                origin: Instant::now(),
            }),
        }
    }

    /// Reserves a slot now and returns how long to wait for it.
    pub fn reserve_now(&self) -> Reservation {
        let g = &*self.state;
        let now = g.origin.elapsed().as_nanos() as u64;
        let mut tat = g.tat.load(Ordering::Acquire);
        loop {
            let start = tat.max(now);
            let next = start + g.interval;
            match g
                .tat
                .compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    let allowed_at = start.saturating_sub(g.tolerance);
                    return Reservation {
                        wait: Duration::from_nanos(allowed_at.saturating_sub(now)),
                        token: next,
                    };
                }
                Err(actual) => tat = actual,
            }
        }
    }

    /// Tries to take a slot without waiting: `Ok` if one is free now, `Err(wait)` otherwise
    /// (nothing is reserved then).
    pub fn try_acquire(&self) -> Result<(), Duration> {
        let g = &*self.state;
        let now = g.origin.elapsed().as_nanos() as u64;
        let mut tat = g.tat.load(Ordering::Acquire);
        loop {
            let start = tat.max(now);
            let allowed_at = start.saturating_sub(g.tolerance);
            if allowed_at > now {
                return Err(Duration::from_nanos(allowed_at - now));
            }
            match g.tat.compare_exchange_weak(
                tat,
                start + g.interval,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => tat = actual,
            }
        }
    }
}

impl RateLimitBackend for LocalBackend {
    type Error = Infallible;
    type Future = Ready<Result<Reservation, Infallible>>;

    fn reserve(&self) -> Self::Future {
        ready(Ok(self.reserve_now()))
    }

    fn cancel(&self, reservation: Reservation) {
        // Only the last reservation can be handed back without moving anyone else's slot.
        let _ = self.state.tat.compare_exchange(
            reservation.token,
            reservation.token - self.state.interval,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }
}
