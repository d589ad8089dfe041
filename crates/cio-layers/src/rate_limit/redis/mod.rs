//! [`RedisBackend`]: the same reserving GCRA, kept in Redis, so every replica of a service
//! shares one limit (feature `redis`).
//!
//! # One script per decision
//!
//! A decision is one `EVALSHA` of a Lua script (`reserve.lua`), which Redis runs atomically:
//! it reads Redis' own clock (`TIME`, so every replica shares one clock and none's drift
//! matters), takes the theoretical arrival time (TAT) from the key, reserves the next slot, and
//! answers how long to wait for it, exactly like [`LocalBackend`]: waiters are served in the
//! order they asked and each sleeps once. The key expires once its TAT is in the past (plus a
//! second), so idle limits vanish from Redis. One round trip per decision; the cost is measured
//! in `benches/redis_limit.rs`.
//!
//! [`cancel`](RateLimitBackend::cancel) runs a second small script (`cancel.lua`) that hands
//! the slot back only if it is still the last one taken, in a task the backend tracks
//! ([`RedisBackend::close`] waits for them).
//!
//! Every replica must use the same key and [`Quota`]: the quota is the *total* for all of
//! them. Needs Redis 6.0 or later (`SET ... KEEPTTL`; scripts that call `TIME` before a write
//! need effect replication, the default since 5.0).
//!
//! # When Redis cannot decide
//!
//! Each decision has a [timeout](RedisBackendBuilder::timeout) (default 100 ms), connection
//! included. After a failure (unreachable, timeout), Redis is not asked again for
//! [`retry_after`](RedisBackendBuilder::retry_after) (default 1 s), then one decision probes it,
//! so an outage costs each decision nothing, not a timeout. Meanwhile:
//!
//! - [`Unreachable::FailClosed`] (the default): the decision fails with a [`RedisLimitError`],
//!   which the service's error type must absorb (`From`); the call is not made, and the retry
//!   layer above may try again later. Nothing can exceed the limit; nothing gets through either.
//! - [`Unreachable::FallBack`] `{ replicas: N }`: the decision is made by a [`LocalBackend`] of
//!   `rate / N` with burst `burst / N` (each rounded down, at least 1). If every replica loses
//!   Redis together (Redis is down), they stay within the limit together. If only some lose it
//!   (a partition), those add up to `rate / N` each on top of the others' shared `rate`: up to
//!   `rate * (1 + k / N)` for `k` cut-off replicas. Choose it when availability matters more than
//!   an occasional `429`, which the retry layer absorbs.
//!
//! A decision that times out may still have reserved its slot in Redis: the slot is lost (the
//! limit gets stricter for an instant), never doubled.
//!
//! ```no_run
//! use std::num::NonZeroU32;
//! use std::time::Duration;
//! use cio_layers::rate_limit::{Quota, RateLimitLayer, RedisBackend, Unreachable};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // 100 requests/s for the whole workspace, however many replicas run this.
//! let quota = Quota::per_second(NonZeroU32::new(100).unwrap()).with_burst(NonZeroU32::new(10).unwrap());
//! let backend = RedisBackend::builder("redis://127.0.0.1:6379", "cio:rate:workspace-1", quota)
//!     .timeout(Duration::from_millis(100))
//!     .on_unreachable(Unreachable::FallBack { replicas: NonZeroU32::new(4).unwrap() })
//!     .build()?;
//! let layer = RateLimitLayer::with_backend(backend);
//! # let _ = layer; Ok(()) }
//! ```

mod error;

use std::fmt;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, Script};
use tokio::sync::OnceCell;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

pub use error::RedisLimitError;

use super::{LocalBackend, Quota, RateLimitBackend, Reservation};

/// Marks the tokens of reservations made by the local fallback (Redis' tokens are TATs in
/// microseconds since 1970, far below it).
const LOCAL_TOKEN: u64 = 1 << 63;

/// What a decision does when Redis cannot make it. See the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unreachable {
    /// Fail the decision with a [`RedisLimitError`].
    FailClosed,
    /// Decide locally at the quota divided by the number of replicas.
    FallBack {
        /// How many replicas share the quota.
        replicas: NonZeroU32,
    },
}

/// Configures a [`RedisBackend`].
#[derive(Clone)]
pub struct RedisBackendBuilder {
    url: String,
    key: String,
    quota: Quota,
    timeout: Duration,
    retry_after: Duration,
    unreachable: Unreachable,
}

