//! Whose sockets: the choice, every tick, of where the target's TCP sockets come from.
//!
//! Two ways ([`SocketsFrom`]). Alone in its cgroup (`cgroup.procs` lists its pid only,
//! [`cgroup::sole_member`]) and with the kernel's fd count in `st_size`, the tick reads the
//! sock_diag dump the kernel filters by that cgroup ([`TcpReader::read_cgroup`]) and no fd
//! link: its cost follows the sockets, not the fds. Otherwise, and on the walks for the fd
//! breakdown by type (every `fd_types_every`, only when the count changed), every link is
//! read and joined with the table; such a walk also compares the join with the cgroup's
//! table, and any difference (a socket charged elsewhere, one held by another process) keeps
//! the target on the join until a later walk agrees. [`Tcp::method`] says which way and why;
//! the last breakdown and its age ride in [`Fds`] between walks ([`FdMemo`] keeps them).
//!
//! The reads themselves are the kernel sources' modules (`fd.rs`, `sockets.rs`, `cgroup/`);
//! this file only decides which to make and files what they give into the [`Sample`].
//!
//! [`TcpReader::read_cgroup`]: super::sockets::TcpReader::read_cgroup
//! [`Tcp::method`]: crate::sample::Tcp::method
//! [`Fds`]: crate::sample::Fds

use std::path::Path;
use std::time::{Duration, Instant};

use rustc_hash::FxHashSet;

use super::{
    cgroup, fd, keep, links_unknown, micros, net_tcp, tcp_track, timed, CollectOptions, Collector,
};
use crate::error::Unknown;
use crate::sample::{Sample, SocketsFrom, SocketsMethod, Source, TcpSocket, TcpTable};

/// What a target's last fd walk left for the ticks that do not walk.
#[derive(Debug, Default)]
pub(super) struct FdMemo {
    breakdown: Option<Breakdown>,
    /// Why the cgroup's table is not the target's, from the last comparison.
    mismatch: Option<String>,
    /// Why its breakdowns walk `/proc/PID/fd` instead of going through its pidfd.
    walk_note: Option<String>,
}

/// The fds by type at one walk.
#[derive(Debug)]
struct Breakdown {
    types: crate::sample::FdTypes,
    /// When, CLOCK_MONOTONIC ms.
    at_ms: u64,
    /// The fd count then: no new breakdown while it stays the same.
    in_use: Option<u64>,
    /// Socket fds in no TCP table then (unix, UDP, ...).
    other_sockets: u64,
}

