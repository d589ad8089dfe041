//! Generated operations through any `tower::Service<Operation>`: your own pipeline, or the full
//! layer stack ([`cio_api::stack::BatchedStack`]).

use std::borrow::Cow;
use std::sync::{Arc, Mutex, PoisonError};

use cio_api::{AppClient, Operation};
use futures_util::future::BoxFuture;
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use super::{
    status_label, status_of_error, Iteration, Outcome, Payload, PayloadGenerator, Workload,
};

type StatusFn<E> = fn(&E) -> Cow<'static, str>;

/// Sends each iteration's generated operations through a cloneable service of single
/// operations. A v2 batch of N becomes N concurrent calls (the service batches them its own
/// way); transactional sends go to the [`AppClient`] given with [`ServiceWorkload::with_app`],
/// and without one they fail with status `unsupported`.
///
/// Service time starts when the service is ready and the call is made, so time spent waiting in
/// `poll_ready` (a full batch queue, a rate limit) counts in latency but not in service time.
///
/// ```
/// use std::convert::Infallible;
/// use cio_api::Operation;
/// use cio_load::workload::{PayloadGenerator, PayloadSpec, ServiceWorkload};
///
/// let my_pipeline = tower::service_fn(|_op: Operation| async { Ok::<_, Infallible>(()) });
/// let workload = ServiceWorkload::new(
///     my_pipeline,
///     PayloadGenerator::new(PayloadSpec::default(), "pipeline"),
/// );
/// # let _ = workload;
/// ```
pub struct ServiceWorkload<S: Service<Operation>> {
    // Services such as `BoxCloneService` are `Send` but not `Sync`; every iteration takes its own
    // clone, made under this lock (never held across an await).
    service: Mutex<S>,
    payloads: Arc<PayloadGenerator>,
    app: Option<AppClient>,
    status: StatusFn<S::Error>,
    close: Option<Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>>,
}

impl<S> ServiceWorkload<S>
where
    S: Service<Operation> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    S::Error: Send,
{
    /// A workload over `service`; every error has status `error` until
    /// [`ServiceWorkload::status_with`] says otherwise.
    pub fn new(service: S, payloads: PayloadGenerator) -> Self {
        ServiceWorkload {
            service: Mutex::new(service),
            payloads: Arc::new(payloads),
            app: None,
            status: |_| Cow::Borrowed("error"),
            close: None,
        }
    }

    /// Names the `status` tag of an error.
    pub fn status_with(mut self, f: StatusFn<S::Error>) -> Self {
        self.status = f;
        self
    }

    /// Sends transactional payloads through this client.
    pub fn with_app(mut self, app: AppClient) -> Self {
        self.app = Some(app);
        self
    }

    /// Runs `f` when the scenario ends (flush the service's buffers).
    pub fn on_close(
        mut self,
        f: impl Fn() -> BoxFuture<'static, ()> + Send + Sync + 'static,
    ) -> Self {
        self.close = Some(Arc::new(f));
        self
    }
}

impl<S> Workload for ServiceWorkload<S>
where
    S: Service<Operation> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    S::Error: Send,
{
    fn iterate(&self, iteration: Iteration) -> BoxFuture<'static, Outcome> {
        let payload = self.payloads.payload(iteration.number);
        let service = self
            .service
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let status = self.status;
        let app = self.app.clone();
        Box::pin(async move {
            match payload {
                Payload::Single(kind, op) => {
                    let mut service = service;
                    let ready = service.ready().await;
                    let sent = Instant::now();
                    let result = match ready {
                        Ok(svc) => svc.call(op).await,
                        Err(e) => Err(e),
                    };
                    match result {
                        Ok(_) => Outcome::success(kind.as_str(), "ok", sent),
                        Err(e) => Outcome::failure(kind.as_str(), status(&e), sent),
                    }
                }
                Payload::Batch(ops) => {
                    let n = ops.len() as u32;
                    let sent = Instant::now();
                    let results = futures_util::future::join_all(
                        ops.into_iter().map(|op| service.clone().oneshot(op)),
                    )
                    .await;
                    let mut failed = 0;
                    let mut first_error = None;
                    for r in results {
                        if let Err(e) = r {
                            failed += 1;
                            first_error.get_or_insert_with(|| status(&e));
                        }
                    }
                    let outcome = match first_error {
                        None => Outcome::success("batch", "ok", sent),
                        Some(s) => Outcome::failure("batch", s, sent),
                    };
                    outcome.with_entries(n, failed)
                }
                Payload::Transactional(req) => match app {
                    Some(app) => send_app(&app, &req).await,
                    None => Outcome::failure("transactional", "unsupported", Instant::now()),
                },
            }
        })
    }

    fn close(&self) -> BoxFuture<'static, ()> {
        match &self.close {
            Some(f) => f(),
            None => Box::pin(async {}),
        }
    }
}

/// One transactional send through the App API client.
pub(super) async fn send_app(app: &AppClient, req: &cio_api::AppRequest) -> Outcome {
    let sent = Instant::now();
    match app.send(req).await {
        Ok(r) => Outcome::success("transactional", status_label(r.status.as_u16()), sent),
        Err(e) => Outcome::failure("transactional", status_of_error(&e), sent),
    }
}
