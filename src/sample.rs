//! One [`Sample`] per tick: plain data, units in field names, `Option` where a source can fail.
//!
//! A value that could not be read is `None`, and the reason is kept in [`Sample::unknown`]
//! under the [`Source`] that failed. Nothing here is ever "0 because we could not look".

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Unknown;

/// A process as leakwatch identifies it: the pid alone is reused, (pid, starttime) is not.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct TargetId {
    pub pid: i32,
    /// Field 22 of `/proc/PID/stat`: clock ticks after boot when the process started.
    pub starttime_ticks: u64,
}

impl fmt::Display for TargetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} (start {})", self.pid, self.starttime_ticks)
    }
}

/// Whether the target still runs at the end of the scan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    #[default]
    Running,
    /// Exited, not yet reaped: it has no fds, memory or threads worth reporting.
    Zombie,
    /// Exited (or the pid now belongs to another process).
    Gone,
}

/// The sources of a sample; keys of [`Sample::unknown`] and of collector metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Process,
    Fds,
    Limits,
    Tcp,
    Memory,
    SmapsRollup,
    Heap,
    CgroupMemory,
    CgroupPids,
    Threads,
    Stuck,
    /// Stalled TCP sockets (`tcp_info` from sock_diag, tracked across ticks).
    TcpStall,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Process => "process",
            Source::Fds => "fds",
            Source::Limits => "limits",
            Source::Tcp => "tcp",
            Source::Memory => "memory",
            Source::SmapsRollup => "smaps_rollup",
            Source::Heap => "heap",
            Source::CgroupMemory => "cgroup_memory",
            Source::CgroupPids => "cgroup_pids",
            Source::Threads => "threads",
            Source::Stuck => "stuck",
            Source::TcpStall => "tcp_stall",
        }
    }
}

/// Everything leakwatch learned about one target in one tick.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub target: TargetId,
    /// Wall clock at the start of the scan, milliseconds since the Unix epoch.
    pub taken_at_unix_ms: u64,
    /// CLOCK_MONOTONIC at the start of the scan, milliseconds; slopes use this.
    pub taken_at_mono_ms: u64,
    pub state: TargetState,
    pub process: Option<ProcessInfo>,
    pub fds: Option<Fds>,
    pub fd_limit: Option<FdLimit>,
    pub tcp: Option<Tcp>,
    pub memory: Option<Memory>,
    pub smaps_rollup: Option<SmapsRollup>,
    pub heap: Option<Heap>,
    pub cgroup_memory: Option<CgroupMemory>,
    pub cgroup_pids: Option<CgroupPids>,
    pub threads: Option<Threads>,
    /// Stuck socket workers; `None` when `task/*/syscall` cannot be read.
    pub stuck: Option<Stuck>,
    /// Stalled TCP sockets; `None` without `tcp_info` (the `/proc/PID/net/tcp` path).
    pub tcp_stalled: Option<TcpStalled>,
    /// The ages of the CLOSE_WAIT sockets; `None` when the TCP table is unknown.
    pub close_wait_age: Option<CloseWaitAge>,
    /// Why each missing section is missing.
    pub unknown: BTreeMap<Source, Unknown>,
    /// How long each collector took this tick, microseconds.
    pub duration_us: BTreeMap<Source, u64>,
}

/// From `/proc/PID/stat` and `cmdline`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub comm: String,
    /// NUL-separated arguments joined with spaces; empty for kernel threads and zombies.
    pub cmdline: String,
    /// One-letter scheduler state (`R`, `S`, `D`, `Z`, ...).
    pub state: char,
    pub ppid: i32,
    pub num_threads: u64,
    /// Real uid from `status`, when readable.
    pub uid: Option<u32>,
    /// Start time, milliseconds since the Unix epoch (from starttime and the boot time).
    pub started_unix_ms: Option<u64>,
}

/// A soft or hard resource limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Limit {
    Limited(u64),
    Unlimited,
}

