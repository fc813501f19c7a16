//! One series' panel: its frame, value axis and time grid, the red bands where `/healthz`
//! would have answered 503, a line per restart (grey dashes) and flip (red), the limit
//! (dashed) and the value (blue) as polylines broken at gaps and restarts, a dot per
//! exhaustion, and the limit's label.

use std::fmt::Write;

use super::{
    axis, limit, marks, value, Frame, Scale, FLIP_COLOR, HEADROOM, LEFT, LIMIT_STYLE, PANEL,
    RESTART_STYLE, SERIES_COLOR, X1,
};
use crate::backtest::{TargetReport, Tick};
use crate::judge::Series;

/// One series' panel at `y0`: the frame and its grid, bands, markers, the limit and the
/// value.
pub(super) fn draw(
    out: &mut String,
    r: &TargetReport,
    (scale, ticks): (&Scale, &[axis::TimeTick]),
    s: Series,
    y0: u32,
) -> Frame {
    let max = r
        .ticks
        .iter()
        .flat_map(|t| [value(t, s), limit(t, s)])
        .flatten()
        .fold(0.0_f64, f64::max)
        .max(1.0)
        * HEADROOM;
    let frame = Frame {
        top: f64::from(y0) + 20.0,
        bottom: f64::from(y0 + PANEL) - 10.0,
        max,
    };
    let (top, bottom) = (frame.top, frame.bottom);
    let _ = writeln!(
        out,
        "<rect x=\"{LEFT}\" y=\"{top}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#999\"/>\n<text x=\"{LEFT}\" y=\"{}\" font-weight=\"bold\">{s}</text>",
        X1 - LEFT,
        bottom - top,
        top - 5.0,
    );
    axis::values(out, s, frame);
    axis::grid(out, scale, ticks, top, bottom);
    unhealthy_bands(out, r, scale, top, bottom);
    for &t in &r.restarts {
        let x = scale.x(t);
        let _ = writeln!(out, "<line class=\"restart\" x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{bottom}\" {RESTART_STYLE}/>");
    }
    for f in &r.flips {
        let x = scale.x(f.at_ms);
        let _ = writeln!(out, "<line class=\"flip\" x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{bottom}\" stroke=\"{FLIP_COLOR}\" stroke-width=\"2\"/>");
    }
    let y = |v: f64| frame.y(v);
    line(out, r, scale, |t| limit(t, s).map(y), "limit", LIMIT_STYLE);
    let style = format!("stroke=\"{SERIES_COLOR}\" stroke-width=\"1.5\"");
    line(out, r, scale, |t| value(t, s).map(y), "value", &style);
    for e in r.exhaustions.iter().filter(|e| e.series == s) {
        let (cx, cy) = (scale.x(e.at_ms), y(e.value));
        let _ = writeln!(
            out,
            "<circle class=\"exhaustion\" cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"4\" fill=\"black\"/>"
        );
    }
    marks::limit_labels(out, r, scale, s, frame);
    frame
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
        "<rect class=\"unhealthy\" x=\"{from:.1}\" y=\"{top}\" width=\"{:.1}\" height=\"{}\" fill=\"{FLIP_COLOR}\" fill-opacity=\"0.15\"/>",
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
    class: &str,
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
            "<polyline class=\"{class}\" fill=\"none\" {style} points=\"{}\"/>",
            points.join(" ")
        );
    }
}
