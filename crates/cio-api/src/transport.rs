//! The HTTP transport every client shares: a lean HTTP/1.1 client of its own for `http://`
//! (the mock, a local proxy or sidecar; see [`h1`]), hyper-util's pooled client over rustls for
//! `https://`.
//!
//! - Keep-alive connections are pooled and reused; a request that fails because the server had
//!   closed the idle connection it was written to (the `RemoteDisconnected` race) is sent once
//!   more on a fresh connection. On `http://` that happens only when the server cannot have acted
//!   on it: the request did not get out whole, or nothing came back and the method is idempotent
//!   (`PUT`, `DELETE`, `GET`). A `POST` that met a closed connection is an [`Error::Transport`]
//!   for the caller's retry policy to weigh: the App API client, for one, does not resend a
//!   message that may have gone out.
//! - One timeout covers the whole exchange: connecting, redirects, and reading the body.
//! - Redirects are followed only to the same origin or to an `https://*.customer.io` host;
//!   anything else is refused, so credentials never leave for another host.
//! - Response bodies are read up to a cap, so a hostile server cannot exhaust memory.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, LOCATION, USER_AGENT};
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::error::Error;
use crate::validate::Limits;

mod h1;

/// Settings shared by every client.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Deadline for one whole request, redirects and body included (default 10 s, as the Node SDK).
    pub timeout: Duration,
    /// The `User-Agent` header.
    pub user_agent: String,
    /// Redirects followed at most (default 5).
    pub max_redirects: usize,
    /// How long an idle pooled connection is kept (default 30 s).
    pub pool_idle_timeout: Duration,
    /// Largest response body read (default 1 MiB).
    pub max_response_bytes: usize,
    /// Customer.io's limits, checked before sending.
    pub limits: Limits,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(10),
            user_agent: concat!("cio-rs/", env!("CARGO_PKG_VERSION")).to_owned(),
            max_redirects: 5,
            pool_idle_timeout: Duration::from_secs(30),
            max_response_bytes: 1 << 20,
            limits: Limits::default(),
        }
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

/// The pooled HTTP client. Cloning is cheap and shares the pool.
#[derive(Clone)]
pub struct Transport {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    inner: Arc<Inner>,
}

struct Inner {
    timeout: Duration,
    /// `User-Agent`, `Content-Type` and `Accept`, built once: each request clones them (cheaper
    /// than hashing each name into a new map).
    headers: HeaderMap,
    /// The same headers as HTTP/1.1 lines, for the `http://` client.
    header_lines: Vec<u8>,
    /// Idle connections of the `http://` client.
    pool: h1::Pool,
    max_redirects: usize,
    max_response_bytes: usize,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// A transport with these options.
    pub fn new(options: &ClientOptions) -> Transport {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        // The ring provider with webpki roots cannot fail to configure: its defaults are valid.
        let https = match builder
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        {
            Ok(b) => b.https_or_http().enable_http1().wrap_connector(http),
            Err(e) => unreachable!("ring's default TLS configuration is valid: {e}"),
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(options.pool_idle_timeout)
            .build(https);
        let mut headers = HeaderMap::with_capacity(4);
        headers.insert(
            USER_AGENT,
            HeaderValue::from_str(&options.user_agent)
                .unwrap_or_else(|_| HeaderValue::from_static("cio-rs")),
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        let mut header_lines = Vec::new();
        for (name, value) in &headers {
            header_lines.extend_from_slice(name.as_str().as_bytes());
            header_lines.extend_from_slice(b": ");
            header_lines.extend_from_slice(value.as_bytes());
            header_lines.extend_from_slice(b"\r\n");
        }
        Transport {
            client,
            inner: Arc::new(Inner {
                timeout: options.timeout,
                headers,
                header_lines,
                pool: h1::Pool::new(options.pool_idle_timeout),
                max_redirects: options.max_redirects,
                max_response_bytes: options.max_response_bytes,
            }),
        }
    }

    /// The whole-request timeout.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// Sends one request with JSON `body` and reads the whole response, within the timeout.
    /// Any status is returned as is; see [`Transport::send_checked`] for errors on non-2xx.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        auth: &HeaderValue,
        body: Option<Bytes>,
    ) -> Result<RawResponse, Error> {
        let timeout = self.inner.timeout;
        match tokio::time::timeout(timeout, self.send_following(method, url, auth, body)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(timeout)),
        }
    }

