//! Judging: from samples to a verdict. Pure: no I/O, no clock; every time comes from the
//! samples (`taken_at_mono_ms`) or from the caller.
//!
//! Per target, a [`TargetJudge`] keeps one [`Window`] per series and one hysteresis tracker
//! per rule. Each tick it takes the new sample, projects every series against its limit
//! ([`trend`]), runs each rule's checks ([`rules`]), applies `fail_after`/`recover_after`,
//! and composes the [`Verdict`]: only positive evidence fails it. A trusted rise towards a
//! limit that no rule fails on yet is a warning (`leak_suspected`), never a 503. Unknown values, a missing
//! or zombie target and an exhausted restart budget ([`budget`]) answer healthy with the
//! reason in `notes`.

pub mod budget;
pub mod flip;
pub mod observe;
pub mod rules;
pub mod series;
pub mod spec;
pub mod trend;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::sample::{Sample, TargetState};
use crate::units;

pub use budget::{Budget, RestartLog};
pub use flip::{Answer, FlipDetector, Health, Transition};
pub use observe::Enforcement;
pub use rules::{
    CheckKind, CheckOutcome, CheckResult, Clearing, RuleState, RuleStatus, RuleTracker,
};
pub use spec::{default_rules, effective_rules, JudgeConfig, OnMissing, Rule, Series};
pub use trend::{Point, Trend, Window};

/// One series as judged this tick: the `/status` "series" entry and the
/// `growth_per_second` / `seconds_to_exhaustion` metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesStatus {
    pub series: Series,
    /// The latest value (count or bytes); `None` when unknown.
    pub value: Option<f64>,
    /// The limit it is judged against (count or bytes), when there is one.
    pub limit: Option<f64>,
    /// Where the limit comes from: `RLIMIT_NOFILE (soft)`, `memory.max`, `config`, ...
    pub limit_source: Option<String>,
    /// Why the value is unknown.
    pub unknown: Option<String>,
    /// The value is not read every tick (smaps at its slower cadence) and was not this one.
    pub not_collected: bool,
    /// Why the limit is unknown although the series has one (`/proc/PID/limits` or
    /// `memory.max` unreadable): checks against it are not judged.
    pub limit_unknown: Option<String>,
    /// The robust slope over the window; `None` with fewer than 3 points.
    pub trend: Option<Trend>,
    /// `(limit - value) / slope` when the trend is trusted and rising and there is a limit.
    pub seconds_to_exhaustion: Option<f64>,
    /// The trend is trusted and rising towards a limit, after warm-up: a leak, whether or
    /// not a rule fails on it yet (far from the limit, usage under `usage_floor`).
    pub leak_suspected: bool,
}

/// The verdict for one target: what `/healthz/NAME` answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Verdict {
    /// `false` only on positive evidence: a rule failing on known values.
    pub healthy: bool,
    /// One human line per failing rule, e.g. `fds: 1001/1024 open (97.8% >= 90%)`.
    pub failing: Vec<String>,
    /// Why the verdict is healthy although something is wrong or unknown (fail open):
    /// a missing target, unknown values, an exhausted restart budget.
    pub notes: Vec<String>,
    /// One line per series suspected of leaking (a trusted rise towards its limit), e.g.
    /// `cgroup_memory: leak suspected: +163 KiB/s, limit 320 MiB in ~9m (14% used)`. A
    /// warning for a human: it never changes the status code.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Why a verdict the judge found unhealthy answers 200 anyway: the restart waits for a
    /// fleet slot, or a `signal_grace` runs (the first note says more; each failing line
    /// is kept as `would fail: ...`), or the target is in observe mode (each failing line
    /// is kept as `observe: would fail: ...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restraint: Option<Restraint>,
}

/// What holds back a failing verdict, in the order the pipeline applies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Restraint {
    /// `[fleet]`: the group's restart slots are all taken; this restart waits its turn.
    Deferred,
    /// The actions signalled the target at the flip; `/healthz` fails when the grace ends.
    SignalGrace,
    /// `mode = "observe"`: the target is judged as always, but `/healthz` never fails
    /// ([`observe`]).
    Observe,
}

impl Restraint {
    pub fn as_str(self) -> &'static str {
        match self {
            Restraint::Deferred => "deferred",
            Restraint::SignalGrace => "signal_grace",
            Restraint::Observe => "observe",
        }
    }
}

impl Verdict {
    pub fn healthy(notes: Vec<String>) -> Verdict {
        Verdict {
            healthy: true,
            notes,
            ..Verdict::default()
        }
    }

    /// This unhealthy verdict held back by `why`: healthy, `first` as the first note, each
    /// failing line kept as `would fail: ...`, warnings kept.
    pub fn restrained(self, why: Restraint, first: String) -> Verdict {
        self.held_back(why, Some(first), "would fail: ")
    }

