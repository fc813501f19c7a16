//! Actions on a flip, end to end: a real daemon judges a real leaking child, the verdict
//! flips, and the bundle, the signal and the hook happen (or are refused) as configured.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::daemon::{config_file, Daemon};
use common::LeakyChild;
use serde_json::Value;

/// Ticks of 100 ms, rules failing on their second failing tick.
const FAST: &str = r#"
interval = "100ms"
[judge]
window = "10s"
min_samples = 10
min_span = "1s"
warmup = "0s"
fail_after = 2
recover_after = 1
stuck_after = "1s"
"#;

/// Poll (bounded: ~40 s, generous for a loaded machine whose ticks slow down) until `f`
/// holds.
fn until(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..800 {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn actions(d: &Daemon) -> Value {
    d.status()["targets"][0]["actions"].clone()
}

/// Wait for the firing to finish, and return the `/status` snapshot it finished in.
fn finished_firing(d: &Daemon, results: usize) -> Value {
    let mut last = Value::Null;
    let done = until(|| {
        last = actions(d);
        let f = &last["last"];
        f["running"] == false && f["results"].as_array().is_some_and(|r| r.len() == results)
    });
    assert!(done, "the actions did not finish: {last:#}");
    last
}

fn result_of<'a>(a: &'a Value, action: &str) -> &'a Value {
    a["last"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == action)
        .unwrap_or_else(|| panic!("no {action} result: {a:#}"))
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn a_flip_writes_one_whole_bundle_signals_the_child_and_runs_the_hook() {
    let tmp = tempfile::tempdir().unwrap();
    let bundles = tmp.path().join("bundles");
    let signal_log = tmp.path().join("signals.log");
    let hook_out = tmp.path().join("hook.out");
    let mut child = LeakyChild::spawn(&[
        "--recv-threads",
        "2",
        "--signal-log",
        signal_log.to_str().unwrap(),
    ]);
    let listener = child.ready.listeners[0].to_string();
    let hook = format!(
        "printf '%s\\n' \"target=$LEAKWATCH_TARGET\" \"pid=$LEAKWATCH_PID\" \
         \"bundle=$LEAKWATCH_BUNDLE\" \"rules=$LEAKWATCH_RULES\" > {}; echo paged the on-call",
        hook_out.display()
    );
    let cfg = config_file(
        tmp.path(),
        "actions.toml",
        &format!(
            "{FAST}\n[actions.bundle]\ndir = {bundles:?}\n[actions.signal]\nsignal = \"SIGUSR2\"\n\
             grace = \"2s\"\n[actions.exec]\nargv = [\"sh\", \"-c\", {hook:?}]\ntimeout = \"10s\"\n\
             [[target]]\nname = \"leaky\"\npid = {}\n[target.rules.tcp_close_wait]\nmax = 20\n",
            child.pid()
        ),
    );
    let d = Daemon::start(&["-c", cfg.to_str().unwrap()]);
    // The two recv() workers are stuck once they sat in their call for stuck_after.
    let stuck = until(|| d.status()["targets"][0]["sample"]["stuck"]["count"] == 2);
    assert!(stuck, "the workers were never stuck: {}", d.status());
    assert_eq!(d.get("/healthz").0, 200);
    assert!(entries(&bundles).is_empty(), "nothing before the flip");

    // The leak: 30 sockets the peer closed, against max = 20.
    assert_eq!(child.command("close-wait 30"), "ok");
    let mut flip = Value::Null;
    assert!(until(|| {
        flip = d.status();
        !flip["targets"][0]["actions"]["last"].is_null()
    }));
    // The snapshot of the flip: signal_grace holds /healthz at 200, saying why.
    let verdict = &flip["targets"][0]["judged"]["verdict"];
    assert_eq!(verdict["healthy"], true, "{verdict:#}");
    let notes = verdict["notes"].to_string();
    assert!(notes.contains("signal_grace"), "{notes}");
    assert!(notes.contains("would fail: tcp_close_wait"), "{notes}");

    let a = finished_firing(&d, 3);
    for action in ["bundle", "signal", "exec"] {
        assert_eq!(result_of(&a, action)["result"], "ok", "{a:#}");
    }
    // After the grace, /healthz fails.
    assert!(
        until(|| d.get("/healthz").0 == 503),
        "never 503 after the grace"
    );

    // Exactly one bundle, whole: no temp dir beside it, every file in it.
    std::thread::sleep(Duration::from_millis(500)); // more unhealthy ticks: no second bundle
    let names = entries(&bundles);
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(
        names[0].starts_with("leaky-") && !names[0].starts_with('.'),
        "{names:?}"
    );
    let b = bundles.join(&names[0]);
    let files = entries(&b);
    for f in [
        "README.txt",
        "verdict.json",
        "samples.csv",
        "fds.txt",
        "sockets.txt",
        "threads.txt",
        "stalled.txt",
        "status",
        "limits",
        "smaps_rollup",
        "memory.stat",
    ] {
        assert!(files.contains(&f.to_string()), "{f} missing: {files:?}");
    }

    // stalled.txt: nothing stalled (the child's sockets hold no data to send); the age of
    // its CLOSE_WAIT sockets, from the daemon's ticks.
    let stalled = read(&b.join("stalled.txt"));
    assert!(
        stalled.starts_with("0 sockets with data queued"),
        "{stalled}"
    );
    assert!(stalled.contains("oldest CLOSE_WAIT "), "{stalled}");

    // sockets.txt: the real CLOSE_WAIT peer at the top, every CLOSE_WAIT socket listed.
    let sockets = read(&b.join("sockets.txt"));
    let truth = common::ss_states(child.pid());
    assert_eq!(truth.get("close_wait"), Some(&30));
    let listed = sockets
        .lines()
        .filter(|l| l.starts_with("close_wait "))
        .count();
    assert_eq!(listed, 30, "{sockets}");
    let by_peer = sockets
        .lines()
        .skip_while(|l| !l.starts_with("CLOSE_WAIT by peer"))
        .nth(1)
        .unwrap_or("");
    assert!(by_peer.contains(&listener), "{sockets}");
    assert_eq!(by_peer.split_whitespace().nth(1), Some("30"), "{by_peer}");
    let first_row = sockets
        .lines()
        .find(|l| l.starts_with("close_wait ") || l.starts_with("established "));
    assert!(
        first_row.unwrap().starts_with("close_wait"),
        "CLOSE_WAIT first"
    );

    // threads.txt: the stuck recv() workers, named, with their socket and peer.
    let threads = read(&b.join("threads.txt"));
    let stuck_block: Vec<&str> = threads
        .lines()
        .skip_while(|l| *l != "STUCK")
        .take_while(|l| !l.is_empty())
        .collect();
    for (i, tid) in child.ready.recv_tids.iter().enumerate() {
        let line = stuck_block
            .iter()
            .find(|l| l.contains(&format!("tid {tid} recv-worker-{i} recvfrom")))
            .unwrap_or_else(|| panic!("worker {tid} not stuck: {threads}"));
        assert!(line.contains(&listener), "{line}");
    }

    let verdict: Value = serde_json::from_str(&read(&b.join("verdict.json"))).unwrap();
    assert_eq!(verdict["pid"], child.pid());
    assert!(verdict["failing"][0]
        .as_str()
        .unwrap()
        .starts_with("tcp_close_wait: 30"));
    let csv = read(&b.join("samples.csv"));
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "tcp_close_wait").unwrap();
    let last: Vec<&str> = csv.lines().last().unwrap().split(',').collect();
    assert_eq!(last[col], "30", "{csv}");
    // The window: from before the leak up to the flip.
    let first: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(first[col], "0", "the window's samples: {csv}");
    let readme = read(&b.join("README.txt"));
    assert!(
        readme.contains("CLOSE_WAIT") && readme.contains(&listener),
        "{readme}"
    );
    assert!(readme.contains("recv-worker-"), "{readme}");

    // The signal reached the child; the hook got the verdict and the bundle's path.
    assert!(until(
        || std::fs::read_to_string(&signal_log).is_ok_and(|s| s == "SIGUSR2\n")
    ));
    let env = read(&hook_out);
    assert!(env.contains("target=leaky\n"), "{env}");
    assert!(env.contains(&format!("pid={}\n", child.pid())), "{env}");
    assert!(env.contains(&format!("bundle={}\n", b.display())), "{env}");
    assert!(env.contains("rules=tcp_close_wait: 30 (> max 20)"), "{env}");
    let (_, metrics) = d.get("/metrics");
    for action in ["bundle", "signal", "exec"] {
        let line = format!(
            "leakwatch_actions_total{{action=\"{action}\",result=\"ok\",target=\"leaky\"}} 1"
        );
        assert!(metrics.contains(&line), "{line}\n{metrics}");
    }
    assert!(
        d.log_text().contains("hook: paged the on-call"),
        "the hook's output is logged"
    );
}

