//! The HTTP transport every client uses by default: hyper 1's HTTP/1.1 client connections, over
//! TCP for `http://` and over rustls for `https://`, in one pool and one code path.
//!
//! [`Transport`] is a `tower::Service<http::Request<Full<Bytes>>>` answering
//! `http::Response<Full<Bytes>>` (the body read in full, up to a cap). The clients put their
//! policy layers on top of it (redirects, sensitive headers, tracing, the request timeout; see
//! [`crate::ClientBuilder`]), and any other tower HTTP service can take its place.
//!
//! How it works:
//! - **No connection task.** hyper's `client::conn::http1` gives a `SendRequest` and a
//!   `Connection` future. The task that sends a request drives that connection itself while it
//!   waits for the answer and reads the body, then puts the pair back in the pool. A request
//!   costs no spawn, no cross-task wake-up and no channel hop between threads. While a
//!   connection is idle nobody polls it; before it is handed out again it is polled once (without
//!   the task's cooperative budget, which would make the poll answer "pending" without looking)
//!   to see whether the server closed it or sent something unasked.
//! - **The pool** ([`pool`]) keeps idle connections per origin (`scheme://host:port`), most
//!   recently used first, at most [`MAX_IDLE_PER_ORIGIN`] each. A request that finds none
//!   connects, and at the same time waits for a connection another request gives back: whichever
//!   comes first is used (hyper-util's pool does the same). A sweep task, started with the first
//!   idle connection and ended when the pool is dropped, closes connections idle for longer than
//!   [`ClientOptions::pool_idle_timeout`].
//! - **One rule for sending again**, the same for both schemes. A request goes out again, once,
//!   on a new connection only when it cannot have reached the server (hyper hands it back
//!   unsent), or when it is idempotent ([`Idempotency`]) and a reused connection failed before
//!   any answer (the race with a server closing an idle connection). Anything else is an
//!   [`Error::Transport`] that says the outcome is unknown: a transactional send is never sent
//!   twice by the transport.
//! - **Timeouts.** Connecting (TCP and the TLS handshake) is bounded by
//!   [`ClientOptions::connect_timeout`] (default 5 s); the whole exchange by
//!   [`ClientOptions::timeout`] (default 10 s), which the clients apply around redirects and
//!   body too. The layer stack adds no per-attempt deadline of its own: these two are the one
//!   place an attempt's time is set (see [`crate::stack`]).
//! - **TLS**: rustls with the ring provider, HTTP/1.1 by ALPN, webpki's roots by default, the
//!   system's store or extra CAs on request ([`TlsOptions`]).
//!
//! Why a pool of our own rather than hyper-util's legacy `Client`: that client runs each
//! connection in a spawned task and reaches it through channels (two task wake-ups per request,
//! often across threads), and its rule for re-sending is by error kind, not by what the request
//! is. The pool here is small (idle lists, waiters, a sweep), and the HTTP itself is hyper's.

mod conn;
mod pool;
mod tls;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::Full;

use crate::error::Error;
use crate::limits::Limits;

pub use tls::TlsOptions;

use conn::{Conn, Failure};
use pool::Pool;

/// Idle connections kept per origin at most; the least recently used go first.
pub const MAX_IDLE_PER_ORIGIN: usize = 256;

/// Settings shared by every client and its transport.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Deadline for one whole attempt: connecting, sending, redirects and reading the body
    /// (default 10 s, as the Node SDK). The layer stack bounds each attempt with this and nothing
    /// else; it is the one place an attempt's time is set.
    pub timeout: Duration,
    /// Deadline for connecting: TCP and the TLS handshake (default 5 s). A connection that takes
    /// longer fails with [`Error::Connect`], which is always safe to retry (nothing was sent).
    pub connect_timeout: Duration,
    /// The `User-Agent` header.
    pub user_agent: String,
    /// Redirects followed at most (default 5).
    pub max_redirects: usize,
    /// How long an idle pooled connection is kept (default 30 s).
    pub pool_idle_timeout: Duration,
    /// Largest response body read (default 1 MiB).
    pub max_response_bytes: usize,
    /// Which certificate authorities `https://` trusts (default: webpki's roots).
    pub tls: TlsOptions,
    /// Customer.io's limits, checked before sending.
    pub limits: Limits,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            user_agent: concat!("cio-rs/", env!("CARGO_PKG_VERSION")).to_owned(),
            max_redirects: 5,
            pool_idle_timeout: Duration::from_secs(30),
            max_response_bytes: 1 << 20,
            tls: TlsOptions::default(),
            limits: Limits::default(),
        }
    }
}

