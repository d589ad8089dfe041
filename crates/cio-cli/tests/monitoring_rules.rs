//! The shipped alerts tell the truth: every rule of `docs/k8s/monitoring.yaml` parses as PromQL
//! (with `promql-parser`, and with `promtool check rules` where it is installed; under CI it
//! must be), selects only metrics and labels a running worker exports, never the per-attempt
//! series, and the file's comment gives each metric the type the worker exports. Every metric
//! has HELP text, and `cio_build_info` is there.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use promql_parser::parser::{Expr, VectorSelector};
use promql_parser::util::{walk_expr, ExprVisitor};
use yaml_rust2::{Yaml, YamlEmitter, YamlLoader};

mod common;
use common::{http_get, worker_admin};

const MANIFEST: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/k8s/monitoring.yaml"
);

/// Metrics the rules may use that no worker exports: Prometheus' own.
const PROMETHEUS_OWN: &[&str] = &["up"];

/// One scrape: families (HELP, TYPE) and series (family, labels).
#[derive(Default)]
struct Scrape {
    help: BTreeMap<String, String>,
    kind: BTreeMap<String, String>,
    series: Vec<(String, BTreeMap<String, String>)>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut s = Scrape::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                s.help.insert(name.into(), help.trim().into());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
                s.kind.insert(name.into(), kind.trim().into());
            } else if !line.is_empty() && !line.starts_with('#') {
                let series = line.rsplit_once(' ').map(|(l, _)| l).unwrap_or(line);
                let (name, labels) = match series.split_once('{') {
                    Some((n, l)) => (n, l.trim_end_matches('}')),
                    None => (series, ""),
                };
                let labels = labels
                    .split(',')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
                    .collect();
                s.series.push((s.family(name), labels));
            }
        }
        s
    }

    /// `x_bucket`, `x_sum`, `x_count` of a histogram `x` belong to `x`.
    fn family(&self, name: &str) -> String {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                if self
                    .kind
                    .get(base)
                    .is_some_and(|k| k == "histogram" || k == "summary")
                {
                    return base.to_owned();
                }
            }
        }
        name.to_owned()
    }
}

/// Every vector selector of an expression (those inside range selectors too).
#[derive(Default)]
struct Selectors(Vec<VectorSelector>);

impl ExprVisitor for Selectors {
    type Error = String;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, String> {
        match expr {
            Expr::VectorSelector(vs) => self.0.push(vs.clone()),
            Expr::MatrixSelector(ms) => self.0.push(ms.vs.clone()),
            _ => {}
        }
        Ok(true)
    }
}

fn metric_name(vs: &VectorSelector) -> String {
    vs.name.clone().unwrap_or_else(|| {
        vs.matchers
            .find_matchers("__name__")
            .first()
            .map(|m| m.value.clone())
            .unwrap_or_default()
    })
}

/// Whether `m` matches `value` as Prometheus matches it. promql-parser 0.5 anchors a regex as
/// `^RE$`, which leaves `a|b` unanchored inside; Prometheus anchors `^(?:RE)$`.
fn matches(m: &promql_parser::label::Matcher, value: &str) -> bool {
    use promql_parser::label::MatchOp;
    let anchored = |r: &regex::Regex| {
        let inner = r.as_str().trim_start_matches('^').trim_end_matches('$');
        regex::Regex::new(&format!("^(?:{inner})$"))
            .unwrap()
            .is_match(value)
    };
    match &m.op {
        MatchOp::Re(r) => anchored(r),
        MatchOp::NotRe(r) => !anchored(r),
        _ => m.is_match(value),
    }
}

/// Whether `vs` selects a series with these labels (a label it names and the series lacks
/// matches as the empty string, as in Prometheus).
fn selects(vs: &VectorSelector, labels: &BTreeMap<String, String>) -> bool {
    let all = |ms: &[promql_parser::label::Matcher]| {
        ms.iter()
            .filter(|m| m.name != "__name__")
            .all(|m| matches(m, labels.get(&m.name).map(String::as_str).unwrap_or("")))
    };
    all(&vs.matchers.matchers)
        && (vs.matchers.or_matchers.is_empty() || vs.matchers.or_matchers.iter().any(|o| all(o)))
}

