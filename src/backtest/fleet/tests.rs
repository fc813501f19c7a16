//! The fleet's replay on synthetic histories: six replicas leaking fds in lockstep, drained
//! two at a time well within the judge's lead; the same fleet with one slot and a short
//! lead, too slow (overrides at the deadline, and the sizing line says by how much); a
//! replica whose judge clears while it waits and one its history restarts while it waits.

use std::time::Duration;

use super::render::{fleet_json, fleet_text};
use super::*;
use crate::backtest::{Points, Setup, TargetHistory};
use crate::fleet::{FleetConfig, GoReason};
use crate::judge::{Rule, Series};

const T0_MS: u64 = 1_800_000_000_000;
const STEP_MS: u64 = 15_000;
const MIN_MS: u64 = 60_000;

/// `n` points every 15 s from T0, valued by `f(i)`.
fn points(n: u64, f: impl Fn(u64) -> f64) -> Points {
    (0..n).map(|i| (T0_MS + i * STEP_MS, f(i))).collect()
}

/// Replica `name`: fds valued by `fds(i)` of 1024, and its process start time by
/// `start(i)` (unix seconds).
fn replica(
    name: &str,
    n: u64,
    fds: impl Fn(u64) -> f64,
    start: impl Fn(u64) -> f64,
) -> TargetHistory {
    let mut h = TargetHistory::default();
    h.labels.insert("pod".into(), name.into());
    h.values.insert(Series::Fds, points(n, fds));
    h.limits.insert(Series::Fds, points(n, |_| 1024.0));
    h.starts = points(n, start);
    h
}

fn one_process(_: u64) -> f64 {
    (T0_MS / 1000 - 3600) as f64
}

/// +4 fds/min from 400 (the judge's default 30-minute trend rule flips some 28 minutes
/// before 1014, 99 % of 1024, is reached at tick 614), held at 1021.
fn slow_leak(i: u64) -> f64 {
    (400 + i).min(1021) as f64
}

/// 400 for 20 minutes, then +40/min, held at 1021: exhausted at 35m21s.
fn fast_leak(i: u64) -> f64 {
    let ramp = i.saturating_sub(80) * 10;
    (400 + ramp).min(1021) as f64
}

fn fleet(k: u32) -> FleetSetup {
    FleetSetup {
        cfg: FleetConfig::new("api", k),
        restart_cost: DEFAULT_RESTART_COST,
        tick: MAX_TICK,
    }
}

fn lockstep(n: usize, ticks: u64, fds: fn(u64) -> f64) -> Vec<TargetHistory> {
    (0..n)
        .map(|i| replica(&format!("api-{i}"), ticks, fds, one_process))
        .collect()
}

/// fds failing when exhaustion is projected within 5 minutes.
fn five_minute_rule() -> Setup {
    Setup {
        rules: vec![(
            Series::Fds,
            Rule {
                exhaust_within: Some(Duration::from_secs(5 * 60)),
                ..Rule::default()
            },
        )],
        ..Setup::default()
    }
}

