//! Idle connections per origin, requests waiting for one, and a sweep of the expired.
//!
//! Modelled on hyper-util's pool, smaller: HTTP/1.1 only, so a connection is either idle here or
//! held by the one request using it, and there is no connecting set to share (that is for
//! HTTP/2, where many requests share one connection).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::conn::Conn;

/// The pool. Cloning is not needed: it lives in the transport's `Arc`.
pub(super) struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    idle_timeout: Duration,
    max_idle_per_origin: usize,
}

#[derive(Default)]
struct State {
    /// Per origin: idle connections (most recently used last) and waiting requests (oldest
    /// first). A short list searched in order: a process talks to one or two origins.
    origins: Vec<OriginState>,
    sweeping: bool,
}

/// Which idle list: scheme and authority (`host[:port]` as written).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Key<'a> {
    pub(super) https: bool,
    pub(super) authority: &'a str,
}

struct OriginState {
    https: bool,
    authority: Box<str>,
    idle: Vec<Conn>,
    waiters: VecDeque<oneshot::Sender<Conn>>,
}

impl State {
    fn find(&mut self, key: Key<'_>) -> Option<&mut OriginState> {
        self.origins.iter_mut().find(|o| o.is(key))
    }

    fn origin(&mut self, key: Key<'_>) -> &mut OriginState {
        let i = match self.origins.iter().position(|o| o.is(key)) {
            Some(i) => i,
            None => {
                self.origins.push(OriginState {
                    https: key.https,
                    authority: key.authority.into(),
                    idle: Vec::new(),
                    waiters: VecDeque::new(),
                });
                self.origins.len() - 1
            }
        };
        &mut self.origins[i]
    }
}

impl OriginState {
    fn is(&self, key: Key<'_>) -> bool {
        self.https == key.https && &*self.authority == key.authority
    }
}

impl Pool {
    pub(super) fn new(idle_timeout: Duration, max_idle_per_origin: usize) -> Pool {
        Pool {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                idle_timeout,
                max_idle_per_origin: max_idle_per_origin.max(1),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently used open connection to `key`, if any. Closed and expired ones met on
    /// the way are dropped (outside the lock).
    pub(super) fn checkout(&self, key: Key<'_>) -> Option<Conn> {
        let mut closed = Vec::new();
        let found = {
            let mut state = self.lock();
            let origin = state.find(key)?;
            loop {
                let Some(mut conn) = origin.idle.pop() else {
                    break None;
                };
                if conn.idle_since.elapsed() < self.shared.idle_timeout && conn.is_usable() {
                    break Some(conn);
                }
                closed.push(conn);
            }
        };
        drop(closed);
        found
    }

    /// A place in line for the next connection to `key` given back.
    pub(super) fn wait(&self, key: Key<'_>) -> oneshot::Receiver<Conn> {
        let (tx, rx) = oneshot::channel();
        let mut state = self.lock();
        // Waiters that gave up (their request connected first, or ended) leave no trace, nor do
        // origins with nothing in them.
        for origin in &mut state.origins {
            origin.waiters.retain(|w| !w.is_closed());
        }
        state
            .origins
            .retain(|o| !o.idle.is_empty() || !o.waiters.is_empty());
        state.origin(key).waiters.push_back(tx);
        rx
    }

    /// Gives `conn` to the oldest waiting request, or keeps it idle.
    pub(super) fn checkin(&self, key: Key<'_>, mut conn: Conn) {
        let mut evicted = None;
        let start_sweep = {
            let mut state = self.lock();
            let origin = state.origin(key);
            while let Some(waiter) = origin.waiters.pop_front() {
                match waiter.send(conn) {
                    Ok(()) => return,
                    Err(back) => conn = back,
                }
            }
            conn.idle_since = Instant::now();
            if origin.idle.len() >= self.shared.max_idle_per_origin {
                evicted = Some(origin.idle.remove(0));
            }
            origin.idle.push(conn);
            !std::mem::replace(&mut state.sweeping, true)
        };
        drop(evicted);
        if start_sweep {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(sweep(Arc::downgrade(&self.shared)));
                }
                Err(_) => self.lock().sweeping = false,
            }
        }
    }

    /// Idle connections over all origins.
    pub(super) fn idle_count(&self) -> usize {
        self.lock().origins.iter().map(|o| o.idle.len()).sum()
    }
}

/// Closes connections idle for longer than the timeout, until the pool has none or is dropped.
/// The task holds only a `Weak`, so the pool's owner owns it: dropping the transport ends it.
async fn sweep(shared: Weak<Shared>) {
    let period = match shared.upgrade() {
        Some(s) => (s.idle_timeout / 2).max(Duration::from_millis(100)),
        None => return,
    };
    loop {
        tokio::time::sleep(period).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let mut expired = Vec::new();
        let done = {
            let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
            for origin in &mut state.origins {
                let (keep, old): (Vec<Conn>, Vec<Conn>) = std::mem::take(&mut origin.idle)
                    .into_iter()
                    .partition(|c| c.idle_since.elapsed() < shared.idle_timeout);
                origin.idle = keep;
                expired.extend(old);
            }
            state
                .origins
                .retain(|o| !o.idle.is_empty() || !o.waiters.is_empty());
            let done = state.origins.iter().all(|o| o.idle.is_empty());
            if done {
                state.sweeping = false;
            }
            done
        };
        drop(expired);
        if done {
            return;
        }
    }
}
