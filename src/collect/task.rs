//! `/proc/PID/task/TID/{stat,status,syscall}` (proc(5)): the target's threads, and workers
//! stuck in socket calls.
//!
//! [`read_threads`] lists `task/` and reads each thread's `stat` (name, state), `status`
//! (context switches) and `syscall` (the call it is blocked in; parsed in [`syscall`]). For a
//! thread in `poll`/`ppoll` the `struct pollfd` array is read from the target's memory with
//! `process_vm_readv(2)`. A thread that exits between the listing and its read is skipped and
//! counted in `vanished`. `syscall` and the target's memory are ptrace-checked
//! (CAP_SYS_PTRACE, or the target's uid): without that right every thread's call is `None`
//! and the reason is in [`ThreadScan::syscall_error`], so the stuck count is unknown, not 0.
//!
//! [`StuckTracker`] is pure: it remembers, per thread, since when it has sat in the same call
//! with the same arguments and no context switch, and reports those blocked on a socket for
//! at least `stuck_after` (DESIGN.md, "Stuck (detached) workers").

pub mod syscall;

use std::collections::HashMap;
use std::io::IoSliceMut;
use std::path::Path;

use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use nix::unistd::Pid;

pub use self::syscall::{call_kind, parse_syscall, syscall_name, CallKind};
use crate::collect::{stat, status};
use crate::error::{read_to_string, ReadError};
use crate::sample::{
    Stuck, StuckWorker, SyscallState, TargetId, Task, TcpSocket, ThreadStates, Threads,
};

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
                scan.syscall_error = scan.syscall_error.or(syscall_error);
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
    /// The thread, and why its `syscall` could not be read.
    Read(Task, Option<ReadError>),
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
        Err(e) => Ok(TaskRead::Read(task, Some(e))),
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

/// Remembers, per thread, since when it has sat in the same call with no context switch.
#[derive(Debug, Default)]
pub struct StuckTracker {
    target: Option<TargetId>,
    seen: HashMap<i32, Seen>,
}

/// What one thread was last seen doing.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    /// The call and its arguments; `None` when running, not in a call, or unknown.
    call: Option<(i64, [u64; 6], Option<Vec<i32>>)>,
    /// Voluntary + nonvoluntary context switches; `None` when unknown.
    switches: Option<u64>,
    /// CLOCK_MONOTONIC ms since when `call` and `switches` have not changed.
    since_ms: u64,
}

impl StuckTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Update with this tick's threads and report the stuck workers. `now_mono_ms` is the
    /// tick's CLOCK_MONOTONIC in ms; the tracker reads no clock.
    pub fn observe(
        &mut self,
        target: TargetId,
        threads: &Threads,
        now_mono_ms: u64,
        stuck_after_ms: u64,
        sockets: &SocketLookup<'_>,
    ) -> Stuck {
        if self.target != Some(target) {
            self.seen.clear();
            self.target = Some(target);
        }
        let mut seen = HashMap::with_capacity(threads.tasks.len());
        let mut workers = Vec::new();
        for task in &threads.tasks {
            let now = Seen {
                call: match &task.syscall {
                    Some(SyscallState::In { nr, args }) => {
                        Some((*nr, *args, task.poll_fds.clone()))
                    }
                    _ => None,
                },
                switches: task
                    .voluntary_ctxt_switches
                    .zip(task.nonvoluntary_ctxt_switches)
                    .and_then(|(v, n)| v.checked_add(n)),
                since_ms: now_mono_ms,
            };
            let since_ms = match self.seen.get(&task.tid) {
                Some(before) if unchanged(before, &now) => before.since_ms.min(now_mono_ms),
                _ => now_mono_ms,
            };
            let blocked_for_ms = now_mono_ms - since_ms;
            if blocked_for_ms >= stuck_after_ms {
                if let Some(w) = socket_wait(task, sockets) {
                    workers.push(StuckWorker {
                        tid: task.tid,
                        name: task.name.clone(),
                        blocked_for_ms,
                        ..w
                    });
                }
            }
            seen.insert(task.tid, Seen { since_ms, ..now });
        }
        self.seen = seen;
        workers.sort_by(|a, b| {
            (b.blocked_for_ms.cmp(&a.blocked_for_ms)).then_with(|| a.tid.cmp(&b.tid))
        });
        Stuck {
            count: workers.len() as u64,
            workers,
            stuck_after_ms,
        }
    }
}

