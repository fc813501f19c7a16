//! The diagnostics bundle: `DIR/<target>-<UTC time>/` with what a post-mortem wants and a
//! restart destroys: `verdict.json`, `samples.csv`, `fds.txt`, `sockets.txt`,
//! `threads.txt`, `stalled.txt` (stalled sockets and CLOSE_WAIT ages), copies of `status`, `limits`, `smaps_rollup` and the cgroup's memory
//! files, and a `README.txt` that says what to look at first.
//!
//! Data, then effects: [`capture`] reads the target's /proc state at once (through
//! `collect`: the fd links, the TCP table of its namespace, each thread's wchan, the raw
//! files) into plain data; [`render_files`] and [`readme`] render it, purely ([`render`]);
//! [`write::write_bundle`] caps, writes and renames the files. The tick's own
//! [`Sample`] supplies the threads with their calls and the stuck workers with how long they
//! have been blocked, which one look could not know.

pub mod render;
#[cfg(test)]
mod tests;
pub mod write;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::collect::bundle::{self as raw, FdLink};
use crate::collect::fd::FdKind;
use crate::collect::net_tcp::{self, NetTcp};
use crate::config::actions::BundleConfig;
use crate::judge::{Judged, Series};
use crate::sample::{PeerCount, Sample, StuckWorker, TcpSocket, TcpState, TcpTable};

pub use write::{BundleFile, Written};

/// One row of `samples.csv`: every series' value at one tick.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    pub unix_ms: u64,
    /// In the order of [`render::CSV_SERIES`].
    pub values: [Option<f64>; Series::ALL.len()],
}

/// What a bundle is made from, besides the target's live /proc state.
pub struct BundleInput<'a> {
    pub name: &'a str,
    /// Why it is written (`the verdict flipped to unhealthy`, `on demand`).
    pub reason: &'a str,
    pub sample: &'a Sample,
    pub judged: Option<&'a Judged>,
    /// The window's samples, oldest first.
    pub history: &'a [HistoryRow],
}

/// Raw copies kept per file at most (status and limits are a few KiB; smaps_rollup too).
const COPY_MAX: u64 = 1024 * 1024;

/// What one look at the target's /proc state found: plain data, read by [`capture`].
#[derive(Debug, Clone, Default)]
pub struct Captured {
    /// The fd links, as `fds.txt` lists them.
    pub links: Vec<FdLink>,
    /// The target's rows of the TCP tables of its namespace.
    pub table: NetTcp,
    /// Each thread's wchan, by tid.
    pub wchans: HashMap<i32, String>,
    /// Raw copies: `status`, `limits`, `smaps_rollup`, the cgroup's memory files.
    pub copies: Vec<BundleFile>,
    /// What could not be read, for the README.
    pub notes: Vec<String>,
}

/// The bundle's files (README apart, since it lists what the cap cut) and what the README
/// says of them.
#[derive(Debug, Clone)]
pub struct Gathered {
    pub files: Vec<BundleFile>,
    pub readme: ReadmeFacts,
}

/// What `README.txt` says besides the target and the verdict: when it was written, what to
/// look at first, and what could not be read.
#[derive(Debug, Clone, Default)]
pub struct ReadmeFacts {
    pub written_unix_ms: u64,
    pub close_wait: Vec<PeerCount>,
    pub close_wait_total: u64,
    pub stuck: Vec<StuckWorker>,
    pub fds: usize,
    pub memory_failing: bool,
    /// What could not be read.
    pub notes: Vec<String>,
}

/// Read the target's state now and render every file.
pub fn gather(proc_root: &Path, cgroup_root: &Path, input: &BundleInput<'_>) -> Gathered {
    let now = crate::clock::unix_ms();
    let captured = capture(proc_root, cgroup_root, input.sample);
    render_files(input, captured, now)
}

/// Read what the bundle shows of the target's live state; what fails is a note.
pub fn capture(proc_root: &Path, cgroup_root: &Path, sample: &Sample) -> Captured {
    let pid = sample.target.pid;
    let pid_dir = proc_root.join(pid.to_string());
    let mut notes = Vec::new();
    // The listings first: they change fastest.
    let links = raw::fd_links(&pid_dir).unwrap_or_else(|e| {
        notes.push(format!("fds.txt: the fd links could not be read: {e}"));
        Vec::new()
    });
    let inodes: HashSet<u64> = render::socket_fds(&links).keys().copied().collect();
    let table = net_tcp::read_target_sockets(&pid_dir, &inodes).unwrap_or_else(|e| {
        notes.push(format!("sockets.txt: the TCP table could not be read: {e}"));
        NetTcp::default()
    });
    let wchans: HashMap<i32, String> = sample
        .threads
        .as_ref()
        .map(|t| {
            t.tasks
                .iter()
                .filter_map(|task| raw::wchan(&pid_dir, task.tid).map(|w| (task.tid, w)))
                .collect()
        })
        .unwrap_or_default();
    let mut paths: Vec<(String, PathBuf)> = ["status", "limits", "smaps_rollup"]
        .iter()
        .map(|f| (f.to_string(), pid_dir.join(f)))
        .collect();
    if let Some(cg) = &sample.cgroup_memory {
        paths.extend(raw::cgroup_memory_files(proc_root, cgroup_root, pid, cg));
    } else {
        notes.push("memory.*: the target's cgroup memory could not be read this tick".into());
    }
    let copies = copy_files(paths, &mut notes);
    Captured {
        links,
        table,
        wchans,
        copies,
        notes,
    }
}

