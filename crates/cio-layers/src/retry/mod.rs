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

mod backoff;
mod future;
mod layer;
mod service;

pub use backoff::RetryConfig;
pub use future::ResponseFuture;
pub use layer::RetryLayer;
pub use service::Retry;
pub use tower::retry::budget::TpsBudget;
