//! Scenario files: k6's vocabulary, defaults, and errors that name the file, line and field.

use std::path::Path;
use std::time::Duration;

use cio_load::{Connection, Credentials, Endpoint, Executor, LoadError, Plan};

fn toml(text: &str) -> Result<Plan, LoadError> {
    Plan::from_toml_str(text, Path::new("plan.toml"))
}

fn problems(text: &str) -> Vec<cio_load::Problem> {
    match toml(text) {
        Err(LoadError::Invalid(p)) => p,
        other => panic!("expected problems, got {other:?}"),
    }
}

#[test]
fn the_shipped_scenarios_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let plan = Plan::from_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!plan.scenarios.is_empty(), "{}", path.display());
    }
    let smoke = Plan::from_file(&dir.join("smoke.toml")).unwrap();
    assert_eq!(smoke.scenarios.len(), 2);
    assert!(
        smoke.rate_warnings().is_empty(),
        "{:?}",
        smoke.rate_warnings()
    );
    assert!(smoke.thresholds.iter().any(|t| t.abort_on_fail));
}

#[test]
fn k6_vocabulary_and_defaults() {
    let plan = toml(
        r#"
[scenarios.a]
executor = "constant-arrival-rate"
rate = 30
timeUnit = "1m"
duration = "1m30s"
preAllocatedVUs = 2
startTime = "5s"
gracefulStop = "1s"

[scenarios.b]
executor = "ramping-vus"
stages = [{ target = 3, duration = "10s" }]

[scenarios.c]
executor = "ramping-vus"
stages = [{ target = 3, duration = "10s" }]
gracefulRampDown = "2s"
"#,
    )
    .unwrap();
    let a = &plan.scenarios[0];
    assert_eq!(
        a.executor,
        Executor::ConstantArrivalRate {
            rate: 30,
            time_unit: Duration::from_secs(60),
            duration: Duration::from_secs(90),
            pre_allocated_vus: 2,
            max_vus: 2,
        }
    );
    assert_eq!(a.start_time, Duration::from_secs(5));
    assert_eq!(a.graceful_stop, Duration::from_secs(1));
    assert_eq!(plan.scenarios[1].graceful_stop, Duration::from_secs(30));
    assert_eq!(
        plan.scenarios[1].executor,
        Executor::RampingVus {
            start_vus: 1,
            stages: vec![cio_load::Stage::new(3, Duration::from_secs(10))],
            graceful_ramp_down: Duration::from_secs(30),
        }
    );
    assert!(matches!(
        plan.scenarios[2].executor,
        Executor::RampingVus { graceful_ramp_down, .. } if graceful_ramp_down == Duration::from_secs(2)
    ));
    // Only ramping-vus ramps VUs down.
    let p = problems("[scenarios.x]\nexecutor = \"constant-vus\"\nvus = 2\nduration = \"1s\"\ngraceful_ramp_down = \"1s\"\n");
    assert_eq!(p.len(), 1, "{p:?}");
    let shown = p[0].to_string();
    assert!(
        shown.starts_with("plan.toml:5:1: `scenarios.x.graceful_ramp_down`: ")
            && shown.contains("belongs to ramping-vus"),
        "{shown}"
    );
    assert_eq!(plan.target.endpoint, Endpoint::Mock);
}