impl Limit {
    /// The number, or `None` when unlimited.
    pub fn value(self) -> Option<u64> {
        match self {
            Limit::Limited(v) => Some(v),
            Limit::Unlimited => None,
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Limited(v) => write!(f, "{v}"),
            Limit::Unlimited => f.write_str("unlimited"),
        }
    }
}

impl Serialize for Limit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Limit::Limited(v) => s.serialize_u64(*v),
            Limit::Unlimited => s.serialize_str("unlimited"),
        }
    }
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(v) => Ok(Limit::Limited(v)),
            Raw::S(s) if s == "unlimited" => Ok(Limit::Unlimited),
            Raw::S(s) => Err(serde::de::Error::custom(format!(
                "expected a number or \"unlimited\", got {s:?}"
            ))),
        }
    }
}

/// The fd table of `/proc/PID/fd`. Partly known when only part may be read: the kernel's
/// count needs no rights at all, the listing CAP_DAC_READ_SEARCH (or the target's uid), the
/// types CAP_SYS_PTRACE as well; `Sample::unknown` then says what is missing and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fds {
    /// Open fds: the entries of `/proc/PID/fd` (what `ls` and `lsof` show).
    pub open: Option<u64>,
    /// fd numbers taken, from the `st_size` of `/proc/PID/fd` (Linux >= 6.2; `None` before,
    /// and on fixture trees). Includes numbers reserved by calls in progress (a thread
    /// blocked in `accept()` holds one before it has a socket), so it can exceed `open`: it
    /// is the count RLIMIT_NOFILE is checked against. Readable by any uid.
    pub allocated: Option<u64>,
    /// `None` when the links cannot be read.
    pub by_type: Option<FdTypes>,
    /// How old `by_type` is, ms: 0 when the links were read this tick; more when the tick
    /// took its sockets from the cgroup alone and the breakdown is the last one taken (every
    /// `fd_types_every`, and only when the count changed).
    #[serde(default)]
    pub by_type_age_ms: u64,
    /// Entries listed but closed before their link could be read (skipped, not an error).
    pub vanished: u64,
}

impl Fds {
    /// The fds that count against RLIMIT_NOFILE: `allocated` where the kernel gives it,
    /// else `open`.
    pub fn in_use(&self) -> Option<u64> {
        match (self.allocated, self.open) {
            (Some(a), Some(o)) => Some(a.max(o)),
            (a, o) => a.or(o),
        }
    }
}

/// Open fds by what they point at (`readlink /proc/PID/fd/N`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdTypes {
    /// `socket:[INODE]`
    pub socket: u64,
    /// `pipe:[INODE]`
    pub pipe: u64,
    /// `anon_inode:...` (eventfd, epoll, timerfd, signalfd, pidfd, ...)
    pub anon_inode: u64,
    /// A path: regular files, devices, directories.
    pub file: u64,
    pub other: u64,
}

/// `Max open files` from `/proc/PID/limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdLimit {
    pub soft: Limit,
    pub hard: Limit,
}

/// TCP socket states as the kernel numbers them (`include/net/tcp_states.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    /// A state number this build does not know.
    Unknown,
}

impl TcpState {
    pub const ALL: [TcpState; 11] = [
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::Closing,
    ];

    /// From the hex `st` column of `/proc/net/tcp`.
    pub fn from_kernel(n: u8) -> TcpState {
        match n {
            1..=11 => TcpState::ALL[usize::from(n) - 1],
            _ => TcpState::Unknown,
        }
    }

    /// The name used in metrics labels and JSON (`close_wait`).
    pub fn as_str(self) -> &'static str {
        match self {
            TcpState::Established => "established",
            TcpState::SynSent => "syn_sent",
            TcpState::SynRecv => "syn_recv",
            TcpState::FinWait1 => "fin_wait1",
            TcpState::FinWait2 => "fin_wait2",
            TcpState::TimeWait => "time_wait",
            TcpState::Close => "close",
            TcpState::CloseWait => "close_wait",
            TcpState::LastAck => "last_ack",
            TcpState::Listen => "listen",
            TcpState::Closing => "closing",
            TcpState::Unknown => "unknown",
        }
    }
}

