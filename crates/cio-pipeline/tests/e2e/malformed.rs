//! Malformed lines land in the dead-letter file with their line numbers; every good line is
//! delivered.

use std::time::Duration;

use cio_pipeline::cio::OperationDecoder;
use cio_pipeline::dead_letter::{DeadLetter, JsonLinesFile, Stage};
use cio_pipeline::source::{FileSource, Position};
use cio_pipeline::Processor;
use tokio_util::sync::CancellationToken;

use crate::support::{batching_stack, event_line, Files};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_lines_are_dead_lettered_with_their_line_numbers() {
    tokio::time::timeout(Duration::from_secs(30), run())
        .await
        .expect("finishes in time");
}

async fn run() {
    let files = Files::new();
    let bad: Vec<(usize, Vec<u8>, &str)> = vec![
        (3, br#"{"type":"person","identifiers":{"id":"1"},"action":"event","name":"#.to_vec(), "invalid JSON"),
        (6, br#"{"type":"person","action":"event","name":"no-one"}"#.to_vec(), "identifiers"),
        (
            9,
            format!(
                r#"{{"type":"person","identifiers":{{"id":"7"}},"action":"identify","attributes":{{"bio":"{}"}}}}"#,
                "x".repeat(2000)
            )
            .into_bytes(),
            "attributes.bio",
        ),
        (12, b"{\"type\":\"person\",\"identifiers\":{\"id\":\"\xff\xfe\"},\"action\":\"delete\"}".to_vec(), "not valid UTF-8"),
        (15, format!(r#"{{"type":"person","padding":"{}"}}"#, "y".repeat(50_000)).into_bytes(), "over the source's limit"),
    ];
    let mut text = Vec::new();
    let mut good = 0u64;
    for n in 1..=30 {
        match bad.iter().find(|(line, _, _)| *line == n) {
            Some((_, bytes, _)) => text.extend_from_slice(bytes),
            None => {
                text.extend_from_slice(event_line(n).as_bytes());
                good += 1;
            }
        }
        text.push(b'\n');
    }
    std::fs::write(&files.input, &text).unwrap();

    let mock = cio_mock::MockServer::builder()
        .unlimited()
        .start()
        .await
        .unwrap();
    let source = FileSource::builder()
        .path(&files.input)
        .max_line_bytes(40_000)
        .open()
        .await
        .unwrap();
    let dead_letters = JsonLinesFile::create(&files.dead_letters).await.unwrap();
    let report = Processor::new(
        source,
        OperationDecoder::new(),
        batching_stack(&mock),
        dead_letters,
    )
    .run(CancellationToken::new())
    .await;
    assert!(report.is_complete() && report.is_balanced(), "{report:?}");
    assert_eq!(
        (report.read, report.delivered, report.decode_failures),
        (30, good, 5)
    );
    assert_eq!(mock.stats().unique_event_ids, good);

    let origin = std::fs::canonicalize(&files.input).unwrap();
    let mut letters: Vec<DeadLetter> = std::fs::read_to_string(&files.dead_letters)
        .unwrap()
        .lines()
        .map(|l| DeadLetter::from_json(l.as_bytes()).unwrap())
        .collect();
    letters.sort_by_key(|l| match l.position {
        Position::Line { line, .. } => line,
        _ => 0,
    });
    assert_eq!(letters.len(), bad.len());
    for (letter, (line, bytes, reason)) in letters.iter().zip(&bad) {
        let Position::Line {
            origin: o,
            line: l,
            offset,
        } = &letter.position
        else {
            panic!("{:?}", letter.position)
        };
        assert_eq!((&**o, *l), (origin.to_str().unwrap(), *line as u64));
        assert_eq!(
            &text[*offset as usize..][..letter.payload.len()],
            &letter.payload[..]
        );
        assert_eq!(letter.stage, Stage::Decode);
        assert!(
            letter.reason.contains(reason),
            "line {line}: {}",
            letter.reason
        );
        if *line != 15 {
            assert_eq!(
                &letter.payload[..],
                &bytes[..],
                "line {line}: the raw input, byte for byte"
            );
        } else {
            assert_eq!(
                letter.payload.len(),
                40_000,
                "an oversize line is kept up to the limit"
            );
        }
    }
}
