use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};

use super::ResponseFuture;
use crate::pipelines::PipelinesRequest;
use crate::transport::{ClientOptions, Transport};
use crate::{Error, Limits, PipelinesCredentials, Region};

/// The Pipelines (CDP) API: Segment-compatible calls and batches.
///
/// Customer.io answers an over-size Pipelines request with 200 and silently drops it; this
/// client refuses it before sending ([`PipelinesRequest::encode`]).
#[derive(Clone, Debug)]
pub struct PipelinesClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    transport: Transport,
    base: String,
    auth: HeaderValue,
    limits: Limits,
}

/// A successful Pipelines answer.
#[derive(Clone, Debug)]
pub struct PipelinesResponse {
    /// The status.
    pub status: StatusCode,
}

impl PipelinesClient {
    /// A client with default options.
    pub fn new(region: Region, credentials: PipelinesCredentials) -> Self {
        Self::with_options(region, credentials, &ClientOptions::default())
    }

    /// A client with these options.
    pub fn with_options(
        region: Region,
        credentials: PipelinesCredentials,
        options: &ClientOptions,
    ) -> Self {
        Self::with_transport(
            region,
            credentials,
            Transport::new(options),
            options.limits.clone(),
        )
    }

    /// A client sharing an existing transport.
    pub fn with_transport(
        region: Region,
        credentials: PipelinesCredentials,
        transport: Transport,
        limits: Limits,
    ) -> Self {
        PipelinesClient {
            inner: Arc::new(Inner {
                transport,
                base: region.pipelines_base().to_owned(),
                auth: credentials.header(),
                limits,
            }),
        }
    }

    /// Validates and sends one request.
    pub fn send(&self, req: &PipelinesRequest) -> ResponseFuture<PipelinesResponse> {
        let inner = self.inner.clone();
        let body = req.encode(&inner.limits);
        let url = format!("{}{}", inner.base, req.path());
        Box::pin(async move {
            let body = body?;
            let resp = inner
                .transport
                .send_checked(Method::POST, &url, &inner.auth, Some(Bytes::from(body)))
                .await?;
            Ok(PipelinesResponse {
                status: resp.status,
            })
        })
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
