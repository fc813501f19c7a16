//! The incidents leakwatch exists for, as generated histories replayed through the judge
//! with the default rules and `[judge]` defaults, at 5 s and 15 s ticks over hours of
//! virtual time. Each asserts that `/healthz` fails before the limit without a break, with a
//! lead time (from the start of the last unbroken run of 503, as a kubelet sees it) of at
//! least [`MIN_LEAD_S`], and prints it (docs/judging.md, "Lead times on the incidents").
//!
//! Healthy controls at the same cadences never flip.

use super::*;

/// The least warning a flip must give: half the default `exhaust_within` horizon. A
/// liveness probe needs `periodSeconds × failureThreshold` (10 s × 3 by default) and the
/// old process `terminationGracePeriodSeconds` (30 s) to be replaced; the rest is margin
/// for a slope estimated under a sawtooth and for a person to look at the dump.
const MIN_LEAD_S: u64 = 15 * 60;

const STEPS_S: [u64; 2] = [5, 15];

/// Replays `value(t_s)` (seconds since the life began) for `series` until it reaches
/// `limit_at`; returns the lead a kubelet sees: the seconds from the start of the last
/// unbroken run of unhealthy verdicts to that moment (a verdict healthy at the limit has
/// none).
fn lead_time(feed: &mut Feed, series: Series, limit_at: u64, value: impl Fn(u64) -> u64) -> u64 {
    let step_s = feed.interval_ms / 1000;
    let mut failing_since = None;
    let mut t = 0;
    loop {
        let v = value(t);
        if v >= limit_at {
            let since = failing_since.unwrap_or_else(|| panic!("healthy at {v} at {t} s"));
            return t - since;
        }
        let j = feed.value(series, v);
        if j.verdict.healthy {
            failing_since = None;
        } else if failing_since.is_none() {
            failing_since = Some(t);
        }
        t += step_s;
    }
}

fn report(incident: &str, step_s: u64, lead_s: u64) {
    println!(
        "incident {incident} at {step_s} s: flipped {}m{:02}s before the limit",
        lead_s / 60,
        lead_s % 60
    );
    assert!(
        lead_s >= MIN_LEAD_S,
        "{incident} at {step_s} s: lead {lead_s} s"
    );
}

/// Deterministic jitter in `0..span`, a function of the time alone.
fn jitter(t: u64, span: u64) -> u64 {
    noise(&mut (t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)) % span
}

#[test]
fn a_poller_leaking_an_fd_every_30_s_is_flipped_before_1021_of_1024() {
    // The poller opened one fd per poll and never closed it; at 1021 of 1024 it stopped
    // accepting. From 40 fds, 8 hours; a pool of 0..=3 other fds comes and goes.
    for step in STEPS_S {
        let mut feed = Feed::new(target(Vec::new())).interval_s(step);
        let lead = lead_time(&mut feed, Series::Fds, 1021, |t| 40 + t / 30 + jitter(t, 4));
        report("fds 1021/1024", step, lead);
    }
}

#[test]
fn a_working_set_oom_killed_at_2_gib_72_times_is_flipped_before_each_kill() {
    // Each life: from 300 MiB, +29 MiB/min under a 150 MiB two-minute GC sawtooth, until
    // the working set reaches memory.max (2 GiB) and the kernel kills it; then a new process
    // (the windows and rule states start again). 72 lives, about an hour each.
    for step in STEPS_S {
        let mut feed = Feed::new(target(Vec::new())).interval_s(step);
        let mut leads = Vec::new();
        for life in 0..72 {
            if life > 0 {
                feed.restart();
            }
            let lead = lead_time(&mut feed, Series::CgroupMemory, 2 * GIB, |t| {
                300 * MIB + t * 29 * MIB / 60 + (t % 120) * 150 * MIB / 120
            });
            leads.push(lead);
        }
        assert_eq!(feed.judge.restarts_total(), 71);
        report(
            "OOM kill at 2 GiB, least of 72",
            step,
            *leads.iter().min().unwrap(),
        );
    }
}

#[test]
fn malloc_growing_119_kb_per_s_is_flipped_before_the_cgroup_limit() {
    // glibc arenas growing 119 KB/s under a 2 GiB cgroup, with 0..8 MiB of allocation
    // churn: 4 hours from 400 MiB.
    for step in STEPS_S {
        let mut feed = Feed::new(target(Vec::new())).interval_s(step);
        let lead = lead_time(&mut feed, Series::CgroupMemory, 2 * GIB, |t| {
            400 * MIB + t * 119_000 + jitter(t, 8 * MIB)
        });
        report("malloc +119 KB/s", step, lead);
    }
}

