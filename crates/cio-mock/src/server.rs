//! The accept loop, per-request pipeline (drop, auth, limits, faults, body, route, latency) and
//! the `/__mock/*` admin endpoints.
//!
//! Each exchange goes through tower-http's `Trace` layer (a DEBUG span and line per request).
//! Body limits are our own, not tower-http's `RequestBodyLimit`: that layer answers 413 without
//! reading the rest of the body, and hyper then closes the connection unannounced, which is
//! what broke pooled clients (the official Node SDK met `EPIPE` in 49 runs of 50). Here a body
//! over its limit is read to its end and dropped, within bounds, and only past them does the
//! answer say `Connection: close` (see `read_body` and `drain`).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use governor::clock::Clock;
use http::{header, HeaderValue, Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use rand::Rng;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower_http::trace::{DefaultMakeSpan, DefaultOnFailure, DefaultOnResponse, TraceLayer};

use crate::answer::{json, meta_error, Answer};
use crate::config::Faults;
use crate::state::State;
use crate::{app, track};

/// Which API a path belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Api {
    Track,
    App,
    Pipelines,
}

fn classify(path: &str) -> Option<Api> {
    if path.starts_with("/api/v1/")
        || path.starts_with("/api/v2/")
        || path.starts_with("/unsubscribe/")
    {
        return Some(Api::Track);
    }
    let rest = path.strip_prefix("/v1/")?;
    if rest.starts_with("send/")
        || rest.starts_with("campaigns/")
        || rest == "customers"
        || rest.starts_with("customers/")
    {
        return Some(Api::App);
    }
    let first = rest.split('/').next().unwrap_or_default();
    if cio_api::CallKind::parse(first).is_some() || first == "batch" {
        return Some(Api::Pipelines);
    }
    None
}

/// The error that makes hyper close a connection without answering (the `drop_rate` fault).
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for Dropped {}

pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    tls: Option<crate::tls::TlsIdentity>,
    shutdown: CancellationToken,
) {
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        while conns.try_join_next().is_some() {}
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let shutdown = shutdown.clone();
        match &tls {
            None => {
                conns.spawn(connection(stream, state, shutdown));
            }
            Some(tls) => {
                let acceptor = tls.acceptor();
                conns.spawn(async move {
                    // A client that never finishes its handshake does not hold a task for ever.
                    let handshake = acceptor.accept(stream);
                    match tokio::time::timeout(Duration::from_secs(10), handshake).await {
                        Ok(Ok(stream)) => connection(stream, state, shutdown).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                });
            }
        }
    }
    // Let in-flight requests finish (each connection shuts down gracefully).
    let _ = tokio::time::timeout(Duration::from_secs(6), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
}

/// Serves one connection, plain or TLS, until it closes or the server shuts down.
async fn connection<IO>(stream: IO, state: Arc<State>, shutdown: CancellationToken)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // Each request in a span with its method and path, its answer logged with the status and
    // the time taken: `RUST_LOG=tower_http=debug` shows every exchange. At debug level, the
    // 5xx the mock injects included: they are what it was asked for, not failures of its own.
    let service = tower::ServiceBuilder::new()
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(tracing::Level::DEBUG))
                .on_response(DefaultOnResponse::new().level(tracing::Level::DEBUG))
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
        .service(tower::service_fn(move |req| handle(state.clone(), req)));
    let service = hyper_util::service::TowerToHyperService::new(service);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Answer, Dropped> {
    let path = req.uri().path();
    if path.starts_with("/__mock/") {
        return Ok(admin(&state, req).await);
    }
    state.stats.request();
    let mut req = req;
    if let Some(target) = &state.config.redirect_to {
        match redirect(target, req.uri()) {
            Redirect::To(location) => {
                let mut answer = meta_error(
                    StatusCode::TEMPORARY_REDIRECT,
                    format!("this account lives at {target}"),
                );
                if let Ok(v) = HeaderValue::from_str(&location) {
                    answer.headers_mut().insert(header::LOCATION, v);
                }
                let (_, body) = req.into_parts();
                settle_unread(body, &mut answer).await;
                state.stats.status(answer.status().as_u16());
                return Ok(answer);
            }
            Redirect::Served(uri) => *req.uri_mut() = uri,
        }
    }
    let faults = state.faults();
    let (drop, z) = {
        let mut rng = rand::thread_rng();
        (
            rng.gen::<f64>() < faults.drop_rate,
            standard_normal(&mut rng),
        )
    };
    if drop {
        state
            .stats
            .dropped_connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Err(Dropped);
    }
    let (parts, body) = req.into_parts();
    let mut body = Some(body);
    let mut answer = api(&state, &faults, Request::from_parts(parts, ()), &mut body).await;
    if let Some(body) = body {
        // Answered without reading the body (a 401, a 429, an unknown path): read it to its end
        // first, so the connection stays usable, or say it closes.
        settle_unread(body, &mut answer).await;
    }
    if let Some(latency) = faults.latency_ms {
        let d = latency.sample(z);
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }
    state.stats.status(answer.status().as_u16());
    Ok(answer)
}

