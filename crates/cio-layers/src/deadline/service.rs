use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{sleep_until, Instant, Sleep};
use tower::Service;

use super::{Elapsed, ResponseFuture};

/// A deadline from the first `poll_ready` of a request to its response.
#[derive(Debug)]
pub struct Deadline<S> {
    inner: S,
    timeout: Duration,
    /// When the current request started waiting for readiness.
    started: Option<Instant>,
    /// Armed only while the inner service is not ready (the slow path).
    timer: Option<Pin<Box<Sleep>>>,
    /// The deadline passed while waiting: `poll_ready` said ready, and `call` answers
    /// [`Elapsed`] without calling the inner service.
    expired: bool,
}

impl<S> Deadline<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, timeout: Duration) -> Self {
        Deadline {
            inner,
            timeout,
            started: None,
            timer: None,
            expired: false,
        }
    }
}

impl<S: Clone> Clone for Deadline<S> {
    /// A clone starts with no request pending.
    fn clone(&self) -> Self {
        Deadline::new(self.inner.clone(), self.timeout)
    }
}

impl<S, Req> Service<Req> for Deadline<S>
where
    S: Service<Req>,
    S::Error: From<Elapsed>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let started = *self.started.get_or_insert_with(Instant::now);
        match self.inner.poll_ready(cx) {
            Poll::Ready(r) => {
                self.timer = None;
                if r.is_err() {
                    self.started = None;
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                let deadline = started + self.timeout;
                let timer = self
                    .timer
                    .get_or_insert_with(|| Box::pin(sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                match timer.as_mut().poll(cx) {
                    // Not an error here: an error from `poll_ready` means the service is done
                    // for good (tower's contract), and a deadline is about one request. The
                    // request's own future fails instead.
                    Poll::Ready(()) => {
                        self.timer = None;
                        self.expired = true;
                        Poll::Ready(Ok(()))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let started = self.started.take().unwrap_or_else(Instant::now);
        if std::mem::take(&mut self.expired) {
            // The inner service was never ready for this request; whatever it reserved while
            // getting ready (a rate-limit slot, say) stays with it for the next request.
            return ResponseFuture::elapsed(self.timeout);
        }
        ResponseFuture::new(self.inner.call(req), started + self.timeout, self.timeout)
    }
}
