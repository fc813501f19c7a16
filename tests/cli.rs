//! The command line end to end: exit codes and what users read.

mod common;

use std::process::{Command, Output};

use common::BIN;

fn leakwatch(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run leakwatch")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn demo_runs_to_emfile_and_reports_the_lead_time() {
    let out = leakwatch(&[
        "demo",
        "--interval",
        "100ms",
        "--nofile",
        "128",
        "--max",
        "20s",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("could no longer open sockets: error: Too many open files"),
        "{stdout}"
    );
    assert!(stdout.contains("fds crossed 90% of the limit"), "{stdout}");
    assert!(stdout.contains("lead time:"), "{stdout}");
    // The live lines show the leak: CLOSE_WAIT climbing tick after tick.
    let close_waits: Vec<u64> = stdout
        .lines()
        .filter(|l| {
            l.trim_start()
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
        })
        .filter_map(|l| l.split_whitespace().nth(3)?.parse().ok())
        .collect();
    assert!(close_waits.len() >= 5, "{stdout}");
    assert!(
        close_waits.windows(2).all(|w| w[1] >= w[0]),
        "{close_waits:?}"
    );
}

#[test]
fn config_example_passes_config_check() {
    let example = leakwatch(&["config", "example"]);
    assert!(example.status.success());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("leakwatch.toml");
    std::fs::write(&file, &example.stdout).unwrap();
    let check = leakwatch(&["config", "check", file.to_str().unwrap()]);
    assert!(check.status.success(), "{}", text(&check.stderr));
    assert!(text(&check.stdout).contains("ok, 1 target(s)"));
}

#[test]
fn a_broken_config_is_exit_2_with_file_line_column_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[[target]]\npid = 1\n[target.rules.fds]\nmax_ratio = 1.5\n",
    )
    .unwrap();
    let out = leakwatch(&["config", "check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "error: {}:4:13: target[0].rules.fds.max_ratio: expected a ratio",
            file.display()
        )),
        "{err}"
    );
}

#[test]
fn version_and_bad_usage() {
    let out = leakwatch(&["--version"]);
    assert!(text(&out.stdout).starts_with("leakwatch "));
    let out = leakwatch(&["inspect", "--pid", "1", "--name", "x"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "two selectors are a usage error"
    );
    let out = leakwatch(&["inspect", "--cmdline-regex", "("]);
    assert_eq!(out.status.code(), Some(2), "a bad regex is a usage error");
}
