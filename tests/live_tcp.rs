//! The TCP join against a real process: `leakwatch demo-child` holds loopback sockets in
//! LISTEN, ESTABLISHED and CLOSE_WAIT; `ss` is the ground truth. A second child in the same
//! network namespace must never be counted.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use common::{eventually, ss_states, LeakyChild};
use leakwatch::collect::net_tcp::{parse_net_tcp, read_target_sockets, summarize, NetTcp};
use leakwatch::collect::{stat, CollectOptions, Collector};
use leakwatch::sample::{Peer, TargetId, Tcp, TcpState, TcpStates, TcpTable};

fn pid_dir(pid: i32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}"))
}

/// The target's socket inodes, read from its fd links by the test itself.
fn socket_inodes(pid: i32) -> HashSet<u64> {
    std::fs::read_dir(pid_dir(pid).join("fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            l.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// Non-zero state counts under the names `ss_states` uses.
fn state_map(states: &TcpStates) -> BTreeMap<String, u64> {
    let all = TcpState::ALL.iter().chain([&TcpState::Unknown]);
    all.map(|s| (s.as_str().to_string(), states.get(*s)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Read and summarize until the counts agree with `ss` (the child's FINs settle quickly).
fn settled(pid: i32) -> (HashSet<u64>, NetTcp, Tcp) {
    let mut last = None;
    let agreed = eventually(|| {
        let inodes = socket_inodes(pid);
        let table = read_target_sockets(&pid_dir(pid), &inodes).unwrap();
        let tcp = summarize(
            &table,
            leakwatch::sample::TcpTable::ProcNet,
            inodes.len() as u64,
            10,
        );
        let ok = state_map(&tcp.states) == ss_states(pid);
        last = Some((inodes, table, tcp));
        ok
    });
    let (inodes, table, tcp) = last.unwrap();
    assert!(
        agreed,
        "leakwatch {:?} != ss {:?}",
        state_map(&tcp.states),
        ss_states(pid)
    );
    (inodes, table, tcp)
}

fn namespace_inodes(pid: i32) -> HashSet<u64> {
    ["net/tcp", "net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(pid_dir(pid).join(f)).ok())
        .flat_map(|t| parse_net_tcp(&t).sockets)
        .map(|s| s.inode)
        .collect()
}

/// 5 held connections, 30 CLOSE_WAIT over 3 peers, 2 recv() workers: the TCP mix both
/// tests compare against.
const MIXED: [&str; 8] = [
    "--established",
    "5",
    "--close-wait",
    "30",
    "--peers",
    "3",
    "--recv-threads",
    "2",
];

#[test]
fn counts_match_ss_and_other_processes_never_count() {
    let mut child = LeakyChild::spawn(&MIXED);
    // Another process in the same network namespace, with sockets of the same kinds.
    let other = LeakyChild::spawn(&["--established", "4", "--close-wait", "7"]);
    let pid = child.pid();

    let (inodes, table, tcp) = settled(pid);
    assert_eq!(tcp.states.close_wait, 30);
    assert_eq!(tcp.states.listen, 3);
    // 5 held pairs and 2 recv-worker pairs, both ends in the child.
    assert_eq!(tcp.states.established, 14);
    assert_eq!(tcp.states.total(), 47);
    assert_eq!(inodes.len(), 47);
    assert_eq!(tcp.other_sockets, 0);
    assert_eq!(tcp.unparsed_lines, 0);

    // CLOSE_WAIT: the child's client ends, 10 to each of its three listeners.
    let mut cw: Vec<(Peer, u64)> = tcp
        .top_close_wait_peers
        .iter()
        .map(|p| (p.peer, p.sockets))
        .collect();
    cw.sort();
    let mut expect: Vec<(Peer, u64)> = child
        .ready
        .listeners
        .iter()
        .map(|l| {
            let peer = Peer {
                ip: l.ip(),
                port: l.port(),
                inbound: false,
            };
            (peer, 10)
        })
        .collect();
    expect.sort();
    assert_eq!(cw, expect);

    // ESTABLISHED: client ends are outbound to a listener, server ends inbound on its port.
    let listener_ports: HashSet<u16> = child.ready.listeners.iter().map(|l| l.port()).collect();
    let (inbound, outbound): (Vec<_>, Vec<_>) = tcp
        .top_established_peers
        .iter()
        .partition(|p| p.peer.inbound);
    assert_eq!(inbound.iter().map(|p| p.sockets).sum::<u64>(), 7);
    assert_eq!(outbound.iter().map(|p| p.sockets).sum::<u64>(), 7);
    for p in &outbound {
        let addr = std::net::SocketAddr::new(p.peer.ip, p.peer.port);
        assert!(child.ready.listeners.contains(&addr), "{}", p.peer);
    }
    assert!(inbound
        .iter()
        .all(|p| listener_ports.contains(&p.peer.port)));

    // The other child's sockets are in the same table, but never in the target's rows.
    let other_inodes = socket_inodes(other.pid());
    assert_eq!(other_inodes.len(), 1 + 8 + 7);
    assert!(other_inodes.is_subset(&namespace_inodes(pid)));
    assert!(table
        .sockets
        .iter()
        .all(|s| !other_inodes.contains(&s.inode)));
    let (_, _, other_tcp) = settled(other.pid());
    assert_eq!(other_tcp.states.close_wait, 7);
    assert_eq!(other_tcp.states.established, 8);

    // More leaks are seen on the next read.
    assert_eq!(child.command("close-wait 6"), "ok");
    let (_, _, tcp) = settled(pid);
    assert_eq!(tcp.states.close_wait, 36);
    assert_eq!(
        tcp.top_close_wait_peers
            .iter()
            .map(|p| p.sockets)
            .sum::<u64>(),
        36
    );
}

#[test]
fn collector_reports_the_same_tcp_section() {
    let child = LeakyChild::spawn(&MIXED);
    let pid = child.pid();
    let (_, _, mut expect) = settled(pid);
    // The same rows; the collector reads them through sock_diag (same network namespace).
    expect.source = TcpTable::SockDiag;
    let starttime_ticks = stat::read_stat(Path::new(&pid_dir(pid)))
        .unwrap()
        .starttime_ticks;
    let target = TargetId {
        pid,
        starttime_ticks,
    };
    let mut collector = Collector::new("/proc", "/sys/fs/cgroup");
    let mut last = None;
    let same = eventually(|| {
        let sample = collector.collect(target, &CollectOptions::default());
        // Which way the sockets came is the collector's to say (`live_sockets_cgroup`).
        let ok = sample.tcp.as_ref().map(|t| Tcp {
            method: expect.method.clone(),
            ..t.clone()
        }) == Some(expect.clone());
        last = Some(sample);
        ok
    });
    let sample = last.unwrap();
    assert!(same, "{:#?}\n!=\n{expect:#?}", sample.tcp);
    let tcp = sample.tcp.unwrap();
    assert_eq!(tcp.states.close_wait, 30);
    assert_eq!(state_map(&tcp.states), ss_states(pid));
    assert!(sample
        .duration_us
        .contains_key(&leakwatch::sample::Source::Tcp));
    assert!(!sample.unknown.contains_key(&leakwatch::sample::Source::Tcp));
}
