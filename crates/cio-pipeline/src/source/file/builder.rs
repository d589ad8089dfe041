//! [`FileSourceBuilder`]: the file source's settings, and opening it (inputs, checkpoint, writer).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::ack::{Persisted, Shared, Writer};
use super::{checkpoint_error, FileSource, OpenInput, WriterTask};
use crate::checkpoint::{Checkpoint, Mark};
use crate::source::SourceError;

/// Configures a [`FileSource`]; [`FileSource::builder`].
#[derive(Clone, Debug)]
pub struct FileSourceBuilder {
    inputs: Vec<Input>,
    follow: bool,
    poll_interval: Duration,
    checkpoint: Option<PathBuf>,
    checkpoint_every: u64,
    checkpoint_interval: Duration,
    max_unpersisted: u64,
    max_line_bytes: usize,
}

#[derive(Clone, Debug)]
enum Input {
    Path(PathBuf),
    Stdin,
}

impl FileSourceBuilder {
    pub(super) fn new() -> Self {
        FileSourceBuilder {
            inputs: Vec::new(),
            follow: false,
            poll_interval: Duration::from_millis(200),
            checkpoint: None,
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(1),
            max_unpersisted: 10_000,
            max_line_bytes: 1 << 20,
        }
    }

    /// Reads this file (after the ones added before).
    pub fn path(mut self, path: impl Into<PathBuf>) -> Self {
        self.inputs.push(Input::Path(path.into()));
        self
    }

    /// Reads these files, in order.
    pub fn paths<I: IntoIterator<Item = P>, P: Into<PathBuf>>(mut self, paths: I) -> Self {
        self.inputs
            .extend(paths.into_iter().map(|p| Input::Path(p.into())));
        self
    }

    /// Reads standard input (after the inputs added before). Cannot be combined with a
    /// checkpoint.
    pub fn stdin(mut self) -> Self {
        self.inputs.push(Input::Stdin);
        self
    }

    /// Keeps reading the last file as it grows, until cancelled (default: off).
    pub fn follow(mut self, follow: bool) -> Self {
        self.follow = follow;
        self
    }

    /// How often a followed file is checked for more lines (default 200 ms).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    /// Persists the first unacknowledged offset of each file here, and resumes from it.
    pub fn checkpoint(mut self, path: impl Into<PathBuf>) -> Self {
        self.checkpoint = Some(path.into());
        self
    }

    /// Writes the checkpoint after this many acks (default 1000; at least 1).
    pub fn checkpoint_every(mut self, acks: u64) -> Self {
        self.checkpoint_every = acks.max(1);
        self
    }

    /// Writes the checkpoint at least this often while acks arrive (default 1 s).
    pub fn checkpoint_interval(mut self, every: Duration) -> Self {
        self.checkpoint_interval = every.max(Duration::from_millis(1));
        self
    }

    /// Reads at most this many lines past the checkpoint on disk (default 10,000; at least 1):
    /// after a crash, at most this many lines are read again. Applies only with a checkpoint.
    pub fn max_unpersisted(mut self, lines: u64) -> Self {
        self.max_unpersisted = lines.max(1);
        self
    }

    /// Longest line kept whole (default 1 MiB); longer ones are cut and marked oversize.
    pub fn max_line_bytes(mut self, bytes: usize) -> Self {
        self.max_line_bytes = bytes.max(1);
        self
    }

    /// Opens the inputs and the checkpoint, and starts the checkpoint writer.
    pub async fn open(self) -> Result<FileSource, SourceError> {
        if self.inputs.is_empty() {
            return Err(SourceError::Config("no input: give a file or stdin".into()));
        }
        if self.checkpoint.is_some() && self.inputs.iter().any(|i| matches!(i, Input::Stdin)) {
            return Err(SourceError::Config(
                "standard input cannot be resumed from a checkpoint (it cannot seek): read a file, or drop the checkpoint".into(),
            ));
        }
        let mut origins: Vec<(Arc<str>, Option<PathBuf>)> = Vec::with_capacity(self.inputs.len());
        for input in &self.inputs {
            match input {
                Input::Stdin => {
                    if origins.iter().any(|(_, p)| p.is_none()) {
                        return Err(SourceError::Config("stdin given twice".into()));
                    }
                    origins.push((crate::source::unique_origin("-"), None));
                }
                Input::Path(p) => {
                    let canonical = tokio::fs::canonicalize(p)
                        .await
                        .map_err(|e| SourceError::io(p.display().to_string(), e))?;
                    let origin: Arc<str> = Arc::from(canonical.to_string_lossy().as_ref());
                    if origins.iter().any(|(o, _)| *o == origin) {
                        return Err(SourceError::Config(format!(
                            "{} is given twice",
                            canonical.display()
                        )));
                    }
                    origins.push((origin, Some(canonical)));
                }
            }
        }

        let loaded = match &self.checkpoint {
            Some(path) => {
                let path = path.clone();
                let loaded = tokio::task::spawn_blocking(move || Checkpoint::load(&path))
                    .await
                    .map_err(|e| SourceError::Config(format!("checkpoint loader failed: {e}")))?;
                Some(loaded.map_err(|e| checkpoint_error(self.checkpoint.as_deref(), e))?)
            }
            None => None,
        };
        let checkpoint = loaded.flatten().unwrap_or_else(Checkpoint::new);

        let shared = Arc::new(Shared::new(self.checkpoint_every));
        let mut inputs = Vec::with_capacity(origins.len());
        for (origin, path) in origins {
            let start = checkpoint
                .get(&origin)
                .map(|f| Mark {
                    offset: f.offset,
                    line: f.line,
                })
                .unwrap_or_default();
            let index = shared.add(origin.clone(), start);
            inputs.push(OpenInput {
                origin,
                path,
                index,
                start,
            });
        }
        let committed = shared.committed_lines();

        let (persisted, writer) = match &self.checkpoint {
            Some(path) => {
                let (tx, rx) = watch::channel(Persisted {
                    lines: committed,
                    error: None,
                });
                let cancel = CancellationToken::new();
                let writer = Writer {
                    shared: shared.clone(),
                    path: path.clone(),
                    checkpoint,
                    interval: self.checkpoint_interval,
                    persisted: tx,
                };
                let task = tokio::spawn(writer.run(cancel.clone()));
                (
                    Some(rx),
                    Some(WriterTask {
                        cancel,
                        task: Some(task),
                        path: path.clone(),
                    }),
                )
            }
            None => (None, None),
        };

        Ok(FileSource {
            inputs,
            current: 0,
            reader: None,
            pos: 0,
            line: 0,
            buf: bytes::BytesMut::new(),
            consumed: 0,
            follow: self.follow,
            poll_interval: self.poll_interval,
            max_line: self.max_line_bytes,
            shared,
            persisted,
            window: self.max_unpersisted,
            read_total: committed,
            writer,
        })
    }
}
