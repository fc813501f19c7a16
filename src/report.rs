//! The human report of one [`Sample`], as `leakwatch inspect` prints it: `lsof` + `ss` +
//! `top` for the one process you care about. Unknown values say why, never 0.
//!
//! The blocks the diagnostics bundle shows too are rendered here once, for both: the peer
//! tables ([`peer_lines`]), the stuck workers ([`stuck_worker_lines`]) and the stalled
//! sockets ([`stalled`]); [`Layout`] says where they go.

use std::fmt::Write;

use crate::error::Unknown;
use crate::sample::{
    CgroupMemory, CgroupPids, Limit, PeerCount, Sample, Source, StuckWorker, TargetState,
    TcpSocket, TcpStalled, TcpState, WindowState,
};
use crate::units::{bytes, duration_ms, percent, utc};

const LABEL: usize = 10;

/// Render the whole report.
pub fn render(s: &Sample) -> String {
    let mut out = String::new();
    header(&mut out, s);
    if s.state == TargetState::Zombie {
        let _ = writeln!(
            out,
            "\nthe process has exited and is a zombie: nothing else to show"
        );
        return out;
    }
    section(&mut out, "FDS", fds(s));
    section(&mut out, "TCP", tcp(s));
    section(&mut out, "MEMORY", memory(s));
    section(&mut out, "CGROUP", cgroup(s));
    section(&mut out, "THREADS", threads(s));
    section(&mut out, "STUCK", stuck(s));
    section(&mut out, "STALLED", stalled(s));
    out
}

fn section(out: &mut String, title: &str, lines: Vec<String>) {
    out.push('\n');
    for (i, line) in lines.iter().enumerate() {
        let label = if i == 0 { title } else { "" };
        let _ = writeln!(out, "{label:<LABEL$}{line}");
    }
}

fn unknown(s: &Sample, src: Source) -> String {
    match s.unknown.get(&src) {
        Some(Unknown { message, .. }) => format!("unknown: {message}"),
        None => "unknown".to_string(),
    }
}

fn header(out: &mut String, s: &Sample) {
    let state = match s.state {
        TargetState::Running => "running",
        TargetState::Zombie => "zombie",
        TargetState::Gone => "gone (exited during the scan; values may be partial)",
    };
    let Some(p) = &s.process else {
        let _ = writeln!(out, "pid {}: {}", s.target.pid, unknown(s, Source::Process));
        return;
    };
    let mut line = format!("pid {} ({}) {state}", s.target.pid, p.comm);
    if let Some(start) = p.started_unix_ms {
        let up = s.taken_at_unix_ms.saturating_sub(start);
        let _ = write!(line, ", started {} (up {})", utc(start), duration_ms(up));
    }
    if let Some(uid) = p.uid {
        let _ = write!(line, ", uid {uid}");
    }
    let _ = writeln!(out, "{line}");
    if !p.cmdline.is_empty() {
        let _ = writeln!(out, "{:LABEL$}{}", "", p.cmdline);
    }
}

fn fds(s: &Sample) -> Vec<String> {
    let Some(f) = &s.fds else {
        return vec![unknown(s, Source::Fds)];
    };
    let count = match (f.open, f.allocated) {
        (Some(o), Some(a)) if a > o => {
            format!("{o} open (+{} reserved by calls in progress)", a - o)
        }
        (Some(o), _) => format!("{o} open"),
        (None, Some(a)) => format!("{a} in use (the kernel's count)"),
        (None, None) => "unknown".to_string(),
    };
    let limit = match &s.fd_limit {
        Some(l) => match l.soft {
            Limit::Limited(soft) => {
                let pct = f
                    .in_use()
                    .and_then(|u| percent(u, soft))
                    .map_or(String::new(), |p| format!(" ({p:.1}%)"));
                format!(" of {soft}{pct}, hard limit {}", l.hard)
            }
            Limit::Unlimited => " (no limit)".to_string(),
        },
        None => format!(", limit {}", unknown(s, Source::Limits)),
    };
    let types = match &f.by_type {
        Some(t) => format!(
            "socket {} · pipe {} · anon_inode {} · file {} · other {}{}",
            t.socket,
            t.pipe,
            t.anon_inode,
            t.file,
            t.other,
            as_of(f.by_type_age_ms)
        ),
        None => format!("types {}", unknown(s, Source::Fds)),
    };
    let mut lines = vec![format!("{count}{limit}"), types];
    if f.vanished > 0 {
        lines.push(format!("{} closed while being read", f.vanished));
    }
    lines
}

