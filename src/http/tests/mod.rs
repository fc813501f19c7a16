//! Handler tests through [`super::app`] with `oneshot` (no socket), on hand-built snapshots:
//! a small builder for targets that are healthy, failing with given lines, or missing with a
//! note, and for fresh, stale and not-yet-ticked snapshots.

mod health;
mod rendered;
mod routes;
mod server;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::watch;
use tower::ServiceExt;

use super::{app, AppState};
use crate::clock::mono_ms;
use crate::judge::{Budget, Judged, Verdict};
use crate::sample::{Sample, TargetId};
use crate::snapshot::{ConfigInfo, Snapshot, TargetStatus};

pub(super) const INTERVAL_MS: u64 = 5_000;

/// A fresh snapshot (published now, 10 ticks) of `targets`.
pub(super) fn snapshot(targets: Vec<TargetStatus>) -> Snapshot {
    Snapshot {
        version: "test".into(),
        seq: 10,
        started_unix_ms: 1_700_000_000_000,
        published_unix_ms: 1_700_000_050_000,
        published_mono_ms: mono_ms(),
        interval_ms: INTERVAL_MS,
        ticks_total: 10,
        ticks_skipped_total: 0,
        tick_duration_us: 1_200,
        config: ConfigInfo::default(),
        peer_labels: false,
        targets,
        fleet: None,
    }
}

/// The same snapshot, published `age_ms` ago (stale when that exceeds 3 intervals).
pub(super) fn aged(mut snap: Snapshot, age_ms: u64) -> Snapshot {
    snap.published_mono_ms = mono_ms().saturating_sub(age_ms);
    snap
}

/// The snapshot published at start, before the first tick finished.
pub(super) fn starting(mut snap: Snapshot) -> Snapshot {
    snap.ticks_total = 0;
    snap.seq = 0;
    snap
}

fn status(name: &str, verdict: Verdict) -> TargetStatus {
    TargetStatus {
        name: name.into(),
        selector: format!("name {name:?}"),
        found: true,
        target: Some(TargetId {
            pid: 4242,
            starttime_ticks: 99,
        }),
        missing_reason: None,
        watching_since_unix_ms: Some(1_700_000_000_000),
        restarts_total: 0,
        sample: Some(Sample::default()),
        judged: Judged {
            series: Vec::new(),
            rules: Vec::new(),
            budget: Budget::default(),
            verdict,
        },
        collector_errors_total: Vec::new(),
        poll_duration_seconds: Some(0.001),
        actions: crate::actions::ActionsStatus::default(),
        mode: crate::judge::Enforcement::Enforce,
        would_fail_flips_total: 0,
    }
}

pub(super) fn healthy(name: &str) -> TargetStatus {
    status(name, Verdict::healthy(Vec::new()))
}

pub(super) fn failing(name: &str, lines: &[&str]) -> TargetStatus {
    let verdict = Verdict {
        healthy: false,
        failing: lines.iter().map(|l| l.to_string()).collect(),
        notes: Vec::new(),
        ..Verdict::default()
    };
    status(name, verdict)
}

/// Not found: healthy (fail open) with the reason as a note.
pub(super) fn missing(name: &str, reason: &str) -> TargetStatus {
    let mut t = status(
        name,
        Verdict::healthy(vec![format!("target not found: {reason}")]),
    );
    t.found = false;
    t.target = None;
    t.sample = None;
    t.missing_reason = Some(reason.into());
    t
}

/// State over `snap` with an optional token; the senders are returned so a test can
/// publish or swap, and dropping them is harmless (receivers keep the last value).
pub(super) fn state(snap: Snapshot, token: Option<&str>) -> AppState {
    let (_snap_tx, snapshot) = watch::channel(Arc::new(snap));
    let (_token_tx, token) = watch::channel(token.map(Arc::from));
    AppState { snapshot, token }
}

pub(super) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

pub(super) async fn send(state: AppState, req: Request<Body>) -> Answer {
    let res = app(state)
        .oneshot(req)
        .await
        .expect("the router is infallible");
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8(bytes.to_vec()).expect("utf-8 body"),
    }
}

pub(super) fn req(method: &str, path: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .body(Body::empty())
        .expect("request")
}

pub(super) async fn get(state: AppState, path: &str) -> Answer {
    send(state, req("GET", path)).await
}
