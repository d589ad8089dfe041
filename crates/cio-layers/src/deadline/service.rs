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
}

impl<S> Deadline<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, timeout: Duration) -> Self {
        Deadline {
            inner,
            timeout,
            started: None,
            timer: None,
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
                    Poll::Ready(()) => {
                        self.timer = None;
                        self.started = None;
                        Poll::Ready(Err(Elapsed {
                            after: self.timeout,
                            waiting_for_readiness: true,
                        }
                        .into()))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let started = self.started.take().unwrap_or_else(Instant::now);
        ResponseFuture::new(self.inner.call(req), started + self.timeout, self.timeout)
    }
}
