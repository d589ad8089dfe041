//! An open-model load generator for Customer.io integrations, in k6's vocabulary: scenarios
//! with arrival-rate and VU executors, latency measured from the scheduled start (no
//! coordinated omission), per scenario, operation and status metrics, thresholds that gate a
//! release, and reports for people and machines. `cio load FILE` runs it from the command line;
//! this crate is the same thing as a library.
//!
//! | module | what it holds |
//! |---|---|
//! | [`config`] | scenario files (TOML or JSON) read into a checked [`Plan`], errors with file, line and field |
//! | [`scenario`] | [`Scenario`] and [`Executor`]: `constant-arrival-rate`, `ramping-arrival-rate`, `constant-vus`, `ramping-vus`, `shared-iterations`, `per-vu-iterations` |
//! | [`schedule`] | when iterations are due (the open model's arithmetic) and how many VUs run |
//! | [`workload`] | what an iteration does: [`workload::CioWorkload`] (identify, track, v2 batch, transactional through the raw clients or the layer stack), [`workload::ServiceWorkload`] (any `tower::Service<Operation>`), closures; seeded payloads |
//! | [`target`] | the mock, a URL, or Customer.io US/EU with credentials from the environment |
//! | [`metrics`] | the metrics (`latency`, `service_time`, `iterations`, `dropped_iterations`, `errors`, ...) in hdrhistogram |
//! | [`threshold`] | k6 thresholds: `p(95)<500`, `avg<200`, `rate<0.01`, `count>N`, `abort_on_fail` |
//! | [`report`] | the [`Report`] (terminal summary, `--summary-export` JSON, an HTML page with charts for `--report`), the one-second [`report::Point`]s, the progress line |
//! | [`LoadTest`] | scenarios side by side, safety [`Bounds`], the run and its [`RunHandle`] |
//!
//! # A load test in code
//!
//! Against the embedded mock, 200 track events per second for two seconds, through the raw
//! client, with a latency threshold:
//!
//! ```
//! use std::time::Duration;
//! use cio_load::workload::{CioWorkload, PayloadGenerator, PayloadSpec, Through};
//! use cio_load::{Connection, Executor, LoadTest, Scenario, Threshold};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mock = cio_mock::MockServer::builder().unlimited().start().await?;
//! let conn = Connection::new(
//!     mock.region(),
//!     cio_api::TrackCredentials::new("site", "key"),
//!     cio_api::AppCredentials::new("app"),
//! );
//! let events = PayloadSpec { mix: [0, 1, 0, 0], attributes: 5, ..PayloadSpec::default() };
//! let workload = CioWorkload::new(&conn, Through::Client, PayloadGenerator::new(events, "events"), "events")?;
//! let report = LoadTest::new()
//!     .scenario(Scenario::new(
//!         "events",
//!         Executor::ConstantArrivalRate {
//!             rate: 200,
//!             time_unit: Duration::from_secs(1),
//!             duration: Duration::from_secs(2),
//!             pre_allocated_vus: 10,
//!             max_vus: 50,
//!         },
//!         workload,
//!     ))
//!     .threshold(Threshold::parse("latency", "p(99)<1000")?)
//!     .threshold(Threshold::parse("errors", "rate<0.01")?)
//!     .run()
//!     .await?;
//! println!("{}", report.render());
//! assert_eq!(report.scenarios["events"].started, 400);
//! assert!(report.passed);
//! # Ok(()) }
//! ```
//!
//! From a file, the same through [`Plan::from_file`] and [`Plan::load_test`].
//!
//! # Measuring without coordinated omission
//!
//! An arrival-rate executor starts iteration *n* at its scheduled instant whatever happened to
//! iteration *n-1*. `latency` runs from that instant, so a stalled server shows as high latency
//! for every request that was due during the stall, and, when every VU is stuck, as
//! `dropped_iterations` — never as requests that were quietly sent later and look fast.
//! `service_time` runs from the actual send, which is what the server alone took.

#![warn(missing_docs)]

pub mod config;
mod error;
mod executor;
pub mod metrics;
pub mod report;
mod run;
mod samples;
pub mod scenario;
pub mod schedule;
pub mod target;
pub mod threshold;
mod warnings;
pub mod workload;

pub use config::Plan;
pub use error::{LoadError, Location, Problem};
pub use report::Report;
pub use run::{Bounds, Live, LoadTest, RunHandle};
pub use samples::SampleFormat;
pub use scenario::{Executor, Scenario, Stage};
pub use target::{Connection, Credentials, Endpoint};
pub use threshold::Threshold;
pub use workload::{Iteration, Outcome, Workload};

/// Parses a duration written like k6's (`"30s"`, `"1m30s"`, `"500ms"`), for command-line flags.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    config::parse_duration(s)
}
