//! `/livez`, `/readyz`, `/metrics`, `/status`, the bearer token, and the rules every route
//! follows: 405 with `Allow`, 404, 413 for bodies, HEAD, `Cache-Control: no-store`.

use axum::http::StatusCode;
use serde_json::Value;

use super::*;
use crate::http::probes::liveness;

fn with_header(mut r: Request<Body>, name: &'static str, value: &str) -> Request<Body> {
    r.headers_mut()
        .insert(name, value.parse().expect("header value"));
    r
}

#[tokio::test]
async fn livez_ok_while_fresh_and_503_when_stalled() {
    let a = get(state(snapshot(vec![healthy("app")]), None), "/livez").await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "ok\n"));
    let snap = aged(snapshot(vec![healthy("app")]), 42_000);
    let a = get(state(snap, None), "/livez").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        a.body.starts_with("stalled: last poll finished "),
        "{}",
        a.body
    );
}

#[test]
fn livez_stalled_body_names_the_age_and_interval() {
    let mut snap = snapshot(Vec::new());
    snap.published_mono_ms = 1_000_000;
    let (code, body) = liveness(&snap, 1_042_999);
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "stalled: last poll finished 42s ago (interval 5s)\n");
}

#[test]
fn livez_starting_until_three_intervals_have_passed() {
    let mut snap = starting(snapshot(Vec::new()));
    snap.published_mono_ms = 1_000_000;
    assert_eq!(
        liveness(&snap, 1_014_000),
        (StatusCode::OK, "starting\n".to_string())
    );
    let (code, body) = liveness(&snap, 1_016_000);
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body,
        "stalled: no poll has finished since the start 16s ago (interval 5s)\n"
    );
    snap.published_mono_ms = 0; // no start time known: lenient
    assert_eq!(liveness(&snap, 1_016_000).0, StatusCode::OK);
}

#[tokio::test]
async fn readyz_names_what_is_not_ready() {
    let a = get(state(snapshot(vec![healthy("app")]), None), "/readyz").await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "ready\n"));
    let snap = snapshot(vec![healthy("db"), missing("app", "no process matches")]);
    let a = get(state(snap, None), "/readyz").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.body, "not ready\napp: not found: no process matches\n");
    let a = get(state(starting(snapshot(Vec::new())), None), "/readyz").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.body, "not ready\nno poll has finished yet\n");
}

