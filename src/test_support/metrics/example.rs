//! The example snapshot behind the golden file and the promtool test: realistic numbers from
//! the incident leakwatch exists for (CLOSE_WAIT sockets piling up towards
//! RLIMIT_NOFILE = 1024), every field filled, plus a missing target.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::actions::{Action, ActionCount, ActionOutcome, ActionResult, ActionsStatus, Firing};
use crate::error::UnknownKind;
use crate::fleet::status::{ApiView, Deferred, Latency, SlotView};
use crate::fleet::{FleetStatus, GoReason, Mode};
use crate::judge::{Budget, Judged, RuleState, RuleStatus, SeriesStatus, Trend, Verdict};
use crate::judge::{Enforcement, Series};
use crate::sample::{
    CgroupDir, CgroupMemory, CgroupVersion, CloseWaitAge, FdLimit, FdTypes, Fds, Heap, Limit,
    Memory, MemoryEvents, Peer, PeerCount, Pressure, PressureLine, Sample, SocketsMethod, Source,
    Stuck, TargetId, Tcp, TcpStalled, TcpStates, TcpTable, Threads,
};
use crate::snapshot::{CollectorErrors, ConfigInfo, Snapshot, TargetStatus};

const MIB: u64 = 1024 * 1024;

/// A fixed snapshot with every kind of value: target `app` found, with every field filled
/// (the fds rule failing on 1001/1024 open fds, a trusted cgroup-memory trend with a time
/// to exhaustion), and target `worker` missing, in observe mode, after two flips it would
/// have failed. Peer labels are on.
pub fn example_snapshot() -> Snapshot {
    let mut worker = missing_target("worker");
    worker.mode = Enforcement::Observe;
    worker.would_fail_flips_total = 2;
    Snapshot {
        version: "0.1.0".into(),
        seq: 1234,
        started_unix_ms: 1_760_000_000_000,
        published_unix_ms: 1_760_006_170_000,
        published_mono_ms: 6_170_000,
        interval_ms: 5000,
        ticks_total: 1234,
        ticks_skipped_total: 2,
        tick_duration_us: 4870,
        config: ConfigInfo {
            file: Some("/etc/leakwatch/leakwatch.toml".into()),
            reloads_ok: 1,
            reloads_failed: 1,
            last_reload_error: Some("line 3: unknown key `intervall`".into()),
        },
        peer_labels: true,
        targets: vec![app_target(), worker],
        fleet: Some(example_fleet()),
    }
}

/// A replica of group `api` waiting for one of its 2 slots, held by two others, after an
/// API error.
pub fn example_fleet() -> FleetStatus {
    let mut latency = Latency::default();
    for s in [0.004, 0.012, 0.013, 0.03, 0.7] {
        latency.observe(s);
    }
    let slot = |i: u32, holder: &str| SlotView {
        lease: crate::fleet::lease_name("api", i),
        holder: Some(holder.into()),
        renew_unix_ms: Some(1_760_006_168_000),
        unchanged_s: 2.0,
        duration_s: 15,
    };
    FleetStatus {
        group: "api".into(),
        namespace: "shop".into(),
        identity: "api-7d9f-xk2p4".into(),
        mode: Mode::Coordinated,
        slots_total: 2,
        slots: vec![slot(0, "api-7d9f-q8r2m"), slot(1, "api-7d9f-z5v7c")],
        held: None,
        go: None,
        deferred: Some(Deferred {
            since_unix_ms: 1_760_006_129_000,
            waited_s: 41.0,
            override_at_unix_ms: Some(1_760_007_329_000),
            override_reason: Some(GoReason::MaxWait),
            deadline_tte_s: 90.0,
        }),
        api: ApiView {
            up: true,
            last_error: None,
            last_ok_unix_ms: Some(1_760_006_168_000),
            requests_total: 9,
            errors_total: [("unreachable".to_string(), 1)].into(),
            latency,
        },
        acquire_total: [("busy".to_string(), 7), ("conflict".to_string(), 1)].into(),
        override_total: Default::default(),
        release_total: Default::default(),
    }
}

fn app_target() -> TargetStatus {
    let sample = app_sample();
    TargetStatus {
        name: "app".into(),
        selector: "cmdline_regex \"myapp --serve\"".into(),
        found: true,
        target: Some(sample.target),
        missing_reason: None,
        watching_since_unix_ms: Some(1_760_005_000_000),
        restarts_total: 2,
        sample: Some(sample),
        judged: app_judged(),
        collector_errors_total: vec![
            CollectorErrors {
                collector: Source::Fds,
                reason: UnknownKind::Gone,
                count: 2,
            },
            CollectorErrors {
                collector: Source::Tcp,
                reason: UnknownKind::Parse,
                count: 1,
            },
        ],
        poll_duration_seconds: Some(0.0042),
        actions: app_actions(),
        mode: Enforcement::Enforce,
        would_fail_flips_total: 0,
    }
}

