//! A load test defined in code: two scenarios side by side against the embedded mock (whose
//! Track limit is 100 requests/s), one through the raw v1 client at 60 identifies/s, one through
//! the full batched stack at 2,000 events/s; k6-style thresholds gate the result.
//!
//! ```text
//! cargo run --release --example load_test
//! ```
//!
//! Together the two stay under the workspace limit: 60 v1 requests/s plus the stack's own
//! limit of 30 batch requests/s (the seed's two 100/s scenarios together exceeded the 100/s they
//! tested). Exit status 99 when a threshold fails, as k6.

use std::num::NonZeroU32;
use std::time::Duration;

use cio_load::workload::{CioWorkload, PayloadGenerator, PayloadSpec, Through};
use cio_load::{Connection, Executor, LoadTest, Scenario, Threshold};
use cio_toolkit::api::stack::StackConfig;
use cio_toolkit::layers::rate_limit::Quota;

#[tokio::main]
async fn main() -> Result<std::process::ExitCode, Box<dyn std::error::Error>> {
    let mock = cio_toolkit::mock::MockServer::builder()
        .track_rate(100, 100)
        .start()
        .await?;
    let conn = Connection::new(
        mock.region(),
        cio_toolkit::api::TrackCredentials::new("site", "key"),
        cio_toolkit::api::AppCredentials::new("app"),
    );

    // mix: [identify, track event, v2 batch, transactional]
    let identifies = PayloadSpec {
        mix: [1, 0, 0, 0],
        attributes: 8,
        ..PayloadSpec::default()
    };
    let events = PayloadSpec {
        mix: [0, 1, 0, 0],
        attributes: 5,
        ..PayloadSpec::default()
    };
    let stack = StackConfig {
        rate: Quota::per_second(NonZeroU32::new(30).expect("non-zero")),
        ..StackConfig::default()
    };
    let report = LoadTest::new()
        .scenario(Scenario::new(
            "identify_v1",
            Executor::ConstantArrivalRate {
                rate: 60,
                time_unit: Duration::from_secs(1),
                duration: Duration::from_secs(5),
                pre_allocated_vus: 10,
                max_vus: 50,
            },
            CioWorkload::new(
                &conn,
                Through::Client,
                PayloadGenerator::new(identifies, "identify"),
                "identify_v1",
            )?,
        ))
        .scenario(Scenario::new(
            "events_batched",
            Executor::ConstantArrivalRate {
                rate: 2_000,
                time_unit: Duration::from_secs(1),
                duration: Duration::from_secs(5),
                pre_allocated_vus: 500,
                max_vus: 2_000,
            },
            CioWorkload::new(
                &conn,
                Through::Stack(Box::new(stack)),
                PayloadGenerator::new(events, "events"),
                "events_batched",
            )?,
        ))
        .threshold(Threshold::parse("errors", "rate<0.01")?)
        .threshold(Threshold::parse("latency", "p(95)<1000")?)
        .run()
        .await?;
    println!("{}", report.render());
    let stats = mock.stats();
    println!(
        "mock: {} requests, {} over its own limit, accepted {:?}",
        stats.requests, stats.rate_limited, stats.accepted
    );
    Ok(if report.passed {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(99)
    })
}
