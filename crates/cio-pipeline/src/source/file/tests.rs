use std::io::Write;
use std::time::Duration;

use super::*;
use crate::source::Acknowledge;

fn write(path: &Path, text: &[u8]) {
    std::fs::write(path, text).unwrap();
}

fn append(path: &Path, text: &[u8]) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text).unwrap();
}

fn line_of(m: &Message<FileAck>) -> (u64, u64) {
    match &m.position {
        Position::Line { line, offset, .. } => (*line, *offset),
        other => panic!("not a line position: {other:?}"),
    }
}

#[tokio::test]
async fn reads_files_in_order_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.jsonl");
    let b = dir.path().join("b.jsonl");
    write(&a, b"one\r\n\n  \ntwo\n");
    write(&b, b"three\nfour-without-newline");
    let mut s = FileSource::builder()
        .path(&a)
        .path(&b)
        .open()
        .await
        .unwrap();
    let mut got = Vec::new();
    while let Some(m) = s.next().await.unwrap() {
        got.push((
            String::from_utf8(m.payload.to_vec()).unwrap(),
            line_of(&m),
            m.position.origin().rsplit('/').next().unwrap().to_owned(),
        ));
        m.ack.ack().await.unwrap();
    }
    assert_eq!(
        got,
        [
            ("one".into(), (1, 0), "a.jsonl".into()),
            ("two".into(), (4, 9), "a.jsonl".into()),
            ("three".into(), (1, 0), "b.jsonl".into()),
            ("four-without-newline".into(), (2, 6), "b.jsonl".into()),
        ]
    );
    // Everything acked: both files fully committed (blank lines included).
    let cp = s.committed();
    assert_eq!(
        cp.files
            .iter()
            .map(|f| (f.offset, f.line))
            .collect::<Vec<_>>(),
        [(13, 4), (26, 2)]
    );
    s.close().await.unwrap();
}

#[tokio::test]
async fn an_oversize_line_is_cut_and_marked_and_the_next_line_is_intact() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.jsonl");
    let long = "x".repeat(100);
    write(&a, format!("{long}\nnext\n").as_bytes());
    let mut s = FileSource::builder()
        .path(&a)
        .max_line_bytes(10)
        .open()
        .await
        .unwrap();
    let m = s.next().await.unwrap().unwrap();
    assert_eq!((m.payload.len(), m.oversize), (10, Some(100)));
    let m = s.next().await.unwrap().unwrap();
    assert_eq!(
        (&m.payload[..], m.oversize, line_of(&m)),
        (&b"next"[..], None, (2, 101))
    );
}

#[tokio::test]
async fn resumes_from_the_first_unacknowledged_line_after_out_of_order_acks() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.jsonl");
    let cp = dir.path().join("cp.json");
    let text: String = (1..=10).map(|i| format!("line-{i:02}\n")).collect();
    write(&a, text.as_bytes());

    let mut s = FileSource::builder()
        .path(&a)
        .checkpoint(&cp)
        .open()
        .await
        .unwrap();
    let mut ms = Vec::new();
    for _ in 0..6 {
        ms.push(s.next().await.unwrap().unwrap());
    }
    // Lines 1..=6 read; acks arrive as 2, 1, 5, 4, 6 and line 3 is abandoned.
    let mut ms: Vec<Option<_>> = ms.into_iter().map(Some).collect();
    for i in [1usize, 0, 4, 3, 5] {
        ms[i].take().unwrap().ack.ack().await.unwrap();
    }
    ms[2].take().unwrap().ack.nack().await.unwrap();
    s.close().await.unwrap();
    let stored = Checkpoint::load(&cp).unwrap().unwrap();
    assert_eq!((stored.files[0].offset, stored.files[0].line), (16, 2));

    let mut s = FileSource::builder()
        .path(&a)
        .checkpoint(&cp)
        .open()
        .await
        .unwrap();
    assert_eq!(
        s.resumed_from()[0].1,
        Mark {
            offset: 16,
            line: 2
        }
    );
    let m = s.next().await.unwrap().unwrap();
    assert_eq!((&m.payload[..], line_of(&m)), (&b"line-03"[..], (3, 16)));
}

