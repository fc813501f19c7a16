//! The marks that say what a panel means: each limit's value over its line (`limit 1024`,
//! `limit 2.0 GiB`, as the verdict lines write amounts), and each flip's lead, a bracket
//! from the flip to the restart or exhaustion it led to with an arrow at the event.
//!
//! A lead reads `kubelet lead 27m30s` when `/healthz` answered 503 without a break from
//! the flip to the event (the lead a kubelet probing it saw, [`Event::kubelet_lead`]);
//! `lead 1h45m (503 cut short)`, dashed, when a 200 came in between (the verdict flapped:
//! a kubelet saw no lead from that flip); `lead …` otherwise. A lead is drawn on the panel
//! of the series that reached its limit, or of the flip's first failing rule for a
//! restart; leads that would overlap stack upwards from the panel's bottom.

use std::fmt::Write;

use super::{limit, text_width, Frame, Scale, HALO, LEFT, X1};
use crate::backtest::{Event, Flip, LeadTo, TargetReport};
use crate::judge::rules::amount;
use crate::judge::series::is_bytes;
use crate::judge::Series;
use crate::units;

/// Labels' font size, pixels.
const FONT: f64 = 12.0;
/// The distance between two rows of leads, pixels.
const ROW: f64 = 28.0;
const LEAD_COLOR: &str = "#222";

/// One flip's lead, to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct Lead {
    pub from_ms: u64,
    pub to_ms: u64,
    pub to: LeadTo,
    /// `kubelet lead 27m30s`, `lead 1h45m (503 cut short)`.
    pub text: String,
    /// A 200 came between the flip and the event.
    pub cut_short: bool,
    /// The panel it is drawn on.
    pub series: Series,
}

/// Each flip's lead that ended in a restart or exhaustion, on one of `panels`.
pub fn leads(r: &TargetReport, panels: &[Series]) -> Vec<Lead> {
    r.flips.iter().filter_map(|f| lead(r, f, panels)).collect()
}

fn lead(r: &TargetReport, f: &Flip, panels: &[Series]) -> Option<Lead> {
    let (at, to) = f.next?;
    let first = *panels.first()?;
    let on = match to {
        LeadTo::Exhaustion(s) => Some(s),
        LeadTo::Restart => f.rules.first().copied(),
    };
    let series = on.filter(|s| panels.contains(s)).unwrap_or(first);
    let kubelet = r
        .events
        .iter()
        .find(|e| e.at_ms == at && e.what == to && e.unbroken_from_ms == Some(f.at_ms))
        .and_then(Event::kubelet_lead);
    let took = units::duration_ms(at.saturating_sub(f.at_ms));
    let cut_short = f.interrupted();
    let text = match kubelet {
        Some(d) => format!("kubelet lead {}", units::duration_ms(d.as_millis() as u64)),
        None if cut_short => format!("lead {took} (503 cut short)"),
        None => format!("lead {took}"),
    };
    Some(Lead {
        from_ms: f.at_ms,
        to_ms: at,
        to,
        text,
        cut_short,
        series,
    })
}

/// Where a lead goes: its bracket's ends and height, and its label's middle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placed {
    pub x0: f64,
    pub x1: f64,
    pub y: f64,
    pub label_x: f64,
    pub label_y: f64,
}

/// Each lead's place on a panel: its label centred over the bracket (moved in at the plot's
/// edges); a lead whose bracket or label would touch one already placed goes a row up.
pub fn place(leads: &[&Lead], scale: &Scale, frame: Frame) -> Vec<Placed> {
    let rows = ((frame.bottom - frame.top - 30.0) / ROW).floor().max(1.0) as usize;
    let mut ends: Vec<f64> = Vec::new();
    let mut out = Vec::new();
    for l in leads {
        let (x0, x1) = (scale.x(l.from_ms), scale.x(l.to_ms));
        let w = text_width(&l.text, FONT);
        // Over the bracket's middle, moved in to stay on the plot.
        let label_x = ((x0 + x1) / 2.0).min(X1 - w / 2.0).max(LEFT + w / 2.0);
        let (from, to) = (x0.min(label_x - w / 2.0), x1.max(label_x + w / 2.0));
        let row = match ends.iter().position(|&end| end + 8.0 < from) {
            Some(i) => i,
            None if ends.len() < rows => {
                ends.push(f64::MIN);
                ends.len() - 1
            }
            None => rows - 1,
        };
        if let Some(end) = ends.get_mut(row) {
            *end = end.max(to);
        }
        let y = frame.bottom - 14.0 - ROW * row as f64;
        out.push(Placed {
            x0,
            x1,
            y,
            label_x,
            label_y: y - 9.0,
        });
    }
    out
}