    /// Healthy with `restraint: why`: `first` (if any), then each failing line as
    /// `{prefix}LINE`, then the judge's notes; warnings kept.
    fn held_back(self, why: Restraint, first: Option<String>, prefix: &str) -> Verdict {
        let mut notes: Vec<String> = first.into_iter().collect();
        notes.extend(self.failing.into_iter().map(|l| format!("{prefix}{l}")));
        notes.extend(self.notes);
        Verdict {
            healthy: true,
            failing: Vec::new(),
            notes,
            warnings: self.warnings,
            restraint: Some(why),
        }
    }
}

/// What the judge knows of the target this tick.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// A sample of the current target.
    Sample(&'a Sample),
    /// No process matches the selector (or it could not be resolved); `reason` says why.
    /// `unseen`: leakwatch cannot see it (hidepid, permissions), so `on_missing` does not
    /// apply and the verdict fails open.
    Missing {
        reason: &'a str,
        unseen: bool,
        now_mono_ms: u64,
    },
}

/// Everything judged for one target this tick.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judged {
    pub series: Vec<SeriesStatus>,
    pub rules: Vec<RuleStatus>,
    pub budget: Budget,
    pub verdict: Verdict,
}

impl Judged {
    /// What the judge found, before any [`hold`]: the flip detector's input.
    pub fn health(&self) -> Health {
        if !self.verdict.healthy {
            Health::Unhealthy
        } else if self.budget.exhausted && self.rules.iter().any(|r| r.failing) {
            Health::WouldFail
        } else {
            Health::Healthy
        }
    }
}

/// A hold on the verdict: the actions signalled the target at the flip and asked for
/// `signal_grace`, so `/healthz` keeps answering 200 for `left_ms` more and a dump can
/// finish before the kubelet acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    pub left_ms: u64,
}

/// The verdict `/healthz` answers: `found`, or under a hold an unhealthy one turned
/// healthy, saying why first and keeping each failing line as `would fail: ...`.
pub fn hold(found: Verdict, hold: Option<Hold>) -> Verdict {
    let Some(Hold { left_ms }) = hold.filter(|_| !found.healthy) else {
        return found;
    };
    let left = units::duration_ms(left_ms);
    found.restrained(
        Restraint::SignalGrace,
        format!(
            "signal_grace: the target was signalled at the flip; /healthz reports the failure \
             in ~{left}"
        ),
    )
}

/// The judging state of one target: windows, rule trackers, the restart log.
#[derive(Debug, Clone, Default)]
pub struct TargetJudge {
    windows: BTreeMap<Series, Window>,
    trackers: BTreeMap<Series, RuleTracker>,
    restarts: RestartLog,
    /// Monotonic ms when the current target was first seen (warm-up without a start time).
    first_seen_mono_ms: Option<u64>,
    /// Whether the last verdict on the current target was unhealthy (a restart that follows
    /// is counted against the budget).
    last_unhealthy: bool,
    restarts_total: u64,
}

impl TargetJudge {
    pub fn new() -> TargetJudge {
        TargetJudge::default()
    }

    /// Restarts seen since leakwatch started watching (the first target is not one).
    pub fn restarts_total(&self) -> u64 {
        self.restarts_total
    }

    /// The target is a new process (first seen, restarted, or its pid reused): reset the
    /// windows and rule states. Unless it is the first, count a restart, and charge it to
    /// the budget when leakwatch's last verdict on the old process was unhealthy.
    pub fn new_target(&mut self, now_mono_ms: u64) {
        if self.first_seen_mono_ms.is_some() {
            self.restarts_total += 1;
            self.restarts.record(now_mono_ms, self.last_unhealthy);
        }
        self.windows.clear();
        self.trackers.clear();
        self.first_seen_mono_ms = Some(now_mono_ms);
        self.last_unhealthy = false;
    }

    /// leakwatch asked for no restart this tick although the verdict failed (observe mode
    /// answered 200): a restart that follows is not charged to the budget.
    pub fn forgo_restart(&mut self) {
        self.last_unhealthy = false;
    }

