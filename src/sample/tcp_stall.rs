//! What two looks at the same TCP sockets tell ([`Source::TcpStall`](super::Source::TcpStall)):
//! sockets stalled behind a peer that acknowledges nothing, and the ages of CLOSE_WAIT.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{Peer, TcpState};

/// The window state of a stalled socket, from its `tcp_info`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowState {
    /// The peer's advertised receive window, bytes (`tcpi_snd_wnd`; Linux >= 5.4).
    pub peer_window_bytes: Option<u64>,
    /// Bytes written by the target and not yet sent (`tcpi_notsent_bytes`).
    pub notsent_bytes: Option<u64>,
    /// Backoff of the probe timer (`tcpi_backoff`): > 0 while zero-window probes go
    /// unanswered with a window.
    pub probe_backoff: u8,
    /// Share of the time with data to send held back by the peer's receive window
    /// (`tcpi_rwnd_limited / tcpi_busy_time`, percent).
    pub rwnd_limited_percent: Option<f64>,
}

/// One socket with data queued to send whose peer has acknowledged nothing new for at least
/// `stall_after`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StalledSocket {
    pub peer: Peer,
    pub state: TcpState,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub inode: u64,
    /// Send-Q: bytes written, not yet acknowledged.
    pub send_queue_bytes: u64,
    /// The write queue's memory (skmeminfo `wmem_queued`), when sent.
    pub write_memory_bytes: Option<u64>,
    /// How long `tcpi_bytes_acked` has not moved while data waited, milliseconds.
    pub stalled_for_ms: u64,
    pub window: WindowState,
}

/// Stalled sockets of one peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StalledPeer {
    pub peer: Peer,
    pub sockets: u64,
    pub send_queue_bytes: u64,
    pub write_memory_bytes: u64,
    /// The longest any of them has been stalled, milliseconds.
    pub longest_stalled_ms: u64,
    /// Of them, sockets whose peer advertises a zero window.
    pub zero_window: u64,
}

/// Stalled TCP sockets: data waits to be sent or acknowledged (Send-Q > 0) and the peer's
/// `tcpi_bytes_acked` has not moved for `stall_after`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TcpStalled {
    pub count: u64,
    /// Sum of their Send-Q, bytes.
    pub send_queue_bytes: u64,
    /// Sum of their write-queue memory (skmeminfo `wmem_queued`), bytes.
    pub write_memory_bytes: u64,
    /// Per peer, most sockets first (top-K).
    pub by_peer: Vec<StalledPeer>,
    /// The sockets, longest stalled first (at most [`TcpStalled::SHOWN`]).
    pub sockets: Vec<StalledSocket>,
    /// The threshold used, milliseconds.
    pub stall_after_ms: u64,
}

impl TcpStalled {
    /// How many stalled sockets are listed one by one.
    pub const SHOWN: usize = 20;
}

/// How long the target's CLOSE_WAIT sockets have been in CLOSE_WAIT (from their first
/// sighting in that state, per inode, across ticks).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseWaitAge {
    /// The age of the oldest, milliseconds; 0 when there is none.
    pub oldest_ms: u64,
    /// CLOSE_WAIT sockets at least `aged_after_ms` old.
    pub aged: u64,
    /// The threshold (`stuck_after`), milliseconds.
    pub aged_after_ms: u64,
}
