use std::fmt;
use std::task::{Context, Poll};

use tower::Service;

use super::controller::{Permit, Reserve};
use super::{AdaptiveConfig, AdaptiveConfigError, AdaptiveController, ResponseFuture};
use crate::{ByError, Classifier};

/// Lets at most [`current_limit`](Self::current_limit) requests reach the inner service at once,
/// the limit moving with the service's round-trip times and back-pressure (see
/// [`crate::concurrency`] for the algorithm).
///
/// Clones share the [`AdaptiveController`] (the limit and its statistics, behind an `Arc`) but
/// not a reserved slot: each clone reserves its own in `poll_ready`, so many tasks can wait at
/// once, served in the order they asked.
///
/// # Service contract
///
/// `poll_ready` waits (without polling in a loop) until a slot under the limit is free,
/// reserves it, then asks the inner service. `call` uses the reserved slot; **calling without a
/// successful `poll_ready` panics**, as tower's `ConcurrencyLimit` does: it is a bug in the
/// caller, and letting the request through would break the limit. A service dropped with a
/// reserved slot gives it back.
pub struct AdaptiveConcurrency<S, C = ByError> {
    inner: S,
    classifier: C,
    controller: AdaptiveController,
    /// The slot reserved by `poll_ready`, for the next `call`.
    permit: Option<Permit>,
    /// The wait for a slot, kept across `poll_ready`s while the limit is fully used.
    reserving: Option<Reserve>,
}

impl<S, C> AdaptiveConcurrency<S, C> {
    /// `inner` under a limit of its own configured by `config`; an error says which setting
    /// cannot work.
    pub fn new(
        inner: S,
        config: AdaptiveConfig,
        classifier: C,
    ) -> Result<Self, AdaptiveConfigError> {
        Ok(AdaptiveConcurrency::with_controller(
            inner,
            AdaptiveController::new(config)?,
            classifier,
        ))
    }

    /// `inner` under the limit of `controller`, shared with whatever else holds it.
    pub fn with_controller(inner: S, controller: AdaptiveController, classifier: C) -> Self {
        AdaptiveConcurrency {
            inner,
            classifier,
            controller,
            permit: None,
            reserving: None,
        }
    }

    /// The current limit: how many requests may be in flight at once.
    pub fn current_limit(&self) -> usize {
        self.controller.limit()
    }

    /// The shared controller: clone it to watch the limit and the requests in flight.
    pub fn controller(&self) -> &AdaptiveController {
        &self.controller
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service; a reserved slot is given back.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, C: Clone> Clone for AdaptiveConcurrency<S, C> {
    /// A clone shares the limit but not this service's reserved slot.
    fn clone(&self) -> Self {
        AdaptiveConcurrency::with_controller(
            self.inner.clone(),
            self.controller.clone(),
            self.classifier.clone(),
        )
    }
}

impl<S: fmt::Debug, C> fmt::Debug for AdaptiveConcurrency<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveConcurrency")
            .field("inner", &self.inner)
            .field("controller", &self.controller)
            .field("reserved", &self.permit.is_some())
            .finish_non_exhaustive()
    }
}

impl<S, C, Req> Service<Req> for AdaptiveConcurrency<S, C>
where
    S: Service<Req>,
    C: Classifier<S::Error>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.permit.is_none() {
            let reserving = match self.reserving.as_mut() {
                Some(reserving) => reserving,
                None => match self.controller.try_reserve() {
                    Some(permit) => {
                        self.permit = Some(permit);
                        return self.inner.poll_ready(cx);
                    }
                    None => self.reserving.insert(self.controller.reserve()),
                },
            };
            match reserving.as_mut().poll(cx) {
                Poll::Ready(permit) => {
                    self.reserving = None;
                    self.permit = Some(permit);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let mut permit = self.permit.take().expect(
            "AdaptiveConcurrency::call without a successful poll_ready: \
             poll_ready reserves the slot under the limit that call uses (tower's Service contract)",
        );
        permit.start();
        ResponseFuture::new(self.inner.call(req), permit, self.classifier.clone())
    }
}
