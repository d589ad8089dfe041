//! Your own tower layers under a Customer.io client: every HTTP request the client makes goes
//! through them, over https, to an embedded mock that serves TLS with a CA made at start.
//!
//! Here the layers are a request counter and a header your proxy might want; the same place
//! takes a proxy connector, a recorded fake for tests, or your tracing.
//!
//! Run it with `cargo run --release --example own_http_layers`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use cio_toolkit::api::{BatchClient, Operation, TrackCredentials, Transport};
use cio_toolkit::mock::MockServer;
use http::HeaderValue;
use tower::{ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mock = MockServer::builder().tls().start().await?;
    // Client options that trust the mock's CA (`ClientOptions::tls` in your own code: webpki
    // roots by default, `TlsOptions::with_native_roots`, `with_ca_file`).
    let options = mock.client_options();

    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let http = ServiceBuilder::new()
        // Any tower layer of `http::Request`s: counting, tagging, tracing, a proxy, a fake.
        .map_request(move |mut req: http::Request<_>| {
            counter.fetch_add(1, Ordering::Relaxed);
            req.headers_mut()
                .insert("x-team", HeaderValue::from_static("growth"));
            req
        })
        .service(Transport::new(&options));

    let client = BatchClient::builder(mock.region(), TrackCredentials::new("site", "key"))
        .options(options)
        .service(http)
        .build();

    let ops: Vec<Operation> = (0..100)
        .map(|i| {
            let line = format!(
                r#"{{"type":"person","identifiers":{{"id":"{i}"}},"action":"event","name":"signup","id":"01HZY3J5K3V1X0SJQ2Q0CE{i:04}"}}"#
            );
            Operation::from_json(line.as_bytes())
        })
        .collect::<Result<_, _>>()?;
    let answer = client.oneshot(ops).await?;
    println!(
        "{} of 100 accepted over {} in {} HTTP request(s) through your layers",
        answer.accepted(),
        mock.url(),
        requests.load(Ordering::Relaxed)
    );
    assert_eq!(mock.stats().unique_event_ids, 100);
    mock.shutdown().await;
    Ok(())
}