impl fmt::Debug for RedisBackendBuilder {
    /// Leaves the URL out: it may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackendBuilder")
            .field("key", &self.key)
            .field("quota", &self.quota)
            .field("timeout", &self.timeout)
            .field("unreachable", &self.unreachable)
            .finish_non_exhaustive()
    }
}

impl RedisBackendBuilder {
    /// How long one decision may take, connecting included (default 100 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long Redis is left alone after a failure before one decision asks it again
    /// (default 1 s).
    pub fn retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = delay;
        self
    }

    /// What a decision does when Redis cannot make it (default [`Unreachable::FailClosed`]).
    pub fn on_unreachable(mut self, unreachable: Unreachable) -> Self {
        self.unreachable = unreachable;
        self
    }

    /// The backend. Does not connect: the first decision does (within its timeout), so a
    /// replica can start while Redis is down.
    pub fn build(self) -> Result<RedisBackend, RedisLimitError> {
        let client = Client::open(self.url.as_str()).map_err(RedisLimitError::InvalidUrl)?;
        let per_second = u64::from(self.quota.per_second.get());
        let interval = 1_000_000u64.div_ceil(per_second);
        let fallback = match self.unreachable {
            Unreachable::FailClosed => None,
            Unreachable::FallBack { replicas } => {
                let share = |n: NonZeroU32| {
                    NonZeroU32::new(n.get() / replicas.get()).unwrap_or(NonZeroU32::MIN)
                };
                Some(LocalBackend::new(
                    Quota::per_second(share(self.quota.per_second))
                        .with_burst(share(self.quota.burst)),
                ))
            }
        };
        Ok(RedisBackend {
            inner: Arc::new(Inner {
                client,
                conn: OnceCell::new(),
                key: self.key,
                quota: self.quota,
                interval_us: interval,
                tolerance_us: interval * u64::from(self.quota.burst.get() - 1),
                timeout: self.timeout,
                retry_after: self.retry_after,
                unreachable: self.unreachable,
                fallback,
                reserve: Script::new(include_str!("reserve.lua")),
                cancel: Script::new(include_str!("cancel.lua")),
                origin: Instant::now(),
                retry_at: AtomicU64::new(0),
                decisions: AtomicU64::new(0),
                local_decisions: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                cancels: TaskTracker::new(),
            }),
        })
    }
}

/// A [`RateLimitBackend`] whose GCRA state lives in Redis, shared by every replica that uses
/// the same key. Clones share one connection and one fallback. See the [module docs](self).
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    conn: OnceCell<ConnectionManager>,
    key: String,
    quota: Quota,
    interval_us: u64,
    tolerance_us: u64,
    timeout: Duration,
    retry_after: Duration,
    unreachable: Unreachable,
    fallback: Option<LocalBackend>,
    reserve: Script,
    cancel: Script,
    origin: Instant,
    /// Microseconds since `origin` before which Redis is not asked (0: ask).
    retry_at: AtomicU64,
    decisions: AtomicU64,
    local_decisions: AtomicU64,
    failures: AtomicU64,
    cancels: TaskTracker,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("key", &self.inner.key)
            .field("quota", &self.inner.quota)
            .field("unreachable", &self.inner.unreachable)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// A limit of `quota` for all replicas together, kept at `key` on the Redis at `url`
    /// (`redis://[:password@]host:port[/db]`).
    pub fn builder(
        url: impl Into<String>,
        key: impl Into<String>,
        quota: Quota,
    ) -> RedisBackendBuilder {
        RedisBackendBuilder {
            url: url.into(),
            key: key.into(),
            quota,
            timeout: Duration::from_millis(100),
            retry_after: Duration::from_secs(1),
            unreachable: Unreachable::FailClosed,
        }
    }

    /// Decisions asked of this backend (and its clones).
    pub fn decisions(&self) -> u64 {
        self.inner.decisions.load(Ordering::Relaxed)
    }

    /// Decisions made by the local fallback because Redis could not make them.
    pub fn local_decisions(&self) -> u64 {
        self.inner.local_decisions.load(Ordering::Relaxed)
    }

    /// Decisions for which Redis failed or timed out (each opens the retry delay).
    pub fn failures(&self) -> u64 {
        self.inner.failures.load(Ordering::Relaxed)
    }

    /// Waits for the cancellations still on their way to Redis (each bounded by the timeout).
    pub async fn close(&self) {
        self.inner.cancels.close();
        self.inner.cancels.wait().await;
    }
}

