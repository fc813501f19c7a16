//! `/proc/PID/net/tcp` and `/proc/PID/net/tcp6` (proc(5), Documentation/networking/proc_net_tcp.rst):
//! the TCP table of the target's network namespace, joined with the target's socket inodes.
//!
//! The table lists every TCP socket of the namespace, so only rows whose inode is one of the
//! target's socket fds are kept: another process in the same namespace never counts, and
//! neither do rows with inode 0 (TIME_WAIT, orphaned FIN_WAIT2, not yet accepted
//! connections), which belong to no fd. A line that does not parse is skipped and counted.
//!
//! Addresses are printed as the raw network-order `u32` words in host order, so each word is
//! parsed as hex and turned back into bytes with `to_ne_bytes` (right on either endianness).
//! IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) become IPv4, so a peer groups the same way
//! whichever family the socket was opened with.

use std::collections::HashSet;
use std::io::BufRead;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use crate::error::ReadError;
use crate::sample::{Peer, PeerCount, Tcp, TcpSocket, TcpState, TcpTable};
use rustc_hash::{FxHashMap as HashMap, FxHashSet};

/// Rows of one or more TCP tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetTcp {
    pub sockets: Vec<TcpSocket>,
    /// Lines that did not parse (skipped).
    pub unparsed_lines: u64,
    /// sock_diag's `tcp_info` and skmeminfo by inode (empty from the text tables).
    pub info: HashMap<u64, super::sock_diag::DiagInfo>,
}

impl NetTcp {
    /// Add one table line (not the header): a row if `keep` wants it, or an unparsed line.
    /// Blank lines are ignored.
    fn push_line(&mut self, line: &str, keep: &mut impl FnMut(&TcpSocket) -> bool) {
        if line.trim().is_empty() {
            return;
        }
        match parse_line(line) {
            Some(row) if keep(&row) => self.sockets.push(row),
            Some(_) => {}
            None => self.unparsed_lines += 1,
        }
    }
}

/// Parse the text of `net/tcp` or `net/tcp6` (the same format; v6 addresses are longer).
/// The first line is the header.
pub fn parse_net_tcp(text: &str) -> NetTcp {
    let mut table = NetTcp::default();
    for line in text.lines().skip(1) {
        table.push_line(line, &mut |_| true);
    }
    table
}

/// One row: `sl local rem st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...`.
fn parse_line(line: &str) -> Option<TcpSocket> {
    let mut f = line.split_ascii_whitespace();
    f.next()?.strip_suffix(':')?;
    let local = parse_addr(f.next()?)?;
    let remote = parse_addr(f.next()?)?;
    let state = TcpState::from_kernel(hex_u8(f.next()?)?);
    let (tx, rx) = f.next()?.split_once(':')?;
    let send_queue_bytes = hex_u64(tx)?;
    let recv_queue_bytes = hex_u64(rx)?;
    // tr:tm->when, retrnsmt, uid, timeout
    let inode = f.nth(4)?;
    if !inode.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(TcpSocket {
        state,
        local,
        remote,
        recv_queue_bytes,
        send_queue_bytes,
        inode: inode.parse().ok()?,
    })
}

/// `0100007F:1F90` (v4) or 32 hex digits and a port (v6).
fn parse_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::try_from(hex_u64(port)?).ok()?;
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(hex_u32(ip)?.to_ne_bytes())),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                let word = hex_u32(ip.get(i * 8..i * 8 + 8)?)?;
                chunk.copy_from_slice(&word.to_ne_bytes());
            }
            Ipv6Addr::from(bytes).to_canonical()
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Hex digits only (`from_str_radix` alone would also take a sign).
fn hex_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

fn hex_u32(s: &str) -> Option<u32> {
    u32::try_from(hex_u64(s)?).ok()
}

fn hex_u8(s: &str) -> Option<u8> {
    u8::try_from(hex_u64(s)?).ok()
}

