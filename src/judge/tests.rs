//! Judging on synthetic windows: every scenario of the design's "Judging" section (flat, linear
//! leak, GC sawtooth, spike, step, counter reset, oscillation around a threshold, warm-up, the
//! restart budget, fail open) fed tick by tick through a [`TargetJudge`], as the daemon would.

use std::time::Duration;

use super::*;
use crate::error::{Unknown, UnknownKind};
use crate::sample::{
    CgroupMemory, CgroupPids, FdLimit, Fds, Heap, Limit, ProcessInfo, Sample, Source, TargetState,
    Tcp, Threads,
};

mod incidents;
mod surge;

const MONO0_MS: u64 = 50_000_000;
const UNIX0_MS: u64 = 1_800_000_000_000;
const HOUR_MS: u64 = 3_600_000;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// What one target is judged by, as the config gives it.
#[derive(Debug, Clone)]
struct TargetConfig {
    judge: JudgeConfig,
    rules: Vec<(Series, Rule)>,
}

/// A target with `rules` configured and the defaults for every other series.
fn target(rules: Vec<(Series, Rule)>) -> TargetConfig {
    TargetConfig {
        judge: JudgeConfig::default(),
        rules,
    }
}

/// [`target`] with a 5-minute `min_span`, half the window: the span the judging mechanics
/// below (when a trend is first trusted, how it fails) were worked out with. The default
/// (the whole window) is what `tests/incidents.rs` replays.
fn short_span(rules: Vec<(Series, Rule)>) -> TargetConfig {
    let mut t = target(rules);
    t.judge.min_span = mins(5);
    t
}