/// Whether a request may be sent a second time after its connection failed with no answer.
///
/// Put it in the request's extensions; without it the method decides (`GET`, `PUT`, `DELETE`
/// are idempotent, `POST` is not). The clients set it from the operation: an identify, an event
/// with an `id` (Customer.io de-duplicates on it), a v2 batch whose entries all are; never a
/// transactional send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idempotency {
    /// Sending it twice has the effect of sending it once.
    Idempotent,
    /// Sending it twice may act twice (a message sent twice, an event counted twice).
    NotIdempotent,
}

impl Idempotency {
    /// `Idempotent` when `yes`.
    pub fn from_bool(yes: bool) -> Idempotency {
        if yes {
            Idempotency::Idempotent
        } else {
            Idempotency::NotIdempotent
        }
    }

    /// What a request says, or its method when it says nothing.
    pub fn of<B>(req: &Request<B>) -> Idempotency {
        req.extensions()
            .get::<Idempotency>()
            .copied()
            .unwrap_or_else(|| Idempotency::from_bool(req.method().is_idempotent()))
    }
}

/// A response read in full.
#[derive(Clone, Debug)]
pub struct RawResponse {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

/// The pooled HTTP/1.1 transport, for `http://` and `https://` alike. Cloning is cheap and shares
/// the pool.
///
/// ```no_run
/// # async fn run() -> Result<(), cio_api::Error> {
/// use cio_api::{ClientOptions, Transport};
/// use tower::ServiceExt;
///
/// let transport = Transport::new(&ClientOptions::default());
/// let req = http::Request::get("https://track.customer.io/api/v1/accounts/region")
///     .body(http_body_util::Full::default())
///     .expect("a valid request");
/// let resp = transport.oneshot(req).await?;
/// println!("{}", resp.status());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    tls: tokio_rustls::TlsConnector,
    connect_timeout: Duration,
    max_response_bytes: usize,
    /// For [`Transport::send`] only: the clients apply their own.
    timeout: Duration,
    /// `User-Agent`, `Content-Type` and `Accept`, for [`Transport::send`].
    headers: HeaderMap,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("connect_timeout", &self.inner.connect_timeout)
            .field("idle", &self.inner.pool.idle_count())
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// A transport with these options (`connect_timeout`, `pool_idle_timeout`, `tls`,
    /// `max_response_bytes`; `timeout` and `user_agent` serve [`Transport::send`]).
    pub fn new(options: &ClientOptions) -> Transport {
        Transport {
            inner: Arc::new(Inner {
                pool: Pool::new(options.pool_idle_timeout, MAX_IDLE_PER_ORIGIN),
                tls: options.tls.connector(),
                connect_timeout: options.connect_timeout,
                max_response_bytes: options.max_response_bytes,
                timeout: options.timeout,
                headers: default_headers(&options.user_agent),
            }),
        }
    }

    /// Idle connections in the pool, over all origins.
    pub fn idle_connections(&self) -> usize {
        self.inner.pool.idle_count()
    }

    /// Sends one raw request with JSON `body` and `auth` and reads the whole response, within
    /// [`ClientOptions::timeout`]. No redirect is followed: this is the transport alone, for
    /// tests and tools; the clients go through [`crate::ClientBuilder`]'s layers.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        auth: &HeaderValue,
        body: Option<Bytes>,
    ) -> Result<RawResponse, Error> {
        let uri = parse_uri(url)?;
        let mut req = Request::new(Full::new(body.unwrap_or_default()));
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.headers_mut() = self.inner.headers.clone();
        req.headers_mut().insert(AUTHORIZATION, auth.clone());
        let timeout = self.inner.timeout;
        let resp = match tokio::time::timeout(timeout, self.inner.clone().exchange(req)).await {
            Ok(r) => r?,
            Err(_) => return Err(Error::Timeout(timeout)),
        };
        let (parts, body) = resp.into_parts();
        Ok(RawResponse {
            status: parts.status,
            headers: parts.headers,
            body: http_body_util::BodyExt::collect(body)
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default(),
        })
    }
}

/// `User-Agent`, `Content-Type: application/json` and `Accept: application/json`.
pub(crate) fn default_headers(user_agent: &str) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(4);
    headers.insert(
        USER_AGENT,
        HeaderValue::from_str(user_agent).unwrap_or_else(|_| HeaderValue::from_static("cio-rs")),
    );
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        http::header::ACCEPT,
        HeaderValue::from_static("application/json"),
    );
    headers
}

impl tower::Service<Request<Full<Bytes>>> for Transport {
    type Response = Response<Full<Bytes>>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, Error>> + Send>>;

