//! NETLINK_SOCK_DIAG (sock_diag(7), include/uapi/linux/inet_diag.h): the TCP sockets of
//! leakwatch's own network namespace, from the kernel's socket tables instead of the text
//! of `/proc/PID/net/tcp{,6}`.
//!
//! A dump is one `SOCK_DIAG_BY_FAMILY` request per family (AF_INET, AF_INET6) with the
//! states wanted as a bitmask and, optionally, a bytecode filter that keeps only sockets of
//! the given cgroup v2 ids (`INET_DIAG_BC_CGROUP_COND`, Linux >= 5.7). The kernel still walks
//! the namespace's tables, but skips a socket that fails the filter before formatting it, so
//! what is copied and parsed follows the target's sockets, not the namespace's.
//!
//! A dump asks for no reply attributes (`idiag_ext` 0): a socket is its 72-byte
//! `inet_diag_msg`, which already carries Send-Q (`idiag_wqueue`). `INET_DIAG_INFO` (`struct
//! tcp_info`) and `INET_DIAG_SKMEMINFO` ([`EXT_INFO`], parsed in `info.rs`) are asked for
//! only for the sockets that can stall (not listening, with data queued), by an exact lookup
//! each (`lookup.rs`: the dumped row's `inet_diag_sockid`, cookie included, without
//! `NLM_F_DUMP`); `sockets.rs` falls back to one dump of [`CONN_STATES`] with them when
//! there are too many. An idle connection costs no `tcp_info`.
//!
//! [`dump_request`] builds a request and [`parse_dump`] parses a reply buffer: both pure, over
//! bytes, tested on bytes captured from Linux 6.18 (`tests/fixtures/sock_diag/`). [`SockDiag`]
//! holds one netlink socket and a reused 32 KiB buffer (the most the kernel puts in one
//! message batch). Each row becomes the same [`TcpSocket`] the text tables give: addresses
//! in the same form (IPv4-mapped IPv6 as IPv4), Recv-Q/Send-Q as `/proc/net/tcp` prints them
//! (for LISTEN the accept backlog, Send-Q 0: the dump's `wqueue` is the backlog's limit there).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::net::{netlink, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use crate::sample::{TcpSocket, TcpState};

const NLMSG_HDR: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const INET_DIAG_REQ_BYTECODE: u16 = 1;
const INET_DIAG_BC_JMP: u8 = 1;
const INET_DIAG_BC_CGROUP_COND: u8 = 13;
const INET_DIAG_CGROUP_ID: u16 = 21;
/// Reply attributes asked for through `idiag_ext` (bit `type - 1`).
const INET_DIAG_INFO: u16 = 2;
const INET_DIAG_SKMEMINFO: u16 = 7;
/// The `idiag_ext` bits for `struct tcp_info` and skmeminfo.
pub const EXT_INFO: u8 = (1 << (INET_DIAG_INFO - 1)) | (1 << (INET_DIAG_SKMEMINFO - 1));
/// `struct nlmsghdr`: `nlmsg_len` (u32) at 0, `nlmsg_type` (u16) at 4.
const NLMSG_LEN_AT: usize = 0;
const NLMSG_TYPE_AT: usize = 4;
/// `struct inet_diag_msg`.
const DIAG_MSG_LEN: usize = 72;
/// Byte offsets in `struct inet_diag_msg` (linux/inet_diag.h): `idiag_family`,
/// `idiag_state`, then `id` (`struct inet_diag_sockid`: ports in network order, then the
/// 16-byte source and destination addresses), then `idiag_rqueue`, `idiag_wqueue`,
/// `idiag_inode`.
const MSG_FAMILY_AT: usize = 0;
const MSG_STATE_AT: usize = 1;
const MSG_SPORT_AT: usize = 4;
const MSG_DPORT_AT: usize = 6;
const MSG_SRC_AT: usize = 8;
const MSG_DST_AT: usize = 24;
const MSG_RQUEUE_AT: usize = 56;
const MSG_WQUEUE_AT: usize = 60;
const MSG_INODE_AT: usize = 68;
/// `struct nlattr`: `nla_len` (u16) at 0, `nla_type` (u16) at 2, the payload at 4.
const NLA_LEN_AT: usize = 0;
const NLA_TYPE_AT: usize = 2;
const NLA_HDR: usize = 4;
/// `struct inet_diag_req_v2`.
const DIAG_REQ_LEN: usize = 56;
/// One filter op with its u64 operand, and the jump that follows all but the last.
const CGROUP_OP_LEN: usize = 12;
const JMP_OP_LEN: usize = 4;
/// More cgroup ids than this and the filter is not worth its bytecode: dump unfiltered.
pub const MAX_CGROUP_FILTER: usize = 16;

