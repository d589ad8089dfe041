use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;

use super::controller::{Outcome, Permit};
use crate::Classifier;

pin_project! {
    /// The response of an [`super::AdaptiveConcurrency`] service. It holds the request's slot
    /// under the limit; when the inner future finishes it reports the round-trip time and the
    /// outcome (as the classifier judges it) to the controller and gives the slot back. Dropped
    /// early, it gives the slot back without a measurement.
    pub struct ResponseFuture<F, C> {
        #[pin]
        inner: F,
        permit: Option<Permit>,
        classifier: C,
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn new(inner: F, permit: Permit, classifier: C) -> Self {
        ResponseFuture {
            inner,
            permit: Some(permit),
            classifier,
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
        if let Some(permit) = this.permit.take() {
            let outcome = match &result {
                Ok(_) => Outcome::Success,
                Err(error) => {
                    let failure = this.classifier.classify(error);
                    if failure.back_pressure || failure.retryable {
                        Outcome::BackPressure
                    } else {
                        Outcome::Failed
                    }
                }
            };
            permit.finish(outcome);
        }
        Poll::Ready(result)
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("finished", &self.permit.is_none())
            .finish_non_exhaustive()
    }
}
