//! The slot state machine on a fake clock and the in-memory API: races and 409s, expiry by
//! observation (whatever the holder's wall clock says), renewals, the release once the
//! restarted target is healthy, max_hold, the overrides, fallback and its stagger, hostile
//! Lease contents, and the gate's verdicts.

use std::time::Duration;

use futures_util::FutureExt;

use super::api::{ApiError, Lease, LeaseApi, MemoryLeases};
use super::slots::{sanitize, Event};
use super::*;
use crate::judge::{Restraint, Verdict};

const S: u64 = 1000;

fn run<F: std::future::Future>(f: F) -> F::Output {
    f.now_or_never().expect("the in-memory API never waits")
}

fn cfg(k: u32) -> FleetConfig {
    FleetConfig::new("api", k)
}

fn at(s: u64) -> Now {
    Now {
        mono_ms: 1_000_000 + s * S,
        unix_ms: 1_760_000_000_000 + s * S,
    }
}

fn leases(k: u32) -> MemoryLeases {
    MemoryLeases::with((0..k).map(|i| lease_name("api", i)))
}

fn replicas(n: usize, c: &FleetConfig) -> Vec<Slots> {
    (0..n)
        .map(|i| Slots::new(c.clone(), format!("api-{i}"), "shop".into()))
        .collect()
}

fn due() -> Demand {
    Demand {
        restart_due: true,
        settled: false,
        tte_s: None,
    }
}

const RESTARTING: Demand = Demand {
    restart_due: false,
    settled: false,
    tte_s: None,
};

const HEALTHY: Demand = Demand {
    restart_due: false,
    settled: true,
    tte_s: None,
};

fn step(s: &mut Slots, api: &MemoryLeases, now: Now, d: &Demand) {
    run(s.step(api, now, d));
}

fn goes(s: &Slots, now: Now) -> bool {
    s.status(now).may_fail()
}

fn holders(api: &MemoryLeases, k: u32) -> Vec<Option<String>> {
    (0..k)
        .map(|i| api.peek(&lease_name("api", i)).and_then(|l| l.holder))
        .collect()
}

#[test]
fn six_replicas_due_together_take_exactly_two_slots() {
    let c = cfg(2);
    let api = leases(2);
    let mut fleet = replicas(6, &c);
    for r in &mut fleet {
        step(r, &api, at(0), &due());
    }
    let going: Vec<&str> = fleet
        .iter()
        .filter(|r| goes(r, at(0)))
        .map(|r| r.identity())
        .collect();
    assert_eq!(going.len(), 2, "{going:?}");
    let mut held: Vec<String> = holders(&api, 2).into_iter().flatten().collect();
    held.sort();
    let mut going: Vec<String> = going.iter().map(|s| s.to_string()).collect();
    going.sort();
    assert_eq!(held, going);
    // The others wait, and say for whom.
    let waiting = fleet.iter().find(|r| !goes(r, at(0))).unwrap();
    let st = waiting.status(at(0));
    assert_eq!(st.slots_held_observed(), 2);
    assert!(st.deferred.is_some());
    assert_eq!(st.acquire_total.get("busy"), Some(&1));
}

/// Reads a slot as free, then loses the write to a replica that wrote in between.
struct Racing<'a> {
    api: &'a MemoryLeases,
    rival: &'static str,
    raced: std::cell::Cell<bool>,
}

impl LeaseApi for Racing<'_> {
    async fn get(&self, name: &str) -> Result<Lease, ApiError> {
        self.api.get(name).await
    }

    async fn replace(&self, name: &str, lease: &Lease) -> Result<Lease, ApiError> {
        if !self.raced.replace(true) {
            let mut theirs = self.api.peek(name).unwrap();
            theirs.holder = Some(self.rival.into());
            self.api.put(name, theirs);
        }
        self.api.replace(name, lease).await
    }
}

