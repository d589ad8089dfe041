use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, StatusCode};

use cio_layers::retry::{RetryConfig, RetryLayer};

use super::shared::{with_layers, ClientBuilder, Core, FromCore};
use super::ResponseFuture;
use crate::pipelines::PipelinesRequest;
use crate::transport::Idempotency;
use crate::{Error, PipelinesCredentials, Region};

/// The Pipelines (CDP) API: Segment-compatible calls and batches.
///
/// Customer.io answers an over-size Pipelines request with 200 and silently drops it; this
/// client refuses it before sending ([`PipelinesRequest::encode`]). It answers an invalid call
/// 200 too, and drops it, unless the request asks for strict mode (`X-Strict-Mode: 1`, then
/// 400): [`PipelinesClient::strict`] turns it on.
///
/// Requests are retried by default with the Track stack's numbers ([`RetryConfig::default`]);
/// [`PipelinesClient::retries`] changes or removes that.
///
/// Before sending, each call gets what is missing of `messageId` (a fresh one; give your own,
/// e.g. [`crate::pipelines::message_id_from`] a stable hash, to have retries and redeliveries
/// de-duplicated), `timestamp` (now) and `context.library` (`cio-rs` and its version), once
/// per [`send`](Self::send).
#[derive(Clone, Debug)]
pub struct PipelinesClient {
    inner: Arc<Inner>,
}

#[derive(Clone, Debug)]
struct Inner {
    core: Core,
    base: String,
    retry: Option<RetryLayer>,
}

/// The header that asks Customer.io's Pipelines API to answer an invalid call 400.
pub const STRICT_MODE: &str = "x-strict-mode";

/// A successful Pipelines answer.
#[derive(Clone, Debug)]
pub struct PipelinesResponse {
    /// The status.
    pub status: StatusCode,
}

impl PipelinesClient {
    /// A client with default options on its own [`crate::Transport`].
    pub fn new(region: Region, credentials: PipelinesCredentials) -> Self {
        Self::builder(region, credentials).build()
    }

    /// A builder: options, a shared transport, or any tower HTTP service underneath.
    pub fn builder(region: Region, credentials: PipelinesCredentials) -> ClientBuilder<Self> {
        ClientBuilder::new(region, credentials.header())
    }

    /// The same client with strict mode on or off: with it, Customer.io (and the mock) answer
    /// an invalid call 400 instead of 200-and-dropped.
    pub fn strict(&self, on: bool) -> Self {
        self.with(|inner| {
            inner.core.insert_header(
                http::HeaderName::from_static(STRICT_MODE),
                http::HeaderValue::from_static(if on { "1" } else { "0" }),
            )
        })
    }

    /// Retries with `config` (`None`: one attempt). The default is [`RetryConfig::default`],
    /// the Track stack's: 429s, 5xx, timeouts and broken connections go again, each attempt
    /// with the same `messageId`, so Customer.io can drop a second copy.
    pub fn retries(&self, config: Option<RetryConfig>) -> Self {
        self.with(|inner| inner.retry = config.map(RetryLayer::by_error))
    }

    /// The same client with `change` made to its settings.
    fn with(&self, change: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = (*self.inner).clone();
        change(&mut inner);
        PipelinesClient {
            inner: Arc::new(inner),
        }
    }

    /// Fills in `messageId`, `timestamp` and `context.library` where missing, validates and
    /// sends one request.
    pub fn send(&self, req: &PipelinesRequest) -> ResponseFuture<PipelinesResponse> {
        let mut req = req.clone();
        req.fill_defaults(std::time::SystemTime::now());
        let client = self.clone();
        with_layers(
            self.inner.retry.as_ref(),
            None,
            req,
            move |req: PipelinesRequest| client.send_once(&req),
        )
    }

    /// One attempt of a filled-in request.
    fn send_once(&self, req: &PipelinesRequest) -> ResponseFuture<PipelinesResponse> {
        let inner = self.inner.clone();
        let body = req.encode(&inner.core.limits);
        let url = format!("{}{}", inner.base, req.path());
        Box::pin(async move {
            let body = body?;
            let resp = inner
                .core
                .send_checked(
                    Method::POST,
                    &url,
                    Some(Bytes::from(body)),
                    Idempotency::NotIdempotent,
                )
                .await?;
            Ok(PipelinesResponse {
                status: resp.status,
            })
        })
    }
}

impl FromCore for PipelinesClient {
    fn from_core(core: Core, region: &Region) -> Self {
        PipelinesClient {
            inner: Arc::new(Inner {
                core,
                base: region.pipelines_base().to_owned(),
                retry: Some(RetryLayer::by_error(RetryConfig::default())),
            }),
        }
    }
}

impl tower::Service<PipelinesRequest> for PipelinesClient {
    type Response = PipelinesResponse;
    type Error = Error;
    type Future = ResponseFuture<PipelinesResponse>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: PipelinesRequest) -> Self::Future {
        self.send(&req)
    }
}