/// Where a block shared with the bundle is printed: the blocks are the same, their columns
/// and words differ a little.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `leakwatch inspect`'s report.
    Report,
    /// The bundle's `sockets.txt` and `threads.txt` (wider columns).
    Bundle,
}

/// A table of peers under `title` (`CLOSE_WAIT by peer`): sockets, recv-q, send-q per
/// peer; no line at all without peers. Also the bundle's `sockets.txt`.
pub fn peer_lines(title: &str, list: &[PeerCount], layout: Layout) -> Vec<String> {
    if list.is_empty() {
        return Vec::new();
    }
    let (peer, count) = match layout {
        Layout::Report => (38, 7),
        Layout::Bundle => (46, 8),
    };
    let title_width = peer + 2;
    let mut lines = vec![format!(
        "{title:<title_width$} {:>count$} {:>10} {:>10}",
        "sockets", "recv-q", "send-q"
    )];
    for p in list {
        lines.push(format!(
            "  {:<peer$} {:>count$} {:>10} {:>10}",
            p.peer.to_string(),
            p.sockets,
            bytes(p.recv_queue_bytes),
            bytes(p.send_queue_bytes)
        ));
    }
    lines
}

/// `established 127.0.0.1:45734 -> 10.0.0.7:5432`.
pub fn socket_text(s: &TcpSocket) -> String {
    format!("{} {} -> {}", s.state.as_str(), s.local, s.remote)
}

/// One line per stuck worker: `tid 4242 worker-3 recvfrom(fd 33) for 2m05s: established
/// 127.0.0.1:45734 -> 10.0.0.7:5432`. Also the bundle's `threads.txt`.
pub fn stuck_worker_lines(workers: &[StuckWorker], layout: Layout) -> Vec<String> {
    let not_tcp = match layout {
        Layout::Report => " (not TCP)",
        Layout::Bundle => "",
    };
    workers
        .iter()
        .map(|w| {
            let socket = w.socket.as_ref().map_or_else(
                || format!("socket inode {}{not_tcp}", w.socket_inode),
                socket_text,
            );
            format!(
                "  tid {} {} {}(fd {}) for {}: {socket}",
                w.tid,
                w.name,
                w.syscall,
                w.fd,
                duration_ms(w.blocked_for_ms)
            )
        })
        .collect()
}

fn tcp(s: &Sample) -> Vec<String> {
    let Some(t) = &s.tcp else {
        return vec![unknown(s, Source::Tcp)];
    };
    let mut by_state: Vec<String> = TcpState::ALL
        .iter()
        .filter(|st| t.states.get(**st) > 0)
        .map(|st| format!("{} {}", st.as_str(), t.states.get(*st)))
        .collect();
    if t.states.unknown > 0 {
        by_state.push(format!("unknown state {}", t.states.unknown));
    }
    let states = if by_state.is_empty() {
        "none".to_string()
    } else {
        by_state.join(" · ")
    };
    let mut lines = vec![
        format!("{} sockets: {states}", t.states.total()),
        format!(
            "recv-q {} · send-q {} · {} other sockets (unix, udp, ...)",
            bytes(t.recv_queue_bytes),
            bytes(t.send_queue_bytes),
            t.other_sockets
        ),
    ];
    if t.method.from == crate::sample::SocketsFrom::Cgroup {
        lines.push("the sockets charged to its cgroup (the target is alone in it)".to_string());
    }
    lines.extend(peer_lines(
        "CLOSE_WAIT by peer",
        &t.top_close_wait_peers,
        Layout::Report,
    ));
    lines.extend(peer_lines(
        "ESTABLISHED by peer",
        &t.top_established_peers,
        Layout::Report,
    ));
    lines
}

