//! The release binary's link order (build.rs, packaging/link-order.txt): the functions a
//! running daemon executes sit together at the start of the text, the fleet client's after
//! them, so the kernel's fault-around maps pages the daemon uses, not inspect's or
//! backtest's (docs/performance.md, "The link order"). Checked on target/release/leakwatch as built:
//! the list still names this build's functions (a rustc or dependency update renames
//! them: then `bash packaging/link-order.sh` writes it again), and the linker laid them out
//! together.
//!
//! Needs the release build (`cargo build --release`, which `.ci/run` makes before the tests)
//! and `nm`; without them the test skips, and with LEAKWATCH_REQUIRE_RELEASE=1 (set by
//! `.ci/run`) it fails instead.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;

/// The share of the list a release build must still have: a few functions come and go
/// with each change of the code; a rename of a whole crate's symbols loses far more.
const FRESH: f64 = 0.9;

#[test]
fn the_daemons_functions_are_linked_together_in_the_release_binary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let list = std::fs::read_to_string(root.join("packaging/link-order.txt"))
        .expect("packaging/link-order.txt");
    let names: Vec<&str> = list.lines().collect();
    assert!(names.len() > 500, "{} functions listed", names.len());
    let unique: HashSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), names.len(), "the list has no repeats");

    let binary = root.join("target/release/leakwatch");
    if !binary.is_file() {
        let why = "no target/release/leakwatch: build it with `cargo build --release`";
        return common::skip::skip("LEAKWATCH_REQUIRE_RELEASE", why);
    }
    let nm = match Command::new("nm")
        .args(["--defined-only", "--print-size"])
        .arg(&binary)
        .output()
    {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        other => {
            let why = format!("`nm` cannot read {}: {other:?}", binary.display());
            return common::skip::skip("LEAKWATCH_REQUIRE_RELEASE", &why);
        }
    };
    // "ADDRESS SIZE TYPE NAME" for the functions of the text.
    let mut functions: HashMap<&str, (u64, u64)> = HashMap::new();
    for line in nm.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [addr, size, kind, name] = fields[..] {
            if matches!(kind, "t" | "T" | "w" | "W") {
                let hex = |s: &str| u64::from_str_radix(s, 16).unwrap_or(0);
                functions.entry(name).or_insert((hex(addr), hex(size)));
            }
        }
    }
    assert!(
        !functions.is_empty(),
        "{} has no symbols (stripped?)",
        binary.display()
    );

    let placed: Vec<(u64, u64)> = names
        .iter()
        .filter_map(|n| functions.get(n).copied())
        .collect();
    let share = placed.len() as f64 / names.len() as f64;
    assert!(
        share >= FRESH,
        "only {} of the {} functions in packaging/link-order.txt are in {}: the list is \
         stale (a rustc or dependency update renamed them). Write it again with \
         `bash packaging/link-order.sh` and commit it.",
        placed.len(),
        names.len(),
        binary.display()
    );

    // Together: the range they span is about the sum of their sizes (alignment padding
    // aside). In the default order the same functions spread over 8.6 MiB for 1.4 MB.
    let start = placed.iter().map(|(a, _)| *a).min().unwrap();
    let end = placed.iter().map(|(a, s)| a + s).max().unwrap();
    let total: u64 = placed.iter().map(|(_, s)| s).sum();
    let span = end - start;
    assert!(
        span <= total + total / 4 + 64 * 1024,
        "the {} listed functions ({total} bytes) span {span} bytes of {}: build.rs did not \
         have the linker order them (not linked with LLD, or LEAKWATCH_LINK_ORDER=0?)",
        placed.len(),
        binary.display()
    );
}
