//! Backtesting: what `/healthz` would have answered on recorded history. Per target, a
//! [`TargetHistory`] (each series' points, its limit, the process start times) is replayed
//! tick by tick through the same [`TargetJudge`](crate::judge::TargetJudge), rules and
//! defaults as `leakwatch run`, in virtual time ([`replay`]). The report says when the
//! verdict would have turned unhealthy (the flips), the restarts and exhaustions the data
//! shows, each flip's lead time, and the flips nothing followed (likely false alarms).
//! A kubelet restarts a target only after an unbroken run of failed probes, so each
//! restart and exhaustion also gets the lead *as the kubelet sees it* ([`Event`], from
//! [`lead`]): from the start of the 503 that lasted until it, with the runs of 503 that a
//! 200 cut short before it (a verdict that flapped). Each series' first suspicion of a
//! leak in a process ([`Suspicion`]) gets its own lead.
//!
//! With `--fleet K`, [`fleet`] replays the targets as the replicas of one fleet sharing K
//! restart slots, through the same slot state machine as `run` with `[fleet]`, for sizing K.
//!
//! Pure: no I/O and no clock. [`prometheus`] reads the history from a Prometheus server,
//! [`mapping`] turns its series into [`TargetHistory`]s, [`render`] writes the report.

pub mod fleet;
pub mod lead;
pub mod mapping;
pub mod prometheus;
pub mod recording;
pub mod render;
mod replay;
pub mod svg;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::judge::{JudgeConfig, Rule, Series};

pub use replay::replay;

/// Points of one series: (unix milliseconds, value), in time order.
pub type Points = Vec<(u64, f64)>;

/// A value at or above this share of its limit is an exhaustion: the fd table or the
/// cgroup is full (a process at its RLIMIT_NOFILE keeps a few fds free for its runtime,
/// and a scrape rarely lands on the instant of an OOM kill).
pub const EXHAUSTED_RATIO: f64 = 0.99;

/// The recorded history of one target.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetHistory {
    /// The labels the target's series share (its identity in the report).
    pub labels: BTreeMap<String, String>,
    /// Each judged series' values.
    pub values: BTreeMap<Series, Points>,
    /// Each series' limit over time (RLIMIT_NOFILE, the container's memory limit, pids.max);
    /// a limit of 0 or less is no limit.
    pub limits: BTreeMap<Series, Points>,
    /// The process start time, unix seconds: a change is a restart.
    pub starts: Points,
    /// A count of restarts (`leakwatch_target_restarts_total`): a rise is a restart.
    pub restart_counts: Points,
}

/// How the history is judged: a target's `[judge]` and rules from the config.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Setup {
    pub judge: JudgeConfig,
    /// The configured rules; series without one get the defaults, as in `run`.
    pub rules: Vec<(Series, Rule)>,
}

/// What ended a flip's lead: the target restarted, or a series reached its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeadTo {
    Restart,
    Exhaustion(Series),
}

/// A moment `/healthz` would have turned from 200 to 503.
#[derive(Debug, Clone, PartialEq)]
pub struct Flip {
    pub at_ms: u64,
    /// The failing rules (their series).
    pub rules: Vec<Series>,
    /// The verdict's failing lines, as `/healthz` says them.
    pub lines: Vec<String>,
    /// The next restart or exhaustion after the flip, and which it was.
    pub next: Option<(u64, LeadTo)>,
    /// Nothing happened within `exhaust_within` after the flip: `Some(true)`; something
    /// did: `Some(false)`; the history ends before that was known: `None`.
    pub false_alarm: Option<bool>,
    /// When `/healthz` answered 200 again (the first healthy tick, a restart's tick when the
    /// run lasted as long as the process); `None`: still 503 when the history ends.
    pub until_ms: Option<u64>,
}

impl Flip {
    /// The lead time: from the flip to the next restart or exhaustion.
    pub fn lead(&self) -> Option<Duration> {
        self.next
            .map(|(at, _)| Duration::from_millis(at.saturating_sub(self.at_ms)))
    }