fn opt_bytes(v: Option<u64>) -> String {
    v.map_or("unknown".to_string(), bytes)
}

fn memory(s: &Sample) -> Vec<String> {
    let mut lines = Vec::new();
    match &s.memory {
        Some(m) => lines.push(format!(
            "rss {}: anon {} · file {} · shmem {}; swap {}; peak rss {}",
            opt_bytes(m.rss_bytes),
            opt_bytes(m.anon_bytes),
            opt_bytes(m.file_bytes),
            opt_bytes(m.shmem_bytes),
            opt_bytes(m.swap_bytes),
            opt_bytes(m.peak_rss_bytes)
        )),
        None => lines.push(unknown(s, Source::Memory)),
    }
    match &s.smaps_rollup {
        Some(r) => lines.push(format!(
            "pss {} (anon {}, file {}) · private dirty {}",
            opt_bytes(r.pss_bytes),
            opt_bytes(r.pss_anon_bytes),
            opt_bytes(r.pss_file_bytes),
            opt_bytes(r.private_dirty_bytes)
        )),
        None => lines.push(format!("pss {}", unknown(s, Source::SmapsRollup))),
    }
    match &s.heap {
        Some(h) => lines.push(format!(
            "heap estimate {}: [heap] {} + {} in {} anonymous mappings ({} stacks left out){}",
            bytes(h.estimate_bytes),
            bytes(h.brk_rss_bytes),
            bytes(h.anon_rss_bytes),
            h.anon_mappings,
            h.stack_mappings,
            as_of(h.age_ms)
        )),
        None => lines.push(format!("heap estimate {}", unknown(s, Source::Heap))),
    }
    lines
}

/// " (as of 12s ago)" for a value kept from an earlier read (at its own cadence); nothing
/// for one read this tick.
fn as_of(age_ms: u64) -> String {
    if age_ms >= 1000 {
        format!(" (as of {} ago)", crate::units::duration_ms(age_ms))
    } else {
        String::new()
    }
}

fn limit_of(used: Option<u64>, max: Option<Limit>) -> String {
    match max {
        Some(Limit::Limited(m)) => {
            let pct = used
                .and_then(|u| percent(u, m))
                .map_or(String::new(), |p| format!(" ({p:.1}%)"));
            format!("of max {}{pct}", bytes(m))
        }
        Some(Limit::Unlimited) => "of max unlimited".to_string(),
        None => "of max unknown".to_string(),
    }
}

