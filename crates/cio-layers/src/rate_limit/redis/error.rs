use std::time::Duration;

use ::redis::RedisError;

use crate::{ClassifyError, Failure};

/// Why the shared rate limit could not decide. The service under the limit must absorb it
/// (`S::Error: From<RedisLimitError>`, as `tower::BoxError` does), the way it absorbs
/// [`LocalBackend`](super::super::LocalBackend)'s `Infallible`. With
/// [`Unreachable::FallBack`](super::Unreachable::FallBack) only
/// [`InvalidUrl`](Self::InvalidUrl) can happen, at build time.
#[derive(Debug, thiserror::Error)]
pub enum RedisLimitError {
    /// The URL given to the builder is not a Redis URL.
    #[error("invalid Redis URL for the shared rate limit: {0}")]
    InvalidUrl(#[source] RedisError),
    /// Connecting or talking to Redis failed.
    #[error("the shared rate limit's Redis is unreachable: {0}")]
    Unreachable(#[source] RedisError),
    /// Redis did not answer within the per-decision timeout. The decision may still have
    /// reserved a slot there: a lost slot, never an extra call.
    #[error("the shared rate limit's Redis did not decide within {0:?}")]
    Timeout(Duration),
    /// Redis failed recently and is not asked again until the retry delay has passed.
    #[error("the shared rate limit's Redis failed recently; it is asked again in {0:?}")]
    CircuitOpen(Duration),
    /// Redis answered with an error (a key of another type, a server out of memory).
    #[error("the shared rate limit's Redis refused the decision: {0}")]
    Refused(#[source] RedisError),
}

impl RedisLimitError {
    /// Whether asking again later can help: yes for an unreachable or slow Redis, no for a
    /// bad URL or a refusal.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            RedisLimitError::Unreachable(_)
                | RedisLimitError::Timeout(_)
                | RedisLimitError::CircuitOpen(_)
        )
    }

    pub(super) fn from_redis(e: RedisError) -> Self {
        if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
        {
            RedisLimitError::Unreachable(e)
        } else {
            RedisLimitError::Refused(e)
        }
    }
}

impl ClassifyError for RedisLimitError {
    /// Retryable as [`is_retryable`](RedisLimitError::is_retryable) says; never back-pressure
    /// from the API (the API was not called).
    fn classify(&self) -> Failure {
        Failure {
            retryable: self.is_retryable(),
            back_pressure: false,
            retry_after: match self {
                RedisLimitError::CircuitOpen(d) => Some(*d),
                _ => None,
            },
        }
    }
}
