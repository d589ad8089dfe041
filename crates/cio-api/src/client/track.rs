use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, StatusCode};

use super::shared::{ClientBuilder, Core, FromCore};
use super::ResponseFuture;
use crate::transport::Idempotency;
use crate::{Error, Operation, Region, TrackCredentials};

/// Track API v1: one request per [`Operation`], the synchronous path for callers that need an
/// answer per operation.
///
/// Every operation is validated against [`Limits`] before it is sent.
///
/// ```no_run
/// # async fn run() -> Result<(), cio_api::Error> {
/// use cio_api::{Operation, Region, TrackClient, TrackCredentials};
/// use tower::ServiceExt;
///
/// let client = TrackClient::new(Region::Us, TrackCredentials::new("site", "key"));
/// let op = Operation::from_json(br#"{"type":"person","identifiers":{"id":"42"},"action":"identify","attributes":{"plan":"pro"}}"#)
///     .expect("a valid entry");
/// client.oneshot(op).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct TrackClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    core: Core,
    base: String,
}

/// A successful v1 answer.
#[derive(Clone, Debug)]
pub struct TrackResponse {
    /// 200, or 204 for form submissions.
    pub status: StatusCode,
    /// The body (usually `{}` or empty).
    pub body: Bytes,
}

impl TrackClient {
    /// A client with default options (10 s timeout, documented limits) on its own [`crate::Transport`].
    pub fn new(region: Region, credentials: TrackCredentials) -> Self {
        Self::builder(region, credentials).build()
    }

    /// A builder: options, a shared transport, or any tower HTTP service underneath.
    pub fn builder(region: Region, credentials: TrackCredentials) -> ClientBuilder<Self> {
        ClientBuilder::new(region, credentials.header())
    }

    /// Validates and sends one operation.
    pub fn send(&self, op: &Operation) -> ResponseFuture<TrackResponse> {
        let inner = self.inner.clone();
        let prepared = op
            .validate(&inner.core.limits)
            .map_err(Error::from)
            .and_then(|()| op.to_v1_wire(&inner.base));
        let idempotency = Idempotency::from_bool(op.is_idempotent());
        Box::pin(async move {
            let req = prepared?;
            let resp = inner
                .core
                .send_checked(req.method, &req.url, req.body, idempotency)
                .await?;
            Ok(TrackResponse {
                status: resp.status,
                body: resp.body,
            })
        })
    }

    /// `POST /unsubscribe/{delivery_id}` on the Track host (not under `/api/v1`, as the
    /// official SDK sends it): the person a message went to unsubscribes
    /// (`unsubscribe: true`) or takes it back (`false`), attributed to that delivery, as an
    /// unsubscribe link in the message does. Sending it twice has the effect of once.
    pub async fn unsubscribe(
        &self,
        delivery_id: &str,
        unsubscribe: bool,
    ) -> Result<TrackResponse, Error> {
        if delivery_id.trim().is_empty() {
            return Err(crate::limits::ValidationError::Empty {
                field: "delivery_id".into(),
            }
            .into());
        }
        // The host's root: the Track base without its `/v1` and `/api`.
        let root = self
            .inner
            .base
            .trim_end_matches("/v1")
            .trim_end_matches("/api");
        let url = format!(
            "{root}/unsubscribe/{}",
            percent_encoding::utf8_percent_encode(delivery_id, percent_encoding::NON_ALPHANUMERIC)
        );
        let body = serde_json::to_vec(&serde_json::json!({ "unsubscribe": unsubscribe }))
            .unwrap_or_default();
        let resp = self
            .inner
            .core
            .send_checked(
                Method::POST,
                &url,
                Some(Bytes::from(body)),
                Idempotency::Idempotent,
            )
            .await?;
        Ok(TrackResponse {
            status: resp.status,
            body: resp.body,
        })
    }

    /// `GET /api/v1/accounts/region`: the workspace's region, as `{url, region, environment_id}`.
    pub async fn account_region(&self) -> Result<serde_json::Value, Error> {
        let url = format!("{}/accounts/region", self.inner.base);
        let resp = self
            .inner
            .core
            .send_checked(Method::GET, &url, None, Idempotency::Idempotent)
            .await?;
        serde_json::from_slice(&resp.body).map_err(|e| Error::InvalidResponse {
            status: resp.status,
            reason: e.to_string(),
        })
    }
}

impl FromCore for TrackClient {
    fn from_core(core: Core, region: &Region) -> Self {
        TrackClient {
            inner: Arc::new(Inner {
                core,
                base: format!("{}/v1", region.track_base()),
            }),
        }
    }
}

impl tower::Service<Operation> for TrackClient {
    type Response = TrackResponse;
    type Error = Error;
    type Future = ResponseFuture<TrackResponse>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, op: Operation) -> Self::Future {
        self.send(&op)
    }
}
