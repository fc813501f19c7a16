//! Reading systemd unit files and asking `systemd-analyze` about them, for the packaging
//! tests. `systemd-analyze verify` works offline (no systemd as PID 1 needed); it prints
//! most mistakes (an unknown key, a bad value) as warnings and still exits 0, so its
//! stderr must be empty too.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's systemd/ directory.
pub fn systemd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd")
}

/// One `Key=value` line with its section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub section: String,
    pub key: String,
    pub value: String,
}

/// The entries of a unit file, in order (comments and blank lines left out).
pub fn parse(text: &str) -> Vec<Entry> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not Key=value: {line:?}"));
        out.push(Entry {
            section: section.clone(),
            key: key.trim().to_string(),
            value: value.trim().to_string(),
        });
    }
    out
}

pub fn read(path: &Path) -> Vec<Entry> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse(&text)
}

/// Every value of `key` in `[Service]`.
pub fn service_values<'a>(entries: &'a [Entry], key: &str) -> Vec<&'a str> {
    entries
        .iter()
        .filter(|e| e.section == "Service" && e.key == key)
        .map(|e| e.value.as_str())
        .collect()
}

/// Whether the tests must fail rather than skip without systemd-analyze (`.ci/run` sets
/// LEAKWATCH_REQUIRE_SYSTEMD_ANALYZE=1 and installs it).
pub fn systemd_analyze_required() -> bool {
    std::env::var_os("LEAKWATCH_REQUIRE_SYSTEMD_ANALYZE").is_some_and(|v| v == "1")
}

/// `None` when systemd-analyze runs here, else why not.
pub fn no_systemd_analyze() -> Option<String> {
    match Command::new("systemd-analyze").arg("--version").output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!("systemd-analyze --version failed: {:?}", o.status)),
        Err(e) => Some(format!("systemd-analyze (package systemd) is missing: {e}")),
    }
}

/// Skip (say why, return true) or fail without systemd-analyze.
pub fn skip_without_systemd_analyze(test: &str) -> bool {
    let Some(why) = no_systemd_analyze() else {
        return false;
    };
    crate::common::skip::skip(
        "LEAKWATCH_REQUIRE_SYSTEMD_ANALYZE",
        &format!("{test}: {why}"),
    );
    true
}

/// `systemd-analyze verify UNIT`: Ok when it exits 0 and prints nothing.
pub fn verify(unit: &Path) -> Result<(), String> {
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(unit)
        .output()
        .map_err(|e| format!("run systemd-analyze: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && stderr.trim().is_empty() && stdout.trim().is_empty() {
        Ok(())
    } else {
        Err(format!(
            "systemd-analyze verify {}: {:?}\n{stdout}{stderr}",
            unit.display(),
            out.status
        ))
    }
}

/// `systemd-analyze security --offline=yes --json=short UNIT`: each check's name and whether
/// the unit passes it, and the overall exposure (0 best, 10 worst) from the text report.
pub fn security(unit: &Path) -> (Vec<(String, bool)>, f64) {
    let json = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--json=short"])
        .arg(unit)
        .output()
        .expect("run systemd-analyze security");
    let checks: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap_or_else(|e| {
        panic!(
            "systemd-analyze security --json: {e}: {}",
            String::from_utf8_lossy(&json.stderr)
        )
    });
    let checks = checks
        .as_array()
        .expect("a list of checks")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_string(),
                c["set"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    let text = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(unit)
        .output()
        .expect("run systemd-analyze security");
    let text = String::from_utf8_lossy(&text.stdout);
    let exposure = text
        .lines()
        .find_map(|l| {
            l.split_once("Overall exposure level for ")?
                .1
                .split_once(": ")
        })
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure in:\n{text}"));
    (checks, exposure)
}
