//! The parser on replies captured from Linux 6.18 (`tests/fixtures/sock_diag/capture.py`:
//! a demo child in a cgroup of its own, LISTEN, ESTABLISHED and CLOSE_WAIT on 127.0.0.1
//! and ::1), checked against the text tables read at the same moment.

use super::*;
use crate::collect::net_tcp::parse_net_tcp;

const DUMP_V4: &[u8] =
    include_bytes!("../../../tests/fixtures/sock_diag/dump_inet_kernel_6_18.bin");
const DUMP_V6: &[u8] =
    include_bytes!("../../../tests/fixtures/sock_diag/dump_inet6_kernel_6_18.bin");
const BAD_FILTER: &[u8] =
    include_bytes!("../../../tests/fixtures/sock_diag/error_bad_filter_kernel_6_18.bin");
const TCP: &str = include_str!("../../../tests/fixtures/sock_diag/tcp_kernel_6_18");
const TCP6: &str = include_str!("../../../tests/fixtures/sock_diag/tcp6_kernel_6_18");
const INODES: &str = include_str!("../../../tests/fixtures/sock_diag/inodes");

fn rows(buf: &[u8]) -> (Vec<DiagSocket>, Progress) {
    let mut v = Vec::new();
    let p = parse_dump(buf, &mut |d| v.push(d)).unwrap();
    (v, p)
}

fn by_inode(mut v: Vec<TcpSocket>) -> Vec<TcpSocket> {
    v.sort_by_key(|s| s.inode);
    v
}

#[test]
#[cfg(target_endian = "little")]
fn dump_kernel_6_18_equals_the_text_tables() {
    let (v4, p4) = rows(DUMP_V4);
    let (v6, p6) = rows(DUMP_V6);
    assert_eq!((p4, p6), (Progress::Done, Progress::Done));
    let diag: Vec<TcpSocket> = v4.iter().chain(&v6).map(|d| d.socket.clone()).collect();
    let mut text = parse_net_tcp(TCP).sockets;
    text.extend(parse_net_tcp(TCP6).sockets);
    text.retain(|s| s.inode != 0);
    assert_eq!(text.len(), 9);
    assert_eq!(by_inode(diag.clone()), by_inode(text));

    // Every socket fd of the child is there, in both families.
    let inodes: Vec<u64> = INODES.lines().map(|l| l.parse().unwrap()).collect();
    let mut got: Vec<u64> = diag.iter().map(|s| s.inode).collect();
    got.sort_unstable();
    assert_eq!(got, inodes);
    assert!(v4.iter().all(|d| d.socket.local.is_ipv4()));
    assert!(v6.iter().all(|d| d.socket.local.ip().to_string() == "::1"));

    // All charged to the child's cgroup (the capture's filter): one id, not 0.
    let ids: HashSet<Option<u64>> = v4.iter().chain(&v6).map(|d| d.cgroup_id).collect();
    assert_eq!(ids.len(), 1);
    assert!(ids.iter().all(|i| i.is_some_and(|i| i > 1)));
    let states: Vec<TcpState> = v4.iter().map(|d| d.socket.state).collect();
    assert!(states.contains(&TcpState::Listen));
    assert!(states.contains(&TcpState::CloseWait));
    assert!(states.contains(&TcpState::Established));
}

use std::collections::HashSet;

#[test]
fn a_refused_filter_is_the_kernels_error() {
    let err = parse_dump(BAD_FILTER, &mut |_| panic!("no rows")).unwrap_err();
    match err {
        DiagError::Kernel(e) => assert_eq!(e.raw_os_error(), Some(libc::EINVAL)),
        other => panic!("{other}"),
    }
}

