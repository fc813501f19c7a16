//! `leakwatch backtest` against a real Prometheus: history of an fd leak (one restart) and
//! of a healthy control is backfilled with `promtool tsdb create-blocks-from openmetrics`,
//! the Debian `prometheus` server serves it on a loopback port, and backtest reads it over
//! HTTP. The leak flips before its fds reach the limit, the restart is seen, the control
//! never flips, and `--json` has the keys the README names. A history whose verdict flaps
//! (a level crossed, cleared, then a leak to the limit) reports the lead a kubelet sees,
//! from the last unbroken 503, not from the first flip. Bad input exits 2 with a clear
//! message: an unreachable server, a selector that matches nothing, an answer that is no
//! range-query matrix.
//!
//! Without `prometheus`/`promtool` the tests say so and pass, unless
//! `LEAKWATCH_REQUIRE_PROMETHEUS=1` (CI sets it).

mod common;

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::prometheus::{tool, Prometheus};
use common::BIN;
use leakwatch::backtest::render::rfc3339;
use leakwatch::units::duration_ms;
use serde_json::Value;

const STEP_S: u64 = 15;
const HOUR_S: u64 = 3600;
/// The leaking process is replaced this long after the history starts.
const RESTART_AFTER_S: u64 = 2 * HOUR_S + 45 * 60;

/// The fds of the leaking service at `s` seconds into the history: +5/min from 300 until
/// 1021 of 1024 (reached after 2h24m), held there until the restart; the new process
/// holds 300 plus a little noise.
fn leaky_fds(s: u64) -> u64 {
    if s < RESTART_AFTER_S {
        (300 + s * 5 / 60).min(1021)
    } else {
        300 + (s / STEP_S) % 3
    }
}

fn healthy_fds(s: u64) -> u64 {
    200 + (s / STEP_S) % 7
}

/// The flapping service's process is replaced this long after the history starts.
const FLAPPY_RESTART_AFTER_S: u64 = 2 * HOUR_S + 45 * 60;

/// The fds of a service whose verdict flaps: 500 of 1024 for an hour; 950 (93 %, over the
/// 90 % level) for 5 minutes, long past `min_failing`; 500 again (under 81 %, where a
/// failed level clears) for 25 minutes; then +10/min to 1021, held there until the
/// restart; the new process holds 300.
fn flapping_fds(s: u64) -> u64 {
    let noise = (s / STEP_S) % 3;
    match s / 60 {
        0..60 => 500 + noise,
        60..65 => 950,
        65..90 => 500 + noise,
        90..165 => (500 + (s - 90 * 60) * 10 / 60).min(1021),
        _ => 300 + noise,
    }
}

/// One instance of `job="api"`: its fds at `s` seconds into the history, and when its
/// process was replaced.
struct Instance {
    name: &'static str,
    fds: fn(u64) -> u64,
    restart_after_s: Option<u64>,
}

/// OpenMetrics text of 5 hours from `t0`: `process_open_fds`, `process_max_fds` (1024)
/// and `process_start_time_seconds` of each instance.
fn openmetrics_of(t0: u64, instances: &[Instance]) -> String {
    let times: Vec<u64> = (0..=5 * HOUR_S / STEP_S).map(|i| i * STEP_S).collect();
    let mut out = String::new();
    let mut family = |name: &str, f: &dyn Fn(&Instance, u64) -> f64| {
        let _ = writeln!(out, "# TYPE {name} gauge");
        for i in instances {
            let labels = format!("job=\"api\",instance=\"{}\"", i.name);
            for &s in &times {
                let _ = writeln!(out, "{name}{{{labels}}} {} {}", f(i, s), t0 + s);
            }
        }
    };
    family("process_open_fds", &|i, s| (i.fds)(s) as f64);
    family("process_max_fds", &|_, _| 1024.0);
    family(
        "process_start_time_seconds",
        &|i, s| match i.restart_after_s {
            Some(r) if s >= r => (t0 + r) as f64,
            _ => (t0 - HOUR_S) as f64,
        },
    );
    out.push_str("# EOF\n");
    out
}