impl Collector {
    /// The fd table, then the TCP rows of its sockets. `None` when the sockets are unknown;
    /// else the (fd, inode) of each socket fd when the fds were walked, and the TCP rows by
    /// inode.
    ///
    /// Two ways to the sockets ([`SocketsFrom`]). When the target is alone in its cgroup
    /// and the kernel counts its fds (`st_size`), the table the kernel filters by that
    /// cgroup *is* the target's: the tick reads the fd count and that table, and walks the
    /// links only for the breakdown by type (every `fd_types_every`, when the count
    /// changed). Each such walk also joins the links with the table the usual way and
    /// compares: sockets charged to the cgroup but held by no fd of the target, or held but
    /// charged elsewhere, end the cgroup way for this target until a later walk agrees.
    /// Otherwise every tick walks the links and joins them with the table.
    pub(super) fn fds_and_sockets(
        &mut self,
        s: &mut Sample,
        pid_dir: &Path,
        opts: &CollectOptions,
    ) -> Option<Sockets> {
        let now = s.taken_at_mono_ms;
        let sole = cgroup::sole_member(&self.proc_root, &self.cgroup_root, s.target.pid);
        let count = fd::count_fds(pid_dir);
        let memo = self.fd_memo.entry(s.target).or_default();
        let every = u64::try_from(opts.fd_types_every.as_millis()).unwrap_or(u64::MAX);
        let due = every == 0
            || memo
                .breakdown
                .as_ref()
                .is_none_or(|b| now.saturating_sub(b.at_ms) >= every && b.in_use != count);
        let cgroup_way = match (&sole, count, &memo.mismatch) {
            (Ok(id), Some(_), None) if !due => Ok(*id),
            (Err(why), _, _) => Err(why.clone()),
            (Ok(_), None, _) => Err(
                "the kernel does not count fds in the directory's size (Linux < 6.2): every \
                 link is read for the count"
                    .to_string(),
            ),
            (Ok(_), Some(_), Some(mismatch)) if !due => Err(mismatch.clone()),
            (Ok(_), Some(_), _) if every == 0 => {
                Err("fd_types_every is 0: every tick reads every fd link".to_string())
            }
            (Ok(_), Some(_), _) if memo.breakdown.is_none() => Err(
                "the first tick reads every fd link, to check that the cgroup's sockets are \
                 the target's"
                    .to_string(),
            ),
            (Ok(_), Some(_), _) => Err(format!(
                "alone in its cgroup; this tick reads every fd link for the breakdown by type \
                 (every {}, when the count changed) and checks the cgroup's sockets against them",
                crate::units::duration_ms(every)
            )),
        };
        if let Ok(id) = cgroup_way {
            match self.sockets_of_cgroup(s, pid_dir, id, count, opts) {
                Ok(sockets) => return Some(sockets),
                Err(why) => {
                    let memo = self.fd_memo.entry(s.target).or_default();
                    memo.mismatch = Some(why.clone());
                    return self.sockets_by_fds(s, pid_dir, opts, Err(why), None);
                }
            }
        }
        // Compared at the walks the cgroup way would have made anyway, not at every walk of
        // a target put back on the join.
        let check = sole.ok().filter(|_| count.is_some() && due);
        self.sockets_by_fds(s, pid_dir, opts, cgroup_way.map(|_| ()), check)
    }

    /// A tick of a target alone in its cgroup: the kernel's fd count, the breakdown by type
    /// from the last walk, and the cgroup's table. `Err` (why) when that table cannot be
    /// read; then the tick walks the fds.
    fn sockets_of_cgroup(
        &mut self,
        s: &mut Sample,
        pid_dir: &Path,
        cgroup_id: u64,
        count: Option<u64>,
        opts: &CollectOptions,
    ) -> Result<Sockets, String> {
        let (proc_root, now) = (&self.proc_root, s.taken_at_mono_ms);
        let started = Instant::now();
        let table = self.tcp.read_cgroup(proc_root, pid_dir, cgroup_id)?;
        s.duration_us.insert(Source::Tcp, micros(started));
        let memo = self.fd_memo.entry(s.target).or_default();
        let Some(b) = memo.breakdown.as_ref() else {
            return Err("no breakdown of the fds yet".to_string());
        };
        let age_ms = now.saturating_sub(b.at_ms);
        s.fds = Some(crate::sample::Fds {
            open: None,
            allocated: count,
            by_type: Some(b.types.clone()),
            by_type_age_ms: age_ms,
            vanished: 0,
        });
        s.duration_us.insert(Source::Fds, 0);
        let other_sockets = b.other_sockets;
        let note = memo
            .walk_note
            .as_ref()
            .map_or(String::new(), |n| format!("; {n}"));
        let mut summary = net_tcp::summarize(&table, TcpTable::SockDiag, 0, opts.top_peers);
        summary.other_sockets = other_sockets;
        summary.method = SocketsMethod {
            from: SocketsFrom::Cgroup,
            why: format!(
                "the target is alone in its cgroup: the sockets charged to it are the \
                 target's (checked against its fds {} ago){note}",
                crate::units::duration_ms(age_ms)
            ),
        };
        s.tcp = Some(summary);
        self.track_tcp(s, &table, TcpTable::SockDiag, opts);
        Ok(Sockets {
            fds: None,
            tcp_by_inode: by_inode(table.sockets),
        })
    }

