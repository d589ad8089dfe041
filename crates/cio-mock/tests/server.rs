//! The mock as its users meet it: over real loopback sockets, with `cio_api::Transport` as the
//! client (any status comes back as is) and raw `TcpStream`s for what no client would send.
//!
//! Each test asserts what a user of the mock relies on: the status and error body Customer.io
//! would give, the counters in `/__mock/stats`, and that nothing a peer sends can take the server
//! down. Timing is asserted only as lower bounds, or with slack far above the expected value.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cio_api::{
    AppCredentials, ClientOptions, PipelinesCredentials, RawResponse, TrackCredentials, Transport,
};
use cio_mock::{Faults, Latency, MockHandle, MockServer};
use http::{header, HeaderValue, Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const EVENT_ID: &str = "01HZY3J5K3V1X0SJQ2Q0CE7A9N";

fn transport() -> Transport {
    Transport::new(&ClientOptions::default())
}

fn track_auth(site: &str, key: &str) -> HeaderValue {
    TrackCredentials::new(site, key).header()
}

fn app_auth(key: &str) -> HeaderValue {
    AppCredentials::new(key).header()
}

fn cdp_auth(write_key: &str) -> HeaderValue {
    PipelinesCredentials::new(write_key).header()
}

/// Sends one request to the mock and returns the answer, whatever its status.
async fn call(
    t: &Transport,
    mock: &MockHandle,
    method: Method,
    path: &str,
    auth: &HeaderValue,
    body: impl Into<Bytes>,
) -> RawResponse {
    let what = format!("{method} {path}");
    t.send(
        method,
        &format!("{}{path}", mock.url()),
        auth,
        Some(body.into()),
    )
    .await
    .unwrap_or_else(|e| panic!("{what}: no answer: {e}"))
}

/// A v1 identify of person `id`.
async fn identify(t: &Transport, mock: &MockHandle, auth: &HeaderValue, id: &str) -> RawResponse {
    call(
        t,
        mock,
        Method::PUT,
        &format!("/api/v1/customers/{id}"),
        auth,
        r#"{"email":"someone@example.com","plan":"pro"}"#,
    )
    .await
}

fn body_json(r: &RawResponse) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| {
        panic!(
            "{} answered a body that is not JSON ({e}): {:?}",
            r.status,
            String::from_utf8_lossy(&r.body)
        )
    })
}

/// The `{"meta":{"error":"..."}}` message, failing the test if the body has another shape.
fn meta_error(r: &RawResponse) -> String {
    let v = body_json(r);
    match v.pointer("/meta/error") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => panic!(
            "expected {{\"meta\":{{\"error\":..}}}}, got {} {v}",
            r.status
        ),
    }
}

/// The `{"errors":[...]}` array of a v2 answer, failing the test if the body has another shape.
fn v2_errors(r: &RawResponse) -> Vec<Value> {
    let v = body_json(r);
    match v.get("errors") {
        Some(Value::Array(a)) => a.clone(),
        _ => panic!("expected {{\"errors\":[..]}}, got {} {v}", r.status),
    }
}

async fn admin_get(t: &Transport, mock: &MockHandle, path: &str) -> Value {
    let r = call(
        t,
        mock,
        Method::GET,
        path,
        &HeaderValue::from_static(""),
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "GET {path}");
    body_json(&r)
}

async fn admin_post(t: &Transport, mock: &MockHandle, path: &str, body: &str) -> RawResponse {
    let body = Bytes::copy_from_slice(body.as_bytes());
    call(
        t,
        mock,
        Method::POST,
        path,
        &HeaderValue::from_static(""),
        body,
    )
    .await
}

fn person_entry(id: &str) -> Value {
    json!({"type": "person", "identifiers": {"id": id}, "action": "identify",
           "attributes": {"plan": "pro"}})
}

fn batch(entries: &[Value]) -> Bytes {
    Bytes::from(serde_json::to_vec(&json!({ "batch": entries })).unwrap())
}

fn total_accepted(mock: &MockHandle) -> u64 {
    mock.stats().accepted.values().sum()
}

/// What a raw exchange got back.
#[derive(Debug)]
enum RawOutcome {
    /// An HTTP answer: its status and everything read (head and body).
    Answer { status: u16, text: String },
    /// The connection was closed or reset before any byte of an answer.
    Closed,
}

impl RawOutcome {
    fn status(&self) -> Option<u16> {
        match self {
            RawOutcome::Answer { status, .. } => Some(*status),
            RawOutcome::Closed => None,
        }
    }
}

/// Whether `buf` holds a whole HTTP/1.1 answer (head, and a body of its `Content-Length`).
fn answer_complete(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    buf.len() >= end + 4 + length
}

