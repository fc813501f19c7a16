//! Every [`Series`], one row each: its name, its unit, the collector that feeds it, how to
//! read it out of a [`Sample`] and how to put it into one, and leakwatch's own `/metrics`
//! series for it. The judge, `samples.csv`, the recorder, `/metrics`' tests and backtest
//! (the Prometheus mapping and the replay) all read this list: adding a series is one row
//! here and its variant in `Series`.

use super::super::spec::Series;
use crate::sample::{
    CgroupMemory, CgroupPids, CloseWaitAge, FdLimit, Fds, Heap, Limit, Memory, Sample, Source,
    Stuck, Tcp, TcpStalled, Threads,
};

/// A Prometheus series: the metric's name and a fixed label matcher (`kind="rss"`, or none).
pub type Metric = (&'static str, &'static str);

/// One series.
#[derive(Debug)]
pub struct SeriesDef {
    pub series: Series,
    /// The rule's name in the config, and the series' name everywhere else.
    pub name: &'static str,
    /// Counted in bytes (else a count).
    pub bytes: bool,
    /// The collector whose failure makes it unknown.
    pub source: Source,
    /// The kernel gives it a limit (fds: RLIMIT_NOFILE, cgroup memory: memory.max,
    /// threads: pids.max); rss/anon/heap borrow the cgroup's when there is one.
    pub natural_limit: bool,
    /// Its value in a sample, `None` when unknown.
    pub read: fn(&Sample) -> Option<u64>,
    /// Put a value (and, for a series with a natural limit, the limit) into a sample where
    /// the collector would, so that [`read`](SeriesDef::read) gives it back.
    pub put: fn(&mut Sample, Option<u64>, Option<Limit>),
    /// leakwatch's own `/metrics` series of its value and of its limit, which backtest reads
    /// back first from Prometheus.
    pub metric: Option<Metric>,
    pub limit_metric: Option<Metric>,
}

