//! The backtest report as text (one block per target, its events in time order) and as
//! JSON (`{"targets":[{"labels", "samples", "flips", "restarts", "exhaustions", "events",
//! "leak_suspected", "flapped", ...}]}`). Each restart and exhaustion says the lead a
//! kubelet saw (from the last unbroken 503) and whether the verdict flapped before it.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::{Event, Flip, LeadTo, Suspicion, TargetReport};
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

fn to_text(to: LeadTo) -> String {
    match to {
        LeadTo::Restart => "the restart".to_string(),
        LeadTo::Exhaustion(s) => format!("{s} at its limit"),
    }
}

fn ms_text(d: Duration) -> String {
    units::duration_ms(d.as_millis() as u64)
}

fn lead_text(f: &Flip) -> String {
    match (f.next, f.lead()) {
        (Some((at, to)), Some(lead)) => {
            let what = to_text(to);
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

/// How the 503 of a flip ended, when a 200 cut it short.
fn until_text(f: &Flip) -> Option<String> {
    let until = f.until_ms.filter(|_| f.interrupted())?;
    let run = ms_text(Duration::from_millis(until.saturating_sub(f.at_ms)));
    let cut = match f.next {
        Some(_) => ": a kubelet sees no lead from this flip",
        None => "",
    };
    Some(format!(
        "200 again at {} after {run} of 503{cut}",
        rfc3339(until)
    ))
}

/// A restart or exhaustion as a kubelet met it: its lead from the last unbroken 503, and
/// (on a line of its own) the runs of 503 a 200 cut short before it.
fn kubelet_text(e: &Event) -> String {
    let lead = match (e.kubelet_lead(), e.unbroken_from_ms) {
        (Some(lead), Some(from)) if e.flapped() => format!(
            "kubelet lead {}, from the last unbroken 503 ({})",
            ms_text(lead),
            rfc3339(from)
        ),
        (Some(lead), Some(from)) => format!(
            "kubelet lead {}: /healthz answered 503 without a break from {}",
            ms_text(lead),
            rfc3339(from)
        ),
        _ if e.runs == 0 => "no kubelet lead: /healthz never answered 503 in this process".into(),
        _ => "no kubelet lead: /healthz answered 200 again before this".into(),
    };
    if !e.flapped() {
        return lead;
    }
    let cut = match e.interrupted_runs() {
        n if n == e.runs => "all cut short".to_string(),
        n => format!("{n} cut short"),
    };
    let first = e
        .first_flip_lead()
        .map(|d| format!("; the first flip was {} before", ms_text(d)))
        .unwrap_or_default();
    format!(
        "{lead}\n{:24}the verdict flapped: {} of 503 in this process, {cut} by a 200{first}",
        "",
        plural(e.runs, "run")
    )
}

fn suspicion_text(s: &Suspicion) -> String {
    let follow = match (s.next, s.lead()) {
        (Some((at, to)), Some(lead)) => {
            format!(
                "lead {} to {} ({})",
                ms_text(lead),
                to_text(to),
                rfc3339(at)
            )
        }
        _ => "no restart or exhaustion followed before the history ends".into(),
    };
    format!("suspected  {}\n{:24}{follow}", s.line, "")
}

/// The header: samples, restarts, flips, and whether the verdict flapped.
fn header(r: &TargetReport) -> String {
    let mut out = format!(
        "target {}: {} samples, {}, {} ({} likely false alarm{})",
        labels_text(&r.labels),
        r.samples,
        plural(r.restarts.len(), "restart"),
        plural(r.flips.len(), "flip"),
        r.false_alarms(),
        if r.false_alarms() == 1 { "" } else { "s" }
    );
    if r.flapped() {
        out.push_str(
            "\n  the verdict flapped: a kubelet restarts only after failureThreshold failed \
             probes in a row, so its lead counts from the last unbroken 503",
        );
    }
    out
}

/// One target's block of text.
pub fn target_text(r: &TargetReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", header(r));
    let mut events: Vec<(u64, u8, String)> = Vec::new();
    for s in &r.suspicions {
        events.push((s.at_ms, 1, suspicion_text(s)));
    }
    for f in &r.flips {
        let mut text = format!("flip       /healthz 503: {}", f.lines.join("; "));
        let _ = write!(text, "\n{:24}{}", "", lead_text(f));
        if let Some(until) = until_text(f) {
            let _ = write!(text, "\n{:24}{until}", "");
        }
        events.push((f.at_ms, 2, text));
    }
    let kubelet = |at: u64, restart: bool| {
        r.events
            .iter()
            .find(|e| e.at_ms == at && (e.what == LeadTo::Restart) == restart)
            .map(|e| format!("\n{:24}{}", "", kubelet_text(e)))
            .unwrap_or_default()
    };
    for e in &r.exhaustions {
        let text = format!(
            "exhausted  {} {} of {}{}",
            e.series,
            value_text(e.series, e.value),
            value_text(e.series, e.limit),
            kubelet(e.at_ms, false)
        );
        events.push((e.at_ms, 3, text));
    }
    for &at in &r.restarts {
        let text = format!(
            "restart    a new process: windows and rule states reset{}",
            kubelet(at, true)
        );
        events.push((at, 0, text));
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

/// `"restart"` or `"exhaustion:SERIES"`, and its time.
fn next_json(next: Option<(u64, LeadTo)>) -> (Value, Value) {
    match next {
        Some((at, LeadTo::Restart)) => (unix_s(at), json!("restart")),
        Some((at, LeadTo::Exhaustion(s))) => (unix_s(at), json!(format!("exhaustion:{s}"))),
        None => (Value::Null, Value::Null),
    }
}

fn ms_json(d: Option<Duration>) -> Value {
    d.map_or(Value::Null, |d| json!(d.as_millis() as u64))
}

fn flip_json(f: &Flip) -> Value {
    let (next_at, next) = next_json(f.next);
    json!({
        "at": unix_s(f.at_ms),
        "rules": f.rules.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "lines": f.lines,
        "next": next,
        "next_at": next_at,
        "lead_seconds": f.lead().map(|d| d.as_secs_f64()),
        "likely_false_alarm": f.false_alarm,
        "until": f.until_ms.map(unix_s),
        "interrupted": f.interrupted(),
    })
}

fn event_json(e: &Event) -> Value {
    let (at, event) = next_json(Some((e.at_ms, e.what)));
    json!({
        "at": at,
        "event": event,
        "runs": e.runs,
        "interrupted_runs": e.interrupted_runs(),
        "flapped": e.flapped(),
        "unbroken_503_from": e.unbroken_from_ms.map(unix_s),
        "kubelet_lead_ms": ms_json(e.kubelet_lead()),
        "first_flip_at": e.first_flip_ms.map(unix_s),
        "first_flip_lead_ms": ms_json(e.first_flip_lead()),
    })
}

fn suspicion_json(s: &Suspicion) -> Value {
    let (next_at, next) = next_json(s.next);
    json!({
        "at": unix_s(s.at_ms),
        "series": s.series.as_str(),
        "slope_per_s": s.slope_per_s,
        "seconds_to_exhaustion": s.seconds_to_exhaustion,
        "value": s.value,
        "limit": s.limit,
        "line": s.line,
        "next": next,
        "next_at": next_at,
        "lead_ms": ms_json(s.lead()),
    })
}

/// One target as JSON.
pub fn target_json(r: &TargetReport) -> Value {
    json!({
        "labels": r.labels,
        "samples": r.samples,
        "flips": r.flips.iter().map(flip_json).collect::<Vec<_>>(),
        "restarts": r.restarts.iter().map(|&t| unix_s(t)).collect::<Vec<_>>(),
        "exhaustions": r.exhaustions.iter().map(|e| json!({
            "at": unix_s(e.at_ms),
            "series": e.series.as_str(),
            "value": e.value,
            "limit": e.limit,
        })).collect::<Vec<_>>(),
        "events": r.events.iter().map(event_json).collect::<Vec<_>>(),
        "leak_suspected": r.suspicions.iter().map(suspicion_json).collect::<Vec<_>>(),
        "likely_false_alarms": r.false_alarms(),
        "flapped": r.flapped(),
    })
}

/// The whole report as JSON.
pub fn report_json(reports: &[TargetReport]) -> Value {
    json!({ "targets": reports.iter().map(target_json).collect::<Vec<_>>() })
}
