//! Observe mode through the tick, on a fixture /proc tree: the verdict answers 200 with
//! `observe: would fail:` lines, the judge's flip is counted and fires the evidence
//! actions only, no restart slot is asked for, and a reload to enforce fails it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::tests_support::{pipeline_with, write_pid};
use super::Pipeline;
use crate::actions::{Action, ActionOutcome, ActionResult, OBSERVE_SKIP};
use crate::config::actions::{BundleConfig, ExecConfig};
use crate::config::{ActionsConfig, TargetConfig};
use crate::judge::{Enforcement, Restraint, Rule, Series};
use crate::snapshot::TargetStatus;

/// pid 4242 holds 3 fds: over `max = 1` on every tick.
fn failing_fds(t: &mut TargetConfig) {
    t.rules = vec![(
        Series::Fds,
        Rule {
            max: Some(1.0),
            ..Rule::default()
        },
    )];
    t.judge.fail_after = 1;
}

/// A failing target in observe mode with a bundle and an exec hook on its flips.
fn observed(root: &Path, bundles: &Path) -> Pipeline {
    pipeline_with(root, |t| {
        failing_fds(t);
        t.mode = Enforcement::Observe;
        t.actions = ActionsConfig {
            cooldown: Duration::ZERO,
            max_per_hour: 100,
            bundle: Some(BundleConfig {
                dir: bundles.to_path_buf(),
                ..BundleConfig::default()
            }),
            exec: Some(ExecConfig {
                argv: vec!["true".into()],
                timeout: Duration::from_secs(10),
            }),
            ..ActionsConfig::default()
        };
    })
}

