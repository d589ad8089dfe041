//! `cio load` as a process: exit codes (0, 99, 1), the summary export and the time series
//! against their documented shapes, and errors that name the file, line and field.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn cio() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cio"));
    c.env_remove("CIO_SITE_ID")
        .env_remove("CIO_API_KEY")
        .env_remove("CIO_APP_KEY")
        .env("RUST_LOG", "warn");
    c
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The field paths documented between `<!-- NAME -->` markers, `{a,b}` expanded, with whether
/// each is optional.
fn documented(doc: &str, name: &str) -> Vec<(String, bool)> {
    let start = doc.find(&format!("<!-- {name} -->")).unwrap();
    let end = doc.find(&format!("<!-- /{name} -->")).unwrap();
    let mut out = Vec::new();
    for line in doc[start..end].lines() {
        let line = line.trim_start_matches("//!").trim();
        let Some(rest) = line.strip_prefix("| `") else {
            continue;
        };
        let Some((path, tail)) = rest.split_once('`') else {
            continue;
        };
        let optional = tail.contains("optional");
        for p in expand(path) {
            out.push((p, optional));
        }
    }
    assert!(!out.is_empty(), "no fields between the {name} markers");
    out
}

fn expand(path: &str) -> Vec<String> {
    let Some(open) = path.find('{') else {
        return vec![path.to_owned()];
    };
    let close = open + path[open..].find('}').unwrap();
    path[open + 1..close]
        .split(',')
        .flat_map(|alt| expand(&format!("{}{}{}", &path[..open], alt, &path[close + 1..])))
        .collect()
}

/// Checks that `path` exists in `v` (for every key where it says `*`, every element for `[]`).
fn present(v: &Value, path: &[&str], full: &str) -> Result<(), String> {
    let Some((first, rest)) = path.split_first() else {
        return Ok(());
    };
    let (key, array) = match first.strip_suffix("[]") {
        Some(k) => (k, true),
        None => (*first, false),
    };
    let children: Vec<&Value> = if key == "*" {
        let obj = v
            .as_object()
            .ok_or_else(|| format!("{full}: not an object at *"))?;
        if obj.is_empty() {
            return Err(format!("{full}: an empty map at *"));
        }
        obj.values().collect()
    } else {
        vec![v.get(key).ok_or_else(|| format!("{full}: no `{key}`"))?]
    };
    for c in children {
        if array {
            let items = c
                .as_array()
                .ok_or_else(|| format!("{full}: `{key}` is not an array"))?;
            if items.is_empty() {
                return Err(format!("{full}: `{key}` is empty"));
            }
            for item in items {
                present(item, rest, full)?;
            }
        } else {
            present(c, rest, full)?;
        }
    }
    Ok(())
}

/// Every leaf path of `v`, arrays written `[]`.
fn leaves(v: &Value, prefix: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, c) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(c, p, out);
            }
        }
        Value::Array(a) if a.iter().any(|x| x.is_object()) => {
            for c in a {
                leaves(c, format!("{prefix}[]"), out);
            }
        }
        _ => out.push(prefix),
    }
}

fn matches(pattern: &str, path: &str) -> bool {
    let (p, a): (Vec<&str>, Vec<&str>) = (pattern.split('.').collect(), path.split('.').collect());
    if p.first() == Some(&"mock") && a.first() == Some(&"mock") {
        return true; // the mock's stats are its own shape
    }
    // A last `*` takes the rest: a threshold expression (`rate<0.5`) may hold dots.
    let rest = p.last() == Some(&"*") && a.len() > p.len();
    (p.len() == a.len() || rest) && p.iter().zip(&a).all(|(p, a)| *p == "*" || p == a)
}

fn check_shape(v: &Value, fields: &[(String, bool)], what: &str) {
    for (path, optional) in fields {
        // An optional row names leaves that may be there; it is not looked for.
        if *optional {
            continue;
        }
        let segs: Vec<&str> = path.split('.').collect();
        if let Err(e) = present(v, &segs, path) {
            panic!("{what}: documented field missing: {e}\n{v:#}");
        }
    }
    let mut all = Vec::new();
    leaves(v, String::new(), &mut all);
    for leaf in all {
        assert!(
            fields.iter().any(|(p, _)| matches(p, &leaf)),
            "{what}: `{leaf}` is not documented"
        );
    }
}

fn docs() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/load-testing.md"),
    )
    .unwrap()
}

#[test]
fn the_rustdoc_and_the_docs_describe_the_same_shapes() {
    let rustdoc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../cio-load/src/report/mod.rs"),
    )
    .unwrap();
    for name in ["summary-fields", "series-fields"] {
        assert_eq!(
            documented(&docs(), name),
            documented(&rustdoc, name),
            "{name}"
        );
    }
}