fn cgroup_memory(c: &CgroupMemory) -> Vec<String> {
    let version = match c.version {
        crate::sample::CgroupVersion::V1 => "v1",
        crate::sample::CgroupVersion::V2 => "v2",
    };
    let via = if c.source.via_target_root {
        " (through the target's root)"
    } else {
        ""
    };
    let mut lines = vec![
        format!(
            "{version} {} read from {}{via}",
            c.path,
            c.source.dir.display()
        ),
        format!(
            "working set {} {} · current {}{}",
            opt_bytes(c.working_set_bytes),
            limit_of(c.working_set_bytes, c.max),
            opt_bytes(c.current_bytes),
            // v1 has no memory.high: show it only where the kernel has one.
            c.high.map_or(String::new(), |h| match h {
                Limit::Limited(v) => format!(" · high {}", bytes(v)),
                Limit::Unlimited => " · high none".to_string(),
            })
        ),
        format!(
            "anon {} · file {}{} · inactive_file {}",
            opt_bytes(c.anon_bytes),
            opt_bytes(c.file_bytes),
            // Socket buffers are counted apart on v2 only.
            c.sock_bytes
                .map_or(String::new(), |b| format!(" · sock {}", bytes(b))),
            opt_bytes(c.inactive_file_bytes)
        ),
    ];
    // A lower limit on an ancestor (a slice, a pod) is the one shown above.
    for (file, from) in [("memory.max", &c.max_from), ("memory.high", &c.high_from)] {
        if let Some(path) = from {
            lines.push(format!("{file}: the lower one of ancestor {path}"));
        }
    }
    if let Some(e) = &c.events {
        // Only the counters this cgroup version has (v1: max from failcnt, oom_kill).
        let counters: Vec<String> = [
            ("low", e.low),
            ("high", e.high),
            ("max", e.max),
            ("oom", e.oom),
            ("oom_kill", e.oom_kill),
        ]
        .iter()
        .filter_map(|(name, v)| v.map(|v| format!("{name} {v}")))
        .collect();
        lines.push(format!("events: {}", counters.join(" · ")));
    }
    if let Some(p) = &c.pressure {
        let mut line = format!(
            "pressure: some {:.2}/{:.2}/{:.2}",
            p.some.avg10, p.some.avg60, p.some.avg300
        );
        if let Some(f) = &p.full {
            let _ = write!(
                line,
                " · full {:.2}/{:.2}/{:.2}",
                f.avg10, f.avg60, f.avg300
            );
        }
        line.push_str(" (% stalled, avg 10s/60s/300s)");
        lines.push(line);
    }
    lines
}

fn cgroup_pids(p: &CgroupPids) -> String {
    let mut line = format!(
        "pids {} of max {}",
        p.current.map_or("unknown".to_string(), |c| c.to_string()),
        p.max.map_or("unknown".to_string(), |m| m.to_string())
    );
    if let Some(a) = &p.max_from {
        let _ = write!(
            line,
            " (of ancestor {}, {} tasks below it)",
            a.path, a.current
        );
    }
    line
}

fn cgroup(s: &Sample) -> Vec<String> {
    let mut lines = match &s.cgroup_memory {
        Some(c) => cgroup_memory(c),
        None => vec![format!("memory {}", unknown(s, Source::CgroupMemory))],
    };
    match &s.cgroup_pids {
        Some(p) => lines.push(cgroup_pids(p)),
        None => lines.push(format!("pids {}", unknown(s, Source::CgroupPids))),
    }
    lines
}

fn threads(s: &Sample) -> Vec<String> {
    let Some(t) = &s.threads else {
        return vec![unknown(s, Source::Threads)];
    };
    let st = &t.states;
    let counts = [
        ("running", st.running),
        ("sleeping", st.sleeping),
        ("disk_sleep", st.disk_sleep),
        ("stopped", st.stopped),
        ("zombie", st.zombie),
        ("other", st.other),
    ];
    let parts: Vec<String> = counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    vec![format!("{}: {}", t.count, parts.join(" · "))]
}

fn stuck(s: &Sample) -> Vec<String> {
    let Some(st) = &s.stuck else {
        return vec![unknown(s, Source::Stuck)];
    };
    let mut lines = vec![format!(
        "{} workers blocked >= {} in one socket call with no context switch",
        st.count,
        duration_ms(st.stuck_after_ms)
    )];
    lines.extend(stuck_worker_lines(&st.workers, Layout::Report));
    lines
}

/// Stalled sockets by peer, then one by one with their window state; then the age of the
/// oldest CLOSE_WAIT. Also the bundle's `stalled.txt`.
pub fn stalled(s: &Sample) -> Vec<String> {
    let mut lines = match &s.tcp_stalled {
        Some(st) => stalled_sockets(st),
        None => vec![format!("stalled sockets {}", unknown(s, Source::TcpStall))],
    };
    lines.push(match &s.close_wait_age {
        Some(cw) => format!(
            "oldest CLOSE_WAIT {}; {} in CLOSE_WAIT >= {}",
            duration_ms(cw.oldest_ms),
            cw.aged,
            duration_ms(cw.aged_after_ms)
        ),
        None => format!("CLOSE_WAIT ages {}", unknown(s, Source::Tcp)),
    });
    lines
}

