//! The target's cgroup: memory and pids controllers, v1, v2 and hybrid hosts
//! (Documentation/admin-guide/cgroup-v2.rst, Documentation/admin-guide/cgroup-v1/memory.rst).
//!
//! `PROC/PID/cgroup` names the target's cgroups ([`parse`]); [`locate`] finds their
//! directories under the cgroup root, or through `PROC/PID/root/sys/fs/cgroup` when the
//! target is outside our cgroup namespace; [`memory`] reads the files. Which hierarchy serves
//! a controller follows `PROC/PID/cgroup`: a v1 line naming `memory` (or `pids`) means v1
//! (on a hybrid host the PSI file still comes from the unified tree); otherwise the cgroup2
//! tree, if the controller is enabled for the cgroup (its `cgroup.controllers`).
//!
//! Limits are read up the path too, as far as leakwatch sees it: a limit on an ancestor
//! (a systemd slice, a Kubernetes pod above its containers) bounds the whole subtree, so the
//! lowest `memory.max`/`memory.high` (v1 `memory.limit_in_bytes`) and the `pids.max` leaving
//! the fewest tasks are the target's, with the ancestor named in `max_from`/`high_from`.

pub mod locate;
pub mod memory;
pub mod parse;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use crate::error::{read_to_string, ReadError, Unknown, UnknownKind};
use crate::sample::{AncestorPids, CgroupMemory, CgroupPids, CgroupVersion, Limit};
use locate::{locate, Hierarchy, Located, Roots};
use parse::ProcCgroup;

/// The cgroup readings of one tick.
#[derive(Debug, Clone, PartialEq)]
pub struct CgroupReadings {
    pub memory: Result<CgroupMemory, Unknown>,
    pub pids: Result<CgroupPids, Unknown>,
}

/// Find the target's cgroup from `PROC/PID/cgroup` and read its memory and pids files under
/// `cgroup_root` (falling back to `PROC/PID/root/sys/fs/cgroup`).
pub fn collect_cgroup(proc_root: &Path, cgroup_root: &Path, pid: i32) -> CgroupReadings {
    let pid_dir = proc_root.join(pid.to_string());
    let cg = match read_proc_cgroup(&pid_dir) {
        Ok(cg) => cg,
        Err(e) => {
            let u = Unknown::from(e);
            return CgroupReadings {
                memory: Err(u.clone()),
                pids: Err(u),
            };
        }
    };
    let roots = Roots::new(proc_root, cgroup_root, pid);
    let proc_file = pid_dir.join("cgroup");
    let readings = CgroupReadings {
        memory: read_memory(&cg, &roots, &proc_file),
        pids: read_pids(&cg, &roots, &proc_file),
    };
    // A target that exited mid-read leaves odd errors behind (its cgroup removed, its root
    // gone): say what happened instead.
    if (readings.memory.is_err() || readings.pids.is_err()) && !pid_dir.exists() {
        let u = Unknown::new(
            UnknownKind::Gone,
            format!("{}: the process is gone", pid_dir.display()),
        );
        return CgroupReadings {
            memory: readings.memory.map_err(|_| u.clone()),
            pids: readings.pids.map_err(|_| u),
        };
    }
    readings
}

/// The cgroup2 id (the inode of its directory, which sock_diag reports for each socket) of
/// the target's cgroup when the target is the only process in it (`cgroup.procs` lists its
/// pid alone); else why not, for `/status`. A container beside a sidecar and a service's
/// main process are alone; then every socket charged to the cgroup is the target's.
pub fn sole_member(proc_root: &Path, cgroup_root: &Path, pid: i32) -> Result<u64, String> {
    let pid_dir = proc_root.join(pid.to_string());
    let cg = read_proc_cgroup(&pid_dir).map_err(|e| e.to_string())?;
    let Some(path) = cg.v2.as_deref() else {
        return Err(format!(
            "{} names no cgroup2 path, and sockets carry cgroup2 ids",
            pid_dir.join("cgroup").display()
        ));
    };
    let roots = Roots::new(proc_root, cgroup_root, pid);
    let at = locate(&roots, Hierarchy::V2, path).map_err(|u| u.message)?;
    if at.is_host_root() {
        return Err("the target is in the root cgroup, with every other process".to_string());
    }
    let procs_file = at.source.dir.join("cgroup.procs");
    let procs = read_to_string(&procs_file).map_err(|e| e.to_string())?;
    let mut members = procs.split_whitespace();
    let me = pid.to_string();
    match (members.next(), members.next()) {
        (Some(only), None) if only == me => {}
        (None, _) => return Err(format!("{} does not list the target", procs_file.display())),
        _ => {
            let n = procs.split_whitespace().count();
            return Err(format!(
                "{n} processes share cgroup {path} ({})",
                procs_file.display()
            ));
        }
    }
    let meta = std::fs::metadata(&at.source.dir)
        .map_err(|e| format!("{}: {e}", at.source.dir.display()))?;
    Ok(std::os::unix::fs::MetadataExt::ino(&meta))
}

