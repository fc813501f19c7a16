//! The `INET_DIAG_INFO` (`struct tcp_info`, include/uapi/linux/tcp.h) and
//! `INET_DIAG_SKMEMINFO` (`u32[SK_MEMINFO_VARS]`, include/uapi/linux/sock_diag.h) attributes
//! of a sock_diag reply: pure parsers over the attribute's payload.
//!
//! `struct tcp_info` has grown with the kernel; an older kernel sends a shorter one. A field
//! past the end of what was sent is `None` (unknown), never 0: `tcpi_bytes_acked` arrived in
//! Linux 4.1, `tcpi_notsent_bytes` in 4.6, `tcpi_busy_time`/`tcpi_rwnd_limited` in 4.19,
//! `tcpi_snd_wnd` in 5.4.

use serde::{Deserialize, Serialize};

use super::u32_at;

/// The fields of `struct tcp_info` leakwatch reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpInfo {
    /// `tcpi_probes`: unanswered zero-window (or keepalive) probes.
    pub probes: u8,
    /// `tcpi_backoff`: the exponential backoff of the retransmit / zero-window probe timer.
    pub backoff: u8,
    /// `tcpi_unacked`: segments sent, not yet acknowledged.
    pub unacked_segments: Option<u32>,
    /// `tcpi_last_ack_recv`: ms since the last ACK from the peer.
    pub last_ack_recv_ms: Option<u32>,
    /// `tcpi_bytes_acked`: payload bytes the peer has acknowledged, ever (Linux >= 4.1).
    pub bytes_acked: Option<u64>,
    /// `tcpi_notsent_bytes`: bytes written by the program, not yet sent (Linux >= 4.6).
    pub notsent_bytes: Option<u32>,
    /// `tcpi_busy_time`: µs spent with data to send (Linux >= 4.19).
    pub busy_us: Option<u64>,
    /// `tcpi_rwnd_limited`: µs of that held back by the peer's receive window (>= 4.19).
    pub rwnd_limited_us: Option<u64>,
    /// `tcpi_snd_wnd`: the peer's advertised receive window, bytes (Linux >= 5.4).
    pub snd_wnd: Option<u32>,
}

/// The skmeminfo counters leakwatch reads (bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkMemInfo {
    /// `SK_MEMINFO_RMEM_ALLOC`: receive memory in use.
    pub rmem_alloc: u32,
    pub rcvbuf: u32,
    /// `SK_MEMINFO_WMEM_ALLOC`: transmit memory in flight (handed to the device).
    pub wmem_alloc: u32,
    pub sndbuf: u32,
    /// `SK_MEMINFO_WMEM_QUEUED`: memory of the write queue (sent-unacked and unsent data,
    /// with its overhead): what a socket whose peer stopped reading pins.
    pub wmem_queued: Option<u32>,
}

/// What a dump row carried besides the `inet_diag_msg`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiagInfo {
    pub tcp: Option<TcpInfo>,
    pub mem: Option<SkMemInfo>,
}

/// Byte offsets in `struct tcp_info`.
const PROBES_AT: usize = 3;
const BACKOFF_AT: usize = 4;
const UNACKED_AT: usize = 24;
const LAST_ACK_RECV_AT: usize = 56;
const BYTES_ACKED_AT: usize = 120;
const NOTSENT_AT: usize = 144;
const BUSY_AT: usize = 168;
const RWND_LIMITED_AT: usize = 176;
const SND_WND_AT: usize = 228;
/// The u8 fields and the bitfields before `tcpi_rto`: shorter is no `tcp_info`.
const TCP_INFO_MIN: usize = 8;

/// Indices in the skmeminfo array.
const SK_MEMINFO_RMEM_ALLOC: usize = 0;
const SK_MEMINFO_RCVBUF: usize = 1;
const SK_MEMINFO_WMEM_ALLOC: usize = 2;
const SK_MEMINFO_SNDBUF: usize = 3;
const SK_MEMINFO_WMEM_QUEUED: usize = 5;

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// `struct tcp_info` as the kernel sent it, of any length; `None` when shorter than its
/// first 8 bytes.
pub fn parse_tcp_info(b: &[u8]) -> Option<TcpInfo> {
    if b.len() < TCP_INFO_MIN {
        return None;
    }
    Some(TcpInfo {
        probes: b[PROBES_AT],
        backoff: b[BACKOFF_AT],
        unacked_segments: u32_at(b, UNACKED_AT),
        last_ack_recv_ms: u32_at(b, LAST_ACK_RECV_AT),
        bytes_acked: u64_at(b, BYTES_ACKED_AT),
        notsent_bytes: u32_at(b, NOTSENT_AT),
        busy_us: u64_at(b, BUSY_AT),
        rwnd_limited_us: u64_at(b, RWND_LIMITED_AT),
        snd_wnd: u32_at(b, SND_WND_AT),
    })
}

/// The skmeminfo array; `None` when shorter than its first four counters.
pub fn parse_skmeminfo(b: &[u8]) -> Option<SkMemInfo> {
    let at = |i: usize| u32_at(b, i * 4);
    Some(SkMemInfo {
        rmem_alloc: at(SK_MEMINFO_RMEM_ALLOC)?,
        rcvbuf: at(SK_MEMINFO_RCVBUF)?,
        wmem_alloc: at(SK_MEMINFO_WMEM_ALLOC)?,
        sndbuf: at(SK_MEMINFO_SNDBUF)?,
        wmem_queued: at(SK_MEMINFO_WMEM_QUEUED),
    })
}
