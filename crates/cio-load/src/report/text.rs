//! The terminal summary, laid out like k6's end-of-test summary.

use std::fmt::Write as _;

use super::{number, MetricSummary, Report};
use crate::metrics::Metric;

fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2}s", v / 1000.0)
    } else if v >= 1.0 {
        format!("{v:.2}ms")
    } else {
        format!("{:.0}µs", v * 1000.0)
    }
}

fn dotted(name: &str, width: usize) -> String {
    let mut s = name.to_owned();
    s.push_str(&".".repeat(width.saturating_sub(name.chars().count()) + 2));
    s.push(':');
    s
}

pub(super) fn render(r: &Report) -> String {
    let mut out = String::new();
    let max_vus: u64 = r.scenarios.values().map(|s| s.vus_max).sum();
    let peak: u64 = r.scenarios.values().map(|s| s.peak_vus).sum();
    let _ = writeln!(out);
    let _ = writeln!(out, "     target: {}", r.target);
    let _ = writeln!(
        out,
        "  scenarios: {} scenario{}, {max_vus} VUs allocated ({peak} busy at most), ran {:.1}s",
        r.scenarios.len(),
        if r.scenarios.len() == 1 { "" } else { "s" },
        r.duration_s
    );
    for (name, s) in &r.scenarios {
        let _ = writeln!(out, "           * {name}: {}", s.plan);
    }
    let _ = writeln!(out);

    if !r.thresholds.is_empty() {
        let _ = writeln!(out, "  thresholds");
        for t in &r.thresholds {
            let mark = if t.ok { "✓" } else { "✗" };
            let value = match t
                .expression
                .split(['<', '>', '=', '!'])
                .next()
                .map(str::trim)
            {
                Some(agg)
                    if t.metric.starts_with("latency") || t.metric.starts_with("service_time") =>
                {
                    if agg == "count" {
                        format!("{agg}={}", number(t.value))
                    } else {
                        format!("{agg}={}", ms(t.value))
                    }
                }
                Some(agg) => format!("{agg}={}", number(t.value)),
                None => number(t.value),
            };
            let abort = if t.abort_on_fail {
                " (abort_on_fail)"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "    {mark} {} {}  {value}{abort}",
                t.metric, t.expression
            );
        }
        let _ = writeln!(out);
    }

    // Our names, each with its tagged series (k6's submetrics) under it; k6's names for the
    // same numbers are in the JSON export and named once below.
    let shown: Vec<(&String, &MetricSummary)> = r
        .metrics
        .iter()
        .filter(|(name, _)| {
            let base = name.split('{').next().unwrap_or(name);
            Metric::parse(base).is_none_or(|m| !m.is_k6_alias())
        })
        .collect();
    let width = shown.iter().map(|(k, _)| k.len()).max().unwrap_or(10) + 4;
    for (name, m) in shown {
        let line = match m {
            MetricSummary::Counter { count, rate, .. } => format!("{count:<10} {rate:.2}/s"),
            MetricSummary::Rate {
                passes,
                fails,
                value,
                ..
            } => format!("{:.2}%  {passes} out of {}", value * 100.0, passes + fails),
            MetricSummary::Gauge {
                value, min, max, ..
            } => format!("{value:<10} min={min} max={max}"),
            MetricSummary::Trend { stats, .. } => r
                .summary_trend_stats
                .iter()
                .filter_map(|c| {
                    stats.get(c).map(|v| {
                        if c == "count" {
                            format!("{c}={}", number(*v))
                        } else {
                            format!("{c}={}", ms(*v))
                        }
                    })
                })
                .collect::<Vec<_>>()
                .join(" "),
        };
        let label = match name.split_once('{') {
            Some((_, tags)) => format!("  {{ {} ", tags.trim_end_matches('}')) + "}",
            None => name.clone(),
        };
        let _ = writeln!(out, "     {} {line}", dotted(&label, width));
    }
    let _ = writeln!(
        out,
        "     (k6's names in the JSON export: http_reqs = iterations, http_req_failed = errors, http_req_duration = service_time, iteration_duration = latency)"
    );
    let _ = writeln!(out);

    let _ = writeln!(
        out,
        "  {:<16} {:<14} {:<8} {:>10} {:>9} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "scenario",
        "operation",
        "status",
        "iterations",
        "rate/s",
        "errors",
        "p50",
        "p90",
        "p95",
        "p99",
        "max"
    );
    for (name, s) in &r.scenarios {
        for (op, o) in &s.operations {
            for (status, st) in &o.statuses {
                let _ = writeln!(
                    out,
                    "  {:<16} {:<14} {:<8} {:>10} {:>9.1} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10}",
                    name,
                    op,
                    status,
                    st.iterations,
                    st.iterations as f64 / s.duration_s.max(1e-9),
                    st.errors,
                    ms(st.latency.p50),
                    ms(st.latency.p90),
                    ms(st.latency.p95),
                    ms(st.latency.p99),
                    ms(st.latency.max)
                );
            }
        }
        let target = s
            .target_rate
            .map(|t| format!("target {t:.1}/s, "))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:<16} {target}achieved {:.1}/s, {} started, {} dropped, {} interrupted, peak {} VUs of {}; service time p95 {}",
            "",
            s.achieved_rate,
            s.started,
            s.dropped_iterations,
            s.interrupted_iterations,
            s.peak_vus,
            s.vus_max,
            ms(s.service_time.p95)
        );
    }

    if !r.warnings.is_empty() {
        let _ = writeln!(out);
        for w in &r.warnings {
            let _ = writeln!(out, "  warning: {w}");
        }
    }
    if let Some(reason) = &r.aborted {
        let _ = writeln!(out);
        let _ = writeln!(out, "  stopped early: {reason}");
    }
    let failed = r.failed_thresholds().count();
    if failed > 0 {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "  {failed} threshold{} failed",
            if failed == 1 { "" } else { "s" }
        );
    }
    out
}
