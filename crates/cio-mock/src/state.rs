//! What one mock server keeps while it runs: its configuration, the faults in force, the
//! counters, the per-API rate limiters and when each broadcast was last triggered. The server
//! and the answering modules (`track`, `app`) all read it; it depends on none of them.

use std::sync::RwLock;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::config::{Faults, MockConfig, RateLimit};
use crate::stats::{Stats, StatsSnapshot};
use crate::store::{Change, Store};

/// Shared state of one mock server.
pub(crate) struct State {
    pub(crate) config: MockConfig,
    pub(crate) faults: RwLock<Faults>,
    pub(crate) stats: Stats,
    /// What the mock keeps of what it was sent (`None` with `keep_state` off).
    pub(crate) store: Option<Store>,
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
            stats: Stats::new(config.store.event_ids),
            store: config.keep_state.then(|| Store::new(config.store)),
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

    /// Keeps what one accepted request changes. `changes` is only walked with state kept.
    pub(crate) fn keep<I: IntoIterator<Item = Change>>(&self, changes: impl FnOnce() -> I) {
        if let Some(store) = &self.store {
            // Parsed here, before the store's lock is taken.
            let changes: Vec<Change> = changes().into_iter().collect();
            store.apply(changes);
        }
    }

    /// The counters and what the store holds.
    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let mut s = self.stats.snapshot();
        if let Some(store) = &self.store {
            let c = store.counts();
            s.people = c.people;
            s.objects = c.objects;
            s.anonymous_ids = c.anonymous;
            s.state_bytes = c.bytes;
            s.evicted_people = c.evicted_people;
            s.evicted_events = c.evicted_events;
            s.evicted_objects = c.evicted_objects;
            s.dropped_suppressed = c.dropped_suppressed;
        }
        s
    }

    /// Clears the counters and what is kept.
    pub(crate) fn reset(&self) {
        self.stats.reset();
        if let Some(store) = &self.store {
            store.reset();
        }
    }

    pub(crate) fn set_faults(&self, f: Faults) -> Result<(), String> {
        f.check()?;
        *self.faults.write().unwrap_or_else(|p| p.into_inner()) = f;
        Ok(())
    }
}
