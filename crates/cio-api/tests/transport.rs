//! The transport over real loopback sockets, over http and https alike: connections are reused,
//! a request goes again only when it cannot have reached the server or is idempotent, TLS trusts
//! exactly what it is told to, and the connect timeout is its own.
//!
//! The servers here are scripted by hand (a few lines of HTTP/1.1 on a socket) because the
//! behaviour under test is a server misbehaving: reading a request and closing without an answer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cio_api::{
    AppClient, AppCredentials, AppRequest, ClientOptions, Error, Idempotency, MessageIdentifiers,
    MessageKind, Operation, Region, TlsOptions, TrackClient, TrackCredentials,
    TransactionalMessage, Transport,
};
use cio_mock::TlsIdentity;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tower::ServiceExt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

const SCHEMES: [Scheme; 2] = [Scheme::Http, Scheme::Https];

/// What the server does with the `request`-th request of its `conn`-th connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Act {
    /// `200 {}`, kept alive.
    Answer,
    /// `200 {}`, then close the connection (without saying so).
    AnswerThenClose,
    /// Read it whole, then close without a byte of answer.
    ReadAndClose,
}

type Script = Arc<dyn Fn(usize, usize) -> Act + Send + Sync>;

struct Server {
    url: String,
    tls: Option<TlsIdentity>,
    /// Requests read in full, over all connections.
    requests: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start(
        scheme: Scheme,
        script: impl Fn(usize, usize) -> Act + Send + Sync + 'static,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tls = (scheme == Scheme::Https).then(|| TlsIdentity::generate().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let script: Script = Arc::new(script);
        let (r, c, acceptor) = (
            requests.clone(),
            connections.clone(),
            tls.as_ref().map(|t| t.acceptor()),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let conn = c.fetch_add(1, Ordering::SeqCst);
                let (r, script, acceptor) = (r.clone(), script.clone(), acceptor.clone());
                tokio::spawn(async move {
                    match acceptor {
                        Some(a) => {
                            if let Ok(tls) = a.accept(tcp).await {
                                serve(tls, conn, &r, &*script).await;
                            }
                        }
                        None => serve(tcp, conn, &r, &*script).await,
                    }
                });
            }
        });
        let scheme_text = if tls.is_some() { "https" } else { "http" };
        Server {
            url: format!("{scheme_text}://{addr}"),
            tls,
            requests,
            connections,
            task,
        }
    }

    fn region(&self) -> Region {
        Region::custom(&self.url).unwrap()
    }

    /// Options that trust this server's CA.
    fn options(&self) -> ClientOptions {
        let mut options = ClientOptions::default();
        if let Some(tls) = &self.tls {
            options.tls = TlsOptions::default()
                .with_ca_pem(tls.ca_pem().as_bytes())
                .unwrap();
        }
        options
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    conn: usize,
    requests: &AtomicUsize,
    script: &(dyn Fn(usize, usize) -> Act + Send + Sync),
) {
    let mut stream = BufReader::new(stream);
    for request in 0.. {
        // The head, then the body by Content-Length.
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            match stream.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        requests.fetch_add(1, Ordering::SeqCst);
        let act = script(conn, request);
        if act == Act::ReadAndClose {
            let _ = stream.get_mut().shutdown().await;
            return;
        }
        let answer =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        if stream.get_mut().write_all(answer).await.is_err()
            || stream.get_mut().flush().await.is_err()
        {
            return;
        }
        if act == Act::AnswerThenClose {
            let _ = stream.get_mut().shutdown().await;
            return;
        }
    }
}

/// The first connection answers its first request, then reads the second and closes without an
/// answer; every later connection answers everything.
fn breaks_on_second_request(conn: usize, request: usize) -> Act {
    match (conn, request) {
        (0, 1) => Act::ReadAndClose,
        _ => Act::Answer,
    }
}

fn email() -> AppRequest {
    AppRequest::Send(
        MessageKind::Email,
        TransactionalMessage {
            transactional_message_id: Some("welcome".into()),
            identifiers: MessageIdentifiers {
                email: Some("jane@example.com".into()),
                ..Default::default()
            },
            to: Some("jane@example.com".into()),
            ..Default::default()
        },
    )
}