#[test]
fn six_replicas_in_lockstep_drain_two_at_a_time_within_the_lead() {
    let r = simulate(&lockstep(6, 800, slow_leak), &Setup::default(), &fleet(2));
    assert_eq!(r.replicas.len(), 6);
    assert_eq!(r.worst_concurrent, 2, "{r:#?}");
    assert!(r.most_slots_held <= 2);
    let due = r.replicas[0].episodes[0].due_ms;
    for x in &r.replicas {
        assert_eq!(x.episodes.len(), 1, "{x:#?}");
        let e = &x.episodes[0];
        assert_eq!(e.due_ms, due, "in lockstep: {x:#?}");
        assert_eq!(e.outcome, Outcome::Restarted);
        let go = e.go.unwrap();
        assert_eq!(go.reason, GoReason::Slot, "{x:#?}");
        assert!(!e.exhausted_while_deferred() && !e.exhausted_before_restart());
        let (at, series) = e.exhaustion.unwrap();
        assert_eq!((at, series), (T0_MS + 614 * STEP_MS, Series::Fds));
        assert!(go.restart_ms < at);
        let kept = e.lead_kept().unwrap();
        assert_eq!(kept.to, LeadTo::Exhaustion(Series::Fds));
        assert!(kept.ms > 20 * MIN_MS, "{kept:?}");
        assert!(x.overrides().is_empty());
    }
    // Three waves: the last goes once two slots have turned over, each after the restart
    // (30 s) and healthy_for (40 s), to the step.
    let waits: Vec<u64> = r.replicas.iter().map(|x| x.longest_wait_ms()).collect();
    assert_eq!(waits.iter().filter(|&&w| w == 0).count(), 2, "{waits:?}");
    let longest = *waits.iter().max().unwrap();
    assert!((140_000..=180_000).contains(&longest), "{waits:?}");
    assert_eq!(r.rounds.len(), 1);
    let round = r.drain().unwrap();
    assert_eq!(round.replicas, 6);
    assert_eq!(round.drain_ms(), longest + 30_000);

    let z = r.sizing();
    assert_eq!((z.n, z.k, z.waves), (6, 2, 3));
    assert_eq!(z.restart_to_healthy_ms, 70_000);
    assert_eq!(z.fit, Fit::Fits);
    let (lead, _) = z.lead.unwrap();
    assert_eq!(lead.to, LeadTo::Exhaustion(Series::Fds));
    assert!(lead.ms > 25 * MIN_MS, "{lead:?}");

    let text = fleet_text(&r);
    assert!(
        text.starts_with("fleet: 6 replicas share K = 2 restart slots (group api)"),
        "{text}"
    );
    assert!(
        text.contains("T_r, restart to healthy: 30s + 40s = 1m10s"),
        "{text}"
    );
    assert!(
        text.contains("went at once with a slot; restarted at"),
        "{text}"
    );
    assert!(
        text.contains("fleet: at most 2 restarting at once"),
        "{text}"
    );
    assert!(
        text.contains("sizing: N = 6, K = 2, T_r = 1m10s: ceil(6/2) × 1m10s = 3m30s <= "),
        "{text}"
    );
    assert!(
        text.trim_end().ends_with("to fds at its limit): fits"),
        "{text}"
    );
    let json = fleet_json(&r);
    assert_eq!(json["worst_concurrent"], 2);
    assert_eq!(json["sizing"]["fits"], true);
    assert_eq!(json["replicas"][0]["episodes"][0]["go_reason"], "slot");
    assert_eq!(json["replicas"][5]["exhausted_while_deferred"], false);
}

#[test]
fn one_slot_for_six_with_a_short_lead_is_too_slow() {
    let histories = lockstep(6, 200, fast_leak);
    let r = simulate(&histories, &five_minute_rule(), &fleet(1));
    let z = r.sizing();
    let (lead, _) = z.lead.unwrap();
    // The judge gives some 4-5 minutes; six restarts one at a time need 7.
    assert!(lead.ms > 4 * MIN_MS && lead.ms < 5 * MIN_MS, "{lead:?}");
    assert_eq!(z.needed_ms, 6 * 70_000);
    assert_eq!(z.fit, Fit::TooSlow { k_needed: 2 });
    // Waiting ends at the deadline (restart_cost 60 s + 30 s before exhaustion): the
    // replicas still waiting then go together, more than K at once.
    let overrides: usize = r
        .replicas
        .iter()
        .map(|x| x.overrides().get(&GoReason::Deadline).copied().unwrap_or(0))
        .sum();
    let exhausted = r.replicas.iter().any(|x| x.exhausted_while_deferred());
    assert!(overrides > 0 || exhausted, "{r:#?}");
    assert!(r.worst_concurrent > 1, "{r:#?}");
    assert!(r.most_slots_held <= 1);
    let text = fleet_text(&r);
    assert!(text.contains("ceil(6/1) × 1m10s = 7m00s > "), "{text}");
    assert!(text.contains("too slow: raise K to >= 2"), "{text}");
    assert!(text.contains("went anyway at its deadline"), "{text}");
    assert!(text.contains("overrides: 1 deadline"), "{text}");
    assert_eq!(fleet_json(&r)["sizing"]["k_needed"], 2);

    // Two slots: three waves fit in the lead, and no one needs to go anyway.
    let r = simulate(&histories, &five_minute_rule(), &fleet(2));
    assert_eq!(r.sizing().fit, Fit::Fits);
    assert!(
        r.replicas.iter().all(|x| x.overrides().is_empty()),
        "{r:#?}"
    );
    assert_eq!(r.worst_concurrent, 2);
}

