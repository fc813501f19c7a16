//! /proc races and oddities on real processes: a `comm` of spaces and parentheses (and one
//! that is not UTF-8) set by the process itself, found by the name selectors and read; a
//! target whose fds open and close by the thousand while it is collected hundreds of times;
//! a live target hidden by a `hidepid` proc mount (in a mount namespace of its own).
//!
//! Covered elsewhere: fds vanishing between listing and readlink, a target killed mid-scan,
//! a zombie, a reused pid (`live_collect`, and `daemon::pipeline`'s fixture tests for fresh
//! windows after a pid reuse).

mod common;

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::daemon::config_file;
use common::{count_fds, setpriv_nobody, LeakyChild, BIN};
use leakwatch::collect::{CollectOptions, Collector};
use leakwatch::sample::{Source, TargetState};
use leakwatch::target::SelectorRegex;
use leakwatch::target::{Resolver, Selector};

/// A shell that sets its own comm (as `prctl(PR_SET_NAME)` does) to `comm` and waits on
/// stdin; killed by its pid on drop.
struct Named(Child);

impl Named {
    fn spawn(comm: &[u8]) -> Named {
        let child = Command::new("bash")
            .args([
                "-c",
                "printf %s \"$LW_COMM\" > /proc/$$/comm && read -r -t 60 _",
            ])
            .env("LW_COMM", OsStr::from_bytes(comm))
            .stdin(Stdio::piped())
            .spawn()
            .expect("bash");
        let pid = child.id();
        let want: Vec<u8> = comm.iter().copied().take(15).collect();
        assert!(
            common::eventually(|| std::fs::read(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.strip_suffix(b"\n") == Some(&want[..]))),
            "the comm was not set"
        );
        Named(child)
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.0.stdin.take() {
            let _ = stdin.write_all(b"\n");
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn regex(s: &str) -> SelectorRegex {
    SelectorRegex(regex::Regex::new(s).unwrap())
}

#[test]
fn a_comm_of_spaces_and_parentheses_is_selected_and_read() {
    let comm = ") (x y) (";
    let p = Named::spawn(comm.as_bytes());
    let resolver = Resolver::new("/proc", "/sys/fs/cgroup");
    let by_name = resolver
        .resolve(&Selector::Name(comm.into()))
        .expect("name selects it");
    assert_eq!(by_name.pid, p.pid());
    let by_regex = resolver
        .resolve(&Selector::NameRegex(regex(r"^\) \(x y\) \($")))
        .expect("name_regex selects it");
    assert_eq!(by_regex, by_name);

    let s = Collector::new("/proc", "/sys/fs/cgroup").collect(by_name, &CollectOptions::default());
    assert_eq!(s.state, TargetState::Running);
    let info = s.process.as_ref().expect("process info");
    assert_eq!(info.comm, comm);
    assert_eq!(info.num_threads, 1);
    assert_eq!(s.fds.unwrap().open, Some(count_fds(p.pid()) as u64));

    // The command line end to end: `check --name` finds it and prints its name.
    let out = Command::new(BIN)
        .args(["check", "--name", comm])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains(&p.pid().to_string()), "{text}");
}

/// Regression: a comm that is not UTF-8 made `stat` unreadable ("stream did not contain
/// valid UTF-8"), so such a process could be neither selected nor watched.
#[test]
fn a_comm_that_is_not_utf8_is_still_watched() {
    let p = Named::spawn(b"lw\xff\xfe(odd)");
    let resolver = Resolver::new("/proc", "/sys/fs/cgroup");
    let id = resolver
        .resolve(&Selector::NameRegex(regex(r"^lw\x{fffd}\x{fffd}\(odd\)$")))
        .expect("the lossy name is matched");
    assert_eq!(id.pid, p.pid());
    let s = Collector::new("/proc", "/sys/fs/cgroup").collect(id, &CollectOptions::default());
    assert_eq!(s.state, TargetState::Running, "{:?}", s.unknown);
    assert_eq!(s.process.unwrap().comm, "lw\u{fffd}\u{fffd}(odd)");
    assert!(s.memory.is_some(), "status read too: {:?}", s.unknown);
    let out = Command::new(BIN)
        .args(["inspect", "--stuck-after", "0s", &p.pid().to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn thousands_of_fds_churning_under_hundreds_of_collections() {
    const CHURN: u64 = 1000;
    let mut child = LeakyChild::spawn(&["--files", "10", "--nofile", "8192"]);
    let pid = child.pid();
    let base = count_fds(pid) as u64;
    assert_eq!(child.command(&format!("churn {CHURN}")), "ok");
    let id = common::target(pid);
    let mut collector = Collector::new("/proc", "/sys/fs/cgroup");
    let opts = CollectOptions {
        smaps: false,
        ..CollectOptions::default()
    };
    let (mut lo, mut hi, mut vanished) = (u64::MAX, 0, 0);
    let n = 100;
    let started = std::time::Instant::now();
    for i in 0..n {
        let s = collector.collect(id, &opts);
        assert_eq!(s.state, TargetState::Running, "collection {i}");
        assert!(
            !s.unknown.contains_key(&Source::Fds),
            "collection {i}: {:?}",
            s.unknown
        );
        let fds = s.fds.expect("fds known");
        let open = fds.open.expect("open known");
        assert!(
            (base..=base + CHURN + 8).contains(&open),
            "collection {i}: {open} open, base {base}"
        );
        let types = fds.by_type.expect("types known");
        assert!(types.file <= open);
        if let Some(a) = fds.allocated {
            assert!(a <= 8192, "{a}");
        }
        assert!(s.tcp.is_some(), "collection {i}: {:?}", s.unknown);
        lo = lo.min(open);
        hi = hi.max(open);
        vanished += fds.vanished;
    }
    println!(
        "{n} collections under a churn of {CHURN} fds in {:?}: open {lo}..={hi}, {vanished} vanished mid-scan",
        started.elapsed()
    );
    assert!(hi > lo, "the churn was never seen: {lo}..={hi}");
}

/// `leakwatch SUBCOMMAND -c FILE` as uid 65534 in a mount namespace of its own whose proc
/// (`proc_root`, prepended to `config`) is mounted with hidepid=2: other users' processes
/// are hidden from it. The directory holds the mount point, a copy of the binary any uid
/// may run, and the config.
fn under_hidepid(config: &str, subcommand: &str) -> (tempfile::TempDir, Command) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mnt = dir.path().join("proc");
    std::fs::create_dir(&mnt).unwrap();
    let bin = dir.path().join("leakwatch");
    std::fs::copy(BIN, &bin).unwrap();
    let text = format!("proc_root = \"{}\"\n{config}", mnt.display());
    let cfg = config_file(dir.path(), "hidden.toml", &text);
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let setpriv = setpriv_nobody("");
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg("mount -t proc -o hidepid=2 proc \"$1\" && shift && exec \"$@\"")
        .arg("sh")
        .arg(&mnt)
        .arg(setpriv.get_program())
        .args(setpriv.get_args())
        .arg(&bin)
        .args([subcommand, "-c"])
        .arg(&cfg);
    (dir, cmd)
}

#[test]
fn a_live_target_hidden_by_hidepid_is_unknown_and_says_why() {
    if let Some(why) = common::cannot_drop_privileges() {
        return common::skip::skip("LEAKWATCH_REQUIRE_NAMESPACES", &why);
    }
    let child = LeakyChild::spawn(&["--files", "23", "--pipes", "19"]);
    // By pid, and by a name that only the hidden process has.
    let (_dir, mut cmd) = under_hidepid(
        &format!(
            "[[target]]\nname = \"app\"\npid = {}\n\
             [[target]]\nname = \"by-cmdline\"\ncmdline_regex = \"demo-child --files 23 --pipes 19 \"\n",
            child.pid()
        ),
        "check",
    );
    let out = cmd.output().expect("unshare (util-linux)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if text.contains("mount:") || text.contains("unshare:") {
        panic!("cannot mount proc with hidepid here: {text}");
    }
    assert_eq!(out.status.code(), Some(2), "unknown, not unhealthy: {text}");
    assert!(
        text.contains(&format!("pid {} is alive but", child.pid())) && text.contains("hidepid"),
        "{text}"
    );
    assert!(
        text.contains("is mounted with hidepid=") && text.contains("hides other users' processes"),
        "{text}"
    );
    std::thread::sleep(Duration::from_millis(10));
}

/// Regression: with `on_missing = "fail"` a target hidden by hidepid counted as missing and
/// /healthz answered 503, which could restart a healthy service for leakwatch's own
/// trouble. A target leakwatch cannot see fails open, whatever on_missing says.
#[test]
fn a_hidden_target_fails_open_in_the_daemon_even_with_on_missing_fail() {
    if let Some(why) = common::cannot_drop_privileges() {
        return common::skip::skip("LEAKWATCH_REQUIRE_NAMESPACES", &why);
    }
    let child = LeakyChild::spawn(&["--files", "3"]);
    let (_dir, mut cmd) = under_hidepid(
        &format!(
            "interval = \"100ms\"\n[judge]\non_missing = \"fail\"\n\
             [[target]]\nname = \"app\"\npid = {}\n",
            child.pid()
        ),
        "run",
    );
    let d = common::daemon::Daemon::start_with(&mut cmd);
    assert!(d.wait_ticks(3, Duration::from_secs(20)), "{}", d.log_text());
    let (code, body) = d.get("/healthz");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("hidepid") && body.contains("cannot see the target, failing open"),
        "{body}"
    );
}
