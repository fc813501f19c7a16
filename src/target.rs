//! Target selection: a [`Selector`] from the config or command line, resolved to the
//! (pid, starttime) of one live process.
//!
//! Where several processes match, the oldest wins (smallest starttime): the main process
//! rather than the workers it forked. leakwatch itself and its ancestors never match, so a
//! `cmdline_regex` cannot select the shell that started leakwatch with that regex.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use crate::collect::read_cmdline;
use crate::collect::stat::read_stat;
use crate::error::{read_to_string, ReadError};
use crate::sample::TargetId;

/// How a target is chosen: exactly one per target.
#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    Pid(i32),
    Pidfile(PathBuf),
    /// Exact `comm`.
    Name(String),
    NameRegex(SelectorRegex),
    /// On the whole command line, arguments joined by spaces.
    CmdlineRegex(SelectorRegex),
    /// A cgroup directory; the oldest process in it (or below it) is the target.
    Cgroup(PathBuf),
    /// A systemd unit's cgroup (`app.service`; `.service` is added when no suffix is given).
    SystemdUnit(String),
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Pid(p) => write!(f, "pid = {p}"),
            Selector::Pidfile(p) => write!(f, "pidfile = {:?}", p.display().to_string()),
            Selector::Name(n) => write!(f, "name = {n:?}"),
            Selector::NameRegex(r) => write!(f, "name_regex = {:?}", r.0.as_str()),
            Selector::CmdlineRegex(r) => write!(f, "cmdline_regex = {:?}", r.0.as_str()),
            Selector::Cgroup(p) => write!(f, "cgroup = {:?}", p.display().to_string()),
            Selector::SystemdUnit(u) => write!(f, "systemd_unit = {u:?}"),
        }
    }
}

/// Why no target was found.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("no process matches {0}")]
    NoMatch(String),
    #[error("pid {0} does not exist")]
    NoPid(i32),
    #[error(
        "pid {0} is alive but {1} hides it (mounted with hidepid): run leakwatch as the \
         target's uid, or mount proc with hidepid's gid= option for leakwatch's group"
    )]
    Hidden(i32, String),
    #[error(
        "no process matches {0}; {1} is mounted with hidepid={2}, which hides other users' \
         processes from leakwatch"
    )]
    HiddenByMount(String, String, String),
    #[error("pidfile {path}: {msg}", path = .path.display())]
    Pidfile { path: PathBuf, msg: String },
    #[error("cgroup {dir} has no processes", dir = .0.display())]
    EmptyCgroup(PathBuf),
    #[error("no cgroup found for systemd unit {0:?} (looked under {1})")]
    NoUnit(String, String),
    #[error(transparent)]
    Read(#[from] ReadError),
}

impl ResolveError {
    /// The target may well be there, but leakwatch cannot see it (hidepid, a permission
    /// error): leakwatch's own trouble, which fails open whatever `on_missing` says.
    pub fn is_unseen(&self) -> bool {
        match self {
            ResolveError::Hidden(..) | ResolveError::HiddenByMount(..) => true,
            ResolveError::Read(e) => matches!(e, ReadError::PermissionDenied { .. }),
            _ => false,
        }
    }
}

/// Resolves selectors against a proc root and a cgroup root.
#[derive(Debug, Clone)]
pub struct Resolver {
    proc_root: PathBuf,
    cgroup_root: PathBuf,
    excluded: HashSet<i32>,
}

impl Resolver {
    pub fn new(proc_root: impl Into<PathBuf>, cgroup_root: impl Into<PathBuf>) -> Self {
        let proc_root = proc_root.into();
        let excluded = self_and_ancestors(&proc_root);
        Resolver {
            proc_root,
            cgroup_root: cgroup_root.into(),
            excluded,
        }
    }

    /// Find the target now.
    pub fn resolve(&self, sel: &Selector) -> Result<TargetId, ResolveError> {
        match sel {
            Selector::Pid(pid) => self.by_pid(*pid),
            Selector::Pidfile(path) => {
                let text = read_to_string(path).map_err(|e| ResolveError::Pidfile {
                    path: path.clone(),
                    msg: e.to_string(),
                })?;
                let pid = text.trim().parse().map_err(|_| ResolveError::Pidfile {
                    path: path.clone(),
                    msg: format!("expected a pid, found {:?}", text.trim()),
                })?;
                self.by_pid(pid)
            }
            Selector::Name(n) => self.oldest(sel, |comm, _| comm == n),
            Selector::NameRegex(r) => self.oldest(sel, |comm, _| r.0.is_match(comm)),
            Selector::CmdlineRegex(r) => {
                self.oldest(sel, |_, pid_dir| r.0.is_match(&read_cmdline(pid_dir)))
            }
            Selector::Cgroup(path) => self.in_cgroup(&self.rebase(path)),
            Selector::SystemdUnit(unit) => {
                let dir = self.unit_dir(unit)?;
                self.in_cgroup(&dir)
            }
        }
    }