/// `/status` actions of the target named `name`.
fn actions_of(d: &Daemon, name: &str) -> Value {
    let s = d.status();
    s["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap()["actions"]
        .clone()
}

#[test]
fn cooldown_and_hourly_cap_hold_across_repeated_flips_and_retention_keeps_one() {
    // Two children flipped together three times: "cool" has a cooldown of an hour, "capped"
    // none but max_per_hour = 2 (each through its own [target.actions]). No timing matters.
    let tmp = tempfile::tempdir().unwrap();
    let bundles = tmp.path().join("bundles");
    let mut cool = LeakyChild::spawn(&[]);
    let mut capped = LeakyChild::spawn(&[]);
    let target = |name: &str, pid: i32, actions: &str| {
        format!(
            "[[target]]\nname = \"{name}\"\npid = {pid}\nfail_after = 1\n\
             [target.rules.fds]\nmax = {}\n[target.actions]\n{actions}\n",
            common::count_fds(pid) + 10
        )
    };
    let cfg = config_file(
        tmp.path(),
        "flips.toml",
        &format!(
            "{FAST}\n[actions.bundle]\ndir = {bundles:?}\nkeep = 1\n{}{}",
            target("cool", cool.pid(), "cooldown = \"1h\"\nmax_per_hour = 10"),
            target(
                "capped",
                capped.pid(),
                "cooldown = \"0s\"\nmax_per_hour = 2"
            ),
        ),
    );
    let d = Daemon::start(&["-c", cfg.to_str().unwrap()]);
    assert!(d.wait_ticks(2, Duration::from_secs(30)));
    let mut seen: Vec<(String, String)> = Vec::new();
    for _ in 0..3 {
        let before: Vec<Value> = ["cool", "capped"]
            .iter()
            .map(|n| actions_of(&d, n)["last"]["at_unix_ms"].clone())
            .collect();
        for child in [&mut cool, &mut capped] {
            assert_eq!(child.command("files 20"), "ok");
        }
        for (i, name) in ["cool", "capped"].iter().enumerate() {
            let mut a = Value::Null;
            let done = until(|| {
                a = actions_of(&d, name);
                let f = &a["last"];
                f["at_unix_ms"] != before[i]
                    && f["running"] == false
                    && f["results"].as_array().is_some_and(|r| r.len() == 1)
            });
            assert!(done, "{name}: {a:#}\n{}", d.log_text());
            let r = &a["last"]["results"][0];
            let detail = r["detail"].as_str().unwrap().to_string();
            seen.push((format!("{name} {}", r["result"].as_str().unwrap()), detail));
        }
        for child in [&mut cool, &mut capped] {
            assert_eq!(child.command("close-files 20"), "ok");
        }
        // Both judged healthy again (not /healthz: a stale snapshot also answers 200).
        let healthy = until(|| {
            let s = d.status();
            s["targets"]
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t["judged"]["verdict"]["healthy"] == true)
        });
        assert!(healthy, "never healthy again: {:#}", d.status());
    }
    let results: Vec<&str> = seen.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(
        results,
        [
            "cool ok",
            "capped ok",
            "cool skipped",
            "capped ok",
            "cool skipped",
            "capped skipped"
        ],
        "{seen:#?}"
    );
    assert!(
        seen[2].1.starts_with("cooldown: the last actions fired"),
        "{seen:#?}"
    );
    assert!(seen[4].1.starts_with("cooldown"), "{seen:#?}");
    assert!(seen[5].1.starts_with("hourly cap: 2 firings"), "{seen:#?}");
    // keep = 1: "capped"'s second bundle replaced its first; "cool" keeps its one.
    let names = entries(&bundles);
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(seen[3].1.contains(&names[0]), "{seen:#?} vs {names:?}");
    assert!(names[1].starts_with("cool-"), "{names:?}");
    let (_, metrics) = d.get("/metrics");
    for (name, result, n) in [
        ("cool", "ok", 1),
        ("cool", "skipped", 2),
        ("capped", "ok", 2),
        ("capped", "skipped", 1),
    ] {
        let line = format!(
            "leakwatch_actions_total{{action=\"bundle\",result=\"{result}\",target=\"{name}\"}} {n}"
        );
        assert!(metrics.contains(&line), "{line}\n{metrics}");
    }
}