/// What `--redirect-to` does with a request.
enum Redirect {
    /// Answer 307 with this `Location`.
    To(String),
    /// Serve it, at this URI (the redirect target's path prefix taken off).
    Served(http::Uri),
}

fn redirect(target: &http::Uri, uri: &http::Uri) -> Redirect {
    let prefix = target.path().trim_end_matches('/');
    let path = uri.path();
    if !prefix.is_empty() {
        if let Some(rest) = path.strip_prefix(prefix).filter(|r| r.starts_with('/')) {
            let rest = match uri.query() {
                Some(q) => format!("{rest}?{q}"),
                None => rest.to_owned(),
            };
            if let Ok(u) = rest.parse() {
                return Redirect::Served(u);
            }
        }
    }
    let base = target.to_string();
    let base = base.trim_end_matches('/');
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    Redirect::To(format!("{base}{path}{query}"))
}

fn standard_normal(rng: &mut impl Rng) -> f64 {
    // Box–Muller.
    let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

async fn api(
    state: &State,
    faults: &Faults,
    req: Request<()>,
    body: &mut Option<Incoming>,
) -> Answer {
    let Some(api) = classify(req.uri().path()) else {
        return meta_error(
            StatusCode::NOT_FOUND,
            format!("no such endpoint: {} {}", req.method(), req.uri().path()),
        );
    };
    if let Err(answer) = authorize(state, api, req.headers()) {
        state
            .stats
            .unauthorized
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return answer;
    }
    let limiter = match api {
        Api::Track => &state.track_limiter,
        Api::App => &state.app_limiter,
        Api::Pipelines => &state.pipelines_limiter,
    };
    if let Some(l) = limiter {
        if let Err(not_until) = l.check() {
            state
                .stats
                .rate_limited
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            return too_many(secs, "rate limit exceeded");
        }
    }
    if api == Api::Track {
        state.stats.track_admitted();
    }
    let (throttle, error) = {
        let mut rng = rand::thread_rng();
        (
            rng.gen::<f64>() < faults.throttle_rate,
            (rng.gen::<f64>() < faults.error_rate).then(|| [500u16, 502, 503][rng.gen_range(0..3)]),
        )
    };
    if throttle {
        state
            .stats
            .injected_throttles
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return too_many(faults.retry_after_s.unwrap_or(1), "throttled (injected)");
    }
    if let Some(status) = error {
        state
            .stats
            .injected_errors
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return meta_error(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "injected fault",
        );
    }
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let method = req.method().clone();
    let strict = api == Api::Pipelines
        && req
            .headers()
            .get(cio_api::STRICT_MODE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    let max = match (api, path.as_str()) {
        (Api::Track, "/api/v2/batch") => state.config.limits.batch_bytes,
        (Api::Track, "/api/v2/entity") => state.config.limits.entry_bytes,
        _ => state.config.max_body_bytes,
    };
    let declared = content_length(req.headers());
    let Some(incoming) = body.take() else {
        return meta_error(StatusCode::INTERNAL_SERVER_ERROR, "the body was read twice");
    };
    let body = match read_body(incoming, declared, max, expects_continue(req.headers())).await {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    match api {
        Api::Track => track::route(state, &method, &path, query.as_deref(), &body),
        Api::App => app::route_app(state, &method, &path, query.as_deref(), &body),
        Api::Pipelines => app::route_pipelines(state, &method, &path, strict, &body),
    }
}

fn too_many(retry_after_secs: u64, message: &str) -> Answer {
    let mut r = meta_error(StatusCode::TOO_MANY_REQUESTS, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    r
}

/// The request's `Content-Length`, when it gives one.
fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// The most of a body the mock reads and drops when it will not use it (an answer given before
/// reading, or a body over its limit), so that the client is not cut off while it still sends
/// and the connection stays usable: 4 MiB, eight times the largest request Customer.io takes.
/// More, and the answer closes the connection instead.
const DRAIN_MAX: u64 = 4 << 20;

/// How long that reading may take; a slower body also closes the connection.
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Marks `answer` as the connection's last (`Connection: close`): hyper closes it once the
/// answer is written, and a pooling client knows not to send on it again.
fn closing(mut answer: Answer) -> Answer {
    mark_closing(&mut answer);
    answer
}

fn mark_closing(answer: &mut Answer) {
    answer
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
}

/// Reads what is left of `body` and drops it: `true` when it ended within [`DRAIN_MAX`] bytes
/// (counting `already` read) and [`DRAIN_TIME`].
async fn drain(mut body: Incoming, already: u64) -> bool {
    use hyper::body::Body as _;
    if body
        .size_hint()
        .exact()
        .is_some_and(|n| already + n > DRAIN_MAX)
    {
        return false;
    }
    let mut total = already;
    let read_to_end = async {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            if let Some(data) = frame.data_ref() {
                total += data.len() as u64;
                if total > DRAIN_MAX {
                    return false;
                }
            }
        }
        true
    };
    tokio::time::timeout(DRAIN_TIME, read_to_end)
        .await
        .unwrap_or(false)
}

/// After an answer given without reading the body (a 401, a 429, an unknown path): reads the
/// rest and drops it, or, past [`drain`]'s bounds, makes the answer the connection's last.
/// Either way no client reuses a connection that still holds the rest of a request.
async fn settle_unread(body: Incoming, answer: &mut Answer) {
    use hyper::body::Body as _;
    if !body.is_end_stream() && !drain(body, 0).await {
        mark_closing(answer);
    }
}

/// Whether the client waits for `100 Continue` before sending the body: then a refusal is
/// answered at once, and closes (the body will not come).
fn expects_continue(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
}

/// Reads the body, keeping at most `max` bytes (memory stays bounded). A body over `max` is
/// refused with a 413 once read to its end (within [`drain`]'s bounds, so the connection stays
/// usable) or, past them, with a 413 that closes the connection.
async fn read_body(
    mut body: Incoming,
    declared: Option<u64>,
    max: usize,
    expect_continue: bool,
) -> Result<Bytes, Answer> {
    let too_large = |n: Option<u64>| {
        let size = n
            .map(|n| format!("{n} bytes"))
            .unwrap_or_else(|| "more".into());
        json(
            StatusCode::PAYLOAD_TOO_LARGE,
            &json!({"errors": [{"reason": "too_large", "field": "body",
                "message": format!("request body is {size}, over the limit of {max} bytes")}]}),
        )
    };
    if declared.is_some_and(|n| n > max as u64) {
        if expect_continue || !drain(body, 0).await {
            return Err(closing(too_large(declared)));
        }
        return Err(too_large(declared));
    }
    let mut kept = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                return Err(closing(meta_error(
                    StatusCode::BAD_REQUEST,
                    format!("could not read the request body: {e}"),
                )))
            }
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if kept.len() + data.len() > max {
            // Over the limit: the rest is read and dropped, not kept.
            let read = (kept.len() + data.len()) as u64;
            drop(kept);
            return Err(if drain(body, read).await {
                too_large(None)
            } else {
                closing(too_large(None))
            });
        }
        kept.extend_from_slice(&data);
    }
    Ok(kept.freeze())
}

fn authorize(state: &State, api: Api, headers: &http::HeaderMap) -> Result<(), Answer> {
    let unauthorized = |why: &str| {
        let mut r = meta_error(
            StatusCode::UNAUTHORIZED,
            format!("Unauthorized request: {why}"),
        );
        let challenge = if api == Api::App {
            "Bearer"
        } else {
            "Basic realm=\"customer.io\""
        };
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
        r
    };
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(unauthorized("no Authorization header"));
    };
    let creds = &state.config.credentials;
    match api {
        Api::App => {
            let Some(token) = strip_scheme(value, "Bearer").filter(|t| !t.is_empty()) else {
                return Err(unauthorized(
                    "the App API expects Authorization: Bearer <app api key>",
                ));
            };
            match &creds.app {
                Some(c) if c.app_api_key.expose() != token => {
                    Err(unauthorized("wrong App API key"))
                }
                _ => Ok(()),
            }
        }
        Api::Track | Api::Pipelines => {
            let Some((user, pass)) = basic(value) else {
                return Err(unauthorized("expected HTTP Basic credentials"));
            };
            if user.is_empty() {
                return Err(unauthorized("empty user name"));
            }
            let ok = match (api, &creds.track, &creds.pipelines) {
                (Api::Track, Some(c), _) => c.site_id == user && c.api_key.expose() == pass,
                (Api::Pipelines, _, Some(c)) => c.write_key.expose() == user,
                _ => true,
            };
            if ok {
                Ok(())
            } else {
                Err(unauthorized("wrong credentials"))
            }
        }
    }
}

