//! The target's TCP sockets: from sock_diag when leakwatch shares the target's network
//! namespace (`PROC/self/ns/net` and `PROC/PID/ns/net` are the same inode), from the text
//! tables `PROC/PID/net/tcp{,6}` otherwise, or when netlink fails. Both give the same rows
//! (`tests/live_sock_diag.rs` compares them on a real child); [`TcpTable`] says which.
//!
//! Cost follows the target's sockets, not the namespace's. The first dump for a target is
//! unfiltered and learns which cgroup v2 ids its sockets are charged to (a socket carries
//! the cgroup of the task that created it; an accepted one its listener's). Later dumps ask
//! the kernel for those cgroups only ([`sock_diag`] bytecode), so 100,000 sockets of other
//! services cost a cheap kernel-side check each, not a message to copy and parse; and only
//! for the families the target's sockets had (each dump walks the namespace's whole hash
//! table, 262,144 buckets on a 24 GiB host, even when it returns nothing). A socket
//! fd that such a dump does not return is checked once through the `system.sockprotoname`
//! xattr of its fd link (`UNIX-STREAM`, `UDP`, ... are not in a TCP table; `TCP` or `TCPv6`
//! is): only a TCP socket the filter missed (one created in another cgroup, a socket handed
//! over) costs a full dump again, which relearns the cgroups. A TCP socket in no table (not
//! yet bound or connected) is found by that full dump to be in none, and remembered as such
//! while the fd stays open.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::net_tcp::{self, NetTcp};
use super::sock_diag::{
    DiagError, DiagInfo, DiagSocket, DumpOf, SockDiag, SockId, CONN_STATES, EXT_INFO, FD_STATES,
    MAX_CGROUP_FILTER,
};
use crate::error::ReadError;
use crate::sample::{TargetId, TcpState, TcpTable};
use rustc_hash::FxHashSet as HashSet;

/// Reads TCP sockets for every target of one collector; keeps the netlink socket and what
/// was learned per target between ticks.
#[derive(Debug, Default)]
pub struct TcpReader {
    diag: Option<SockDiag>,
    learned: HashMap<TargetId, Learned>,
    full_dumps: u64,
    dumps: u64,
    /// The lookups cap when not [`MAX_LOOKUPS`].
    max_lookups: Option<usize>,
    /// The cgroup id of each row of the last [`TcpReader::read`] through sock_diag.
    last_cgroups: Vec<Option<u64>>,
}

/// What the last full dump taught about one target.
#[derive(Debug, Default)]
struct Learned {
    /// The cgroup ids its TCP sockets are charged to; `None` when a filter cannot be used
    /// (the kernel gave no ids, or there are too many).
    cgroups: Option<Vec<u64>>,
    /// Socket inodes in no TCP table: not TCP, or TCP but not hashed.
    unlisted: HashSet<u64>,
    /// The families (AF_INET, AF_INET6) its TCP sockets had: each dump walks the whole
    /// hash table of the namespace, so a family without the target's sockets is skipped (a
    /// new socket of that family is missed by the filtered dumps, found by its protocol
    /// name, `TCPv6`, and brings a full dump).
    families: Vec<u8>,
}

impl TcpReader {
    /// The rows of `sockets` (the target's (fd, inode) pairs from the fd scan; `inodes` the
    /// same inodes as a set).
    pub fn read(
        &mut self,
        proc_root: &Path,
        pid_dir: &Path,
        target: TargetId,
        sockets: &[(i32, u64)],
        inodes: &HashSet<u64>,
    ) -> Result<(NetTcp, TcpTable), ReadError> {
        if same_netns(proc_root, pid_dir) {
            match self.read_diag(pid_dir, target, sockets, inodes) {
                Ok(table) => return Ok((table, TcpTable::SockDiag)),
                Err(_) => {
                    // Netlink refused (a seccomp filter, no tcp_diag module): the text tables.
                    self.diag = None;
                    self.learned.remove(&target);
                }
            }
        }
        let table = net_tcp::read_sockets_where(pid_dir, |i| inodes.contains(&i))?;
        Ok((table, TcpTable::ProcNet))
    }

    /// How many rows of the last [`TcpReader::read`] (through sock_diag) are charged to a
    /// cgroup other than `cgroup_id`, or to none the kernel named. The kernel says it per
    /// row, in the same dump: no race with sockets opened or closed meanwhile.
    pub fn charged_elsewhere(&self, cgroup_id: u64) -> usize {
        self.last_cgroups
            .iter()
            .filter(|id| **id != Some(cgroup_id))
            .count()
    }

