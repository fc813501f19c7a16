//! The permissions matrix: `leakwatch inspect --json` run (through `setpriv`) as uid 65534
//! with each set of capabilities, against a target that is root's, its own uid's, holds
//! permitted capabilities, or is non-dumpable. Every value is either exactly what root reads
//! (the ground truth, read by the test) or unknown with a message naming the capability
//! that would grant it — never a wrong 0 — and `leakwatch check` on the same target never
//! says unhealthy (exit 1) for what it could not read.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{count_fd_links, count_fds, setpriv_nobody, ss_states, LeakyChild};
use leakwatch::sample::{Sample, Source};

/// What the target is.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// root's, dumpable.
    Root,
    /// uid 65534, dumpable, no capabilities.
    Nobody,
    /// uid 65534 with CAP_NET_BIND_SERVICE permitted (and effective, via ambient).
    NobodyWithCaps,
    /// uid 65534, `prctl(PR_SET_DUMPABLE, 0)`.
    NobodyNonDumpable,
}

const CHILD_ARGS: [&str; 6] = ["--files", "5", "--close-wait", "3", "--recv-threads", "1"];

fn spawn(t: Target, bin: &PathBuf) -> LeakyChild {
    let mut cmd = match t {
        Target::Root => Command::new(bin),
        Target::Nobody | Target::NobodyNonDumpable => {
            let mut c = setpriv_nobody("");
            c.arg(bin);
            c
        }
        Target::NobodyWithCaps => {
            let mut c = setpriv_nobody("+net_bind_service");
            c.arg(bin);
            c
        }
    };
    cmd.arg("demo-child").args(CHILD_ARGS);
    if matches!(t, Target::NobodyNonDumpable) {
        cmd.arg("--non-dumpable");
    }
    LeakyChild::spawn_with(&mut cmd)
}

fn inspect(bin: &std::path::Path, caps: &str, pid: i32) -> Sample {
    common::inspect_as_nobody(bin, caps, pid)
}

/// `leakwatch check --pid PID` as nobody with `caps`: its exit code.
fn check(bin: &PathBuf, caps: &str, pid: i32) -> i32 {
    let out = setpriv_nobody(caps)
        .arg(bin)
        .args(["check", "--pid", &pid.to_string()])
        .output()
        .expect("run setpriv");
    out.status.code().unwrap_or(-1)
}

/// Each value exact or unknown-with-a-capability; returns which sections were known.
fn assert_exact_or_named(case: &str, s: &Sample, pid: i32) -> Vec<&'static str> {
    let mut known = Vec::new();
    let names_a_cap = |src: Source| {
        let m = s
            .unknown
            .get(&src)
            .map(|u| u.message.clone())
            .unwrap_or_default();
        assert!(
            m.contains("CAP_") || m.contains("refused although"),
            "{case}: {src:?} unknown without naming a capability: {m:?}"
        );
    };
    let kernel_count = std::fs::metadata(format!("/proc/{pid}/fd")).unwrap().len();
    let fds = s.fds.as_ref();
    if let Some(a) = fds.and_then(|f| f.allocated) {
        assert_eq!(a, kernel_count, "{case}: the kernel's count");
    }
    match fds.and_then(|f| f.open) {
        Some(open) => {
            assert_eq!(open as usize, count_fds(pid), "{case}: open fds");
            known.push("fds");
        }
        None => names_a_cap(Source::Fds),
    }
    match fds.and_then(|f| f.by_type.as_ref()) {
        Some(t) => {
            assert_eq!(t.socket as usize, count_fd_links(pid, "socket:"), "{case}");
            known.push("fd types");
        }
        None => names_a_cap(Source::Fds),
    }
    match &s.tcp {
        Some(tcp) => {
            let truth = ss_states(pid);
            assert_eq!(
                tcp.states.close_wait,
                truth.get("close_wait").copied().unwrap_or(0),
                "{case}: CLOSE_WAIT"
            );
            known.push("tcp");
        }
        None => names_a_cap(Source::Tcp),
    }
    match &s.heap {
        Some(h) => {
            assert!(h.estimate_bytes > 0, "{case}: a heap of 0 is a wrong 0");
            known.push("heap");
        }
        None => names_a_cap(Source::Heap),
    }
    match &s.stuck {
        Some(st) => {
            assert_eq!(st.count, 1, "{case}: the one recv worker");
            known.push("stuck");
        }
        None => names_a_cap(Source::Stuck),
    }
    // World-readable: always exact.
    let rss = s.memory.as_ref().and_then(|m| m.rss_bytes).expect("rss");
    assert!(rss > 0, "{case}");
    assert!(s.fd_limit.is_some(), "{case}: limits are world-readable");
    let threads = s.threads.as_ref().expect("threads").count;
    let truth = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count() as u64;
    assert_eq!(threads, truth, "{case}: threads");
    known
}

#[test]
fn every_reader_and_target_gets_exact_values_or_the_capability_named() {
    if let Some(why) = common::cannot_drop_privileges() {
        return common::skip::skip("LEAKWATCH_REQUIRE_ROOT", &why);
    }
    let (_dir, bin) = common::world_executable_bin();
    let all = vec!["fds", "fd types", "tcp", "heap", "stuck"];
    // (target, reader's capabilities, what must be known)
    let cases: Vec<(Target, &str, Option<Vec<&str>>)> = vec![
        (Target::Nobody, "", Some(all.clone())),
        (Target::Root, "", Some(vec![])),
        (Target::Root, "+sys_ptrace", Some(vec!["heap"])),
        (Target::Root, "+dac_read_search", Some(vec!["fds"])),
        (
            Target::Root,
            "+sys_ptrace,+dac_read_search",
            Some(all.clone()),
        ),
        (Target::NobodyWithCaps, "", Some(vec!["fds"])),
        (Target::NobodyWithCaps, "+sys_ptrace", Some(all.clone())),
        (Target::NobodyNonDumpable, "", Some(vec![])),
        (
            Target::NobodyNonDumpable,
            "+sys_ptrace,+dac_read_search",
            Some(all.clone()),
        ),
    ];
    let mut table = Vec::new();
    for (t, caps, expect) in cases {
        let child = spawn(t, &bin);
        let pid = child.pid();
        // Let the recv worker sit in its call.
        let case = format!("{t:?} read by nobody {caps:?}");
        let s = inspect(&bin, caps, pid);
        let known = assert_exact_or_named(&case, &s, pid);
        if let Some(expect) = expect {
            assert_eq!(known, expect, "{case}");
        }
        if matches!(t, Target::NobodyWithCaps | Target::NobodyNonDumpable) && caps.is_empty() {
            // The reader has the target's uid: the advice must not be "the target's uid".
            let m = &s.unknown[&Source::Heap].message;
            assert!(
                m.contains("runs as the target's uid") && m.contains("CAP_SYS_PTRACE"),
                "{case}: {m}"
            );
        }
        let code = check(&bin, caps, pid);
        assert_ne!(
            code, 1,
            "{case}: unreadable values made check say unhealthy"
        );
        let why: Vec<String> = s
            .unknown
            .iter()
            .map(|(src, u)| format!("    {src:?}: {}", u.message))
            .collect();
        table.push(format!(
            "{case:<60} known: {known:?}; check exit {code}\n{}",
            why.join("\n")
        ));
    }
    println!("{}", table.join("\n"));
}
