//! `/proc/PID/task/TID/{stat,status,syscall}`: threads, and workers stuck in socket calls.
//!
//! STUB: to be written.

use std::collections::HashMap;
use std::path::Path;

use crate::error::ReadError;
use crate::sample::{Stuck, TargetId, TcpSocket, Threads};

/// What the stuck-worker check needs to name a worker's socket.
pub struct SocketLookup<'a> {
    /// fd -> socket inode, from the fd scan.
    pub fd_inodes: &'a HashMap<i32, u64>,
    /// socket inode -> TCP socket, from the TCP join.
    pub tcp_by_inode: &'a HashMap<u64, TcpSocket>,
}

/// The threads of one tick; `syscall_error` is set when `task/*/syscall` could not be read.
#[derive(Debug, Default)]
pub struct ThreadScan {
    pub threads: Threads,
    pub syscall_error: Option<ReadError>,
}

/// Read every `PID_DIR/task/*`.
pub fn read_threads(pid_dir: &Path) -> Result<ThreadScan, ReadError> {
    Err(ReadError::Missing {
        path: pid_dir.join("task"),
    })
}

/// Remembers, per thread, since when it has sat in the same call with no context switch.
#[derive(Debug, Default)]
pub struct StuckTracker {}

impl StuckTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Update with this tick's threads and report the stuck workers.
    pub fn observe(
        &mut self,
        _target: TargetId,
        _threads: &Threads,
        _now_mono_ms: u64,
        stuck_after_ms: u64,
        _sockets: &SocketLookup<'_>,
    ) -> Stuck {
        Stuck {
            stuck_after_ms,
            ..Stuck::default()
        }
    }
}