fn stalled_sockets(st: &TcpStalled) -> Vec<String> {
    let mut lines = vec![format!(
        "{} sockets with data queued and nothing acknowledged for >= {}: send-q {} · write \
         memory {}",
        st.count,
        duration_ms(st.stall_after_ms),
        bytes(st.send_queue_bytes),
        bytes(st.write_memory_bytes)
    )];
    if st.by_peer.is_empty() {
        return lines;
    }
    lines.push(format!(
        "{:<40} {:>7} {:>10} {:>10} {:>10} {:>6}",
        "by peer", "sockets", "send-q", "write mem", "longest", "zero w"
    ));
    for p in &st.by_peer {
        lines.push(format!(
            "  {:<38} {:>7} {:>10} {:>10} {:>10} {:>6}",
            p.peer.to_string(),
            p.sockets,
            bytes(p.send_queue_bytes),
            bytes(p.write_memory_bytes),
            duration_ms(p.longest_stalled_ms),
            p.zero_window
        ));
    }
    for k in &st.sockets {
        lines.push(format!(
            "  {} {} -> {} stalled {}: send-q {}, write memory {}; {}",
            k.state.as_str(),
            k.local,
            k.remote,
            duration_ms(k.stalled_for_ms),
            bytes(k.send_queue_bytes),
            opt_bytes(k.write_memory_bytes),
            window_text(&k.window)
        ));
    }
    if st.count as usize > st.sockets.len() {
        lines.push(format!(
            "  ... and {} more",
            st.count as usize - st.sockets.len()
        ));
    }
    lines
}