#[test]
fn a_target_that_exited_gets_no_signal_and_the_refusal_is_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let hook_out = tmp.path().join("hook.out");
    let mut child = LeakyChild::spawn(&[]);
    let pid = child.pid();
    let cfg = config_file(
        tmp.path(),
        "gone.toml",
        &format!(
            "{FAST}\non_missing = \"fail\"\n[actions.bundle]\ndir = {:?}\n\
             [actions.signal]\nsignal = \"SIGUSR2\"\n\
             [actions.exec]\nargv = [\"sh\", \"-c\", \"echo pid=$LEAKWATCH_PID > {}\"]\n\
             [[target]]\nname = \"gone\"\npid = {pid}\n",
            tmp.path().join("bundles"),
            hook_out.display()
        ),
    );
    let d = Daemon::start(&["-c", cfg.to_str().unwrap()]);
    assert!(d.wait_ticks(2, Duration::from_secs(30)));
    assert_eq!(d.get("/healthz").0, 200);
    // The child exits and is reaped: its pid is free (and may go to anyone).
    child.close_stdin();
    child.child.wait().unwrap();
    let a = finished_firing(&d, 3);
    let signal = result_of(&a, "signal");
    assert_eq!(signal["result"], "skipped", "{a:#}");
    let why = signal["detail"].as_str().unwrap();
    assert!(
        why.contains(&format!("pid {pid}"))
            && (why.contains("exited") || why.contains("another process")),
        "{why}"
    );
    assert!(
        why.contains("no signal sent") || why.contains("none sent"),
        "{why}"
    );
    assert_eq!(
        result_of(&a, "bundle")["result"],
        "skipped",
        "no process to capture"
    );
    // The hook still runs (on_missing = "fail" made the flip): it is told the old pid.
    assert_eq!(result_of(&a, "exec")["result"], "ok");
    assert_eq!(read(&hook_out), format!("pid={pid}\n"));
    assert!(
        until(|| d.get("/healthz").0 == 503),
        "on_missing = fail: 503"
    );
    let (_, metrics) = d.get("/metrics");
    let line = "leakwatch_actions_total{action=\"signal\",result=\"skipped\",target=\"gone\"} 1";
    assert!(metrics.contains(line), "{metrics}");
}

