//! `leakwatch demo` runs to its summary: /healthz turns 503 before the child's EMFILE, and
//! the child is gone afterwards; with `--observe` /healthz stays 200 and the summary says
//! when it would have turned 503.

mod common;

use std::process::Command;

use common::BIN;

/// `leakwatch demo ARGS` on a fast scale: its exit code and stdout.
fn demo(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--nofile",
            "256",
            "--interval",
            "500ms",
            "--max",
            "60s",
        ])
        .args(args)
        .output()
        .expect("run the demo");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{text}");
    if out.status.code() != Some(0) {
        println!("stderr: {}", String::from_utf8_lossy(&out.stderr));
    }
    (out.status.code(), text)
}

#[test]
fn the_demo_shows_503_before_emfile_and_cleans_up() {
    let (code, text) = demo(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("\nmode: enforce ("), "{text}");
    let turned = text.find("/healthz turned 503").expect("503 line");
    let ran_out = text.find("the child ran out of fds").expect("EMFILE line");
    assert!(turned < ran_out, "{text}");
    assert!(text.contains("lead time: "), "{text}");
    assert!(
        text.contains("503 UNHEALTHY"),
        "a live line shows the 503: {text}"
    );
    let pid: i32 = text
        .split("child pid ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .expect("the child's pid is printed");
    let alive = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .map(|c| c.contains("demo-child"))
        .unwrap_or(false);
    assert!(!alive, "the demo child {pid} was left running");
}

#[test]
fn in_observe_mode_the_demo_stays_200_and_says_when_it_would_have_failed() {
    let (code, text) = demo(&["--observe"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("\nmode: observe ("), "{text}");
    assert!(!text.contains("503 UNHEALTHY"), "{text}");
    assert!(
        text.contains("200 observe: would fail"),
        "a live line shows the held 503: {text}"
    );
    let would = text
        .find("/healthz would have turned 503 (observe mode: it answered 200): fds: ")
        .expect("the would-fail line");
    let ran_out = text.find("the child ran out of fds").expect("EMFILE line");
    assert!(would < ran_out, "{text}");
    assert!(
        text.contains("observe mode: leakwatch would have restarted the child "),
        "{text}"
    );
}
