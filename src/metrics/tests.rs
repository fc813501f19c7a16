use std::path::PathBuf;

use super::*;
use crate::sample::{Limit, Memory};
use crate::snapshot::TargetStatus;
use crate::test_support::metrics::{example_snapshot, missing_target, parse_sample, sample_value};

fn app(snapshot: &mut Snapshot) -> &mut TargetStatus {
    &mut snapshot.targets[0]
}

fn has(text: &str, name: &str, labels: &[(&str, &str)]) -> bool {
    sample_value(text, name, labels).is_some()
}

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metrics/golden.prom")
}

/// The whole `/metrics` body of the example snapshot, byte for byte: every name, label,
/// HELP and TYPE. After an intended change, regenerate the file and review its diff:
/// `UPDATE_GOLDEN=1 cargo test --lib metrics::tests::golden`.
#[test]
fn golden() {
    let text = render_targets(&example_snapshot());
    let path = golden_path();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).expect("write the golden file");
        return;
    }
    let want = std::fs::read_to_string(&path).expect("read tests/fixtures/metrics/golden.prom");
    for (i, (got, want)) in text.lines().zip(want.lines()).enumerate() {
        assert_eq!(
            got,
            want,
            "golden.prom line {} differs (UPDATE_GOLDEN=1 to regenerate)",
            i + 1
        );
    }
    assert_eq!(
        text, want,
        "golden.prom differs in length (UPDATE_GOLDEN=1 to regenerate)"
    );
}

#[test]
fn render_targets_is_a_function_of_the_snapshot() {
    let s = example_snapshot();
    assert_eq!(render_targets(&s), render_targets(&s));
    assert!(!render_targets(&s).contains("process_"));
}

#[test]
fn render_adds_leakwatchs_own_process_metrics() {
    let text = render(&example_snapshot());
    let fds = sample_value(&text, "process_open_fds", &[]).expect("process_open_fds");
    assert!(fds >= 3.0, "stdin, stdout, stderr at least: {fds}");
    assert!(has(&text, "process_resident_memory_bytes", &[]));
    assert!(has(&text, "process_cpu_seconds_total", &[]));
    assert!(has(&text, "leakwatch_open_fds", &[("target", "app")]));
}

#[test]
fn unknown_values_are_left_out_not_zero() {
    let mut s = example_snapshot();
    let sample = app(&mut s).sample.as_mut().expect("app has a sample");
    sample.memory = None;
    let fds = sample.fds.as_mut().expect("app has fds");
    (fds.open, fds.allocated) = (None, None);
    sample.fd_limit.as_mut().expect("app has a limit").soft = Limit::Unlimited;
    sample.tcp = None;
    sample.stuck = None;
    let cg = sample.cgroup_memory.as_mut().expect("app has a cgroup");
    cg.max = Some(Limit::Unlimited);
    cg.sock_bytes = None;
    cg.pressure.as_mut().expect("app has pressure").full = None;
    let text = render_targets(&s);
    let app = ("target", "app");
    for kind in ["rss", "anon", "file", "shmem", "swap"] {
        assert!(
            !has(&text, "leakwatch_memory_bytes", &[app, ("kind", kind)]),
            "{kind}"
        );
    }
    assert_eq!(
        sample_value(&text, "leakwatch_memory_bytes", &[app, ("kind", "heap")]),
        Some(352_321_536.0)
    );
    assert!(!has(&text, "leakwatch_open_fds", &[app]));
    assert!(has(
        &text,
        "leakwatch_open_fds_by_type",
        &[app, ("type", "socket")]
    ));
    assert!(!has(&text, "leakwatch_max_fds", &[app]));
    assert!(!has(&text, "leakwatch_tcp_sockets", &[app]));
    assert!(!has(&text, "leakwatch_tcp_peer_sockets", &[app]));
    assert!(!has(&text, "leakwatch_stuck_threads", &[app]));
    assert!(!has(
        &text,
        "leakwatch_cgroup_memory_bytes",
        &[app, ("kind", "max")]
    ));
    assert!(!has(
        &text,
        "leakwatch_cgroup_memory_bytes",
        &[app, ("kind", "sock")]
    ));
    assert!(has(
        &text,
        "leakwatch_cgroup_memory_bytes",
        &[app, ("kind", "working_set")]
    ));
    assert!(!has(
        &text,
        "leakwatch_cgroup_memory_pressure_full",
        &[app, ("window", "10s")]
    ));
    assert!(has(
        &text,
        "leakwatch_cgroup_memory_pressure",
        &[app, ("window", "10s")]
    ));
    assert!(!has(
        &text,
        "leakwatch_cgroup_memory_pressure_stall_seconds_total",
        &[app, ("kind", "full")]
    ));
}

