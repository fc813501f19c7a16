//! leakwatch's own leaks: the daemon (`daemon::spawn`: the tick loop, judging, snapshots and
//! the HTTP server of `leakwatch run`, on a thread of this test process) ticks thousands of
//! times against a churning target — fds opened and closed by the hundred, threads
//! added through each life, the process restarted every ~2 s and followed through a
//! `cmdline_regex` selector — while /healthz, /metrics and /status are polled. This process's
//! own fd count, thread count and RSS are read from /proc/self at the end of warm-up and at
//! the end: fds and threads exactly back (the blocking pool's threads, which tokio starts
//! and ends on demand, within its cap), RSS within a stated bound.
//!
//! The CLI refuses an interval under 100 ms (20,000 ticks would take over half an hour), so
//! the config is built here with a 1 ms interval; ticks then run back to back, each as long
//! as a collection takes. `LEAKWATCH_SOAK_TICKS` sets the count: CI runs 5,000 (a debug
//! build ticks every ~10-30 ms on a loaded 2-core machine); the long mode is
//! `LEAKWATCH_SOAK_TICKS=20000 cargo test --release --test trust_soak -- --nocapture`.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{LeakyChild, BIN};
use leakwatch::config::Config;
use leakwatch::test_support::http as client;

/// A command line no other test (nor another run of this one) uses, so the selector finds
/// only this run's child: `--nofile` carries this process's pid.
fn mark() -> Vec<String> {
    let nofile = 4096 + std::process::id() % 4096;
    [
        "--files",
        "31",
        "--pipes",
        "7",
        "--nofile",
        &nofile.to_string(),
    ]
    .map(String::from)
    .to_vec()
}