/// `PID_DIR/cgroup`; a missing file means the process is gone.
fn read_proc_cgroup(pid_dir: &Path) -> Result<ProcCgroup, ReadError> {
    let path = pid_dir.join("cgroup");
    match read_to_string(&path) {
        Ok(text) => Ok(parse::parse_proc_cgroup(&text)),
        Err(ReadError::Missing { path }) => Err(ReadError::Gone { path }),
        Err(e) => Err(e),
    }
}

fn read_memory(cg: &ProcCgroup, roots: &Roots, proc_file: &Path) -> Result<CgroupMemory, Unknown> {
    if let Some(path) = cg.v1_path("memory") {
        let at = locate(roots, Hierarchy::V1("memory"), path)?;
        let mut m = memory::read_v1(&at.source.dir).map_err(|e| at_root(e, &at, "memory"))?;
        // Hybrid host: PSI lives in the unified tree.
        m.pressure = cg
            .v2
            .as_deref()
            .and_then(|p| locate(roots, Hierarchy::V2, p).ok())
            .and_then(|v2| memory::read_pressure(&v2.source.dir));
        return Ok(finish(m, path, at));
    }
    let Some(path) = cg.v2.as_deref() else {
        return Err(no_controller("memory", proc_file));
    };
    let at =
        locate(roots, Hierarchy::V2, path).map_err(|u| v2_unsupported(u, "memory", proc_file))?;
    require_controller(&at, "memory", path)?;
    let m = memory::read_v2(&at.source.dir).map_err(|e| at_root(e, &at, "memory"))?;
    Ok(finish(m, path, at))
}

fn finish(mut m: CgroupMemory, path: &str, at: Located) -> CgroupMemory {
    lowest_memory_limits(&mut m, &at);
    m.path = path.to_string();
    m.source = at.source;
    m
}

/// The ancestors of a located cgroup that leakwatch can see, nearest first: its parent up to
/// the root of the hierarchy it was found in (through a target's namespaced mount, that
/// mount's root), each with its path in that hierarchy (`/system.slice`, `/`).
fn ancestors(at: &Located) -> Vec<(PathBuf, String)> {
    let Ok(rel) = at.source.dir.strip_prefix(&at.mount) else {
        return Vec::new();
    };
    let mut rel = rel.to_path_buf();
    let mut out = Vec::new();
    while rel.pop() {
        out.push((at.mount.join(&rel), format!("/{}", rel.display())));
    }
    out
}

/// A limit on an ancestor applies to the whole subtree: a slice's `MemoryMax=` with none on
/// the service, a pod's limit above its containers. `max` and `high` become the lowest set
/// along the path, and `max_from`/`high_from` name the ancestor when it is not the cgroup's
/// own. (The lowest limit, not the least headroom: siblings' usage moves every tick.)
fn lowest_memory_limits(m: &mut CgroupMemory, at: &Located) {
    for (dir, path) in ancestors(at) {
        let (max, high) = memory::read_limits(&dir, m.version);
        if lower(max, m.max) {
            m.max = max;
            m.max_from = Some(path.clone());
        }
        if lower(high, m.high) {
            m.high = high;
            m.high_from = Some(path);
        }
    }
}

/// True when `candidate` is a limit below `current` (or `current` is not known).
fn lower(candidate: Option<Limit>, current: Option<Limit>) -> bool {
    match (candidate, current) {
        (Some(Limit::Limited(c)), Some(Limit::Limited(o))) => c < o,
        (Some(Limit::Limited(_)), _) => true,
        _ => false,
    }
}