/// The results of the last firing once it is done.
fn fired(p: &Pipeline) -> Vec<ActionResult> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let w = &p.targets[0];
        if let Some(last) = w.actions.status(&w.cfg.actions).last {
            if !last.running {
                return last.results;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the actions did not finish");
}

fn result(results: &[ActionResult], a: Action) -> &ActionResult {
    results
        .iter()
        .find(|r| r.action == a)
        .unwrap_or_else(|| panic!("no {a:?} in {results:?}"))
}

fn tick(p: &mut Pipeline) -> TargetStatus {
    std::thread::sleep(Duration::from_millis(3));
    p.tick().remove(0)
}

#[test]
fn an_observe_target_answers_200_runs_only_the_bundle_and_fails_once_enforced() {
    let root = tempfile::tempdir().unwrap();
    let bundles = tempfile::tempdir().unwrap();
    write_pid(root.path(), 'S', 1000);
    let mut p = observed(root.path(), bundles.path());

    let t = tick(&mut p);
    let v = t.verdict();
    assert!(v.healthy, "{v:?}");
    assert!(v.failing.is_empty(), "{v:?}");
    assert_eq!(v.restraint, Some(Restraint::Observe));
    assert!(
        v.notes[0].starts_with("observe: would fail: fds: 3"),
        "{:?}",
        v.notes
    );
    assert_eq!(t.mode, Enforcement::Observe);
    assert_eq!(t.would_fail_flips_total, 1, "the judge's flip is counted");
    // The flip fired: the bundle ran, the exec hook (which may restart) did not.
    let results = fired(&p);
    let bundle = result(&results, Action::Bundle);
    assert_eq!(bundle.result, ActionOutcome::Ok, "{bundle:?}");
    let exec = result(&results, Action::Exec);
    assert_eq!(exec.result, ActionOutcome::Skipped);
    assert_eq!(exec.detail, OBSERVE_SKIP);
    assert!(exec.detail.starts_with("observe mode"));

    // Still failing: no new flip.
    let t = tick(&mut p);
    assert!(t.verdict().healthy);
    assert_eq!(t.would_fail_flips_total, 1);

    // SIGHUP with mode = "enforce": the same target, windows kept, fails now.
    let mut config = p.config().clone();
    config.targets[0].mode = Enforcement::Enforce;
    let changes = p.reload(config);
    assert_eq!(
        changes,
        ["pid-4242: mode observe -> enforce: a failing verdict fails /healthz"]
    );
    let t = tick(&mut p);
    let v = t.verdict();
    assert!(!v.healthy, "{v:?}");
    assert_eq!(v.restraint, None);
    assert!(v.failing[0].starts_with("fds: 3"), "{v:?}");
    assert_eq!(t.mode, Enforcement::Enforce);
    assert_eq!(
        t.would_fail_flips_total, 1,
        "an enforced flip is no would-be"
    );
    // Switched while failing, it flips again: every action runs now.
    let results = fired(&p);
    assert_eq!(result(&results, Action::Exec).result, ActionOutcome::Ok);
    assert_eq!(result(&results, Action::Bundle).result, ActionOutcome::Ok);

    // And back to observe: 200 again.
    let mut config = p.config().clone();
    config.targets[0].mode = Enforcement::Observe;
    let changes = p.reload(config);
    assert_eq!(
        changes,
        ["pid-4242: mode enforce -> observe: /healthz answers 200 and says what would fail"]
    );
    assert!(tick(&mut p).verdict().would_fail());
}

#[test]
fn listed_in_actions_observe_the_exec_hook_runs_too() {
    let root = tempfile::tempdir().unwrap();
    let bundles = tempfile::tempdir().unwrap();
    write_pid(root.path(), 'S', 1000);
    let mut p = observed(root.path(), bundles.path());
    let mut config = p.config().clone();
    config.targets[0].actions.observe = vec![Action::Exec];
    p.reload(config);
    assert!(tick(&mut p).verdict().healthy);
    let results = fired(&p);
    assert_eq!(result(&results, Action::Exec).result, ActionOutcome::Ok);
    let bundle = result(&results, Action::Bundle);
    assert_eq!(
        (bundle.result, bundle.detail.as_str()),
        (ActionOutcome::Skipped, OBSERVE_SKIP)
    );
}

/// With `[fleet]` (no API here: the local fallback), a failing observe target asks for
/// no restart and is not deferred; enforced, it asks.
#[test]
fn an_observe_target_never_asks_the_fleet_for_a_slot() {
    let root = tempfile::tempdir().unwrap();
    write_pid(root.path(), 'S', 1000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _in_runtime = rt.enter();
    let mut cfg = crate::fleet::FleetConfig::new("observe-test", 1);
    cfg.kubeconfig = Some(root.path().join("no-kubeconfig"));
    cfg.identity = Some("observe-test-0".into());
    let fleet = crate::fleet::task::Fleet::spawn(cfg);
    let mut p = pipeline_with(root.path(), |t| {
        failing_fds(t);
        t.mode = Enforcement::Observe;
    })
    .with_fleet(Some(Arc::clone(&fleet.link)));
    let asked = |p: &mut Pipeline| -> (TargetStatus, bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let t = tick(p);
            if let Some(s) = p.fleet_status() {
                return (t, s.deferred.is_some() || s.go.is_some());
            }
            assert!(Instant::now() < deadline, "the fleet never answered");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let (t, wants) = asked(&mut p);
    assert_eq!(t.verdict().restraint, Some(Restraint::Observe));
    assert!(!wants, "{:?}", p.fleet_status());
    // Still not after the fleet stepped on this tick's demand.
    std::thread::sleep(Duration::from_millis(300));
    let (t, wants) = asked(&mut p);
    assert_eq!(t.verdict().restraint, Some(Restraint::Observe));
    assert!(!wants, "{:?}", p.fleet_status());

    let mut config = p.config().clone();
    config.targets[0].mode = Enforcement::Enforce;
    p.reload(config);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (t, wants) = asked(&mut p);
        if wants {
            assert_ne!(t.verdict().restraint, Some(Restraint::Observe));
            break;
        }
        assert!(Instant::now() < deadline, "{:?}", p.fleet_status());
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(fleet);
}