/// Read `PID_DIR/net/tcp` and `tcp6` and keep only the rows whose inode is in `inodes`.
///
/// A missing `tcp6` (IPv6 disabled) adds no rows; a missing `tcp` is an error. The files are
/// streamed line by line, so a busy namespace's table is never held whole in memory.
pub fn read_target_sockets(pid_dir: &Path, inodes: &HashSet<u64>) -> Result<NetTcp, ReadError> {
    read_sockets_where(pid_dir, |inode| inodes.contains(&inode))
}

/// [`read_target_sockets`] for any set of inodes: the rows whose inode `wanted` says.
pub fn read_sockets_where(
    pid_dir: &Path,
    wanted: impl Fn(u64) -> bool,
) -> Result<NetTcp, ReadError> {
    let mut table = NetTcp::default();
    let mut seen = FxHashSet::default();
    let mut keep = |row: &TcpSocket| row.inode != 0 && wanted(row.inode) && seen.insert(row.inode);
    read_table(&pid_dir.join("net/tcp"), &mut table, &mut keep)?;
    match read_table(&pid_dir.join("net/tcp6"), &mut table, &mut keep) {
        Ok(()) | Err(ReadError::Missing { .. }) => {}
        Err(e) => return Err(e),
    }
    Ok(table)
}

fn read_table(
    path: &Path,
    table: &mut NetTcp,
    keep: &mut impl FnMut(&TcpSocket) -> bool,
) -> Result<(), ReadError> {
    let file = std::fs::File::open(path).map_err(|e| ReadError::from_io(path, e))?;
    let mut reader = std::io::BufReader::with_capacity(64 * 1024, file);
    let mut line = Vec::with_capacity(256);
    let mut header = true;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| ReadError::from_io(path, e))?;
        if n == 0 {
            return Ok(());
        }
        if std::mem::take(&mut header) {
            continue;
        }
        match std::str::from_utf8(&line) {
            Ok(text) => table.push_line(text, keep),
            Err(_) => table.unparsed_lines += 1,
        }
    }
}

/// Count states, sum queues and rank peers. `socket_fds` is how many distinct socket inodes
/// the target holds (those matching no row are `other_sockets`).
pub fn summarize(table: &NetTcp, source: TcpTable, socket_fds: u64, top_k: usize) -> Tcp {
    let listen_ports = listen_ports(table);
    let mut tcp = Tcp {
        unparsed_lines: table.unparsed_lines,
        source,
        ..Tcp::default()
    };
    let mut close_wait = HashMap::default();
    let mut established = HashMap::default();
    for s in &table.sockets {
        tcp.states.add(s.state);
        tcp.recv_queue_bytes = tcp.recv_queue_bytes.saturating_add(s.recv_queue_bytes);
        tcp.send_queue_bytes = tcp.send_queue_bytes.saturating_add(s.send_queue_bytes);
        let peers = match s.state {
            TcpState::CloseWait => &mut close_wait,
            TcpState::Established => &mut established,
            _ => continue,
        };
        let peer = peer_of(s, &listen_ports);
        let count = peers.entry(peer).or_insert(PeerCount {
            peer,
            sockets: 0,
            recv_queue_bytes: 0,
            send_queue_bytes: 0,
        });
        count.sockets += 1;
        count.recv_queue_bytes = count.recv_queue_bytes.saturating_add(s.recv_queue_bytes);
        count.send_queue_bytes = count.send_queue_bytes.saturating_add(s.send_queue_bytes);
    }
    tcp.top_close_wait_peers = top_peers(close_wait, top_k);
    tcp.top_established_peers = top_peers(established, top_k);
    tcp.other_sockets = socket_fds.saturating_sub(table.sockets.len() as u64);
    tcp
}

