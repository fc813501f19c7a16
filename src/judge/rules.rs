//! A rule's checks (`max`, `max_ratio`, `exhaust_within`, `max_growth`) on one series, and
//! the hysteresis that turns per-tick outcomes into a rule state: `fail_after` consecutive
//! failing ticks to fail; once failed, `recover_after` consecutive ticks on which the
//! evidence is clearly gone ([`Clearing`]) and at least `min_failing` to clear.
//!
//! A rule fails on evidence of exhaustion; a GC drop under `usage_floor`, a trend made
//! untrusted by that drop or a level dipping just under its threshold does not make that
//! evidence go away. So a check that failed is judged on the way out by stricter terms
//! than on the way in (Netdata's 95/85 alarms, Monit's cycles): levels clear
//! [`LEVEL_BAND`] below their threshold, the usage floor is judged on the window's peak,
//! and a projection clears only at [`CLEAR_MARGIN`] times its horizon, whatever the trend's
//! trust. A kubelet restarts only after an unbroken run of failed probes: a verdict that
//! clears between two of them never gets the target restarted.

use serde::Serialize;

use super::series::is_bytes;
use super::spec::{JudgeConfig, Rule, Series};
use super::{SeriesStatus, Trend};
use crate::units;

/// A level (`max`, `max_ratio`) that failed clears only at or below this share of its
/// threshold: fds failing at 90 % of the limit clear under 81 %.
pub const LEVEL_BAND: f64 = 0.9;

/// A trend check that failed clears only when the projection is this many times its
/// threshold: `exhaust_within = "30m"` clears at 45 minutes to the limit, `max_growth`
/// below two thirds of its rate.
pub const CLEAR_MARGIN: f64 = 1.5;

/// The terms a failing rule's checks are judged by this tick.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Clearing {
    /// The checks that failed since the rule last passed: judged on the way out.
    pub failed: Vec<CheckKind>,
    /// The highest value in the window (the usage the floor is judged on, and the point
    /// the projection starts from); `None` when the window is empty.
    pub peak: Option<f64>,
}

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
pub enum CheckOutcome {
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
    pub outcome: CheckOutcome,
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
    /// Monotonic ms when the rule failed (after `fail_after`); `None` while it is not failing.
    failed_at_ms: Option<u64>,
    /// The checks that failed since the rule last passed for good.
    failed_checks: Vec<CheckKind>,
    consecutive_failing: u32,
    consecutive_passing: u32,
    last_failure: Option<String>,
    last_unknown: bool,
}

impl RuleTracker {
    /// The terms this tick's checks are judged by: `None` while the rule is not failing
    /// (the checks as configured), else the stricter terms of [`Clearing`]; `peak` (the
    /// window's highest value) is asked only then.
    pub fn clearing(&self, peak: impl FnOnce() -> Option<f64>) -> Option<Clearing> {
        self.failed_at_ms.map(|_| Clearing {
            failed: self.failed_checks.clone(),
            peak: peak(),
        })
    }

    /// Take this tick's checks (judged at `now_ms`) and return the rule's state.
    pub fn update(
        &mut self,
        series: Series,
        checks: Vec<CheckResult>,
        judge: &JudgeConfig,
        now_ms: u64,
    ) -> RuleStatus {
        let outcome = combine(&checks);
        match outcome {
            CheckOutcome::Fail => {
                self.consecutive_failing = self.consecutive_failing.saturating_add(1);
                self.consecutive_passing = 0;
                let failed = checks.iter().filter(|c| c.outcome == CheckOutcome::Fail);
                for c in failed.clone() {
                    if !self.failed_checks.contains(&c.check) {
                        self.failed_checks.push(c.check);
                    }
                }
                let details: Vec<&str> = failed.map(|c| c.detail.as_str()).collect();
                self.last_failure = Some(format!("{series}: {}", details.join("; ")));
                if self.consecutive_failing >= judge.fail_after && self.failed_at_ms.is_none() {
                    self.failed_at_ms = Some(now_ms);
                }
                self.last_unknown = false;
            }
            CheckOutcome::Pass => {
                self.consecutive_passing = self.consecutive_passing.saturating_add(1);
                self.consecutive_failing = 0;
                // Checks with nothing to judge (the series is gone) are no evidence to hold.
                let vanished = checks
                    .iter()
                    .all(|c| c.outcome == CheckOutcome::NotApplicable);
                if self.consecutive_passing >= judge.recover_after
                    && (vanished || self.held_ms(judge, now_ms) == 0)
                {
                    self.failed_at_ms = None;
                }
                if self.failed_at_ms.is_none() {
                    self.failed_checks.clear();
                }
                self.last_unknown = false;
            }
            CheckOutcome::Unknown => self.last_unknown = true,
            _ => {}
        }
        self.status(series, checks, judge, now_ms)
    }

