//! A rule's checks (`max`, `max_ratio`, `exhaust_within`, `max_growth`) on one series, and
//! the hysteresis that turns per-tick outcomes into a rule state: `fail_after` consecutive
//! failing ticks to fail, `recover_after` consecutive passing ticks to clear.

use serde::Serialize;

use super::series::is_bytes;
use super::spec::{JudgeConfig, Rule, Series};
use super::{SeriesStatus, Trend};
use crate::units;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    Max,
    MaxRatio,
    ExhaustWithin,
    MaxGrowth,
}

/// One check's result this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail,
    /// The value (or the limit it needs) could not be read: no evidence either way.
    Unknown,
    /// A trend check during warm-up.
    Quiet,
    /// The check needs a limit the series does not have.
    NotApplicable,
    /// The value is not read every tick (smaps): the rule keeps its state.
    Hold,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckResult {
    pub check: CheckKind,
    pub outcome: Outcome,
    /// What was compared, e.g. `1001/1024 open (97.8% >= 90%)`.
    pub detail: String,
}

/// A rule's state after hysteresis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleState {
    Passing,
    /// Failing ticks seen, fewer than `fail_after`.
    Pending,
    Failing,
    /// Failed, now passing, fewer than `recover_after` passing ticks.
    Recovering,
    /// The value is unknown this tick: the rule does not count (fail open).
    Unknown,
}

/// One rule as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleStatus {
    /// The rule's name is its series' name.
    pub series: Series,
    pub state: RuleState,
    /// Whether the rule counts against the verdict now.
    pub failing: bool,
    pub consecutive_failing: u32,
    pub consecutive_passing: u32,
    pub checks: Vec<CheckResult>,
    /// The `/healthz` line while the rule fails, e.g. `fds: +2.1/min, limit 1024 in ~14m (< 30m)`.
    pub message: Option<String>,
}

/// Hysteresis for one rule.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleTracker {
    failed: bool,
    consecutive_failing: u32,
    consecutive_passing: u32,
    last_failure: Option<String>,
    last_unknown: bool,
}

impl RuleTracker {
    /// Take this tick's checks and return the rule's state.
    pub fn update(
        &mut self,
        series: Series,
        checks: Vec<CheckResult>,
        judge: &JudgeConfig,
    ) -> RuleStatus {
        let outcome = combine(&checks);
        match outcome {
            Outcome::Fail => {
                self.consecutive_failing = self.consecutive_failing.saturating_add(1);
                self.consecutive_passing = 0;
                let details: Vec<&str> = checks
                    .iter()
                    .filter(|c| c.outcome == Outcome::Fail)
                    .map(|c| c.detail.as_str())
                    .collect();
                self.last_failure = Some(format!("{series}: {}", details.join("; ")));
                if self.consecutive_failing >= judge.fail_after {
                    self.failed = true;
                }
                self.last_unknown = false;
            }
            Outcome::Pass => {
                self.consecutive_passing = self.consecutive_passing.saturating_add(1);
                self.consecutive_failing = 0;
                if self.failed && self.consecutive_passing >= judge.recover_after {
                    self.failed = false;
                }
                self.last_unknown = false;
            }
            Outcome::Unknown => self.last_unknown = true,
            _ => {}
        }
        let failing = self.failed && !self.last_unknown;
        let state = if self.last_unknown {
            RuleState::Unknown
        } else if self.failed && self.consecutive_passing > 0 {
            RuleState::Recovering
        } else if self.failed {
            RuleState::Failing
        } else if self.consecutive_failing > 0 {
            RuleState::Pending
        } else {
            RuleState::Passing
        };
        let message = match (failing, state) {
            (true, RuleState::Recovering) => self.last_failure.as_ref().map(|m| {
                format!(
                    "{m} (recovering: {}/{} passing)",
                    self.consecutive_passing, judge.recover_after
                )
            }),
            (true, _) => self.last_failure.clone(),
            _ => None,
        };
        RuleStatus {
            series,
            state,
            failing,
            consecutive_failing: self.consecutive_failing,
            consecutive_passing: self.consecutive_passing,
            checks,
            message,
        }
    }
}

/// A tick fails when any check fails; else it is unknown when any is; else held when every
/// check is held; else it passes.
fn combine(checks: &[CheckResult]) -> Outcome {
    let any = |o: Outcome| checks.iter().any(|c| c.outcome == o);
    if any(Outcome::Fail) {
        Outcome::Fail
    } else if any(Outcome::Unknown) {
        Outcome::Unknown
    } else if any(Outcome::Hold) {
        Outcome::Hold
    } else {
        Outcome::Pass
    }
}