/// The leaky instance and a healthy one.
fn openmetrics(t0: u64) -> String {
    let leaky = Instance {
        name: "leaky:9100",
        fds: leaky_fds,
        restart_after_s: Some(RESTART_AFTER_S),
    };
    let healthy = Instance {
        name: "healthy:9100",
        fds: healthy_fds,
        restart_after_s: None,
    };
    openmetrics_of(t0, &[leaky, healthy])
}

/// Backfill `metrics` with promtool, then serve them.
fn start_prometheus(prometheus: &Path, promtool: &Path, metrics: &str) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("history.om");
    std::fs::write(&input, metrics).unwrap();
    let out = Command::new(promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(dir.path().join("prometheus.yml"), "scrape_configs: []\n").unwrap();
    Prometheus::start(prometheus, dir, Duration::from_secs(60))
}

/// The history starts 6 hours ago (inside the default 15-day retention), on a step.
fn history_start() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    (now - 6 * HOUR_S) / STEP_S * STEP_S
}

fn backtest(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .arg("backtest")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: a backtest that hangs is killed (by its pid) and fails the test.
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("leakwatch backtest {args:?} did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn target<'a>(report: &'a Value, instance: &str) -> &'a Value {
    report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["labels"]["instance"] == instance)
        .unwrap_or_else(|| panic!("no target {instance} in {report}"))
}

#[test]
fn backtest_reads_a_real_prometheus_and_flips_before_the_limit() {
    let (Some(prometheus), Some(promtool)) = (tool("prometheus"), tool("promtool")) else {
        return;
    };
    let t0 = history_start();
    let server = start_prometheus(&prometheus, &promtool, &openmetrics(t0));
    let (start, end) = ((t0).to_string(), (t0 + 5 * HOUR_S).to_string());
    let range = ["--start", &start, "--end", &end, "--step", "15s"];
    let url = server.url();
    let mut args = vec!["--prometheus", &url, "--match", "{job=\"api\"}"];
    args.extend(range);

    let json_args: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
    let out = backtest(&json_args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    assert_eq!(report["targets"].as_array().unwrap().len(), 2, "{report}");

    let leaky = target(&report, "leaky:9100");
    assert_eq!(leaky["labels"]["job"], "api");
    assert_eq!(leaky["samples"], 5 * HOUR_S / STEP_S + 1);
    assert_eq!(leaky["restarts"], serde_json::json!([t0 + RESTART_AFTER_S]));
    let exhaustion = &leaky["exhaustions"][0];
    assert_eq!(exhaustion["series"], "fds");
    // 1014 (99 % of 1024) = 300 + 5/min * 142.8 min.
    let exhausted_at = exhaustion["at"].as_u64().unwrap();
    assert_eq!(exhausted_at, t0 + 143 * 60);
    let flip = &leaky["flips"][0];
    let flip_at = flip["at"].as_u64().unwrap();
    assert!(flip_at < exhausted_at, "{leaky}");
    assert!(exhausted_at - flip_at >= 20 * 60, "lead: {leaky}");
    assert_eq!(flip["rules"], serde_json::json!(["fds"]));
    assert!(
        flip["lines"][0].as_str().unwrap().starts_with("fds: "),
        "{flip}"
    );
    assert_eq!(flip["likely_false_alarm"], false);
    // Only the leak's flip: the restarted process is healthy.
    assert_eq!(leaky["flips"].as_array().unwrap().len(), 1, "{leaky}");

    let healthy = target(&report, "healthy:9100");
    assert_eq!(healthy["flips"], serde_json::json!([]));
    assert_eq!(healthy["restarts"], serde_json::json!([]));
    assert_eq!(healthy["exhaustions"], serde_json::json!([]));

    // The text report says the same.
    let out = backtest(&args);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    // The README's worked example is this text (`--nocapture` shows it).
    println!("{text}");
    assert!(
        text.contains("fds <- process_open_fds{job=\"api\"}: 2 series"),
        "{text}"
    );
    assert!(
        text.contains("1 restart, 1 flip (0 likely false alarms)"),
        "{text}"
    );
    assert!(text.contains("restart    a new process"), "{text}");
    assert!(text.contains("to fds at its limit"), "{text}");
    assert!(
        text.contains("/healthz would have answered 200 throughout"),
        "{text}"
    );

    // --query replaces the mapping's PromQL: only the leaky instance is read; its limit
    // still comes from process_max_fds.
    let query = [
        "--query",
        "fds=process_open_fds{instance=\"leaky:9100\"}",
        "--json",
    ];
    let queried: Vec<&str> = args.iter().copied().chain(query).collect();
    let out = backtest(&queried);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let only: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(only["targets"].as_array().unwrap().len(), 1, "{only}");
    assert_eq!(target(&only, "leaky:9100")["flips"], leaky["flips"]);

    // Nothing matched, and an answer that is no matrix (a page that is not the API): exit 2.
    let mut nothing = args.clone();
    nothing[3] = "{job=\"nope\"}";
    let out = backtest(&nothing);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing matched {job=\"nope\"}"), "{err}");
    let elsewhere = format!("{url}/not-the-api");
    let mut wrong = args.clone();
    wrong[1] = &elsewhere;
    let out = backtest(&wrong);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a range-query matrix"), "{err}");
}

