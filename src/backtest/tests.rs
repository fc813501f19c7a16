//! The replay on synthetic histories: a leak that exhausts its limit and restarts, a
//! healthy control, a restart that resets the windows, a spike nothing followed.

use std::time::Duration;

use super::*;
use crate::judge::{Rule, Series};

const T0_MS: u64 = 1_800_000_000_000;
const STEP_MS: u64 = 15_000;
const MIN_MS: u64 = 60_000;

/// `n` points every 15 s from `from_ms`, valued by `f(i)`.
fn points(from_ms: u64, n: u64, f: impl Fn(u64) -> f64) -> Points {
    (0..n).map(|i| (from_ms + i * STEP_MS, f(i))).collect()
}

fn constant(from_ms: u64, n: u64, v: f64) -> Points {
    points(from_ms, n, |_| v)
}

/// A history of `series` with a constant limit and one start time per (from, start) pair.
fn history(series: Series, values: Points, limit: f64, starts: Points) -> TargetHistory {
    let n = values.len() as u64;
    let mut h = TargetHistory::default();
    h.limits.insert(series, constant(T0_MS, n, limit));
    h.values.insert(series, values);
    h.starts = starts;
    h.labels.insert("job".into(), "api".into());
    h
}

/// +4 fds/min from 400 of 1024 until 1021, then held there (the process lives on at its
/// limit) until it is restarted at tick `restart_at`, after which it holds 100.
fn fd_leak_then_restart(restart_at: u64, n: u64) -> (Points, Points) {
    let values = points(T0_MS, n, |i| {
        if i >= restart_at {
            100.0
        } else {
            (400 + i).min(1021) as f64
        }
    });
    let first_start = (T0_MS / 1000 - 3600) as f64;
    let second_start = ((T0_MS + restart_at * STEP_MS) / 1000) as f64;
    let starts = points(T0_MS, n, |i| {
        if i >= restart_at {
            second_start
        } else {
            first_start
        }
    });
    (values, starts)
}

#[test]
fn a_leak_flips_before_it_exhausts_and_the_restart_is_seen() {
    // 1021 is reached at tick 621 (2h35m); the restart follows 5 hours later.
    let (values, starts) = fd_leak_then_restart(1821, 2000);
    let h = history(Series::Fds, values, 1024.0, starts);
    let r = replay(&h, &Setup::default());
    assert_eq!(r.samples, 2000);
    assert_eq!(r.restarts, vec![T0_MS + 1821 * STEP_MS]);
    assert_eq!(r.exhaustions.len(), 1);
    let ex = r.exhaustions[0];
    assert_eq!(ex.series, Series::Fds);
    // 1014 (>= 99 % of 1024) = 400 + 614.
    assert_eq!(ex.at_ms, T0_MS + 614 * STEP_MS);
    assert_eq!(r.flips.len(), 1, "{:?}", r.flips);
    let f = &r.flips[0];
    assert!(f.at_ms < ex.at_ms);
    assert_eq!(f.rules, vec![Series::Fds]);
    assert!(f.lines[0].starts_with("fds: "), "{:?}", f.lines);
    assert_eq!(f.next, Some((ex.at_ms, LeadTo::Exhaustion(Series::Fds))));
    // The default exhaust_within is 30 min: the trend fails it (before the 90 % level).
    let lead = f.lead().unwrap();
    assert!(
        lead > Duration::from_secs(24 * 60) && lead <= Duration::from_secs(30 * 60),
        "{lead:?}"
    );
    assert_eq!(f.false_alarm, Some(false));
    assert_eq!(r.false_alarms(), 0);
    // After the restart the verdict is healthy again: windows and rule states were reset.
    assert!(r.ticks.last().unwrap().healthy);
}

#[test]
fn a_healthy_service_never_flips() {
    let values = points(T0_MS, 2000, |i| {
        600.0 + [0.0, 3.0, 1.0, 5.0][(i % 4) as usize]
    });
    let starts = constant(T0_MS, 2000, (T0_MS / 1000 - 3600) as f64);
    let r = replay(
        &history(Series::Fds, values, 1024.0, starts),
        &Setup::default(),
    );
    assert_eq!(r.flips, Vec::new());
    assert_eq!(r.restarts, Vec::<u64>::new());
    assert_eq!(r.exhaustions, Vec::new());
}

