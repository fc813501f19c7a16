//! The tick on a fixture /proc tree: pid reuse (a new starttime), a vanished target and
//! a zombie, which a live test cannot stage on demand.

use std::fs;
use std::path::Path;

use super::*;
use crate::test_support::FakeProc;

/// `/proc/4242` whose stat says `state` and `starttime`, holding three fds.
pub(super) fn write_pid(root: &Path, state: char, starttime: u64) {
    FakeProc::new(root)
        .pid(4242)
        .stat(state, starttime)
        .status()
        .limits()
        .cmdline(&["fixture"])
        .fds((0..3).map(|fd| (fd, "/dev/null")));
}

fn pipeline(root: &Path) -> Pipeline {
    pipeline_with(root, |_| {})
}

/// A pipeline of pid 4242 under the fixture root, its target config adjusted by `f`.
pub(super) fn pipeline_with(root: &Path, f: impl FnOnce(&mut TargetConfig)) -> Pipeline {
    let mut target = TargetConfig::from_selector(Selector::Pid(4242));
    f(&mut target);
    let config = Config {
        proc_root: root.to_path_buf(),
        cgroup_root: root.join("no-cgroup"),
        targets: vec![target],
        ..Config::default()
    };
    Pipeline::new(config)
}

fn fds_samples(t: &TargetStatus) -> usize {
    t.judged
        .series
        .iter()
        .find(|s| s.series == crate::judge::Series::Fds)
        .and_then(|s| s.trend.as_ref())
        .map_or(0, |tr| tr.samples)
}

#[test]
fn a_reused_pid_is_a_restart_with_fresh_windows() {
    let root = tempfile::tempdir().unwrap();
    write_pid(root.path(), 'S', 1000);
    let mut w = pipeline(root.path());
    // Ticks a few ms apart: a trend needs distinct sample times.
    let tick = |w: &mut Pipeline| {
        std::thread::sleep(std::time::Duration::from_millis(3));
        w.tick()
    };
    for _ in 0..3 {
        tick(&mut w);
    }
    let t = &tick(&mut w)[0];
    assert!(t.found);
    assert_eq!(t.restarts_total, 0);
    assert_eq!(fds_samples(t), 4);
    assert_eq!(t.target.map(|id| id.starttime_ticks), Some(1000));

    write_pid(root.path(), 'S', 2000);
    let t = &tick(&mut w)[0];
    assert!(t.found);
    assert_eq!(t.target.map(|id| id.starttime_ticks), Some(2000));
    assert_eq!(t.restarts_total, 1);
    assert!(fds_samples(t) < 3, "windows reset on pid reuse");
    assert!(t.verdict().healthy);
}

#[test]
fn a_vanished_target_is_missing_and_fails_open() {
    let root = tempfile::tempdir().unwrap();
    write_pid(root.path(), 'S', 1000);
    let mut w = pipeline(root.path());
    assert!(w.tick()[0].found);
    fs::remove_dir_all(root.path().join("4242")).unwrap();
    let t = &w.tick()[0];
    assert!(!t.found);
    assert!(t.target.is_none());
    let why = t.missing_reason.as_deref().unwrap_or("");
    assert!(why.contains("pid 4242") && why.contains("exited"), "{why}");
    assert!(t.verdict().healthy);
    assert!(
        t.verdict().notes[0].contains("failing open"),
        "{:?}",
        t.verdict()
    );

    // It comes back as a new process: a restart.
    write_pid(root.path(), 'S', 3000);
    let t = &w.tick()[0];
    assert!(t.found);
    assert_eq!(t.restarts_total, 1);
}

#[test]
fn a_zombie_target_fails_open_with_the_reason() {
    let root = tempfile::tempdir().unwrap();
    write_pid(root.path(), 'S', 1000);
    let mut w = pipeline(root.path());
    w.tick();
    write_pid(root.path(), 'Z', 1000);
    let t = &w.tick()[0];
    assert!(!t.found);
    assert!(t.verdict().healthy);
    assert!(
        t.verdict().notes.iter().any(|n| n.contains("zombie")),
        "{:?}",
        t.verdict()
    );
}
