//! `--from` without a socket: URLs, the real `/status` JSON of the example snapshot read
//! back, the block rendered from it, and every way of learning nothing.

use super::*;
use crate::test_support::metrics::example_snapshot;

/// The example snapshot's `app` process.
const APP: TargetId = TargetId {
    pid: 4242,
    starttime_ticks: 98_765_432,
};

/// `/status` as the daemon answers it: the snapshot's JSON plus `stale` and its age.
fn status_body(warnings: &[&str]) -> String {
    let mut snap = example_snapshot();
    snap.targets[0].judged.verdict.warnings = warnings.iter().map(|w| w.to_string()).collect();
    let mut v = serde_json::to_value(&snap).expect("the snapshot serializes");
    v["stale"] = serde_json::Value::Bool(false);
    v["snapshot_age_ms"] = serde_json::Value::from(120);
    v.to_string()
}

#[test]
fn urls_name_host_port_and_the_status_path() {
    let u = parse_url("http://127.0.0.1:9717").expect("a plain URL");
    assert_eq!(
        (u.host.as_str(), u.port, u.path.as_str()),
        ("127.0.0.1", 9717, "/status")
    );
    let u = parse_url("HTTP://localhost:9717/").expect("a trailing slash");
    assert_eq!((u.host.as_str(), u.path.as_str()), ("localhost", "/status"));
    let u = parse_url("127.0.0.1:9717/status").expect("no scheme, the path given");
    assert_eq!((u.port, u.path.as_str()), (9717, "/status"));
    let u = parse_url("http://[::1]:9717/leakwatch").expect("IPv6 behind a prefix");
    assert_eq!(
        (u.host.as_str(), u.path.as_str()),
        ("::1", "/leakwatch/status")
    );
    assert_eq!(parse_url("http://web-1").map(|u| u.port), Ok(80));
    let u = parse_url("http://[::1]:9717/lw/status").expect("IPv6");
    assert_eq!(u.status_url(), "http://[::1]:9717/lw/status");
    assert_eq!(
        parse_url("http://web-1").map(|u| u.text),
        Ok("http://web-1".into())
    );
}

#[test]
fn bad_urls_say_what_was_expected() {
    let https = parse_url("https://web-1:9717").expect_err("https");
    assert!(https.contains("https:// is not supported"), "{https}");
    for bad in [
        "http://",
        "http://:9717",
        "http://web-1:port",
        "http://web-1:0",
        "http://web-1:99999",
        "http://user@web-1:9717",
        "http://web-1:9717/?x=1",
        "http://::1:9717",
    ] {
        let e = parse_url(bad).expect_err(bad);
        assert!(e.contains("expected http://HOST:PORT"), "{bad}: {e}");
    }
}

#[test]
fn the_status_json_of_the_daemon_is_read_back() {
    let line = "cgroup_memory: leak suspected: +32 KiB/s, limit 2.0 GiB in ~9h (50% used)";
    let d = match_status("http://x:9717", &status_body(&[line]), APP);
    assert_eq!(d.error, None);
    assert_eq!((d.stale, d.snapshot_age_ms), (false, Some(120)));
    let [t] = d.targets.as_slice() else {
        panic!("one target: {d:?}");
    };
    assert_eq!(t.name, "app");
    assert!(!t.judged.verdict.healthy);
    assert_eq!(
        t.judged.verdict.failing,
        ["fds: 1001/1024 open (97.8% >= 90%)"]
    );
    assert_eq!(t.judged.verdict.warnings, [line]);
    let fds = &t.judged.series[0];
    assert_eq!((fds.series.as_str(), fds.leak_suspected), ("fds", true));
    assert_eq!(fds.trend.as_ref().map(|t| t.slope_per_s), Some(0.025));
    assert_eq!(fds.seconds_to_exhaustion, Some(920.0));
    assert!(!t.judged.series[2].leak_suspected, "rss: untrusted");
}

