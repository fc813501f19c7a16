//! A collection that hangs (here a `status` file that is a FIFO nobody writes, on a fixture
//! /proc tree) never blocks HTTP: `/healthz` keeps answering from the last snapshot, marked
//! stale and failing open, `/livez` reports the stall, and the ticks missed meanwhile are
//! skipped, not queued, once the read returns.

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use common::daemon::{config_file, Daemon};
use leakwatch::test_support::fake_proc::{FakeProc, STARTTIME_KERNEL_6_18, STATUS_KERNEL_6_18};

const STATUS: &str = STATUS_KERNEL_6_18;

/// A fixture /proc with pid 4242 whose `status` is a FIFO.
fn fixture_proc(root: &Path) {
    let pid = FakeProc::new(root)
        .pid(4242)
        .stat('S', STARTTIME_KERNEL_6_18)
        .limits()
        .cmdline(&["fixture"])
        .fds([(0, "/dev/null")]);
    let dir = pid.dir();
    nix::unistd::mkfifo(
        &dir.join("status"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
}

#[test]
fn a_hung_collection_leaves_http_answering_and_skips_ticks() {
    let root = tempfile::tempdir().unwrap();
    fixture_proc(root.path());
    let cfg = config_file(
        root.path(),
        "stall.toml",
        &format!(
            "interval = \"200ms\"\nproc_root = \"{}\"\ncgroup_root = \"{}\"\n[[target]]\nname = \"fixture\"\npid = 4242\n",
            root.path().display(),
            root.path().join("no-cgroup").display()
        ),
    );
    let d = Daemon::start(&["-c", cfg.to_str().unwrap()]);

    // The first tick hangs on the FIFO: no poll ever finishes.
    let stalled = common::eventually(|| d.get("/livez").0 == 503);
    let (code, body) = d.get("/livez");
    assert!(stalled, "/livez: {code} {body}");
    assert!(
        body.contains("stalled") || body.contains("starting"),
        "{body}"
    );
    let asked = Instant::now();
    let (code, body) = d.get("/healthz");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "/healthz waited for /proc"
    );
    assert_eq!(code, 200, "leakwatch's own stall must fail open: {body}");
    assert!(d.status()["ticks_total"] == 0);

    // Let the read return; the stall has lasted many intervals by now.
    std::thread::sleep(Duration::from_secs(2));
    let fifo = root.path().join("4242/status");
    let tmp = root.path().join("4242/status.tmp");
    fs::write(&tmp, STATUS).unwrap();
    let mut writer = fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    fs::rename(&tmp, &fifo).unwrap();
    writer.write_all(STATUS.as_bytes()).unwrap();
    drop(writer);

    assert!(d.wait_ticks(1, Duration::from_secs(10)), "{}", d.log_text());
    let s = d.status();
    let skipped = s["ticks_skipped_total"].as_u64().unwrap();
    let ticks = s["ticks_total"].as_u64().unwrap();
    println!("after a stall of >3 s at 200 ms: {ticks} tick(s) done, {skipped} skipped");
    assert!(skipped >= 5, "missed ticks are counted as skipped: {s}");
    assert!(ticks <= 3, "missed ticks are not run as a burst: {ticks}");
    assert!(common::eventually(|| d.get("/livez").0 == 200));
    let (code, _) = d.get("/healthz");
    assert_eq!(code, 200);
}
