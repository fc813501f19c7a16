//! The .deb, installed on this machine: `dpkg -i`, `leakwatch --version` from PATH, the
//! units where systemd looks and accepted by `systemd-analyze verify` against the installed
//! binary and scripts, the conffile accepted by `leakwatch config check`, the `leakwatch`
//! system user, then `dpkg --purge` leaves none of the package's files behind.
//!
//! The .deb is built before `cargo test` (`cargo deb`, by .ci/run) into target/debian/, or
//! named by LEAKWATCH_DEB. Without one, or without root, the test says why it skips; with
//! LEAKWATCH_REQUIRE_DEB=1 (set by .ci/run) it fails instead.

mod unitfiles;

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const PACKAGE: &str = "leakwatch";

/// The newest target/debian/leakwatch_*.deb, or LEAKWATCH_DEB.
fn find_deb() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LEAKWATCH_DEB") {
        return Some(PathBuf::from(p));
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debian");
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("leakwatch_") && name.ends_with(".deb")
        })
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?}: {:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// dpkg, retried while another dpkg or apt holds its lock (at most two minutes).
fn dpkg(args: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = run(Command::new("dpkg").args(args));
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        if stderr.contains("lock") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_secs(2));
            continue;
        }
        panic!("dpkg {args:?}: {:?}\n{stderr}", out.status);
    }
}

/// Purges the package when the test ends, also when an assertion failed.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = Command::new("dpkg").args(["--purge", PACKAGE]).output();
        }
    }
}

const UNITS: [&str; 3] = [
    "leakwatch.service",
    "leakwatch@.service",
    "leakwatch-restart@.service",
];
const FILES: [&str; 15] = [
    "/usr/bin/leakwatch",
    "/usr/share/man/man1/leakwatch.1.gz",
    "/usr/share/man/man1/leakwatch-run.1.gz",
    "/usr/share/bash-completion/completions/leakwatch",
    "/usr/share/zsh/vendor-completions/_leakwatch",
    "/usr/share/fish/vendor_completions.d/leakwatch.fish",
    "/usr/lib/systemd/system/leakwatch.service",
    "/usr/lib/systemd/system/leakwatch@.service",
    "/usr/lib/systemd/system/leakwatch-restart@.service",
    "/usr/libexec/leakwatch/leakwatch-unit",
    "/usr/libexec/leakwatch/leakwatch-restart",
    "/etc/leakwatch/leakwatch.toml",
    "/usr/share/doc/leakwatch/examples/signal-actions.conf",
    "/usr/share/doc/leakwatch/README.md",
    "/usr/share/leakwatch/grafana/leakwatch.json",
];

