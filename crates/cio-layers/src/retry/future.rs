use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use rand::rngs::SmallRng;
use tokio::time::{sleep, Sleep};
use tower::retry::budget::Budget;
use tower::Service;

use super::backoff::{full_jitter, rng};
use super::layer::Shared;
use crate::Classifier;

pin_project! {
    /// The response future of [`super::Retry`]: the first attempt, then sleeps and retries.
    pub struct ResponseFuture<S, C, Req>
    where
        S: Service<Req>,
    {
        service: S,
        request: Req,
        shared: Arc<Shared<C>>,
        call_no: u64,
        attempt: u32,
        slept: Duration,
        rng: Option<SmallRng>,
        #[pin]
        state: State<S::Future>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Calling { #[pin] fut: F },
        Sleeping { #[pin] sleep: Sleep },
        Readying,
    }
}

impl<S, C, Req> ResponseFuture<S, C, Req>
where
    S: Service<Req>,
{
    pub(crate) fn new(
        service: S,
        request: Req,
        fut: S::Future,
        shared: Arc<Shared<C>>,
        call_no: u64,
    ) -> Self {
        ResponseFuture {
            service,
            request,
            shared,
            call_no,
            attempt: 1,
            slept: Duration::ZERO,
            rng: None,
            state: State::Calling { fut },
        }
    }
}

impl<S, C, Req> Future for ResponseFuture<S, C, Req>
where
    S: Service<Req>,
    C: Classifier<S::Error>,
    Req: Clone,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { fut } => {
                    let error = match ready!(fut.poll(cx)) {
                        Ok(r) => return Poll::Ready(Ok(r)),
                        Err(e) => e,
                    };
                    let shared = &**this.shared;
                    let failure = shared.classifier.classify(&error);
                    if !failure.retryable || *this.attempt >= shared.config.max_attempts.get() {
                        return Poll::Ready(Err(error));
                    }
                    let delay = match failure.retry_after {
                        Some(hint) => hint.min(shared.config.max_retry_after),
                        None => {
                            let seed =
                                shared.seed ^ this.call_no.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                            let rng = this.rng.get_or_insert_with(|| rng(seed));
                            full_jitter(rng, shared.config.ceiling(*this.attempt))
                        }
                    };
                    if *this.slept + delay > shared.config.max_total_backoff {
                        tracing::debug!(
                            attempt = *this.attempt,
                            ?delay,
                            "retry would pass the total backoff cap; giving up"
                        );
                        return Poll::Ready(Err(error));
                    }
                    if let Some(budget) = &shared.budget {
                        if !budget.withdraw() {
                            tracing::debug!(
                                attempt = *this.attempt,
                                "retry budget spent; giving up"
                            );
                            return Poll::Ready(Err(error));
                        }
                    }
                    *this.slept += delay;
                    *this.attempt += 1;
                    tracing::debug!(attempt = *this.attempt, ?delay, retry_after = ?failure.retry_after, "retrying");
                    this.state.set(State::Sleeping {
                        sleep: sleep(delay),
                    });
                }
                StateProj::Sleeping { sleep } => {
                    ready!(sleep.poll(cx));
                    this.state.set(State::Readying);
                }
                StateProj::Readying => {
                    ready!(this.service.poll_ready(cx))?;
                    let fut = this.service.call(this.request.clone());
                    this.state.set(State::Calling { fut });
                }
            }
        }
    }
}
