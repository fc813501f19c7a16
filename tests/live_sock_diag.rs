//! sock_diag against the text tables on real children: the same rows, socket for socket
//! (LISTEN, ESTABLISHED and CLOSE_WAIT on 127.0.0.1 and, when the host has it, ::1), through
//! the unfiltered first dump, the cgroup-filtered dumps after it, a socket the filter misses
//! (created after the child moved to another cgroup), and a child in another network
//! namespace (text tables only).

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{ErrorKind, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::cgroup::Cgroup;
use common::{eventually, ss_states, target, LeakyChild, BIN};
use leakwatch::collect::fd::scan_fds;
use leakwatch::collect::net_tcp::{read_target_sockets, summarize};
use leakwatch::collect::sockets::TcpReader;
use leakwatch::collect::{CollectOptions, Collector};
use leakwatch::sample::{TcpSocket, TcpState, TcpTable};
use rustc_hash::FxHashSet;

fn has_ipv6() -> bool {
    TcpListener::bind("[::1]:0").is_ok()
}

fn child_args() -> Vec<&'static str> {
    let mut args = vec!["--established", "4", "--close-wait", "6", "--peers", "2"];
    if has_ipv6() {
        args.push("--ipv6");
    }
    args
}

fn sorted(mut v: Vec<TcpSocket>) -> Vec<TcpSocket> {
    v.sort_by_key(|s| s.inode);
    v
}

/// (netlink rows, text rows, source) for the child's socket fds, once both agree and the
/// state counts agree with `ss` (FINs settle quickly); panics with both if they never do.
fn both(reader: &mut TcpReader, pid: i32) -> (Vec<TcpSocket>, TcpTable) {
    let pid_dir = PathBuf::from(format!("/proc/{pid}"));
    let id = target(pid);
    let mut last = None;
    let agreed = eventually(|| {
        let scan = scan_fds(&pid_dir).unwrap();
        let inodes: HashSet<u64> = scan.sockets.iter().map(|(_, i)| *i).collect();
        let fx: FxHashSet<u64> = inodes.iter().copied().collect();
        let (diag, source) = reader
            .read(Path::new("/proc"), &pid_dir, id, &scan.sockets, &fx)
            .unwrap();
        let text = read_target_sockets(&pid_dir, &inodes).unwrap();
        let (diag, text) = (sorted(diag.sockets), sorted(text.sockets));
        let states = |rows: &[TcpSocket]| -> std::collections::BTreeMap<String, u64> {
            let t = summarize(
                &leakwatch::collect::net_tcp::NetTcp {
                    sockets: rows.to_vec(),
                    unparsed_lines: 0,
                    ..Default::default()
                },
                leakwatch::sample::TcpTable::SockDiag,
                0,
                0,
            );
            TcpState::ALL
                .iter()
                .map(|s| (s.as_str().to_string(), t.states.get(*s)))
                .filter(|(_, n)| *n > 0)
                .collect()
        };
        let ok = diag == text && states(&diag) == ss_states(pid);
        last = Some((diag, text, source));
        ok
    });
    let (diag, text, source) = last.unwrap();
    assert!(agreed, "sock_diag {diag:#?}\n!= text tables {text:#?}");
    (diag, source)
}

fn count(rows: &[TcpSocket], state: TcpState) -> usize {
    rows.iter().filter(|s| s.state == state).count()
}

#[test]
fn sock_diag_rows_equal_the_text_tables() {
    let v6 = has_ipv6();
    let mut child = LeakyChild::spawn(&child_args());
    // Another process in the namespace: its sockets are dumped too, never joined.
    let _other = LeakyChild::spawn(&["--established", "3", "--close-wait", "2"]);
    let pid = child.pid();
    let mut reader = TcpReader::default();
    // The first read dumps everything and learns the cgroups; the next ones filter.
    for round in 0..3 {
        let (rows, source) = both(&mut reader, pid);
        assert_eq!(source, TcpTable::SockDiag, "round {round}");
        let listeners = if v6 { 3 } else { 2 };
        assert_eq!(count(&rows, TcpState::Listen), listeners);
        assert_eq!(count(&rows, TcpState::Established), 8);
        assert_eq!(count(&rows, TcpState::CloseWait), 6);
        if v6 {
            assert!(rows.iter().any(|s| s.local.is_ipv6()), "no ::1 socket");
            assert!(rows
                .iter()
                .any(|s| s.local.is_ipv6() && s.state == TcpState::CloseWait));
        }
    }
    // New leaks are seen by the filtered dump.
    assert_eq!(child.command("close-wait 5"), "ok");
    assert_eq!(child.command("established 2"), "ok");
    let (rows, _) = both(&mut reader, pid);
    assert_eq!(count(&rows, TcpState::CloseWait), 11);
    assert_eq!(count(&rows, TcpState::Established), 12);
    assert_eq!(rows.len(), 11 + 12 + if v6 { 3 } else { 2 });
    // All of it after one full dump: every later one asked for the child's cgroup only.
    assert_eq!(reader.full_dumps(), 1);
}