#[test]
fn a_wait_ends_when_the_judge_clears_or_the_history_restarts_the_replica() {
    // One slot, held for 5 minutes of restart by api-0 (due first). While it is held, the
    // fds of api-1 go over 90 % for two minutes and come back; api-2 comes due too, and its
    // history shows a new process (a crash, or a restart nobody coordinated).
    let n = 700;
    let a = replica("api-0", n, slow_leak, one_process);
    let due_a = simulate(std::slice::from_ref(&a), &Setup::default(), &fleet(1)).replicas[0]
        .episodes[0]
        .due_ms;
    let tick_a = (due_a - T0_MS) / STEP_MS;
    let b = replica(
        "api-1",
        n,
        move |i| {
            if (tick_a + 2..tick_a + 10).contains(&i) {
                960.0
            } else {
                500.0
            }
        },
        one_process,
    );
    let crash = tick_a + 12;
    let c = replica(
        "api-2",
        n,
        move |i| {
            if i < crash {
                slow_leak(i.saturating_sub(2))
            } else {
                100.0
            }
        },
        move |i| {
            if i < crash {
                one_process(i)
            } else {
                ((T0_MS + crash * STEP_MS) / 1000) as f64
            }
        },
    );
    let mut setup = fleet(1);
    setup.restart_cost = Duration::from_secs(300);
    let r = simulate(&[a, b, c], &Setup::default(), &setup);
    let [ra, rb, rc] = &r.replicas[..] else {
        panic!("{r:#?}")
    };
    assert_eq!(ra.episodes[0].outcome, Outcome::Restarted, "{ra:#?}");
    let cleared = &rb.episodes[0];
    assert_eq!(cleared.outcome, Outcome::Cleared, "{rb:#?}");
    assert!(cleared.go.is_none() && cleared.deferred_ms() > 0);
    assert!(cleared.waited_until_ms > cleared.due_ms);
    let restarted = &rc.episodes[0];
    assert_eq!(restarted.outcome, Outcome::HistoryRestart, "{rc:#?}");
    assert_eq!(restarted.waited_until_ms, T0_MS + crash * STEP_MS);
    assert_eq!(rc.restarts(), 0);
    // The leak's lead, not the spike's, sizes the fleet.
    let (lead, i) = r.sizing().lead.unwrap();
    assert_ne!(i, 1);
    assert_ne!(lead.to, LeadTo::ProcessEnd);
    let text = fleet_text(&r);
    assert!(
        text.contains("then its judge found it healthy again at"),
        "{text}"
    );
    assert!(
        text.contains("then its history shows a new process at"),
        "{text}"
    );
    let json = fleet_json(&r);
    assert_eq!(json["replicas"][1]["episodes"][0]["outcome"], "cleared");
    assert_eq!(
        json["replicas"][2]["episodes"][0]["outcome"],
        "history_restart"
    );
}

#[test]
fn a_restarted_replica_is_healthy_until_its_history_shows_a_new_process() {
    // Leaks, is restarted by the simulation, and the history's own restart comes later;
    // the new process leaks again and comes due a second time.
    let n = 2000;
    let real = 900;
    let fds = move |i: u64| {
        if i < real {
            slow_leak(i)
        } else {
            slow_leak(i - real)
        }
    };
    let start = move |i: u64| {
        if i < real {
            one_process(i)
        } else {
            ((T0_MS + real * STEP_MS) / 1000) as f64
        }
    };
    let r = simulate(
        &[replica("api-0", n, fds, start)],
        &Setup::default(),
        &fleet(1),
    );
    let x = &r.replicas[0];
    assert_eq!(x.episodes.len(), 2, "{x:#?}");
    assert_eq!(x.restarts(), 2);
    let (first, second) = (&x.episodes[0], &x.episodes[1]);
    // Not judged between the simulated restart and the history's new process: at limit
    // from tick 614 on, it would have come due again.
    assert!(second.due_ms > T0_MS + real * STEP_MS, "{x:#?}");
    assert_eq!(first.process_end_ms, T0_MS + real * STEP_MS);
    assert_eq!(r.worst_concurrent, 1);
    assert_eq!(r.rounds.len(), 2);
}