    /// How much longer `min_failing` holds the rule failing at `now_ms`.
    fn held_ms(&self, judge: &JudgeConfig, now_ms: u64) -> u64 {
        let Some(at) = self.failed_at_ms else {
            return 0;
        };
        let min = judge.min_failing.as_millis() as u64;
        (at.saturating_add(min)).saturating_sub(now_ms)
    }

    fn status(
        &self,
        series: Series,
        checks: Vec<CheckResult>,
        judge: &JudgeConfig,
        now_ms: u64,
    ) -> RuleStatus {
        let failed = self.failed_at_ms.is_some();
        let failing = failed && !self.last_unknown;
        let state = if self.last_unknown {
            RuleState::Unknown
        } else if failed && self.consecutive_passing > 0 {
            RuleState::Recovering
        } else if failed {
            RuleState::Failing
        } else if self.consecutive_failing > 0 {
            RuleState::Pending
        } else {
            RuleState::Passing
        };
        let message = match (failing, state) {
            (true, RuleState::Recovering) => self.last_failure.as_ref().map(|m| {
                let passing = self.consecutive_passing.min(judge.recover_after);
                match self.held_ms(judge, now_ms) {
                    held if held > 0 && passing == judge.recover_after => format!(
                        "{m} (recovering: {passing}/{} passing, held {} more by min_failing)",
                        judge.recover_after,
                        units::duration_ms(held.div_ceil(1000) * 1000)
                    ),
                    _ => format!(
                        "{m} (recovering: {passing}/{} passing)",
                        judge.recover_after
                    ),
                }
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
fn combine(checks: &[CheckResult]) -> CheckOutcome {
    let any = |o: CheckOutcome| checks.iter().any(|c| c.outcome == o);
    if any(CheckOutcome::Fail) {
        CheckOutcome::Fail
    } else if any(CheckOutcome::Unknown) {
        CheckOutcome::Unknown
    } else if any(CheckOutcome::Hold) {
        CheckOutcome::Hold
    } else {
        CheckOutcome::Pass
    }
}

/// Run every check the rule configures against this tick's series status; a failing rule's
/// checks that failed before are judged on the way out by the terms of `clearing`.
pub fn run_checks(
    s: &SeriesStatus,
    rule: &Rule,
    judge: &JudgeConfig,
    warming_up: bool,
    clearing: Option<&Clearing>,
) -> Vec<CheckResult> {
    let mut out = Vec::new();
    let mut push = |check, (outcome, detail): (CheckOutcome, String)| {
        out.push(CheckResult {
            check,
            outcome,
            detail,
        })
    };
    let Some(value) = s.value else {
        let (outcome, detail) = match &s.unknown {
            Some(why) => (CheckOutcome::Unknown, format!("unknown: {why}")),
            None if s.not_collected => (CheckOutcome::Hold, "not read this tick".to_string()),
            // The machine does not offer it (no memory cgroup): nothing to judge. Not held:
            // a rule must not stay failing on evidence that is gone.
            None => (CheckOutcome::NotApplicable, "not available".to_string()),
        };
        for (check, on) in configured(rule) {
            if on {
                push(check, (outcome, detail.clone()));
            }
        }
        return out;
    };
    let b = is_bytes(s.series);
    // The terms on the way out, for a check that failed and passes on the way in.
    let leaving = |kind: CheckKind, entered: &(CheckOutcome, String)| {
        clearing
            .filter(|c| entered.0 == CheckOutcome::Pass && c.failed.contains(&kind))
            .map(|c| c.peak.unwrap_or(value).max(value))
    };
    if let Some(max) = rule.max {
        let mut r = level_max(s, value, max, b);
        if leaving(CheckKind::Max, &r).is_some() {
            let at = max * LEVEL_BAND;
            let what = format!("{}{}", amount(value, b), noun(s.series));
            r = level_clear(value, at, &amount(at, b), &what);
        }
        push(CheckKind::Max, r);
    }
    if let Some(ratio) = rule.max_ratio {
        let mut r = level_ratio(s, value, ratio, b);
        if let (Some(_), Some(limit)) = (leaving(CheckKind::MaxRatio, &r), s.limit) {
            let what = format!(
                "{}/{}{} ({})",
                amount(value, b),
                amount(limit, b),
                noun(s.series),
                percent(value / limit, false)
            );
            let at = ratio * LEVEL_BAND;
            let at_text = format!("{}%", trim_float(at * 100.0));
            r = level_clear(value / limit, at, &at_text, &what);
        }
        push(CheckKind::MaxRatio, r);
    }
    if let Some(horizon) = rule.exhaust_within {
        let h = horizon.as_secs_f64();
        let mut r = exhaust(s, value, h, judge, warming_up, b);
        if let Some(peak) = leaving(CheckKind::ExhaustWithin, &r) {
            r = exhaust_clear(s, peak, h, judge, b).unwrap_or(r);
        }
        push(CheckKind::ExhaustWithin, r);
    }
    if let Some(rate) = rule.max_growth_per_s {
        let mut r = growth(s, rate, warming_up, b);
        if leaving(CheckKind::MaxGrowth, &r).is_some() {
            r = growth_clear(s, rate, b).unwrap_or(r);
        }
        push(CheckKind::MaxGrowth, r);
    }
    out
}

fn level_max(s: &SeriesStatus, value: f64, max: f64, b: bool) -> (CheckOutcome, String) {
    let fail = value > max;
    let op = if fail { ">" } else { "<=" };
    (
        pass_fail(fail),
        format!(
            "{}{} ({op} max {})",
            amount(value, b),
            noun(s.series),
            amount(max, b)
        ),
    )
}

/// A level on the way out: `value` clears at or below `clear_at` (read as `at`), [`LEVEL_BAND`]
/// of its threshold. `what` is the value as the line shows it.
fn level_clear(value: f64, clear_at: f64, at: &str, what: &str) -> (CheckOutcome, String) {
    let fail = value > clear_at;
    let verb = if fail { "clears at" } else { "cleared at" };
    (pass_fail(fail), format!("{what}, {verb} {at} or below"))
}

fn configured(rule: &Rule) -> [(CheckKind, bool); 4] {
    [
        (CheckKind::Max, rule.max.is_some()),
        (CheckKind::MaxRatio, rule.max_ratio.is_some()),
        (CheckKind::ExhaustWithin, rule.exhaust_within.is_some()),
        (CheckKind::MaxGrowth, rule.max_growth_per_s.is_some()),
    ]
}

fn pass_fail(fail: bool) -> CheckOutcome {
    if fail {
        CheckOutcome::Fail
    } else {
        CheckOutcome::Pass
    }
}

fn level_ratio(s: &SeriesStatus, value: f64, ratio: f64, b: bool) -> (CheckOutcome, String) {
    let Some(limit) = s.limit.filter(|l| *l > 0.0) else {
        return no_limit(s);
    };
    let share = value / limit;
    let fail = share >= ratio;
    let op = if fail { ">=" } else { "<" };
    (
        pass_fail(fail),
        format!(
            "{}/{}{} ({} {op} {}%)",
            amount(value, b),
            amount(limit, b),
            noun(s.series),
            percent(share, fail),
            trim_float(ratio * 100.0)
        ),
    )
}

/// A check that needs a limit, without one: unknown when the series has one that could not
/// be read (fail open, with a note), else not applicable.
fn no_limit(s: &SeriesStatus) -> (CheckOutcome, String) {
    match &s.limit_unknown {
        Some(why) => (CheckOutcome::Unknown, format!("limit unknown: {why}")),
        None => (CheckOutcome::NotApplicable, "no limit".to_string()),
    }
}

/// The trend a trend check may act on, or why it passes (no trusted growth) or stays
/// quiet (warm-up).
fn trusted_trend(s: &SeriesStatus, warming_up: bool) -> Result<&Trend, (CheckOutcome, String)> {
    if warming_up {
        return Err((CheckOutcome::Quiet, "warming up".to_string()));
    }
    let Some(t) = s.trend.as_ref() else {
        return Err((CheckOutcome::Pass, "no trend yet".to_string()));
    };
    if !t.trusted {
        let why = t.untrusted_because.as_deref().unwrap_or("untrusted");
        return Err((CheckOutcome::Pass, format!("no sustained growth ({why})")));
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
) -> (CheckOutcome, String) {
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
            CheckOutcome::Pass,
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

fn growth(s: &SeriesStatus, max_rate: f64, warming_up: bool, b: bool) -> (CheckOutcome, String) {
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

/// `exhaust_within` on the way out: clears when the window's peak is under the usage
/// floor, the series is not rising, or the limit is [`CLEAR_MARGIN`] horizons away from
/// the peak at the window's slope, trusted or not (a GC drop makes the trend untrusted
/// without making the growth go away). `None` without a limit or a slope.
fn exhaust_clear(
    s: &SeriesStatus,
    peak: f64,
    horizon_s: f64,
    judge: &JudgeConfig,
    b: bool,
) -> Option<(CheckOutcome, String)> {
    let limit = s.limit.filter(|l| *l > 0.0)?;
    let slope = s.trend.as_ref()?.slope_per_s;
    let rate = rate_text(slope, b);
    let share = peak / limit;
    if share < judge.usage_floor {
        return Some((
            CheckOutcome::Pass,
            format!(
                "{rate}, the window's peak {} below usage_floor {}%",
                percent(share, false),
                trim_float(judge.usage_floor * 100.0)
            ),
        ));
    }
    if slope <= 0.0 {
        return Some((CheckOutcome::Pass, format!("{rate}, not rising")));
    }
    let tte = ((limit - peak) / slope).max(0.0);
    let clear_s = horizon_s * CLEAR_MARGIN;
    let fail = tte < clear_s;
    let verb = if fail { "clears at" } else { "cleared at" };
    Some((
        pass_fail(fail),
        format!(
            "{rate}, limit {} in ~{} from the window's peak {} ({verb} {})",
            amount(limit, b),
            approx_secs(tte),
            amount(peak, b),
            exact_secs(clear_s)
        ),
    ))
}

/// `max_growth` on the way out: clears when the window's slope, trusted or not, is under
/// the rate divided by [`CLEAR_MARGIN`].
fn growth_clear(s: &SeriesStatus, max_rate: f64, b: bool) -> Option<(CheckOutcome, String)> {
    let slope = s.trend.as_ref()?.slope_per_s;
    let clear_at = max_rate / CLEAR_MARGIN;
    let fail = slope > clear_at;
    let per = rate_per(max_rate, b);
    let verb = if fail { "clears at" } else { "cleared at" };
    Some((
        pass_fail(fail),
        format!(
            "{} ({verb} {})",
            rate_in(slope, b, per),
            rate_in(clear_at, b, per).trim_start_matches('+')
        ),
    ))
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
