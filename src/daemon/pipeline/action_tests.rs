//! Actions from the tick, on a fixture /proc tree: the restart budget, which takes three
//! restarts that followed an unhealthy verdict (staged by new start times).

use std::fs;
use std::time::Duration;

use super::tests_support::{pipeline_with, write_pid};
use crate::actions::ActionOutcome;
use crate::config::actions::ExecConfig;
use crate::config::ActionsConfig;
use crate::judge::{Rule, Series};

#[test]
fn nothing_fires_while_the_restart_budget_is_exhausted() {
    let root = tempfile::tempdir().unwrap();
    write_pid(root.path(), 'S', 1000);
    let mut w = pipeline_with(root.path(), |t| {
        // The fixture holds 3 fds: over max = 1 on every tick.
        t.rules = vec![(
            Series::Fds,
            Rule {
                max: Some(1.0),
                ..Rule::default()
            },
        )];
        t.judge.fail_after = 1;
        t.actions = ActionsConfig {
            cooldown: Duration::ZERO,
            max_per_hour: 100,
            exec: Some(ExecConfig {
                argv: vec!["true".into()],
                timeout: Duration::from_secs(10),
            }),
            ..ActionsConfig::default()
        };
    });
    let mut fired = 0;
    for restart in 0..4u64 {
        std::thread::sleep(Duration::from_millis(3));
        let t = w.tick().remove(0);
        let last = t.actions.last.clone().expect("a flip on every new process");
        if restart < 3 {
            assert!(!t.verdict().healthy);
            // Wait for the hook to finish before the next flip.
            let done = (0..500).any(|_| {
                std::thread::sleep(Duration::from_millis(10));
                let a = w.targets[0].actions.status(&w.targets[0].cfg.actions);
                a.last.is_some_and(|l| !l.running && l.results.len() == 1)
            });
            assert!(done, "the hook did not finish");
            fired += 1;
        } else {
            // The budget is exhausted: leakwatch fails open, and nothing is sent.
            assert!(t.verdict().healthy, "{:?}", t.verdict());
            assert!(t.judged.budget.exhausted);
            assert_eq!(last.results.len(), 1, "{last:?}");
            assert_eq!(last.results[0].result, ActionOutcome::Skipped);
            assert!(
                last.results[0].detail.contains("restart budget"),
                "{last:?}"
            );
        }
        // A new process takes the pid: a restart that followed an unhealthy verdict.
        write_pid(root.path(), 'S', 2000 + restart);
    }
    assert_eq!(fired, 3);
    let counts = w.targets[0]
        .actions
        .status(&w.targets[0].cfg.actions)
        .counts;
    let count = |r: ActionOutcome| counts.iter().find(|c| c.result == r).unwrap().count;
    assert_eq!(
        (count(ActionOutcome::Ok), count(ActionOutcome::Skipped)),
        (3, 1),
        "{counts:?}"
    );
    fs::remove_dir_all(root.path().join("4242")).unwrap();
}
