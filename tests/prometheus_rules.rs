//! The alert rules and scrape configs in `packaging/prometheus/` as Prometheus' own tool
//! reads them: `promtool check rules` and `check config` accept them, the unit tests in
//! `leakwatch-alerts.test.yml` pass (`promtool test rules`), every alert has a unit test, a
//! rule broken on purpose fails them, and the rules name only metrics leakwatch exports.
//!
//! Without promtool (Debian: `apt-get install --no-install-recommends prometheus`) the
//! promtool tests say so and pass, unless `LEAKWATCH_REQUIRE_PROMTOOL=1` (CI sets it): then
//! they fail.

#[path = "common/skip.rs"]
mod skip;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const ALERTS: &str = include_str!("../packaging/prometheus/leakwatch-alerts.yml");
const ALERT_TESTS: &str = include_str!("../packaging/prometheus/leakwatch-alerts.test.yml");
const GOLDEN: &str = include_str!("fixtures/metrics/golden.prom");

fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/prometheus")
}

/// What promtool said: success and its output (stdout and stderr).
struct Run {
    success: bool,
    output: String,
}

/// `promtool ARGS` in `dir`; `None` when promtool is missing and not required.
fn promtool(dir: &Path, args: &[&str]) -> Option<Run> {
    let out = match Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            skip::skip(
                "LEAKWATCH_REQUIRE_PROMTOOL",
                "promtool is not installed (Debian package `prometheus`)",
            );
            return None;
        }
        Err(e) => panic!("run promtool: {e}"),
    };
    Some(Run {
        success: out.status.success(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    })
}

fn alert_names() -> Vec<&'static str> {
    ALERTS
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect()
}

#[test]
fn promtool_check_rules_accepts_the_alert_rules() {
    let Some(run) = promtool(&packaging(), &["check", "rules", "leakwatch-alerts.yml"]) else {
        return;
    };
    assert!(run.success, "{}", run.output);
    let found = format!("SUCCESS: {} rules found", alert_names().len());
    assert!(run.output.contains(&found), "{}", run.output);
}

#[test]
fn the_alert_rules_pass_their_unit_tests() {
    let Some(run) = promtool(
        &packaging(),
        &["test", "rules", "leakwatch-alerts.test.yml"],
    ) else {
        return;
    };
    assert!(run.success, "{}", run.output);
}

#[test]
fn every_alert_has_a_unit_test() {
    let tested: BTreeSet<&str> = ALERT_TESTS
        .lines()
        .filter_map(|l| l.trim().strip_prefix("alertname: "))
        .collect();
    for name in alert_names() {
        assert!(tested.contains(name), "no unit test for {name}");
    }
    assert_eq!(alert_names().len(), 13, "{:?}", alert_names());
}

/// The unit tests would be worthless if a wrong threshold or a missing `for:` passed them.
#[test]
fn a_rule_broken_on_purpose_fails_its_unit_test() {
    let broken = [
        ("exhaustion threshold", "< 30 * 60", "< 10 * 60"),
        (
            "unhealthy without for",
            "leakwatch_healthy == 0\n        for: 5m",
            "leakwatch_healthy == 0\n        for: 0m",
        ),
        (
            "a leak suspected after 5 minutes, not 15",
            "leakwatch_leak_suspected == 1\n        for: 15m",
            "leakwatch_leak_suspected == 1\n        for: 5m",
        ),
        (
            "a renamed metric",
            "leakwatch_target_up == 0",
            "leakwatch_target_found == 0",
        ),
        (
            "a would-be restart after 1 minute, not 3",
            "leakwatch_would_fail == 1\n        for: 3m",
            "leakwatch_would_fail == 1\n        for: 1m",
        ),
    ];
    for (what, from, to) in broken {
        assert_eq!(ALERTS.matches(from).count(), 1, "{what}: `{from}`");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("leakwatch-alerts.yml"),
            ALERTS.replace(from, to),
        )
        .unwrap();
        std::fs::write(dir.path().join("leakwatch-alerts.test.yml"), ALERT_TESTS).unwrap();
        let Some(run) = promtool(dir.path(), &["test", "rules", "leakwatch-alerts.test.yml"])
        else {
            return;
        };
        assert!(
            !run.success,
            "{what}: the unit tests still pass\n{}",
            run.output
        );
        assert!(run.output.contains("FAILED"), "{what}: {}", run.output);
    }
}

/// `leakwatch_*` names in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("leakwatch_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        // `leakwatch_rule_failing{...}` in a template, `leakwatch-alerts.yml` is no metric.
        let preceded = rest[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
        if !preceded {
            names.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

#[test]
fn the_rules_name_only_metrics_leakwatch_exports() {
    let exported: BTreeSet<String> = GOLDEN
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    let used: BTreeSet<String> = metric_names(ALERTS)
        .union(&metric_names(ALERT_TESTS))
        .cloned()
        .collect();
    assert!(used.len() >= 9, "{used:?}");
    let unknown: Vec<&String> = used.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "not in tests/fixtures/metrics/golden.prom: {unknown:?}"
    );
}

#[test]
fn promtool_check_config_accepts_the_scrape_configs() {
    let Some(run) = promtool(&packaging(), &["check", "config", "prometheus.yml"]) else {
        return;
    };
    assert!(run.success, "{}", run.output);
    // It loads the rule file it names, too.
    assert!(
        run.output.contains("SUCCESS: 13 rules found"),
        "{}",
        run.output
    );

    let run = promtool(&packaging(), &["check", "config", "scrape-kubernetes.yml"]).unwrap();
    if !run.success && run.output.contains("field kubernetes_sd_configs not found") {
        // Debian builds Prometheus without Kubernetes discovery; tests/prometheus_live.rs
        // runs this job's relabeling with the discovery's labels given statically.
        eprintln!(
            "note: this promtool has no Kubernetes discovery: {}",
            run.output.trim()
        );
        return;
    }
    assert!(run.success, "{}", run.output);
}

/// The Prometheus recipe (docs/metrics.md, moved from the README) is the tested one: its
/// scrape job is `prometheus.yml`'s, and it explains every alert the rule file has.
#[test]
fn the_readme_shows_the_tested_scrape_config_and_every_alert() {
    let readme = include_str!("../docs/metrics.md");
    let config = include_str!("../packaging/prometheus/prometheus.yml");
    let job = &config[config.find("scrape_configs:").unwrap()..];
    assert!(
        readme.contains(&format!("```yaml\n{job}```")),
        "docs/metrics.md's scrape job differs from packaging/prometheus/prometheus.yml:\n{job}"
    );
    for name in alert_names() {
        assert!(
            readme.contains(&format!("| `{name}` (")),
            "docs/metrics.md does not explain {name}"
        );
    }
}
