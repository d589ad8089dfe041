//! [`FileSource`]: JSON lines from files or stdin, with follow mode and checkpoints.
//!
//! # Reading
//!
//! Inputs are read one after the other, line by line (`\n`, with an optional `\r` before it).
//! Each non-blank line is one [`Message`] with [`Position::Line`] (canonical path, 1-based line
//! number, byte offset). Blank lines are skipped and count as settled. A line longer than
//! [`max_line_bytes`](FileSourceBuilder::max_line_bytes) is cut there and marked
//! [`Message::oversize`], so memory stays bounded whatever the input; the processor
//! dead-letters it. In follow mode the last input is never finished: at its end the source waits
//! for more ([`poll_interval`](FileSourceBuilder::poll_interval)), and an incomplete last line is
//! held until its newline arrives. A followed file that shrinks is an error
//! ([`SourceError::Truncated`]): it was truncated or rotated, and going on would skip or repeat
//! lines.
//!
//! # Checkpoint
//!
//! With [`checkpoint`](FileSourceBuilder::checkpoint), the first unacknowledged byte offset of
//! each file (and its line number) is persisted atomically (temporary file, fsync, rename,
//! directory fsync; see [`crate::checkpoint`]) every
//! [`checkpoint_every`](FileSourceBuilder::checkpoint_every) acks, every
//! [`checkpoint_interval`](FileSourceBuilder::checkpoint_interval), and on [`Source::close`].
//! Opening resumes from it: each file is read from its offset. Acks arrive in any order; the
//! checkpoint moves only over a contiguous acknowledged prefix ([`crate::checkpoint::AckTracker`]).
//!
//! **Window.** The source never reads more than
//! [`max_unpersisted`](FileSourceBuilder::max_unpersisted) lines past the checkpoint on disk:
//! when it would, `next` waits (and asks for a write). So a crash makes at most that many lines
//! be read again on restart — the bound the crash test checks. A line that is never acked (a
//! handle nacked or dropped mid-run) holds the checkpoint, so reading stops once the window is
//! full; and if the checkpoint cannot be written while the window is full, `next` fails rather
//! than read on past the bound.
//!
//! Standard input cannot be resumed (it cannot seek), so it refuses a checkpoint.
//!
//! ```no_run
//! use std::time::Duration;
//! use cio_pipeline::source::{Acknowledge, FileSource, Source};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut source = FileSource::builder()
//!     .path("events.jsonl")
//!     .checkpoint("events.checkpoint.json")
//!     .checkpoint_every(500)
//!     .checkpoint_interval(Duration::from_millis(250))
//!     .open()
//!     .await?;
//! while let Some(message) = source.next().await? {
//!     // ... deliver message.payload ...
//!     message.ack.ack().await?;
//! }
//! source.close().await?; // the last checkpoint write
//! # Ok(()) }
//! ```

mod ack;
mod builder;
mod line;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncBufRead, AsyncSeekExt, BufReader};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{Checkpoint, CheckpointError, Mark};
use crate::source::{Message, Position, Source, SourceError};

pub use ack::FileAck;
use ack::{Persisted, Shared};
pub use builder::FileSourceBuilder;

const READ_BUFFER: usize = 64 * 1024;
/// Bytes of line text allocated at a time. A block is freed when its last line is dropped:
/// lines settle about in the order read, so a few blocks are held; at worst (one slow line in
/// each) the blocks held are bounded by the messages in flight times this size.
const LINE_BLOCK: usize = 16 * 1024;

pub(super) fn checkpoint_error(path: Option<&Path>, e: CheckpointError) -> SourceError {
    SourceError::Checkpoint {
        path: path.map(|p| p.display().to_string()).unwrap_or_default(),
        reason: match e {
            CheckpointError::Io { source, .. } => source.to_string(),
            CheckpointError::Invalid { reason, .. } => {
                format!("not a valid checkpoint ({reason}); move it away to start over")
            }
        },
    }
}

