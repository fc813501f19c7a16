//! A cgroup v2 directory of a test's own, for children that must be alone in a cgroup or
//! move between cgroups.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{LeakyChild, BIN};

/// A fresh cgroup v2 directory, removed on drop (after its processes are gone).
pub struct Cgroup(pub PathBuf);

impl Cgroup {
    /// `None` where no cgroup v2 directory can be made (not root, no cgroup2 mount).
    pub fn new(name: &str) -> Option<Cgroup> {
        let mnt = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .into_iter()
            .find(|m| Path::new(m).join("cgroup.procs").exists())?;
        let dir = Path::new(mnt).join(format!("leakwatch-test-{name}-{}", std::process::id()));
        std::fs::create_dir(&dir).ok()?;
        Some(Cgroup(dir))
    }

    /// Move `pid` here.
    pub fn enter(&self, pid: i32) {
        std::fs::write(self.0.join("cgroup.procs"), pid.to_string()).expect("move to cgroup");
    }

    /// `leakwatch demo-child ARGS` that enters this cgroup before it starts: every socket
    /// it makes is charged here.
    pub fn spawn(&self, args: &[&str]) -> LeakyChild {
        let procs = self.0.join("cgroup.procs");
        LeakyChild::spawn_with(
            Command::new("sh")
                .arg("-c")
                .arg(format!("echo $$ > {} && exec \"$@\"", procs.display()))
                .arg("sh")
                .arg(BIN)
                .arg("demo-child")
                .args(args),
        )
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Which cgroup hierarchy serves a controller for this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hierarchy {
    V1,
    V2,
}

/// A cgroup of a test's own under one controller (`memory` or `pids`), made where that
/// controller lives for this process, as leakwatch looks for it: under our own cgroup in the
/// v1 hierarchy when `/proc/self/cgroup` has a v1 line naming the controller (a v1 or hybrid
/// host), else at the root of the cgroup2 tree when the controller is enabled there.
/// Removed on drop (after its processes are gone: kill and reap them first).
pub struct ControllerCgroup {
    pub hierarchy: Hierarchy,
    pub dir: PathBuf,
}

impl ControllerCgroup {
    /// `Err(why)` where no such cgroup can be made here (not root, no such controller).
    pub fn new(controller: &str, name: &str) -> Result<ControllerCgroup, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("making cgroups needs root".into());
        }
        let leaf = format!("leakwatch-test-{name}-{}", std::process::id());
        let (hierarchy, parent) = match own_v1_path(controller) {
            Some(own) => {
                let mount = Path::new("/sys/fs/cgroup").join(controller);
                if !mount.join("cgroup.procs").exists() {
                    return Err(format!(
                        "/proc/self/cgroup names a v1 {controller} hierarchy, but it is not \
                         mounted at {}",
                        mount.display()
                    ));
                }
                (Hierarchy::V1, mount.join(own.trim_start_matches('/')))
            }
            None => (Hierarchy::V2, v2_root_with(controller)?),
        };
        let dir = parent.join(leaf);
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(ControllerCgroup { hierarchy, dir })
    }

    /// Write `value` to the cgroup's `file`.
    pub fn write(&self, file: &str, value: &str) -> std::io::Result<()> {
        std::fs::write(self.dir.join(file), value)
    }

    /// Read the cgroup's `file`, trimmed; panics naming the file when it cannot.
    pub fn read(&self, file: &str) -> String {
        let path = self.dir.join(file);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .to_string()
    }

    /// A memory cgroup: limit it to `bytes` with no swap (v2 `memory.max` and
    /// `memory.swap.max = 0`; v1 `memory.limit_in_bytes` and the same memory+swap limit).
    pub fn limit_memory(&self, bytes: u64) -> std::io::Result<()> {
        let (limit, swap, swap_value) = match self.hierarchy {
            Hierarchy::V2 => ("memory.max", "memory.swap.max", "0".to_string()),
            Hierarchy::V1 => (
                "memory.limit_in_bytes",
                "memory.memsw.limit_in_bytes",
                bytes.to_string(),
            ),
        };
        self.write(limit, &bytes.to_string())?;
        // Without swap accounting (or swap) the file is absent: nothing can swap anyway.
        if self.dir.join(swap).exists() {
            self.write(swap, &swap_value)?;
        }
        Ok(())
    }

    /// A memory cgroup's working set as leakwatch computes it: the usage less inactive file
    /// pages (v2 `memory.current` - `inactive_file`; v1 `memory.usage_in_bytes` -
    /// `total_inactive_file`), bytes.
    pub fn memory_working_set(&self) -> u64 {
        let (usage, inactive) = match self.hierarchy {
            Hierarchy::V2 => ("memory.current", "inactive_file"),
            Hierarchy::V1 => ("memory.usage_in_bytes", "total_inactive_file"),
        };
        let usage: u64 = self.read(usage).parse().expect("a byte count");
        usage.saturating_sub(self.key("memory.stat", inactive))
    }

    /// OOM kills in a memory cgroup (v2 `memory.events`, v1 `memory.oom_control`:
    /// `oom_kill N`).
    pub fn oom_kills(&self) -> u64 {
        match self.hierarchy {
            Hierarchy::V2 => self.key("memory.events", "oom_kill"),
            Hierarchy::V1 => self.key("memory.oom_control", "oom_kill"),
        }
    }

    /// `KEY N` in a flat keyed file such as `memory.stat`.
    pub fn key(&self, file: &str, key: &str) -> u64 {
        self.read(file)
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {}/{file}", self.dir.display()))
    }

    /// `leakwatch demo-child ARGS` that joins every cgroup of `cgroups` before it starts,
    /// so all it allocates is charged there (v1 moves no charges with a task), and exits by
    /// itself after `max_seconds`.
    pub fn spawn(cgroups: &[&ControllerCgroup], args: &[&str], max_seconds: u64) -> LeakyChild {
        let join = r#"for f in $CGROUP_PROCS; do echo $$ > "$f" || exit 1; done; exec "$@""#;
        let procs: Vec<String> = cgroups
            .iter()
            .map(|c| c.dir.join("cgroup.procs").display().to_string())
            .collect();
        LeakyChild::spawn_lasting(
            Command::new("sh")
                .args(["-c", join, "sh", BIN, "demo-child"])
                .args(args)
                .env("CGROUP_PROCS", procs.join(" ")),
            max_seconds,
        )
    }
}

impl Drop for ControllerCgroup {
    fn drop(&mut self) {
        for _ in 0..250 {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Our own cgroup path in the v1 hierarchy with `controller`, from `/proc/self/cgroup`.
pub fn own_v1_path(controller: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == controller)
            .then(|| path.to_string())
    })
}

/// The root of the cgroup2 tree, when `controller` is enabled for its children.
fn v2_root_with(controller: &str) -> Result<PathBuf, String> {
    let root = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .map(PathBuf::from)
        .find(|m| m.join("cgroup.procs").exists())
        .ok_or("no cgroup2 mount and no v1 hierarchy for the controller")?;
    let enabled = std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap_or_default();
    if !enabled.split_whitespace().any(|c| c == controller) {
        return Err(format!(
            "the {controller} controller is neither on a v1 hierarchy nor enabled in {}",
            root.join("cgroup.subtree_control").display()
        ));
    }
    Ok(root)
}
