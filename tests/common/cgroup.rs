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