struct OpenInput {
    origin: Arc<str>,
    path: Option<PathBuf>,
    index: usize,
    start: Mark,
}

struct WriterTask {
    cancel: CancellationToken,
    task: Option<JoinHandle<Result<(), CheckpointError>>>,
    path: PathBuf,
}

/// How far a [`FileSource`] has read, from [`FileSource::read_progress`].
#[derive(Clone)]
pub struct ReadProgress {
    shared: Arc<Shared>,
    to_read: Option<u64>,
    /// Each file input and where this run started in it; `None` when an input is stdin.
    files: Option<Vec<(PathBuf, u64)>>,
}

impl ReadProgress {
    /// Bytes read in this run.
    pub fn bytes_read(&self) -> u64 {
        self.shared.bytes_read.load(Ordering::Relaxed)
    }

    /// Bytes there were to read when the run started; `None` when an input is stdin (or a file
    /// grows, in follow mode, past it).
    pub fn bytes_to_read(&self) -> Option<u64> {
        self.to_read
    }

    /// Bytes of complete lines in the inputs now that the source has not read yet: what is
    /// waiting for it (0 when it has caught up with a followed file; a line its writer has
    /// not ended yet does not count). Reads the files' sizes; `None` when an input is stdin or
    /// a file cannot be read.
    pub fn bytes_unread(&self) -> Option<u64> {
        let mut total = 0u64;
        for (path, start) in self.files.as_ref()? {
            total += std::fs::metadata(path).ok()?.len().saturating_sub(*start);
        }
        Some(
            total
                .saturating_sub(self.bytes_read())
                .saturating_sub(self.shared.partial_line.load(Ordering::Relaxed)),
        )
    }
}

impl std::fmt::Debug for ReadProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadProgress")
            .field("bytes_read", &self.bytes_read())
            .field("bytes_to_read", &self.to_read)
            .finish()
    }
}

/// JSON lines (or any lines) from files or stdin, with follow mode and a checkpoint. See the
/// [module docs](self).
///
/// The checkpoint writer is a task this source owns: [`Source::close`] stops it after a last
/// write and reports whether that write succeeded. Dropping the source without `close` tells
/// the task to stop after a last write, without waiting for it.
pub struct FileSource {
    inputs: Vec<OpenInput>,
    current: usize,
    reader: Option<Box<dyn AsyncBufRead + Send + Unpin>>,
    /// Next byte to read in the current input, and lines before it.
    pos: u64,
    line: u64,
    /// The line being read (at most `max_line + 1` bytes kept) and the bytes it took so far.
    /// Lines are cut from one block of [`LINE_BLOCK`] bytes after another and handed out as
    /// views of it: no allocation per line, and a payload's clones (the dead letter's copy)
    /// only count references.
    buf: BytesMut,
    consumed: u64,
    follow: bool,
    poll_interval: Duration,
    max_line: usize,
    shared: Arc<Shared>,
    persisted: Option<watch::Receiver<Persisted>>,
    window: u64,
    read_total: u64,
    writer: Option<WriterTask>,
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource")
            .field(
                "inputs",
                &self.inputs.iter().map(|i| &i.origin).collect::<Vec<_>>(),
            )
            .field("current", &self.current)
            .field("pos", &self.pos)
            .field("line", &self.line)
            .finish()
    }
}

impl FileSource {
    /// A builder with the defaults: no input yet, no follow, no checkpoint.
    pub fn builder() -> FileSourceBuilder {
        FileSourceBuilder::new()
    }

    /// Where each input starts in this run (its checkpoint, or the beginning), by canonical
    /// path (`-@<unique>` for stdin).
    pub fn resumed_from(&self) -> Vec<(Arc<str>, Mark)> {
        self.inputs
            .iter()
            .map(|i| (i.origin.clone(), i.start))
            .collect()
    }

