use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, StatusCode};
use serde::Deserialize;

use super::shared::{ClientBuilder, Core, FromCore};
use super::ResponseFuture;
use crate::encode::{encode_batch, PreparedBatch};
use crate::limits::ValidationError;
use crate::transport::Idempotency;
use crate::{Error, Limits, Operation, Region, TrackCredentials};

/// Track API v2 batch: many entries in one `POST /api/v2/batch`, answered per entry.
///
/// Entries that break a limit are refused locally and never sent; the rest go in one request.
/// A `207` (or a `200` carrying an `errors` array, which Customer.io has been seen to send) maps
/// each `errors[].batch_index` back to the exact entry of the caller's `Vec`, so a partial failure
/// is never mistaken for success. A whole-request failure (401, 429, 5xx, timeout) is an `Err`.
///
/// The request body must stay within [`Limits::batch_bytes`] (500 KB): a bigger batch is an
/// [`Error::Validation`] for the whole call, since splitting is the batch layer's job.
///
/// ```no_run
/// # async fn run() -> Result<(), cio_api::Error> {
/// use cio_api::{BatchClient, Operation, Region, TrackCredentials};
/// use tower::ServiceExt;
///
/// let client = BatchClient::new(Region::custom("http://127.0.0.1:7070").unwrap(), TrackCredentials::new("s", "k"));
/// let ops: Vec<Operation> = Vec::new();
/// let answer = client.oneshot(ops).await?;
/// for (i, outcome) in answer.outcomes.iter().enumerate() {
///     if let Err(e) = outcome { eprintln!("entry {i} refused: {e}"); }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct BatchClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    core: Core,
    batch_url: String,
    entity_url: String,
}

/// Why one entry of a batch was not accepted. Never retryable: the entry itself is at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// Refused before sending: it breaks a limit.
    #[error("refused before sending: {0}")]
    Invalid(ValidationError),
    /// Refused by Customer.io (a 207's `errors[]`).
    #[error("rejected by Customer.io: {}", rejected_text(.reason, .field, .message))]
    Rejected {
        /// Customer.io's `reason`.
        reason: String,
        /// The field, when given.
        field: Option<String>,
        /// Customer.io's `message`.
        message: String,
    },
}

fn rejected_text(reason: &str, field: &Option<String>, message: &str) -> String {
    match field {
        Some(f) => format!("{reason} ({f}): {message}"),
        None => format!("{reason}: {message}"),
    }
}

/// The per-entry answer to a batch: `outcomes[i]` belongs to the caller's entry `i`.
#[derive(Clone, Debug)]
pub struct BatchResponse {
    /// The HTTP status (200 or 207), or `None` when no request was sent (every entry invalid).
    pub status: Option<StatusCode>,
    /// One outcome per entry, in the caller's order.
    pub outcomes: Vec<Result<(), EntryError>>,
}

impl BatchResponse {
    /// How many entries were accepted.
    pub fn accepted(&self) -> usize {
        self.outcomes.iter().filter(|o| o.is_ok()).count()
    }
}

#[derive(Deserialize)]
struct ErrorsBody {
    #[serde(default)]
    errors: Vec<EntryErrorBody>,
}

#[derive(Deserialize)]
struct EntryErrorBody {
    batch_index: Option<usize>,
    #[serde(default)]
    reason: String,
    field: Option<String>,
    #[serde(default)]
    message: String,
}

impl BatchClient {
    /// A client with default options on its own [`crate::Transport`].
    pub fn new(region: Region, credentials: TrackCredentials) -> Self {
        Self::builder(region, credentials).build()
    }

    /// A builder: options, a shared transport, or any tower HTTP service underneath.
    pub fn builder(region: Region, credentials: TrackCredentials) -> ClientBuilder<Self> {
        ClientBuilder::new(region, credentials.header())
    }

    /// The limits this client enforces.
    pub fn limits(&self) -> &Limits {
        &self.inner.core.limits
    }

    /// Validates, encodes and sends a batch.
    pub fn send(&self, ops: &[Operation]) -> ResponseFuture<BatchResponse> {
        let inner = self.inner.clone();
        let encoded = encode_batch(ops, &inner.core.limits);
        let n = ops.len();
        let ops_idempotent: Vec<bool> = ops.iter().map(Operation::is_idempotent).collect();
        Box::pin(async move {
            let encoded = encoded?;
            let mut outcomes: Vec<Result<(), EntryError>> = vec![Ok(()); n];
            for (i, e) in encoded.rejected {
                outcomes[i] = Err(EntryError::Invalid(e));
            }
            if encoded.sent.is_empty() {
                return Ok(BatchResponse {
                    status: None,
                    outcomes,
                });
            }
            // Sent again after a broken connection only if every entry sent is idempotent.
            let idempotency = Idempotency::from_bool(
                encoded
                    .sent
                    .iter()
                    .all(|&i| ops_idempotent.get(i).copied().unwrap_or(false)),
            );
            inner
                .post_batch(
                    Bytes::from(encoded.body),
                    &encoded.sent,
                    idempotency,
                    outcomes,
                )
                .await
        })
    }