    fn by_pid(&self, pid: i32) -> Result<TargetId, ResolveError> {
        match read_stat(&self.proc_root.join(pid.to_string())) {
            Ok(st) => Ok(TargetId {
                pid,
                starttime_ticks: st.starttime_ticks,
            }),
            Err(ReadError::Missing { .. } | ReadError::Gone { .. }) if self.hides(pid) => Err(
                ResolveError::Hidden(pid, self.proc_root.display().to_string()),
            ),
            Err(ReadError::Missing { .. } | ReadError::Gone { .. }) => {
                Err(ResolveError::NoPid(pid))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A pid absent from the proc root but alive (a signal to it is refused, not ESRCH):
    /// the proc root is a real procfs mounted with `hidepid`. Never true for a fixture tree.
    fn hides(&self, pid: i32) -> bool {
        let procfs = nix::sys::statfs::statfs(&self.proc_root)
            .is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC);
        procfs
            && pid > 0
            && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                == Err(nix::errno::Errno::EPERM)
    }

    /// The oldest process (not leakwatch or its ancestors) for which `matches(comm, dir)`.
    fn oldest(
        &self,
        sel: &Selector,
        matches: impl Fn(&str, &Path) -> bool,
    ) -> Result<TargetId, ResolveError> {
        let entries = std::fs::read_dir(&self.proc_root)
            .map_err(|e| ReadError::from_io(&self.proc_root, e))?;
        let mut best: Option<TargetId> = None;
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            if self.excluded.contains(&pid) {
                continue;
            }
            let dir = entry.path();
            let Ok(st) = read_stat(&dir) else { continue };
            if st.state == 'Z' || !matches(&st.comm, &dir) {
                continue;
            }
            let id = TargetId {
                pid,
                starttime_ticks: st.starttime_ticks,
            };
            if best.is_none_or(|b| (id.starttime_ticks, id.pid) < (b.starttime_ticks, b.pid)) {
                best = Some(id);
            }
        }
        best.ok_or_else(|| match self.hidepid() {
            Some(mode) => ResolveError::HiddenByMount(
                sel.to_string(),
                self.proc_root.display().to_string(),
                mode,
            ),
            None => ResolveError::NoMatch(sel.to_string()),
        })
    }

    /// The `hidepid` mode of the proc root's mount (from /proc/self/mountinfo), unless it
    /// hides nothing.
    fn hidepid(&self) -> Option<String> {
        let root = std::fs::canonicalize(&self.proc_root).ok()?;
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        mountinfo.lines().find_map(|line| {
            let (mount, fs) = line.split_once(" - ")?;
            let point = mount.split(' ').nth(4)?;
            let mut fs = fs.split(' ');
            if Path::new(point) != root || fs.next()? != "proc" {
                return None;
            }
            let mode = fs
                .nth(1)?
                .split(',')
                .find_map(|o| o.strip_prefix("hidepid="))?;
            (!matches!(mode, "0" | "off")).then(|| mode.to_string())
        })
    }

    /// A configured cgroup path: `/sys/fs/cgroup/...` is taken relative to the cgroup root
    /// (which tests and read-only host mounts move), a relative path too.
    fn rebase(&self, path: &Path) -> PathBuf {
        let rel = path
            .strip_prefix("/sys/fs/cgroup")
            .ok()
            .or_else(|| path.is_relative().then_some(path));
        match rel {
            Some(rel) => self.cgroup_root.join(rel),
            None => path.to_path_buf(),
        }
    }

    /// The oldest live process in `dir` or its descendants.
    fn in_cgroup(&self, dir: &Path) -> Result<TargetId, ResolveError> {
        let mut pids = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        let mut visited = 0;
        while let Some(d) = stack.pop() {
            visited += 1;
            let procs = d.join("cgroup.procs");
            match read_to_string(&procs) {
                Ok(text) => pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
                Err(e) if d == dir => return Err(e.into()),
                Err(_) => {}
            }
            if visited < 10_000 {
                if let Ok(rd) = std::fs::read_dir(&d) {
                    stack.extend(rd.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()));
                }
            }
        }
        pids.into_iter()
            .filter(|p| !self.excluded.contains(p))
            .filter_map(|pid| self.by_pid(pid).ok())
            .min_by_key(|id| (id.starttime_ticks, id.pid))
            .ok_or_else(|| ResolveError::EmptyCgroup(dir.to_path_buf()))
    }