/// The credentials after an auth scheme, which HTTP compares case-insensitively.
fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = value.split_once(' ')?;
    given
        .eq_ignore_ascii_case(scheme)
        .then(|| rest.trim_start())
}

fn basic(value: &str) -> Option<(String, String)> {
    let token = strip_scheme(value, "Basic")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

async fn admin(state: &State, req: Request<Incoming>) -> Answer {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    match (method, path.as_str()) {
        (Method::GET, "/__mock/stats") => json(
            StatusCode::OK,
            &serde_json::to_value(state.snapshot()).unwrap_or(Value::Null),
        ),
        (Method::POST, "/__mock/reset") => {
            state.reset();
            json(StatusCode::OK, &json!({}))
        }
        (Method::GET, "/__mock/faults") => json(
            StatusCode::OK,
            &serde_json::to_value(state.faults()).unwrap_or(Value::Null),
        ),
        (Method::POST, "/__mock/faults") => {
            let declared = content_length(req.headers());
            let expect = expects_continue(req.headers());
            let body = match read_body(req.into_body(), declared, 64 * 1024, expect).await {
                Ok(b) => b,
                Err(a) => return a,
            };
            match patch_faults(state.faults(), &body).and_then(|f| state.set_faults(f).map(|()| f)) {
                Ok(f) => json(StatusCode::OK, &serde_json::to_value(f).unwrap_or(Value::Null)),
                Err(e) => meta_error(StatusCode::BAD_REQUEST, e),
            }
        }
        (Method::GET, "/__mock/health") => json(StatusCode::OK, &json!({"ok": true})),
        (Method::GET, p) if p.starts_with("/__mock/people/") || p.starts_with("/__mock/objects/") => {
            kept(state, p, req.uri().query())
        }
        (m, p) => meta_error(
            StatusCode::NOT_FOUND,
            format!("no such admin endpoint: {m} {p} (try GET /__mock/stats, POST /__mock/reset, GET|POST /__mock/faults, GET /__mock/people/{{id}}, GET /__mock/objects/{{type}}/{{id}})"),
        ),
    }
}

/// `GET /__mock/people/{id}?id_type=id|email|cio_id` (everything kept of a person, suppressed
/// ones too) and `GET /__mock/objects/{object_type_id}/{object_id}`.
fn kept(state: &State, path: &str, query: Option<&str>) -> Answer {
    let Some(store) = &state.store else {
        return meta_error(
            StatusCode::NOT_IMPLEMENTED,
            "this mock keeps no state (keep_state off / --no-state)",
        );
    };
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    if let Some(id) = path.strip_prefix("/__mock/people/") {
        let id_type = crate::reads::query_value(query, "id_type");
        let Some(who) = crate::store::Lookup::new(&decode(id), id_type.as_deref()) else {
            return meta_error(
                StatusCode::BAD_REQUEST,
                "id_type must be id, email, phone or cio_id",
            );
        };
        return match store.person(&who) {
            Some(p) => json(StatusCode::OK, &p),
            None => meta_error(
                StatusCode::NOT_FOUND,
                format!("no person {:?} is kept", decode(id)),
            ),
        };
    }
    let rest = path.strip_prefix("/__mock/objects/").unwrap_or_default();
    let Some((object_type_id, object_id)) = rest.split_once('/') else {
        return meta_error(
            StatusCode::BAD_REQUEST,
            "expected GET /__mock/objects/{object_type_id}/{object_id}",
        );
    };
    match store.object(&decode(object_type_id), &decode(object_id)) {
        Some(o) => json(StatusCode::OK, &o),
        None => meta_error(StatusCode::NOT_FOUND, "no such object is kept"),
    }
}

/// Applies the fields present in `body` to the current faults; absent fields keep their value.
fn patch_faults(current: Faults, body: &[u8]) -> Result<Faults, String> {
    let patch: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(patch) = patch else {
        return Err("expected a JSON object like {\"error_rate\":0.01}".into());
    };
    let mut merged = serde_json::to_value(current).map_err(|e| e.to_string())?;
    if let Value::Object(m) = &mut merged {
        m.extend(patch);
    }
    serde_json::from_value(merged).map_err(|e| format!("invalid faults: {e}"))
}