    /// [`Transport::send`], with a non-2xx status turned into [`Error::Api`].
    pub async fn send_checked(
        &self,
        method: Method,
        url: &str,
        auth: &HeaderValue,
        body: Option<Bytes>,
    ) -> Result<RawResponse, Error> {
        let resp = self.send(method, url, auth, body).await?;
        if resp.status.is_success() {
            Ok(resp)
        } else {
            Err(Error::from_response(resp.status, &resp.headers, &resp.body))
        }
    }

    async fn send_following(
        &self,
        mut method: Method,
        url: &str,
        auth: &HeaderValue,
        mut body: Option<Bytes>,
    ) -> Result<RawResponse, Error> {
        let mut current = std::borrow::Cow::Borrowed(url);
        for _ in 0..=self.inner.max_redirects {
            let resp = match h1::Target::parse(&current) {
                Some(target) => {
                    self.send_plain(&method, target, auth, body.as_ref())
                        .await?
                }
                None => {
                    let uri = parse_uri(&current)?;
                    if uri.scheme() == Some(&http::uri::Scheme::HTTP) {
                        self.send_plain(&method, plain_target(&current, &uri)?, auth, body.as_ref())
                            .await?
                    } else {
                        self.send_once(method.clone(), &uri, auth, body.clone())
                            .await?
                    }
                }
            };
            if !resp.status.is_redirection() || resp.status == StatusCode::NOT_MODIFIED {
                return Ok(resp);
            }
            let Some(location) = resp.headers.get(LOCATION).and_then(|l| l.to_str().ok()) else {
                return Ok(resp);
            };
            let next = resolve(&parse_uri(&current)?, location)?;
            if !redirect_allowed(&parse_uri(url)?, &next) {
                return Err(Error::Redirect {
                    location: location.to_owned(),
                    reason: "not the same origin and not an https://*.customer.io host",
                });
            }
            if resp.status == StatusCode::SEE_OTHER {
                method = Method::GET;
                body = None;
            }
            current = std::borrow::Cow::Owned(next.to_string());
        }
        Err(Error::Redirect {
            location: current.into_owned(),
            reason: "too many redirects",
        })
    }

    /// One request over plain HTTP/1.1, on a pooled connection when one is idle.
    async fn send_plain(
        &self,
        method: &Method,
        target: h1::Target<'_>,
        auth: &HeaderValue,
        body: Option<&Bytes>,
    ) -> Result<RawResponse, Error> {
        let head = h1::RequestHead {
            fixed: &self.inner.header_lines,
            auth,
            max_response_bytes: self.inner.max_response_bytes,
        };
        let mut stale_retry_left = true;
        loop {
            // The retry after a stale connection always takes a new one: another idle one may be
            // just as stale.
            let pooled = if stale_retry_left {
                self.inner.pool.checkout(target.authority)
            } else {
                None
            };
            let (mut conn, reused) = match pooled {
                Some(conn) => (conn, true),
                None => {
                    let conn =
                        h1::Conn::connect(target.authority)
                            .await
                            .map_err(|e| Error::Connect {
                                url: target.url.to_owned(),
                                reason: e.to_string(),
                            })?;
                    (conn, false)
                }
            };
            match conn.exchange(method, target.path, &head, body).await {
                Ok((resp, keep_alive)) => {
                    if keep_alive {
                        self.inner.pool.checkin(conn);
                    }
                    return Ok(resp);
                }
                // Sent again only if the server cannot have acted on it: the request did not get
                // out whole, or nothing came back and the method is idempotent. A POST whose
                // connection closed without an answer may have been processed (a transactional
                // send twice is worse than an error the caller's retry policy can weigh).
                Err(f)
                    if reused
                        && stale_retry_left
                        && (f.unsent || (f.nothing_received && method.is_idempotent())) =>
                {
                    tracing::debug!(url = %target.url, error = %f.reason, "pooled connection was closed by the server; retrying once on a new one");
                    stale_retry_left = false;
                }
                Err(f) => {
                    return Err(Error::Transport {
                        url: target.url.to_owned(),
                        reason: f.reason,
                    })
                }
            }
        }
    }

