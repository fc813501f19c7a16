//! `/proc/PID/net/tcp` and `/proc/PID/net/tcp6` (proc(5), Documentation/networking/proc_net_tcp.rst):
//! the TCP table of the target's network namespace, joined with the target's socket inodes.
//!
//! STUB: to be written (parser, join, per-peer top-K).

use std::collections::HashSet;
use std::path::Path;

use crate::error::ReadError;
use crate::sample::{Tcp, TcpSocket};

/// Rows of one or more TCP tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetTcp {
    pub sockets: Vec<TcpSocket>,
    /// Lines that did not parse (skipped).
    pub unparsed_lines: u64,
}

/// Parse the text of `net/tcp` or `net/tcp6` (the same format; v6 addresses are longer).
pub fn parse_net_tcp(_text: &str) -> NetTcp {
    NetTcp::default()
}

/// Read `PID_DIR/net/tcp` and `tcp6` and keep only the rows whose inode is in `inodes`.
pub fn read_target_sockets(pid_dir: &Path, _inodes: &HashSet<u64>) -> Result<NetTcp, ReadError> {
    Err(ReadError::Missing {
        path: pid_dir.join("net/tcp"),
    })
}

/// Count states, sum queues and rank peers. `socket_fds` is how many distinct socket inodes
/// the target holds (those matching no row are `other_sockets`).
pub fn summarize(_table: &NetTcp, _socket_fds: u64, _top_k: usize) -> Tcp {
    Tcp::default()
}
