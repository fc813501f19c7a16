//! The collector against real child processes, checked against ground truth the test reads
//! itself (`/proc/PID/fd` listings, `prlimit`, `statm`): fds, limits, memory and the heap
//! estimate; zombies, exits, pid reuse and fds closing under the scan.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{count_fd_links, count_fds, target, LeakyChild};
use leakwatch::collect::{fd::scan_fds, stat::read_stat, CollectOptions, Collector};
use leakwatch::error::UnknownKind;
use leakwatch::sample::{Limit, Sample, Source, TargetId, TargetState};

fn collect(pid: i32) -> Sample {
    Collector::new("/proc", "/sys/fs/cgroup").collect(target(pid), &CollectOptions::default())
}

/// `prlimit --pid PID --nofile`: (soft, hard).
fn prlimit_nofile(pid: i32) -> (u64, u64) {
    let out = Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            "--nofile",
            "--raw",
            "--noheadings",
            "-o",
            "SOFT,HARD",
        ])
        .output()
        .expect("run prlimit (util-linux)");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<u64> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(v.len(), 2, "prlimit said {text:?}");
    (v[0], v[1])
}

#[test]
fn fds_by_type_and_limit_match_ground_truth() {
    let mut child = LeakyChild::spawn(&[
        "--nofile",
        "300",
        "--files",
        "20",
        "--pipes",
        "3",
        "--established",
        "2",
        "--close-wait",
        "3",
    ]);
    let pid = child.pid();
    let s = collect(pid);
    assert_eq!(s.state, TargetState::Running);
    let fds = s.fds.expect("fds known");
    assert_eq!(
        fds.open.unwrap() as usize,
        count_fds(pid),
        "open fds = entries of /proc/PID/fd"
    );
    let kernel_count = std::fs::metadata(format!("/proc/{pid}/fd")).unwrap().len();
    assert_eq!(
        fds.allocated,
        Some(kernel_count),
        "Linux >= 6.2 counts fds in st_size"
    );
    let t = fds.by_type.as_ref().expect("types known");
    assert_eq!(t.socket as usize, count_fd_links(pid, "socket:"));
    assert_eq!(t.pipe as usize, count_fd_links(pid, "pipe:"));
    assert_eq!(t.file as usize, count_fd_links(pid, "/"));
    assert!(t.file >= 20 && t.pipe >= 6 && t.socket >= 1 + 4 + 3);
    assert_eq!(
        t.socket + t.pipe + t.anon_inode + t.file + t.other,
        fds.open.unwrap()
    );

    let (soft, hard) = prlimit_nofile(pid);
    assert_eq!(soft, 300);
    let limit = s.fd_limit.expect("limits known");
    assert_eq!(limit.soft, Limit::Limited(soft));
    assert_eq!(limit.hard, Limit::Limited(hard));

    // A leak of exactly 50 more.
    assert_eq!(child.command("files 50"), "ok");
    let after = collect(pid).fds.expect("fds known");
    assert_eq!(after.open.unwrap(), fds.open.unwrap() + 50);
    assert_eq!(after.by_type.unwrap().file, t.file + 50);
}

#[test]
fn memory_matches_statm_and_the_heap_estimate_sees_growth() {
    let mut child = LeakyChild::spawn(&["--grow-mib", "16"]);
    let pid = child.pid();
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .unwrap()
        .unwrap() as u64;
    let resident = || {
        let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap();
        statm
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            * page
    };
    // statm read just before and just after: equal on an idle child, and the collected
    // VmRSS between them when the kernel's batched RSS counters moved meanwhile.
    let before = resident();
    let s = collect(pid);
    let after = resident();
    let m = s.memory.expect("memory known");
    let rss = m.rss_bytes.expect("rss known");
    assert!(
        (before.min(after)..=before.max(after)).contains(&rss),
        "VmRSS {rss} = statm resident ({before} before, {after} after)"
    );
    assert!(m.anon_bytes.unwrap() >= 16 << 20);
    let heap = s.heap.expect("heap known");
    assert!(heap.estimate_bytes >= 16 << 20, "{heap:?}");
    assert!(
        s.smaps_rollup
            .expect("rollup known")
            .anonymous_bytes
            .unwrap()
            >= 16 << 20
    );

    assert_eq!(child.command("grow 64"), "ok");
    let s2 = collect(pid);
    let heap2 = s2.heap.expect("heap known");
    let grown = heap2.estimate_bytes - heap.estimate_bytes;
    assert!(
        (64 << 20..66 << 20).contains(&grown),
        "heap grew by {grown} bytes for 64 MiB"
    );
    let rss_grown = s2.memory.unwrap().rss_bytes.unwrap() - m.rss_bytes.unwrap();
    assert!(rss_grown >= 64 << 20, "rss grew by {rss_grown}");
}

#[test]
fn a_zombie_is_a_state_not_zero_fds() {
    let mut child = LeakyChild::spawn(&["--files", "10"]);
    let pid = child.pid();
    let id = target(pid);
    child.close_stdin(); // it exits; nobody reaps it yet
    assert!(common::eventually(|| read_stat(std::path::Path::new(
        &format!("/proc/{pid}")
    ))
    .is_ok_and(|st| st.state == 'Z')));
    let s = Collector::new("/proc", "/sys/fs/cgroup").collect(id, &CollectOptions::default());
    assert_eq!(s.state, TargetState::Zombie);
    assert_eq!(s.fds, None, "a zombie has no fd table; never report 0");
    assert_eq!(s.memory, None);
    assert_eq!(s.unknown[&Source::Fds].kind, UnknownKind::Zombie);
}