fn mins(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

fn per_min(n: f64) -> f64 {
    n / 60.0
}

/// Feeds one target's samples to a [`TargetJudge`], one tick every `interval_ms`, with both
/// clocks advancing together. The target started an hour before the first tick (warm-up is
/// over) unless [`Feed::started_now`] says otherwise.
struct Feed {
    judge: TargetJudge,
    cfg: TargetConfig,
    interval_ms: u64,
    now_mono_ms: u64,
    now_unix_ms: u64,
    started_unix_ms: Option<u64>,
    fd_limit: Limit,
    memory_max: Limit,
    memory_high: Limit,
    pids_max: Limit,
    /// Tasks of other processes in the target's pids cgroup; `None`: no `pids.current`.
    other_tasks: Option<u64>,
}

impl Feed {
    fn new(cfg: TargetConfig) -> Feed {
        let mut judge = TargetJudge::new();
        judge.new_target(MONO0_MS);
        Feed {
            judge,
            cfg,
            interval_ms: 5_000,
            now_mono_ms: MONO0_MS,
            now_unix_ms: UNIX0_MS,
            started_unix_ms: Some(UNIX0_MS - HOUR_MS),
            fd_limit: Limit::Limited(1024),
            memory_max: Limit::Limited(2 * GIB),
            memory_high: Limit::Unlimited,
            pids_max: Limit::Unlimited,
            other_tasks: Some(0),
        }
    }

    fn interval_s(mut self, s: u64) -> Feed {
        self.interval_ms = s * 1000;
        self
    }

    /// The target starts at the next tick (warm-up begins).
    fn started_now(mut self) -> Feed {
        self.started_unix_ms = Some(self.now_unix_ms);
        self
    }

    fn advance(&mut self, ms: u64) {
        self.now_mono_ms += ms;
        self.now_unix_ms += ms;
    }

    /// The target was replaced by a new process, which starts now.
    fn restart(&mut self) {
        self.judge.new_target(self.now_mono_ms);
        self.started_unix_ms = Some(self.now_unix_ms);
    }

    /// A running target's sample with nothing collected yet.
    fn sample(&self) -> Sample {
        Sample {
            taken_at_mono_ms: self.now_mono_ms,
            taken_at_unix_ms: self.now_unix_ms,
            process: Some(ProcessInfo {
                comm: "app".into(),
                started_unix_ms: self.started_unix_ms,
                ..ProcessInfo::default()
            }),
            ..Sample::default()
        }
    }

    /// One tick: a sample shaped by `edit`, judged; the clocks then move one interval.
    fn tick(&mut self, edit: impl FnOnce(&Feed, &mut Sample)) -> Judged {
        let mut s = self.sample();
        edit(self, &mut s);
        let j = self
            .judge
            .judge(Input::Sample(&s), &self.cfg.judge, &self.cfg.rules);
        self.advance(self.interval_ms);
        j
    }

    /// One tick with `series` at `value`.
    fn value(&mut self, series: Series, value: u64) -> Judged {
        self.tick(|f, s| f.set(s, series, value))
    }

    /// One tick per value.
    fn values(&mut self, series: Series, values: impl IntoIterator<Item = u64>) -> Vec<Judged> {
        values.into_iter().map(|v| self.value(series, v)).collect()
    }

    /// Put `value` in the sample where the collector would, with the series' natural limit.
    fn set(&self, s: &mut Sample, series: Series, value: u64) {
        match series {
            Series::Fds => {
                s.fds = Some(Fds {
                    open: Some(value),
                    allocated: Some(value),
                    ..Fds::default()
                });
                s.fd_limit = Some(FdLimit {
                    soft: self.fd_limit,
                    hard: Limit::Limited(524_288),
                });
            }
            Series::CgroupMemory => {
                let cg = s.cgroup_memory.get_or_insert_with(|| CgroupMemory {
                    max: Some(self.memory_max),
                    high: Some(self.memory_high),
                    ..CgroupMemory::default()
                });
                cg.current_bytes = Some(value);
                cg.working_set_bytes = Some(value);
            }
            Series::TcpCloseWait => {
                s.tcp.get_or_insert_with(Tcp::default).states.close_wait = value
            }
            Series::TcpEstablished => {
                s.tcp.get_or_insert_with(Tcp::default).states.established = value
            }
            Series::Heap => {
                s.heap = Some(Heap {
                    estimate_bytes: value,
                    ..Heap::default()
                })
            }
            Series::Threads => {
                s.threads = Some(Threads {
                    count: value,
                    ..Threads::default()
                });
                s.cgroup_pids = Some(CgroupPids {
                    current: self.other_tasks.map(|n| n + value),
                    max: Some(self.pids_max),
                    ..CgroupPids::default()
                });
            }
            Series::TcpStalled => {
                s.tcp_stalled = Some(crate::sample::TcpStalled {
                    count: value,
                    ..Default::default()
                })
            }
            Series::CgroupSock => {
                s.cgroup_memory
                    .get_or_insert_with(CgroupMemory::default)
                    .sock_bytes = Some(value)
            }
            other => panic!("the feed does not set {other}"),
        }
    }
}

fn rule(j: &Judged, series: Series) -> &RuleStatus {
    j.rules
        .iter()
        .find(|r| r.series == series)
        .unwrap_or_else(|| panic!("no rule for {series}"))
}

fn status(j: &Judged, series: Series) -> &SeriesStatus {
    j.series
        .iter()
        .find(|s| s.series == series)
        .unwrap_or_else(|| panic!("no status for {series}"))
}

fn check(j: &Judged, series: Series, kind: CheckKind) -> &CheckResult {
    rule(j, series)
        .checks
        .iter()
        .find(|c| c.check == kind)
        .unwrap_or_else(|| panic!("{series} has no {kind:?} check"))
}

fn outcome(j: &Judged, series: Series, kind: CheckKind) -> CheckOutcome {
    check(j, series, kind).outcome
}

/// Index of the first tick whose verdict is unhealthy.
fn first_unhealthy(js: &[Judged]) -> Option<usize> {
    js.iter().position(|j| !j.verdict.healthy)
}

/// Index of the first tick where `series`' `kind` check fails.
fn first_fail(js: &[Judged], series: Series, kind: CheckKind) -> Option<usize> {
    js.iter()
        .position(|j| outcome(j, series, kind) == CheckOutcome::Fail)
}

fn exhaust_within(m: u64) -> Rule {
    Rule {
        exhaust_within: Some(mins(m)),
        ..Rule::default()
    }
}

fn max_ratio(r: f64) -> Rule {
    Rule {
        max_ratio: Some(r),
        ..Rule::default()
    }
}

fn max(n: f64) -> Rule {
    Rule {
        max: Some(n),
        ..Rule::default()
    }
}

fn slope_per_min(j: &Judged, series: Series) -> f64 {
    status(j, series)
        .trend
        .as_ref()
        .expect("a trend")
        .slope_per_s
        * 60.0
}

// 1. Flat

#[test]
fn flat_series_never_fails_and_has_no_exhaustion_time() {
    let mut feed = Feed::new(target(Vec::new()));
    // Flat at 80% of the limit, with +-1 jitter: above usage_floor, below max_ratio.
    let js = feed.values(Series::Fds, (0..240).map(|i| 820 + [0, 1, 0, 2, 1][i % 5]));
    assert_eq!(first_unhealthy(&js), None);
    for (i, j) in js.iter().enumerate().skip(2) {
        let s = status(j, Series::Fds);
        let t = s.trend.as_ref().unwrap();
        // Jitter over a few seconds is a slope; over minutes it is none.
        if i >= 60 {
            assert!(t.slope_per_s.abs() < per_min(0.1), "tick {i}: {t:?}");
        }
        assert!(!t.trusted, "tick {i}: {t:?}");
        assert_eq!(s.seconds_to_exhaustion, None);
        assert_eq!(
            outcome(j, Series::Fds, CheckKind::ExhaustWithin),
            CheckOutcome::Pass
        );
    }
    let last = js.last().unwrap();
    assert_eq!(rule(last, Series::Fds).state, RuleState::Passing);
    assert_eq!(last.verdict, Verdict::healthy(Vec::new()));
}

// 2. Linear leak

/// +2 fds/min as the kernel counts them (whole fds: one more every 30 s), from 950 of 1024:
/// the limit is reached at tick 444 (37 min).
fn fd_leak_2_per_min(ticks: usize) -> Vec<u64> {
    (0..ticks as u64).map(|i| 950 + i / 6).collect()
}

#[test]
fn linear_fd_leak_fails_exhaust_within_after_fail_after_ticks() {
    // exhaust_within alone: at +2/min the default max_ratio (90%) would fire first.
    let mut feed = Feed::new(short_span(vec![(Series::Fds, exhaust_within(30))]));
    let js = feed.values(Series::Fds, fd_leak_2_per_min(200));

    // Trusted once the window holds 5 min of samples (61 at 5 s).
    let trusted = js.iter().position(|j| {
        status(j, Series::Fds)
            .trend
            .as_ref()
            .is_some_and(|t| t.trusted)
    });
    assert_eq!(trusted, Some(60));

    // The check fails once under 30 min remain (fewer than 60 fds at 2/min: 965 open), and
    // the verdict turns fail_after = 3 ticks later.
    let fail = first_fail(&js, Series::Fds, CheckKind::ExhaustWithin).unwrap();
    assert_eq!(fail, 90);
    assert_eq!(rule(&js[fail], Series::Fds).state, RuleState::Pending);
    assert_eq!(rule(&js[fail + 1], Series::Fds).state, RuleState::Pending);
    assert!(js[fail + 1].verdict.healthy);
    assert_eq!(first_unhealthy(&js), Some(fail + 2));
    let turned = &js[fail + 2];
    assert_eq!(rule(turned, Series::Fds).state, RuleState::Failing);
    assert_eq!(
        turned.verdict.failing,
        vec!["fds: +2.0/min, limit 1024 in ~29m (< 30m)".to_string()]
    );
    // ... and stays failing while the leak goes on.
    assert!(js[fail + 2..].iter().all(|j| !j.verdict.healthy));
}

#[test]
fn linear_fd_leak_time_to_exhaustion_is_right() {
    let mut feed = Feed::new(short_span(vec![(Series::Fds, exhaust_within(30))]));
    let js = feed.values(Series::Fds, fd_leak_2_per_min(400));
    // From trusted until 10 min before the end (whole fds: within 1 of the limit, the
    // rounding alone is more than 5%).
    for (i, j) in js.iter().enumerate().take(324).skip(60) {
        let slope = slope_per_min(j, Series::Fds);
        assert!((slope - 2.0).abs() < 0.05, "tick {i}: {slope}/min");
        // The leak reaches 1024 at tick 444.
        let truth_s = (444 - i) as f64 * 5.0;
        let tte = status(j, Series::Fds).seconds_to_exhaustion.unwrap();
        assert!(
            (tte - truth_s).abs() / truth_s < 0.05,
            "tick {i}: {tte} s, truly {truth_s} s"
        );
    }
}

#[test]
fn default_rules_flag_a_fast_fd_leak_half_an_hour_ahead() {
    // +12 fds/min from 500 of 1024 runs out at tick 524 (43m40s); with the default rules
    // the trend fires long before the 90% level would (tick 422).
    let mut feed = Feed::new(target(Vec::new()));
    let js = feed.values(Series::Fds, 500..700);
    let turned = first_unhealthy(&js).unwrap();
    assert_eq!(turned, 167);
    let lead_s = (524 - turned) as f64 * 5.0;
    assert!(lead_s > 29.0 * 60.0, "lead time {lead_s} s");
    assert_eq!(
        js[turned].verdict.failing,
        vec!["fds: +12.0/min, limit 1024 in ~29m (< 30m)".to_string()]
    );
    assert_eq!(
        outcome(&js[turned], Series::Fds, CheckKind::MaxRatio),
        CheckOutcome::Pass
    );
}

// 3. GC sawtooth

/// Working set that climbs from 1.2 GiB by `step` every tick for `period` ticks, then drops
/// back (a collector freeing what it allocated): above usage_floor, below max_ratio.
fn sawtooth(ticks: usize, period: usize, step: u64) -> Vec<u64> {
    (0..ticks)
        .map(|i| 1200 * MIB + (i % period) as u64 * step)
        .collect()
}

#[test]
fn gc_sawtooth_never_fails_exhaust_within() {
    // 60 s and 150 s periods at 5 s ticks; +400 MiB per cycle would exhaust 2 GiB within
    // minutes if each climb were read as a leak.
    for (period, step) in [(12, 33 * MIB), (30, 13 * MIB)] {
        let mut feed = Feed::new(target(Vec::new()));
        let js = feed.values(Series::CgroupMemory, sawtooth(360, period, step));
        for (i, j) in js.iter().enumerate() {
            assert!(
                j.verdict.healthy,
                "period {period}, tick {i}: {:?}",
                j.verdict
            );
            assert_ne!(
                outcome(j, Series::CgroupMemory, CheckKind::ExhaustWithin),
                CheckOutcome::Fail
            );
            let t = status(j, Series::CgroupMemory).trend.clone();
            assert!(t.as_ref().is_none_or(|t| !t.trusted), "tick {i}: {t:?}");
        }
        let last = js.last().unwrap();
        let t = status(last, Series::CgroupMemory).trend.as_ref().unwrap();
        assert!(t.mann_kendall_z < trend::Z_TRUST, "{t:?}");
        assert_eq!(
            status(last, Series::CgroupMemory).seconds_to_exhaustion,
            None
        );
    }
}

#[test]
fn a_leak_under_a_gc_sawtooth_is_trusted_although_the_tooth_is_larger() {
    // The 60 s, 363 MiB sawtooth whose floor rises by `leak` every cycle. A 20 MiB/min leak
    // grows 200 MiB in the 10 min window, about half a tooth: only 69% of the pairwise
    // slopes rise, which the former 80 % rule never trusted; Mann–Kendall finds it. A
    // 1 MiB/min leak (10 MiB a window, a 36th of a tooth) falls just short of significance:
    // the level rule (max_ratio) is what catches that one.
    let run = |leak: u64| {
        let values: Vec<u64> = sawtooth(360, 12, 33 * MIB)
            .into_iter()
            .enumerate()
            .map(|(i, v)| v + (i / 12) as u64 * leak)
            .collect();
        let mut feed = Feed::new(target(Vec::new()));
        feed.memory_max = Limit::Limited(64 * GIB);
        let js = feed.values(Series::CgroupMemory, values);
        let t = status(js.last().unwrap(), Series::CgroupMemory)
            .trend
            .clone();
        t.unwrap()
    };
    for leak in [60, 20] {
        let t = run(leak * MIB);
        assert!(t.trusted, "{t:?}");
        let mib_per_min = t.slope_per_s * 60.0 / MIB as f64;
        assert!(
            (mib_per_min - leak as f64).abs() < 3.0,
            "{mib_per_min} MiB/min"
        );
    }
    assert!(run(20 * MIB).rising_share < 0.7);
    let t = run(MIB);
    assert!(!t.trusted, "{t:?}");
    assert_eq!(
        t.untrusted_because.as_deref(),
        Some("Mann-Kendall z 2.46 < 2.58")
    );
}

// 4. Single spike

#[test]
fn single_spike_fails_neither_trend_nor_level() {
    let rules = vec![(
        Series::Fds,
        Rule {
            max: Some(900.0),
            exhaust_within: Some(mins(30)),
            ..Rule::default()
        },
    )];
    let mut feed = Feed::new(target(rules));
    let mut values = vec![600; 200];
    values[100] = 1000;
    let js = feed.values(Series::Fds, values);
    assert_eq!(first_unhealthy(&js), None);
    assert_eq!(
        outcome(&js[100], Series::Fds, CheckKind::Max),
        CheckOutcome::Fail
    );
    assert_eq!(rule(&js[100], Series::Fds).state, RuleState::Pending);
    assert_eq!(rule(&js[101], Series::Fds).state, RuleState::Passing);
    assert_eq!(first_fail(&js, Series::Fds, CheckKind::ExhaustWithin), None);
    let t = status(&js[110], Series::Fds).trend.as_ref().unwrap();
    assert_eq!(t.slope_per_s, 0.0);
    assert!(!t.trusted);
}

#[test]
fn a_level_fails_on_the_fail_after_th_tick_above_it() {
    let mut feed = Feed::new(target(vec![(Series::Fds, max(900.0))]));
    // Two ticks above: not enough. Three: failing.
    let js = feed.values(Series::Fds, [600, 1000, 1000, 600, 1000, 1000, 1000, 600]);
    assert_eq!(first_unhealthy(&js), Some(6));
    assert_eq!(rule(&js[5], Series::Fds).consecutive_failing, 2);
    assert_eq!(
        js[6].verdict.failing,
        vec!["fds: 1000 open (> max 900)".to_string()]
    );
}

// 5. Step

#[test]
fn step_up_then_flat_is_not_a_trend() {
    // 400 -> 800 fds (78% of the limit: above usage_floor) at tick 60; then flat, with and
    // without jitter, while the step crosses the whole window.
    for jitter in [[0, 0, 0, 0, 0, 0, 0], [0, 1, 0, 2, 1, 0, 3]] {
        let mut feed = Feed::new(target(Vec::new()));
        let js = feed.values(
            Series::Fds,
            (0..240).map(|i| if i < 60 { 400 } else { 800 } + jitter[i % 7]),
        );
        assert_eq!(first_unhealthy(&js), None);
        for (i, j) in js.iter().enumerate() {
            assert_ne!(
                outcome(j, Series::Fds, CheckKind::ExhaustWithin),
                CheckOutcome::Fail
            );
            let t = status(j, Series::Fds).trend.clone();
            assert!(t.as_ref().is_none_or(|t| !t.trusted), "tick {i}: {t:?}");
        }
    }
}

// 6. Usage floor

#[test]
fn fast_growth_far_from_the_limit_is_below_usage_floor() {
    // +30 fds/min from 150: the limit would be reached within 30 min, but usage stays under
    // usage_floor (half the limit) the whole time.
    let mut feed = Feed::new(target(vec![(Series::Fds, exhaust_within(30))]));
    let js = feed.values(Series::Fds, (0..140).map(|i| 150 + i * 5 / 2));
    assert_eq!(first_unhealthy(&js), None);
    let last = js.last().unwrap();
    assert_eq!(status(last, Series::Fds).value, Some(497.0));
    let c = check(last, Series::Fds, CheckKind::ExhaustWithin);
    assert_eq!(c.outcome, CheckOutcome::Pass);
    assert_eq!(c.detail, "+30.0/min, usage 48.5% below usage_floor 50%");
    assert!(status(last, Series::Fds).seconds_to_exhaustion.unwrap() < 30.0 * 60.0);

    // Without the floor the same series fails: the floor is what kept it quiet.
    let mut cfg = target(vec![(Series::Fds, exhaust_within(30))]);
    cfg.judge.usage_floor = 0.0;
    let mut feed = Feed::new(cfg);
    let js = feed.values(Series::Fds, (0..140).map(|i| 150 + i * 5 / 2));
    assert!(first_unhealthy(&js).is_some());
}

// 7. Counter reset

#[test]
fn counter_reset_is_no_false_fail_and_no_absurd_slope() {
    // Climbing +2/min from 800 (78%; hours from the limit), then the process drops nearly
    // everything at tick 150 and climbs +1/min again from 5.
    let values = (0..150)
        .map(|i| 800 + i / 6)
        .chain((0..240).map(|i| 5 + i / 12));
    let mut feed = Feed::new(target(Vec::new()));
    let js = feed.values(Series::Fds, values);
    assert_eq!(first_unhealthy(&js), None);
    for (i, j) in js.iter().enumerate().skip(150) {
        assert_ne!(
            outcome(j, Series::Fds, CheckKind::ExhaustWithin),
            CheckOutcome::Fail
        );
        // While the drop is in the window the slope is negative: about the drop spread over
        // the window (-815 in 10 min), never over one tick (-9780/min); never above the true
        // growth.
        let slope = slope_per_min(j, Series::Fds);
        assert!((-100.0..=2.5).contains(&slope), "tick {i}: {slope}/min");
    }
    // Right after the drop the values sit far below the line the window's other points
    // follow: a reset, not a trusted trend.
    let t = status(&js[160], Series::Fds).trend.as_ref().unwrap();
    assert!(!t.trusted, "{t:?}");
    assert_eq!(
        t.untrusted_because.as_deref(),
        Some("a fall below the trend in the window (a reset)")
    );
    // Once the drop has left the window, the slope is the new growth again.
    let slope = slope_per_min(js.last().unwrap(), Series::Fds);
    assert!((slope - 1.0).abs() < 0.1, "{slope}/min");
}

// 8. Not enough data

#[test]
fn too_few_samples_or_too_short_a_span_is_untrusted_and_says_why() {
    // A fast leak near the limit that would fail at once if trusted.
    let leak = |n: u64| (0..n).map(|i| 950 + i);
    let mut feed = Feed::new(short_span(vec![(Series::Fds, exhaust_within(30))]));
    let js = feed.values(Series::Fds, leak(20));
    assert!(status(&js[1], Series::Fds).trend.is_none());
    assert_eq!(
        check(&js[1], Series::Fds, CheckKind::ExhaustWithin).detail,
        "no trend yet"
    );
    let last = js.last().unwrap();
    let t = status(last, Series::Fds).trend.as_ref().unwrap();
    assert_eq!(t.untrusted_because.as_deref(), Some("20/30 samples"));
    assert_eq!(status(last, Series::Fds).seconds_to_exhaustion, None);
    let c = check(last, Series::Fds, CheckKind::ExhaustWithin);
    assert_eq!(c.outcome, CheckOutcome::Pass);
    assert_eq!(c.detail, "no sustained growth (20/30 samples)");

    // 70 samples at 1 s: enough samples, 69 s of them.
    let mut feed = Feed::new(short_span(vec![(Series::Fds, exhaust_within(30))])).interval_s(1);
    let js = feed.values(Series::Fds, leak(70));
    assert_eq!(first_fail(&js, Series::Fds, CheckKind::ExhaustWithin), None);
    let c = check(js.last().unwrap(), Series::Fds, CheckKind::ExhaustWithin);
    assert_eq!(c.detail, "no sustained growth (span 1m09s < 5m)");
}

// 9. Oscillation around a threshold

#[test]
fn oscillating_around_max_ratio_never_flaps_the_verdict() {
    let mut feed = Feed::new(target(vec![(Series::Fds, max_ratio(0.9))]));
    feed.fd_limit = Limit::Limited(1000);
    // 89.9% / 90.1% alternating: never three failing ticks in a row.
    let js = feed.values(Series::Fds, (0..100).map(|i| [899, 901][i % 2]));
    assert_eq!(first_unhealthy(&js), None);
    assert_eq!(
        check(&js[1], Series::Fds, CheckKind::MaxRatio).detail,
        "901/1000 open (90.1% >= 90%)"
    );
    assert_eq!(rule(&js[1], Series::Fds).state, RuleState::Pending);
    assert_eq!(rule(&js[2], Series::Fds).state, RuleState::Passing);

    // Genuinely failing, then alternating just under and over the threshold: on the way
    // out a level clears only at 90% of its threshold (81% of the limit), so the rule stays
    // failing and says where it clears.
    let js = feed.values(Series::Fds, [950, 950, 950]);
    assert!(!js[2].verdict.healthy);
    let js = feed.values(Series::Fds, (0..100).map(|i| [899, 901][i % 2]));
    assert!(js.iter().all(|j| !j.verdict.healthy));
    assert!(js
        .iter()
        .all(|j| rule(j, Series::Fds).state == RuleState::Failing));
    assert_eq!(
        js[0].verdict.failing,
        vec!["fds: 899/1000 open (89.9%), clears at 81% or below".to_string()]
    );
    assert_eq!(
        js[1].verdict.failing,
        vec!["fds: 901/1000 open (90.1% >= 90%)".to_string()]
    );
    // At 81% it passes on the way out: recovering, then healthy.
    let js = feed.values(Series::Fds, [810; 3]);
    assert_eq!(rule(&js[0], Series::Fds).state, RuleState::Recovering);
    assert_eq!(
        check(&js[0], Series::Fds, CheckKind::MaxRatio).detail,
        "810/1000 open (81.0%), cleared at 81% or below"
    );
    assert!(js[2].verdict.healthy);
}

// 10. Warm-up

#[test]
fn warm_up_quiets_trend_checks_but_not_levels() {
    // A trend short enough to be trusted within warm-up (2 min), so only warm-up holds it.
    let mut cfg = target(vec![
        (Series::Fds, exhaust_within(30)),
        (Series::TcpCloseWait, max(200.0)),
    ]);
    cfg.judge.min_samples = 5;
    cfg.judge.min_span = Duration::from_secs(20);
    let mut feed = Feed::new(cfg).started_now();
    // A fast fd leak near the limit and 250 CLOSE_WAIT sockets, from the first tick.
    let js: Vec<Judged> = (0..40)
        .map(|i| {
            feed.tick(|f, s| {
                f.set(s, Series::Fds, 950 + i);
                f.set(s, Series::TcpCloseWait, 250);
            })
        })
        .collect();
    // The level fails during warm-up, after fail_after ticks.
    assert!(js[1].verdict.healthy);
    assert!(!js[2].verdict.healthy);
    assert_eq!(rule(&js[2], Series::TcpCloseWait).state, RuleState::Failing);
    // The trend (trusted from tick 4) is quiet until 2 min after the start (tick 24).
    assert!(status(&js[10], Series::Fds).trend.as_ref().unwrap().trusted);
    for j in &js[..24] {
        let c = check(j, Series::Fds, CheckKind::ExhaustWithin);
        assert_eq!(
            (c.outcome, c.detail.as_str()),
            (CheckOutcome::Quiet, "warming up")
        );
        assert_eq!(rule(j, Series::Fds).state, RuleState::Passing);
    }
    assert_eq!(
        first_fail(&js, Series::Fds, CheckKind::ExhaustWithin),
        Some(24)
    );
    assert_eq!(rule(&js[26], Series::Fds).state, RuleState::Failing);
}

#[test]
fn warm_up_counts_from_first_sight_when_the_start_time_is_unknown() {
    let mut cfg = target(vec![(Series::Fds, exhaust_within(30))]);
    cfg.judge.min_samples = 5;
    cfg.judge.min_span = Duration::from_secs(20);
    let mut feed = Feed::new(cfg);
    feed.started_unix_ms = None;
    let js = feed.values(Series::Fds, 950..990);
    assert_eq!(
        first_fail(&js, Series::Fds, CheckKind::ExhaustWithin),
        Some(24)
    );

    // A restart starts warm-up (and the window) again.
    feed.restart();
    feed.started_unix_ms = None;
    let js = feed.values(Series::Fds, 950..990);
    assert_eq!(
        outcome(&js[23], Series::Fds, CheckKind::ExhaustWithin),
        CheckOutcome::Quiet
    );
    assert_eq!(
        first_fail(&js, Series::Fds, CheckKind::ExhaustWithin),
        Some(24)
    );
}

// 11. Restart budget

/// 250 CLOSE_WAIT sockets against `max = 200`: unhealthy on the third tick.
fn close_wait_over_max(feed: &mut Feed) -> Judged {
    let js = feed.values(Series::TcpCloseWait, [250, 250, 250]);
    js.into_iter().last().unwrap()
}

fn budget_target(budget: u32) -> TargetConfig {
    let mut cfg = target(vec![(Series::TcpCloseWait, max(200.0))]);
    cfg.judge.restart_budget = budget;
    cfg
}

#[test]
fn restart_budget_fails_open_after_three_caused_restarts_then_refills() {
    let mut feed = Feed::new(budget_target(3));
    for n in 1..=3 {
        let j = close_wait_over_max(&mut feed);
        assert!(!j.verdict.healthy, "restart {n}");
        assert_eq!(j.budget.caused_last_hour, n - 1);
        feed.advance(60_000);
        feed.restart();
    }
    assert_eq!(feed.judge.restarts_total(), 3);

    // Three restarts followed an unhealthy verdict within the hour: fail open, and say so.
    let j = close_wait_over_max(&mut feed);
    assert!(j.budget.exhausted);
    assert_eq!(j.budget.caused_last_hour, 3);
    assert_eq!(rule(&j, Series::TcpCloseWait).state, RuleState::Failing);
    assert!(j.verdict.healthy);
    assert!(j.verdict.failing.is_empty());
    assert_eq!(
        j.verdict.notes,
        vec![
            "restart budget exhausted: 3 restarts followed an unhealthy verdict in the last \
             hour (restart_budget = 3); failing open for ~57m20s"
                .to_string(),
            "would fail: tcp_close_wait: 250 (> max 200)".to_string(),
        ]
    );

    // A restart while failing open was not leakwatch's doing: not charged.
    feed.restart();
    let j = close_wait_over_max(&mut feed);
    assert_eq!(j.budget.caused_last_hour, 3);
    assert!(j.verdict.healthy);

    // An hour after the first charged restart it ages out: the verdict fails again.
    feed.advance(HOUR_MS - 3 * 60_000);
    let j = close_wait_over_max(&mut feed);
    assert_eq!(j.budget.caused_last_hour, 2);
    assert!(!j.budget.exhausted);
    assert!(!j.verdict.healthy);
    assert_eq!(
        j.verdict.failing,
        vec!["tcp_close_wait: 250 (> max 200)".to_string()]
    );
}

#[test]
fn restarts_after_a_healthy_verdict_are_not_charged() {
    let mut feed = Feed::new(budget_target(3));
    for _ in 0..5 {
        feed.values(Series::TcpCloseWait, [10, 10, 10]);
        feed.restart();
    }
    // Unhealthy but not yet failing (two ticks) is not charged either.
    feed.values(Series::TcpCloseWait, [250, 250]);
    feed.restart();
    let j = close_wait_over_max(&mut feed);
    assert_eq!(feed.judge.restarts_total(), 6);
    assert_eq!(j.budget.caused_last_hour, 0);
    assert!(!j.verdict.healthy);
}

#[test]
fn restarts_observe_mode_did_not_ask_for_are_not_charged() {
    let mut feed = Feed::new(budget_target(3));
    for _ in 0..5 {
        // Unhealthy, but observe mode answered 200: whatever restarted it, leakwatch did not.
        assert!(!close_wait_over_max(&mut feed).verdict.healthy);
        feed.judge.forgo_restart();
        feed.restart();
    }
    let j = close_wait_over_max(&mut feed);
    assert_eq!(feed.judge.restarts_total(), 5);
    assert_eq!(j.budget.caused_last_hour, 0);
    assert!(!j.budget.exhausted);
    assert!(!j.verdict.healthy);
}

#[test]
fn restart_budget_zero_means_no_budget() {
    let mut feed = Feed::new(budget_target(0));
    for _ in 0..10 {
        assert!(!close_wait_over_max(&mut feed).verdict.healthy);
        feed.restart();
    }
    let j = close_wait_over_max(&mut feed);
    assert_eq!(j.budget.caused_last_hour, 10);
    assert!(!j.budget.exhausted);
    assert!(!j.verdict.healthy);
}

// 12. Fail open

fn permission_denied(s: &mut Sample, collector: Source, path: &str) {
    s.unknown.insert(
        collector,
        Unknown::new(
            UnknownKind::PermissionDenied,
            format!("{path}: permission denied (needs CAP_DAC_READ_SEARCH)"),
        ),
    );
}

#[test]
fn an_unknown_value_fails_open_with_a_note() {
    let mut feed = Feed::new(target(Vec::new()));
    let j = feed.tick(|_, s| permission_denied(s, Source::Fds, "/proc/1/fd"));
    assert_eq!(rule(&j, Series::Fds).state, RuleState::Unknown);
    assert_eq!(
        check(&j, Series::Fds, CheckKind::MaxRatio).outcome,
        CheckOutcome::Unknown
    );
    assert_eq!(
        j.verdict,
        Verdict::healthy(vec![
            "fds: unknown (/proc/1/fd: permission denied (needs CAP_DAC_READ_SEARCH)); \
             not judged"
                .to_string()
        ])
    );
}

#[test]
fn a_failing_rule_whose_value_turns_unknown_does_not_fail_the_verdict() {
    let mut feed = Feed::new(target(Vec::new()));
    let js = feed.values(Series::Fds, [1001, 1001, 1001]);
    assert_eq!(
        js[2].verdict.failing,
        vec!["fds: 1001/1024 open (97.8% >= 90%)".to_string()]
    );
    let j = feed.tick(|_, s| permission_denied(s, Source::Fds, "/proc/1/fd"));
    assert!(j.verdict.healthy);
    assert_eq!(rule(&j, Series::Fds).state, RuleState::Unknown);
    assert!(!rule(&j, Series::Fds).failing);
    assert_eq!(j.verdict.notes.len(), 1);
    // Known again and still over: failing at once (unknown ticks neither fail nor clear).
    let j = feed.value(Series::Fds, 1001);
    assert!(!j.verdict.healthy);
    assert_eq!(rule(&j, Series::Fds).state, RuleState::Failing);
}

#[test]
fn a_missing_target_passes_or_fails_as_configured() {
    let mut cfg = target(Vec::new());
    let mut judge = TargetJudge::new();
    let missing = Input::Missing {
        reason: "no process matches cmdline_regex \"myapp\"",
        unseen: false,
        now_mono_ms: MONO0_MS,
    };
    let j = judge.judge(missing, &cfg.judge, &cfg.rules);
    assert_eq!(
        j.verdict,
        Verdict::healthy(vec![
            "no process matches cmdline_regex \"myapp\"; failing open".to_string()
        ])
    );
    cfg.judge.on_missing = OnMissing::Fail;
    let j = judge.judge(missing, &cfg.judge, &cfg.rules);
    assert!(!j.verdict.healthy);
    assert_eq!(
        j.verdict.failing,
        vec![
            "target: no process matches cmdline_regex \"myapp\" (on_missing = \"fail\")"
                .to_string()
        ]
    );
}

/// Regression: a target hidden from leakwatch (hidepid, permissions) is leakwatch's own
/// trouble; with on_missing = "fail" it answered 503 and could restart a healthy service.
#[test]
fn a_target_leakwatch_cannot_see_fails_open_even_with_on_missing_fail() {
    let mut cfg = target(Vec::new());
    cfg.judge.on_missing = OnMissing::Fail;
    let mut judge = TargetJudge::new();
    let hidden = Input::Missing {
        reason: "pid 7 is alive but /proc hides it (mounted with hidepid)",
        unseen: true,
        now_mono_ms: MONO0_MS,
    };
    let j = judge.judge(hidden, &cfg.judge, &cfg.rules);
    assert!(j.verdict.healthy, "{:?}", j.verdict);
    assert_eq!(
        j.verdict.notes,
        vec![
            "pid 7 is alive but /proc hides it (mounted with hidepid); leakwatch cannot see \
             the target, failing open"
                .to_string()
        ]
    );
}

#[test]
fn a_zombie_target_fails_open_with_a_note() {
    let mut feed = Feed::new(target(Vec::new()));
    feed.values(Series::Fds, [1001, 1001, 1001]);
    let j = feed.tick(|f, s| {
        f.set(s, Series::Fds, 0);
        s.state = TargetState::Zombie;
    });
    assert_eq!(
        j.verdict,
        Verdict::healthy(vec![
            "the target exited and is a zombie (not yet reaped); failing open".to_string()
        ])
    );
}

#[test]
fn an_unreadable_limit_fails_open_with_a_note() {
    // The fd count is known, RLIMIT_NOFILE is not: max_ratio cannot be judged, and /healthz
    // says so instead of passing silently as if fds had no limit.
    let mut feed = Feed::new(target(Vec::new()));
    let j = feed.tick(|f, s| {
        f.set(s, Series::Fds, 1001);
        s.fd_limit = None;
        permission_denied(s, Source::Limits, "/proc/1/limits");
    });
    assert_eq!(status(&j, Series::Fds).limit, None);
    assert_eq!(
        outcome(&j, Series::Fds, CheckKind::MaxRatio),
        CheckOutcome::Unknown
    );
    assert_eq!(rule(&j, Series::Fds).state, RuleState::Unknown);
    assert_eq!(
        j.verdict,
        Verdict::healthy(vec![
            "fds: limit unknown (/proc/1/limits: permission denied (needs \
             CAP_DAC_READ_SEARCH)); not judged"
                .to_string()
        ])
    );
    // An I/O error is no better than a refusal; a limits file that does not exist (a
    // fixture, an odd kernel) is no limit.
    for (kind, note) in [(UnknownKind::Io, true), (UnknownKind::Missing, false)] {
        let j = feed.tick(|f, s| {
            f.set(s, Series::Fds, 1001);
            s.fd_limit = None;
            s.unknown
                .insert(Source::Limits, Unknown::new(kind, "/proc/1/limits: ..."));
        });
        assert_eq!(j.verdict.notes.len(), usize::from(note), "{kind:?}");
        assert!(j.verdict.healthy);
    }

    // A check that needs no limit still fails on its own evidence.
    let mut feed = Feed::new(target(vec![(
        Series::Fds,
        Rule {
            max: Some(1000.0),
            max_ratio: Some(0.9),
            ..Rule::default()
        },
    )]));
    let js: Vec<Judged> = (0..3)
        .map(|_| {
            feed.tick(|f, s| {
                f.set(s, Series::Fds, 1001);
                s.fd_limit = None;
                permission_denied(s, Source::Limits, "/proc/1/limits");
            })
        })
        .collect();
    assert_eq!(
        js[2].verdict.failing,
        vec!["fds: 1001 open (> max 1000)".to_string()]
    );
}

#[test]
fn a_series_the_machine_does_not_offer_is_not_applicable() {
    // No memory cgroup: the default cgroup_memory rule has nothing to judge, says so, and
    // adds no note.
    let mut feed = Feed::new(target(Vec::new()));
    let j = feed.tick(|f, s| {
        f.set(s, Series::Fds, 100);
        s.unknown.insert(
            Source::CgroupMemory,
            Unknown::new(UnknownKind::Missing, "no memory controller"),
        );
    });
    let c = check(&j, Series::CgroupMemory, CheckKind::MaxRatio);
    assert_eq!(
        (c.outcome, c.detail.as_str()),
        (CheckOutcome::NotApplicable, "not available")
    );
    assert_eq!(rule(&j, Series::CgroupMemory).state, RuleState::Passing);
    assert_eq!(j.verdict, Verdict::healthy(Vec::new()));
}

#[test]
fn a_failing_series_that_vanishes_does_not_hold_the_verdict_failing() {
    // Failing on evidence, then the value is gone with no reason given: only evidence fails
    // the verdict, so the rule recovers instead of failing on forever.
    let mut feed = Feed::new(target(Vec::new()));
    let js = feed.values(Series::CgroupMemory, [1_964_947_866; 3]);
    assert!(!js[2].verdict.healthy);
    let js: Vec<Judged> = (0..3).map(|_| feed.tick(|_, _| {})).collect();
    assert_eq!(
        rule(&js[0], Series::CgroupMemory).state,
        RuleState::Recovering
    );
    assert_eq!(js[2].verdict, Verdict::healthy(Vec::new()));
}

// 13. max_growth

#[test]
fn max_growth_fails_on_sustained_growth_above_the_rate() {
    let growth = |rate: f64| Rule {
        max_growth_per_s: Some(per_min(rate)),
        ..Rule::default()
    };
    // +12/min (one socket per 5 s tick) against 10/min.
    let mut feed = Feed::new(short_span(vec![(Series::TcpCloseWait, growth(10.0))]));
    let js = feed.values(Series::TcpCloseWait, 0..120);
    assert_eq!(
        first_fail(&js, Series::TcpCloseWait, CheckKind::MaxGrowth),
        Some(60)
    );
    assert_eq!(first_unhealthy(&js), Some(62));
    assert_eq!(
        js[62].verdict.failing,
        vec!["tcp_close_wait: +12.0/min (> 10.0/min)".to_string()]
    );
    assert_eq!(
        status(&js[62], Series::TcpCloseWait).seconds_to_exhaustion,
        None
    );

    // +6/min passes, and says by how much.
    let mut feed = Feed::new(short_span(vec![(Series::TcpCloseWait, growth(10.0))]));
    let js = feed.values(Series::TcpCloseWait, (0..120).map(|i| i / 2));
    assert_eq!(first_unhealthy(&js), None);
    assert_eq!(
        check(
            js.last().unwrap(),
            Series::TcpCloseWait,
            CheckKind::MaxGrowth
        )
        .detail,
        "+6.0/min (<= 10.0/min)"
    );

    // +2/s against 10/min: one unit on both sides of the comparison.
    let mut feed = Feed::new(short_span(vec![(Series::TcpCloseWait, growth(10.0))]));
    let js = feed.values(Series::TcpCloseWait, (0..70).map(|i| i * 10));
    assert_eq!(
        js[69].verdict.failing,
        vec!["tcp_close_wait: +120.0/min (> 10.0/min)".to_string()]
    );
}

// 14. recover_after

#[test]
fn recovery_takes_exactly_recover_after_passing_ticks() {
    let mut cfg = target(vec![(Series::TcpCloseWait, max(200.0))]);
    // The ticks alone: min_failing is tested on its own below.
    cfg.judge.min_failing = Duration::ZERO;
    let mut feed = Feed::new(cfg);
    assert!(!close_wait_over_max(&mut feed).verdict.healthy);
    let js = feed.values(Series::TcpCloseWait, [100, 100, 250, 100, 100, 100]);
    // Two passing ticks: recovering, still failing, and the line says so.
    for (j, n) in js[..2].iter().zip(1..) {
        assert_eq!(rule(j, Series::TcpCloseWait).state, RuleState::Recovering);
        assert_eq!(
            j.verdict.failing,
            vec![format!(
                "tcp_close_wait: 250 (> max 200) (recovering: {n}/3 passing)"
            )]
        );
    }
    // A failing tick in between starts the count again.
    assert_eq!(rule(&js[2], Series::TcpCloseWait).state, RuleState::Failing);
    assert_eq!(
        rule(&js[3], Series::TcpCloseWait).state,
        RuleState::Recovering
    );
    assert_eq!(
        rule(&js[4], Series::TcpCloseWait).state,
        RuleState::Recovering
    );
    assert!(!js[4].verdict.healthy);
    // The third passing tick in a row clears it.
    assert_eq!(rule(&js[5], Series::TcpCloseWait).state, RuleState::Passing);
    assert_eq!(js[5].verdict, Verdict::healthy(Vec::new()));
}

// 15. Cgroup memory

#[test]
fn cgroup_working_set_is_judged_against_memory_max_in_bytes() {
    let mut feed = Feed::new(target(Vec::new()));
    // 91.5% of 2 GiB.
    let js = feed.values(Series::CgroupMemory, [1_964_947_866; 3]);
    let s = status(&js[2], Series::CgroupMemory);
    assert_eq!(s.limit, Some((2 * GIB) as f64));
    assert_eq!(s.limit_source.as_deref(), Some("memory.max"));
    assert_eq!(
        js[2].verdict.failing,
        vec!["cgroup_memory: 1.8 GiB/2.0 GiB working set (91.5% >= 90%)".to_string()]
    );
}

#[test]
fn cgroup_memory_high_is_the_limit_when_max_is_unlimited() {
    let mut feed = Feed::new(target(Vec::new()));
    feed.memory_max = Limit::Unlimited;
    feed.memory_high = Limit::Limited(GIB);
    let js = feed.values(Series::CgroupMemory, [950 * MIB; 3]);
    let s = status(&js[2], Series::CgroupMemory);
    assert_eq!(s.limit_source.as_deref(), Some("memory.high"));
    assert_eq!(
        js[2].verdict.failing,
        vec!["cgroup_memory: 950.0 MiB/1.0 GiB working set (92.8% >= 90%)".to_string()]
    );

    // Neither set: nothing to judge a ratio against, and nothing to note.
    let mut feed = Feed::new(target(Vec::new()));
    feed.memory_max = Limit::Unlimited;
    let j = feed.value(Series::CgroupMemory, 950 * MIB);
    assert_eq!(
        outcome(&j, Series::CgroupMemory, CheckKind::MaxRatio),
        CheckOutcome::NotApplicable
    );
    assert_eq!(j.verdict, Verdict::healthy(Vec::new()));
}

#[test]
fn a_leak_in_bytes_reads_in_bytes() {
    // The relay: malloc growing 119 KiB/s (~7 MiB/min) in a 2 GiB cgroup, from 1640 MiB (80%),
    // judged against a 1 h horizon.
    let rules = vec![(
        Series::CgroupMemory,
        Rule {
            max_ratio: Some(0.9),
            exhaust_within: Some(mins(60)),
            ..Rule::default()
        },
    )];
    let mut feed = Feed::new(short_span(rules));
    let js = feed.values(
        Series::CgroupMemory,
        (0..70).map(|i| 1640 * MIB + i * 5 * 119 * 1024),
    );
    // Trusted at tick 60; at tick 62, 1676 MiB: 372 MiB left at 119 KiB/s is 53m20s.
    assert_eq!(first_unhealthy(&js), Some(62));
    assert_eq!(
        js[62].verdict.failing,
        vec!["cgroup_memory: +119.0 KiB/s, limit 2.0 GiB in ~53m (< 1h)".to_string()]
    );
}

// 15b. Threads against pids.max

#[test]
fn threads_alone_in_their_cgroup_are_judged_against_pids_max() {
    // The default rule: 90% of pids.max.
    let mut feed = Feed::new(target(Vec::new()));
    feed.pids_max = Limit::Limited(1000);
    let js = feed.values(Series::Threads, [910; 3]);
    let s = status(&js[2], Series::Threads);
    assert_eq!(s.limit, Some(1000.0));
    assert_eq!(s.limit_source.as_deref(), Some("pids.max"));
    assert_eq!(
        js[2].verdict.failing,
        vec!["threads: 910/1000 (91.0% >= 90%)".to_string()]
    );
}

#[test]
fn other_tasks_in_the_cgroup_use_the_same_pids_max() {
    // 850 threads of 1000 is 85%, but 100 tasks of other processes share the allowance: the
    // target runs out at 900, and 850/900 is 94.4%.
    let mut feed = Feed::new(target(Vec::new()));
    feed.pids_max = Limit::Limited(1000);
    feed.other_tasks = Some(100);
    let js = feed.values(Series::Threads, [850; 3]);
    let s = status(&js[2], Series::Threads);
    assert_eq!(s.limit, Some(900.0));
    assert_eq!(
        s.limit_source.as_deref(),
        Some("pids.max 1000 less 100 tasks of other processes in the cgroup")
    );
    assert_eq!(
        js[2].verdict.failing,
        vec!["threads: 850/900 (94.4% >= 90%)".to_string()]
    );

    // Without pids.current (a v1 root, say) pids.max is all there is to go by.
    let mut feed = Feed::new(target(Vec::new()));
    feed.pids_max = Limit::Limited(1000);
    feed.other_tasks = None;
    let j = feed.value(Series::Threads, 850);
    assert_eq!(status(&j, Series::Threads).limit, Some(1000.0));
    assert_eq!(
        outcome(&j, Series::Threads, CheckKind::MaxRatio),
        CheckOutcome::Pass
    );
}

#[test]
fn unlimited_pids_leave_threads_without_a_limit() {
    let mut feed = Feed::new(target(Vec::new()));
    let j = feed.value(Series::Threads, 5000);
    assert_eq!(status(&j, Series::Threads).limit, None);
    assert_eq!(
        outcome(&j, Series::Threads, CheckKind::MaxRatio),
        CheckOutcome::NotApplicable
    );
    assert_eq!(j.verdict, Verdict::healthy(Vec::new()));
}

// 16. Heap at its own cadence

#[test]
fn heap_ticks_without_smaps_hold_the_rule() {
    let mut feed = Feed::new(target(vec![(Series::Heap, max((100 * MIB) as f64))]));
    // smaps read every 4th tick (200 MiB, over the max); in between, not collected.
    let js: Vec<Judged> = (0..24)
        .map(|i| {
            feed.tick(|f, s| {
                if i % 4 == 0 {
                    f.set(s, Series::Heap, 200 * MIB);
                } else {
                    s.unknown.insert(
                        Source::Heap,
                        Unknown::new(UnknownKind::NotCollected, "smaps is read every 60s"),
                    );
                }
            })
        })
        .collect();
    // Fails on the third read, not the third tick; held in between, with no note.
    assert_eq!(
        outcome(&js[1], Series::Heap, CheckKind::Max),
        CheckOutcome::Hold
    );
    assert_eq!(rule(&js[1], Series::Heap).state, RuleState::Pending);
    assert_eq!(rule(&js[5], Series::Heap).consecutive_failing, 2);
    assert_eq!(first_unhealthy(&js), Some(8));
    assert!(js[8..]
        .iter()
        .all(|j| !j.verdict.healthy && j.verdict.notes.is_empty()));
    assert_eq!(
        js[9].verdict.failing,
        vec!["heap: 200.0 MiB (> max 100.0 MiB)".to_string()]
    );
    // Only the reads are points of the trend. A 10 min window of reads every 20 s holds 30
    // at most, so a trend needs half of that (15), not min_samples (30), which it could
    // only just reach.
    let t = status(&js[23], Series::Heap).trend.clone().unwrap();
    assert_eq!(t.samples, 6);
    assert_eq!(t.untrusted_because.as_deref(), Some("6/15 samples"));
}

/// Between smaps reads the sample keeps the last heap estimate, with its age, for /metrics
/// and /status (`Heap::age_ms`, still `not_collected` for the heap): the judge takes no
/// point from it. Judged tick by tick, a feed that carries the last read (or, to make any
/// use of it show, a different value) is the feed that leaves the heap out between reads.
#[test]
fn a_heap_kept_between_smaps_reads_is_judged_as_not_collected() {
    let run = |carried: Option<u64>| -> Vec<Judged> {
        let mut feed = Feed::new(target(vec![(Series::Heap, max((100 * MIB) as f64))]));
        (0..24)
            .map(|i| {
                feed.tick(|f, s| {
                    if i % 4 == 0 {
                        f.set(s, Series::Heap, (150 + i) * MIB);
                        return;
                    }
                    s.unknown.insert(
                        Source::Heap,
                        Unknown::new(UnknownKind::NotCollected, "smaps is read every 60s"),
                    );
                    s.heap = carried.map(|v| Heap {
                        estimate_bytes: v,
                        age_ms: (i % 4) * 5000,
                        ..Heap::default()
                    });
                })
            })
            .collect()
    };
    let plain = run(None);
    assert_eq!(run(Some(150 * MIB)), plain, "the last read, carried");
    assert_eq!(run(Some(GIB)), plain, "any value carried is not read");
    let heap = status(&plain[23], Series::Heap);
    assert!(heap.not_collected && heap.value.is_none(), "{heap:?}");
    assert_eq!(heap.trend.as_ref().map(|t| t.samples), Some(6));
    assert_eq!(first_unhealthy(&plain), Some(8));
}

// 17. Long windows, huge values

#[test]
fn a_window_thinned_past_256_points_keeps_the_slope() {
    // 22 min at 5 s: 265 points, thinned for the pairwise slopes (trend.rs tests 1801).
    let mut cfg = target(Vec::new());
    cfg.judge.window = mins(22);
    let mut feed = Feed::new(cfg);
    let js = feed.values(
        Series::CgroupMemory,
        (0..280).map(|i| GIB + i * 5 * 119 * 1024 + [0, 3, 1, 4, 1][i as usize % 5] * MIB),
    );
    let t = status(js.last().unwrap(), Series::CgroupMemory)
        .trend
        .as_ref()
        .unwrap();
    assert_eq!(t.samples, 265);
    assert!(t.trusted);
    let kib_per_s = t.slope_per_s / 1024.0;
    assert!((kib_per_s - 119.0).abs() < 0.5, "{kib_per_s} KiB/s");
}

#[test]
fn huge_values_do_not_panic_or_make_nan() {
    let near_max = u64::MAX - 10;
    let mut feed = Feed::new(short_span(vec![(
        Series::Fds,
        Rule {
            max: Some(1e6),
            max_ratio: Some(0.9),
            exhaust_within: Some(mins(30)),
            max_growth_per_s: Some(1.0),
            limit: None,
        },
    )]));
    feed.fd_limit = Limit::Limited(u64::MAX);
    feed.memory_max = Limit::Limited(u64::MAX);
    let values = (0..200).map(|i| match i % 3 {
        0 => near_max,
        1 => i,
        _ => u64::MAX / 2 + i * (1 << 50),
    });
    let js: Vec<Judged> = values
        .map(|v| {
            feed.tick(|f, s| {
                f.set(s, Series::Fds, v);
                f.set(s, Series::CgroupMemory, v);
            })
        })
        .collect();
    for j in &js {
        for s in &j.series {
            let t = s.trend.as_ref();
            let numbers = [
                s.value,
                s.limit,
                s.seconds_to_exhaustion,
                t.map(|t| t.slope_per_s),
                t.map(|t| t.rising_share),
                t.map(|t| t.mann_kendall_z),
            ];
            assert!(numbers.iter().flatten().all(|n| n.is_finite()), "{s:?}");
        }
        serde_json::to_string(j).unwrap();
    }
    // A value past its limit is exhausted now, not in negative time.
    let mut feed = Feed::new(short_span(vec![(Series::Fds, exhaust_within(30))]));
    let js = feed.values(Series::Fds, (0..100).map(|i| 1000 + i));
    let s = status(js.last().unwrap(), Series::Fds);
    assert_eq!(s.seconds_to_exhaustion, Some(0.0));
    assert_eq!(
        js.last().unwrap().verdict.failing,
        vec!["fds: +12.0/min, limit 1024 reached".to_string()]
    );
}

// Formatting

#[test]
fn ratios_read_as_configured() {
    // 0.57 * 100 is 56.99999999999999 in floating point.
    let mut feed = Feed::new(target(vec![(Series::Fds, max_ratio(0.57))]));
    let j = feed.value(Series::Fds, 600);
    assert_eq!(
        check(&j, Series::Fds, CheckKind::MaxRatio).detail,
        "600/1024 open (58.6% >= 57%)"
    );
}

#[test]
fn durations_read_as_an_sre_would_say_them() {
    use super::rules::approx_secs;
    assert_eq!(approx_secs(0.0), "0s");
    assert_eq!(approx_secs(59.4), "59s");
    // Rounded down: a projection under the horizon never reads as the horizon.
    assert_eq!(approx_secs(29.0 * 60.0 + 59.0), "29m");
    assert_eq!(approx_secs(3600.0), "1h");
    assert_eq!(approx_secs(3.0 * 3600.0 + 20.0 * 60.0), "3h20m");
    assert_eq!(approx_secs(2.5 * 86_400.0), "2d");
    assert_eq!(approx_secs(f64::INFINITY), "never");
    assert_eq!(super::rules::rate_text(per_min(2.1), false), "+2.1/min");
    assert_eq!(super::rules::rate_text(-1.5, false), "-1.5/s");
    assert_eq!(
        super::rules::rate_text(119.0 * 1024.0, true),
        "+119.0 KiB/s"
    );
    assert_eq!(super::rules::rate_text(10.0, true), "+600 B/min");
}

#[test]
fn percentages_never_read_as_the_threshold_they_are_below() {
    // 89.96% passes max_ratio: not "(90.0% < 90%)".
    let mut feed = Feed::new(short_span(vec![(Series::Fds, max_ratio(0.9))]));
    feed.fd_limit = Limit::Limited(10_000);
    let j = feed.value(Series::Fds, 8_996);
    assert_eq!(
        check(&j, Series::Fds, CheckKind::MaxRatio).detail,
        "8996/10000 open (89.9% < 90%)"
    );
    // 49.97% is below usage_floor: not "usage 50% below usage_floor 50%".
    let mut feed = Feed::new(short_span(vec![(Series::Fds, exhaust_within(30))]));
    feed.fd_limit = Limit::Limited(10_000);
    let js = feed.values(Series::Fds, (0..70).map(|i| 4_928 + i));
    assert_eq!(
        check(&js[69], Series::Fds, CheckKind::ExhaustWithin).detail,
        "+12.0/min, usage 49.9% below usage_floor 50%"
    );
}

// Long runs: hysteresis and the restart budget over hours of synthetic ticks

/// xorshift64: deterministic noise without a dependency.
fn noise(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn ten_thousand_ticks_hovering_at_the_threshold_flip_only_after_fail_after_in_a_row() {
    // A tick a minute keeps the trend window (10m) small: this is about hysteresis.
    let mut feed = Feed::new(target(vec![(Series::Fds, max_ratio(0.9))])).interval_s(60);
    feed.fd_limit = Limit::Limited(1000);
    let mut rng = 0x9e37_79b9_7f4a_7c15;
    // 898..=902 around the 90% line (900 fails): random, so runs of either side occur.
    let values: Vec<u64> = (0..10_000).map(|_| 898 + noise(&mut rng) % 5).collect();
    let js = feed.values(Series::Fds, values.iter().copied());
    let mut flips = 0;
    for i in 1..js.len() {
        let (was, is) = (js[i - 1].verdict.healthy, js[i].verdict.healthy);
        if was == is {
            continue;
        }
        flips += 1;
        // A flip needs fail_after (3) failing, or recover_after (3) passing, ticks in a row.
        let last3 = &values[i - 2..=i];
        if is {
            assert!(
                last3.iter().all(|v| *v < 900),
                "recovered at {i}: {last3:?}"
            );
        } else {
            assert!(last3.iter().all(|v| *v >= 900), "failed at {i}: {last3:?}");
        }
    }
    assert!(flips > 0 && flips < 10_000 / 6, "{flips} flips");

    // The same noise with no three failing ticks in a row never fails at all.
    let mut run = 0;
    let capped: Vec<u64> = (0..10_000)
        .map(|_| {
            let v = 898 + noise(&mut rng) % 5;
            run = if v >= 900 { run + 1 } else { 0 };
            if run == 3 {
                run = 0;
                899
            } else {
                v
            }
        })
        .collect();
    let mut feed = Feed::new(target(vec![(Series::Fds, max_ratio(0.9))])).interval_s(60);
    feed.fd_limit = Limit::Limited(1000);
    let js = feed.values(Series::Fds, capped);
    assert_eq!(first_unhealthy(&js), None);
}

#[test]
fn a_target_leaking_after_every_restart_never_gets_more_than_the_budget_per_hour() {
    let mut feed = Feed::new(budget_target(3));
    // Three hours: each life leaks at once (over max from its first tick) and is restarted
    // two minutes in, by its orchestrator, whatever leakwatch says.
    let mut caused_at: Vec<u64> = Vec::new();
    let (mut exhausted_ticks, mut unhealthy_ticks) = (0, 0);
    let mut healthy_since_exhausted = false;
    while feed.now_mono_ms < MONO0_MS + 3 * HOUR_MS {
        let life_start = feed.now_mono_ms;
        let mut last = None;
        while feed.now_mono_ms < life_start + 2 * 60_000 {
            let j = feed.value(Series::TcpCloseWait, 250);
            if j.budget.exhausted {
                exhausted_ticks += 1;
                assert!(j.verdict.healthy, "fails open while exhausted");
                if rule(&j, Series::TcpCloseWait).state == RuleState::Failing {
                    assert!(
                        j.verdict.notes[0].starts_with("restart budget exhausted"),
                        "{:?}",
                        j.verdict.notes
                    );
                    healthy_since_exhausted = true;
                }
            }
            if !j.verdict.healthy {
                unhealthy_ticks += 1;
            }
            last = Some(j);
        }
        if last.is_some_and(|j| !j.verdict.healthy) {
            caused_at.push(feed.now_mono_ms);
        }
        feed.restart();
    }
    // In any hour, at most the budget's restarts followed an unhealthy verdict.
    for (i, t) in caused_at.iter().enumerate() {
        let in_hour = caused_at[i..].iter().filter(|u| **u < t + HOUR_MS).count();
        assert!(
            in_hour <= 3,
            "{in_hour} caused restarts within the hour from {t}"
        );
    }
    // It failed open, and each hour it resumed failing the leaking target.
    assert!(healthy_since_exhausted && exhausted_ticks > 0);
    assert!(
        caused_at.len() >= 9,
        "{} caused restarts in 3 h",
        caused_at.len()
    );
    assert!(unhealthy_ticks > 0);
}

// ---- The signal_grace hold ------------------------------------------------------------

fn failing_verdict() -> Verdict {
    Verdict {
        healthy: false,
        failing: vec!["tcp_close_wait: 30 open (>= 20)".into()],
        notes: vec!["heap: unknown (smaps_rollup: permission denied); not judged".into()],
        ..Verdict::default()
    }
}

#[test]
fn a_hold_keeps_an_unhealthy_verdict_at_200_and_says_why() {
    let held = hold(failing_verdict(), Some(Hold { left_ms: 2_000 }));
    assert!(held.healthy);
    assert!(held.failing.is_empty());
    assert_eq!(
        held.notes,
        vec![
            "signal_grace: the target was signalled at the flip; /healthz reports the failure \
             in ~2s"
                .to_string(),
            "would fail: tcp_close_wait: 30 open (>= 20)".into(),
            "heap: unknown (smaps_rollup: permission denied); not judged".into(),
        ]
    );
}

#[test]
fn without_a_hold_or_on_a_healthy_verdict_nothing_changes() {
    assert_eq!(hold(failing_verdict(), None), failing_verdict());
    let healthy = Verdict::healthy(vec!["a note".into()]);
    assert_eq!(hold(healthy.clone(), Some(Hold { left_ms: 5 })), healthy);
}

#[test]
fn health_is_what_the_judge_found_before_a_hold() {
    let mut feed = Feed::new(budget_target(3));
    assert_eq!(
        feed.values(Series::TcpCloseWait, [10, 10, 10])[2].health(),
        Health::Healthy
    );
    // Failing rules with the budget left: unhealthy, held or not.
    let j = close_wait_over_max(&mut feed);
    assert_eq!(j.health(), Health::Unhealthy);
    assert!(hold(j.verdict.clone(), Some(Hold { left_ms: 1_000 })).healthy);
    assert_eq!(j.health(), Health::Unhealthy);
    // With the budget exhausted (three restarts that followed a 503): would fail.
    for _ in 0..3 {
        feed.advance(60_000);
        feed.restart();
        close_wait_over_max(&mut feed);
    }
    let j = close_wait_over_max(&mut feed);
    assert!(j.budget.exhausted && j.verdict.healthy, "{j:?}");
    assert_eq!(j.health(), Health::WouldFail);
}

/// Stalled sockets: `max` fails on the level, `exhaust_within` needs the configured `limit`
/// (no natural one) and projects to it; unknown (no tcp_info) is not judged, not 0.
#[test]
fn tcp_stalled_is_judged_against_max_and_a_configured_limit() {
    let rules = vec![
        (Series::TcpStalled, max(1.0)),
        (
            Series::CgroupSock,
            Rule {
                limit: Some(1000.0),
                ..exhaust_within(30)
            },
        ),
    ];
    let mut f = Feed::new(short_span(rules));
    let js: Vec<Judged> = (0..6).map(|_| f.value(Series::TcpStalled, 2)).collect();
    assert!(first_fail(&js, Series::TcpStalled, CheckKind::Max).is_some());
    let j = js.last().unwrap();
    assert_eq!(j.health(), Health::Unhealthy);
    assert_eq!(status(j, Series::TcpStalled).limit, None);

    // Unknown: the rule is not judged, and the value is absent, not 0.
    let mut f = Feed::new(short_span(vec![(Series::TcpStalled, max(0.0))]));
    let j = f.tick(|_, s| {
        s.unknown.insert(
            Source::TcpStall,
            Unknown::new(UnknownKind::Unavailable, "no tcp_info on this path"),
        );
    });
    let st = status(&j, Series::TcpStalled);
    assert_eq!(st.value, None);
    assert_eq!(st.unknown.as_deref(), Some("no tcp_info on this path"));
    assert_eq!(j.health(), Health::Healthy);

    // Socket memory growing 30/min toward a limit of 1000: fails exhaust_within 30m.
    let mut f = Feed::new(short_span(vec![(
        Series::CgroupSock,
        Rule {
            limit: Some(1000.0),
            ..exhaust_within(30)
        },
    )]));
    let js = f.values(Series::CgroupSock, (0..80).map(|i| 500 + i * 3));
    let j = js.last().unwrap();
    assert_eq!(status(j, Series::CgroupSock).limit, Some(1000.0));
    assert_eq!(
        status(j, Series::CgroupSock).limit_source.as_deref(),
        Some("config")
    );
    assert!(first_fail(&js, Series::CgroupSock, CheckKind::ExhaustWithin).is_some());
}
