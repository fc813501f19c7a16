//! One target's series: its verdict and judged series always, the sample's values only
//! while a process is found. A value the sample does not know is left out, never 0.

use crate::judge::{Enforcement, Judged};
use crate::sample::{CgroupMemory, Limit, PeerCount, PressureLine, Sample, TcpState};
use crate::snapshot::TargetStatus;

use super::families::*;
use super::out::Out;

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// Every series of `t`; peers become labels only with `peer_labels`.
pub fn export(out: &Out, t: &TargetStatus, peer_labels: bool) {
    let name = t.name.as_str();
    out.put(&TARGET_UP, &[name], flag(t.found && t.sample.is_some()));
    out.put(&TARGET_RESTARTS, &[name], t.restarts_total as f64);
    if let Some(secs) = t.poll_duration_seconds {
        out.put(&POLL_DURATION, &[name], secs);
    }
    for e in &t.collector_errors_total {
        let labels = [name, e.collector.as_str(), e.reason.as_str()];
        out.put(&COLLECTOR_ERRORS, &labels, e.count as f64);
    }
    for c in &t.actions.counts {
        let labels = [name, c.action.as_str(), c.result.as_str()];
        out.put(&ACTIONS, &labels, c.count as f64);
    }
    judged(out, name, &t.judged);
    mode(out, name, t);
    // A sample left over from a process that is gone is not the target's current state.
    if let (true, Some(sample)) = (t.found, &t.sample) {
        fds(out, name, sample);
        tcp(out, name, sample, peer_labels);
        memory(out, name, sample);
        if let Some(cg) = &sample.cgroup_memory {
            cgroup_memory(out, name, cg);
        }
        out.put_u64(&THREADS, &[name], sample.threads.as_ref().map(|t| t.count));
        out.put_u64(
            &STUCK_THREADS,
            &[name],
            sample.stuck.as_ref().map(|s| s.count),
        );
        tcp_tracked(out, name, sample);
    }
}

/// Stalled sockets and the oldest CLOSE_WAIT.
fn tcp_tracked(out: &Out, name: &str, s: &Sample) {
    if let Some(st) = &s.tcp_stalled {
        out.put(&TCP_STALLED_SOCKETS, &[name], st.count as f64);
        let rows = [
            ("send_queue", st.send_queue_bytes),
            ("write_memory", st.write_memory_bytes),
        ];
        for (kind, v) in rows {
            out.put(&TCP_STALLED_BYTES, &[name, kind], v as f64);
        }
    }
    if let Some(cw) = &s.close_wait_age {
        let secs = cw.oldest_ms as f64 / 1000.0;
        out.put(&TCP_CLOSE_WAIT_OLDEST, &[name], secs);
    }
}

fn judged(out: &Out, name: &str, j: &Judged) {
    out.put(&HEALTHY, &[name], flag(j.verdict.healthy));
    out.put(&RESTART_BUDGET_EXHAUSTED, &[name], flag(j.budget.exhausted));
    for r in &j.rules {
        out.put(&RULE_FAILING, &[name, r.series.as_str()], flag(r.failing));
    }
    for s in &j.series {
        let labels = [name, s.series.as_str()];
        if let Some(trend) = &s.trend {
            out.put(&GROWTH, &labels, trend.slope_per_s);
        }
        if let Some(secs) = s.seconds_to_exhaustion {
            out.put(&TIME_TO_EXHAUSTION, &labels, secs);
        }
        // Only where there is a limit to leak towards, and a value to judge.
        if s.limit.is_some() && s.value.is_some() {
            out.put(&LEAK_SUSPECTED, &labels, flag(s.leak_suspected));
        }
    }
}

/// The target's mode, whether observe mode holds a failing verdict at 200, and the flips
/// it held.
fn mode(out: &Out, name: &str, t: &TargetStatus) {
    for m in Enforcement::ALL {
        out.put(&MODE, &[name, m.as_str()], flag(t.mode == m));
    }
    let would_fail = t.mode == Enforcement::Observe && t.verdict().would_fail();
    out.put(&WOULD_FAIL, &[name], flag(would_fail));
    out.put(&WOULD_FAIL_FLIPS, &[name], t.would_fail_flips_total as f64);
}

