//! The bundle's text files from what was gathered (pure: no I/O, no clock). Each file is a
//! list of lines, so the writer can cut a listing at a line with a note.

use std::collections::HashMap;

use crate::collect::bundle::FdLink;
use crate::collect::fd::FdKind;
use crate::collect::net_tcp::{self, NetTcp};
use crate::collect::task::{call_kind, syscall::fd_arg, syscall_name, CallKind};
use crate::judge::{series, Judged, Rule, Series};
use crate::report::{self, Layout};
use crate::sample::{Sample, StuckWorker, SyscallState, Task, TcpSocket, TcpState, TcpTable};
use crate::units;

use super::{HistoryRow, ReadmeFacts};

/// `fds.txt`: every fd with its link and type.
pub fn fds(pid: i32, links: &[FdLink]) -> Vec<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for l in links {
        *counts.entry(kind_name(l.kind)).or_default() += 1;
    }
    let by_type: Vec<String> = ["socket", "pipe", "anon_inode", "file", "other"]
        .iter()
        .map(|k| format!("{k} {}", counts.get(k).copied().unwrap_or(0)))
        .collect();
    let mut out = vec![
        format!("# every fd of pid {pid} with its link target"),
        format!("# {} fds: {}", links.len(), by_type.join(" · ")),
        format!("{:>7}  {:<11} TARGET", "FD", "TYPE"),
    ];
    out.extend(
        links
            .iter()
            .map(|l| format!("{:>7}  {:<11} {}", l.fd, kind_name(l.kind), l.link)),
    );
    out
}

fn kind_name(k: FdKind) -> &'static str {
    match k {
        FdKind::Socket(_) => "socket",
        FdKind::Pipe => "pipe",
        FdKind::AnonInode => "anon_inode",
        FdKind::File => "file",
        FdKind::Other => "other",
    }
}

/// The fds holding each socket inode (a dup'ed socket has several).
pub fn socket_fds(links: &[FdLink]) -> HashMap<u64, Vec<i32>> {
    let mut m: HashMap<u64, Vec<i32>> = HashMap::new();
    for l in links {
        if let FdKind::Socket(inode) = l.kind {
            m.entry(inode).or_default().push(l.fd);
        }
    }
    m
}

/// Where a state sorts in `sockets.txt`: CLOSE_WAIT first, then ESTABLISHED, then the rest.
fn state_rank(s: TcpState) -> usize {
    match s {
        TcpState::CloseWait => 0,
        TcpState::Established => 1,
        other => 2 + TcpState::ALL.iter().position(|x| *x == other).unwrap_or(99),
    }
}