#[test]
fn the_block_shows_verdict_warnings_and_each_series() {
    let line = "cgroup_memory: leak suspected: +32 KiB/s, limit 2.0 GiB in ~9h (50% used)";
    let text = render(&match_status("http://x:9717", &status_body(&[line]), APP));
    let want = [
        "DAEMON    leakwatch at http://x:9717, target \"app\"",
        "          verdict   unhealthy (/healthz 503)",
        "          failing   fds: 1001/1024 open (97.8% >= 90%)",
        &format!("          warning   {line}"),
        "          series    fds: 1001 of 1024, +1.5/min, limit in ~15m, leak suspected",
        "          series    tcp_close_wait: 940 (no limit), +1.4/min",
        "          series    rss: 412.0 MiB of 2.0 GiB, +1.2 KiB/s (not trusted: Mann-Kendall \
         z 1.12 < 2.58)",
        "          series    cgroup_memory: 1.0 GiB of 2.0 GiB, +32.0 KiB/s, limit in ~9h06m, \
         leak suspected",
        "          series    threads: 72 (no limit), no trend yet",
    ];
    assert_eq!(text, format!("\n{}\n", want.join("\n")));
}

#[test]
fn no_target_with_the_pid_is_one_line() {
    let other = TargetId {
        pid: 999,
        starttime_ticks: 1,
    };
    let d = match_status("http://x:9717", &status_body(&[]), other);
    assert!(d.targets.is_empty());
    let e = d.error.clone().expect("an error");
    assert_eq!(
        e,
        "no target of leakwatch at http://x:9717 is pid 999 (its targets: app (pid 4242), \
         worker (no process))"
    );
    assert_eq!(render(&d), format!("\nDAEMON    {e}\n"));
    // The pid, but another process: a restart the daemon has not seen yet.
    let reused = TargetId {
        starttime_ticks: 1,
        ..APP
    };
    let e = match_status("http://x:9717", &status_body(&[]), reused).error;
    assert!(e.is_some_and(|e| e.contains("for another process")));
}

#[test]
fn an_answer_that_is_not_the_status_json_is_one_line() {
    for body in ["", "not json", "{\"targets\": 3}", "[]"] {
        let d = match_status("http://x:9717", body, APP);
        let e = d.error.expect(body);
        assert!(
            e.starts_with("http://x:9717 did not answer leakwatch's /status: "),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }
}

#[test]
fn non_200_answers_are_one_line() {
    let url = parse_url("http://x:9717").expect("url");
    let e = answered(&url, false, (401, "unauthorized\n".into())).expect_err("401");
    assert!(
        e.contains("needs leakwatch's bearer token (401): give --token-file"),
        "{e}"
    );
    let e = answered(&url, true, (401, String::new())).expect_err("401 with a token");
    assert!(e.contains("refused the token"), "{e}");
    let e = answered(&url, false, (404, "not found; endpoints: ...\n".into())).expect_err("404");
    assert_eq!(
        e,
        "http://x:9717/status answered 404: not found; endpoints: ..."
    );
    let e = answered(&url, false, (0, String::new())).expect_err("silence");
    assert_eq!(e, "no HTTP answer from http://x:9717 within 5s");
    assert_eq!(answered(&url, false, (200, "{}".into())), Ok("{}".into()));
}

#[test]
fn an_unreachable_daemon_and_a_missing_token_file_are_errors_not_panics() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = parse_url(&format!("http://127.0.0.1:{port}")).expect("url");
    let d = ask(&url, None, APP);
    let e = d.error.expect("unreachable");
    assert!(
        e.starts_with(&format!("cannot reach leakwatch at {}: ", url.text)),
        "{e}"
    );
    let d = ask(&url, Some(Path::new("/nonexistent/token")), APP);
    let e = d.error.expect("no token file");
    assert!(
        e.contains("cannot read the token file /nonexistent/token"),
        "{e}"
    );
}
