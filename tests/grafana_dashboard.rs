//! The Grafana dashboard (packaging/grafana/leakwatch.json, the .deb's and the chart's):
//!
//! - it is what packaging/grafana/generate.py (Grafana Foundation SDK, PyPI, pinned in
//!   .ci/run) writes, in both places, and it validates against Grafana's dashboard schema
//!   (the v1 `dashboard` kind, with each panel's options and each query against their
//!   plugins' schemas) through the Foundation SDK's Go types (packaging/grafana/validate);
//! - every query of every panel, every annotation and every variable, the variables filled
//!   in, returns data from a real Prometheus that scraped a real `leakwatch run` watching
//!   real leaking children: one enforced (fds, CLOSE_WAIT, memory growing, workers stuck in
//!   recv; restarted through its pidfile), one in observe mode that would fail, and
//!   `[fleet]` with an unreachable API (local_fallback). The queries that cannot have data
//!   in that setup are listed in NO_DATA with the reason.
//!
//! The generator check needs `LEAKWATCH_HELM_PYTHON` (target/ci-venv, with the SDK) and Go;
//! the live check needs `prometheus`. Without them the tests say so and pass, unless
//! `LEAKWATCH_REQUIRE_GRAFANA=1` / `LEAKWATCH_REQUIRE_PROMETHEUS=1` (CI sets both).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::daemon::{config_file, Daemon};
use common::prometheus::{self, Prometheus};
use common::{count_fds, LeakyChild};
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const DASHBOARD: &str = include_str!("../packaging/grafana/leakwatch.json");
const CHART_DASHBOARD: &str = include_str!("../helm/leakwatch/dashboards/leakwatch.json");

/// Queries that return no data in this test's setup, and why. Everything else must.
const NO_DATA: &[(&str, &str)] = &[
    (
        "leakwatch_cgroup_memory_bytes{job=~\"$job\", namespace=~\"$namespace\", pod=~\"$pod\", target=~\"$target\", kind=\"working_set\"} / ignoring(kind)",
        "cgroup working set / memory.max: the children run in the test's cgroup, which has no memory limit (the panel's other query, fds / RLIMIT_NOFILE, has data)",
    ),
    (
        "rate(leakwatch_collector_errors_total",
        "collector errors: the series exists only once a read failed, and every read of the test's own children succeeds",
    ),
];

fn no_data_reason(expr: &str) -> Option<&'static str> {
    NO_DATA
        .iter()
        .find(|(prefix, _)| expr.contains(prefix))
        .map(|(_, why)| *why)
}

/// The Go toolchain (PATH, then /usr/local/go/bin).
fn go() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("go"))
                .find(|p| p.is_file())
        })
        .or_else(|| Some(PathBuf::from("/usr/local/go/bin/go")).filter(|p| p.is_file()))
}

#[test]
fn the_dashboard_is_the_generators_output_and_valid_against_grafanas_schema() {
    assert_eq!(
        DASHBOARD, CHART_DASHBOARD,
        "helm/leakwatch/dashboards/leakwatch.json must equal packaging/grafana/leakwatch.json \
         (run packaging/grafana/generate.py)"
    );
    let python = std::env::var_os("LEAKWATCH_HELM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(ROOT).join("target/ci-venv/bin/python"));
    let has_sdk = Command::new(&python)
        .args(["-c", "import grafana_foundation_sdk"])
        .output()
        .is_ok_and(|o| o.status.success());
    let Some(go) = go().filter(|_| has_sdk) else {
        common::skip::skip(
            "LEAKWATCH_REQUIRE_GRAFANA",
            &format!(
                "the Grafana Foundation SDK ({} with grafana-foundation-sdk, see .ci/run) or Go is missing",
                python.display()
            ),
        );
        return;
    };
    let out = Command::new(&python)
        .arg(Path::new(ROOT).join("packaging/grafana/generate.py"))
        .arg("--check")
        .output()
        .expect("run generate.py");
    assert!(
        out.status.success(),
        "generate.py --check: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started = Instant::now();
    let out = Command::new(&go)
        .args(["run", "."])
        .arg(Path::new(ROOT).join("packaging/grafana/leakwatch.json"))
        .current_dir(Path::new(ROOT).join("packaging/grafana/validate"))
        .env("GOFLAGS", "-mod=readonly")
        .output()
        .expect("go run packaging/grafana/validate");
    assert!(
        out.status.success(),
        "Grafana's dashboard schema refuses the dashboard:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "{} (in {:?})",
        String::from_utf8_lossy(&out.stdout).trim(),
        started.elapsed()
    );
}

/// Every PromQL expression of the dashboard: (where, expr).
fn queries(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    fn panels(list: &Value, out: &mut Vec<(String, String)>) {
        for p in list.as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push((
                    format!("panel {:?} query {}", p["title"], t["refId"]),
                    t["expr"].as_str().expect("a Prometheus expr").to_string(),
                ));
            }
            panels(&p["panels"], out);
        }
    }
    panels(&d["panels"], &mut out);
    for a in d["annotations"]["list"].as_array().into_iter().flatten() {
        if let Some(e) = a["expr"].as_str() {
            out.push((format!("annotation {:?}", a["name"]), e.to_string()));
        }
    }
    out
}

