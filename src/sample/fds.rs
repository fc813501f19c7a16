//! The fd table (`/proc/PID/fd`) and its limit (`Max open files` of `/proc/PID/limits`):
//! [`Source::Fds`](super::Source::Fds) and [`Source::Limits`](super::Source::Limits).

use serde::{Deserialize, Serialize};

use super::Limit;

/// The fd table of `/proc/PID/fd`. Partly known when only part may be read: the kernel's
/// count needs no rights at all, the listing CAP_DAC_READ_SEARCH (or the target's uid), the
/// types CAP_SYS_PTRACE as well; `Sample::unknown` then says what is missing and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fds {
    /// Open fds: the entries of `/proc/PID/fd` (what `ls` and `lsof` show).
    pub open: Option<u64>,
    /// fd numbers taken, from the `st_size` of `/proc/PID/fd` (Linux >= 6.2; `None` before,
    /// and on fixture trees). Includes numbers reserved by calls in progress (a thread
    /// blocked in `accept()` holds one before it has a socket), so it can exceed `open`: it
    /// is the count RLIMIT_NOFILE is checked against. Readable by any uid.
    pub allocated: Option<u64>,
    /// `None` when the links cannot be read.
    pub by_type: Option<FdTypes>,
    /// How old `by_type` is, ms: 0 when the links were read this tick; more when the tick
    /// took its sockets from the cgroup alone and the breakdown is the last one taken (every
    /// `fd_types_every`, and only when the count changed).
    #[serde(default)]
    pub by_type_age_ms: u64,
    /// Entries listed but closed before their link could be read (skipped, not an error).
    pub vanished: u64,
}

impl Fds {
    /// The fds that count against RLIMIT_NOFILE: `allocated` where the kernel gives it,
    /// else `open`.
    pub fn in_use(&self) -> Option<u64> {
        match (self.allocated, self.open) {
            (Some(a), Some(o)) => Some(a.max(o)),
            (a, o) => a.or(o),
        }
    }
}

/// Open fds by what they point at (`readlink /proc/PID/fd/N`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdTypes {
    /// `socket:[INODE]`
    pub socket: u64,
    /// `pipe:[INODE]`
    pub pipe: u64,
    /// `anon_inode:...` (eventfd, epoll, timerfd, signalfd, pidfd, ...)
    pub anon_inode: u64,
    /// A path: regular files, devices, directories.
    pub file: u64,
    pub other: u64,
}

/// `Max open files` from `/proc/PID/limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdLimit {
    pub soft: Limit,
    pub hard: Limit,
}