#[test]
fn a_known_zero_is_exported() {
    let mut s = example_snapshot();
    let sample = app(&mut s).sample.as_mut().expect("app has a sample");
    sample.memory = Some(Memory {
        swap_bytes: Some(0),
        ..Memory::default()
    });
    let text = render_targets(&s);
    let swap = [("target", "app"), ("kind", "swap")];
    assert_eq!(
        sample_value(&text, "leakwatch_memory_bytes", &swap),
        Some(0.0)
    );
    assert!(!has(
        &text,
        "leakwatch_memory_bytes",
        &[("target", "app"), ("kind", "rss")]
    ));
}

#[test]
fn a_missing_target_exports_its_state_and_no_values() {
    let mut s = example_snapshot();
    // A sample left over from a process that is gone is not exported.
    app(&mut s).found = false;
    let text = render_targets(&s);
    for target in ["app", "worker"] {
        let t = ("target", target);
        assert_eq!(sample_value(&text, "leakwatch_target_up", &[t]), Some(0.0));
        assert!(has(&text, "leakwatch_healthy", &[t]));
        assert!(has(&text, "leakwatch_restart_budget_exhausted", &[t]));
        assert!(has(&text, "leakwatch_target_restarts_total", &[t]));
        for name in [
            "leakwatch_open_fds",
            "leakwatch_memory_bytes",
            "leakwatch_threads",
        ] {
            assert!(!has(&text, name, &[t]), "{name} for {target}");
        }
    }
    assert!(!has(
        &text,
        "leakwatch_poll_duration_seconds",
        &[("target", "worker")]
    ));
}

#[test]
fn peers_are_labels_only_when_enabled() {
    let mut s = example_snapshot();
    let text = render_targets(&s);
    let outbound = [
        ("state", "close_wait"),
        ("direction", "outbound"),
        ("peer", "10.0.3.7:443"),
    ];
    assert_eq!(
        sample_value(&text, "leakwatch_tcp_peer_sockets", &outbound),
        Some(612.0)
    );
    let v6 = [("state", "established"), ("peer", "[2001:db8::15]:5432")];
    assert_eq!(
        sample_value(&text, "leakwatch_tcp_peer_sockets", &v6),
        Some(9.0)
    );
    let inbound = [
        ("direction", "inbound"),
        ("peer", "10.0.5.20"),
        ("local_port", "8080"),
    ];
    assert_eq!(
        sample_value(&text, "leakwatch_tcp_peer_sockets", &inbound),
        Some(12.0)
    );

    s.peer_labels = false;
    let text = render_targets(&s);
    assert!(!text.contains("leakwatch_tcp_peer_sockets"));
    assert!(!text.contains("10.0.3.7"));
    let close_wait = [("target", "app"), ("state", "close_wait")];
    assert_eq!(
        sample_value(&text, "leakwatch_tcp_sockets", &close_wait),
        Some(940.0)
    );
}

#[test]
fn a_removed_target_disappears() {
    let mut s = example_snapshot();
    assert!(render(&s).contains("target=\"worker\""));
    s.targets.retain(|t| t.name != "worker");
    let text = render(&s);
    assert!(!text.contains("target=\"worker\""), "{text}");
    assert!(has(&text, "leakwatch_target_up", &[("target", "app")]));
}

