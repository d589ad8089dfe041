//! What the mock saw and accepted, for tests and `GET /__mock/stats`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

const SHARDS: usize = 16;

/// The set of event ids seen, as 128-bit fingerprints (xxh3, seeded per mock so that a client
/// cannot aim collisions at it): no string kept or hashed twice per event, 16 bytes an id.
/// Two different ids are taken for one with odds of about n²/2¹²⁹ (10⁻²⁵ for ten million).
type IdSet = HashSet<u128, BuildHasherDefault<Fingerprint>>;

/// The hasher of [`IdSet`]: its keys are fingerprints, uniformly spread already, so it takes
/// their low 64 bits as they are. Written here because no std hasher passes a key through.
#[derive(Default)]
struct Fingerprint(u64);

impl Hasher for Fingerprint {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is used by `IdSet`; any other input is folded in, not lost.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}
/// Seconds of per-second request counts kept.
const SECONDS_KEPT: usize = 3600;

/// A snapshot of the mock's counters (`GET /__mock/stats`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// API requests received (not `/__mock/*`), including refused ones.
    pub requests: u64,
    /// Answers by HTTP status (`"200"`, `"207"`, `"429"`, ...).
    pub by_status: BTreeMap<String, u64>,
    /// Accepted entries by kind: an entry of a batch counts once (a batch of 3 adds 3).
    /// Keys: Track actions (`identify`, `event`, `page`, ...), `object_*`, `delivery_event`,
    /// `segment_add`/`segment_remove`, `form_submit`, `send_<kind>`, `broadcast_trigger`, `cdp_<type>`.
    pub accepted: BTreeMap<String, u64>,
    /// Entries refused for validation (400s count their entries, 207s their failed entries).
    pub rejected: u64,
    /// Distinct `id`s of accepted Track events: ids not among those the de-duplication window
    /// holds when they came (an id sent again after the window forgot it counts again; see
    /// `event_ids_forgotten`).
    pub unique_event_ids: u64,
    /// Accepted events whose id the window held (de-duplicated by Customer.io).
    pub duplicate_event_ids: u64,
    /// Accepted events without an id (cannot be de-duplicated).
    pub events_without_id: u64,
    /// 429s because a rate limit was exceeded.
    pub rate_limited: u64,
    /// 429s injected by `throttle_rate`.
    pub injected_throttles: u64,
    /// 5xx injected by `error_rate`.
    pub injected_errors: u64,
    /// Connections closed without an answer by `drop_rate`.
    pub dropped_connections: u64,
    /// 401s.
    pub unauthorized: u64,
    /// Pipelines requests over the size limit: answered 200 and not processed, as Customer.io does.
    pub oversize_ignored: u64,
    /// Invalid Pipelines calls sent without strict mode: answered 200 and not processed, as
    /// Customer.io does (with `X-Strict-Mode: 1` they get a 400 and count in `rejected`).
    #[serde(default)]
    pub ignored: u64,
    /// The largest number of Track requests let through the rate limit in one wall-clock second.
    pub max_track_requests_in_a_second: u64,
    /// Event ids the de-duplication window let go of (`StoreLimits::event_ids`): an id sent
    /// again after that counts as new.
    #[serde(default)]
    pub event_ids_forgotten: u64,
    /// People kept now.
    #[serde(default)]
    pub people: u64,
    /// Objects kept now.
    #[serde(default)]
    pub objects: u64,
    /// Anonymous ids whose events are kept until an identify carrying the id takes them.
    #[serde(default)]
    pub anonymous_ids: u64,
    /// The estimated bytes the kept people and objects take.
    #[serde(default)]
    pub state_bytes: u64,
    /// People let go (least recently used) to stay within the caps.
    #[serde(default)]
    pub evicted_people: u64,
    /// Events let go: older than a person's latest `events_per_person`, or of a person let go.
    #[serde(default)]
    pub evicted_events: u64,
    /// Objects let go to stay within the cap.
    #[serde(default)]
    pub evicted_objects: u64,
    /// Identifies, events and devices sent to a suppressed person, dropped.
    #[serde(default)]
    pub dropped_suppressed: u64,
}

/// One shard of the de-duplication window: ids in two generations. An id seen again while in
/// the older one moves to the newer; when the newer fills, the older is let go.
#[derive(Default)]
struct IdWindow {
    current: IdSet,
    previous: IdSet,
}

/// Live counters. Atomics for counts; the event-id set is sharded to keep contention low.
pub(crate) struct Stats {
    requests: AtomicU64,
    by_status: [AtomicU64; 600],
    accepted: Mutex<HashMap<&'static str, u64>>,
    rejected: AtomicU64,
    event_ids: Vec<Mutex<IdWindow>>,
    /// Ids a generation of one shard holds before the older generation is let go.
    generation: usize,
    unique_event_ids: AtomicU64,
    event_ids_forgotten: AtomicU64,
    seed: u64,
    duplicate_event_ids: AtomicU64,
    events_without_id: AtomicU64,
    pub(crate) rate_limited: AtomicU64,
    pub(crate) injected_throttles: AtomicU64,
    pub(crate) injected_errors: AtomicU64,
    pub(crate) dropped_connections: AtomicU64,
    pub(crate) unauthorized: AtomicU64,
    pub(crate) oversize_ignored: AtomicU64,
    pub(crate) ignored: AtomicU64,
    per_second: Mutex<PerSecond>,
}

struct PerSecond {
    counts: Vec<(u64, u64)>,
    max: u64,
}