/// The ports the target listens on.
pub(crate) fn listen_ports(table: &NetTcp) -> FxHashSet<u16> {
    table
        .sockets
        .iter()
        .filter(|s| s.state == TcpState::Listen)
        .map(|s| s.local.port())
        .collect()
}

/// Inbound when the local port is one the target listens on (see [`Peer`]).
pub(crate) fn peer_of(s: &TcpSocket, listen_ports: &FxHashSet<u16>) -> Peer {
    let inbound = listen_ports.contains(&s.local.port());
    Peer {
        ip: s.remote.ip(),
        port: if inbound {
            s.local.port()
        } else {
            s.remote.port()
        },
        inbound,
    }
}

/// Most sockets first; ties by peer (address, port, direction), so the order is stable.
fn top_peers(peers: HashMap<Peer, PeerCount>, top_k: usize) -> Vec<PeerCount> {
    let mut v: Vec<PeerCount> = peers.into_values().collect();
    v.sort_unstable_by(|a, b| b.sockets.cmp(&a.sockets).then(a.peer.cmp(&b.peer)));
    v.truncate(top_k);
    v
}

#[cfg(test)]
mod tests {
    //! The fixtures are little-endian kernel text (x86_64), so tests that check addresses
    //! only run on little-endian machines; a big-endian kernel prints the other byte order.

    use super::*;
    use crate::sample::TcpStates;
    use crate::test_support::{FakePid, FakeProc};

    const TCP: &str = include_str!("../../tests/fixtures/net/tcp_kernel_6_18");
    const TCP6: &str = include_str!("../../tests/fixtures/net/tcp6_kernel_6_18");
    const ODD: &str = include_str!("../../tests/fixtures/net/tcp_odd_lines");

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn sock(state: TcpState, local: &str, remote: &str, rx: u64, tx: u64, inode: u64) -> TcpSocket {
        TcpSocket {
            state,
            local: addr(local),
            remote: addr(remote),
            recv_queue_bytes: rx,
            send_queue_bytes: tx,
            inode,
        }
    }

    fn peer(ip: &str, port: u16, inbound: bool, sockets: u64, rx: u64, tx: u64) -> PeerCount {
        PeerCount {
            peer: Peer {
                ip: ip.parse().unwrap(),
                port,
                inbound,
            },
            sockets,
            recv_queue_bytes: rx,
            send_queue_bytes: tx,
        }
    }

