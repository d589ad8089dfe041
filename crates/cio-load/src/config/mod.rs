//! Scenario files: TOML (or JSON) in k6's vocabulary, read into a checked [`Plan`].
//!
//! ```toml
//! [options]                     # safety bounds (defaults: 1h, 50,000,000 iterations, 20,000 VUs)
//! max_duration = "10m"
//!
//! [target]
//! endpoint = "mock"             # "mock" (default), an http(s):// URL, "us" or "eu"
//! workspace_rate_limit = 100    # Track requests/s of your workspace: a plan above it is warned about
//! mock = { track_rate = 0 }     # the embedded mock: 0 = no rate limit
//!
//! [thresholds]
//! latency = ["p(95)<500", "p(99)<1000"]
//! errors = [{ threshold = "rate<0.01", abort_on_fail = true, delay_abort_eval = "10s" }]
//! "latency{scenario:checkout,operation:track}" = ["avg<200"]
//!
//! [scenarios.checkout]
//! executor = "constant-arrival-rate"   # or ramping-arrival-rate, constant-vus, ramping-vus
//! rate = 200
//! time_unit = "1s"
//! duration = "1m"
//! pre_allocated_vus = 20
//! max_vus = 100
//! graceful_stop = "10s"
//! start_time = "0s"
//! workload = { mix = { identify = 1, track = 3, batch = 1 }, batch_size = 50, attributes = 5, attribute_bytes = 20, ids = 100000, seed = 7 }
//! ```
//!
//! Every mistake is reported with the file, line, column and field, whether toml or serde
//! found it (a wrong type, an unknown field) or the plan's own rules did (`stages` on a
//! constant executor, a threshold naming no scenario, a payload over Customer.io's limits).
//! The full reference is `docs/load-testing.md`.

mod file;
mod guess;

pub(crate) use guess::closest as closest_name;
mod locate;
mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

use cio_api::ClientOptions;

use crate::error::{Location, Problem};
use crate::metrics::TrendColumn;
use crate::run::{Bounds, LoadTest};
use crate::scenario::{Executor, Scenario};
use crate::target::{Connection, Endpoint};
use crate::threshold::Threshold;
use crate::workload::{CioWorkload, OperationKind, PayloadGenerator, PayloadSpec, Through};
use crate::LoadError;

pub(crate) use file::parse_duration;
use locate::{line_col, FieldPath, Source};

/// The embedded mock's settings (`[target.mock]`). Defaults are Customer.io's limits.
#[derive(Clone, Debug, PartialEq)]
pub struct MockOptions {
    /// Track requests per second, 0 for no limit (default 100).
    pub track_rate: u32,
    /// Track burst (default: the rate).
    pub track_burst: Option<u32>,
    /// App API requests per second, 0 for no limit (default 10).
    pub app_rate: u32,
    /// Added latency, median in ms.
    pub latency_ms: Option<f64>,
    /// Added latency, 99th percentile in ms (log-normal between the two).
    pub latency_p99_ms: Option<f64>,
    /// Share of requests answered 500/502/503.
    pub error_rate: f64,
    /// Share of requests answered 429.
    pub throttle_rate: f64,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions {
            track_rate: 100,
            track_burst: None,
            app_rate: 10,
            latency_ms: None,
            latency_p99_ms: None,
            error_rate: 0.0,
            throttle_rate: 0.0,
        }
    }
}

/// Where the plan's requests go (`[target]`).
#[derive(Clone, Debug, PartialEq)]
pub struct TargetSpec {
    /// The endpoint (default: the embedded mock).
    pub endpoint: Endpoint,
    /// Track requests per second your workspace allows (default 100, Customer.io's long-standing
    /// figure): a plan above it is warned about.
    pub workspace_rate_limit: u32,
    /// App API requests per second (default 10).
    pub app_rate_limit: u32,
    /// Timeout of one request (default 10 s).
    pub timeout: Duration,
    /// The embedded mock's settings.
    pub mock: MockOptions,
}

impl Default for TargetSpec {
    fn default() -> Self {
        TargetSpec {
            endpoint: Endpoint::Mock,
            workspace_rate_limit: 100,
            app_rate_limit: 10,
            timeout: Duration::from_secs(10),
            mock: MockOptions::default(),
        }
    }
}