    /// A handle that tells how far reading has got, for a progress bar: bytes read in this
    /// run, and the bytes there were to read (the files' sizes past where this run started;
    /// unknown for stdin). It stays valid after the source moved into a processor.
    pub fn read_progress(&self) -> ReadProgress {
        let to_read = self
            .inputs
            .iter()
            .map(|i| {
                let size = i
                    .path
                    .as_ref()
                    .and_then(|p| std::fs::metadata(p).ok())?
                    .len();
                Some(size.saturating_sub(i.start.offset))
            })
            .sum();
        let files = self
            .inputs
            .iter()
            .map(|i| Some((i.path.clone()?, i.start.offset)))
            .collect();
        ReadProgress {
            shared: Arc::clone(&self.shared),
            to_read,
            files,
        }
    }

    /// The first unacknowledged position of each input now (what the next checkpoint write
    /// will hold).
    pub fn committed(&self) -> Checkpoint {
        let mut cp = Checkpoint::new();
        self.shared.snapshot_into(&mut cp);
        cp
    }

    /// Waits while more than `window` lines are read past the checkpoint on disk. Fails if the
    /// checkpoint cannot be written meanwhile: reading on would break the bound.
    async fn wait_for_window(&mut self) -> Result<(), SourceError> {
        let Some(persisted) = self.persisted.as_mut() else {
            return Ok(());
        };
        let (read_total, window) = (self.read_total, self.window);
        let full = |p: &Persisted| read_total.saturating_sub(p.lines) >= window;
        if !full(&persisted.borrow()) {
            return Ok(());
        }
        // Cleared however the wait ends, cancellation included.
        struct Waiting<'a>(&'a Shared);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.window_waiting.store(false, Ordering::Release);
            }
        }
        self.shared.window_waiting.store(true, Ordering::Release);
        let waiting = Waiting(&self.shared);
        self.shared.wake.notify_one();
        let waited = persisted
            .wait_for(|p| !full(p) || p.error.is_some())
            .await
            .map(|p| match &p.error {
                Some(e) if full(&p) => Err(e.clone()),
                _ => Ok(()),
            });
        drop(waiting);
        let path = || {
            self.writer
                .as_ref()
                .map(|w| w.path.display().to_string())
                .unwrap_or_default()
        };
        match waited {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(SourceError::Checkpoint {
                path: path(),
                reason: format!("cannot be written, and {window} lines are read past it: {reason}"),
            }),
            Err(_) => Err(SourceError::Checkpoint {
                path: path(),
                reason: "the checkpoint writer stopped".into(),
            }),
        }
    }

    async fn open_current(&mut self) -> Result<(), SourceError> {
        let input = &self.inputs[self.current];
        let reader: Box<dyn AsyncBufRead + Send + Unpin> = match &input.path {
            None => Box::new(BufReader::with_capacity(READ_BUFFER, tokio::io::stdin())),
            Some(path) => {
                let what = || path.display().to_string();
                let mut file = tokio::fs::File::open(path)
                    .await
                    .map_err(|e| SourceError::io(what(), e))?;
                let len = file
                    .metadata()
                    .await
                    .map_err(|e| SourceError::io(what(), e))?
                    .len();
                if len < input.start.offset {
                    return Err(SourceError::Truncated {
                        path: what(),
                        len,
                        offset: input.start.offset,
                    });
                }
                if input.start.offset > 0 {
                    file.seek(std::io::SeekFrom::Start(input.start.offset))
                        .await
                        .map_err(|e| SourceError::io(what(), e))?;
                }
                Box::new(BufReader::with_capacity(READ_BUFFER, file))
            }
        };
        self.reader = Some(reader);
        self.pos = input.start.offset;
        self.line = input.start.line;
        self.buf.clear();
        self.consumed = 0;
        Ok(())
    }

    /// Whether the current input is the followed one.
    fn following_current(&self) -> bool {
        self.follow
            && self.current + 1 == self.inputs.len()
            && self.inputs[self.current].path.is_some()
    }

    /// Turns the line in `buf` into a message, or `None` for a blank line.
    fn take_line(&mut self, newline: bool) -> Option<Message<FileAck>> {
        let input = &self.inputs[self.current];
        let start = self.pos;
        self.pos += self.consumed;
        self.shared
            .bytes_read
            .fetch_add(self.consumed, Ordering::Relaxed);
        self.line += 1;
        self.read_total += 1;
        let end = Mark {
            offset: self.pos,
            line: self.line,
        };
        let content_len = self.consumed - u64::from(newline);
        self.consumed = 0;
        self.shared.partial_line.store(0, Ordering::Relaxed);
        let oversize = (content_len > self.max_line as u64).then_some(content_len);
        if oversize.is_some() {
            self.buf.truncate(self.max_line);
        } else {
            for end in [b'\n', b'\r'] {
                if self.buf.last() == Some(&end) {
                    self.buf.truncate(self.buf.len() - 1);
                }
            }
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                self.buf.clear();
                self.shared.settle(input.index, start, end);
                return None;
            }
        }
        let payload = self.buf.split().freeze();
        // A new block once this one has no room for a typical line (a longer one grows it).
        if self.buf.capacity() < LINE_BLOCK / 16 {
            self.buf.reserve(LINE_BLOCK);
        }
        Some(Message {
            payload,
            position: Position::Line {
                origin: input.origin.clone(),
                line: self.line,
                offset: start,
            },
            oversize,
            ack: FileAck {
                shared: self.shared.clone(),
                file: input.index,
                start,
                end,
            },
        })
    }
}

