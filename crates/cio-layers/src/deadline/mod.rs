//! A deadline that covers waiting for readiness as well as the call.
//!
//! tower's `Timeout` starts its clock at `call`, so a request queued behind a rate limit or a
//! full concurrency limit can wait in `poll_ready` forever. [`Deadline`] starts the clock at the
//! first `poll_ready` of a request: if the inner service is not ready in time, that request's
//! response future fails with [`Elapsed`] (`waiting_for_readiness: true`); once ready, the call
//! gets what is left of the same deadline. `poll_ready` itself never fails on a deadline: in
//! tower an error from `poll_ready` ends the service for good (a batch worker or a pipeline
//! would stop), and a deadline concerns one request only.
//!
//! The inner error type must absorb [`Elapsed`] (`S::Error: From<Elapsed>`); `tower::BoxError`
//! does, and so does `cio_api::Error` (as a retryable timeout).
//!
//! ```
//! use std::time::Duration;
//! use cio_layers::{deadline::DeadlineLayer, BoxError};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(DeadlineLayer::new(Duration::from_millis(50)))
//!     .service(service_fn(|_: ()| async {
//!         tokio::time::sleep(Duration::from_secs(1)).await;
//!         Ok::<_, BoxError>(())
//!     }));
//! let err = svc.oneshot(()).await.unwrap_err();
//! assert!(err.to_string().contains("deadline of 50ms"));
//! # }
//! ```

mod error;
mod future;
mod layer;
mod service;

pub use error::Elapsed;
pub use future::ResponseFuture;
pub use layer::DeadlineLayer;
pub use service::Deadline;
