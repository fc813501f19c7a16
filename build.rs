//! The release binary's link order: the functions a running daemon executes, then those of
//! the fleet's client (packaging/link-order.txt, written by packaging/link-order.sh), are
//! laid out together at the start of the text, so the pages the kernel maps around each fault are pages the
//! daemon uses. Scattered among the 11 MB of text (the fleet's Kubernetes client, inspect,
//! backtest), they made the kernel map about 7 MiB of the binary; together, 3.2 MiB
//! (docs/performance.md, "The link order").
//!
//! Only for the release profile, with the linker that reads the list: LLD, which rustc uses
//! by default for x86_64-unknown-linux-gnu from Rust 1.90 on. Any other linker, or
//! `LEAKWATCH_LINK_ORDER=0`, links in the default order: the same program, larger in memory.

use std::env;
use std::path::Path;
use std::process::Command;

const ORDER: &str = "packaging/link-order.txt";

fn main() {
    println!("cargo:rerun-if-changed={ORDER}");
    println!("cargo:rerun-if-env-changed=LEAKWATCH_LINK_ORDER");
    if env::var("PROFILE").as_deref() != Ok("release")
        || env::var("LEAKWATCH_LINK_ORDER").as_deref() == Ok("0")
        || !default_linker_is_lld()
    {
        return;
    }
    let manifest = env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let order = Path::new(&manifest).join(ORDER);
    if !order.is_file() {
        return;
    }
    println!(
        "cargo:rustc-link-arg-bin=leakwatch=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    // Functions the list names that this build does not have (another rustc, another
    // dependency) are skipped, not reported: tests/link_order.rs says when the list is stale.
    println!("cargo:rustc-link-arg-bin=leakwatch=-Wl,--no-warn-symbol-ordering");
}

/// rustc links x86_64-unknown-linux-gnu with its own LLD from 1.90 on, unless a linker or a
/// linker flavour is set in the flags or the target's configuration.
fn default_linker_is_lld() -> bool {
    if env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu")
        || env::var_os("RUSTC_LINKER").is_some()
    {
        return false;
    }
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if flags.contains("linker") || flags.contains("link-self-contained") {
        return false;
    }
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .unwrap_or_default();
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let minor = version
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.split('.').nth(1))
        .and_then(|m| m.parse::<u32>().ok());
    minor.is_some_and(|m| m >= 90)
}
