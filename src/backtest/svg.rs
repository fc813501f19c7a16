//! One SVG per target (`backtest --svg DIR`): each judged series against its limit over
//! time, one panel per series, with the restarts (grey dashes), the exhaustions (black
//! dots), the time `/healthz` would have answered 503 (red bands) and each flip (a red
//! line). Each limit is labelled with its value, each flip's lead is a bracket from the
//! flip to the restart or exhaustion it led to ([`marks`]), time ticks at a round step
//! run under the panels ([`axis`]) and a legend closes the drawing ([`legend`]); a panel
//! itself is drawn by [`panel`].
//!
//! Hand-written SVG 1.1, no scripts, styles or external references, so any browser shows
//! it; every label from the data (Prometheus label values) is escaped; the same report
//! always gives the same bytes. Elements carry a `class` naming what they draw (`flip`,
//! `restart`, `lead`, `tick`, ...), for tests and for a reader of the source.

mod axis;
mod legend;
mod marks;
mod panel;
#[cfg(test)]
mod tests;

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
/// The title's height.
const TOP: u32 = 50;
/// Under the last panel: the time ticks' labels (and dates).
const AXIS: u32 = 30;
/// The plot's left and right edges, pixels.
const LEFT: f64 = 90.0;
const X1: f64 = WIDTH as f64 - 20.0;
/// Room above the highest value or limit, so the limit's label fits over its line.
const HEADROOM: f64 = 1.15;

pub const SERIES_COLOR: &str = "#1f5fbf";
pub const FLIP_COLOR: &str = "#d62020";
const LIMIT_STYLE: &str = "stroke=\"#444\" stroke-dasharray=\"6 4\"";
const RESTART_STYLE: &str = "stroke=\"#777\" stroke-dasharray=\"4 3\"";
/// Text that stays readable over lines and bands: a white halo behind it.
const HALO: &str =
    "stroke=\"white\" stroke-width=\"3\" stroke-linejoin=\"round\" paint-order=\"stroke\"";

/// The drawing's height for `report`.
pub fn height(report: &TargetReport) -> u32 {
    if report.ticks.is_empty() {
        return TOP + 40;
    }
    legend_top(report) + legend::height()
}

fn legend_top(report: &TargetReport) -> u32 {
    TOP + PANEL * drawn(report).len().max(1) as u32 + AXIS
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

/// Text for an attribute or an element: markup escaped, and the characters XML 1.0 forbids
/// (control characters a label value may hold) replaced, so the document always parses.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' => out.push(c),
            c if c >= '\u{10000}' => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
    out
}

/// A value on the axis: `750` fds, `512.0 MiB`.
fn amount(s: Series, v: f64) -> String {
    if is_bytes(s) {
        units::bytes(v.max(0.0) as u64)
    } else {
        format!("{v:.0}")
    }
}

/// A label's width at `font_px`, estimated (sans-serif averages about 0.58 em a character),
/// to place it and keep it apart from others.
fn text_width(text: &str, font_px: f64) -> f64 {
    text.chars().count() as f64 * font_px * 0.58
}

/// Maps time to x.
struct Scale {
    t0: u64,
    t1: u64,
}

impl Scale {
    fn x(&self, t: u64) -> f64 {
        let span = (self.t1.saturating_sub(self.t0)).max(1) as f64;
        LEFT + (t.saturating_sub(self.t0)) as f64 / span * (X1 - LEFT)
    }
}

/// One panel's plot area (y, pixels) and its vertical scale.
#[derive(Debug, Clone, Copy)]
struct Frame {
    top: f64,
    bottom: f64,
    /// The value at the top edge.
    max: f64,
}

impl Frame {
    fn y(&self, v: f64) -> f64 {
        self.bottom - v / self.max * (self.bottom - self.top)
    }
}

/// The SVG of one target.
pub fn render(report: &TargetReport) -> String {
    let (w, h) = (WIDTH, height(report));
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n"
    );
    title(&mut out, report);
    let (Some(first), Some(last)) = (report.ticks.first(), report.ticks.last()) else {
        out.push_str("<text x=\"10\" y=\"70\">no samples</text>\n</svg>\n");
        return out;
    };
    let scale = Scale {
        t0: first.at_ms,
        t1: last.at_ms,
    };
    let ticks = axis::ticks(first.at_ms, last.at_ms, X1 - LEFT);
    let panels = drawn(report);
    let leads = marks::leads(report, &panels);
    let mut bottom = f64::from(TOP + PANEL) - 10.0;
    for (i, &s) in panels.iter().enumerate() {
        let frame = panel::draw(
            &mut out,
            report,
            (&scale, &ticks),
            s,
            TOP + PANEL * i as u32,
        );
        let mine: Vec<&marks::Lead> = leads.iter().filter(|l| l.series == s).collect();
        marks::draw_leads(&mut out, &scale, frame, &mine);
        bottom = frame.bottom;
    }
    axis::labels(&mut out, &scale, &ticks, bottom);
    legend::draw(&mut out, legend_top(report));
    out.push_str("</svg>\n");
    out
}

/// The target's labels, and what happened over which time.
fn title(out: &mut String, r: &TargetReport) {
    let span = match (r.ticks.first(), r.ticks.last()) {
        (Some(a), Some(b)) => format!("{} .. {}: ", rfc3339(a.at_ms), rfc3339(b.at_ms)),
        _ => String::new(),
    };
    let flapped = if r.flapped() {
        "; the verdict flapped"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "<text class=\"title\" x=\"10\" y=\"20\" font-size=\"15\">{}</text>\n<text x=\"10\" y=\"38\" fill=\"#555\">{span}{}, {}, {}{flapped}</text>",
        escape(&labels_text(&r.labels)),
        plural(r.flips.len(), "flip"),
        plural(r.restarts.len(), "restart"),
        plural(r.exhaustions.len(), "exhaustion"),
    );
}

fn plural(n: usize, one: &str) -> String {
    match n {
        1 => format!("1 {one}"),
        n => format!("{n} {one}s"),
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