#[test]
fn a_409_means_another_replica_won_and_the_next_slot_is_tried() {
    let c = cfg(2);
    let api = leases(2);
    let racing = Racing {
        api: &api,
        rival: "api-rival",
        raced: false.into(),
    };
    let mut r = Slots::new(c, "api-0".into(), "shop".into());
    run(r.step(&racing, at(0), &due()));
    assert!(goes(&r, at(0)));
    let mut held: Vec<String> = holders(&api, 2).into_iter().flatten().collect();
    held.sort();
    assert_eq!(held, ["api-0", "api-rival"]);
    // With one slot only, the lost race leaves it waiting.
    let api1 = leases(1);
    let racing = Racing {
        api: &api1,
        rival: "api-rival",
        raced: false.into(),
    };
    let mut r = Slots::new(cfg(1), "api-0".into(), "shop".into());
    run(r.step(&racing, at(0), &due()));
    assert!(!goes(&r, at(0)));
    assert_eq!(r.status(at(0)).acquire_total.get("conflict"), Some(&1));
    assert_eq!(holders(&api1, 1), [Some("api-rival".to_string())]);
}

#[test]
fn a_dead_holders_slot_frees_after_its_duration_observed_here_whatever_its_clock_says() {
    let c = cfg(1);
    let api = leases(1);
    // A holder whose clock runs a day ahead, then dies (stops renewing).
    let name = lease_name("api", 0);
    api.put(
        &name,
        Lease {
            holder: Some("api-dead".into()),
            duration_s: Some(15),
            renew_unix_ms: Some(at(86_400).unix_ms as i64),
            ..Lease::default()
        },
    );
    let mut r = Slots::new(c, "api-1".into(), "shop".into());
    let mut took = None;
    for t in 0..40 {
        step(&mut r, &api, at(t), &due());
        if goes(&r, at(t)) {
            took = Some(t);
            break;
        }
    }
    // First seen at 0; unchanged for 15 s is expired, and the waiter looks again then.
    let took = took.expect("the slot never freed");
    assert_eq!(took, 15, "took it at {took}s");
    assert_eq!(holders(&api, 1), [Some("api-1".to_string())]);
    assert_eq!(api.peek(&name).unwrap().transitions, Some(1));
}

#[test]
fn a_holder_that_renews_keeps_its_slot() {
    let c = cfg(1);
    let api = leases(1);
    let mut fleet = replicas(2, &c);
    for t in 0..120 {
        for r in &mut fleet {
            step(r, &api, at(t), &due());
        }
    }
    let going = fleet.iter().filter(|r| goes(r, at(120))).count();
    assert_eq!(going, 1);
    assert_eq!(
        fleet
            .iter()
            .map(|r| r
                .status(at(120))
                .acquire_total
                .get("acquired")
                .copied()
                .unwrap_or(0))
            .sum::<u64>(),
        1
    );
}

#[test]
fn the_slot_is_held_through_the_restart_and_given_back_once_healthy_for_long_enough() {
    let c = cfg(1);
    let api = leases(1);
    let mut fleet = replicas(2, &c);
    let (a, b) = fleet.split_at_mut(1);
    let (a, b) = (&mut a[0], &mut b[0]);
    step(a, &api, at(0), &due());
    step(b, &api, at(0), &due());
    assert!(goes(a, at(0)) && !goes(b, at(0)));
    // The kubelet kills a's target: no process for 20 s, then a new one, healthy.
    let mut released = None;
    for t in 1..200 {
        let d = if t < 20 { &RESTARTING } else { &HEALTHY };
        step(a, &api, at(t), d);
        step(b, &api, at(t), &due());
        if released.is_none() && holders(&api, 1)[0].as_deref() != Some("api-0") {
            released = Some(t);
        }
        if goes(b, at(t)) {
            break;
        }
    }
    // Healthy from 20 s, healthy_for 40 s: given back at 60 s, not at the kill.
    assert_eq!(released, Some(60));
    assert!(goes(b, at(200)) || holders(&api, 1)[0].as_deref() == Some("api-1"));
    let events = a.take_events();
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Released {
            reason: "healthy",
            ..
        }
    )));
}