#[test]
fn every_cut_of_a_reply_is_an_error_or_more_never_a_panic() {
    for buf in [DUMP_V4, DUMP_V6, BAD_FILTER] {
        for end in 0..buf.len() {
            let _ = parse_dump(&buf[..end], &mut |_| {});
            let _ = parse_dump(&buf[end..], &mut |_| {});
        }
        // A message whose length runs past the buffer.
        let mut long = buf.to_vec();
        long[..4].copy_from_slice(&(buf.len() as u32 + 4).to_ne_bytes());
        assert!(parse_dump(&long, &mut |_| {}).is_err());
    }
    // Messages cut at a message boundary are fine: more to come.
    let (v, p) = rows(&DUMP_V4[..0]);
    assert!(v.is_empty() && p == Progress::More);
}

/// The kernel's bytecode interpreter (inet_diag_bc_run) for cgroup conditions and jumps.
fn run(bc: &[u8], cgroup: u64) -> bool {
    let mut at = 0usize;
    let mut len = bc.len() as isize;
    while len > 0 {
        let (code, yes, no) = (
            bc[at],
            bc[at + 1] as usize,
            u16::from_ne_bytes([bc[at + 2], bc[at + 3]]) as usize,
        );
        let hit = match code {
            INET_DIAG_BC_JMP => false,
            INET_DIAG_BC_CGROUP_COND => {
                u64::from_ne_bytes(bc[at + 4..at + 12].try_into().unwrap()) == cgroup
            }
            _ => panic!("op {code}"),
        };
        let step = if hit { yes } else { no };
        at += step;
        len -= step as isize;
    }
    len == 0
}

/// The kernel's audit (inet_diag_bc_audit): every `no` target lies on the chain of `yes`
/// jumps, and every jump is aligned and in range.
fn audit(bc: &[u8]) -> bool {
    let on_yes_chain = |target: usize| {
        let mut at = 0;
        while at < bc.len() {
            if at == target {
                return true;
            }
            at += bc[at + 1] as usize;
        }
        at == target
    };
    let mut at = 0;
    while at < bc.len() {
        let len = bc.len() - at;
        let min = if bc[at] == INET_DIAG_BC_CGROUP_COND {
            12
        } else {
            4
        };
        let (yes, no) = (
            bc[at + 1] as usize,
            u16::from_ne_bytes([bc[at + 2], bc[at + 3]]) as usize,
        );
        if yes < min || yes > len + 4 || yes % 4 != 0 || no < min || no > len + 4 || no % 4 != 0 {
            return false;
        }
        if no < len && !on_yes_chain(at + no) {
            return false;
        }
        at += yes;
    }
    true
}

#[test]
fn cgroup_filter_accepts_exactly_its_ids_and_passes_the_audit() {
    for n in 1..=MAX_CGROUP_FILTER {
        let ids: Vec<u64> = (0..n as u64).map(|i| 1000 + 7 * i).collect();
        let bc = cgroup_filter(&ids);
        assert!(audit(&bc), "{n} ids");
        for id in 990..1000 + 7 * n as u64 + 5 {
            assert_eq!(run(&bc, id), ids.contains(&id), "{n} ids, cgroup {id}");
        }
    }
    assert!(cgroup_filter(&[]).is_empty());
}

