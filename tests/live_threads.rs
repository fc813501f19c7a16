//! Threads and stuck workers of real processes: the leaking child's workers blocked in
//! `recv()` on sockets whose peer never sends are stuck; its acceptor (in `accept`), its
//! sleeper and its main thread (in `read` on a pipe) are not. Ground truth is read by the
//! test itself from /proc.

mod common;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use common::LeakyChild;
use leakwatch::clock::mono_ms;
use leakwatch::collect::task::{
    read_syscall, read_threads, syscall_name, SocketLookup, StuckTracker,
};
use leakwatch::collect::{fd, CollectOptions, Collector};
use leakwatch::error::UnknownKind;
use leakwatch::sample::{Source, Stuck, SyscallState, TargetId, TcpSocket, TcpState};

const STUCK_AFTER_MS: u64 = 1000;
const PAST_STUCK_AFTER: Duration = Duration::from_millis(1200);

/// The child, once every thread sleeps and the workers sit in `recv()` (its `ready` line
/// comes as the threads start, a moment before they block).
fn spawn_child() -> LeakyChild {
    let child = LeakyChild::spawn(&[
        "--recv-threads",
        "3",
        "--accept-thread",
        "--established",
        "2",
        "--close-wait",
        "2",
    ]);
    let pid = child.pid();
    let in_recv = format!("{} ", libc::SYS_recvfrom);
    let settled = common::eventually(|| {
        let all_sleep = std::fs::read_dir(pid_dir(pid).join("task"))
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok())
            .all(|st| {
                st.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('S'))
            });
        all_sleep
            && child.ready.recv_tids.iter().all(|tid| {
                std::fs::read_to_string(pid_dir(pid).join(format!("task/{tid}/syscall")))
                    .is_ok_and(|text| text.starts_with(&in_recv))
            })
    });
    assert!(settled, "the child's threads did not settle");
    child
}

fn pid_dir(pid: i32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}"))
}

/// Ground truth: the entries of /proc/PID/task.
fn task_entries(pid: i32) -> usize {
    std::fs::read_dir(pid_dir(pid).join("task"))
        .unwrap()
        .count()
}

/// Ground truth: the socket inode `/proc/PID/fd/FD` links to.
fn socket_inode(pid: i32, fd: i32) -> u64 {
    let link = std::fs::read_link(pid_dir(pid).join(format!("fd/{fd}"))).unwrap();
    let link = link.to_string_lossy();
    link.strip_prefix("socket:[")
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or_else(|| panic!("fd {fd} is {link}, not a socket"))
        .parse()
        .unwrap()
}

/// A small parse of `/proc/PID/net/tcp` (IPv4; the child uses 127.0.0.x only), independent
/// of leakwatch's own TCP reader.
fn tcp_by_inode(pid: i32) -> Vec<TcpSocket> {
    let text = std::fs::read_to_string(pid_dir(pid).join("net/tcp")).unwrap();
    let addr = |hex: &str| {
        let (ip, port) = hex.split_once(':').unwrap();
        let ip = u32::from_str_radix(ip, 16).unwrap().to_ne_bytes();
        let port = u16::from_str_radix(port, 16).unwrap();
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port))
    };
    let mut rows: Vec<TcpSocket> = text
        .lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (tx, rx) = f[4].split_once(':').unwrap();
            TcpSocket {
                state: TcpState::from_kernel(u8::from_str_radix(f[3], 16).unwrap()),
                local: addr(f[1]),
                remote: addr(f[2]),
                recv_queue_bytes: u64::from_str_radix(rx, 16).unwrap(),
                send_queue_bytes: u64::from_str_radix(tx, 16).unwrap(),
                inode: f[9].parse().unwrap(),
            }
        })
        .collect();
    rows.sort_unstable_by_key(|s| s.inode);
    rows
}

/// Read the threads and observe them once, with the fd table and TCP table of this moment.
fn observe(tracker: &mut StuckTracker, target: TargetId) -> Stuck {
    observe_with(tracker, target, false)
}

/// [`observe`]; with `links_only`, no fd walk: the link of each fd a thread waits on is
/// read alone, as on a tick that takes the sockets from the target's cgroup.
fn observe_with(tracker: &mut StuckTracker, target: TargetId, links_only: bool) -> Stuck {
    let dir = pid_dir(target.pid);
    let scan = read_threads(&dir).unwrap();
    assert!(scan.syscall_error.is_none(), "{:?}", scan.syscall_error);
    let fd_inodes: HashMap<i32, u64> = if links_only {
        HashMap::new()
    } else {
        fd::scan_fds(&dir).unwrap().sockets.into_iter().collect()
    };
    let tcp = tcp_by_inode(target.pid);
    let lookup = SocketLookup {
        fd_inodes: &fd_inodes,
        links: links_only.then_some(dir.as_path()),
        tcp_by_inode: &tcp,
    };
    tracker.track(target, &scan.threads, mono_ms(), STUCK_AFTER_MS, &lookup)
}

