//! The target's TCP sockets ([`Source::Tcp`](super::Source::Tcp)): their states, queues and
//! peers, where the table came from, and how they were told from other processes'.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// TCP socket states as the kernel numbers them (`include/net/tcp_states.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    /// A state number this build does not know.
    Unknown,
}

impl TcpState {
    pub const ALL: [TcpState; 11] = [
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::Closing,
    ];

    /// From the hex `st` column of `/proc/net/tcp`.
    pub fn from_kernel(n: u8) -> TcpState {
        match n {
            1..=11 => TcpState::ALL[usize::from(n) - 1],
            _ => TcpState::Unknown,
        }
    }

    /// The name used in metrics labels and JSON (`close_wait`).
    pub fn as_str(self) -> &'static str {
        match self {
            TcpState::Established => "established",
            TcpState::SynSent => "syn_sent",
            TcpState::SynRecv => "syn_recv",
            TcpState::FinWait1 => "fin_wait1",
            TcpState::FinWait2 => "fin_wait2",
            TcpState::TimeWait => "time_wait",
            TcpState::Close => "close",
            TcpState::CloseWait => "close_wait",
            TcpState::LastAck => "last_ack",
            TcpState::Listen => "listen",
            TcpState::Closing => "closing",
            TcpState::Unknown => "unknown",
        }
    }
}

/// Counts of the target's TCP sockets (v4 and v6) per state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpStates {
    pub established: u64,
    pub syn_sent: u64,
    pub syn_recv: u64,
    pub fin_wait1: u64,
    pub fin_wait2: u64,
    pub time_wait: u64,
    pub close: u64,
    pub close_wait: u64,
    pub last_ack: u64,
    pub listen: u64,
    pub closing: u64,
    pub unknown: u64,
}

impl TcpStates {
    pub fn get(&self, state: TcpState) -> u64 {
        match state {
            TcpState::Established => self.established,
            TcpState::SynSent => self.syn_sent,
            TcpState::SynRecv => self.syn_recv,
            TcpState::FinWait1 => self.fin_wait1,
            TcpState::FinWait2 => self.fin_wait2,
            TcpState::TimeWait => self.time_wait,
            TcpState::Close => self.close,
            TcpState::CloseWait => self.close_wait,
            TcpState::LastAck => self.last_ack,
            TcpState::Listen => self.listen,
            TcpState::Closing => self.closing,
            TcpState::Unknown => self.unknown,
        }
    }

    pub fn add(&mut self, state: TcpState) {
        let slot = match state {
            TcpState::Established => &mut self.established,
            TcpState::SynSent => &mut self.syn_sent,
            TcpState::SynRecv => &mut self.syn_recv,
            TcpState::FinWait1 => &mut self.fin_wait1,
            TcpState::FinWait2 => &mut self.fin_wait2,
            TcpState::TimeWait => &mut self.time_wait,
            TcpState::Close => &mut self.close,
            TcpState::CloseWait => &mut self.close_wait,
            TcpState::LastAck => &mut self.last_ack,
            TcpState::Listen => &mut self.listen,
            TcpState::Closing => &mut self.closing,
            TcpState::Unknown => &mut self.unknown,
        };
        *slot += 1;
    }

    pub fn total(&self) -> u64 {
        TcpState::ALL.iter().map(|s| self.get(*s)).sum::<u64>() + self.unknown
    }
}

/// One TCP socket of the target, joined from its fd table and the netns TCP table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpSocket {
    pub state: TcpState,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// `rx_queue`: bytes received, not yet read by the target (for LISTEN: the accept backlog).
    pub recv_queue_bytes: u64,
    /// `tx_queue`: bytes sent, not yet acknowledged by the peer.
    pub send_queue_bytes: u64,
    pub inode: u64,
}

/// Who is on the other end. Outbound: the peer's address and port. Inbound (the local port
/// is one the target listens on): the peer's address and the target's local port, since the
/// peer's ephemeral port would make every connection its own "peer".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Peer {
    pub ip: IpAddr,
    /// The remote port (outbound) or the target's listening port (inbound).
    pub port: u16,
    pub inbound: bool,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addr = SocketAddr::new(self.ip, self.port);
        if self.inbound {
            match self.ip {
                IpAddr::V4(ip) => write!(f, "{ip} -> local :{}", self.port),
                IpAddr::V6(ip) => write!(f, "[{ip}] -> local :{}", self.port),
            }
        } else {
            write!(f, "{addr}")
        }
    }
}

/// Sockets per peer, for the top-K lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerCount {
    pub peer: Peer,
    pub sockets: u64,
    pub recv_queue_bytes: u64,
    pub send_queue_bytes: u64,
}

/// Which TCP table was read (`tcp.source` in `/status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TcpTable {
    /// `/proc/PID/net/tcp` and `tcp6`: the target's network namespace.
    #[default]
    ProcNet,
    /// A NETLINK_SOCK_DIAG dump (leakwatch shares the target's network namespace).
    SockDiag,
}

/// How the target's sockets were told from other processes'.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SocketsFrom {
    /// The target's fd links (`socket:[INODE]`) joined with the TCP table.
    #[default]
    FdJoin,
    /// The target is alone in its cgroup: the table filtered by that cgroup is its own,
    /// with no fd walk.
    Cgroup,
}

/// Which way this tick's sockets came, and why (for `/status`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketsMethod {
    pub from: SocketsFrom,
    pub why: String,
}

/// The target's TCP sockets (only sockets in its fd table; other processes never count).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tcp {
    pub states: TcpStates,
    /// Sum of Recv-Q over the target's sockets, bytes.
    pub recv_queue_bytes: u64,
    /// Sum of Send-Q over the target's sockets, bytes.
    pub send_queue_bytes: u64,
    /// Peers with the most CLOSE_WAIT sockets, most first.
    pub top_close_wait_peers: Vec<PeerCount>,
    /// Peers with the most ESTABLISHED sockets, most first.
    pub top_established_peers: Vec<PeerCount>,
    /// Socket fds found in no TCP table (unix, UDP, netlink, ...).
    pub other_sockets: u64,
    /// Table lines that did not parse (skipped).
    pub unparsed_lines: u64,
    pub source: TcpTable,
    #[serde(default)]
    pub method: SocketsMethod,
}