/// Grafana's variables as an "All" selection (`.*`, the allValue) and its built-ins.
fn substitute(expr: &str, vars: &[(&str, &str)]) -> String {
    let mut e = expr.to_string();
    for (name, value) in vars {
        e = e
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    e.replace("$__rate_interval", "1m")
        .replace("$__interval", "5s")
        .replace("$__range", "3m")
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn api(prom: &Prometheus, path: &str) -> Value {
    let (code, body) = prom.get(path);
    assert_eq!(code, 200, "{path}: {body}");
    let v: Value = serde_json::from_str(&body).expect("the API answers JSON");
    assert_eq!(v["status"], "success", "{path}: {body}");
    v["data"].clone()
}

/// The series a range query over the last 3 minutes (step 1 s, as a panel) returns.
fn range(prom: &Prometheus, promql: &str) -> usize {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let data = api(
        prom,
        &format!(
            "/api/v1/query_range?query={}&start={}&end={now}&step=1",
            url_encode(promql),
            now - 180
        ),
    );
    data["result"].as_array().expect("a matrix").len()
}

/// `label_values(METRIC{...}, LABEL)` through the labels API.
fn label_values(prom: &Prometheus, query: &str) -> Vec<String> {
    let inner = query
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{query}: not label_values(...)"));
    let (matcher, label) = inner.rsplit_once(',').unwrap();
    let data = api(
        prom,
        &format!(
            "/api/v1/label/{}/values?match[]={}",
            label.trim(),
            url_encode(matcher.trim())
        ),
    );
    data.as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

const NAMESPACE: &str = "shop";
const POD: &str = "cart-7d9c";

fn prometheus_config(leakwatch: std::net::SocketAddr) -> String {
    // One job as the README's static scrape (no namespace/pod labels), one with the labels
    // Kubernetes discovery gives a pod: the dashboard must work for both.
    format!(
        r#"global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: leakwatch
    static_configs:
      - targets: ["{leakwatch}"]
  - job_name: leakwatch-pods
    static_configs:
      - targets: ["{leakwatch}"]
        labels:
          namespace: {NAMESPACE}
          pod: {POD}
"#
    )
}

fn leakwatch_config(dir: &Path, pidfile: &Path, observed: i32) -> String {
    let kubeconfig = config_file(
        dir,
        "kubeconfig",
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n    insecure-skip-tls-verify: true\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n    namespace: shop\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: t\n",
    );
    format!(
        r#"interval = "250ms"
smaps_every = "1s"
fd_types_every = "1s"
[judge]
window = "20s"
min_samples = 8
min_span = "2s"
warmup = "0s"
fail_after = 2
recover_after = 2
min_failing = "0s"
stuck_after = "1s"
[fleet]
group = "api"
kubeconfig = "{kubeconfig}"
identity = "cart-7d9c"
fallback_spread = "1s"
api_timeout = "1s"
renew_every = "1s"
lease_duration = "2s"
[[target]]
name = "shop-api"
pidfile = "{pidfile}"
[target.rules.fds]
max_ratio = 0.5
[[target]]
name = "batch"
pid = {observed}
mode = "observe"
[target.rules.fds]
max_ratio = 0.5
"#,
        kubeconfig = kubeconfig.display(),
        pidfile = pidfile.display(),
    )
}

#[test]
fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    let Some(binary) = prometheus::tool("prometheus") else {
        return;
    };
    let started = Instant::now();
    let dashboard: Value = serde_json::from_str(DASHBOARD).unwrap();
    let child_args = [
        "--nofile",
        "200",
        "--files",
        "5",
        "--close-wait",
        "3",
        "--recv-threads",
        "2",
        "--grow-mib",
        "4",
    ];
    let mut app = LeakyChild::spawn(&child_args);
    let mut batch = LeakyChild::spawn(&["--nofile", "200"]);
    let dir = tempfile::tempdir().unwrap();
    let pidfile = config_file(dir.path(), "app.pid", &format!("{}\n", app.pid()));
    let cfg = config_file(
        dir.path(),
        "leakwatch.toml",
        &leakwatch_config(dir.path(), &pidfile, batch.pid()),
    );
    let d = Daemon::start(&["-c", cfg.to_str().unwrap()]);
    let pdir = tempfile::tempdir().unwrap();
    std::fs::write(
        pdir.path().join("prometheus.yml"),
        prometheus_config(d.addr),
    )
    .unwrap();
    let prom = Prometheus::start(&binary, pdir, Duration::from_secs(20));

    // Both leak steadily past half their fds (the rules' max_ratio 0.5): the enforced one
    // turns unhealthy (after its fleet fallback stagger), the observed one would fail. The
    // app also gains CLOSE_WAIT sockets and memory.
    let leak_until = Instant::now() + Duration::from_secs(25);
    // Each leaks only until it is past 140 of its 200 fds, so neither ever meets EMFILE
    // however the two paces differ on a loaded machine.
    loop {
        let app_short = count_fds(app.pid()) < 140;
        let batch_short = count_fds(batch.pid()) < 140;
        if !(app_short || batch_short) || Instant::now() >= leak_until {
            break;
        }
        if app_short {
            assert_eq!(app.command("files 3"), "ok");
            assert_eq!(app.command("close-wait 1"), "ok");
            assert_eq!(app.command("grow 1"), "ok");
        }
        if batch_short {
            assert_eq!(batch.command("files 3"), "ok");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let judged = Instant::now() + Duration::from_secs(20);
    loop {
        let s = d.status().to_string();
        let (_, metrics) = d.get("/metrics");
        let unhealthy = metrics.contains("leakwatch_healthy{target=\"shop-api\"} 0");
        let would = metrics.contains("leakwatch_would_fail{target=\"batch\"} 1");
        if unhealthy && would {
            break;
        }
        assert!(
            Instant::now() < judged,
            "never unhealthy ({unhealthy}) and would-fail ({would}):\n{s}\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let leaked = started.elapsed();

    // A restart: a new process behind the pidfile.
    let replacement = LeakyChild::spawn(&child_args);
    std::fs::write(&pidfile, format!("{}\n", replacement.pid())).unwrap();
    drop(std::mem::replace(&mut app, replacement));
    let restarted = Instant::now() + Duration::from_secs(10);
    while !d
        .get("/metrics")
        .1
        .contains("leakwatch_target_restarts_total{target=\"shop-api\"} 1")
    {
        assert!(Instant::now() < restarted, "no restart seen");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Prometheus scrapes the state after it (1 s scrapes).
    std::thread::sleep(Duration::from_secs(3));

    // The variables: every label_values query finds the real values.
    let all = [
        ("job", ".*"),
        ("namespace", ".*"),
        ("pod", ".*"),
        ("target", ".*"),
    ];
    let mut variables = 0;
    for v in dashboard["templating"]["list"].as_array().unwrap() {
        if v["type"] == "datasource" {
            assert_eq!(v["query"], "prometheus");
            continue;
        }
        assert_eq!(v["type"], "query", "{v}");
        assert_eq!(v["allValue"], ".*", "{v}");
        assert_eq!(v["includeAll"], true, "{v}");
        let q = substitute(v["query"].as_str().unwrap(), &all);
        let found: BTreeSet<String> = label_values(&prom, &q).into_iter().collect();
        let expected: BTreeSet<String> = match v["name"].as_str().unwrap() {
            "job" => ["leakwatch", "leakwatch-pods"].map(String::from).into(),
            "namespace" => [NAMESPACE.to_string()].into(),
            "pod" => [POD.to_string()].into(),
            "target" => ["batch", "shop-api"].map(String::from).into(),
            other => panic!("unexpected variable {other}"),
        };
        assert_eq!(found, expected, "variable {}: {q}", v["name"]);
        variables += 1;
    }
    assert_eq!(variables, 4);

    // Every query: with All selected (`.*`, which also matches the static job's missing
    // namespace and pod), and with the static job alone (no namespace, no pod label).
    let qs = queries(&dashboard);
    assert!(qs.len() >= 30, "{} queries", qs.len());
    let mut missing = Vec::new();
    let mut skipped = BTreeSet::new();
    for selection in [
        all,
        [
            ("job", "leakwatch"),
            ("namespace", ".*"),
            ("pod", ".*"),
            ("target", ".*"),
        ],
        [
            ("job", "leakwatch-pods"),
            ("namespace", NAMESPACE),
            ("pod", POD),
            ("target", "shop-api|batch"),
        ],
    ] {
        for (place, expr) in &qs {
            let promql = substitute(expr, &selection);
            assert!(!promql.contains('$'), "{place}: unsubstituted {promql}");
            let n = range(&prom, &promql);
            match no_data_reason(expr) {
                Some(why) => {
                    skipped.insert(format!("{place}: {why}"));
                    if n > 0 {
                        println!("{place} has data here after all ({n} series)");
                    }
                }
                None if n == 0 => missing.push(format!("{place} with {selection:?}: {promql}")),
                None => {}
            }
        }
    }
    assert!(
        missing.is_empty(),
        "queries without data:\n{}\n--- /metrics ---\n{}",
        missing.join("\n"),
        d.get("/metrics").1
    );
    // Every NO_DATA entry still names a query of the dashboard.
    for (prefix, _) in NO_DATA {
        assert!(
            qs.iter().any(|(_, e)| e.contains(prefix)),
            "NO_DATA names no query: {prefix}"
        );
    }
    drop(batch);
    println!(
        "{} queries x 3 selections, 4 variables: data for all but {} ({skipped:#?}); \
         leaks judged after {leaked:?}, done in {:?}",
        qs.len(),
        skipped.len(),
        started.elapsed()
    );
}