#[test]
fn reads_every_thread_of_the_child() {
    let child = spawn_child();
    let pid = child.pid();
    let scan = read_threads(&pid_dir(pid)).unwrap();
    assert!(scan.syscall_error.is_none(), "{:?}", scan.syscall_error);
    let t = &scan.threads;
    assert_eq!(t.count as usize, task_entries(pid));
    assert_eq!(t.count as usize, t.tasks.len());
    let names: Vec<&str> = t.tasks.iter().map(|t| t.name.as_str()).collect();
    for name in [
        "recv-worker-0",
        "recv-worker-1",
        "recv-worker-2",
        "acceptor",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    for task in &t.tasks {
        let comm = std::fs::read_to_string(pid_dir(pid).join(format!("task/{}/comm", task.tid)));
        assert_eq!(task.name, comm.unwrap().trim_end());
        assert!(task.voluntary_ctxt_switches.is_some());
    }
    // Every thread of the idle child sleeps.
    assert_eq!(t.states.sleeping, t.count, "{:?}", t.states);
    let recv = libc::SYS_recvfrom;
    for tid in &child.ready.recv_tids {
        let task = t.tasks.iter().find(|t| t.tid == *tid).unwrap();
        assert!(
            matches!(task.syscall, Some(SyscallState::In { nr, .. }) if nr == recv),
            "{task:?}"
        );
    }
}

#[test]
fn recv_workers_are_stuck_acceptor_and_main_thread_are_not() {
    let child = spawn_child();
    let pid = child.pid();
    let target = common::target(pid);
    let mut tracker = StuckTracker::new();

    let first = observe(&mut tracker, target);
    assert_eq!(first.count, 0, "nothing is stuck on first sight: {first:?}");
    std::thread::sleep(PAST_STUCK_AFTER);
    let stuck = observe(&mut tracker, target);

    let mut tids: Vec<i32> = stuck.workers.iter().map(|w| w.tid).collect();
    tids.sort();
    let mut want = child.ready.recv_tids.clone();
    want.sort();
    assert_eq!(tids, want, "{stuck:#?}");
    assert_eq!(stuck.count, 3);
    assert_eq!(stuck.stuck_after_ms, STUCK_AFTER_MS);
    let listener = child.ready.listeners[0];
    for w in &stuck.workers {
        assert_eq!(w.syscall, "recvfrom");
        assert!(w.name.starts_with("recv-worker-"), "{w:?}");
        assert!(w.blocked_for_ms >= STUCK_AFTER_MS, "{w:?}");
        assert_eq!(w.socket_inode, socket_inode(pid, w.fd), "{w:?}");
        let sock = w.socket.as_ref().expect("a TCP socket");
        assert_eq!(sock.state, TcpState::Established);
        assert_eq!(sock.remote, listener);
        assert_eq!(sock.inode, w.socket_inode);
    }
    let accept = child.ready.accept_tid.unwrap();
    assert!(!tids.contains(&accept) && !tids.contains(&pid));
    // Without the fd walk, the links of the fds waited on alone: the same workers, sockets.
    let by_links = observe_with(&mut tracker, target, true);
    assert_eq!(by_links.count, 3);
    for (a, b) in stuck.workers.iter().zip(&by_links.workers) {
        assert_eq!((a.tid, a.fd, a.socket_inode), (b.tid, b.fd, b.socket_inode));
        assert_eq!(a.socket, b.socket);
    }
}

#[test]
fn collector_counts_three_stuck_workers() {
    let child = spawn_child();
    let pid = child.pid();
    let target = common::target(pid);
    let mut collector = Collector::new("/proc", "/sys/fs/cgroup");
    let opts = CollectOptions {
        stuck_after: Duration::from_millis(STUCK_AFTER_MS),
        ..Default::default()
    };
    let first = collector.collect(target, &opts);
    assert_eq!(first.stuck.map(|s| s.count), Some(0));
    std::thread::sleep(PAST_STUCK_AFTER);
    let sample = collector.collect(target, &opts);
    let stuck = sample.stuck.expect("stuck workers are known as root");
    assert_eq!(stuck.count, 3, "{stuck:#?}");
    let tids: Vec<i32> = stuck.workers.iter().map(|w| w.tid).collect();
    for tid in &child.ready.recv_tids {
        assert!(tids.contains(tid), "{tid} not in {tids:?}");
    }
    assert_eq!(sample.threads.unwrap().count as usize, task_entries(pid));
}

/// A thread of this test process in `poll()` on one end of a socket pair is stuck on that
/// socket: the fd comes from its `struct pollfd` array, read from memory.
#[test]
fn poll_on_a_socket_is_seen_through_the_pollfd_array() {
    let (a, b) = UnixStream::pair().unwrap();
    let fd = a.as_raw_fd();
    let (tx, rx) = std::sync::mpsc::channel();
    let poller = std::thread::Builder::new()
        .name("poller".into())
        .spawn(move || {
            tx.send(nix::unistd::gettid().as_raw()).unwrap();
            let mut fds = [libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            }];
            // SAFETY: `fds` is a valid array of one pollfd for the whole call.
            unsafe { libc::poll(fds.as_mut_ptr(), 1, 20_000) }
        })
        .unwrap();
    let tid = rx.recv().unwrap();
    let me = std::process::id() as i32;
    let task_dir = pid_dir(me).join(format!("task/{tid}"));
    assert!(common::eventually(|| matches!(
        read_syscall(&task_dir),
        Ok(SyscallState::In { nr, .. }) if matches!(syscall_name(nr), Some("poll" | "ppoll"))
    )));

    let target = common::target(me);
    let mut tracker = StuckTracker::new();
    let scan = read_threads(&pid_dir(me)).unwrap();
    let task = scan.threads.tasks.iter().find(|t| t.tid == tid).unwrap();
    assert_eq!(task.poll_fds, Some(vec![fd]));
    observe(&mut tracker, target);
    std::thread::sleep(PAST_STUCK_AFTER);
    let stuck = observe(&mut tracker, target);
    let w = stuck
        .workers
        .iter()
        .find(|w| w.tid == tid)
        .expect("poller stuck");
    assert!(w.syscall == "poll" || w.syscall == "ppoll", "{w:?}");
    assert_eq!((w.fd, w.name.as_str()), (fd, "poller"));
    assert_eq!(w.socket_inode, socket_inode(me, fd));
    assert_eq!(w.socket, None, "a unix socket has no TCP row");

    std::io::Write::write_all(&mut &b, b"x").unwrap();
    assert_eq!(poller.join().unwrap(), 1);
}