/// Every TCP state a socket held by an fd can be in: all but TIME_WAIT (6) and
/// NEW_SYN_RECV (12), which are never an fd's (the text tables show them with inode 0).
pub const FD_STATES: u32 = ((1 << 12) - 1) & !(1 << 6) & !1;
/// LISTEN (10): its own hash table (a listener never stalls).
pub const LISTEN_STATES: u32 = 1 << 10;
/// The states of the established hash table (one walk): where `tcp_info` is asked for.
pub const CONN_STATES: u32 = FD_STATES & !LISTEN_STATES;

/// One row of a dump: the socket, and the cgroup v2 id it is charged to when the kernel says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiagSocket {
    pub socket: TcpSocket,
    pub cgroup_id: Option<u64>,
    /// `tcp_info` and skmeminfo, when asked for ([`EXT_INFO`]) and sent.
    pub info: DiagInfo,
    /// The kernel's name for the socket, for an exact lookup ([`SockDiag::lookup`]).
    pub id: SockId,
}

/// Where a reply buffer left the dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// More messages follow: read again.
    More,
    /// `NLMSG_DONE`: the dump is complete.
    Done,
}

/// What went wrong with a dump.
#[derive(Debug, thiserror::Error)]
pub enum DiagError {
    #[error("sock_diag: {0}")]
    Io(#[from] std::io::Error),
    /// The kernel answered with an error (`NLMSG_ERROR`, or a `NLMSG_DONE` carrying one).
    #[error("sock_diag: the kernel refused the dump: {0}")]
    Kernel(std::io::Error),
    #[error("sock_diag: malformed reply: {0}")]
    Malformed(&'static str),
}

/// What to dump: TCP sockets of `family` (`AF_INET` or `AF_INET6`) in `states` (bit N =
/// state N), with the attributes of `ext` (0 or [`EXT_INFO`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpOf {
    pub family: u8,
    pub states: u32,
    pub ext: u8,
}

/// A `SOCK_DIAG_BY_FAMILY` dump request for `what`, keeping only sockets charged to one of
/// `cgroups` when that is not empty.
pub fn dump_request(what: DumpOf, cgroups: &[u64], seq: u32) -> Vec<u8> {
    let DumpOf {
        family,
        states,
        ext,
    } = what;
    let bytecode = cgroup_filter(cgroups);
    let attr_len = if bytecode.is_empty() {
        0
    } else {
        NLA_HDR + bytecode.len()
    };
    let len = NLMSG_HDR + DIAG_REQ_LEN + attr_len;
    let mut m = Vec::with_capacity(len);
    push_req_head(
        &mut m,
        (len, NLM_F_REQUEST | NLM_F_DUMP, seq),
        (family, ext, states),
    );
    m.extend_from_slice(&[0u8; 48]); // inet_diag_sockid: any
    if !bytecode.is_empty() {
        m.extend_from_slice(&(attr_len as u16).to_ne_bytes());
        m.extend_from_slice(&INET_DIAG_REQ_BYTECODE.to_ne_bytes());
        m.extend_from_slice(&bytecode);
    }
    m
}

/// A `struct nlmsghdr` of a `SOCK_DIAG_BY_FAMILY` request (`len`, `flags`, `seq`), then the
/// head of its `inet_diag_req_v2` (TCP of `family`, `ext`, `states`): all but the sockid.
fn push_req_head(m: &mut Vec<u8>, (len, flags, seq): (usize, u16, u32), req: (u8, u8, u32)) {
    let (family, ext, states) = req;
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
    m.extend_from_slice(&[family, libc::IPPROTO_TCP as u8, ext, 0]);
    m.extend_from_slice(&states.to_ne_bytes());
}

/// Bytecode accepting a socket whose cgroup id is any of `ids`: each condition but the last
/// is followed by a jump to the end (accept); a failed condition skips that jump to the next
/// one; the last one's failure jumps 4 bytes past the end (reject). This is the shape the
/// kernel's audit wants (every op on the chain of `yes` jumps, as `ss` compiles an OR).
fn cgroup_filter(ids: &[u64]) -> Vec<u8> {
    let Some((last, rest)) = ids.split_last() else {
        return Vec::new();
    };
    let total = rest.len() * (CGROUP_OP_LEN + JMP_OP_LEN) + CGROUP_OP_LEN;
    let mut bc = Vec::with_capacity(total);
    let op = |bc: &mut Vec<u8>, code: u8, yes: usize, no: usize| {
        bc.push(code);
        bc.push(yes as u8);
        bc.extend_from_slice(&(no as u16).to_ne_bytes());
    };
    for id in rest {
        op(
            &mut bc,
            INET_DIAG_BC_CGROUP_COND,
            CGROUP_OP_LEN,
            CGROUP_OP_LEN + JMP_OP_LEN,
        );
        bc.extend_from_slice(&id.to_ne_bytes());
        let to_end = total - bc.len();
        op(&mut bc, INET_DIAG_BC_JMP, JMP_OP_LEN, to_end);
    }
    op(
        &mut bc,
        INET_DIAG_BC_CGROUP_COND,
        CGROUP_OP_LEN,
        CGROUP_OP_LEN + 4,
    );
    bc.extend_from_slice(&last.to_ne_bytes());
    bc
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parse one reply buffer (one `recv`): every socket message goes to `row`. Messages of
/// another type are skipped; a truncated message is an error, never a panic.
pub fn parse_dump(buf: &[u8], row: &mut impl FnMut(DiagSocket)) -> Result<Progress, DiagError> {
    let mut at = 0;
    while at + NLMSG_HDR <= buf.len() {
        let len = u32_at(buf, at + NLMSG_LEN_AT).unwrap_or(0) as usize;
        let kind = u16_at(buf, at + NLMSG_TYPE_AT).unwrap_or(0);
        if len < NLMSG_HDR || at + len > buf.len() {
            return Err(DiagError::Malformed("a message runs past the buffer"));
        }
        let body = &buf[at + NLMSG_HDR..at + len];
        match kind {
            NLMSG_DONE | NLMSG_ERROR => {
                let errno = body
                    .get(..4)
                    .map_or(0, |e| i32::from_ne_bytes([e[0], e[1], e[2], e[3]]));
                if errno != 0 {
                    let e = std::io::Error::from_raw_os_error(errno.saturating_neg());
                    return Err(DiagError::Kernel(e));
                }
                if kind == NLMSG_DONE {
                    return Ok(Progress::Done);
                }
            }
            SOCK_DIAG_BY_FAMILY => row(parse_socket(body)?),
            _ => {}
        }
        at += (len + 3) & !3;
    }
    if at != buf.len() {
        return Err(DiagError::Malformed("a partial message header"));
    }
    Ok(Progress::More)
}

/// One `inet_diag_msg` and its attributes.
fn parse_socket(body: &[u8]) -> Result<DiagSocket, DiagError> {
    let msg = body.get(..DIAG_MSG_LEN).ok_or(DiagError::Malformed(
        "a socket message shorter than inet_diag_msg",
    ))?;
    let family = msg[MSG_FAMILY_AT];
    let state = TcpState::from_kernel(msg[MSG_STATE_AT]);
    let port = |at: usize| u16::from_be_bytes([msg[at], msg[at + 1]]);
    let ip = |at: usize| -> Result<IpAddr, DiagError> {
        let b = &msg[at..at + 16];
        match i32::from(family) {
            libc::AF_INET => Ok(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
            libc::AF_INET6 => {
                let bytes: [u8; 16] = b.try_into().unwrap_or([0; 16]);
                Ok(Ipv6Addr::from(bytes).to_canonical())
            }
            _ => Err(DiagError::Malformed(
                "a socket of neither AF_INET nor AF_INET6",
            )),
        }
    };
    let word = |at: usize| u32_at(msg, at).unwrap_or(0);
    let recv_queue_bytes = u64::from(word(MSG_RQUEUE_AT));
    let send_queue_bytes = if state == TcpState::Listen {
        0
    } else {
        u64::from(word(MSG_WQUEUE_AT))
    };
    let socket = TcpSocket {
        state,
        local: SocketAddr::new(ip(MSG_SRC_AT)?, port(MSG_SPORT_AT)),
        remote: SocketAddr::new(ip(MSG_DST_AT)?, port(MSG_DPORT_AT)),
        recv_queue_bytes,
        send_queue_bytes,
        inode: u64::from(word(MSG_INODE_AT)),
    };
    let mut id = SockId {
        family,
        id: [0; SOCKID_LEN],
    };
    id.id
        .copy_from_slice(&msg[SOCKID_AT..SOCKID_AT + SOCKID_LEN]);
    let mut d = DiagSocket {
        socket,
        cgroup_id: None,
        info: DiagInfo::default(),
        id,
    };
    read_attrs(&body[DIAG_MSG_LEN..], &mut d);
    Ok(d)
}

/// The attributes leakwatch reads: `INET_DIAG_CGROUP_ID`, `INET_DIAG_INFO`,
/// `INET_DIAG_SKMEMINFO`. A truncated attribute ends the walk (what came before is kept).
fn read_attrs(mut attrs: &[u8], d: &mut DiagSocket) {
    while attrs.len() >= NLA_HDR {
        let (Some(len), Some(kind)) = (u16_at(attrs, NLA_LEN_AT), u16_at(attrs, NLA_TYPE_AT))
        else {
            return;
        };
        let len = usize::from(len);
        if len < NLA_HDR || len > attrs.len() {
            return;
        }
        let payload = &attrs[NLA_HDR..len];
        match kind {
            INET_DIAG_CGROUP_ID => {
                d.cgroup_id = payload
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_ne_bytes);
            }
            INET_DIAG_INFO => d.info.tcp = parse_tcp_info(payload),
            INET_DIAG_SKMEMINFO => d.info.mem = parse_skmeminfo(payload),
            _ => {}
        }
        attrs = attrs.get((len + 3) & !3..).unwrap_or(&[]);
    }
}

/// How long a read waits for the kernel's next answer.
pub const RECV_TIMEOUT_S: libc::time_t = 5;

/// A NETLINK_SOCK_DIAG socket and its receive buffer, kept between ticks.
#[derive(Debug)]
pub struct SockDiag {
    fd: OwnedFd,
    buf: Vec<u8>,
    seq: u32,
}

impl SockDiag {
    pub fn open() -> std::io::Result<SockDiag> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            Some(netlink::SOCK_DIAG),
        )?;
        let timeout = Duration::from_secs(RECV_TIMEOUT_S.unsigned_abs());
        rustix::net::sockopt::set_socket_timeout(
            &fd,
            rustix::net::sockopt::Timeout::Recv,
            Some(timeout),
        )?;
        Ok(SockDiag {
            fd,
            buf: vec![0; 32 * 1024],
            seq: 0,
        })
    }