/// `leakwatch run` in a mount namespace of its own where `dir` is a tmpfs mounted with
/// `opts`; `Err` (with the reason) when this machine cannot do that (not root, or no
/// `unshare -m`); CI sets LEAKWATCH_REQUIRE_NAMESPACES=1 to make that a failure.
fn daemon_over_tmpfs(dir: &Path, opts: &str, cfg: &Path) -> Result<Daemon, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("not root: cannot mount a tmpfs".into());
    }
    let probe = Command::new("unshare")
        .args(["-m", "--propagation", "private", "true"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        return Err("unshare -m does not work here".into());
    }
    let script = format!(
        "mount -t tmpfs -o {opts} leakwatch-test {} && exec \"$0\" \"$@\"",
        dir.display()
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c", &script])
        .arg(common::BIN)
        .args(["run", "-c", cfg.to_str().unwrap()]);
    Ok(Daemon::start_with(&mut cmd))
}

/// A flip against a bundle dir that cannot take the bundle: the error is in `/status`, the
/// daemon keeps serving, and nothing half-written is left.
fn bundle_dir_error(opts: &str, files: u32, expect: &str) -> Option<()> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bundles");
    std::fs::create_dir(&dir).unwrap();
    let mut child = LeakyChild::spawn(&["--nofile", "4096", "--files", &files.to_string()]);
    let cfg = config_file(
        tmp.path(),
        "dir.toml",
        &format!(
            "{FAST}\n[actions.bundle]\ndir = {dir:?}\n[[target]]\nname = \"app\"\npid = {}\n\
             [target.rules.tcp_close_wait]\nmax = 2\n",
            child.pid()
        ),
    );
    let d = match daemon_over_tmpfs(&dir, opts, &cfg) {
        Ok(d) => d,
        Err(why) => {
            common::skip::skip("LEAKWATCH_REQUIRE_NAMESPACES", &why.to_string());
            return None;
        }
    };
    assert!(d.wait_ticks(2, Duration::from_secs(30)));
    assert_eq!(child.command("close-wait 5"), "ok");
    let a = finished_firing(&d, 1);
    let bundle = result_of(&a, "bundle");
    assert_eq!(bundle["result"], "failed", "{a:#}");
    let want = format!("bundle dir {} is {expect}", dir.display());
    assert!(
        bundle["detail"].as_str().unwrap().starts_with(&want),
        "{a:#}"
    );
    assert!(
        a["last_error"].as_str().unwrap().starts_with(&want),
        "{a:#}"
    );
    // Still serving, and saying the truth about the target.
    // (Eventually: a tick slowed by a loaded machine makes a snapshot briefly stale.)
    assert!(until(|| d.get("/livez").0 == 200));
    assert!(until(|| d.get("/healthz").0 == 503));
    // Nothing left in the daemon's view of the dir (its mount namespace).
    let inside = PathBuf::from(format!("/proc/{}/root{}", d.pid(), dir.display()));
    assert_eq!(
        entries(&inside),
        Vec::<String>::new(),
        "a half-written bundle was left"
    );
    let (_, metrics) = d.get("/metrics");
    let line = "leakwatch_actions_total{action=\"bundle\",result=\"failed\",target=\"app\"} 1";
    assert!(metrics.contains(line), "{metrics}");
    Some(())
}

