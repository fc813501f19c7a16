//! A real Prometheus server scrapes a real `leakwatch run` watching a real child: the value
//! Prometheus stores for `leakwatch_open_fds{target=...}` is the child's fd count read from
//! /proc, the scrape is healthy (its parser accepts the exposition, with no duplicate or
//! out-of-order samples), the alert rules load and evaluate, and one of them fires on a
//! refused config reload. leakwatch serves /metrics behind a bearer token, which the scrape
//! configs send as their comments say.
//!
//! The server runs `packaging/prometheus/prometheus.yml` (the README's scrape config) with
//! the address and intervals replaced and its token lines uncommented, plus the Kubernetes
//! job of `scrape-kubernetes.yml` with its pod discovery replaced by the labels discovery
//! would give a pod, so both recipes are the ones tested.
//!
//! Without the `prometheus` binary (Debian: `apt-get install --no-install-recommends
//! prometheus`) the test says so and passes, unless `LEAKWATCH_REQUIRE_PROMETHEUS=1` (CI sets
//! it): then it fails.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::daemon::{config_file, Daemon};
use common::prometheus::{self, Prometheus};
use common::{count_fds, LeakyChild};
use nix::sys::signal::Signal;
use serde_json::Value;

const SCRAPE_CONFIG: &str = include_str!("../packaging/prometheus/prometheus.yml");
const KUBERNETES_CONFIG: &str = include_str!("../packaging/prometheus/scrape-kubernetes.yml");
const ALERTS: &str = include_str!("../packaging/prometheus/leakwatch-alerts.yml");

/// The pod whose discovery labels stand in for Kubernetes' in the test.
const NAMESPACE: &str = "shop";
const POD: &str = "cart-7d9c";

/// `text` with `from` replaced by `to`; `from` must occur exactly once, so a change to the
/// packaged file that the test no longer matches fails loudly instead of testing less.
fn replace_once(text: &str, from: &str, to: &str, file: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "{file}: expected `{from}` exactly once"
    );
    text.replacen(from, to, 1)
}

/// The packaged scrape config aimed at `leakwatch`, scraping and evaluating every second,
/// with the Kubernetes job appended. Its discovery is replaced by what it would find: one
/// annotated running pod (leakwatch's address) with two container ports, to be scraped
/// once, one pod without the annotation and one annotated pod still Pending, both to be
/// dropped by the job's relabeling.
fn prometheus_config(leakwatch: SocketAddr, token_file: &Path) -> String {
    let commented_token = "    # authorization:\n    #   credentials_file: /etc/leakwatch/token\n";
    let token = format!(
        "    authorization:\n      credentials_file: {}\n",
        token_file.display()
    );
    let file = "packaging/prometheus/prometheus.yml";
    let mut text = replace_once(SCRAPE_CONFIG, commented_token, &token, file);
    text = replace_once(
        &text,
        "\"127.0.0.1:9717\"",
        &format!("\"{leakwatch}\""),
        file,
    );
    text = replace_once(&text, "scrape_interval: 15s", "scrape_interval: 1s", file);
    text = replace_once(
        &text,
        "evaluation_interval: 15s",
        "evaluation_interval: 1s",
        file,
    );
    let port = leakwatch.port();
    let pod = |name: &str, phase: &str, annotated: bool| {
        let annotations = if annotated {
            format!(
                "          __meta_kubernetes_pod_annotation_prometheus_io_scrape: \"true\"\n          \
                 __meta_kubernetes_pod_annotation_prometheus_io_port: \"{port}\"\n"
            )
        } else {
            String::new()
        };
        // The addresses discovery gives (one per container port) are never scraped: the
        // job rewrites them from the pod's IP and annotation, into one target.
        format!(
            "      - targets: [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n        labels:\n{annotations}          \
             __meta_kubernetes_pod_ip: 127.0.0.1\n          \
             __meta_kubernetes_pod_phase: {phase}\n          \
             __meta_kubernetes_namespace: {NAMESPACE}\n          \
             __meta_kubernetes_pod_name: {name}\n          \
             __meta_kubernetes_pod_controller_name: cart\n"
        )
    };
    let discovered = format!(
        "    static_configs:\n{}{}{}",
        pod(POD, "Running", true),
        pod("cart-unannotated", "Running", false),
        pod("cart-starting", "Pending", true),
    );
    let kube_file = "packaging/prometheus/scrape-kubernetes.yml";
    let kube = replace_once(KUBERNETES_CONFIG, commented_token, &token, kube_file);
    let kube = replace_once(
        &kube,
        "    kubernetes_sd_configs:\n      - role: pod\n",
        &discovered,
        kube_file,
    );
    let (_, jobs) = kube
        .split_once("\nscrape_configs:\n")
        .expect("scrape-kubernetes.yml has scrape_configs");
    let last_section = text
        .lines()
        .rev()
        .find(|l| !l.is_empty() && !l.starts_with([' ', '#']));
    assert_eq!(
        last_section,
        Some("scrape_configs:"),
        "prometheus.yml must end with its scrape_configs, so the Kubernetes job can follow"
    );
    format!("{}\n{jobs}", text.trim_end())
}