    /// Every TCP socket charged to the cgroup `cgroup_id` that some process holds (a row with
    /// an inode: not an orphan after `close`, not a connection still in an accept queue),
    /// from one dump per family filtered by the kernel, with no fd walk. The target's own
    /// table when it is alone in that cgroup ([`super::cgroup::sole_member`]). `Err` says
    /// why it cannot be read so (another network namespace, netlink refused).
    pub fn read_cgroup(
        &mut self,
        proc_root: &Path,
        pid_dir: &Path,
        cgroup_id: u64,
    ) -> Result<NetTcp, String> {
        if !same_netns(proc_root, pid_dir) {
            return Err(
                "the target is in another network namespace: only its fds lead to \
                 its sockets (in /proc/PID/net/tcp)"
                    .to_string(),
            );
        }
        let max = self.max_lookups.unwrap_or(MAX_LOOKUPS);
        let diag = match self.diag {
            Some(ref mut diag) => diag,
            None => self
                .diag
                .insert(SockDiag::open().map_err(|e| format!("netlink sock_diag: {e}"))?),
        };
        let table = dump(diag, &FAMILIES, &[cgroup_id], |_| true, max).map_err(|e| {
            self.diag = None;
            format!("netlink sock_diag, filtered by cgroup: {e}")
        })?;
        self.dumps += FAMILIES.len() as u64;
        Ok(table.rows)
    }

    /// Unfiltered dumps so far (the first for each target, and each relearning).
    pub fn full_dumps(&self) -> u64 {
        self.full_dumps
    }

    /// Dumps so far, one per family dumped (one request, without `tcp_info`; the sockets
    /// with data queued are then looked up one by one with it).
    pub fn dumps(&self) -> u64 {
        self.dumps
    }

    /// A reader that looks up at most `max` sockets a tick, past which it dumps with
    /// `tcp_info` instead (0: always that dump, the path a busy target takes).
    pub fn with_max_lookups(max: usize) -> TcpReader {
        TcpReader {
            max_lookups: Some(max),
            ..TcpReader::default()
        }
    }

    /// Forget a target that is gone.
    pub fn forget(&mut self, target: &TargetId) {
        self.learned.remove(target);
    }

    fn read_diag(
        &mut self,
        pid_dir: &Path,
        target: TargetId,
        sockets: &[(i32, u64)],
        inodes: &HashSet<u64>,
    ) -> Result<NetTcp, DiagError> {
        let max = self.max_lookups.unwrap_or(MAX_LOOKUPS);
        let diag = match self.diag {
            Some(ref mut diag) => diag,
            None => self.diag.insert(SockDiag::open()?),
        };
        if let Some(learned) = self.learned.get_mut(&target) {
            if let Some(cgroups) = &learned.cgroups {
                learned.unlisted.retain(|i| inodes.contains(i));
                // The learned families and cgroups only: no dump at all when the target had
                // no TCP socket, until one appears.
                let wanted = |i| inodes.contains(&i);
                let table = dump(diag, &learned.families, cgroups, wanted, max)?;
                self.dumps += learned.families.len() as u64;
                if all_accounted(pid_dir, sockets, &table, &mut learned.unlisted) {
                    self.last_cgroups = table.cgroup_ids;
                    return Ok(table.rows);
                }
            }
        }
        let table = dump(diag, &FAMILIES, &[], |i| inodes.contains(&i), max)?;
        self.full_dumps += 1;
        self.dumps += FAMILIES.len() as u64;
        self.learned.insert(target, learn(&table, inodes));
        self.last_cgroups = table.cgroup_ids;
        Ok(table.rows)
    }
}

const FAMILIES: [u8; 2] = [libc::AF_INET as u8, libc::AF_INET6 as u8];

/// A dump of `families`, the rows whose inode is nonzero and `wanted` (the join with the
/// target's fds); then `tcp_info` and skmeminfo of the rows that can stall (see
/// [`add_info`]).
fn dump(
    diag: &mut SockDiag,
    families: &[u8],
    cgroups: &[u64],
    wanted: impl Fn(u64) -> bool,
    max_lookups: usize,
) -> Result<Table, DiagError> {
    let mut rows = NetTcp::default();
    let mut ids = Vec::new();
    let mut seen = HashSet::default();
    let mut found = Vec::new();
    let mut queued = Vec::new();
    for &family in families {
        let before = ids.len();
        let mut row = |d: DiagSocket| {
            let inode = d.socket.inode;
            if inode != 0 && wanted(inode) && seen.insert(inode) {
                if can_stall(&d) {
                    queued.push(d.id);
                }
                rows.sockets.push(d.socket);
                ids.push(d.cgroup_id);
            }
        };
        let what = DumpOf {
            family,
            states: FD_STATES,
            ext: 0,
        };
        diag.dump(what, cgroups, &mut row)?;
        if ids.len() > before {
            found.push(family);
        }
    }
    add_info(diag, &queued, max_lookups, (&found, cgroups), &mut rows)?;
    Ok(Table {
        rows,
        cgroup_ids: ids,
        families: found,
    })
}

