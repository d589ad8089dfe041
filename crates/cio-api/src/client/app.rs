use std::num::NonZeroU32;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::Value;

use cio_layers::rate_limit::{Quota, RateLimitLayer};
use cio_layers::retry::{RetryConfig, RetryLayer};
use serde::de::DeserializeOwned;

use super::shared::{with_layers, ClientBuilder, Core, FromCore};
use super::ResponseFuture;
use crate::customers::{
    Activities, ActivityQuery, ByEmail, Customer, CustomerIdentifiers, ManyCustomers, OneCustomer,
    Read, Segment, Segments,
};
use crate::transactional::AppRequest;
use crate::transport::Idempotency;
use crate::PersonIdentifier;
use crate::{AppCredentials, Error, Region};

/// The App API: transactional messages (`/v1/send/*`), broadcast triggers and the reads of
/// people ([`crate::customers`]).
///
/// Every request waits for the App API's rate limit first: 10 requests/s by default
/// ([`APP_API_PER_SECOND`], cio-layers' `RateLimitLayer`), shared by every clone of the client
/// and taken again by each retry. [`AppClient::rate_limit`] changes or removes it.
///
/// A transactional send is not idempotent. Unless [`AppClient::retry_sends`] is set, a send that
/// may have reached Customer.io (a timeout, a broken connection, a 5xx) fails with
/// [`Error::NotRetryable`], which no retry policy retries. A 429 or a refused connection is still
/// retryable: nothing was sent.
///
/// Requests are retried by default with the Track stack's numbers
/// ([`RetryConfig::default`]: 4 attempts, full-jitter backoff, `Retry-After` honoured):
/// 429s, 5xx, timeouts and refused connections, never what is
/// [`Error::NotRetryable`]. [`AppClient::retries`] changes or removes that.
#[derive(Clone, Debug)]
pub struct AppClient {
    inner: Arc<Inner>,
}

#[derive(Clone, Debug)]
struct Inner {
    core: Core,
    base: String,
    retry_sends: bool,
    retry: Option<RetryLayer>,
    limit: Option<RateLimitLayer>,
}

/// The App API's documented limit, requests per second.
pub const APP_API_PER_SECOND: u32 = 10;

/// A successful App API answer.
#[derive(Clone, Debug)]
pub struct AppResponse {
    /// The status.
    pub status: StatusCode,
    /// The parsed body (`{delivery_id, queued_at}` for sends, `{id}` for triggers).
    pub body: Value,
}

impl AppResponse {
    /// The delivery id of a transactional send.
    pub fn delivery_id(&self) -> Option<&str> {
        self.body.get("delivery_id").and_then(Value::as_str)
    }
}

impl AppClient {
    /// A client with default options on its own [`crate::Transport`].
    pub fn new(region: Region, credentials: AppCredentials) -> Self {
        Self::builder(region, credentials).build()
    }

    /// A builder: options, a shared transport, or any tower HTTP service underneath.
    pub fn builder(region: Region, credentials: AppCredentials) -> ClientBuilder<Self> {
        ClientBuilder::new(region, credentials.header())
    }

    /// Lets ambiguous failures of transactional sends stay retryable. Only for callers that
    /// accept a possible duplicate message (or de-duplicate on their side).
    pub fn retry_sends(self, yes: bool) -> Self {
        self.with(|inner| inner.retry_sends = yes)
    }

    /// Retries with `config` (`None`: one attempt, the caller retries or not). The default is
    /// [`RetryConfig::default`], the Track stack's.
    pub fn retries(self, config: Option<RetryConfig>) -> Self {
        self.with(|inner| inner.retry = config.map(RetryLayer::by_error))
    }

    /// Waits for `quota` before every request (`None`: no limit of its own, for a caller that
    /// limits upstream, or a load test that means to exceed it). The default is
    /// [`APP_API_PER_SECOND`] with a burst of as many. The new limit is shared by the clones
    /// of the returned client.
    pub fn rate_limit(self, quota: Option<Quota>) -> Self {
        self.with(|inner| inner.limit = quota.map(RateLimitLayer::new))
    }

    /// `getCustomersByEmail`: the identifiers of the people with this email (none: empty).
    pub fn customers_by_email(&self, email: &str) -> ResponseFuture<Vec<CustomerIdentifiers>> {
        let read = Read::by_email(email);
        let fut = self.read::<ByEmail>(read, false);
        Box::pin(async move { Ok(fut.await?.map(|b| b.results).unwrap_or_default()) })
    }

    /// `getAttributes`: the person's identifiers, attributes with when each was set, and
    /// devices. `None` when Customer.io does not know them.
    pub fn attributes(&self, who: &PersonIdentifier) -> ResponseFuture<Option<Customer>> {
        let fut = self.read::<OneCustomer>(Read::attributes(who), true);
        Box::pin(async move { Ok(fut.await?.map(|c| c.customer)) })
    }

    /// `getCustomersAttributes`: up to [`crate::customers::MAX_CUSTOMERS_PER_READ`] people by
    /// id in one request; those not found are left out.
    pub fn customers_attributes(&self, ids: &[String]) -> ResponseFuture<Vec<Customer>> {
        let fut = self.read::<ManyCustomers>(Read::customers_attributes(ids), false);
        Box::pin(async move { Ok(fut.await?.map(|c| c.into_customers()).unwrap_or_default()) })
    }

