//! The two ways to a target's sockets, on real children in cgroup v2 directories of their
//! own: alone in its cgroup, the table the kernel filters by that cgroup, with no fd walk;
//! sharing it, the fd links joined with the table. Both must give `ss`'s counts for the
//! process (TIME_WAIT aside), with accepted sockets counted, orphans after `close` and
//! connections still in an accept queue not; and the cgroup way must end when the
//! cgroup's sockets are not the target's.

mod common;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::cgroup::Cgroup;
use common::{eventually, ss_states, target, LeakyChild};
use leakwatch::collect::{CollectOptions, Collector};
use leakwatch::sample::{Sample, SocketsFrom, TcpTable};

/// A cgroup v2 directory of the test's own, or None after saying why the test skips.
fn cgroup(name: &str) -> Option<Cgroup> {
    let cg = Cgroup::new(name);
    if cg.is_none() {
        let why = "cannot create cgroup v2 directories (needs root)";
        common::skip::skip("LEAKWATCH_REQUIRE_ROOT", why);
    }
    cg
}

fn options() -> CollectOptions {
    CollectOptions {
        fd_types_every: Duration::from_secs(3600),
        ..CollectOptions::default()
    }
}

/// The TCP states leakwatch counted, as `ss_states` names them (zeros left out).
fn states(s: &Sample) -> BTreeMap<String, u64> {
    let t = s.tcp.as_ref().expect("a TCP section");
    assert_eq!(t.source, TcpTable::SockDiag);
    let v = serde_json::to_value(&t.states).unwrap();
    v.as_object()
        .unwrap()
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)).filter(|(_, n)| *n > 0))
        .filter(|(k, _)| k != "time_wait")
        .collect()
}

fn ss(pid: i32) -> BTreeMap<String, u64> {
    let mut m = ss_states(pid);
    m.remove("time_wait");
    m
}

/// Collect until leakwatch's counts equal `ss`'s (FINs settle quickly); the last sample.
fn agreeing(c: &mut Collector, pid: i32, opts: &CollectOptions) -> Sample {
    let mut last = None;
    let ok = eventually(|| {
        let s = c.collect(target(pid), opts);
        let same = states(&s) == ss(pid);
        last = Some(s);
        same
    });
    let s = last.unwrap();
    assert!(
        ok,
        "leakwatch {:?} != ss {:?}: {:#?}",
        states(&s),
        ss(pid),
        s.tcp
    );
    s
}

fn from(s: &Sample) -> (SocketsFrom, String) {
    let m = &s.tcp.as_ref().unwrap().method;
    (m.from, m.why.clone())
}

#[test]
fn alone_in_its_cgroup_the_sockets_come_from_the_cgroup_and_equal_ss() {
    let Some(cg) = cgroup("alone") else { return };
    let mut child = cg.spawn(&["--files", "20", "--peers", "2"]);
    let pid = child.pid();
    // Accepted from its own listeners (both ends held), CLOSE_WAIT (the peer end closed
    // by the child: an orphan in FIN_WAIT2, charged to the cgroup, held by no fd).
    assert_eq!(child.command("established 5"), "ok");
    assert_eq!(child.command("close-wait 7"), "ok");
    let mut c = Collector::new("/proc", "/sys/fs/cgroup");
    let opts = options();

    let first = agreeing(&mut c, pid, &opts);
    let (way, why) = from(&first);
    assert_eq!(way, SocketsFrom::FdJoin, "{why}");
    let types = first.fds.as_ref().unwrap().by_type.clone().expect("types");
    assert!(types.socket >= 19, "{types:?}");

    std::thread::sleep(Duration::from_millis(1100));
    let s = agreeing(&mut c, pid, &opts);
    let (way, why) = from(&s);
    assert_eq!(way, SocketsFrom::Cgroup, "{why}");
    assert!(why.contains("alone in its cgroup"), "{why}");
    let want = ss(pid);
    assert_eq!(want.get("established"), Some(&10));
    assert_eq!(want.get("close_wait"), Some(&7));
    assert_eq!(want.get("listen"), Some(&2));
    // No walk: the kernel's count, the breakdown as of the first tick.
    let fds = s.fds.as_ref().unwrap();
    assert_eq!(fds.open, None);
    assert_eq!(fds.allocated, Some(common::count_fds(pid) as u64));
    assert_eq!(fds.by_type.as_ref(), Some(&types));
    assert!(fds.by_type_age_ms >= 1000, "{fds:?}");
    assert_eq!(
        s.tcp.as_ref().unwrap().other_sockets,
        first.tcp.unwrap().other_sockets
    );

    // New leaks are seen tick by tick, still without a walk.
    assert_eq!(child.command("close-wait 3"), "ok");
    let s = agreeing(&mut c, pid, &opts);
    assert_eq!(from(&s).0, SocketsFrom::Cgroup);
    assert_eq!(ss(pid).get("close_wait"), Some(&10));

    // Two connections of ours left in its listener's accept queue: charged to its cgroup,
    // held by no fd of it (the kernel gives them no inode until accepted).
    let queued: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(child.ready.listeners[0]).unwrap())
        .collect();
    let s = agreeing(&mut c, pid, &opts);
    assert_eq!(from(&s).0, SocketsFrom::Cgroup);
    assert_eq!(states(&s).get("established"), Some(&10));
    drop(queued);
}

