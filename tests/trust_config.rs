//! Twenty broken configs, each refused with exit 2 and a message naming the key, by
//! `leakwatch config check`, by `leakwatch run` at start, and by a running daemon on SIGHUP
//! (one daemon, twenty reloads), which keeps the old config running throughout.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use common::daemon::{config_file, Daemon};
use common::{LeakyChild, BIN};
use nix::sys::signal::Signal;

const GOOD_TARGET: &str = "[[target]]\nname = \"app\"\npid = PID\n";

/// (what is wrong, the file, a fragment the message must contain: the key).
fn broken(token_file: &str) -> Vec<(&'static str, String, &'static str)> {
    let t = GOOD_TARGET;
    vec![
        (
            "a string for a number",
            format!("{t}[target.rules.fds]\nmax = \"lots\"\n"),
            "target[0].rules.fds.max",
        ),
        (
            "a number for a duration",
            format!("interval = 5\n{t}"),
            "interval",
        ),
        (
            "an unknown top-level key",
            format!("intervall = \"5s\"\n{t}"),
            "intervall",
        ),
        (
            "an unknown target key",
            format!("{t}selector = \"x\"\n"),
            "selector",
        ),
        (
            "an unknown rule",
            format!("{t}[target.rules.sockets]\nmax = 1\n"),
            "sockets",
        ),
        (
            "an unknown check",
            format!("{t}[target.rules.fds]\nmax_ration = 0.9\n"),
            "max_ration",
        ),
        (
            "two selectors",
            format!("{t}name_regex = \"app\"\n"),
            "target[0]",
        ),
        (
            "no selector",
            "[[target]]\n[target.rules.fds]\nmax = 10\n".into(),
            "target[0]",
        ),
        (
            "a negative duration",
            format!("interval = \"-5s\"\n{t}"),
            "interval",
        ),
        (
            "a negative count",
            format!("{t}[target.rules.stuck_threads]\nmax = -1\n"),
            "target[0].rules.stuck_threads.max",
        ),
        (
            "a regex that does not compile",
            "[[target]]\nname = \"app\"\ncmdline_regex = \"myapp (--serve\"\n".into(),
            "cmdline_regex",
        ),
        (
            "a ratio above 1",
            format!("{t}[target.rules.fds]\nmax_ratio = 1.5\n"),
            "target[0].rules.fds.max_ratio",
        ),
        (
            "a rate without a unit of time",
            format!("{t}[target.rules.tcp_close_wait]\nmax_growth = \"10\"\n"),
            "max_growth",
        ),
        (
            "an interval below the floor",
            format!("interval = \"1ms\"\n{t}"),
            "interval",
        ),
        (
            "a window shorter than two intervals",
            format!("interval = \"5s\"\n[judge]\nwindow = \"6s\"\n{t}"),
            "judge.window",
        ),
        (
            "a bad listen address",
            format!("listen = \"localhost\"\n{t}"),
            "listen",
        ),
        (
            "on_missing neither pass nor fail",
            format!("[judge]\non_missing = \"maybe\"\n{t}"),
            "on_missing",
        ),
        (
            "zero max_connections",
            format!("[http]\nmax_connections = 0\n{t}"),
            "max_connections",
        ),
        (
            "an unreadable token file",
            format!("[http]\ntoken_file = \"{token_file}\"\n{t}"),
            "token_file",
        ),
        (
            "not TOML at all",
            format!("{t}[target.rules.fds\nmax = 1\n"),
            "bad.toml:4",
        ),
    ]
}

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// A token file nobody may read, as the user leakwatch runs as in the test.
fn unreadable_token(dir: &std::path::Path) -> String {
    let path = dir.join("token");
    std::fs::write(&path, "secret\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    // root reads a 0000 file anyway: then a directory in its place makes it unreadable.
    if std::fs::read(&path).is_ok() {
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
    }
    path.display().to_string()
}

#[test]
fn twenty_broken_configs_are_refused_by_check_run_and_reload() {
    let child = LeakyChild::spawn(&[]);
    let pid = child.pid().to_string();
    let dir = tempfile::tempdir().unwrap();
    let token = unreadable_token(dir.path());
    let cases = broken(&token);
    assert_eq!(cases.len(), 20);

    // One daemon on a good config, reloaded with each broken file in turn.
    let good = GOOD_TARGET.replace("PID", &pid);
    let path = config_file(
        dir.path(),
        "bad.toml",
        &format!("interval = \"200ms\"\n{good}"),
    );
    let d = Daemon::start(&["-c", path.to_str().unwrap()]);
    assert!(d.wait_ticks(1, Duration::from_secs(10)), "{}", d.log_text());

    for (n, (what, text, key)) in cases.iter().enumerate() {
        let text = text.replace("PID", &pid);
        config_file(dir.path(), "bad.toml", &text);
        let file = path.to_str().unwrap();

        let (code, msg) = run(&["config", "check", file]);
        assert_eq!(code, 2, "config check, {what}: {msg}");
        assert!(
            msg.contains(key),
            "config check, {what}: {key:?} not named in {msg:?}"
        );
        assert!(msg.contains("bad.toml"), "{what}: the file is named: {msg}");

        let (code, msg) = run(&["run", "-c", file, "--listen", "127.0.0.1:0"]);
        assert_eq!(code, 2, "run, {what}: {msg}");
        assert!(
            msg.contains(key),
            "run, {what}: {key:?} not named in {msg:?}"
        );

        d.signal(Signal::SIGHUP);
        let failed = common::eventually(|| {
            d.status()["config"]["reloads_failed"].as_u64() == Some(n as u64 + 1)
        });
        let s = d.status();
        assert!(
            failed,
            "SIGHUP with {what}: not counted as failed: {}",
            s["config"]
        );
        let reason = s["config"]["last_reload_error"].as_str().unwrap_or("");
        assert!(reason.contains(key), "SIGHUP with {what}: {reason:?}");
        println!("{what:<36} {}", msg.lines().next().unwrap_or(""));
    }

    // The old config kept running: same target, still ticking, still answering.
    let ticks = d.status()["ticks_total"].as_u64().unwrap();
    assert!(d.wait_ticks(ticks + 2, Duration::from_secs(10)));
    let s = d.status();
    assert_eq!(s["targets"][0]["name"], "app");
    assert_eq!(s["targets"][0]["found"], true, "{}", s["targets"][0]);
    assert_eq!(d.get("/healthz").0, 200);
    assert_eq!(d.stop().and_then(|st| st.code()), Some(0));
}