/// `peer window 0 (probe backoff 3) · notsent 2.8 MiB · rwnd-limited 100%`.
fn window_text(w: &WindowState) -> String {
    let window = match w.peer_window_bytes {
        Some(0) => format!("peer window 0 (probe backoff {})", w.probe_backoff),
        Some(n) => format!("peer window {}", bytes(n)),
        None => "peer window unknown".to_string(),
    };
    let mut parts = vec![window];
    if let Some(n) = w.notsent_bytes {
        parts.push(format!("notsent {}", bytes(n)));
    }
    if let Some(p) = w.rwnd_limited_percent {
        parts.push(format!("rwnd-limited {p:.0}%"));
    }
    parts.join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::UnknownKind;
    use crate::sample::{CgroupVersion, FdLimit, Fds, MemoryEvents, TargetState, Threads};

    fn sample() -> Sample {
        let mut s = Sample {
            state: TargetState::Running,
            fds: Some(Fds {
                open: None,
                allocated: Some(1001),
                by_type: None,
                by_type_age_ms: 0,
                vanished: 0,
            }),
            fd_limit: Some(FdLimit {
                soft: Limit::Limited(1024),
                hard: Limit::Limited(4096),
            }),
            cgroup_memory: Some(CgroupMemory {
                version: CgroupVersion::V2,
                path: "/kubepods/pod1/app".into(),
                current_bytes: Some(2 << 30),
                max: Some(Limit::Limited(2 << 30)),
                high: Some(Limit::Unlimited),
                working_set_bytes: Some(1 << 30),
                sock_bytes: Some(300 << 20),
                events: Some(MemoryEvents {
                    max: Some(12),
                    oom: Some(2),
                    oom_kill: Some(72),
                    ..MemoryEvents::default()
                }),
                ..CgroupMemory::default()
            }),
            threads: Some(Threads::default()),
            ..Sample::default()
        };
        s.unknown.insert(
            Source::Fds,
            Unknown::new(
                UnknownKind::PermissionDenied,
                "/proc/7/fd: permission denied (x)",
            ),
        );
        s
    }

    #[test]
    fn partial_fds_show_the_kernel_count_and_why_types_are_missing() {
        let r = render(&sample());
        assert!(
            r.contains(
                "\nFDS       1001 in use (the kernel's count) of 1024 (97.8%), hard limit 4096\n"
            ),
            "{r}"
        );
        assert!(
            r.contains("          types unknown: /proc/7/fd: permission denied (x)\n"),
            "{r}"
        );
    }

    #[test]
    fn v2_cgroup_shows_high_sock_and_its_events() {
        let r = render(&sample());
        assert!(
            r.contains("working set 1.0 GiB of max 2.0 GiB (50.0%) · current 2.0 GiB · high none"),
            "{r}"
        );
        assert!(r.contains("· sock 300.0 MiB ·"), "{r}");
        assert!(r.contains("events: max 12 · oom 2 · oom_kill 72"), "{r}");
    }

    #[test]
    fn peers_and_stuck_workers_in_their_columns() {
        use crate::sample::{Peer, Stuck, Tcp};
        let peer = |ip: &str, port, inbound, sockets| PeerCount {
            peer: Peer {
                ip: ip.parse().unwrap_or_else(|e| panic!("{ip}: {e}")),
                port,
                inbound,
            },
            sockets,
            recv_queue_bytes: sockets,
            send_queue_bytes: 2048 * sockets,
        };
        let socket = TcpSocket {
            state: TcpState::Established,
            local: "127.0.0.1:40000".parse().unwrap_or_else(|e| panic!("{e}")),
            remote: "10.0.0.7:5432".parse().unwrap_or_else(|e| panic!("{e}")),
            recv_queue_bytes: 0,
            send_queue_bytes: 0,
            inode: 11,
        };
        let worker = |tid, name: &str, syscall: &str, socket| StuckWorker {
            tid,
            name: name.into(),
            syscall: syscall.into(),
            fd: 7,
            blocked_for_ms: 125_000,
            socket_inode: 777,
            socket,
        };
        let s = Sample {
            tcp: Some(Tcp {
                top_close_wait_peers: vec![peer("10.0.0.7", 5432, false, 30)],
                top_established_peers: vec![
                    peer("192.168.1.2", 8080, true, 3),
                    peer("fe80::1", 8080, true, 1),
                ],
                ..Tcp::default()
            }),
            stuck: Some(Stuck {
                count: 2,
                workers: vec![
                    worker(101, "recv-worker-0", "recvfrom", Some(socket)),
                    worker(102, "poller", "poll", None),
                ],
                stuck_after_ms: 2000,
            }),
            ..sample()
        };
        let r = render(&s);
        let want = [
            "          CLOSE_WAIT by peer                       sockets     recv-q     send-q",
            "            10.0.0.7:5432                               30       30 B   60.0 KiB",
            "          ESTABLISHED by peer                      sockets     recv-q     send-q",
            "            192.168.1.2 -> local :8080                   3        3 B    6.0 KiB",
            "            [fe80::1] -> local :8080                     1        1 B    2.0 KiB",
            "",
            "MEMORY    unknown",
        ]
        .join("\n");
        assert!(r.contains(&want), "{r}");
        let want = [
            "STUCK     2 workers blocked >= 2s in one socket call with no context switch",
            "            tid 101 recv-worker-0 recvfrom(fd 7) for 2m05s: established \
             127.0.0.1:40000 -> 10.0.0.7:5432",
            "            tid 102 poller poll(fd 7) for 2m05s: socket inode 777 (not TCP)",
            "",
        ]
        .join("\n");
        assert!(r.contains(&want), "{r}");
    }

    #[test]
    fn a_zombie_says_so_and_nothing_else() {
        let s = Sample {
            state: TargetState::Zombie,
            ..sample()
        };
        let r = render(&s);
        assert!(r.contains("the process has exited and is a zombie"), "{r}");
        assert!(!r.contains("FDS"), "{r}");
    }
}
