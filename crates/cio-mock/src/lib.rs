//! A mock Customer.io that behaves like the real one, for tests, benches, load tests and demos.
//!
//! One port serves every API laid out as Customer.io lays them out, so an official SDK pointed at
//! it with its `url` option works unchanged:
//!
//! | prefix | API | auth |
//! |---|---|---|
//! | `/api/v1/...` | Track v1 (`PUT /customers/{id}`, events, devices, merge, segments, metrics, push events, forms) and `POST /unsubscribe/{delivery_id}` | Basic `site_id:api_key` |
//! | `/api/v2/batch`, `/api/v2/entity` | Track v2 | Basic |
//! | `/v1/send/*`, `/v1/campaigns/{id}/triggers` | App API | Bearer |
//! | `/v1/customers?email=`, `/v1/customers/{id}/attributes`, `/segments`, `/activities`, `POST /v1/customers/attributes` | App API reads, from the kept state | Bearer |
//! | `/v1/identify`, `/track`, `/page`, `/screen`, `/group`, `/alias`, `/batch` | Pipelines | Basic `write_key:` |
//! | `/__mock/stats`, `/__mock/reset`, `/__mock/faults`, `/__mock/people/{id}`, `/__mock/objects/{type}/{id}` | the mock's own controls | none |
//!
//! **State.** It keeps what it accepted, merged as Customer.io merges it: people with their
//! attributes (`_update`, `_timestamp` ordering), latest events, devices, suppression, manual
//! segments and relationships, and objects. The App API reads answer from it, and
//! `GET /__mock/people/{id}` (or [`MockHandle::person`]) shows all of it to a test. Memory is
//! bounded: people, events per person, objects and remembered event ids are capped by count
//! (least recently used go first, counted in the stats), all of it by an estimated byte budget
//! ([`StoreLimits`]). The merge rules are in the `store` module's docs.
//!
//! It validates with the client's own rules (`cio_api::validate`) and answers like Customer.io:
//! 400 with its error bodies, 207 with `batch_index` errors, 401, 413 while reading an over-size
//! body, 429 with `Retry-After` from per-API token buckets (Track 100/s, App 10/s by default).
//! Faults (latency, 5xx, 429, dropped connections) can be changed while it runs, through
//! [`MockHandle::set_faults`] or `POST /__mock/faults`.
//!
//! **Keep-alive.** A pooling client must never meet a connection the mock left half-read. An
//! answer given before the body is read (a 401, a 429, an unknown path) and a 413 first read
//! the rest of the body and drop it, up to 4 MiB within 2 s, then keep the connection; past
//! those bounds, or when the client waits for `100 Continue`, the answer carries
//! `Connection: close` and the connection ends after it. Measured with the official Node SDK
//! (`tests/node/keepalive.sh`, 50 runs of 35 calls on Node's keep-alive agent, an oversize
//! identify, wrong credentials and 429s among them): 49 runs of 50 met `EPIPE`/`ECONNRESET`
//! before (the mock closed without saying so), none after.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let mock = cio_mock::MockServer::builder().start().await.unwrap();
//! println!("mock listening on {}", mock.url());
//! assert_eq!(mock.stats().requests, 0);
//! mock.shutdown().await;
//! # }
//! ```

#![warn(missing_docs)]
// Handlers return a ready HTTP answer as their error: it is the cold path, and boxing every
// answer would only add noise.
#![allow(clippy::result_large_err)]

mod answer;
mod app;
mod config;
mod reads;
mod server;
mod state;
mod stats;
mod store;
mod tls;
mod track;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{Faults, Latency, MockConfig, MockCredentials, RateLimit, StoreLimits};
pub use stats::StatsSnapshot;
pub use tls::TlsIdentity;

use state::State;

/// Entry point: [`MockServer::builder`].
pub struct MockServer;

impl MockServer {
    /// A builder with Customer.io's defaults (Track 100/s, App 10/s, no credentials required,
    /// no faults), listening on a free loopback port.
    pub fn builder() -> MockBuilder {
        MockBuilder {
            config: MockConfig::default(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: false,
        }
    }
}

/// Configures and starts a mock server.
#[derive(Clone, Debug)]
pub struct MockBuilder {
    config: MockConfig,
    listen: SocketAddr,
    tls: bool,
}

/// Why the mock could not start.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    /// The address could not be bound (in use, not permitted).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Invalid faults.
    #[error("invalid faults: {0}")]
    Faults(String),
    /// The TLS certificate could not be made.
    #[error("{0}")]
    Tls(String),
}