/// Counts of the target's TCP sockets (v4 and v6) per state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpStates {
    pub established: u64,
    pub syn_sent: u64,
    pub syn_recv: u64,
    pub fin_wait1: u64,
    pub fin_wait2: u64,
    pub time_wait: u64,
    pub close: u64,
    pub close_wait: u64,
    pub last_ack: u64,
    pub listen: u64,
    pub closing: u64,
    pub unknown: u64,
}

impl TcpStates {
    pub fn get(&self, state: TcpState) -> u64 {
        match state {
            TcpState::Established => self.established,
            TcpState::SynSent => self.syn_sent,
            TcpState::SynRecv => self.syn_recv,
            TcpState::FinWait1 => self.fin_wait1,
            TcpState::FinWait2 => self.fin_wait2,
            TcpState::TimeWait => self.time_wait,
            TcpState::Close => self.close,
            TcpState::CloseWait => self.close_wait,
            TcpState::LastAck => self.last_ack,
            TcpState::Listen => self.listen,
            TcpState::Closing => self.closing,
            TcpState::Unknown => self.unknown,
        }
    }

    pub fn add(&mut self, state: TcpState) {
        let slot = match state {
            TcpState::Established => &mut self.established,
            TcpState::SynSent => &mut self.syn_sent,
            TcpState::SynRecv => &mut self.syn_recv,
            TcpState::FinWait1 => &mut self.fin_wait1,
            TcpState::FinWait2 => &mut self.fin_wait2,
            TcpState::TimeWait => &mut self.time_wait,
            TcpState::Close => &mut self.close,
            TcpState::CloseWait => &mut self.close_wait,
            TcpState::LastAck => &mut self.last_ack,
            TcpState::Listen => &mut self.listen,
            TcpState::Closing => &mut self.closing,
            TcpState::Unknown => &mut self.unknown,
        };
        *slot += 1;
    }

    pub fn total(&self) -> u64 {
        TcpState::ALL.iter().map(|s| self.get(*s)).sum::<u64>() + self.unknown
    }
}

/// One TCP socket of the target, joined from its fd table and the netns TCP table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpSocket {
    pub state: TcpState,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// `rx_queue`: bytes received, not yet read by the target (for LISTEN: the accept backlog).
    pub recv_queue_bytes: u64,
    /// `tx_queue`: bytes sent, not yet acknowledged by the peer.
    pub send_queue_bytes: u64,
    pub inode: u64,
}

/// Who is on the other end. Outbound: the peer's address and port. Inbound (the local port
/// is one the target listens on): the peer's address and the target's local port, since the
/// peer's ephemeral port would make every connection its own "peer".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Peer {
    pub ip: IpAddr,
    /// The remote port (outbound) or the target's listening port (inbound).
    pub port: u16,
    pub inbound: bool,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addr = SocketAddr::new(self.ip, self.port);
        if self.inbound {
            match self.ip {
                IpAddr::V4(ip) => write!(f, "{ip} -> local :{}", self.port),
                IpAddr::V6(ip) => write!(f, "[{ip}] -> local :{}", self.port),
            }
        } else {
            write!(f, "{addr}")
        }
    }
}

/// Sockets per peer, for the top-K lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerCount {
    pub peer: Peer,
    pub sockets: u64,
    pub recv_queue_bytes: u64,
    pub send_queue_bytes: u64,
}

/// Where the TCP table came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TcpSource {
    /// `/proc/PID/net/tcp` and `tcp6`: the target's network namespace.
    #[default]
    ProcNet,
    /// A NETLINK_SOCK_DIAG dump (leakwatch shares the target's network namespace).
    SockDiag,
}

