//! The one "skip unless required" check of the tests that need a tool, a privilege or a
//! host property this machine may lack (promtool, prometheus, helm's Python, wrk, strace,
//! systemd-analyze, dpkg as root, root, namespaces, cgroups of their own, a v1 hierarchy,
//! `::1`, a large fd limit). Every skip goes through here: docs/testing.md lists the
//! variables.

use std::io::Write;

/// The tool or privilege is missing: with `require_var=1` in the environment (`.ci/run`
/// sets every `LEAKWATCH_REQUIRE_*` it can satisfy) that fails the test; otherwise the test
/// may pass after one line on stderr, `leakwatch-test SKIPPED <test>: <why>`, which
/// `.ci/run` counts in its summary as skipped (not passed). The line is written to stderr
/// directly, past the test harness's capture, so a passing test still shows it.
pub fn skip(require_var: &str, why: &str) {
    let required = std::env::var(require_var).is_ok_and(|v| v == "1");
    assert!(!required, "{why}, and {require_var}=1");
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("?");
    // One write of the whole line, so parallel tests' output cannot split it.
    let line = format!("leakwatch-test SKIPPED {test}: {why}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}
