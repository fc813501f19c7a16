//! The replay on synthetic histories: a leak that exhausts its limit and restarts, a
//! healthy control, a restart that resets the windows, a spike nothing followed, a verdict
//! that flaps before the leak exhausts its limit. The kubelet's lead (from the last
//! unbroken run of 503) on hand-made runs.

use std::time::Duration;

use super::*;
use crate::judge::{Rule, Series};
use crate::units;

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
    // The 503 lasted until the exhaustion and on until the restart: no flapping, and the
    // kubelet's lead is the flip's.
    assert_eq!(f.until_ms, Some(T0_MS + 1821 * STEP_MS));
    assert!(!f.interrupted());
    let ex_event = r.events[0];
    assert_eq!(ex_event.what, LeadTo::Exhaustion(Series::Fds));
    assert_eq!((ex_event.runs, ex_event.flapped()), (1, false));
    assert_eq!(ex_event.kubelet_lead(), Some(lead));
    assert_eq!(r.events[1].what, LeadTo::Restart);
    assert_eq!(r.events[1].unbroken_from_ms, Some(f.at_ms));
    assert!(!r.flapped());
    // The leak was suspected before the rule failed: a trusted rise, with its slope.
    assert_eq!(r.suspicions.len(), 1, "{:?}", r.suspicions);
    let s = &r.suspicions[0];
    assert_eq!(s.series, Series::Fds);
    assert!(s.at_ms < f.at_ms, "{s:?}");
    assert!((s.slope_per_s - 4.0 / 60.0).abs() < 0.01, "{s:?}");
    let tte = s.seconds_to_exhaustion.unwrap();
    assert!(tte > 30.0 * 60.0, "{s:?}");
    assert!(s.line.starts_with("fds: leak suspected: +4"), "{s:?}");
    assert_eq!(s.next, Some((ex.at_ms, LeadTo::Exhaustion(Series::Fds))));
    assert!(s.lead().unwrap() > lead);
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
    assert_eq!(r.events, Vec::new());
    assert_eq!(r.suspicions, Vec::new());
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
    // Each process is suspected on its own leak, and each suspicion is followed to the
    // end of its own process (the second one to the end of the history).
    let at: Vec<u64> = r.suspicions.iter().map(|s| s.at_ms).collect();
    assert_eq!(at.len(), 2, "{:?}", r.suspicions);
    assert!(at[0] < restart && at[1] >= restart + 5 * MIN_MS, "{at:?}");
    assert_eq!(r.suspicions[0].next, Some((restart, LeadTo::Restart)));
    assert_eq!(r.suspicions[1].next, None);
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

/// A run of 503 from `at_min` (minutes) until `until_min`, as a flip.
fn run(at_min: u64, until_min: Option<u64>) -> Flip {
    Flip {
        at_ms: T0_MS + at_min * MIN_MS,
        rules: vec![Series::Fds],
        lines: vec!["fds: ...".into()],
        next: None,
        false_alarm: None,
        until_ms: until_min.map(|m| T0_MS + m * MIN_MS),
    }
}

fn exhausted(at_min: u64) -> Exhaustion {
    Exhaustion {
        at_ms: T0_MS + at_min * MIN_MS,
        series: Series::Fds,
        value: 1020.0,
        limit: 1024.0,
    }
}

/// A report of hand-made runs, restarts and events.
fn report_of(flips: Vec<Flip>, restarts: Vec<u64>, events: Vec<Event>) -> TargetReport {
    let exhaustions = events
        .iter()
        .filter(|e| e.what != LeadTo::Restart)
        .map(|e| exhausted((e.at_ms - T0_MS) / MIN_MS))
        .collect();
    TargetReport {
        labels: Default::default(),
        samples: 0,
        flips,
        restarts,
        exhaustions,
        events,
        suspicions: Vec::new(),
        ticks: Vec::new(),
    }
}

