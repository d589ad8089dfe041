//! A GCRA rate limit with a rate and a burst, shared by every clone, pluggable in its backend.
//!
//! ```
//! use std::num::NonZeroU32;
//! use cio_layers::rate_limit::{Quota, RateLimitLayer};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let quota = Quota::per_second(NonZeroU32::new(100).unwrap()).with_burst(NonZeroU32::new(10).unwrap());
//! let layer = RateLimitLayer::new(quota); // one limit: every service built from it shares it
//! let svc = ServiceBuilder::new()
//!     .layer(layer.clone())
//!     .service(service_fn(|x: u32| async move { Ok::<_, std::convert::Infallible>(x) }));
//! assert_eq!(svc.clone().oneshot(7).await.unwrap(), 7);
//! # }
//! ```
//!
//! # Why our own GCRA and not governor's
//!
//! governor's GCRA answers "not before T" and leaves the caller to come back at T. With many
//! waiters that is a thundering herd: they all wake at T, one wins, the rest compute a new T, and
//! nothing guarantees that a given waiter ever wins. Here a decision is a *reservation*: one
//! compare-and-swap on the theoretical arrival time (TAT) both admits the caller and tells it how
//! long to sleep for its own slot, so waiters are served in the order they asked, each sleeps
//! exactly once, and none starves. A reservation that is given up (the caller is dropped, a
//! deadline fires) is handed back when it is still the last one taken.
//!
//! Time comes from one of two clocks ([`ClockSource`]): inside a current-thread tokio runtime
//! (the only kind whose clock can be paused, so where tests run) from `tokio::time::Instant`,
//! so the limit is exact under `tokio::time::pause()`; elsewhere (a multi-thread runtime: the
//! `cio` binary, a server) from the CPU's timestamp counter through `quanta`, as governor does,
//! because reading the OS clock was two thirds of a decision's cost. The cost of a decision is
//! measured next to governor's raw `check` in the layer benches (`cargo bench -p cio-layers`,
//! figures in `docs/benchmarks.md`).
//!
//! The state lives behind an `Arc` in [`LocalBackend`]: every clone of the layer and of the
//! service shares one limit (tower's `RateLimit` gives each clone its own window). A backend
//! shared across processes implements [`RateLimitBackend`] the same way: `RedisBackend` (feature
//! `redis`) keeps this GCRA in Redis, one atomic script per decision, so every replica shares
//! one limit.

mod backend;
mod layer;
#[cfg(feature = "redis")]
pub mod redis;
mod service;

pub use backend::{ClockSource, LocalBackend, Quota, RateLimitBackend, Reservation};
pub use layer::RateLimitLayer;
#[cfg(feature = "redis")]
pub use redis::{RedisBackend, RedisBackendBuilder, RedisLimitError, Unreachable};
pub use service::{RateLimit, BACKEND_RETRY_MAX, BACKEND_RETRY_MIN};
