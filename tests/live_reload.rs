//! SIGHUP: a good config is taken (windows of unchanged targets kept), a bad one is refused
//! with the reason in /status while the old config keeps running.

mod common;

use std::time::Duration;

use common::daemon::{config_file, Daemon};
use common::LeakyChild;
use nix::sys::signal::Signal;

fn config(pid: i32, extra_target: &str) -> String {
    format!(
        "interval = \"100ms\"\n[judge]\nmin_samples = 5\nmin_span = \"400ms\"\nwindow = \"1m\"\n\
         [[target]]\nname = \"kept\"\npid = {pid}\n{extra_target}"
    )
}

fn samples_of_kept(d: &Daemon) -> u64 {
    let s = d.status();
    s["targets"][0]["judged"]["series"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["series"] == "fds"))
        .and_then(|e| e["trend"]["samples"].as_u64())
        .unwrap_or(0)
}

#[test]
fn sighup_takes_a_good_config_and_refuses_a_bad_one() {
    let child = LeakyChild::spawn(&["--files", "2"]);
    let other = LeakyChild::spawn(&["--files", "1"]);
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(dir.path(), "r.toml", &config(child.pid(), ""));
    let d = Daemon::start(&["-c", path.to_str().unwrap()]);
    assert!(d.wait_ticks(8, Duration::from_secs(10)));
    let before = samples_of_kept(&d);
    assert!(before >= 5, "{before}");

    // A good config: one more target; "kept" keeps its window.
    let second = format!("[[target]]\nname = \"added\"\npid = {}\n", other.pid());
    std::fs::write(&path, config(child.pid(), &second)).unwrap();
    d.signal(Signal::SIGHUP);
    assert!(
        common::eventually(|| d.status()["config"]["reloads_ok"] == 1),
        "{}",
        d.log_text()
    );
    let s = d.status();
    let names: Vec<&str> = s["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["kept", "added"]);
    assert!(
        samples_of_kept(&d) >= before,
        "the unchanged target's window was kept"
    );

    // A bad config: refused, the reason in /status, the old config still running.
    std::fs::write(
        &path,
        "interval = \"100ms\"\n[[target]]\nname = \"x\"\npid = \"one\"\n",
    )
    .unwrap();
    d.signal(Signal::SIGHUP);
    assert!(common::eventually(|| d.status()["config"]
        ["reloads_failed"]
        == 1));
    let s = d.status();
    let why = s["config"]["last_reload_error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        why.contains("r.toml:4:") && why.contains("target[0].pid"),
        "{why}"
    );
    assert_eq!(s["targets"].as_array().unwrap().len(), 2, "old config kept");
    let ticks = s["ticks_total"].as_u64().unwrap();
    assert!(
        d.wait_ticks(ticks + 3, Duration::from_secs(10)),
        "still ticking"
    );
    let (code, _) = d.get("/healthz");
    assert_eq!(code, 200);
    assert!(d.log_text().contains("reload refused"), "{}", d.log_text());
    let (_, metrics) = d.get("/metrics");
    assert!(
        metrics.contains("\nleakwatch_config_last_reload_successful 0\n"),
        "{metrics}"
    );

    // The file fixed: the next reload is taken and the refusal is over.
    std::fs::write(&path, config(child.pid(), "")).unwrap();
    d.signal(Signal::SIGHUP);
    assert!(common::eventually(
        || d.status()["config"]["reloads_ok"] == 2
    ));
    let (_, metrics) = d.get("/metrics");
    assert!(
        metrics.contains("\nleakwatch_config_last_reload_successful 1\n"),
        "{metrics}"
    );
}