#[test]
fn semantic_errors_name_file_line_and_field() {
    let text = "[scenarios.checkout]\nexecutor = \"constant-arrival-rate\"\nrate = 10\nduration = \"10s\"\npre_allocated_vus = 5\nstages = [{ target = 1, duration = \"1s\" }]\n";
    let p = problems(text);
    assert_eq!(p.len(), 1, "{p:?}");
    let shown = p[0].to_string();
    assert!(
        shown.starts_with("plan.toml:6:1: `scenarios.checkout.stages`: "),
        "{shown}"
    );
    assert!(
        shown.contains("does not apply to executor \"constant-arrival-rate\""),
        "{shown}"
    );
    assert!(shown.contains("6 | stages = ["), "{shown}");

    // Several problems at once, each at its own line.
    let p = problems("[scenarios.a]\nexecutor = \"ramping-arrival-rate\"\nrate = 5\n\n[scenarios.b]\nexecutor = \"constant-vus\"\nvus = 0\nduration = \"1s\"\n");
    let shown: Vec<String> = p.iter().map(|p| p.to_string()).collect();
    assert!(
        shown
            .iter()
            .any(|s| s.starts_with("plan.toml:3:1: `scenarios.a.rate`")),
        "{shown:?}"
    );
    assert!(
        shown
            .iter()
            .any(|s| s.contains("`scenarios.a.stages`") && s.contains("needs `stages`")),
        "{shown:?}"
    );
    assert!(
        shown
            .iter()
            .any(|s| s.starts_with("plan.toml:7:1: `scenarios.b.vus`") && s.contains("at least 1")),
        "{shown:?}"
    );
}

#[test]
fn type_errors_and_typos_name_line_and_field() {
    let p =
        problems("[scenarios.a]\nexecutor = \"constant-vus\"\nduration = \"10s\"\nvus = \"ten\"\n");
    let shown = p[0].to_string();
    assert!(
        shown.starts_with("plan.toml:4:7: `scenarios.a.vus`:"),
        "{shown}"
    );
    assert!(shown.contains("invalid type"), "{shown}");

    let p = problems("[scenarios.a]\nexecutor = \"constant-vus\"\nduraton = \"10s\"\n");
    let shown = p[0].to_string();
    assert!(shown.contains("plan.toml:3:1"), "{shown}");
    assert!(shown.contains("unknown field `duraton`"), "{shown}");

    let p =
        problems("[scenarios.a]\nexecutor = \"constant-vus\"\nduration = \"10 seconds please\"\n");
    assert!(
        p[0].to_string().contains("write it like \"30s\""),
        "{}",
        p[0]
    );

    let p = problems("[scenarios.a]\nexecutor = \"constant-velocity\"\n");
    assert!(
        p[0].to_string()
            .contains("expected one of constant-arrival-rate"),
        "{}",
        p[0]
    );

    let p = problems("[scenarios.a\nexecutor = 1\n");
    assert!(p[0].to_string().starts_with("plan.toml:1:"), "{}", p[0]);
}

#[test]
fn threshold_errors_point_at_the_expression() {
    let text = "[thresholds]\nlatency = [\"p(95)<500\", \"p95<500\"]\n\"latency{scenario:nope}\" = [\"avg<1\"]\n\n[scenarios.a]\nexecutor = \"constant-vus\"\nduration = \"1s\"\n";
    let shown: Vec<String> = problems(text).iter().map(|p| p.to_string()).collect();
    assert!(
        shown.iter().any(|s| s.starts_with("plan.toml:2:")
            && s.contains("`thresholds.latency[1]`")
            && s.contains("unknown aggregation `p95`")),
        "{shown:?}"
    );
    assert!(
        shown
            .iter()
            .any(|s| s.starts_with("plan.toml:3:") && s.contains("no scenario is named \"nope\"")),
        "{shown:?}"
    );
}