fn ticks_wanted() -> u64 {
    std::env::var("LEAKWATCH_SOAK_TICKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000)
}

/// The daemon's blocking pool threads (tokio names them after the runtime, `leakwatch`):
/// at most this many, started and ended by the pool on demand (10 s keep-alive).
const POOL_MAX: usize = 4;

/// This process's fds, threads outside the blocking pool, pool threads, RSS bytes: the
/// least of several reads, so an fd or a thread a tick holds for a moment is not counted.
fn own_usage() -> (usize, usize, usize, u64) {
    let mut best = (usize::MAX, usize::MAX, usize::MAX, u64::MAX);
    for _ in 0..40 {
        let fds = std::fs::read_dir("/proc/self/fd").unwrap().count();
        let (mut pool, mut other) = (0, 0);
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            match std::fs::read_to_string(task.path().join("comm")) {
                Ok(comm) if comm.trim_end() == "leakwatch" => pool += 1,
                _ => other += 1,
            }
        }
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let rss_kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap();
        best = (
            best.0.min(fds),
            best.1.min(other),
            best.2.min(pool),
            best.3.min(rss_kib * 1024),
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    best
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    client::exchange(addr, req.as_bytes(), Duration::from_secs(5)).unwrap_or((0, String::new()))
}

fn ticks(addr: SocketAddr) -> u64 {
    let (_, body) = get(addr, "/status");
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["ticks_total"].as_u64())
        .unwrap_or(0)
}

/// One life of the target, in a network namespace of its own (only loopback, brought up),
/// so each tick reads the target's own TCP table rather than the whole machine's: the soak
/// measures leakwatch, not the size of a shared host's socket table.
/// Without root (no network namespace) it shares the machine's table.
fn start_target() -> LeakyChild {
    let mut cmd = if nix::unistd::geteuid().is_root() {
        let mut c = std::process::Command::new("unshare");
        c.args([
            "--net",
            "--",
            "sh",
            "-c",
            "ip link set lo up && exec \"$0\" \"$@\"",
        ])
        .arg(BIN);
        c
    } else {
        std::process::Command::new(BIN)
    };
    cmd.arg("demo-child")
        .args(mark())
        .args(["--established", "4", "--close-wait", "4"]);
    LeakyChild::spawn_lasting(&mut cmd, 60)
}

#[test]
fn thousands_of_ticks_leave_fds_threads_and_memory_flat() {
    let want = ticks_wanted();
    let mut cfg = Config::parse(
        &format!(
            "listen = \"127.0.0.1:0\"\ninterval = \"100ms\"\n[[target]]\nname = \"churn\"\n\
             cmdline_regex = {:?}\n",
            // Anchored on the binary: the `unshare` and `sh` wrappers carry the same
            // arguments but run, for an instant, in this network namespace.
            format!("^{} demo-child {}", regex::escape(BIN), mark().join(" "))
        ),
        "soak.toml",
    )
    .expect("config");
    cfg.interval = Duration::from_millis(1);
    let mut child = start_target();
    let daemon = leakwatch::daemon::spawn(cfg).expect("daemon");
    let addr = daemon.addr;

    let started = Instant::now();
    let mut life_started = Instant::now();
    let (mut restarts, mut polls) = (0u32, 0u64);
    let mut non_200: Vec<String> = Vec::new();
    let mut warm: Option<((usize, usize, usize, u64), u64)> = None;
    let mut done = 0;
    let mut iteration = 0u64;
    // Bounded: even a starved machine stops after 15 minutes and fails below.
    while started.elapsed() < Duration::from_secs(900) {
        done = ticks(addr);
        if done >= want {
            break;
        }
        // Not /livez: at a 1 ms interval every tick "overruns", which /livez reports.
        for path in ["/healthz", "/metrics", "/status"] {
            polls += 1;
            let (code, body) = get(addr, path);
            if code != 200 {
                non_200.push(format!("{path}: {code} {body}"));
            }
        }
        // fds come and go by the hundred; a thread is added every ten rounds.
        // +200 once every six rounds, -40 in the other five: level on average.
        let churn = if iteration % 6 == 0 {
            "files 200"
        } else {
            "close-files 40"
        };
        let _ = child.command(churn);
        iteration += 1;
        if iteration % 10 == 0 {
            let _ = child.command("idle-threads 1");
        }
        if life_started.elapsed() > Duration::from_secs(2) {
            drop(child); // killed and reaped
            child = start_target();
            life_started = Instant::now();
            restarts += 1;
        }
        // Warm-up: the first tenth of the ticks, then the baseline, taken right after a
        // restart (like the final reading) so the same child fds are open.
        if warm.is_none() && done >= want / 10 && life_started.elapsed() < Duration::from_secs(1) {
            warm = Some((own_usage(), done));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // The final reading, the same way: a fresh life, the daemon still ticking.
    drop(child);
    let _child = start_target();
    std::thread::sleep(Duration::from_millis(200));
    // A pool thread that overlapping blocking tasks started idles out after 10 s: give it
    // that long (the daemon keeps ticking) before judging.
    let ((fds0, threads0, pool0, _), _) = warm.expect("a warm-up reading");
    let settle = Instant::now();
    let mut end = own_usage();
    while (end.0 > fds0 || end.1 > threads0 || end.2 > pool0)
        && settle.elapsed() < Duration::from_secs(15)
    {
        std::thread::sleep(Duration::from_millis(500));
        end = own_usage();
    }
    let settled_in = settle.elapsed();
    let end_ticks = ticks(addr);
    let elapsed = started.elapsed();
    let (_, status) = get(addr, "/status");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    daemon.shutdown().expect("clean shutdown");

    let ((fds0, threads0, pool0, rss0), warm_ticks) = warm.expect("a warm-up reading");
    let (fds1, threads1, pool1, rss1) = end;
    println!(
        "soak: {end_ticks} ticks in {:.0?} ({} skipped), {restarts} target restarts seen as {} \
         by leakwatch, {polls} HTTP requests ({} not 200)\n\
         leakwatch at tick {warm_ticks} -> {end_ticks}: fds {fds0} -> {fds1}, threads \
         {threads0} -> {threads1} and {pool0} -> {pool1} in the blocking pool (settled in \
         {settled_in:.1?}), rss {} KiB -> {} KiB ({:+} KiB)",
        elapsed,
        status["ticks_skipped_total"],
        status["targets"][0]["restarts_total"],
        non_200.len(),
        rss0 / 1024,
        rss1 / 1024,
        (rss1 as i64 - rss0 as i64) / 1024
    );
    assert!(done >= want, "only {done} of {want} ticks in {elapsed:?}");
    assert!(
        non_200.is_empty(),
        "requests failed during the soak: {non_200:?}"
    );
    assert_eq!(fds1, fds0, "leakwatch's fds grew");
    assert_eq!(threads1, threads0, "leakwatch's threads grew");
    assert!(
        pool1 <= POOL_MAX && pool0 <= POOL_MAX,
        "blocking pool {pool0} -> {pool1}"
    );
    assert!(
        rss1 <= rss0 + 8 * 1024 * 1024,
        "leakwatch's RSS grew by more than 8 MiB: {rss0} -> {rss1}"
    );
    assert!(restarts >= 3, "the target restarted only {restarts} times");
    // Each restart seen once (the last start may be seen before the final look).
    let seen = status["targets"][0]["restarts_total"].as_u64().unwrap();
    let restarts = u64::from(restarts);
    assert!(
        (restarts..=restarts + 1).contains(&seen),
        "{restarts} restarts seen as {seen}"
    );
}
