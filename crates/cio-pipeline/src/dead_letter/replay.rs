//! [`Replay`]: a dead-letter file fed back as a source, optionally filtered.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::SystemTime;

use crate::source::{Acknowledge, Message, Source, SourceError};

use super::{DeadLetter, Stage};

/// Wraps a source of dead-letter records (usually a [`FileSource`](crate::source::FileSource)
/// over a [`JsonLinesFile`](super::JsonLinesFile)'s output) and yields the *original* messages:
/// the original payload and the original position, with the wrapped source's acknowledgement
/// handle (so the replay file's own checkpoint moves as replayed letters settle).
///
/// Because the position is the original one, an event without an `id` gets the same
/// deterministic id it had on its first attempt, so a letter that was in fact accepted before
/// failing (a timeout after Customer.io took it) is de-duplicated on replay, not duplicated.
///
/// A [`ReplayFilter`] keeps only some letters (a stage, retryable failures, recent ones). A
/// letter it leaves out is acknowledged at once (it stays in the file it came from, untouched)
/// and counted in [`ReplayCounts`].
///
/// A line that is not a dead-letter record passes through unchanged; it then fails to decode and
/// is dead-lettered again with the replay file's position.
///
/// ```no_run
/// use cio_pipeline::dead_letter::{Replay, ReplayFilter, Stage};
/// use cio_pipeline::source::FileSource;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let filter = ReplayFilter { stage: Some(Stage::Deliver), retryable_only: true, since: None };
/// let source = Replay::new(FileSource::builder().path("dead-letters.jsonl").open().await?)
///     .with_filter(filter);
/// let counts = source.counts();
/// // ... a Processor over `source`, writing to a new dead-letter file ...
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Replay<S> {
    inner: S,
    filter: ReplayFilter,
    counts: ReplayCounts,
}

/// Which dead letters a [`Replay`] yields. The default yields every one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayFilter {
    /// Only letters of this stage.
    pub stage: Option<Stage>,
    /// Only delivery failures whose last error was retryable (retries ran out, or
    /// `--give-up-after` passed): not permanent refusals, not decode failures.
    pub retryable_only: bool,
    /// Only letters written at or after this time.
    pub since: Option<SystemTime>,
}

/// Why a [`ReplayFilter`] left a letter out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Another stage than the one asked for.
    Stage,
    /// Not a retryable delivery failure.
    NotRetryable,
    /// Written before `since`.
    Older,
}

impl ReplayFilter {
    /// `None` when `letter` is to be replayed, else why not.
    pub fn skip(&self, letter: &DeadLetter) -> Option<Skip> {
        if self.stage.is_some_and(|s| s != letter.stage) {
            return Some(Skip::Stage);
        }
        if self.retryable_only
            && !(letter.stage == Stage::Deliver && letter.retryable == Some(true))
        {
            return Some(Skip::NotRetryable);
        }
        if self.since.is_some_and(|since| letter.time < since) {
            return Some(Skip::Older);
        }
        None
    }
}

/// What a [`Replay`] has read so far; clones share the counts, so they can be read while the
/// processor owns the source.
#[derive(Clone, Debug, Default)]
pub struct ReplayCounts(Arc<Counts>);

#[derive(Debug, Default)]
struct Counts {
    replayed: AtomicU64,
    skipped_stage: AtomicU64,
    skipped_not_retryable: AtomicU64,
    skipped_older: AtomicU64,
    not_records: AtomicU64,
}

impl ReplayCounts {
    /// Letters yielded to be sent again.
    pub fn replayed(&self) -> u64 {
        self.0.replayed.load(Relaxed)
    }

    /// Letters left out, and why.
    pub fn skipped(&self, why: Skip) -> u64 {
        self.counter(why).load(Relaxed)
    }

    fn counter(&self, why: Skip) -> &AtomicU64 {
        match why {
            Skip::Stage => &self.0.skipped_stage,
            Skip::NotRetryable => &self.0.skipped_not_retryable,
            Skip::Older => &self.0.skipped_older,
        }
    }

    /// Letters left out for any reason.
    pub fn skipped_total(&self) -> u64 {
        [Skip::Stage, Skip::NotRetryable, Skip::Older]
            .into_iter()
            .map(|s| self.skipped(s))
            .sum()
    }

    /// Lines that were not dead-letter records (passed on as they are).
    pub fn not_records(&self) -> u64 {
        self.0.not_records.load(Relaxed)
    }

    fn skip(&self, why: Skip) {
        self.counter(why).fetch_add(1, Relaxed);
    }
}

impl<S> Replay<S> {
    /// Replays every record `inner` yields.
    pub fn new(inner: S) -> Self {
        Replay {
            inner,
            filter: ReplayFilter::default(),
            counts: ReplayCounts::default(),
        }
    }