/// Every series, in [`Series`] order (checked by a test).
pub const TABLE: [SeriesDef; 12] = [
    SeriesDef {
        series: Series::Fds,
        name: "fds",
        bytes: false,
        source: Source::Fds,
        natural_limit: true,
        read: |s| s.fds.as_ref().and_then(|f| f.in_use()),
        put: |s, n, limit| {
            s.fds = n.map(|n| Fds {
                open: Some(n),
                ..Fds::default()
            });
            s.fd_limit = limit.map(|l| FdLimit { soft: l, hard: l });
        },
        metric: Some(("leakwatch_open_fds", "")),
        limit_metric: Some(("leakwatch_max_fds", "")),
    },
    SeriesDef {
        series: Series::TcpEstablished,
        name: "tcp_established",
        bytes: false,
        source: Source::Tcp,
        natural_limit: false,
        read: |s| s.tcp.as_ref().map(|t| t.states.established),
        // Both states share one section: an absent one reads as 0 (the replay leaves out
        // rules on a state the history does not have).
        put: |s, n, _| {
            if let Some(n) = n {
                s.tcp.get_or_insert_with(Tcp::default).states.established = n;
            }
        },
        metric: Some(("leakwatch_tcp_sockets", "state=\"established\"")),
        limit_metric: None,
    },
    SeriesDef {
        series: Series::TcpCloseWait,
        name: "tcp_close_wait",
        bytes: false,
        source: Source::Tcp,
        natural_limit: false,
        read: |s| s.tcp.as_ref().map(|t| t.states.close_wait),
        put: |s, n, _| {
            if let Some(n) = n {
                s.tcp.get_or_insert_with(Tcp::default).states.close_wait = n;
            }
        },
        metric: Some(("leakwatch_tcp_sockets", "state=\"close_wait\"")),
        limit_metric: None,
    },
    SeriesDef {
        series: Series::Rss,
        name: "rss",
        bytes: true,
        source: Source::Memory,
        natural_limit: false,
        read: |s| s.memory.as_ref().and_then(|m| m.rss_bytes),
        put: |s, n, _| s.memory.get_or_insert_with(Memory::default).rss_bytes = n,
        metric: Some(("leakwatch_memory_bytes", "kind=\"rss\"")),
        limit_metric: None,
    },
    SeriesDef {
        series: Series::Anon,
        name: "anon",
        bytes: true,
        source: Source::Memory,
        natural_limit: false,
        read: |s| s.memory.as_ref().and_then(|m| m.anon_bytes),
        put: |s, n, _| s.memory.get_or_insert_with(Memory::default).anon_bytes = n,
        metric: Some(("leakwatch_memory_bytes", "kind=\"anon\"")),
        limit_metric: None,
    },
    SeriesDef {
        series: Series::Heap,
        name: "heap",
        bytes: true,
        source: Source::Heap,
        natural_limit: false,
        // Between smaps reads the sample keeps the last estimate (with its age) for
        // /metrics and /status: not a new point of the window.
        read: |s| {
            s.heap
                .as_ref()
                .filter(|_| s.read_this_tick(Source::Heap))
                .map(|h| h.estimate_bytes)
        },
        put: |s, n, _| {
            s.heap = n.map(|n| Heap {
                estimate_bytes: n,
                ..Heap::default()
            })
        },
        metric: Some(("leakwatch_memory_bytes", "kind=\"heap\"")),
        limit_metric: None,
    },
    SeriesDef {
        series: Series::CgroupMemory,
        name: "cgroup_memory",
        bytes: true,
        source: Source::CgroupMemory,
        natural_limit: true,
        read: |s| s.cgroup_memory.as_ref().and_then(|c| c.working_set_bytes),
        put: |s, n, limit| {
            let cg = s.cgroup_memory.get_or_insert_with(CgroupMemory::default);
            cg.working_set_bytes = n;
            cg.max = limit;
        },
        metric: Some(("leakwatch_cgroup_memory_bytes", "kind=\"working_set\"")),
        limit_metric: Some(("leakwatch_cgroup_memory_bytes", "kind=\"max\"")),
    },
    SeriesDef {
        series: Series::Threads,
        name: "threads",
        bytes: false,
        source: Source::Threads,
        natural_limit: true,
        read: |s| s.threads.as_ref().map(|t| t.count),
        put: |s, n, limit| {
            s.threads = n.map(|count| Threads {
                count,
                ..Threads::default()
            });
            s.cgroup_pids = limit.map(|l| CgroupPids {
                max: Some(l),
                ..CgroupPids::default()
            });
        },
        metric: Some(("leakwatch_threads", "")),
        limit_metric: None,
    },
    SeriesDef {
        series: Series::StuckThreads,
        name: "stuck_threads",
        bytes: false,
        source: Source::Stuck,
        natural_limit: false,
        read: |s| s.stuck.as_ref().map(|s| s.count),
        put: |s, n, _| {
            s.stuck = n.map(|count| Stuck {
                count,
                ..Stuck::default()
            })
        },
        metric: Some(("leakwatch_stuck_threads", "")),
        limit_metric: None,
    },
    SeriesDef {
        series: Series::TcpStalled,
        name: "tcp_stalled",
        bytes: false,
        source: Source::TcpStall,
        natural_limit: false,
        read: |s| s.tcp_stalled.as_ref().map(|s| s.count),
        put: |s, n, _| {
            s.tcp_stalled = n.map(|count| TcpStalled {
                count,
                ..TcpStalled::default()
            })
        },
        metric: Some(("leakwatch_tcp_stalled_sockets", "")),
        limit_metric: None,
    },
    SeriesDef {
        series: Series::TcpCloseWaitAged,
        name: "tcp_close_wait_aged",
        bytes: false,
        source: Source::Tcp,
        natural_limit: false,
        read: |s| s.close_wait_age.as_ref().map(|c| c.aged),
        put: |s, n, _| {
            s.close_wait_age = n.map(|aged| CloseWaitAge {
                aged,
                ..CloseWaitAge::default()
            })
        },
        // `/metrics` has the oldest CLOSE_WAIT's age, not this count.
        metric: None,
        limit_metric: None,
    },
    SeriesDef {
        series: Series::CgroupSock,
        name: "cgroup_sock",
        bytes: true,
        source: Source::CgroupMemory,
        natural_limit: false,
        read: |s| s.cgroup_memory.as_ref().and_then(|c| c.sock_bytes),
        put: |s, n, _| {
            s.cgroup_memory
                .get_or_insert_with(CgroupMemory::default)
                .sock_bytes = n
        },
        metric: Some(("leakwatch_cgroup_memory_bytes", "kind=\"sock\"")),
        limit_metric: None,
    },
];

/// The series of [`TABLE`], in order.
pub const ALL: [Series; TABLE.len()] = {
    let mut all = [Series::Fds; TABLE.len()];
    let mut i = 0;
    while i < TABLE.len() {
        all[i] = TABLE[i].series;
        i += 1;
    }
    all
};
