//! The memory and pids files of one cgroup directory, v2 and v1.
//!
//! v2 (Documentation/admin-guide/cgroup-v2.rst "Memory", "PID"): `memory.current`, `.max`,
//! `.high`, `.stat`, `.events`, `.pressure`; `pids.current`, `pids.max`.
//! v1 (Documentation/admin-guide/cgroup-v1/memory.rst, pids.rst): `memory.usage_in_bytes`,
//! `.limit_in_bytes`, `.stat` (hierarchical `total_*` keys), `.failcnt`, `.oom_control`,
//! `.kmem.tcp.usage_in_bytes` (socket memory: v2 has it as `memory.stat` `sock`);
//! `pids.current`, `pids.max`.
//!
//! Only the usage file is required: without it the section is unknown. Every other file is
//! optional field by field (no `memory.high` on v1, no `memory.pressure` without PSI).

use std::collections::BTreeMap;
use std::path::Path;

use super::parse::{flat_keyed, parse_limit, parse_pressure, parse_u64, v1_limit};
use crate::error::{read_to_string, ReadError};
use crate::sample::{CgroupMemory, CgroupVersion, Limit, MemoryEvents, Pressure};

/// Read `dir`'s v2 memory files. `version`, `path` and `source` are left for the caller.
pub fn read_v2(dir: &Path) -> Result<CgroupMemory, ReadError> {
    let current = read_parsed(&dir.join("memory.current"), parse_u64)?;
    let stat = optional(&dir.join("memory.stat"), |t| Ok(owned(flat_keyed(t))));
    let stat = stat.as_ref();
    let key = |k: &str| stat.and_then(|s| s.get(k).copied());
    let inactive_file = key("inactive_file");
    let events = optional(&dir.join("memory.events"), |t| {
        let e = flat_keyed(t);
        let k = |name: &str| e.get(name).copied();
        Ok(MemoryEvents {
            low: k("low"),
            high: k("high"),
            max: k("max"),
            oom: k("oom"),
            oom_kill: k("oom_kill"),
        })
    });
    Ok(CgroupMemory {
        version: CgroupVersion::V2,
        current_bytes: Some(current),
        max: optional(&dir.join("memory.max"), parse_limit),
        high: optional(&dir.join("memory.high"), parse_limit),
        working_set_bytes: inactive_file.map(|i| current.saturating_sub(i)),
        anon_bytes: key("anon"),
        file_bytes: key("file"),
        sock_bytes: key("sock"),
        inactive_file_bytes: inactive_file,
        events,
        pressure: read_pressure(dir),
        ..CgroupMemory::default()
    })
}

/// Read `dir`'s v1 memory files. v1 has no PSI file of its own: the caller adds the
/// pressure from the unified tree when a hybrid host has one.
pub fn read_v1(dir: &Path) -> Result<CgroupMemory, ReadError> {
    let current = read_parsed(&dir.join("memory.usage_in_bytes"), parse_u64)?;
    let stat = optional(&dir.join("memory.stat"), |t| Ok(owned(flat_keyed(t))));
    // Hierarchical totals (this cgroup and its children), like the usage; the local keys
    // only when a kernel has no totals.
    let key = |k: &str| {
        let s = stat.as_ref()?;
        s.get(&format!("total_{k}")).or_else(|| s.get(k)).copied()
    };
    let inactive_file = key("inactive_file");
    let failcnt = optional(&dir.join("memory.failcnt"), parse_u64);
    let oom_kill = optional(&dir.join("memory.oom_control"), |t| {
        flat_keyed(t)
            .get("oom_kill")
            .copied()
            .ok_or_else(|| "no oom_kill line".to_string())
    });
    let events = (failcnt.is_some() || oom_kill.is_some()).then_some(MemoryEvents {
        max: failcnt,
        oom_kill,
        ..MemoryEvents::default()
    });
    Ok(CgroupMemory {
        version: CgroupVersion::V1,
        current_bytes: Some(current),
        max: optional(&dir.join("memory.limit_in_bytes"), |t| {
            parse_u64(t).map(v1_limit)
        }),
        high: None,
        working_set_bytes: inactive_file.map(|i| current.saturating_sub(i)),
        anon_bytes: key("rss"),
        file_bytes: key("cache"),
        sock_bytes: v1_tcp_bytes(dir),
        inactive_file_bytes: inactive_file,
        events,
        pressure: None,
        ..CgroupMemory::default()
    })
}

/// v1 `memory.kmem.tcp.usage_in_bytes`: the cgroup's TCP socket buffers. v1 charges them
/// only once `memory.kmem.tcp.limit_in_bytes` has been set (the memcg's `tcpmem_active`);
/// until then the usage reads 0 and means nothing, so with no limit set it is unknown.
fn v1_tcp_bytes(dir: &Path) -> Option<u64> {
    let limit = optional(&dir.join("memory.kmem.tcp.limit_in_bytes"), |t| {
        parse_u64(t).map(v1_limit)
    });
    match limit {
        Some(Limit::Limited(_)) => optional(&dir.join("memory.kmem.tcp.usage_in_bytes"), parse_u64),
        _ => None,
    }
}

/// The memory limits `dir` sets, each `None` when absent or unreadable: v2 `memory.max` and
/// `memory.high`; v1 `memory.limit_in_bytes` and no high.
pub fn read_limits(dir: &Path, version: CgroupVersion) -> (Option<Limit>, Option<Limit>) {
    match version {
        CgroupVersion::V2 => (
            optional(&dir.join("memory.max"), parse_limit),
            optional(&dir.join("memory.high"), parse_limit),
        ),
        CgroupVersion::V1 => (
            optional(&dir.join("memory.limit_in_bytes"), |t| {
                parse_u64(t).map(v1_limit)
            }),
            None,
        ),
    }
}

/// `memory.pressure` of a cgroup2 directory, if there is one.
pub fn read_pressure(dir: &Path) -> Option<Pressure> {
    optional(&dir.join("memory.pressure"), parse_pressure)
}

/// `pids.current` (required) and `pids.max` of a directory (the same files on v1 and v2).
pub fn read_pids(dir: &Path) -> Result<(u64, Option<Limit>), ReadError> {
    let current = read_parsed(&dir.join("pids.current"), parse_u64)?;
    Ok((current, optional(&dir.join("pids.max"), parse_limit)))
}

/// Read and parse a required file; the error names the path.
pub fn read_parsed<T>(
    path: &Path,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, ReadError> {
    let text = read_to_string(path)?;
    parse(&text).map_err(|msg| ReadError::parse(path, msg))
}

/// Read and parse an optional file: absent, unreadable or odd is `None` for that field.
fn optional<T>(path: &Path, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
    read_parsed(path, parse).ok()
}

fn owned(m: BTreeMap<&str, u64>) -> BTreeMap<String, u64> {
    m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}
