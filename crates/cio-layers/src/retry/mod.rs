//! Retries with exponential backoff and full jitter, `Retry-After`, a cap on attempts and on
//! total backoff, and a budget against retry storms.
//!
//! Only what the [`crate::Classifier`] calls retryable is retried; a `Retry-After` hint replaces
//! the computed backoff (capped by [`RetryConfig::max_retry_after`]). The budget (tower's
//! `TpsBudget`) lets retries add at most a fraction of the calls' volume, so a struggling server
//! is not buried under retries: when it is spent, errors go back to the caller.
//!
//! ```
//! use cio_layers::{Failure, retry::{RetryConfig, RetryLayer}};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // Any error type works with a closure classifier.
//! let classify = |e: &String| Failure { retryable: e == "busy", ..Failure::PERMANENT };
//! let svc = ServiceBuilder::new()
//!     .layer(RetryLayer::new(RetryConfig::default(), classify))
//!     .service(service_fn(|x: u32| async move { Ok::<_, String>(x * 2) }));
//! assert_eq!(svc.oneshot(21).await.unwrap(), 42);
//! # }
//! ```
//!
//! Requests must be `Clone` (each attempt sends a copy); wrap large ones in an `Arc`.
//!
//! **On tower's terms.** The decision is a `tower::retry::Policy` ([`RetryPolicy`]) under
//! tower's own `Retry` service and future, as Vector's `RetryLogic` sits under its
//! `FibonacciRetryPolicy`: the classifier says what an error means (retryable, back-pressure,
//! `Retry-After`), the policy turns that into a sleep or a give-up. tower has no notion of
//! `Retry-After` or of a per-call time bound, so those live in the policy. A
//! [`RetryHandle`] shows what the retries are doing (calls retrying, the oldest, the failure
//! streak, the next try) for status lines and gauges.
//!
//! Two settings: [`RetryConfig::default`] is the Node SDK's (a few attempts, then the error
//! goes back to the caller), [`RetryConfig::until_permanent`] the pipeline's (retry until it
//! goes through, backoff capped at 30 s, `Retry-After` up to an hour, an optional
//! `give_up_after`).

mod backoff;
mod layer;
mod policy;
mod state;

pub(crate) use backoff::capped_exponential;
pub use backoff::{RetryConfig, MAX_BACKOFF, MAX_RETRY_AFTER};
pub use layer::RetryLayer;
pub use policy::RetryPolicy;
pub use state::{RetryHandle, RetryStatus};
pub use tower::retry::budget::TpsBudget;

/// The retrying service: tower's `Retry` with this module's [`RetryPolicy`].
pub type Retry<S, C = crate::ByError> = tower::retry::Retry<RetryPolicy<C>, S>;

/// The response future of [`Retry`].
pub type ResponseFuture<S, C, Req> = tower::retry::future::ResponseFuture<RetryPolicy<C>, S, Req>;