#[test]
fn a_second_process_in_the_cgroup_brings_the_fd_join_back() {
    let Some(cg) = cgroup("shared") else { return };
    let mut child = cg.spawn(&["--peers", "1"]);
    let pid = child.pid();
    assert_eq!(child.command("established 3"), "ok");
    assert_eq!(child.command("close-wait 4"), "ok");
    let mut c = Collector::new("/proc", "/sys/fs/cgroup");
    let opts = options();
    agreeing(&mut c, pid, &opts);
    assert_eq!(from(&agreeing(&mut c, pid, &opts)).0, SocketsFrom::Cgroup);

    // Another process joins (a worker it forked would too): its sockets are charged to the
    // same cgroup, and only the fds tell whose they are. Each process is charged with the
    // sockets in its own fd table.
    let mut other = cg.spawn(&["--peers", "1"]);
    assert_eq!(other.command("established 6"), "ok");
    assert_eq!(other.command("close-wait 5"), "ok");
    let s = agreeing(&mut c, pid, &opts);
    let (way, why) = from(&s);
    assert_eq!(way, SocketsFrom::FdJoin, "{why}");
    assert!(why.contains("2 processes share cgroup"), "{why}");
    assert_eq!(ss(pid).get("close_wait"), Some(&4));

    // Alone again: the cgroup way, the other's sockets gone with it.
    drop(other);
    let back = eventually(|| from(&agreeing(&mut c, pid, &opts)).0 == SocketsFrom::Cgroup);
    assert!(back, "{:?}", from(&c.collect(target(pid), &opts)));
}

#[test]
fn sockets_charged_elsewhere_or_held_by_another_keep_the_fd_join() {
    let Some(a) = cgroup("mine") else { return };
    let Some(b) = cgroup("elsewhere") else { return };
    // Sockets made before the move stay charged to the cgroup they were made in.
    let child = LeakyChild::spawn(&["--established", "2", "--close-wait", "3"]);
    let pid = child.pid();
    a.enter(pid);
    let mut c = Collector::new("/proc", "/sys/fs/cgroup");
    let opts = options();
    let s = agreeing(&mut c, pid, &opts);
    assert!(from(&s).1.contains("the first tick"), "{:?}", from(&s));
    for _ in 0..2 {
        let s = agreeing(&mut c, pid, &opts);
        let (way, why) = from(&s);
        assert_eq!(way, SocketsFrom::FdJoin, "{why}");
        assert!(why.contains("charged to another cgroup"), "{why}");
    }
    drop(child);

    // A process that made sockets in the cgroup and left it: they are still charged there,
    // held by no fd of the target, which is alone.
    let mut child = a.spawn(&["--peers", "1"]);
    let pid = child.pid();
    assert_eq!(child.command("close-wait 2"), "ok");
    let leaver = a.spawn(&["--peers", "1", "--established", "4"]);
    b.enter(leaver.pid());
    let opts = CollectOptions {
        fd_types_every: Duration::from_millis(1),
        ..options()
    };
    let mut c = Collector::new("/proc", "/sys/fs/cgroup");
    agreeing(&mut c, pid, &opts);
    let s = agreeing(&mut c, pid, &opts);
    let (way, why) = from(&s);
    assert_eq!(way, SocketsFrom::FdJoin, "{why}");
    assert!(why.contains("held by no fd of the target"), "{why}");
    // The count changes (a walk is due): still the fd join, still exact.
    assert_eq!(child.command("close-wait 1"), "ok");
    let s = agreeing(&mut c, pid, &opts);
    assert_eq!(from(&s).0, SocketsFrom::FdJoin);
    assert_eq!(ss(pid).get("close_wait"), Some(&3));
    // The leaver is gone: the next walk agrees, and the cgroup way comes back.
    drop(leaver);
    let back = eventually(|| {
        // A walk (the count changed), then a tick that needs none.
        assert_eq!(child.command("files 1"), "ok");
        agreeing(&mut c, pid, &opts);
        from(&agreeing(&mut c, pid, &opts)).0 == SocketsFrom::Cgroup
    });
    assert!(back, "{:?}", from(&c.collect(target(pid), &opts)));
}