/// Run every check the rule configures against this tick's series status.
pub fn run_checks(
    s: &SeriesStatus,
    rule: &Rule,
    judge: &JudgeConfig,
    warming_up: bool,
) -> Vec<CheckResult> {
    let mut out = Vec::new();
    let mut push = |check, outcome, detail: String| {
        out.push(CheckResult {
            check,
            outcome,
            detail,
        })
    };
    let Some(value) = s.value else {
        let (outcome, detail) = match &s.unknown {
            Some(why) => (Outcome::Unknown, format!("unknown: {why}")),
            None if s.not_collected => (Outcome::Hold, "not read this tick".to_string()),
            // The machine does not offer it (no memory cgroup): nothing to judge. Not held:
            // a rule must not stay failing on evidence that is gone.
            None => (Outcome::NotApplicable, "not available".to_string()),
        };
        for (check, on) in configured(rule) {
            if on {
                push(check, outcome, detail.clone());
            }
        }
        return out;
    };
    let b = is_bytes(s.series);
    if let Some(max) = rule.max {
        let fail = value > max;
        let op = if fail { ">" } else { "<=" };
        push(
            CheckKind::Max,
            pass_fail(fail),
            format!(
                "{}{} ({op} max {})",
                amount(value, b),
                noun(s.series),
                amount(max, b)
            ),
        );
    }
    if let Some(ratio) = rule.max_ratio {
        push_ratio(&mut push, s, value, ratio, b);
    }
    if let Some(horizon) = rule.exhaust_within {
        let (outcome, detail) = exhaust(s, value, horizon.as_secs_f64(), judge, warming_up, b);
        push(CheckKind::ExhaustWithin, outcome, detail);
    }
    if let Some(rate) = rule.max_growth_per_s {
        let (outcome, detail) = growth(s, rate, warming_up, b);
        push(CheckKind::MaxGrowth, outcome, detail);
    }
    out
}

fn configured(rule: &Rule) -> [(CheckKind, bool); 4] {
    [
        (CheckKind::Max, rule.max.is_some()),
        (CheckKind::MaxRatio, rule.max_ratio.is_some()),
        (CheckKind::ExhaustWithin, rule.exhaust_within.is_some()),
        (CheckKind::MaxGrowth, rule.max_growth_per_s.is_some()),
    ]
}

fn pass_fail(fail: bool) -> Outcome {
    if fail {
        Outcome::Fail
    } else {
        Outcome::Pass
    }
}

fn push_ratio(
    push: &mut impl FnMut(CheckKind, Outcome, String),
    s: &SeriesStatus,
    value: f64,
    ratio: f64,
    b: bool,
) {
    let Some(limit) = s.limit.filter(|l| *l > 0.0) else {
        let (outcome, detail) = no_limit(s);
        return push(CheckKind::MaxRatio, outcome, detail);
    };
    let share = value / limit;
    let fail = share >= ratio;
    let op = if fail { ">=" } else { "<" };
    push(
        CheckKind::MaxRatio,
        pass_fail(fail),
        format!(
            "{}/{}{} ({} {op} {}%)",
            amount(value, b),
            amount(limit, b),
            noun(s.series),
            percent(share, fail),
            trim_float(ratio * 100.0)
        ),
    );
}

/// A check that needs a limit, without one: unknown when the series has one that could not
/// be read (fail open, with a note), else not applicable.
fn no_limit(s: &SeriesStatus) -> (Outcome, String) {
    match &s.limit_unknown {
        Some(why) => (Outcome::Unknown, format!("limit unknown: {why}")),
        None => (Outcome::NotApplicable, "no limit".to_string()),
    }
}

/// The trend a trend check may act on, or why it passes (no trusted growth) or stays
/// quiet (warm-up).
fn trusted_trend(s: &SeriesStatus, warming_up: bool) -> Result<&Trend, (Outcome, String)> {
    if warming_up {
        return Err((Outcome::Quiet, "warming up".to_string()));
    }
    let Some(t) = s.trend.as_ref() else {
        return Err((Outcome::Pass, "no trend yet".to_string()));
    };
    if !t.trusted {
        let why = t.untrusted_because.as_deref().unwrap_or("untrusted");
        return Err((Outcome::Pass, format!("no sustained growth ({why})")));
    }
    Ok(t)
}

