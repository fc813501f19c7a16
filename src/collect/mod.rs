//! `collect`: the only code that reads /proc and cgroupfs.
//!
//! [`Collector::collect`] takes one [`Sample`] of one target. Each kernel source has its own
//! module with a pure parser over `&str` and a thin reader; this file only orders the reads
//! (the limits, the fds and their sockets, the memory, the cgroup, the threads: the fd scan
//! feeds the TCP join, both feed the stuck-worker check), times them and files every failure
//! as an [`Unknown`] under its [`Source`](crate::sample::Source). Where the target's sockets
//! come from (the cgroup's sock_diag dump, or the fd links joined with the table) is decided
//! in `whose_sockets.rs`.

pub mod bundle;
pub mod cgroup;
pub mod fd;
pub mod limits;
pub mod net_tcp;
pub mod smaps;
pub mod sock_diag;
pub mod sockets;
pub mod stat;
pub mod status;
pub mod task;
pub mod tcp_track;
mod whose_sockets;

use std::collections::HashMap;

// FxHash for the poll's own keys (socket inodes, fd numbers, peers): they come from the
// kernel, not from a client, so SipHash's resistance to chosen keys buys nothing here, and
// it cost a third of a poll's user-space instructions at 20,000 fds (callgrind).
use rustc_hash::FxHashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::clock::{mono_ms, unix_ms};
use crate::error::{ReadError, Unknown, UnknownKind};
use crate::sample::{ProcessInfo, Sample, Source, TargetId, TargetState};
use whose_sockets::{FdMemo, Sockets};

/// What to collect this tick.
#[derive(Debug, Clone)]
pub struct CollectOptions {
    /// Read `smaps` for the heap estimate (costly on big processes: a slower cadence).
    pub smaps: bool,
    /// How many peers the top-K lists keep.
    pub top_peers: usize,
    /// A worker blocked this long in one socket call is stuck; a CLOSE_WAIT socket this
    /// old is aged.
    pub stuck_after: Duration,
    /// A socket with data queued and nothing acknowledged this long is stalled.
    pub stall_after: Duration,
    /// How often the fd links are walked for the breakdown by type when the tick does not
    /// need them (the target alone in its cgroup), and only when the count changed.
    pub fd_types_every: Duration,
}

impl Default for CollectOptions {
    fn default() -> Self {
        CollectOptions {
            smaps: true,
            top_peers: 10,
            stuck_after: Duration::from_secs(120),
            stall_after: Duration::from_secs(60),
            fd_types_every: Duration::from_secs(60),
        }
    }
}

/// Reads targets under a proc root and a cgroup root (fixture trees in tests).
#[derive(Debug)]
pub struct Collector {
    proc_root: PathBuf,
    cgroup_root: PathBuf,
    /// One per target: a worker's "blocked since" survives between that target's ticks.
    stuck: HashMap<TargetId, task::StuckTracker>,
    /// One per target: stalled sockets and CLOSE_WAIT ages, across that target's ticks.
    tcp_track: HashMap<TargetId, tcp_track::TcpTracker>,
    btime_s: Option<u64>,
    ticks_per_s: u64,
    tcp: sockets::TcpReader,
    /// One per target: the last breakdown of its fds, and whether its cgroup's sockets
    /// were found to be its own.
    fd_memo: HashMap<TargetId, FdMemo>,
    /// One per target: the last heap estimate read from its smaps, for the ticks between
    /// reads. Keyed by the process (pid and start time): a new process starts with none.
    heap_memo: HashMap<TargetId, HeapRead>,
}

/// The heap estimate of one smaps read, and when it was taken (CLOCK_MONOTONIC ms).
#[derive(Debug)]
struct HeapRead {
    heap: crate::sample::Heap,
    at_ms: u64,
}

