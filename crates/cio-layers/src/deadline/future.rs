use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{sleep_until, Instant, Sleep};

use super::Elapsed;

pin_project! {
    /// The response future of [`super::Deadline`]: the call, bounded by what is left of the
    /// deadline, or [`Elapsed`] at once when the deadline passed before the service was ready.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = Proj]
    enum State<F> {
        Running {
            #[pin]
            inner: F,
            #[pin]
            sleep: Sleep,
            timeout: Duration,
        },
        Expired { timeout: Duration },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, deadline: Instant, timeout: Duration) -> Self {
        ResponseFuture {
            state: State::Running {
                inner,
                sleep: sleep_until(deadline),
                timeout,
            },
        }
    }

    pub(crate) fn elapsed(timeout: Duration) -> Self {
        ResponseFuture {
            state: State::Expired { timeout },
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
        match self.project().state.project() {
            Proj::Expired { timeout } => Poll::Ready(Err(Elapsed {
                after: *timeout,
                waiting_for_readiness: true,
            }
            .into())),
            Proj::Running {
                inner,
                sleep,
                timeout,
            } => {
                if let Poll::Ready(r) = inner.poll(cx) {
                    return Poll::Ready(r);
                }
                match sleep.poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(Elapsed {
                        after: *timeout,
                        waiting_for_readiness: false,
                    }
                    .into())),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}