/// A bundle written on the flip, and a later flip inside the cooldown.
fn app_actions() -> ActionsStatus {
    let count = |action, result, count| ActionCount {
        action,
        result,
        count,
    };
    ActionsStatus {
        configured: vec![Action::Bundle, Action::Signal],
        observe: vec![Action::Bundle],
        cooldown_s: 600.0,
        max_per_hour: 3,
        fired_last_hour: 1,
        last: Some(Firing {
            at_unix_ms: 1_760_006_100_000,
            pid: Some(31337),
            running: false,
            results: vec![ActionResult {
                action: Action::Bundle,
                result: ActionOutcome::Ok,
                detail: "bundle written: /var/lib/leakwatch/bundles/app-20251009T102820.000Z"
                    .into(),
            }],
        }),
        last_error: None,
        grace_left_ms: None,
        counts: vec![
            count(Action::Bundle, ActionOutcome::Ok, 1),
            count(Action::Bundle, ActionOutcome::Failed, 0),
            count(Action::Bundle, ActionOutcome::Skipped, 1),
            count(Action::Signal, ActionOutcome::Ok, 1),
            count(Action::Signal, ActionOutcome::Failed, 0),
            count(Action::Signal, ActionOutcome::Skipped, 1),
        ],
    }
}

/// A target whose selector matches no process.
pub fn missing_target(name: &str) -> TargetStatus {
    TargetStatus {
        name: name.into(),
        selector: format!("name \"{name}\""),
        found: false,
        target: None,
        missing_reason: Some(format!("no process named \"{name}\"")),
        watching_since_unix_ms: None,
        restarts_total: 0,
        sample: None,
        judged: Judged {
            series: Vec::new(),
            rules: Vec::new(),
            budget: Budget {
                limit: 3,
                ..Budget::default()
            },
            verdict: Verdict::healthy(vec![format!("no process named \"{name}\"; failing open")]),
        },
        collector_errors_total: Vec::new(),
        poll_duration_seconds: None,
        actions: crate::actions::ActionsStatus::default(),
        mode: Enforcement::Enforce,
        would_fail_flips_total: 0,
    }
}

/// The incident: CLOSE_WAIT sockets piling up towards RLIMIT_NOFILE = 1024.
pub fn app_sample() -> Sample {
    Sample {
        target: TargetId {
            pid: 4242,
            starttime_ticks: 98_765_432,
        },
        taken_at_unix_ms: 1_760_006_170_000,
        taken_at_mono_ms: 6_170_000,
        fds: Some(Fds {
            open: Some(1001),
            allocated: Some(1001),
            by_type: Some(FdTypes {
                socket: 968,
                pipe: 6,
                anon_inode: 9,
                file: 18,
                other: 0,
            }),
            // The target alone in its cgroup: the breakdown from the last walk.
            by_type_age_ms: 20_000,
            vanished: 0,
        }),
        fd_limit: Some(FdLimit {
            soft: Limit::Limited(1024),
            hard: Limit::Limited(524_288),
        }),
        tcp: Some(app_tcp()),
        memory: Some(Memory {
            rss_bytes: Some(412 * MIB),
            anon_bytes: Some(371 * MIB),
            file_bytes: Some(39 * MIB),
            shmem_bytes: Some(2 * MIB),
            swap_bytes: Some(0),
            peak_rss_bytes: Some(415 * MIB),
            virtual_bytes: Some(2210 * MIB),
        }),
        heap: Some(Heap {
            estimate_bytes: 336 * MIB,
            brk_rss_bytes: 8 * MIB,
            anon_rss_bytes: 328 * MIB,
            anon_mappings: 17,
            stack_mappings: 64,
            age_ms: 0,
        }),
        cgroup_memory: Some(app_cgroup()),
        threads: Some(Threads {
            count: 72,
            ..Threads::default()
        }),
        stuck: Some(Stuck {
            count: 37,
            workers: Vec::new(),
            stuck_after_ms: 120_000,
        }),
        tcp_stalled: Some(TcpStalled {
            count: 3,
            send_queue_bytes: 7_864_320,
            write_memory_bytes: 12_582_912,
            stall_after_ms: 60_000,
            ..TcpStalled::default()
        }),
        close_wait_age: Some(CloseWaitAge {
            oldest_ms: 754_250,
            aged: 612,
            aged_after_ms: 120_000,
        }),
        ..Sample::default()
    }
}