fn fds(out: &Out, name: &str, s: &Sample) {
    out.put_u64(&OPEN_FDS, &[name], s.fds.as_ref().and_then(|f| f.in_use()));
    let soft = s.fd_limit.as_ref().and_then(|l| l.soft.value());
    out.put_u64(&MAX_FDS, &[name], soft);
    let Some(types) = s.fds.as_ref().and_then(|f| f.by_type.as_ref()) else {
        return;
    };
    let rows = [
        ("socket", types.socket),
        ("pipe", types.pipe),
        ("anon_inode", types.anon_inode),
        ("file", types.file),
        ("other", types.other),
    ];
    for (kind, n) in rows {
        out.put(&OPEN_FDS_BY_TYPE, &[name, kind], n as f64);
    }
    age(
        out,
        name,
        "fd_types",
        s.fds.as_ref().map(|f| f.by_type_age_ms),
    );
}

/// The age of a value read at its own cadence, kept between its reads (`source`: which).
fn age(out: &Out, name: &str, source: &str, age_ms: Option<u64>) {
    if let Some(ms) = age_ms {
        out.put(&SAMPLE_AGE, &[name, source], ms as f64 / 1000.0);
    }
}

fn tcp(out: &Out, name: &str, s: &Sample, peer_labels: bool) {
    let Some(tcp) = &s.tcp else {
        return;
    };
    for state in TcpState::ALL {
        let n = tcp.states.get(state) as f64;
        out.put(&TCP_SOCKETS, &[name, state.as_str()], n);
    }
    if peer_labels {
        peers(out, name, TcpState::CloseWait, &tcp.top_close_wait_peers);
        peers(out, name, TcpState::Established, &tcp.top_established_peers);
    }
}

fn peers(out: &Out, name: &str, state: TcpState, top: &[PeerCount]) {
    for p in top {
        let (direction, peer, local_port) = if p.peer.inbound {
            ("inbound", p.peer.ip.to_string(), p.peer.port.to_string())
        } else {
            let addr = std::net::SocketAddr::new(p.peer.ip, p.peer.port);
            ("outbound", addr.to_string(), String::new())
        };
        let labels = [name, state.as_str(), direction, &peer, &local_port];
        out.put(&TCP_PEER_SOCKETS, &labels, p.sockets as f64);
    }
}

fn memory(out: &Out, name: &str, s: &Sample) {
    let m = s.memory.as_ref();
    let rows = [
        ("rss", m.and_then(|m| m.rss_bytes)),
        ("anon", m.and_then(|m| m.anon_bytes)),
        ("file", m.and_then(|m| m.file_bytes)),
        ("shmem", m.and_then(|m| m.shmem_bytes)),
        ("swap", m.and_then(|m| m.swap_bytes)),
        ("heap", s.heap.as_ref().map(|h| h.estimate_bytes)),
    ];
    for (kind, v) in rows {
        out.put_u64(&MEMORY, &[name, kind], v);
    }
    age(out, name, "heap", s.heap.as_ref().map(|h| h.age_ms));
}

fn cgroup_memory(out: &Out, name: &str, cg: &CgroupMemory) {
    let rows = [
        ("current", cg.current_bytes),
        ("max", cg.max.and_then(Limit::value)),
        ("working_set", cg.working_set_bytes),
        ("anon", cg.anon_bytes),
        ("file", cg.file_bytes),
        ("sock", cg.sock_bytes),
    ];
    for (kind, v) in rows {
        out.put_u64(&CGROUP_MEMORY, &[name, kind], v);
    }
    if let Some(ev) = &cg.events {
        let rows = [
            ("low", ev.low),
            ("high", ev.high),
            ("max", ev.max),
            ("oom", ev.oom),
            ("oom_kill", ev.oom_kill),
        ];
        for (event, v) in rows {
            out.put_u64(&CGROUP_MEMORY_EVENTS, &[name, event], v);
        }
    }
    if let Some(p) = &cg.pressure {
        pressure(out, &CGROUP_MEMORY_PRESSURE, name, "some", &p.some);
        if let Some(full) = &p.full {
            pressure(out, &CGROUP_MEMORY_PRESSURE_FULL, name, "full", full);
        }
    }
}

/// One memory.pressure line: its three windows in `family`, its total in the stall counter.
fn pressure(out: &Out, family: &Family, name: &str, kind: &str, line: &PressureLine) {
    for (window, percent) in [
        ("10s", line.avg10),
        ("60s", line.avg60),
        ("300s", line.avg300),
    ] {
        out.put(family, &[name, window], ratio(percent));
    }
    let stalled_s = line.total_us as f64 / 1e6;
    out.put(&CGROUP_MEMORY_STALL, &[name, kind], stalled_s);
}

/// The kernel's percent (two decimals) as a ratio, rounded to the four decimals it has, so
/// that 0.31 % reads 0.0031 rather than 0.0031000000000000003.
fn ratio(percent: f64) -> f64 {
    (percent * 100.0).round() / 10_000.0
}
