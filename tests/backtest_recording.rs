//! `leakwatch run --record FILE` recording a real child that leaks fds up to its
//! RLIMIT_NOFILE and is then replaced by a new process, replayed by `leakwatch backtest
//! --recording`: with the daemon's own config the replay flips (as the daemon did) before
//! the fds reach the limit and sees the restart; with other rules it flips earlier; the
//! recording rotated past `record_max_size`. A recording cut mid-line replays with a
//! warning; a broken line inside it exits 2.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::daemon::{config_file, Daemon};
use common::{LeakyChild, BIN};
use serde_json::Value;

/// Fast judging for a test: 100 ms ticks, a 10 s window trusted after 2 s.
const JUDGE: &str = "interval = \"100ms\"\nrecord_max_size = \"16KiB\"\n[judge]\nwindow = \"10s\"\nmin_samples = 5\nmin_span = \"2s\"\nwarmup = \"0s\"\nfail_after = 2\n";

fn config(target: &str) -> String {
    format!("{JUDGE}[[target]]\nname = \"leaky\"\ncmdline_regex = \"{target}\"\n")
}

fn backtest(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("backtest")
        .args(args)
        .output()
        .unwrap()
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn at(v: &Value) -> f64 {
    v["at"].as_f64().unwrap()
}

/// Open fds one by one until `open`, `pause` apart.
fn leak_to(child: &mut LeakyChild, open: usize, pause: Duration) {
    for _ in 0..100 {
        if common::count_fds(child.pid()) >= open {
            return;
        }
        let _ = child.command("files 1");
        std::thread::sleep(pause);
    }
}

#[test]
fn a_recorded_leak_replays_with_its_flip_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let marker = "demo-child --nofile 64";
    let cfg = config_file(dir.path(), "leakwatch.toml", &config(marker));
    let record = dir.path().join("leaky.jsonl");
    let mut first = LeakyChild::spawn(&["--nofile", "64"]);
    let d = Daemon::start(&[
        "-c",
        cfg.to_str().unwrap(),
        "--record",
        record.to_str().unwrap(),
    ]);
    assert!(d.wait_ticks(5, Duration::from_secs(30)));
    // Quickly to 40 of 64, then one fd every 300 ms (3 ticks) to the limit.
    leak_to(&mut first, 40, Duration::from_millis(50));
    leak_to(&mut first, 64, Duration::from_millis(300));
    let flipped = d.log_text().contains("/healthz now answers 503");
    drop(first);
    let second = LeakyChild::spawn(&["--nofile", "64"]);
    let followed = common::eventually(|| d.status()["targets"][0]["target"]["pid"] == second.pid());
    assert!(followed, "{}", d.status());
    let ticks = d.status()["ticks_total"].as_u64().unwrap();
    assert!(d.wait_ticks(ticks + 10, Duration::from_secs(30)));
    d.stop();
    assert!(flipped, "the daemon itself flipped");

    let rotated = dir.path().join("leaky.jsonl.1");
    assert!(rotated.is_file(), "rotated past 16 KiB");
    assert!(std::fs::metadata(&record).unwrap().len() <= 16 << 10);
    let files = [
        "--recording",
        rotated.to_str().unwrap(),
        "--recording",
        record.to_str().unwrap(),
    ];
    let mut args = vec!["-c", cfg.to_str().unwrap(), "--json"];
    args.extend(files);
    let report = json(&backtest(&args));
    let t = &report["targets"][0];
    assert_eq!(report["targets"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(t["labels"]["target"], "leaky");
    assert_eq!(t["restarts"].as_array().unwrap().len(), 1, "{t}");
    let exhaustion = &t["exhaustions"][0];
    assert_eq!(exhaustion["series"], "fds", "{t}");
    assert_eq!(exhaustion["limit"], 64.0);
    let flip = &t["flips"][0];
    assert!(at(flip) <= at(exhaustion), "{t}");
    assert!(at(flip) < t["restarts"][0].as_f64().unwrap());
    assert!(
        flip["lines"][0].as_str().unwrap().starts_with("fds: "),
        "{flip}"
    );

    // Other rules: half the limit flips earlier.
    let other =
        format!("{JUDGE}[[target]]\nname = \"x\"\npid = 1\n[target.rules.fds]\nmax_ratio = 0.5\n");
    let other = config_file(dir.path(), "other.toml", &other);
    let mut args = vec!["-c", other.to_str().unwrap(), "--json"];
    args.extend(files);
    let strict = json(&backtest(&args));
    assert!(at(&strict["targets"][0]["flips"][0]) < at(flip), "{strict}");

    check_cut_recordings(dir.path(), &record);
}

/// A cut last line is skipped with a warning; a broken line inside exits 2.
fn check_cut_recordings(dir: &Path, record: &Path) {
    let text = std::fs::read_to_string(record).unwrap();
    let cut = dir.join("cut.jsonl");
    std::fs::write(&cut, &text[..text.len() - 20]).unwrap();
    let out = backtest(&["--recording", cut.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stdout);
    assert!(err.contains("the last line is cut short"), "{err}");
    let broken = dir.join("broken.jsonl");
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&broken, format!("{}\n{{\"t\": 1\n{}\n", lines[0], lines[1])).unwrap();
    let out = backtest(&["--recording", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broken.jsonl:2: not a recording line"),
        "{err}"
    );
    let started = Instant::now();
    let out = backtest(&["--recording", dir.join("absent.jsonl").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(started.elapsed() < Duration::from_secs(60));
}
