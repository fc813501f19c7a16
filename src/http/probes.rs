//! `/livez` (leakwatch itself: its poll loop finished a tick recently) and `/readyz` (every
//! target found and sampled once). Unlike `/healthz`, these are about leakwatch, so a stall
//! fails `/livez`: that restarts leakwatch, never the target.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::clock::mono_ms;
use crate::snapshot::Snapshot;
use crate::units::duration_ms;

pub(super) async fn livez(State(state): State<AppState>) -> Response {
    let (code, body) = liveness(&state.snapshot(), mono_ms());
    (code, body).into_response()
}

pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    let (code, body) = readiness(&state.snapshot());
    (code, body).into_response()
}

/// 200 `ok` while the snapshot is fresh; 503 `stalled: ...` once it is stale. Before the
/// first tick, 200 `starting` for as long as the snapshot published at start is not stale
/// (`STALE_AFTER_INTERVALS` intervals): that initial snapshot's `published_mono_ms` is the
/// start time on the monotonic clock. Without one (0), `starting` is answered leniently.
pub(super) fn liveness(snap: &Snapshot, now_mono_ms: u64) -> (StatusCode, String) {
    // Whole seconds: "42s", not "42.3s".
    let age = now_mono_ms.saturating_sub(snap.published_mono_ms) / 1000 * 1000;
    let interval = duration_ms(snap.interval_ms);
    let stale = snap.is_stale(now_mono_ms);
    if snap.ticks_total == 0 {
        if !stale || snap.published_mono_ms == 0 {
            return (StatusCode::OK, "starting\n".to_string());
        }
        let body = format!(
            "stalled: no poll has finished since the start {} ago (interval {interval})\n",
            duration_ms(age)
        );
        return (StatusCode::SERVICE_UNAVAILABLE, body);
    }
    if !stale {
        return (StatusCode::OK, "ok\n".to_string());
    }
    let body = format!(
        "stalled: last poll finished {} ago (interval {interval})\n",
        duration_ms(age)
    );
    (StatusCode::SERVICE_UNAVAILABLE, body)
}

/// 200 `ready` once every target has been found and sampled; else 503 naming the others.
pub(super) fn readiness(snap: &Snapshot) -> (StatusCode, String) {
    if snap.ready() {
        return (StatusCode::OK, "ready\n".to_string());
    }
    let mut body = String::from("not ready\n");
    if snap.ticks_total == 0 {
        body.push_str("no poll has finished yet\n");
    }
    for t in &snap.targets {
        if !t.found {
            let why = t.missing_reason.as_deref().unwrap_or("no process matches");
            body.push_str(&format!("{}: not found: {why}\n", t.name));
        } else if t.sample.is_none() {
            body.push_str(&format!("{}: not sampled yet\n", t.name));
        }
    }
    (StatusCode::SERVICE_UNAVAILABLE, body)
}