/// Reads one answer: until it is complete, the peer closes, or the connection errors.
async fn read_answer(s: &mut (impl AsyncReadExt + Unpin)) -> RawOutcome {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let read = tokio::time::timeout(Duration::from_secs(15), async {
        while !answer_complete(&buf) {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server neither answered nor closed the connection within 15 s"
    );
    if buf.is_empty() {
        return RawOutcome::Closed;
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {:?}", &text[..text.len().min(200)]));
    RawOutcome::Answer { status, text }
}

/// Writes `request` on a new connection and reads the answer. The server may answer and close
/// before it has read everything, so write errors are not failures.
async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> RawOutcome {
    let mut s = TcpStream::connect(addr).await.expect("connect to the mock");
    let write = tokio::time::timeout(Duration::from_secs(15), s.write_all(request)).await;
    assert!(
        write.is_ok(),
        "the server stopped reading without answering"
    );
    read_answer(&mut s).await
}

/// Polls `cond` every 10 ms for up to 10 s.
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Auth
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn configured_credentials_are_enforced_per_api() {
    let mock = MockServer::builder()
        .track_credentials("site", "key")
        .app_key("app-key")
        .pipelines_key("write-key")
        .start()
        .await
        .unwrap();
    let t = transport();

    // Track: Basic site_id:api_key.
    let wrong = identify(&t, &mock, &track_auth("site", "wrong"), "42").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(meta_error(&wrong).contains("Unauthorized"));
    assert!(wrong.headers.contains_key(header::WWW_AUTHENTICATE));
    let wrong_site = identify(&t, &mock, &track_auth("other", "key"), "42").await;
    assert_eq!(wrong_site.status, StatusCode::UNAUTHORIZED);
    let right = identify(&t, &mock, &track_auth("site", "key"), "42").await;
    assert_eq!(right.status, StatusCode::OK, "{:?}", right.body);

    // App API: Bearer only, and the configured key.
    let send = r#"{"transactional_message_id":1,"identifiers":{"id":"42"},"to":"a@example.com"}"#;
    let basic_on_app = call(
        &t,
        &mock,
        Method::POST,
        "/v1/send/email",
        &track_auth("site", "key"),
        send,
    )
    .await;
    assert_eq!(basic_on_app.status, StatusCode::UNAUTHORIZED);
    assert!(meta_error(&basic_on_app).contains("Bearer"));
    let wrong_key = call(
        &t,
        &mock,
        Method::POST,
        "/v1/send/email",
        &app_auth("nope"),
        send,
    )
    .await;
    assert_eq!(wrong_key.status, StatusCode::UNAUTHORIZED);
    let sent = call(
        &t,
        &mock,
        Method::POST,
        "/v1/send/email",
        &app_auth("app-key"),
        send,
    )
    .await;
    assert_eq!(sent.status, StatusCode::OK, "{:?}", sent.body);
    assert!(body_json(&sent)["delivery_id"].is_string());

    // Pipelines: Basic write_key: with an empty password.
    let cdp = r#"{"userId":"42","traits":{"plan":"pro"}}"#;
    let wrong_cdp = call(
        &t,
        &mock,
        Method::POST,
        "/v1/identify",
        &cdp_auth("other"),
        cdp,
    )
    .await;
    assert_eq!(wrong_cdp.status, StatusCode::UNAUTHORIZED);
    let bearer_cdp = call(
        &t,
        &mock,
        Method::POST,
        "/v1/identify",
        &app_auth("write-key"),
        cdp,
    )
    .await;
    assert_eq!(bearer_cdp.status, StatusCode::UNAUTHORIZED);
    let right_cdp = call(
        &t,
        &mock,
        Method::POST,
        "/v1/identify",
        &cdp_auth("write-key"),
        cdp,
    )
    .await;
    assert_eq!(right_cdp.status, StatusCode::OK, "{:?}", right_cdp.body);

    let stats = mock.stats();
    assert_eq!(stats.unauthorized, 6);
    assert_eq!(stats.by_status.get("401"), Some(&6));
    assert_eq!(stats.accepted.get("identify"), Some(&1));
    assert_eq!(stats.accepted.get("send_email"), Some(&1));
    assert_eq!(stats.accepted.get("cdp_identify"), Some(&1));
    assert_eq!(
        total_accepted(&mock),
        3,
        "nothing refused is counted as accepted"
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn without_configured_credentials_any_well_formed_ones_pass() {
    let mock = MockServer::builder().start().await.unwrap();
    let t = transport();

    let r = identify(&t, &mock, &track_auth("any-site", "any-key"), "1").await;
    assert_eq!(r.status, StatusCode::OK);
    let send = r#"{"transactional_message_id":1,"identifiers":{"id":"1"},"to":"a@example.com"}"#;
    let r = call(
        &t,
        &mock,
        Method::POST,
        "/v1/send/email",
        &app_auth("any"),
        send,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = call(
        &t,
        &mock,
        Method::POST,
        "/v1/track",
        &cdp_auth("any"),
        r#"{"userId":"1","event":"signup"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);

    // Still the right scheme: Bearer is not Track's, Basic is not the App API's.
    let r = identify(&t, &mock, &app_auth("any"), "1").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // No Authorization header at all: 401 on every API.
    for (method, path, body) in [
        ("PUT", "/api/v1/customers/1", "{}"),
        ("POST", "/api/v2/batch", r#"{"batch":[]}"#),
        ("POST", "/v1/send/email", send),
        ("POST", "/v1/identify", r#"{"userId":"1"}"#),
    ] {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: mock\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let answer = raw_exchange(mock.addr(), request.as_bytes()).await;
        assert_eq!(answer.status(), Some(401), "{method} {path}: {answer:?}");
        let RawOutcome::Answer { text, .. } = answer else {
            unreachable!()
        };
        assert!(text.contains(r#""meta":{"error""#), "{text}");
    }
    assert_eq!(mock.stats().unauthorized, 5);
    mock.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 2. Validation answered like Customer.io
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn v1_validation_errors_use_customer_io_shapes() {
    let mock = MockServer::builder().start().await.unwrap();
    let t = transport();
    let auth = track_auth("site", "key");

    // A 151-byte identifier: 400 {"meta":{"error":..}} naming the field and the limit.
    let long = "x".repeat(151);
    let r = identify(&t, &mock, &auth, &long).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let message = meta_error(&r);
    assert!(message.contains("identifiers.id"), "{message}");
    assert!(
        message.contains("150") && message.contains("151"),
        "{message}"
    );
    // 150 bytes is still fine.
    let r = identify(&t, &mock, &auth, &"x".repeat(150)).await;
    assert_eq!(r.status, StatusCode::OK);

    // Devices answer {"meta":{"errors":[..]}}.
    for (body, field) in [
        (r#"{"device":{"platform":"ios"}}"#, "device.id"),
        (
            r#"{"device":{"id":"tok","platform":"windows"}}"#,
            "device.platform",
        ),
        (r#"{"device":"#, "JSON"),
    ] {
        let r = call(
            &t,
            &mock,
            Method::PUT,
            "/api/v1/customers/42/devices",
            &auth,
            body,
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        let v = body_json(&r);
        let errors = v
            .pointer("/meta/errors")
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("expected meta.errors for {body}, got {v}"));
        assert!(
            errors
                .iter()
                .any(|e| e.as_str().is_some_and(|s| s.contains(field))),
            "{body}: {v}"
        );
    }
    let r = call(
        &t,
        &mock,
        Method::PUT,
        "/api/v1/customers/42/devices",
        &auth,
        r#"{"device":{"id":"tok","platform":"ios"}}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);

    // The seed's bug: identify sent as POST. 405, and the message says what is right.
    let r = call(
        &t,
        &mock,
        Method::POST,
        "/api/v1/customers/42",
        &auth,
        r#"{"email":"a@example.com"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(meta_error(&r).contains("PUT"), "{}", meta_error(&r));

    // Malformed JSON on v1.
    let r = call(
        &t,
        &mock,
        Method::PUT,
        "/api/v1/customers/42",
        &auth,
        "{not json",
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    meta_error(&r);

    // Unknown paths: 404 in every area.
    for path in ["/nope", "/api/v1/nope", "/api/v2/nope", "/v1/nope"] {
        let r = call(&t, &mock, Method::POST, path, &auth, "{}").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        meta_error(&r);
    }

    let stats = mock.stats();
    assert_eq!(stats.accepted.get("identify"), Some(&1));
    assert_eq!(stats.accepted.get("add_device"), Some(&1));
    assert_eq!(total_accepted(&mock), 2);
    assert_eq!(stats.rejected, 5, "151-byte id, 3 bad devices, bad JSON");
    mock.shutdown().await;
}

#[tokio::test]
async fn v2_batch_answers_207_with_the_exact_failed_indexes() {
    let mock = MockServer::builder().start().await.unwrap();
    let t = transport();
    let auth = track_auth("site", "key");

    let entries = [
        person_entry("1"),
        person_entry(&"y".repeat(151)),
        person_entry("2"),
        json!({"type": "person", "identifiers": {"id": "3"}, "action": "explode"}),
    ];
    let r = call(
        &t,
        &mock,
        Method::POST,
        "/api/v2/batch",
        &auth,
        batch(&entries),
    )
    .await;
    assert_eq!(r.status, StatusCode::MULTI_STATUS, "{:?}", r.body);
    let errors = v2_errors(&r);
    let indexes: Vec<u64> = errors
        .iter()
        .map(|e| e["batch_index"].as_u64().expect("batch_index"))
        .collect();
    assert_eq!(indexes, [1, 3]);
    for e in &errors {
        for key in ["reason", "field", "message"] {
            assert!(e[key].as_str().is_some_and(|s| !s.is_empty()), "{key}: {e}");
        }
    }
    assert_eq!(errors[0]["field"], "identifiers.id");

    let stats = mock.stats();
    assert_eq!(stats.accepted.get("identify"), Some(&2));
    assert_eq!(total_accepted(&mock), 2, "only the valid entries count");
    assert_eq!(stats.rejected, 2);

    // A whole batch that is not JSON: 400 with an errors array, nothing accepted.
    for body in ["{\"batch\":[", "[]", "{\"batch\":{}}"] {
        let r = call(&t, &mock, Method::POST, "/api/v2/batch", &auth, body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(!v2_errors(&r).is_empty(), "{body}");
    }
    let r = call(&t, &mock, Method::POST, "/api/v2/entity", &auth, "nope").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(!v2_errors(&r).is_empty());
    assert_eq!(total_accepted(&mock), 2);

    // All valid: 200 {}.
    let r = call(
        &t,
        &mock,
        Method::POST,
        "/api/v2/batch",
        &auth,
        batch(&[person_entry("4")]),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(body_json(&r), json!({}));
    mock.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 3. Over-size bodies
// ---------------------------------------------------------------------------------------------

/// A syntactically valid v2 batch body of at least `size` bytes.
fn big_batch(size: usize) -> Vec<u8> {
    let filler = "z".repeat(900);
    let mut entries = Vec::new();
    let mut len = 0;
    let mut i = 0;
    while len < size {
        let e = json!({"type": "person", "identifiers": {"id": i.to_string()},
                        "action": "identify", "attributes": {"bio": filler}});
        len += e.to_string().len() + 1;
        entries.push(e);
        i += 1;
    }
    serde_json::to_vec(&json!({ "batch": entries })).unwrap()
}

#[tokio::test]
async fn oversize_v2_batch_is_refused_while_reading() {
    let mock = MockServer::builder().start().await.unwrap();
    let limit = mock.config().limits.batch_bytes;
    assert_eq!(limit, 512_000);
    let auth = track_auth("site", "key");

    // With a Content-Length over the limit.
    let body = big_batch(limit + 1000);
    assert!(body.len() > limit);
    let r = call(
        &transport(),
        &mock,
        Method::POST,
        "/api/v2/batch",
        &auth,
        body,
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let errors = v2_errors(&r);
    assert_eq!(errors[0]["reason"], "too_large");

    // Only the head of a request declaring too much: refused before the body is even sent.
    let head = format!(
        "POST /api/v2/batch HTTP/1.1\r\nHost: mock\r\nAuthorization: {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{{\"batch\":[",
        auth.to_str().unwrap(),
        limit + 1
    );
    let mut stream = TcpStream::connect(mock.addr()).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_answer(&mut stream).await;
    assert_eq!(answer.status(), Some(413), "{answer:?}");
    drop(stream);

    // Chunked, without a Content-Length, and never finished: the body goes past the limit but
    // its last chunk never comes, so only refusing while reading can produce an answer.
    let head = format!(
        "POST /api/v2/batch HTTP/1.1\r\nHost: mock\r\nAuthorization: {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        auth.to_str().unwrap()
    );
    let mut stream = TcpStream::connect(mock.addr()).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let writing = tokio::spawn(async move {
        let chunk = vec![b' '; 16 * 1024];
        let framed = [
            format!("{:x}\r\n", chunk.len()).as_bytes(),
            &chunk,
            b"\r\n".as_slice(),
        ]
        .concat();
        let mut sent = 0;
        while sent <= limit + 64 * 1024 {
            if writer.write_all(&framed).await.is_err() {
                return;
            }
            sent += chunk.len();
        }
        // Keep the request open: no terminating chunk, no close.
        std::future::pending::<()>().await;
    });
    let answer = read_answer(&mut reader).await;
    writing.abort();
    assert_eq!(answer.status(), Some(413), "{answer:?}");
    let RawOutcome::Answer { text, .. } = answer else {
        unreachable!()
    };
    assert!(text.contains("too_large"), "{text}");

    // Still serving.
    let r = identify(&transport(), &mock, &auth, "after-413").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(mock.stats().by_status.get("413"), Some(&3));
    assert_eq!(total_accepted(&mock), 1);
    mock.shutdown().await;
}

#[tokio::test]
async fn oversize_pipelines_call_gets_200_and_is_dropped() {
    let mock = MockServer::builder().start().await.unwrap();
    let t = transport();
    let auth = cdp_auth("write-key");
    let limit = mock.config().limits.entry_bytes;
    assert_eq!(limit, 32_768);

    let big = json!({"userId": "42", "traits": {"bio": "b".repeat(limit)}}).to_string();
    assert!(big.len() > limit);
    let r = call(&t, &mock, Method::POST, "/v1/identify", &auth, big).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "Customer.io answers 200 and drops it"
    );
    let stats = mock.stats();
    assert_eq!(stats.oversize_ignored, 1);
    assert_eq!(stats.accepted.get("cdp_identify"), None);
    assert_eq!(total_accepted(&mock), 0);

    // A call of exactly the limit is processed.
    let frame = json!({"userId": "42", "traits": {"bio": ""}}).to_string();
    let exact = json!({"userId": "42", "traits": {"bio": "b".repeat(limit - frame.len())}});
    let exact = exact.to_string();
    assert_eq!(exact.len(), limit);
    let r = call(&t, &mock, Method::POST, "/v1/identify", &auth, exact).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(mock.stats().accepted.get("cdp_identify"), Some(&1));
    assert_eq!(mock.stats().oversize_ignored, 1);

    // A batch over 500 KB: the same 200, nothing processed.
    let call_json = json!({"type": "track", "userId": "42", "event": "e",
                           "properties": {"pad": "p".repeat(1000)}});
    let calls = vec![call_json; 600];
    let body = serde_json::to_vec(&json!({ "batch": calls })).unwrap();
    assert!(body.len() > mock.config().limits.batch_bytes);
    let r = call(&t, &mock, Method::POST, "/v1/batch", &auth, body).await;
    assert_eq!(r.status, StatusCode::OK);
    let stats = mock.stats();
    assert_eq!(stats.oversize_ignored, 2);
    assert_eq!(stats.accepted.get("cdp_track"), None);
    assert_eq!(total_accepted(&mock), 1);
    mock.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 4. Rate limits
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn track_rate_limit_lets_the_burst_through_then_429s() {
    let mock = MockServer::builder()
        .track_rate(5, 5)
        .start()
        .await
        .unwrap();
    let t = transport();
    let auth = track_auth("site", "key");

    let started = Instant::now();
    let mut requests = JoinSet::new();
    for i in 0..20 {
        let (t, auth, url) = (t.clone(), auth.clone(), mock.url());
        requests.spawn(async move {
            t.send(
                Method::PUT,
                &format!("{url}/api/v1/customers/{i}"),
                &auth,
                Some(Bytes::from_static(b"{}")),
            )
            .await
            .expect("an answer")
        });
    }
    let mut answers = Vec::new();
    while let Some(r) = requests.join_next().await {
        answers.push(r.unwrap());
    }
    let elapsed = started.elapsed();

    let passed = answers
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    let limited: Vec<&RawResponse> = answers
        .iter()
        .filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!(passed + limited.len(), 20, "only 200s and 429s");
    // The burst, give or take one; on a slow machine the bucket refills 1 per 200 ms.
    let refilled = (elapsed.as_millis() / 200) as usize;
    assert!(
        (4..=6 + refilled).contains(&passed),
        "{passed} passed in {elapsed:?}"
    );
    for r in &limited {
        let retry_after = r
            .headers
            .get(header::RETRY_AFTER)
            .expect("Retry-After on a 429")
            .to_str()
            .unwrap();
        let secs: u64 = retry_after
            .parse()
            .unwrap_or_else(|_| panic!("Retry-After {retry_after:?} is not integer seconds"));
        assert!(secs >= 1);
        meta_error(r);
    }
    let stats = mock.stats();
    assert_eq!(stats.rate_limited, limited.len() as u64);
    assert_eq!(stats.by_status.get("429"), Some(&(limited.len() as u64)));
    assert_eq!(stats.accepted.get("identify"), Some(&(passed as u64)));

    // The App API has its own bucket: Track being exhausted does not block it.
    let r = call(
        &t,
        &mock,
        Method::POST,
        "/v1/send/email",
        &app_auth("k"),
        r#"{"transactional_message_id":1,"identifiers":{"id":"1"},"to":"a@example.com"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    mock.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 5. Faults
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn injected_errors_and_throttles() {
    let mock = MockServer::builder().unlimited().start().await.unwrap();
    let t = transport();
    let auth = track_auth("site", "key");

    mock.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    })
    .unwrap();
    for i in 0..10 {
        let r = identify(&t, &mock, &auth, &i.to_string()).await;
        assert!(
            [500, 502, 503].contains(&r.status.as_u16()),
            "got {}",
            r.status
        );
    }
    let stats = mock.stats();
    assert_eq!(stats.injected_errors, 10);
    assert_eq!(total_accepted(&mock), 0, "a 5xx is not an accepted write");

    mock.set_faults(Faults {
        throttle_rate: 1.0,
        ..Faults::default()
    })
    .unwrap();
    for i in 0..3 {
        let r = identify(&t, &mock, &auth, &i.to_string()).await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers.get(header::RETRY_AFTER).unwrap(), "1");
    }
    assert_eq!(mock.stats().injected_throttles, 3);
    assert_eq!(mock.stats().rate_limited, 0, "injected, not the limit");

    // An invalid fault set is refused and changes nothing.
    let before = mock.faults();
    assert!(mock
        .set_faults(Faults {
            error_rate: -0.5,
            ..Faults::default()
        })
        .is_err());
    assert_eq!(mock.faults(), before);
    mock.shutdown().await;
}

#[tokio::test]
async fn dropped_connections_get_no_answer() {
    let mock = MockServer::builder()
        .faults(Faults {
            drop_rate: 1.0,
            ..Faults::default()
        })
        .start()
        .await
        .unwrap();
    let t = transport();
    let result = t
        .send(
            Method::PUT,
            &format!("{}/api/v1/customers/1", mock.url()),
            &track_auth("site", "key"),
            Some(Bytes::from_static(b"{}")),
        )
        .await;
    let err = result.expect_err("a dropped connection has no answer");
    assert!(!err.to_string().is_empty());
    let stats = mock.stats();
    assert!(stats.dropped_connections >= 1);
    assert_eq!(total_accepted(&mock), 0);

    // Raw: the connection closes without a byte of an answer.
    let answer = raw_exchange(
        mock.addr(),
        b"DELETE /api/v1/customers/1 HTTP/1.1\r\nHost: mock\r\n\
          Authorization: Basic c2l0ZTprZXk=\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert!(matches!(answer, RawOutcome::Closed), "{answer:?}");
    assert!(mock.stats().dropped_connections >= 2);

    // The admin endpoints are never faulted.
    let stats = admin_get(&t, &mock, "/__mock/stats").await;
    assert!(stats["dropped_connections"].as_u64().unwrap() >= 2);
    mock.shutdown().await;
}

#[tokio::test]
async fn fixed_latency_delays_every_answer() {
    let mock = MockServer::builder()
        .faults(Faults {
            latency_ms: Some(Latency::fixed(Duration::from_millis(300))),
            ..Faults::default()
        })
        .start()
        .await
        .unwrap();
    let t = transport();
    let started = Instant::now();
    let r = identify(&t, &mock, &track_auth("site", "key"), "1").await;
    let took = started.elapsed();
    assert_eq!(r.status, StatusCode::OK);
    assert!(took >= Duration::from_millis(300), "took {took:?}");
    mock.shutdown().await;
}

#[tokio::test]
async fn faults_change_at_runtime_through_the_admin_api() {
    let mock = MockServer::builder().start().await.unwrap();
    let t = transport();

    let initial = admin_get(&t, &mock, "/__mock/faults").await;
    assert_eq!(initial["error_rate"], 0.0);
    assert!(initial["latency_ms"].is_null());

    let r = admin_post(&t, &mock, "/__mock/faults", r#"{"throttle_rate":0.25}"#).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = admin_post(
        &t,
        &mock,
        "/__mock/faults",
        r#"{"latency_ms":{"p50":1,"p99":5}}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);

    let now = admin_get(&t, &mock, "/__mock/faults").await;
    assert_eq!(now["latency_ms"]["p50"].as_f64(), Some(1.0));
    assert_eq!(now["latency_ms"]["p99"].as_f64(), Some(5.0));
    assert_eq!(
        now["throttle_rate"].as_f64(),
        Some(0.25),
        "a patch keeps absent fields"
    );
    let latency = mock.faults().latency_ms.expect("latency set");
    assert_eq!((latency.p50, latency.p99), (1.0, Some(5.0)));

    // Invalid: 400 with a message, and nothing changes.
    for bad in [
        r#"{"error_rate":2}"#,
        r#"{"error_rate":"lots"}"#,
        r#"{"no_such_fault":1}"#,
        r#"{"latency_ms":{"p50":10,"p99":5}}"#,
        "[]",
        "{",
    ] {
        let r = admin_post(&t, &mock, "/__mock/faults", bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        meta_error(&r);
        assert_eq!(admin_get(&t, &mock, "/__mock/faults").await, now, "{bad}");
    }
    mock.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 6. Stats
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn stats_count_event_ids_across_v1_and_v2_and_reset() {
    let mock = MockServer::builder().start().await.unwrap();
    let t = transport();
    let auth = track_auth("site", "key");

    let v1 = json!({"name": "signup", "id": EVENT_ID, "data": {"plan": "pro"}}).to_string();
    let r = call(
        &t,
        &mock,
        Method::POST,
        "/api/v1/customers/42/events",
        &auth,
        v1,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let v2 = json!({"type": "person", "identifiers": {"id": "42"}, "action": "event",
                    "name": "signup", "id": EVENT_ID, "attributes": {"plan": "pro"}});
    let r = call(
        &t,
        &mock,
        Method::POST,
        "/api/v2/batch",
        &auth,
        batch(std::slice::from_ref(&v2)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);

    let stats = admin_get(&t, &mock, "/__mock/stats").await;
    for key in [
        "requests",
        "by_status",
        "accepted",
        "rejected",
        "unique_event_ids",
        "duplicate_event_ids",
    ] {
        assert!(stats.get(key).is_some(), "stats lack {key}: {stats}");
    }
    assert_eq!(stats["requests"], 2);
    assert_eq!(stats["by_status"]["200"], 2);
    assert_eq!(stats["accepted"]["event"], 2);
    assert_eq!(stats["rejected"], 0);
    assert_eq!(stats["unique_event_ids"], 1);
    assert_eq!(stats["duplicate_event_ids"], 1);
    let typed = mock.stats();
    assert_eq!((typed.unique_event_ids, typed.duplicate_event_ids), (1, 1));

    let r = admin_post(&t, &mock, "/__mock/reset", "").await;
    assert_eq!(r.status, StatusCode::OK);
    let stats = admin_get(&t, &mock, "/__mock/stats").await;
    assert_eq!(stats["requests"], 0);
    assert_eq!(stats["by_status"], json!({}));
    assert_eq!(stats["accepted"], json!({}));
    assert_eq!(stats["unique_event_ids"], 0);
    assert_eq!(stats["duplicate_event_ids"], 0);

    // The seen ids were cleared too: the same id is new again.
    let r = call(
        &t,
        &mock,
        Method::POST,
        "/api/v2/entity",
        &auth,
        v2.to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let typed = mock.stats();
    assert_eq!((typed.unique_event_ids, typed.duplicate_event_ids), (1, 0));
    mock.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 7. Hostile input
// ---------------------------------------------------------------------------------------------

const HOSTILE_THREADS: &str = "mock-hostile";
static HOSTILE_PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts panics on the hostile test's runtime threads. Tokio catches a panic in a spawned task
/// (a connection), so without this a panic in the server would go unnoticed.
fn count_hostile_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some(HOSTILE_THREADS) {
                HOSTILE_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
}

/// JSON nested `depth` levels deep: arrays, with an object every tenth level (about 2.4 bytes a
/// level, so 10,000 levels stay under every body limit).
fn deep_json(depth: usize) -> String {
    let object = |i: usize| i % 10 == 9;
    let mut s = String::with_capacity(depth * 3 + 8);
    for i in 0..depth {
        s.push_str(if object(i) { "{\"a\":" } else { "[" });
    }
    s.push('1');
    for i in (0..depth).rev() {
        s.push(if object(i) { '}' } else { ']' });
    }
    s
}

#[test]
fn hostile_input_never_panics_or_stops_the_server() {
    count_hostile_panics();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(HOSTILE_THREADS)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(hostile_input());
    drop(rt);
    assert_eq!(
        HOSTILE_PANICS.load(Ordering::SeqCst),
        0,
        "the server panicked"
    );
}

async fn hostile_input() {
    let mock = Arc::new(MockServer::builder().unlimited().start().await.unwrap());
    let addr = mock.addr();
    let auth = track_auth("site", "key");
    let basic = auth.to_str().unwrap().to_owned();

    // Normal traffic all along.
    let normal = {
        let (mock, auth) = (mock.clone(), auth.clone());
        tokio::spawn(async move {
            let t = transport();
            for i in 0..100 {
                let r = identify(&t, &mock, &auth, &format!("normal-{i}")).await;
                assert_eq!(r.status, StatusCode::OK, "normal traffic got {}", r.status);
            }
        })
    };

    let mut cases: JoinSet<()> = JoinSet::new();
    cases.spawn(async move {
        let mut garbage: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        garbage.extend_from_slice(b"\r\n\r\n");
        let answer = raw_exchange(addr, &garbage).await;
        assert!(
            matches!(answer.status(), None | Some(400)),
            "garbage: {answer:?}"
        );
    });
    cases.spawn(async move {
        let answer = raw_exchange(
            addr,
            b"GET /api/v1/\xff\xfe\xc3\x28 HTTP/1.1\r\nHost: mock\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(
            matches!(answer.status(), None | Some(400)),
            "invalid UTF-8 request line: {answer:?}"
        );
    });
    {
        let basic = basic.clone();
        cases.spawn(async move {
            let request = format!(
                "PUT /api/v1/customers/1 HTTP/1.1\r\nHost: mock\r\nAuthorization: {basic}\r\n\
                 X-Huge: {}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}",
                "h".repeat(200 * 1024)
            );
            let answer = raw_exchange(addr, request.as_bytes()).await;
            assert!(
                matches!(answer.status(), None | Some(431)),
                "200 KB header: {answer:?}"
            );
        });
    }
    let json_cases: Vec<(&str, Method, &str, HeaderValue, Bytes, u16)> = vec![
        (
            "%FF%FE path segment",
            Method::PUT,
            "/api/v1/customers/%FF%FE",
            auth.clone(),
            Bytes::from_static(b"{}"),
            400,
        ),
        (
            "invalid UTF-8 body",
            Method::PUT,
            "/api/v1/customers/1",
            auth.clone(),
            Bytes::from_static(b"{\"email\":\"\xff\xfe\"}"),
            400,
        ),
        (
            "not JSON body",
            Method::PUT,
            "/api/v1/customers/1",
            auth.clone(),
            Bytes::from_static(b"\x00\x01\x02 plain text"),
            400,
        ),
        (
            "deep v1",
            Method::PUT,
            "/api/v1/customers/1",
            auth.clone(),
            Bytes::from(format!("{{\"a\":{}}}", deep_json(10_000))),
            400,
        ),
        (
            // The body is well-formed up to its entries (kept as sent text); the one entry is an
            // array nested 10,000 deep, refused on its own: a 207 naming batch_index 0.
            "deep v2 batch",
            Method::POST,
            "/api/v2/batch",
            auth.clone(),
            Bytes::from(format!("{{\"batch\":[{}]}}", deep_json(10_000))),
            207,
        ),
        (
            "deep v2 entity",
            Method::POST,
            "/api/v2/entity",
            auth.clone(),
            Bytes::from(deep_json(10_000)),
            400,
        ),
        (
            "deep App send",
            Method::POST,
            "/v1/send/email",
            app_auth("k"),
            Bytes::from(format!("{{\"message_data\":{}}}", deep_json(10_000))),
            400,
        ),
        (
            "deep Pipelines",
            Method::POST,
            "/v1/track",
            cdp_auth("k"),
            Bytes::from(format!("{{\"properties\":{}}}", deep_json(10_000))),
            // Invalid, and without strict mode: 200 and dropped, as Customer.io does.
            200,
        ),
        (
            "deep Pipelines batch",
            Method::POST,
            "/v1/batch",
            cdp_auth("k"),
            Bytes::from(format!("{{\"batch\":[{}]}}", deep_json(10_000))),
            // Invalid, and without strict mode: 200 and dropped, as Customer.io does.
            200,
        ),
        (
            "deep faults",
            Method::POST,
            "/__mock/faults",
            auth.clone(),
            Bytes::from(deep_json(10_000)),
            400,
        ),
    ];
    for (name, method, path, auth, body, expected) in json_cases {
        let mock = mock.clone();
        cases.spawn(async move {
            let r = call(&transport(), &mock, method, path, &auth, body).await;
            assert_eq!(r.status.as_u16(), expected, "{name}: {:?}", r.body);
        });
    }
    {
        // 10,000 tiny entries within the size limit: every other one invalid.
        let mock = mock.clone();
        let auth = auth.clone();
        cases.spawn(async move {
            let valid = json!({"type": "person", "identifiers": {"id": "1"}, "action": "delete"});
            let entries: Vec<Value> = (0..10_000)
                .map(|i| if i % 2 == 0 { valid.clone() } else { json!({}) })
                .collect();
            let body = batch(&entries);
            assert!(body.len() <= 512_000, "{} bytes", body.len());
            let r = call(
                &transport(),
                &mock,
                Method::POST,
                "/api/v2/batch",
                &auth,
                body,
            )
            .await;
            assert_eq!(r.status, StatusCode::MULTI_STATUS);
            let errors = v2_errors(&r);
            assert_eq!(errors.len(), 5_000);
            assert!(errors
                .iter()
                .enumerate()
                .all(|(n, e)| e["batch_index"].as_u64() == Some(2 * n as u64 + 1)));
        });
    }
    while let Some(case) = cases.join_next().await {
        if let Err(e) = case {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    if let Err(e) = normal.await {
        std::panic::resume_unwind(e.into_panic());
    }

    // Afterwards, a normal request still gets its 200.
    let r = identify(&transport(), &mock, &auth, "after").await;
    assert_eq!(r.status, StatusCode::OK);
    let stats = mock.stats();
    assert_eq!(stats.accepted.get("identify"), Some(&101));
    assert_eq!(stats.accepted.get("delete"), Some(&5_000));
    match Arc::try_unwrap(mock) {
        Ok(mock) => mock.shutdown().await,
        Err(_) => panic!("a task still holds the mock"),
    }
}

// ---------------------------------------------------------------------------------------------
// 8. Many clients at once
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_clients_all_get_answers() {
    const CLIENTS: usize = 500;
    let mock = MockServer::builder().unlimited().start().await.unwrap();
    let url = mock.url();
    let auth = track_auth("site", "key");
    let options = ClientOptions {
        // Generous: 500 connections at once on a 2-core machine in a debug build.
        timeout: Duration::from_secs(60),
        ..ClientOptions::default()
    };
    let start = Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let mut clients = JoinSet::new();
    for i in 0..CLIENTS {
        // Its own Transport: its own pool, so its own connection.
        let t = Transport::new(&options);
        let (start, auth, url) = (start.clone(), auth.clone(), url.clone());
        clients.spawn(async move {
            start.wait().await;
            t.send(
                Method::PUT,
                &format!("{url}/api/v1/customers/client-{i}"),
                &auth,
                Some(Bytes::from_static(br#"{"plan":"pro"}"#)),
            )
            .await
            .map(|r| r.status)
        });
    }
    let mut ok = 0;
    while let Some(r) = clients.join_next().await {
        match r.unwrap() {
            Ok(StatusCode::OK) => ok += 1,
            other => panic!("a client got {other:?}"),
        }
    }
    assert_eq!(ok, CLIENTS);
    let stats = mock.stats();
    assert_eq!(stats.accepted.get("identify"), Some(&(CLIENTS as u64)));
    assert_eq!(stats.requests, CLIENTS as u64);
    mock.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 9. Shutdown
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn shutdown_is_graceful_and_prompt() {
    let mock = MockServer::builder()
        .faults(Faults {
            latency_ms: Some(Latency::fixed(Duration::from_millis(500))),
            ..Faults::default()
        })
        .start()
        .await
        .unwrap();
    let (addr, url) = (mock.addr(), mock.url());
    let in_flight = tokio::spawn(async move {
        transport()
            .send(
                Method::PUT,
                &format!("{url}/api/v1/customers/1"),
                &track_auth("site", "key"),
                Some(Bytes::from_static(b"{}")),
            )
            .await
    });
    wait_until("the request to reach the mock", || {
        mock.stats().requests == 1
    })
    .await;

    let started = Instant::now();
    mock.shutdown().await;
    let took = started.elapsed();
    // The in-flight request needs at most 500 ms more; the drain timeout is 5 s.
    assert!(
        took < Duration::from_secs(4),
        "shutdown took {took:?} with one request in flight"
    );

    let answer = in_flight
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(answer.status, StatusCode::OK);

    let refused = TcpStream::connect(addr).await;
    assert!(
        refused.is_err(),
        "a new connection was accepted after shutdown"
    );
}

// ---------------------------------------------------------------------------------------------
// Keep-alive after early answers
// ---------------------------------------------------------------------------------------------

/// One request with `body` on an open connection: `Content-Length` framed, `Connection`
/// left to the default (keep-alive).
fn request(method: &str, path: &str, auth: &str, body: &str) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: mock\r\nAuthorization: {auth}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn says_close(answer: &RawOutcome) -> bool {
    matches!(answer, RawOutcome::Answer { text, .. }
        if text.to_ascii_lowercase().contains("\r\nconnection: close\r\n"))
}

/// Answers given before the body is read (a 401, a 429, a 404) read the rest of a small body
/// first and keep the connection: the next request on it is served. An oversize entity is
/// answered with `Connection: close`, and the connection is closed after it.
#[tokio::test]
async fn early_answers_keep_the_connection_usable_or_say_it_closes() {
    let mock = MockServer::builder()
        .track_credentials("site", "key")
        .track_rate(1, 1)
        .start()
        .await
        .unwrap();
    let good = track_auth("site", "key");
    let good = good.to_str().unwrap();
    let bad = track_auth("site", "wrong");
    let bad = bad.to_str().unwrap();
    let entity = serde_json::to_string(&person_entry("p1")).unwrap();
    let padded = format!("{{\"pad\":\"{}\"}}", "x".repeat(8 * 1024));
    let mut s = TcpStream::connect(mock.addr()).await.unwrap();
    let mut exchange = async |req: Vec<u8>| {
        s.write_all(&req).await.unwrap();
        read_answer(&mut s).await
    };
    // 401 before the body is read; then 429 (the 1/s limit is spent); then a 404.
    let cases = [
        request("POST", "/api/v2/entity", bad, &padded),
        request("POST", "/api/v2/entity", good, &entity),
        request("POST", "/api/v2/entity", good, &padded),
        request("POST", "/api/v9/nothing", good, &padded),
    ];
    let mut statuses = Vec::new();
    for req in cases {
        let answer = exchange(req).await;
        assert!(!says_close(&answer), "{answer:?}");
        statuses.push(answer.status());
    }
    assert_eq!(statuses, [Some(401), Some(200), Some(429), Some(404)]);
    // A body past what the mock reads and drops after an early answer (4 MiB): the answer
    // closes the connection.
    let head = format!(
        "POST /api/v2/entity HTTP/1.1\r\nHost: mock\r\nAuthorization: {good}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{{\"pad\":\"",
        5 << 20
    );
    let answer = exchange(head.into_bytes()).await;
    assert_eq!(answer.status(), Some(429), "{answer:?}");
    assert!(says_close(&answer), "{answer:?}");
    mock.shutdown().await;

    // An entity over its 32 KB limit: read to its end and refused; the connection goes on.
    let mock = MockServer::builder().unlimited().start().await.unwrap();
    let limit = mock.config().limits.entry_bytes;
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(limit + 100));
    let mut s = TcpStream::connect(mock.addr()).await.unwrap();
    for want in [413, 200] {
        let body = if want == 413 { &huge } else { &entity };
        s.write_all(&request("POST", "/api/v2/entity", good, body))
            .await
            .unwrap();
        let answer = read_answer(&mut s).await;
        assert_eq!(answer.status(), Some(want), "{answer:?}");
        assert!(!says_close(&answer), "{answer:?}");
    }
    // A client that waits for 100 Continue is refused at once, and the connection closes.
    let head = format!(
        "POST /api/v2/entity HTTP/1.1\r\nHost: mock\r\nAuthorization: {good}\r\n\
         Content-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        limit + 100
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let answer = read_answer(&mut s).await;
    assert_eq!(answer.status(), Some(413), "{answer:?}");
    assert!(says_close(&answer), "{answer:?}");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "closed after the answer: {closed:?} {rest:?}"
    );
    mock.shutdown().await;
}

/// A pooled client (cio_api's transport, which reuses idle connections) sends an oversize
/// entity, an oversize batch, a 401 and a 400 with a body, each followed at once by good
/// requests, 40 times:
/// no request ever meets a closed or reset connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_client_never_reuses_a_connection_into_a_reset() {
    let mock = MockServer::builder()
        .unlimited()
        .track_credentials("site", "key")
        .start()
        .await
        .unwrap();
    let t = transport();
    let good = track_auth("site", "key");
    let bad = track_auth("site", "wrong");
    let limit = mock.config().limits.entry_bytes;
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(limit + 100));
    let invalid = json!({"type": "person", "action": "identify", "identifiers": {}}).to_string();
    let entity = serde_json::to_string(&person_entry("p1")).unwrap();
    let huge_batch = String::from_utf8(big_batch(mock.config().limits.batch_bytes + 1000)).unwrap();
    let url = format!("{}/api/v2/entity", mock.url());
    let batch_url = format!("{}/api/v2/batch", mock.url());
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for round in 0..40 {
        for (auth, body, want) in [
            (&good, &huge, 413),
            (&good, &entity, 200),
            (&good, &huge_batch, 413),
            (&good, &entity, 200),
            (&bad, &entity, 401),
            (&good, &entity, 200),
            (&good, &invalid, 400),
            (&good, &entity, 200),
            (&good, &entity, 200),
        ] {
            let url = if body == &huge_batch {
                batch_url.clone()
            } else {
                url.clone()
            };
            let r = t
                .send(Method::POST, &url, auth, Some(Bytes::from(body.clone())))
                .await
                .unwrap_or_else(|e| panic!("round {round}, expecting {want}: {e}"));
            assert_eq!(r.status.as_u16(), want, "round {round}");
            *statuses.entry(want).or_default() += 1;
        }
    }
    assert_eq!(statuses[&200], 200);
    mock.shutdown().await;
}

/// An invalid Pipelines call gets 200 and is dropped (counted in `ignored`) unless the request
/// asks for strict mode, as Customer.io does; then a 400 with the reason.
#[tokio::test]
async fn invalid_pipelines_calls_are_ignored_unless_strict() {
    let mock = MockServer::builder().start().await.unwrap();
    let auth = cdp_auth("write-key");
    let auth = auth.to_str().unwrap();
    let send = |strict: Option<&str>, body: &str| {
        let header = strict
            .map(|v| format!("X-Strict-Mode: {v}\r\n"))
            .unwrap_or_default();
        format!(
            "POST /v1/track HTTP/1.1\r\nHost: mock\r\nAuthorization: {auth}\r\n{header}\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let no_event = r#"{"userId":"42","properties":{"plan":"pro"}}"#;
    let good = r#"{"userId":"42","event":"signup"}"#;
    let cases = [
        (None, no_event, 200),
        (Some("0"), no_event, 200),
        (Some("1"), no_event, 400),
        (Some("true"), no_event, 400),
        (Some("1"), good, 200),
        (None, good, 200),
    ];
    for (strict, body, want) in cases {
        let answer = raw_exchange(mock.addr(), send(strict, body).as_bytes()).await;
        assert_eq!(answer.status(), Some(want), "{strict:?} {body}: {answer:?}");
        if want == 400 {
            let RawOutcome::Answer { text, .. } = &answer else {
                unreachable!()
            };
            assert!(text.contains("event"), "the reason names the field: {text}");
        }
    }
    let stats = mock.stats();
    assert_eq!((stats.ignored, stats.rejected), (2, 2), "{stats:?}");
    assert_eq!(stats.accepted.get("cdp_track"), Some(&2), "{stats:?}");
    mock.shutdown().await;
}

/// What the mock answers when a client sends what Customer.io refuses: an empty broadcast
/// audience (422), two audiences (422), a broadcast again within its interval (429 with
/// Retry-After), a push metric `/push/events` does not take (400), an unsubscribe without its
/// flag (400) or with GET (405).
#[tokio::test]
async fn the_mock_refuses_broadcasts_push_metrics_and_unsubscribes_as_customer_io_does() {
    let mock = MockServer::builder().app_limit(None).start().await.unwrap();
    let t = transport();
    let app = app_auth("app");
    let track = track_auth("site", "key");
    let cases: Vec<(Method, &str, &HeaderValue, String, u16)> = vec![
        (
            Method::POST,
            "/v1/campaigns/3/triggers",
            &app,
            r#"{"recipients":{}}"#.into(),
            422,
        ),
        (
            Method::POST,
            "/v1/campaigns/3/triggers",
            &app,
            r#"{"ids":["1"],"emails":["a@example.com"]}"#.into(),
            422,
        ),
        (
            Method::POST,
            "/v1/campaigns/3/triggers",
            &app,
            r#"{"ids":["1"]}"#.into(),
            200,
        ),
        (
            Method::POST,
            "/v1/campaigns/3/triggers",
            &app,
            r#"{"ids":["2"]}"#.into(),
            429,
        ),
        (
            Method::POST,
            "/api/v1/push/events",
            &track,
            r#"{"delivery_id":"d","event":"clicked","device_id":"t"}"#.into(),
            400,
        ),
        (
            Method::POST,
            "/api/v1/push/events",
            &track,
            r#"{"delivery_id":"d","event":"converted","device_id":"t"}"#.into(),
            200,
        ),
        (Method::POST, "/unsubscribe/d-9", &track, "{}".into(), 400),
        (Method::GET, "/unsubscribe/d-9", &track, String::new(), 405),
        (
            Method::POST,
            "/unsubscribe/d-9",
            &track,
            r#"{"unsubscribe":true}"#.into(),
            200,
        ),
    ];
    for (method, path, auth, body, want) in cases {
        let r = call(&t, &mock, method.clone(), path, auth, body.clone()).await;
        assert_eq!(
            r.status.as_u16(),
            want,
            "{method} {path} {body}: {:?}",
            r.body
        );
        if want == 429 {
            let wait: u64 = r.headers[header::RETRY_AFTER]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=10).contains(&wait), "{wait}");
        }
    }
    let stats = mock.stats();
    assert_eq!(stats.accepted.get("unsubscribe"), Some(&1), "{stats:?}");
    assert_eq!(
        stats.accepted.get("broadcast_trigger"),
        Some(&1),
        "{stats:?}"
    );
    mock.shutdown().await;
}