/// How the target's sockets were told from other processes'.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SocketsFrom {
    /// The target's fd links (`socket:[INODE]`) joined with the TCP table.
    #[default]
    FdJoin,
    /// The target is alone in its cgroup: the table filtered by that cgroup is its own,
    /// with no fd walk.
    Cgroup,
}

/// Which way this tick's sockets came, and why (for `/status`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketsMethod {
    pub from: SocketsFrom,
    pub why: String,
}

/// The target's TCP sockets (only sockets in its fd table; other processes never count).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tcp {
    pub states: TcpStates,
    /// Sum of Recv-Q over the target's sockets, bytes.
    pub recv_queue_bytes: u64,
    /// Sum of Send-Q over the target's sockets, bytes.
    pub send_queue_bytes: u64,
    /// Peers with the most CLOSE_WAIT sockets, most first.
    pub top_close_wait_peers: Vec<PeerCount>,
    /// Peers with the most ESTABLISHED sockets, most first.
    pub top_established_peers: Vec<PeerCount>,
    /// Socket fds found in no TCP table (unix, UDP, netlink, ...).
    pub other_sockets: u64,
    /// Table lines that did not parse (skipped).
    pub unparsed_lines: u64,
    pub source: TcpSource,
    #[serde(default)]
    pub method: SocketsMethod,
}

/// Memory from `/proc/PID/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    /// VmRSS
    pub rss_bytes: Option<u64>,
    /// RssAnon
    pub anon_bytes: Option<u64>,
    /// RssFile
    pub file_bytes: Option<u64>,
    /// RssShmem
    pub shmem_bytes: Option<u64>,
    /// VmSwap
    pub swap_bytes: Option<u64>,
    /// VmHWM: the peak RSS.
    pub peak_rss_bytes: Option<u64>,
    /// VmSize
    pub virtual_bytes: Option<u64>,
}

/// `/proc/PID/smaps_rollup`: the sums of `smaps` without its per-mapping cost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmapsRollup {
    pub rss_bytes: Option<u64>,
    pub pss_bytes: Option<u64>,
    pub pss_anon_bytes: Option<u64>,
    pub pss_file_bytes: Option<u64>,
    pub pss_shmem_bytes: Option<u64>,
    pub private_dirty_bytes: Option<u64>,
    pub anonymous_bytes: Option<u64>,
    pub swap_bytes: Option<u64>,
}

/// The outside-in estimate of what malloc holds, from `/proc/PID/smaps`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heap {
    /// `brk_rss_bytes + anon_rss_bytes`.
    pub estimate_bytes: u64,
    /// Rss of the `[heap]` (brk) mapping.
    pub brk_rss_bytes: u64,
    /// Rss of anonymous private read-write mappings that are not stacks (malloc arenas and
    /// large allocations).
    pub anon_rss_bytes: u64,
    /// How many mappings went into `anon_rss_bytes`.
    pub anon_mappings: u64,
    /// Anonymous rw mappings left out as thread stacks (a guard page right below them).
    pub stack_mappings: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupVersion {
    V1,
    #[default]
    V2,
}

/// Which cgroupfs leakwatch read the target's cgroup through.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupSource {
    /// The directory whose files were read.
    pub dir: PathBuf,
    /// True when read through `/proc/PID/root/sys/fs/cgroup` (the target's own view, e.g. a
    /// sidecar in a private cgroup namespace), false for leakwatch's cgroup root.
    pub via_target_root: bool,
}

/// `memory.events` (v2), or `failcnt` and `oom_control` (v1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryEvents {
    pub low: Option<u64>,
    pub high: Option<u64>,
    /// v2 `max`; v1 `failcnt` (times the usage hit the limit).
    pub max: Option<u64>,
    pub oom: Option<u64>,
    pub oom_kill: Option<u64>,
}

/// One line of a PSI file: `some avg10=0.00 avg60=0.00 avg300=0.00 total=0`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PressureLine {
    /// Percent of wall time stalled over the last 10 s.
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    /// Total stall time, microseconds.
    pub total_us: u64,
}

