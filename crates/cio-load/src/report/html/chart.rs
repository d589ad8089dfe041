//! One line chart as inline SVG: lines over time, axes with round ticks, a point per sample
//! with its value on hover (an SVG `<title>`), no script.

use std::fmt::Write as _;

use super::escape;

/// Colours of the lines, in order (colour-blind safe: Okabe and Ito's palette).
const PALETTE: [&str; 8] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#f0e442",
];

const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 30.0;
/// Above this many samples a line gets no hover points (the file stays small).
const MAX_POINTS_WITH_HOVER: usize = 600;

/// A chart: a title, the unit of its y axis, and its lines (x is seconds since the start).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Chart {
    /// Shown above the chart.
    pub title: String,
    /// The y axis's unit (`ms`, `per second`, `VUs`).
    pub unit: String,
    /// The lines, drawn in order.
    pub lines: Vec<Line>,
}

/// One line of a chart.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Line {
    /// Its name in the legend and on hover.
    pub name: String,
    /// `(seconds, value)`, in order of time.
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed: a target or a limit rather than a measurement.
    pub dashed: bool,
}

impl Line {
    /// A solid line.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Line {
        Line {
            name: name.into(),
            points,
            dashed: false,
        }
    }

    /// A dashed line (a target or a limit).
    pub fn target(name: impl Into<String>, points: Vec<(f64, f64)>) -> Line {
        Line {
            dashed: true,
            ..Line::new(name, points)
        }
    }
}

impl Chart {
    /// A chart with no lines yet.
    pub fn new(title: impl Into<String>, unit: impl Into<String>) -> Chart {
        Chart {
            title: title.into(),
            unit: unit.into(),
            lines: Vec::new(),
        }
    }

    /// Adds a line.
    pub fn line(mut self, line: Line) -> Chart {
        self.lines.push(line);
        self
    }

    /// The chart as a `<figure>` holding its title, the SVG and the legend.
    pub(super) fn render(&self, out: &mut String) {
        let finite = |v: &f64| v.is_finite();
        let points = || self.lines.iter().flat_map(|l| l.points.iter());
        let x_max = points().map(|p| p.0).filter(finite).fold(0.0, f64::max);
        let y_max = points().map(|p| p.1).filter(finite).fold(0.0, f64::max);
        let (x_step, x_top) = ticks(x_max);
        let (y_step, y_top) = ticks(y_max);
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let x = |v: f64| LEFT + v / x_top * plot_w;
        let y = |v: f64| TOP + plot_h - v / y_top * plot_h;

        let _ = write!(
            out,
            "<figure class=\"chart\"><figcaption>{} <span class=\"unit\">({})</span></figcaption>\
             <svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
             role=\"img\" aria-label=\"{}\">",
            escape(&self.title),
            escape(&self.unit),
            escape(&self.title)
        );
        // Grid, ticks and their labels.
        for i in 0..=steps(y_top, y_step) {
            let v = y_step * i as f64;
            let _ = write!(
                out,
                "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{py:.1}\" y2=\"{py:.1}\"/>\
                 <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                WIDTH - RIGHT,
                LEFT - 6.0,
                y(v) + 4.0,
                label(v),
                py = y(v),
            );
        }
        for i in 0..=steps(x_top, x_step) {
            let v = x_step * i as f64;
            let _ = write!(
                out,
                "<line class=\"axis\" x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/>\
                 <text class=\"tick\" x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}s</text>",
                TOP + plot_h,
                TOP + plot_h + 4.0,
                TOP + plot_h + 18.0,
                label(v),
                px = x(v),
            );
        }
        let _ = write!(
            out,
            "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/>",
            WIDTH - RIGHT,
            TOP + plot_h,
            TOP + plot_h
        );
        if points().next().is_none() {
            let _ = write!(
                out,
                "<text class=\"empty\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">no data</text>",
                LEFT + plot_w / 2.0,
                TOP + plot_h / 2.0
            );
        }
        for (i, line) in self.lines.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            let dash = if line.dashed {
                " stroke-dasharray=\"6 4\""
            } else {
                ""
            };
            let _ = write!(
                out,
                "<polyline class=\"series\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.8\"{dash} points=\""
            );
            for &(px, py) in line
                .points
                .iter()
                .filter(|p| p.0.is_finite() && p.1.is_finite())
            {
                let _ = write!(out, "{:.1},{:.1} ", x(px), y(py));
            }
            out.push_str("\"/>");
            if line.points.len() <= MAX_POINTS_WITH_HOVER {
                let _ = write!(out, "<g fill=\"{colour}\">");
                for &(px, py) in line
                    .points
                    .iter()
                    .filter(|p| p.0.is_finite() && p.1.is_finite())
                {
                    let _ = write!(
                        out,
                        "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2\"><title>{} at {}s: {}</title></circle>",
                        x(px),
                        y(py),
                        escape(&line.name),
                        label(px),
                        label(py)
                    );
                }
                out.push_str("</g>");
            }
        }
        out.push_str("</svg><div class=\"legend\">");
        for (i, line) in self.lines.iter().enumerate() {
            let style = if line.dashed { "dashed" } else { "solid" };
            let _ = write!(
                out,
                "<span class=\"key\"><span class=\"swatch {style}\" style=\"border-color:{}\"></span>{}</span>",
                PALETTE[i % PALETTE.len()],
                escape(&line.name)
            );
        }
        out.push_str("</div></figure>");
    }
}