    fn by_inode(t: &NetTcp, inode: u64) -> &TcpSocket {
        let rows: Vec<_> = t.sockets.iter().filter(|s| s.inode == inode).collect();
        assert_eq!(rows.len(), 1, "inode {inode}");
        rows[0]
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn tcp_kernel_6_18_rows() {
        use TcpState::*;
        let t = parse_net_tcp(TCP);
        assert_eq!(t.unparsed_lines, 0);
        assert_eq!(t.sockets.len(), 15);
        // The accept backlog of a listener with one connection waiting.
        assert_eq!(
            t.sockets[0],
            sock(Listen, "127.0.0.1:5999", "0.0.0.0:0", 1, 0, 10940)
        );
        let expect = [
            sock(
                Established,
                "127.0.0.1:5000",
                "127.0.0.1:60372",
                100,
                0,
                10925,
            ),
            sock(FinWait2, "127.0.0.1:5000", "127.0.0.1:60378", 0, 0, 10927),
            sock(SynSent, "127.0.0.1:57310", "127.0.0.1:5999", 0, 1, 10942),
            sock(CloseWait, "127.0.0.1:60378", "127.0.0.1:5000", 1, 0, 10926),
            sock(
                FinWait1,
                "127.0.0.1:60410",
                "127.0.0.1:5000",
                0,
                3782145,
                10938,
            ),
            sock(
                Established,
                "127.0.0.1:5000",
                "127.0.0.1:60410",
                128512,
                0,
                10939,
            ),
        ];
        for e in expect {
            assert_eq!(*by_inode(&t, e.inode), e);
        }
        // A connection not yet accepted, and a TIME_WAIT row (shorter line): inode 0.
        assert_eq!(
            t.sockets[5],
            sock(Established, "127.0.0.1:5999", "127.0.0.1:57300", 0, 0, 0)
        );
        assert_eq!(
            t.sockets[12],
            sock(TimeWait, "127.0.0.1:60394", "127.0.0.1:5000", 0, 0, 0)
        );
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn tcp6_kernel_6_18_rows() {
        use TcpState::*;
        let t = parse_net_tcp(TCP6);
        assert_eq!(t.unparsed_lines, 0);
        assert_eq!(t.sockets.len(), 9);
        let expect = [
            sock(Listen, "[::]:7000", "[::]:0", 0, 0, 10923),
            sock(Listen, "[::1]:6000", "[::]:0", 0, 0, 10922),
            sock(Established, "[::1]:58844", "[::1]:6000", 0, 0, 10930),
            sock(CloseWait, "[::1]:58852", "[::1]:6000", 1, 0, 10932),
            // IPv4-mapped (::ffff:127.0.0.1) rows come out as IPv4.
            sock(
                Established,
                "127.0.0.1:7000",
                "127.0.0.1:43978",
                0,
                0,
                10937,
            ),
            sock(
                Established,
                "127.0.0.1:43972",
                "127.0.0.1:7000",
                0,
                0,
                10934,
            ),
        ];
        for e in expect {
            assert_eq!(*by_inode(&t, e.inode), e);
        }
        // An orphaned FIN_WAIT2 printed in the short TIME_WAIT form.
        assert_eq!(
            t.sockets[8],
            sock(FinWait2, "[::1]:6000", "[::1]:58852", 0, 0, 0)
        );
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn v6_global_address_words() {
        let text = "header\n   0: B80D0120000000000000000001000000:0050 \
                    000080FE00000000FF0000020300FF04:C350 01 00000000:00000000 \
                    00:00000000 00000000 0 0 7 1 0\n";
        let t = parse_net_tcp(text);
        assert_eq!(t.unparsed_lines, 0);
        assert_eq!(t.sockets[0].local, addr("[2001:db8::1]:80"));
        assert_eq!(t.sockets[0].remote, addr("[fe80::200:ff:4ff:3]:50000"));
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn odd_lines() {
        let t = parse_net_tcp(ODD);
        // Rows 16..=22 and the garbage line; the blank line is not counted.
        assert_eq!(t.unparsed_lines, 8);
        assert_eq!(t.sockets.len(), 17);
        for (i, s) in t.sockets.iter().take(11).enumerate() {
            assert_eq!(s.state, TcpState::ALL[i], "state {:02X}", i + 1);
            assert_eq!(s.local.port(), i as u16 + 1);
            assert_eq!(s.inode, 101 + i as u64);
        }
        assert_eq!(t.sockets[0].remote, addr("127.0.0.2:257"));
        assert_eq!(
            (t.sockets[0].send_queue_bytes, t.sockets[0].recv_queue_bytes),
            (1, 2)
        );
        // 0C, FF and 00 are not states this build knows: kept, as unknown.
        for s in &t.sockets[11..14] {
            assert_eq!(s.state, TcpState::Unknown);
        }
        // Huge queues and inode, extra trailing columns.
        assert_eq!(
            t.sockets[14],
            sock(
                TcpState::Established,
                "10.0.0.1:65535",
                "192.168.0.1:443",
                0xFFFF_FFFF,
                0xFFFF_FFFF,
                u64::MAX
            )
        );
        // Exactly ten columns is enough; the last row after the blank line still counts.
        assert_eq!(t.sockets[15].inode, 120);
        assert_eq!(t.sockets[16].inode, 125);
        let s = summarize(&t, TcpTable::ProcNet, 17, 10);
        assert_eq!(s.states.unknown, 3);
        assert_eq!(s.states.total(), 17);
        assert_eq!(s.recv_queue_bytes, 2 + 0xFFFF_FFFF);
        assert_eq!(s.unparsed_lines, 8);
    }

    #[test]
    fn header_only_and_empty() {
        assert_eq!(parse_net_tcp(""), NetTcp::default());
        assert_eq!(
            parse_net_tcp(TCP.lines().next().unwrap()),
            NetTcp::default()
        );
    }

    /// A small deterministic generator, so a failure reproduces.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn check_bounds(text: &str) {
        let t = parse_net_tcp(text);
        let lines = text.lines().count().saturating_sub(1) as u64;
        assert!(
            t.sockets.len() as u64 + t.unparsed_lines <= lines,
            "{text:?}"
        );
    }

    #[test]
    fn every_prefix_parses_without_panic() {
        for text in [TCP, TCP6, ODD] {
            for end in (0..=text.len()).filter(|i| text.is_char_boundary(*i)) {
                check_bounds(&text[..end]);
                check_bounds(&text[end..]);
            }
        }
    }

    #[test]
    fn random_and_mutated_text_does_not_panic() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        const ALPHABET: &[u8] = b"0123456789ABCDEFabcdefxX:- \t\n+";
        for _ in 0..2000 {
            let len = (rng.next() % 400) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    let r = rng.next();
                    if r % 4 == 0 {
                        r as u8
                    } else {
                        ALPHABET[(r >> 8) as usize % ALPHABET.len()]
                    }
                })
                .collect();
            check_bounds(&String::from_utf8_lossy(&bytes));
        }
        for text in [TCP, TCP6, ODD] {
            for _ in 0..500 {
                let mut bytes = text.as_bytes().to_vec();
                for _ in 0..(1 + rng.next() % 8) {
                    let i = (rng.next() % bytes.len() as u64) as usize;
                    bytes[i] = ALPHABET[rng.next() as usize % ALPHABET.len()];
                }
                check_bounds(&String::from_utf8_lossy(&bytes));
            }
        }
    }

