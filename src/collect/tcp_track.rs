//! Stalled sockets and aged CLOSE_WAIT, tracked per socket across ticks (the way
//! [`StuckTracker`](super::task::StuckTracker) tracks threads). Pure: no I/O, no clock.
//!
//! A socket is *stalled* when it has data waiting to be sent or acknowledged (Send-Q > 0)
//! and its peer's `tcpi_bytes_acked` has not moved for at least `stall_after`: the peer
//! stopped reading (its window is full) or stopped answering. Anything else restarts its
//! clock: an empty Send-Q, or any byte acknowledged. A slow reader acknowledges a little at
//! a time and is never stalled. Only sock_diag gives `tcp_info`; from the text tables the
//! stall is unknown, with the reason, never 0.
//!
//! A CLOSE_WAIT socket's age runs from its first sighting in that state. A socket is the
//! same socket from tick to tick when its inode *and* addresses are the same: an inode
//! reused by a new socket starts over.
//!
//! Only sockets with a clock running are remembered (in CLOSE_WAIT, or with data queued):
//! a server with 10,000 idle connections costs no memory here, and the map is updated in
//! place, so a tick never holds two generations of it.

use rustc_hash::{FxBuildHasher, FxHashMap};
use std::hash::BuildHasher;

use super::net_tcp::{self, NetTcp};
use super::sock_diag::{DiagInfo, TcpInfo};
use crate::error::{Unknown, UnknownKind};
use crate::sample::{
    CloseWaitAge, StalledPeer, StalledSocket, TargetId, TcpSocket, TcpStalled, TcpState, TcpTable,
    WindowState,
};

/// The thresholds and the tick's time.
#[derive(Debug, Clone, Copy)]
pub struct TrackAt {
    /// CLOCK_MONOTONIC of the tick, milliseconds.
    pub now_ms: u64,
    pub stall_after_ms: u64,
    /// A CLOSE_WAIT socket at least this old is aged (`stuck_after`).
    pub aged_after_ms: u64,
    /// How many peers the stalled-by-peer list keeps.
    pub top_peers: usize,
}

/// What one tick's tracking found.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracked {
    pub stalled: Result<TcpStalled, Unknown>,
    pub close_wait: CloseWaitAge,
}

/// Per-socket state between ticks, for one target.
#[derive(Debug, Default)]
pub struct TcpTracker {
    target: Option<TargetId>,
    /// By inode.
    seen: FxHashMap<u64, Seen>,
    /// Which observation this is: an entry not seen in this one is gone.
    tick: u32,
}

/// What one socket was last seen as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    /// A hash of its local and remote addresses: the same inode with other addresses is
    /// another socket (64 bits, 24 bytes fewer than the addresses, per socket).
    addresses: u64,
    /// The observation that last saw it.
    tick: u32,
    clocks: Clocks,
}

/// The clocks a socket has running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Clocks {
    /// Since when it has been in CLOSE_WAIT.
    close_wait_since_ms: Option<u64>,
    /// `tcpi_bytes_acked`, and since when it has not moved with data queued.
    acked: Option<(u64, u64)>,
}

impl TcpTracker {
    /// Update with this tick's table and report. `source` says whether `table` has
    /// `tcp_info` at all.
    pub fn track(
        &mut self,
        target: TargetId,
        table: &NetTcp,
        source: TcpTable,
        at: TrackAt,
    ) -> Tracked {
        if self.target != Some(target) {
            self.seen.clear();
            self.target = Some(target);
        }
        self.tick = self.tick.wrapping_add(1);
        let mut close_wait = CloseWaitAge {
            aged_after_ms: at.aged_after_ms,
            ..CloseWaitAge::default()
        };
        let mut stalled = Vec::new();
        let mut no_bytes_acked = false;
        for s in &table.sockets {
            let addresses = FxBuildHasher.hash_one((s.local, s.remote));
            let before = self
                .seen
                .get(&s.inode)
                .filter(|b| b.addresses == addresses)
                .map(|b| &b.clocks);
            let info = table.info.get(&s.inode).copied().unwrap_or_default();
            let now = step(before, s, info.tcp.as_ref(), at.now_ms);
            if let Some(since) = now.close_wait_since_ms {
                let age = at.now_ms.saturating_sub(since);
                close_wait.oldest_ms = close_wait.oldest_ms.max(age);
                close_wait.aged += u64::from(age >= at.aged_after_ms);
            }
            let tcp = info.tcp.as_ref();
            no_bytes_acked |=
                s.send_queue_bytes > 0 && tcp.is_some_and(|t| t.bytes_acked.is_none());
            if let Some((_, since)) = now.acked {
                let stalled_for_ms = at.now_ms.saturating_sub(since);
                if stalled_for_ms >= at.stall_after_ms {
                    stalled.push(stalled_socket(s, &info, stalled_for_ms));
                }
            }
            if now.close_wait_since_ms.is_some() || now.acked.is_some() {
                let seen = Seen {
                    addresses,
                    tick: self.tick,
                    clocks: now,
                };
                self.seen.insert(s.inode, seen);
            } else {
                self.seen.remove(&s.inode);
            }
        }
        let tick = self.tick;
        self.seen.retain(|_, s| s.tick == tick);
        // A burst of CLOSE_WAIT that is gone gives its memory back.
        if self.seen.capacity() > 64 && self.seen.len() < self.seen.capacity() / 4 {
            self.seen.shrink_to_fit();
        }
        let stalled = if source != TcpTable::SockDiag {
            Err(Unknown::new(
                UnknownKind::Unavailable,
                "stalled sockets need tcp_info, which only netlink sock_diag gives, and the \
                 target is in another network namespace (its sockets are read from \
                 /proc/PID/net/tcp)",
            ))
        } else if no_bytes_acked {
            Err(Unknown::new(
                UnknownKind::Unsupported,
                "this kernel's tcp_info has no tcpi_bytes_acked (Linux < 4.1)",
            ))
        } else {
            Ok(summarize(table, stalled, at))
        };
        Tracked {
            stalled,
            close_wait,
        }
    }
}