#[test]
fn a_release_the_api_failed_is_tried_again_until_the_lease_is_clear() {
    let c = cfg(1);
    let api = leases(1);
    let mut a = Slots::new(c.clone(), "api-0".into(), "shop".into());
    step(&mut a, &api, at(0), &due());
    assert!(goes(&a, at(0)));
    // Killed and back at once, healthy from 1 s: given back at 41 s, while the API times
    // out (from 40 s to 44 s).
    for t in 1..40 {
        step(&mut a, &api, at(t), &HEALTHY);
    }
    api.down(ApiError::failed("timeout", "request timed out"));
    for t in 40..44 {
        step(&mut a, &api, at(t), &HEALTHY);
    }
    assert!(!goes(&a, at(44)));
    assert_eq!(a.status(at(44)).held, None);
    assert_eq!(
        holders(&api, 1),
        vec![Some("api-0".to_string())],
        "not cleared yet"
    );
    api.up();
    let mut cleared = None;
    for t in 44..120 {
        step(&mut a, &api, at(t), &HEALTHY);
        if cleared.is_none() && holders(&api, 1)[0].is_none() {
            cleared = Some(t);
        }
    }
    // At the next poll: a renew period (5 s + 30 %) after the failed try at 41 s.
    let cleared = cleared.expect("the Lease still names api-0");
    assert!(cleared <= 41 + 7, "cleared at {cleared}");
    assert_eq!(a.status(at(120)).mode, Mode::Coordinated);

    // With the API down past a lease duration, the Lease has expired for everyone: the
    // pod stops trying and reads the slots at its idle cadence again.
    let api = leases(1);
    let mut b = Slots::new(c, "api-1".into(), "shop".into());
    step(&mut b, &api, at(0), &due());
    for t in 1..40 {
        step(&mut b, &api, at(t), &HEALTHY);
    }
    api.down(ApiError::failed("timeout", "request timed out"));
    let before = b.status(at(40)).api.requests_total;
    for t in 40..100 {
        step(&mut b, &api, at(t), &HEALTHY);
    }
    let tries = b.status(at(100)).api.requests_total - before;
    // The release, a retry every 3.5 to 6.5 s within the 15 s, then the idle minute's look.
    assert!((3..=7).contains(&tries), "{tries} requests");
}

#[test]
fn max_hold_gives_the_slot_back_and_the_pod_queues_again() {
    let mut c = cfg(1);
    c.max_hold = Duration::from_secs(120);
    let api = leases(1);
    let mut fleet = replicas(2, &c);
    for t in 0..=130 {
        for r in &mut fleet {
            step(r, &api, at(t), &due());
        }
    }
    let a = &mut fleet[0];
    let events = a.take_events();
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::Released {
                reason: "max_hold",
                ..
            }
        )),
        "{events:?}"
    );
    // The other replica got its turn.
    assert_eq!(holders(&api, 1), [Some("api-1".to_string())]);
}

#[test]
fn a_max_hold_release_the_api_failed_waits_its_lease_duration_before_asking_again() {
    let mut c = cfg(1);
    c.max_hold = Duration::from_secs(120);
    let api = leases(1);
    let mut a = Slots::new(c, "api-0".into(), "shop".into());
    for t in 0..120 {
        step(&mut a, &api, at(t), &due());
    }
    assert!(goes(&a, at(119)));
    // Given back at 120 s while the API times out; it answers again at 122 s. The Lease
    // still names api-0, which would count it free for itself: it asks again only a lease
    // duration (15 s) after the release, as when the release succeeds.
    api.down(ApiError::failed("timeout", "request timed out"));
    step(&mut a, &api, at(120), &due());
    assert!(!goes(&a, at(120)));
    api.up();
    for t in 121..135 {
        step(&mut a, &api, at(t), &due());
        assert!(!goes(&a, at(t)), "took its slot again at {t}");
    }
    step(&mut a, &api, at(135), &due());
    assert!(goes(&a, at(135)));
}

#[test]
fn near_exhaustion_a_waiting_replica_goes_anyway() {
    let c = cfg(1);
    let api = leases(1);
    let mut fleet = replicas(2, &c);
    step(&mut fleet[0], &api, at(0), &due());
    let b = &mut fleet[1];
    step(
        b,
        &api,
        at(0),
        &Demand {
            tte_s: Some(600.0),
            ..due()
        },
    );
    assert!(!goes(b, at(0)));
    // restart_cost 60 s + the 30 s margin.
    step(
        b,
        &api,
        at(1),
        &Demand {
            tte_s: Some(90.0),
            ..due()
        },
    );
    let st = b.status(at(1));
    assert_eq!(st.go, Some(GoReason::Deadline));
    assert_eq!(st.override_total.get("deadline"), Some(&1));
    assert!(st.held.is_none());
}

