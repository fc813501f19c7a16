//! `/healthz` and `/healthz/{name}`: the target's verdict, for the kubelet or systemd.
//!
//! 200 `ok` (plus one `note: ...` line per fail-open reason) or 503 with one line per
//! failing rule, then the notes. Only positive evidence fails it: while leakwatch itself is
//! stalled (the snapshot is stale) or has not finished its first poll, the answer is 200
//! with a note saying so; leakwatch's own trouble never restarts a healthy target.
//! `Accept: application/json` gets the same answer as JSON, with the same status code.

use axum::extract::{Path, State};
use axum::http::header::{self, HeaderMap};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::AppState;
use crate::clock::mono_ms;
use crate::judge::Restraint;
use crate::snapshot::{Snapshot, TargetStatus};
use crate::units::duration_ms;

/// The `/healthz` answer as data; rendered as text or JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct Health {
    /// The status code: 503 iff `false`.
    pub healthy: bool,
    /// The snapshot is older than it should be; the answer fails open.
    pub stale: bool,
    /// Why leakwatch as a whole fails open (stalled, or no poll finished yet).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub targets: Vec<TargetHealth>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct TargetHealth {
    pub name: String,
    pub healthy: bool,
    pub failing: Vec<String>,
    pub notes: Vec<String>,
    /// Why a failing verdict answers 200 for now: `deferred` (waiting for a fleet restart
    /// slot), `signal_grace`, or `observe` (the target is in observe mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restraint: Option<Restraint>,
}

/// How far the snapshot can be trusted at `now`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Trust {
    Live,
    /// No poll has finished yet: the targets have no verdict.
    Starting,
    /// The last poll finished this long ago (ms).
    Stale(u64),
}

pub(super) async fn healthz(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let snap = state.snapshot();
    let targets: Vec<&TargetStatus> = snap.targets.iter().collect();
    respond(assess(&snap, &targets, mono_ms()), &headers)
}

pub(super) async fn healthz_target(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let snap = state.snapshot();
    match snap.target(&name) {
        Some(t) => respond(assess(&snap, &[t], mono_ms()), &headers),
        None => unknown_target(&snap, &name),
    }
}

fn unknown_target(snap: &Snapshot, name: &str) -> Response {
    let known: Vec<&str> = snap.targets.iter().map(|t| t.name.as_str()).collect();
    let body = format!(
        "unknown target {name:?}; configured targets: {}\n",
        if known.is_empty() {
            "(none)".to_string()
        } else {
            known.join(", ")
        }
    );
    (StatusCode::NOT_FOUND, body).into_response()
}

/// The verdict over `targets` (all of them, or the one asked for) at `now_mono_ms`.
pub(super) fn assess(snap: &Snapshot, targets: &[&TargetStatus], now_mono_ms: u64) -> Health {
    let trust = trust(snap, now_mono_ms);
    let targets: Vec<TargetHealth> = targets.iter().map(|t| target(t, trust)).collect();
    let notes = match trust {
        Trust::Live => Vec::new(),
        Trust::Starting => vec!["starting: no poll has finished yet; failing open".to_string()],
        Trust::Stale(age) => vec![format!(
            "leakwatch is stalled: its last poll finished {} ago (interval {}); failing open",
            duration_ms(age / 1000 * 1000),
            duration_ms(snap.interval_ms)
        )],
    };
    Health {
        healthy: targets.iter().all(|t| t.healthy),
        stale: matches!(trust, Trust::Stale(_)),
        notes,
        targets,
    }
}

fn trust(snap: &Snapshot, now_mono_ms: u64) -> Trust {
    if snap.ticks_total == 0 {
        Trust::Starting
    } else if snap.is_stale(now_mono_ms) {
        Trust::Stale(now_mono_ms.saturating_sub(snap.published_mono_ms))
    } else {
        Trust::Live
    }
}

/// One target's answer. Not live: healthy, and a stale verdict's failing lines become notes.
fn target(t: &TargetStatus, trust: Trust) -> TargetHealth {
    let v = t.verdict();
    let (healthy, failing, notes, restraint) = match trust {
        Trust::Live => (v.healthy, v.failing.clone(), v.notes.clone(), v.restraint),
        Trust::Starting => (true, Vec::new(), Vec::new(), None),
        Trust::Stale(_) => {
            let mut notes = v.notes.clone();
            notes.extend(v.failing.iter().map(|f| format!("before the stall: {f}")));
            (true, Vec::new(), notes, None)
        }
    };
    TargetHealth {
        name: t.name.clone(),
        healthy,
        failing,
        notes,
        restraint,
    }
}

fn respond(health: Health, headers: &HeaderMap) -> Response {
    let code = if health.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    if wants_json(headers) {
        (code, Json(health)).into_response()
    } else {
        (code, render_text(&health)).into_response()
    }
}

/// `ok` when healthy, then the failing lines, then `note: ...` lines. Lines of a target are
/// prefixed with `NAME: ` when the answer covers several targets.
pub(super) fn render_text(health: &Health) -> String {
    let mut out = String::new();
    if health.healthy {
        out.push_str("ok\n");
    }
    let prefix = |t: &TargetHealth| {
        if health.targets.len() > 1 {
            format!("{}: ", t.name)
        } else {
            String::new()
        }
    };
    for t in &health.targets {
        for f in &t.failing {
            out.push_str(&format!("{}{f}\n", prefix(t)));
        }
    }
    for n in &health.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    for t in &health.targets {
        for n in &t.notes {
            out.push_str(&format!("note: {}{n}\n", prefix(t)));
        }
    }
    out
}

/// `Accept` names `application/json` (any parameters, any position in the list).
fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| {
            let media = m.split(';').next().unwrap_or("").trim();
            media.eq_ignore_ascii_case("application/json")
        })
}
