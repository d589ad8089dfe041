//! Reports people look at: one self-contained HTML file with charts (`cio load --report`,
//! `cio demo --report`).
//!
//! A [`Page`] holds rows of [`Section`]s side by side (a load test has one scenario per row; the
//! demo puts its batched and unbatched runs in one row, next to each other); a section holds
//! [`Chart`]s, [`Table`]s and preformatted text. [`Page::render`] writes the file: styles inline,
//! charts as inline SVG, no script and nothing fetched from the network, so it opens from disk,
//! from a CI artifact or an e-mail attachment alike.
//!
//! # Why by hand
//!
//! A chart here is a few polylines over a time axis with round ticks. `plotters` (SVG backend)
//! lays text out itself, which needs a font backend (`ttf`, that is font-kit and the system's
//! fontconfig, or a font file shipped with us); a browser lays out SVG text on its own. The
//! chart writer is about 200 lines and has no dependency; a page with every chart of a long test
//! stays a few hundred kilobytes (hover points are left out above 600 samples per line).

mod chart;
mod load;

use std::fmt::Write as _;

pub use chart::{Chart, Line};

/// A whole report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Page {
    /// The `<title>` and the heading.
    pub title: String,
    /// Lines under the heading (when, where, the verdict).
    pub meta: Vec<String>,
    /// Whether the run passed (a green or red badge next to the heading), if it has a verdict.
    pub passed: Option<bool>,
    /// Rows of sections; the sections of one row stand side by side.
    pub rows: Vec<Vec<Section>>,
}

/// A titled part of a page.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Section {
    /// Its heading.
    pub title: String,
    /// A line under the heading.
    pub subtitle: String,
    /// Charts, in a grid.
    pub charts: Vec<Chart>,
    /// Tables, after the charts.
    pub tables: Vec<Table>,
    /// Preformatted text at the end (a terminal summary, say).
    pub text: Option<String>,
}

/// A table with a caption.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    /// Shown above it.
    pub caption: String,
    /// The header cells.
    pub head: Vec<String>,
    /// The rows.
    pub rows: Vec<Row>,
}

/// One row of a table.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Row {
    /// Its cells.
    pub cells: Vec<String>,
    /// A verdict colours the row: green when it held, red when it failed.
    pub verdict: Option<bool>,
}