#[test]
fn after_max_wait_a_waiting_replica_goes_anyway() {
    let mut c = cfg(1);
    c.max_wait = Duration::from_secs(300);
    let api = leases(1);
    let mut fleet = replicas(2, &c);
    for t in 0..=300 {
        step(&mut fleet[0], &api, at(t), &due());
        step(&mut fleet[1], &api, at(t), &due());
        if t < 300 {
            assert!(!goes(&fleet[1], at(t)), "went at {t}s");
        }
    }
    assert_eq!(fleet[1].status(at(300)).go, Some(GoReason::MaxWait));
}

#[test]
fn with_the_api_down_each_replica_goes_after_its_own_stagger() {
    let c = cfg(1);
    let api = leases(1);
    api.down(ApiError::failed("unreachable", "connection refused"));
    let mut fleet = replicas(6, &c);
    let mut went = vec![None; 6];
    let mut fell_back = [None; 6];
    for t in 0..400 {
        for (i, r) in fleet.iter_mut().enumerate() {
            step(r, &api, at(t), &due());
            if fell_back[i].is_none() && r.status(at(t)).mode == Mode::LocalFallback {
                fell_back[i] = Some(t);
            }
            if went[i].is_none() && goes(r, at(t)) {
                went[i] = Some(t);
            }
        }
    }
    let st = fleet[0].status(at(0));
    assert_eq!(st.mode, Mode::LocalFallback);
    assert!(!st.api.up);
    assert!(st
        .api
        .errors_total
        .get("unreachable")
        .is_some_and(|n| *n > 0));
    let mut went: Vec<u64> = went.into_iter().map(|w| w.expect("never went")).collect();
    // Each fell back once the API had failed for a lease duration (15 s, within a poll),
    // and went at its stagger from there (within a second of the step), all within the
    // 5 min spread, not all together.
    for (i, r) in fleet.iter().enumerate() {
        let fell = fell_back[i].expect("never fell back");
        assert!((15..=20).contains(&fell), "{i} fell back at {fell}");
        let stagger = r.stagger_ms(None) / S;
        assert!(
            went[i] == fell + stagger || went[i] == fell + stagger + 1,
            "{i}: fell back at {fell}, stagger {stagger}: {went:?}"
        );
    }
    went.sort();
    went.dedup();
    assert!(went.len() >= 4, "staggers collide: {went:?}");
    assert!(went.iter().all(|t| *t < 330));
}

/// One slot held by a replica whose restarted target never settles (so it keeps renewing);
/// five more waiting for it since `t = 0`, stepped each second until `until`.
fn five_waiting_behind_a_holder(
    api: &MemoryLeases,
    fleet: &mut [Slots],
    from: u64,
    until: u64,
    went: &mut [Option<u64>],
) {
    for t in from..until {
        for (i, r) in fleet.iter_mut().enumerate() {
            let d = if i == 0 && t > 0 { RESTARTING } else { due() };
            step(r, api, at(t), &d);
            if i > 0 && went[i].is_none() && goes(r, at(t)) {
                went[i] = Some(t);
            }
        }
    }
}

/// Five replicas waiting 400 s behind `api-0`'s slot: none went.
fn five_waiting_for_400_s() -> (MemoryLeases, Vec<Slots>, Vec<Option<u64>>) {
    let api = leases(1);
    let mut fleet = replicas(6, &cfg(1));
    let mut went = vec![None; 6];
    five_waiting_behind_a_holder(&api, &mut fleet, 0, 400, &mut went);
    assert_eq!(holders(&api, 1), vec![Some("api-0".to_string())]);
    assert!(went.iter().all(Option::is_none), "{went:?}");
    (api, fleet, went)
}

