//! Where a cgroup's files are: the layout of a cgroup root, and the sidecar fallback.
//!
//! Layouts (Documentation/admin-guide/cgroup-v2.rst "Mounting", cgroup-v1/cgroups.rst):
//! - pure v2: `ROOT/cgroup.controllers` exists and the tree is `ROOT/<0:: path>`;
//! - v1: one mount per controller, `ROOT/memory/<memory path>`, `ROOT/pids/<pids path>`;
//! - hybrid: v1 controllers, plus a cgroup2 tree (usually without controllers) at
//!   `ROOT/unified`, which still has PSI files such as `memory.pressure`.
//!
//! `/proc/PID/cgroup` names paths relative to *our* cgroup namespace. A target outside it (a
//! sidecar with a private cgroup namespace) shows as `/../other`, and our `/sys/fs/cgroup`
//! does not contain it; its own mount, seen through `/proc/PID/root/sys/fs/cgroup`, normally
//! has the target's cgroup as its root. The same fallback serves a cgroup root that does not
//! match our view (Docker on v1 mounts the container's own cgroup as the root).

use std::io;
use std::path::{Path, PathBuf};

use crate::error::{ReadError, Unknown, UnknownKind};
use crate::sample::CgroupDir;

/// The two places a target's cgroup may be read from.
#[derive(Debug, Clone)]
pub struct Roots {
    /// Leakwatch's cgroup root (`/sys/fs/cgroup`, or a fixture tree).
    pub local: PathBuf,
    /// The target's own view: `PROC/PID/root/sys/fs/cgroup`.
    pub target: PathBuf,
}

impl Roots {
    pub fn new(proc_root: &Path, cgroup_root: &Path, pid: i32) -> Roots {
        Roots {
            local: cgroup_root.to_path_buf(),
            target: proc_root
                .join(pid.to_string())
                .join("root")
                .join("sys/fs/cgroup"),
        }
    }
}

/// Which hierarchy to look in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hierarchy<'a> {
    /// A v1 controller mounted at `ROOT/<name>`.
    V1(&'a str),
    /// The cgroup2 tree: `ROOT` on a pure v2 host, `ROOT/unified` on a hybrid one.
    V2,
}

impl Hierarchy<'_> {
    fn describe(self) -> String {
        match self {
            Hierarchy::V1(name) => format!("cgroup v1 {name} hierarchy"),
            Hierarchy::V2 => "cgroup2 hierarchy".to_string(),
        }
    }
}

/// A cgroup directory found, and the mount (hierarchy root) it was found under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub source: CgroupDir,
    pub mount: PathBuf,
}

impl Located {
    /// True for the real root cgroup, which lacks `memory.current`, `pids.current`, ...
    /// (the root of a namespaced mount seen through the target is a real cgroup).
    pub fn is_host_root(&self) -> bool {
        self.source.dir == self.mount && !self.source.via_target_root
    }
}

/// The hierarchy's mount point under `root`, if it is there. Errors other than "absent"
/// (permission denied under `/proc/PID/root`, the process gone) are returned.
pub fn mount(root: &Path, h: Hierarchy<'_>) -> Result<Option<PathBuf>, ReadError> {
    match h {
        Hierarchy::V1(name) => {
            let dir = root.join(name);
            Ok(is_dir(&dir)?.then_some(dir))
        }
        Hierarchy::V2 => {
            for dir in [root.to_path_buf(), root.join("unified")] {
                if is_file(&dir.join("cgroup.controllers"))? {
                    return Ok(Some(dir));
                }
            }
            Ok(None)
        }
    }
}

/// Find the directory of the cgroup `path` (as `/proc/PID/cgroup` names it) in hierarchy `h`:
/// under our root unless the path is outside our cgroup namespace, else through the target's
/// root: `path` there when it exists, otherwise that mount's root.
pub fn locate(roots: &Roots, h: Hierarchy<'_>, path: &str) -> Result<Located, Unknown> {
    let outside = path == "/.." || path.starts_with("/../");
    let rel = path.trim_start_matches('/');
    // Our own root: errors here only mean "look elsewhere".
    let local_mount = mount(&roots.local, h).ok().flatten();
    if let (false, Some(m)) = (outside, &local_mount) {
        let dir = m.join(rel);
        if is_dir(&dir).unwrap_or(false) {
            return Ok(found(dir, m.clone(), false));
        }
    }
    let target_mount = mount(&roots.target, h).map_err(Unknown::from)?;
    match target_mount {
        Some(m) => {
            if !outside {
                let dir = m.join(rel);
                if is_dir(&dir).map_err(Unknown::from)? {
                    return Ok(found(dir, m, true));
                }
            }
            Ok(found(m.clone(), m, true))
        }
        None if local_mount.is_none() => Err(Unknown::new(
            UnknownKind::Unsupported,
            format!(
                "no {} is mounted under {} or {}",
                h.describe(),
                roots.local.display(),
                roots.target.display()
            ),
        )),
        None => Err(Unknown::new(
            UnknownKind::Missing,
            format!(
                "cgroup {path} is not under {} and {} has no {}",
                local_mount.as_deref().unwrap_or(&roots.local).display(),
                roots.target.display(),
                h.describe()
            ),
        )),
    }
}

