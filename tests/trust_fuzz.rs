//! Every parser of kernel text, the fd link classifier and the config parser, fed arbitrary
//! bytes and mutated real kernel text (truncated lines, dropped and duplicated lines, extra
//! columns, unknown TCP states, `max`/`unlimited`/overflowing numbers, stray parentheses,
//! NULs, invalid UTF-8 made lossy as the readers do): no panic, and output bounded by the
//! input. Then the whole collector on a fixture /proc and cgroup tree whose files are
//! mutated or missing.
//!
//! Deterministic (a fixed seed per run) and bounded: `LEAKWATCH_FUZZ_CASES` cases per parser
//! (default 3000; the tree fuzz runs a tenth of that). A long run:
//! `LEAKWATCH_FUZZ_CASES=200000 cargo test --release --test trust_fuzz -- --nocapture`,
//! and `LEAKWATCH_FUZZ_SEED` picks another seed. A panic prints the input that caused it.

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use leakwatch::collect::cgroup::memory::{read_pids, read_pressure, read_v1, read_v2};
use leakwatch::collect::cgroup::parse::{
    flat_keyed, parse_limit, parse_pressure, parse_proc_cgroup, parse_u64,
};
use leakwatch::collect::fd::classify_link;
use leakwatch::collect::limits::parse_nofile;
use leakwatch::collect::net_tcp::{parse_net_tcp, summarize};
use leakwatch::collect::smaps::{parse_smaps_heap, parse_smaps_rollup};
use leakwatch::collect::stat::{parse_btime, parse_stat};
use leakwatch::collect::status::parse_status;
use leakwatch::collect::task::syscall::{parse_pollfds, parse_syscall};
use leakwatch::collect::{cmdline_text, CollectOptions, Collector};
use leakwatch::config::values::{parse_quantity, parse_rate};
use leakwatch::config::Config;
use leakwatch::sample::TargetId;
use leakwatch::test_support::fake_proc::{stat_line, FakeProc, BOOT_STAT, STARTTIME_KERNEL_6_18};

macro_rules! fixture {
    ($path:literal) => {
        include_str!(concat!("fixtures/", $path))
    };
}

const STAT: &str = fixture!("proc/stat_kernel_6_18");
const STAT_ODD: &str = fixture!("proc/stat_odd_comm");
const STATUS: &str = fixture!("proc/status_kernel_6_18");
const STATUS_ZOMBIE: &str = fixture!("proc/status_zombie_kernel_6_18");
const LIMITS: &str = fixture!("proc/limits_kernel_6_18");
const ROLLUP: &str = fixture!("proc/smaps_rollup_kernel_6_18");
const SMAPS: &str = fixture!("proc/smaps_rust_threads_kernel_6_18");
const TCP: &str = fixture!("net/tcp_kernel_6_18");
const TCP6: &str = fixture!("net/tcp6_kernel_6_18");
const TCP_ODD: &str = fixture!("net/tcp_odd_lines");
const PROC_CGROUP_HYBRID: &str = fixture!("cgroup/proc_cgroup_hybrid_kernel_6_18");
const PROC_CGROUP_V2: &str = fixture!("cgroup/proc_cgroup_v2_kernel_6_1");
const MEMORY_STAT_V1: &str = fixture!("cgroup/memory_stat_v1_kernel_6_18");
const MEMORY_STAT_V2: &str = fixture!("cgroup/memory_stat_v2_kernel_6_1");
const MEMORY_EVENTS_V2: &str = fixture!("cgroup/memory_events_v2_kernel_6_1");
const MEMORY_MAX_V2: &str = fixture!("cgroup/memory_max_v2_kernel_6_1");
const MEMORY_CURRENT_V2: &str = fixture!("cgroup/memory_current_v2_kernel_6_1");
const LIMIT_V1: &str = fixture!("cgroup/memory_limit_in_bytes_v1_unlimited_kernel_6_18");
const USAGE_V1: &str = fixture!("cgroup/memory_usage_in_bytes_v1_kernel_6_18");
const OOM_CONTROL_V1: &str = fixture!("cgroup/memory_oom_control_v1_kernel_6_18");
const PRESSURE: &str = fixture!("cgroup/memory_pressure_v2_busy_kernel_6_1");
const PIDS_MAX_V2: &str = fixture!("cgroup/pids_max_v2_kernel_6_1");
const SYSCALL_RECV: &str = fixture!("task/syscall_recvfrom_kernel_6_18");
const SYSCALL_NOT_IN: &str = fixture!("task/syscall_not_in_syscall_kernel_6_18");
const SYSCALL_RUNNING: &str = fixture!("task/syscall_running_kernel_6_18");
const CONFIG_EXAMPLE: &str = include_str!("../packaging/leakwatch.toml");