/// The leads of one panel.
pub(super) fn draw_leads(out: &mut String, scale: &Scale, frame: Frame, leads: &[&Lead]) {
    for (l, p) in leads.iter().zip(place(leads, scale, frame)) {
        let dash = if l.cut_short {
            " stroke-dasharray=\"5 3\""
        } else {
            ""
        };
        let _ = writeln!(out, "<g class=\"lead\">");
        if matches!(l.to, LeadTo::Exhaustion(_)) {
            // A guide from the exhaustion's dot down to the bracket's end.
            let _ = writeln!(
                out,
                "<line x1=\"{:.1}\" y1=\"{}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{LEAD_COLOR}\" stroke-opacity=\"0.6\" stroke-dasharray=\"1 3\"/>",
                p.x1, frame.top, p.x1, p.y - 6.0
            );
        }
        bracket(out, p.x0, p.x1, p.y, dash);
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"{FONT}\" font-weight=\"bold\" fill=\"{LEAD_COLOR}\" {HALO}>{}</text>\n</g>",
            p.label_x,
            p.label_y,
            super::escape(&l.text)
        );
    }
}

/// `|<----->|` from `x0` to `x1` at `y`, the arrow's head at the event's end.
fn bracket(out: &mut String, x0: f64, x1: f64, y: f64, dash: &str) {
    let style = format!("stroke=\"{LEAD_COLOR}\" stroke-width=\"1.5\" fill=\"none\"");
    let head = if x1 - x0 >= 10.0 {
        format!(
            "<path d=\"M{:.1},{:.1} L{x1:.1},{y:.1} L{:.1},{:.1}\" {style}/>\n",
            x1 - 7.0,
            y - 4.0,
            x1 - 7.0,
            y + 4.0
        )
    } else {
        String::new()
    };
    let _ = write!(
        out,
        "<line x1=\"{x0:.1}\" y1=\"{y:.1}\" x2=\"{x1:.1}\" y2=\"{y:.1}\" {style}{dash}/>\n<path d=\"M{x0:.1},{:.1} L{x0:.1},{:.1} M{x1:.1},{:.1} L{x1:.1},{:.1}\" {style}/>\n{head}",
        y - 6.0,
        y + 6.0,
        y - 6.0,
        y + 6.0
    );
}

/// `limit 1024` over the end of each run of one limit wide enough for it, and always over
/// the last; under the line when it runs along the panel's top.
pub(super) fn limit_labels(
    out: &mut String,
    r: &TargetReport,
    scale: &Scale,
    s: Series,
    frame: Frame,
) {
    let runs = limit_runs(r, s);
    for (i, &(from, to, v)) in runs.iter().enumerate() {
        let text = limit_text(s, v);
        let (x0, x1) = (scale.x(from), scale.x(to));
        if i + 1 < runs.len() && x1 - x0 < text_width(&text, FONT) + 12.0 {
            continue;
        }
        let y = frame.y(v);
        let y = if y - frame.top >= 16.0 {
            y - 5.0
        } else {
            y + 15.0
        };
        let _ = writeln!(
            out,
            "<text class=\"limit-label\" x=\"{:.1}\" y=\"{y:.1}\" text-anchor=\"end\" fill=\"#444\" {HALO}>{}</text>",
            x1 - 4.0,
            super::escape(&text)
        );
    }
}

/// `limit 1024` for counts, `limit 2.0 GiB` for bytes.
pub fn limit_text(s: Series, v: f64) -> String {
    format!("limit {}", amount(v, is_bytes(s)))
}

/// The runs of one limit value over the ticks: (first tick, last tick, limit).
fn limit_runs(r: &TargetReport, s: Series) -> Vec<(u64, u64, f64)> {
    let mut runs: Vec<(u64, u64, f64)> = Vec::new();
    let mut open = false;
    for t in &r.ticks {
        match (limit(t, s), runs.last_mut()) {
            (Some(v), Some(run)) if open && run.2 == v => run.1 = t.at_ms,
            (Some(v), _) => {
                runs.push((t.at_ms, t.at_ms, v));
                open = true;
            }
            (None, _) => open = false,
        }
    }
    runs
}
