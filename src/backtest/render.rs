//! The backtest report as text (one block per target, its events in time order) and as
//! JSON (`{"targets":[{"labels", "samples", "flips", "restarts", "exhaustions", ...}]}`).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::{Flip, LeadTo, TargetReport};
use crate::judge::series::is_bytes;
use crate::judge::Series;
use crate::units;

/// RFC 3339 (UTC, seconds) of unix milliseconds.
pub fn rfc3339(ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(
        t.min(SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_799)),
    )
    .to_string()
}

/// `{job="api", instance="x:9100"}`.
pub fn labels_text(labels: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

fn value_text(series: Series, v: f64) -> String {
    if is_bytes(series) {
        units::bytes(v.max(0.0) as u64)
    } else {
        format!("{v:.0}")
    }
}

fn plural(n: usize, one: &str) -> String {
    match n {
        1 => format!("1 {one}"),
        n => format!("{n} {one}s"),
    }
}

fn lead_text(f: &Flip) -> String {
    match (f.next, f.lead()) {
        (Some((at, to)), Some(lead)) => {
            let what = match to {
                LeadTo::Restart => "the restart".to_string(),
                LeadTo::Exhaustion(s) => format!("{s} at its limit"),
            };
            let verdict = match f.false_alarm {
                Some(true) => ", later than exhaust_within: likely a false alarm",
                _ => "",
            };
            format!(
                "lead {} to {what} ({}){verdict}",
                units::duration_ms(lead.as_millis() as u64),
                rfc3339(at)
            )
        }
        _ => match f.false_alarm {
            Some(true) => "no restart or exhaustion followed: likely a false alarm".into(),
            _ => "no restart or exhaustion followed before the history ends".into(),
        },
    }
}

/// One target's block of text.
pub fn target_text(r: &TargetReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "target {}: {} samples, {}, {} ({} likely false alarm{})",
        labels_text(&r.labels),
        r.samples,
        plural(r.restarts.len(), "restart"),
        plural(r.flips.len(), "flip"),
        r.false_alarms(),
        if r.false_alarms() == 1 { "" } else { "s" }
    );
    let mut events: Vec<(u64, u8, String)> = Vec::new();
    for f in &r.flips {
        let mut text = format!("flip       /healthz 503: {}", f.lines.join("; "));
        let _ = write!(text, "\n{:24}{}", "", lead_text(f));
        events.push((f.at_ms, 1, text));
    }
    for e in &r.exhaustions {
        let text = format!(
            "exhausted  {} {} of {}",
            e.series,
            value_text(e.series, e.value),
            value_text(e.series, e.limit)
        );
        events.push((e.at_ms, 2, text));
    }
    for &at in &r.restarts {
        events.push((
            at,
            0,
            "restart    a new process: windows and rule states reset".into(),
        ));
    }
    events.sort_by_key(|e| (e.0, e.1));
    for (at, _, text) in events {
        let _ = writeln!(out, "  {}  {text}", rfc3339(at));
    }
    if r.flips.is_empty() {
        let _ = writeln!(out, "  /healthz would have answered 200 throughout");
    }
    out
}

/// Unix seconds: an integer when whole.
fn unix_s(ms: u64) -> Value {
    if ms % 1000 == 0 {
        json!(ms / 1000)
    } else {
        json!(ms as f64 / 1000.0)
    }
}

/// One target as JSON.
pub fn target_json(r: &TargetReport) -> Value {
    let flips: Vec<Value> = r
        .flips
        .iter()
        .map(|f| {
            let (next_at, next) = match f.next {
                Some((at, LeadTo::Restart)) => (unix_s(at), json!("restart")),
                Some((at, LeadTo::Exhaustion(s))) => (unix_s(at), json!(format!("exhaustion:{s}"))),
                None => (Value::Null, Value::Null),
            };
            json!({
                "at": unix_s(f.at_ms),
                "rules": f.rules.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                "lines": f.lines,
                "next": next,
                "next_at": next_at,
                "lead_seconds": f.lead().map(|d| d.as_secs_f64()),
                "likely_false_alarm": f.false_alarm,
            })
        })
        .collect();
    json!({
        "labels": r.labels,
        "samples": r.samples,
        "flips": flips,
        "restarts": r.restarts.iter().map(|&t| unix_s(t)).collect::<Vec<_>>(),
        "exhaustions": r.exhaustions.iter().map(|e| json!({
            "at": unix_s(e.at_ms),
            "series": e.series.as_str(),
            "value": e.value,
            "limit": e.limit,
        })).collect::<Vec<_>>(),
        "likely_false_alarms": r.false_alarms(),
    })
}

/// The whole report as JSON.
pub fn report_json(reports: &[TargetReport]) -> Value {
    json!({ "targets": reports.iter().map(target_json).collect::<Vec<_>>() })
}
