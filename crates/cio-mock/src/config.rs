//! What the mock enforces (credentials, limits) and the faults it injects.

use std::num::NonZeroU32;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use cio_api::Limits;

/// Credentials the mock requires. `None` accepts any well-formed credentials of the right scheme.
#[derive(Clone, Debug, Default)]
pub struct MockCredentials {
    /// Track (Basic `site_id:api_key`).
    pub track: Option<cio_api::TrackCredentials>,
    /// App API (Bearer).
    pub app: Option<cio_api::AppCredentials>,
    /// Pipelines (Basic `write_key:`).
    pub pipelines: Option<cio_api::PipelinesCredentials>,
}

/// A token bucket: a sustained rate per second and a burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RateLimit {
    /// Requests per second.
    pub per_second: NonZeroU32,
    /// Requests allowed at once after an idle period.
    pub burst: NonZeroU32,
}

impl RateLimit {
    /// `per_second` with a burst of the same size (Customer.io's documented per-second limits).
    pub fn per_second(per_second: NonZeroU32) -> Self {
        RateLimit {
            per_second,
            burst: per_second,
        }
    }
}

/// Static configuration of a mock server.
#[derive(Clone, Debug)]
pub struct MockConfig {
    /// Required credentials.
    pub credentials: MockCredentials,
    /// Track v1 + v2 limit (default 100/s, burst 100). `None` is unlimited.
    pub track_limit: Option<RateLimit>,
    /// App API limit (default 10/s, burst 10).
    pub app_limit: Option<RateLimit>,
    /// Pipelines limit (default 1000/s, burst 3000: Customer.io's 3000 per 3 s).
    pub pipelines_limit: Option<RateLimit>,
    /// Validation limits (Customer.io's by default).
    pub limits: Limits,
    /// Largest request body read for v1, App and Pipelines endpoints (v2 batch uses
    /// `limits.batch_bytes`, v2 entity `limits.entry_bytes`).
    pub max_body_bytes: usize,
    /// Faults at start.
    pub faults: Faults,
    /// How often one broadcast may be triggered (Customer.io: once every 10 s); a trigger
    /// sooner gets a 429 with `Retry-After`.
    pub broadcast_interval: Duration,
    /// Plays a Customer.io host that redirects an account living elsewhere (the US host and an
    /// EU workspace): every API request not under this URL's path is answered
    /// `307 Temporary Redirect` to this URL plus its path and query. A request under the path
    /// (the mock redirecting to itself, `http://127.0.0.1:7070/eu`) is served with the prefix
    /// taken off. `None` (default): no redirects.
    pub redirect_to: Option<http::Uri>,
    /// Whether the mock keeps people, events, devices, segments and objects (and answers the
    /// App API reads and `GET /__mock/people/{id}` from them). Off, it only counts (a little
    /// faster, for throughput benches). Default: on.
    pub keep_state: bool,
    /// The caps on what is kept, and the event-id de-duplication window.
    pub store: StoreLimits,
}

/// The caps on what the mock keeps. Past one, the least recently used person (or object, or
/// event of a person) goes, and the stats count it.
///
/// With the defaults, 10 million events into the mock stay under 512 MB of RSS (measured:
/// `docs/benchmarks.md`, "Mock memory").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct StoreLimits {
    /// People kept (default 100,000).
    pub people: usize,
    /// Latest events, page and screen views kept per person (default 20).
    pub events_per_person: usize,
    /// Objects kept (default 100,000).
    pub objects: usize,
    /// Bytes the kept people and objects may take, estimated (default 256 MiB): past it the
    /// least recently used people go even under the count cap.
    pub bytes: usize,
    /// The de-duplication window: how many distinct event ids the mock remembers at most
    /// (default 2,000,000). Ids are spread by hash over 16 shards, each keeping its ids in two
    /// generations of `event_ids / 32`: an id seen (or repeated) is recognised as a duplicate
    /// until its shard has met at least `event_ids / 32` other distinct ids since, and
    /// forgotten once it met `event_ids / 16`; over all shards, that is on average the last
    /// `event_ids / 2` to `event_ids` distinct ids. Customer.io does not document its own
    /// window; this one is by count, so that a soak test of any length stays bounded.
    pub event_ids: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            people: 100_000,
            events_per_person: 20,
            objects: 100_000,
            bytes: 256 << 20,
            event_ids: 2_000_000,
        }
    }
}