/// A worker on a file of 20 events against the mock, scraped once it delivered them.
async fn scrape_a_worker() -> String {
    let mock = cio_mock::MockServer::builder()
        .unlimited()
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let mut f = std::fs::File::create(&input).unwrap();
    for i in 0..20 {
        writeln!(
            f,
            r#"{{"type":"person","identifiers":{{"id":"u{i}"}},"action":"event","name":"e"}}"#
        )
        .unwrap();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_cio"))
        .env("CIO_SITE_ID", "site")
        .env("CIO_API_KEY", "key")
        .env("RUST_LOG", "warn")
        .args(["worker", "--source"])
        .arg(format!("file:{}", input.display()))
        .args(["--endpoint", &mock.url(), "--linger-ms", "20"])
        .args(["--admin-listen", "127.0.0.1:0", "--dead-letter"])
        .arg(dir.path().join("dead.jsonl"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (_stdout, admin) = worker_admin(&mut child);
    let started = Instant::now();
    let text = loop {
        let (_, answer) = http_get(&admin, "/metrics");
        let text = answer
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default();
        // Delivered, and a gauge sample taken after it.
        if text.contains("cio_worker_delivered_total 20") && text.contains("cio_worker_in_flight 0")
        {
            break text;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    text
}

/// `(alert, expr)` of every rule, and the PrometheusRule's `spec` (a rule file's content).
fn rules() -> (Vec<(String, String)>, Yaml) {
    let text = std::fs::read_to_string(MANIFEST).unwrap();
    let docs = YamlLoader::load_from_str(&text).unwrap();
    let rule = docs
        .into_iter()
        .find(|d| d["kind"].as_str() == Some("PrometheusRule"))
        .expect("a PrometheusRule in docs/k8s/monitoring.yaml");
    let spec = rule["spec"].clone();
    let mut out = Vec::new();
    for group in spec["groups"].as_vec().unwrap() {
        for r in group["rules"].as_vec().unwrap() {
            let name = r["alert"]
                .as_str()
                .or(r["record"].as_str())
                .unwrap()
                .to_owned();
            out.push((name, r["expr"].as_str().unwrap().trim().to_owned()));
        }
    }
    (out, spec)
}

/// `promtool`, or why there is none. Under CI it must be there (.ci/run installs it).
fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is not installed: apt-get install prometheus (it ships promtool)"
        );
        eprintln!("skipped: promtool checks (promtool not installed: apt-get install prometheus)");
        return None;
    }
    Some("promtool")
}

fn run_promtool(args: &[&str], file: Option<&Path>, stdin: Option<&str>) -> (bool, String) {
    let mut c = Command::new("promtool");
    c.args(args);
    if let Some(f) = file {
        c.arg(f);
    }
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or("").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alert_rules_use_what_the_worker_exports_and_never_the_per_attempt_series() {
    let text = scrape_a_worker().await;
    let scrape = Scrape::parse(&text);

    // Every metric has HELP text and a type; every series belongs to one.
    assert!(scrape.kind.len() >= 14, "{text}");
    for (name, kind) in &scrape.kind {
        let help = scrape.help.get(name).map(String::as_str).unwrap_or("");
        assert!(!help.is_empty(), "{name} ({kind}) has no HELP text");
    }
    for (family, _) in &scrape.series {
        assert!(
            scrape.kind.contains_key(family),
            "{family} has no TYPE line"
        );
    }
    // The build, and the stack's metrics under the default prefix.
    assert!(
        text.contains(&format!(
            "cio_build_info{{version=\"{}\",",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    for stack in [
        "cio_requests_total",
        "cio_request_duration_seconds",
        "cio_in_flight",
    ] {
        assert!(scrape.kind.contains_key(stack), "{stack} missing: {text}");
    }
    let attempts: Vec<_> = scrape
        .series
        .iter()
        .filter(|(_, l)| l.get("name").is_some_and(|n| n.ends_with("_attempt")))
        .collect();
    assert!(!attempts.is_empty(), "the per-attempt series exist: {text}");

    // The file's comment names every metric with the type the worker exports.
    let manifest = std::fs::read_to_string(MANIFEST).unwrap();
    let commented: BTreeMap<String, String> = manifest
        .lines()
        .filter_map(|l| {
            let mut words = l.strip_prefix("#   ")?.split_whitespace();
            let name = words.next()?.to_owned();
            let kind = words.next()?;
            (name.starts_with("cio_")
                && ["counter", "gauge", "histogram", "summary"].contains(&kind))
            .then(|| (name, kind.to_owned()))
        })
        .collect();
    for (name, kind) in &scrape.kind {
        assert_eq!(
            commented.get(name),
            Some(kind),
            "docs/k8s/monitoring.yaml's comment must list {name} as a {kind}"
        );
    }
    for name in commented.keys() {
        assert!(
            scrape.kind.contains_key(name),
            "the comment lists {name}, which the worker does not export"
        );
    }

    // Each rule parses, and selects series the worker has, never a per-attempt one.
    let (rules, spec) = rules();
    assert!(rules.len() >= 10, "{rules:?}");
    let exported: BTreeSet<&str> = scrape.kind.keys().map(String::as_str).collect();
    for (alert, expr) in &rules {
        let parsed = promql_parser::parser::parse(expr)
            .unwrap_or_else(|e| panic!("{alert}: `{expr}` is not PromQL: {e}"));
        let mut selectors = Selectors::default();
        walk_expr(&mut selectors, &parsed).unwrap();
        assert!(!selectors.0.is_empty(), "{alert} selects nothing");
        for vs in &selectors.0 {
            let metric = metric_name(vs);
            if PROMETHEUS_OWN.contains(&metric.as_str()) {
                continue;
            }
            assert!(
                exported.contains(metric.as_str()),
                "{alert} uses {metric}, which the worker does not export (it has {exported:?})"
            );
            let series: Vec<_> = scrape
                .series
                .iter()
                .filter(|(f, _)| *f == metric)
                .map(|(_, l)| l)
                .collect();
            assert!(
                series.iter().any(|l| selects(vs, l)),
                "{alert}: {vs} matches none of the worker's {metric} series {series:?}"
            );
            for labels in series.iter().filter(|l| selects(vs, l)) {
                assert!(
                    !labels.get("name").is_some_and(|n| n.ends_with("_attempt")),
                    "{alert}: {vs} takes in the per-attempt series {labels:?}: a 429 a retry absorbed would fire it"
                );
            }
        }
    }

    // promtool, where installed: the rule file, and the exposition format.
    if let Some(_promtool) = promtool() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rules.yaml");
        let mut out = String::new();
        YamlEmitter::new(&mut out).dump(&spec).unwrap();
        std::fs::write(&file, out).unwrap();
        let (ok, said) = run_promtool(&["check", "rules"], Some(&file), None);
        assert!(ok, "promtool check rules: {said}");
        assert!(
            said.contains(&format!("{} rules found", rules.len())),
            "{said}"
        );
        let (ok, said) = run_promtool(&["check", "metrics"], None, Some(&text));
        assert!(
            ok && said.trim().is_empty(),
            "promtool check metrics: {said}"
        );
    }
}
