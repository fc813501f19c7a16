//! The Helm chart (helm/leakwatch), rendered by Helm's own library and checked against the
//! Kubernetes schemas by helm/tests/check_chart.py (lint; default values, classic sidecar,
//! capabilities added, monitors on, pod IP, fleet-safe restarts with K slots given and as a
//! percentage, observe mode; the README's values; another chart injecting the sidecar; wrong values
//! refused by values.schema.json). Here the real binary takes over: every rendered
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
use common::image::container_argv;
use common::BIN;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// What helm/tests/check_chart.py renders: the chart's variants and examples/my-app.
const VARIANTS: [&str; 13] = [
    "default",
    "classic",
    "capabilities",
    "monitors",
    "diagnostics",
    "pod-ip",
    "network-policy",
    "fleet",
    "fleet-percent",
    "observe",
    "dashboard",
    "adoption",
    "my-app",
];

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

/// A list of strings (a container's `command` or `args`); absent is empty.
fn list(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Every pod spec among the manifests: a Deployment's template, a Pod's spec.
fn pod_specs(docs: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    docs.iter()
        .filter_map(|d| match d["kind"].as_str()? {
            "Pod" => Some(&d["spec"]),
            "Deployment" | "StatefulSet" | "DaemonSet" | "Job" => {
                Some(&d["spec"]["template"]["spec"])
            }
            _ => None,
        })
        .collect()
}

/// `$(NAME)` in an argument expanded from the container's env, as the kubelet does; a
/// value from the downward API gets a stand-in of its kind (an address for an IP).
fn expand_env(arg: &str, container: &serde_json::Value) -> String {
    let mut out = arg.to_string();
    for e in container["env"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().unwrap();
        let value = match e["value"].as_str() {
            Some(v) => v.to_string(),
            None if e["valueFrom"]["fieldRef"]["fieldPath"]
                .as_str()
                .is_some_and(|f| f.ends_with("IP")) =>
            {
                "192.0.2.10".to_string()
            }
            None => "stand-in".to_string(),
        };
        out = out.replace(&format!("$({name})"), &value);
    }
    out
}

/// Regression (issue: the chart's pod never started, `leakwatch run run …`): the image's
/// ENTRYPOINT/CMD and every rendered container of leakwatch's image make one command line
/// that leakwatch's own parser accepts: the sidecar's is `run`, the demo target's
/// `demo-child`. The image's default (no command, no args) is `run` too.
#[test]
fn image_entrypoint_and_chart_args_make_one_command_not_run_run() {
    use clap::Parser;
    use leakwatch::cli::{Cli, Command as Sub};

    let parse = |argv: &[String], what: &str| -> Cli {
        Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{what}: {argv:?}\n{e}"))
    };
    let default = parse(&container_argv(&[], &[]), "the image's default");
    assert!(matches!(default.command, Sub::Run(_)), "{default:?}");

    let Some(out) = rendered() else { return };
    let mut seen = Vec::new();
    for variant in VARIANTS {
        let docs = manifests(out, variant);
        for pod in pod_specs(&docs) {
            let containers = ["initContainers", "containers"]
                .iter()
                .flat_map(|k| pod[*k].as_array().into_iter().flatten());
            let images: Vec<&str> = containers
                .clone()
                .filter(|c| c["name"] == "leakwatch")
                .map(|c| c["image"].as_str().unwrap())
                .collect();
            assert_eq!(images.len(), 1, "{variant}: one leakwatch sidecar");
            for c in containers.filter(|c| c["image"] == images[0]) {
                let name = c["name"].as_str().unwrap();
                let what = format!("{variant}: container {name}");
                let args: Vec<String> = list(&c["args"]).iter().map(|a| expand_env(a, c)).collect();
                let argv = container_argv(&list(&c["command"]), &args);
                let cli = parse(&argv, &what);
                match name {
                    "leakwatch" => assert!(matches!(cli.command, Sub::Run(_)), "{what}: {cli:?}"),
                    _ => assert!(matches!(cli.command, Sub::DemoChild(_)), "{what}: {cli:?}"),
                }
                seen.push(what);
            }
        }
    }
    // The sidecar in every variant, the demo target in those with the chart's workload (all
    // but my-app).
    assert_eq!(seen.len(), VARIANTS.len() * 2 - 1, "{seen:#?}");
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
    for variant in VARIANTS {
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
    // The fleet variants' configs have a [fleet] table (group, max_concurrent = K).
    assert_eq!(
        checked,
        VARIANTS.len() + 1,
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
        let why = "not root: cannot make a PID namespace";
        common::skip::skip("LEAKWATCH_REQUIRE_NAMESPACES", why);
        return;
    }
    let docs = manifests(out, "default");
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    let sidecar = &pod["initContainers"][0];
    let target = &pod["containers"][0];

    // Each process runs the argv its container would: the image's entrypoint and CMD as
    // the container's command and args replace them (the installed path becomes BIN).
    let argv = |c: &serde_json::Value| -> Vec<String> {
        let mut argv = container_argv(&list(&c["command"]), &list(&c["args"]));
        assert_eq!(argv[0], "/usr/bin/leakwatch", "{c}");
        argv[0] = BIN.to_string();
        argv
    };

    // The target, bounded here.
    let mut target_argv = argv(target);
    let max = target_argv
        .iter()
        .position(|a| a == "--max-seconds")
        .unwrap();
    target_argv[max + 1] = "120".into();
    let target_cmd: Vec<String> = target_argv.iter().map(|a| sh_quote(a)).collect();

    // The sidecar with the rendered config; the harness adds its own --listen (an
    // ephemeral loopback port) and --log-format json, and the probe listener gets one too.
    let sidecar_argv = argv(sidecar);
    assert_eq!(
        sidecar_argv[1..4],
        ["run", "-c", "/etc/leakwatch/leakwatch.toml"]
    );
    let mut run_args = vec![
        "-c".to_string(),
        out.join("default.toml").display().to_string(),
    ];
    let mut rest = sidecar_argv[4..].iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().unwrap();
        match flag.as_str() {
            "--listen" | "--log-format" => {}
            "--probe-listen" => run_args.extend([flag.clone(), "127.0.0.1:0".into()]),
            _ => run_args.extend([flag.clone(), value.clone()]),
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
    .args(&sidecar_argv[..2])
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
