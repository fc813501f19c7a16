//! The stuck-worker rule (ARCHITECTURE.md, "Stuck (detached) workers"). Pure: no I/O, no clock.
//!
//! A thread is stuck when it has sat in the same blocking socket call (read/recv*/write/
//! send*/connect on a socket fd, or poll/ppoll with a socket among its fds), with the same
//! arguments and no context switch (voluntary + nonvoluntary, from `status`), for at least
//! `stuck_after`. Anything else seen in between (another call, other arguments, a switch,
//! running, not in a call) restarts the clock. Idle waits (accept, epoll, futex, sleeps) are
//! never stuck; neither is a thread whose call or switches are unknown.

use std::collections::HashMap;
use std::hash::BuildHasher;

use super::syscall::{self, call_kind, syscall_name, CallKind};
use super::SocketLookup;
use crate::sample::{Stuck, StuckWorker, SyscallState, TargetId, Task, Threads};

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
    pub fn track(
        &mut self,
        target: TargetId,
        threads: &Threads,
        now_mono_ms: u64,
        stuck_after_ms: u64,
        sockets: &SocketLookup<'_, impl BuildHasher>,
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
fn socket_wait(task: &Task, sockets: &SocketLookup<'_, impl BuildHasher>) -> Option<StuckWorker> {
    let Some(SyscallState::In { nr, args }) = &task.syscall else {
        return None;
    };
    let inode_of = |fd: i32| {
        let inode = match sockets.links {
            Some(pid_dir) => crate::collect::fd::socket_inode(pid_dir, fd),
            None => sockets.fd_inodes.get(&fd).copied(),
        };
        inode.map(|inode| (fd, inode))
    };
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
        socket: sockets
            .tcp_by_inode
            .binary_search_by_key(&socket_inode, |s| s.inode)
            .ok()
            .and_then(|i| sockets.tcp_by_inode.get(i))
            .cloned(),
    })
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::sample::{TcpSocket, TcpState};

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
        tcp_by_inode: Vec<TcpSocket>,
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
                tcp_by_inode: vec![tcp_444()],
            }
        }

        fn lookup(&self) -> SocketLookup<'_> {
            SocketLookup {
                fd_inodes: &self.fd_inodes,
                links: None,
                tcp_by_inode: &self.tcp_by_inode,
            }
        }
    }

    /// Observe `tasks` at `now` and return the stuck tids.
    fn stuck_tids(tr: &mut StuckTracker, w: &World, now: u64, tasks: Vec<Task>) -> Vec<i32> {
        let stuck = tr.track(T1, &threads(tasks), now, STUCK_AFTER, &w.lookup());
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
        let stuck = tr.track(
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
        let stuck = tr.track(T1, &threads(tasks), 5000, STUCK_AFTER, &w.lookup());
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
        tr.track(T1, &t, 0, STUCK_AFTER, &w.lookup());
        // Same pid, other start time: another process.
        let t2 = TargetId {
            starttime_ticks: 6000,
            ..T1
        };
        assert_eq!(tr.track(t2, &t, 2000, STUCK_AFTER, &w.lookup()).count, 0);
        let again = tr.track(t2, &t, 3000, STUCK_AFTER, &w.lookup());
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
        let stuck = tr.track(T1, &threads(tasks), 2000, STUCK_AFTER, &w.lookup());
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
        let stuck = tr.track(
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
}
