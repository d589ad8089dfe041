use std::sync::Arc;
use std::task::{Context, Poll};

use tower::Service;

use super::recorder::Recorder;
use super::{MetricsHandle, ResponseFuture, Snapshot};
use crate::{ByError, Classifier};

/// Counts the calls to `S` by outcome, keeps them in flight until they finish, and times them.
/// Built by [`MetricsLayer`](super::MetricsLayer); clones share the layer's numbers (behind an
/// `Arc`).
///
/// Readiness is passed through untouched: only calls are measured, from [`Service::call`] to the
/// completion of the future it returns.
pub struct Metrics<S, C = ByError> {
    inner: S,
    classifier: C,
    recorder: Arc<Recorder>,
}

impl<S, C> Metrics<S, C> {
    pub(crate) fn new(inner: S, classifier: C, recorder: Arc<Recorder>) -> Self {
        Metrics {
            inner,
            classifier,
            recorder,
        }
    }

    /// A cloneable handle on the numbers this service shares with its layer and clones.
    pub fn handle(&self) -> MetricsHandle {
        MetricsHandle::new(Arc::clone(&self.recorder))
    }

    /// The numbers since the layer was created or last reset.
    pub fn snapshot(&self) -> Snapshot {
        self.recorder.snapshot(false)
    }

    /// The numbers since the layer was created or last reset, and a new window starting now.
    pub fn snapshot_and_reset(&self) -> Snapshot {
        self.recorder.snapshot(true)
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, Request> Service<Request> for Metrics<S, C>
where
    S: Service<Request>,
    C: Classifier<S::Error>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // Started before the inner call, so a panic inside it still brings the gauge back down.
        let in_flight = self.recorder.start();
        let future = self.inner.call(request);
        ResponseFuture::new(future, self.classifier.clone(), in_flight)
    }
}

impl<S: Clone, C: Clone> Clone for Metrics<S, C> {
    fn clone(&self) -> Self {
        Metrics {
            inner: self.inner.clone(),
            classifier: self.classifier.clone(),
            recorder: Arc::clone(&self.recorder),
        }
    }
}

impl<S: std::fmt::Debug, C> std::fmt::Debug for Metrics<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("inner", &self.inner)
            .field("recorder", &self.recorder)
            .finish_non_exhaustive()
    }
}
