//! A slow filesystem under `leakwatch run` with `Type=notify`: after some good ticks the
//! target's `status` becomes a FIFO that a writer drips out one line per 100 ms, so one
//! collection takes ~5 s against a 200 ms interval. Meanwhile `/healthz` answers 200 from the
//! last snapshot, marked stale; `/livez` reports the stall; the WATCHDOG=1 pings stop (so
//! systemd would restart leakwatch); and once the read completes, ticks and pings resume.
//! Then a huge fd table (15,000 fds) at a 100 ms interval: counted exactly, probes all 200.
//! (`live_stall` covers a read that never returns and the skipped ticks.)

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::daemon::{config_file, Daemon};
use common::BIN;
use leakwatch::test_support::fake_proc::{FakeProc, STARTTIME_KERNEL_6_18, STATUS_KERNEL_6_18};

const STATUS: &str = STATUS_KERNEL_6_18;

/// A fixture /proc with pid 4242, every file regular.
fn fixture_proc(root: &Path) -> PathBuf {
    let pid = FakeProc::new(root)
        .pid(4242)
        .stat('S', STARTTIME_KERNEL_6_18)
        .status()
        .limits()
        .cmdline(&["fixture"])
        .fds([(0, "/dev/null")]);
    pid.dir().to_path_buf()
}

/// Every notify message that arrives within `wait`.
fn drain(sock: &UnixDatagram, wait: Duration) -> Vec<String> {
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    got
}

fn pings(msgs: &[String]) -> usize {
    msgs.iter().filter(|m| m.contains("WATCHDOG=1")).count()
}

#[test]
fn a_slow_read_stops_the_watchdog_pings_while_healthz_answers_stale() {
    let root = tempfile::tempdir().unwrap();
    let dir = fixture_proc(root.path());
    let cfg = config_file(
        root.path(),
        "slow.toml",
        &format!(
            "interval = \"200ms\"\nproc_root = \"{}\"\ncgroup_root = \"{}\"\n[[target]]\nname = \"fixture\"\npid = 4242\n",
            root.path().display(),
            root.path().join("no-cgroup").display()
        ),
    );
    let sock_path = root.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "-c", cfg.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000");
    let d = Daemon::start_with(&mut cmd);

    let before = drain(&sock, Duration::from_secs(2));
    assert!(
        before.iter().any(|m| m.starts_with("READY=1")),
        "{before:?}"
    );
    assert!(pings(&before) >= 2, "pings while healthy: {before:?}");

    // The filesystem turns slow: `status` is a FIFO dripped out a line per 100 ms.
    let fifo = dir.join("status.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    fs::rename(&fifo, dir.join("status")).unwrap();
    let status_path = dir.join("status");
    let regular = dir.join("status.regular");
    fs::write(&regular, STATUS).unwrap();
    let writer = std::thread::spawn(move || {
        // Blocks until a tick opens the FIFO for reading.
        let mut w = fs::OpenOptions::new()
            .write(true)
            .open(&status_path)
            .unwrap();
        // From now on the path is a regular file again: only this read is slow.
        fs::rename(&regular, &status_path).unwrap();
        let started = Instant::now();
        for line in STATUS.lines() {
            std::thread::sleep(Duration::from_millis(100));
            if writeln!(w, "{line}").is_err() {
                break;
            }
        }
        started.elapsed()
    });

    // Give the slow read time to outlast 3 intervals, then look while it lasts.
    std::thread::sleep(Duration::from_millis(1200));
    // What arrived before the stall was seen (pings until the snapshot turned stale).
    let until_stale = drain(&sock, Duration::from_millis(60));
    let (live, live_body) = d.get("/livez");
    let (health, health_body) = d.request(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
    );
    let during = drain(&sock, Duration::from_secs(2));
    let slow_for = writer.join().unwrap();

    assert_eq!(live, 503, "/livez during the stall: {live_body}");
    assert!(live_body.contains("stalled"), "{live_body}");
    assert_eq!(
        health, 200,
        "leakwatch's own stall fails open: {health_body}"
    );
    let json: serde_json::Value = serde_json::from_str(&health_body).unwrap();
    assert_eq!(json["stale"], true, "{health_body}");
    assert_eq!(
        pings(&during),
        0,
        "WATCHDOG=1 kept coming during a {slow_for:?} read: {during:?}"
    );

    // The read completed: ticks and pings resume.
    let after = drain(&sock, Duration::from_secs(3));
    assert!(pings(&after) >= 1, "pings after the stall: {after:?}");
    assert!(common::eventually(|| d.get("/livez").0 == 200));
    println!(
        "a {slow_for:.1?} read at a 200 ms interval: /livez 503, /healthz 200 stale, \
         {} pings before, {} until stale, {} during, {} after",
        pings(&before),
        pings(&until_stale),
        pings(&during),
        pings(&after)
    );
}

/// A huge fd table: a real child holding three quarters of its (hard) fd limit, up to 15,000
/// fds, watched at a 100 ms interval — a scan that may take longer than the interval. Every
/// probe meanwhile answers 200 (from the last snapshot if a scan is running), and the count
/// leakwatch publishes is exactly what `/proc/PID/fd` lists.
#[test]
fn a_huge_fd_table_is_counted_exactly_while_probes_answer() {
    let hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(0, |(_, h)| h)
        .min(20_000);
    if hard < 4096 {
        let why = format!("the hard fd limit ({hard}) is too small for a huge table");
        return common::skip::skip("LEAKWATCH_REQUIRE_NOFILE", &why);
    }
    let files = hard * 3 / 4;
    let child =
        common::LeakyChild::spawn(&["--nofile", &hard.to_string(), "--files", &files.to_string()]);
    let pid = child.pid();
    let root = tempfile::tempdir().unwrap();
    let cfg = config_file(
        root.path(),
        "huge.toml",
        &format!("interval = \"100ms\"\n[[target]]\nname = \"huge\"\npid = {pid}\n"),
    );
    let d = Daemon::start(&["-c", cfg.to_str().unwrap()]);
    let started = Instant::now();
    let mut probes = 0;
    while started.elapsed() < Duration::from_secs(3) {
        let (code, body) = d.get("/healthz");
        assert_eq!(code, 200, "{body}");
        probes += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(d.wait_ticks(3, Duration::from_secs(30)), "{}", d.log_text());
    let s = d.status();
    let open = s["targets"][0]["sample"]["fds"]["open"].as_u64();
    let truth = common::count_fds(pid) as u64;
    println!(
        "{truth} fds at a 100 ms interval: poll {:.3} s, {} ticks, {} skipped, {probes} probes all 200",
        s["targets"][0]["poll_duration_seconds"].as_f64().unwrap_or(0.0),
        s["ticks_total"],
        s["ticks_skipped_total"]
    );
    assert_eq!(open, Some(truth), "{}", s["targets"][0]["sample"]["fds"]);
    assert!(truth >= files);
}