impl MockBuilder {
    /// Serve `https://` with a certificate made at start for `127.0.0.1`, `::1` and
    /// `localhost`, signed by a CA made at start too. [`MockHandle::ca_pem`] is the CA to
    /// trust, and [`MockHandle::client_options`] a client configuration that trusts it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use cio_api::{Operation, TrackClient, TrackCredentials};
    /// use tower::ServiceExt;
    ///
    /// let mock = cio_mock::MockServer::builder().tls().start().await.unwrap();
    /// assert!(mock.url().starts_with("https://127.0.0.1:"));
    /// let client = TrackClient::builder(mock.region(), TrackCredentials::new("s", "k"))
    ///     .options(mock.client_options())
    ///     .build();
    /// let op = Operation::from_json(br#"{"type":"person","identifiers":{"id":"42"},"action":"identify"}"#).unwrap();
    /// client.oneshot(op).await.unwrap();
    /// assert_eq!(mock.stats().requests, 1);
    /// # }
    /// ```
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Where to listen (default `127.0.0.1:0`, a free port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Require these Track credentials (otherwise any well-formed Basic credentials pass).
    pub fn track_credentials(mut self, site_id: &str, api_key: &str) -> Self {
        self.config.credentials.track = Some(cio_api::TrackCredentials::new(site_id, api_key));
        self
    }

    /// Require this App API key.
    pub fn app_key(mut self, key: &str) -> Self {
        self.config.credentials.app = Some(cio_api::AppCredentials::new(key));
        self
    }

    /// Require this Pipelines write key.
    pub fn pipelines_key(mut self, key: &str) -> Self {
        self.config.credentials.pipelines = Some(cio_api::PipelinesCredentials::new(key));
        self
    }

    /// The Track limit (`None`: unlimited).
    pub fn track_limit(mut self, limit: Option<RateLimit>) -> Self {
        self.config.track_limit = limit;
        self
    }

    /// The App API limit (`None`: unlimited).
    pub fn app_limit(mut self, limit: Option<RateLimit>) -> Self {
        self.config.app_limit = limit;
        self
    }

    /// The Pipelines limit (`None`: unlimited).
    pub fn pipelines_limit(mut self, limit: Option<RateLimit>) -> Self {
        self.config.pipelines_limit = limit;
        self
    }

    /// Track rate per second with a burst; 0 means unlimited.
    pub fn track_rate(self, per_second: u32, burst: u32) -> Self {
        let limit = NonZeroU32::new(per_second).map(|r| RateLimit {
            per_second: r,
            burst: NonZeroU32::new(burst).unwrap_or(r),
        });
        self.track_limit(limit)
    }

    /// No rate limits at all (for throughput benches).
    pub fn unlimited(self) -> Self {
        self.track_limit(None).app_limit(None).pipelines_limit(None)
    }

    /// Validation limits.
    pub fn limits(mut self, limits: cio_api::Limits) -> Self {
        self.config.limits = limits;
        self
    }

    /// Redirects every API request to `url` (see [`MockConfig::redirect_to`]): a URL such as
    /// `https://track-eu.example:443/` or the mock itself under a prefix.
    pub fn redirect_to(mut self, url: http::Uri) -> Self {
        self.config.redirect_to = Some(url);
        self
    }

    /// How often one broadcast may be triggered (default 10 s, Customer.io's).
    pub fn broadcast_interval(mut self, every: std::time::Duration) -> Self {
        self.config.broadcast_interval = every;
        self
    }

    /// Whether to keep people, events, devices, segments and objects (default on): see
    /// [`MockConfig::keep_state`].
    pub fn keep_state(mut self, yes: bool) -> Self {
        self.config.keep_state = yes;
        self
    }

    /// The caps on what is kept and the de-duplication window (default [`StoreLimits::default`]).
    pub fn store_limits(mut self, limits: StoreLimits) -> Self {
        self.config.store = limits;
        self
    }

    /// Faults at start.
    pub fn faults(mut self, faults: Faults) -> Self {
        self.config.faults = faults;
        self
    }

    /// The whole configuration at once.
    pub fn config(mut self, config: MockConfig) -> Self {
        self.config = config;
        self
    }

    /// Binds and starts serving in a background task.
    pub async fn start(self) -> Result<MockHandle, MockError> {
        self.config.faults.check().map_err(MockError::Faults)?;
        let listener = TcpListener::bind(self.listen)
            .await
            .map_err(|source| MockError::Bind {
                addr: self.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| MockError::Bind {
            addr: self.listen,
            source,
        })?;
        let tls = if self.tls {
            Some(TlsIdentity::generate().map_err(MockError::Tls)?)
        } else {
            None
        };
        let ca_pem = tls.as_ref().map(|t| t.ca_pem().to_owned());
        let state = Arc::new(State::new(self.config));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server::serve(
            listener,
            state.clone(),
            tls,
            shutdown.clone(),
        ));
        Ok(MockHandle {
            addr,
            ca_pem,
            state,
            shutdown,
            task: Some(task),
        })
    }
}

/// A running mock. Dropping it stops the server; [`MockHandle::shutdown`] also waits for
/// in-flight requests.
pub struct MockHandle {
    addr: SocketAddr,
    /// With TLS: the CA that signed its certificate.
    ca_pem: Option<String>,
    state: Arc<State>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MockHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockHandle")
            .field("addr", &self.addr)
            .field("tls", &self.ca_pem.is_some())
            .finish()
    }
}

