//! The scenario file as written: every field optional where k6 has a default, unknown fields
//! refused, k6's camelCase names accepted as aliases. [`super::validate`] turns it into a
//! [`super::Plan`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration written like k6's: `"30s"`, `"1m30s"`, `"500ms"`, `"2h"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

/// Parses `"30s"`, `"1m30s"`, `"1m 30s"`, `"500ms"`, `"0s"`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    // humantime wants a space between units ("1m 30s"); k6 writes "1m30s".
    let mut spaced = String::with_capacity(t.len() + 4);
    let mut prev_alpha = false;
    for c in t.chars() {
        if c.is_ascii_digit() && prev_alpha {
            spaced.push(' ');
        }
        prev_alpha = c.is_alphabetic();
        spaced.push(c);
    }
    humantime::parse_duration(&spaced).map_err(|e| {
        format!("invalid duration {s:?} ({e}); write it like \"30s\", \"1m30s\" or \"500ms\"")
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FilePlan {
    #[serde(default)]
    pub options: FileOptions,
    #[serde(default)]
    pub target: FileTarget,
    #[serde(default)]
    pub thresholds: BTreeMap<String, OneOrMany>,
    #[serde(default)]
    pub scenarios: BTreeMap<String, FileScenario>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileOptions {
    pub max_duration: Option<Dur>,
    pub max_iterations: Option<u64>,
    pub max_vus: Option<u64>,
    #[serde(alias = "summaryTrendStats")]
    pub summary_trend_stats: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileTarget {
    pub endpoint: Option<String>,
    pub workspace_rate_limit: Option<u32>,
    pub app_rate_limit: Option<u32>,
    pub timeout: Option<Dur>,
    pub mock: Option<FileMock>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileMock {
    pub track_rate: Option<u32>,
    pub track_burst: Option<u32>,
    pub app_rate: Option<u32>,
    pub latency_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub error_rate: Option<f64>,
    pub throttle_rate: Option<f64>,
}

/// A threshold list: `["p(95)<500"]`, one string, or tables with `abort_on_fail`.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "a threshold such as \"p(95)<500\", a list of them, or a table { threshold = \"p(95)<500\", abort_on_fail = true }"
)]
pub(crate) enum OneOrMany {
    One(FileThreshold),
    Many(Vec<FileThreshold>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<FileThreshold> {
        match self {
            OneOrMany::One(t) => vec![t],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "a threshold such as \"p(95)<500\" or a table { threshold = \"p(95)<500\", abort_on_fail = true }"
)]
pub(crate) enum FileThreshold {
    Expression(String),
    Table(ThresholdTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ThresholdTable {
    pub threshold: String,
    #[serde(default, alias = "abortOnFail")]
    pub abort_on_fail: bool,
    #[serde(default, alias = "delayAbortEval")]
    pub delay_abort_eval: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileScenario {
    pub executor: String,
    pub rate: Option<u32>,
    #[serde(alias = "startRate")]
    pub start_rate: Option<u32>,
    #[serde(alias = "timeUnit")]
    pub time_unit: Option<Dur>,
    pub duration: Option<Dur>,
    pub stages: Option<Vec<FileStage>>,
    #[serde(alias = "preAllocatedVUs")]
    pub pre_allocated_vus: Option<u32>,
    #[serde(alias = "maxVUs")]
    pub max_vus: Option<u32>,
    pub vus: Option<u32>,
    pub iterations: Option<u64>,
    #[serde(alias = "maxDuration")]
    pub max_duration: Option<Dur>,
    #[serde(alias = "startVUs")]
    pub start_vus: Option<u32>,
    #[serde(alias = "gracefulStop")]
    pub graceful_stop: Option<Dur>,
    #[serde(alias = "gracefulRampDown")]
    pub graceful_ramp_down: Option<Dur>,
    #[serde(alias = "startTime")]
    pub start_time: Option<Dur>,
    #[serde(default)]
    pub workload: FileWorkload,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileStage {
    pub target: u32,
    pub duration: Dur,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileWorkload {
    pub through: Option<String>,
    pub mix: Option<BTreeMap<String, u32>>,
    pub batch_size: Option<u32>,
    pub attributes: Option<u32>,
    pub attribute_bytes: Option<u32>,
    pub ids: Option<u64>,
    pub seed: Option<u64>,
    pub event_name: Option<String>,
    pub transactional_message_id: Option<u64>,
    pub stack: Option<FileStack>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileStack {
    pub rate: Option<u32>,
    pub burst: Option<u32>,
    pub concurrency: Option<FileConcurrency>,
    pub batch_items: Option<u32>,
    pub linger: Option<Dur>,
    pub deadline: Option<Dur>,
    pub max_attempts: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "a number of requests in flight, or \"adaptive\""
)]
pub(crate) enum FileConcurrency {
    Fixed(u32),
    Named(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_k6() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("soon").unwrap_err().contains("\"30s\""));
    }
}