fn op(json: &str) -> Operation {
    Operation::from_json(json.as_bytes()).unwrap()
}

fn identify() -> Operation {
    op(
        r#"{"type":"person","identifiers":{"id":"42"},"action":"identify","attributes":{"plan":"pro"}}"#,
    )
}

fn app(server: &Server) -> AppClient {
    AppClient::builder(server.region(), AppCredentials::new("app-key"))
        .options(server.options())
        .build()
}

fn track(server: &Server) -> TrackClient {
    TrackClient::builder(server.region(), TrackCredentials::new("site", "key"))
        .options(server.options())
        .build()
}

#[tokio::test]
async fn a_transactional_send_is_attempted_exactly_once_when_no_answer_comes() {
    for scheme in SCHEMES {
        // On a fresh connection: the server reads the send and closes.
        let server = Server::start(scheme, |_, _| Act::ReadAndClose).await;
        let err = app(&server).oneshot(email()).await.unwrap_err();
        assert_eq!(server.requests(), 1, "{scheme:?}: attempted exactly once");
        assert!(matches!(err, Error::NotRetryable(_)), "{scheme:?}: {err:?}");
        assert!(!err.is_retryable());
        let text = err.to_string();
        assert!(text.contains("outcome is unknown"), "{scheme:?}: {text}");

        // On a reused connection, where a stale connection would excuse a resend: still once.
        let server = Server::start(scheme, breaks_on_second_request).await;
        let client = app(&server);
        client.clone().oneshot(email()).await.unwrap();
        let err = client.oneshot(email()).await.unwrap_err();
        assert_eq!(
            server.requests(),
            2,
            "{scheme:?}: the second send attempted exactly once"
        );
        assert_eq!(
            server.connections(),
            1,
            "{scheme:?}: and never on a new connection"
        );
        assert!(
            err.to_string().contains("outcome is unknown"),
            "{scheme:?}: {err}"
        );
    }
}

#[tokio::test]
async fn idempotent_operations_go_again_on_a_new_connection_and_the_rest_do_not() {
    let event_with_id = r#"{"type":"person","identifiers":{"id":"42"},"action":"event","name":"signup","id":"01HZY3J5K3V1X0SJQ2Q0CE7A9N"}"#;
    let event_without_id =
        r#"{"type":"person","identifiers":{"id":"42"},"action":"event","name":"signup"}"#;
    for scheme in SCHEMES {
        for (what, second, resent) in [
            ("identify (PUT)", identify(), true),
            ("event with an id", op(event_with_id), true),
            ("event without an id", op(event_without_id), false),
        ] {
            let server = Server::start(scheme, breaks_on_second_request).await;
            let client = track(&server);
            client.clone().oneshot(identify()).await.unwrap();
            let outcome = client.oneshot(second).await;
            if resent {
                outcome.unwrap_or_else(|e| panic!("{scheme:?} {what}: {e}"));
                assert_eq!(server.requests(), 3, "{scheme:?} {what}: sent again once");
                assert_eq!(
                    server.connections(),
                    2,
                    "{scheme:?} {what}: on a new connection"
                );
            } else {
                let err = outcome.unwrap_err();
                assert_eq!(server.requests(), 2, "{scheme:?} {what}: not sent again");
                assert!(
                    err.to_string().contains("outcome is unknown"),
                    "{scheme:?} {what}: {err}"
                );
                // The caller's retry policy may still weigh it: an event without an id is not a
                // message to a person.
                assert!(err.is_retryable());
            }
        }
    }
}

#[tokio::test]
async fn a_connection_the_server_closed_while_idle_is_not_used_and_the_send_goes_once() {
    for scheme in SCHEMES {
        let server = Server::start(scheme, |_, _| Act::AnswerThenClose).await;
        let client = app(&server);
        client.clone().oneshot(email()).await.unwrap();
        // Let the close arrive before the next request.
        tokio::time::sleep(Duration::from_millis(50)).await;
        client.oneshot(email()).await.unwrap();
        assert_eq!(
            (server.requests(), server.connections()),
            (2, 2),
            "{scheme:?}"
        );
    }
}

