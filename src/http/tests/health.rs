//! `/healthz` and `/healthz/{name}`: bodies line by line, prefixes, JSON, fail open.

use axum::http::StatusCode;
use serde_json::Value;

use super::*;
use crate::http::health::{assess, render_text};

const FDS: &str = "fds: 1001/1024 open (97.8% >= 90%)";
const CLOSE_WAIT: &str = "tcp_close_wait: 250 sockets (>= 200)";

#[tokio::test]
async fn one_healthy_target_is_200_ok() {
    let a = get(state(snapshot(vec![healthy("app")]), None), "/healthz").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, "ok\n");
    assert!(a.header("content-type").starts_with("text/plain"));
}

#[tokio::test]
async fn fail_open_notes_follow_ok() {
    let snap = snapshot(vec![missing("app", "no process matches")]);
    let a = get(state(snap, None), "/healthz").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, "ok\nnote: target not found: no process matches\n");
}

#[tokio::test]
async fn failing_is_503_with_one_line_per_rule() {
    let snap = snapshot(vec![failing("app", &[FDS, CLOSE_WAIT])]);
    let a = get(state(snap, None), "/healthz").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.body, format!("{FDS}\n{CLOSE_WAIT}\n"));
}

#[tokio::test]
async fn several_targets_prefix_each_line_with_the_name() {
    let snap = snapshot(vec![
        failing("app", &[FDS]),
        healthy("db"),
        missing("cache", "pidfile gone"),
    ]);
    let a = get(state(snap, None), "/healthz").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        a.body,
        format!("app: {FDS}\nnote: cache: target not found: pidfile gone\n")
    );
}

#[tokio::test]
async fn several_healthy_targets_prefix_notes() {
    let snap = snapshot(vec![healthy("db"), missing("app", "no process matches")]);
    let a = get(state(snap, None), "/healthz").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.body,
        "ok\nnote: app: target not found: no process matches\n"
    );
}

#[tokio::test]
async fn json_when_asked_with_the_same_status() {
    let snap = snapshot(vec![failing("app", &[FDS]), healthy("db")]);
    let mut r = req("GET", "/healthz");
    let accept = "text/html, application/json;q=0.9".parse().expect("value");
    r.headers_mut().insert("accept", accept);
    let a = send(state(snap, None), r).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(a.header("content-type").starts_with("application/json"));
    let v: Value = serde_json::from_str(&a.body).expect("json");
    assert_eq!(v["healthy"], false);
    assert_eq!(v["stale"], false);
    assert_eq!(v["targets"][0]["name"], "app");
    assert_eq!(v["targets"][0]["healthy"], false);
    assert_eq!(v["targets"][0]["failing"][0], FDS);
    assert_eq!(v["targets"][1]["name"], "db");
    assert_eq!(v["targets"][1]["healthy"], true);
    assert_eq!(v["targets"][1]["notes"], Value::Array(Vec::new()));
}

/// Observe mode: the failing verdict answers 200, each line as `observe: would fail: ...`,
/// on `/healthz` and `/healthz/NAME`; the JSON names the restraint.
#[tokio::test]
async fn an_observed_failure_is_200_saying_what_would_fail() {
    let mut app = failing("app", &[FDS, CLOSE_WAIT]);
    app.mode = crate::judge::Enforcement::Observe;
    app.judged.verdict = std::mem::take(&mut app.judged.verdict).observed();
    let snap = snapshot(vec![app, healthy("db")]);
    let want = format!("observe: would fail: {FDS}\nnote: observe: would fail: {CLOSE_WAIT}\n");
    let a = get(state(snap.clone(), None), "/healthz/app").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, format!("ok\nnote: {want}"));
    let a = get(state(snap.clone(), None), "/healthz").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.body,
        format!("ok\nnote: app: observe: would fail: {FDS}\nnote: app: observe: would fail: {CLOSE_WAIT}\n")
    );
    let mut r = req("GET", "/healthz/app");
    r.headers_mut()
        .insert("accept", "application/json".parse().expect("value"));
    let a = send(state(snap, None), r).await;
    assert_eq!(a.status, StatusCode::OK);
    let v: Value = serde_json::from_str(&a.body).expect("json");
    assert_eq!(v["targets"][0]["healthy"], true);
    assert_eq!(v["targets"][0]["restraint"], "observe");
    assert_eq!(v["targets"][0]["failing"], Value::Array(Vec::new()));
    assert_eq!(
        v["targets"][0]["notes"][0],
        format!("observe: would fail: {FDS}")
    );
}

