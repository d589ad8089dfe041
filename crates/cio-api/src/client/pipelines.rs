use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, StatusCode};

use super::shared::{ClientBuilder, Core, FromCore};
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
/// Before sending, each call gets what is missing of `messageId` (a fresh one; give your own,
/// e.g. [`crate::pipelines::message_id_from`] a stable hash, to have retries and redeliveries
/// de-duplicated), `timestamp` (now) and `context.library` (`cio-rs` and its version), once
/// per [`send`](Self::send).
#[derive(Clone, Debug)]
pub struct PipelinesClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    core: Core,
    base: String,
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
        let mut core = self.inner.core.clone();
        core.insert_header(
            http::HeaderName::from_static(STRICT_MODE),
            http::HeaderValue::from_static(if on { "1" } else { "0" }),
        );
        PipelinesClient {
            inner: Arc::new(Inner {
                core,
                base: self.inner.base.clone(),
            }),
        }
    }

    /// Fills in `messageId`, `timestamp` and `context.library` where missing, validates and
    /// sends one request.
    pub fn send(&self, req: &PipelinesRequest) -> ResponseFuture<PipelinesResponse> {
        let inner = self.inner.clone();
        let mut req = req.clone();
        req.fill_defaults(std::time::SystemTime::now());
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
