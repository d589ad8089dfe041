//! What the retries of one layer are doing now, for a status line or a gauge: how many calls
//! are between a failure and their outcome, since when calls have kept failing, the last
//! failure, and when the next attempt is due.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// A view of a [`super::RetryLayer`]'s retries, shared by every service it built. Cheap to
/// clone.
///
/// A call counts as *retrying* from its first retryable failure until it ends (it went
/// through, failed for good, or was dropped). A *failure streak* starts at a retryable failure
/// when none is running, and ends at the next success of any call.
#[derive(Clone, Debug, Default)]
pub struct RetryHandle {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Set while a streak runs: a success only takes the lock then.
    failing: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The calls retrying, by (first attempt, call number).
    retrying: BTreeMap<(Instant, u64), ()>,
    streak_since: Option<Instant>,
    last_failure: Option<String>,
    next_try: Option<Instant>,
    retries: u64,
}

/// A snapshot of [`RetryHandle`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryStatus {
    /// Calls between a retryable failure and their outcome.
    pub retrying: usize,
    /// The first attempt of the oldest of them.
    pub oldest: Option<Instant>,
    /// When the current failure streak began (`None`: the last call went through).
    pub failing_since: Option<Instant>,
    /// The last retryable failure, as text.
    pub last_failure: Option<String>,
    /// When the most recently scheduled retry is due.
    pub next_try: Option<Instant>,
    /// Retries scheduled since the layer was built.
    pub retries: u64,
}

impl RetryStatus {
    /// How long the oldest retrying call has been trying, at `now`.
    pub fn oldest_age(&self, now: Instant) -> Duration {
        self.oldest
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
    }
}

impl RetryHandle {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state now.
    pub fn status(&self) -> RetryStatus {
        let s = self.lock();
        RetryStatus {
            retrying: s.retrying.len(),
            oldest: s.retrying.keys().next().map(|(t, _)| *t),
            failing_since: s.streak_since,
            last_failure: s.last_failure.clone(),
            next_try: s.next_try,
            retries: s.retries,
        }
    }

    /// A retry of call `key` is scheduled at `at` after `failure`.
    pub(crate) fn scheduled(&self, key: (Instant, u64), failure: String, at: Instant) {
        let mut s = self.lock();
        s.retrying.insert(key, ());
        s.streak_since.get_or_insert(Instant::now());
        s.last_failure = Some(failure);
        s.next_try = Some(at);
        s.retries += 1;
        self.inner.failing.store(true, Ordering::Release);
    }

    /// Call `key` ended (through, failed for good, or dropped).
    pub(crate) fn ended(&self, key: (Instant, u64)) {
        self.lock().retrying.remove(&key);
    }

    /// A call went through: the streak, if any, is over.
    pub(crate) fn succeeded(&self) {
        if self.inner.failing.load(Ordering::Acquire) {
            let mut s = self.lock();
            s.streak_since = None;
            s.next_try = None;
            self.inner.failing.store(false, Ordering::Release);
        }
    }
}