/// Copies of `paths` (at most [`COPY_MAX`] each); what fails is a note.
fn copy_files(paths: Vec<(String, PathBuf)>, notes: &mut Vec<String>) -> Vec<BundleFile> {
    let mut copied = Vec::new();
    for (name, path) in paths {
        match raw::copy(&path, COPY_MAX) {
            Ok((bytes, _)) => copied.push(BundleFile {
                name,
                lines: String::from_utf8_lossy(&bytes)
                    .lines()
                    .map(String::from)
                    .collect(),
            }),
            Err(e) => notes.push(format!("{name}: not copied: {e}")),
        }
    }
    copied
}

/// Render every file but the README from what was captured (pure).
pub fn render_files(input: &BundleInput<'_>, c: Captured, now: u64) -> Gathered {
    let sample = input.sample;
    let pid = sample.target.pid;
    let fds_of = render::socket_fds(&c.links);
    let fd_inodes: HashMap<i32, u64> = c
        .links
        .iter()
        .filter_map(|l| match l.kind {
            FdKind::Socket(i) => Some((l.fd, i)),
            _ => None,
        })
        .collect();
    let tcp_by_inode: HashMap<u64, &TcpSocket> =
        c.table.sockets.iter().map(|s| (s.inode, s)).collect();
    let file = |name: &str, lines: Vec<String>| BundleFile {
        name: name.into(),
        lines,
    };
    let mut files = vec![
        file(
            "verdict.json",
            render::verdict_json(input.name, input.reason, now, sample, input.judged),
        ),
        file(
            "threads.txt",
            render::threads(sample, &c.wchans, &fd_inodes, &tcp_by_inode),
        ),
    ];
    files.extend(c.copies);
    files.push(file("samples.csv", render::samples_csv(input.history)));
    files.push(file("sockets.txt", render::sockets(pid, &c.table, &fds_of)));
    files.push(file("fds.txt", render::fds(pid, &c.links)));
    files.push(file("stalled.txt", crate::report::stalled(sample)));
    let summary = net_tcp::summarize(&c.table, TcpTable::ProcNet, fds_of.len() as u64, 3);
    let readme = ReadmeFacts {
        written_unix_ms: now,
        close_wait_total: summary.states.get(TcpState::CloseWait),
        close_wait: summary.top_close_wait_peers,
        stuck: sample
            .stuck
            .as_ref()
            .map(|s| s.workers.clone())
            .unwrap_or_default(),
        fds: c.links.len(),
        memory_failing: memory_failing(input.judged),
        notes: c.notes,
    };
    Gathered { files, readme }
}

/// A memory rule is failing: the README points at the memory files.
fn memory_failing(judged: Option<&Judged>) -> bool {
    judged.is_some_and(|j| {
        j.rules.iter().any(|r| {
            r.failing
                && matches!(
                    r.series,
                    Series::Rss | Series::Anon | Series::Heap | Series::CgroupMemory
                )
        })
    })
}

/// `README.txt`, once the cap's cuts (`truncated`) are known (pure).
pub fn readme(input: &BundleInput<'_>, facts: &ReadmeFacts, truncated: &[String]) -> Vec<String> {
    let mut notes = facts.notes.clone();
    notes.extend(truncated.iter().map(|t| format!("truncated {t}")));
    render::readme(
        input.name,
        input.reason,
        input.sample,
        input.judged,
        facts,
        &notes,
    )
}

/// Gather and write one bundle under `cfg.dir`; the path of the whole bundle.
pub fn make(
    proc_root: &Path,
    cgroup_root: &Path,
    cfg: &BundleConfig,
    input: &BundleInput<'_>,
) -> Result<Written, String> {
    let g = gather(proc_root, cgroup_root, input);
    let name = write::bundle_name(input.name, crate::clock::unix_ms());
    write::write_bundle(
        &cfg.dir,
        input.name,
        &name,
        &g.files,
        |truncated| readme(input, &g.readme, truncated),
        cfg.max_bytes,
        cfg.keep,
    )
}