#[test]
fn a_503_that_ends_before_the_exhaustion_gives_no_kubelet_lead() {
    // 503 from minute 10 to 20, the limit reached at 30: a kubelet saw 200 by then.
    let events = lead::events(&[run(10, Some(20))], &[], &[exhausted(30)]);
    assert_eq!(events.len(), 1);
    let e = events[0];
    assert_eq!((e.runs, e.unbroken_from_ms), (1, None));
    assert_eq!(e.kubelet_lead(), None);
    assert!(e.flapped());
    assert_eq!(e.interrupted_runs(), 1);
    assert_eq!(e.first_flip_lead(), Some(Duration::from_secs(20 * 60)));
    // Healthy again on the very tick of the exhaustion is no lead either; still 503 is.
    let on_the_tick = lead::events(&[run(10, Some(30))], &[], &[exhausted(30)]);
    assert_eq!(on_the_tick[0].kubelet_lead(), None);
    let held = lead::events(&[run(10, Some(31))], &[], &[exhausted(30)]);
    assert_eq!(held[0].kubelet_lead(), Some(Duration::from_secs(20 * 60)));
    assert!(!held[0].flapped());
    let text = render::target_text(&report_of(vec![run(10, Some(20))], vec![], events));
    assert!(
        text.contains("no kubelet lead: /healthz answered 200 again before this"),
        "{text}"
    );
    assert!(
        text.contains("1 run of 503 in this process, all cut short by a 200"),
        "{text}"
    );
}

#[test]
fn the_kubelet_lead_counts_from_the_last_unbroken_503() {
    // A first process: 503 at 0-5 (cut short), 10-12 (cut short), then from 20 until the
    // restart at 60 (the new process answers 200 on its first tick). The second process
    // flips once at 70 and reaches its limit at 80.
    let restart = T0_MS + 60 * MIN_MS;
    let flips = [
        run(0, Some(5)),
        run(10, Some(12)),
        run(20, Some(60)),
        run(70, None),
    ];
    let events = lead::events(&flips, &[restart], &[exhausted(50), exhausted(80)]);
    let what: Vec<(u64, LeadTo)> = events.iter().map(|e| (e.at_ms, e.what)).collect();
    let fds = LeadTo::Exhaustion(Series::Fds);
    assert_eq!(
        what,
        vec![
            (T0_MS + 50 * MIN_MS, fds),
            (restart, LeadTo::Restart),
            (T0_MS + 80 * MIN_MS, fds)
        ]
    );
    let (at_limit, restarted, second) = (events[0], events[1], events[2]);
    assert_eq!(at_limit.runs, 3);
    assert_eq!(at_limit.interrupted_runs(), 2);
    assert!(at_limit.flapped());
    assert_eq!(at_limit.kubelet_lead(), Some(Duration::from_secs(30 * 60)));
    assert_eq!(
        at_limit.first_flip_lead(),
        Some(Duration::from_secs(50 * 60))
    );
    // The run lasted as long as the process: the restart's lead counts from 20.
    assert_eq!(restarted.unbroken_from_ms, Some(T0_MS + 20 * MIN_MS));
    assert_eq!(restarted.kubelet_lead(), Some(Duration::from_secs(40 * 60)));
    assert_eq!(restarted.runs, 3);
    // The new process's runs are its own: one, unbroken, no flapping.
    assert_eq!((second.runs, second.flapped()), (1, false));
    assert_eq!(second.kubelet_lead(), Some(Duration::from_secs(10 * 60)));
    // A restart with no 503 before it.
    let quiet = lead::events(&[], &[restart], &[]);
    assert_eq!((quiet[0].runs, quiet[0].kubelet_lead()), (0, None));
    assert!(!quiet[0].flapped());
}

/// 500 fds (with noise) of 1024 for an hour; 950 (93 %) for 5 minutes; 500 again for 25
/// minutes; then +10/min from 500 to 1021, held there until the restart at 2h45m; the new
/// process holds 300. The verdict fails on the spike, clears, and fails again on the leak.
fn flapping_fds(i: u64) -> f64 {
    let min = i * STEP_MS / MIN_MS;
    let noise = (i % 3) as f64;
    match min {
        0..60 => 500.0 + noise,
        60..65 => 950.0,
        65..90 => 500.0 + noise,
        90..165 => (500 + (i - 360) * 10 / 4).min(1021) as f64,
        _ => 300.0 + noise,
    }
}

