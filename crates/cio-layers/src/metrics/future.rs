use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;

use super::recorder::InFlight;
use super::Outcome;
use crate::Classifier;

pin_project! {
    /// The response future of [`Metrics`](super::Metrics): records the call's outcome and latency
    /// when the inner future completes, or counts the call as
    /// [`Cancelled`](super::Outcome::Cancelled) when it is dropped before that.
    pub struct ResponseFuture<F, C> {
        #[pin]
        inner: F,
        classifier: C,
        // `None` once the outcome is recorded; dropping it unfinished records a cancellation.
        in_flight: Option<InFlight>,
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn new(inner: F, classifier: C, in_flight: InFlight) -> Self {
        ResponseFuture {
            inner,
            classifier,
            in_flight: Some(in_flight),
        }
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    C: Classifier<E>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let Some(in_flight) = this.in_flight.take() {
            let outcome = match &result {
                Ok(_) => Outcome::Success,
                Err(error) => Outcome::from_failure(this.classifier.classify(error)),
            };
            in_flight.finish(outcome);
        }
        Poll::Ready(result)
    }
}

impl<F, C> std::fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}
