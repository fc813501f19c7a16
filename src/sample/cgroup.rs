//! The target's cgroup ([`Source::CgroupMemory`](super::Source::CgroupMemory),
//! [`Source::CgroupPids`](super::Source::CgroupPids)): its memory and pids controllers, v1 or
//! v2, and the ancestor whose limit the kernel enforces first.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Limit;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupVersion {
    V1,
    #[default]
    V2,
}

/// The directory leakwatch read the target's cgroup through (`source` in `/status`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupDir {
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
    pub source: CgroupDir,
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
    pub source: CgroupDir,
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
