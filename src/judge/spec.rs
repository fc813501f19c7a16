//! The judge's vocabulary: the [`Series`] a rule can judge, a [`Rule`]'s checks, the
//! knobs of judging ([`JudgeConfig`], `[judge]` in the config file) and the rules every
//! target gets by default. The config validates into these types; the judge owns them.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::series::table::SeriesDef;

/// What a target that cannot be found answers (`on_missing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnMissing {
    Pass,
    Fail,
}

/// How a target's series are judged (`[judge]`, overridable per target).
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeConfig {
    pub window: Duration,
    pub min_samples: u32,
    pub min_span: Duration,
    pub warmup: Duration,
    pub fail_after: u32,
    pub recover_after: u32,
    /// A rule that failed fails for at least this long, whatever the ticks after say: a
    /// kubelet restarts only after `failureThreshold` failed probes in a row.
    pub min_failing: Duration,
    pub usage_floor: f64,
    pub restart_budget: u32,
    pub stuck_after: Duration,
    /// A socket with data queued and nothing acknowledged this long is stalled.
    pub stall_after: Duration,
    pub on_missing: OnMissing,
}

impl Default for JudgeConfig {
    fn default() -> Self {
        JudgeConfig {
            window: Duration::from_secs(600),
            min_samples: 30,
            // The whole window: within its first window, a ramp of a healthy slow sawtooth
            // (period close to the window) is a leak to any statistic (docs/judging.md, "How it
            // judges"). Leaks run for hours; the incidents' lead times are the same.
            min_span: Duration::from_secs(600),
            warmup: Duration::from_secs(120),
            fail_after: 3,
            recover_after: 3,
            // A kubelet's default probe (every 10 s, 3 failures) needs up to 30 s of
            // unbroken 503 from the flip; plus one period for a probe late under load.
            min_failing: Duration::from_secs(40),
            usage_floor: 0.5,
            restart_budget: 3,
            stuck_after: Duration::from_secs(120),
            stall_after: Duration::from_secs(60),
            on_missing: OnMissing::Pass,
        }
    }
}

/// The series a rule can judge; the names are the rule names in the config. Everything
/// else about each is its row of the series table (`series/table.rs`), in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Series {
    Fds,
    TcpEstablished,
    TcpCloseWait,
    Rss,
    Anon,
    Heap,
    CgroupMemory,
    Threads,
    StuckThreads,
    TcpStalled,
    TcpCloseWaitAged,
    CgroupSock,
}

impl Series {
    /// Every series, in order: the rows of [`TABLE`](super::series::table::TABLE).
    pub const ALL: [Series; 12] = super::series::table::ALL;

    /// Its row of the series table: name, unit, collector, how to read and put it.
    pub fn def(self) -> &'static SeriesDef {
        &super::series::table::TABLE[self as usize]
    }

    /// The series named `name` (a rule's name in the config).
    pub fn named(name: &str) -> Option<Series> {
        Series::ALL.into_iter().find(|s| s.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        self.def().name
    }

    /// Whether the kernel gives this series a limit (fds: RLIMIT_NOFILE, cgroup memory:
    /// memory.max, threads: pids.max); rss/anon/heap borrow the cgroup's when there is one.
    pub fn natural_limit(self) -> bool {
        self.def().natural_limit
    }
}

impl fmt::Display for Series {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rule: fails when any configured check fails.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rule {
    /// Absolute ceiling (count or bytes).
    pub max: Option<f64>,
    /// Ceiling as a share of the series' limit.
    pub max_ratio: Option<f64>,
    /// Fails when the projected time to reach the limit is shorter.
    pub exhaust_within: Option<Duration>,
    /// Fails on sustained growth faster than this, per second.
    pub max_growth_per_s: Option<f64>,
    /// A configured limit for series with no natural one.
    pub limit: Option<f64>,
}

/// Safe with no config at all: fds, the cgroup working set and threads each at 90% of
/// their limit (RLIMIT_NOFILE, memory.max, pids.max) or exhausting it within 30 minutes.
pub fn default_rules() -> Vec<(Series, Rule)> {
    let level_and_trend = Rule {
        max_ratio: Some(0.9),
        exhaust_within: Some(Duration::from_secs(30 * 60)),
        ..Rule::default()
    };
    [Series::Fds, Series::CgroupMemory, Series::Threads]
        .into_iter()
        .map(|s| (s, level_and_trend.clone()))
        .collect()
}

/// `configured`, and the safe defaults for every series not configured, in series order.
pub fn effective_rules(configured: &[(Series, Rule)]) -> Vec<(Series, Rule)> {
    let mut rules = configured.to_vec();
    for (series, rule) in default_rules() {
        if !rules.iter().any(|(s, _)| *s == series) {
            rules.push((series, rule));
        }
    }
    rules.sort_by_key(|(s, _)| *s);
    rules
}