impl Collector {
    pub fn new(proc_root: impl Into<PathBuf>, cgroup_root: impl Into<PathBuf>) -> Self {
        let proc_root = proc_root.into();
        let btime_s = std::fs::read_to_string(proc_root.join("stat"))
            .ok()
            .and_then(|t| stat::parse_btime(&t));
        let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK);
        Collector {
            proc_root,
            cgroup_root: cgroup_root.into(),
            stuck: HashMap::new(),
            tcp_track: HashMap::new(),
            btime_s,
            ticks_per_s: ticks
                .ok()
                .flatten()
                .and_then(|t| u64::try_from(t).ok())
                .filter(|t| *t > 0)
                .unwrap_or(100),
            tcp: sockets::TcpReader::default(),
            fd_memo: HashMap::new(),
            heap_memo: HashMap::new(),
        }
    }

    pub fn proc_root(&self) -> &Path {
        &self.proc_root
    }

    pub fn cgroup_root(&self) -> &Path {
        &self.cgroup_root
    }

    /// Take one sample of `target`. Never fails: what cannot be read is unknown, with its
    /// reason; a target that is gone or a zombie is a [`TargetState`].
    pub fn collect(&mut self, target: TargetId, opts: &CollectOptions) -> Sample {
        let mut s = Sample {
            target,
            taken_at_unix_ms: unix_ms(),
            taken_at_mono_ms: mono_ms(),
            ..Sample::default()
        };
        let pid_dir = self.proc_root.join(target.pid.to_string());

        let started = Instant::now();
        let stat = match stat::read_stat(&pid_dir) {
            Ok(st) if st.starttime_ticks == target.starttime_ticks => st,
            Ok(_) => return self.gone(s, "the pid now belongs to another process"),
            Err(e @ (ReadError::Missing { .. } | ReadError::Gone { .. })) => {
                return self.gone(s, &e.to_string())
            }
            Err(e) => {
                s.unknown.insert(Source::Process, Unknown::from(e));
                return s;
            }
        };
        let cmdline = read_cmdline(&pid_dir);
        s.process = Some(ProcessInfo {
            comm: stat.comm.clone(),
            cmdline,
            state: stat.state,
            ppid: stat.ppid,
            num_threads: stat.num_threads,
            uid: None,
            started_unix_ms: self
                .btime_s
                .map(|b| start_ms(b, stat.starttime_ticks, self.ticks_per_s)),
        });
        s.duration_us.insert(Source::Process, micros(started));
        if stat.state == 'Z' || stat.state == 'X' {
            // It has exited: nothing more to track. (A restart is often seen first as a
            // zombie, and the old target is never collected again to be seen gone.)
            self.stuck.remove(&target);
            self.tcp_track.remove(&target);
            self.fd_memo.remove(&target);
            self.heap_memo.remove(&target);
            s.state = TargetState::Zombie;
            let u = Unknown::new(
                UnknownKind::Zombie,
                format!(
                    "pid {} has exited and is not yet reaped (zombie)",
                    target.pid
                ),
            );
            for src in ALL_SECTIONS {
                s.unknown.insert(src, u.clone());
            }
            return s;
        }

        self.collect_sections(&mut s, &pid_dir, opts);

        // The target may have exited during the scan: then what was read is partial.
        match stat::read_stat(&pid_dir) {
            Ok(st) if st.starttime_ticks == target.starttime_ticks && st.state != 'Z' => {}
            Ok(st) if st.starttime_ticks == target.starttime_ticks => s.state = TargetState::Zombie,
            _ => {
                s.state = TargetState::Gone;
                self.stuck.remove(&target);
                self.tcp_track.remove(&target);
                self.fd_memo.remove(&target);
                self.heap_memo.remove(&target);
                self.tcp.forget(&target);
            }
        }
        s
    }

    fn collect_sections(&mut self, s: &mut Sample, pid_dir: &Path, opts: &CollectOptions) {
        s.fd_limit = timed(s, Source::Limits, || limits::read_nofile(pid_dir));
        let sockets = self.fds_and_sockets(s, pid_dir, opts);
        memory(s, pid_dir);
        self.heap(s, pid_dir, opts);
        let started = Instant::now();
        let cg = cgroup::collect_cgroup(&self.proc_root, &self.cgroup_root, s.target.pid);
        s.duration_us.insert(Source::CgroupMemory, micros(started));
        s.cgroup_memory = keep(s, Source::CgroupMemory, cg.memory);
        s.cgroup_pids = keep(s, Source::CgroupPids, cg.pids);
        self.threads(s, pid_dir, opts, sockets.as_ref());
    }

    /// The threads, and the workers stuck in a socket call (which need the fd links).
    fn threads(
        &mut self,
        s: &mut Sample,
        pid_dir: &Path,
        opts: &CollectOptions,
        sockets: Option<&Sockets>,
    ) {
        let started = Instant::now();
        match task::read_threads(pid_dir) {
            Ok(scan) => {
                if let Some(e) = &scan.syscall_error {
                    s.unknown.insert(Source::Stuck, Unknown::from(e));
                } else if let Some(sockets) = sockets {
                    let fd_inodes: FxHashMap<i32, u64> =
                        sockets.fds.iter().flatten().copied().collect();
                    let lookup = task::SocketLookup {
                        fd_inodes: &fd_inodes,
                        links: sockets.fds.is_none().then_some(pid_dir),
                        tcp_by_inode: &sockets.tcp_by_inode,
                    };
                    let after = u64::try_from(opts.stuck_after.as_millis()).unwrap_or(u64::MAX);
                    let tracker = self.stuck.entry(s.target).or_default();
                    let stuck =
                        tracker.track(s.target, &scan.threads, s.taken_at_mono_ms, after, &lookup);
                    s.stuck = Some(stuck);
                } else {
                    // Without the fd links no worker can be tied to a socket: unknown, not 0.
                    let why = links_unknown(s, "stuck workers' sockets");
                    s.unknown.insert(Source::Stuck, why);
                }
                s.threads = Some(scan.threads);
            }
            Err(e) => {
                s.unknown.insert(Source::Threads, Unknown::from(&e));
                s.unknown.insert(Source::Stuck, Unknown::from(e));
            }
        }
        s.duration_us.insert(Source::Threads, micros(started));
    }
}