#[test]
fn workload_errors_are_checked_against_customer_io_limits() {
    let base = "[scenarios.a]\nexecutor = \"constant-vus\"\nduration = \"1s\"\n";
    let p = problems(&format!("{base}workload = {{ mix = {{ batch = 1 }}, batch_size = 2000, attributes = 50, attribute_bytes = 100 }}\n"));
    assert!(
        p[0].to_string().contains("more than Customer.io's 500 KB"),
        "{}",
        p[0]
    );
    let p = problems(&format!("{base}workload = {{ mix = {{ page = 1 }} }}\n"));
    assert!(
        p[0].to_string().contains("`scenarios.a.workload.mix.page`"),
        "{}",
        p[0]
    );
    let p = problems(&format!("{base}workload = {{ attribute_bytes = 5000 }}\n"));
    assert!(p[0].to_string().contains("1 to 1000"), "{}", p[0]);
    let p = problems(&format!("{base}workload = {{ stack = {{ rate = 10 }} }}\n"));
    assert!(
        p[0].to_string().contains("only with through = \"stack\""),
        "{}",
        p[0]
    );
    let ok = toml(&format!("{base}workload = {{ through = \"stack\", stack = {{ rate = 500, concurrency = 8, linger = \"50ms\" }} }}\n")).unwrap();
    assert!(matches!(
        ok.scenarios[0].through,
        cio_load::workload::Through::Stack(_)
    ));
}

#[test]
fn safety_bounds_are_checked_before_anything_runs() {
    let p = problems("[options]\nmax_duration = \"1m\"\n\n[scenarios.a]\nexecutor = \"constant-vus\"\nduration = \"2m\"\n");
    let shown = p[0].to_string();
    assert!(
        shown.contains("plan.toml:4:") && shown.contains("max_duration"),
        "{shown}"
    );
    let p = problems("[options]\nmax_iterations = 100\n\n[scenarios.a]\nexecutor = \"constant-arrival-rate\"\nrate = 100\nduration = \"2s\"\npre_allocated_vus = 1\n");
    assert!(p[0].to_string().contains("plan 200 iterations"), "{}", p[0]);
}

#[test]
fn json_is_accepted_with_the_same_fields_and_located_errors() {
    let json = r#"{
  "thresholds": { "errors": ["rate<0.01"] },
  "scenarios": {
    "a": { "executor": "constant-vus", "vus": 2, "duration": "1s" }
  }
}"#;
    let plan = Plan::from_json_str(json, Path::new("plan.json")).unwrap();
    assert_eq!(
        plan.scenarios[0].executor,
        Executor::ConstantVus {
            vus: 2,
            duration: Duration::from_secs(1)
        }
    );
    let bad = json.replace("\"vus\": 2,", "\"vus\": 2, \"stages\": [],");
    let Err(LoadError::Invalid(p)) = Plan::from_json_str(&bad, Path::new("plan.json")) else {
        panic!()
    };
    assert!(p[0].to_string().starts_with("plan.json:4:"), "{}", p[0]);
    assert!(
        p[0].to_string().contains("`scenarios.a.stages`"),
        "{}",
        p[0]
    );
    let Err(LoadError::Invalid(p)) = Plan::from_json_str(
        "{\n \"scenarios\": {\n  \"a\": { \"executor\": 3 }\n }\n}",
        Path::new("plan.json"),
    ) else {
        panic!()
    };
    assert!(p[0].to_string().starts_with("plan.json:3:"), "{}", p[0]);
}

#[test]
fn the_seeds_two_scenarios_at_100_each_are_warned_about() {
    // The k6 sketch this project grew from ran identify and track at 100/s each, side by side,
    // against a workspace limited to 100/s: twice the limit it meant to test.
    let text = r#"
[target]
endpoint = "us"
workspace_rate_limit = 100

[scenarios.identify]
executor = "ramping-arrival-rate"
pre_allocated_vus = 50
stages = [{ target = 50, duration = "1m" }, { target = 100, duration = "2m" }, { target = 100, duration = "5m" }, { target = 0, duration = "1m" }]
workload = { mix = { identify = 1 } }

[scenarios.track]
executor = "ramping-arrival-rate"
pre_allocated_vus = 50
stages = [{ target = 50, duration = "1m" }, { target = 100, duration = "2m" }, { target = 100, duration = "5m" }, { target = 0, duration = "1m" }]
workload = { mix = { track = 1 } }
"#;
    let plan = toml(text).unwrap();
    let (track, _) = plan.peak_request_rates();
    assert_eq!(track.round(), 200.0);
    let warnings = plan.rate_warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("200 Track requests/s") && w.contains("100/s")),
        "{warnings:?}"
    );

    // Staggered, they stay within the limit.
    let staggered = text.replace(
        "[scenarios.track]\n",
        "[scenarios.track]\nstart_time = \"9m\"\n",
    );
    assert!(toml(&staggered).unwrap().rate_warnings().is_empty());

    // Aiming at Customer.io requires explicit credentials.
    let err = Connection::resolve(
        &Endpoint::Us,
        None,
        Credentials::default(),
        false,
        plan.client_options(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("CIO_SITE_ID") && err.contains("CIO_API_KEY"),
        "{err}"
    );
}