fn app_tcp() -> Tcp {
    let peer = |ip: IpAddr, port, inbound, sockets| PeerCount {
        peer: Peer { ip, port, inbound },
        sockets,
        recv_queue_bytes: 0,
        send_queue_bytes: 0,
    };
    let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
    let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x15));
    Tcp {
        states: TcpStates {
            established: 21,
            close_wait: 940,
            listen: 2,
            ..TcpStates::default()
        },
        recv_queue_bytes: 0,
        send_queue_bytes: 0,
        top_close_wait_peers: vec![
            peer(v4(10, 0, 3, 7), 443, false, 612),
            peer(v4(10, 0, 3, 8), 443, false, 328),
        ],
        top_established_peers: vec![
            peer(v4(10, 0, 5, 20), 8080, true, 12),
            peer(v6, 5432, false, 9),
        ],
        other_sockets: 5,
        unparsed_lines: 0,
        source: TcpTable::ProcNet,
        method: SocketsMethod::default(),
    }
}

/// A v2 cgroup at 1.2 GiB of its 2 GiB limit, under mild memory pressure.
fn app_cgroup() -> CgroupMemory {
    let line = |avg10, avg60, avg300, total_us| PressureLine {
        avg10,
        avg60,
        avg300,
        total_us,
    };
    CgroupMemory {
        version: CgroupVersion::V2,
        path: "/kubepods.slice/pod-app.slice/cri-containerd-app.scope".into(),
        source: CgroupDir::default(),
        current_bytes: Some(1228 * MIB),
        max: Some(Limit::Limited(2048 * MIB)),
        high: Some(Limit::Unlimited),
        working_set_bytes: Some(1024 * MIB),
        anon_bytes: Some(880 * MIB),
        file_bytes: Some(260 * MIB),
        sock_bytes: Some(64 * MIB),
        inactive_file_bytes: Some(204 * MIB),
        events: Some(MemoryEvents {
            low: Some(0),
            high: Some(0),
            max: Some(12),
            oom: Some(0),
            oom_kill: Some(0),
        }),
        pressure: Some(Pressure {
            some: line(1.25, 0.8, 0.31, 4_250_000),
            full: Some(line(0.5, 0.3, 0.12, 1_730_500)),
        }),
        max_from: None,
        high_from: None,
    }
}

fn app_judged() -> Judged {
    let gib = (1024 * MIB) as f64;
    Judged {
        series: vec![
            series(
                Series::Fds,
                1001.0,
                Some(1024.0),
                Some(trend(0.025, true)),
                Some(920.0),
            ),
            series(
                Series::TcpCloseWait,
                940.0,
                None,
                Some(trend(0.024, true)),
                None,
            ),
            series(
                Series::Rss,
                (412 * MIB) as f64,
                Some(2.0 * gib),
                Some(trend(1200.5, false)),
                None,
            ),
            series(
                Series::CgroupMemory,
                gib,
                Some(2.0 * gib),
                Some(trend(32768.0, true)),
                Some(32768.0),
            ),
            series(Series::Threads, 72.0, None, None, None),
        ],
        rules: vec![
            rule(
                Series::Fds,
                RuleState::Failing,
                Some("fds: 1001/1024 open (97.8% >= 90%)"),
            ),
            rule(Series::TcpCloseWait, RuleState::Pending, None),
            rule(Series::CgroupMemory, RuleState::Passing, None),
            rule(Series::Threads, RuleState::Passing, None),
        ],
        budget: Budget {
            limit: 3,
            caused_last_hour: 1,
            exhausted: false,
            refills_in_ms: None,
        },
        verdict: Verdict {
            healthy: false,
            failing: vec!["fds: 1001/1024 open (97.8% >= 90%)".into()],
            notes: Vec::new(),
            ..Verdict::default()
        },
    }
}

fn series(
    series: Series,
    value: f64,
    limit: Option<f64>,
    trend: Option<Trend>,
    seconds_to_exhaustion: Option<f64>,
) -> SeriesStatus {
    SeriesStatus {
        series,
        value: Some(value),
        limit,
        limit_source: limit.map(|_| "example".into()),
        unknown: None,
        limit_unknown: None,
        not_collected: false,
        leak_suspected: trend.as_ref().is_some_and(|t| t.trusted) && limit.is_some(),
        trend,
        seconds_to_exhaustion,
    }
}

fn trend(slope_per_s: f64, trusted: bool) -> Trend {
    Trend {
        slope_per_s,
        samples: 120,
        span_s: 595.0,
        rising_share: if trusted { 0.93 } else { 0.55 },
        mann_kendall_z: if trusted { 9.41 } else { 1.12 },
        trusted,
        untrusted_because: (!trusted).then(|| "Mann-Kendall z 1.12 < 2.58".into()),
    }
}

fn rule(series: Series, state: RuleState, message: Option<&str>) -> RuleStatus {
    let failing = state == RuleState::Failing;
    RuleStatus {
        series,
        state,
        failing,
        consecutive_failing: if failing {
            5
        } else {
            u32::from(state == RuleState::Pending)
        },
        consecutive_passing: 0,
        checks: Vec::new(),
        message: message.map(str::to_string),
    }
}
