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
