//! Raw reads for the diagnostics bundle (`actions::bundle`): every fd with its link text,
//! each thread's `wchan`, and verbatim copies of a process's and its cgroup's files. The
//! per-tick collectors keep only counts; the bundle wants the whole listing, once.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::ReadError;
use crate::sample::{CgroupMemory, CgroupVersion};

use super::cgroup::locate::{locate, Hierarchy, Roots};
use super::cgroup::parse::parse_proc_cgroup;
use super::fd::{classify_link, FdKind};

/// One fd of `/proc/PID/fd`: its number, its link text and what that points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdLink {
    pub fd: i32,
    pub link: String,
    pub kind: FdKind,
}

/// Every fd of `PID_DIR/fd` with its link, sorted by number; fds closed while listing are
/// skipped.
pub fn fd_links(pid_dir: &Path) -> Result<Vec<FdLink>, ReadError> {
    let dir = pid_dir.join("fd");
    let listing = std::fs::read_dir(&dir).map_err(|e| ReadError::from_io(&dir, e))?;
    let mut out = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|e| ReadError::from_io(&dir, e))?;
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        match std::fs::read_link(entry.path()) {
            Ok(l) => {
                let link = l.to_string_lossy().into_owned();
                let kind = classify_link(link.as_bytes());
                out.push(FdLink { fd, link, kind });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ReadError::from_io(&entry.path(), e)),
        }
    }
    out.sort_by_key(|f| f.fd);
    Ok(out)
}

/// `PID_DIR/task/TID/wchan`: the kernel function a blocked thread sleeps in (`0` or empty
/// while it runs); `None` when unreadable.
pub fn wchan(pid_dir: &Path, tid: i32) -> Option<String> {
    let text =
        std::fs::read_to_string(pid_dir.join("task").join(tid.to_string()).join("wchan")).ok()?;
    let t = text.trim();
    Some(if t.is_empty() || t == "0" { "-" } else { t }.to_string())
}

/// At most `max` bytes of `path`, and whether there was more.
pub fn copy(path: &Path, max: u64) -> Result<(Vec<u8>, bool), ReadError> {
    let f = std::fs::File::open(path).map_err(|e| ReadError::from_io(path, e))?;
    let mut buf = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| ReadError::from_io(path, e))?;
    let more = buf.len() as u64 > max;
    buf.truncate(max as usize);
    Ok((buf, more))
}

/// The cgroup memory files worth copying, by the name they get in the bundle: from the
/// directory the tick read (`cg.source.dir`), and on a hybrid host `memory.pressure` from
/// the unified tree. v1 names its files differently; each is copied under its own name.
pub fn cgroup_memory_files(
    proc_root: &Path,
    cgroup_root: &Path,
    pid: i32,
    cg: &CgroupMemory,
) -> Vec<(String, PathBuf)> {
    let dir = &cg.source.dir;
    let mut files: Vec<(String, PathBuf)> = match cg.version {
        CgroupVersion::V2 => ["memory.stat", "memory.events", "memory.pressure"]
            .iter()
            .map(|n| (n.to_string(), dir.join(n)))
            .collect(),
        CgroupVersion::V1 => [
            "memory.stat",
            "memory.oom_control",
            "memory.failcnt",
            "memory.usage_in_bytes",
            "memory.limit_in_bytes",
        ]
        .iter()
        .map(|n| (n.to_string(), dir.join(n)))
        .collect(),
    };
    if cg.version == CgroupVersion::V1 {
        if let Some(p) = unified_pressure(proc_root, cgroup_root, pid) {
            files.push(("memory.pressure".into(), p));
        }
    }
    files
}

/// `memory.pressure` of the target's cgroup in the unified tree of a hybrid host.
fn unified_pressure(proc_root: &Path, cgroup_root: &Path, pid: i32) -> Option<PathBuf> {
    let pid_dir = proc_root.join(pid.to_string());
    let text = std::fs::read_to_string(pid_dir.join("cgroup")).ok()?;
    let cg = parse_proc_cgroup(&text);
    let path = cg.v2.as_deref()?;
    let roots = Roots::new(proc_root, cgroup_root, pid);
    let at = locate(&roots, Hierarchy::V2, path).ok()?;
    Some(at.source.dir.join("memory.pressure"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::FakeProc;

    #[test]
    fn fd_links_of_a_fixture_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let pid = FakeProc::new(tmp.path()).pid(4242).fds([
            (10, "socket:[77]"),
            (2, "/dev/null"),
            (3, "pipe:[5]"),
        ]);
        let links = fd_links(pid.dir()).unwrap();
        let got: Vec<(i32, &str, FdKind)> = links
            .iter()
            .map(|l| (l.fd, l.link.as_str(), l.kind))
            .collect();
        assert_eq!(
            got,
            [
                (2, "/dev/null", FdKind::File),
                (3, "pipe:[5]", FdKind::Pipe),
                (10, "socket:[77]", FdKind::Socket(77)),
            ]
        );
    }

    #[test]
    fn copy_is_capped() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("x");
        std::fs::write(&f, "0123456789").unwrap();
        assert_eq!(copy(&f, 4).unwrap(), (b"0123".to_vec(), true));
        assert_eq!(copy(&f, 10).unwrap(), (b"0123456789".to_vec(), false));
    }
}
