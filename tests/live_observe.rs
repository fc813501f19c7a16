//! Observe mode end to end: `leakwatch run` with `mode = "observe"` watching a real child
//! that leaks fds answers 200 with `observe: would fail:` lines while /metrics says it would
//! fail and counts the flip, runs the bundle but not the exec hook, and `leakwatch check`
//! judges like it; SIGHUP with `mode = "enforce"` turns /healthz 503 and lets the hook run.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::daemon::{config_file, Daemon};
use common::{count_fds, LeakyChild, BIN};
use nix::sys::signal::Signal;

/// A fast judge over one target, `mode` at the top level; a flip writes a bundle and runs a
/// hook that leaves `marker` behind.
fn config(mode: &str, pid: i32, bundles: &Path, marker: &Path) -> String {
    format!(
        r#"mode = "{mode}"
interval = "100ms"
[judge]
window = "10s"
min_samples = 10
min_span = "1s"
warmup = "0s"
fail_after = 2
recover_after = 2
[actions]
cooldown = "0s"
[actions.bundle]
dir = "{bundles}"
[actions.exec]
argv = ["/bin/sh", "-c", "echo \"$LEAKWATCH_RULES\" > {marker}"]
[[target]]
name = "leaky"
pid = {pid}
[target.rules.fds]
max_ratio = 0.9
"#,
        bundles = bundles.display(),
        marker = marker.display(),
    )
}

/// `name{labels} VALUE` in the /metrics text.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Wait (bounded) until `f` holds.
fn until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn observe_mode_answers_200_saying_what_would_fail_until_sighup_enforces() {
    let mut child = LeakyChild::spawn(&["--nofile", "256"]);
    let dir = tempfile::tempdir().unwrap();
    let bundles = dir.path().join("bundles");
    let marker = dir.path().join("exec-ran");
    let cfg = config_file(
        dir.path(),
        "observe.toml",
        &config("observe", child.pid(), &bundles, &marker),
    );
    let d = Daemon::start(&["-c", cfg.to_str().unwrap()]);
    assert!(d.wait_ticks(2, Duration::from_secs(10)));

    // The child leaks ~40 fds a second up to 240 of its 256 (94%, over max_ratio 0.9).
    while count_fds(child.pid()) < 240 {
        let answer = child.command("files 4");
        assert_eq!(answer, "ok", "the child ran out before the check");
        std::thread::sleep(Duration::from_millis(100));
    }
    let would_fail = "leakwatch_would_fail{target=\"leaky\"}";
    assert!(
        until(Duration::from_secs(20), || {
            metric(&d.get("/metrics").1, would_fail) == Some(1.0)
        }),
        "{}",
        d.log_text()
    );

    // 200, with one `observe: would fail:` line per failing rule.
    for path in ["/healthz", "/healthz/leaky"] {
        let (code, body) = d.get(path);
        assert_eq!(code, 200, "{path}: {body}");
        assert!(body.starts_with("ok\n"), "{path}: {body}");
        assert!(
            body.contains("note: observe: would fail: fds: "),
            "{path}: {body}"
        );
    }
    let (code, json) = d.request(
        "GET /healthz/leaky HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(code, 200, "{json}");
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["targets"][0]["restraint"], "observe", "{json}");

    let (_, metrics) = d.get("/metrics");
    assert_eq!(metric(&metrics, would_fail), Some(1.0), "{metrics}");
    let flips = "leakwatch_would_fail_flips_total{target=\"leaky\"}";
    assert_eq!(metric(&metrics, flips), Some(1.0), "{metrics}");
    let mode = |m: &str| format!("leakwatch_mode{{mode=\"{m}\",target=\"leaky\"}}");
    assert_eq!(metric(&metrics, &mode("observe")), Some(1.0), "{metrics}");
    assert_eq!(metric(&metrics, &mode("enforce")), Some(0.0), "{metrics}");
    assert_eq!(
        metric(&metrics, "leakwatch_healthy{target=\"leaky\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        d.log_text().contains("observe mode: would fail"),
        "{}",
        d.log_text()
    );

    // The flip wrote the bundle; the hook, which may restart, did not run.
    let results = |d: &Daemon| d.status()["targets"][0]["actions"]["last"].clone();
    assert!(
        until(Duration::from_secs(20), || results(&d)["running"] == false),
        "{}",
        results(&d)
    );
    let last = results(&d);
    let result = |a: &str| {
        last["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["action"] == a)
            .cloned()
            .unwrap_or_else(|| panic!("no {a} in {last}"))
    };
    assert_eq!(result("bundle")["result"], "ok", "{last}");
    assert_eq!(result("exec")["result"], "skipped", "{last}");
    assert!(
        result("exec")["detail"]
            .as_str()
            .unwrap()
            .starts_with("observe mode"),
        "{last}"
    );
    assert_eq!(std::fs::read_dir(&bundles).unwrap().count(), 1);
    assert!(!marker.exists(), "the exec hook ran in observe mode");
    assert_eq!(d.status()["targets"][0]["mode"], "observe");

    // `leakwatch check` on the same file judges in observe mode: exit 0, what would fail.
    let out = Command::new(BIN)
        .args(["check", "-c", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.starts_with("leakwatch check: OK (observe mode; would fail: leaky)"),
        "{text}"
    );
    assert!(text.contains("    WOULD FAIL fds: "), "{text}");

    // SIGHUP with mode = "enforce": the same failing verdict fails /healthz now.
    std::fs::write(&cfg, config("enforce", child.pid(), &bundles, &marker)).unwrap();
    d.signal(Signal::SIGHUP);
    assert!(
        until(Duration::from_secs(20), || d.get("/healthz/leaky").0 == 503),
        "{}",
        d.log_text()
    );
    let (_, body) = d.get("/healthz/leaky");
    assert!(body.starts_with("fds: "), "{body}");
    assert!(
        d.log_text().contains("leaky: mode observe -> enforce"),
        "{}",
        d.log_text()
    );
    let (_, metrics) = d.get("/metrics");
    assert_eq!(metric(&metrics, would_fail), Some(0.0), "{metrics}");
    assert_eq!(
        metric(&metrics, flips),
        Some(1.0),
        "an enforced flip is no would-be"
    );
    assert_eq!(metric(&metrics, &mode("enforce")), Some(1.0), "{metrics}");
    // Enforced while failing, it flipped again: the hook ran this time.
    assert!(
        until(Duration::from_secs(20), || marker.exists()),
        "{}",
        results(&d)
    );
    let rules = std::fs::read_to_string(&marker).unwrap();
    assert!(rules.starts_with("fds: "), "{rules}");
}
