//! [`JsonLinesFile`]: dead letters appended to a JSON-lines file, fsynced before `send` returns.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{DeadLetter, DeadLetterError, DeadLetterSink};

type Job = (Vec<u8>, oneshot::Sender<Result<(), String>>);

/// Appends dead letters to a JSON-lines file (see the [module docs](super) for the format).
///
/// `send` returns once the record is written and fsynced. Records are written by one blocking
/// thread that this sink owns; letters sent at the same time share one write and one fsync
/// (group commit), so a burst of failures costs one disk flush, not one each.
///
/// ```no_run
/// use cio_pipeline::dead_letter::JsonLinesFile;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sink = JsonLinesFile::create("dead-letters.jsonl").await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct JsonLinesFile {
    path: PathBuf,
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl JsonLinesFile {
    /// Opens `path` for appending (creating it if needed) and starts the writer.
    pub async fn create(path: impl AsRef<Path>) -> Result<Self, DeadLetterError> {
        let path = path.as_ref().to_owned();
        let open_path = path.clone();
        let file = tokio::task::spawn_blocking(move || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&open_path)
        })
        .await
        .map_err(|e| write_error(&path, e.to_string()))?
        .map_err(|e| write_error(&path, e.to_string()))?;
        let (tx, rx) = mpsc::channel(1024);
        let task = tokio::task::spawn_blocking(move || write_loop(file, rx));
        Ok(JsonLinesFile {
            path,
            tx: Mutex::new(Some(tx)),
            task: Mutex::new(Some(task)),
        })
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn write_error(path: &Path, reason: String) -> DeadLetterError {
    DeadLetterError::Write {
        path: path.display().to_string(),
        reason,
    }
}

/// Takes every job waiting, writes them in one go, fsyncs, answers them all.
fn write_loop(mut file: std::fs::File, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::new();
    let mut bytes = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < 1024 {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        bytes.clear();
        for (line, _) in &batch {
            bytes.extend_from_slice(line);
        }
        let result = file
            .write_all(&bytes)
            .and_then(|()| file.sync_data())
            .map_err(|e| e.to_string());
        for (_, done) in batch.drain(..) {
            // The sender may have given up waiting (shutdown): nothing to tell it.
            let _ = done.send(result.clone());
        }
    }
}

impl DeadLetterSink for JsonLinesFile {
    async fn send(&self, letter: DeadLetter) -> Result<(), DeadLetterError> {
        let tx = self
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(DeadLetterError::Closed)?;
        let (done, written) = oneshot::channel();
        tx.send((letter.to_json_line(), done))
            .await
            .map_err(|_| DeadLetterError::Closed)?;
        match written.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(write_error(&self.path, reason)),
            Err(_) => Err(DeadLetterError::Closed),
        }
    }

    /// Waits for every letter sent so far to be written, then stops the writer.
    async fn close(&self) -> Result<(), DeadLetterError> {
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            task.await
                .map_err(|e| write_error(&self.path, format!("the writer failed: {e}")))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dead_letter::Stage;
    use crate::source::Position;
    use std::sync::Arc;
    use std::time::SystemTime;

    #[tokio::test]
    async fn concurrent_letters_all_land_one_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dl.jsonl");
        let sink = Arc::new(JsonLinesFile::create(&path).await.unwrap());
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..200u64 {
            let sink = sink.clone();
            tasks.spawn(async move {
                sink.send(DeadLetter {
                    payload: format!("payload {i}").into(),
                    position: Position::Sequence {
                        origin: "memory".into(),
                        index: i,
                    },
                    stage: Stage::Deliver,
                    reason: "400".into(),
                    retryable: Some(false),
                    time: SystemTime::now(),
                })
                .await
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap().unwrap();
        }
        sink.close().await.unwrap();
        assert!(matches!(
            sink.send(DeadLetter {
                payload: "late".into(),
                position: Position::Sequence {
                    origin: "memory".into(),
                    index: 0
                },
                stage: Stage::Deliver,
                reason: String::new(),
                retryable: None,
                time: SystemTime::now(),
            })
            .await,
            Err(DeadLetterError::Closed)
        ));
        let text = std::fs::read_to_string(&path).unwrap();
        let mut indices: Vec<u64> = text
            .lines()
            .map(
                |l| match DeadLetter::from_json(l.as_bytes()).unwrap().position {
                    Position::Sequence { index, .. } => index,
                    other => panic!("{other:?}"),
                },
            )
            .collect();
        indices.sort_unstable();
        assert_eq!(indices, (0..200).collect::<Vec<_>>());
    }
}
