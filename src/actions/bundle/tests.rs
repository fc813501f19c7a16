//! The bundle's text blocks it shares with `leakwatch inspect`, pinned byte for byte.

use std::collections::HashMap;

use super::render;
use crate::collect::net_tcp::NetTcp;
use crate::sample::{Sample, Stuck, StuckWorker, Task, TcpSocket, TcpState, Threads};

fn sock(state: TcpState, local: &str, remote: &str, inode: u64) -> TcpSocket {
    TcpSocket {
        state,
        local: local.parse().unwrap_or_else(|e| panic!("{local}: {e}")),
        remote: remote.parse().unwrap_or_else(|e| panic!("{remote}: {e}")),
        recv_queue_bytes: 1,
        send_queue_bytes: 2048,
        inode,
    }
}

fn workers() -> Vec<StuckWorker> {
    vec![
        StuckWorker {
            tid: 101,
            name: "recv-worker-0".into(),
            syscall: "recvfrom".into(),
            fd: 7,
            blocked_for_ms: 125_000,
            socket_inode: 11,
            socket: Some(sock(
                TcpState::Established,
                "127.0.0.1:40000",
                "10.0.0.7:5432",
                11,
            )),
        },
        StuckWorker {
            tid: 102,
            name: "poller".into(),
            syscall: "poll".into(),
            fd: 9,
            blocked_for_ms: 3000,
            socket_inode: 777,
            socket: None,
        },
    ]
}

#[test]
fn sockets_txt_lists_the_peers_in_its_columns() {
    let table = NetTcp {
        sockets: vec![
            sock(TcpState::CloseWait, "127.0.0.1:40001", "10.0.0.7:5432", 1),
            sock(TcpState::CloseWait, "127.0.0.1:40002", "10.0.0.7:5432", 2),
            sock(
                TcpState::Established,
                "127.0.0.1:8080",
                "192.168.1.2:50000",
                3,
            ),
        ],
        ..NetTcp::default()
    };
    let fds_of = HashMap::from([(1, vec![5]), (2, vec![6, 7]), (3, vec![8])]);
    let out = render::sockets(42, &table, &fds_of);
    let want = [
        "CLOSE_WAIT by peer                                sockets     recv-q     send-q",
        "  10.0.0.7:5432                                         2        2 B    4.0 KiB",
        "",
        "ESTABLISHED by peer                               sockets     recv-q     send-q",
        "  192.168.1.2:50000                                     1        1 B    2.0 KiB",
        "",
    ];
    assert_eq!(out[4..10], want, "{out:#?}");
}

#[test]
fn threads_txt_lists_the_stuck_workers_first() {
    let task = |tid: i32, name: &str| Task {
        tid,
        name: name.into(),
        state: 'S',
        voluntary_ctxt_switches: None,
        nonvoluntary_ctxt_switches: None,
        syscall: None,
        poll_fds: None,
    };
    let sample = Sample {
        threads: Some(Threads {
            count: 2,
            tasks: vec![task(101, "recv-worker-0"), task(102, "poller")],
            ..Threads::default()
        }),
        stuck: Some(Stuck {
            count: 2,
            workers: workers(),
            stuck_after_ms: 2000,
        }),
        ..Sample::default()
    };
    let out = render::threads(&sample, &HashMap::new(), &HashMap::new(), &HashMap::new());
    let want = [
        "STUCK",
        "  tid 101 recv-worker-0 recvfrom(fd 7) for 2m05s: established 127.0.0.1:40000 -> \
         10.0.0.7:5432",
        "  tid 102 poller poll(fd 9) for 3s: socket inode 777",
        "",
    ];
    assert_eq!(out[3..7], want, "{out:#?}");
}
