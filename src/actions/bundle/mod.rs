//! The diagnostics bundle: `DIR/<target>-<UTC time>/` with what a post-mortem wants and a
//! restart destroys: `verdict.json`, `samples.csv`, `fds.txt`, `sockets.txt`,
//! `threads.txt`, copies of `status`, `limits`, `smaps_rollup` and the cgroup's memory
//! files, and a `README.txt` that says what to look at first.
//!
//! [`gather`] reads the target's /proc state at once (through `collect`: the fd links, the
//! TCP table of its namespace, each thread's wchan, the raw files) and renders the files
//! ([`render`]); [`write::write_bundle`] caps, writes and renames them. The tick's own
//! [`Sample`] supplies the threads with their calls and the stuck workers with how long they
//! have been blocked, which one look could not know.

pub mod render;
pub mod write;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::collect::bundle as raw;
use crate::collect::net_tcp::{self, NetTcp};
use crate::config::actions::BundleConfig;
use crate::judge::{Judged, Series};
use crate::sample::{Sample, TcpSource, TcpState};

pub use write::{BundleFile, Written};

/// One row of `samples.csv`: every series' value at one tick.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    pub unix_ms: u64,
    /// In the order of [`render::CSV_SERIES`].
    pub values: [Option<f64>; 9],
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

/// Renders `README.txt` from the notes on what the cap cut.
pub type Readme = Box<dyn FnOnce(&[String]) -> Vec<String> + Send>;

/// The bundle's files (README apart, since it lists what the cap cut) and what the README
/// needs.
pub struct Gathered {
    pub files: Vec<BundleFile>,
    readme: Readme,
}

/// Read the target's state now and render every file.
pub fn gather(proc_root: &Path, cgroup_root: &Path, input: &BundleInput<'_>) -> Gathered {
    let now = crate::clock::unix_ms();
    let sample = input.sample;
    let pid = sample.target.pid;
    let pid_dir = proc_root.join(pid.to_string());
    let mut notes = Vec::new();

    // The listings first: they change fastest.
    let links = raw::fd_links(&pid_dir).unwrap_or_else(|e| {
        notes.push(format!("fds.txt: the fd links could not be read: {e}"));
        Vec::new()
    });
    let fds_of = render::socket_fds(&links);
    let inodes: HashSet<u64> = fds_of.keys().copied().collect();
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
    let mut copies = Vec::new();
    for f in ["status", "limits", "smaps_rollup"] {
        copies.push((f.to_string(), pid_dir.join(f)));
    }
    if let Some(cg) = &sample.cgroup_memory {
        copies.extend(raw::cgroup_memory_files(proc_root, cgroup_root, pid, cg));
    } else {
        notes.push("memory.*: the target's cgroup memory could not be read this tick".into());
    }
    let mut copied = Vec::new();
    for (name, path) in copies {
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

    // Render.
    let fd_inodes: HashMap<i32, u64> = links
        .iter()
        .filter_map(|l| match l.kind {
            crate::collect::fd::FdKind::Socket(i) => Some((l.fd, i)),
            _ => None,
        })
        .collect();
    let tcp_by_inode: HashMap<u64, &crate::sample::TcpSocket> =
        table.sockets.iter().map(|s| (s.inode, s)).collect();
    let threads = render::threads(sample, &wchans, &fd_inodes, &tcp_by_inode);
    let sockets = render::sockets(pid, &table, &fds_of);
    let summary = net_tcp::summarize(&table, TcpSource::ProcNet, fds_of.len() as u64, 3);
    let mut files = vec![
        BundleFile {
            name: "verdict.json".into(),
            lines: render::verdict_json(input.name, input.reason, now, sample, input.judged),
        },
        BundleFile {
            name: "threads.txt".into(),
            lines: threads,
        },
    ];
    files.extend(copied);
    files.push(BundleFile {
        name: "samples.csv".into(),
        lines: render::samples_csv(input.history),
    });
    files.push(BundleFile {
        name: "sockets.txt".into(),
        lines: sockets,
    });
    files.push(BundleFile {
        name: "fds.txt".into(),
        lines: render::fds(pid, &links),
    });

    let memory_failing = input.judged.is_some_and(|j| {
        j.rules.iter().any(|r| {
            r.failing
                && matches!(
                    r.series,
                    Series::Rss | Series::Anon | Series::Heap | Series::CgroupMemory
                )
        })
    });
    let stuck = sample
        .stuck
        .as_ref()
        .map(|s| s.workers.clone())
        .unwrap_or_default();
    let close_wait_total = summary.states.get(TcpState::CloseWait);
    let top = summary.top_close_wait_peers.clone();
    let (name, reason, sample) = (
        input.name.to_string(),
        input.reason.to_string(),
        sample.clone(),
    );
    let judged = input.judged.cloned();
    let fds = links.len();
    let readme = Box::new(move |truncated: &[String]| {
        let mut all = notes;
        all.extend(truncated.iter().map(|t| format!("truncated {t}")));
        let p = render::Pointers {
            close_wait: &top,
            close_wait_total,
            stuck: &stuck,
            fds,
            memory_failing,
        };
        render::readme(&name, &reason, now, &sample, judged.as_ref(), &p, &all)
    });
    Gathered { files, readme }
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
        g.readme,
        cfg.max_bytes,
        cfg.keep,
    )
}