#[test]
fn request_layout() {
    let all = |family: i32| DumpOf {
        family: family as u8,
        states: FD_STATES,
        ext: 0,
    };
    let plain = dump_request(all(libc::AF_INET6), &[], 7);
    assert_eq!(plain.len(), 16 + 56);
    assert_eq!(u32::from_ne_bytes(plain[0..4].try_into().unwrap()), 72);
    assert_eq!(
        u16::from_ne_bytes([plain[4], plain[5]]),
        SOCK_DIAG_BY_FAMILY
    );
    assert_eq!(
        u16::from_ne_bytes([plain[6], plain[7]]),
        NLM_F_REQUEST | NLM_F_DUMP
    );
    assert_eq!(u32::from_ne_bytes(plain[8..12].try_into().unwrap()), 7);
    assert_eq!(
        &plain[16..18],
        &[libc::AF_INET6 as u8, libc::IPPROTO_TCP as u8]
    );
    // Every state an fd's socket can be in: not TIME_WAIT (6), not NEW_SYN_RECV (12).
    assert_eq!(FD_STATES, 0b1111_1011_1110);
    assert_eq!(plain[18], 0, "no attributes asked for");
    // The established table with tcp_info (bit 1) and skmeminfo (bit 6); the listeners
    // alone, without.
    assert_eq!(CONN_STATES | LISTEN_STATES, FD_STATES);
    assert_eq!(CONN_STATES & LISTEN_STATES, 0);
    assert_eq!(EXT_INFO, 0b100_0010);
    let conn = DumpOf {
        family: libc::AF_INET as u8,
        states: CONN_STATES,
        ext: EXT_INFO,
    };
    let with_info = dump_request(conn, &[], 2);
    assert_eq!(with_info[18], EXT_INFO);
    assert_eq!(
        u32::from_ne_bytes(with_info[20..24].try_into().unwrap()),
        CONN_STATES
    );
    // The capture's request (capture_info.py) asked for the same.
    assert_eq!(CONN_STATES, 0xFBE & !(1 << 10));
    let filtered = dump_request(all(libc::AF_INET), &[5, 6], 1);
    assert_eq!(filtered.len(), 72 + 4 + 12 + 4 + 12);
    assert_eq!(u16::from_ne_bytes([filtered[72], filtered[73]]), 4 + 28);
    assert_eq!(
        u16::from_ne_bytes([filtered[74], filtered[75]]),
        INET_DIAG_REQ_BYTECODE
    );
    // The request the kernel echoed in its error reply has the same layout.
    assert_eq!(
        &BAD_FILTER[36..38],
        &[libc::AF_INET as u8, libc::IPPROTO_TCP as u8]
    );
}

#[test]
fn listen_send_queue_is_zero_as_in_the_text_table() {
    let (v4, _) = rows(DUMP_V4);
    let listen: Vec<_> = v4
        .iter()
        .filter(|d| d.socket.state == TcpState::Listen)
        .collect();
    assert!(!listen.is_empty());
    assert!(listen.iter().all(|d| d.socket.send_queue_bytes == 0));
    // CLOSE_WAIT: the peer's FIN is one byte of Recv-Q, as /proc/net/tcp and ss show.
    assert!(v4
        .iter()
        .filter(|d| d.socket.state == TcpState::CloseWait)
        .all(|d| d.socket.recv_queue_bytes == 1));
}

/// A stalled consumer, a reader and a CLOSE_WAIT (`capture_info.py`), with `tcp_info` and
/// skmeminfo, next to what `ss -tinm` printed for the same sockets a moment later.
const DUMP_INFO: &[u8] =
    include_bytes!("../../../tests/fixtures/sock_diag/dump_info_inet_kernel_6_18.bin");
const SS_TINM: &str = include_str!("../../../tests/fixtures/sock_diag/ss_tinm_kernel_6_18");

/// `key:value` of one `ss -tinm` detail line (`bytes_acked:4096`, `skmem:(...,w4194880,...)`).
fn ss_field<'a>(details: &'a str, key: &str) -> Option<&'a str> {
    details
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix(':'))
}

