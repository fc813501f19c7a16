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
    assert!(
        text(&check.stdout).contains("  app: cmdline_regex = \"myapp --serve\" (mode enforce)\n"),
        "{}",
        text(&check.stdout)
    );
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

#[test]
fn generate_writes_a_man_page_per_subcommand_and_completions_for_three_shells() {
    let dir = tempfile::tempdir().unwrap();
    let man = dir.path().join("man");
    let out = leakwatch(&["generate", "man", man.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let page = std::fs::read_to_string(man.join("leakwatch.1")).unwrap();
    assert!(page.contains(".TH leakwatch 1"), "{page}");
    for section in [
        ".SH ENDPOINTS",
        ".SH FILES",
        ".SH EXIT STATUS",
        ".SH SEE ALSO",
    ] {
        assert!(page.contains(section), "{section} missing");
    }
    for sub in [
        "run", "check", "inspect", "demo", "backtest", "config", "generate",
    ] {
        let sub_page = man.join(format!("leakwatch-{sub}.1"));
        assert!(sub_page.exists(), "{} missing", sub_page.display());
    }
    let run = std::fs::read_to_string(man.join("leakwatch-run.1")).unwrap();
    assert!(run.contains("config"), "{run}");

    for (shell, mark) in [
        ("bash", "complete -F _leakwatch"),
        ("zsh", "#compdef leakwatch"),
        ("fish", "complete -c leakwatch"),
    ] {
        let out = leakwatch(&["generate", "completions", shell]);
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(script.contains(mark), "{shell}: {script}");
        assert!(
            script.contains("backtest") && script.contains("inspect"),
            "{shell}"
        );
    }
    // A directory that cannot be made: exit 2 and the path, no panic.
    let out = leakwatch(&["generate", "man", "/proc/self/nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("/proc/self/nope"),
        "{}",
        text(&out.stderr)
    );
}
