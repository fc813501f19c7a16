//! Test helpers: the real leaking child, and ground truth read independently of leakwatch.
#![allow(dead_code)]

pub mod apiserver;
pub mod cgroup;
pub mod daemon;
pub mod image;
pub mod prometheus;
pub mod skip;

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::process::Command;

use leakwatch::demo_child::ChildProcess;
use leakwatch::sample::TargetId;
use leakwatch::target::{Resolver, Selector};

pub const BIN: &str = env!("CARGO_BIN_EXE_leakwatch");

/// A running `leakwatch demo-child`; killed (by its pid) and reaped on drop.
pub struct LeakyChild(ChildProcess);

impl LeakyChild {
    /// Start `leakwatch demo-child ARGS` and wait for its `ready` line.
    pub fn spawn(args: &[&str]) -> LeakyChild {
        Self::spawn_with(Command::new(BIN).arg("demo-child").args(args))
    }

    /// Start a prepared command (e.g. wrapped in `setpriv`) that runs the demo child.
    pub fn spawn_with(cmd: &mut Command) -> LeakyChild {
        Self::spawn_lasting(cmd, 120)
    }

    /// Like [`spawn_with`](Self::spawn_with), for a child that must outlive a long test: it
    /// exits by itself after `seconds`.
    pub fn spawn_lasting(cmd: &mut Command, seconds: u64) -> LeakyChild {
        let cmd = cmd.arg("--max-seconds").arg(seconds.to_string());
        LeakyChild(ChildProcess::start(cmd).expect("start demo-child"))
    }

    /// Send one command and wait for its answer.
    pub fn command(&mut self, cmd: &str) -> String {
        self.0.command(cmd).expect("command to the child")
    }
}

impl Deref for LeakyChild {
    type Target = ChildProcess;
    fn deref(&self) -> &ChildProcess {
        &self.0
    }
}

impl DerefMut for LeakyChild {
    fn deref_mut(&mut self) -> &mut ChildProcess {
        &mut self.0
    }
}

/// The (pid, starttime) of a live process, as leakwatch identifies it.
pub fn target(pid: i32) -> TargetId {
    Resolver::new("/proc", "/sys/fs/cgroup")
        .resolve(&Selector::Pid(pid))
        .expect("the process is alive")
}

/// Ground truth: the entries of /proc/PID/fd, counted by the test itself.
pub fn count_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Ground truth: fds whose link starts with `prefix` (e.g. `socket:`).
pub fn count_fd_links(pid: i32, prefix: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.to_string_lossy().starts_with(prefix))
        .count()
}

/// Ground truth from `ss -tanpH`: the pid's TCP sockets per state, in leakwatch's names.
pub fn ss_states(pid: i32) -> BTreeMap<String, u64> {
    let out = Command::new("ss")
        .args(["-tanpH"])
        .output()
        .expect("run ss (iproute2)");
    assert!(out.status.success(), "ss failed");
    let needle = format!("pid={pid},");
    let mut states = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if !line.contains(&needle) {
            continue;
        }
        let state = match line.split_whitespace().next().unwrap_or("") {
            "ESTAB" => "established",
            "SYN-SENT" => "syn_sent",
            "SYN-RECV" => "syn_recv",
            "FIN-WAIT-1" => "fin_wait1",
            "FIN-WAIT-2" => "fin_wait2",
            "TIME-WAIT" => "time_wait",
            "UNCONN" | "CLOSE" => "close",
            "CLOSE-WAIT" => "close_wait",
            "LAST-ACK" => "last_ack",
            "LISTEN" => "listen",
            "CLOSING" => "closing",
            other => panic!("ss state {other}"),
        };
        *states.entry(state.to_string()).or_insert(0) += 1;
    }
    states
}

/// The uid and gid tests drop to (`nobody`).
pub const NOBODY: u32 = 65534;

/// `setpriv` running as uid/gid 65534 holding only `caps` (e.g. `+dac_read_search`; ""
/// for none). Append the program to run.
pub fn setpriv_nobody(caps: &str) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .arg("--clear-groups");
    if caps.is_empty() {
        cmd.args(["--inh-caps=-all", "--bounding-set=-all"]);
    } else {
        cmd.arg(format!("--inh-caps={caps}"))
            .arg(format!("--ambient-caps={caps}"))
            .arg(format!("--bounding-set=-all,{caps}"));
    }
    cmd
}

/// The binary, copied where any uid may execute it (the build tree may not be).
pub fn world_executable_bin() -> (tempfile::TempDir, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("leakwatch");
    std::fs::copy(BIN, &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, bin)
}

/// `BIN inspect --json --stuck-after 500ms PID` as uid 65534 holding only `caps` ("" for
/// none), parsed; panics with inspect's stderr when it fails. `bin` is a copy any uid may
/// execute (the build tree may not be).
pub fn inspect_as_nobody(bin: &std::path::Path, caps: &str, pid: i32) -> leakwatch::sample::Sample {
    let run = || {
        setpriv_nobody(caps)
            .arg(bin)
            .args([
                "inspect",
                "--json",
                "--stuck-after",
                "500ms",
                &pid.to_string(),
            ])
            .output()
            .expect("run setpriv")
    };
    let mut out = run();
    // ETXTBSY: a child another test forked between the copy's write and close still held
    // the written file open (until its exec closes it); that passes in moments.
    for _ in 0..50 {
        if !String::from_utf8_lossy(&out.stderr).contains("Text file busy") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        out = run();
    }
    assert!(
        out.status.success(),
        "inspect as nobody {caps:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

/// Why this test cannot run a command as another uid here, if it cannot.
pub fn cannot_drop_privileges() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root: cannot run a process as another user".into());
    }
    if setpriv_nobody("").arg("true").output().is_err() {
        return Some("setpriv (util-linux) is missing".into());
    }
    None
}

/// VmRSS of a process, bytes.
pub fn rss(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

/// Poll `f` until it is true or ~5 s pass.
pub fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}