#[test]
fn backtest_of_an_unreachable_server_exits_2() {
    // A port nobody listens on: bound, then closed.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = backtest(&[
        "--prometheus",
        &url,
        "--match",
        "{job=\"api\"}",
        "--start",
        "1700000000",
        "--end",
        "1700003600",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot reach 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn backtest_of_a_flapping_verdict_gives_the_kubelet_lead_from_the_last_unbroken_503() {
    let (Some(prometheus), Some(promtool)) = (tool("prometheus"), tool("promtool")) else {
        return;
    };
    let t0 = history_start();
    let flappy = Instance {
        name: "flappy:9100",
        fds: flapping_fds,
        restart_after_s: Some(FLAPPY_RESTART_AFTER_S),
    };
    let server = start_prometheus(&prometheus, &promtool, &openmetrics_of(t0, &[flappy]));
    let (start, end) = (t0.to_string(), (t0 + 5 * HOUR_S).to_string());
    let url = server.url();
    let args = [
        "--prometheus",
        &url,
        "--match",
        "{job=\"api\"}",
        "--start",
        &start,
        "--end",
        &end,
        "--step",
        "15s",
    ];
    let json_args: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
    let out = backtest(&json_args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    let t = target(&report, "flappy:9100");
    assert_eq!(t["flapped"], true, "{t}");

    // Two runs of 503: the level (fail_after = 3 ticks after 1h) cut short by a 200 once
    // the fds are back under 81 %, then the leak's, unbroken until the restart.
    let flips = t["flips"].as_array().unwrap();
    assert_eq!(flips.len(), 2, "{t}");
    let (spike, leak) = (&flips[0], &flips[1]);
    let spike_at = spike["at"].as_u64().unwrap();
    let leak_at = leak["at"].as_u64().unwrap();
    assert_eq!(spike_at, t0 + HOUR_S + 2 * STEP_S, "{t}");
    assert!(
        spike["lines"][0].as_str().unwrap().contains("% >= 90%"),
        "{spike}"
    );
    assert_eq!(spike["interrupted"], true);
    let cleared = spike["until"].as_u64().unwrap();
    assert!(cleared > t0 + 65 * 60 && cleared < t0 + 90 * 60, "{spike}");
    assert_eq!(leak["interrupted"], false);
    assert!(leak_at > t0 + 90 * 60, "{leak}");
    assert_eq!(leak["until"], t0 + FLAPPY_RESTART_AFTER_S);

    // The limit: 1014 (99 %) = 500 + 10/min * 51.4 min after 1h30m.
    let exhausted_at = t["exhaustions"][0]["at"].as_u64().unwrap();
    assert_eq!(exhausted_at, t0 + 90 * 60 + 3090);
    let event = &t["events"][0];
    assert_eq!(event["event"], "exhaustion:fds", "{t}");
    assert_eq!(event["at"], exhausted_at);
    assert_eq!(event["runs"], 2);
    assert_eq!(event["interrupted_runs"], 1);
    assert_eq!(event["flapped"], true);
    // The kubelet's lead counts from the leak's flip, not from the spike's.
    assert_eq!(event["unbroken_503_from"], leak_at);
    let kubelet_ms = (exhausted_at - leak_at) * 1000;
    assert_eq!(event["kubelet_lead_ms"], kubelet_ms);
    assert!(kubelet_ms >= 20 * 60 * 1000, "{event}");
    assert_eq!(event["first_flip_at"], spike_at);
    assert_eq!(
        event["first_flip_lead_ms"],
        (exhausted_at - spike_at) * 1000
    );
    let restart = &t["events"][1];
    assert_eq!(restart["event"], "restart");
    assert_eq!(
        restart["kubelet_lead_ms"],
        (t0 + FLAPPY_RESTART_AFTER_S - leak_at) * 1000
    );
    // The leak was suspected (a trusted rise) before its rule failed, and led further.
    let suspected = &t["leak_suspected"][0];
    assert_eq!(suspected["series"], "fds", "{t}");
    assert!(suspected["at"].as_u64().unwrap() < leak_at, "{suspected}");
    assert!(suspected["slope_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(suspected["next"], "exhaustion:fds");
    assert!(suspected["lead_ms"].as_u64().unwrap() > kubelet_ms);

    // The text report says the same.
    let out = backtest(&args);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    // The README's example of a flapping verdict is this text (`--nocapture` shows it).
    println!("{text}");
    assert!(
        text.contains("1 restart, 2 flips (1 likely false alarm)"),
        "{text}"
    );
    assert!(
        text.contains("the verdict flapped: a kubelet restarts only after failureThreshold"),
        "{text}"
    );
    assert!(
        text.contains(": a kubelet sees no lead from this flip"),
        "{text}"
    );
    let lead = format!(
        "kubelet lead {}, from the last unbroken 503 ({})",
        duration_ms(kubelet_ms),
        rfc3339(leak_at * 1000)
    );
    assert!(text.contains(&lead), "{lead}\n{text}");
    assert!(
        text.contains("2 runs of 503 in this process, 1 cut short by a 200"),
        "{text}"
    );
    assert!(text.contains("suspected  fds: leak suspected: +"), "{text}");
}

/// The heap estimate as leakwatch exports it: read every 4th scrape (a staircase), carried
/// between its reads with `leakwatch_sample_age_seconds{source="heap"}` above 0. Backtest
/// judges only the points of a read, as the live judge does: a carried value is not a new
/// point of the window.
#[test]
fn backtest_judges_the_heap_only_where_it_was_read() {
    let (Some(prometheus), Some(promtool)) = (tool("prometheus"), tool("promtool")) else {
        return;
    };
    let t0 = history_start();
    let steps = HOUR_S / STEP_S;
    let labels = "job=\"api\",instance=\"cadence:9717\",target=\"app\"";
    let mut om = String::new();
    let _ = writeln!(om, "# TYPE leakwatch_memory_bytes gauge");
    for i in 0..=steps {
        let read = i / 4 * 4;
        let heap = (64 << 20) + read * 4096;
        let _ = writeln!(
            om,
            "leakwatch_memory_bytes{{{labels},kind=\"heap\"}} {heap} {}",
            t0 + i * STEP_S
        );
    }
    let _ = writeln!(om, "# TYPE leakwatch_sample_age_seconds gauge");
    for i in 0..=steps {
        let age = (i % 4) * STEP_S;
        let _ = writeln!(
            om,
            "leakwatch_sample_age_seconds{{{labels},source=\"heap\"}} {age} {}",
            t0 + i * STEP_S
        );
    }
    om.push_str("# EOF\n");
    let server = start_prometheus(&prometheus, &promtool, &om);
    let (start, end) = (t0.to_string(), (t0 + HOUR_S).to_string());
    let url = server.url();
    let args = [
        "--prometheus",
        &url,
        "--match",
        "{job=\"api\"}",
        "--start",
        &start,
        "--end",
        &end,
        "--step",
        "15s",
    ];
    let out = backtest(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("unless ignoring(kind, source) (leakwatch_sample_age_seconds{source=\"heap\",job=\"api\"} > 0): 1 series"),
        "{text}"
    );
    let json_args: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
    let report: Value = serde_json::from_slice(&backtest(&json_args).stdout).unwrap();
    // One point per read: every 4th step of the hour.
    assert_eq!(
        target(&report, "cadence:9717")["samples"],
        steps / 4 + 1,
        "{report}"
    );
}