    /// A fixture pid whose `net/tcp` and `net/tcp6` are these texts, when given.
    fn pid_dir(tcp: Option<&[u8]>, tcp6: Option<&[u8]>) -> (tempfile::TempDir, FakePid) {
        let tmp = tempfile::tempdir().unwrap();
        let mut pid = FakeProc::new(tmp.path()).pid(4242);
        for (name, text) in [("net/tcp", tcp), ("net/tcp6", tcp6)] {
            if let Some(t) = text {
                pid = pid.file(name, t);
            }
        }
        (tmp, pid)
    }

    fn all_inodes(texts: &[&str]) -> HashSet<u64> {
        let rows = texts.iter().flat_map(|t| parse_net_tcp(t).sockets);
        rows.map(|s| s.inode).filter(|i| *i != 0).collect()
    }

    #[test]
    fn reader_keeps_only_target_inodes() {
        let (_tmp, pid) = pid_dir(Some(TCP.as_bytes()), Some(TCP6.as_bytes()));
        // Inode 0 is in the set, but rows with inode 0 belong to no fd and never match.
        let inodes: HashSet<u64> = [10925, 10932, 0, 999_999].into_iter().collect();
        let t = read_target_sockets(pid.dir(), &inodes).unwrap();
        let mut got: Vec<u64> = t.sockets.iter().map(|s| s.inode).collect();
        got.sort_unstable();
        assert_eq!(got, [10925, 10932]);
        assert_eq!(t.unparsed_lines, 0);
    }

    #[test]
    fn reader_matches_parser_on_whole_capture() {
        let (_tmp, pid) = pid_dir(Some(TCP.as_bytes()), Some(TCP6.as_bytes()));
        let inodes = all_inodes(&[TCP, TCP6]);
        let t = read_target_sockets(pid.dir(), &inodes).unwrap();
        let mut expect = parse_net_tcp(TCP).sockets;
        expect.extend(parse_net_tcp(TCP6).sockets);
        expect.retain(|s| s.inode != 0);
        assert_eq!(t.sockets, expect);
        assert_eq!(t.sockets.len(), 21);
    }

