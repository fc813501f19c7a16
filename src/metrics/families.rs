//! Every metric family `/metrics` exports: name, HELP (with its unit), type and labels.
//! Names are an interface (dashboards, alerts and the README table rely on them): change
//! them only together with the golden file `tests/fixtures/metrics/golden.prom`.

/// Gauge, counter or histogram; counters and histograms are set from totals kept in the
/// snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
    Histogram,
}

/// One metric family.
#[derive(Debug)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    /// Label names, in the order values are passed to [`super::out::Out::put`].
    pub labels: &'static [&'static str],
}

const fn gauge(name: &'static str, labels: &'static [&'static str], help: &'static str) -> Family {
    Family {
        name,
        help,
        kind: Kind::Gauge,
        labels,
    }
}

const fn counter(
    name: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
) -> Family {
    Family {
        name,
        help,
        kind: Kind::Counter,
        labels,
    }
}

// leakwatch itself (no target label).

pub const BUILD_INFO: Family = gauge(
    "leakwatch_build_info",
    &["version"],
    "leakwatch's version in the label; the value is always 1.",
);
pub const TICKS: Family = counter(
    "leakwatch_ticks_total",
    &[],
    "Ticks (resolve, collect, judge and publish every target) since leakwatch started, count.",
);
pub const TICKS_SKIPPED: Family = counter(
    "leakwatch_ticks_skipped_total",
    &[],
    "Ticks skipped because the previous one overran the interval, count.",
);
pub const TICK_DURATION: Family = gauge(
    "leakwatch_tick_duration_seconds",
    &[],
    "Duration of the last tick over all targets, seconds.",
);
pub const CONFIG_RELOADS: Family = counter(
    "leakwatch_config_reloads_total",
    &["result"],
    "Config reloads by result: ok, or failed (the old config kept running), count.",
);
pub const CONFIG_LAST_RELOAD_OK: Family = gauge(
    "leakwatch_config_last_reload_successful",
    &[],
    "0 while the last config reload was refused (the old config runs), else 1.",
);

// One target: its process and verdict.

pub const TARGET_UP: Family = gauge(
    "leakwatch_target_up",
    &["target"],
    "1 when a process matches the target's selector and was sampled this tick, else 0.",
);
pub const TARGET_RESTARTS: Family = counter(
    "leakwatch_target_restarts_total",
    &["target"],
    "New processes seen for the target since leakwatch started (restarts, pid reuse), count.",
);
pub const HEALTHY: Family = gauge(
    "leakwatch_healthy",
    &["target"],
    "1 when /healthz for the target answers 200, 0 when it answers 503.",
);
pub const RESTART_BUDGET_EXHAUSTED: Family = gauge(
    "leakwatch_restart_budget_exhausted",
    &["target"],
    "1 when restart_budget restarts followed an unhealthy verdict within the last hour and \
     leakwatch fails open, else 0.",
);
pub const MODE: Family = gauge(
    "leakwatch_mode",
    &["target", "mode"],
    "1 for the target's mode, 0 for the other: enforce (a failing verdict answers 503) or \
     observe (it answers 200 and says what would fail).",
);
pub const WOULD_FAIL: Family = gauge(
    "leakwatch_would_fail",
    &["target"],
    "1 while the target is in observe mode and its verdict fails: /healthz answers 200 where \
     it would answer 503 (and a liveness probe would restart the target), else 0.",
);
pub const WOULD_FAIL_FLIPS: Family = counter(
    "leakwatch_would_fail_flips_total",
    &["target"],
    "Flips to unhealthy the judge found while the target was in observe mode: the times \
     /healthz would have turned 503, count.",
);
pub const RULE_FAILING: Family = gauge(
    "leakwatch_rule_failing",
    &["target", "rule"],
    "1 when the rule (named after its series) counts against the verdict, else 0.",
);
pub const GROWTH: Family = gauge(
    "leakwatch_growth_per_second",
    &["target", "series"],
    "Robust (Theil-Sen) slope of the series over the trend window, units per second \
     (bytes/s for memory series, count/s otherwise); negative when falling.",
);
pub const TIME_TO_EXHAUSTION: Family = gauge(
    "leakwatch_seconds_to_exhaustion",
    &["target", "series"],
    "Projected time until the series reaches its limit at its trusted growth rate, seconds.",
);
pub const LEAK_SUSPECTED: Family = gauge(
    "leakwatch_leak_suspected",
    &["target", "series"],
    "1 when the series grows steadily (a trusted, rising trend after warmup) towards its \
     limit, whether or not a rule fails on it yet, else 0. A warning: /healthz does not \
     change for it. Only for series with a limit.",
);
pub const POLL_DURATION: Family = gauge(
    "leakwatch_poll_duration_seconds",
    &["target"],
    "Duration of the target's collection in the last tick, seconds.",
);
pub const COLLECTOR_ERRORS: Family = counter(
    "leakwatch_collector_errors_total",
    &["target", "collector", "reason"],
    "Collector failures for the target since leakwatch started, by collector and reason, count.",
);

pub const ACTIONS: Family = counter(
    "leakwatch_actions_total",
    &["target", "action", "result"],
    "Actions on a healthy->unhealthy flip (bundle, signal, exec) by result: ok, failed, or \
     skipped (cooldown, hourly cap, restart budget, a target gone or not the one judged), count.",
);

// One target: what the sample says.

pub const OPEN_FDS: Family = gauge(
    "leakwatch_open_fds",
    &["target"],
    "File descriptors the target holds (what RLIMIT_NOFILE is checked against), count.",
);
pub const MAX_FDS: Family = gauge(
    "leakwatch_max_fds",
    &["target"],
    "The target's soft RLIMIT_NOFILE, count; absent when unlimited or unknown.",
);
pub const OPEN_FDS_BY_TYPE: Family = gauge(
    "leakwatch_open_fds_by_type",
    &["target", "type"],
    "The target's open fds by what they point at (socket, pipe, anon_inode, file, other), count.",
);
pub const TCP_SOCKETS: Family = gauge(
    "leakwatch_tcp_sockets",
    &["target", "state"],
    "The target's TCP sockets (IPv4 and IPv6) by state, count.",
);
pub const TCP_PEER_SOCKETS: Family = gauge(
    "leakwatch_tcp_peer_sockets",
    &["target", "state", "direction", "peer", "local_port"],
    "The target's TCP sockets to its top peers, count (only with peer_labels = true). \
     Outbound: peer is IP:PORT; inbound: peer is the client's IP and local_port the \
     target's listening port.",
);
pub const MEMORY: Family = gauge(
    "leakwatch_memory_bytes",
    &["target", "kind"],
    "The target process's memory, bytes: rss, anon, file, shmem and swap from \
     /proc/PID/status; heap is the malloc estimate from /proc/PID/smaps.",
);
pub const SAMPLE_AGE: Family = gauge(
    "leakwatch_sample_age_seconds",
    &["target", "source"],
    "How old a value read at its own cadence is, seconds: heap (memory_bytes{kind=\"heap\"}, \
     from smaps every smaps_every) and fd_types (open_fds_by_type, every fd_types_every). \
     Between reads the value is the last one read of the same process; 0 on a tick that \
     read it. Absent with the value.",
);
pub const CGROUP_MEMORY: Family = gauge(
    "leakwatch_cgroup_memory_bytes",
    &["target", "kind"],
    "Memory of the target's whole cgroup, bytes: current, max (absent when unlimited), \
     working_set (current - inactive_file), anon, file, sock.",
);
pub const CGROUP_MEMORY_EVENTS: Family = counter(
    "leakwatch_cgroup_memory_events_total",
    &["target", "event"],
    "Memory events of the target's cgroup as the kernel counts them (memory.events; cgroup v1: \
     failcnt as max), count.",
);
pub const CGROUP_MEMORY_PRESSURE: Family = gauge(
    "leakwatch_cgroup_memory_pressure",
    &["target", "window"],
    "Share of wall time at least one task of the target's cgroup stalled on memory over the \
     window (memory.pressure \"some\" avg10/avg60/avg300), ratio 0..1 (the kernel's percent / \
     100).",
);
pub const CGROUP_MEMORY_PRESSURE_FULL: Family = gauge(
    "leakwatch_cgroup_memory_pressure_full",
    &["target", "window"],
    "Share of wall time all tasks of the target's cgroup stalled on memory over the window \
     (memory.pressure \"full\" avg10/avg60/avg300), ratio 0..1.",
);
pub const CGROUP_MEMORY_STALL: Family = counter(
    "leakwatch_cgroup_memory_pressure_stall_seconds_total",
    &["target", "kind"],
    "Total time the target's cgroup stalled on memory (memory.pressure total), seconds; kind \
     some: at least one task stalled, full: all tasks.",
);
pub const THREADS: Family = gauge(
    "leakwatch_threads",
    &["target"],
    "The target's threads, count.",
);
pub const STUCK_THREADS: Family = gauge(
    "leakwatch_stuck_threads",
    &["target"],
    "The target's workers blocked in one socket call without a context switch for at least \
     stuck_after, count.",
);
pub const TCP_STALLED_SOCKETS: Family = gauge(
    "leakwatch_tcp_stalled_sockets",
    &["target"],
    "The target's TCP sockets with data queued to send whose peer has acknowledged nothing \
     new (tcpi_bytes_acked) for at least stall_after, count. Absent without tcp_info (a \
     target in another network namespace).",
);
pub const TCP_STALLED_BYTES: Family = gauge(
    "leakwatch_tcp_stalled_bytes",
    &["target", "kind"],
    "What the stalled sockets pin, bytes; kind send_queue: their Send-Q (written, not \
     acknowledged), write_memory: their write queues' memory (skmeminfo wmem_queued).",
);
pub const TCP_CLOSE_WAIT_OLDEST: Family = gauge(
    "leakwatch_tcp_close_wait_oldest_seconds",
    &["target"],
    "How long the target's oldest CLOSE_WAIT socket has been in CLOSE_WAIT (since leakwatch \
     first saw it there), seconds; 0 when there is none.",
);

// The fleet's restart slots (`[fleet]`); every series has the `group` label.

pub const FLEET_MODE: Family = gauge(
    "leakwatch_fleet_mode",
    &["group", "mode"],
    "1 for how restarts are decided now: coordinated (through the group's Leases), \
     local_fallback (the Kubernetes API is unusable: local decisions, staggered per pod), or \
     off (no [fleet]: group is empty); 0 for the other modes.",
);
pub const FLEET_SLOTS: Family = gauge(
    "leakwatch_fleet_slots",
    &["group"],
    "The group's restart slots (max_concurrent), count.",
);
pub const FLEET_SLOTS_HELD: Family = gauge(
    "leakwatch_fleet_slots_held",
    &["group"],
    "Restart slots seen held at the last read of the Leases (this pod's included), count.",
);
pub const FLEET_SLOT_HELD: Family = gauge(
    "leakwatch_fleet_slot_held",
    &["group"],
    "1 while this pod holds a restart slot (from the verdict's flip until the restarted \
     target has been healthy for healthy_for), else 0.",
);
pub const FLEET_DEFERRED: Family = gauge(
    "leakwatch_fleet_deferred",
    &["group"],
    "1 while a restart is due but waits for a slot (/healthz answers 200, deferred), else 0.",
);
pub const FLEET_DEFERRED_SECONDS: Family = gauge(
    "leakwatch_fleet_deferred_seconds",
    &["group"],
    "How long the deferred restart has waited for a slot, seconds; 0 when none waits.",
);
pub const FLEET_ACQUIRE: Family = counter(
    "leakwatch_fleet_acquire_total",
    &["group", "result"],
    "Attempts to take a restart slot, by result: acquired, busy (every slot held), conflict \
     (another replica wrote first), error (the API failed), count.",
);
pub const FLEET_OVERRIDE: Family = counter(
    "leakwatch_fleet_override_total",
    &["group", "reason"],
    "Restarts let through without a slot, by reason: deadline (exhaustion within \
     restart_cost + 30s), max_wait, fallback_stagger (the API unusable, this pod's stagger \
     passed), count.",
);
pub const FLEET_RELEASE: Family = counter(
    "leakwatch_fleet_release_total",
    &["group", "reason"],
    "Restart slots given back, by reason: healthy (the restarted target healthy for \
     healthy_for), max_hold, shutdown, lost (taken over after failed renewals), count.",
);
pub const FLEET_API_UP: Family = gauge(
    "leakwatch_fleet_api_up",
    &["group"],
    "1 when the last Kubernetes API request was answered (a 409 counts), else 0.",
);
pub const FLEET_API_ERRORS: Family = counter(
    "leakwatch_fleet_api_errors_total",
    &["group", "kind"],
    "Failed Kubernetes API requests, by kind: unreachable, timeout, unauthorized, forbidden, \
     not_found, server, malformed, config, other, count.",
);
pub const FLEET_API_REQUEST: Family = Family {
    name: "leakwatch_fleet_api_request_seconds",
    help: "Kubernetes API requests (get and replace of a Lease), by duration, seconds.",
    kind: Kind::Histogram,
    labels: &["group"],
};

/// Every family, registered on each render (families without samples are left out).
pub const ALL: &[&Family] = &[
    &BUILD_INFO,
    &TICKS,
    &TICKS_SKIPPED,
    &TICK_DURATION,
    &CONFIG_RELOADS,
    &CONFIG_LAST_RELOAD_OK,
    &TARGET_UP,
    &TARGET_RESTARTS,
    &HEALTHY,
    &RESTART_BUDGET_EXHAUSTED,
    &MODE,
    &WOULD_FAIL,
    &WOULD_FAIL_FLIPS,
    &RULE_FAILING,
    &GROWTH,
    &TIME_TO_EXHAUSTION,
    &LEAK_SUSPECTED,
    &POLL_DURATION,
    &COLLECTOR_ERRORS,
    &ACTIONS,
    &OPEN_FDS,
    &MAX_FDS,
    &OPEN_FDS_BY_TYPE,
    &TCP_SOCKETS,
    &TCP_PEER_SOCKETS,
    &MEMORY,
    &SAMPLE_AGE,
    &CGROUP_MEMORY,
    &CGROUP_MEMORY_EVENTS,
    &CGROUP_MEMORY_PRESSURE,
    &CGROUP_MEMORY_PRESSURE_FULL,
    &CGROUP_MEMORY_STALL,
    &THREADS,
    &STUCK_THREADS,
    &TCP_STALLED_SOCKETS,
    &TCP_STALLED_BYTES,
    &TCP_CLOSE_WAIT_OLDEST,
    &FLEET_MODE,
    &FLEET_SLOTS,
    &FLEET_SLOTS_HELD,
    &FLEET_SLOT_HELD,
    &FLEET_DEFERRED,
    &FLEET_DEFERRED_SECONDS,
    &FLEET_ACQUIRE,
    &FLEET_OVERRIDE,
    &FLEET_RELEASE,
    &FLEET_API_UP,
    &FLEET_API_ERRORS,
    &FLEET_API_REQUEST,
];
