//! One [`Sample`] per tick: plain data, units in field names, `Option` where a source can fail.
//!
//! A value that could not be read is `None`, and the reason is kept in [`Sample::unknown`]
//! under the [`Source`] that failed. Nothing here is ever "0 because we could not look".
//!
//! This file holds the sample itself, the target's identity and state, the [`Source`]s and
//! the [`Limit`] several of them share; each source's fields are in their own file (`fds.rs`,
//! `tcp.rs`, `tcp_stall.rs`, `memory.rs`, `cgroup.rs`, `threads.rs`), re-exported here so
//! every type is `crate::sample::Name`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Unknown, UnknownKind};

mod cgroup;
mod fds;
mod memory;
mod tcp;
mod tcp_stall;
mod threads;

pub use cgroup::{
    AncestorPids, CgroupDir, CgroupMemory, CgroupPids, CgroupVersion, MemoryEvents, Pressure,
    PressureLine,
};
pub use fds::{FdLimit, FdTypes, Fds};
pub use memory::{Heap, Memory, SmapsRollup};
pub use tcp::{
    Peer, PeerCount, SocketsFrom, SocketsMethod, Tcp, TcpSocket, TcpState, TcpStates, TcpTable,
};
pub use tcp_stall::{CloseWaitAge, StalledPeer, StalledSocket, TcpStalled, WindowState};
pub use threads::{Stuck, StuckWorker, SyscallState, Task, ThreadStates, Threads};

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

/// The sources of a sample: the kernel files and calls one tick reads; keys of
/// [`Sample::unknown`] and the `source` label of the collector metrics. The one meaning of
/// "source" in the code ([`TcpTable`] and [`CgroupDir`] say which table or directory was
/// read); in `/status`, `source` and `limit_source` keep their names as an interface.
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

impl Sample {
    /// Whether `source` was read this tick: not a tick between the reads of a source read at
    /// its own cadence (`UnknownKind::NotCollected`), whose value, when the sample keeps one,
    /// is the last read, with its age.
    pub fn read_this_tick(&self, source: Source) -> bool {
        self.unknown
            .get(&source)
            .is_none_or(|u| u.kind != UnknownKind::NotCollected)
    }
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
