//! `leakwatch check`: exit 0 healthy, 1 unhealthy, 2 unknown or error.

mod common;

use std::process::Command;

use common::{LeakyChild, BIN};

fn check(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN).arg("check").args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn a_healthy_target_exits_0() {
    let child = LeakyChild::spawn(&["--files", "3"]);
    let (code, out) = check(&["--pid", &child.pid().to_string()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("leakwatch check: OK"), "{out}");
    assert!(out.contains("fds "), "{out}");
}

#[test]
fn fds_over_90_percent_exit_1_with_the_rule_line() {
    // 64 allowed, 60 in use. The child's starting count depends on what it inherited (a CI
    // runner passes fewer fds than a terminal), so it is topped up to exactly 60.
    let mut child = LeakyChild::spawn(&["--nofile", "64"]);
    let open = std::fs::read_dir(format!("/proc/{}/fd", child.pid()))
        .unwrap()
        .count();
    assert!(open < 60, "the child starts with {open} fds");
    assert_eq!(child.command(&format!("files {}", 60 - open)), "ok");
    let (code, out) = check(&["--pid", &child.pid().to_string()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL fds: "), "{out}");
    assert!(out.contains("/64 open ("), "{out}");
}

#[test]
fn a_leak_over_the_duration_is_judged_on_its_trend() {
    // The child leaks by itself (one CLOSE_WAIT socket every 50 ms, about 20 fds a second)
    // for as long as the check runs, however slowly a loaded machine schedules either.
    let child = LeakyChild::spawn(&["--nofile", "1000", "--leak-every", "50ms"]);
    let pid = child.pid().to_string();
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::daemon::config_file(
        dir.path(),
        "c.toml",
        &format!(
            "[judge]\nmin_samples = 8\nmin_span = \"1s\"\nwarmup = \"0s\"\nusage_floor = 0.01\n[[target]]\nname = \"t\"\npid = {pid}\n[target.rules.fds]\nexhaust_within = \"5m\"\n"
        ),
    );
    let (code, out) = check(&[
        "-c",
        cfg.to_str().unwrap(),
        "--for",
        "2s",
        "--interval",
        "100ms",
    ]);
    drop(child);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL fds: +"), "a trend line: {out}");
}

#[test]
fn a_missing_target_or_a_bad_config_exits_2() {
    let (code, out) = check(&["--name", "no-such-comm-z"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.starts_with("leakwatch check: UNKNOWN"), "{out}");
    let (code, _) = check(&["-c", "/nonexistent/leakwatch.toml"]);
    assert_eq!(code, 2);
    let (code, _) = check(&[]);
    assert_eq!(code, 2, "no target at all");
}

#[test]
fn json_output_carries_the_result() {
    let child = LeakyChild::spawn(&[]);
    let (code, out) = check(&["--pid", &child.pid().to_string(), "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["result"], "ok");
    assert_eq!(v["targets"][0]["pid"], child.pid());
}
