//! What the four clients share: the HTTP service and the layers every request goes through
//! (credentials marked sensitive, redirects within Customer.io, a trace span, the request
//! timeout, a capped body), the auth header, the default headers and the limits. Each client
//! adds only its URLs and its encoding.

use std::marker::PhantomData;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION, LOCATION};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_http::follow_redirect::policy::{Action, Attempt, Policy};
use tower_http::follow_redirect::{FollowRedirectLayer, RequestUri};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::transport::{default_headers, error_chain, Idempotency};
use crate::{ClientOptions, Error, Limits, RawResponse, Region, Transport};

/// Any error an HTTP service under the clients may return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The HTTP service with the shared layers on, its response read in full.
type Http = BoxCloneSyncService<Request<Full<Bytes>>, RawResponse, BoxError>;

/// Puts the shared layers on a service given to the builder, once the options are known.
type MakeHttp = Box<dyn FnOnce(&ClientOptions) -> Http + Send>;

/// The shared part of every client (public in a private module: the clients name it in their
/// sealed constructor, nobody outside can).
#[derive(Clone)]
pub struct Core {
    http: Http,
    pub(crate) auth: HeaderValue,
    headers: HeaderMap,
    pub(crate) limits: Limits,
    timeout: Duration,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Core {
    /// Sends this header on every request too.
    pub(crate) fn insert_header(&mut self, name: http::HeaderName, value: HeaderValue) {
        self.headers.insert(name, value);
    }

    /// Sends one request and reads the whole answer within the request timeout. Any status is
    /// returned as is.
    pub(crate) async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<Bytes>,
        idempotency: Idempotency,
    ) -> Result<RawResponse, Error> {
        let uri: Uri = url.parse().map_err(|e| Error::Transport {
            url: url.to_owned(),
            reason: format!("invalid URL: {e}"),
        })?;
        let mut req = Request::new(Full::new(body.unwrap_or_default()));
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.headers_mut() = self.headers.clone();
        req.headers_mut().insert(AUTHORIZATION, self.auth.clone());
        req.extensions_mut().insert(idempotency);
        let mut http = self.http.clone();
        let exchange = async {
            http.ready().await?;
            http.call(req).await
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(into_error(e, url)),
            Err(_) => Err(Error::Timeout(self.timeout)),
        }
    }

    /// [`Core::send`], with a non-2xx status turned into [`Error::Api`].
    pub(crate) async fn send_checked(
        &self,
        method: Method,
        url: &str,
        body: Option<Bytes>,
        idempotency: Idempotency,
    ) -> Result<RawResponse, Error> {
        let resp = self.send(method, url, body, idempotency).await?;
        if resp.status.is_success() {
            Ok(resp)
        } else {
            Err(Error::from_response(resp.status, &resp.headers, &resp.body))
        }
    }
}

/// Calls `once(req)` under `retry` and `limit` (each when there is one). Every attempt first
/// waits for the rate limit, so a retry counts against it like any request; what [`Error`]
/// calls retryable is sent again with the retry layer's backoff and `Retry-After`, and
/// [`Error::NotRetryable`] never is. The request is cloned per attempt, so whatever was filled
/// in before (a Pipelines `messageId`) goes out the same each time.
pub(crate) fn with_layers<R, T, F>(
    retry: Option<&cio_layers::retry::RetryLayer>,
    limit: Option<&cio_layers::rate_limit::RateLimitLayer>,
    req: R,
    once: F,
) -> super::ResponseFuture<T>
where
    R: Clone + Send + 'static,
    T: Send + 'static,
    F: Fn(R) -> super::ResponseFuture<T> + Clone + Send + Sync + 'static,
{
    use tower::Layer as _;
    let limit = limit.cloned();
    let attempt = move |req: R| -> super::ResponseFuture<T> {
        match &limit {
            None => once(req),
            Some(limit) => Box::pin(limit.layer(tower::service_fn(once.clone())).oneshot(req)),
        }
    };
    match retry {
        None => attempt(req),
        Some(layer) => Box::pin(layer.layer(tower::service_fn(attempt)).oneshot(req)),
    }
}