#[test]
fn an_exited_target_and_a_reused_pid_are_gone() {
    let mut child = LeakyChild::spawn(&[]);
    let pid = child.pid();
    let id = target(pid);
    let mut collector = Collector::new("/proc", "/sys/fs/cgroup");

    // Same pid, another start time: another process. Nothing of it is reported.
    let other = TargetId {
        pid,
        starttime_ticks: id.starttime_ticks + 1,
    };
    let s = collector.collect(other, &CollectOptions::default());
    assert_eq!(s.state, TargetState::Gone);
    assert_eq!(s.fds, None);
    assert!(s.unknown[&Source::Process]
        .message
        .contains("another process"));

    child.child.kill().unwrap();
    child.child.wait().unwrap();
    let s = collector.collect(id, &CollectOptions::default());
    assert_eq!(s.state, TargetState::Gone);
    assert_eq!(s.unknown[&Source::Process].kind, UnknownKind::Gone);
    assert_eq!(s.process, None);
}

#[test]
fn fds_closing_during_the_scan_are_skipped_and_counted() {
    let mut child = LeakyChild::spawn(&["--files", "10"]);
    let pid = child.pid();
    assert_eq!(child.command("churn 200"), "ok");
    let dir = std::path::PathBuf::from(format!("/proc/{pid}"));
    // Scan until the race has been hit (an fd listed, then closed before its readlink):
    // it takes milliseconds once the churn thread runs; 10 s bounds a starved machine.
    let started = std::time::Instant::now();
    let (mut scans, mut vanished_seen) = (0u64, 0u64);
    while vanished_seen == 0 && started.elapsed() < Duration::from_secs(10) {
        let scan = scan_fds(&dir).expect("a scan under churn still succeeds");
        let t = scan.fds.by_type.as_ref().expect("types known");
        assert!(t.file <= 10 + 200 + 5, "{t:?}");
        assert!(
            scan.fds.open.unwrap() <= 3 + 10 + 200 + 10,
            "{:?}",
            scan.fds
        );
        vanished_seen += scan.fds.vanished;
        scans += 1;
    }
    println!("{vanished_seen} fds closed between listing and readlink, in {scans} scans");
    assert!(vanished_seen > 0, "the race was never hit in {scans} scans");
}

#[test]
fn a_target_exiting_mid_scan_never_panics_and_ends_as_a_state() {
    let mut states = std::collections::BTreeMap::new();
    for i in 0..20u64 {
        let mut child = LeakyChild::spawn(&["--files", "3000", "--nofile", "4000"]);
        let id = target(child.pid());
        let killer = std::thread::spawn({
            let pid = nix::unistd::Pid::from_raw(child.pid());
            move || {
                std::thread::sleep(Duration::from_micros(i * 500));
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
        });
        let s = Collector::new("/proc", "/sys/fs/cgroup").collect(id, &CollectOptions::default());
        killer.join().unwrap();
        if s.state == TargetState::Running {
            assert!(s.fds.is_some());
        }
        *states.entry(format!("{:?}", s.state)).or_insert(0) += 1;
        let _ = child.child.wait();
    }
    println!("states seen while the target was killed during the scan: {states:?}");
}

#[test]
fn one_collector_tracks_stuck_workers_of_several_targets() {
    let a = LeakyChild::spawn(&["--recv-threads", "1"]);
    let b = LeakyChild::spawn(&["--recv-threads", "2"]);
    let (ta, tb) = (target(a.pid()), target(b.pid()));
    let mut collector = Collector::new("/proc", "/sys/fs/cgroup");
    let opts = CollectOptions {
        stuck_after: Duration::from_millis(500),
        ..CollectOptions::default()
    };
    collector.collect(ta, &opts);
    collector.collect(tb, &opts);
    std::thread::sleep(Duration::from_millis(700));
    // Looking at b between two looks at a must not reset a's "blocked since".
    let sa = collector.collect(ta, &opts);
    let sb = collector.collect(tb, &opts);
    assert_eq!(sa.stuck.expect("a: stuck known").count, 1);
    assert_eq!(sb.stuck.expect("b: stuck known").count, 2);
}

#[test]
fn resolving_again_after_a_restart_finds_the_new_process() {
    use leakwatch::target::SelectorRegex;
    use leakwatch::target::{Resolver, Selector};
    // A command line no other test uses; leakwatch never selects itself or this test.
    let args = ["--files", "17", "--pipes", "17"];
    let selector = Selector::CmdlineRegex(SelectorRegex(
        regex::Regex::new("demo-child --files 17 --pipes 17").unwrap(),
    ));
    let resolver = Resolver::new("/proc", "/sys/fs/cgroup");

    let first = LeakyChild::spawn(&args);
    let a = resolver.resolve(&selector).expect("the first process");
    assert_eq!(a, target(first.pid()));
    drop(first); // killed and reaped
    let mut collector = Collector::new("/proc", "/sys/fs/cgroup");
    assert_eq!(
        collector.collect(a, &CollectOptions::default()).state,
        TargetState::Gone
    );
    assert!(
        resolver.resolve(&selector).is_err(),
        "nothing matches while it is down"
    );

    let second = LeakyChild::spawn(&args);
    let b = resolver.resolve(&selector).expect("the restarted process");
    assert_eq!(b, target(second.pid()));
    assert_ne!(a, b, "a new (pid, starttime)");
    let s = collector.collect(b, &CollectOptions::default());
    assert_eq!(s.state, TargetState::Running);
    let files = s.fds.unwrap().by_type.unwrap().file;
    assert_eq!(files as usize, count_fd_links(second.pid(), "/"));
    assert!(files >= 17);
}