impl Default for MockConfig {
    fn default() -> Self {
        let n = |v: u32| NonZeroU32::new(v).unwrap_or(NonZeroU32::MIN);
        MockConfig {
            credentials: MockCredentials::default(),
            track_limit: Some(RateLimit::per_second(n(100))),
            app_limit: Some(RateLimit::per_second(n(10))),
            pipelines_limit: Some(RateLimit {
                per_second: n(1000),
                burst: n(3000),
            }),
            limits: Limits::default(),
            max_body_bytes: 1 << 20,
            faults: Faults::default(),
            broadcast_interval: Duration::from_secs(10),
            redirect_to: None,
            keep_state: true,
            store: StoreLimits::default(),
        }
    }
}

/// Added latency: fixed, or log-normal with the given median and 99th percentile.
#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct Latency {
    /// Median, in milliseconds.
    pub p50: f64,
    /// 99th percentile, in milliseconds (equal to or absent means fixed).
    #[serde(default)]
    pub p99: Option<f64>,
}

impl Latency {
    /// A fixed latency.
    pub fn fixed(d: Duration) -> Self {
        Latency {
            p50: d.as_secs_f64() * 1000.0,
            p99: None,
        }
    }

    /// One sample, given a standard normal `z`.
    pub(crate) fn sample(&self, z: f64) -> Duration {
        let p50 = self.p50.max(0.0);
        let ms = match self.p99 {
            Some(p99) if p99 > p50 && p50 > 0.0 => {
                // log-normal: p99 = p50 * exp(2.326 * sigma)
                let sigma = (p99 / p50).ln() / 2.326_347_9;
                p50 * (sigma * z).exp()
            }
            _ => p50,
        };
        Duration::from_secs_f64((ms.min(600_000.0)) / 1000.0)
    }
}

/// Faults injected into API requests (never into `/__mock/*`). Rates are fractions in `[0, 1]`.
#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Latency added before answering.
    #[serde(default, deserialize_with = "latency_or_number")]
    pub latency_ms: Option<Latency>,
    /// Fraction of requests answered 500/502/503.
    #[serde(default)]
    pub error_rate: f64,
    /// Fraction of requests answered 429 whatever the limit, with `Retry-After:
    /// retry_after_s`.
    #[serde(default)]
    pub throttle_rate: f64,
    /// The `Retry-After` of the injected 429s, in seconds (default 1; at most 86,400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
    /// Fraction of connections closed without an answer.
    #[serde(default)]
    pub drop_rate: f64,
}

impl Faults {
    /// Checks that every rate is a fraction and latencies are not negative.
    pub fn check(&self) -> Result<(), String> {
        for (name, v) in [
            ("error_rate", self.error_rate),
            ("throttle_rate", self.throttle_rate),
            ("drop_rate", self.drop_rate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name} must be between 0 and 1, got {v}"));
            }
        }
        if self.retry_after_s.is_some_and(|s| s > 86_400) {
            return Err(format!(
                "retry_after_s must be at most 86400 (a day), got {}",
                self.retry_after_s.unwrap_or_default()
            ));
        }
        if let Some(l) = self.latency_ms {
            if !(l.p50 >= 0.0 && l.p50.is_finite())
                || l.p99.is_some_and(|p| !(p >= l.p50 && p.is_finite()))
            {
                return Err(format!(
                    "latency_ms needs 0 <= p50 <= p99, got p50={} p99={:?}",
                    l.p50, l.p99
                ));
            }
        }
        Ok(())
    }
}

/// `latency_ms` may be a number (fixed) or `{"p50":..,"p99":..}`.
fn latency_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Latency>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Fixed(f64),
        Dist(Latency),
    }
    Ok(match Option::<Either>::deserialize(d)? {
        None => None,
        Some(Either::Fixed(ms)) => Some(Latency { p50: ms, p99: None }),
        Some(Either::Dist(l)) => Some(l),
    })
}