    /// Sends a batch whose entries were validated and encoded already ([`PreparedBatch`]):
    /// nothing is validated or serialized again, and a retry sends the same bytes. Only the
    /// body's size is checked against [`Limits::batch_bytes`].
    pub fn send_prepared(&self, batch: PreparedBatch) -> ResponseFuture<BatchResponse> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let n = batch.len();
            if n == 0 {
                return Ok(BatchResponse {
                    status: None,
                    outcomes: Vec::new(),
                });
            }
            let limit = inner.core.limits.batch_bytes;
            if batch.body().len() > limit {
                return Err(Error::from(ValidationError::TooLarge {
                    field: "batch".into(),
                    limit,
                    actual: batch.body().len(),
                }));
            }
            let sent: Vec<usize> = (0..n).collect();
            let idempotency = Idempotency::from_bool(batch.is_idempotent());
            inner
                .post_batch(batch.body().clone(), &sent, idempotency, vec![Ok(()); n])
                .await
        })
    }

    /// `POST /api/v2/entity`: one entry on its own (at most 32 KB).
    pub async fn entity(&self, op: &Operation) -> Result<(), Error> {
        let mut body = Vec::with_capacity(256);
        op.encode_entry(&self.inner.core.limits, &mut body)?;
        self.inner
            .core
            .send_checked(
                Method::POST,
                &self.inner.entity_url,
                Some(Bytes::from(body)),
                Idempotency::from_bool(op.is_idempotent()),
            )
            .await?;
        Ok(())
    }
}

impl Inner {
    /// POSTs `body` (entries `sent[i]` of the caller's, in order) and maps a 207's or a 200's
    /// `errors[]` back onto `outcomes`.
    async fn post_batch(
        &self,
        body: Bytes,
        sent: &[usize],
        idempotency: Idempotency,
        mut outcomes: Vec<Result<(), EntryError>>,
    ) -> Result<BatchResponse, Error> {
        let resp = self
            .core
            .send_checked(Method::POST, &self.batch_url, Some(body), idempotency)
            .await?;
        // 200 `{}` (or an empty body) is all accepted; a 207 or a 200 with `errors` is not.
        if !resp.body.is_empty() {
            let parsed: ErrorsBody =
                serde_json::from_slice(&resp.body).map_err(|e| Error::InvalidResponse {
                    status: resp.status,
                    reason: format!("expected {{\"errors\":[...]}}: {e}"),
                })?;
            for err in parsed.errors {
                let Some(original) = err.batch_index.and_then(|i| sent.get(i)) else {
                    return Err(Error::InvalidResponse {
                        status: resp.status,
                        reason: format!(
                            "error without a valid batch_index ({:?} of {} entries sent): {}",
                            err.batch_index,
                            sent.len(),
                            err.message
                        ),
                    });
                };
                outcomes[*original] = Err(EntryError::Rejected {
                    reason: err.reason,
                    field: err.field,
                    message: err.message,
                });
            }
        } else if resp.status == StatusCode::MULTI_STATUS {
            return Err(Error::InvalidResponse {
                status: resp.status,
                reason: "a 207 without an errors array".into(),
            });
        }
        Ok(BatchResponse {
            status: Some(resp.status),
            outcomes,
        })
    }
}

impl FromCore for BatchClient {
    fn from_core(core: Core, region: &Region) -> Self {
        BatchClient {
            inner: Arc::new(Inner {
                core,
                batch_url: format!("{}/v2/batch", region.track_base()),
                entity_url: format!("{}/v2/entity", region.track_base()),
            }),
        }
    }
}

/// The same, for a shared batch: retries resend it without copying the entries.
impl tower::Service<Arc<[Operation]>> for BatchClient {
    type Response = BatchResponse;
    type Error = Error;
    type Future = ResponseFuture<BatchResponse>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, ops: Arc<[Operation]>) -> Self::Future {
        self.send(&ops)
    }
}

/// A batch encoded once: retries resend the same bytes.
impl tower::Service<PreparedBatch> for BatchClient {
    type Response = BatchResponse;
    type Error = Error;
    type Future = ResponseFuture<BatchResponse>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, batch: PreparedBatch) -> Self::Future {
        self.send_prepared(batch)
    }
}

impl tower::Service<Vec<Operation>> for BatchClient {
    type Response = BatchResponse;
    type Error = Error;
    type Future = ResponseFuture<BatchResponse>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, ops: Vec<Operation>) -> Self::Future {
        self.send(&ops)
    }
}
