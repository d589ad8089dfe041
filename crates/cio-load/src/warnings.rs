//! Warnings of a run, and the reason it stopped early.

use std::sync::{Arc, Mutex, PoisonError};

use tokio_util::sync::CancellationToken;

/// Warnings of a run: logged when they happen (`tracing` at WARN) and listed in the report.
/// Shared behind an `Arc` by the executors; the lock is never held across an `.await`.
#[derive(Clone, Default)]
pub(crate) struct Warnings {
    list: Arc<Mutex<Vec<String>>>,
    abort_reason: Arc<Mutex<Option<String>>>,
}

impl Warnings {
    pub fn push(&self, message: String) {
        let mut list = self.list.lock().unwrap_or_else(PoisonError::into_inner);
        if !list.contains(&message) {
            tracing::warn!("{message}");
            list.push(message);
        }
    }

    /// Stops the run with `reason` (the first reason wins).
    pub fn abort(&self, token: &CancellationToken, reason: &str) {
        let mut r = self
            .abort_reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if r.is_none() {
            tracing::warn!("stopping the test: {reason}");
            *r = Some(reason.to_owned());
        }
        drop(r);
        token.cancel();
    }

    pub fn list(&self) -> Vec<String> {
        self.list
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn abort_reason(&self) -> Option<String> {
        self.abort_reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
