//! k6's per-sample outputs: `--out json=FILE` (k6's NDJSON of `Metric` and `Point` lines) and
//! `--out csv=FILE` (k6's CSV columns), so that whatever reads k6's output reads ours.
//!
//! Each completed iteration writes one point for each of k6's metrics it stands for:
//! `http_reqs` (1), `http_req_duration` (service time, ms), `http_req_failed` (0 or 1),
//! `iterations` (1) and `iteration_duration` (latency from the scheduled start, ms), tagged with
//! `scenario`, `name` (the operation), `status` and `expected_response`. Once a second the VU
//! gauges `vus` and `vus_max` are written, and `dropped_iterations` when iterations were
//! dropped. A `Metric` line announces each metric (its type, and the thresholds on it) before
//! its first point, as k6 does.
//!
//! Points are written under one lock into a buffered writer, in the iteration's own task: a
//! few hundred bytes per iteration, no allocation beyond the formatted line. A write error is
//! reported once as a warning and ends that output; the test goes on.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::io::Write;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::workload::Outcome;

/// Which of k6's formats an output writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleFormat {
    /// `--out json=FILE`: one JSON object per line, `Metric` then `Point`s.
    Json,
    /// `--out csv=FILE`: k6's CSV columns, a header first.
    Csv,
}

/// k6's CSV header.
const CSV_HEADER: &str = "metric_name,timestamp,metric_value,check,error,error_code,expected_response,group,method,name,proto,scenario,service,status,subproto,tls_version,url,extra_tags,metadata\n";

struct Output {
    format: SampleFormat,
    state: Mutex<OutputState>,
}

struct OutputState {
    writer: Box<dyn Write + Send>,
    /// Metrics whose `Metric` line was written.
    announced: HashSet<&'static str>,
    line: String,
    broken: bool,
}

/// The per-sample outputs of one test.
pub(crate) struct Samples {
    outputs: Vec<Output>,
    /// Threshold expressions by k6 metric name, for the `Metric` lines.
    thresholds: BTreeMap<String, Vec<String>>,
    failure: OnceLock<String>,
}

/// k6's `(type, contains)` of each metric written.
fn kind(metric: &str) -> (&'static str, &'static str) {
    match metric {
        "http_req_duration" | "iteration_duration" => ("trend", "time"),
        "http_req_failed" => ("rate", "default"),
        "vus" | "vus_max" => ("gauge", "default"),
        _ => ("counter", "default"),
    }
}

impl Samples {
    /// Outputs writing to `writers`; `thresholds` is (metric key, expression) of the test.
    pub fn new(
        writers: Vec<(SampleFormat, Box<dyn Write + Send>)>,
        thresholds: impl IntoIterator<Item = (String, String)>,
    ) -> Samples {
        let mut by_metric: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (key, expr) in thresholds {
            let name = key.split('{').next().unwrap_or(&key).trim().to_owned();
            by_metric.entry(name).or_default().push(expr);
        }
        let outputs = writers
            .into_iter()
            .map(|(format, writer)| Output {
                format,
                state: Mutex::new(OutputState {
                    writer,
                    announced: HashSet::new(),
                    line: String::with_capacity(512),
                    broken: false,
                }),
            })
            .collect();
        let samples = Samples {
            outputs,
            thresholds: by_metric,
            failure: OnceLock::new(),
        };
        for out in &samples.outputs {
            if out.format == SampleFormat::Csv {
                let mut st = lock(&out.state);
                st.line.push_str(CSV_HEADER);
                samples.flush_line(&mut st);
            }
        }
        samples
    }

