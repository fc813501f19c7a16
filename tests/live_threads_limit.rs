//! Live, issue 23: threads leaking towards `pids.max`. A real child in a pids cgroup of its
//! own (`pids.max` 200) starts with a pool of 30 threads and parks one more every 0.5 s,
//! watched by a real `leakwatch run` with the default rules: /healthz turns 503 on the
//! threads trend (`exhaust_within`, against the effective limit) while the child's real
//! thread count (/proc/PID/status `Threads`) is still well under the 90 % level.
//!
//! Needs root and a pids controller (cgroup v2, or v1 on a v1 or hybrid host); elsewhere it
//! skips, or fails with `LEAKWATCH_REQUIRE_CGROUP_LIMITS=1`.

mod common;

use std::time::{Duration, Instant};

use common::cgroup::ControllerCgroup;
use common::daemon::{config_file, Daemon};
use common::skip::skip;
use serde_json::Value;

const REQUIRE: &str = "LEAKWATCH_REQUIRE_CGROUP_LIMITS";
const PIDS_MAX: u64 = 200;
/// The pool the child starts with, before leakwatch watches it.
const POOL: u32 = 30;
/// Generous: at one thread per 0.5 s the count passes the usage floor (100) after ~35 s.
const DEADLINE: Duration = Duration::from_secs(120);

/// Ground truth: `Threads:` of /proc/PID/status.
fn threads(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("Threads: in /proc/PID/status")
}

/// The `threads` series of the first target in /status.
fn threads_series(status: &Value) -> Value {
    status["targets"][0]["judged"]["series"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["series"] == "threads"))
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn a_thread_leak_fails_healthz_on_its_trend_under_pids_max() {
    let cg = match ControllerCgroup::new("pids", "threads") {
        Ok(cg) => cg,
        Err(why) => return skip(REQUIRE, &why),
    };
    cg.write("pids.max", &PIDS_MAX.to_string())
        .expect("write pids.max");
    let mut child = ControllerCgroup::spawn(&[&cg], &[], 180);
    let pid = child.pid();
    assert_eq!(child.command(&format!("idle-threads {POOL}")), "ok");
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(
        dir.path(),
        "leakwatch.toml",
        &format!(
            "interval = \"500ms\"\n[judge]\nwindow = \"15s\"\nwarmup = \"0s\"\n\
             [[target]]\nname = \"pool\"\npid = {pid}\n"
        ),
    );
    let d = Daemon::start(&["-c", cfg.to_str().unwrap()]);
    assert!(d.wait_ticks(2, Duration::from_secs(60)), "no ticks");

    let started = Instant::now();
    let mut last_sent = Instant::now();
    let mut answers = Vec::new();
    let first_503 = loop {
        assert!(
            started.elapsed() < DEADLINE,
            "no 503 within {DEADLINE:?}; /healthz: {answers:?}; threads {}; {:#}",
            threads(pid),
            threads_series(&d.status())
        );
        if last_sent.elapsed() >= Duration::from_millis(500) {
            assert_eq!(child.command("idle-threads 1"), "ok");
            last_sent = Instant::now();
        }
        let (code, body) = d.get("/healthz");
        // Read right after the answer: the count only grows, so it is at least the one
        // the verdict judged.
        let real = threads(pid);
        if answers.last().is_none_or(|(c, _, _)| *c != code) {
            answers.push((code, started.elapsed(), real));
        }
        if code == 503 {
            break (body, real);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let status = d.status();
    let (body, real) = first_503;
    let series = threads_series(&status);
    eprintln!(
        "threads run: /healthz {answers:?} (code, since start, real threads); first 503 at \
         {real} threads: {body}"
    );

    // The effective limit: pids.max, with no other process in the cgroup.
    assert_eq!(
        series["limit"].as_f64(),
        Some(PIDS_MAX as f64),
        "{series:#}"
    );
    let tasks: u64 = cg.read("pids.current").parse().unwrap();
    assert_eq!(
        tasks,
        threads(pid),
        "the cgroup holds the child's threads only"
    );
    // The trend, not the 90 % level, failed it: a line on threads with the time to the limit.
    let line = body
        .lines()
        .find(|l| l.starts_with("threads: "))
        .unwrap_or_else(|| panic!("no threads line in the 503: {body}"));
    assert!(
        line.contains(&format!("limit {PIDS_MAX} in ~")),
        "not the trend: {line}"
    );
    assert!(!line.contains("% >= 90%"), "the level failed: {line}");
    // Well under the level: at most 80 % of the limit, by the child's real count.
    assert!(
        real * 10 <= PIDS_MAX * 8,
        "{real} threads of {PIDS_MAX} at the first 503"
    );
    let judged = series["value"].as_f64().unwrap_or(f64::MAX);
    assert!(
        judged <= threads(pid) as f64,
        "leakwatch saw {judged} threads, more than the child has"
    );

    d.stop();
    // Stop the child (by its pid) before the cgroup is removed.
    child.close_stdin();
    drop(child);
}