/// Tokens that kernel text (or a hostile writer) may put where a parser expects another.
const DICTIONARY: &[&str] = &[
    "max",
    "unlimited",
    "-1",
    "0",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999",
    "9223372036854771712",
    "-9223372036854775808",
    "0x",
    "0xffffffffffffffffff",
    "(",
    ")",
    ") (",
    ":",
    "::",
    "=",
    "kB",
    " kB",
    "nan",
    "inf",
    "-0.5",
    "1e309",
    "0C",
    "FF",
    "0A",
    "ZZ",
    "00000000:0000",
    "0100007F:FFFFF",
    "socket:[",
    "socket:[99999999999999999999]",
    "pipe:[",
    "anon_inode:",
    "\0",
    "\n",
    "\r\n",
    "\t",
    "  ",
    "\u{fffd}",
    "é",
    "some",
    "full",
    "avg10=",
    "total=",
    "Max open files",
    "Rss:",
    "[heap]",
    "---p",
    "rw-p",
    "running",
    "0::/",
    "1:memory:/",
    "\"",
    "[",
    "]",
    "[[target]]",
    "= \"1s\"",
    "= -1",
    "= 1e999",
    "= \"\"",
    "= []",
    "= {}",
    "= \"(\"",
];

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn cases() -> usize {
    std::env::var("LEAKWATCH_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

fn seed() -> u64 {
    std::env::var("LEAKWATCH_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_1ea4_a7c4)
        | 1
}

/// Byte ranges of the lines of `b` (each with its newline).
fn lines(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        if c == b'\n' {
            out.push((start, i + 1));
            start = i + 1;
        }
    }
    if start < b.len() {
        out.push((start, b.len()));
    }
    out
}

/// One random edit of `b`.
fn mutate_once(rng: &mut Rng, b: &mut Vec<u8>) {
    let at = rng.below(b.len() + 1);
    match rng.below(11) {
        // Truncate: a read cut short.
        0 => b.truncate(at),
        // Delete a range.
        1 => {
            let end = (at + rng.below(64)).min(b.len());
            b.drain(at..end);
        }
        // Insert a dictionary token.
        2 | 3 => {
            let t = rng.pick(DICTIONARY).as_bytes().to_vec();
            b.splice(at..at, t);
        }
        // Replace a word with a dictionary token.
        4 => {
            let start = b[..at]
                .iter()
                .rposition(|c| c.is_ascii_whitespace())
                .map_or(0, |p| p + 1);
            let end = b[at..]
                .iter()
                .position(|c| c.is_ascii_whitespace())
                .map_or(b.len(), |p| at + p);
            let t = rng.pick(DICTIONARY).as_bytes().to_vec();
            b.splice(start..end, t);
        }
        // Flip a byte (anything, including invalid UTF-8).
        5 => {
            if let Some(c) = b.get_mut(at) {
                *c = rng.next() as u8;
            }
        }
        // Duplicate, drop or swap whole lines.
        6 | 7 => {
            let ls = lines(b);
            if ls.is_empty() {
                return;
            }
            let (s, e) = *rng.pick(&ls);
            let line = b[s..e].to_vec();
            match rng.below(3) {
                0 => {
                    b.splice(s..s, line);
                }
                1 => {
                    b.drain(s..e);
                }
                _ => {
                    let (s2, e2) = *rng.pick(&ls);
                    if e <= s2 {
                        let other = b[s2..e2].to_vec();
                        b.splice(s2..e2, line);
                        b.splice(s..e, other);
                    }
                }
            }
        }
        // An extra column at the end of a line.
        8 => {
            let ls = lines(b);
            if let Some(&(_, e)) = ls.get(rng.below(ls.len())) {
                let pos = if b.get(e.wrapping_sub(1)) == Some(&b'\n') {
                    e - 1
                } else {
                    e
                };
                let t = format!(" {}", rng.pick(DICTIONARY));
                b.splice(pos..pos, t.into_bytes());
            }
        }
        // A run of random bytes.
        9 => {
            let n = rng.below(16);
            let junk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            b.splice(at..at, junk);
        }
        // A very long token (a huge number or a name).
        _ => {
            let n = 1 + rng.below(400);
            let c = *rng.pick(b"9fA( ");
            b.splice(at..at, std::iter::repeat_n(c, n));
        }
    }
}

/// A mutated copy of one of `seeds`, or (one case in eight) random bytes; lossy UTF-8, as
/// `error::read_to_string` hands kernel text to the parsers.
fn input(rng: &mut Rng, seeds: &[&str]) -> String {
    let mut b: Vec<u8> = if rng.below(8) == 0 {
        let n = rng.below(300);
        (0..n).map(|_| rng.next() as u8).collect()
    } else {
        rng.pick(seeds).as_bytes().to_vec()
    };
    for _ in 0..1 + rng.below(8) {
        mutate_once(rng, &mut b);
    }
    String::from_utf8_lossy(&b).into_owned()
}

/// Run `f` on `cases()` inputs; a panic names the parser and prints the input.
fn fuzz(name: &str, seeds: &[&str], f: impl FnMut(&str)) {
    fuzz_n(name, seeds, cases(), f)
}

/// [`fuzz`] with `n` cases (for large seeds).
fn fuzz_n(name: &str, seeds: &[&str], n: usize, mut f: impl FnMut(&str)) {
    let mut rng = Rng(seed() ^ name.len() as u64 ^ (name.as_bytes()[0] as u64) << 32);
    for i in 0..n {
        let text = input(&mut rng, seeds);
        if catch_unwind(AssertUnwindSafe(|| f(&text))).is_err() {
            panic!("{name} panicked on case {i} (seed {}): {text:?}", seed());
        }
    }
    println!("{name}: {n} cases, no panic");
}

fn line_count(text: &str) -> usize {
    text.lines().count()
}

#[test]
fn stat_parser() {
    fuzz("stat", &[STAT, STAT_ODD], |t| {
        if let Ok(st) = parse_stat(t) {
            assert!(st.comm.len() <= t.len());
        }
        let _ = parse_btime(t);
    });
}

#[test]
fn status_parser() {
    fuzz("status", &[STATUS, STATUS_ZOMBIE], |t| {
        let s = parse_status(t);
        if let Some(name) = s.name {
            assert!(name.len() <= t.len());
        }
    });
}

#[test]
fn limits_parser() {
    fuzz("limits", &[LIMITS], |t| {
        let _ = parse_nofile(t);
    });
}

#[test]
fn net_tcp_parser_and_summary() {
    fuzz("net/tcp", &[TCP, TCP6, TCP_ODD], |t| {
        let table = parse_net_tcp(t);
        assert!(table.sockets.len() + table.unparsed_lines as usize <= line_count(t));
        let sockets = table.sockets.len() as u64;
        let tcp = summarize(&table, leakwatch::sample::TcpTable::ProcNet, sockets, 3);
        let _ = serde_json::to_string(&tcp).expect("a summary serializes");
    });
}

#[test]
fn smaps_parsers() {
    fuzz("smaps_rollup", &[ROLLUP], |t| {
        let _ = parse_smaps_rollup(t);
    });
    // The smaps fixture is 40 KB: its first mappings (a thread stack and its guard, the
    // heap) for most cases, the whole file for a tenth.
    let head = &SMAPS[..SMAPS[..4000].rfind('\n').unwrap() + 1];
    fuzz("smaps (head)", &[head], check_heap);
    fuzz_n("smaps", &[SMAPS], cases() / 10, check_heap);
}

fn check_heap(t: &str) {
    let h = parse_smaps_heap(t);
    assert!((h.anon_mappings + h.stack_mappings) as usize <= line_count(t));
}

#[test]
fn cgroup_parsers() {
    fuzz(
        "proc/PID/cgroup",
        &[PROC_CGROUP_HYBRID, PROC_CGROUP_V2],
        |t| {
            let c = parse_proc_cgroup(t);
            assert!(c.v1.len() <= line_count(t));
        },
    );
    fuzz(
        "memory.stat/events",
        &[
            MEMORY_STAT_V1,
            MEMORY_STAT_V2,
            MEMORY_EVENTS_V2,
            OOM_CONTROL_V1,
        ],
        |t| assert!(flat_keyed(t).len() <= line_count(t)),
    );
    fuzz(
        "single values",
        &[
            MEMORY_MAX_V2,
            MEMORY_CURRENT_V2,
            LIMIT_V1,
            USAGE_V1,
            PIDS_MAX_V2,
        ],
        |t| {
            let _ = parse_u64(t);
            let _ = parse_limit(t);
        },
    );
    fuzz("memory.pressure", &[PRESSURE], |t| {
        if let Ok(p) = parse_pressure(t) {
            assert!(p.some.avg10.is_finite() && p.some.avg10 >= 0.0);
        }
    });
}

#[test]
fn syscall_parser_and_pollfds() {
    fuzz(
        "syscall",
        &[SYSCALL_RECV, SYSCALL_NOT_IN, SYSCALL_RUNNING],
        |t| {
            let _ = parse_syscall(t);
            let fds = parse_pollfds(t.as_bytes());
            assert!(fds.len() <= t.len() / 8);
        },
    );
}

#[test]
fn fd_links_and_cmdline() {
    fuzz(
        "fd link",
        &[
            "socket:[12345]",
            "pipe:[7]",
            "anon_inode:[eventfd]",
            "/dev/null (deleted)",
        ],
        |t| {
            let _ = classify_link(t.as_bytes());
            assert!(cmdline_text(t.as_bytes()).len() <= t.len());
        },
    );
}

#[test]
fn config_parser() {
    // Mostly valid TOML with odd values, so validation (stage two) is reached too.
    let mut errors = 0;
    fuzz("config", &[CONFIG_EXAMPLE], |t| {
        if let Err(e) = Config::parse(t, "fuzz.toml") {
            assert!(!e.to_string().is_empty());
            errors += 1;
        }
    });
    fuzz(
        "quantities and rates",
        &["512MiB", "10/min", "5MiB/min", "119KB/s", "1.5"],
        |t| {
            let _ = parse_quantity(t);
            let _ = parse_rate(t);
        },
    );
    assert!(
        errors > 0,
        "the mutations never broke the config: the fuzz is too weak"
    );
}

/// A fixture /proc with pid 4242 (its stat, status, limits, fds, net/tcp, smaps, cgroup,
/// one task) and a v2 cgroup tree, each file possibly mutated or missing.
fn fixture_tree(root: &Path, rng: &mut Rng) {
    let pid = FakeProc::new(root.join("proc")).pid(4242);
    let pid_dir = pid.dir().to_path_buf();
    let task = pid_dir.join("task/4242");
    let cg = root.join("cg");
    let service = cg.join("system.slice/lwt-hold.service");
    for d in [pid_dir.join("net"), task.clone(), service.clone()] {
        fs::create_dir_all(d).unwrap();
    }
    let stat = stat_line(4242, "fixture", 'S', STARTTIME_KERNEL_6_18);
    let files: Vec<(std::path::PathBuf, &str)> = vec![
        (root.join("proc/stat"), BOOT_STAT),
        (pid_dir.join("stat"), &stat),
        (pid_dir.join("status"), STATUS),
        (pid_dir.join("limits"), LIMITS),
        (pid_dir.join("cmdline"), "fixture\0--serve\0"),
        (pid_dir.join("net/tcp"), TCP),
        (pid_dir.join("net/tcp6"), TCP6),
        (pid_dir.join("smaps"), SMAPS),
        (pid_dir.join("smaps_rollup"), ROLLUP),
        (pid_dir.join("cgroup"), PROC_CGROUP_V2),
        (task.join("stat"), &stat),
        (task.join("status"), STATUS),
        (task.join("syscall"), SYSCALL_RECV),
        (cg.join("cgroup.controllers"), "cpu memory pids\n"),
        (service.join("memory.current"), MEMORY_CURRENT_V2),
        (service.join("memory.max"), MEMORY_MAX_V2),
        (service.join("memory.stat"), MEMORY_STAT_V2),
        (service.join("memory.events"), MEMORY_EVENTS_V2),
        (service.join("memory.pressure"), PRESSURE),
        (service.join("pids.current"), "3\n"),
        (service.join("pids.max"), PIDS_MAX_V2),
    ];
    for (path, text) in files {
        match rng.below(6) {
            0 => {
                let _ = fs::remove_file(path); // missing (FakeProc wrote proc/stat)
            }
            1 | 2 => {
                let mutated = input(rng, &[text]);
                fs::write(path, mutated).unwrap();
            }
            _ => fs::write(path, text).unwrap(),
        }
    }
    let links = [
        "socket:[10925]",
        "socket:[99]",
        "pipe:[7]",
        "/dev/null",
        "anon_inode:[eventfd]",
    ];
    let kept: Vec<(i32, &str)> = (0..).zip(links).filter(|_| rng.below(4) != 0).collect();
    pid.fds(kept);
}

#[test]
fn the_collector_on_mutated_and_missing_files() {
    let n = (cases() / 10).max(50);
    let mut rng = Rng(seed() ^ 0x7ee);
    let starttime = parse_stat(STAT).unwrap().starttime_ticks;
    let mut states = std::collections::BTreeMap::new();
    for i in 0..n {
        let tmp = tempfile::tempdir().unwrap();
        fixture_tree(tmp.path(), &mut rng);
        let opts = CollectOptions::default();
        let id = TargetId {
            pid: 4242,
            starttime_ticks: starttime,
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut c = Collector::new(tmp.path().join("proc"), tmp.path().join("cg"));
            let s = c.collect(id, &opts);
            let _ = c.collect(id, &opts);
            s
        }));
        let Ok(s) = outcome else {
            let kept = tmp.keep();
            panic!(
                "the collector panicked on tree {i}, kept at {}",
                kept.display()
            );
        };
        *states.entry(format!("{:?}", s.state)).or_insert(0) += 1;
        // Whatever it read, cgroup files never read as a wrong zero for a missing file.
        let _ = read_v2(&tmp.path().join("cg/system.slice/lwt-hold.service"));
        let _ = read_v1(&tmp.path().join("cg/system.slice/lwt-hold.service"));
        let _ = read_pids(&tmp.path().join("cg/system.slice/lwt-hold.service"));
        let _ = read_pressure(&tmp.path().join("cg/system.slice/lwt-hold.service"));
        let _ = serde_json::to_string(&s).expect("a sample serializes");
    }
    println!("collector: {n} mutated trees, no panic; states {states:?}");
    assert!(
        states.contains_key("Running"),
        "no tree was read as running: {states:?}"
    );
}
