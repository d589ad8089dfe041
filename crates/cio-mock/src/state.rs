//! What one mock server keeps while it runs: its configuration, the faults in force, the
//! counters, the per-API rate limiters and when each broadcast was last triggered. The server
//! and the answering modules (`track`, `app`) all read it; it depends on none of them.

use std::sync::RwLock;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::config::{Faults, MockConfig, RateLimit};
use crate::stats::Stats;

/// Shared state of one mock server.
pub(crate) struct State {
    pub(crate) config: MockConfig,
    pub(crate) faults: RwLock<Faults>,
    pub(crate) stats: Stats,
    pub(crate) track_limiter: Option<DefaultDirectRateLimiter>,
    pub(crate) app_limiter: Option<DefaultDirectRateLimiter>,
    pub(crate) pipelines_limiter: Option<DefaultDirectRateLimiter>,
    /// When each broadcast was last triggered (one trigger per `broadcast_interval`).
    broadcasts: std::sync::Mutex<std::collections::HashMap<u64, std::time::Instant>>,
}

fn limiter(l: Option<RateLimit>) -> Option<DefaultDirectRateLimiter> {
    l.map(|l| RateLimiter::direct(Quota::per_second(l.per_second).allow_burst(l.burst)))
}

impl State {
    pub(crate) fn new(config: MockConfig) -> Self {
        State {
            faults: RwLock::new(config.faults),
            stats: Stats::new(),
            track_limiter: limiter(config.track_limit),
            app_limiter: limiter(config.app_limit),
            pipelines_limiter: limiter(config.pipelines_limit),
            broadcasts: Default::default(),
            config,
        }
    }

    pub(crate) fn faults(&self) -> Faults {
        *self.faults.read().unwrap_or_else(|p| p.into_inner())
    }

    /// `None` when broadcast `id` may be triggered now (and records it), else how long until
    /// it may.
    pub(crate) fn broadcast_wait(&self, id: u64) -> Option<Duration> {
        let now = std::time::Instant::now();
        let mut last = self.broadcasts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = last.get(&id) {
            let since = now.saturating_duration_since(*t);
            if since < self.config.broadcast_interval {
                return Some(self.config.broadcast_interval - since);
            }
        }
        last.insert(id, now);
        None
    }

    pub(crate) fn set_faults(&self, f: Faults) -> Result<(), String> {
        f.check()?;
        *self.faults.write().unwrap_or_else(|p| p.into_inner()) = f;
        Ok(())
    }
}
