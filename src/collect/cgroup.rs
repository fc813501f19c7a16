//! The target's cgroup: memory and pids controllers, v1, v2 and hybrid hosts
//! (Documentation/admin-guide/cgroup-v2.rst, cgroup-v1/memory.rst).
//!
//! STUB: to be written.

use std::path::Path;

use crate::error::{Unknown, UnknownKind};
use crate::sample::{CgroupMemory, CgroupPids};

/// The cgroup readings of one tick.
#[derive(Debug, Clone, PartialEq)]
pub struct CgroupReadings {
    pub memory: Result<CgroupMemory, Unknown>,
    pub pids: Result<CgroupPids, Unknown>,
}

/// Find the target's cgroup from `PROC/PID/cgroup` and read its memory and pids files under
/// `cgroup_root` (falling back to `PROC/PID/root/sys/fs/cgroup`).
pub fn collect_cgroup(_proc_root: &Path, _cgroup_root: &Path, _pid: i32) -> CgroupReadings {
    let u = Unknown::new(UnknownKind::Unsupported, "not implemented");
    CgroupReadings {
        memory: Err(u.clone()),
        pids: Err(u),
    }
}
