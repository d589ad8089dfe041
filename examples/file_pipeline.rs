//! A file pipeline: JSON lines from a file, through the batched stack, to Customer.io (an
//! embedded mock here), with a checkpoint so a restart resumes where the last run stopped, and
//! a dead-letter file for what cannot be delivered.
//!
//! ```text
//! cargo run --release --example file_pipeline [FILE]
//! ```
//!
//! Without FILE it writes 10,000 sample lines (one of them broken) to a temporary file first.

use std::io::Write;
use std::path::PathBuf;

use cio_pipeline::cio::OperationDecoder;
use cio_pipeline::dead_letter::JsonLinesFile;
use cio_pipeline::source::FileSource;
use cio_pipeline::Processor;
use cio_toolkit::api::stack::{BatchedStack, StackConfig};
use cio_toolkit::api::{BatchClient, TrackCredentials};
use cio_toolkit::layers::ByError;
use cio_toolkit::mock::MockServer;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("cio-file-pipeline-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let input = match std::env::args().nth(1) {
        Some(path) => PathBuf::from(path),
        None => {
            let path = dir.join("events.jsonl");
            let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
            for i in 0..10_000 {
                if i == 4_242 {
                    writeln!(
                        f,
                        r#"{{"type":"person","action":"event","name":"no identifier"}}"#
                    )?;
                } else {
                    // No `id`: the pipeline derives one from the file and the line's offset, so a
                    // line re-sent after a crash is de-duplicated.
                    writeln!(
                        f,
                        r#"{{"type":"person","identifiers":{{"id":"user-{}"}},"action":"event","name":"lesson_completed","attributes":{{"lesson":{i}}}}}"#,
                        i % 300
                    )?;
                }
            }
            f.flush()?;
            path
        }
    };

    let mock = MockServer::builder().start().await?;
    let stack = BatchedStack::new(
        BatchClient::new(mock.region(), TrackCredentials::new("site", "key")),
        StackConfig::default(),
    )?;
    let source = FileSource::builder()
        .path(&input)
        .checkpoint(dir.join("events.checkpoint"))
        .open()
        .await?;
    let dead_letters = JsonLinesFile::create(dir.join("dead-letters.jsonl")).await?;

    // Ctrl-C stops reading, drains what is in flight and persists the checkpoint.
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    let report = Processor::new(
        source,
        OperationDecoder::new(),
        stack.service(),
        dead_letters,
    )
    .max_in_flight(5_000)
    .classify_errors(ByError)
    .run(shutdown)
    .await;
    stack.close().await;

    println!("{}", report.to_json());
    println!(
        "mock: {} events accepted, {} distinct ids; dead letters in {}",
        mock.stats().accepted.values().sum::<u64>(),
        mock.stats().unique_event_ids,
        dir.join("dead-letters.jsonl").display()
    );
    Ok(())
}