#[test]
fn api_errors_shorter_than_a_lease_duration_let_no_waiting_replica_through() {
    let (api, mut fleet, mut went) = five_waiting_for_400_s();
    // Every replica has waited longer than any stagger (at most 5 min) when requests start
    // to fail, now and then and then for 12 s, less than the 15 s lease duration.
    for (from, to) in [(400, 401), (430, 436), (470, 482)] {
        api.down(ApiError::failed("timeout", "request timed out"));
        five_waiting_behind_a_holder(&api, &mut fleet, from, to, &mut went);
        api.up();
        five_waiting_behind_a_holder(&api, &mut fleet, to, to + 30, &mut went);
    }
    assert!(went.iter().all(Option::is_none), "{went:?}");
    for r in &fleet {
        let st = r.status(at(520));
        assert_eq!(st.mode, Mode::Coordinated);
        assert!(st.api.up);
        assert!(st.api.errors_total.get("timeout").is_some_and(|n| *n > 0));
        assert!(st.override_total.is_empty(), "{:?}", st.override_total);
    }
    let fallbacks = fleet
        .iter_mut()
        .flat_map(|r| r.take_events())
        .filter(|e| matches!(e, Event::Fallback { .. } | Event::Recovered))
        .count();
    assert_eq!(fallbacks, 0);
}

#[test]
fn replicas_waiting_when_an_outage_begins_go_spread_from_it_not_at_once() {
    let (api, mut fleet, mut went) = five_waiting_for_400_s();
    // At 400 s every waiting replica is past its stagger counted from when it became due;
    // counted from the fallback, they go spread over the staggers.
    api.down(ApiError::failed("unreachable", "connection refused"));
    let mut fell_back = [None; 6];
    for t in 400..800 {
        five_waiting_behind_a_holder(&api, &mut fleet, t, t + 1, &mut went);
        for (i, r) in fleet.iter().enumerate() {
            if fell_back[i].is_none() && r.status(at(t)).mode == Mode::LocalFallback {
                fell_back[i] = Some(t);
            }
        }
    }
    let mut times = Vec::new();
    for (i, r) in fleet.iter().enumerate().skip(1) {
        let t = went[i].unwrap_or_else(|| panic!("{i} never went"));
        let fell = fell_back[i].unwrap_or_else(|| panic!("{i} never fell back"));
        // The first failed request within a poll (5 s + 30 %) of 400, the fallback a lease
        // duration (15 s) later, at a poll.
        assert!((415..=430).contains(&fell), "{i} fell back at {fell}");
        let stagger = r.stagger_ms(None) / S;
        assert!(
            t == fell + stagger || t == fell + stagger + 1,
            "{i} went at {t}: fell back at {fell}, its stagger is {stagger} s"
        );
        assert_eq!(
            r.status(at(800)).override_total.get("fallback_stagger"),
            Some(&1)
        );
        times.push(t);
    }
    times.sort();
    times.dedup();
    assert!(times.len() >= 4, "they went together: {times:?}");
}

#[test]
fn the_stagger_is_at_most_half_the_time_to_exhaustion() {
    let c = cfg(1);
    for i in 0..50 {
        let r = Slots::new(c.clone(), format!("pod-{i}"), "shop".into());
        assert!(r.stagger_ms(Some(120.0)) < 60_000);
        assert!(r.stagger_ms(None) < 300_000);
        assert_eq!(r.stagger_ms(Some(120.0)), r.stagger_ms(Some(120.0)));
    }
}

#[test]
fn a_holder_keeps_its_decision_when_the_api_goes_away() {
    let c = cfg(1);
    let api = leases(1);
    let mut r = Slots::new(c, "api-0".into(), "shop".into());
    step(&mut r, &api, at(0), &due());
    assert!(goes(&r, at(0)));
    api.down(ApiError::failed("forbidden", "403 Forbidden"));
    for t in 1..60 {
        step(&mut r, &api, at(t), &due());
        assert!(goes(&r, at(t)));
    }
    let st = r.status(at(60));
    assert_eq!(st.mode, Mode::LocalFallback);
    assert!(st.held.is_some());
}

#[test]
fn an_api_error_alone_never_makes_a_replica_go() {
    let c = cfg(1);
    let api = leases(1);
    api.down(ApiError::failed("not_found", "lease not found"));
    let mut r = Slots::new(c, "api-0".into(), "shop".into());
    for t in 0..600 {
        step(&mut r, &api, at(t), &HEALTHY);
        assert!(!goes(&r, at(t)));
    }
    assert_eq!(r.status(at(600)).mode, Mode::LocalFallback);
}

