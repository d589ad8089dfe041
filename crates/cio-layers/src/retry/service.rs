use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::retry::budget::Budget;
use tower::Service;

use super::future::ResponseFuture;
use super::layer::Shared;
use crate::Classifier;

/// Retries failed calls of the inner service. Clones share configuration and budget.
pub struct Retry<S, C> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared<C>>,
}

impl<S: Clone, C> Clone for Retry<S, C> {
    fn clone(&self) -> Self {
        Retry {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: std::fmt::Debug, C> std::fmt::Debug for Retry<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retry").field("inner", &self.inner).finish()
    }
}

impl<S, C, Req> Service<Req> for Retry<S, C>
where
    S: Service<Req> + Clone,
    C: Classifier<S::Error>,
    Req: Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, C, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        if let Some(b) = &self.shared.budget {
            b.deposit();
        }
        // The ready service makes this call; the clone left behind gets ready for the next.
        let clone = self.inner.clone();
        let mut service = std::mem::replace(&mut self.inner, clone);
        let call_no = self.shared.calls.fetch_add(1, Ordering::Relaxed);
        let fut = service.call(req.clone());
        ResponseFuture::new(service, req, fut, self.shared.clone(), call_no)
    }
}
