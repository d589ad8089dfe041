use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tower::retry::budget::TpsBudget;
use tower::Layer;

use super::{Retry, RetryConfig, RetryHandle, RetryPolicy};
use crate::ByError;

/// Builds [`Retry`] services that share one configuration, classifier, budget and
/// [`RetryHandle`].
#[derive(Clone)]
pub struct RetryLayer<C = ByError> {
    pub(crate) shared: Arc<Shared<C>>,
}

pub(crate) struct Shared<C> {
    pub(crate) config: RetryConfig,
    pub(crate) classifier: C,
    pub(crate) budget: Option<TpsBudget>,
    /// Jitter seed and a counter, so each call draws from its own reproducible sequence.
    pub(crate) seed: u64,
    pub(crate) calls: AtomicU64,
    pub(crate) handle: RetryHandle,
}

impl<C> std::fmt::Debug for RetryLayer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryLayer")
            .field("config", &self.shared.config)
            .field("budget", &self.shared.budget.is_some())
            .finish()
    }
}

impl<C> RetryLayer<C> {
    /// Retries what `classifier` calls retryable, as `config` says, without a budget.
    pub fn new(config: RetryConfig, classifier: C) -> Self {
        let seed = config.seed.unwrap_or_else(rand::random);
        RetryLayer {
            shared: Arc::new(Shared {
                config,
                classifier,
                budget: None,
                seed,
                calls: AtomicU64::new(0),
                handle: RetryHandle::default(),
            }),
        }
    }

    /// Adds a retry budget (e.g. `TpsBudget::new(Duration::from_secs(10), 10, 0.2)`: retries
    /// may add 20 % to the calls of the last 10 s, plus 10 a second). Services built before keep
    /// the old settings.
    pub fn with_budget(self, budget: TpsBudget) -> Self
    where
        C: Clone,
    {
        RetryLayer {
            shared: Arc::new(Shared {
                config: self.shared.config.clone(),
                classifier: self.shared.classifier.clone(),
                budget: Some(budget),
                seed: self.shared.seed,
                calls: AtomicU64::new(0),
                handle: self.shared.handle.clone(),
            }),
        }
    }

    /// What the retries of every service built by this layer are doing now.
    pub fn handle(&self) -> RetryHandle {
        self.shared.handle.clone()
    }
}

impl RetryLayer<ByError> {
    /// Retries what the error itself calls retryable ([`crate::ClassifyError`]).
    pub fn by_error(config: RetryConfig) -> Self {
        RetryLayer::new(config, ByError)
    }
}

impl<S, C> Layer<S> for RetryLayer<C> {
    type Service = Retry<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        tower::retry::Retry::new(RetryPolicy::new(self.shared.clone()), inner)
    }
}