#[test]
fn hostile_lease_contents_are_bounded() {
    let mut c = cfg(1);
    c.max_hold = Duration::from_secs(7200);
    let api = leases(1);
    let name = lease_name("api", 0);
    let long = "x\u{7}".repeat(5000);
    api.put(
        &name,
        Lease {
            holder: Some(long),
            duration_s: Some(i64::MAX),
            transitions: Some(-7),
            ..Lease::default()
        },
    );
    let mut r = Slots::new(c, "api-0".into(), "shop".into());
    step(&mut r, &api, at(0), &due());
    let st = r.status(at(0));
    let shown = st.slots[0].holder.clone().unwrap();
    assert!(
        shown.chars().count() <= 64 && !shown.contains('\u{7}'),
        "{shown}"
    );
    // The duration is read as at most an hour.
    assert_eq!(st.slots[0].duration_s, 3600);
    for t in 1..=3610 {
        step(&mut r, &api, at(t), &due());
    }
    assert!(r.status(at(3610)).held.is_some());
    assert_eq!(api.peek(&name).unwrap().transitions, Some(1));
    assert_eq!(sanitize("a\nb"), "a?b");
}

#[test]
fn shutdown_gives_the_slot_back() {
    let api = leases(1);
    let mut r = Slots::new(cfg(1), "api-0".into(), "shop".into());
    step(&mut r, &api, at(0), &due());
    assert_eq!(holders(&api, 1), [Some("api-0".to_string())]);
    run(r.shutdown(&api, at(1)));
    assert_eq!(holders(&api, 1), [None]);
}

#[test]
fn idle_replicas_read_the_slots_rarely() {
    let api = leases(2);
    let mut r = Slots::new(cfg(2), "api-0".into(), "shop".into());
    for t in 0..600 {
        step(&mut r, &api, at(t), &HEALTHY);
    }
    // Every 60 s ± 30 %, two GETs: 10 minutes take 16 to 30 calls, not 1,200.
    assert!((16..=30).contains(&api.calls()), "{} calls", api.calls());
    assert!(r.status(at(600)).api.up);
}

/// A lockstep fleet, a kubelet per replica: a replica that may fail restarts its target
/// after `restart_s`; the new target is healthy at once. At most K restart at once, and
/// every replica is restarted.
#[test]
fn a_lockstep_fleet_drains_k_at_a_time() {
    let c = cfg(2);
    let api = leases(2);
    let mut fleet = replicas(6, &c);
    let restart_s = 30;
    let mut restarted_at: Vec<Option<u64>> = vec![None; 6];
    let mut going_since: Vec<Option<u64>> = vec![None; 6];
    let mut worst = 0;
    for t in 0..1200 {
        let mut going = 0;
        for (i, r) in fleet.iter_mut().enumerate() {
            let d = match restarted_at[i] {
                Some(_) => HEALTHY,
                None => due(),
            };
            step(r, &api, at(t), &d);
            if restarted_at[i].is_none() && goes(r, at(t)) {
                going += 1;
                let since = *going_since[i].get_or_insert(t);
                if t - since >= restart_s {
                    restarted_at[i] = Some(t);
                }
            }
        }
        worst = worst.max(going);
    }
    assert!(worst <= 2, "{worst} restarting at once");
    let done: Vec<u64> = restarted_at
        .iter()
        .map(|r| r.expect("not restarted"))
        .collect();
    // ceil(6/2) rounds of restart (30 s) + healthy_for (40 s) + a poll.
    assert!(done.iter().all(|t| *t < 3 * (30 + 40 + 8)), "{done:?}");
}

