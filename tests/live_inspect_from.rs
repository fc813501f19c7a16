//! `leakwatch inspect PID --from URL` end to end (issue 23): a real `leakwatch run` watches a
//! real child leaking fds until its /status suspects the leak (a warning, the fds rule far
//! from failing); inspect, asked about that child, prints the daemon's `leak suspected`
//! line after its own report, and the same under `daemon` in `--json`. An unreachable
//! daemon, a 404 and a pid the daemon does not watch are one line in that block: inspect
//! still prints its report and keeps its exit code.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::daemon::{config_file, Daemon};
use common::{LeakyChild, BIN};

/// Judging on a fast scale: ticks of 200 ms, trends over 6 s.
const FAST_JUDGE: &str = r#"
interval = "200ms"
[judge]
window = "6s"
min_samples = 10
warmup = "0s"
"#;

/// How long anything may take on a loaded 2-core machine.
const GENEROUS: Duration = Duration::from_secs(120);

fn text(o: &Output) -> String {
    format!(
        "--- stdout ---\n{}--- stderr ---\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `leakwatch inspect ARGS`, killed (by its own handle) if it outlives `GENEROUS`; `each`
/// runs every 100 ms while it does (to keep a leak going).
fn inspect_while(args: &[&str], mut each: impl FnMut()) -> Output {
    let mut run = Command::new(BIN)
        .arg("inspect")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start leakwatch inspect");
    let deadline = Instant::now() + GENEROUS;
    while run.try_wait().expect("wait for inspect").is_none() {
        if Instant::now() > deadline {
            let _ = run.kill();
            break;
        }
        each();
        std::thread::sleep(Duration::from_millis(100));
    }
    run.wait_with_output().expect("inspect's output")
}

fn inspect(args: &[&str]) -> Output {
    inspect_while(args, || {})
}

/// The judged series `name` of the first target in `/status`.
fn series<'a>(status: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    status["targets"][0]["judged"]["series"]
        .as_array()?
        .iter()
        .find(|s| s["series"] == name)
}

/// Leak 2 fds per round until `/status` warns of the fds leak; its warning line.
fn leak_until_suspected(child: &mut LeakyChild, d: &Daemon) -> String {
    let deadline = Instant::now() + GENEROUS;
    while Instant::now() < deadline {
        let answer = child.command("files 2");
        assert_eq!(answer, "ok", "the child leaks");
        let status = d.status();
        let suspected = series(&status, "fds").is_some_and(|s| s["leak_suspected"] == true);
        let warnings = &status["targets"][0]["judged"]["verdict"]["warnings"];
        let line = warnings.as_array().and_then(|w| {
            w.iter()
                .filter_map(|l| l.as_str())
                .find(|l| l.starts_with("fds: leak suspected: +"))
        });
        if let (true, Some(line)) = (suspected, line) {
            // A warning, not a failing line (other rules are the machine's business).
            let verdict = &status["targets"][0]["judged"]["verdict"];
            let failing = verdict["failing"].as_array().cloned().unwrap_or_default();
            assert!(
                !failing
                    .iter()
                    .any(|l| l.as_str().is_some_and(|l| l.starts_with("fds"))),
                "{verdict}"
            );
            return line.to_string();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "/status never suspected the fds leak: {:#}",
        d.status()["targets"][0]["judged"]
    );
}

#[test]
fn inspect_from_shows_the_daemons_leak_suspected_line() {
    // 4096 fds and no trend rule on them: at ~20 fds/s nothing fails for minutes.
    let mut child = LeakyChild::spawn_lasting(
        Command::new(BIN).args(["demo-child", "--nofile", "4096"]),
        300,
    );
    let pid = child.pid().to_string();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(
        dir.path(),
        "leak.toml",
        &format!(
            "{FAST_JUDGE}\n[[target]]\nname = \"leaky\"\npid = {pid}\n\
             [target.rules.fds]\nmax_ratio = 0.9\n"
        ),
    );
    let d = Daemon::start(&["-c", cfg.to_str().unwrap()]);
    assert!(d.wait_ticks(2, GENEROUS), "{}", d.log_text());
    let warning = leak_until_suspected(&mut child, &d);
    let url = format!("http://{}", d.addr);

    // Keep leaking while inspect runs, so the daemon's trend stays trusted.
    let mut leak = || {
        child.command("files 2");
    };
    let out = inspect_while(&["--stuck-after", "0s", "--from", &url, &pid], &mut leak);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.starts_with(&format!("pid {pid} (")), "{shown}");
    let block = report
        .split_once("\nDAEMON    ")
        .map(|(_, b)| b)
        .unwrap_or("");
    assert!(
        block.starts_with(&format!("leakwatch at {url}, target \"leaky\"")),
        "{shown}"
    );
    assert!(block.contains("\n          verdict   "), "{shown}");
    assert!(!block.contains("failing   fds"), "{shown}");
    assert!(
        block.contains("warning   fds: leak suspected: +"),
        "{warning}\n{shown}"
    );
    let fds = block.lines().find(|l| l.contains("series    fds: "));
    assert!(
        fds.is_some_and(|l| l.contains(" of 4096, +") && l.ends_with(", leak suspected")),
        "{shown}"
    );

    let out = inspect_while(
        &["--json", "--stuck-after", "0s", "--from", &url, &pid],
        &mut leak,
    );
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("inspect --json");
    assert_eq!(v["target"]["pid"].to_string(), pid);
    let from = &v["daemon"];
    assert_eq!(from["url"], url.as_str());
    assert!(from.get("error").is_none(), "{from:#}");
    let judged = &from["targets"][0]["judged"];
    let warnings = judged["verdict"]["warnings"].as_array().expect("warnings");
    assert!(
        warnings.iter().any(|w| w
            .as_str()
            .is_some_and(|w| w.starts_with("fds: leak suspected: +"))),
        "{from:#}"
    );
    let fds = judged["series"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["series"] == "fds"));
    let fds = fds.expect("the fds series");
    assert_eq!(fds["leak_suspected"], true, "{fds:#}");
    assert!(
        fds["trend"]["slope_per_s"]
            .as_f64()
            .is_some_and(|s| s > 0.0),
        "{fds:#}"
    );
    assert!(
        fds["seconds_to_exhaustion"]
            .as_f64()
            .is_some_and(|s| s > 0.0),
        "{fds:#}"
    );

    // A path that is not leakwatch's: the 404, in one line.
    let out = inspect(&[
        "--stuck-after",
        "0s",
        "--from",
        &format!("{url}/nope"),
        &pid,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let want = format!("\nDAEMON    {url}/nope/status answered 404: not found");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&want),
        "{}",
        text(&out)
    );

    // Another process: the daemon watches no such pid.
    let other = LeakyChild::spawn(&[]);
    let out = inspect(&[
        "--stuck-after",
        "0s",
        "--from",
        &url,
        &other.pid().to_string(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let want = format!(
        "\nDAEMON    no target of leakwatch at {url} is pid {} (its targets: leaky (pid {pid}))\n",
        other.pid()
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).ends_with(&want),
        "{}",
        text(&out)
    );
}

#[test]
fn an_unreachable_daemon_is_one_line_and_inspect_keeps_its_report_and_exit_code() {
    let child = LeakyChild::spawn(&["--files", "3"]);
    let pid = child.pid().to_string();
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("http://127.0.0.1:{port}");

    let plain = inspect(&["--stuck-after", "0s", &pid]);
    let out = inspect(&["--stuck-after", "0s", "--from", &url, &pid]);
    let shown = text(&out);
    assert_eq!(out.status.code(), plain.status.code(), "{shown}");
    assert!(out.status.success(), "{shown}");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.starts_with(&format!("pid {pid} (")), "{shown}");
    assert!(report.contains("\nFDS       "), "{shown}");
    let (_, block) = report.split_once("\nDAEMON    ").expect("the DAEMON block");
    assert!(
        block.starts_with(&format!(
            "cannot reach leakwatch at {url}: 127.0.0.1:{port}: "
        )),
        "{shown}"
    );
    assert_eq!(block.lines().count(), 1, "one line: {shown}");
    assert!(!shown.contains("panicked"), "{shown}");

    let out = inspect(&["--json", "--stuck-after", "0s", "--from", &url, &pid]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("inspect --json");
    assert_eq!(v["target"]["pid"].to_string(), pid);
    let error = v["daemon"]["error"].as_str().unwrap_or("");
    assert!(error.starts_with("cannot reach leakwatch at "), "{v:#}");

    // A URL that is no http:// one is refused before anything is looked at.
    let out = inspect(&[
        "--stuck-after",
        "0s",
        "--from",
        "https://127.0.0.1:9717",
        &pid,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("https:// is not supported"), "{}", text(&out));
}

#[test]
fn a_status_behind_a_token_needs_token_file() {
    let child = LeakyChild::spawn(&["--files", "3"]);
    let pid = child.pid().to_string();
    let dir = tempfile::tempdir().unwrap();
    let token = config_file(dir.path(), "token", "s3cret-token\n");
    let cfg = config_file(
        dir.path(),
        "token.toml",
        &format!(
            "interval = \"200ms\"\n[http]\ntoken_file = \"{}\"\n[[target]]\nname = \"guarded\"\n\
             pid = {pid}\n",
            token.display()
        ),
    );
    let d = Daemon::start(&["-c", cfg.to_str().unwrap()]);
    let url = format!("http://{}", d.addr);
    // Ready: the target sampled at least once (/readyz is open).
    let deadline = Instant::now() + GENEROUS;
    while d.get("/readyz").0 != 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }

    let out = inspect(&["--stuck-after", "0s", "--from", &url, &pid]);
    assert!(out.status.success(), "{}", text(&out));
    let want = format!(
        "\nDAEMON    {url}/status needs leakwatch's bearer token (401): give --token-file\n"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).ends_with(&want),
        "{}",
        text(&out)
    );

    let token = token.to_str().unwrap();
    let args = [
        "--stuck-after",
        "0s",
        "--from",
        &url,
        "--token-file",
        token,
        &pid,
    ];
    let out = inspect(&args);
    assert!(out.status.success(), "{}", text(&out));
    let want = format!("\nDAEMON    leakwatch at {url}, target \"guarded\"");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&want),
        "{}",
        text(&out)
    );
}
