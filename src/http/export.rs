//! `/metrics` (Prometheus text from [`crate::metrics::render`], rendered once per snapshot:
//! [`super::rendered`]) and `/status` (the whole snapshot as JSON, plus how old it is). Both
//! sit behind the bearer token when one is set.

use axum::extract::State;
use axum::http::header;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::rendered::Rendered;
use super::AppState;
use crate::clock::mono_ms;
use crate::snapshot::Snapshot;

/// The Prometheus text exposition format, version 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(super) fn metrics(state: &AppState, rendered: &Rendered) -> Response {
    let body = rendered.body(&state.snapshot());
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], body).into_response()
}

pub(super) async fn status(State(state): State<AppState>) -> Response {
    match status_json(&state.snapshot(), mono_ms()) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => {
            tracing::error!("cannot serialize the snapshot for /status: {e}");
            let body = format!("cannot serialize the snapshot: {e}\n");
            (StatusCode::INTERNAL_SERVER_ERROR, body).into_response()
        }
    }
}

/// The snapshot as pretty JSON with two more top-level keys: `stale` and
/// `snapshot_age_ms` (monotonic milliseconds since it was published).
pub(super) fn status_json(snap: &Snapshot, now_mono_ms: u64) -> serde_json::Result<String> {
    let mut value = serde_json::to_value(snap)?;
    if let Value::Object(map) = &mut value {
        map.insert("stale".into(), Value::Bool(snap.is_stale(now_mono_ms)));
        let age = now_mono_ms.saturating_sub(snap.published_mono_ms);
        map.insert("snapshot_age_ms".into(), Value::from(age));
    }
    let mut body = serde_json::to_string_pretty(&value)?;
    body.push('\n');
    Ok(body)
}
