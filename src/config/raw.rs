//! Stage one: the TOML as written. Every key optional, unknown keys rejected; values check
//! themselves (see [`values`](super::values)) so errors point at the offending line.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::actions::RawActions;
use super::values::{HumanDuration, Quantity, Rate, Ratio};
use crate::judge::{Enforcement, OnMissing};
use crate::target::SelectorRegex;

/// Declares a struct holding the `[judge]` keys plus `$extra` fields, and `judge_keys()`
/// returning the `[judge]` part as a [`RawJudge`]: the same keys are valid globally and in
/// each `[[target]]` (serde cannot flatten into a struct that denies unknown fields).
macro_rules! with_judge_keys {
    ($(#[$attr:meta])* pub struct $name:ident { $($extra:tt)* }) => {
        $(#[$attr])*
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($extra)*
            pub window: Option<HumanDuration>,
            pub min_samples: Option<u32>,
            pub min_span: Option<HumanDuration>,
            pub warmup: Option<HumanDuration>,
            pub fail_after: Option<u32>,
            pub recover_after: Option<u32>,
            pub min_failing: Option<HumanDuration>,
            pub usage_floor: Option<Ratio>,
            pub restart_budget: Option<u32>,
            pub stuck_after: Option<HumanDuration>,
            pub stall_after: Option<HumanDuration>,
            pub on_missing: Option<OnMissing>,
        }

        impl $name {
            pub fn judge_keys(&self) -> RawJudge {
                RawJudge {
                    window: self.window,
                    min_samples: self.min_samples,
                    min_span: self.min_span,
                    warmup: self.warmup,
                    fail_after: self.fail_after,
                    recover_after: self.recover_after,
                    min_failing: self.min_failing,
                    usage_floor: self.usage_floor,
                    restart_budget: self.restart_budget,
                    stuck_after: self.stuck_after,
                    stall_after: self.stall_after,
                    on_missing: self.on_missing,
                }
            }
        }
    };
}

with_judge_keys! {
    /// `[judge]`, and the judge keys of a `[[target]]`.
    pub struct RawJudge {}
}

with_judge_keys! {
    /// One `[[target]]`.
    pub struct RawTarget {
        /// The target's label; with no other selector, also the exact `comm` to select.
        pub name: Option<String>,
        pub pid: Option<i32>,
        pub pidfile: Option<PathBuf>,
        pub name_regex: Option<SelectorRegex>,
        pub cmdline_regex: Option<SelectorRegex>,
        pub cgroup: Option<PathBuf>,
        pub systemd_unit: Option<String>,
        /// `"enforce"` or `"observe"`; over the top-level `mode`.
        pub mode: Option<Enforcement>,
        #[serde(default)]
        pub rules: RawRules,
        /// `[target.actions]`: overlays the global `[actions]`, key by key.
        pub actions: Option<RawActions>,
    }
}

/// `[target.rules.SERIES]`: the keys are the series names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRules {
    pub fds: Option<RawRule>,
    pub tcp_established: Option<RawRule>,
    pub tcp_close_wait: Option<RawRule>,
    pub rss: Option<RawRule>,
    pub anon: Option<RawRule>,
    pub heap: Option<RawRule>,
    pub cgroup_memory: Option<RawRule>,
    pub threads: Option<RawRule>,
    pub stuck_threads: Option<RawRule>,
    pub tcp_stalled: Option<RawRule>,
    pub tcp_close_wait_aged: Option<RawRule>,
    pub cgroup_sock: Option<RawRule>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub max: Option<Quantity>,
    pub max_ratio: Option<Ratio>,
    pub exhaust_within: Option<HumanDuration>,
    pub max_growth: Option<Rate>,
    /// A limit for series without a natural one (rss/anon/heap outside a limited cgroup).
    pub limit: Option<Quantity>,
}

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `"enforce"` (the default) or `"observe"`: whether a failing verdict fails /healthz.
    pub mode: Option<Enforcement>,
    pub listen: Option<SocketAddr>,
    pub probe_listen: Option<SocketAddr>,
    pub interval: Option<HumanDuration>,
    pub smaps_every: Option<HumanDuration>,
    pub fd_types_every: Option<HumanDuration>,
    pub proc_root: Option<PathBuf>,
    pub cgroup_root: Option<PathBuf>,
    /// Export each target's top peers as metric labels (top-K only).
    pub peer_labels: Option<bool>,
    /// Append every tick's judged values to this file (JSON lines), for `backtest`.
    pub record: Option<PathBuf>,
    /// Rotate the recording (to `FILE.1`) past this size.
    pub record_max_size: Option<Quantity>,
    pub http: Option<RawHttp>,
    pub judge: Option<RawJudge>,
    pub actions: Option<RawActions>,
    pub fleet: Option<RawFleet>,
    #[serde(default)]
    pub target: Vec<toml::Spanned<RawTarget>>,
}

/// `[fleet]`: restart slots shared by the replicas of a group.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFleet {
    pub group: Option<String>,
    pub max_concurrent: Option<RawSlots>,
    pub replicas: Option<u32>,
    pub namespace: Option<String>,
    pub identity: Option<String>,
    pub kubeconfig: Option<PathBuf>,
    pub lease_duration: Option<HumanDuration>,
    pub renew_every: Option<HumanDuration>,
    pub healthy_for: Option<HumanDuration>,
    pub max_hold: Option<HumanDuration>,
    pub max_wait: Option<HumanDuration>,
    pub restart_cost: Option<HumanDuration>,
    pub fallback_spread: Option<HumanDuration>,
    pub api_timeout: Option<HumanDuration>,
}

/// `max_concurrent`: a count, or a percentage of `replicas` (`"25%"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawSlots {
    Count(i64),
    Text(String),
}

/// `[http]`: how the endpoints are served.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// A file holding the bearer token required by `/metrics` and `/status`.
    pub token_file: Option<PathBuf>,
    pub max_connections: Option<u32>,
    pub header_timeout: Option<HumanDuration>,
}