/// One socket's state this tick, from what it was (`before`, the same socket) and now.
fn step(before: Option<&Clocks>, s: &TcpSocket, tcp: Option<&TcpInfo>, now_ms: u64) -> Clocks {
    let close_wait_since_ms = (s.state == TcpState::CloseWait)
        .then(|| before.and_then(|b| b.close_wait_since_ms).unwrap_or(now_ms));
    // The clock runs from the first tick with data queued while not a byte more is
    // acknowledged; an empty Send-Q stops it.
    let acked = (s.send_queue_bytes > 0)
        .then(|| tcp.and_then(|t| t.bytes_acked))
        .flatten()
        .map(|acked| {
            let since = match before.and_then(|b| b.acked) {
                Some((was, since)) if was == acked => since.min(now_ms),
                _ => now_ms,
            };
            (acked, since)
        });
    Clocks {
        close_wait_since_ms,
        acked,
    }
}

fn stalled_socket(s: &TcpSocket, info: &DiagInfo, stalled_for_ms: u64) -> StalledSocket {
    let tcp = info.tcp.unwrap_or_default();
    let rwnd_limited_percent = match (tcp.rwnd_limited_us, tcp.busy_us) {
        (Some(r), Some(b)) if b > 0 => Some((r as f64 / b as f64 * 100.0).min(100.0)),
        _ => None,
    };
    StalledSocket {
        // The peer is filled in with the listening ports known.
        peer: crate::sample::Peer {
            ip: s.remote.ip(),
            port: s.remote.port(),
            inbound: false,
        },
        state: s.state,
        local: s.local,
        remote: s.remote,
        inode: s.inode,
        send_queue_bytes: s.send_queue_bytes,
        write_memory_bytes: info.mem.and_then(|m| m.wmem_queued).map(u64::from),
        stalled_for_ms,
        window: WindowState {
            peer_window_bytes: tcp.snd_wnd.map(u64::from),
            notsent_bytes: tcp.notsent_bytes.map(u64::from),
            probe_backoff: tcp.backoff,
            rwnd_limited_percent,
        },
    }
}

/// The totals, the per-peer list and the sockets shown.
fn summarize(table: &NetTcp, mut sockets: Vec<StalledSocket>, at: TrackAt) -> TcpStalled {
    let listen_ports = net_tcp::listen_ports(table);
    let mut out = TcpStalled {
        count: sockets.len() as u64,
        stall_after_ms: at.stall_after_ms,
        ..TcpStalled::default()
    };
    let mut peers: FxHashMap<_, StalledPeer> = FxHashMap::default();
    for s in &mut sockets {
        let row = TcpSocket {
            state: s.state,
            local: s.local,
            remote: s.remote,
            recv_queue_bytes: 0,
            send_queue_bytes: s.send_queue_bytes,
            inode: s.inode,
        };
        s.peer = net_tcp::peer_of(&row, &listen_ports);
        let memory = s.write_memory_bytes.unwrap_or(0);
        out.send_queue_bytes = out.send_queue_bytes.saturating_add(s.send_queue_bytes);
        out.write_memory_bytes = out.write_memory_bytes.saturating_add(memory);
        let p = peers.entry(s.peer).or_insert(StalledPeer {
            peer: s.peer,
            sockets: 0,
            send_queue_bytes: 0,
            write_memory_bytes: 0,
            longest_stalled_ms: 0,
            zero_window: 0,
        });
        p.sockets += 1;
        p.send_queue_bytes = p.send_queue_bytes.saturating_add(s.send_queue_bytes);
        p.write_memory_bytes = p.write_memory_bytes.saturating_add(memory);
        p.longest_stalled_ms = p.longest_stalled_ms.max(s.stalled_for_ms);
        p.zero_window += u64::from(s.window.peer_window_bytes == Some(0));
    }
    let mut by_peer: Vec<StalledPeer> = peers.into_values().collect();
    by_peer.sort_unstable_by(|a, b| b.sockets.cmp(&a.sockets).then(a.peer.cmp(&b.peer)));
    by_peer.truncate(at.top_peers);
    sockets.sort_unstable_by(|a, b| {
        b.stalled_for_ms
            .cmp(&a.stalled_for_ms)
            .then(a.inode.cmp(&b.inode))
    });
    sockets.truncate(TcpStalled::SHOWN);
    out.by_peer = by_peer;
    out.sockets = sockets;
    out
}

#[cfg(test)]
mod tests;