    /// A tick that walks every fd link and joins the sockets with the TCP table; `method`
    /// says why it is not the cgroup way. With `check` (the target is alone in that cgroup),
    /// the cgroup's table is compared with the join, for the ticks that follow.
    fn sockets_by_fds(
        &mut self,
        s: &mut Sample,
        pid_dir: &Path,
        opts: &CollectOptions,
        method: Result<(), String>,
        check: Option<u64>,
    ) -> Option<Sockets> {
        // The cgroup's sockets before the fds are read, to compare with after.
        let before = check.map(|id| self.cgroup_inodes(pid_dir, id));
        let scan = match check {
            Some(_) => self.scan_leaving_nothing(s, pid_dir),
            None => timed(s, Source::Fds, || fd::scan_fds(pid_dir)),
        };
        let mut socket_fds = Vec::new();
        let mut links_known = false;
        if let Some(scan) = scan {
            if let Some(e) = scan.partial {
                s.unknown.insert(Source::Fds, Unknown::from(e));
            }
            links_known = scan.fds.by_type.is_some();
            socket_fds = scan.sockets;
            s.fds = Some(scan.fds);
        }
        if !links_known {
            let why = links_unknown(s, "sockets");
            s.unknown.insert(Source::TcpStall, why.clone());
            s.unknown.insert(Source::Tcp, why);
            return None;
        }
        let mut tcp_by_inode = Vec::new();
        let (proc_root, target) = (&self.proc_root, s.target);
        let tcp = &mut self.tcp;
        let inodes: FxHashSet<u64> = socket_fds.iter().map(|(_, i)| *i).collect();
        let read = timed(s, Source::Tcp, || {
            tcp.read(proc_root, pid_dir, target, &socket_fds, &inodes)
        });
        if let Some((table, source)) = read {
            let mut summary =
                net_tcp::summarize(&table, source, inodes.len() as u64, opts.top_peers);
            let mismatch = check
                .zip(before)
                .filter(|_| source == TcpTable::SockDiag)
                .map(|(id, before)| match before {
                    Ok(before) => self.compare_cgroup(pid_dir, id, &before, &inodes),
                    Err(why) => Some(why),
                });
            let memo = self.fd_memo.entry(target).or_default();
            if let Some(mismatch) = mismatch {
                memo.mismatch = mismatch;
            }
            if let Some(fds) = &s.fds {
                memo.breakdown = fds.by_type.clone().map(|types| Breakdown {
                    types,
                    at_ms: s.taken_at_mono_ms,
                    in_use: fds.in_use(),
                    other_sockets: summary.other_sockets,
                });
            }
            summary.method = SocketsMethod {
                from: SocketsFrom::FdJoin,
                why: match (method, &memo.mismatch) {
                    (Err(why), _) => why,
                    (Ok(()), Some(m)) => m.clone(),
                    (Ok(()), None) => String::new(),
                },
            };
            s.tcp = Some(summary);
            self.track_tcp(s, &table, source, opts);
            tcp_by_inode = by_inode(table.sockets);
        }
        if let Some(u) = s.unknown.get(&Source::Tcp).filter(|_| s.tcp.is_none()) {
            s.unknown.insert(Source::TcpStall, u.clone());
        }
        Some(Sockets {
            fds: Some(socket_fds),
            tcp_by_inode,
        })
    }