const PLAN: &str = r#"
[target]
mock = { track_rate = 0, app_rate = 0 }

[thresholds]
latency = ["p(95)<5000"]
"errors{scenario:mixed}" = ["rate<0.5"]
iterations = ["count>1000000"]

[scenarios.mixed]
executor = "constant-arrival-rate"
rate = 50
duration = "2s"
pre_allocated_vus = 5
max_vus = 20
workload = { mix = { identify = 1, track = 1, batch = 1, transactional = 1 }, batch_size = 5 }

[scenarios.loop]
executor = "constant-vus"
vus = 2
duration = "1s"
"#;

#[test]
fn a_failing_threshold_exits_99_and_the_exports_have_every_documented_field() {
    let dir = tempfile::tempdir().unwrap();
    let plan = write(dir.path(), "plan.toml", PLAN);
    let summary = dir.path().join("summary.json");
    let series = dir.path().join("series.jsonl");
    let (samples_json, samples_csv) = (dir.path().join("k6.jsonl"), dir.path().join("k6.csv"));
    let out = cio()
        .arg("load")
        .arg(&plan)
        .arg("--summary-export")
        .arg(&summary)
        .arg(format!("--out=series={}", series.display()))
        .arg(format!("--out=json={}", samples_json.display()))
        .arg(format!("--out=csv={}", samples_csv.display()))
        .arg("--no-progress")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(99), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("✗ iterations count>1000000"),
        "{}",
        text(&out)
    );
    assert!(stdout.contains("✓ latency p(95)<5000"), "{}", text(&out));
    assert!(stdout.contains("1 threshold failed"), "{}", text(&out));

    let v: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    check_shape(&v, &documented(&docs(), "summary-fields"), "summary");
    assert_eq!(v["version"], 2);
    assert_eq!(v["passed"], false);
    assert_eq!(v["scenarios"]["mixed"]["started"], 100);
    assert_eq!(v["scenarios"]["mixed"]["errors"], 0);
    // k6's shape, under k6's names too: what a script written for k6's summary reads.
    let m = &v["metrics"];
    assert_eq!(m["errors"]["passes"], 0);
    assert_eq!(m["http_req_failed"], m["errors"]);
    assert_eq!(m["http_reqs"]["count"], m["iterations"]["count"]);
    assert!(m["http_req_duration"]["p(95)"].as_f64().unwrap() > 0.0);
    assert_eq!(m["http_req_duration"]["med"], m["service_time"]["med"]);
    assert_eq!(m["iteration_duration"]["avg"], m["latency"]["avg"]);
    let allocated: u64 = ["mixed", "loop"]
        .map(|s| v["scenarios"][s]["vus_max"].as_u64().unwrap())
        .iter()
        .sum();
    assert_eq!(m["vus_max"]["value"].as_f64(), Some(allocated as f64));
    assert!(m["vus"]["max"].as_f64().unwrap() >= 1.0, "{}", m["vus"]);
    // Thresholds sit on their metric, k6's way: true when they failed.
    assert_eq!(m["iterations"]["thresholds"]["count>1000000"], true);
    assert_eq!(m["latency"]["thresholds"]["p(95)<5000"], false);
    assert_eq!(m["errors{scenario:mixed}"]["thresholds"]["rate<0.5"], false);
    assert_eq!(m["errors{scenario:mixed}"]["fails"], 100);
    assert_eq!(v["root_group"]["id"], "d41d8cd98f00b204e9800998ecf8427e");
    let failed: Vec<&Value> = v["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["ok"] == false)
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["metric"], "iterations");
    // The embedded mock counted what was sent: one transactional send per such iteration.
    let sends = v["scenarios"]["mixed"]["operations"]["transactional"]["iterations"].clone();
    assert_eq!(v["mock"]["accepted"]["send_email"], sends);

    let lines = std::fs::read_to_string(&series).unwrap();
    let points: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(points.len() >= 3, "{lines}");
    let fields = documented(&docs(), "series-fields");
    for p in &points {
        check_shape(p, &fields, "time series");
    }
    let started: u64 = points
        .iter()
        .filter(|p| p["scenario"] == "mixed")
        .map(|p| p["started"].as_u64().unwrap())
        .sum();
    assert_eq!(started, 100);

    // k6's NDJSON: a Metric line before each metric's points, a point per sample.
    let k6: Vec<Value> = std::fs::read_to_string(&samples_json)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |metric: &str, kind: &str| {
        k6.iter()
            .filter(|l| l["metric"] == metric && l["type"] == kind)
            .count()
    };
    let iterations = v["metrics"]["iterations"]["count"].as_u64().unwrap() as usize;
    for metric in [
        "http_reqs",
        "http_req_duration",
        "http_req_failed",
        "iterations",
        "iteration_duration",
    ] {
        assert_eq!(of(metric, "Metric"), 1, "{metric}");
        assert_eq!(of(metric, "Point"), iterations, "{metric}");
    }
    assert!(of("vus", "Point") >= 2);
    let first_point = k6.iter().position(|l| l["type"] == "Point").unwrap();
    assert_eq!(k6[first_point - 1]["type"], "Metric");
    let trend = k6
        .iter()
        .find(|l| l["type"] == "Metric" && l["metric"] == "http_req_duration")
        .unwrap();
    assert_eq!(trend["data"]["type"], "trend");
    let point = k6
        .iter()
        .find(|l| l["type"] == "Point" && l["data"]["tags"]["name"] == "transactional")
        .unwrap();
    assert_eq!(point["data"]["tags"]["scenario"], "mixed");
    // k6's CSV: its header, one row per sample.
    let csv = std::fs::read_to_string(&samples_csv).unwrap();
    let mut rows = csv.lines();
    assert!(rows.next().unwrap().starts_with(
        "metric_name,timestamp,metric_value,check,error,error_code,expected_response"
    ));
    let http_reqs = rows.filter(|r| r.starts_with("http_reqs,")).count();
    assert_eq!(http_reqs, iterations);
}

