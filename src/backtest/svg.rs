//! One SVG per target (`backtest --svg DIR`): each judged series against its limit over
//! time, one panel per series, with the restarts (grey dashes), the exhaustions (black
//! dots), the time `/healthz` would have answered 503 (red bands) and each flip (a red
//! line). Hand-written SVG 1.1, no scripts or external references, so any browser shows it.

use std::fmt::Write;

use super::render::{labels_text, rfc3339};
use super::{TargetReport, Tick};
use crate::judge::series::is_bytes;
use crate::judge::Series;
use crate::units;

/// The drawing's width, pixels.
pub const WIDTH: u32 = 960;
/// Each series' panel height, pixels.
const PANEL: u32 = 180;
/// The title's height, and the margins.
const TOP: u32 = 50;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 20.0;

pub const SERIES_COLOR: &str = "#1f5fbf";
pub const FLIP_COLOR: &str = "#d62020";

/// The drawing's height for `report`.
pub fn height(report: &TargetReport) -> u32 {
    TOP + PANEL * drawn(report).len().max(1) as u32 + 30
}

/// The series with at least one value, in series order.
fn drawn(report: &TargetReport) -> Vec<Series> {
    Series::ALL
        .into_iter()
        .filter(|s| report.ticks.iter().any(|t| value(t, *s).is_some()))
        .collect()
}

fn value(t: &Tick, s: Series) -> Option<f64> {
    t.series.get(&s).and_then(|v| v.0)
}

fn limit(t: &Tick, s: Series) -> Option<f64> {
    t.series.get(&s).and_then(|v| v.1).filter(|l| *l > 0.0)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn amount(s: Series, v: f64) -> String {
    if is_bytes(s) {
        units::bytes(v.max(0.0) as u64)
    } else {
        format!("{v:.0}")
    }
}

/// Maps time to x.
struct Scale {
    t0: u64,
    t1: u64,
}

impl Scale {
    fn x(&self, t: u64) -> f64 {
        let span = (self.t1.saturating_sub(self.t0)).max(1) as f64;
        LEFT + (t.saturating_sub(self.t0)) as f64 / span * (f64::from(WIDTH) - LEFT - RIGHT)
    }
}

/// The SVG of one target.
pub fn render(report: &TargetReport) -> String {
    let (w, h) = (WIDTH, height(report));
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n"
    );
    let _ = writeln!(
        out,
        "<text x=\"10\" y=\"20\" font-size=\"15\">{}</text>\n<text x=\"10\" y=\"38\" fill=\"#555\">{} flip(s), {} restart(s), {} exhaustion(s); red: /healthz would answer 503</text>",
        escape(&labels_text(&report.labels)),
        report.flips.len(),
        report.restarts.len(),
        report.exhaustions.len()
    );
    let (Some(first), Some(last)) = (report.ticks.first(), report.ticks.last()) else {
        out.push_str("<text x=\"10\" y=\"70\">no samples</text>\n</svg>\n");
        return out;
    };
    let scale = Scale {
        t0: first.at_ms,
        t1: last.at_ms,
    };
    for (i, s) in drawn(report).into_iter().enumerate() {
        panel(&mut out, report, &scale, s, TOP + PANEL * i as u32);
    }
    let _ = writeln!(
        out,
        "<text x=\"{LEFT}\" y=\"{}\" fill=\"#555\">{}</text>\n<text x=\"{}\" y=\"{}\" fill=\"#555\" text-anchor=\"end\">{}</text>",
        h - 10,
        rfc3339(first.at_ms),
        f64::from(w) - RIGHT,
        h - 10,
        rfc3339(last.at_ms)
    );
    out.push_str("</svg>\n");
    out
}