#[tokio::test]
async fn metrics_is_prometheus_text() {
    let snap = snapshot(vec![healthy("app")]);
    let a = get(state(snap.clone(), None), "/metrics").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.header("content-type"),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    // leakwatch's own process_* values (RSS, CPU) move between two renders: compare the rest.
    let own = |text: &str| {
        text.lines()
            .filter(|l| !l.contains("process_"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(own(&a.body), own(&crate::metrics::render(&snap)));
    assert!(a.body.contains("\nprocess_resident_memory_bytes "));
}

#[tokio::test]
async fn status_is_the_snapshot_as_json_with_its_age() {
    let snap = snapshot(vec![healthy("app"), missing("db", "no process matches")]);
    let a = get(state(snap, None), "/status").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("content-type"), "application/json");
    let v: Value = serde_json::from_str(&a.body).expect("json");
    assert_eq!(v["targets"][0]["name"], "app");
    assert_eq!(v["targets"][1]["missing_reason"], "no process matches");
    assert_eq!(v["stale"], false);
    assert!(v["snapshot_age_ms"].as_u64().is_some(), "{v}");
    assert_eq!(v["ticks_total"], 10);
    let stale = aged(snapshot(Vec::new()), 60_000);
    let v: Value =
        serde_json::from_str(&get(state(stale, None), "/status").await.body).expect("json");
    assert_eq!(v["stale"], true);
    assert!(v["snapshot_age_ms"].as_u64().unwrap_or(0) >= 60_000);
}

/// Issue 23: a leak suspected is in /status (per series, and as the verdict's warnings),
/// while /healthz answers as before.
#[tokio::test]
async fn status_carries_leak_suspected_and_warnings() {
    let mut snap = crate::test_support::metrics::example_snapshot();
    let line = "cgroup_memory: leak suspected: +32.0 KiB/s, limit 2.0 GiB in ~9h (50% used)";
    snap.targets[0].judged.verdict.warnings = vec![line.into()];
    let a = get(state(snap, None), "/status").await;
    assert_eq!(a.status, StatusCode::OK);
    let v: Value = serde_json::from_str(&a.body).expect("json");
    let app = &v["targets"][0]["judged"];
    assert_eq!(app["verdict"]["warnings"], serde_json::json!([line]));
    let suspected: Vec<(&str, bool)> = app["series"]
        .as_array()
        .expect("series")
        .iter()
        .map(|s| {
            let name = s["series"].as_str().expect("a name");
            (
                name,
                s["leak_suspected"]
                    .as_bool()
                    .expect("a bool on every series"),
            )
        })
        .collect();
    let want = [
        ("fds", true),
        ("tcp_close_wait", false),
        ("rss", false),
        ("cgroup_memory", true),
        ("threads", false),
    ];
    assert_eq!(suspected, want);
    // No warnings: the key is left out (an empty list says nothing).
    let worker = &v["targets"][1]["judged"]["verdict"];
    assert!(worker.get("warnings").is_none(), "{worker}");

    // The same target with only a warning: /healthz stays 200 with its body.
    let mut warned = healthy("app");
    warned.judged.verdict.warnings = vec![line.into()];
    let plain = get(state(snapshot(vec![healthy("app")]), None), "/healthz").await;
    let a = get(state(snapshot(vec![warned]), None), "/healthz").await;
    assert_eq!((a.status, a.body), (plain.status, plain.body));
}

#[tokio::test]
async fn token_guards_metrics_and_status_only() {
    let st = state(snapshot(vec![healthy("app")]), Some("s3cret"));
    for path in ["/metrics", "/status"] {
        let a = get(st.clone(), path).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(a.header("www-authenticate"), "Bearer");
        let wrong = with_header(req("GET", path), "authorization", "Bearer s3cres");
        assert_eq!(
            send(st.clone(), wrong).await.status,
            StatusCode::UNAUTHORIZED
        );
        let short = with_header(req("GET", path), "authorization", "Bearer s3");
        assert_eq!(
            send(st.clone(), short).await.status,
            StatusCode::UNAUTHORIZED
        );
        let right = with_header(req("GET", path), "authorization", "Bearer s3cret");
        assert_eq!(
            send(st.clone(), right).await.status,
            StatusCode::OK,
            "{path}"
        );
    }
    for path in ["/healthz", "/healthz/app", "/livez", "/readyz"] {
        assert_eq!(get(st.clone(), path).await.status, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn a_swapped_token_takes_effect() {
    let (_s, snapshot_rx) = watch::channel(Arc::new(snapshot(Vec::new())));
    let (tx, token) = watch::channel(Some(Arc::from("old")));
    let st = AppState {
        snapshot: snapshot_rx,
        token,
    };
    let auth = |t: &str| with_header(req("GET", "/metrics"), "authorization", t);
    assert_eq!(
        send(st.clone(), auth("Bearer old")).await.status,
        StatusCode::OK
    );
    tx.send_replace(Some(Arc::from("new")));
    let old = send(st.clone(), auth("Bearer old")).await.status;
    assert_eq!(old, StatusCode::UNAUTHORIZED);
    assert_eq!(
        send(st.clone(), auth("Bearer new")).await.status,
        StatusCode::OK
    );
    tx.send_replace(None);
    assert_eq!(get(st, "/metrics").await.status, StatusCode::OK);
}

#[tokio::test]
async fn other_methods_are_405_with_allow() {
    let st = state(snapshot(vec![healthy("app")]), None);
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        for path in ["/healthz", "/healthz/app", "/livez", "/readyz", "/metrics"] {
            let a = send(st.clone(), req(method, path)).await;
            assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert_eq!(a.header("allow"), "GET, HEAD", "{method} {path}");
        }
    }
}

#[tokio::test]
async fn head_answers_the_status_without_a_body() {
    let st = state(snapshot(vec![failing("app", &["fds: 1001/1024"])]), None);
    let a = send(st.clone(), req("HEAD", "/healthz")).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "")
    );
    let a = send(st, req("HEAD", "/livez")).await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, ""));
}

#[tokio::test]
async fn unknown_path_is_404() {
    let st = state(snapshot(Vec::new()), None);
    for path in ["/", "/health", "/healthz/", "/metrics/x"] {
        assert_eq!(
            get(st.clone(), path).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_body_is_413_before_routing() {
    let st = state(snapshot(vec![healthy("app")]), None);
    let with_body = |method: &str, path: &str| {
        let r = Request::builder().method(method).uri(path);
        let r = r.header("content-length", "5").body(Body::from("hello"));
        r.expect("request")
    };
    for (method, path) in [("GET", "/healthz"), ("POST", "/healthz"), ("POST", "/nope")] {
        let a = send(st.clone(), with_body(method, path)).await;
        assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{method} {path}");
    }
    let chunked = with_header(req("GET", "/livez"), "transfer-encoding", "chunked");
    assert_eq!(
        send(st.clone(), chunked).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let empty = with_header(req("GET", "/livez"), "content-length", "0");
    assert_eq!(send(st, empty).await.status, StatusCode::OK);
}

#[tokio::test]
async fn every_answer_is_no_store() {
    let st = state(snapshot(vec![healthy("app")]), Some("tok"));
    let cases = [
        req("GET", "/healthz"),
        req("GET", "/nope"),
        req("POST", "/livez"),
        req("GET", "/status"),
        with_header(req("GET", "/readyz"), "content-length", "3"),
    ];
    for r in cases {
        let what = format!("{} {}", r.method(), r.uri());
        let a = send(st.clone(), r).await;
        assert_eq!(a.header("cache-control"), "no-store", "{what}");
    }
}