#[test]
#[cfg(target_endian = "little")]
fn tcp_info_and_skmeminfo_kernel_6_18_agree_with_ss() {
    let (rows, p) = rows(DUMP_INFO);
    assert_eq!(p, Progress::Done);
    // The three accepted sockets and the two clients still open (the one that closed is
    // an orphan now, in no cgroup).
    assert_eq!(rows.len(), 5);
    let lines: Vec<&str> = SS_TINM.lines().collect();
    assert_eq!(lines.len(), 6);
    let mut checked = 0;
    for pair in lines.chunks(2) {
        let (head, details) = (pair[0], pair[1]);
        let peer = head.split_whitespace().nth(4).unwrap();
        let d = rows
            .iter()
            .find(|d| d.socket.remote.to_string() == peer && d.socket.local.port() != 0)
            .filter(|d| d.socket.local.to_string() == head.split_whitespace().nth(3).unwrap())
            .unwrap_or_else(|| panic!("no row for {head}"));
        let info = d.info.tcp.expect("tcp_info");
        let mem = d.info.mem.expect("skmeminfo");
        let num = |k: &str| ss_field(details, k).map(|v| v.parse::<u64>().unwrap());
        // ss leaves out a zero bytes_acked / notsent / backoff / snd_wnd.
        assert_eq!(
            info.bytes_acked,
            Some(num("bytes_acked").unwrap_or(0)),
            "{head}"
        );
        assert_eq!(
            info.notsent_bytes.map(u64::from),
            Some(num("notsent").unwrap_or(0))
        );
        assert_eq!(u64::from(info.backoff), num("backoff").unwrap_or(0));
        assert_eq!(
            info.snd_wnd.map(u64::from),
            Some(num("snd_wnd").unwrap_or(0))
        );
        let skmem = ss_field(details, "skmem").unwrap();
        assert!(
            skmem.contains(&format!(",w{},", mem.wmem_queued.unwrap())),
            "{skmem}"
        );
        assert!(skmem.contains(&format!(",rb{},", mem.rcvbuf)));
        assert!(skmem.contains(&format!(",tb{},", mem.sndbuf)));
        checked += 1;
    }
    assert_eq!(checked, 3);
    // The consumer that stopped reading: a full Send-Q of unsent bytes, a zero window,
    // probes backing off, all the send time limited by the receive window.
    let stalled = rows.iter().find(|d| d.socket.send_queue_bytes > 0).unwrap();
    let info = stalled.info.tcp.unwrap();
    assert_eq!(
        info.notsent_bytes.map(u64::from),
        Some(stalled.socket.send_queue_bytes)
    );
    assert_eq!(info.snd_wnd, Some(0));
    assert!(info.backoff > 0);
    assert_eq!(info.rwnd_limited_us, info.busy_us);
    assert!(
        stalled.info.mem.unwrap().wmem_queued.unwrap() as u64 > stalled.socket.send_queue_bytes
    );
}

/// The attribute payloads of the first row that has them, for cutting.
fn first_info_payload(kind: u16) -> Vec<u8> {
    let body = &DUMP_INFO[NLMSG_HDR..];
    let mut attrs = &body[DIAG_MSG_LEN..];
    while attrs.len() >= NLA_HDR {
        let len = usize::from(u16_at(attrs, 0).unwrap());
        if u16_at(attrs, 2) == Some(kind) {
            return attrs[NLA_HDR..len].to_vec();
        }
        attrs = &attrs[(len + 3) & !3..];
    }
    panic!("no attribute {kind}");
}

#[test]
#[cfg(target_endian = "little")]
fn a_shorter_tcp_info_leaves_the_newer_fields_unknown_not_zero() {
    let full = first_info_payload(INET_DIAG_INFO);
    assert!(full.len() >= 232, "Linux 6.18 sends {} bytes", full.len());
    let all = parse_tcp_info(&full).unwrap();
    assert!(all.bytes_acked.is_some() && all.snd_wnd.is_some());
    // Linux 4.0 ends before tcpi_bytes_acked (104 bytes + the pacing rates).
    let v4_0 = parse_tcp_info(&full[..120]).unwrap();
    assert_eq!(v4_0.bytes_acked, None);
    assert_eq!(v4_0.notsent_bytes, None);
    assert_eq!(v4_0.unacked_segments, all.unacked_segments);
    assert_eq!(v4_0.backoff, all.backoff);
    // Linux 4.18 ends before tcpi_busy_time; 5.3 before tcpi_snd_wnd.
    let v4_18 = parse_tcp_info(&full[..168]).unwrap();
    assert_eq!(v4_18.bytes_acked, all.bytes_acked);
    assert_eq!((v4_18.busy_us, v4_18.rwnd_limited_us), (None, None));
    let v5_3 = parse_tcp_info(&full[..228]).unwrap();
    assert_eq!(v5_3.rwnd_limited_us, all.rwnd_limited_us);
    assert_eq!(v5_3.snd_wnd, None);
    assert_eq!(parse_tcp_info(&full[..7]), None);
    let mem = first_info_payload(INET_DIAG_SKMEMINFO);
    assert!(parse_skmeminfo(&mem).unwrap().wmem_queued.is_some());
    assert_eq!(parse_skmeminfo(&mem[..20]).unwrap().wmem_queued, None);
    assert_eq!(parse_skmeminfo(&mem[..15]), None);
}