#[tokio::test]
async fn one_target_by_name_without_prefix() {
    let snap = snapshot(vec![failing("app", &[FDS]), healthy("db")]);
    let a = get(state(snap.clone(), None), "/healthz/db").await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "ok\n"));
    let a = get(state(snap, None), "/healthz/app").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.body, format!("{FDS}\n"));
}

#[tokio::test]
async fn unknown_target_is_404_naming_the_known_ones() {
    let snap = snapshot(vec![healthy("app"), healthy("db")]);
    let a = get(state(snap, None), "/healthz/nope").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(
        a.body,
        "unknown target \"nope\"; configured targets: app, db\n"
    );
}

#[tokio::test]
async fn stale_snapshot_fails_open_with_a_note() {
    let snap = aged(snapshot(vec![failing("app", &[FDS])]), 42_000);
    let a = get(state(snap, None), "/healthz").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        a.body
            .starts_with("ok\nnote: leakwatch is stalled: its last poll finished "),
        "{}",
        a.body
    );
    assert!(a.body.contains(&format!("note: before the stall: {FDS}\n")));
}

#[test]
fn stale_note_says_how_long_ago_in_whole_seconds() {
    let mut snap = snapshot(vec![failing("app", &[FDS])]);
    snap.published_mono_ms = 1_000_000;
    let h = assess(&snap, &[&snap.targets[0]], 1_042_300);
    assert!(h.healthy && h.stale);
    assert_eq!(
        render_text(&h),
        format!(
            "ok\nnote: leakwatch is stalled: its last poll finished 42s ago (interval 5s); \
             failing open\nnote: before the stall: {FDS}\n"
        )
    );
}

#[tokio::test]
async fn stale_json_is_healthy_and_says_stale() {
    let snap = aged(snapshot(vec![failing("app", &[FDS])]), 42_000);
    let mut r = req("GET", "/healthz/app");
    r.headers_mut()
        .insert("accept", "application/json".parse().expect("value"));
    let a = send(state(snap, None), r).await;
    assert_eq!(a.status, StatusCode::OK);
    let v: Value = serde_json::from_str(&a.body).expect("json");
    assert_eq!(
        (v["healthy"].clone(), v["stale"].clone()),
        (true.into(), true.into())
    );
    let note = v["notes"][0].as_str().unwrap_or("");
    assert!(note.contains("last poll finished"), "{note}");
}

#[tokio::test]
async fn before_the_first_tick_it_fails_open() {
    // The placeholder verdict published at start says unhealthy: it must not count.
    let snap = starting(snapshot(vec![failing("app", &[FDS])]));
    let a = get(state(snap, None), "/healthz").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.body,
        "ok\nnote: starting: no poll has finished yet; failing open\n"
    );
}

#[tokio::test]
async fn a_newly_published_snapshot_is_answered() {
    let (tx, snapshot_rx) = watch::channel(Arc::new(snapshot(vec![healthy("app")])));
    let (_t, token) = watch::channel(None);
    let st = AppState {
        snapshot: snapshot_rx,
        token,
    };
    assert_eq!(get(st.clone(), "/healthz").await.status, StatusCode::OK);
    tx.send_replace(Arc::new(snapshot(vec![failing("app", &[FDS])])));
    let a = get(st, "/healthz").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
}