    /// The cgroup directory of a systemd unit: `system.slice/UNIT` in the v2 tree, the hybrid
    /// `unified/` tree or the v1 `systemd/` (name=systemd) tree, else the first directory of
    /// that name anywhere below them (user units, other slices).
    fn unit_dir(&self, unit: &str) -> Result<PathBuf, ResolveError> {
        let unit = if unit.contains('.') {
            unit.to_string()
        } else {
            format!("{unit}.service")
        };
        let roots: Vec<PathBuf> = ["", "unified", "systemd"]
            .iter()
            .map(|sub| self.cgroup_root.join(sub))
            .filter(|r| r.join("cgroup.procs").exists())
            .collect();
        for root in &roots {
            let dir = root.join("system.slice").join(&unit);
            if dir.is_dir() {
                return Ok(dir);
            }
        }
        for root in &roots {
            if let Some(dir) = find_dir(root, &unit, 8) {
                return Ok(dir);
            }
        }
        Err(ResolveError::NoUnit(
            unit,
            self.cgroup_root.display().to_string(),
        ))
    }
}

/// Breadth-first search for a directory named `name`, at most `depth` levels down.
fn find_dir(root: &Path, name: &str, depth: usize) -> Option<PathBuf> {
    let mut level = vec![root.to_path_buf()];
    for _ in 0..depth {
        let mut next = Vec::new();
        for d in level {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if !e.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                if e.file_name() == name {
                    return Some(p);
                }
                next.push(p);
            }
        }
        if next.is_empty() {
            return None;
        }
        level = next;
    }
    None
}

/// leakwatch's own pid and its ancestors' (never a target).
fn self_and_ancestors(proc_root: &Path) -> HashSet<i32> {
    let mut out = HashSet::new();
    let mut pid = std::process::id() as i32;
    while pid > 1 && out.insert(pid) && out.len() < 64 {
        match read_stat(&proc_root.join(pid.to_string())) {
            Ok(st) => pid = st.ppid,
            Err(_) => break,
        }
    }
    out
}

/// A selector's regex (`name_regex`, `cmdline_regex`), compiled while the config or the
/// command line is read.
#[derive(Clone)]
pub struct SelectorRegex(pub regex::Regex);

impl fmt::Debug for SelectorRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0.as_str())
    }
}

