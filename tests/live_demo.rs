//! `leakwatch demo` runs to its summary: /healthz turns 503 before the child's EMFILE, and
//! the child is gone afterwards.

mod common;

use std::process::Command;

use common::BIN;

#[test]
fn the_demo_shows_503_before_emfile_and_cleans_up() {
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
        .output()
        .expect("run the demo");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