#[test]
fn a_verdict_that_flaps_gives_the_lead_from_the_last_unbroken_503() {
    let n = 5 * 60 * 4;
    let restart = T0_MS + 165 * MIN_MS;
    let values = points(T0_MS, n, flapping_fds);
    let starts = points(T0_MS, n, |i| {
        if T0_MS + i * STEP_MS >= restart {
            (restart / 1000) as f64
        } else {
            (T0_MS / 1000 - 3600) as f64
        }
    });
    let r = replay(
        &history(Series::Fds, values, 1024.0, starts),
        &Setup::default(),
    );
    assert_eq!(r.flips.len(), 2, "{:?}", r.flips);
    let (spike, leak) = (&r.flips[0], &r.flips[1]);
    // The spike fails on the level (fail_after = 3 ticks) and clears 3 ticks after it ends.
    assert_eq!(spike.at_ms, T0_MS + 60 * MIN_MS + 2 * STEP_MS);
    assert_eq!(spike.until_ms, Some(T0_MS + 65 * MIN_MS + 2 * STEP_MS));
    assert!(spike.interrupted());
    assert!(!leak.interrupted());
    assert_eq!(leak.until_ms, Some(restart));
    let ex = r.exhaustions[0];
    let at_limit = r.events[0];
    assert_eq!(at_limit.at_ms, ex.at_ms);
    assert_eq!((at_limit.runs, at_limit.interrupted_runs()), (2, 1));
    assert!(at_limit.flapped() && r.flapped());
    assert_eq!(at_limit.unbroken_from_ms, Some(leak.at_ms));
    assert_eq!(at_limit.kubelet_lead(), leak.lead());
    assert_eq!(at_limit.first_flip_lead(), spike.lead());
    let kubelet = at_limit.kubelet_lead().unwrap();
    assert!(kubelet > Duration::from_secs(20 * 60) && kubelet < Duration::from_secs(30 * 60));
    let to_restart = Duration::from_millis(restart - leak.at_ms);
    assert_eq!(r.events[1].kubelet_lead(), Some(to_restart));

    let text = render::target_text(&r);
    assert!(
        text.contains("the verdict flapped: a kubelet restarts only after"),
        "{text}"
    );
    assert!(
        text.contains("a kubelet sees no lead from this flip"),
        "{text}"
    );
    let lead_line = format!(
        "kubelet lead {}, from the last unbroken 503 ({})",
        units::duration_ms(kubelet.as_millis() as u64),
        render::rfc3339(leak.at_ms)
    );
    assert!(text.contains(&lead_line), "{text}");
    assert!(
        text.contains("2 runs of 503 in this process, 1 cut short by a 200"),
        "{text}"
    );
    let json = render::target_json(&r);
    assert_eq!(json["flapped"], true);
    let event = &json["events"][0];
    assert_eq!(event["event"], "exhaustion:fds");
    assert_eq!(event["runs"], 2);
    assert_eq!(event["flapped"], true);
    assert_eq!(event["kubelet_lead_ms"], kubelet.as_millis() as u64);
    assert_eq!(event["unbroken_503_from"], leak.at_ms / 1000);
    assert_eq!(json["flips"][0]["interrupted"], true);
    assert_eq!(json["flips"][1]["until"], restart / 1000);
    // The leak is suspected once in that process, before its flip.
    let suspected = &json["leak_suspected"];
    assert_eq!(suspected.as_array().unwrap().len(), 1, "{json}");
    assert!(suspected[0]["lead_ms"].as_u64().unwrap() > kubelet.as_millis() as u64);
    assert_eq!(suspected[0]["next"], "exhaustion:fds");
}