fn exhaust(
    s: &SeriesStatus,
    value: f64,
    horizon_s: f64,
    judge: &JudgeConfig,
    warming_up: bool,
    b: bool,
) -> (Outcome, String) {
    let Some(limit) = s.limit.filter(|l| *l > 0.0) else {
        return no_limit(s);
    };
    let t = match trusted_trend(s, warming_up) {
        Ok(t) => t,
        Err(quiet_or_pass) => return quiet_or_pass,
    };
    let rate = rate_text(t.slope_per_s, b);
    let limit_text = amount(limit, b);
    if value / limit < judge.usage_floor {
        return (
            Outcome::Pass,
            format!(
                "{rate}, usage {} below usage_floor {}%",
                percent(value / limit, false),
                trim_float(judge.usage_floor * 100.0)
            ),
        );
    }
    let tte = s.seconds_to_exhaustion.unwrap_or(f64::INFINITY);
    let fail = tte < horizon_s;
    let op = if fail { "<" } else { ">=" };
    (
        pass_fail(fail),
        if tte < 1.0 {
            format!("{rate}, limit {limit_text} reached")
        } else {
            format!(
                "{rate}, limit {limit_text} in ~{} ({op} {})",
                approx_secs(tte),
                exact_secs(horizon_s)
            )
        },
    )
}

fn growth(s: &SeriesStatus, max_rate: f64, warming_up: bool, b: bool) -> (Outcome, String) {
    let t = match trusted_trend(s, warming_up) {
        Ok(t) => t,
        Err(quiet_or_pass) => return quiet_or_pass,
    };
    let fail = t.slope_per_s > max_rate;
    let op = if fail { ">" } else { "<=" };
    // Both sides in the threshold's unit: `+120.0/min (> 10.0/min)`, not `+2.0/s (> 10.0/min)`.
    let per = rate_per(max_rate, b);
    (
        pass_fail(fail),
        format!(
            "{} ({op} {})",
            rate_in(t.slope_per_s, b, per),
            rate_in(max_rate, b, per).trim_start_matches('+')
        ),
    )
}

/// The word after a count: `1001/1024 open` for fds, `working set` for cgroup memory.
fn noun(series: Series) -> &'static str {
    match series {
        Series::Fds => " open",
        Series::CgroupMemory => " working set",
        _ => "",
    }
}

/// A value as the verdict lines print it: `1.8 GiB` for bytes, `1001` for counts.
pub fn amount(v: f64, bytes: bool) -> String {
    if bytes {
        units::bytes(v.max(0.0) as u64)
    } else {
        trim_float(v)
    }
}

/// `+2.1/min` for counts (per second from 1/s); `+119.0 KiB/s` for bytes (per minute below
/// 1 KiB/s).
pub fn rate_text(per_s: f64, bytes: bool) -> String {
    rate_in(per_s, bytes, rate_per(per_s, bytes))
}

/// The unit a rate reads best in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Per {
    Second,
    Minute,
}

fn rate_per(per_s: f64, bytes: bool) -> Per {
    let one = if bytes { 1024.0 } else { 1.0 };
    if per_s.abs() >= one {
        Per::Second
    } else {
        Per::Minute
    }
}

fn rate_in(per_s: f64, bytes: bool, per: Per) -> String {
    let sign = if per_s < 0.0 { "-" } else { "+" };
    let (a, unit) = match per {
        Per::Second => (per_s.abs(), "s"),
        Per::Minute => (per_s.abs() * 60.0, "min"),
    };
    if bytes {
        format!("{sign}{}/{unit}", units::bytes(a as u64))
    } else {
        format!("{sign}{a:.1}/{unit}")
    }
}

/// A share as a percentage with one decimal: rounded when it is at or over the threshold it
/// is compared with (`97.8%` for 1001/1024), rounded down when under it, so a share just
/// under never reads as the threshold itself (`89.9% < 90%`, not `90.0% < 90%`).
fn percent(share: f64, at_or_over: bool) -> String {
    let tenths = share * 1000.0;
    let tenths = if at_or_over {
        tenths.round()
    } else {
        tenths.floor()
    };
    format!("{:.1}%", tenths / 10.0)
}

/// `1024` for whole numbers, `0.5` otherwise; to one decimal, so a configured `0.57` reads
/// `57` although 0.57 × 100 is 56.99999999999999 in floating point.
fn trim_float(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r.fract() == 0.0 && r.abs() < 1e15 {
        format!("{}", r as i64)
    } else {
        format!("{r:.1}")
    }
}

/// A projected duration, rounded: `45s`, `14m`, `3h20m`, `2d`.
pub fn approx_secs(s: f64) -> String {
    if !s.is_finite() {
        return "never".to_string();
    }
    let s = s.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 if s % 3600 / 60 == 0 => format!("{}h", s / 3600),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d", s / 86_400),
    }
}

/// A configured duration as written: `30m`, `1h`, `90s`.
pub fn exact_secs(s: f64) -> String {
    let s = s.round() as u64;
    if s >= 3600 && s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s >= 60 && s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}
