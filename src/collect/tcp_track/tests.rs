//! The tracker tick by tick on synthetic tables.

use super::*;
use crate::collect::sock_diag::SkMemInfo;
use std::net::SocketAddr;

const STALL: u64 = 2_000;
const AGED: u64 = 10_000;
const ID: TargetId = TargetId {
    pid: 7,
    starttime_ticks: 1,
};

fn at(now_ms: u64) -> TrackAt {
    TrackAt {
        now_ms,
        stall_after_ms: STALL,
        aged_after_ms: AGED,
        top_peers: 10,
    }
}

fn sock(state: TcpState, remote_port: u16, inode: u64, send_q: u64) -> TcpSocket {
    TcpSocket {
        state,
        local: "127.0.0.1:8080".parse().unwrap(),
        remote: SocketAddr::new([127, 0, 0, 1].into(), remote_port),
        recv_queue_bytes: 0,
        send_queue_bytes: send_q,
        inode,
    }
}

fn info(acked: u64, snd_wnd: u32) -> DiagInfo {
    DiagInfo {
        tcp: Some(TcpInfo {
            backoff: 2,
            bytes_acked: Some(acked),
            notsent_bytes: Some(100),
            busy_us: Some(1_000),
            rwnd_limited_us: Some(1_000),
            snd_wnd: Some(snd_wnd),
            ..TcpInfo::default()
        }),
        mem: Some(SkMemInfo {
            wmem_queued: Some(5_000),
            ..SkMemInfo::default()
        }),
    }
}

/// A table of `(socket, bytes_acked)`, with a listener on 8080.
fn table(rows: &[(TcpSocket, u64)]) -> NetTcp {
    let mut t = NetTcp::default();
    let mut listen = sock(TcpState::Listen, 0, 1, 0);
    listen.remote = "0.0.0.0:0".parse().unwrap();
    t.sockets.push(listen);
    for (s, acked) in rows {
        t.info.insert(s.inode, info(*acked, 0));
        t.sockets.push(s.clone());
    }
    t
}

fn stalled(t: &mut TcpTracker, rows: &[(TcpSocket, u64)], now: u64) -> TcpStalled {
    t.track(ID, &table(rows), TcpTable::SockDiag, at(now))
        .stalled
        .unwrap()
}

#[test]
fn stalled_once_nothing_is_acked_for_stall_after_with_data_queued() {
    use TcpState::Established as E;
    let mut t = TcpTracker::default();
    let stuck = sock(E, 5001, 10, 4096);
    let idle = sock(E, 5002, 11, 0);
    let rows = [(stuck.clone(), 500), (idle.clone(), 500)];
    assert_eq!(stalled(&mut t, &rows, 1_000).count, 0);
    assert_eq!(
        stalled(&mut t, &rows, 2_500).count,
        0,
        "1.5 s < stall_after"
    );
    let s = stalled(&mut t, &rows, 3_000);
    assert_eq!(s.count, 1, "the idle socket has nothing queued");
    assert_eq!((s.send_queue_bytes, s.write_memory_bytes), (4096, 5000));
    let one = &s.sockets[0];
    assert_eq!((one.inode, one.stalled_for_ms), (10, 2_000));
    assert_eq!(one.window.peer_window_bytes, Some(0));
    assert_eq!(one.window.rwnd_limited_percent, Some(100.0));
    assert_eq!(one.window.probe_backoff, 2);
    // Inbound: keyed by the listening port.
    assert_eq!(s.by_peer.len(), 1);
    assert!(s.by_peer[0].peer.inbound && s.by_peer[0].peer.port == 8080);
    assert_eq!((s.by_peer[0].zero_window, s.by_peer[0].sockets), (1, 1));
    assert_eq!(s.stall_after_ms, STALL);

    // One byte acknowledged: the clock restarts.
    let moved = [(stuck.clone(), 501)];
    assert_eq!(stalled(&mut t, &moved, 4_000).count, 0);
    assert_eq!(stalled(&mut t, &moved, 5_999).count, 0);
    assert_eq!(stalled(&mut t, &moved, 6_000).count, 1);
    // The queue drained: not stalled, and the clock starts over when data waits again.
    let drained = sock(E, 5001, 10, 0);
    assert_eq!(stalled(&mut t, &[(drained, 501)], 7_000).count, 0);
    assert_eq!(stalled(&mut t, &moved, 8_000).count, 0);
    assert_eq!(stalled(&mut t, &moved, 10_000).count, 1);
}

#[test]
fn a_slow_reader_is_never_stalled() {
    let mut t = TcpTracker::default();
    let s = sock(TcpState::Established, 5003, 12, 1 << 20);
    for tick in 0..100u64 {
        // A little acknowledged every second, the queue never empty.
        let acked = 1_000 + tick / 2;
        let got = stalled(&mut t, &[(s.clone(), acked)], tick * 500);
        assert_eq!(got.count, 0, "tick {tick}");
    }
}