fn found(dir: PathBuf, mount: PathBuf, via_target_root: bool) -> Located {
    Located {
        source: CgroupDir {
            dir,
            via_target_root,
        },
        mount,
    }
}

fn is_dir(path: &Path) -> Result<bool, ReadError> {
    exists(path).map(|m| m.is_some_and(|m| m.is_dir()))
}

fn is_file(path: &Path) -> Result<bool, ReadError> {
    exists(path).map(|m| m.is_some_and(|m| m.is_file()))
}

fn exists(path: &Path) -> Result<Option<std::fs::Metadata>, ReadError> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if absent(&e) => Ok(None),
        Err(e) => Err(ReadError::from_io(path, e)),
    }
}

fn absent(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn roots(tmp: &Path) -> Roots {
        Roots::new(&tmp.join("proc"), &tmp.join("cg"), 7)
    }

    #[test]
    fn v2_mount_pure_and_hybrid() {
        let tmp = tempfile::tempdir().unwrap();
        let pure = tmp.path().join("pure");
        fs::create_dir_all(&pure).unwrap();
        fs::write(pure.join("cgroup.controllers"), "memory pids\n").unwrap();
        assert_eq!(mount(&pure, Hierarchy::V2).unwrap(), Some(pure.clone()));

        let hybrid = tmp.path().join("hybrid");
        fs::create_dir_all(hybrid.join("unified")).unwrap();
        fs::create_dir_all(hybrid.join("memory")).unwrap();
        fs::write(hybrid.join("unified/cgroup.controllers"), "").unwrap();
        assert_eq!(
            mount(&hybrid, Hierarchy::V2).unwrap(),
            Some(hybrid.join("unified"))
        );
        assert_eq!(
            mount(&hybrid, Hierarchy::V1("memory")).unwrap(),
            Some(hybrid.join("memory"))
        );
        assert_eq!(mount(&hybrid, Hierarchy::V1("pids")).unwrap(), None);
        assert_eq!(
            mount(&tmp.path().join("none"), Hierarchy::V2).unwrap(),
            None
        );
    }

    #[test]
    fn local_first_then_target_path_then_target_root() {
        let tmp = tempfile::tempdir().unwrap();
        let r = roots(tmp.path());
        fs::create_dir_all(r.local.join("memory/a")).unwrap();
        fs::create_dir_all(r.target.join("memory/b")).unwrap();

        let l = locate(&r, Hierarchy::V1("memory"), "/a").unwrap();
        assert_eq!(l.source.dir, r.local.join("memory/a"));
        assert!(!l.source.via_target_root);

        let l = locate(&r, Hierarchy::V1("memory"), "/b").unwrap();
        assert_eq!(l.source.dir, r.target.join("memory/b"));
        assert!(l.source.via_target_root);

        // Outside our namespace: never our root, even if a same-named directory exists there.
        fs::create_dir_all(r.local.join("memory/other")).unwrap();
        let l = locate(&r, Hierarchy::V1("memory"), "/../other").unwrap();
        assert_eq!(l.source.dir, r.target.join("memory"));
        assert!(l.source.via_target_root);
        assert!(!l.is_host_root());
    }

    #[test]
    fn nothing_mounted_is_unsupported_and_a_lost_cgroup_is_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let r = roots(tmp.path());
        let e = locate(&r, Hierarchy::V1("memory"), "/a").unwrap_err();
        assert_eq!(e.kind, UnknownKind::Unsupported, "{e:?}");
        assert!(e.message.contains("memory hierarchy"), "{}", e.message);

        fs::create_dir_all(r.local.join("memory")).unwrap();
        let e = locate(&r, Hierarchy::V1("memory"), "/a").unwrap_err();
        assert_eq!(e.kind, UnknownKind::Missing, "{e:?}");
        assert!(e.message.contains("cgroup /a"), "{}", e.message);
    }
}
