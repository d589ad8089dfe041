//! The file source's acknowledgement handle, the state it shares with the source, and the task
//! that persists the checkpoint.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{AckTracker, Checkpoint, CheckpointError, Mark};
use crate::source::{AckError, Acknowledge};

/// State shared by the source, every handle and the checkpoint writer.
pub(crate) struct Shared {
    files: Mutex<Vec<Tracked>>,
    /// Acks since the last persist started (triggers a persist at `every`).
    acks_since_persist: AtomicU64,
    every: u64,
    /// Set while `next` waits for the checkpoint to catch up: then every ack wakes the writer.
    pub(crate) window_waiting: AtomicBool,
    pub(crate) wake: Notify,
    /// Bytes of input read in this run (for progress).
    pub(crate) bytes_read: AtomicU64,
    /// Bytes of a line read in part at the end of a followed file (its writer has not ended
    /// it yet): in the file, but not a line the source could give.
    pub(crate) partial_line: AtomicU64,
}

struct Tracked {
    origin: Arc<str>,
    tracker: AckTracker,
}

impl Shared {
    pub(crate) fn new(every: u64) -> Self {
        Shared {
            files: Mutex::new(Vec::new()),
            acks_since_persist: AtomicU64::new(0),
            every: every.max(1),
            window_waiting: AtomicBool::new(false),
            wake: Notify::new(),
            bytes_read: AtomicU64::new(0),
            partial_line: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Tracked>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers an input; returns its index.
    pub(crate) fn add(&self, origin: Arc<str>, start: Mark) -> usize {
        let mut files = self.lock();
        files.push(Tracked {
            origin,
            tracker: AckTracker::new(start),
        });
        files.len() - 1
    }

    /// Marks a record settled without a handle (a blank line).
    pub(crate) fn settle(&self, file: usize, start: u64, end: Mark) {
        if let Some(t) = self.lock().get_mut(file) {
            t.tracker.ack(start, end);
        }
    }

    /// Copies every input's committed mark into `cp`; returns whether anything changed and the
    /// total of committed lines.
    pub(crate) fn snapshot_into(&self, cp: &mut Checkpoint) -> (bool, u64) {
        let files = self.lock();
        let mut changed = false;
        let mut lines = 0;
        for t in files.iter() {
            let mark = t.tracker.committed();
            lines += mark.line;
            let before = cp.get(&t.origin).map(|f| (f.offset, f.line));
            if before != Some((mark.offset, mark.line)) {
                cp.set(&t.origin, mark);
                changed = true;
            }
        }
        (changed, lines)
    }

    /// Total committed lines of every input.
    pub(crate) fn committed_lines(&self) -> u64 {
        self.lock().iter().map(|t| t.tracker.committed().line).sum()
    }
}

/// The acknowledgement handle of a [`super::FileSource`] line. An ack marks the line's bytes
/// settled; the checkpoint moves over them once every earlier line is settled too. A nack (or a
/// drop) leaves the line unsettled: the checkpoint stays before it, so it is read again after a
/// restart.
pub struct FileAck {
    pub(crate) shared: Arc<Shared>,
    pub(crate) file: usize,
    pub(crate) start: u64,
    pub(crate) end: Mark,
}

impl std::fmt::Debug for FileAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileAck")
            .field("file", &self.file)
            .field("start", &self.start)
            .field("end", &self.end)
            .finish()
    }
}

impl Acknowledge for FileAck {
    fn ack(self) -> impl std::future::Future<Output = Result<(), AckError>> + Send {
        std::future::ready(self.ack_now().unwrap_or(Ok(())))
    }

    fn ack_now(self) -> Result<Result<(), AckError>, Self> {
        self.shared.settle(self.file, self.start, self.end);
        let n = self
            .shared
            .acks_since_persist
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        if n >= self.shared.every || self.shared.window_waiting.load(Ordering::Acquire) {
            self.shared.wake.notify_one();
        }
        Ok(Ok(()))
    }

    fn nack(self) -> impl std::future::Future<Output = Result<(), AckError>> + Send {
        std::future::ready(Ok(()))
    }
}

/// What the writer reports to the reading side: committed lines on disk, and the last write's
/// failure, if the last write failed.
#[derive(Clone, Debug, Default)]
pub(crate) struct Persisted {
    pub(crate) lines: u64,
    pub(crate) error: Option<String>,
}

/// The checkpoint writer: persists every `every` acks (woken through `Shared::wake`), every
/// `interval`, when `next` waits for the window, and a last time when cancelled.
pub(crate) struct Writer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) path: PathBuf,
    pub(crate) checkpoint: Checkpoint,
    pub(crate) interval: Duration,
    pub(crate) persisted: watch::Sender<Persisted>,
}

impl Writer {
    pub(crate) async fn run(mut self, cancel: CancellationToken) -> Result<(), CheckpointError> {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            let last = tokio::select! {
                _ = cancel.cancelled() => true,
                _ = self.shared.wake.notified() => false,
                _ = tick.tick() => false,
            };
            let result = self.persist().await;
            if last {
                return result;
            }
            if let Err(e) = result {
                // Keep going: the next attempt may succeed. A reader waiting for the window
                // sees the failure and stops; `close` reports one that lasts.
                tracing::warn!(error = %e, "checkpoint not written");
                let reason = e.to_string();
                self.persisted.send_modify(|p| p.error = Some(reason));
            }
        }
    }

    async fn persist(&mut self) -> Result<(), CheckpointError> {
        // Acks from here on count toward the next persist.
        self.shared.acks_since_persist.store(0, Ordering::Relaxed);
        // Into a copy: a failed write leaves `self.checkpoint` as on disk, so the next attempt
        // sees the change again.
        let mut next = self.checkpoint.clone();
        let (changed, lines) = self.shared.snapshot_into(&mut next);
        if !changed {
            return Ok(());
        }
        let cp = next.clone();
        let path = self.path.clone();
        let stored = tokio::task::spawn_blocking(move || cp.store(&path)).await;
        match stored {
            Ok(Ok(())) => {
                self.checkpoint = next;
                self.persisted
                    .send_replace(Persisted { lines, error: None });
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(join) => Err(CheckpointError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(join.to_string()),
            }),
        }
    }
}