const PROBE_ENV: &str = "LEAKWATCH_TEST_PROBE_PID";
/// Why the unprivileged test cannot run here, if it cannot.
fn cannot_drop_privileges() -> Option<String> {
    if let Some(why) = common::cannot_drop_privileges() {
        return Some(why);
    }
    let exe = std::env::current_exe().ok()?;
    let mode = std::fs::metadata(&exe).ok()?.permissions().mode();
    if mode & 0o001 == 0 {
        return Some(format!("{} is not executable by others", exe.display()));
    }
    None
}

/// The child runs as root, leakwatch as an unprivileged user: the kernel refuses `syscall`,
/// and the stuck count is unknown (PermissionDenied, CAP_SYS_PTRACE), never 0. The reading
/// side is this test binary re-run under `setpriv` (see `unprivileged_probe`).
#[test]
fn unprivileged_reader_gets_unknown_stuck_not_zero() {
    if let Some(why) = cannot_drop_privileges() {
        return common::skip::skip("LEAKWATCH_REQUIRE_ROOT", &why);
    }
    let child = spawn_child();
    let pid = child.pid();
    let tid = child.ready.recv_tids[0];

    let cat = common::setpriv_nobody("")
        .args(["cat", &format!("/proc/{pid}/task/{tid}/syscall")])
        .output()
        .unwrap();
    assert!(
        !cat.status.success(),
        "the kernel let uid {} read it",
        common::NOBODY
    );
    assert!(
        String::from_utf8_lossy(&cat.stderr).contains("Permission denied"),
        "{cat:?}"
    );

    let exe = std::env::current_exe().unwrap();
    let probe = common::setpriv_nobody("")
        .arg(&exe)
        .args(["--exact", "unprivileged_probe", "--ignored", "--nocapture"])
        .env(PROBE_ENV, pid.to_string())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&probe.stdout);
    assert!(
        probe.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    assert!(out.contains("probe ok"), "{out}");
}

/// Run only by `unprivileged_reader_gets_unknown_stuck_not_zero`, as uid 65534.
#[test]
#[ignore = "run as an unprivileged user by unprivileged_reader_gets_unknown_stuck_not_zero"]
fn unprivileged_probe() {
    let Some(pid) = std::env::var(PROBE_ENV).ok().and_then(|p| p.parse().ok()) else {
        eprintln!("{PROBE_ENV} is not set: nothing to probe");
        return;
    };
    assert_eq!(nix::unistd::getuid().as_raw(), common::NOBODY);
    let dir = pid_dir(pid);
    let scan = read_threads(&dir).unwrap();
    assert_eq!(scan.threads.count as usize, task_entries(pid));
    assert!(scan.threads.tasks.iter().all(|t| t.syscall.is_none()));
    let err = scan.syscall_error.expect("syscall is refused");
    assert_eq!(err.kind(), UnknownKind::PermissionDenied, "{err}");
    assert!(err.to_string().contains("CAP_SYS_PTRACE"), "{err}");
    assert!(err.path().ends_with("syscall"), "{err}");

    let mut collector = Collector::new("/proc", "/sys/fs/cgroup");
    let sample = collector.collect(common::target(pid), &CollectOptions::default());
    assert_eq!(sample.stuck, None, "unknown, not 0");
    assert_eq!(
        sample.unknown.get(&Source::Stuck).map(|u| u.kind),
        Some(UnknownKind::PermissionDenied)
    );
    assert_eq!(
        sample.threads.map(|t| t.count as usize),
        Some(task_entries(pid))
    );
    println!("probe ok");
}
