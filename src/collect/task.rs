//! `/proc/PID/task/TID/{stat,status,syscall}` (proc(5)): the target's threads, and workers
//! stuck in socket calls.
//!
//! [`read_threads`] lists `task/` and reads each thread's `stat` (name, state), `status`
//! (context switches) and `syscall` (the call it is blocked in; parsed in [`syscall`]). For a
//! thread in `poll`/`ppoll` the `struct pollfd` array is read from the target's memory with
//! `process_vm_readv(2)`. A thread that exits between the listing and its read is skipped and
//! counted in `vanished`. `syscall` is mode 0400 and ptrace-checked (CAP_SYS_PTRACE and
//! CAP_DAC_READ_SEARCH, or the target's uid), the target's memory ptrace-checked: without every thread's call is `None`
//! and the reason is in [`ThreadScan::syscall_error`], so the stuck count is unknown, not 0.
//!
//! [`StuckTracker`] (in `task/stuck.rs`, pure) remembers, per thread, since when it has sat in
//! the same call with the same arguments and no context switch, and reports those blocked on
//! a socket for at least `stuck_after` (ARCHITECTURE.md, "Stuck (detached) workers").

mod stuck;
pub mod syscall;

use std::collections::HashMap;
use std::hash::RandomState;
use std::io::IoSliceMut;
use std::path::Path;

use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use nix::unistd::Pid;

pub use self::stuck::StuckTracker;
pub use self::syscall::{call_kind, parse_syscall, syscall_name, CallKind};
use crate::collect::{stat, status};
use crate::error::{read_to_string, ReadError};
use crate::sample::{SyscallState, Task, TcpSocket, ThreadStates, Threads};

/// What the stuck-worker check needs to name a worker's socket.
pub struct SocketLookup<'a, S = RandomState> {
    /// fd -> socket inode, from the fd scan.
    pub fd_inodes: &'a HashMap<i32, u64, S>,
    /// `PID_DIR` when the fd table was not walked this tick: then the link of each fd a
    /// blocked thread waits on is read alone (a few readlinks, not one per fd).
    pub links: Option<&'a Path>,
    /// The TCP rows, sorted by inode (a binary search, not a map: no allocation per tick
    /// for the few workers a tick may find).
    pub tcp_by_inode: &'a [TcpSocket],
}

/// The threads of one tick; `syscall_error` is set when `task/*/syscall` could not be read.
#[derive(Debug, Default)]
pub struct ThreadScan {
    pub threads: Threads,
    pub syscall_error: Option<ReadError>,
}