#[test]
fn the_gate_defers_a_failing_verdict_and_says_who_holds_the_slots() {
    let api = leases(1);
    let mut fleet = replicas(2, &cfg(1));
    step(&mut fleet[0], &api, at(0), &due());
    step(&mut fleet[1], &api, at(0), &due());
    let failing = Verdict {
        healthy: false,
        failing: vec!["fds: 1001/1024 open (97.8% >= 90%)".into()],
        ..Verdict::default()
    };
    let holder = fleet[0].status(at(10));
    assert_eq!(
        gate(failing.clone(), Some(&holder), at(10).unix_ms),
        failing
    );
    let waiter = fleet[1].status(at(10));
    let v = gate(failing.clone(), Some(&waiter), at(10).unix_ms);
    assert!(v.healthy);
    assert_eq!(v.restraint, Some(Restraint::Deferred));
    assert!(
        v.notes[0].starts_with("deferred: fleet group api has 1/1 restart slots held by api-0"),
        "{}",
        v.notes[0]
    );
    assert!(
        v.notes[0].contains("goes anyway in 19m50s (max_wait)"),
        "{}",
        v.notes[0]
    );
    assert_eq!(v.notes[1], "would fail: fds: 1001/1024 open (97.8% >= 90%)");
    // Without [fleet], and for a healthy verdict, nothing changes.
    assert_eq!(gate(failing.clone(), None, 0), failing);
    let ok = Verdict::healthy(vec![]);
    assert_eq!(gate(ok.clone(), Some(&waiter), 0), ok);
}

#[test]
fn group_names_and_percentages() {
    assert!(check_group("api").is_ok());
    assert!(check_group("api-v2").is_ok());
    for bad in ["", "Api", "-api", "api-", "a.b", &"a".repeat(41)] {
        assert!(check_group(bad).is_err(), "{bad:?}");
    }
    assert_eq!(slots_for(25.0, 8), 2);
    assert_eq!(slots_for(25.0, 9), 3);
    assert_eq!(slots_for(1.0, 3), 1);
    assert_eq!(slots_for(100.0, 50), 50);
    assert_eq!(stable_hash("a"), 0xaf63_dc4c_8601_ec8c);
}

/// A failing series of `value` against `limit`, its window's slope `slope` (trusted or
/// not), and the judge's own projection where trusted.
fn failing_series(value: f64, limit: f64, slope: f64, trusted: bool) -> crate::judge::Judged {
    use crate::judge::{Budget, Judged, RuleState, RuleStatus, Series, SeriesStatus, Trend};
    let trend = Trend {
        slope_per_s: slope,
        samples: 5,
        span_s: 4.0,
        rising_share: 1.0,
        mann_kendall_z: 1.0,
        trusted,
        untrusted_because: (!trusted).then(|| "span 4s < 10m".into()),
    };
    let series = SeriesStatus {
        series: Series::Fds,
        value: Some(value),
        limit: Some(limit),
        limit_source: None,
        unknown: None,
        not_collected: false,
        limit_unknown: None,
        seconds_to_exhaustion: trusted.then(|| (limit - value) / slope),
        trend: Some(trend),
        leak_suspected: false,
    };
    let rule = RuleStatus {
        series: Series::Fds,
        state: RuleState::Failing,
        failing: true,
        consecutive_failing: 1,
        consecutive_passing: 0,
        checks: Vec::new(),
        message: Some("fds: 80/256 open".into()),
    };
    Judged {
        series: vec![series],
        rules: vec![rule],
        budget: Budget::default(),
        verdict: Verdict {
            healthy: false,
            failing: vec!["fds: 80/256 open".into()],
            ..Verdict::default()
        },
    }
}

#[test]
fn the_deadline_reads_the_slope_before_the_judge_trusts_it() {
    // A young target: 5 samples, the trend not trusted yet, 1 fd/s from 200 of 256.
    let young = failing_series(200.0, 256.0, 1.0, false);
    let d = demand_of([(&young, None)].into_iter());
    assert!(d.restart_due);
    assert_eq!(d.tte_s, Some(56.0));
    let trusted = failing_series(200.0, 256.0, 2.0, true);
    assert_eq!(demand_of([(&trusted, None)].into_iter()).tte_s, Some(28.0));
    // At the limit: 0; falling: unknown.
    let full = failing_series(256.0, 256.0, 0.0, false);
    assert_eq!(demand_of([(&full, None)].into_iter()).tte_s, Some(0.0));
    let falling = failing_series(200.0, 256.0, -1.0, false);
    assert_eq!(demand_of([(&falling, None)].into_iter()).tte_s, None);
}