    /// Writes the points of one completed iteration.
    pub fn iteration(
        &self,
        scenario: &str,
        outcome: &Outcome,
        latency: Duration,
        service: Duration,
    ) {
        let now = SystemTime::now();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let failed = if outcome.failed { 1.0 } else { 0.0 };
        let tags = Tags::Iteration {
            scenario,
            operation: &outcome.operation,
            status: &outcome.status,
            expected: !outcome.failed,
        };
        for out in &self.outputs {
            let mut st = lock(&out.state);
            if st.broken {
                continue;
            }
            for (metric, value) in [
                ("http_reqs", 1.0),
                ("http_req_duration", ms(service)),
                ("http_req_failed", failed),
                ("iterations", 1.0),
                ("iteration_duration", ms(latency)),
            ] {
                self.point(out.format, &mut st, metric, now, value, &tags);
            }
            self.flush_line(&mut st);
        }
    }

    /// Writes the once-a-second points: the VU gauges, and dropped iterations by scenario.
    pub fn second(&self, vus: u64, vus_max: u64, dropped: &[(&str, u64)]) {
        let now = SystemTime::now();
        for out in &self.outputs {
            let mut st = lock(&out.state);
            if st.broken {
                continue;
            }
            self.point(out.format, &mut st, "vus", now, vus as f64, &Tags::None);
            self.point(
                out.format,
                &mut st,
                "vus_max",
                now,
                vus_max as f64,
                &Tags::None,
            );
            for (scenario, n) in dropped.iter().filter(|(_, n)| *n > 0) {
                self.point(
                    out.format,
                    &mut st,
                    "dropped_iterations",
                    now,
                    *n as f64,
                    &Tags::Scenario(scenario),
                );
            }
            self.flush_line(&mut st);
        }
    }

    /// Flushes every output; the first write error, if any, for a warning.
    pub fn finish(&self) -> Option<String> {
        for out in &self.outputs {
            let mut st = lock(&out.state);
            if !st.broken {
                if let Err(e) = st.writer.flush() {
                    self.fail(&mut st, e);
                }
            }
        }
        self.failure.get().cloned()
    }

    fn point(
        &self,
        format: SampleFormat,
        st: &mut OutputState,
        metric: &'static str,
        time: SystemTime,
        value: f64,
        tags: &Tags<'_>,
    ) {
        match format {
            SampleFormat::Json => {
                if st.announced.insert(metric) {
                    let (kind, contains) = kind(metric);
                    let thresholds = self.thresholds.get(metric).cloned().unwrap_or_default();
                    let line = serde_json::json!({
                        "type": "Metric",
                        "data": {"name": metric, "type": kind, "contains": contains,
                                 "thresholds": thresholds, "submetrics": null},
                        "metric": metric,
                    });
                    let _ = writeln!(st.line, "{line}");
                }
                let _ = write!(
                    st.line,
                    "{{\"metric\":\"{metric}\",\"type\":\"Point\",\"data\":{{\"time\":\"{}\",\"value\":{},\"tags\":",
                    humantime::format_rfc3339_nanos(time),
                    json_number(value)
                );
                match tags {
                    Tags::None => st.line.push_str("{}"),
                    Tags::Scenario(s) => {
                        let _ = write!(st.line, "{{\"scenario\":{}}}", json_string(s));
                    }
                    Tags::Iteration {
                        scenario,
                        operation,
                        status,
                        expected,
                    } => {
                        let _ = write!(
                            st.line,
                            "{{\"expected_response\":\"{expected}\",\"name\":{},\"scenario\":{},\"status\":{}}}",
                            json_string(operation),
                            json_string(scenario),
                            json_string(status)
                        );
                    }
                }
                st.line.push_str("}}\n");
            }
            SampleFormat::Csv => {
                let secs = time
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let (expected, name, scenario, status) = match tags {
                    Tags::None => (String::new(), "", "", ""),
                    Tags::Scenario(s) => (String::new(), "", *s, ""),
                    Tags::Iteration {
                        scenario,
                        operation,
                        status,
                        expected,
                    } => (expected.to_string(), *operation, *scenario, *status),
                };
                let _ = writeln!(
                    st.line,
                    "{metric},{secs},{value:.6},,,,{expected},,,{},,{},,{},,,,,",
                    csv_field(name),
                    csv_field(scenario),
                    csv_field(status)
                );
            }
        }
    }