/// Read every `PID_DIR/task/*`. Only an unreadable `task/` listing is an error; a thread's
/// unreadable `syscall` is reported in [`ThreadScan::syscall_error`].
pub fn read_threads(pid_dir: &Path) -> Result<ThreadScan, ReadError> {
    let task_dir = pid_dir.join("task");
    let listing_err = |e| ReadError::from_io(&task_dir, e);
    let listing = std::fs::read_dir(&task_dir).map_err(listing_err)?;
    let memory = memory_pid(pid_dir);
    let mut scan = ThreadScan::default();
    for entry in listing {
        let entry = entry.map_err(listing_err)?;
        let Some(tid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let want_syscall = scan.syscall_error.is_none();
        match read_task(&entry.path(), tid, want_syscall, memory)? {
            TaskRead::Vanished => scan.threads.vanished += 1,
            TaskRead::Read(task, syscall_error) => {
                scan.syscall_error = scan.syscall_error.or(syscall_error.map(|e| *e));
                scan.threads.tasks.push(task);
            }
        }
    }
    let threads = &mut scan.threads;
    if scan.syscall_error.is_some() {
        // One thread's call unknown makes the stuck count unknown: forget the others too.
        for task in &mut threads.tasks {
            task.syscall = None;
            task.poll_fds = None;
        }
    }
    threads.tasks.sort_by_key(|t| t.tid);
    threads.count = threads.tasks.len() as u64;
    for task in &threads.tasks {
        count_state(&mut threads.states, task.state);
    }
    Ok(scan)
}

enum TaskRead {
    /// The thread, and why its `syscall` could not be read (boxed: rare, and large).
    Read(Task, Option<Box<ReadError>>),
    Vanished,
}

/// Read one `task/TID`. `stat` and `status` exist for every thread on every kernel, so their
/// ENOENT means the thread is gone; `syscall` is absent on kernels built without it.
fn read_task(
    dir: &Path,
    tid: i32,
    want_syscall: bool,
    memory: Option<Pid>,
) -> Result<TaskRead, ReadError> {
    let gone = |e: &ReadError| matches!(e, ReadError::Gone { .. } | ReadError::Missing { .. });
    let st = match stat::read_stat(dir) {
        Ok(st) => st,
        Err(e) if gone(&e) => return Ok(TaskRead::Vanished),
        Err(e) => return Err(e),
    };
    // Without `status` the context switches are unknown: the thread is then never stuck.
    let switches = match status::read_status(dir) {
        Ok(s) => (s.voluntary_ctxt_switches, s.nonvoluntary_ctxt_switches),
        Err(e) if gone(&e) => return Ok(TaskRead::Vanished),
        Err(_) => (None, None),
    };
    let mut task = Task {
        tid,
        name: st.comm,
        state: st.state,
        voluntary_ctxt_switches: switches.0,
        nonvoluntary_ctxt_switches: switches.1,
        syscall: None,
        poll_fds: None,
    };
    if !want_syscall {
        return Ok(TaskRead::Read(task, None));
    }
    match read_syscall(dir) {
        Ok(call) => {
            task.poll_fds = memory.and_then(|pid| poll_fds(pid, &call));
            task.syscall = Some(call);
            Ok(TaskRead::Read(task, None))
        }
        Err(e) if e.is_gone() => Ok(TaskRead::Vanished),
        Err(ReadError::Missing { .. }) if !dir.exists() => Ok(TaskRead::Vanished),
        Err(e) => Ok(TaskRead::Read(task, Some(Box::new(e)))),
    }
}

/// Read and parse `DIR/syscall`.
pub fn read_syscall(dir: &Path) -> Result<SyscallState, ReadError> {
    let path = dir.join("syscall");
    let text = read_to_string(&path)?;
    parse_syscall(&text).map_err(|msg| ReadError::parse(&path, msg))
}

fn count_state(states: &mut ThreadStates, state: char) {
    let slot = match state {
        'R' => &mut states.running,
        'S' => &mut states.sleeping,
        'D' => &mut states.disk_sleep,
        'T' | 't' => &mut states.stopped,
        'Z' | 'X' => &mut states.zombie,
        _ => &mut states.other,
    };
    *slot += 1;
}

/// The pid to read the target's memory with: the directory's name, but only when its proc
/// root is leakwatch's own (its `self` names leakwatch), so that the number means the same
/// process to `process_vm_readv`. `None` for fixture trees and other pid namespaces.
fn memory_pid(pid_dir: &Path) -> Option<Pid> {
    let pid: i32 = pid_dir.file_name()?.to_str()?.parse().ok()?;
    let own = std::fs::read_link(pid_dir.parent()?.join("self")).ok()?;
    (own.to_str()? == std::process::id().to_string()).then_some(Pid::from_raw(pid))
}

/// The fds a thread in `poll`/`ppoll` waits on, from its `struct pollfd` array. `None` for
/// other calls, more than [`syscall::POLL_MAX_FDS`] entries, or unreadable memory.
fn poll_fds(pid: Pid, call: &SyscallState) -> Option<Vec<i32>> {
    let SyscallState::In { nr, args } = call else {
        return None;
    };
    if call_kind(*nr) != Some(CallKind::Poll) || args[1] == 0 || args[1] > syscall::POLL_MAX_FDS {
        return None;
    }
    let len = usize::try_from(args[1]).ok()? * syscall::POLLFD_BYTES;
    let mut buf = [0u8; 16 * syscall::POLLFD_BYTES];
    let local = buf.get_mut(..len)?;
    let remote = RemoteIoVec {
        base: usize::try_from(args[0]).ok()?,
        len,
    };
    let read = process_vm_readv(pid, &mut [IoSliceMut::new(local)], &[remote]).ok()?;
    (read == len).then(|| syscall::parse_pollfds(&buf[..len]))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::error::UnknownKind;
    use crate::test_support::FakeProc;

    const RECVFROM: &str = include_str!("../../tests/fixtures/task/syscall_recvfrom_kernel_6_18");
    const FUTEX: &str = include_str!("../../tests/fixtures/task/syscall_futex_kernel_6_18");
    const RUNNING: &str = include_str!("../../tests/fixtures/task/syscall_running_kernel_6_18");

    /// A fixture process with four threads, one listed but gone, and a stray file; the
    /// voluntary context switches are ten times the tid.
    fn fixture() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let pid = FakeProc::new(tmp.path())
            .pid(4242)
            .task(102, "main", 'R', (1020, 3), Some(RUNNING))
            .task(100, "recv-worker-0", 'S', (1000, 3), Some(RECVFROM))
            .task(101, "pool", 'S', (1010, 3), Some(FUTEX))
            .task(103, "stopped", 't', (1030, 3), Some(FUTEX))
            .file("task/not-a-tid", "");
        // Listed, but gone before its files were read.
        std::fs::create_dir(pid.dir().join("task/104")).unwrap();
        let dir = pid.dir().to_path_buf();
        (tmp, dir)
    }

    #[test]
    fn reads_a_fixture_task_tree() {
        let (_tmp, dir) = fixture();
        let scan = read_threads(&dir).unwrap();
        assert!(scan.syscall_error.is_none());
        let t = &scan.threads;
        assert_eq!((t.count, t.vanished), (4, 1));
        assert_eq!(
            t.states,
            ThreadStates {
                running: 1,
                sleeping: 2,
                stopped: 1,
                ..ThreadStates::default()
            }
        );
        assert_eq!(
            t.tasks[0],
            Task {
                tid: 100,
                name: "recv-worker-0".into(),
                state: 'S',
                voluntary_ctxt_switches: Some(1000),
                nonvoluntary_ctxt_switches: Some(3),
                syscall: Some(parse_syscall(RECVFROM).unwrap()),
                poll_fds: None,
            }
        );
        let tids: Vec<i32> = t.tasks.iter().map(|t| t.tid).collect();
        assert_eq!(tids, [100, 101, 102, 103]);
        assert_eq!(t.tasks[2].syscall, Some(SyscallState::Running));
    }

    fn assert_all_calls_unknown(scan: &ThreadScan) {
        assert_eq!(scan.threads.count, 4);
        assert!(scan.threads.tasks.iter().all(|t| t.syscall.is_none()));
    }

    #[test]
    fn permission_denied_on_syscall_makes_every_call_unknown() {
        // A kernel file that refuses even root: reading a write-only sysctl is EACCES.
        let denied = Path::new("/proc/sys/vm/drop_caches");
        if !denied.exists() {
            eprintln!(
                "skipped: {} is not there to produce EACCES",
                denied.display()
            );
            return;
        }
        let (_tmp, dir) = fixture();
        let syscall = dir.join("task/101/syscall");
        std::fs::remove_file(&syscall).unwrap();
        std::os::unix::fs::symlink(denied, &syscall).unwrap();
        let scan = read_threads(&dir).unwrap();
        assert_all_calls_unknown(&scan);
        let err = scan.syscall_error.expect("the error is kept");
        assert_eq!(err.kind(), UnknownKind::PermissionDenied);
        assert!(err.to_string().contains("CAP_SYS_PTRACE"), "{err}");
        assert_eq!(err.path(), syscall);
    }

    #[test]
    fn other_syscall_errors_are_carried_not_zero() {
        let (_tmp, dir) = fixture();
        let syscall = dir.join("task/102/syscall");
        std::fs::remove_file(&syscall).unwrap();
        std::fs::create_dir(&syscall).unwrap(); // EISDIR
        let scan = read_threads(&dir).unwrap();
        assert_all_calls_unknown(&scan);
        assert_eq!(scan.syscall_error.map(|e| e.kind()), Some(UnknownKind::Io));

        // No `syscall` file while the thread is there: a kernel without it, not a vanish.
        let (_tmp, dir) = fixture();
        std::fs::remove_file(dir.join("task/100/syscall")).unwrap();
        let scan = read_threads(&dir).unwrap();
        assert_all_calls_unknown(&scan);
        assert_eq!(
            scan.syscall_error.map(|e| e.kind()),
            Some(UnknownKind::Missing)
        );

        let (_tmp, dir) = fixture();
        std::fs::write(dir.join("task/103/syscall"), "45 0xb\n").unwrap();
        let scan = read_threads(&dir).unwrap();
        assert_all_calls_unknown(&scan);
        assert_eq!(
            scan.syscall_error.map(|e| e.kind()),
            Some(UnknownKind::Parse)
        );
    }

    #[test]
    fn an_unreadable_task_listing_is_the_error() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_threads(tmp.path()),
            Err(ReadError::Missing { .. })
        ));
    }

    #[test]
    fn fixture_trees_never_read_memory() {
        let tmp = tempfile::tempdir().unwrap();
        let pid_dir = tmp.path().join(std::process::id().to_string());
        assert_eq!(memory_pid(&pid_dir), None);
        let own = Path::new("/proc").join(std::process::id().to_string());
        assert_eq!(
            memory_pid(&own),
            Some(Pid::from_raw(std::process::id() as i32))
        );
    }
}