    /// Judge one tick.
    pub fn judge(
        &mut self,
        input: Input<'_>,
        cfg: &JudgeConfig,
        rules: &[(Series, Rule)],
    ) -> Judged {
        let sample = match input {
            Input::Sample(s) if s.state == TargetState::Running => s,
            Input::Sample(s) => {
                let reason = match s.state {
                    TargetState::Zombie => "the target exited and is a zombie (not yet reaped)",
                    _ => "the target exited during the scan",
                };
                return self.absent(reason, false, s.taken_at_mono_ms, cfg);
            }
            Input::Missing {
                reason,
                unseen,
                now_mono_ms,
            } => return self.absent(reason, unseen, now_mono_ms, cfg),
        };
        let now = sample.taken_at_mono_ms;
        if self.first_seen_mono_ms.is_none() {
            self.first_seen_mono_ms = Some(now);
        }
        let warm = self.warming_up(sample, cfg);
        let mut series_out = Vec::new();
        let mut rules_out = Vec::new();
        for (series, rule) in effective_rules(rules) {
            let mut status = series::read(sample, series, &rule);
            let window = self.windows.entry(series).or_default();
            if let Some(v) = status.value {
                window.push(Point {
                    t_ms: now,
                    value: v,
                });
            }
            window.trim(now, cfg.window);
            status.trend = window.trend(cfg);
            status.seconds_to_exhaustion =
                trend::seconds_to_exhaustion(status.value, status.limit, status.trend.as_ref());
            status.leak_suspected = !warm
                && status.limit.is_some_and(|l| l > 0.0)
                && status
                    .trend
                    .as_ref()
                    .is_some_and(|t| t.trusted && t.slope_per_s > 0.0);
            let tracker = self.trackers.entry(series).or_default();
            let clearing =
                tracker.clearing(|| window.points().iter().map(|p| p.value).reduce(f64::max));
            let checks = rules::run_checks(&status, &rule, cfg, warm, clearing.as_ref());
            rules_out.push(tracker.update(series, checks, cfg, now));
            series_out.push(status);
        }
        let budget = self.restarts.budget(now, cfg.restart_budget);
        let mut verdict = compose(&series_out, &rules_out, &budget);
        // A series a rule fails on says so in the failing lines already.
        let failing =
            |s: &SeriesStatus| rules_out.iter().any(|r| r.series == s.series && r.failing);
        verdict.warnings = series_out
            .iter()
            .filter(|s| !failing(s))
            .filter_map(leak_line)
            .collect();
        // A restart is charged to the budget only when leakwatch asked for it.
        self.last_unhealthy = !verdict.healthy;
        Judged {
            series: series_out,
            rules: rules_out,
            budget,
            verdict,
        }
    }

    fn absent(&mut self, reason: &str, unseen: bool, now: u64, cfg: &JudgeConfig) -> Judged {
        let budget = self.restarts.budget(now, cfg.restart_budget);
        let verdict = match cfg.on_missing {
            _ if unseen => Verdict::healthy(vec![format!(
                "{reason}; leakwatch cannot see the target, failing open"
            )]),
            OnMissing::Pass => Verdict::healthy(vec![format!("{reason}; failing open")]),
            OnMissing::Fail => Verdict {
                healthy: false,
                failing: vec![format!("target: {reason} (on_missing = \"fail\")")],
                ..Verdict::default()
            },
        };
        Judged {
            series: Vec::new(),
            rules: Vec::new(),
            budget,
            verdict,
        }
    }

    /// Trend rules stay quiet for `warmup` after the target started (by its start time, or
    /// when leakwatch first saw it if the start time is unknown).
    fn warming_up(&self, sample: &Sample, cfg: &JudgeConfig) -> bool {
        let warmup_ms = cfg.warmup.as_millis() as u64;
        if warmup_ms == 0 {
            return false;
        }
        let started = sample.process.as_ref().and_then(|p| p.started_unix_ms);
        match started {
            Some(start) => sample.taken_at_unix_ms.saturating_sub(start) < warmup_ms,
            None => {
                let first = self.first_seen_mono_ms.unwrap_or(sample.taken_at_mono_ms);
                sample.taken_at_mono_ms.saturating_sub(first) < warmup_ms
            }
        }
    }
}

/// The warning for a series suspected of leaking: its slope, when it reaches its limit at
/// that slope, and how much of the limit it uses.
pub fn leak_line(s: &SeriesStatus) -> Option<String> {
    if !s.leak_suspected {
        return None;
    }
    let (t, limit) = (s.trend.as_ref()?, s.limit?);
    let b = series::is_bytes(s.series);
    let rate = rules::rate_text(t.slope_per_s, b);
    let limit_text = rules::amount(limit, b);
    let when = match s.seconds_to_exhaustion {
        Some(tte) => format!("limit {limit_text} in ~{}", rules::approx_secs(tte)),
        None => format!("limit {limit_text}"),
    };
    let used = s
        .value
        .map(|v| format!(" ({:.0}% used)", (v / limit * 100.0).floor()))
        .unwrap_or_default();
    Some(format!(
        "{}: leak suspected: {rate}, {when}{used}",
        s.series
    ))
}

/// The verdict from the rule states: unhealthy on any failing rule with a known value,
/// unless the restart budget is exhausted (fail open, and say so).
pub fn compose(series: &[SeriesStatus], rules: &[RuleStatus], budget: &Budget) -> Verdict {
    let failing: Vec<String> = rules
        .iter()
        .filter(|r| r.failing)
        .filter_map(|r| r.message.clone())
        .collect();
    let mut notes: Vec<String> = series
        .iter()
        .filter_map(|s| {
            let what = match (&s.unknown, &s.limit_unknown) {
                (Some(why), _) => format!("unknown ({why})"),
                (None, Some(why)) => format!("limit unknown ({why})"),
                (None, None) => return None,
            };
            let judged = rules
                .iter()
                .any(|r| r.series == s.series && r.state == RuleState::Unknown);
            judged.then(|| format!("{}: {what}; not judged", s.series))
        })
        .collect();
    if failing.is_empty() {
        return Verdict::healthy(notes);
    }
    if budget.exhausted {
        notes.insert(0, budget.note());
        notes.extend(failing.iter().map(|l| format!("would fail: {l}")));
        return Verdict::healthy(notes);
    }
    Verdict {
        healthy: false,
        failing,
        notes,
        ..Verdict::default()
    }
}
