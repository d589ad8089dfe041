//! Concurrency limits: a fixed one (tower's) and an adaptive one that finds the concurrency a
//! service can take by watching its round-trip times and back-pressure.
//!
//! # Fixed
//!
//! [`ConcurrencyLimit`] and [`ConcurrencyLimitLayer`] are tower's, re-exported: at most `n`
//! requests in flight, waiting in `poll_ready` for a slot. Each service built by
//! [`ConcurrencyLimitLayer`] gets its own `n` (its clones share it); for one `n` across
//! services, use [`GlobalConcurrencyLimitLayer`]. Use it when the server states its limit.
//!
//! ```
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(cio_layers::concurrency::ConcurrencyLimitLayer::new(10))
//!     .service(service_fn(|x: u32| async move { Ok::<_, std::convert::Infallible>(x) }));
//! assert_eq!(svc.oneshot(7).await.unwrap(), 7);
//! # }
//! ```
//!
//! # Adaptive
//!
//! [`AdaptiveConcurrencyLayer`] / [`AdaptiveConcurrency`] keep the limit where the service
//! answers fast without pushing back, in the manner of Vector's Adaptive Request Concurrency
//! (learned from, not copied): additive increase, multiplicative decrease (AIMD), as TCP does
//! with its congestion window.
//!
//! - Every successful response contributes its round-trip time (from `call` to the response)
//!   to the current *window*; an error that the [`crate::Classifier`] calls back-pressure or
//!   retryable (a 429, a 503, a timeout — for example a deadline error classified so) marks the
//!   window as pushed back. A permanent error says nothing about load and is ignored.
//! - A window lasts one smoothed RTT. When it closes, its mean RTT is compared with the past:
//!   an exponentially weighted moving average of earlier windows' means (weight
//!   [`AdaptiveConfig::ewma_alpha`], 0.4), and the *deviation* of a window's mean, the
//!   standard error `sd / sqrt(n)` of its `n` RTTs, averaged the same way.
//!   - back-pressure, or a mean RTT above `past mean + rtt_deviation_scale * deviation`
//!     (2.5): the limit becomes `floor(limit * decrease_ratio)` (0.9), not below `min`;
//!   - else a mean RTT at most the past mean, *and* some request found the limit fully used
//!     (evidence that callers want more): the limit grows by one, not above `max`;
//!   - else it holds.
//!
//!   The window's figures then join the averages.
//! - So the limit grows by at most one per RTT and shrinks by 10 % at most once per RTT.
//!   A smaller limit applies as slots come back: requests already in flight are never
//!   cancelled, their slots are retired when they finish.
//!
//! Where this departs from Vector, and why: Vector's deviation is that of the window means
//! *over time*, which our own probing inflates. Each step above the service's capacity widens
//! the band that lets the next step through, so with latencies that grow smoothly past the
//! capacity the limit ratchets up: on the simulated service of the tests (50 ms up to C = 10 in
//! flight, `50 ms * (n / C)^2` above), Vector's rule sat at 12 only because an EWMA fed a
//! steady RTT never quite reaches it, at 19 once ties were compared fairly, and at 2–4 C with
//! 2–30 % random latency. The standard error measures the service's own noise instead; with it
//! the limit stays within [0.7 C, 1.3 C] for C from 10 to 100, for quadratic and linear
//! latency curves with up to 10 % jitter, and comes down from a limit started at 4 C (at 30 %
//! jitter on the gentlest curve it can still creep up). The price: latency that drifts over
//! time for reasons of its own (not load) lowers the limit more than Vector's rule would, the
//! safe side to err on. Explicit back-pressure (429s) works the same in both.
//!
//! Defaults ([`AdaptiveConfig::default`]): start at 1, between 1 and 200. The state is one
//! [`AdaptiveController`], shared through an `Arc` by the layer, every service it builds and
//! their clones; [`AdaptiveController::limit`] and [`AdaptiveController::in_flight`] read it
//! without a lock, to export as gauges.
//!
//! ```
//! use cio_layers::concurrency::{AdaptiveConcurrencyLayer, AdaptiveConfig};
//! use cio_layers::Failure;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! #[derive(Debug)]
//! enum ApiError { TooManyRequests, BadRequest }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let classify = |e: &ApiError| match e {
//!     ApiError::TooManyRequests => Failure { retryable: true, back_pressure: true, retry_after: None },
//!     ApiError::BadRequest => Failure::PERMANENT,
//! };
//! let config = AdaptiveConfig { initial: 4, max: 64, ..AdaptiveConfig::default() };
//! let layer = AdaptiveConcurrencyLayer::new(config, classify)?;
//! let limit = layer.controller().clone(); // for a gauge
//!
//! let svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(service_fn(|x: u32| async move {
//!         if x == 0 { Err(ApiError::BadRequest) } else { Ok(x * 2) }
//!     }));
//! assert_eq!(svc.clone().oneshot(21).await.unwrap(), 42);
//! assert_eq!((limit.limit(), limit.in_flight()), (4, 0));
//! # Ok(())
//! # }
//! ```
//!
//! # Why by hand
//!
//! Adaptive tower layers exist: `tower-acc` (Vegas, Gradient2, loss-only AIMD),
//! `tower-resilience-adaptive` (AIMD against a fixed latency threshold, Vegas) and
//! `rate_limiter_aimd` (a fork of Vector's, tied to its `RetryLogic`). None reads errors
//! through our [`crate::Classifier`] (back-pressure *and* RTT in one scheme, as the pipeline
//! needs), and the fork carries the ratchet described above. Running `tower-acc`'s Vegas and
//! Gradient2 on the simulations of `tests/concurrency.rs` is the check to make before this
//! grows further.
//!
//! The waiting is tokio's fair `Semaphore`: a service that finds no free slot keeps one boxed
//! `acquire_owned` future across `poll_ready`s (no busy loop, no lock held across an await); a
//! free slot is taken with `try_acquire_owned`, without allocating.

mod adaptive;

pub use adaptive::{
    AdaptiveConcurrency, AdaptiveConcurrencyLayer, AdaptiveConfig, AdaptiveConfigError,
    AdaptiveController, ResponseFuture,
};
/// tower's fixed concurrency limit, re-exported (see the [module docs](self)).
pub use tower::limit::{ConcurrencyLimit, ConcurrencyLimitLayer, GlobalConcurrencyLimitLayer};