/// In the same known call with the same arguments, and no (known) context switch since.
fn unchanged(before: &Seen, now: &Seen) -> bool {
    now.call.is_some()
        && now.switches.is_some()
        && before.call == now.call
        && before.switches == now.switches
}

/// The socket a thread waits on, when its call is a socket wait: a [`StuckWorker`] with its
/// call, fd and socket filled in (the caller fills in the rest).
fn socket_wait(task: &Task, sockets: &SocketLookup<'_>) -> Option<StuckWorker> {
    let Some(SyscallState::In { nr, args }) = &task.syscall else {
        return None;
    };
    let inode_of = |fd: i32| sockets.fd_inodes.get(&fd).map(|inode| (fd, *inode));
    let (fd, socket_inode) = match call_kind(*nr)? {
        CallKind::FdWait => inode_of(syscall::fd_arg(args[0])?)?,
        CallKind::Poll => task
            .poll_fds
            .as_ref()?
            .iter()
            .find_map(|fd| inode_of(*fd))?,
        CallKind::Idle => return None,
    };
    Some(StuckWorker {
        tid: task.tid,
        name: String::new(),
        syscall: syscall_name(*nr)?.to_string(),
        fd,
        blocked_for_ms: 0,
        socket_inode,
        socket: sockets.tcp_by_inode.get(&socket_inode).cloned(),
    })
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::error::UnknownKind;
    use crate::sample::TcpState;

    const T1: TargetId = TargetId {
        pid: 100,
        starttime_ticks: 5000,
    };
    const STUCK_AFTER: u64 = 1000;

    fn call(nr: libc::c_long, args: [u64; 6]) -> Option<SyscallState> {
        Some(SyscallState::In {
            nr: syscall::sys(nr),
            args,
        })
    }

    fn recv(fd: u64) -> Option<SyscallState> {
        call(libc::SYS_recvfrom, [fd, 0x7f00_0000_1000, 0x200, 0, 0, 0])
    }

    fn task(tid: i32, syscall: Option<SyscallState>, switches: u64) -> Task {
        Task {
            tid,
            name: format!("worker-{tid}"),
            state: 'S',
            voluntary_ctxt_switches: Some(switches),
            nonvoluntary_ctxt_switches: Some(1),
            syscall,
            poll_fds: None,
        }
    }

    fn threads(tasks: Vec<Task>) -> Threads {
        Threads {
            count: tasks.len() as u64,
            tasks,
            ..Threads::default()
        }
    }

    /// fd 3 and 4 are sockets (inodes 333, 444), 4 is a TCP socket in CLOSE_WAIT.
    struct World {
        fd_inodes: HashMap<i32, u64>,
        tcp_by_inode: HashMap<u64, TcpSocket>,
    }

    fn tcp_444() -> TcpSocket {
        TcpSocket {
            state: TcpState::CloseWait,
            local: SocketAddr::from(([127, 0, 0, 1], 40000)),
            remote: SocketAddr::from(([127, 0, 0, 1], 8080)),
            recv_queue_bytes: 1,
            send_queue_bytes: 0,
            inode: 444,
        }
    }

    impl World {
        fn new() -> World {
            World {
                fd_inodes: HashMap::from([(3, 333), (4, 444)]),
                tcp_by_inode: HashMap::from([(444, tcp_444())]),
            }
        }

        fn lookup(&self) -> SocketLookup<'_> {
            SocketLookup {
                fd_inodes: &self.fd_inodes,
                tcp_by_inode: &self.tcp_by_inode,
            }
        }
    }

    /// Observe `tasks` at `now` and return the stuck tids.
    fn stuck_tids(tr: &mut StuckTracker, w: &World, now: u64, tasks: Vec<Task>) -> Vec<i32> {
        let stuck = tr.observe(T1, &threads(tasks), now, STUCK_AFTER, &w.lookup());
        assert_eq!(stuck.count, stuck.workers.len() as u64);
        assert_eq!(stuck.stuck_after_ms, STUCK_AFTER);
        stuck.workers.iter().map(|s| s.tid).collect()
    }

    #[test]
    fn stuck_only_after_stuck_after() {
        let (w, mut tr) = (World::new(), StuckTracker::new());
        assert!(stuck_tids(&mut tr, &w, 10_000, vec![task(7, recv(3), 2)]).is_empty());
        assert!(stuck_tids(&mut tr, &w, 10_999, vec![task(7, recv(3), 2)]).is_empty());
        assert_eq!(
            stuck_tids(&mut tr, &w, 11_000, vec![task(7, recv(3), 2)]),
            [7]
        );
        let stuck = tr.observe(
            T1,
            &threads(vec![task(7, recv(3), 2)]),
            15_000,
            STUCK_AFTER,
            &w.lookup(),
        );
        assert_eq!(stuck.workers[0].blocked_for_ms, 5000);
    }

    #[test]
    fn a_context_switch_resets() {
        let (w, mut tr) = (World::new(), StuckTracker::new());
        stuck_tids(&mut tr, &w, 0, vec![task(7, recv(3), 2)]);
        assert_eq!(
            stuck_tids(&mut tr, &w, 2000, vec![task(7, recv(3), 2)]),
            [7]
        );
        // Woken and back in the very same call: it made progress, so it is not stuck.
        assert!(stuck_tids(&mut tr, &w, 3000, vec![task(7, recv(3), 3)]).is_empty());
        assert!(stuck_tids(&mut tr, &w, 3999, vec![task(7, recv(3), 3)]).is_empty());
        assert_eq!(
            stuck_tids(&mut tr, &w, 4000, vec![task(7, recv(3), 3)]),
            [7]
        );
        // A nonvoluntary switch counts as well.
        let mut preempted = task(7, recv(3), 3);
        preempted.nonvoluntary_ctxt_switches = Some(2);
        assert!(stuck_tids(&mut tr, &w, 5000, vec![preempted]).is_empty());
    }

    #[test]
    fn changed_args_or_call_reset() {
        let (w, mut tr) = (World::new(), StuckTracker::new());
        stuck_tids(&mut tr, &w, 0, vec![task(7, recv(3), 2)]);
        let other_buf = call(libc::SYS_recvfrom, [3, 0x7f00_0000_2000, 0x200, 0, 0, 0]);
        assert!(stuck_tids(&mut tr, &w, 2000, vec![task(7, other_buf.clone(), 2)]).is_empty());
        assert_eq!(
            stuck_tids(&mut tr, &w, 3000, vec![task(7, other_buf, 2)]),
            [7]
        );
        let send = call(libc::SYS_sendto, [3, 0x7f00_0000_2000, 0x200, 0, 0, 0]);
        assert!(stuck_tids(&mut tr, &w, 4000, vec![task(7, send, 2)]).is_empty());
    }

    #[test]
    fn running_or_not_in_a_call_resets_and_is_never_stuck() {
        let (w, mut tr) = (World::new(), StuckTracker::new());
        stuck_tids(&mut tr, &w, 0, vec![task(7, recv(3), 2)]);
        for between in [SyscallState::Running, SyscallState::NotInSyscall] {
            let t = task(7, Some(between), 2);
            assert!(stuck_tids(&mut tr, &w, 5000, vec![t.clone()]).is_empty());
            assert!(stuck_tids(&mut tr, &w, 9000, vec![t]).is_empty());
            assert!(stuck_tids(&mut tr, &w, 9500, vec![task(7, recv(3), 2)]).is_empty());
        }
    }

    #[test]
    fn idle_calls_are_never_stuck() {
        let (w, mut tr) = (World::new(), StuckTracker::new());
        let mut idle = vec![
            task(
                1,
                call(libc::SYS_accept4, [3, 0x7f00, 0x7f08, 0x80000, 0, 0]),
                1,
            ),
            task(2, call(libc::SYS_accept, [4, 0, 0, 0, 0, 0]), 1),
            task(
                3,
                call(libc::SYS_futex, [3, 0x189, 0, 0, 0, 0xffff_ffff]),
                1,
            ),
            task(4, call(libc::SYS_epoll_pwait, [3, 0x7f00, 64, 0, 0, 8]), 1),
            task(
                5,
                call(libc::SYS_clock_nanosleep, [1, 0, 0x7f00, 0, 0, 0]),
                1,
            ),
        ];
        #[cfg(target_arch = "x86_64")]
        idle.push(task(
            6,
            call(libc::SYS_epoll_wait, [4, 0x7f00, 64, 0, 0, 0]),
            1,
        ));
        stuck_tids(&mut tr, &w, 0, idle.clone());
        assert!(stuck_tids(&mut tr, &w, 3_600_000, idle).is_empty());
    }

    #[test]
    fn read_on_a_pipe_or_file_is_not_stuck_on_a_socket_it_is() {
        let (w, mut tr) = (World::new(), StuckTracker::new());
        let read = |fd| call(libc::SYS_read, [fd, 0x7f00, 0x2000, 0, 0, 0]);
        let tasks = vec![task(1, read(0), 1), task(2, read(3), 1)];
        stuck_tids(&mut tr, &w, 0, tasks.clone());
        let stuck = tr.observe(T1, &threads(tasks), 5000, STUCK_AFTER, &w.lookup());
        assert_eq!(stuck.count, 1);
        assert_eq!(
            (stuck.workers[0].tid, stuck.workers[0].syscall.as_str()),
            (2, "read")
        );
    }

    #[test]
    fn unknown_call_or_switches_are_never_stuck() {
        let (w, mut tr) = (World::new(), StuckTracker::new());
        let mut no_switches = task(1, recv(3), 1);
        no_switches.voluntary_ctxt_switches = None;
        let tasks = vec![no_switches, task(2, None, 1)];
        stuck_tids(&mut tr, &w, 0, tasks.clone());
        assert!(stuck_tids(&mut tr, &w, 5000, tasks).is_empty());
    }

    #[test]
    fn a_new_target_resets() {
        let (w, mut tr) = (World::new(), StuckTracker::new());
        let t = threads(vec![task(7, recv(3), 2)]);
        tr.observe(T1, &t, 0, STUCK_AFTER, &w.lookup());
        // Same pid, other start time: another process.
        let t2 = TargetId {
            starttime_ticks: 6000,
            ..T1
        };
        assert_eq!(tr.observe(t2, &t, 2000, STUCK_AFTER, &w.lookup()).count, 0);
        let again = tr.observe(t2, &t, 3000, STUCK_AFTER, &w.lookup());
        assert_eq!(again.count, 1);
        assert_eq!(again.workers[0].blocked_for_ms, 1000);
    }

    #[test]
    fn vanished_threads_are_forgotten() {
        let (w, mut tr) = (World::new(), StuckTracker::new());
        stuck_tids(
            &mut tr,
            &w,
            0,
            vec![task(7, recv(3), 2), task(8, recv(4), 2)],
        );
        stuck_tids(&mut tr, &w, 1000, vec![task(8, recv(4), 2)]);
        assert!(!tr.seen.contains_key(&7));
        // Tid 7 reused by a new thread in the same call: it starts from now.
        assert_eq!(
            stuck_tids(
                &mut tr,
                &w,
                2000,
                vec![task(7, recv(3), 2), task(8, recv(4), 2)]
            ),
            [8]
        );
    }

    #[test]
    fn socket_info_is_attached_and_workers_sorted() {
        let (w, mut tr) = (World::new(), StuckTracker::new());
        stuck_tids(&mut tr, &w, 0, vec![task(9, recv(4), 1)]);
        let tasks = vec![
            task(9, recv(4), 1),
            task(5, recv(3), 1),
            task(2, recv(3), 1),
        ];
        stuck_tids(&mut tr, &w, 500, tasks.clone());
        let stuck = tr.observe(T1, &threads(tasks), 2000, STUCK_AFTER, &w.lookup());
        let worker = |tid: i32, fd, blocked_for_ms, socket_inode, socket| StuckWorker {
            tid,
            name: format!("worker-{tid}"),
            syscall: "recvfrom".into(),
            fd,
            blocked_for_ms,
            socket_inode,
            socket,
        };
        assert_eq!(
            stuck,
            Stuck {
                count: 3,
                workers: vec![
                    worker(9, 4, 2000, 444, Some(tcp_444())),
                    worker(2, 3, 1500, 333, None),
                    worker(5, 3, 1500, 333, None),
                ],
                stuck_after_ms: STUCK_AFTER,
            }
        );
    }

    #[test]
    fn poll_on_a_socket_is_stuck_through_its_pollfd_array() {
        let (w, mut tr) = (World::new(), StuckTracker::new());
        let ppoll = call(libc::SYS_ppoll, [0x7f00, 2, 0, 0, 8, 0]);
        let polling = |fds: Option<Vec<i32>>| Task {
            poll_fds: fds,
            ..task(7, ppoll.clone(), 1)
        };
        stuck_tids(&mut tr, &w, 0, vec![polling(Some(vec![0, 4]))]);
        let stuck = tr.observe(
            T1,
            &threads(vec![polling(Some(vec![0, 4]))]),
            2000,
            STUCK_AFTER,
            &w.lookup(),
        );
        let first = &stuck.workers[0];
        assert_eq!((first.syscall.as_str(), first.fd), ("ppoll", 4));
        assert_eq!(first.socket, Some(tcp_444()));
        // Other fds in the same array: a change.
        assert!(stuck_tids(&mut tr, &w, 3000, vec![polling(Some(vec![3]))]).is_empty());
        // Memory that could not be read, or no socket among the fds: not stuck.
        for fds in [None, Some(vec![0, 1])] {
            stuck_tids(&mut tr, &w, 0, vec![polling(fds.clone())]);
            assert!(stuck_tids(&mut tr, &w, 9000, vec![polling(fds)]).is_empty());
        }
    }

    // --- read_threads on fixture trees ---

    fn write_task(root: &Path, tid: i32, comm: &str, state: char, syscall: Option<&str>) {
        let dir = root.join("task").join(tid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let stat = format!(
            "{tid} ({comm}) {state} 1 {tid} {tid} 0 -1 4194368 10 0 0 0 1 2 0 0 20 0 4 0 5000 \
             1000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
        );
        std::fs::write(dir.join("stat"), stat).unwrap();
        let status = format!(
            "Name:\t{comm}\nState:\t{state}\nvoluntary_ctxt_switches:\t{}\n\
             nonvoluntary_ctxt_switches:\t3\n",
            tid * 10
        );
        std::fs::write(dir.join("status"), status).unwrap();
        if let Some(text) = syscall {
            std::fs::write(dir.join("syscall"), text).unwrap();
        }
    }

    const RECVFROM: &str = include_str!("../../tests/fixtures/task/syscall_recvfrom_kernel_6_18");
    const FUTEX: &str = include_str!("../../tests/fixtures/task/syscall_futex_kernel_6_18");
    const RUNNING: &str = include_str!("../../tests/fixtures/task/syscall_running_kernel_6_18");

    fn fixture() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        write_task(tmp.path(), 102, "main", 'R', Some(RUNNING));
        write_task(tmp.path(), 100, "recv-worker-0", 'S', Some(RECVFROM));
        write_task(tmp.path(), 101, "pool", 'S', Some(FUTEX));
        write_task(tmp.path(), 103, "stopped", 't', Some(FUTEX));
        // Listed, but gone before its files were read.
        std::fs::create_dir(tmp.path().join("task/104")).unwrap();
        std::fs::write(tmp.path().join("task/not-a-tid"), "").unwrap();
        tmp
    }

    #[test]
    fn reads_a_fixture_task_tree() {
        let tmp = fixture();
        let scan = read_threads(tmp.path()).unwrap();
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
        let tmp = fixture();
        let syscall = tmp.path().join("task/101/syscall");
        std::fs::remove_file(&syscall).unwrap();
        std::os::unix::fs::symlink(denied, &syscall).unwrap();
        let scan = read_threads(tmp.path()).unwrap();
        assert_all_calls_unknown(&scan);
        let err = scan.syscall_error.expect("the error is kept");
        assert_eq!(err.kind(), UnknownKind::PermissionDenied);
        assert!(err.to_string().contains("CAP_SYS_PTRACE"), "{err}");
        assert_eq!(err.path(), syscall);
    }

    #[test]
    fn other_syscall_errors_are_carried_not_zero() {
        let tmp = fixture();
        let syscall = tmp.path().join("task/102/syscall");
        std::fs::remove_file(&syscall).unwrap();
        std::fs::create_dir(&syscall).unwrap(); // EISDIR
        let scan = read_threads(tmp.path()).unwrap();
        assert_all_calls_unknown(&scan);
        assert_eq!(scan.syscall_error.map(|e| e.kind()), Some(UnknownKind::Io));

        // No `syscall` file while the thread is there: a kernel without it, not a vanish.
        let tmp = fixture();
        std::fs::remove_file(tmp.path().join("task/100/syscall")).unwrap();
        let scan = read_threads(tmp.path()).unwrap();
        assert_all_calls_unknown(&scan);
        assert_eq!(
            scan.syscall_error.map(|e| e.kind()),
            Some(UnknownKind::Missing)
        );

        let tmp = fixture();
        std::fs::write(tmp.path().join("task/103/syscall"), "45 0xb\n").unwrap();
        let scan = read_threads(tmp.path()).unwrap();
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