    /// The fd table of a target alone in its cgroup, through its pidfd, which leaves no
    /// dentry per fd in leakwatch's memory; the walk when that is not allowed (the reason
    /// kept for `/status`).
    fn scan_leaving_nothing(&mut self, s: &mut Sample, pid_dir: &Path) -> Option<fd::FdScan> {
        let (proc_root, pid) = (&self.proc_root, s.target.pid);
        let started = Instant::now();
        let by_pidfd = fd::scan_fds_by_pidfd(proc_root, pid_dir, pid);
        let memo = self.fd_memo.entry(s.target).or_default();
        match by_pidfd {
            Ok(scan) => {
                memo.walk_note = None;
                s.duration_us.insert(Source::Fds, micros(started));
                Some(scan)
            }
            Err(e) => {
                memo.walk_note = Some(format!(
                    "its fds are walked in /proc/PID/fd, which keeps ~0.9 KB per fd in \
                     leakwatch's memory while the target lives (pidfd_getfd: {e}; it needs \
                     ptrace-attach rights)"
                ));
                timed(s, Source::Fds, || fd::scan_fds(pid_dir))
            }
        }
    }

    /// The inodes of the sockets charged to the cgroup, or why they cannot be read.
    fn cgroup_inodes(&mut self, pid_dir: &Path, cgroup_id: u64) -> Result<FxHashSet<u64>, String> {
        let table = self.tcp.read_cgroup(&self.proc_root, pid_dir, cgroup_id)?;
        Ok(table.sockets.iter().map(|s| s.inode).collect())
    }

    /// Whether the cgroup's sockets are the target's, by the sockets of this walk: `None`
    /// when they are, else why the cgroup cannot stand for the target. Race-free against a
    /// target that opens and closes sockets meanwhile: a socket counts as held elsewhere
    /// only if it was charged to the cgroup both before the fds were read (`before`) and
    /// after, and no fd of the target held it; as charged elsewhere only if the join's own
    /// dump says so.
    fn compare_cgroup(
        &mut self,
        pid_dir: &Path,
        cgroup_id: u64,
        before: &FxHashSet<u64>,
        socket_inodes: &FxHashSet<u64>,
    ) -> Option<String> {
        let after = match self.cgroup_inodes(pid_dir, cgroup_id) {
            Ok(after) => after,
            Err(why) => return Some(why),
        };
        let held_elsewhere = after
            .iter()
            .filter(|i| before.contains(i) && !socket_inodes.contains(i))
            .count();
        let charged_elsewhere = self.tcp.charged_elsewhere(cgroup_id);
        if held_elsewhere > 0 {
            Some(format!(
                "{held_elsewhere} TCP sockets charged to the target's cgroup are held by no fd \
                 of the target (another process holds them): the fd links decide"
            ))
        } else if charged_elsewhere > 0 {
            Some(format!(
                "{charged_elsewhere} TCP sockets of the target are charged to another cgroup \
                 (created elsewhere, or passed to it): the fd links decide"
            ))
        } else {
            None
        }
    }

    /// Stalled sockets and CLOSE_WAIT ages: two looks at the same sockets, ticks apart.
    fn track_tcp(
        &mut self,
        s: &mut Sample,
        table: &net_tcp::NetTcp,
        source: crate::sample::TcpTable,
        opts: &CollectOptions,
    ) {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let at = tcp_track::TrackAt {
            now_ms: s.taken_at_mono_ms,
            stall_after_ms: ms(opts.stall_after),
            aged_after_ms: ms(opts.stuck_after),
            top_peers: opts.top_peers,
        };
        let tracker = self.tcp_track.entry(s.target).or_default();
        let tracked = tracker.track(s.target, table, source, at);
        s.close_wait_age = Some(tracked.close_wait);
        s.tcp_stalled = keep(s, Source::TcpStall, tracked.stalled);
    }
}

/// The target's sockets, as the fd scan and the TCP tables gave them.
pub(super) struct Sockets {
    /// (fd, inode) of each socket fd; `None` when the fds were not walked this tick.
    pub(super) fds: Option<Vec<(i32, u64)>>,
    /// The TCP rows of those sockets, sorted by inode.
    pub(super) tcp_by_inode: Vec<TcpSocket>,
}

/// The TCP rows sorted by inode, for [`task::SocketLookup`].
fn by_inode(mut rows: Vec<TcpSocket>) -> Vec<TcpSocket> {
    rows.sort_unstable_by_key(|s| s.inode);
    rows
}