#[test]
fn a_socket_outside_the_learned_cgroups_is_found() {
    let (Some(a), Some(b)) = (Cgroup::new("a"), Cgroup::new("b")) else {
        let why = "cannot create cgroup v2 directories (needs root)";
        return common::skip::skip("LEAKWATCH_REQUIRE_ROOT", why);
    };
    let mut child = LeakyChild::spawn(&child_args());
    let pid = child.pid();
    a.enter(pid);
    let mut reader = TcpReader::default();
    // Sockets created before the move stay charged to where they were made: a full dump
    // learns that cgroup.
    let (rows, _) = both(&mut reader, pid);
    let before = count(&rows, TcpState::CloseWait);
    let learned = reader.full_dumps();
    // Charged to cgroup a, which the filter has not seen: the filtered dump misses them,
    // their fds say TCP, so a full dump finds them and learns a.
    assert_eq!(child.command("close-wait 4"), "ok");
    let (rows, _) = both(&mut reader, pid);
    assert_eq!(count(&rows, TcpState::CloseWait), before + 4);
    assert!(reader.full_dumps() > learned);
    let learned = reader.full_dumps();
    // Once learned, more of the same need no full dump.
    assert_eq!(child.command("close-wait 2"), "ok");
    let (rows, _) = both(&mut reader, pid);
    assert_eq!(count(&rows, TcpState::CloseWait), before + 6);
    assert_eq!(reader.full_dumps(), learned);
    // And again for b.
    b.enter(pid);
    assert_eq!(child.command("close-wait 3"), "ok");
    let (rows, _) = both(&mut reader, pid);
    assert_eq!(count(&rows, TcpState::CloseWait), before + 9);
    assert!(reader.full_dumps() > learned);
    drop(child);
}

#[test]
fn collector_says_sock_diag_in_the_same_namespace() {
    let child = LeakyChild::spawn(&child_args());
    let mut collector = Collector::new("/proc", "/sys/fs/cgroup");
    let id = target(child.pid());
    let ok = eventually(|| {
        let s = collector.collect(id, &CollectOptions::default());
        s.tcp
            .is_some_and(|t| t.source == TcpTable::SockDiag && t.states.close_wait == 6)
    });
    assert!(
        ok,
        "the collector did not report 6 CLOSE_WAIT from sock_diag"
    );
}

#[test]
fn another_network_namespace_is_read_from_the_text_tables() {
    let unshare = Command::new("unshare").args(["--net", "true"]).status();
    if !unshare.is_ok_and(|s| s.success()) {
        let why = "cannot create a network namespace (unshare --net needs root)";
        return common::skip::skip("LEAKWATCH_REQUIRE_NAMESPACES", why);
    }
    // The child brings up its namespace's loopback, then runs as usual.
    let script = format!("ip link set lo up 2>/dev/null || true; exec {BIN} demo-child \"$@\"");
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "sh", "-c", &script, "sh"]);
    cmd.args(["--established", "2", "--close-wait", "3"]);
    let child = LeakyChild::spawn_with(&mut cmd);
    let mut collector = Collector::new("/proc", "/sys/fs/cgroup");
    let id = target(child.pid());
    let mut last = None;
    let ok = eventually(|| {
        let s = collector.collect(id, &CollectOptions::default());
        let ok = s.tcp.as_ref().is_some_and(|t| t.states.close_wait == 3);
        last = Some(s);
        ok
    });
    let sample = last.expect("a sample");
    let tcp = sample.tcp.clone().expect("tcp section");
    assert!(ok, "{tcp:#?}");
    assert_eq!(tcp.source, TcpTable::ProcNet);
    assert_eq!(tcp.states.established, 4);
    // No tcp_info there: stalled sockets are unknown, with the reason, never 0; CLOSE_WAIT
    // ages need no tcp_info and are known.
    assert_eq!(sample.tcp_stalled, None);
    let why = &sample.unknown[&leakwatch::sample::Source::TcpStall];
    assert_eq!(why.kind, leakwatch::error::UnknownKind::Unavailable);
    assert!(why.message.contains("network namespace"), "{}", why.message);
    assert!(sample.close_wait_age.is_some());
}