#[test]
fn deb_installs_verifies_and_purges() {
    let Some(deb) = find_deb() else {
        let why = "no target/debian/leakwatch_*.deb: build it with `cargo deb`";
        common::skip::skip("LEAKWATCH_REQUIRE_DEB", why);
        return;
    };
    if !nix::unistd::geteuid().is_root() {
        common::skip::skip("LEAKWATCH_REQUIRE_DEB", "dpkg -i needs root");
        return;
    }
    let no_analyze = unitfiles::no_systemd_analyze();
    assert!(
        no_analyze.is_none() || !unitfiles::systemd_analyze_required(),
        "{no_analyze:?}"
    );

    dpkg(&["-i", deb.to_str().unwrap()]);
    let _guard = Installed;

    // The binary from PATH, with the version of this source tree.
    let which = ok(Command::new("sh").args(["-c", "command -v leakwatch"]));
    assert_eq!(which.trim(), "/usr/bin/leakwatch");
    let version = ok(Command::new("leakwatch").arg("--version"));
    assert_eq!(
        version.trim(),
        format!("leakwatch {}", env!("CARGO_PKG_VERSION"))
    );

    // Every file where the units and the README say it is.
    let listed = dpkg(&["-L", PACKAGE]);
    for f in FILES {
        assert!(Path::new(f).exists(), "{f} not installed");
        assert!(listed.lines().any(|l| l == f), "{f} not listed by dpkg -L");
    }
    let conffiles = ok(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", PACKAGE]));
    assert!(
        conffiles.contains("/etc/leakwatch/leakwatch.toml"),
        "conffiles: {conffiles}"
    );
    let check =
        ok(Command::new("leakwatch").args(["config", "check", "/etc/leakwatch/leakwatch.toml"]));
    assert!(check.contains(": ok, 1 target(s)"), "{check}");

    // `man leakwatch` renders the page, with the sections beyond the options; bash
    // completes the subcommands.
    let page = ok(Command::new("man")
        .args(["-P", "cat", "leakwatch"])
        .env("MANWIDTH", "100"));
    assert!(
        page.contains("leakwatch - Restart a service before it runs out of file descriptors")
            && page.contains("EXIT STATUS")
            && page.contains("leakwatch-run(1)"),
        "{page}"
    );
    let run_page = ok(Command::new("man").args(["-P", "cat", "leakwatch-run"]));
    assert!(run_page.contains("--config"), "{run_page}");
    let completed = ok(Command::new("bash").args([
        "-c",
        "source /usr/share/bash-completion/completions/leakwatch && \
         COMP_WORDS=(leakwatch ba); COMP_CWORD=1; _leakwatch leakwatch ba leakwatch && \
         printf '%s\\n' \"${COMPREPLY[@]}\"",
    ]));
    assert_eq!(completed.trim(), "backtest", "{completed}");

    // The system user the units run as: no login shell, a system uid.
    let user = ok(Command::new("getent").args(["passwd", "leakwatch"]));
    let fields: Vec<&str> = user.trim().split(':').collect();
    let uid: u32 = fields[2].parse().unwrap();
    assert!(uid < 1000, "a system uid: {user}");
    assert!(fields[6].ends_with("nologin"), "{user}");
    ok(Command::new("getent").args(["group", "leakwatch"]));

    if let Some(why) = no_analyze {
        let why = format!("the systemd-analyze checks: {why}");
        common::skip::skip("LEAKWATCH_REQUIRE_SYSTEMD_ANALYZE", &why);
    } else {
        // Where systemd looks for units, the installed units are.
        let paths = ok(Command::new("systemd-analyze").args(["unit-paths"]));
        let unit_dirs: Vec<PathBuf> = paths
            .lines()
            .filter_map(|l| Path::new(l.trim()).canonicalize().ok())
            .collect();
        for unit in UNITS {
            let installed = Path::new("/usr/lib/systemd/system").join(unit);
            let dir = installed
                .canonicalize()
                .unwrap()
                .parent()
                .unwrap()
                .to_path_buf();
            assert!(
                unit_dirs.contains(&dir),
                "{} is not a unit path: {paths}",
                dir.display()
            );
            unitfiles::verify(&installed).unwrap();
        }
        for instance in ["leakwatch@nginx.service", "leakwatch-restart@nginx.service"] {
            unitfiles::verify(&Path::new("/usr/lib/systemd/system").join(instance)).unwrap();
        }
        // The documented drop-in, beside a copy of the installed template.
        let dir = tempfile::tempdir().unwrap();
        let template = dir.path().join("leakwatch@.service");
        std::fs::copy("/usr/lib/systemd/system/leakwatch@.service", &template).unwrap();
        let d = dir.path().join("leakwatch@.service.d");
        std::fs::create_dir(&d).unwrap();
        std::fs::copy(
            "/usr/share/doc/leakwatch/examples/signal-actions.conf",
            d.join("signal-actions.conf"),
        )
        .unwrap();
        unitfiles::verify(&template).unwrap();
    }

    // Purge: the package's files, its conffile and /etc/leakwatch, and the state the units
    // wrote (systemd's StateDirectory=, made here by hand) are gone.
    std::fs::create_dir_all("/var/lib/leakwatch").unwrap();
    std::fs::write("/var/lib/leakwatch/bundle", "x").unwrap();
    dpkg(&["--purge", PACKAGE]);
    for f in FILES {
        assert!(!Path::new(f).exists(), "{f} left after purge");
    }
    for d in [
        "/etc/leakwatch",
        "/usr/libexec/leakwatch",
        "/usr/share/doc/leakwatch",
        "/usr/share/leakwatch",
        "/var/lib/leakwatch",
    ] {
        assert!(!Path::new(d).exists(), "{d} left after purge");
    }
    let status = run(Command::new("dpkg-query").args(["-W", "-f=${Status}", PACKAGE]));
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.is_empty() || status.contains("not-installed"),
        "dpkg still knows the package: {status}"
    );
    let which = run(Command::new("sh").args(["-c", "command -v leakwatch"]));
    assert!(!which.status.success(), "leakwatch still on PATH");
}