    /// Dump the TCP sockets `what` says (of `cgroups`, if any) into `row`.
    pub fn dump(
        &mut self,
        what: DumpOf,
        cgroups: &[u64],
        row: &mut impl FnMut(DiagSocket),
    ) -> Result<(), DiagError> {
        self.seq = self.seq.wrapping_add(1);
        let req = dump_request(what, cgroups, self.seq);
        self.send(&req)?;
        loop {
            let n = self.recv()?;
            if parse_dump(&self.buf[..n], row)? == Progress::Done {
                return Ok(());
            }
        }
    }

    fn send(&self, req: &[u8]) -> Result<(), DiagError> {
        rustix::net::send(&self.fd, req, SendFlags::empty()).map_err(std::io::Error::from)?;
        Ok(())
    }

    /// One datagram into `buf`: its length. A kernel that stays silent for
    /// [`RECV_TIMEOUT_S`] is an error (`EAGAIN`), never a hang.
    fn recv(&mut self) -> Result<usize, DiagError> {
        loop {
            let n = match rustix::net::recv(&self.fd, &mut self.buf[..], RecvFlags::empty()) {
                Ok((n, _)) => n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(std::io::Error::from(e).into()),
            };
            if n == 0 {
                return Err(DiagError::Malformed("the socket closed mid-dump"));
            }
            return Ok(n);
        }
    }
}

mod info;
mod lookup;
pub use info::{parse_skmeminfo, parse_tcp_info, DiagInfo, SkMemInfo, TcpInfo};
use lookup::SOCKID_AT;
pub use lookup::{lookup_request, parse_lookups, SockId, BATCH, SOCKID_LEN};

#[cfg(test)]
mod tests;