/// Our own errors as they were; anyone else's as a transport failure with its whole chain.
fn into_error(e: BoxError, url: &str) -> Error {
    match e.downcast::<Error>() {
        Ok(e) => *e,
        Err(e) => Error::Transport {
            url: url.to_owned(),
            reason: error_chain(&*e),
        },
    }
}

mod sealed {
    /// Built from the shared core by [`super::ClientBuilder::build`].
    pub trait FromCore {
        fn from_core(core: super::Core, region: &crate::Region) -> Self;
    }
}

pub(crate) use sealed::FromCore;

/// Builds any of the four clients: where it sends ([`Region`]), its credentials, its
/// [`ClientOptions`], and the HTTP service under it.
///
/// The service is [`Transport`] unless you give another: any `tower::Service` of
/// `http::Request<Full<Bytes>>` that answers `http::Response<B>` will do, so your own layers
/// (tracing, a proxy, a recorded fake, a test double) sit under the Customer.io client. Above it
/// the client always puts the same layers: `Authorization` marked sensitive, redirects followed
/// only to the same origin or an `https://*.customer.io` host (at most `max_redirects`, so
/// credentials never leave for another host), a `tower_http` trace span, the whole-request
/// timeout, and a cap on the response body.
///
/// ```
/// use cio_api::{ClientOptions, Region, TrackClient, TrackCredentials, Transport};
///
/// // Two clients sharing one pool of connections.
/// let options = ClientOptions::default();
/// let transport = Transport::new(&options);
/// let region = Region::custom("http://127.0.0.1:7070").unwrap();
/// let creds = TrackCredentials::new("site", "key");
/// let track = TrackClient::builder(region.clone(), creds.clone())
///     .options(options.clone())
///     .transport(transport.clone())
///     .build();
/// let batch = cio_api::BatchClient::builder(region, creds).transport(transport).build();
/// # let _ = (track, batch);
/// ```
pub struct ClientBuilder<C> {
    region: Region,
    auth: HeaderValue,
    options: ClientOptions,
    http: Option<MakeHttp>,
    client: PhantomData<fn() -> C>,
}

impl<C> std::fmt::Debug for ClientBuilder<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("region", &self.region)
            .field("options", &self.options)
            .field("custom_service", &self.http.is_some())
            .finish_non_exhaustive()
    }
}

impl<C: FromCore> ClientBuilder<C> {
    pub(crate) fn new(region: Region, auth: HeaderValue) -> Self {
        ClientBuilder {
            region,
            auth,
            options: ClientOptions::default(),
            http: None,
            client: PhantomData,
        }
    }

    /// Timeouts, limits, user agent, TLS roots (default [`ClientOptions::default`]). With a
    /// service of your own the transport's settings in it (`connect_timeout`, `tls`,
    /// `pool_idle_timeout`) are yours to apply.
    pub fn options(mut self, options: ClientOptions) -> Self {
        self.options = options;
        self
    }

    /// Send through this transport (to share its pool with other clients).
    pub fn transport(self, transport: Transport) -> Self {
        self.service(transport)
    }

    /// Send through any tower HTTP service.
    pub fn service<S, B>(mut self, service: S) -> Self
    where
        S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        self.http = Some(Box::new(move |options: &ClientOptions| {
            layered(service, options)
        }));
        self
    }

    /// The client.
    pub fn build(self) -> C {
        let options = self.options;
        let http = match self.http {
            Some(make) => make(&options),
            None => layered(Transport::new(&options), &options),
        };
        C::from_core(
            Core {
                http,
                auth: self.auth,
                headers: default_headers(&options.user_agent),
                limits: options.limits.clone(),
                timeout: options.timeout,
            },
            &self.region,
        )
    }
}

