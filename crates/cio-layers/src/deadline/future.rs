use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{sleep_until, Instant, Sleep};

use super::Elapsed;

pin_project! {
    /// The response future of [`super::Deadline`]: the call, bounded by what is left of the
    /// deadline.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Sleep,
        timeout: Duration,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, deadline: Instant, timeout: Duration) -> Self {
        ResponseFuture {
            inner,
            sleep: sleep_until(deadline),
            timeout,
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: From<Elapsed>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(r) = this.inner.poll(cx) {
            return Poll::Ready(r);
        }
        match this.sleep.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed {
                after: *this.timeout,
                waiting_for_readiness: false,
            }
            .into())),
            Poll::Pending => Poll::Pending,
        }
    }
}