#[test]
fn close_wait_ages_tick_by_tick_and_a_reused_inode_is_a_new_socket() {
    let mut t = TcpTracker::default();
    let cw = sock(TcpState::CloseWait, 6001, 20, 0);
    let age = |t: &mut TcpTracker, rows: &[(TcpSocket, u64)], now| {
        t.track(ID, &table(rows), TcpTable::ProcNet, at(now))
            .close_wait
    };
    let mut last = 0;
    for now in [1_000, 4_000, 9_000, 11_000] {
        let a = age(&mut t, &[(cw.clone(), 0)], now);
        assert_eq!(a.oldest_ms, now - 1_000);
        assert!(a.oldest_ms >= last);
        last = a.oldest_ms;
        assert_eq!(a.aged, u64::from(now - 1_000 >= AGED));
        assert_eq!(a.aged_after_ms, AGED);
    }
    // The same inode, another connection: a new socket, age 0.
    let reused = sock(TcpState::CloseWait, 6002, 20, 0);
    let a = age(&mut t, &[(reused.clone(), 0)], 12_000);
    assert_eq!((a.oldest_ms, a.aged), (0, 0));
    // Closed (gone one tick) and back: forgotten, new.
    assert_eq!(age(&mut t, &[], 13_000).oldest_ms, 0);
    assert_eq!(age(&mut t, &[(reused, 0)], 14_000).oldest_ms, 0);
    // ESTABLISHED then CLOSE_WAIT: the age runs from the state change.
    let est = sock(TcpState::Established, 6003, 21, 0);
    age(&mut t, &[(est, 0)], 15_000);
    let a = age(
        &mut t,
        &[(sock(TcpState::CloseWait, 6003, 21, 0), 0)],
        20_000,
    );
    assert_eq!(a.oldest_ms, 0);
}

#[test]
fn the_text_tables_make_stalls_unknown_not_zero() {
    let mut t = TcpTracker::default();
    let mut rows = table(&[(sock(TcpState::Established, 5001, 10, 4096), 1)]);
    rows.info.clear();
    let got = t.track(ID, &rows, TcpTable::ProcNet, at(1_000));
    let u = got.stalled.unwrap_err();
    assert_eq!(u.kind, UnknownKind::Unavailable);
    assert!(u.message.contains("/proc/PID/net/tcp"), "{}", u.message);
}

#[test]
fn a_tcp_info_without_bytes_acked_makes_stalls_unknown() {
    let mut t = TcpTracker::default();
    let s = sock(TcpState::Established, 5001, 10, 4096);
    let mut rows = table(&[(s, 1)]);
    if let Some(i) = rows.info.get_mut(&10).and_then(|i| i.tcp.as_mut()) {
        i.bytes_acked = None;
    }
    let got = t.track(ID, &rows, TcpTable::SockDiag, at(1_000));
    assert_eq!(got.stalled.unwrap_err().kind, UnknownKind::Unsupported);
}

#[test]
fn another_target_starts_over() {
    let mut t = TcpTracker::default();
    let rows = [(sock(TcpState::Established, 5001, 10, 4096), 1)];
    stalled(&mut t, &rows, 0);
    assert_eq!(stalled(&mut t, &rows, 5_000).count, 1);
    let other = TargetId {
        pid: 8,
        starttime_ticks: 1,
    };
    let got = t.track(other, &table(&rows), TcpTable::SockDiag, at(6_000));
    assert_eq!(got.stalled.unwrap().count, 0);
}

#[test]
fn only_sockets_with_a_clock_running_are_remembered() {
    let mut t = TcpTracker::default();
    // 5,000 idle connections, 300 in CLOSE_WAIT, 2 with data queued.
    let mut rows: Vec<(TcpSocket, u64)> = (0..5_000u64)
        .map(|i| (sock(TcpState::Established, 1_000 + i as u16, 100 + i, 0), 1))
        .collect();
    rows.extend(
        (0..300u64).map(|i| (sock(TcpState::CloseWait, 7_000 + i as u16, 6_000 + i, 0), 1)),
    );
    rows.extend((0..2u64).map(|i| {
        (
            sock(TcpState::Established, 9_000 + i as u16, 7_000 + i, 4096),
            1,
        )
    }));
    t.track(ID, &table(&rows), TcpTable::SockDiag, at(1_000));
    assert_eq!(t.seen.len(), 302);
    // The CLOSE_WAIT burst is gone: forgotten, and the map gives its memory back.
    rows.retain(|(s, _)| s.state != TcpState::CloseWait);
    t.track(ID, &table(&rows), TcpTable::SockDiag, at(2_000));
    assert_eq!(t.seen.len(), 2);
    assert!(t.seen.capacity() < 64, "{}", t.seen.capacity());
    // The queues drain: nothing is remembered.
    for (s, _) in &mut rows {
        s.send_queue_bytes = 0;
    }
    t.track(ID, &table(&rows), TcpTable::SockDiag, at(3_000));
    assert!(t.seen.is_empty());
}