#[test]
fn outputs_and_trend_stats_that_do_not_exist_are_refused_with_what_does() {
    let dir = tempfile::tempdir().unwrap();
    let plan = write(
        dir.path(),
        "plan.toml",
        "[scenarios.a]\nexecutor = \"constant-vus\"\nvus = 1\nduration = \"1s\"\n",
    );
    let out = cio()
        .arg("load")
        .arg(&plan)
        .arg("--out=influxdb=http://x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown output `influxdb`") && stderr.contains("csv=FILE"),
        "{stderr}"
    );
    let out = cio()
        .arg("load")
        .arg(&plan)
        .arg("--summary-trend-stats=avg,mean")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown trend statistic `mean`"),
        "{}",
        text(&out)
    );
    // Chosen statistics are the columns of the export and of the terminal summary.
    let summary = dir.path().join("s.json");
    let out = cio()
        .arg("load")
        .arg(&plan)
        .arg("--summary-trend-stats=med,p(99.9),count")
        .arg("--summary-export")
        .arg(&summary)
        .arg("--no-progress")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    let keys: Vec<&String> = v["metrics"]["latency"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(keys, ["count", "med", "p(99.9)"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.lines().any(|l| l.contains("latency...")
            && l.contains("med=")
            && l.contains("p(99.9)=")
            && !l.contains("avg=")),
        "{stdout}"
    );
}

#[test]
fn passing_thresholds_exit_0_and_json_plans_work() {
    let dir = tempfile::tempdir().unwrap();
    let plan = write(
        dir.path(),
        "plan.json",
        r#"{"target": {"mock": {"track_rate": 0}},
            "thresholds": {"errors": ["rate<0.01"], "dropped_iterations": ["count==0"]},
            "scenarios": {"events": {"executor": "constant-arrival-rate", "rate": 20, "duration": "1s", "preAllocatedVUs": 2}}}"#,
    );
    let out = cio()
        .arg("load")
        .arg(&plan)
        .arg("--quiet")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(out.stdout.is_empty(), "{}", text(&out));
}

#[test]
fn a_bad_file_exits_1_naming_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let plan = write(
        dir.path(),
        "bad.toml",
        "[scenarios.checkout]\nexecutor = \"constant-arrival-rate\"\nrate = 10\nduration = \"10s\"\npre_allocated_vus = 5\nstages = [{ target = 1, duration = \"1s\" }]\n",
    );
    let out = cio().arg("load").arg(&plan).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "error: {}:6:1: `scenarios.checkout.stages`: `stages` does not apply",
        plan.display()
    );
    assert!(stderr.contains(&expected), "{}", text(&out));

    let missing = cio()
        .args(["load", "/nonexistent/plan.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read /nonexistent/plan.toml"));
}