#[test]
fn a_pod_growing_3_mb_per_30_s_is_flipped_before_1_gib() {
    // A batch every 30 s keeps 3 MB more; the pod's limit is 1 GiB. From 250 MiB, 2h15m.
    for step in STEPS_S {
        let mut feed = Feed::new(target(Vec::new())).interval_s(step);
        feed.memory_max = Limit::Limited(GIB);
        let lead = lead_time(&mut feed, Series::CgroupMemory, GIB, |t| {
            250 * MIB + t / 30 * 3_000_000 + jitter(t, 2 * MIB)
        });
        report("pod +3 MB/30 s", step, lead);
    }
}

#[test]
fn a_leak_under_a_gc_sawtooth_is_flipped_by_its_horizon_not_its_level() {
    // 19 MiB/min under a 300 MiB two-minute sawtooth, from 300 MiB of 2 GiB: trusted early
    // enough that exhaust_within (30 min) fails it while the peaks are still under 90 %.
    for step in STEPS_S {
        let mut feed = Feed::new(target(Vec::new())).interval_s(step);
        let mut t = 0;
        let j = loop {
            let v = 300 * MIB + t * 19 * MIB / 60 + (t % 120) * 300 * MIB / 120;
            assert!(v < 2 * GIB, "no flip at {step} s");
            let j = feed.value(Series::CgroupMemory, v);
            if !j.verdict.healthy {
                break j;
            }
            t += step;
        };
        assert_eq!(
            outcome(&j, Series::CgroupMemory, CheckKind::ExhaustWithin),
            CheckOutcome::Fail
        );
        assert_eq!(
            outcome(&j, Series::CgroupMemory, CheckKind::MaxRatio),
            CheckOutcome::Pass,
            "{:?}",
            j.verdict
        );
    }
}

/// `hours` of `value(t_s)` under `memory.max` 2 GiB, judged with `judge`: never a failing
/// verdict from `from_s` on; returns the first failing tick before it, if any.
fn never_flips_from(
    step: u64,
    hours: u64,
    judge: JudgeConfig,
    from_s: u64,
    value: impl Fn(u64) -> u64,
) -> Option<u64> {
    let mut cfg = target(Vec::new());
    cfg.judge = judge;
    let mut feed = Feed::new(cfg).interval_s(step);
    let mut early = None;
    for t in (0..hours * 3600).step_by(step as usize) {
        let j = feed.value(Series::CgroupMemory, value(t));
        if !j.verdict.healthy {
            assert!(t < from_s, "{step} s, t {t} s: {:?}", j.verdict);
            early = early.or(Some(t));
        }
    }
    early
}

#[test]
fn a_gc_sawtooth_without_a_trend_never_flips() {
    // 1.2 to 1.5 GiB of 2 GiB every two minutes, and every 150 s to 1.58 GiB.
    for step in STEPS_S {
        assert_eq!(
            never_flips_from(step, 6, JudgeConfig::default(), 0, |t| 1229 * MIB
                + (t % 120) * 300 * MIB / 120),
            None
        );
        assert_eq!(
            never_flips_from(step, 6, JudgeConfig::default(), 0, |t| 1229 * MIB
                + (t % 150) * 390 * MIB / 150),
            None
        );
    }
}

/// 1.0 to 1.3 GiB every 8 minutes, starting `phase_min` minutes into a period.
fn slow_sawtooth(phase_min: u64) -> impl Fn(u64) -> u64 {
    move |t| GIB + ((t + phase_min * 60) % 480) * 300 * MIB / 480
}

#[test]
fn a_slow_sawtooth_without_a_trend_never_flips() {
    // 1.0 to 1.3 GiB of 2 GiB every 8 minutes, two hours from each of 8 phases: one ramp
    // fills most of the 10 min window. A ramp watched for longer than `min_span` is a leak
    // to any statistic (trend.rs' shape tests): with `min_span` half the window, the verdict
    // failed within the first window on some phases (printed) and, held by the terms on
    // the way out, cleared by 14 minutes (measured: failing until 13m40s at the latest); with the
    // default, the whole window, never.
    let half = JudgeConfig {
        min_span: mins(5),
        ..JudgeConfig::default()
    };
    for step in STEPS_S {
        for phase in 0..8 {
            let early = never_flips_from(step, 2, half.clone(), 14 * 60, slow_sawtooth(phase));
            if let Some(t) = early {
                println!(
                    "slow sawtooth at {step} s, phase {phase} min, min_span 5m: failed at {t} s"
                );
            }
            let default =
                never_flips_from(step, 2, JudgeConfig::default(), 0, slow_sawtooth(phase));
            assert_eq!(default, None, "{step} s, phase {phase} min");
        }
    }
}
