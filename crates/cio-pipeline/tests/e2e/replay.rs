//! A dead-letter file fed back as a source: what failed is delivered on replay, and an event that
//! Customer.io had in fact accepted before failing is de-duplicated, not duplicated.

use std::time::Duration;

use cio_api::Operation;
use cio_pipeline::cio::{event_id, OperationDecoder};
use cio_pipeline::dead_letter::{DeadLetter, JsonLinesFile, Replay, Stage};
use cio_pipeline::source::FileSource;
use cio_pipeline::{Decode, Processor};
use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::support::{event_line, Files};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_dead_letter_file_delivers_what_failed_without_duplicates() {
    tokio::time::timeout(Duration::from_secs(30), run())
        .await
        .expect("finishes in time");
}

async fn run() {
    const LINES: usize = 60;
    let files = Files::new();
    let mut text = String::new();
    for i in 0..LINES {
        text.push_str(&event_line(i));
        text.push('\n');
    }
    text.push_str("{not json}\n");
    std::fs::write(&files.input, &text).unwrap();
    let mock = cio_mock::MockServer::builder()
        .unlimited()
        .start()
        .await
        .unwrap();
    let region = mock.region();
    let client = cio_api::TrackClient::new(region, cio_api::TrackCredentials::new("site", "key"));

    // First run: a service that refuses events 0..10 (a permanent error, never sent), and sends
    // events 10..20 but then fails them (as a timeout after Customer.io accepted would).
    let flaky = {
        let client = client.clone();
        tower::service_fn(
            move |op: Operation| -> BoxFuture<'static, Result<(), String>> {
                let n = match &op {
                    Operation::Event(e) => e.data.get("n").and_then(|n| n.as_u64()),
                    _ => None,
                };
                let client = client.clone();
                Box::pin(async move {
                    match n {
                        Some(0..10) => Err("400 refused".into()),
                        Some(10..20) => {
                            client.oneshot(op).await.map_err(|e| e.to_string())?;
                            Err("timed out waiting for the answer".into())
                        }
                        _ => client
                            .oneshot(op)
                            .await
                            .map(|_| ())
                            .map_err(|e| e.to_string()),
                    }
                })
            },
        )
    };
    let source = FileSource::builder()
        .path(&files.input)
        .open()
        .await
        .unwrap();
    let report = Processor::new(
        source,
        OperationDecoder::new(),
        flaky,
        JsonLinesFile::create(&files.dead_letters).await.unwrap(),
    )
    .run(CancellationToken::new())
    .await;
    assert_eq!(
        (
            report.delivered,
            report.delivery_failures,
            report.decode_failures
        ),
        (40, 20, 1),
        "{report:?}"
    );
    assert_eq!(mock.stats().unique_event_ids, 50);

    // The replayed messages carry the original payload and position, hence the original ids.
    let mut replay = Replay::new(
        FileSource::builder()
            .path(&files.dead_letters)
            .open()
            .await
            .unwrap(),
    );
    let decoder = OperationDecoder::new();
    let mut replayed = 0;
    while let Some(m) = cio_pipeline::Source::next(&mut replay).await.unwrap() {
        if let Ok(op) = decoder.decode(&m.payload, &m.position) {
            let line = String::from_utf8(m.payload.to_vec()).unwrap();
            if !line.contains(r#""id":"#) {
                assert_eq!(op.event_id(), Some(event_id(&m.position, None).as_str()));
            }
            replayed += 1;
        }
    }
    assert_eq!(replayed, 20);

    // Replay through the plain client: the refused ten are delivered, the ten Customer.io already
    // had are recognised as duplicates, and the bad line is dead-lettered again where it was.
    let replay_letters = files.dead_letters.with_extension("replay.jsonl");
    let source = Replay::new(
        FileSource::builder()
            .path(&files.dead_letters)
            .open()
            .await
            .unwrap(),
    );
    let report = Processor::new(
        source,
        OperationDecoder::new(),
        client,
        JsonLinesFile::create(&replay_letters).await.unwrap(),
    )
    .run(CancellationToken::new())
    .await;
    assert_eq!(
        (report.read, report.delivered, report.decode_failures),
        (21, 20, 1),
        "{report:?}"
    );
    let stats = mock.stats();
    assert_eq!(stats.unique_event_ids, LINES as u64);
    assert_eq!(stats.duplicate_event_ids, 10);
    let again: Vec<DeadLetter> = std::fs::read_to_string(&replay_letters)
        .unwrap()
        .lines()
        .map(|l| DeadLetter::from_json(l.as_bytes()).unwrap())
        .collect();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].stage, Stage::Decode);
    assert_eq!(
        again[0].position.to_string(),
        format!(
            "{}:{} (byte {})",
            std::fs::canonicalize(&files.input).unwrap().display(),
            LINES + 1,
            text.len() - "{not json}\n".len()
        )
    );
}