    /// The 503 ended before the next restart or exhaustion (or ended, with none next): a
    /// kubelet sees no lead from this flip.
    pub fn interrupted(&self) -> bool {
        match (self.until_ms, self.next) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(u), Some((at, LeadTo::Restart))) => u < at,
            (Some(u), Some((at, LeadTo::Exhaustion(_)))) => u <= at,
        }
    }
}

/// A restart or an exhaustion, as a kubelet probing `/healthz` met it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    pub at_ms: u64,
    pub what: LeadTo,
    /// The runs of 503 (flips) of this process up to the event.
    pub runs: usize,
    /// When the run of 503 that lasted until the event began; `None` when `/healthz`
    /// answered 200 at the event (the last tick of the process, for a restart).
    pub unbroken_from_ms: Option<u64>,
    /// When the first of the runs began.
    pub first_flip_ms: Option<u64>,
}

impl Event {
    /// The lead a kubelet sees: from the start of the unbroken 503 to the event.
    pub fn kubelet_lead(&self) -> Option<Duration> {
        self.unbroken_from_ms
            .map(|from| Duration::from_millis(self.at_ms.saturating_sub(from)))
    }

    /// From the first flip of the process to the event.
    pub fn first_flip_lead(&self) -> Option<Duration> {
        self.first_flip_ms
            .map(|from| Duration::from_millis(self.at_ms.saturating_sub(from)))
    }

    /// The runs of 503 a 200 cut short before the event.
    pub fn interrupted_runs(&self) -> usize {
        self.runs - usize::from(self.unbroken_from_ms.is_some())
    }

    /// The verdict went back to 200 at least once between its first 503 and the event.
    pub fn flapped(&self) -> bool {
        self.interrupted_runs() > 0
    }
}

/// The first tick of a process on which a series was suspected of leaking (a trusted rise
/// towards its limit: `SeriesStatus::leak_suspected`), whether or not a rule failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Suspicion {
    pub at_ms: u64,
    pub series: Series,
    /// The window's slope then, per second.
    pub slope_per_s: f64,
    /// The naive time to the limit at that slope then.
    pub seconds_to_exhaustion: Option<f64>,
    pub value: Option<f64>,
    pub limit: Option<f64>,
    /// The judge's warning, e.g. `fds: leak suspected: +10/min, limit 1024 in ~45m (55% used)`.
    pub line: String,
    /// What followed in the same process: the series at its limit, else the restart.
    pub next: Option<(u64, LeadTo)>,
}

impl Suspicion {
    /// From the suspicion to the exhaustion or restart that followed.
    pub fn lead(&self) -> Option<Duration> {
        self.next
            .map(|(at, _)| Duration::from_millis(at.saturating_sub(self.at_ms)))
    }
}

/// A series at (or within 1 % of) its limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exhaustion {
    pub at_ms: u64,
    pub series: Series,
    pub value: f64,
    pub limit: f64,
}

/// One judged tick, for drawing: each series' value and limit, and the verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    pub at_ms: u64,
    pub healthy: bool,
    /// Series → (value, limit) as the judge saw them.
    pub series: BTreeMap<Series, (Option<f64>, Option<f64>)>,
}

/// The backtest of one target.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetReport {
    pub labels: BTreeMap<String, String>,
    /// Ticks judged.
    pub samples: usize,
    pub flips: Vec<Flip>,
    /// Restarts seen in the data (unix ms).
    pub restarts: Vec<u64>,
    pub exhaustions: Vec<Exhaustion>,
    /// Each restart and exhaustion, in time order, with the lead a kubelet saw.
    pub events: Vec<Event>,
    /// Each series' first suspicion of a leak, per process, in time order.
    pub suspicions: Vec<Suspicion>,
    pub ticks: Vec<Tick>,
}

impl TargetReport {
    /// Flips nothing followed within `exhaust_within`.
    pub fn false_alarms(&self) -> usize {
        self.flips
            .iter()
            .filter(|f| f.false_alarm == Some(true))
            .count()
    }

    /// The verdict flapped before some restart or exhaustion.
    pub fn flapped(&self) -> bool {
        self.events.iter().any(Event::flapped)
    }
}