#[test]
fn every_cut_of_an_info_reply_is_an_error_or_more_never_a_panic() {
    for end in 0..DUMP_INFO.len() {
        let _ = parse_dump(&DUMP_INFO[..end], &mut |_| {});
        let _ = parse_dump(&DUMP_INFO[end..], &mut |_| {});
    }
    let info = first_info_payload(INET_DIAG_INFO);
    for end in 0..info.len() {
        let _ = parse_tcp_info(&info[..end]);
    }
}

#[test]
fn lookup_request_layout() {
    // The id as a dump row carries it: ports (network order), addresses, interface, cookie.
    let mut id = [0u8; SOCKID_LEN];
    id[0..2].copy_from_slice(&8080u16.to_be_bytes());
    id[2..4].copy_from_slice(&40000u16.to_be_bytes());
    id[4..8].copy_from_slice(&[127, 0, 0, 1]);
    id[20..24].copy_from_slice(&[127, 0, 0, 2]);
    id[36..40].copy_from_slice(&3u32.to_ne_bytes());
    id[40..48].copy_from_slice(&0x1122_3344_5566_7788u64.to_ne_bytes());
    let sock = SockId {
        family: libc::AF_INET as u8,
        id,
    };
    let req = lookup_request(&sock, CONN_STATES, EXT_INFO, 9);
    assert_eq!(req.len(), 16 + 56);
    assert_eq!(u32::from_ne_bytes(req[0..4].try_into().unwrap()), 72);
    assert_eq!(u16::from_ne_bytes([req[4], req[5]]), SOCK_DIAG_BY_FAMILY);
    // A request, not a dump: the kernel looks the one socket up.
    assert_eq!(u16::from_ne_bytes([req[6], req[7]]), NLM_F_REQUEST);
    assert_eq!(u32::from_ne_bytes(req[8..12].try_into().unwrap()), 9);
    assert_eq!(
        &req[16..20],
        &[libc::AF_INET as u8, libc::IPPROTO_TCP as u8, EXT_INFO, 0]
    );
    assert_eq!(
        u32::from_ne_bytes(req[20..24].try_into().unwrap()),
        CONN_STATES
    );
    assert_eq!(&req[24..], &id[..], "the sockid as dumped, cookie included");
}

#[test]
fn a_dumped_row_names_its_socket_for_a_lookup() {
    // The id of a row is the 48 bytes after the first 4 of its inet_diag_msg.
    let mut msg = vec![0u8; DIAG_MSG_LEN];
    msg[0] = libc::AF_INET6 as u8;
    msg[1] = 1; // ESTABLISHED
    for (i, b) in msg[4..52].iter_mut().enumerate() {
        *b = i as u8;
    }
    let d = parse_socket(&msg).unwrap();
    assert_eq!(d.id.family, libc::AF_INET6 as u8);
    assert_eq!(&d.id.id[..], &msg[4..52]);
}

#[test]
fn lookup_answers_are_counted_by_sequence() {
    let mut buf = Vec::new();
    // An error answer (ENOENT: the socket is gone) of seq 5.
    buf.extend_from_slice(&36u32.to_ne_bytes());
    buf.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
    buf.extend_from_slice(&0u16.to_ne_bytes());
    buf.extend_from_slice(&5u32.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&(-libc::ENOENT).to_ne_bytes());
    buf.extend_from_slice(&[0u8; 16]);
    let mut rows = 0;
    assert_eq!(parse_lookups(&buf, 5..6, &mut |_| rows += 1).unwrap(), 1);
    assert_eq!(parse_lookups(&buf, 6..8, &mut |_| rows += 1).unwrap(), 0);
    assert_eq!(rows, 0);
    assert!(parse_lookups(&buf[..20], 5..6, &mut |_| ()).is_err());
}
