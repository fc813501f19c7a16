//! `/metrics` as Prometheus itself reads it: `promtool check metrics` must parse the render
//! of the example snapshot and find no lint problem (it exits 1 on a parse error and 3 on
//! lint problems, e.g. a counter without `_total` or a name with an abbreviated unit).
//!
//! Without promtool (Debian: `apt-get install --no-install-recommends prometheus`) the test
//! says so and passes, unless `LEAKWATCH_REQUIRE_PROMTOOL=1` (CI sets it): then it fails.

#[path = "common/skip.rs"]
mod skip;

use leakwatch::metrics::{render, render_targets};
use leakwatch::snapshot::Snapshot;
use leakwatch::test_support::metrics::{example_snapshot, missing_target, promtool_check};

/// promtool's verdict on `text`; `false` when promtool is missing and not required.
fn check(what: &str, text: &str) -> bool {
    let report = promtool_check(text).expect("run promtool");
    let Some(report) = report else {
        skip::skip(
            "LEAKWATCH_REQUIRE_PROMTOOL",
            "promtool is not installed (Debian package `prometheus`)",
        );
        return false;
    };
    assert!(
        report.success,
        "promtool check metrics on {what}: exit {:?}\n{}\n--- the text ---\n{text}",
        report.exit_code, report.output
    );
    true
}

fn variants() -> Vec<(&'static str, Snapshot)> {
    let full = example_snapshot();
    let mut no_peers = example_snapshot();
    no_peers.peer_labels = false;
    let mut odd_names = example_snapshot();
    odd_names
        .targets
        .push(missing_target("odd \"name\" \\ with\nnewline and ünïcode"));
    let mut no_targets = example_snapshot();
    no_targets.targets.clear();
    vec![
        ("the example snapshot", full),
        ("peer_labels = false", no_peers),
        ("a target name that needs escaping", odd_names),
        ("no targets", no_targets),
    ]
}

#[test]
fn promtool_accepts_the_render_of_every_variant() {
    for (what, snapshot) in variants() {
        if !check(what, &render(&snapshot)) {
            return;
        }
    }
}

#[test]
fn promtool_accepts_the_golden_file() {
    let golden = include_str!("fixtures/metrics/golden.prom");
    assert_eq!(
        golden,
        render_targets(&example_snapshot()),
        "golden.prom is stale"
    );
    check("tests/fixtures/metrics/golden.prom", golden);
}

/// The check would be worthless if promtool's complaints did not reach the test.
#[test]
fn promtool_complaints_fail_the_check() {
    let bad = "# TYPE leakwatch_things counter\nleakwatch_things 1\n";
    let Some(report) = promtool_check(bad).expect("run promtool") else {
        check("an empty text", "");
        return;
    };
    assert!(!report.success, "{}", report.output);
    assert!(report.output.contains("_total"), "{}", report.output);
}