impl PartialEq for SelectorRegex {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl<'de> Deserialize<'de> for SelectorRegex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        regex::Regex::new(&s).map(SelectorRegex).map_err(|e| {
            // The regex crate's message spans lines (pattern, caret, reason): keep the reason.
            let text = e.to_string();
            let reason = text
                .lines()
                .last()
                .unwrap_or("")
                .trim_start_matches("error: ");
            serde::de::Error::custom(format!("the regex {s:?} does not compile: {reason}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::FakeProc;
    use std::fs;

    /// A fake /proc: pid -> (comm, starttime, cmdline).
    fn fake_proc(procs: &[(i32, &str, u64, &str)]) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let proc = FakeProc::new(tmp.path());
        for &(pid, comm, start, cmd) in procs {
            let args: Vec<&str> = cmd.split(' ').collect();
            proc.pid(pid).comm(comm).stat('S', start).cmdline(&args);
        }
        tmp
    }

    fn re(s: &str) -> SelectorRegex {
        SelectorRegex(regex::Regex::new(s).unwrap())
    }

    #[test]
    fn oldest_match_wins_and_pid_reuse_changes_identity() {
        let proc = fake_proc(&[
            (300, "myapp", 5000, "/usr/bin/myapp --worker"),
            (200, "myapp", 1000, "/usr/bin/myapp --serve"),
            (100, "other", 10, "/usr/bin/other myapp --serve"),
        ]);
        let r = Resolver::new(proc.path(), "/nonexistent");
        let id = r.resolve(&Selector::Name("myapp".into())).unwrap();
        assert_eq!(
            id,
            TargetId {
                pid: 200,
                starttime_ticks: 1000
            }
        );
        let id = r.resolve(&Selector::NameRegex(re("^my"))).unwrap();
        assert_eq!(id.pid, 200);
        let id = r
            .resolve(&Selector::CmdlineRegex(re("myapp --worker")))
            .unwrap();
        assert_eq!(id.pid, 300);
        let id = r
            .resolve(&Selector::CmdlineRegex(re("myapp --serve")))
            .unwrap();
        assert_eq!(id.pid, 100, "the oldest process whose command line matches");
        assert!(matches!(
            r.resolve(&Selector::Name("nginx".into())),
            Err(ResolveError::NoMatch(_))
        ));

        // The process exits and its pid is reused: same pid, new starttime.
        fs::remove_dir_all(proc.path().join("200")).unwrap();
        assert!(matches!(
            r.resolve(&Selector::Pid(200)),
            Err(ResolveError::NoPid(200))
        ));
        let proc2 = fake_proc(&[(200, "myapp", 9000, "/usr/bin/myapp --serve")]);
        let r2 = Resolver::new(proc2.path(), "/nonexistent");
        assert_eq!(
            r2.resolve(&Selector::Pid(200)).unwrap(),
            TargetId {
                pid: 200,
                starttime_ticks: 9000
            }
        );
    }

    #[test]
    fn pidfile() {
        let proc = fake_proc(&[(42, "app", 77, "app")]);
        let r = Resolver::new(proc.path(), "/nonexistent");
        let pf = proc.path().join("app.pid");
        fs::write(&pf, "42\n").unwrap();
        assert_eq!(r.resolve(&Selector::Pidfile(pf.clone())).unwrap().pid, 42);
        fs::write(&pf, "not a pid").unwrap();
        let err = r.resolve(&Selector::Pidfile(pf)).unwrap_err().to_string();
        assert!(err.contains("expected a pid"), "{err}");
        let err = r
            .resolve(&Selector::Pidfile("/nonexistent/x.pid".into()))
            .unwrap_err();
        assert!(matches!(err, ResolveError::Pidfile { .. }));
    }

    #[test]
    fn cgroup_and_systemd_unit_v2_hybrid_and_v1() {
        let proc = fake_proc(&[
            (10, "app", 500, "app"),
            (11, "app", 400, "app worker"),
            (12, "x", 1, "x"),
        ]);
        for layout in ["", "unified", "systemd"] {
            let cg = tempfile::tempdir().unwrap();
            let root = cg.path().join(layout);
            let unit = root.join("system.slice/app.service");
            fs::create_dir_all(unit.join("sub")).unwrap();
            fs::write(root.join("cgroup.procs"), "1\n12\n").unwrap();
            fs::write(unit.join("cgroup.procs"), "10\n").unwrap();
            fs::write(unit.join("sub/cgroup.procs"), "11\n").unwrap();
            let r = Resolver::new(proc.path(), cg.path());
            let by_unit = r.resolve(&Selector::SystemdUnit("app".into())).unwrap();
            assert_eq!(
                by_unit.pid, 11,
                "layout {layout:?}: oldest in the unit's subtree"
            );
            let by_path = r
                .resolve(&Selector::Cgroup(
                    Path::new("/sys/fs/cgroup")
                        .join(layout)
                        .join("system.slice/app.service"),
                ))
                .unwrap();
            assert_eq!(by_path, by_unit);
        }
    }

    #[test]
    fn systemd_user_unit_found_below_another_slice() {
        let proc = fake_proc(&[(10, "app", 500, "app")]);
        let cg = tempfile::tempdir().unwrap();
        let unit = cg
            .path()
            .join("user.slice/user-1000.slice/user@1000.service/app.slice/web.service");
        fs::create_dir_all(&unit).unwrap();
        fs::write(cg.path().join("cgroup.procs"), "").unwrap();
        fs::write(unit.join("cgroup.procs"), "10\n").unwrap();
        let r = Resolver::new(proc.path(), cg.path());
        assert_eq!(
            r.resolve(&Selector::SystemdUnit("web.service".into()))
                .unwrap()
                .pid,
            10
        );
        assert!(matches!(
            r.resolve(&Selector::SystemdUnit("db.service".into())),
            Err(ResolveError::NoUnit(..))
        ));
    }

    #[test]
    fn empty_cgroup() {
        let proc = fake_proc(&[]);
        let cg = tempfile::tempdir().unwrap();
        fs::write(cg.path().join("cgroup.procs"), "").unwrap();
        let r = Resolver::new(proc.path(), cg.path());
        assert!(matches!(
            r.resolve(&Selector::Cgroup(cg.path().to_path_buf())),
            Err(ResolveError::EmptyCgroup(_))
        ));
    }
}
