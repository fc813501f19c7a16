//! Test helpers: the real leaking child, and ground truth read independently of leakwatch.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde::Deserialize;

pub const BIN: &str = env!("CARGO_BIN_EXE_leakwatch");

/// The child's `ready` line.
#[derive(Debug, Deserialize)]
pub struct Ready {
    pub pid: i32,
    pub listeners: Vec<SocketAddr>,
    pub recv_tids: Vec<i32>,
    pub accept_tid: Option<i32>,
}

/// A running `leakwatch demo-child`; killed (by its pid) and reaped on drop.
pub struct LeakyChild {
    pub child: Child,
    pub ready: Ready,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl LeakyChild {
    /// Start `leakwatch demo-child ARGS` and wait for its `ready` line.
    pub fn spawn(args: &[&str]) -> LeakyChild {
        Self::spawn_with(Command::new(BIN).arg("demo-child").args(args))
    }

    /// Start a prepared command (e.g. wrapped in `setpriv`) that runs the demo child.
    pub fn spawn_with(cmd: &mut Command) -> LeakyChild {
        let mut child = cmd
            .arg("--max-seconds")
            .arg("120")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn demo-child");
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read ready line");
        let json = line
            .strip_prefix("ready ")
            .unwrap_or_else(|| panic!("expected a ready line, got {line:?}"));
        let ready: Ready = serde_json::from_str(json.trim()).expect("ready json");
        LeakyChild {
            child,
            ready,
            stdin,
            stdout,
        }
    }

    pub fn pid(&self) -> i32 {
        self.ready.pid
    }

    /// Send one command and wait for its answer.
    pub fn command(&mut self, cmd: &str) -> String {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{cmd}").expect("write command");
        stdin.flush().expect("flush");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read answer");
        line.trim().to_string()
    }

    /// Close stdin (the child exits) without reaping it: it stays a zombie.
    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }
}

impl Drop for LeakyChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