/// The `pids.max` the target's cgroup runs into first: the one leaving the fewest tasks
/// (`max - current`) along the path, since an ancestor's counts its siblings' tasks too.
fn tightest_pids_limit(p: &mut CgroupPids, at: &Located) {
    let room = |max: Option<Limit>, current: Option<u64>| match max {
        Some(Limit::Limited(m)) => Some(m.saturating_sub(current.unwrap_or(0))),
        _ => None,
    };
    let mut best = room(p.max, p.current);
    for (dir, path) in ancestors(at) {
        // The root cgroup has neither file.
        let Ok((current, max)) = memory::read_pids(&dir) else {
            continue;
        };
        let r = room(max, Some(current));
        if r.is_some() && best.is_none_or(|b| r < Some(b)) {
            best = r;
            p.max = max;
            p.max_from = Some(AncestorPids { path, current });
        }
    }
}

fn read_pids(cg: &ProcCgroup, roots: &Roots, proc_file: &Path) -> Result<CgroupPids, Unknown> {
    let (version, at) = if let Some(path) = cg.v1_path("pids") {
        (
            CgroupVersion::V1,
            locate(roots, Hierarchy::V1("pids"), path)?,
        )
    } else if let Some(path) = cg.v2.as_deref() {
        let at =
            locate(roots, Hierarchy::V2, path).map_err(|u| v2_unsupported(u, "pids", proc_file))?;
        require_controller(&at, "pids", path)?;
        (CgroupVersion::V2, at)
    } else {
        return Err(no_controller("pids", proc_file));
    };
    let (current, max) = memory::read_pids(&at.source.dir).map_err(|e| at_root(e, &at, "pids"))?;
    let mut p = CgroupPids {
        version,
        source: at.source.clone(),
        current: Some(current),
        max,
        max_from: None,
    };
    tightest_pids_limit(&mut p, &at);
    Ok(p)
}

/// The controller must be enabled for the cgroup: listed in its `cgroup.controllers` (or, if
/// that cannot be read, the hierarchy root's).
fn require_controller(at: &Located, controller: &str, path: &str) -> Result<(), Unknown> {
    let own = at.source.dir.join("cgroup.controllers");
    let (file, text) = match read_to_string(&own) {
        Ok(t) => (own, t),
        Err(_) => {
            let root = at.mount.join("cgroup.controllers");
            let text = read_to_string(&root).map_err(Unknown::from)?;
            (root, text)
        }
    };
    if text.split_whitespace().any(|c| c == controller) {
        return Ok(());
    }
    let listed = text.trim();
    Err(Unknown::new(
        UnknownKind::Unsupported,
        format!(
            "the {controller} controller is not enabled for cgroup {path}: {} lists {}",
            file.display(),
            if listed.is_empty() {
                "no controllers"
            } else {
                listed
            }
        ),
    ))
}

/// A required file that is missing in the real root cgroup, which has no `*.current` files.
fn at_root(e: ReadError, at: &Located, controller: &str) -> Unknown {
    match e {
        ReadError::Missing { path } if at.is_host_root() => Unknown::new(
            UnknownKind::Unsupported,
            format!(
                "the target is in the root {controller} cgroup, which has no {}",
                path.display()
            ),
        ),
        e => Unknown::from(e),
    }
}

fn no_controller(controller: &str, proc_file: &Path) -> Unknown {
    Unknown::new(
        UnknownKind::Unsupported,
        format!(
            "no {controller} controller: {} names neither a v1 {controller} hierarchy nor a \
             cgroup2 path",
            proc_file.display()
        ),
    )
}

/// No cgroup2 tree where a v2-only target needs one: there is no such controller here.
fn v2_unsupported(u: Unknown, controller: &str, proc_file: &Path) -> Unknown {
    if u.kind != UnknownKind::Unsupported {
        return u;
    }
    Unknown::new(
        UnknownKind::Unsupported,
        format!(
            "no {controller} controller: {} names no v1 {controller} hierarchy, and {}",
            proc_file.display(),
            u.message
        ),
    )
}