fn set_buf(s: &TcpStream, opt: libc::c_int, bytes: libc::c_int) {
    // SAFETY: a valid fd and an int option of its size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            std::ptr::from_ref(&bytes).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "setsockopt: {}", std::io::Error::last_os_error());
}

/// A connection to `listener` whose client never reads, and whose accepted end has written
/// until the kernel would block: (client, writer, bytes written, the writer's inode).
fn stalled_connection(listener: &TcpListener) -> (TcpStream, TcpStream, usize, u64) {
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let mut writer = listener.accept().unwrap().0;
    // Small buffers, so 40 of them pin little kernel memory.
    set_buf(&client, libc::SO_RCVBUF, 4096);
    set_buf(&writer, libc::SO_SNDBUF, 16 * 1024);
    writer.set_nonblocking(true).unwrap();
    let chunk = vec![7u8; 64 * 1024];
    let mut sent = 0usize;
    loop {
        match writer.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("write: {e}"),
        }
    }
    let fd = writer.as_raw_fd();
    let inode = std::fs::metadata(format!("/proc/self/fd/{fd}"))
        .unwrap()
        .ino();
    (client, writer, sent, inode)
}

/// `tcp_info` is asked for only where a socket can stall: of 20 idle connections (40
/// ESTABLISHED sockets, both ends in this process) and 40 whose peer stopped reading
/// (more than one batch of lookups), only those 40 sending ends carry it, with the bytes
/// their peer acknowledged; through exact lookups, and through the dump with `tcp_info`
/// that replaces them past the cap.
#[test]
fn only_sockets_with_data_queued_get_tcp_info() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut idle = Vec::new();
    for _ in 0..20 {
        let client = TcpStream::connect(addr).unwrap();
        idle.push((client, listener.accept().unwrap().0));
    }
    let stalled: Vec<_> = (0..40).map(|_| stalled_connection(&listener)).collect();
    let want: BTreeMap<u64, usize> = stalled.iter().map(|s| (s.3, s.2)).collect();
    let pid = std::process::id() as i32;
    let pid_dir = PathBuf::from(format!("/proc/{pid}"));
    let mut lookups = TcpReader::default();
    let mut dumps = TcpReader::with_max_lookups(0);
    // Twice each: the full first dump, then the cgroup-filtered one.
    for round in 0..4 {
        let reader = if round < 2 { &mut lookups } else { &mut dumps };
        let scan = scan_fds(&pid_dir).unwrap();
        let fx: FxHashSet<u64> = scan.sockets.iter().map(|(_, i)| *i).collect();
        let (rows, source) = reader
            .read(
                Path::new("/proc"),
                &pid_dir,
                target(pid),
                &scan.sockets,
                &fx,
            )
            .unwrap();
        assert_eq!(source, TcpTable::SockDiag);
        let established = count(&rows.sockets, TcpState::Established);
        assert!(established >= 40 + 80, "round {round}: {established}");
        for s in rows.sockets.iter().filter(|s| want.contains_key(&s.inode)) {
            assert!(s.send_queue_bytes > 0, "round {round}: {s:?}");
        }
        let with_info: BTreeSet<u64> = rows.info.keys().copied().collect();
        let queued: BTreeSet<u64> = want.keys().copied().collect();
        assert_eq!(
            with_info, queued,
            "round {round}: only the ones with Send-Q"
        );
        for (inode, sent) in &want {
            let info = rows.info[inode];
            let acked = info.tcp.and_then(|t| t.bytes_acked).unwrap();
            assert!(acked > 0 && (acked as usize) < *sent, "{acked} of {sent}");
            assert!(info.mem.and_then(|m| m.wmem_queued).unwrap() > 0);
        }
    }
}
