//! `leakwatch inspect` end to end against real children: the report and the JSON agree with
//! ground truth read by the test; without the rights to look, values are unknown with the
//! capability that would grant them, never 0.

mod common;

use std::process::{Command, Output};

use common::{count_fds, ss_states, LeakyChild, BIN};
use leakwatch::error::UnknownKind;
use leakwatch::sample::{Sample, Source};

fn inspect(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("inspect")
        .args(args)
        .output()
        .expect("run leakwatch inspect")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The line of the report that starts with `label`.
fn line<'a>(report: &'a str, label: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no {label} line in:\n{report}"))
}

#[test]
fn report_agrees_with_ls_and_ss() {
    let child = LeakyChild::spawn(&[
        "--files",
        "13",
        "--pipes",
        "2",
        "--established",
        "3",
        "--close-wait",
        "5",
        "--recv-threads",
        "2",
        "--accept-thread",
    ]);
    let pid = child.pid();
    // Selected by command line: the regex is in leakwatch's own command line too, and
    // leakwatch never selects itself.
    let out = inspect(&[
        "--stuck-after",
        "1s",
        "--cmdline-regex",
        "demo-child --files 13 --pipes 2",
    ]);
    let report = stdout(&out);
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.starts_with(&format!("pid {pid} (leakwatch) running")),
        "{report}"
    );

    let fds = line(&report, "FDS");
    let n = count_fds(pid);
    assert!(
        fds.starts_with(&format!("FDS       {n} open ")),
        "{fds} vs {n} in /proc/{pid}/fd"
    );
    // The acceptor thread blocked in accept() holds a reserved fd number.
    assert!(fds.contains("(+1 reserved by calls in progress)"), "{fds}");
    let tcp = line(&report, "TCP");
    let truth = ss_states(pid);
    for (state, n) in &truth {
        assert!(
            tcp.contains(&format!("{state} {n}")),
            "{tcp} vs ss {truth:?}"
        );
    }
    assert!(tcp.contains("close_wait 5"), "{tcp}");
    let listener = child.ready.listeners[0].to_string();
    let peer_line = report
        .lines()
        .skip_while(|l| !l.contains("CLOSE_WAIT by peer"))
        .nth(1)
        .unwrap_or_default();
    assert!(
        peer_line.contains(&listener) && peer_line.contains(" 5 "),
        "{peer_line}"
    );
    assert!(line(&report, "MEMORY").contains("rss "));
    assert!(report.contains("heap estimate"), "{report}");
    let stuck = line(&report, "STUCK");
    assert!(
        stuck.starts_with("STUCK     2 workers"),
        "{stuck}\n{report}"
    );
    for tid in &child.ready.recv_tids {
        let w = report
            .lines()
            .find(|l| l.contains(&format!("tid {tid} ")))
            .unwrap_or_else(|| panic!("stuck worker {tid} not listed:\n{report}"));
        assert!(
            w.contains("recvfrom") && w.contains("established") && w.contains(&listener),
            "{w}"
        );
    }
}

#[test]
fn json_is_the_sample_and_agrees_with_ground_truth() {
    let child = LeakyChild::spawn(&["--files", "7", "--close-wait", "4", "--peers", "2"]);
    let pid = child.pid();
    let out = inspect(&["--json", "--stuck-after", "0s", &pid.to_string()]);
    assert!(out.status.success());
    let s: Sample = serde_json::from_slice(&out.stdout).expect("inspect --json is a Sample");
    assert_eq!(s.target.pid, pid);
    assert_eq!(s.fds.as_ref().unwrap().open, Some(count_fds(pid) as u64));
    let tcp = s.tcp.expect("tcp known");
    assert_eq!(tcp.states.close_wait, 4);
    assert_eq!(
        Some(&tcp.states.close_wait),
        ss_states(pid).get("close_wait")
    );
    assert_eq!(tcp.top_close_wait_peers.len(), 2);
    assert_eq!(s.unknown[&Source::Stuck].kind, UnknownKind::NotCollected);
}

