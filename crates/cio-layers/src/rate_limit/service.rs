use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::time::{sleep, Sleep};
use tower::Service;

use super::{LocalBackend, Quota, RateLimitBackend, Reservation};

/// Waits in `poll_ready` until the limit admits one call, then lets the inner service decide
/// its own readiness. Clones share the limit (through the backend) but each holds its own
/// reservation, so many tasks can wait at once, each for its own slot.
#[derive(Debug)]
pub struct RateLimit<S, B: RateLimitBackend = LocalBackend> {
    inner: S,
    backend: B,
    state: State<B::Future>,
}

#[derive(Debug)]
enum State<F> {
    Idle,
    Reserving(F),
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
    S::Error: From<B::Error>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        loop {
            match &mut self.state {
                State::Idle => self.state = State::Reserving(self.backend.reserve()),
                State::Reserving(f) => match ready!(Pin::new(f).poll(cx)) {
                    Ok(r) if r.wait.is_zero() => self.state = State::Admitted(r),
                    Ok(r) => self.state = State::Waiting(Box::pin(sleep(r.wait)), r),
                    Err(e) => {
                        self.state = State::Idle;
                        return Poll::Ready(Err(e.into()));
                    }
                },
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
