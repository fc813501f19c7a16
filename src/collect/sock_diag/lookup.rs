//! Exact lookups: `tcp_info` and skmeminfo of one socket, asked for by its
//! `inet_diag_sockid` as a dump returned it (ports, addresses, interface and cookie).
//!
//! The request is an `inet_diag_req_v2` without `NLM_F_DUMP`: the kernel finds the socket
//! in its hash table, checks the cookie, and answers one `SOCK_DIAG_BY_FAMILY` message, or
//! an `NLMSG_ERROR` (`ENOENT` when the socket is gone, `ESTALE` when the 4-tuple is another
//! socket's now). Requests go [`BATCH`] to a `send`: the kernel handles each message of it
//! in turn, and each answer is one datagram; a batch is small enough that its answers fit
//! the receive buffer.

use super::{
    parse_socket, push_req_head, u16_at, u32_at, DiagError, DiagSocket, SockDiag, DIAG_REQ_LEN,
    NLMSG_ERROR, NLMSG_HDR, NLMSG_LEN_AT, NLMSG_TYPE_AT, NLM_F_REQUEST, SOCK_DIAG_BY_FAMILY,
};

/// `struct inet_diag_sockid`'s size, and where it starts in a request and in a reply.
pub const SOCKID_LEN: usize = 48;
pub(super) const SOCKID_AT: usize = 4;
/// Lookups per `send`.
pub const BATCH: usize = 32;
/// `nlmsg_seq` in `struct nlmsghdr`.
const NLMSG_SEQ_AT: usize = 8;

/// A socket as the kernel names it: its family and `inet_diag_sockid`, bytes as dumped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockId {
    pub family: u8,
    pub id: [u8; SOCKID_LEN],
}

/// The exact-lookup request for `sock` (no `NLM_F_DUMP`), asking for the attributes of
/// `ext`; `states` is not looked at by the kernel for a lookup, but set as a dump would.
pub fn lookup_request(sock: &SockId, states: u32, ext: u8, seq: u32) -> Vec<u8> {
    let len = NLMSG_HDR + DIAG_REQ_LEN;
    let mut m = Vec::with_capacity(len);
    push_lookup(&mut m, sock, states, ext, seq);
    m
}

fn push_lookup(m: &mut Vec<u8>, sock: &SockId, states: u32, ext: u8, seq: u32) {
    let len = NLMSG_HDR + DIAG_REQ_LEN;
    push_req_head(m, (len, NLM_F_REQUEST, seq), (sock.family, ext, states));
    m.extend_from_slice(&sock.id);
}

/// Parse one reply datagram of lookups: each socket message goes to `row`, each error
/// (the socket is gone) is a lookup answered with nothing. Returns how many answers, of
/// sequence numbers in `seqs`, the buffer held.
pub fn parse_lookups(
    buf: &[u8],
    seqs: std::ops::Range<u32>,
    row: &mut impl FnMut(DiagSocket),
) -> Result<usize, DiagError> {
    let mut at = 0;
    let mut answers = 0;
    while at + NLMSG_HDR <= buf.len() {
        let len = u32_at(buf, at + NLMSG_LEN_AT).unwrap_or(0) as usize;
        let kind = u16_at(buf, at + NLMSG_TYPE_AT).unwrap_or(0);
        let seq = u32_at(buf, at + NLMSG_SEQ_AT).unwrap_or(0);
        if len < NLMSG_HDR || at + len > buf.len() {
            return Err(DiagError::Malformed("a message runs past the buffer"));
        }
        let ours = seqs.contains(&seq);
        match kind {
            NLMSG_ERROR if ours => answers += 1,
            SOCK_DIAG_BY_FAMILY if ours => {
                answers += 1;
                row(parse_socket(&buf[at + NLMSG_HDR..at + len])?);
            }
            _ => {}
        }
        at += (len + 3) & !3;
    }
    Ok(answers)
}

impl SockDiag {
    /// Look up each of `socks` with the attributes of `ext`; the sockets found go to `row`
    /// (a socket gone since the dump is simply not there).
    pub fn lookup(
        &mut self,
        socks: &[SockId],
        states: u32,
        ext: u8,
        row: &mut impl FnMut(DiagSocket),
    ) -> Result<(), DiagError> {
        let mut req = Vec::with_capacity(BATCH * (NLMSG_HDR + DIAG_REQ_LEN));
        for batch in socks.chunks(BATCH) {
            req.clear();
            if self.seq > u32::MAX - BATCH as u32 {
                self.seq = 0; // the batch's sequence numbers never wrap
            }
            let first = self.seq + 1;
            for sock in batch {
                self.seq += 1;
                push_lookup(&mut req, sock, states, ext, self.seq);
            }
            self.send(&req)?;
            let seqs = first..self.seq + 1;
            let mut answered = 0;
            while answered < batch.len() {
                let n = self.recv()?;
                answered += parse_lookups(&self.buf[..n], seqs.clone(), row)?;
            }
        }
        Ok(())
    }
}