    #[test]
    fn reader_missing_tcp6_is_fine_missing_tcp_is_not() {
        let inodes = all_inodes(&[TCP]);
        let (_tmp, pid) = pid_dir(Some(TCP.as_bytes()), None);
        let t = read_target_sockets(pid.dir(), &inodes).unwrap();
        assert_eq!(t.sockets.len(), 13);

        let (_tmp, pid) = pid_dir(None, Some(TCP6.as_bytes()));
        let err = read_target_sockets(pid.dir(), &inodes).unwrap_err();
        assert!(matches!(err, ReadError::Missing { .. }), "{err}");
        assert!(err.path().ends_with("net/tcp"));
    }

    #[test]
    fn reader_counts_once_and_sums_unparsed() {
        let row = "   0: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 \
                   00000000 0 0 42 1 0\n";
        let tcp = format!("header\n{row}garbage\n");
        let mut tcp6 = format!("header\n{row}").into_bytes();
        tcp6.extend_from_slice(b"\xff\xfe not utf-8\n");
        let (_tmp, pid) = pid_dir(Some(tcp.as_bytes()), Some(&tcp6));
        let t = read_target_sockets(pid.dir(), &[42].into_iter().collect()).unwrap();
        assert_eq!(t.sockets.len(), 1);
        assert_eq!(t.unparsed_lines, 2);
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn summarize_whole_capture() {
        let mut table = parse_net_tcp(TCP);
        table.sockets.extend(parse_net_tcp(TCP6).sockets);
        table.sockets.retain(|s| s.inode != 0);
        // The states are what `ss -tanpe` showed for the capturing process (see
        // tests/fixtures/net/README.md); 23 socket fds for 21 rows leaves 2 that are not TCP.
        let s = summarize(&table, TcpTable::ProcNet, 23, 10);
        let states = TcpStates {
            established: 10,
            syn_sent: 3,
            fin_wait1: 1,
            fin_wait2: 1,
            close_wait: 2,
            listen: 4,
            ..TcpStates::default()
        };
        assert_eq!(s.states, states);
        assert_eq!(s.recv_queue_bytes, 1 + 100 + 1 + 128512 + 1);
        assert_eq!(s.send_queue_bytes, 3 + 3782145);
        assert_eq!(s.other_sockets, 2);
        assert_eq!(s.source, TcpTable::ProcNet);
        assert_eq!(
            s.top_close_wait_peers,
            [
                peer("127.0.0.1", 5000, false, 1, 1, 0),
                peer("::1", 6000, false, 1, 1, 0)
            ]
        );
        // v4 and v4-mapped v6 sockets to the same peer group together.
        assert_eq!(
            s.top_established_peers,
            [
                peer("127.0.0.1", 5000, true, 2, 128612, 0),
                peer("127.0.0.1", 7000, false, 2, 0, 0),
                peer("127.0.0.1", 7000, true, 2, 0, 0),
                peer("127.0.0.1", 5000, false, 1, 0, 0),
                peer("127.0.0.1", 5999, false, 1, 0, 0),
                peer("::1", 6000, false, 1, 0, 0),
                peer("::1", 6000, true, 1, 0, 0),
            ]
        );
    }

    #[test]
    fn inbound_and_outbound_peer_keys() {
        use TcpState::*;
        let table = NetTcp {
            sockets: vec![
                sock(Listen, "0.0.0.0:8080", "0.0.0.0:0", 0, 0, 1),
                // Inbound: three clients from one host, each its own ephemeral port.
                sock(CloseWait, "10.0.0.5:8080", "10.0.0.9:40001", 5, 0, 2),
                sock(CloseWait, "10.0.0.5:8080", "10.0.0.9:40002", 7, 1, 3),
                sock(CloseWait, "10.0.0.5:8080", "10.0.0.9:40003", 0, 2, 4),
                // Outbound to a database: keyed by its address and port.
                sock(CloseWait, "10.0.0.5:51000", "10.0.0.7:5432", 1, 0, 5),
                sock(CloseWait, "10.0.0.5:51001", "10.0.0.7:5432", 0, 0, 6),
                // Same host, another port: another peer.
                sock(CloseWait, "10.0.0.5:51002", "10.0.0.7:6379", 0, 0, 7),
                // Outbound to the host the inbound clients come from.
                sock(Established, "10.0.0.5:51003", "10.0.0.9:8080", 0, 0, 8),
                sock(Established, "10.0.0.5:8080", "10.0.0.9:40004", 0, 0, 9),
            ],
            unparsed_lines: 3,
            info: HashMap::default(),
        };
        let s = summarize(&table, TcpTable::ProcNet, 12, 10);
        assert_eq!(
            s.top_close_wait_peers,
            [
                peer("10.0.0.9", 8080, true, 3, 12, 3),
                peer("10.0.0.7", 5432, false, 2, 1, 0),
                peer("10.0.0.7", 6379, false, 1, 0, 0),
            ]
        );
        assert_eq!(
            s.top_established_peers,
            [
                peer("10.0.0.9", 8080, false, 1, 0, 0),
                peer("10.0.0.9", 8080, true, 1, 0, 0),
            ]
        );
        assert_eq!(s.states.close_wait, 6);
        assert_eq!(s.states.established, 2);
        assert_eq!(s.states.listen, 1);
        assert_eq!((s.recv_queue_bytes, s.send_queue_bytes), (13, 3));
        assert_eq!(s.other_sockets, 3);
        assert_eq!(s.unparsed_lines, 3);

        // Without the listener the same sockets are outbound, one peer per remote port.
        let mut no_listen = table.clone();
        no_listen.sockets.remove(0);
        let s = summarize(&no_listen, TcpTable::ProcNet, 12, 10);
        assert_eq!(s.top_close_wait_peers.len(), 5);
        assert!(s.top_close_wait_peers.iter().all(|p| !p.peer.inbound));
    }

    #[test]
    fn ranking_ties_and_top_k() {
        let mut sockets = Vec::new();
        let mut inode = 0;
        // 4 sockets to .4, 2 each to .3 and .1, 1 to .2.
        for (host, n) in [(2, 1), (3, 2), (4, 4), (1, 2)] {
            for _ in 0..n {
                inode += 1;
                let remote = format!("192.0.2.{host}:443");
                let local = format!("10.0.0.1:{}", 40000 + inode);
                sockets.push(sock(TcpState::CloseWait, &local, &remote, 0, 0, inode));
            }
        }
        let table = NetTcp {
            sockets,
            unparsed_lines: 0,
            info: HashMap::default(),
        };
        let order = |k| -> Vec<String> {
            let s = summarize(&table, TcpTable::ProcNet, 0, k);
            s.top_close_wait_peers
                .iter()
                .map(|p| format!("{}x{}", p.peer, p.sockets))
                .collect()
        };
        assert_eq!(
            order(10),
            [
                "192.0.2.4:443x4",
                "192.0.2.1:443x2",
                "192.0.2.3:443x2",
                "192.0.2.2:443x1"
            ]
        );
        assert_eq!(order(2), ["192.0.2.4:443x4", "192.0.2.1:443x2"]);
        assert!(order(0).is_empty());
        // Counts are over all sockets, whatever the cut; fewer fds than rows saturates.
        let s = summarize(&table, TcpTable::ProcNet, 0, 1);
        assert_eq!(s.states.close_wait, 9);
        assert_eq!(s.other_sockets, 0);
    }
}
