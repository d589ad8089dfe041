//! The axum example over real HTTP: signups are identified and tracked through the batched
//! stack, bad input is refused with the field, and shutdown flushes what is batched.

#[path = "../examples/axum_signup.rs"]
#[allow(dead_code)]
mod example;

use std::time::Duration;

use cio_toolkit::api::stack::{BatchedStack, StackConfig};
use cio_toolkit::api::{BatchClient, TrackCredentials};
use cio_toolkit::layers::batch::BatchConfig;
use cio_toolkit::mock::MockServer;

async fn post(addr: std::net::SocketAddr, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST /signup HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    (text[9..12].parse().unwrap(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signups_reach_customer_io_and_shutdown_flushes() {
    let mock = MockServer::builder().start().await.unwrap();
    let stack = BatchedStack::new(
        BatchClient::new(mock.region(), TrackCredentials::new("site", "key")),
        StackConfig {
            // A long linger: only the shutdown flush can send the last signup in time.
            batch: BatchConfig {
                max_linger: Duration::from_secs(30),
                ..StackConfig::default().batch
            },
            ..StackConfig::default()
        },
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(example::serve(listener, stack, async {
        let _ = stop_rx.await;
    }));

    // Bad input: a 151-byte id breaks Customer.io's limit and is refused with the field.
    let long = "x".repeat(151);
    let (status, text) = post(
        addr,
        &format!(r#"{{"id":"{long}","email":"a@example.com"}}"#),
    )
    .await;
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("identifiers.id"), "{text}");

    // Ten signups in flight; the handler answers when the batch is delivered, which a 30 s
    // linger would delay: shut down while they wait, and the flush delivers them.
    let mut pending = Vec::new();
    for i in 0..10 {
        let body = format!(r#"{{"id":"{i}","email":"u{i}@example.com","plan":"pro"}}"#);
        pending.push(tokio::spawn(async move { post(addr, &body).await }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(mock.stats().requests, 0, "still lingering in the batch");
    stop_tx.send(()).unwrap();
    for p in pending {
        let (status, text) = tokio::time::timeout(Duration::from_secs(10), p)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status, 202, "{text}");
        assert!(text.contains("event_id"));
    }
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let stats = mock.stats();
    assert_eq!(stats.accepted.get("identify"), Some(&10));
    assert_eq!(stats.accepted.get("event"), Some(&10));
    assert_eq!(stats.unique_event_ids, 10);
}
