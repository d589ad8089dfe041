//! `cio load --report` and `cio demo --report` in a real browser: headless Chromium loads the
//! file from disk, and the test reads the DOM it built and what its console printed.
//!
//! Chromium is found as `$CIO_CHROMIUM`, or `chromium`, `chromium-browser` or `google-chrome` on
//! the PATH. Without one the tests say so and pass, except under CI (`CI` set), where they fail:
//! `.ci/run` installs Debian's `chromium`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn cio() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cio"));
    c.env_remove("CIO_SITE_ID")
        .env_remove("CIO_API_KEY")
        .env_remove("CIO_APP_KEY")
        .env("RUST_LOG", "warn");
    c
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CIO_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// Chromium, or `None` (after saying why) where the tests may pass without it.
fn browser_or_skip() -> Option<PathBuf> {
    match chromium() {
        Some(c) => Some(c),
        None if std::env::var_os("CI").is_some() => panic!(
            "no Chromium found (CIO_CHROMIUM, or chromium on the PATH); install it: apt-get install chromium"
        ),
        None => {
            eprintln!("skipped: no Chromium (apt-get install chromium, or set CIO_CHROMIUM)");
            None
        }
    }
}

/// What the browser made of a page: the DOM after it loaded, and its console messages.
struct Loaded {
    dom: String,
    console: Vec<String>,
}

fn load(browser: &Path, page: &Path) -> Loaded {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "chromium did not finish loading {} in 120 s",
                page.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "chromium: {}", text(&out));
    let console = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_owned)
        .collect();
    Loaded {
        dom: String::from_utf8_lossy(&out.stdout).into_owned(),
        console,
    }
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// What every report must be: self-contained, drawn, and quiet in the console.
fn assert_self_contained_and_quiet(file: &str, loaded: &Loaded) {
    for needle in ["<script", "<link", "src=", "<img", "@import"] {
        assert!(!file.contains(needle), "the report holds {needle}");
    }
    assert!(loaded.console.is_empty(), "console: {:#?}", loaded.console);
    assert!(loaded.dom.contains("</svg>"), "{}", loaded.dom);
}

#[test]
fn the_console_check_sees_a_page_that_logs_an_error() {
    let Some(browser) = browser_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("bad.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><p>x</p><script>console.error('from the page'); missing();</script>",
    )
    .unwrap();
    let loaded = load(&browser, &page);
    assert!(
        loaded.console.iter().any(|l| l.contains("from the page")),
        "{:#?}",
        loaded.console
    );
    assert!(
        loaded.console.iter().any(|l| l.contains("ReferenceError")),
        "{:#?}",
        loaded.console
    );
}

const PLAN: &str = r#"
[target]
mock = { track_rate = 0, app_rate = 0, error_rate = 0.1, throttle_rate = 0.05 }

[thresholds]
latency = ["p(95)<5000"]
"errors{scenario:ramp}" = ["rate<0.01"]

[scenarios.ramp]
executor = "ramping-arrival-rate"
start_rate = 20
pre_allocated_vus = 5
max_vus = 20
stages = [{ target = 100, duration = "2s" }, { target = 0, duration = "1s" }]
workload = { mix = { track = 9, batch = 1 }, batch_size = 5 }

[scenarios.loop]
executor = "constant-vus"
vus = 2
duration = "2s"
"#;

#[test]
fn a_load_report_draws_every_chart_of_every_scenario_in_a_real_browser() {
    let Some(browser) = browser_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.toml");
    std::fs::write(&plan, PLAN).unwrap();
    let report = dir.path().join("report.html");
    let out = cio()
        .arg("load")
        .arg(&plan)
        .arg("--report")
        .arg(&report)
        .args(["--no-progress", "--quiet"])
        .output()
        .unwrap();
    // 10 % 5xx and 5 % 429: the errors threshold fails, and the report says so.
    assert_eq!(out.status.code(), Some(99), "{}", text(&out));
    let file = std::fs::read_to_string(&report).unwrap();
    let loaded = load(&browser, &report);
    assert_self_contained_and_quiet(&file, &loaded);
    let dom = &loaded.dom;

    // Two scenarios, four charts each: rate, latency, errors by status, VUs.
    assert_eq!(count(dom, "<svg"), 8, "{dom}");
    assert_eq!(count(dom, "<figure class=\"chart\">"), 8);
    for title in [
        "Iterations: target against achieved",
        "Latency from the scheduled start",
        "Failed iterations by status",
        "VUs and dropped iterations",
    ] {
        assert_eq!(count(dom, &format!("<figcaption>{title} ")), 2, "{title}");
    }
    // Every chart has data: lines with points, and the injected statuses in the legend.
    assert!(!dom.contains("no data"), "{dom}");
    assert!(count(dom, "<polyline") >= 8 * 2);
    assert!(count(dom, "<circle") > 50);
    assert!(dom.contains(">429</span>") && dom.contains(">target</span>"));
    // The ramp's planned rate is drawn dashed next to what was achieved.
    assert!(dom.contains("stroke-dasharray"));
    // The thresholds: one failed row, one that held, and the verdict at the top.
    assert!(dom.contains("badge fail"));
    assert!(dom.contains("<tr class=\"failed\"><td>errors{scenario:ramp}</td>"));
    assert!(dom.contains("<tr class=\"ok\"><td>latency</td>"));
    assert!(dom.contains("End-of-test summary"));
}

#[test]
fn a_demo_report_puts_both_runs_side_by_side_in_a_real_browser() {
    let Some(browser) = browser_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("demo.html");
    let out = cio()
        .args(["demo", "--events", "5000", "--report"])
        .arg(&report)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let file = std::fs::read_to_string(&report).unwrap();
    let loaded = load(&browser, &report);
    assert_self_contained_and_quiet(&file, &loaded);
    let dom = &loaded.dom;

    assert!(dom.contains("repeat(2,minmax(0,1fr))"), "{dom}");
    assert_eq!(count(dom, "<section class=\"section\">"), 2);
    assert_eq!(count(dom, "<svg"), 8);
    assert!(dom.contains("batched: v2 /batch through the full stack"));
    assert!(dom.contains("unbatched: v1, one request per operation"));
    assert!(dom.contains("Track limit (100/s)"));
    assert!(dom.contains("every event arrived exactly once"));
    assert!(dom.contains("badge pass"));
    assert!(!dom.contains("no data"), "{dom}");
}