#[test]
fn the_pidfd_scan_finds_what_the_walk_finds() {
    let mut child = LeakyChild::spawn(&[
        "--files",
        "300",
        "--pipes",
        "5",
        "--established",
        "4",
        "--close-wait",
        "3",
    ]);
    let pid = child.pid();
    let dir = PathBuf::from(format!("/proc/{pid}"));
    let mut walked = leakwatch::collect::fd::scan_fds(&dir).unwrap();
    let mut by_pidfd =
        leakwatch::collect::fd::scan_fds_by_pidfd(Path::new("/proc"), &dir, pid).unwrap();
    walked.sockets.sort_unstable();
    by_pidfd.sockets.sort_unstable();
    assert_eq!(by_pidfd.sockets, walked.sockets);
    assert_eq!(by_pidfd.fds.by_type, walked.fds.by_type);
    assert_eq!(by_pidfd.fds.open, walked.fds.open);
    assert_eq!(by_pidfd.fds.allocated, walked.fds.allocated);
    assert!(by_pidfd.fds.by_type.unwrap().pipe >= 10);
    // Every duplicate closed: none of our fds is one of the child's sockets.
    let theirs: Vec<String> = walked
        .sockets
        .iter()
        .map(|(_, inode)| format!("socket:[{inode}]"))
        .collect();
    for fd in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let link = std::fs::read_link(fd.path()).unwrap_or_default();
        assert!(
            !theirs.contains(&link.display().to_string()),
            "{link:?} left open"
        );
    }
    // The child is untouched: its fds still all there, its sockets still answering.
    assert_eq!(common::count_fds(pid), walked.fds.open.unwrap() as usize);
    assert_eq!(child.command("files 1"), "ok");
}

#[test]
fn a_target_leaking_fast_stays_on_the_cgroup_way() {
    let Some(cg) = cgroup("fast") else { return };
    // A CLOSE_WAIT socket every 5 ms: sockets appear while the fds are being read.
    let child = cg.spawn(&["--leak-every", "5ms", "--nofile", "4000"]);
    let pid = child.pid();
    let opts = CollectOptions {
        fd_types_every: Duration::from_millis(200),
        ..options()
    };
    let mut c = Collector::new("/proc", "/sys/fs/cgroup");
    let (mut by_cgroup, mut checks, mut ticks) = (0, 0, 0);
    // Ticks 50 ms apart until 20 came from the cgroup and 3 checked it. How many walk for
    // the breakdown depends on the machine's pace (one at most every 200 ms), so the
    // count of ticks is not fixed; every tick that does not walk must be the cgroup's.
    let deadline = Instant::now() + Duration::from_secs(60);
    while (by_cgroup < 20 || checks < 3) && Instant::now() < deadline {
        let s = c.collect(target(pid), &opts);
        let (way, why) = from(&s);
        ticks += 1;
        // No race taken for a foreign socket: the sockets made or closed while the fds
        // were read are the target's.
        assert!(!why.contains("fd links decide"), "{why}");
        assert!(
            way == SocketsFrom::Cgroup || why.contains("reads every fd link"),
            "tick {ticks} left the cgroup way: {why}"
        );
        by_cgroup += u32::from(way == SocketsFrom::Cgroup);
        checks += u32::from(why.contains("checks the cgroup's sockets"));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(checks >= 3, "{checks} checks in {ticks} ticks");
    assert!(
        by_cgroup >= 20,
        "{by_cgroup} of {ticks} ticks from the cgroup"
    );
}
