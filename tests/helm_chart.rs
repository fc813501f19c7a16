//! The Helm chart (helm/leakwatch), rendered by Helm's own library and checked against the
//! Kubernetes schemas by helm/tests/check_chart.py (lint; default values, classic sidecar,
//! capabilities added, monitors on, pod IP; the README's values; another chart injecting
//! the sidecar; wrong values refused by values.schema.json). Here the real binary takes over: every rendered
//! config must pass `leakwatch config check`, and the default render, run as in its pod
//! (the sidecar's args and the demo target's args, in a PID namespace of their own like
//! `shareProcessNamespace`), must find the demo target and see it leak.
//!
//! The Python side needs helm-python-sdk and kubernetes-validate, which `.ci/run` installs
//! into target/ci-venv (or set LEAKWATCH_HELM_PYTHON). Without them the tests say so and
//! pass, unless LEAKWATCH_REQUIRE_HELM=1 (CI sets it): then they fail.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::BIN;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The interpreter with the chart tools, or why there is none.
fn python() -> Result<PathBuf, String> {
    let python = std::env::var_os("LEAKWATCH_HELM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(ROOT).join("target/ci-venv/bin/python"));
    let probe = Command::new(&python)
        .args(["-c", "import helm_python, kubernetes_validate"])
        .output();
    match probe {
        Ok(out) if out.status.success() => Ok(python),
        Ok(out) => Err(format!(
            "{} lacks helm-python-sdk or kubernetes-validate: {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("{}: {e}", python.display())),
    }
}

/// The renders of every variant (OUT/VARIANT.toml and .json), made once per test run;
/// `None` when the tools are missing and not required.
fn rendered() -> Option<&'static Path> {
    static OUT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let out = OUT.get_or_init(|| {
        let python = python()?;
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("helm_chart");
        let _ = std::fs::remove_dir_all(&out);
        let run = Command::new(python)
            .arg(Path::new(ROOT).join("helm/tests/check_chart.py"))
            .arg(&out)
            .output()
            .expect("run helm/tests/check_chart.py");
        println!("{}", String::from_utf8_lossy(&run.stdout));
        assert!(
            run.status.success(),
            "helm/tests/check_chart.py failed:\n{}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
        Ok(out)
    });
    match out {
        Ok(out) => Some(out),
        Err(why) => {
            common::skip::skip(
                "LEAKWATCH_REQUIRE_HELM",
                &format!("{why} (bash .ci/run installs them)"),
            );
            None
        }
    }
}

fn manifests(out: &Path, variant: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(out.join(format!("{variant}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_chart_lints_renders_and_validates_for_every_variant() {
    let Some(out) = rendered() else { return };
    let app_version = std::fs::read_to_string(out.join("app_version")).unwrap();
    assert_eq!(
        app_version,
        env!("CARGO_PKG_VERSION"),
        "Chart.yaml appVersion (the default image tag) is the crate version"
    );
    let variants = [
        "default",
        "classic",
        "capabilities",
        "monitors",
        "diagnostics",
        "pod-ip",
        "my-app",
    ];
    for variant in variants {
        assert!(out.join(format!("{variant}.json")).exists(), "{variant}");
    }
}

#[test]
fn leakwatch_config_check_accepts_every_rendered_config() {
    let Some(out) = rendered() else { return };
    let mut checked = 0;
    for entry in std::fs::read_dir(out).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let run = Command::new(BIN)
            .args(["config", "check"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "leakwatch config check {}:\n{}{}\n--- the file ---\n{}",
            path.display(),
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr),
            std::fs::read_to_string(&path).unwrap()
        );
        checked += 1;
    }
    assert_eq!(
        checked, 8,
        "one config per variant, the README's and my-app's"
    );
}

/// Single-quoted for sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[test]
fn the_default_render_runs_as_in_its_pod_and_sees_the_demo_leak() {
    let Some(out) = rendered() else { return };
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: not root, cannot make a PID namespace");
        return;
    }
    let docs = manifests(out, "default");
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    let sidecar = &pod["initContainers"][0];
    let target = &pod["containers"][0];

    // The target: the image's entrypoint (leakwatch) with the rendered args, bounded here.
    let mut target_args = strings(&target["args"]);
    let max = target_args
        .iter()
        .position(|a| a == "--max-seconds")
        .unwrap();
    target_args[max + 1] = "120".into();
    let target_cmd: Vec<String> = std::iter::once(BIN.to_string())
        .chain(target_args)
        .map(|a| sh_quote(&a))
        .collect();

    // The sidecar: the rendered args with the rendered config; the harness adds its own
    // --listen (an ephemeral loopback port) and --log-format json.
    let args = strings(&sidecar["args"]);
    assert_eq!(args[..3], ["run", "-c", "/etc/leakwatch/leakwatch.toml"]);
    let mut run_args = vec![
        "-c".to_string(),
        out.join("default.toml").display().to_string(),
    ];
    let mut rest = args[3..].iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().unwrap();
        if flag != "--listen" && flag != "--log-format" {
            run_args.extend([flag.clone(), value.clone()]);
        }
    }

    // Like the pod: both processes in one PID namespace (shareProcessNamespace), where the
    // config's cmdline_regex can only meet the demo target. Its pid 1 is leakwatch.
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--pid",
        "--fork",
        "--mount-proc",
        "--kill-child",
        "sh",
        "-c",
    ])
    .arg(format!("{} & exec \"$0\" \"$@\"", target_cmd.join(" ")))
    .arg(BIN)
    .arg("run")
    .args(&run_args);
    let d = Daemon::start_with(&mut cmd);

    let fds = |d: &Daemon| -> Option<f64> {
        let s = d.status();
        let t = &s["targets"][0];
        assert_eq!(t["name"], "app", "{s}");
        t["judged"]["series"]
            .as_array()?
            .iter()
            .find(|e| e["series"] == "fds")?["value"]
            .as_f64()
    };
    let started = Instant::now();
    let mut first = None;
    let mut last = None;
    while started.elapsed() < Duration::from_secs(40) {
        if let Some(n) = fds(&d) {
            first.get_or_insert(n);
            last = Some(n);
            if n >= first.unwrap() + 3.0 {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let status = d.status();
    let (first, last) = (first.expect("the target was sampled"), last.unwrap());
    println!("demo target's fds seen by the default render: {first} -> {last}");
    assert!(
        last >= first + 3.0,
        "the demo target's leak (one fd per 2 s) was not seen: {first} -> {last}\n{status}"
    );
    let (code, body) = d.get("/healthz");
    assert_eq!(code, 200, "{body}");
    let (_, metrics) = d.get("/metrics");
    assert!(
        metrics.contains("leakwatch_tcp_sockets{state=\"close_wait\",target=\"app\"}"),
        "{metrics}"
    );
}
