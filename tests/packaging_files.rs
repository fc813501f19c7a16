//! What packaging/ ships, checked without building it: every asset the .deb metadata in
//! Cargo.toml names exists, the maintainer scripts and the units' scripts parse, and the
//! Dockerfile has its two stages, a non-root user, the binary and example config where its
//! entrypoint and CMD expect them. The image itself is not built here: there is no Docker
//! engine on this machine or in CI (and `docker build --check` needs one too).

mod common;

use std::path::Path;
use std::process::Command;

use common::image::instructions;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn cargo_toml() -> toml::Value {
    toml::from_str(&std::fs::read_to_string(Path::new(ROOT).join("Cargo.toml")).unwrap()).unwrap()
}

/// The files an asset's source names: itself, or for `dir/PREFIX*SUFFIX` (cargo-deb's glob,
/// in the one form the assets use) the files of `dir` that match.
fn expand(src: &str) -> Vec<std::path::PathBuf> {
    let path = Path::new(ROOT).join(src);
    let Some((prefix, suffix)) = src.rsplit('/').next().and_then(|f| f.split_once('*')) else {
        return vec![path].into_iter().filter(|p| p.is_file()).collect();
    };
    let dir = path.parent().unwrap();
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_else(|_| Vec::new());
    out.retain(|p: &std::path::PathBuf| {
        let name = p.file_name().unwrap().to_string_lossy();
        p.is_file() && name.starts_with(prefix) && name.ends_with(suffix)
    });
    out
}

#[test]
fn every_deb_asset_exists() {
    let manifest = cargo_toml();
    let deb = &manifest["package"]["metadata"]["deb"];
    let assets = deb["assets"]
        .as_array()
        .expect("[package.metadata.deb] assets");
    let mut dests = Vec::new();
    for a in assets {
        let a = a.as_array().unwrap();
        let (src, dest, mode) = (
            a[0].as_str().unwrap(),
            a[1].as_str().unwrap(),
            a[2].as_str().unwrap(),
        );
        // What the build makes (the binary, packaging/assets.sh's man pages and
        // completions) is checked installed, by tests/packaging_deb.rs.
        if !src.starts_with("target/") {
            let paths = expand(src);
            assert!(!paths.is_empty(), "{src} is missing");
            for path in paths {
                let executable = std::os::unix::fs::PermissionsExt::mode(
                    &path.metadata().unwrap().permissions(),
                ) & 0o111
                    != 0;
                assert_eq!(executable, mode == "755", "{}: mode {mode}", path.display());
            }
        }
        dests.push(dest.to_string());
    }
    for want in [
        "usr/bin/",
        "usr/lib/systemd/system/",
        "usr/libexec/leakwatch/",
        "etc/leakwatch/leakwatch.toml",
    ] {
        assert!(dests.iter().any(|d| d == want), "nothing goes to {want}");
    }
    let scripts = deb["maintainer-scripts"].as_str().unwrap();
    for s in ["postinst", "prerm", "postrm"] {
        let path = Path::new(ROOT).join(scripts).join(s);
        let st = Command::new("sh").arg("-n").arg(&path).status().unwrap();
        assert!(st.success(), "{}: sh -n", path.display());
    }
    for (shell, s) in [("sh", "leakwatch-unit"), ("bash", "leakwatch-restart")] {
        let path = Path::new(ROOT).join("systemd").join(s);
        let st = Command::new(shell).arg("-n").arg(&path).status().unwrap();
        assert!(st.success(), "{}: {shell} -n", path.display());
    }
}

#[test]
fn dockerfile_builds_a_small_non_root_image() {
    let ins = instructions();
    let stages: Vec<&str> = ins
        .iter()
        .filter(|(op, _)| op == "FROM")
        .map(|(_, a)| a.as_str())
        .collect();
    assert_eq!(stages.len(), 2, "a builder and a runtime stage: {stages:?}");
    assert!(
        stages[0].contains("rust:") && stages[0].ends_with(" AS build"),
        "{stages:?}"
    );
    assert!(
        !stages[1].contains("rust"),
        "the runtime stage has no toolchain: {stages:?}"
    );

    // The builder's toolchain is at least the crate's rust-version.
    let arg = ins
        .iter()
        .find_map(|(op, a)| {
            (op == "ARG")
                .then(|| a.strip_prefix("RUST_VERSION="))
                .flatten()
        })
        .expect("ARG RUST_VERSION");
    let manifest = cargo_toml();
    let msrv = manifest["package"]["rust-version"].as_str().unwrap();
    let v = |s: &str| -> Vec<u32> { s.split('.').map(|p| p.parse().unwrap()).collect() };
    assert!(
        v(arg) >= v(msrv),
        "RUST_VERSION {arg} < rust-version {msrv}"
    );

    // Everything the build stage copies exists (a renamed file breaks the image).
    let runtime_at = ins.iter().rposition(|(op, _)| op == "FROM").unwrap();
    for (op, args) in &ins[..runtime_at] {
        if op == "COPY" {
            let parts: Vec<&str> = args.split_whitespace().collect();
            for src in &parts[..parts.len() - 1] {
                assert!(Path::new(ROOT).join(src).exists(), "COPY {src}: missing");
            }
        }
    }
    let runtime = &ins[runtime_at + 1..];
    let has = |op: &str, args: &str| runtime.iter().any(|(o, a)| o == op && a == args);
    assert!(
        has("COPY", "--from=build /out/leakwatch /usr/bin/leakwatch"),
        "{runtime:?}"
    );
    assert!(
        ins[..runtime_at]
            .iter()
            .any(|(op, a)| op == "RUN" && a.contains("/out/leakwatch")),
        "the build stage puts the binary where the runtime copies it from"
    );
    assert!(has(
        "COPY",
        "packaging/leakwatch.toml /etc/leakwatch/leakwatch.toml"
    ));
    assert!(has("EXPOSE", "9717"));
    // The bare binary: a container's args (the chart's `run …`, `demo-child …`, or
    // `docker run IMAGE inspect …`) name the subcommand themselves.
    assert_eq!(common::image::entrypoint(), ["/usr/bin/leakwatch"]);

    let user = runtime
        .iter()
        .rev()
        .find(|(op, _)| op == "USER")
        .map(|(_, a)| a.as_str())
        .expect("USER in the runtime stage");
    let uid = user.split(':').next().unwrap();
    assert!(uid != "root" && uid != "0", "USER {user}");

    // CMD: `leakwatch run`, serving beyond loopback (EXPOSE means nothing on 127.0.0.1)
    // the config the image ships.
    let cmd = common::image::cmd();
    assert_eq!(
        cmd,
        [
            "run",
            "-c",
            "/etc/leakwatch/leakwatch.toml",
            "--listen",
            "0.0.0.0:9717"
        ]
    );
}

/// The per-instance example for leakwatch@postgresql.service (docs/systemd.md, moved from the
/// README) is a config leakwatch accepts, with the target that instance watches.
#[test]
fn readme_instance_config_is_valid() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("docs/systemd.md")).unwrap();
    let start = readme
        .find("```toml\n# /etc/leakwatch/postgresql.toml")
        .expect("the per-instance example in docs/systemd.md");
    let block = &readme[start + "```toml\n".len()..];
    let block = &block[..block.find("```").unwrap()];
    let config = leakwatch::config::Config::parse(block, "postgresql.toml")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.listen.to_string(), "127.0.0.1:9718");
    assert_eq!(config.targets.len(), 1);
    assert_eq!(
        config.targets[0].selector.to_string(),
        r#"systemd_unit = "postgresql.service""#
    );
}