/// `sockets.txt`: counts per peer at the top, then every TCP socket, CLOSE_WAIT first.
pub fn sockets(pid: i32, table: &NetTcp, fds_of: &HashMap<u64, Vec<i32>>) -> Vec<String> {
    let summary = net_tcp::summarize(table, TcpTable::ProcNet, fds_of.len() as u64, usize::MAX);
    let states: Vec<String> = TcpState::ALL
        .iter()
        .filter(|s| summary.states.get(**s) > 0)
        .map(|s| format!("{} {}", s.as_str(), summary.states.get(*s)))
        .collect();
    let mut out = vec![
        format!(
            "# TCP sockets of pid {pid}: {} ({}); {} other sockets (unix, udp, ...)",
            table.sockets.len(),
            if states.is_empty() {
                "none".to_string()
            } else {
                states.join(", ")
            },
            summary.other_sockets
        ),
        "# recv-q: bytes received and not read by the target (1 on CLOSE_WAIT: the peer's FIN);"
            .into(),
        "# send-q: bytes sent and not acknowledged. Inbound peers are grouped by our listening port."
            .into(),
        String::new(),
    ];
    let by_peer = [
        ("CLOSE_WAIT by peer", &summary.top_close_wait_peers),
        ("ESTABLISHED by peer", &summary.top_established_peers),
    ];
    for (title, peers) in by_peer {
        if !peers.is_empty() {
            out.extend(report::peer_lines(title, peers, Layout::Bundle));
            out.push(String::new());
        }
    }
    out.push(format!(
        "{:<12} {:<46} {:<46} {:>8} {:>8} {:>10}  FD",
        "STATE", "LOCAL", "PEER", "RECV-Q", "SEND-Q", "INODE"
    ));
    let mut rows: Vec<&TcpSocket> = table.sockets.iter().collect();
    rows.sort_by_key(|s| (state_rank(s.state), s.remote, s.local));
    for s in rows {
        let fds = fds_of
            .get(&s.inode)
            .map(|v| {
                v.iter()
                    .map(|f| f.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_else(|| "-".into());
        out.push(format!(
            "{:<12} {:<46} {:<46} {:>8} {:>8} {:>10}  {fds}",
            s.state.as_str(),
            s.local.to_string(),
            s.remote.to_string(),
            s.recv_queue_bytes,
            s.send_queue_bytes,
            s.inode
        ));
    }
    out
}

/// `threads.txt`: stuck workers first, then every thread with its wchan and call.
pub fn threads(
    sample: &Sample,
    wchans: &HashMap<i32, String>,
    fd_inodes: &HashMap<i32, u64>,
    tcp_by_inode: &HashMap<u64, &TcpSocket>,
) -> Vec<String> {
    let pid = sample.target.pid;
    let Some(threads) = &sample.threads else {
        let why = sample
            .unknown
            .get(&crate::sample::Source::Threads)
            .map_or("unknown".to_string(), |u| u.message.clone());
        return vec![format!(
            "# the threads of pid {pid} could not be read: {why}"
        )];
    };
    let stuck: &[StuckWorker] = sample.stuck.as_ref().map_or(&[], |s| &s.workers);
    let mut out = vec![
        format!(
            "# {} threads of pid {pid}; {}",
            threads.count,
            stuck_line(sample)
        ),
        "# wchan: the kernel function a sleeping thread waits in; syscall: the call it is blocked in"
            .into(),
        String::new(),
    ];
    if !stuck.is_empty() {
        out.push("STUCK".into());
        out.extend(report::stuck_worker_lines(stuck, Layout::Bundle));
        out.push(String::new());
    }
    out.push(format!(
        "{:>7}  {:<16} {:<5} {:<24} {:<22} {:>8}  SOCKET",
        "TID", "NAME", "STATE", "WCHAN", "SYSCALL", "BLOCKED"
    ));
    for t in &threads.tasks {
        let w = stuck.iter().find(|w| w.tid == t.tid);
        let (call, fd) = call_text(t);
        let socket = match w {
            Some(w) => w.socket.as_ref().map(report::socket_text),
            None => fd
                .and_then(|fd| fd_inodes.get(&fd))
                .and_then(|i| tcp_by_inode.get(i))
                .map(|s| report::socket_text(s)),
        };
        out.push(format!(
            "{:>7}  {:<16} {:<5} {:<24} {:<22} {:>8}  {}",
            t.tid,
            t.name,
            t.state,
            wchans.get(&t.tid).map_or("?", String::as_str),
            call,
            w.map_or("-".to_string(), |w| units::duration_ms(w.blocked_for_ms)),
            socket.unwrap_or_else(|| "-".into())
        ));
    }
    out
}

/// `2 stuck (blocked >= 2m in one socket call ...)`, or why that is unknown.
fn stuck_line(sample: &Sample) -> String {
    match &sample.stuck {
        Some(s) => format!(
            "{} stuck (blocked >= {} in one socket call with no context switch)",
            s.count,
            units::duration_ms(s.stuck_after_ms)
        ),
        None => {
            let why = sample
                .unknown
                .get(&crate::sample::Source::Stuck)
                .map_or("unknown".to_string(), |u| u.message.clone());
            format!("stuck workers unknown: {why}")
        }
    }
}

/// `recvfrom(fd 33)`, `futex`, `running`, `-`; and the fd a socket call waits on.
fn call_text(t: &Task) -> (String, Option<i32>) {
    match &t.syscall {
        None => ("?".into(), None),
        Some(SyscallState::Running) => ("running".into(), None),
        Some(SyscallState::NotInSyscall) => ("-".into(), None),
        Some(SyscallState::In { nr, args }) => {
            let name = syscall_name(*nr).map_or(format!("syscall {nr}"), String::from);
            match call_kind(*nr) {
                Some(CallKind::FdWait) => {
                    let fd = fd_arg(args[0]);
                    let text = fd.map_or(name.clone(), |fd| format!("{name}(fd {fd})"));
                    (text, fd)
                }
                _ => (name, None),
            }
        }
    }
}

/// The series of `samples.csv`, in column order.
pub const CSV_SERIES: [Series; Series::ALL.len()] = Series::ALL;

/// One row of every series' value in `sample` (`None` when unknown).
pub fn history_row(sample: &Sample) -> HistoryRow {
    let rule = Rule::default();
    let mut values = [None; CSV_SERIES.len()];
    for (i, s) in CSV_SERIES.iter().enumerate() {
        values[i] = series::read(sample, *s, &rule).value;
    }
    HistoryRow {
        unix_ms: sample.taken_at_unix_ms,
        values,
    }
}

/// `samples.csv`: the window's samples, one column per series (bytes for memory series).
pub fn samples_csv(rows: &[HistoryRow]) -> Vec<String> {
    let mut header = vec!["time_utc".to_string(), "unix_ms".to_string()];
    header.extend(CSV_SERIES.iter().map(|s| {
        if series::is_bytes(*s) {
            format!("{s}_bytes")
        } else {
            s.to_string()
        }
    }));
    let mut out = vec![header.join(",")];
    for r in rows {
        let mut cells = vec![
            units::utc(r.unix_ms).replace(" UTC", ""),
            r.unix_ms.to_string(),
        ];
        cells.extend(
            r.values
                .iter()
                .map(|v| v.map_or(String::new(), |v| format!("{v}"))),
        );
        out.push(cells.join(","));
    }
    out
}

/// `verdict.json`: who, when, why, and the whole judgement (rules, series with slopes and
/// time to exhaustion, the restart budget).
pub fn verdict_json(
    name: &str,
    reason: &str,
    written_unix_ms: u64,
    sample: &Sample,
    judged: Option<&Judged>,
) -> Vec<String> {
    let process = sample.process.as_ref();
    let levels: Vec<serde_json::Value> = CSV_SERIES
        .iter()
        .map(|s| {
            let o = series::read(sample, *s, &Rule::default());
            serde_json::json!({"series": s, "value": o.value, "limit": o.limit, "unknown": o.unknown})
        })
        .collect();
    let v = serde_json::json!({
        "target": name,
        "pid": sample.target.pid,
        "starttime_ticks": sample.target.starttime_ticks,
        "comm": process.map(|p| p.comm.clone()),
        "cmdline": process.map(|p| p.cmdline.clone()),
        "reason": reason,
        "written_utc": units::utc(written_unix_ms),
        "sampled_utc": units::utc(sample.taken_at_unix_ms),
        "healthy": judged.map(|j| j.verdict.healthy),
        "failing": judged.map(|j| j.verdict.failing.clone()),
        "notes": judged.map(|j| j.verdict.notes.clone()),
        "series": judged.map(|j| serde_json::to_value(&j.series).unwrap_or_default()),
        "rules": judged.map(|j| serde_json::to_value(&j.rules).unwrap_or_default()),
        "restart_budget": judged.map(|j| serde_json::to_value(&j.budget).unwrap_or_default()),
        "levels": levels,
    });
    serde_json::to_string_pretty(&v)
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
        .lines()
        .map(String::from)
        .collect()
}

/// `README.txt`: who, when, why, what to look at first, and what was cut or missing.
pub fn readme(
    name: &str,
    reason: &str,
    sample: &Sample,
    judged: Option<&Judged>,
    facts: &ReadmeFacts,
    notes: &[String],
) -> Vec<String> {
    let process = sample.process.as_ref();
    let mut out = vec![
        format!("leakwatch diagnostics bundle: target {name}"),
        format!(
            "pid {} ({}), started {}",
            sample.target.pid,
            process.map_or("?", |p| p.comm.as_str()),
            process
                .and_then(|p| p.started_unix_ms)
                .map_or("?".into(), units::utc)
        ),
        format!("cmdline: {}", process.map_or("", |p| p.cmdline.as_str())),
        format!("written {}: {reason}", units::utc(facts.written_unix_ms)),
    ];
    if let Some(j) = judged.filter(|j| !j.verdict.failing.is_empty()) {
        out.push("failing:".into());
        out.extend(j.verdict.failing.iter().map(|l| format!("  {l}")));
    }
    out.push(String::new());
    out.push("Look first at:".into());
    out.extend(look_first(facts));
    out.push(String::new());
    out.push(
        "Files: verdict.json samples.csv fds.txt sockets.txt threads.txt stalled.txt status \
         limits smaps_rollup memory.* (the cgroup's), README.txt"
            .into(),
    );
    if !notes.is_empty() {
        out.push(String::new());
        out.push("Notes:".into());
        out.extend(notes.iter().map(|n| format!("  {n}")));
    }
    out
}

/// The numbered "Look first at:" lines of `README.txt`.
fn look_first(p: &ReadmeFacts) -> Vec<String> {
    let mut lines = Vec::new();
    let out = &mut lines;
    let mut n = 0;
    let mut point = |out: &mut Vec<String>, text: String| {
        n += 1;
        out.push(format!("  {n}. {text}"));
    };
    if p.close_wait_total > 0 {
        let top = p.close_wait.first().map_or(String::new(), |c| {
            format!(", {} of them to {}", c.sockets, c.peer)
        });
        point(
            out,
            format!(
                "sockets.txt: {} sockets in CLOSE_WAIT{top}: the peer closed, the target never \
                 did (a missing close() on that path).",
                p.close_wait_total
            ),
        );
    }
    if !p.stuck.is_empty() {
        let w = &p.stuck[0];
        let on = w.socket.as_ref().map_or(String::new(), |s| {
            format!(" on {} to {}", s.state.as_str(), s.remote)
        });
        point(
            out,
            format!(
                "threads.txt: {} workers stuck in one socket call (e.g. {} in {}{on}): they \
                 wait for data that will not come; a timeout on that socket is missing.",
                p.stuck.len(),
                w.name,
                w.syscall
            ),
        );
    }
    if p.memory_failing {
        point(
            out,
            "smaps_rollup, status and memory.stat: where the memory is (anon vs file, the \
             cgroup's sock and kernel memory)."
                .into(),
        );
    }
    point(
        out,
        format!(
            "fds.txt: all {} fds by type; verdict.json: the failing rules, slopes and time to \
             exhaustion; samples.csv: the window behind them.",
            p.fds
        ),
    );
    lines
}