#[test]
fn the_iteration_executors_take_k6s_fields_and_defaults() {
    let plan = toml(
        r#"
[scenarios.shared]
executor = "shared-iterations"
vus = 4
iterations = 200
maxDuration = "30s"

[scenarios.each]
executor = "per-vu-iterations"
vus = 3
iterations = 10

[scenarios.once]
executor = "shared-iterations"
"#,
    )
    .unwrap();
    let by_name = |n: &str| {
        &plan
            .scenarios
            .iter()
            .find(|s| s.name == n)
            .unwrap()
            .executor
    };
    assert_eq!(
        by_name("shared"),
        &Executor::SharedIterations {
            vus: 4,
            iterations: 200,
            max_duration: Duration::from_secs(30),
        }
    );
    assert_eq!(
        by_name("each"),
        &Executor::PerVuIterations {
            vus: 3,
            iterations: 10,
            max_duration: Duration::from_secs(600),
        }
    );
    // k6's defaults: one VU, one iteration, ten minutes at most.
    assert_eq!(
        by_name("once"),
        &Executor::SharedIterations {
            vus: 1,
            iterations: 1,
            max_duration: Duration::from_secs(600),
        }
    );
    assert_eq!(by_name("each").planned_iterations(), Some(30));

    let p = problems("[scenarios.a]\nexecutor = \"shared-iterations\"\nvus = 5\niterations = 2\n");
    assert!(
        p[0].to_string().contains("`scenarios.a.iterations`")
            && p[0].to_string().contains("fewer than vus (5)"),
        "{}",
        p[0]
    );
    let p =
        problems("[scenarios.a]\nexecutor = \"constant-vus\"\nduration = \"1s\"\niterations = 2\n");
    assert!(
        p[0].to_string()
            .contains("belongs to shared-iterations and per-vu-iterations"),
        "{}",
        p[0]
    );
}

#[test]
fn misspelt_fields_and_executors_get_a_guess() {
    let p = problems("[scenarios.a]\nexecutor = \"constant-vus\"\nduraton = \"10s\"\n");
    let shown = p[0].to_string();
    assert!(shown.contains("did you mean `duration`?"), "{shown}");

    let p = problems("[scenarios.a]\nexecutor = \"constant-velocity\"\n");
    let shown = p[0].to_string();
    assert!(shown.contains("did you mean \"constant-vus\"?"), "{shown}");
    assert!(
        shown.contains("expected one of constant-arrival-rate"),
        "{shown}"
    );

    // The seed's executor: k6 has none of that name.
    let p = problems("[scenarios.a]\nexecutor = \"ramping-rate\"\n");
    let shown = p[0].to_string();
    assert!(
        shown.contains(
            "k6 has no executor of that name; `ramping-arrival-rate` is the open-model one"
        ),
        "{shown}"
    );

    // The same guess in JSON.
    let p = match Plan::from_json_str(
        r#"{"scenarios": {"a": {"executor": "constant-vus", "duration": "1s", "gracefull_stop": "1s"}}}"#,
        Path::new("plan.json"),
    ) {
        Err(LoadError::Invalid(p)) => p,
        other => panic!("{other:?}"),
    };
    assert!(
        p[0].to_string().contains("did you mean `graceful_stop`?"),
        "{}",
        p[0]
    );
}
