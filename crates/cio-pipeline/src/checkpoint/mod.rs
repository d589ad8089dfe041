//! Checkpoints: the first unacknowledged position of each input file, persisted atomically.
//!
//! A [`Checkpoint`] is a small JSON document:
//!
//! ```json
//! {"version":1,"files":[{"path":"/data/events.jsonl","offset":18342,"line":61}]}
//! ```
//!
//! `offset` is the first byte not yet acknowledged (everything before it was delivered or
//! dead-lettered); `line` is the number of lines before it, so line numbers stay right after a
//! resume. [`Checkpoint::store`] writes a temporary file beside the target, fsyncs it, renames it
//! over the target and fsyncs the directory: a crash leaves either the old checkpoint or the new
//! one, never a torn one.
//!
//! [`AckTracker`] decides what may be persisted: acknowledgements arrive in any order, and the
//! checkpoint moves only over a contiguous acknowledged prefix.

mod tracker;

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use tracker::{AckTracker, Mark};

/// The format version written.
const VERSION: u32 = 1;

/// Where each input file stands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The format version (1).
    pub version: u32,
    /// One entry per file ever read with this checkpoint.
    pub files: Vec<FileMark>,
}

/// One file's first unacknowledged position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMark {
    /// The canonical path.
    pub path: String,
    /// First byte not yet acknowledged.
    pub offset: u64,
    /// Lines before `offset`.
    pub line: u64,
}

/// Why a checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file system refused.
    #[error("{path}: {source}")]
    Io {
        /// The checkpoint (or its temporary file).
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a checkpoint this version understands.
    #[error("{path} is not a valid checkpoint ({reason}); move it away to start over")]
    Invalid {
        /// The checkpoint.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl Checkpoint {
    /// An empty checkpoint.
    pub fn new() -> Self {
        Checkpoint {
            version: VERSION,
            files: Vec::new(),
        }
    }

    /// The mark of `path`, if it has one.
    pub fn get(&self, path: &str) -> Option<&FileMark> {
        self.files.iter().find(|f| f.path == path)
    }

    /// Sets the mark of `path`.
    pub fn set(&mut self, path: &str, mark: Mark) {
        match self.files.iter_mut().find(|f| f.path == path) {
            Some(f) => {
                f.offset = mark.offset;
                f.line = mark.line;
            }
            None => self.files.push(FileMark {
                path: path.to_owned(),
                offset: mark.offset,
                line: mark.line,
            }),
        }
    }

    /// Reads a checkpoint; `Ok(None)` when there is none yet. Blocking: call it from
    /// `spawn_blocking` in async code.
    pub fn load(path: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CheckpointError::Io {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let cp: Checkpoint =
            serde_json::from_slice(&bytes).map_err(|e| CheckpointError::Invalid {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        if cp.version != VERSION {
            return Err(CheckpointError::Invalid {
                path: path.to_owned(),
                reason: format!("version {} (this build reads {VERSION})", cp.version),
            });
        }
        Ok(Some(cp))
    }

    /// Writes the checkpoint atomically: a temporary file in the same directory, fsync, rename
    /// over `path`, fsync of the directory. Blocking: call it from `spawn_blocking` in async code.
    pub fn store(&self, path: &Path) -> Result<(), CheckpointError> {
        let io = |p: &Path| {
            let p = p.to_owned();
            move |source| CheckpointError::Io { path: p, source }
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "checkpoint".into());
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let mut body = serde_json::to_vec(self).map_err(|e| CheckpointError::Invalid {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        body.push(b'\n');
        {
            let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&body).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        if let Err(e) = std::fs::rename(&tmp, path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(path)(e));
        }
        // The rename is durable only once the directory is.
        #[cfg(unix)]
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&dir))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_then_load_round_trips_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        assert_eq!(Checkpoint::load(&path).unwrap(), None);
        let mut cp = Checkpoint::new();
        cp.set(
            "/a",
            Mark {
                offset: 10,
                line: 2,
            },
        );
        cp.set("/b", Mark { offset: 0, line: 0 });
        cp.set(
            "/a",
            Mark {
                offset: 20,
                line: 3,
            },
        );
        cp.store(&path).unwrap();
        let back = Checkpoint::load(&path).unwrap().unwrap();
        assert_eq!(back, cp);
        assert_eq!(back.get("/a").map(|f| (f.offset, f.line)), Some((20, 3)));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["cp.json"]);
    }

    #[test]
    fn a_corrupt_checkpoint_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        std::fs::write(&path, b"{\"version\":1,\"files\":[{\"path\"").unwrap();
        let err = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(err.contains("not a valid checkpoint"), "{err}");
        assert!(err.contains("move it away"), "{err}");
        std::fs::write(&path, br#"{"version":9,"files":[]}"#).unwrap();
        let err = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(err.contains("version 9"), "{err}");
    }
}