#[tokio::test]
async fn reading_waits_when_the_unpersisted_window_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.jsonl");
    let cp = dir.path().join("cp.json");
    write(&a, b"1\n2\n3\n4\n5\n");
    let mut s = FileSource::builder()
        .path(&a)
        .checkpoint(&cp)
        .checkpoint_every(1_000)
        .checkpoint_interval(Duration::from_secs(3600))
        .max_unpersisted(3)
        .open()
        .await
        .unwrap();
    let m1 = s.next().await.unwrap().unwrap();
    let m2 = s.next().await.unwrap().unwrap();
    let m3 = s.next().await.unwrap().unwrap();
    // Three lines past the (empty) checkpoint: the fourth must wait.
    assert!(tokio::time::timeout(Duration::from_millis(100), s.next())
        .await
        .is_err());
    // Acking line 2 cannot move the checkpoint (line 1 is open); acking line 1 can, and the
    // waiting reader asks for a write at once.
    m2.ack.ack().await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(100), s.next())
        .await
        .is_err());
    m1.ack.ack().await.unwrap();
    let m4 = tokio::time::timeout(Duration::from_secs(5), s.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&m4.payload[..], b"4");
    let on_disk = Checkpoint::load(&cp).unwrap().unwrap();
    assert_eq!(on_disk.files[0].line, 2);
    drop((m3, m4));
    s.close().await.unwrap();
}

#[tokio::test]
async fn follows_a_growing_file_and_refuses_a_truncated_one() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.jsonl");
    write(&a, b"first\n");
    let mut s = FileSource::builder()
        .path(&a)
        .follow(true)
        .poll_interval(Duration::from_millis(5))
        .open()
        .await
        .unwrap();
    let read = s.read_progress();
    assert_eq!(read.bytes_unread(), Some(6));
    let m = s.next().await.unwrap().unwrap();
    assert_eq!(&m.payload[..], b"first");
    assert_eq!(read.bytes_unread(), Some(0));
    // Nothing more yet: waits instead of ending.
    assert!(tokio::time::timeout(Duration::from_millis(50), s.next())
        .await
        .is_err());
    // A line written in two parts is delivered once, whole; its first part is nothing the
    // source could give yet, so nothing is waiting for it.
    append(&a, b"sec");
    assert!(tokio::time::timeout(Duration::from_millis(50), s.next())
        .await
        .is_err());
    assert_eq!(read.bytes_unread(), Some(0));
    append(&a, b"ond\n");
    assert_eq!(read.bytes_unread(), Some(4));
    let m = tokio::time::timeout(Duration::from_secs(5), s.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((&m.payload[..], line_of(&m)), (&b"second"[..], (2, 6)));
    assert_eq!(read.bytes_unread(), Some(0));
    write(&a, b"x\n");
    let err = tokio::time::timeout(Duration::from_secs(5), s.next())
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            err,
            SourceError::Truncated {
                len: 2,
                offset: 13,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn refuses_what_cannot_work() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.jsonl");
    let cp = dir.path().join("cp.json");
    write(&a, b"1\n2\n");
    let err = FileSource::builder()
        .stdin()
        .checkpoint(&cp)
        .open()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("standard input cannot be resumed"),
        "{err}"
    );
    let err = FileSource::builder()
        .path(&a)
        .path(&a)
        .open()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("given twice"), "{err}");
    let err = FileSource::builder()
        .path(dir.path().join("missing"))
        .open()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");

    // A checkpoint past the end of the file: truncated or replaced since.
    let mut marks = Checkpoint::new();
    let canonical = std::fs::canonicalize(&a).unwrap();
    marks.set(
        &canonical.to_string_lossy(),
        Mark {
            offset: 100,
            line: 50,
        },
    );
    marks.store(&cp).unwrap();
    let mut s = FileSource::builder()
        .path(&a)
        .checkpoint(&cp)
        .open()
        .await
        .unwrap();
    let err = s.next().await.unwrap_err();
    assert!(
        matches!(
            err,
            SourceError::Truncated {
                len: 4,
                offset: 100,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_checkpoint_that_cannot_be_written_stops_reading_at_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.jsonl");
    let sub = dir.path().join("gone");
    std::fs::create_dir(&sub).unwrap();
    write(&a, b"1\n2\n3\n4\n");
    let mut s = FileSource::builder()
        .path(&a)
        .checkpoint(sub.join("cp.json"))
        .max_unpersisted(2)
        .open()
        .await
        .unwrap();
    std::fs::remove_dir(&sub).unwrap();
    for _ in 0..2 {
        s.next().await.unwrap().unwrap().ack.ack().await.unwrap();
    }
    let err = tokio::time::timeout(Duration::from_secs(5), s.next())
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot be written, and 2 lines are read past it"),
        "{err}"
    );
    assert!(
        s.close().await.is_err(),
        "the last write fails too, and says so"
    );
}
