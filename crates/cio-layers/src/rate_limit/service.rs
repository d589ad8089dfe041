use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use std::time::Duration;

use tokio::time::{sleep, Sleep};
use tower::Service;

use super::{LocalBackend, Quota, RateLimitBackend, Reservation};
use crate::retry::capped_exponential;

/// Waits in `poll_ready` until the limit admits one call, then lets the inner service decide
/// its own readiness. Clones share the limit (through the backend) but each holds its own
/// reservation, so many tasks can wait at once, each for its own slot.
///
/// **A backend that cannot decide makes callers wait, never fail.** An error from the backend
/// (a shared store that is unreachable) is logged and the decision is asked again after a
/// backoff ([`BACKEND_RETRY_MIN`] doubling up to [`BACKEND_RETRY_MAX`]), so nothing passes the
/// limit while it cannot be kept (fail closed) and everything goes on once the store is back.
/// `poll_ready` returns only the inner service's errors: in tower an error from `poll_ready`
/// ends the service for good, and an unreachable store is not the end of anything.
#[derive(Debug)]
pub struct RateLimit<S, B: RateLimitBackend = LocalBackend> {
    inner: S,
    backend: B,
    state: State<B::Future>,
    /// Backend errors in a row, for the backoff and for logging once per outage.
    failures: u32,
}

/// The first wait after a backend error.
pub const BACKEND_RETRY_MIN: Duration = Duration::from_millis(100);
/// The longest wait between two decisions asked of a backend that keeps failing.
pub const BACKEND_RETRY_MAX: Duration = Duration::from_secs(2);

#[derive(Debug)]
enum State<F> {
    Idle,
    Reserving(F),
    /// The backend failed; asking again after the sleep.
    Backoff(Pin<Box<Sleep>>),
    Waiting(Pin<Box<Sleep>>, Reservation),
    Admitted(Reservation),
}

impl<S> RateLimit<S, LocalBackend> {
    /// An in-process limit of its own. To share one limit between services, build them from one
    /// [`super::RateLimitLayer`] or clone this service.
    pub fn new(inner: S, quota: Quota) -> Self {
        RateLimit::with_backend(inner, LocalBackend::new(quota))
    }
}

impl<S, B: RateLimitBackend> RateLimit<S, B> {
    /// A limit kept by `backend`.
    pub fn with_backend(inner: S, backend: B) -> Self {
        RateLimit {
            inner,
            backend,
            state: State::Idle,
            failures: 0,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: Clone, B: RateLimitBackend> Clone for RateLimit<S, B> {
    /// A clone shares the limit but not this service's reservation.
    fn clone(&self) -> Self {
        RateLimit {
            inner: self.inner.clone(),
            backend: self.backend.clone(),
            state: State::Idle,
            failures: 0,
        }
    }
}

impl<S, B: RateLimitBackend> Drop for RateLimit<S, B> {
    fn drop(&mut self) {
        if let State::Waiting(_, r) | State::Admitted(r) = self.state {
            self.backend.cancel(r);
        }
    }
}

impl<S, B, Req> Service<Req> for RateLimit<S, B>
where
    S: Service<Req>,
    B: RateLimitBackend,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        loop {
            match &mut self.state {
                State::Idle => self.state = State::Reserving(self.backend.reserve()),
                State::Reserving(f) => {
                    let decided = ready!(Pin::new(f).poll(cx));
                    if decided.is_ok() && self.failures > 0 {
                        tracing::debug!(
                            failures = self.failures,
                            "rate limit backend decides again"
                        );
                        self.failures = 0;
                    }
                    match decided {
                        Ok(r) if r.wait.is_zero() => self.state = State::Admitted(r),
                        Ok(r) => self.state = State::Waiting(Box::pin(sleep(r.wait)), r),
                        Err(e) => {
                            self.failures = self.failures.saturating_add(1);
                            let delay = capped_exponential(
                                BACKEND_RETRY_MIN,
                                BACKEND_RETRY_MAX,
                                self.failures,
                            );
                            if self.failures == 1 && warn_now() {
                                tracing::warn!(error = %e, "rate limit backend cannot decide: waiting until it can (fail closed)");
                            } else {
                                tracing::debug!(error = %e, failures = self.failures, ?delay, "rate limit backend still cannot decide");
                            }
                            self.state = State::Backoff(Box::pin(sleep(delay)));
                        }
                    }
                }
                State::Backoff(s) => {
                    ready!(s.as_mut().poll(cx));
                    self.state = State::Idle;
                }
                State::Waiting(s, r) => {
                    ready!(s.as_mut().poll(cx));
                    self.state = State::Admitted(*r);
                }
                State::Admitted(_) => return self.inner.poll_ready(cx),
            }
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Admitted(_) => self.inner.call(req),
            _ => {
                panic!("RateLimit::call without a successful poll_ready (tower's Service contract)")
            }
        }
    }
}

/// At most one warning every 10 s for the whole process: every clone of the service (one per
/// request in flight) meets the same outage.
fn warn_now() -> bool {
    static LAST: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    let now = std::time::Instant::now();
    if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(10)) {
        return false;
    }
    *last = Some(now);
    true
}