/// `service` under the shared layers, answering a [`RawResponse`].
fn layered<S, B>(service: S, options: &ClientOptions) -> Http
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let max_body = options.max_response_bytes;
    let svc = ServiceBuilder::new()
        .layer(SetSensitiveRequestHeadersLayer::new(std::iter::once(
            AUTHORIZATION,
        )))
        .layer(FollowRedirectLayer::with_policy(Redirects::new(
            options.max_redirects,
        )))
        .layer(
            TraceLayer::new_for_http()
                // A 5xx is the caller's to judge (the retry layer retries it): not an ERROR log.
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
        // Errors as boxed errors (the trace span prints them), of the service and of its bodies.
        .map_err(Into::<BoxError>::into)
        .map_response(|resp: Response<B>| resp.map(|body| body.map_err(Into::<BoxError>::into)))
        .service(service)
        .and_then(move |resp| read_response(resp, max_body));
    BoxCloneSyncService::new(svc)
}

/// Reads the whole body (up to `max`), and turns a redirect that was not followed into
/// [`Error::Redirect`].
async fn read_response<B>(resp: Response<B>, max: usize) -> Result<RawResponse, BoxError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let (parts, body) = resp.into_parts();
    if parts.status.is_redirection() && parts.status != StatusCode::NOT_MODIFIED {
        if let Some(location) = parts.headers.get(LOCATION).and_then(|l| l.to_str().ok()) {
            // FollowRedirect handed it back: the policy stopped it.
            let from = parts.extensions.get::<RequestUri>().map(|u| &u.0);
            let allowed = from.is_some_and(|from| {
                resolve(from, location).is_some_and(|next| redirect_allowed(from, &next))
            });
            return Err(Box::new(Error::Redirect {
                location: location.to_owned(),
                reason: if allowed {
                    "too many redirects"
                } else {
                    "not the same origin and not an https://*.customer.io host"
                },
            }));
        }
    }
    let body = match Limited::new(body, max).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(Box::new(Error::Transport {
                url: parts
                    .extensions
                    .get::<RequestUri>()
                    .map(|u| u.0.to_string())
                    .unwrap_or_default(),
                reason: format!("the response body is larger than {max} bytes"),
            }))
        }
        Err(e) => return Err(e),
    };
    Ok(RawResponse {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// Today's redirect rule: at most `left` hops, each to the same origin as the first request or to
/// an `https://*.customer.io` host. The request's [`Idempotency`] goes along with each hop.
#[derive(Clone, Debug)]
struct Redirects {
    left: usize,
    origin: Option<Uri>,
    idempotency: Option<Idempotency>,
}

impl Redirects {
    fn new(max: usize) -> Redirects {
        Redirects {
            left: max,
            origin: None,
            idempotency: None,
        }
    }
}

impl<E> Policy<Full<Bytes>, E> for Redirects {
    fn redirect(&mut self, attempt: &Attempt<'_>) -> Result<Action, E> {
        let allowed = self
            .origin
            .as_ref()
            .is_some_and(|origin| redirect_allowed(origin, attempt.location()));
        if !allowed || self.left == 0 {
            return Ok(Action::Stop);
        }
        self.left -= 1;
        Ok(Action::Follow)
    }

    fn on_request(&mut self, request: &mut Request<Full<Bytes>>) {
        if self.origin.is_none() {
            self.origin = Some(request.uri().clone());
            self.idempotency = request.extensions().get::<Idempotency>().copied();
        } else if let Some(i) = self.idempotency {
            request.extensions_mut().insert(i);
        }
    }

    fn clone_body(&self, body: &Full<Bytes>) -> Option<Full<Bytes>> {
        Some(body.clone())
    }
}

fn resolve(base: &Uri, location: &str) -> Option<Uri> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.parse().ok();
    }
    let scheme = base.scheme_str().unwrap_or("https");
    let authority = base.authority()?.as_str();
    location
        .starts_with('/')
        .then(|| format!("{scheme}://{authority}{location}").parse().ok())
        .flatten()
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
