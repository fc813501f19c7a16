//! leakwatch's poll, measured: `Collector::collect` of one whole `Sample`, in a loop.
//!
//! `benches/run.sh` runs it against its synthetic targets:
//!
//! ```text
//! poll --pid PID [--polls N] [--rounds R] [--smaps] [--fd-types]
//! ```
//!
//! prints one JSON line per round (`cpu_ms`, `wall_ms` per poll, `maxrss_kib`, and what the
//! poll saw, so a run that read nothing cannot pass for a fast one). Plain `cargo bench`
//! (no `--pid`) starts a `leakwatch demo-child` with ~1,000 fds and polls that.

use std::process::Command;
use std::time::Instant;

use leakwatch::collect::{CollectOptions, Collector};
use leakwatch::demo_child::ChildProcess;
use leakwatch::target::{Resolver, Selector};

struct Args {
    pid: Option<i32>,
    polls: u32,
    rounds: u32,
    smaps: bool,
    /// Every poll reads the fds by type (`fd_types_every` 0), as one tick in
    /// `fd_types_every` does.
    fd_types: bool,
}

fn args() -> Args {
    let mut a = Args {
        pid: None,
        polls: 20,
        rounds: 5,
        smaps: false,
        fd_types: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut num = || it.next().and_then(|v| v.parse::<u32>().ok());
        match arg.as_str() {
            "--pid" => a.pid = num().map(|p| p as i32),
            "--polls" => a.polls = num().unwrap_or(a.polls).max(1),
            "--rounds" => a.rounds = num().unwrap_or(a.rounds).max(1),
            "--smaps" => a.smaps = true,
            "--fd-types" => a.fd_types = true,
            _ => {} // `cargo bench` passes --bench
        }
    }
    a
}

/// CPU time (user + system) of this process, milliseconds, and its peak RSS, KiB (VmHWM:
/// `ru_maxrss` would include what the parent had resident before our execve).
fn rusage() -> (f64, i64) {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    let hwm = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(-1);
    (ms(ru.ru_utime) + ms(ru.ru_stime), hwm)
}

fn main() {
    let a = args();
    let mut child = None;
    let pid = match a.pid {
        Some(pid) => pid,
        None => {
            let exe = std::env::var("LEAKWATCH_BIN")
                .unwrap_or_else(|_| env!("CARGO_BIN_EXE_leakwatch").to_string());
            let c = ChildProcess::start(Command::new(exe).args([
                "demo-child",
                "--files",
                "500",
                "--established",
                "125",
                "--close-wait",
                "250",
                "--max-seconds",
                "120",
            ]))
            .expect("start demo-child");
            let pid = c.pid();
            child = Some(c);
            pid
        }
    };
    let target = Resolver::new("/proc", "/sys/fs/cgroup")
        .resolve(&Selector::Pid(pid))
        .expect("the target is alive");
    let mut collector = Collector::new("/proc", "/sys/fs/cgroup");
    let opts = CollectOptions {
        smaps: a.smaps,
        fd_types_every: if a.fd_types {
            std::time::Duration::ZERO
        } else {
            CollectOptions::default().fd_types_every
        },
        ..CollectOptions::default()
    };
    let first = collector.collect(target, &opts);
    for _ in 0..a.rounds {
        let (cpu0, _) = rusage();
        let wall = Instant::now();
        let mut last = None;
        for _ in 0..a.polls {
            last = Some(collector.collect(target, &opts));
        }
        let wall_ms = wall.elapsed().as_secs_f64() * 1e3 / f64::from(a.polls);
        let (cpu1, maxrss) = rusage();
        let s = last.unwrap_or_else(|| first.clone());
        let tcp = s.tcp.as_ref();
        let line = serde_json::json!({
            "tool": "leakwatch",
            "pid": pid,
            "cpu_ms": (cpu1 - cpu0) / f64::from(a.polls),
            "wall_ms": wall_ms,
            "maxrss_kib": maxrss,
            "fds": s.fds.as_ref().and_then(|f| f.open),
            "established": tcp.map(|t| t.states.established),
            "close_wait": tcp.map(|t| t.states.close_wait),
            "tcp_source": tcp.map(|t| t.source),
            "unknown": s.unknown.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            "sections_us": s.duration_us.iter().map(|(k, v)| (k.as_str(), *v)).collect::<std::collections::BTreeMap<_, _>>(),
        });
        println!("{line}");
    }
    drop(child);
}