/// `memory.pressure`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pressure {
    pub some: PressureLine,
    pub full: Option<PressureLine>,
}

/// The memory controller of the target's cgroup (the whole cgroup, not just the target).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CgroupMemory {
    pub version: CgroupVersion,
    /// The cgroup path as `/proc/PID/cgroup` names it.
    pub path: String,
    pub source: CgroupSource,
    /// v2 `memory.current`; v1 `memory.usage_in_bytes`.
    pub current_bytes: Option<u64>,
    /// v2 `memory.max`; v1 `memory.limit_in_bytes` (its huge "no limit" value is `Unlimited`).
    pub max: Option<Limit>,
    /// v2 `memory.high`; v1 has none.
    pub high: Option<Limit>,
    /// `current - inactive_file`: the kubelet's working set, what its eviction and OOM judge.
    pub working_set_bytes: Option<u64>,
    /// `memory.stat` anon (v1: total_rss).
    pub anon_bytes: Option<u64>,
    /// `memory.stat` file (v1: total_cache).
    pub file_bytes: Option<u64>,
    /// `memory.stat` sock: kernel socket buffers (v2 only).
    pub sock_bytes: Option<u64>,
    /// `memory.stat` inactive_file (v1: total_inactive_file).
    pub inactive_file_bytes: Option<u64>,
    pub events: Option<MemoryEvents>,
    /// v2 `memory.pressure` (on a hybrid host, from the unified tree).
    pub pressure: Option<Pressure>,
    /// The ancestor cgroup (its path in the hierarchy, as far up as leakwatch sees) whose
    /// `memory.max` (v1 `memory.limit_in_bytes`) is lower than every other on the way up:
    /// `max` is then that ancestor's, the limit the kernel enforces first (a slice's
    /// `MemoryMax=`, a pod-level limit above its containers). `None`: `max` is the cgroup's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_from: Option<String>,
    /// The same for `memory.high`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_from: Option<String>,
}

/// The pids controller of the target's cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupPids {
    pub version: CgroupVersion,
    pub source: CgroupSource,
    pub current: Option<u64>,
    /// The `pids.max` that leaves the fewest tasks on the way up (see `max_from`).
    pub max: Option<Limit>,
    /// The ancestor whose `pids.max` leaves fewer tasks than the cgroup's own (a slice's
    /// `TasksMax=`): `max` is then that ancestor's. `None`: `max` is the cgroup's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_from: Option<AncestorPids>,
}

/// An ancestor cgroup whose `pids.max` is the one the target's cgroup runs into first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AncestorPids {
    /// Its path in the hierarchy.
    pub path: String,
    /// Its `pids.current`: every task below it, the target's cgroup's and its siblings'.
    pub current: u64,
}

/// Threads by scheduler state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadStates {
    pub running: u64,
    pub sleeping: u64,
    pub disk_sleep: u64,
    pub stopped: u64,
    pub zombie: u64,
    pub other: u64,
}

/// What `/proc/PID/task/TID/syscall` said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyscallState {
    /// The thread is on a CPU.
    Running,
    /// Blocked, but not in a system call (e.g. a page fault).
    NotInSyscall,
    /// Blocked in system call `nr` with these six arguments.
    In { nr: i64, args: [u64; 6] },
}

/// One thread of the target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub tid: i32,
    pub name: String,
    pub state: char,
    pub voluntary_ctxt_switches: Option<u64>,
    pub nonvoluntary_ctxt_switches: Option<u64>,
    /// `None` when `syscall` cannot be read (needs ptrace rights).
    pub syscall: Option<SyscallState>,
    /// For a thread in `poll`/`ppoll`: the fds of its `struct pollfd` array, read from its
    /// memory (at most 16 entries; negative fds left out). `None` for other calls, larger
    /// arrays, or memory that could not be read.
    pub poll_fds: Option<Vec<i32>>,
}