impl Row {
    /// A row without a verdict.
    pub fn new(cells: Vec<String>) -> Row {
        Row {
            cells,
            verdict: None,
        }
    }
}

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#1b1f24;background:#f6f8fa}\
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:0 0 2px}\
.meta{color:#57606a;margin:2px 0}.badge{display:inline-block;padding:2px 10px;border-radius:10px;\
color:#fff;font-size:14px;margin-left:8px;vertical-align:middle}.pass{background:#1a7f37}.fail{background:#cf222e}\
.row{display:grid;gap:16px;margin-top:16px}.section{background:#fff;border:1px solid #d0d7de;\
border-radius:6px;padding:16px;min-width:0}.subtitle{color:#57606a;margin:0 0 8px}\
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:12px}\
figure.chart{margin:0}figcaption{font-weight:600;font-size:14px}.unit{color:#57606a;font-weight:400}\
svg{width:100%;height:auto;display:block}.grid{stroke:#eaeef2}.axis{stroke:#8c959f}\
.tick{font-size:10px;fill:#57606a}.empty{font-size:13px;fill:#8c959f}\
.legend{font-size:12px;color:#57606a}.key{margin-right:12px;white-space:nowrap}\
.swatch{display:inline-block;width:18px;margin-right:4px;vertical-align:middle;border-top:3px solid}\
.swatch.dashed{border-top-style:dashed}\
table{border-collapse:collapse;margin-top:12px;font-size:13px;width:100%}caption{text-align:left;font-weight:600;padding:4px 0}\
th,td{border-bottom:1px solid #eaeef2;padding:3px 8px;text-align:left}th{background:#f6f8fa}\
tr.ok td{background:#dafbe1}tr.failed td{background:#ffebe9}\
pre{background:#f6f8fa;padding:12px;overflow-x:auto;font-size:12px}";

impl Page {
    /// The whole file.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(64 * 1024);
        let _ = write!(
            out,
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
             <title>{}</title><style>{STYLE}</style></head><body><header><h1>{}",
            escape(&self.title),
            escape(&self.title)
        );
        match self.passed {
            Some(true) => out.push_str("<span class=\"badge pass\">passed</span>"),
            Some(false) => out.push_str("<span class=\"badge fail\">failed</span>"),
            None => {}
        }
        out.push_str("</h1>");
        for line in &self.meta {
            let _ = write!(out, "<p class=\"meta\">{}</p>", escape(line));
        }
        out.push_str("</header>");
        for row in &self.rows {
            let _ = write!(
                out,
                "<div class=\"row\" style=\"grid-template-columns:repeat({},minmax(0,1fr))\">",
                row.len().max(1)
            );
            for section in row {
                section.render(&mut out);
            }
            out.push_str("</div>");
        }
        out.push_str("</body></html>\n");
        out
    }
}

impl Section {
    fn render(&self, out: &mut String) {
        let _ = write!(
            out,
            "<section class=\"section\"><h2>{}</h2>",
            escape(&self.title)
        );
        if !self.subtitle.is_empty() {
            let _ = write!(out, "<p class=\"subtitle\">{}</p>", escape(&self.subtitle));
        }
        if !self.charts.is_empty() {
            out.push_str("<div class=\"charts\">");
            for chart in &self.charts {
                chart.render(out);
            }
            out.push_str("</div>");
        }
        for table in &self.tables {
            table.render(out);
        }
        if let Some(text) = &self.text {
            let _ = write!(out, "<pre>{}</pre>", escape(text));
        }
        out.push_str("</section>");
    }
}

impl Table {
    fn render(&self, out: &mut String) {
        let _ = write!(
            out,
            "<table><caption>{}</caption><thead><tr>",
            escape(&self.caption)
        );
        for h in &self.head {
            let _ = write!(out, "<th>{}</th>", escape(h));
        }
        out.push_str("</tr></thead><tbody>");
        for row in &self.rows {
            match row.verdict {
                Some(true) => out.push_str("<tr class=\"ok\">"),
                Some(false) => out.push_str("<tr class=\"failed\">"),
                None => out.push_str("<tr>"),
            }
            for c in &row.cells {
                let _ = write!(out, "<td>{}</td>", escape(c));
            }
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table>");
    }
}

/// Text made safe for HTML content and attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_self_contained_and_escapes_what_it_is_given() {
        let page = Page {
            title: "run <1>".into(),
            meta: vec!["target: \"mock\" & more".into()],
            passed: Some(false),
            rows: vec![vec![
                Section {
                    title: "batched".into(),
                    charts: vec![Chart::new("Rate", "per second")],
                    tables: vec![Table {
                        caption: "thresholds".into(),
                        head: vec!["metric".into()],
                        rows: vec![Row {
                            cells: vec!["p(95)<500".into()],
                            verdict: Some(false),
                        }],
                    }],
                    text: Some("a <summary>".into()),
                    ..Section::default()
                },
                Section::default(),
            ]],
        };
        let html = page.render();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<title>run &lt;1&gt;</title>"));
        assert!(html.contains("target: &quot;mock&quot; &amp; more"));
        assert!(html.contains("badge fail"));
        assert!(html.contains("repeat(2,minmax(0,1fr))"));
        assert!(html.contains("<tr class=\"failed\"><td>p(95)&lt;500</td>"));
        assert!(html.contains("<pre>a &lt;summary&gt;</pre>"));
        // Nothing to fetch: no script, no stylesheet or image links.
        for needle in ["<script", "<link", "src=", "http://", "https://"] {
            let outside_svg_ns = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
            assert!(!outside_svg_ns.contains(needle), "{needle} in {html}");
        }
    }
}
