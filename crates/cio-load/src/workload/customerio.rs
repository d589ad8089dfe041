//! Customer.io operations, through the raw clients or through the full layer stack.

use std::sync::Arc;

use cio_api::stack::{BatchedStack, StackConfig, StackError, StackService};
use cio_api::{AppClient, BatchClient, EntryError, TrackClient};
use cio_layers::batch::BatchError;
use futures_util::future::BoxFuture;
use std::borrow::Cow;
use tokio::time::Instant;

use super::service::send_app;
use super::{
    status_label, status_of_error, Iteration, Outcome, Payload, PayloadGenerator, ServiceWorkload,
    Workload,
};
use crate::target::Connection;
use crate::LoadError;

/// What a scenario's requests go through.
#[derive(Clone, Debug, Default)]
pub enum Through {
    /// The raw clients: one request per iteration (`TrackClient` for identify and track,
    /// `BatchClient` for a v2 batch, `AppClient` for transactional). Measures Customer.io (or the
    /// mock) as seen from one request.
    #[default]
    Client,
    /// The full layer stack ([`BatchedStack`]: batch, metrics, retry, rate limit, concurrency,
    /// deadline): every operation is a call of the stack, batched with the others. Measures your
    /// pipeline as its callers see it, linger and rate limit included. Transactional sends, which
    /// the stack does not carry, go through the `AppClient`.
    Stack(Box<StackConfig>),
}

/// The workload scenario files describe: a mix of Customer.io operations with seeded payloads.
///
/// ```no_run
/// # async fn run() -> Result<(), cio_load::LoadError> {
/// use cio_load::workload::{CioWorkload, PayloadGenerator, PayloadSpec, Through};
/// use cio_load::Connection;
///
/// let conn = Connection::new(
///     cio_api::Region::custom("http://127.0.0.1:7070").expect("a URL"),
///     cio_api::TrackCredentials::new("site", "key"),
///     cio_api::AppCredentials::new("app-key"),
/// );
/// let spec = PayloadSpec { mix: [1, 3, 0, 0], ..PayloadSpec::default() };
/// let workload = CioWorkload::new(&conn, Through::Client, PayloadGenerator::new(spec, "s"), "s")?;
/// # let _ = workload; Ok(()) }
/// ```
pub struct CioWorkload {
    inner: Inner,
}

enum Inner {
    Client {
        track: TrackClient,
        batch: BatchClient,
        app: AppClient,
        payloads: Arc<PayloadGenerator>,
    },
    Stack {
        workload: ServiceWorkload<StackService>,
    },
}

impl CioWorkload {
    /// Builds the clients (and the stack, which must happen inside a tokio runtime) for the
    /// scenario `scenario`.
    pub fn new(
        connection: &Connection,
        through: Through,
        payloads: PayloadGenerator,
        scenario: &str,
    ) -> Result<Self, LoadError> {
        let inner = match through {
            Through::Client => Inner::Client {
                track: connection.track_client(),
                batch: connection.batch_client(),
                app: connection.app_client(),
                payloads: Arc::new(payloads),
            },
            Through::Stack(mut config) => {
                config.metrics_name = format!("load_{scenario}");
                let stack = BatchedStack::new(connection.batch_client(), *config).map_err(|e| {
                    LoadError::Stack {
                        scenario: scenario.to_owned(),
                        reason: e.to_string(),
                    }
                })?;
                // Nothing is left to flush when the scenario ends: every iteration awaited its own
                // operations. Dropping the last clone of the service stops the batch worker.
                // (`BatchedStack::close` cannot be used here: the stack is not `Sync`, so its
                // future is not `Send`.)
                let workload = ServiceWorkload::new(stack.service(), payloads)
                    .status_with(stack_status)
                    .with_app(connection.app_client());
                Inner::Stack { workload }
            }
        };
        Ok(CioWorkload { inner })
    }
}

/// The `status` tag of an error of the stack.
fn stack_status(e: &StackError) -> Cow<'static, str> {
    match e {
        BatchError::Item(EntryError::Invalid(_)) => "invalid".into(),
        BatchError::Item(EntryError::Rejected { .. }) => "rejected".into(),
        BatchError::Batch(e) => status_of_error(e),
        BatchError::TooHeavy { .. } => "too_heavy".into(),
        BatchError::Closed => "closed".into(),
        BatchError::OutcomeMismatch { .. }
        | BatchError::WorkerFailed(_)
        | BatchError::NotReady
        | BatchError::ChunkTooLarge { .. } => "error".into(),
    }
}

impl Workload for CioWorkload {
    fn iterate(&self, iteration: Iteration) -> BoxFuture<'static, Outcome> {
        let (track, batch, app, payloads) = match &self.inner {
            Inner::Stack { workload } => return workload.iterate(iteration),
            Inner::Client {
                track,
                batch,
                app,
                payloads,
            } => (track, batch, app, payloads),
        };
        match payloads.payload(iteration.number) {
            Payload::Single(kind, op) => {
                let sent = Instant::now();
                let fut = track.send(&op);
                Box::pin(async move {
                    match fut.await {
                        Ok(r) => {
                            Outcome::success(kind.as_str(), status_label(r.status.as_u16()), sent)
                        }
                        Err(e) => Outcome::failure(kind.as_str(), status_of_error(&e), sent),
                    }
                })
            }
            Payload::Batch(ops) => {
                let n = ops.len() as u32;
                let sent = Instant::now();
                let fut = batch.send(&ops);
                Box::pin(async move {
                    match fut.await {
                        Ok(r) => {
                            let failed = n - r.accepted() as u32;
                            let status = match r.status {
                                Some(s) => status_label(s.as_u16()),
                                None => "invalid".into(),
                            };
                            let o = if failed == 0 {
                                Outcome::success("batch", status, sent)
                            } else {
                                Outcome::failure("batch", status, sent)
                            };
                            o.with_entries(n, failed)
                        }
                        Err(e) => {
                            Outcome::failure("batch", status_of_error(&e), sent).with_entries(n, n)
                        }
                    }
                })
            }
            Payload::Transactional(req) => {
                let app = app.clone();
                Box::pin(async move { send_app(&app, &req).await })
            }
        }
    }

    fn close(&self) -> BoxFuture<'static, ()> {
        match &self.inner {
            Inner::Stack { workload } => workload.close(),
            Inner::Client { .. } => Box::pin(async {}),
        }
    }
}