#[test]
fn missing_target_is_exit_2_with_a_message() {
    let out = inspect(&["--pid", "2147483646"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pid 2147483646 does not exist"));
    let out = inspect(&["--name", "no-such-process-name"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("no process matches name = \"no-such-process-name\""));
}

/// `leakwatch inspect --json PID` as uid 65534 holding only `caps` ("" for none).
fn inspect_as_nobody(bin: &std::path::Path, caps: &str, pid: i32) -> Option<Sample> {
    if let Some(why) = common::cannot_drop_privileges() {
        common::skip::skip("LEAKWATCH_REQUIRE_ROOT", &why);
        return None;
    }
    Some(common::inspect_as_nobody(bin, caps, pid))
}

#[test]
fn another_uid_without_capabilities_sees_unknown_with_the_capability_named() {
    let child = LeakyChild::spawn(&["--files", "5", "--close-wait", "3", "--recv-threads", "1"]);
    let (_dir, bin) = common::world_executable_bin();
    let Some(s) = inspect_as_nobody(&bin, "", child.pid()) else {
        return;
    };
    // The kernel's count needs no rights at all: stat of the fd directory.
    let kernel_count = std::fs::metadata(format!("/proc/{}/fd", child.pid()))
        .unwrap()
        .len();
    let fds = s.fds.expect("the kernel's fd count is readable by any uid");
    assert_eq!(fds.allocated, Some(kernel_count));
    assert_eq!(fds.open, None, "the listing is unknown, never a wrong 0");
    assert_eq!(fds.by_type, None);
    let why = &s.unknown[&Source::Fds];
    assert_eq!(why.kind, UnknownKind::PermissionDenied);
    assert!(
        why.message.contains("CAP_DAC_READ_SEARCH"),
        "{}",
        why.message
    );
    assert_eq!(s.tcp, None, "sockets are found through the fd links");
    assert!(s.unknown[&Source::Tcp].message.contains("fd links"));
    assert_eq!(s.heap, None);
    assert!(s.unknown[&Source::Heap].message.contains("CAP_SYS_PTRACE"));
    assert_eq!(s.stuck, None, "unknown, never 0");
    assert!(s.unknown[&Source::Stuck].message.contains("CAP_SYS_PTRACE"));
    // World-readable files still give exact values.
    assert!(s.memory.unwrap().rss_bytes.unwrap() > 0);
    assert!(s.fd_limit.is_some());
    assert!(s.threads.unwrap().count >= 2);
}

#[test]
fn another_uid_with_dac_read_search_only_counts_fds_but_not_their_types() {
    let child = LeakyChild::spawn(&["--files", "5", "--close-wait", "3", "--recv-threads", "1"]);
    let (_dir, bin) = common::world_executable_bin();
    let Some(s) = inspect_as_nobody(&bin, "+dac_read_search", child.pid()) else {
        return;
    };
    let fds = s.fds.expect("fds partly known");
    assert_eq!(fds.open, Some(count_fds(child.pid()) as u64));
    assert_eq!(fds.by_type, None);
    assert!(s.unknown[&Source::Fds].message.contains("CAP_SYS_PTRACE"));
    assert_eq!(s.tcp, None);
    assert_eq!(
        s.stuck, None,
        "a worker cannot be tied to a socket: unknown, never 0"
    );
}

#[test]
fn another_uid_with_ptrace_and_dac_read_search_sees_everything() {
    let child = LeakyChild::spawn(&["--files", "5", "--close-wait", "3", "--recv-threads", "1"]);
    let (_dir, bin) = common::world_executable_bin();
    let caps = "+dac_read_search,+sys_ptrace";
    let Some(s) = inspect_as_nobody(&bin, caps, child.pid()) else {
        return;
    };
    assert_eq!(s.fds.unwrap().open, Some(count_fds(child.pid()) as u64));
    assert_eq!(s.tcp.unwrap().states.close_wait, 3);
    assert!(s.heap.is_some());
    assert_eq!(s.stuck.unwrap().count, 1);
    for src in [
        Source::Fds,
        Source::Tcp,
        Source::Heap,
        Source::Stuck,
        Source::Threads,
    ] {
        assert!(
            !s.unknown.contains_key(&src),
            "{src:?}: {:?}",
            s.unknown.get(&src)
        );
    }
}