    /// Always ready: the pool grows on demand, so back-pressure belongs to the layers in front.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> Self::Future {
        Box::pin(self.inner.clone().exchange(req))
    }
}

/// Where a connection goes: the pool's key (scheme and authority) and what connecting needs.
/// Read off the request's URI without allocating: this runs for every request.
#[derive(Clone, Debug)]
pub(crate) struct Origin {
    https: bool,
    /// `host[:port]` as written (a cheap clone of the URI's bytes).
    authority: Authority,
    port: u16,
}

impl Origin {
    fn of(uri: &Uri) -> Result<Origin, Error> {
        let https = match uri.scheme() {
            Some(s) if *s == Scheme::HTTPS => true,
            Some(s) if *s == Scheme::HTTP => false,
            _ => {
                return Err(Error::Transport {
                    url: uri.to_string(),
                    reason: "only http:// and https:// URLs can be sent".into(),
                })
            }
        };
        let authority = match uri.authority() {
            Some(a) if !a.as_str().is_empty() && !a.as_str().contains('@') => a.clone(),
            _ => {
                return Err(Error::Transport {
                    // Not the whole URL: it may hold a password.
                    url: format!(
                        "{}://{}{}",
                        if https { "https" } else { "http" },
                        uri.host().unwrap_or_default(),
                        uri.path()
                    ),
                    reason: "a URL without a host, or with credentials in it, is not sent (the client adds its own credentials)".into(),
                });
            }
        };
        // `Authority` reads "host:99999" as no port at all: that must not quietly mean 80 or 443.
        let port_text = authority
            .as_str()
            .strip_prefix(authority.host())
            .and_then(|rest| rest.strip_prefix(':'));
        let port = match (port_text, authority.port_u16()) {
            (None, _) | (Some(""), _) => {
                if https {
                    443
                } else {
                    80
                }
            }
            (Some(_), Some(port)) => port,
            (Some(text), None) => {
                return Err(Error::Connect {
                    url: uri.to_string(),
                    reason: format!("invalid port {text:?}"),
                })
            }
        };
        Ok(Origin {
            https,
            authority,
            port,
        })
    }

    /// The pool's key.
    fn key(&self) -> pool::Key<'_> {
        pool::Key {
            https: self.https,
            authority: self.authority.as_str(),
        }
    }

    /// The host to connect to, without IPv6 brackets.
    fn host(&self) -> &str {
        self.authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
    }
}

