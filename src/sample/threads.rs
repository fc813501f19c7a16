//! The target's threads ([`Source::Threads`](super::Source::Threads)) and the workers stuck
//! in a socket call ([`Source::Stuck`](super::Source::Stuck)).

use serde::{Deserialize, Serialize};

use super::TcpSocket;

/// Threads by scheduler state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadStates {
    pub running: u64,
    pub sleeping: u64,
    pub disk_sleep: u64,
    pub stopped: u64,
    pub zombie: u64,
    pub other: u64,
}

/// What `/proc/PID/task/TID/syscall` said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyscallState {
    /// The thread is on a CPU.
    Running,
    /// Blocked, but not in a system call (e.g. a page fault).
    NotInSyscall,
    /// Blocked in system call `nr` with these six arguments.
    In { nr: i64, args: [u64; 6] },
}

/// One thread of the target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub tid: i32,
    pub name: String,
    pub state: char,
    pub voluntary_ctxt_switches: Option<u64>,
    pub nonvoluntary_ctxt_switches: Option<u64>,
    /// `None` when `syscall` cannot be read (needs ptrace rights).
    pub syscall: Option<SyscallState>,
    /// For a thread in `poll`/`ppoll`: the fds of its `struct pollfd` array, read from its
    /// memory (at most 16 entries; negative fds left out). `None` for other calls, larger
    /// arrays, or memory that could not be read.
    pub poll_fds: Option<Vec<i32>>,
}

/// `/proc/PID/task/*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Threads {
    pub count: u64,
    pub states: ThreadStates,
    pub tasks: Vec<Task>,
    /// Tasks that exited between the listing and the read (skipped).
    pub vanished: u64,
}

/// A worker blocked in one socket call, with no context switch, for at least `stuck_after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StuckWorker {
    pub tid: i32,
    pub name: String,
    /// The system call's name (`recvfrom`, `read`, `connect`, `poll`, ...).
    pub syscall: String,
    /// The fd it waits on.
    pub fd: i32,
    /// How long it has been seen in this same call, milliseconds.
    pub blocked_for_ms: u64,
    /// Inode of the socket the fd points at.
    pub socket_inode: u64,
    /// The TCP socket (state, peer), when the socket is TCP.
    pub socket: Option<TcpSocket>,
}

/// Stuck socket workers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stuck {
    pub count: u64,
    pub workers: Vec<StuckWorker>,
    /// The threshold used, milliseconds.
    pub stuck_after_ms: u64,
}