impl Stats {
    /// Counters with a de-duplication window of `event_ids` distinct ids.
    pub(crate) fn new(event_ids: usize) -> Self {
        Stats {
            requests: AtomicU64::new(0),
            by_status: std::array::from_fn(|_| AtomicU64::new(0)),
            accepted: Mutex::new(HashMap::new()),
            rejected: AtomicU64::new(0),
            event_ids: (0..SHARDS).map(|_| Mutex::default()).collect(),
            generation: (event_ids / 2 / SHARDS).max(1),
            unique_event_ids: AtomicU64::new(0),
            event_ids_forgotten: AtomicU64::new(0),
            seed: rand::random(),
            duplicate_event_ids: AtomicU64::new(0),
            events_without_id: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            injected_throttles: AtomicU64::new(0),
            injected_errors: AtomicU64::new(0),
            dropped_connections: AtomicU64::new(0),
            unauthorized: AtomicU64::new(0),
            oversize_ignored: AtomicU64::new(0),
            ignored: AtomicU64::new(0),
            per_second: Mutex::new(PerSecond {
                counts: vec![(u64::MAX, 0); SECONDS_KEPT],
                max: 0,
            }),
        }
    }

    pub(crate) fn request(&self) {
        self.requests.fetch_add(1, Relaxed);
    }

    pub(crate) fn status(&self, status: u16) {
        if let Some(c) = self.by_status.get(status as usize) {
            c.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn rejected(&self, n: u64) {
        self.rejected.fetch_add(n, Relaxed);
    }

    /// A Track request passed the rate limit: count it in its wall-clock second.
    pub(crate) fn track_admitted(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut p = lock(&self.per_second);
        let slot = (now as usize) % SECONDS_KEPT;
        let entry = &mut p.counts[slot];
        if entry.0 != now {
            *entry = (now, 0);
        }
        entry.1 += 1;
        let count = entry.1;
        if count > p.max {
            p.max = count;
        }
    }

    /// Records accepted entries by kind, and event ids.
    pub(crate) fn accept<'a>(
        &self,
        kinds: impl IntoIterator<Item = (&'static str, Option<&'a str>, bool)>,
    ) {
        let mut local: HashMap<&'static str, u64> = HashMap::new();
        for (kind, event_id, is_event) in kinds {
            *local.entry(kind).or_default() += 1;
            if is_event {
                match event_id {
                    Some(id) => self.event_id(id),
                    None => {
                        self.events_without_id.fetch_add(1, Relaxed);
                    }
                }
            }
        }
        let mut acc = lock(&self.accepted);
        for (k, n) in local {
            *acc.entry(k).or_default() += n;
        }
    }

    fn event_id(&self, id: &str) {
        let fingerprint = xxhash_rust::xxh3::xxh3_128_with_seed(id.as_bytes(), self.seed);
        let shard = ((fingerprint >> 64) as usize) % SHARDS;
        let mut w = lock(&self.event_ids[shard]);
        if w.current.contains(&fingerprint) {
            self.duplicate_event_ids.fetch_add(1, Relaxed);
            return;
        }
        if w.previous.remove(&fingerprint) {
            self.duplicate_event_ids.fetch_add(1, Relaxed);
        } else {
            self.unique_event_ids.fetch_add(1, Relaxed);
        }
        w.current.insert(fingerprint);
        if w.current.len() >= self.generation {
            let full = std::mem::take(&mut w.current);
            let let_go = std::mem::replace(&mut w.previous, full);
            self.event_ids_forgotten
                .fetch_add(let_go.len() as u64, Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            requests: self.requests.load(Relaxed),
            by_status: self
                .by_status
                .iter()
                .enumerate()
                .filter_map(|(s, c)| {
                    let n = c.load(Relaxed);
                    (n > 0).then(|| (s.to_string(), n))
                })
                .collect(),
            accepted: lock(&self.accepted)
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            rejected: self.rejected.load(Relaxed),
            unique_event_ids: self.unique_event_ids.load(Relaxed),
            duplicate_event_ids: self.duplicate_event_ids.load(Relaxed),
            events_without_id: self.events_without_id.load(Relaxed),
            rate_limited: self.rate_limited.load(Relaxed),
            injected_throttles: self.injected_throttles.load(Relaxed),
            injected_errors: self.injected_errors.load(Relaxed),
            dropped_connections: self.dropped_connections.load(Relaxed),
            unauthorized: self.unauthorized.load(Relaxed),
            oversize_ignored: self.oversize_ignored.load(Relaxed),
            ignored: self.ignored.load(Relaxed),
            max_track_requests_in_a_second: lock(&self.per_second).max,
            event_ids_forgotten: self.event_ids_forgotten.load(Relaxed),
            ..StatsSnapshot::default()
        }
    }

    pub(crate) fn reset(&self) {
        self.requests.store(0, Relaxed);
        for c in &self.by_status {
            c.store(0, Relaxed);
        }
        lock(&self.accepted).clear();
        for s in &self.event_ids {
            *lock(s) = IdWindow::default();
        }
        for c in [
            &self.rejected,
            &self.duplicate_event_ids,
            &self.events_without_id,
            &self.rate_limited,
            &self.injected_throttles,
            &self.injected_errors,
            &self.dropped_connections,
            &self.unauthorized,
            &self.oversize_ignored,
            &self.ignored,
            &self.unique_event_ids,
            &self.event_ids_forgotten,
        ] {
            c.store(0, Relaxed);
        }
        let mut p = lock(&self.per_second);
        p.counts.iter_mut().for_each(|c| *c = (u64::MAX, 0));
        p.max = 0;
    }
}

/// Locks a mutex, recovering from poisoning: counters stay usable even if a task panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
