//! [`Report`]: what a run did, with the counts that prove nothing was dropped.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

/// What a [`Processor`](super::Processor) run did. Serializes to JSON for logs and CI.
///
/// Every message read ends in exactly one of three counts, so
/// `read == delivered + dead_lettered + unacknowledged` ([`Report::is_balanced`]):
/// - `delivered`: the service succeeded, and the message was acknowledged;
/// - `dead_lettered`: kept in the dead-letter sink with its reason, then acknowledged;
/// - `unacknowledged`: abandoned at shutdown (or after a dead-letter failure) and nacked, so
///   the source delivers it again (a file: after a restart, from its checkpoint).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Messages taken from the source.
    pub read: u64,
    /// Delivered and acknowledged.
    pub delivered: u64,
    /// Dead-lettered and acknowledged (`decode_failures + delivery_failures`).
    pub dead_lettered: u64,
    /// Of those, payloads that did not decode (or were over the source's size limit).
    pub decode_failures: u64,
    /// Of those, items the service failed for good.
    pub delivery_failures: u64,
    /// Left unacknowledged at the stop, for redelivery.
    pub unacknowledged: u64,
    /// Acks or nacks the source could not record (the message will come again; event ids make
    /// that harmless).
    pub ack_errors: u64,
    /// Transient source errors that were retried.
    pub source_errors: u64,
    /// Wall time of the run, in seconds.
    pub duration_seconds: f64,
    /// `delivered / duration_seconds`.
    pub events_per_second: f64,
    /// Why the run stopped.
    pub stop: StopReason,
    /// Failures while closing the source (the last checkpoint write) or the dead-letter sink.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub close_errors: Vec<String>,
}

/// Why a run stopped reading.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StopReason {
    /// The source ended.
    #[default]
    EndOfInput,
    /// The shutdown token was cancelled.
    Cancelled,
    /// The source failed with an error that retrying cannot fix.
    SourceFailed {
        /// The error.
        error: String,
    },
    /// The service failed in `poll_ready` (it cannot take more work).
    ServiceFailed {
        /// The error.
        error: String,
    },
    /// A dead letter could not be kept, so the processor stopped rather than lose the next one.
    DeadLetterFailed {
        /// The error.
        error: String,
    },
}

impl Report {
    /// Every message read is accounted for: delivered, dead-lettered or unacknowledged.
    pub fn is_balanced(&self) -> bool {
        self.read == self.delivered + self.dead_lettered + self.unacknowledged
    }

    /// The input ended, every message settled, and the source and sink closed cleanly.
    pub fn is_complete(&self) -> bool {
        self.stop == StopReason::EndOfInput
            && self.unacknowledged == 0
            && self.close_errors.is_empty()
    }

    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        // Numbers, strings and a tagged enum always serialize.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Live counts of a run, updated as each message is read and as it settles; read them from
/// another task while [`super::Processor::run`] runs. The final figures are in the [`Report`]
/// (a message abandoned at the drain deadline is counted there, not here).
#[derive(Debug, Default)]
pub struct Progress {
    read: AtomicU64,
    delivered: AtomicU64,
    dead_lettered: AtomicU64,
    unacknowledged: AtomicU64,
}

impl Progress {
    pub(super) fn read_one(&self) {
        self.read.fetch_add(1, Relaxed);
    }

    pub(super) fn settled(&self, s: &super::settle::Settled) {
        use super::settle::Settled;
        let counter = match s {
            Settled::Delivered { .. } => &self.delivered,
            Settled::DeadLettered { .. } => &self.dead_lettered,
            Settled::Unacknowledged { .. } => &self.unacknowledged,
        };
        counter.fetch_add(1, Relaxed);
    }

    /// Messages taken from the source so far.
    pub fn read(&self) -> u64 {
        self.read.load(Relaxed)
    }

    /// Delivered and acknowledged so far.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Relaxed)
    }

    /// Dead-lettered so far.
    pub fn dead_lettered(&self) -> u64 {
        self.dead_lettered.load(Relaxed)
    }

    /// Left unacknowledged so far (at shutdown).
    pub fn unacknowledged(&self) -> u64 {
        self.unacknowledged.load(Relaxed)
    }

    /// Messages read and not yet settled.
    pub fn in_flight(&self) -> u64 {
        self.read()
            .saturating_sub(self.delivered() + self.dead_lettered() + self.unacknowledged())
    }
}