#[test]
fn customer_io_needs_explicit_credentials_and_nothing_is_sent_without_them() {
    let dir = tempfile::tempdir().unwrap();
    let plan = write(
        dir.path(),
        "plan.toml",
        "[scenarios.a]\nexecutor = \"constant-arrival-rate\"\nrate = 150\nduration = \"1s\"\npre_allocated_vus = 1\n",
    );
    let out = cio()
        .arg("load")
        .arg(&plan)
        .args(["--target", "eu"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("needs explicit credentials") && stderr.contains("CIO_SITE_ID"),
        "{}",
        text(&out)
    );
}

/// `cio mock` as a separate process, over http or https (its CA written to `ca`).
struct MockProcess {
    child: std::process::Child,
    url: String,
}

impl MockProcess {
    fn start(tls: Option<&Path>) -> MockProcess {
        use std::io::BufRead;
        let mut c = cio();
        c.args(["mock", "--listen", "127.0.0.1:0", "--track-rate", "0"]);
        if let Some(ca) = tls {
            c.arg("--tls").arg("--tls-ca-out").arg(ca);
        }
        let mut child = c
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let url = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line was {first:?}"))
            .to_owned();
        MockProcess { child, url }
    }
}

impl Drop for MockProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn cio_load_runs_against_cio_mock_over_http_and_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let plan = write(
        dir.path(),
        "plan.json",
        r#"{"thresholds": {"errors": ["rate==0"], "dropped_iterations": ["count==0"]},
            "scenarios": {"events": {"executor": "constant-arrival-rate", "rate": 50, "duration": "1s", "preAllocatedVUs": 4}}}"#,
    );
    let ca = dir.path().join("ca.pem");
    for tls in [false, true] {
        let mock = MockProcess::start(tls.then_some(ca.as_path()));
        assert_eq!(mock.url.starts_with("https://"), tls, "{}", mock.url);
        let summary = dir.path().join(format!("summary-{tls}.json"));
        let mut c = cio();
        c.arg("load")
            .arg(&plan)
            .args(["--target", &mock.url, "--no-progress", "--quiet"])
            .arg("--summary-export")
            .arg(&summary);
        if tls {
            c.arg("--ca-cert").arg(&ca);
        }
        let out = c.output().unwrap();
        assert_eq!(out.status.code(), Some(0), "tls {tls}: {}", text(&out));
        let v: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
        assert_eq!(v["scenarios"]["events"]["started"], 50, "tls {tls}: {v}");
        assert_eq!(v["scenarios"]["events"]["errors"], 0, "tls {tls}: {v}");
        if tls {
            // Without the CA every request fails the handshake, and the threshold says so.
            let out = cio()
                .arg("load")
                .arg(&plan)
                .args(["--target", &mock.url, "--no-progress", "--quiet"])
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(99), "{}", text(&out));
            // --native-roots reads the system's store, which SSL_CERT_FILE names here.
            let out = cio()
                .arg("load")
                .arg(&plan)
                .args([
                    "--target",
                    &mock.url,
                    "--no-progress",
                    "--quiet",
                    "--native-roots",
                ])
                .env("SSL_CERT_FILE", &ca)
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(0), "{}", text(&out));
            // A CA file that is not one is refused before anything is sent.
            let bad = write(dir.path(), "bad.pem", "not a certificate");
            let out = cio()
                .arg("load")
                .arg(&plan)
                .args(["--target", &mock.url, "--ca-cert"])
                .arg(&bad)
                .output()
                .unwrap();
            assert!(!out.status.success());
            assert!(text(&out).contains("--ca-cert"), "{}", text(&out));
        }
    }
}

#[test]
fn off_a_terminal_each_scenario_gets_a_status_line_unless_told_not_to() {
    let dir = tempfile::tempdir().unwrap();
    let plan = write(
        dir.path(),
        "plan.toml",
        "[scenarios.open]\nexecutor = \"constant-arrival-rate\"\nrate = 20\nduration = \"3s\"\npre_allocated_vus = 2\n\n[scenarios.closed]\nexecutor = \"shared-iterations\"\nvus = 2\niterations = 40\n",
    );
    let run = |extra: &[&str]| {
        let out = cio()
            .arg("load")
            .arg(&plan)
            .args(["--quiet", "--status-every", "1s"])
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&[]);
    let open: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("cio load ") && l.contains(" open "))
        .collect();
    assert!(open.len() >= 2, "{err}");
    // k6's shape: VUs, elapsed over planned, achieved over target rate.
    assert!(
        open[0].contains(" VUs  ")
            && open[0].contains("s/3.0s")
            && open[0].contains("/20.0 iters/s"),
        "{}",
        open[0]
    );
    assert!(
        err.lines()
            .any(|l| l.contains(" closed ") && l.contains("40 iterations") && l.ends_with("done")),
        "{err}"
    );
    let quiet = run(&["--no-progress"]);
    assert!(!quiet.contains("cio load "), "{quiet}");
}
