use std::time::Duration;

use tower::Layer;

use super::Deadline;

/// Wraps services in a [`Deadline`].
#[derive(Clone, Copy, Debug)]
pub struct DeadlineLayer {
    timeout: Duration,
}

impl DeadlineLayer {
    /// Every request gets `timeout`, from its first `poll_ready` to its response.
    pub fn new(timeout: Duration) -> Self {
        DeadlineLayer { timeout }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline::new(inner, self.timeout)
    }
}