#[test]
fn a_read_only_bundle_dir_is_an_error_in_status_not_a_crash() {
    // A real read-only filesystem (EROFS): chmod would not stop root.
    bundle_dir_error("ro,size=1m", 0, "read-only");
}

#[test]
fn a_full_bundle_dir_is_an_error_in_status_not_a_crash() {
    // A 32 KiB tmpfs and a child with 2,000 fds: fds.txt alone needs ~90 KiB.
    bundle_dir_error("size=32k", 2000, "full");
}

fn inspect(args: &[&str]) -> Output {
    Command::new(common::BIN)
        .arg("inspect")
        .args(args)
        .output()
        .expect("run leakwatch inspect")
}

#[test]
fn inspect_bundle_caps_a_child_with_thousands_of_fds_with_a_note() {
    let tmp = tempfile::tempdir().unwrap();
    let child = LeakyChild::spawn(&["--nofile", "4096", "--files", "3000", "--close-wait", "5"]);
    let dir = tmp.path().join("b");
    let out = inspect(&[
        &child.pid().to_string(),
        "--stuck-after",
        "0s",
        "--bundle",
        dir.to_str().unwrap(),
        "--bundle-max-bytes",
        "64KiB",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names = entries(&dir);
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with(&format!("pid-{}-", child.pid())));
    let b = dir.join(&names[0]);
    let total: u64 = std::fs::read_dir(&b)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(total <= 64 * 1024, "{total} bytes");
    let fds = read(&b.join("fds.txt"));
    let real = common::count_fds(child.pid());
    assert!(real > 3000);
    assert!(
        fds.contains(&format!("# {real} fds:")),
        "the count is whole even when cut"
    );
    let note = fds.lines().last().unwrap();
    assert!(
        note.starts_with("[truncated: ") && note.ends_with("max_bytes = 64.0 KiB]"),
        "{note}"
    );
    let listed = fds
        .lines()
        .filter(|l| {
            l.trim_start()
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
        })
        .count();
    assert!(listed < real && listed > 100, "{listed} of {real} listed");
    // The sockets, listed before the fds, are whole.
    let sockets = read(&b.join("sockets.txt"));
    assert_eq!(
        sockets
            .lines()
            .filter(|l| l.starts_with("close_wait "))
            .count(),
        5
    );
    let readme = read(&b.join("README.txt"));
    assert!(readme.contains("truncated fds.txt: "), "{readme}");
    assert!(readme.contains("on demand"), "{readme}");
    assert!(String::from_utf8_lossy(&out.stderr).contains(&b.display().to_string()));
}

#[test]
fn check_never_fires_the_actions_of_its_config() {
    let tmp = tempfile::tempdir().unwrap();
    let bundles = tmp.path().join("bundles");
    let child = LeakyChild::spawn(&["--close-wait", "5"]);
    let cfg = config_file(
        tmp.path(),
        "check.toml",
        &format!(
            "[actions.bundle]\ndir = {bundles:?}\n[[target]]\npid = {}\n\
             [target.rules.tcp_close_wait]\nmax = 2\n",
            child.pid()
        ),
    );
    let out = Command::new(common::BIN)
        // Ticks for a second: time enough for an action thread, were one started.
        .args([
            "check",
            "-c",
            cfg.to_str().unwrap(),
            "--for",
            "1s",
            "--interval",
            "100ms",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!bundles.exists(), "leakwatch check wrote a bundle");
}

/// Start `cmd` so that it gets `pid`: set the pid namespace's last pid to `pid - 1` and
/// spawn, retrying when another process on the machine took the number first. `None` when
/// that cannot be done here (not root, or `ns_last_pid` is not writable).
fn spawn_with_pid(pid: i32, mut cmd: impl FnMut() -> LeakyChild) -> Option<LeakyChild> {
    for _ in 0..50 {
        if std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).is_err() {
            return None;
        }
        let child = cmd();
        if child.pid() == pid {
            return Some(child);
        }
        drop(child); // killed and reaped by its pid; try again
    }
    None
}

#[test]
fn a_pid_reused_by_another_process_gets_no_signal() {
    // The target: identified, then gone (killed and reaped).
    let first = LeakyChild::spawn(&[]);
    let target = common::target(first.pid());
    drop(first);
    // Start times count clock ticks (10 ms): a process started within the same tick on
    // the same pid would be indistinguishable, so let one pass. (Outside a test, a pid
    // comes round again only after pid_max others, never within 10 ms.)
    std::thread::sleep(Duration::from_millis(50));
    // Another process takes its pid, and would log any SIGUSR2 it got.
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("signals.log");
    let arg = log.to_str().unwrap().to_string();
    let Some(reuser) = spawn_with_pid(target.pid, || LeakyChild::spawn(&["--signal-log", &arg]))
    else {
        common::skip::skip(
            "LEAKWATCH_REQUIRE_NAMESPACES",
            "cannot reuse a pid here (ns_last_pid: needs root)",
        );
        return;
    };
    assert_ne!(common::target(reuser.pid()), target, "a new start time");
    let err = leakwatch::actions::signal::send(Path::new("/proc"), target, libc::SIGUSR2)
        .expect_err("the reused pid must not be signalled");
    assert!(err.refused, "{err:?}");
    assert!(err.message.contains("another process"), "{err:?}");
    // The process holding the pid got nothing; the same call on its own identity works.
    std::thread::sleep(Duration::from_millis(200));
    assert!(!log.exists(), "the reusing process was signalled");
    leakwatch::actions::signal::send(
        Path::new("/proc"),
        common::target(reuser.pid()),
        libc::SIGUSR2,
    )
    .unwrap();
    assert!(until(
        || std::fs::read_to_string(&log).is_ok_and(|s| s == "SIGUSR2\n")
    ));
}
