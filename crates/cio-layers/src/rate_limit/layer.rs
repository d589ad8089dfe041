use tower::Layer;

use super::{LocalBackend, Quota, RateLimit, RateLimitBackend};

/// Applies one rate limit to every service it wraps. Clones of the layer share the limit.
#[derive(Clone, Debug)]
pub struct RateLimitLayer<B = LocalBackend> {
    backend: B,
}

impl RateLimitLayer<LocalBackend> {
    /// An in-process limit, on the clock [`super::ClockSource::detect`] picks.
    pub fn new(quota: Quota) -> Self {
        RateLimitLayer {
            backend: LocalBackend::new(quota),
        }
    }
}

impl<B: RateLimitBackend> RateLimitLayer<B> {
    /// A limit kept by `backend` (for example one shared by every replica through Redis).
    pub fn with_backend(backend: B) -> Self {
        RateLimitLayer { backend }
    }

    /// The backend, to share it with other layers or inspect it.
    pub fn backend(&self) -> &B {
        &self.backend
    }
}

impl<S, B: RateLimitBackend> Layer<S> for RateLimitLayer<B> {
    type Service = RateLimit<S, B>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::with_backend(inner, self.backend.clone())
    }
}