/// Start Prometheus with `config` (and the alert rules beside it) and wait until it is ready.
fn start_prometheus(binary: &Path, config: &str) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    std::fs::write(dir.path().join("leakwatch-alerts.yml"), ALERTS).unwrap();
    Prometheus::start(binary, dir, Duration::from_secs(20))
}

impl Prometheus {
    /// An API answer's `data`.
    fn api(&self, path: &str) -> Value {
        let (code, body) = self.get(path);
        assert_eq!(code, 200, "{path}: {body}");
        let v: Value = serde_json::from_str(&body).expect("the API answers JSON");
        assert_eq!(v["status"], "success", "{path}: {body}");
        v["data"].clone()
    }

    /// The instant vector of a PromQL query: (labels, value) per series.
    fn query(&self, promql: &str) -> Vec<(Value, f64)> {
        let data = self.api(&format!("/api/v1/query?query={}", url_encode(promql)));
        data["result"]
            .as_array()
            .expect("a vector")
            .iter()
            .map(|s| {
                let v = s["value"][1].as_str().unwrap().parse().unwrap();
                (s["metric"].clone(), v)
            })
            .collect()
    }

    /// The one value of `promql`, waiting (bounded) until there is one.
    fn wait_value(&self, promql: &str, within: Duration) -> f64 {
        let deadline = Instant::now() + within;
        loop {
            let r = self.query(promql);
            if let [(_, v)] = r.as_slice() {
                return *v;
            }
            assert!(r.len() <= 1, "{promql}: more than one series: {r:?}");
            assert!(
                Instant::now() < deadline,
                "{promql}: no value within {within:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Wait (bounded) until the one value of `promql` is `expected`.
    fn wait_for(&self, promql: &str, expected: f64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let v = self.wait_value(promql, within);
            if v == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{promql}: {v}, never {expected} within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
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

/// leakwatch's config: one target, sampled every 250 ms; /metrics behind a token.
fn leakwatch_config(pid: i32, token_file: &Path) -> String {
    format!(
        "interval = \"250ms\"\n[http]\ntoken_file = \"{}\"\n[[target]]\nname = \"shop-api\"\npid = {pid}\n",
        token_file.display()
    )
}

#[test]
fn prometheus_scrapes_the_real_fd_count_and_fires_an_alert() {
    let Some(binary) = prometheus::tool("prometheus") else {
        return;
    };
    let started = Instant::now();
    // A child holding a fixed set of fds (files, pipes, sockets): no churn.
    let mut child = LeakyChild::spawn(&[
        "--nofile",
        "600",
        "--files",
        "5",
        "--pipes",
        "2",
        "--close-wait",
        "3",
    ]);
    let pid = child.pid();
    let dir = tempfile::tempdir().unwrap();
    let token = config_file(dir.path(), "token", "s3cret-metrics-token\n");
    let cfg = config_file(dir.path(), "leakwatch.toml", &leakwatch_config(pid, &token));
    let d = Daemon::start(&["-c", cfg.to_str().unwrap()]);
    // /metrics needs the token: a scrape that is up below sent it.
    assert_eq!(d.get("/metrics").0, 401);
    let authorized = d.request(
        "GET /status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret-metrics-token\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(authorized.0, 200, "{}", authorized.1);
    assert!(authorized.1.contains("\"ticks_total\""), "{}", authorized.1);

    let t0 = Instant::now();
    let prom = start_prometheus(&binary, &prometheus_config(d.addr, &token));
    let ready = t0.elapsed();

    // The first value Prometheus stores is the child's real count (which has not moved).
    let open_fds = r#"leakwatch_open_fds{job="leakwatch",target="shop-api"}"#;
    let first = prom.wait_value(open_fds, Duration::from_secs(20));
    let first_seen = started.elapsed();
    let real = count_fds(pid);
    assert_eq!(
        first, real as f64,
        "Prometheus' leakwatch_open_fds vs /proc/{pid}/fd"
    );
    assert_eq!(
        prom.wait_value(
            r#"leakwatch_max_fds{job="leakwatch",target="shop-api"}"#,
            Duration::from_secs(5)
        ),
        600.0
    );

    // The count moves: Prometheus follows it to the new real count.
    assert_eq!(child.command("files 7"), "ok");
    let moved = real + 7;
    assert_eq!(count_fds(pid), moved);
    prom.wait_for(open_fds, moved as f64, Duration::from_secs(15));
    assert_eq!(prom.query(open_fds)[0].1, count_fds(pid) as f64);

    // The Kubernetes job, found through the pod's annotations, scrapes the same leakwatch.
    let pod_fds = format!(
        r#"leakwatch_open_fds{{job="leakwatch-pods",namespace="{NAMESPACE}",pod="{POD}",controller="cart",target="shop-api"}}"#
    );
    prom.wait_for(&pod_fds, count_fds(pid) as f64, Duration::from_secs(15));

    // Both scrapes are up, with no error: Prometheus' own parser took every line.
    for job in ["leakwatch", "leakwatch-pods"] {
        assert_eq!(
            prom.wait_value(&format!("up{{job=\"{job}\"}}"), Duration::from_secs(5)),
            1.0
        );
    }
    let targets = prom.api("/api/v1/targets");
    let active = targets["activeTargets"].as_array().unwrap();
    assert_eq!(active.len(), 2, "{targets:#}");
    for t in active {
        assert_eq!(t["health"], "up", "{t:#}");
        assert_eq!(t["lastError"], "", "{t:#}");
        assert_eq!(
            t["scrapeUrl"],
            format!("http://{}/metrics", d.addr),
            "{t:#}"
        );
    }
    let dropped: Vec<&str> = targets["droppedTargets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            t["discoveredLabels"]["__meta_kubernetes_pod_name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(dropped.len(), 4, "{targets:#}");
    assert!(dropped.contains(&"cart-unannotated") && dropped.contains(&"cart-starting"));
    // What a parse that "succeeds" can still hide: duplicate or out-of-order samples.
    let (_, own) = prom.get("/metrics");
    for counter in [
        "prometheus_target_scrapes_sample_duplicate_timestamp_total",
        "prometheus_target_scrapes_sample_out_of_order_total",
        "prometheus_target_scrapes_sample_out_of_bounds_total",
    ] {
        let line = own
            .lines()
            .find(|l| l.starts_with(counter))
            .unwrap_or_else(|| panic!("prometheus exports {counter}"));
        assert!(line.ends_with(" 0"), "{line}");
    }

    // The alert rules loaded and evaluate against the real series without error.
    let deadline = Instant::now() + Duration::from_secs(10);
    let rules = loop {
        let groups = prom.api("/api/v1/rules")["groups"].clone();
        let rules = groups[0]["rules"].as_array().cloned().unwrap_or_default();
        let evaluated = rules.iter().all(|r| {
            !r["lastEvaluation"]
                .as_str()
                .unwrap_or("0001")
                .starts_with("0001")
        });
        if evaluated && !rules.is_empty() {
            break rules;
        }
        assert!(
            Instant::now() < deadline,
            "the rules were never evaluated: {groups:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(rules.len(), ALERTS.matches("- alert: ").count());
    for r in &rules {
        assert_eq!(r["health"], "ok", "{r:#}");
        assert_eq!(
            r["state"], "inactive",
            "a healthy target raises no alert: {r:#}"
        );
    }

    // A refused reload fires LeakwatchConfigReloadFailed, labelled with the instance.
    std::fs::write(&cfg, "interval = \"250ms\"\n[[target]]\nname = 7\n").unwrap();
    d.signal(Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(15);
    let alert = loop {
        let alerts = prom.api("/api/v1/alerts")["alerts"].clone();
        let firing = alerts.as_array().unwrap().iter().find(|a| {
            a["labels"]["alertname"] == "LeakwatchConfigReloadFailed"
                && a["labels"]["job"] == "leakwatch"
                && a["state"] == "firing"
        });
        if let Some(a) = firing {
            break a.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no alert fired: {alerts:#}\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(alert["labels"]["instance"], d.addr.to_string(), "{alert:#}");
    assert_eq!(alert["labels"]["severity"], "warning", "{alert:#}");
    println!(
        "prometheus ready after {ready:?}; first leakwatch_open_fds = {first} (real {real}) \
         after {first_seen:?}; alert fired after {:?}",
        started.elapsed()
    );
}