#[test]
fn a_restart_resets_the_windows_and_warm_up() {
    // Two lifetimes, each leaking 16 fds/min from 200 and killed at 996 of 1024 fds. Each
    // flips on its own leak, never at the restart itself (the new process warms up, and
    // its window holds none of the old one's points).
    let life = 200; // 50 min at 15 s
    let values = points(T0_MS, 2 * life, |i| (200 + 4 * (i % life)) as f64);
    let starts = points(T0_MS, 2 * life, |i| {
        ((T0_MS + (i / life) * life * STEP_MS) / 1000) as f64
    });
    let r = replay(
        &history(Series::Fds, values, 1024.0, starts),
        &Setup::default(),
    );
    let restart = T0_MS + life * STEP_MS;
    assert_eq!(r.restarts, vec![restart]);
    assert_eq!(r.flips.len(), 2, "{:?}", r.flips);
    assert!(r.flips[0].at_ms < restart);
    // The second flip needs the new process's own window: min_span (5 min) after it.
    assert!(r.flips[1].at_ms >= restart + 5 * MIN_MS, "{:?}", r.flips[1]);
    assert_eq!(r.flips[0].next, Some((restart, LeadTo::Restart)));
}

#[test]
fn a_restart_count_that_rises_is_a_restart() {
    let values = constant(T0_MS, 100, 10.0);
    let mut h = history(Series::Fds, values, 1024.0, Vec::new());
    h.restart_counts = points(T0_MS, 100, |i| if i < 60 { 2.0 } else { 3.0 });
    let r = replay(&h, &Setup::default());
    assert_eq!(r.restarts, vec![T0_MS + 60 * STEP_MS]);
}

#[test]
fn a_spike_nothing_followed_is_a_likely_false_alarm() {
    // 95 % of the limit for 5 min, back to 50 %, then 2 hours of nothing.
    let values = points(T0_MS, 600, |i| {
        if (100..120).contains(&i) {
            973.0
        } else {
            512.0
        }
    });
    let starts = constant(T0_MS, 600, (T0_MS / 1000 - 3600) as f64);
    let r = replay(
        &history(Series::Fds, values, 1024.0, starts),
        &Setup::default(),
    );
    assert_eq!(r.flips.len(), 1);
    let f = &r.flips[0];
    assert_eq!(f.at_ms, T0_MS + 102 * STEP_MS, "fail_after = 3 ticks");
    assert_eq!(f.next, None);
    assert_eq!(f.false_alarm, Some(true));
    assert_eq!(r.false_alarms(), 1);
}

#[test]
fn a_flip_too_close_to_the_end_is_undecided() {
    let values = points(T0_MS, 110, |i| if i >= 100 { 973.0 } else { 512.0 });
    let starts = constant(T0_MS, 110, (T0_MS / 1000 - 3600) as f64);
    let r = replay(
        &history(Series::Fds, values, 1024.0, starts),
        &Setup::default(),
    );
    assert_eq!(r.flips.len(), 1);
    assert_eq!(r.flips[0].false_alarm, None);
    assert_eq!(r.false_alarms(), 0);
}

#[test]
fn a_memory_limit_of_zero_is_no_limit() {
    // A working set growing to 3 GiB with no container limit: nothing to exhaust.
    let gib = (1u64 << 30) as f64;
    let values = points(T0_MS, 600, |i| gib * (1.0 + i as f64 / 300.0));
    let starts = constant(T0_MS, 600, (T0_MS / 1000 - 3600) as f64);
    let h = history(Series::CgroupMemory, values.clone(), 0.0, starts.clone());
    let r = replay(&h, &Setup::default());
    assert_eq!((r.flips.len(), r.exhaustions.len()), (0, 0));
    // The same growth against a 2 GiB limit flips, and the exhaustion is found.
    let h = history(Series::CgroupMemory, values, 2.0 * gib, starts);
    let r = replay(&h, &Setup::default());
    assert_eq!(r.flips.len(), 1);
    assert_eq!(r.exhaustions.len(), 1);
    assert!(r.flips[0].at_ms < r.exhaustions[0].at_ms);
}

#[test]
fn the_configured_rules_judge_the_history() {
    let values = points(T0_MS, 200, |i| if i >= 100 { 60.0 } else { 3.0 });
    let starts = constant(T0_MS, 200, (T0_MS / 1000 - 3600) as f64);
    let mut h = history(Series::TcpCloseWait, values, 0.0, starts);
    h.limits.clear();
    // No default rule for CLOSE_WAIT sockets ...
    assert_eq!(replay(&h, &Setup::default()).flips, Vec::new());
    // ... a configured one fires.
    let setup = Setup {
        rules: vec![(
            Series::TcpCloseWait,
            Rule {
                max: Some(50.0),
                ..Rule::default()
            },
        )],
        ..Setup::default()
    };
    let r = replay(&h, &setup);
    assert_eq!(r.flips.len(), 1);
    assert_eq!(r.flips[0].rules, vec![Series::TcpCloseWait]);
    assert_eq!(r.flips[0].at_ms, T0_MS + 102 * STEP_MS);
}