    /// `getCustomerSegments`: the segments the person is in. `None` when Customer.io does not
    /// know them.
    pub fn segments(&self, who: &PersonIdentifier) -> ResponseFuture<Option<Vec<Segment>>> {
        let fut = self.read::<Segments>(Read::segments(who), true);
        Box::pin(async move { Ok(fut.await?.map(|s| s.segments)) })
    }

    /// `getCustomerActivities`: one page of the person's activities, newest first. `None`
    /// when Customer.io does not know them.
    pub fn activities(
        &self,
        who: &PersonIdentifier,
        query: &ActivityQuery,
    ) -> ResponseFuture<Option<Activities>> {
        self.read::<Activities>(Read::activities(who, query), true)
    }

    /// One read, rate limited and retried (reads are idempotent). With `none_if_missing`, a
    /// 404 is `Ok(None)`.
    fn read<T: DeserializeOwned + Send + 'static>(
        &self,
        read: Result<Read, crate::ValidationError>,
        none_if_missing: bool,
    ) -> ResponseFuture<Option<T>> {
        let read = match read {
            Ok(r) => r,
            Err(e) => return Box::pin(std::future::ready(Err(Error::from(e)))),
        };
        let inner = self.inner.clone();
        with_layers(
            self.inner.retry.as_ref(),
            self.inner.limit.as_ref(),
            read,
            move |read: Read| -> ResponseFuture<Option<T>> {
                let inner = inner.clone();
                Box::pin(async move {
                    let url = format!("{}{}", inner.base, read.path);
                    let resp = match inner
                        .core
                        .send_checked(read.method, &url, read.body, Idempotency::Idempotent)
                        .await
                    {
                        Ok(r) => r,
                        Err(Error::Api { status, .. })
                            if none_if_missing && status == StatusCode::NOT_FOUND =>
                        {
                            return Ok(None)
                        }
                        Err(e) => return Err(e),
                    };
                    serde_json::from_slice(&resp.body).map(Some).map_err(|e| {
                        Error::InvalidResponse {
                            status: resp.status,
                            reason: e.to_string(),
                        }
                    })
                })
            },
        )
    }

    /// The same client with `change` made to its settings.
    fn with(&self, change: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = (*self.inner).clone();
        change(&mut inner);
        AppClient {
            inner: Arc::new(inner),
        }
    }

    /// Validates and sends one request, retrying as [`AppClient::retries`] says.
    pub fn send(&self, req: &AppRequest) -> ResponseFuture<AppResponse> {
        let client = self.clone();
        with_layers(
            self.inner.retry.as_ref(),
            self.inner.limit.as_ref(),
            req.clone(),
            move |req: AppRequest| client.send_once(&req),
        )
    }

    /// One attempt.
    fn send_once(&self, req: &AppRequest) -> ResponseFuture<AppResponse> {
        let inner = self.inner.clone();
        let prepared = match req {
            AppRequest::Send(kind, msg) => msg
                .validate(*kind)
                .map_err(Error::from)
                .map(|()| serde_json::to_vec(msg).unwrap_or_default()),
            AppRequest::TriggerBroadcast(t) => t
                .validate()
                .map_err(Error::from)
                .map(|()| serde_json::to_vec(&t.body).unwrap_or_default()),
        };
        let is_send = matches!(req, AppRequest::Send(..));
        let url = format!("{}{}", inner.base, req.path());
        Box::pin(async move {
            let body = prepared?;
            // Never sent again by the transport once it may have gone out: a message twice is
            // worse than an error the caller can weigh.
            let result = inner
                .core
                .send_checked(
                    Method::POST,
                    &url,
                    Some(Bytes::from(body)),
                    Idempotency::NotIdempotent,
                )
                .await;
            let resp = match result {
                Ok(r) => r,
                Err(e) if is_send && !inner.retry_sends && may_have_been_sent(&e) => {
                    return Err(Error::NotRetryable(Box::new(e)))
                }
                Err(e) => return Err(e),
            };
            let body = if resp.body.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&resp.body).map_err(|e| Error::InvalidResponse {
                    status: resp.status,
                    reason: e.to_string(),
                })?
            };
            Ok(AppResponse {
                status: resp.status,
                body,
            })
        })
    }
}

/// A retryable failure after which the message may still have gone out.
fn may_have_been_sent(e: &Error) -> bool {
    match e {
        Error::Timeout(_) | Error::Transport { .. } => true,
        Error::Api { status, .. } => status.is_server_error(),
        _ => false,
    }
}

impl FromCore for AppClient {
    fn from_core(core: Core, region: &Region) -> Self {
        AppClient {
            inner: Arc::new(Inner {
                core,
                base: region.app_base().to_owned(),
                retry_sends: false,
                retry: Some(RetryLayer::by_error(RetryConfig::default())),
                limit: NonZeroU32::new(APP_API_PER_SECOND)
                    .map(|n| RateLimitLayer::new(Quota::per_second(n))),
            }),
        }
    }
}

impl tower::Service<AppRequest> for AppClient {
    type Response = AppResponse;
    type Error = Error;
    type Future = ResponseFuture<AppResponse>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: AppRequest) -> Self::Future {
        self.send(&req)
    }
}