    fn flush_line(&self, st: &mut OutputState) {
        let OutputState { writer, line, .. } = st;
        let written = writer.write_all(line.as_bytes());
        line.clear();
        if let Err(e) = written {
            self.fail(st, e);
        }
    }

    fn fail(&self, st: &mut OutputState, e: std::io::Error) {
        st.broken = true;
        let _ = self.failure.set(format!(
            "cannot write the --out output, it was stopped: {e}"
        ));
    }
}

enum Tags<'a> {
    None,
    Scenario(&'a str),
    Iteration {
        scenario: &'a str,
        operation: &'a str,
        status: &'a str,
        expected: bool,
    },
}

fn lock(m: &Mutex<OutputState>) -> MutexGuard<'_, OutputState> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// A finite number as JSON (k6 writes integers without a fraction).
fn json_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.is_finite() {
        format!("{v}")
    } else {
        "0".into()
    }
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_and_csv_are_k6s_shapes() {
        let (json, csv) = (Shared::default(), Shared::default());
        let samples = Samples::new(
            vec![
                (SampleFormat::Json, Box::new(json.clone())),
                (SampleFormat::Csv, Box::new(csv.clone())),
            ],
            [(
                "http_req_duration{scenario:a}".to_owned(),
                "p(95)<500".to_owned(),
            )],
        );
        let outcome = Outcome::failure("track", "503", tokio::time::Instant::now());
        samples.iteration(
            "a",
            &outcome,
            Duration::from_millis(12),
            Duration::from_millis(10),
        );
        samples.iteration(
            "a",
            &outcome,
            Duration::from_millis(12),
            Duration::from_millis(10),
        );
        samples.second(3, 5, &[("a", 2)]);
        assert_eq!(samples.finish(), None);

        let json = String::from_utf8(json.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = json
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        // 5 metrics announced once, 10 iteration points, then vus, vus_max, dropped.
        let metric_lines: Vec<_> = lines.iter().filter(|l| l["type"] == "Metric").collect();
        assert_eq!(metric_lines.len(), 8);
        assert_eq!(lines.len(), 8 + 10 + 3);
        let duration = metric_lines
            .iter()
            .find(|l| l["metric"] == "http_req_duration")
            .unwrap();
        assert_eq!(duration["data"]["type"], "trend");
        assert_eq!(duration["data"]["contains"], "time");
        assert_eq!(duration["data"]["thresholds"][0], "p(95)<500");
        let point = lines
            .iter()
            .find(|l| l["type"] == "Point" && l["metric"] == "http_req_failed")
            .unwrap();
        assert_eq!(point["data"]["value"], 1);
        assert_eq!(point["data"]["tags"]["status"], "503");
        assert_eq!(point["data"]["tags"]["name"], "track");
        assert_eq!(point["data"]["tags"]["expected_response"], "false");
        assert!(point["data"]["time"].as_str().unwrap().ends_with('Z'));
        let dropped = lines.last().unwrap();
        assert_eq!(
            (
                dropped["metric"].as_str(),
                dropped["data"]["value"].as_u64()
            ),
            (Some("dropped_iterations"), Some(2))
        );

        let csv = String::from_utf8(csv.0.lock().unwrap().clone()).unwrap();
        let mut rows = csv.lines();
        assert_eq!(rows.next(), Some(CSV_HEADER.trim_end()));
        let row: Vec<&str> = rows.nth(1).unwrap().split(',').collect();
        assert_eq!(row.len(), 19);
        assert_eq!(
            (row[0], row[2], row[6], row[9], row[11], row[13]),
            (
                "http_req_duration",
                "10.000000",
                "false",
                "track",
                "a",
                "503"
            )
        );
        assert_eq!(csv_field("a,b"), "\"a,b\"");
    }
}