#[tokio::test]
async fn keep_alive_connections_are_reused() {
    for scheme in SCHEMES {
        let server = Server::start(scheme, |_, _| Act::Answer).await;
        let transport = Transport::new(&server.options());
        let client = TrackClient::builder(server.region(), TrackCredentials::new("s", "k"))
            .options(server.options())
            .transport(transport.clone())
            .build();
        for _ in 0..20 {
            client.clone().oneshot(identify()).await.unwrap();
        }
        assert_eq!(
            (server.requests(), server.connections()),
            (20, 1),
            "{scheme:?}"
        );
        assert_eq!(transport.idle_connections(), 1);
        // Concurrent requests open what they need, and give the connections back.
        let calls = (0..8).map(|_| client.clone().oneshot(identify()));
        for r in futures_join(calls).await {
            r.unwrap();
        }
        assert!(
            server.connections() <= 8,
            "{scheme:?}: {}",
            server.connections()
        );
        assert_eq!(transport.idle_connections(), server.connections());
    }
}

async fn futures_join<F>(futs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn https_trusts_only_what_it_is_told_to() {
    let server = Server::start(Scheme::Https, |_, _| Act::Answer).await;
    // The default roots do not know the server's CA.
    let client = TrackClient::builder(server.region(), TrackCredentials::new("s", "k")).build();
    let err = client.oneshot(identify()).await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.is_retryable());
    let text = err.to_string();
    assert!(
        text.contains("not signed by a trusted CA") && text.contains("--ca-cert"),
        "{text}"
    );
    assert_eq!(server.requests(), 0);
    // Trusting it works.
    track(&server).oneshot(identify()).await.unwrap();
    assert_eq!(server.requests(), 1);
    // A file that holds no certificate is refused when the options are built, not at connect.
    let dir = tempfile_dir();
    let bad = dir.join("bad.pem");
    std::fs::write(&bad, "hello").unwrap();
    let err = TlsOptions::default().with_ca_file(&bad).unwrap_err();
    assert!(err.to_string().contains("no PEM certificate"), "{err}");
    let err = TlsOptions::default()
        .with_ca_file(dir.join("missing.pem"))
        .unwrap_err();
    assert!(err.to_string().contains("missing.pem"), "{err}");
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cio-api-transport-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn the_connect_timeout_is_its_own_and_bounds_the_tls_handshake() {
    // Accepts TCP, never says a word of TLS.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let options = ClientOptions {
        connect_timeout: Duration::from_millis(300),
        timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    };
    let client = TrackClient::builder(
        Region::custom(&format!("https://{addr}")).unwrap(),
        TrackCredentials::new("s", "k"),
    )
    .options(options)
    .build();
    let started = Instant::now();
    let err = client.oneshot(identify()).await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(
        err.to_string().contains("connect timeout of 300ms"),
        "{err}"
    );
    assert!(
        took < Duration::from_secs(3),
        "took {took:?}: the request timeout fired instead"
    );
    hold.abort();
}

#[tokio::test]
async fn the_clients_sit_on_any_tower_http_service() {
    // A recorded fake: no network at all.
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let fake = tower::service_fn(move |req: http::Request<http_body_util::Full<Bytes>>| {
        let record = record.clone();
        async move {
            record.lock().unwrap().push((
                req.method().clone(),
                req.uri().to_string(),
                req.headers().get("authorization").map(|v| v.is_sensitive()),
                req.extensions().get::<Idempotency>().copied(),
            ));
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                Bytes::from_static(b"{}"),
            )))
        }
    });
    let client = TrackClient::builder(Region::Us, TrackCredentials::new("site", "key"))
        .service(fake)
        .build();
    client.clone().oneshot(identify()).await.unwrap();
    client
        .oneshot(op(
            r#"{"type":"person","identifiers":{"id":"42"},"action":"event","name":"x"}"#,
        ))
        .await
        .unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].0, http::Method::PUT);
    assert_eq!(seen[0].1, "https://track.customer.io/api/v1/customers/42");
    assert_eq!(seen[0].2, Some(true), "credentials are marked sensitive");
    assert_eq!(seen[0].3, Some(Idempotency::Idempotent));
    assert_eq!(seen[1].3, Some(Idempotency::NotIdempotent));
}