/// One scenario of a file, checked, before its clients exist.
#[derive(Clone, Debug)]
pub struct ScenarioPlan {
    /// Its name.
    pub name: String,
    /// Its executor.
    pub executor: Executor,
    /// `start_time`.
    pub start_time: Duration,
    /// `graceful_stop`.
    pub graceful_stop: Duration,
    /// What its iterations send.
    pub payload: PayloadSpec,
    /// Through the raw clients or the stack.
    pub through: Through,
}

/// A checked scenario file.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Safety bounds (`[options]`).
    pub bounds: Bounds,
    /// The target (`[target]`).
    pub target: TargetSpec,
    /// The thresholds.
    pub thresholds: Vec<Threshold>,
    /// The scenarios, by name.
    pub scenarios: Vec<ScenarioPlan>,
    /// The statistics the summary lists for each trend (`[options] summary_trend_stats`).
    pub summary_trend_stats: Vec<TrendColumn>,
}

impl Plan {
    /// Reads a scenario file: JSON when it ends in `.json` (or starts with `{`), TOML otherwise.
    pub fn from_file(path: &Path) -> Result<Plan, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        let json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
            || text.trim_start().starts_with('{');
        if json {
            Plan::from_json_str(&text, path)
        } else {
            Plan::from_toml_str(&text, path)
        }
    }

    /// Parses TOML text; `file` names it in errors.
    pub fn from_toml_str(text: &str, file: &Path) -> Result<Plan, LoadError> {
        let source = Source::toml(text);
        let parsed: file::FilePlan = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|s| s.start);
            let field = offset.and_then(|o| source.path_at(o));
            LoadError::Invalid(vec![problem(
                file,
                &source,
                offset,
                field,
                &guess::unknown_field(e.message().trim()),
            )])
        })?;
        Plan::checked(parsed, file, &source)
    }

    /// Parses JSON text (the same fields as TOML); `file` names it in errors.
    pub fn from_json_str(text: &str, file: &Path) -> Result<Plan, LoadError> {
        let source = Source::Json(text);
        let parsed: file::FilePlan = serde_json::from_str(text).map_err(|e| {
            let (line, column) = (e.line(), e.column());
            let line_text = text.lines().nth(line.saturating_sub(1)).map(str::to_owned);
            // serde_json appends " at line L column C"; the location says it already.
            let message = e.to_string();
            let message = message.split(" at line ").next().unwrap_or(&message);
            let message = guess::unknown_field(message);
            LoadError::Invalid(vec![Problem {
                location: Location {
                    file: file.to_owned(),
                    line: Some(line),
                    column: Some(column),
                    field: None,
                },
                message,
                source_line: line_text,
            }])
        })?;
        Plan::checked(parsed, file, &source)
    }

    fn checked(
        parsed: file::FilePlan,
        file: &Path,
        source: &Source<'_>,
    ) -> Result<Plan, LoadError> {
        validate::plan(parsed).map_err(|problems| {
            LoadError::Invalid(
                problems
                    .into_iter()
                    .map(|(path, msg)| {
                        let offset = source.locate(&path);
                        problem(file, source, offset, Some(path), &msg)
                    })
                    .collect(),
            )
        })
    }

    /// Whether any scenario sends transactional messages (they need App API credentials).
    pub fn needs_app(&self) -> bool {
        self.scenarios
            .iter()
            .any(|s| s.payload.weight(OperationKind::Transactional) > 0)
    }

    /// The highest request rates the plan reaches, all scenarios together: (Track, App API)
    /// requests per second. Closed-model scenarios have no planned rate and are left out.
    pub fn peak_request_rates(&self) -> (f64, f64) {
        let mut instants: Vec<Duration> = Vec::new();
        for s in &self.scenarios {
            let mut t = s.start_time;
            instants.push(t);
            for (_, _, d) in s.executor.rate_segments() {
                t += d;
                instants.push(t);
            }
        }
        let eps = Duration::from_micros(1);
        let mut peak = (0.0f64, 0.0f64);
        for at in instants.iter().flat_map(|t| [*t, t.saturating_sub(eps)]) {
            let mut sum = (0.0, 0.0);
            for s in &self.scenarios {
                let Some(since) = at.checked_sub(s.start_time) else {
                    continue;
                };
                if since >= s.executor.duration() {
                    continue;
                }
                let rate = s.executor.rate_at(since).unwrap_or(0.0);
                let (track, app) = request_rates(s, rate);
                sum.0 += track;
                sum.1 += app;
            }
            peak = (peak.0.max(sum.0), peak.1.max(sum.1));
        }
        peak
    }

    /// Warnings about the plan against the limits of its target: the workspace's configured
    /// limits for Customer.io, the mock's own limits for the mock.
    pub fn rate_warnings(&self) -> Vec<String> {
        let (track, app) = self.peak_request_rates();
        let (track_limit, app_limit, what) = match &self.target.endpoint {
            Endpoint::Mock => (
                self.target.mock.track_rate,
                self.target.mock.app_rate,
                "the mock's limit ([target.mock] track_rate / app_rate; 0 means none)",
            ),
            _ => (
                self.target.workspace_rate_limit,
                self.target.app_rate_limit,
                "the workspace limit you configured ([target] workspace_rate_limit / app_rate_limit)",
            ),
        };
        let mut out = Vec::new();
        if track_limit > 0 && track > f64::from(track_limit) * 1.0001 {
            out.push(format!(
                "the plan peaks at {track:.0} Track requests/s, above {what} of {track_limit}/s: expect 429s, or lower the rates"
            ));
        }
        if app_limit > 0 && app > f64::from(app_limit) * 1.0001 {
            out.push(format!(
                "the plan peaks at {app:.0} App API requests/s, above {what} of {app_limit}/s: expect 429s, or lower the rates"
            ));
        }
        if self.target.endpoint.is_customer_io() {
            for s in self
                .scenarios
                .iter()
                .filter(|s| !s.executor.is_arrival_rate())
            {
                out.push(format!(
                    "scenario {:?} ({}) has no planned rate: its request rate depends on latency and is not checked against the workspace limit",
                    s.name,
                    s.executor.name()
                ));
            }
        }
        out
    }

    /// Builds the load test: clients (and stacks, so this must run inside a tokio runtime) over
    /// `connection`, the plan's thresholds and bounds, and its rate warnings.
    pub fn load_test(&self, connection: &Connection) -> Result<LoadTest, LoadError> {
        let mut test = LoadTest::new()
            .bounds(self.bounds)
            .summary_trend_stats(self.summary_trend_stats.clone())
            .target_label(self.target.endpoint.as_str());
        for w in self.rate_warnings() {
            test = test.warning(w);
        }
        for t in &self.thresholds {
            test = test.threshold(t.clone());
        }
        for s in &self.scenarios {
            let workload = CioWorkload::new(
                connection,
                s.through.clone(),
                PayloadGenerator::new(s.payload.clone(), &s.name),
                &s.name,
            )?;
            test = test.scenario(
                Scenario::new(s.name.clone(), s.executor.clone(), workload)
                    .start_time(s.start_time)
                    .graceful_stop(s.graceful_stop),
            );
        }
        Ok(test)
    }

    /// The client options the target asks for (its request timeout).
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions {
            timeout: self.target.timeout,
            ..ClientOptions::default()
        }
    }
}

/// Track and App API requests per second of a scenario running `rate` iterations per second.
fn request_rates(s: &ScenarioPlan, rate: f64) -> (f64, f64) {
    let p = &s.payload;
    let app = rate * p.share(OperationKind::Transactional);
    let track_ops = rate
        * (p.share(OperationKind::Identify)
            + p.share(OperationKind::Track)
            + p.share(OperationKind::Batch));
    let track = match &s.through {
        Through::Client => track_ops,
        Through::Stack(c) => {
            // The stack batches: at most its own rate limit, and at most one request per op.
            let limit = f64::from(c.rate.per_second.get());
            track_ops.min(limit)
        }
    };
    (track, app)
}

fn problem(
    file: &Path,
    source: &Source<'_>,
    offset: Option<usize>,
    field: Option<FieldPath>,
    message: &str,
) -> Problem {
    let at = offset.map(|o| line_col(source.text(), o));
    Problem {
        location: Location {
            file: PathBuf::from(file),
            line: at.as_ref().map(|a| a.0),
            column: at.as_ref().map(|a| a.1),
            field: field.map(|f| f.to_string()).filter(|f| !f.is_empty()),
        },
        message: message.to_owned(),
        source_line: at.map(|a| a.2),
    }
}