/// A round step (1, 2 or 5 times a power of ten) that cuts `0..max` into about five, and the
/// top of the axis (a multiple of the step at or above `max`; 1 when `max` is 0).
fn ticks(max: f64) -> (f64, f64) {
    if !(max.is_finite() && max > 0.0) {
        return (0.2, 1.0);
    }
    let rough = max / 5.0;
    let power = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * power);
    (step, (max / step).ceil().max(1.0) * step)
}

fn steps(top: f64, step: f64) -> usize {
    (top / step).round() as usize
}

/// A tick or hover value: no decimals for whole numbers, else up to three significant digits
/// with trailing zeros cut (`0.5`, `1.25`, `12.5`).
fn label(v: f64) -> String {
    if v.fract().abs() < 1e-9 {
        return format!("{v:.0}");
    }
    let s = if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    };
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_maximum() {
        assert_eq!(ticks(0.0), (0.2, 1.0));
        assert_eq!(ticks(f64::NAN), (0.2, 1.0));
        assert_eq!(ticks(1.0), (0.2, 1.0));
        assert_eq!(ticks(7.0), (2.0, 8.0));
        assert_eq!(ticks(30.0), (10.0, 30.0));
        assert_eq!(ticks(4_321.0), (1_000.0, 5_000.0));
        assert_eq!(
            [0.5, 1.5, 1.25, 12.5, 0.125, 3.0].map(label),
            ["0.5", "1.5", "1.25", "12.5", "0.125", "3"]
        );
        let (step, top) = ticks(0.37);
        assert!((step - 0.1).abs() < 1e-12 && (top - 0.4).abs() < 1e-12);
    }

    #[test]
    fn a_chart_draws_every_line_with_hover_values_and_a_legend() {
        let chart = Chart::new("Latency <per call>", "ms")
            .line(Line::new("p50", vec![(1.0, 10.0), (2.0, 12.5)]))
            .line(Line::target("target", vec![(1.0, 20.0), (2.0, 20.0)]));
        let mut html = String::new();
        chart.render(&mut html);
        assert_eq!(html.matches("<polyline").count(), 2);
        assert_eq!(html.matches("<circle").count(), 4);
        assert!(html.contains("stroke-dasharray"));
        assert!(html.contains("<title>p50 at 2s: 12.5</title>"));
        assert!(html.contains("Latency &lt;per call&gt;"));
        assert!(!html.contains("no data"));
        // The top of the y axis is at or above the largest value: 20 -> 20 (step 5).
        assert!(html.contains(">20</text>"));
    }

    #[test]
    fn an_empty_chart_says_so() {
        let mut html = String::new();
        Chart::new("Errors", "per second").render(&mut html);
        assert!(html.contains("no data"));
        assert!(html.contains("<svg"));
    }
}