impl Inner {
    fn now_us(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX - 1) + 1
    }

    /// `Some(time left)` while Redis is left alone after a failure. Once the delay has passed,
    /// exactly one caller gets `None` (it probes Redis) and the delay starts over for the rest.
    fn resting(&self) -> Option<Duration> {
        let at = self.retry_at.load(Ordering::Acquire);
        if at == 0 {
            return None;
        }
        let now = self.now_us();
        if now < at {
            return Some(Duration::from_micros(at - now));
        }
        let next = now + self.retry_after.as_micros() as u64;
        match self
            .retry_at
            .compare_exchange(at, next, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => None,
            Err(_) => Some(self.retry_after),
        }
    }

    async fn decide(&self) -> Result<Reservation, RedisLimitError> {
        self.decisions.fetch_add(1, Ordering::Relaxed);
        if let Some(left) = self.resting() {
            return self.without_redis(RedisLimitError::CircuitOpen(left));
        }
        let error = match tokio::time::timeout(self.timeout, self.reserve_in_redis()).await {
            Ok(Ok(reservation)) => {
                if self.retry_at.swap(0, Ordering::AcqRel) != 0 {
                    tracing::info!(key = %self.key, "the shared rate limit's Redis is back");
                }
                return Ok(reservation);
            }
            Ok(Err(e)) => e,
            Err(_) => RedisLimitError::Timeout(self.timeout),
        };
        self.failures.fetch_add(1, Ordering::Relaxed);
        let rest = self.now_us() + self.retry_after.as_micros() as u64;
        if self.retry_at.swap(rest, Ordering::AcqRel) == 0 {
            tracing::warn!(key = %self.key, error = %error, unreachable = ?self.unreachable,
                retry_after = ?self.retry_after, "the shared rate limit cannot reach Redis");
        }
        self.without_redis(error)
    }

    async fn reserve_in_redis(&self) -> Result<Reservation, RedisLimitError> {
        let mut conn = self.connection().await?;
        let (wait, token): (u64, u64) = self
            .reserve
            .key(&self.key)
            .arg(self.interval_us)
            .arg(self.tolerance_us)
            .invoke_async(&mut conn)
            .await
            .map_err(RedisLimitError::from_redis)?;
        Ok(Reservation {
            wait: Duration::from_micros(wait),
            token,
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, RedisLimitError> {
        // The decision's own timeout and retry delay govern: the connection's are only a
        // backstop (for cancellations), and it does not retry by itself.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.timeout * 2)
            .set_response_timeout(self.timeout * 2)
            .set_number_of_retries(0);
        self.conn
            .get_or_try_init(|| ConnectionManager::new_with_config(self.client.clone(), config))
            .await
            .cloned()
            .map_err(RedisLimitError::from_redis)
    }

    fn without_redis(&self, error: RedisLimitError) -> Result<Reservation, RedisLimitError> {
        match &self.fallback {
            Some(local) => {
                self.local_decisions.fetch_add(1, Ordering::Relaxed);
                let r = local.reserve_now();
                Ok(Reservation {
                    wait: r.wait,
                    token: r.token | LOCAL_TOKEN,
                })
            }
            None => Err(error),
        }
    }

    async fn cancel_in_redis(&self, token: u64) {
        let Ok(mut conn) = self.connection().await else {
            return;
        };
        let handed_back: Result<u8, _> = self
            .cancel
            .key(&self.key)
            .arg(token)
            .arg(self.interval_us)
            .invoke_async(&mut conn)
            .await;
        tracing::trace!(?handed_back, "reservation cancelled");
    }
}

impl RateLimitBackend for RedisBackend {
    type Error = RedisLimitError;
    type Future = Pin<Box<dyn Future<Output = Result<Reservation, RedisLimitError>> + Send>>;

    fn reserve(&self) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move { inner.decide().await })
    }

    /// Hands the slot back if it is still the last one taken: locally for a fallback
    /// reservation, else by a script run in a tracked task (skipped outside a tokio runtime or
    /// while Redis is left alone after a failure).
    fn cancel(&self, reservation: Reservation) {
        if reservation.token & LOCAL_TOKEN != 0 {
            if let Some(local) = &self.inner.fallback {
                local.cancel(Reservation {
                    token: reservation.token & !LOCAL_TOKEN,
                    ..reservation
                });
            }
            return;
        }
        if self.inner.retry_at.load(Ordering::Acquire) != 0 {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let inner = self.inner.clone();
        self.inner.cancels.spawn_on(
            async move {
                let _ =
                    tokio::time::timeout(inner.timeout, inner.cancel_in_redis(reservation.token))
                        .await;
            },
            &runtime,
        );
    }
}
