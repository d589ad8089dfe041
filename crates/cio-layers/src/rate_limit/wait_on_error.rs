use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::{RateLimitBackend, Reservation};

/// Fails closed by *waiting*: when the inner backend cannot decide (a shared store is
/// unreachable), the decision is retried after `delay` until it can, so nothing passes the limit
/// and no error reaches the caller.
///
/// Use it where an error from `poll_ready` would be fatal, such as under a batch layer, whose
/// worker treats a failed `poll_ready` as the end of the service. Bound the wait with a
/// [`crate::deadline::DeadlineLayer`] above the rate limit if callers must not wait forever.
#[derive(Clone, Debug)]
pub struct WaitOnError<B> {
    inner: B,
    delay: Duration,
}

impl<B> WaitOnError<B> {
    /// Retries `inner`'s failed decisions every `delay`.
    pub fn new(inner: B, delay: Duration) -> Self {
        WaitOnError { inner, delay }
    }

    /// The wrapped backend.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }
}

impl<B: RateLimitBackend> RateLimitBackend for WaitOnError<B> {
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Reservation, Infallible>> + Send>>;

    fn reserve(&self) -> Self::Future {
        let inner = self.inner.clone();
        let delay = self.delay;
        Box::pin(async move {
            let mut warned = false;
            loop {
                match inner.reserve().await {
                    Ok(r) => return Ok(r),
                    Err(e) => {
                        if !warned {
                            tracing::warn!(error = %e, ?delay, "rate limit backend cannot decide; waiting (fail closed)");
                            warned = true;
                        }
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        })
    }

    fn cancel(&self, reservation: Reservation) {
        self.inner.cancel(reservation);
    }
}
