//! The `Layer` that wraps a batch-taking service in a [`Batch`].

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use tower::{Layer, Service};

use super::{Batch, BatchConfig, BatchHandle, BatchOutcomes};

/// Wraps an inner `Service<Vec<T>>` in a [`Batch`], a `Service<T>` for single items.
///
/// Every service it builds gets its own worker and queue; [`BatchLayer::handle`] closes all of
/// them. See the [module docs](super) for an example with `ServiceBuilder`.
pub struct BatchLayer<T> {
    config: BatchConfig,
    handle: BatchHandle,
    _item: PhantomData<fn(T)>,
}

impl<T> BatchLayer<T> {
    /// A layer with these limits.
    pub fn new(config: BatchConfig) -> Self {
        BatchLayer {
            config,
            handle: BatchHandle::default(),
            _item: PhantomData,
        }
    }

    /// A handle that closes every service this layer built or will build.
    pub fn handle(&self) -> BatchHandle {
        self.handle.clone()
    }

    /// The limits this layer gives its services.
    pub fn config(&self) -> &BatchConfig {
        &self.config
    }
}

impl<S, T> Layer<S> for BatchLayer<T>
where
    S: Service<Vec<T>> + Send + 'static,
    S::Future: Send + 'static,
    S::Response: BatchOutcomes,
    <S::Response as BatchOutcomes>::Item: Send + 'static,
    <S::Response as BatchOutcomes>::ItemError: Send + 'static,
    S::Error: fmt::Display + Send + Sync + 'static,
    T: Send + 'static,
{
    type Service = Batch<S, T>;

    /// Spawns the new service's worker on the current tokio runtime (panics outside one).
    fn layer(&self, inner: S) -> Batch<S, T> {
        let batch = Batch::new(inner, self.config);
        self.handle.register(Arc::clone(batch.shared()));
        batch
    }
}

impl<T> Clone for BatchLayer<T> {
    fn clone(&self) -> Self {
        BatchLayer {
            config: self.config,
            handle: self.handle.clone(),
            _item: PhantomData,
        }
    }
}

impl<T> fmt::Debug for BatchLayer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchLayer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