/// `/proc/PID/task/*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Threads {
    pub count: u64,
    pub states: ThreadStates,
    pub tasks: Vec<Task>,
    /// Tasks that exited between the listing and the read (skipped).
    pub vanished: u64,
}

/// A worker blocked in one socket call, with no context switch, for at least `stuck_after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StuckWorker {
    pub tid: i32,
    pub name: String,
    /// The system call's name (`recvfrom`, `read`, `connect`, `poll`, ...).
    pub syscall: String,
    /// The fd it waits on.
    pub fd: i32,
    /// How long it has been seen in this same call, milliseconds.
    pub blocked_for_ms: u64,
    /// Inode of the socket the fd points at.
    pub socket_inode: u64,
    /// The TCP socket (state, peer), when the socket is TCP.
    pub socket: Option<TcpSocket>,
}

/// Stuck socket workers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stuck {
    pub count: u64,
    pub workers: Vec<StuckWorker>,
    /// The threshold used, milliseconds.
    pub stuck_after_ms: u64,
}

/// The window state of a stalled socket, from its `tcp_info`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowState {
    /// The peer's advertised receive window, bytes (`tcpi_snd_wnd`; Linux >= 5.4).
    pub peer_window_bytes: Option<u64>,
    /// Bytes written by the target and not yet sent (`tcpi_notsent_bytes`).
    pub notsent_bytes: Option<u64>,
    /// Backoff of the probe timer (`tcpi_backoff`): > 0 while zero-window probes go
    /// unanswered with a window.
    pub probe_backoff: u8,
    /// Share of the time with data to send held back by the peer's receive window
    /// (`tcpi_rwnd_limited / tcpi_busy_time`, percent).
    pub rwnd_limited_percent: Option<f64>,
}

/// One socket with data queued to send whose peer has acknowledged nothing new for at least
/// `stall_after`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StalledSocket {
    pub peer: Peer,
    pub state: TcpState,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub inode: u64,
    /// Send-Q: bytes written, not yet acknowledged.
    pub send_queue_bytes: u64,
    /// The write queue's memory (skmeminfo `wmem_queued`), when sent.
    pub write_memory_bytes: Option<u64>,
    /// How long `tcpi_bytes_acked` has not moved while data waited, milliseconds.
    pub stalled_for_ms: u64,
    pub window: WindowState,
}

/// Stalled sockets of one peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StalledPeer {
    pub peer: Peer,
    pub sockets: u64,
    pub send_queue_bytes: u64,
    pub write_memory_bytes: u64,
    /// The longest any of them has been stalled, milliseconds.
    pub longest_stalled_ms: u64,
    /// Of them, sockets whose peer advertises a zero window.
    pub zero_window: u64,
}

/// Stalled TCP sockets: data waits to be sent or acknowledged (Send-Q > 0) and the peer's
/// `tcpi_bytes_acked` has not moved for `stall_after`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TcpStalled {
    pub count: u64,
    /// Sum of their Send-Q, bytes.
    pub send_queue_bytes: u64,
    /// Sum of their write-queue memory (skmeminfo `wmem_queued`), bytes.
    pub write_memory_bytes: u64,
    /// Per peer, most sockets first (top-K).
    pub by_peer: Vec<StalledPeer>,
    /// The sockets, longest stalled first (at most [`TcpStalled::SHOWN`]).
    pub sockets: Vec<StalledSocket>,
    /// The threshold used, milliseconds.
    pub stall_after_ms: u64,
}

impl TcpStalled {
    /// How many stalled sockets are listed one by one.
    pub const SHOWN: usize = 20;
}

/// How long the target's CLOSE_WAIT sockets have been in CLOSE_WAIT (from their first
/// sighting in that state, per inode, across ticks).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseWaitAge {
    /// The age of the oldest, milliseconds; 0 when there is none.
    pub oldest_ms: u64,
    /// CLOSE_WAIT sockets at least `aged_after_ms` old.
    pub aged: u64,
    /// The threshold (`stuck_after`), milliseconds.
    pub aged_after_ms: u64,
}
