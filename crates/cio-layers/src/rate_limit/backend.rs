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

/// Where a [`LocalBackend`] reads the time.
///
/// A decision reads the clock once, and on this project's VM the clock was most of a
/// decision's cost: `std::time::Instant::now` (and tokio's clock, which wraps it) costs about
/// 24 ns, the CPU's timestamp counter about 7 ns. But only tokio's clock follows
/// `tokio::time::pause()` and `advance()`, which tests of rate-limited code rely on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockSource {
    /// `tokio::time::Instant`: exact under paused time.
    Tokio,
    /// The CPU's timestamp counter, calibrated against the OS's monotonic clock by `quanta`
    /// (which falls back to the OS clock where the counter is not invariant). Blind to
    /// tokio's paused time.
    Tsc,
}

impl ClockSource {
    /// [`Tokio`](Self::Tokio) when called inside a current-thread tokio runtime (the only kind
    /// whose clock can be paused), [`Tsc`](Self::Tsc) inside a multi-thread runtime or outside
    /// any runtime. A limit built outside the runtime whose clock a test then pauses should be
    /// given [`Tokio`](Self::Tokio) explicitly ([`LocalBackend::with_clock`]): on the counter
    /// it would only ever err on the slow side there (paused time passes, the counter does
    /// not, so slots look further away than they are).
    pub fn detect() -> Self {
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                ClockSource::Tsc
            }
            Ok(_) => ClockSource::Tokio,
            Err(_) => ClockSource::Tsc,
        }
    }
}

/// The clock of one limit, as nanoseconds since the limit was created.
#[derive(Debug)]
enum Clock {
    Tokio(Instant),
    Tsc { clock: quanta::Clock, origin: u64 },
}

impl Clock {
    fn new(source: ClockSource) -> Self {
        match source {
            ClockSource::Tokio => Clock::Tokio(Instant::now()),
            ClockSource::Tsc => {
                let clock = quanta::Clock::new();
                let origin = clock.raw();
                Clock::Tsc { clock, origin }
            }
        }
    }

    #[inline]
    fn nanos(&self) -> u64 {
        match self {
            Clock::Tokio(origin) => origin.elapsed().as_nanos() as u64,
            Clock::Tsc { clock, origin } => clock.delta_as_nanos(*origin, clock.raw()),
        }
    }
}

/// An in-process GCRA, lock-free: one atomic compare-and-swap per decision.
#[derive(Clone, Debug)]
pub struct LocalBackend {
    state: Arc<Gcra>,
}

#[derive(Debug)]
struct Gcra {
    /// Theoretical arrival time of the next call, in nanoseconds since the clock's origin.
    tat: AtomicU64,
    /// Time between calls at the sustained rate.
    interval: u64,
    /// How far ahead of its slot a call may go: `(burst - 1) * interval`.
    tolerance: u64,
    clock: Clock,
}

impl LocalBackend {
    /// A new, independent limit, on the clock [`ClockSource::detect`] picks.
    pub fn new(quota: Quota) -> Self {
        LocalBackend::with_clock(quota, ClockSource::detect())
    }

    /// A new, independent limit on the given clock.
    pub fn with_clock(quota: Quota, clock: ClockSource) -> Self {
        let interval = quota.emission_interval_nanos();
        LocalBackend {
            state: Arc::new(Gcra {
                tat: AtomicU64::new(0),
                interval,
                tolerance: interval * u64::from(quota.burst.get() - 1),
                clock: Clock::new(clock),
            }),
        }
    }

    /// The clock this limit reads.
    pub fn clock(&self) -> ClockSource {
        match self.state.clock {
            Clock::Tokio(_) => ClockSource::Tokio,
            Clock::Tsc { .. } => ClockSource::Tsc,
        }
    }

    /// Reserves a slot now and returns how long to wait for it.
    pub fn reserve_now(&self) -> Reservation {
        let g = &*self.state;
        let now = g.clock.nanos();
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
        let now = g.clock.nanos();
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