/// `status` (memory and uid) and `smaps_rollup`, read every tick.
fn memory(s: &mut Sample, pid_dir: &Path) {
    if let Some(st) = timed(s, Source::Memory, || status::read_status(pid_dir)) {
        s.memory = Some(st.memory);
        if let Some(p) = s.process.as_mut() {
            p.uid = st.uid;
        }
    }
    s.smaps_rollup = timed(s, Source::SmapsRollup, || smaps::read_smaps_rollup(pid_dir));
}

impl Collector {
    /// The heap estimate from `smaps`, at its own cadence. Between reads the sample keeps
    /// the last estimate read of this process, with its age (`Heap::age_ms`), and says
    /// `not_collected` for the heap: /metrics and /status show the value, the judge takes
    /// no new point from it. A read that fails leaves the heap unknown, and so do the ticks
    /// after it until the next read: an older value is not carried past an error.
    fn heap(&mut self, s: &mut Sample, pid_dir: &Path, opts: &CollectOptions) {
        if opts.smaps {
            s.heap = timed(s, Source::Heap, || smaps::read_heap(pid_dir));
            match &s.heap {
                Some(heap) => {
                    let read = HeapRead {
                        heap: heap.clone(),
                        at_ms: s.taken_at_mono_ms,
                    };
                    self.heap_memo.insert(s.target, read);
                }
                None => {
                    self.heap_memo.remove(&s.target);
                }
            }
            return;
        }
        let last = self.heap_memo.get(&s.target);
        s.heap = last.map(|r| crate::sample::Heap {
            age_ms: s.taken_at_mono_ms.saturating_sub(r.at_ms),
            ..r.heap.clone()
        });
        let why = match &s.heap {
            Some(h) => format!(
                "smaps is read at a slower cadence: the heap shown is the last read, {} ago",
                crate::units::duration_ms(h.age_ms)
            ),
            None => "smaps is read at a slower cadence".to_string(),
        };
        s.unknown
            .insert(Source::Heap, Unknown::new(UnknownKind::NotCollected, why));
    }
}

/// Sockets are found through the fd links: say why those are unknown.
fn links_unknown(s: &Sample, what: &str) -> Unknown {
    let why = s
        .unknown
        .get(&Source::Fds)
        .map_or("unknown".to_string(), |u| u.message.clone());
    let kind = s
        .unknown
        .get(&Source::Fds)
        .map_or(UnknownKind::NotCollected, |u| u.kind);
    Unknown::new(
        kind,
        format!("the target's {what} are found through its fd links: {why}"),
    )
}

/// Every section a live target has, for marking them all unknown at once.
const ALL_SECTIONS: [Source; 11] = [
    Source::Fds,
    Source::Limits,
    Source::Tcp,
    Source::Memory,
    Source::SmapsRollup,
    Source::Heap,
    Source::CgroupMemory,
    Source::CgroupPids,
    Source::Threads,
    Source::Stuck,
    Source::TcpStall,
];

