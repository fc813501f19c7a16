//! sock_diag skips a family the target has no TCP socket in, and a socket of that family
//! appearing later is still found. The target is this test process itself (one test in its
//! own binary, so no other test opens sockets in it meanwhile).

mod common;

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use common::target;
use leakwatch::collect::fd::scan_fds;
use leakwatch::collect::net_tcp::read_target_sockets;
use leakwatch::collect::sockets::TcpReader;
use leakwatch::sample::TcpSocket;
use rustc_hash::FxHashSet;

fn read(reader: &mut TcpReader, pid: i32) -> (Vec<TcpSocket>, Vec<TcpSocket>) {
    let pid_dir = PathBuf::from(format!("/proc/{pid}"));
    let scan = scan_fds(&pid_dir).unwrap();
    let inodes: FxHashSet<u64> = scan.sockets.iter().map(|(_, i)| *i).collect();
    let (diag, _) = reader
        .read(
            Path::new("/proc"),
            &pid_dir,
            target(pid),
            &scan.sockets,
            &inodes,
        )
        .unwrap();
    let std_set: HashSet<u64> = inodes.iter().copied().collect();
    let text = read_target_sockets(&pid_dir, &std_set).unwrap();
    let sorted = |mut v: Vec<TcpSocket>| {
        v.sort_by_key(|s| s.inode);
        v
    };
    (sorted(diag.sockets), sorted(text.sockets))
}

#[test]
fn a_family_without_sockets_is_skipped_until_one_appears() {
    let pid = std::process::id() as i32;
    let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut reader = TcpReader::default();
    let (diag, text) = read(&mut reader, pid);
    assert_eq!(diag, text);
    assert!(diag.iter().any(|s| s.local == v4.local_addr().unwrap()));
    assert_eq!((reader.full_dumps(), reader.dumps()), (1, 2));
    // Only IPv4 sockets: the next reads dump AF_INET only.
    let (diag, text) = read(&mut reader, pid);
    assert_eq!(diag, text);
    assert_eq!((reader.full_dumps(), reader.dumps()), (1, 3));
    let Ok(v6) = TcpListener::bind("[::1]:0") else {
        let why = "the IPv6 half: no ::1 on this host";
        return common::skip::skip("LEAKWATCH_REQUIRE_IPV6", why);
    };
    // A TCPv6 socket the AF_INET dump cannot return: a full dump finds it.
    let (diag, text) = read(&mut reader, pid);
    assert_eq!(diag, text);
    assert!(diag.iter().any(|s| s.local == v6.local_addr().unwrap()));
    assert_eq!(reader.full_dumps(), 2);
    // Both families from now on.
    let dumps = reader.dumps();
    let (diag, text) = read(&mut reader, pid);
    assert_eq!(diag, text);
    assert_eq!((reader.full_dumps(), reader.dumps()), (2, dumps + 2));
}
