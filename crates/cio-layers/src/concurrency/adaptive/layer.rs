use std::fmt;

use tower::Layer;

use super::{AdaptiveConcurrency, AdaptiveConfig, AdaptiveConfigError, AdaptiveController};
use crate::ByError;

/// Builds [`AdaptiveConcurrency`] services that all share one [`AdaptiveController`]: one limit
/// for every service built from this layer and for every clone of them (like tower's
/// `GlobalConcurrencyLimitLayer`, unlike its `ConcurrencyLimitLayer`).
///
/// `C` judges the inner service's errors: what it calls back-pressure or retryable lowers the
/// limit (see [`crate::Classifier`]).
#[derive(Clone)]
pub struct AdaptiveConcurrencyLayer<C = ByError> {
    controller: AdaptiveController,
    classifier: C,
}

impl<C> AdaptiveConcurrencyLayer<C> {
    /// A new limit configured by `config`, judging errors with `classifier`; an error says
    /// which setting cannot work.
    pub fn new(config: AdaptiveConfig, classifier: C) -> Result<Self, AdaptiveConfigError> {
        Ok(AdaptiveConcurrencyLayer::with_controller(
            AdaptiveController::new(config)?,
            classifier,
        ))
    }

    /// Services under an existing limit, e.g. one shared with another stack.
    pub fn with_controller(controller: AdaptiveController, classifier: C) -> Self {
        AdaptiveConcurrencyLayer {
            controller,
            classifier,
        }
    }

    /// The shared controller: clone it to watch [`limit`](AdaptiveController::limit) and
    /// [`in_flight`](AdaptiveController::in_flight), e.g. to export them as gauges.
    pub fn controller(&self) -> &AdaptiveController {
        &self.controller
    }
}

impl AdaptiveConcurrencyLayer<ByError> {
    /// A new limit that asks the error itself what it means ([`crate::ClassifyError`]).
    pub fn by_error(config: AdaptiveConfig) -> Result<Self, AdaptiveConfigError> {
        AdaptiveConcurrencyLayer::new(config, ByError)
    }
}

impl<C> fmt::Debug for AdaptiveConcurrencyLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveConcurrencyLayer")
            .field("controller", &self.controller)
            .finish_non_exhaustive()
    }
}

impl<S, C: Clone> Layer<S> for AdaptiveConcurrencyLayer<C> {
    type Service = AdaptiveConcurrency<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        AdaptiveConcurrency::with_controller(
            inner,
            self.controller.clone(),
            self.classifier.clone(),
        )
    }
}
