//! The retry decision as a `tower::retry::Policy`: tower's `Retry` service and future do the
//! calling, sleeping and re-readying; this policy says whether and when.

use std::fmt::Display;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rand::rngs::SmallRng;
use tokio::time::{sleep_until, Instant, Sleep};
use tower::retry::budget::Budget;

use super::backoff::{full_jitter, rng};
use super::layer::Shared;
use crate::Classifier;

/// The policy of a [`super::RetryLayer`].
///
/// tower's `Retry` asks the service's policy for a copy of each request before its first
/// attempt (`clone_request`), then clones the whole service, policy included, into the call's
/// future. So `clone_request` on a policy that has not retried starts a new call (its number,
/// its first attempt's time); the future's copy then counts that call's attempts and backoff,
/// and only it ever retries.
pub struct RetryPolicy<C> {
    pub(crate) shared: Arc<Shared<C>>,
    call: Option<Call>,
}

/// One call's retries.
#[derive(Clone)]
struct Call {
    /// The first attempt's start and the call's number: the key in [`super::RetryHandle`].
    key: (Instant, u64),
    attempt: u32,
    slept: std::time::Duration,
    rng: Option<SmallRng>,
    /// Whether the handle lists this call as retrying.
    listed: bool,
}

impl<C> RetryPolicy<C> {
    pub(crate) fn new(shared: Arc<Shared<C>>) -> Self {
        RetryPolicy { shared, call: None }
    }
}

impl<C> Clone for RetryPolicy<C> {
    /// The same call, not yet listed as retrying (only the copy that retries lists itself).
    fn clone(&self) -> Self {
        RetryPolicy {
            shared: self.shared.clone(),
            call: self.call.clone().map(|c| Call { listed: false, ..c }),
        }
    }
}

impl<C> Drop for RetryPolicy<C> {
    fn drop(&mut self) {
        if let Some(call) = &self.call {
            if call.listed {
                self.shared.handle.ended(call.key);
            }
        }
    }
}

impl<C> std::fmt::Debug for RetryPolicy<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("config", &self.shared.config)
            .field("attempt", &self.call.as_ref().map(|c| c.attempt))
            .finish()
    }
}

impl<C, Req, Res, E> tower::retry::Policy<Req, Res, E> for RetryPolicy<C>
where
    C: Classifier<E>,
    E: Display,
    Req: Clone,
{
    type Future = Sleep;

    fn retry(&mut self, _req: &mut Req, result: &mut Result<Res, E>) -> Option<Sleep> {
        let RetryPolicy { shared, call } = self;
        let call = call.as_mut()?;
        let error = match result {
            Ok(_) => {
                shared.handle.succeeded();
                return None;
            }
            Err(e) => e,
        };
        let failure = shared.classifier.classify(error);
        let config = &shared.config;
        if !failure.retryable || call.attempt >= config.max_attempts.get() {
            return None;
        }
        let delay = match failure.retry_after {
            Some(hint) => hint.min(config.max_retry_after),
            None => {
                let seed = shared.seed ^ call.key.1.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let rng = call.rng.get_or_insert_with(|| rng(seed));
                full_jitter(rng, config.ceiling(call.attempt))
            }
        };
        if call.slept.saturating_add(delay) > config.max_total_backoff {
            tracing::debug!(
                attempt = call.attempt,
                ?delay,
                "a retry would pass the total backoff cap; giving up"
            );
            return None;
        }
        let now = Instant::now();
        let at = now + delay;
        if let Some(limit) = config.give_up_after {
            if at.saturating_duration_since(call.key.0) > limit {
                tracing::debug!(
                    attempt = call.attempt,
                    ?delay,
                    ?limit,
                    "a retry would start past give_up_after; giving up"
                );
                return None;
            }
        }
        if let Some(budget) = &shared.budget {
            if !budget.withdraw() {
                tracing::debug!(attempt = call.attempt, "retry budget spent; giving up");
                return None;
            }
        }
        call.slept += delay;
        call.attempt += 1;
        call.listed = true;
        shared.handle.scheduled(call.key, error.to_string(), at);
        tracing::debug!(attempt = call.attempt, ?delay, retry_after = ?failure.retry_after, error = %error, "retrying");
        Some(sleep_until(at))
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        if self.call.as_ref().is_none_or(|c| c.attempt == 1) {
            // A new call's first attempt (a policy that retried is a call's own copy).
            if let Some(budget) = &self.shared.budget {
                budget.deposit();
            }
            let number = self.shared.calls.fetch_add(1, Ordering::Relaxed);
            self.call = Some(Call {
                key: (Instant::now(), number),
                attempt: 1,
                slept: std::time::Duration::ZERO,
                rng: None,
                listed: false,
            });
        }
        Some(req.clone())
    }
}