/// A socket that can stall: one of the established hash table (ESTABLISHED, CLOSE_WAIT,
/// FIN_WAIT1, ...: not a listener) with data in its Send-Q. Only these need `tcp_info`:
/// the tracker resets a socket's clock on an empty Send-Q.
fn can_stall(d: &DiagSocket) -> bool {
    d.socket.send_queue_bytes > 0 && d.socket.state != TcpState::Listen
}

/// `tcp_info` and skmeminfo of the `queued` sockets into `rows.info`: one exact lookup
/// each, up to `max` ([`MAX_LOOKUPS`]); past that, one dump of the established hash table with the
/// attributes per family (the cost stays bounded), keeping those that can stall.
fn add_info(
    diag: &mut SockDiag,
    queued: &[SockId],
    max: usize,
    (families, cgroups): (&[u8], &[u64]),
    rows: &mut NetTcp,
) -> Result<(), DiagError> {
    if queued.is_empty() {
        return Ok(());
    }
    if queued.len() <= max {
        let mut row = |d: DiagSocket| {
            if d.info != DiagInfo::default() {
                rows.info.insert(d.socket.inode, d.info);
            }
        };
        return diag.lookup(queued, CONN_STATES, EXT_INFO, &mut row);
    }
    let mine: HashSet<u64> = rows.sockets.iter().map(|s| s.inode).collect();
    let mut row = |d: DiagSocket| {
        if can_stall(&d) && mine.contains(&d.socket.inode) && d.info != DiagInfo::default() {
            rows.info.insert(d.socket.inode, d.info);
        }
    };
    for &family in families {
        let what = DumpOf {
            family,
            states: CONN_STATES,
            ext: EXT_INFO,
        };
        diag.dump(what, cgroups, &mut row)?;
    }
    Ok(())
}

/// More sockets with data queued than this in one tick and one dump with `tcp_info` costs
/// less than a lookup each.
pub const MAX_LOOKUPS: usize = 1024;

/// What one dump returned of the target's sockets.
struct Table {
    /// The target's rows.
    rows: NetTcp,
    /// The cgroup v2 id of each row, in the same order (`None`: the kernel gave none).
    cgroup_ids: Vec<Option<u64>>,
    /// The families that had rows.
    families: Vec<u8>,
}

/// Every socket fd the filtered dump did not return is known to be in no TCP table, or
/// turns out (by its protocol name) not to be TCP. `false` when one may be a TCP socket the
/// filter missed.
fn all_accounted(
    pid_dir: &Path,
    sockets: &[(i32, u64)],
    table: &Table,
    unlisted: &mut HashSet<u64>,
) -> bool {
    let found: HashSet<u64> = table.rows.sockets.iter().map(|s| s.inode).collect();
    for (fd, inode) in sockets {
        if found.contains(inode) || unlisted.contains(inode) {
            continue;
        }
        match protocol_name(pid_dir, *fd) {
            Some(name) if name == b"TCP" || name == b"TCPv6" => return false,
            Some(_) => {
                unlisted.insert(*inode);
            }
            None => {} // closed since the scan: in no table the next tick either
        }
    }
    true
}

/// What a full dump teaches: the cgroups of the rows found, and the sockets not found.
fn learn(table: &Table, inodes: &HashSet<u64>) -> Learned {
    let found: HashSet<u64> = table.rows.sockets.iter().map(|s| s.inode).collect();
    let ids: Option<Vec<u64>> = table.cgroup_ids.iter().copied().collect();
    let cgroups = ids
        .map(|mut ids| {
            ids.sort_unstable();
            ids.dedup();
            ids
        })
        .filter(|ids| ids.len() <= MAX_CGROUP_FILTER);
    Learned {
        cgroups,
        unlisted: inodes.difference(&found).copied().collect(),
        families: table.families.clone(),
    }
}

/// `system.sockprotoname` of `PID_DIR/fd/FD` (`TCP`, `TCPv6`, `UNIX-STREAM`, ...), without
/// its NUL; `None` when the fd is gone or unreadable.
fn protocol_name(pid_dir: &Path, fd: i32) -> Option<Vec<u8>> {
    let path = pid_dir.join("fd").join(fd.to_string());
    let mut buf = [0u8; 64];
    let n = rustix::fs::getxattr(&path, c"system.sockprotoname", &mut buf[..]).ok()?;
    let name = buf.get(..n)?;
    Some(name.strip_suffix(b"\0").unwrap_or(name).to_vec())
}

/// Whether the target is in leakwatch's own network namespace (so a netlink dump sees its
/// sockets). `false` when either cannot be read, or on a fixture tree.
fn same_netns(proc_root: &Path, pid_dir: &Path) -> bool {
    let ns = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    match (
        ns(&proc_root.join("self/ns/net")),
        ns(&pid_dir.join("ns/net")),
    ) {
        (Some(own), Some(theirs)) => own == theirs,
        _ => false,
    }
}