    async fn send_once(
        &self,
        method: Method,
        uri: &Uri,
        auth: &HeaderValue,
        body: Option<Bytes>,
    ) -> Result<RawResponse, Error> {
        let mut stale_retry_left = true;
        loop {
            let mut req = Request::new(Full::new(body.clone().unwrap_or_default()));
            *req.method_mut() = method.clone();
            *req.uri_mut() = uri.clone();
            let headers = req.headers_mut();
            *headers = self.inner.headers.clone();
            headers.insert(AUTHORIZATION, auth.clone());
            match self.client.request(req).await {
                Ok(resp) => {
                    let (parts, incoming) = resp.into_parts();
                    let body = Limited::new(incoming, self.inner.max_response_bytes)
                        .collect()
                        .await
                        .map_err(|e| Error::Transport {
                            url: uri.to_string(),
                            reason: format!("reading the response body: {e}"),
                        })?
                        .to_bytes();
                    return Ok(RawResponse {
                        status: parts.status,
                        headers: parts.headers,
                        body,
                    });
                }
                Err(e) if e.is_connect() => {
                    return Err(Error::Connect {
                        url: uri.to_string(),
                        reason: error_chain(&e),
                    })
                }
                Err(e) if stale_retry_left && closed_before_answer(&e) => {
                    tracing::debug!(url = %uri, error = %error_chain(&e), "pooled connection was closed by the server; retrying once on a new one");
                    stale_retry_left = false;
                }
                Err(e) => {
                    return Err(Error::Transport {
                        url: uri.to_string(),
                        reason: error_chain(&e),
                    })
                }
            }
        }
    }
}

/// Whether the request failed because the connection was closed before any response arrived:
/// the server dropped an idle kept-alive connection as we wrote to it.
fn closed_before_answer(e: &hyper_util::client::legacy::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            return h.is_incomplete_message() || h.is_canceled() || h.is_closed();
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionAborted
            );
        }
        source = s.source();
    }
    false
}

fn error_chain(e: &dyn std::error::Error) -> String {
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

/// The plain-HTTP target of a URL [`h1::Target::parse`] did not take but [`Uri`] accepts.
fn plain_target<'a>(url: &'a str, uri: &'a Uri) -> Result<h1::Target<'a>, Error> {
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err(Error::Transport {
            // Not `url`: it may hold a password.
            url: format!("http://{}{}", uri.host().unwrap_or_default(), uri.path()),
            reason: "a URL without a host, or with credentials in it, is not sent (the client adds its own credentials)".into(),
        });
    }
    Ok(h1::Target {
        url,
        authority,
        path: uri.path_and_query().map_or("/", |p| p.as_str()),
    })
}

fn parse_uri(url: &str) -> Result<Uri, Error> {
    url.parse::<Uri>().map_err(|e| Error::Transport {
        url: url.to_owned(),
        reason: format!("invalid URL: {e}"),
    })
}

fn resolve(base: &Uri, location: &str) -> Result<Uri, Error> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return parse_uri(location);
    }
    let scheme = base.scheme_str().unwrap_or("https");
    let authority = base.authority().map(|a| a.as_str()).unwrap_or_default();
    if location.starts_with('/') {
        parse_uri(&format!("{scheme}://{authority}{location}"))
    } else {
        Err(Error::Redirect {
            location: location.to_owned(),
            reason: "relative redirect locations without a leading slash are not supported",
        })
    }
}

fn redirect_allowed(origin: &Uri, next: &Uri) -> bool {
    let same_origin = origin.scheme() == next.scheme() && origin.authority() == next.authority();
    let customer_io = next.scheme_str() == Some("https")
        && next
            .host()
            .is_some_and(|h| h == "customer.io" || h.ends_with(".customer.io"));
    same_origin || customer_io
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_stay_within_customer_io() {
        let origin: Uri = "https://track.customer.io/api/v1/customers/1"
            .parse()
            .unwrap();
        let ok: Uri = "https://track-eu.customer.io/api/v1/customers/1"
            .parse()
            .unwrap();
        let evil: Uri = "https://customer.io.evil.com/x".parse().unwrap();
        let plain: Uri = "http://track-eu.customer.io/x".parse().unwrap();
        assert!(redirect_allowed(&origin, &ok));
        assert!(!redirect_allowed(&origin, &evil));
        assert!(!redirect_allowed(&origin, &plain));
        let local: Uri = "http://127.0.0.1:1/a".parse().unwrap();
        let local2 = resolve(&local, "/b").unwrap();
        assert!(redirect_allowed(&local, &local2));
    }
}
