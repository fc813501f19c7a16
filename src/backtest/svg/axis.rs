//! The time axis: ticks at the smallest round step (1 s … 30 min, 1 h, 2 h, 3 h, 6 h,
//! 12 h, 1 d, 2 d, 7 d, then whole days) whose labels do not crowd the plot's width, on
//! multiples of the step in UTC (so `00:15`, `00:30`, or midnights). A tick reads `HH:MM`
//! in UTC (`HH:MM:SS` for steps under a minute, the date for steps of days), with the date
//! under it at the first tick and wherever the date changes. Each panel gets a faint grid
//! line and a tick mark per tick; the labels run under the last panel.
//!
//! Each panel's value axis: from 0, at most 5 steps of 1, 2, 2.5 or 5 × 10^k for counts,
//! of a power of two for bytes (256 MiB, 512 MiB), each labelled and with a faint line.

use std::fmt::Write;

use super::{amount, text_width, Frame, Scale, LEFT, WIDTH, X1};
use crate::judge::series::is_bytes;
use crate::judge::Series;
use crate::units;

/// The candidate steps, seconds.
const STEPS_S: [u64; 20] = [
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400,
    172_800, 604_800,
];
const DAY_MS: u64 = 86_400_000;
/// The labels' font size, pixels, and the room a label wants around it.
const FONT: f64 = 11.0;
const GAP: f64 = 24.0;

/// One tick of the time axis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeTick {
    pub at_ms: u64,
    /// `HH:MM` (UTC), `HH:MM:SS` under a minute's step, `YYYY-MM-DD` for steps of days.
    pub label: String,
    /// `YYYY-MM-DD` at the first tick and where the date changes (steps under a day).
    pub date: Option<String>,
}

/// The smallest step whose ticks over `span_ms` stay a label's width apart on `width_px`.
pub fn step_ms(span_ms: u64, width_px: f64) -> u64 {
    let fits = |step: u64| {
        let label = text_width(&"0".repeat(label_chars(step)), FONT) + GAP;
        let intervals = (width_px / label).floor().max(1.0) as u64;
        (span_ms <= step.saturating_mul(intervals), intervals)
    };
    for s in STEPS_S {
        if fits(s * 1000).0 {
            return s * 1000;
        }
    }
    let (_, intervals) = fits(DAY_MS);
    span_ms.div_ceil(intervals * DAY_MS).max(1) * DAY_MS
}

/// How many characters a label at `step` has.
fn label_chars(step: u64) -> usize {
    if step % DAY_MS == 0 {
        10
    } else if step % 60_000 == 0 {
        5
    } else {
        8
    }
}

/// The ticks from `t0` to `t1` (unix ms) on a plot `width_px` wide; at least one.
pub fn ticks(t0: u64, t1: u64, width_px: f64) -> Vec<TimeTick> {
    let step = step_ms(t1.saturating_sub(t0), width_px);
    let mut out = Vec::new();
    let mut last_date = None;
    let mut at = t0.div_ceil(step).saturating_mul(step);
    while at <= t1 {
        out.push(tick(at, step, &mut last_date));
        match at.checked_add(step) {
            Some(next) => at = next,
            None => break,
        }
    }
    if out.is_empty() {
        out.push(tick(t0, 1000, &mut None));
    }
    out
}

fn tick(at: u64, step: u64, last_date: &mut Option<String>) -> TimeTick {
    // `2026-11-22 05:13:02 UTC`
    let utc = units::utc(at);
    let date = utc.get(..10).unwrap_or_default().to_string();
    if step % DAY_MS == 0 {
        return TimeTick {
            at_ms: at,
            label: date,
            date: None,
        };
    }
    let end = if step % 60_000 == 0 { 16 } else { 19 };
    let label = utc.get(11..end).unwrap_or_default().to_string();
    let changed = last_date.as_deref() != Some(date.as_str());
    *last_date = Some(date.clone());
    TimeTick {
        at_ms: at,
        label,
        date: changed.then_some(date),
    }
}

/// A faint vertical line through the panel and a tick mark under it, per tick.
pub(super) fn grid(out: &mut String, scale: &Scale, ticks: &[TimeTick], top: f64, bottom: f64) {
    for t in ticks {
        let x = scale.x(t.at_ms);
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{bottom}\" stroke=\"#e4e4e4\"/>\n<line x1=\"{x:.1}\" y1=\"{bottom}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#999\"/>",
            bottom + 4.0
        );
    }
}

/// The ticks' labels under the panel whose bottom edge is at `bottom`.
pub(super) fn labels(out: &mut String, scale: &Scale, ticks: &[TimeTick], bottom: f64) {
    for t in ticks {
        let x = scale.x(t.at_ms);
        text(out, "tick", x, bottom + 16.0, &t.label);
        if let Some(date) = &t.date {
            text(out, "date", x, bottom + 29.0, date);
        }
    }
}

/// A label centred on `x`, moved in so it is not cut off at the drawing's edges.
fn text(out: &mut String, class: &str, x: f64, y: f64, label: &str) {
    let half = text_width(label, FONT) / 2.0 + 2.0;
    let x = x.min(f64::from(WIDTH) - half).max(half);
    let _ = writeln!(
        out,
        "<text class=\"{class}\" x=\"{x:.1}\" y=\"{y}\" text-anchor=\"middle\" font-size=\"{FONT}\" fill=\"#555\">{}</text>",
        super::escape(label)
    );
}

/// A round step for a value axis from 0 to `max`: at most 5 steps.
pub fn value_step(max: f64, bytes: bool) -> f64 {
    let rough = (max / 5.0).max(1.0);
    if bytes {
        let mut step = 1.0;
        while step < rough {
            step *= 2.0;
        }
        return step;
    }
    let magnitude = 10f64.powf(rough.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= rough)
        .unwrap_or(10.0 * magnitude)
}

/// The value axis of the panel of `s` in `frame`: a label and a faint line per step.
pub(super) fn values(out: &mut String, s: Series, frame: Frame) {
    let step = value_step(frame.max, is_bytes(s));
    for v in (0..=5).map(|k| f64::from(k) * step) {
        if v > frame.max {
            break;
        }
        let y = frame.y(v);
        if v > 0.0 {
            let _ = writeln!(
                out,
                "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{X1}\" y2=\"{y:.1}\" stroke=\"#ececec\"/>"
            );
        }
        let _ = writeln!(
            out,
            "<text class=\"value-tick\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"{FONT}\" fill=\"#555\">{}</text>",
            LEFT - 5.0,
            y + 4.0,
            super::escape(&amount(s, v))
        );
    }
}