#[test]
fn every_state_and_series_label() {
    let text = render_targets(&example_snapshot());
    let states = text
        .lines()
        .filter_map(parse_sample)
        .filter(|s| s.name == "leakwatch_tcp_sockets");
    assert_eq!(states.count(), 11);
    let app = ("target", "app");
    let fds = [app, ("series", "fds")];
    assert_eq!(
        sample_value(&text, "leakwatch_growth_per_second", &fds),
        Some(0.025)
    );
    assert_eq!(
        sample_value(&text, "leakwatch_seconds_to_exhaustion", &fds),
        Some(920.0)
    );
    // An untrusted trend has a slope but no time to exhaustion.
    let rss = [app, ("series", "rss")];
    assert_eq!(
        sample_value(&text, "leakwatch_growth_per_second", &rss),
        Some(1200.5)
    );
    assert!(!has(&text, "leakwatch_seconds_to_exhaustion", &rss));
    // No trend (too few points): no slope.
    assert!(!has(
        &text,
        "leakwatch_growth_per_second",
        &[app, ("series", "threads")]
    ));
    assert_eq!(
        sample_value(&text, "leakwatch_rule_failing", &[app, ("rule", "fds")]),
        Some(1.0)
    );
    assert_eq!(sample_value(&text, "leakwatch_healthy", &[app]), Some(0.0));
}

#[test]
fn pressure_is_a_ratio_of_the_kernels_percent() {
    let text = render_targets(&example_snapshot());
    // The spec's family carries "some" under the window label alone; "full" has its own.
    let w300 = [("target", "app"), ("window", "300s")];
    assert_eq!(
        sample_value(&text, "leakwatch_cgroup_memory_pressure", &w300),
        Some(0.0031)
    );
    assert!(sample_value(&text, "leakwatch_cgroup_memory_pressure_full", &w300).is_some());
    let stall = [("target", "app"), ("kind", "full")];
    let name = "leakwatch_cgroup_memory_pressure_stall_seconds_total";
    assert_eq!(sample_value(&text, name, &stall), Some(1.7305));
}

#[test]
fn values_that_are_not_numbers_are_left_out() {
    let mut s = example_snapshot();
    let series = &mut app(&mut s).judged.series;
    series[0].seconds_to_exhaustion = Some(f64::INFINITY);
    series[0]
        .trend
        .as_mut()
        .expect("fds has a trend")
        .slope_per_s = f64::NAN;
    app(&mut s).poll_duration_seconds = Some(f64::NAN);
    let text = render_targets(&s);
    let fds = [("target", "app"), ("series", "fds")];
    assert!(!has(&text, "leakwatch_seconds_to_exhaustion", &fds));
    assert!(!has(&text, "leakwatch_growth_per_second", &fds));
    assert!(!has(
        &text,
        "leakwatch_poll_duration_seconds",
        &[("target", "app")]
    ));
    let numbers = text.lines().filter_map(parse_sample);
    assert!(numbers.clone().count() > 50);
    assert!(numbers.into_iter().all(|s| s.value.is_finite()), "{text}");
}

#[test]
fn target_names_are_escaped() {
    let mut s = example_snapshot();
    let odd = "odd \"name\" \\ with\nnewline";
    s.targets.push(missing_target(odd));
    let text = render_targets(&s);
    assert_eq!(
        sample_value(&text, "leakwatch_target_up", &[("target", odd)]),
        Some(0.0)
    );
}

#[test]
fn families_follow_the_naming_rules() {
    let mut names: Vec<&str> = families::ALL.iter().map(|f| f.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), families::ALL.len(), "duplicate family names");
    for f in families::ALL {
        assert!(f.name.starts_with("leakwatch_"), "{}", f.name);
        let total = f.name.ends_with("_total");
        assert_eq!(total, f.kind == families::Kind::Counter, "{}", f.name);
        assert!(!f.help.is_empty(), "{}", f.name);
    }
}

