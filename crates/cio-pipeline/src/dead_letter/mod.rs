//! Dead letters: inputs that cannot be delivered, kept with the reason, so nothing is dropped.
//!
//! A [`DeadLetter`] holds the original payload, where it was ([`Position`]), at which stage it
//! failed ([`Stage`]), why, and when. The processor writes one when a payload does not decode or
//! when the service fails it for good (a permanent error, or retries exhausted), and only then
//! acknowledges the message: a sink must have kept the letter durably when
//! [`DeadLetterSink::send`] returns `Ok`.
//!
//! [`JsonLinesFile`] appends one JSON object per line:
//!
//! ```json
//! {"time":"2026-05-01T09:30:00.123Z","stage":"decode","reason":"invalid JSON: EOF while parsing an object at line 1 column 9","position":{"kind":"line","origin":"/data/events.jsonl","line":7,"offset":2210},"payload":"{\"type\":"}
//! ```
//!
//! A payload that is not UTF-8 is kept as `payload_base64` instead of `payload`.
//!
//! **Replay.** Feed the file back through a [`FileSource`](crate::source::FileSource) wrapped in
//! [`Replay`]: each message then carries the *original* payload and position, so an event
//! without an `id` gets the same deterministic id as on its first attempt (see
//! [`crate::cio`]), and a failure is dead-lettered again with its original position.

mod file;
mod replay;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::source::Position;

pub use file::JsonLinesFile;
pub use replay::{Replay, ReplayCounts, ReplayFilter, Skip};

/// Where an input failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The payload could not become an item (bad JSON, an invalid entry, too long a line).
    Decode,
    /// The service failed the item for good (a permanent error, or retries exhausted).
    Deliver,
}

/// One input that could not be delivered.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    /// The original payload, byte for byte.
    pub payload: Bytes,
    /// Where it was in its input.
    pub position: Position,
    /// Where it failed.
    pub stage: Stage,
    /// Why.
    pub reason: String,
    /// For delivery failures judged by a classifier: whether the last error was retryable (so
    /// retries ran out) or permanent.
    pub retryable: Option<bool>,
    /// When it was dead-lettered.
    pub time: SystemTime,
}

/// The on-disk form of a [`DeadLetter`].
#[derive(Serialize, Deserialize)]
struct Record {
    time: String,
    stage: Stage,
    reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retryable: Option<bool>,
    position: Position,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
}

impl DeadLetter {
    /// The JSON-lines record, newline included.
    pub fn to_json_line(&self) -> Vec<u8> {
        let (payload, payload_base64) = match std::str::from_utf8(&self.payload) {
            Ok(s) => (Some(s.to_owned()), None),
            Err(_) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(&self.payload)),
            ),
        };
        let record = Record {
            time: humantime::format_rfc3339_millis(self.time).to_string(),
            stage: self.stage,
            reason: self.reason.clone(),
            retryable: self.retryable,
            position: self.position.clone(),
            payload,
            payload_base64,
        };
        // A struct of strings, numbers and an enum always serializes.
        let mut line = serde_json::to_vec(&record).unwrap_or_default();
        line.push(b'\n');
        line
    }

    /// Parses one record written by [`DeadLetter::to_json_line`].
    pub fn from_json(line: &[u8]) -> Result<DeadLetter, String> {
        let r: Record = serde_json::from_slice(line).map_err(|e| e.to_string())?;
        let payload = match (r.payload, r.payload_base64) {
            (Some(p), None) => Bytes::from(p),
            (None, Some(b)) => Bytes::from(
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|e| format!("payload_base64: {e}"))?,
            ),
            _ => return Err("expected exactly one of payload and payload_base64".into()),
        };
        let time = humantime::parse_rfc3339(&r.time).map_err(|e| format!("time: {e}"))?;
        Ok(DeadLetter {
            payload,
            position: r.position,
            stage: r.stage,
            reason: r.reason,
            retryable: r.retryable,
            time,
        })
    }
}

/// Why a dead letter could not be kept. The processor then leaves the message unacknowledged
/// (it will be redelivered) and stops: it cannot promise to keep what fails next.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// Writing failed.
    #[error("cannot write dead letters to {path}: {reason}")]
    Write {
        /// Where.
        path: String,
        /// What the OS said.
        reason: String,
    },
    /// The sink was closed.
    #[error("the dead-letter sink is closed")]
    Closed,
}

/// Keeps dead letters. `send` returns `Ok` only once the letter is kept durably: the message is
/// acknowledged right after.
pub trait DeadLetterSink: Send + Sync + 'static {
    /// Keeps one letter.
    fn send(&self, letter: DeadLetter) -> impl Future<Output = Result<(), DeadLetterError>> + Send;

    /// Flushes and closes. Called once by the processor, after every message is settled. The
    /// default does nothing.
    fn close(&self) -> impl Future<Output = Result<(), DeadLetterError>> + Send {
        async { Ok(()) }
    }
}

impl<T: DeadLetterSink> DeadLetterSink for Arc<T> {
    fn send(&self, letter: DeadLetter) -> impl Future<Output = Result<(), DeadLetterError>> + Send {
        (**self).send(letter)
    }

    fn close(&self) -> impl Future<Output = Result<(), DeadLetterError>> + Send {
        (**self).close()
    }
}

/// Dead letters kept in memory, for tests. Clones share the list.
#[derive(Clone, Debug, Default)]
pub struct InMemory {
    letters: Arc<Mutex<Vec<DeadLetter>>>,
}

impl InMemory {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// The letters so far, in the order they were sent.
    pub fn letters(&self) -> Vec<DeadLetter> {
        self.letters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl DeadLetterSink for InMemory {
    async fn send(&self, letter: DeadLetter) -> Result<(), DeadLetterError> {
        self.letters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(letter);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn records_round_trip_text_and_binary_payloads() {
        let time = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        for payload in [&b"{\"bad\":"[..], &b"\xff\xfe not utf-8"[..]] {
            let letter = DeadLetter {
                payload: Bytes::copy_from_slice(payload),
                position: Position::Line {
                    origin: "/data/in.jsonl".into(),
                    line: 7,
                    offset: 2210,
                },
                stage: Stage::Decode,
                reason: "invalid JSON".into(),
                retryable: None,
                time,
            };
            let line = letter.to_json_line();
            assert_eq!(line.last(), Some(&b'\n'));
            assert_eq!(DeadLetter::from_json(&line).unwrap(), letter);
            let text = String::from_utf8(line).unwrap();
            assert!(
                text.contains(r#""time":"2023-11-14T22:13:20.123Z""#),
                "{text}"
            );
            assert!(text.contains(r#""line":7"#), "{text}");
        }
    }
}