impl MockHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, or `https://ADDR` with [`MockBuilder::tls`].
    pub fn url(&self) -> String {
        if self.ca_pem.is_some() {
            format!("https://{}", self.addr)
        } else {
            format!("http://{}", self.addr)
        }
    }

    /// With [`MockBuilder::tls`]: the PEM of the CA that clients must trust.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// Client options that reach this mock: with TLS, its CA trusted on top of the default roots;
    /// without, the defaults.
    pub fn client_options(&self) -> cio_api::ClientOptions {
        let mut options = cio_api::ClientOptions::default();
        if let Some(pem) = &self.ca_pem {
            match options.tls.clone().with_ca_pem(pem.as_bytes()) {
                Ok(tls) => options.tls = tls,
                // The PEM was made by this process a moment ago: it always reads.
                Err(e) => tracing::error!(error = %e, "the mock's own CA did not read back"),
            }
        }
        options
    }

    /// A [`cio_api::Region`] pointing every client at this mock.
    pub fn region(&self) -> cio_api::Region {
        cio_api::Region::Custom(cio_api::CustomEndpoints {
            track: format!("{}/api", self.url()),
            app: format!("{}/v1", self.url()),
            pipelines: format!("{}/v1", self.url()),
        })
    }

    /// What it has seen so far.
    pub fn stats(&self) -> StatsSnapshot {
        self.state.snapshot()
    }

    /// Clears the stats, the set of seen event ids and everything kept.
    pub fn reset(&self) {
        self.state.reset();
    }

    /// Everything the mock keeps of the person with this `id` (as `GET /__mock/people/{id}`
    /// answers): identifiers, attributes with their timestamps, devices, latest events (newest
    /// first), segments, relationships, and whether they are suppressed. `None` when it keeps no
    /// such person (never sent, deleted, merged away or evicted), or keeps no state at all.
    pub fn person(&self, id: &str) -> Option<serde_json::Value> {
        let who = store::Lookup::new(id, None)?;
        self.state.store.as_ref()?.person(&who)
    }

    /// The current faults.
    pub fn faults(&self) -> Faults {
        self.state.faults()
    }

    /// Replaces the faults, effective for the next request.
    pub fn set_faults(&self, faults: Faults) -> Result<(), MockError> {
        self.state.set_faults(faults).map_err(MockError::Faults)
    }

    /// The configuration it started with.
    pub fn config(&self) -> &MockConfig {
        &self.state.config
    }

    /// Stops accepting, lets in-flight requests finish (up to a few seconds), and returns.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Resolves when the server stops (after [`MockHandle::shutdown`] from another clone of the
    /// token, or on a fatal error). For `cio mock`, which runs until a signal.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

impl Drop for MockHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