#[test]
fn parse_sample_reads_the_text_format() {
    let s = parse_sample(r#"m{a="x\"y",b="1\\2\n"} 3.5 1700000000000"#).expect("parses");
    assert_eq!(s.name, "m");
    let want = [("a", "x\"y"), ("b", "1\\2\n")].map(|(k, v)| (k.to_string(), v.to_string()));
    assert_eq!(s.labels, want);
    assert_eq!(s.value, 3.5);
    assert_eq!(parse_sample("m 1").map(|s| s.value), Some(1.0));
    assert_eq!(parse_sample("m +Inf").map(|s| s.value), Some(f64::INFINITY));
    assert_eq!(parse_sample("# HELP m x"), None);
    assert_eq!(parse_sample(r#"m{a="x} 1"#), None);
}

#[test]
fn a_bad_sample_is_skipped_not_a_panic() {
    let out = out::Out::new();
    out.put(&families::OPEN_FDS, &["app", "one label too many"], 1.0);
    out.put(&families::TARGET_RESTARTS, &["app"], -1.0);
    out.put(&families::THREADS, &["app"], 3.0);
    let text = out.encode();
    assert!(!text.contains("leakwatch_open_fds"), "{text}");
    assert!(!text.contains("leakwatch_target_restarts_total"), "{text}");
    assert_eq!(
        sample_value(&text, "leakwatch_threads", &[("target", "app")]),
        Some(3.0)
    );
}

#[test]
fn leak_suspected_for_every_judged_series_with_a_limit() {
    let mut s = example_snapshot();
    let target = ("target", "app");
    let suspected = |text: &str, series: &str| {
        sample_value(
            text,
            "leakwatch_leak_suspected",
            &[target, ("series", series)],
        )
    };
    let text = render_targets(&s);
    // Trusted and rising towards a limit: whether a rule fails on it (fds) or not.
    assert_eq!(suspected(&text, "fds"), Some(1.0));
    assert_eq!(suspected(&text, "cgroup_memory"), Some(1.0));
    // A limit but an untrusted trend: a known 0.
    assert_eq!(suspected(&text, "rss"), Some(0.0));
    // No limit to leak towards: left out.
    assert_eq!(suspected(&text, "tcp_close_wait"), None);
    assert_eq!(suspected(&text, "threads"), None);
    // An unknown value is left out, never 0.
    let series = &mut app(&mut s).judged.series;
    let rss = series
        .iter_mut()
        .find(|x| x.series == crate::judge::Series::Rss)
        .expect("app judges rss");
    rss.value = None;
    let text = render_targets(&s);
    assert_eq!(suspected(&text, "rss"), None);
    assert_eq!(suspected(&text, "fds"), Some(1.0));
}

/// Each series' own metric, as the series table names it (and backtest reads it back from
/// Prometheus), is what `/metrics` exports with the value the judge reads.
#[test]
fn every_series_is_exported_under_the_metric_its_table_row_names() {
    use crate::judge::series::{put, read};
    use crate::judge::{Rule, Series};
    let labels = |matcher: &'static str| {
        let mut l = vec![("target", "app")];
        if let Some((k, v)) = matcher.split_once('=') {
            l.push((k, v.trim_matches('"')));
        }
        l
    };
    for (i, series) in Series::ALL.into_iter().enumerate() {
        let def = series.def();
        let Some((metric, matcher)) = def.metric else {
            continue;
        };
        let mut s = example_snapshot();
        let sample = app(&mut s).sample.as_mut().expect("app has a sample");
        let value = 1000.0 + i as f64;
        put(sample, series, Some(value), Some(1_000_000.0));
        let observed = read(sample, series, &Rule::default());
        let text = render_targets(&s);
        let got = sample_value(&text, metric, &labels(matcher));
        assert_eq!(got, Some(value), "{series}: {metric}{{{matcher}}}");
        assert_eq!(got, observed.value, "{series}");
        if let Some((metric, matcher)) = def.limit_metric {
            let got = sample_value(&text, metric, &labels(matcher));
            assert_eq!(got, Some(1_000_000.0), "{series}: {metric}{{{matcher}}}");
        }
    }
}

/// Observe mode: the mode as a 1/0 pair, `would_fail` 1 while a failing verdict answers
/// 200 for it, and the flips it held; an enforce target's failing verdict is no would-fail.
#[test]
fn observe_mode_exports_the_mode_and_what_would_fail() {
    use crate::judge::Enforcement;
    let value = |text: &str, name, labels: &[(&str, &str)]| sample_value(text, name, labels);
    let mut s = example_snapshot();
    let text = render_targets(&s);
    let app_ = [("target", "app")];
    // app is enforced and failing: 503, which is no would-fail.
    assert_eq!(value(&text, "leakwatch_healthy", &app_), Some(0.0));
    assert_eq!(value(&text, "leakwatch_would_fail", &app_), Some(0.0));
    let mode = |text: &str, m| value(text, "leakwatch_mode", &[("target", "app"), ("mode", m)]);
    assert_eq!(
        (mode(&text, "enforce"), mode(&text, "observe")),
        (Some(1.0), Some(0.0))
    );

    let t = app(&mut s);
    t.mode = Enforcement::Observe;
    t.would_fail_flips_total = 3;
    t.judged.verdict = std::mem::take(&mut t.judged.verdict).observed();
    let text = render_targets(&s);
    assert_eq!(value(&text, "leakwatch_healthy", &app_), Some(1.0));
    assert_eq!(value(&text, "leakwatch_would_fail", &app_), Some(1.0));
    assert_eq!(
        value(&text, "leakwatch_would_fail_flips_total", &app_),
        Some(3.0)
    );
    assert_eq!(
        (mode(&text, "enforce"), mode(&text, "observe")),
        (Some(0.0), Some(1.0))
    );
    // worker: observe mode, missing (healthy): nothing would fail.
    let worker = [("target", "worker")];
    assert_eq!(value(&text, "leakwatch_would_fail", &worker), Some(0.0));
    assert_eq!(
        value(&text, "leakwatch_would_fail_flips_total", &worker),
        Some(2.0)
    );
}

/// A value read at its own cadence is exported on every tick: between its reads, the last
/// one read with its age (`sample_age_seconds`); a value that could not be read is absent,
/// and so is its age.
#[test]
fn a_value_kept_between_its_reads_is_exported_with_its_age() {
    use crate::error::{Unknown, UnknownKind};
    use crate::sample::Source;
    let app = ("target", "app");
    let heap = [app, ("kind", "heap")];
    let age = |text: &str, source: &str| {
        sample_value(
            text,
            "leakwatch_sample_age_seconds",
            &[app, ("source", source)],
        )
    };
    let mut s = example_snapshot();
    let sample = app_sample(&mut s);
    sample.unknown.insert(
        Source::Heap,
        Unknown::new(
            UnknownKind::NotCollected,
            "smaps is read at a slower cadence",
        ),
    );
    if let Some(h) = sample.heap.as_mut() {
        h.age_ms = 12_500;
    }
    let text = render_targets(&s);
    assert_eq!(
        sample_value(&text, "leakwatch_memory_bytes", &heap),
        Some(352_321_536.0)
    );
    assert_eq!(age(&text, "heap"), Some(12.5));
    assert_eq!(age(&text, "fd_types"), Some(20.0));

    // An error: unknown, not the last value, and no age.
    let sample = app_sample(&mut s);
    sample.heap = None;
    sample.unknown.insert(
        Source::Heap,
        Unknown::new(UnknownKind::PermissionDenied, "smaps: permission denied"),
    );
    if let Some(f) = sample.fds.as_mut() {
        f.by_type = None;
    }
    let text = render_targets(&s);
    assert!(!has(&text, "leakwatch_memory_bytes", &heap));
    assert_eq!(age(&text, "heap"), None);
    assert_eq!(age(&text, "fd_types"), None);
}

fn app_sample(s: &mut Snapshot) -> &mut crate::sample::Sample {
    app(s).sample.as_mut().expect("app has a sample")
}