/// One series' panel at `y0`: bands, markers, the limit and the value.
fn panel(out: &mut String, r: &TargetReport, scale: &Scale, s: Series, y0: u32) {
    let top = f64::from(y0) + 20.0;
    let bottom = f64::from(y0 + PANEL) - 10.0;
    let max = r
        .ticks
        .iter()
        .flat_map(|t| [value(t, s), limit(t, s)])
        .flatten()
        .fold(0.0_f64, f64::max)
        .max(1.0)
        * 1.05;
    let y = |v: f64| bottom - v / max * (bottom - top);
    let (x0, x1) = (LEFT, f64::from(WIDTH) - RIGHT);
    let _ = writeln!(
        out,
        "<rect x=\"{x0}\" y=\"{top}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#999\"/>\n<text x=\"{x0}\" y=\"{}\" font-weight=\"bold\">{s}</text>\n<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#555\">{}</text>\n<text x=\"{}\" y=\"{bottom}\" text-anchor=\"end\" fill=\"#555\">0</text>",
        x1 - x0,
        bottom - top,
        top - 5.0,
        x0 - 5.0,
        top + 10.0,
        escape(&amount(s, max)),
        x0 - 5.0
    );
    unhealthy_bands(out, r, scale, top, bottom);
    for &t in &r.restarts {
        let x = scale.x(t);
        let _ = writeln!(out, "<line x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{bottom}\" stroke=\"#777\" stroke-dasharray=\"4 3\"/>");
    }
    for f in &r.flips {
        let x = scale.x(f.at_ms);
        let _ = writeln!(out, "<line x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{bottom}\" stroke=\"{FLIP_COLOR}\" stroke-width=\"2\"/>");
    }
    line(
        out,
        r,
        scale,
        |t| limit(t, s).map(y),
        "stroke=\"#444\" stroke-dasharray=\"6 4\"",
    );
    line(
        out,
        r,
        scale,
        |t| value(t, s).map(y),
        &format!("stroke=\"{SERIES_COLOR}\" stroke-width=\"1.5\""),
    );
    for e in r.exhaustions.iter().filter(|e| e.series == s) {
        let _ = writeln!(
            out,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"black\"/>",
            scale.x(e.at_ms),
            y(e.value)
        );
    }
}

/// Red bands where the verdict was unhealthy.
fn unhealthy_bands(out: &mut String, r: &TargetReport, scale: &Scale, top: f64, bottom: f64) {
    let mut start: Option<u64> = None;
    let end = r.ticks.last().map_or(0, |t| t.at_ms);
    for t in &r.ticks {
        match (t.healthy, start) {
            (false, None) => start = Some(t.at_ms),
            (true, Some(s)) => {
                band(out, scale.x(s), scale.x(t.at_ms), top, bottom);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        band(out, scale.x(s), scale.x(end), top, bottom);
    }
}

fn band(out: &mut String, from: f64, to: f64, top: f64, bottom: f64) {
    let _ = writeln!(
        out,
        "<rect x=\"{from:.1}\" y=\"{top}\" width=\"{:.1}\" height=\"{}\" fill=\"{FLIP_COLOR}\" fill-opacity=\"0.15\"/>",
        (to - from).max(1.0),
        bottom - top
    );
}

/// A polyline through the ticks `y` gives a point for; a gap (or a restart) starts a new one.
fn line(
    out: &mut String,
    r: &TargetReport,
    scale: &Scale,
    y: impl Fn(&Tick) -> Option<f64>,
    style: &str,
) {
    let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for t in &r.ticks {
        let restarted = r.restarts.contains(&t.at_ms);
        match y(t) {
            Some(v) if !restarted => runs
                .last_mut()
                .into_iter()
                .for_each(|run| run.push((scale.x(t.at_ms), v))),
            Some(v) => runs.push(vec![(scale.x(t.at_ms), v)]),
            None => runs.push(Vec::new()),
        }
    }
    for run in runs.iter().filter(|r| !r.is_empty()) {
        let points: Vec<String> = run.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" {style} points=\"{}\"/>",
            points.join(" ")
        );
    }
}

/// A file name for a target from its labels.
pub fn file_name(report: &TargetReport) -> String {
    let raw: Vec<String> = report
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let name: String = raw
        .join(",")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '=' | ',' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(120)
        .collect();
    if name.is_empty() {
        "target.svg".into()
    } else {
        format!("{name}.svg")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backtest::{replay, Setup, TargetHistory};

    #[test]
    fn a_leak_draws_its_series_limit_flip_and_restart() {
        let t0 = 1_800_000_000_000;
        let mut h = TargetHistory::default();
        h.labels.insert("job".into(), "a<b>".into());
        let fds = (0..400)
            .map(|i| {
                (
                    t0 + i * 15_000,
                    if i < 300 {
                        400.0 + 2.0 * i as f64
                    } else {
                        100.0
                    },
                )
            })
            .collect();
        h.values.insert(Series::Fds, fds);
        h.limits.insert(Series::Fds, vec![(t0, 1024.0)]);
        h.starts = vec![(t0, 1.0), (t0 + 300 * 15_000, 2.0)];
        let r = replay(&h, &Setup::default());
        assert!(!r.flips.is_empty() && r.restarts.len() == 1);
        let svg = render(&r);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(
            svg.contains("{job=&quot;a&lt;b&gt;&quot;}"),
            "labels escaped"
        );
        assert_eq!(
            svg.matches("stroke-dasharray=\"4 3\"").count(),
            1,
            "one restart line"
        );
        assert_eq!(
            svg.matches(&format!("stroke=\"{FLIP_COLOR}\"")).count(),
            r.flips.len()
        );
        // The value in two runs (before and after the restart), the limit in one.
        assert_eq!(
            svg.matches(&format!("stroke=\"{SERIES_COLOR}\"")).count(),
            2
        );
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(file_name(&r), "job=a_b_.svg");
    }
}