/// A followed file that got shorter than what was read was truncated or replaced.
async fn check_not_truncated(path: Option<PathBuf>, read_to: u64) -> Result<(), SourceError> {
    let Some(path) = path else {
        return Ok(());
    };
    let len = tokio::fs::metadata(&path)
        .await
        .map_err(|e| SourceError::io(path.display().to_string(), e))?
        .len();
    if len < read_to {
        return Err(SourceError::Truncated {
            path: path.display().to_string(),
            len,
            offset: read_to,
        });
    }
    Ok(())
}

impl Source for FileSource {
    type Ack = FileAck;

    /// Cancel safe: a line read in part stays in the source and is completed by the next call.
    async fn next(&mut self) -> Result<Option<Message<FileAck>>, SourceError> {
        loop {
            self.wait_for_window().await?;
            if self.reader.is_none() {
                if self.current >= self.inputs.len() {
                    return Ok(None);
                }
                self.open_current().await?;
            }
            let following = self.following_current();
            let Some(reader) = self.reader.as_mut() else {
                continue;
            };
            let newline = line::read_line(reader, &mut self.buf, &mut self.consumed, self.max_line)
                .await
                .map_err(|e| SourceError::io(self.inputs[self.current].origin.to_string(), e))?;
            if newline {
                if let Some(m) = self.take_line(true) {
                    return Ok(Some(m));
                }
                continue;
            }
            // End of what the input holds now.
            if following {
                self.shared
                    .partial_line
                    .store(self.consumed, Ordering::Relaxed);
                let path = self.inputs[self.current].path.clone();
                check_not_truncated(path, self.pos + self.consumed).await?;
                tokio::time::sleep(self.poll_interval).await;
                continue;
            }
            if self.consumed > 0 {
                // A last line without a newline.
                if let Some(m) = self.take_line(false) {
                    return Ok(Some(m));
                }
            }
            self.reader = None;
            self.current += 1;
        }
    }

    /// Stops the checkpoint writer after a last write; an error if that write failed.
    async fn close(&mut self) -> Result<(), SourceError> {
        self.reader = None;
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        writer.cancel.cancel();
        let Some(task) = writer.task.take() else {
            return Ok(());
        };
        let path = writer.path.clone();
        match task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(checkpoint_error(Some(&path), e)),
            Err(e) => Err(SourceError::Checkpoint {
                path: path.display().to_string(),
                reason: format!("the checkpoint writer failed: {e}"),
            }),
        }
    }
}

impl Drop for FileSource {
    fn drop(&mut self) {
        if let Some(w) = &self.writer {
            w.cancel.cancel();
        }
    }
}

#[cfg(test)]
mod tests;