impl Collector {
    /// The target is gone: forget what was tracked for it.
    fn gone(&mut self, s: Sample, why: &str) -> Sample {
        self.stuck.remove(&s.target);
        self.tcp_track.remove(&s.target);
        self.fd_memo.remove(&s.target);
        self.heap_memo.remove(&s.target);
        self.tcp.forget(&s.target);
        mark_gone(s, why)
    }
}

fn mark_gone(mut s: Sample, why: &str) -> Sample {
    s.state = TargetState::Gone;
    s.unknown.insert(
        Source::Process,
        Unknown::new(
            UnknownKind::Gone,
            format!("target {} is gone: {why}", s.target),
        ),
    );
    s
}

/// Run one reader, record its duration, and file its error as unknown.
fn timed<T>(s: &mut Sample, src: Source, f: impl FnOnce() -> Result<T, ReadError>) -> Option<T> {
    let started = Instant::now();
    let r = f();
    s.duration_us.insert(src, micros(started));
    keep(s, src, r.map_err(Unknown::from))
}

fn keep<T>(s: &mut Sample, src: Source, r: Result<T, Unknown>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(u) => {
            s.unknown.insert(src, u);
            None
        }
    }
}

fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Start time in ms since the epoch, from the boot time and the start in clock ticks
/// (saturating: odd kernel text must not overflow).
fn start_ms(btime_s: u64, starttime_ticks: u64, ticks_per_s: u64) -> u64 {
    let since_boot_ms = u128::from(starttime_ticks) * 1000 / u128::from(ticks_per_s.max(1));
    let ms = u128::from(btime_s) * 1000 + since_boot_ms;
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// `PID_DIR/cmdline` as text; empty when unreadable (kernel threads, zombies, a race).
pub fn read_cmdline(pid_dir: &Path) -> String {
    std::fs::read(pid_dir.join("cmdline"))
        .map(|b| cmdline_text(&b))
        .unwrap_or_default()
}

/// `cmdline` is NUL-separated; show it space-separated.
pub fn cmdline_text(raw: &[u8]) -> String {
    let trimmed = raw.strip_suffix(b"\0").unwrap_or(raw);
    String::from_utf8_lossy(trimmed).replace('\0', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustc_hash::FxHashSet;

    #[test]
    fn sets_and_maps_behave_like_the_std_ones() {
        let mut s: FxHashSet<u64> = (0..10_000u64).map(|i| i * 3 + 1_000_000).collect();
        assert_eq!(s.len(), 10_000);
        assert!(s.contains(&1_000_003) && !s.contains(&1_000_002));
        assert!(s.remove(&1_000_000));
        let m: FxHashMap<std::net::IpAddr, u32> = [("127.0.0.1", 1), ("::1", 2)]
            .into_iter()
            .map(|(a, n)| (a.parse().unwrap(), n))
            .collect();
        assert_eq!(m[&"::1".parse::<std::net::IpAddr>().unwrap()], 2);
    }

    /// Regression: a target seen exiting as a zombie (the usual sight of a restart) kept its
    /// stuck-worker tracker forever, a few KiB per restart.
    #[test]
    fn a_zombie_target_forgets_its_stuck_tracker() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let pid = child.id() as i32;
        let stat = stat::read_stat(Path::new(&format!("/proc/{pid}"))).expect("stat");
        let target = TargetId {
            pid,
            starttime_ticks: stat.starttime_ticks,
        };
        let mut c = Collector::new("/proc", "/sys/fs/cgroup");
        let opts = CollectOptions::default();
        let s = c.collect(target, &opts);
        let tracked = c.stuck.contains_key(&target);
        // SIGKILL without reaping: a zombie until `wait`.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let zombie = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            stat::read_stat(Path::new(&format!("/proc/{pid}"))).is_ok_and(|st| st.state == 'Z')
        });
        let z = c.collect(target, &opts);
        let _ = child.wait();
        assert!(zombie, "the child never showed as a zombie");
        if s.stuck.is_some() {
            assert!(tracked, "a running target is tracked");
        }
        assert_eq!(z.state, TargetState::Zombie);
        assert!(c.stuck.is_empty(), "the zombie's tracker was kept");
    }

    #[test]
    fn start_time_from_boot_time_and_ticks() {
        assert_eq!(super::start_ms(1_000, 250, 100), 1_002_500);
        assert_eq!(super::start_ms(u64::MAX, u64::MAX, 100), u64::MAX);
        assert_eq!(
            super::start_ms(5, 7, 0),
            12_000,
            "0 ticks per second is taken as 1"
        );
    }
}