impl Inner {
    /// One exchange, on a pooled connection or a new one, with the rule for sending again.
    async fn exchange(
        self: Arc<Self>,
        mut req: Request<Full<Bytes>>,
    ) -> Result<Response<Full<Bytes>>, Error> {
        let origin = Origin::of(req.uri())?;
        // For error messages only: made into text when one is needed.
        let url = req.uri().clone();
        // hyper's connections send the URI as given: origin-form, with a Host header.
        if !req.headers().contains_key(HOST) {
            if let Some(a) = req.uri().authority() {
                if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                    req.headers_mut().insert(HOST, v);
                }
            }
        }
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let path = if path.as_str().starts_with('/') {
            path
        } else {
            // "?query" for `http://host?query`.
            PathAndQuery::try_from(format!("/{}", path.as_str()))
                .unwrap_or_else(|_| PathAndQuery::from_static("/"))
        };
        *req.uri_mut() = Uri::from(path);
        // A copy to send again, kept only where sending again is allowed after it went out.
        let copy = match Idempotency::of(&req) {
            Idempotency::Idempotent => Some(copy_request(&req)),
            Idempotency::NotIdempotent => None,
        };
        let mut resend_left = true;
        loop {
            // After a failure, always a new connection: another idle one may be just as stale.
            let (mut conn, reused) = self.connection(&origin, &url, resend_left).await?;
            match (conn.send(req, self.max_response_bytes).await, &copy) {
                (Ok((resp, reusable)), _) => {
                    if reusable {
                        self.pool.checkin(origin.key(), conn);
                    }
                    return Ok(resp);
                }
                (Err(Failure::Unsent { request, reason }), _) if resend_left => {
                    tracing::debug!(%url, %reason, "request not sent: sending it on a new connection");
                    req = *request;
                }
                (Err(Failure::NoAnswer { reason }), Some(copy)) if resend_left && reused => {
                    tracing::debug!(%url, %reason, "pooled connection closed before an answer: sending the idempotent request again on a new one");
                    req = copy_request(copy);
                }
                (Err(f), _) => return Err(f.into_error(url.to_string())),
            }
            resend_left = false;
        }
    }

    /// A pooled connection to `origin` (when `pooled`), or a new one; whether it was reused.
    ///
    /// With none idle, it connects and at the same time waits for a connection another request
    /// gives back, and takes whichever comes first. A connection being made when a given one
    /// wins is not thrown away: it finishes in a task of its own (bounded by the connect timeout)
    /// and joins the pool, so a steady load settles on as many connections as it keeps busy
    /// instead of opening and dropping one whenever every connection is taken.
    async fn connection(
        self: &Arc<Self>,
        origin: &Origin,
        url: &Uri,
        pooled: bool,
    ) -> Result<(Conn, bool), Error> {
        if !pooled {
            return self.connect(origin, url).await.map(|c| (c, false));
        }
        if let Some(conn) = self.pool.checkout(origin.key()) {
            return Ok((conn, true));
        }
        let mut waiter = self.pool.wait(origin.key());
        let connect = {
            let (inner, origin, url) = (self.clone(), origin.clone(), url.clone());
            async move { inner.connect(&origin, &url).await }
        };
        let mut connect = Box::pin(connect);
        tokio::select! {
            biased;
            given = &mut waiter => match given {
                Ok(conn) => {
                    let (inner, origin) = (self.clone(), origin.clone());
                    tokio::spawn(async move {
                        if let Ok(made) = connect.await {
                            inner.pool.checkin(origin.key(), made);
                        }
                    });
                    Ok((conn, true))
                }
                // The pool went away: connect after all.
                Err(_) => connect.await.map(|c| (c, false)),
            },
            made = &mut connect => {
                // A connection handed over in the meantime goes back to the pool.
                waiter.close();
                if let Ok(given) = waiter.try_recv() {
                    self.pool.checkin(origin.key(), given);
                }
                made.map(|c| (c, false))
            }
        }
    }

    async fn connect(&self, origin: &Origin, url: &Uri) -> Result<Conn, Error> {
        let timeout = self.connect_timeout;
        match tokio::time::timeout(timeout, Conn::connect(origin, &self.tls)).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(reason)) => Err(Error::Connect {
                url: url.to_string(),
                reason,
            }),
            Err(_) => Err(Error::Connect {
                url: url.to_string(),
                reason: format!("no connection within the connect timeout of {timeout:?}"),
            }),
        }
    }
}

fn copy_request(req: &Request<Full<Bytes>>) -> Request<Full<Bytes>> {
    let mut copy = Request::new(req.body().clone());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    // Only what the transport reads: cloning every extension would cost a map per request.
    if let Some(i) = req.extensions().get::<Idempotency>() {
        copy.extensions_mut().insert(*i);
    }
    copy
}

fn parse_uri(url: &str) -> Result<Uri, Error> {
    url.parse::<Uri>().map_err(|e| Error::Transport {
        url: url.to_owned(),
        reason: format!("invalid URL: {e}"),
    })
}

/// An error and its sources on one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_name_scheme_host_and_port_and_refuse_the_rest() {
        let o = Origin::of(&"http://127.0.0.1:7070/api".parse().unwrap()).unwrap();
        assert_eq!((o.host(), o.port, o.https), ("127.0.0.1", 7070, false));
        let o = Origin::of(&"https://track.customer.io/api".parse().unwrap()).unwrap();
        assert_eq!(
            (o.host(), o.port, o.https),
            ("track.customer.io", 443, true)
        );
        let o = Origin::of(&"http://[::1]:80/x".parse().unwrap()).unwrap();
        assert_eq!(o.host(), "::1");
        // Different schemes or ports are different pools.
        let a = Origin::of(&"http://h:1/".parse().unwrap()).unwrap();
        let b = Origin::of(&"https://h:1/".parse().unwrap()).unwrap();
        assert_ne!(a.key(), b.key());
        assert!(Origin::of(&"http://127.0.0.1:99999/x".parse().unwrap()).is_err());
        assert!(Origin::of(&"ftp://host/x".parse().unwrap()).is_err());
        let e = Origin::of(&"http://user:secret@host/x".parse().unwrap()).unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    #[test]
    fn idempotency_from_the_request_or_its_method() {
        let mut req = Request::post("http://h/").body(()).unwrap();
        assert_eq!(Idempotency::of(&req), Idempotency::NotIdempotent);
        req.extensions_mut().insert(Idempotency::Idempotent);
        assert_eq!(Idempotency::of(&req), Idempotency::Idempotent);
        let req = Request::put("http://h/").body(()).unwrap();
        assert_eq!(Idempotency::of(&req), Idempotency::Idempotent);
    }
}
