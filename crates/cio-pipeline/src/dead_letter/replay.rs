//! [`Replay`]: a dead-letter file fed back as a source.

use crate::source::{Message, Source, SourceError};

use super::DeadLetter;

/// Wraps a source of dead-letter records (usually a [`FileSource`](crate::source::FileSource)
/// over a [`JsonLinesFile`](super::JsonLinesFile)'s output) and yields the *original* messages:
/// the original payload and the original position, with the wrapped source's acknowledgement
/// handle (so the replay file's own checkpoint moves as replayed letters settle).
///
/// Because the position is the original one, an event without an `id` gets the same
/// deterministic id it had on its first attempt, so a letter that was in fact accepted before
/// failing (a timeout after Customer.io took it) is de-duplicated on replay, not duplicated.
///
/// A line that is not a dead-letter record passes through unchanged; it then fails to decode and
/// is dead-lettered again with the replay file's position.
///
/// ```no_run
/// use cio_pipeline::dead_letter::Replay;
/// use cio_pipeline::source::FileSource;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let source = Replay::new(FileSource::builder().path("dead-letters.jsonl").open().await?);
/// // ... a Processor over `source`, writing to a new dead-letter file ...
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Replay<S> {
    inner: S,
}

impl<S> Replay<S> {
    /// Replays the records `inner` yields.
    pub fn new(inner: S) -> Self {
        Replay { inner }
    }

    /// The wrapped source.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Source> Source for Replay<S> {
    type Ack = S::Ack;

    async fn next(&mut self) -> Result<Option<Message<S::Ack>>, SourceError> {
        let Some(message) = self.inner.next().await? else {
            return Ok(None);
        };
        if message.oversize.is_some() {
            return Ok(Some(message));
        }
        Ok(Some(match DeadLetter::from_json(&message.payload) {
            Ok(letter) => Message {
                payload: letter.payload,
                position: letter.position,
                oversize: None,
                ack: message.ack,
            },
            Err(reason) => {
                tracing::warn!(position = %message.position, %reason, "not a dead-letter record; passed on as is");
                message
            }
        }))
    }

    async fn close(&mut self) -> Result<(), SourceError> {
        self.inner.close().await
    }
}