    /// Replays only the letters `filter` keeps.
    pub fn with_filter(mut self, filter: ReplayFilter) -> Self {
        self.filter = filter;
        self
    }

    /// The counts of what was replayed and left out, shared with this source.
    pub fn counts(&self) -> ReplayCounts {
        self.counts.clone()
    }

    /// The wrapped source.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Source> Source for Replay<S> {
    type Ack = S::Ack;

    async fn next(&mut self) -> Result<Option<Message<S::Ack>>, SourceError> {
        loop {
            let Some(message) = self.inner.next().await? else {
                return Ok(None);
            };
            if message.oversize.is_some() {
                self.counts.0.not_records.fetch_add(1, Relaxed);
                return Ok(Some(message));
            }
            match DeadLetter::from_json(&message.payload) {
                Ok(letter) => {
                    if let Some(why) = self.filter.skip(&letter) {
                        self.counts.skip(why);
                        // Left where it is: its outcome here is final.
                        if let Err(e) = message.ack.ack().await {
                            tracing::warn!(position = %message.position, error = %e, "cannot acknowledge a skipped dead letter");
                        }
                        continue;
                    }
                    self.counts.0.replayed.fetch_add(1, Relaxed);
                    return Ok(Some(Message {
                        payload: letter.payload,
                        position: letter.position,
                        oversize: None,
                        ack: message.ack,
                    }));
                }
                Err(reason) => {
                    self.counts.0.not_records.fetch_add(1, Relaxed);
                    tracing::warn!(position = %message.position, %reason, "not a dead-letter record; passed on as is");
                    return Ok(Some(message));
                }
            }
        }
    }

    async fn close(&mut self) -> Result<(), SourceError> {
        self.inner.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{MemorySource, Position};
    use bytes::Bytes;
    use std::time::Duration;

    fn letter(stage: Stage, retryable: Option<bool>, age_s: u64, n: u64) -> Vec<u8> {
        DeadLetter {
            payload: Bytes::from(format!("payload {n}")),
            position: Position::Sequence {
                origin: "orig".into(),
                index: n,
            },
            stage,
            reason: "why".into(),
            retryable,
            time: SystemTime::now() - Duration::from_secs(age_s),
        }
        .to_json_line()
    }

    #[tokio::test]
    async fn the_filter_keeps_what_is_asked_acks_the_rest_and_counts_both() {
        let lines = [
            letter(Stage::Decode, None, 10, 0),
            letter(Stage::Deliver, Some(true), 10, 1),
            letter(Stage::Deliver, Some(false), 10, 2),
            letter(Stage::Deliver, Some(true), 7200, 3),
            b"not a record".to_vec(),
        ];
        let strip = |v: Vec<u8>| v.strip_suffix(b"\n").unwrap_or(&v).to_vec();
        let cases = [
            (ReplayFilter::default(), vec![0, 1, 2, 3]),
            (
                ReplayFilter {
                    stage: Some(Stage::Deliver),
                    ..Default::default()
                },
                vec![1, 2, 3],
            ),
            (
                ReplayFilter {
                    retryable_only: true,
                    ..Default::default()
                },
                vec![1, 3],
            ),
            (
                ReplayFilter {
                    retryable_only: true,
                    since: Some(SystemTime::now() - Duration::from_secs(3600)),
                    ..Default::default()
                },
                vec![1],
            ),
        ];
        for (filter, expected) in cases {
            let payloads: Vec<Vec<u8>> = lines.iter().cloned().map(strip).collect();
            let source = MemorySource::new(payloads);
            let log = source.ack_log();
            let mut replay = Replay::new(source).with_filter(filter.clone());
            let counts = replay.counts();
            let mut got = Vec::new();
            let mut passed_on = 0;
            while let Some(m) = replay.next().await.unwrap() {
                match m.position {
                    Position::Sequence { ref origin, index } if &**origin == "orig" => {
                        assert_eq!(m.payload, Bytes::from(format!("payload {index}")));
                        got.push(index)
                    }
                    _ => passed_on += 1,
                }
                m.ack.nack().await.unwrap();
            }
            assert_eq!(got, expected, "{filter:?}");
            assert_eq!(passed_on, 1, "the line that is no record passes on");
            assert_eq!(counts.replayed(), expected.len() as u64);
            assert_eq!(counts.not_records(), 1);
            assert_eq!(counts.skipped_total(), 4 - expected.len() as u64);
            // What was skipped was acknowledged; what was yielded was left to its caller.
            assert_eq!(
                log.acked().len() as u64,
                counts.skipped_total(),
                "{filter:?}"
            );
        }
    }
}
