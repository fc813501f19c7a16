//! The systemd units of systemd/ and what they run.
//!
//! - Both leakwatch units carry every hardening directive the design lists, with its value,
//!   and differ only in ExecStart, so a directive cannot be dropped from one silently.
//! - `systemd-analyze verify` accepts every unit (and the CAP_KILL drop-in), pointed at this
//!   build's binary and the scripts in systemd/; `systemd-analyze security` sees the
//!   drop-in add CAP_KILL. (tests/packaging_deb.rs verifies them again as installed.)
//! - leakwatch-unit, the template's ExecStart, picks /etc/leakwatch/UNIT.toml as described.
//! - Under the units' sandbox, approximated with unshare (a private /proc mounted
//!   hidepid=ptraceable, read-only / and cgroupfs, empty /home, /root and /tmp) and setpriv
//!   (another uid, only CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH, no_new_privs), leakwatch
//!   reads everything of a process owned by someone else; without the capabilities that
//!   process is invisible; ProcSubset=pid would lose its start time.
//! - The restart recipe end to end: a real process in a cgroup named like a unit, leakwatch
//!   started by leakwatch-unit with a per-instance file, and leakwatch-restart running
//!   `systemctl restart UNIT` (a stand-in that records its arguments) only on a 503; in
//!   observe mode (`mode = "observe"`) never, until a reload switches it to enforce.
//!
//! - Every system call leakwatch-unit and leakwatch make (strace, through ticks, smaps,
//!   every endpoint, sd_notify, SIGHUP and SIGTERM) is one the units' SystemCallFilter
//!   allows, every socket is of a family RestrictAddressFamilies allows, and no mapping
//!   is made writable and executable (MemoryDenyWriteExecute).
//!
//! What these cannot show without systemd as PID 1: the seccomp filter itself applied, the
//! watchdog and sd_notify through systemd (tests/live_notify.rs covers the protocol).

mod common;
mod unitfiles;

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{count_fd_links, count_fds, setpriv_nobody, LeakyChild, BIN};
use leakwatch::config::Config;
use leakwatch::test_support::http as client;
use unitfiles::{read, service_values, systemd_dir, Entry};

const UNITS: [&str; 2] = ["leakwatch.service", "leakwatch@.service"];
const CAPS: [&str; 2] = ["CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"];

fn set_of(values: &[&str]) -> BTreeSet<String> {
    values
        .iter()
        .flat_map(|v| v.split_whitespace())
        .map(str::to_string)
        .collect()
}

#[test]
fn both_units_carry_every_hardening_directive() {
    let single: [(&str, &str); 19] = [
        ("Type", "notify"),
        ("Restart", "on-failure"),
        ("User", "leakwatch"),
        ("StateDirectory", "leakwatch"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectProc", "ptraceable"),
        ("ProcSubset", "all"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("RestrictNamespaces", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("SystemCallArchitectures", "native"),
    ];
    let default_interval = Config::default().interval;
    for unit in UNITS {
        let e = read(&systemd_dir().join(unit));
        for (key, want) in single {
            assert_eq!(service_values(&e, key), [want], "{unit}: {key}");
        }
        for key in ["CapabilityBoundingSet", "AmbientCapabilities"] {
            assert_eq!(
                set_of(&service_values(&e, key)),
                set_of(&CAPS),
                "{unit}: {key} is exactly CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH (CAP_KILL \
                 only through the signal-actions drop-in)"
            );
        }
        assert_eq!(
            set_of(&service_values(&e, "RestrictAddressFamilies")),
            set_of(&["AF_INET AF_INET6 AF_UNIX AF_NETLINK"]),
            "{unit}"
        );
        let filters = service_values(&e, "SystemCallFilter");
        assert!(filters.contains(&"@system-service"), "{unit}: {filters:?}");
        let watchdog = humantime::parse_duration(service_values(&e, "WatchdogSec")[0])
            .expect("WatchdogSec is a duration");
        assert!(
            watchdog >= 2 * default_interval,
            "{unit}: WatchdogSec {watchdog:?} < 2 x the tick interval {default_interval:?}"
        );
    }
}

#[test]
fn both_units_differ_only_in_exec_start() {
    let service = |unit: &str| -> Vec<Entry> {
        read(&systemd_dir().join(unit))
            .into_iter()
            .filter(|e| e.section == "Service" && e.key != "ExecStart")
            .collect()
    };
    assert_eq!(service(UNITS[0]), service(UNITS[1]));
    let exec = |unit: &str| service_values(&read(&systemd_dir().join(unit)), "ExecStart").join("");
    assert_eq!(
        exec("leakwatch.service"),
        "/usr/bin/leakwatch run -c /etc/leakwatch/leakwatch.toml"
    );
    assert_eq!(
        exec("leakwatch@.service"),
        "/usr/libexec/leakwatch/leakwatch-unit %i"
    );
}

#[test]
fn signal_drop_in_adds_cap_kill_and_nothing_else() {
    let e = read(&systemd_dir().join("signal-actions.conf"));
    let got: Vec<(&str, &str, &str)> = e
        .iter()
        .map(|e| (e.section.as_str(), e.key.as_str(), e.value.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("Service", "CapabilityBoundingSet", "CAP_KILL"),
            ("Service", "AmbientCapabilities", "CAP_KILL"),
        ]
    );
}

/// A directory holding the units with their paths pointed at this build's binary and the
/// scripts in systemd/, as systemd-analyze checks that ExecStart exists.
fn units_for_this_build(dir: &Path) {
    let scripts = format!("{}/", systemd_dir().display());
    for entry in fs::read_dir(systemd_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "service") {
            let text = fs::read_to_string(&path)
                .unwrap()
                .replace("/usr/libexec/leakwatch/", &scripts)
                .replace("/usr/bin/leakwatch", BIN);
            fs::write(dir.join(path.file_name().unwrap()), text).unwrap();
        }
    }
}

#[test]
fn systemd_analyze_verifies_every_unit() {
    if unitfiles::skip_without_systemd_analyze("systemd_analyze_verifies_every_unit") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    units_for_this_build(dir.path());
    for unit in [
        "leakwatch.service",
        "leakwatch@.service",
        "leakwatch@nginx.service",
        "leakwatch-restart@.service",
        "leakwatch-restart@nginx.service",
    ] {
        unitfiles::verify(&dir.path().join(unit)).unwrap();
    }
    // The hardening as systemd reads it: no CAP_KILL, and an exposure systemd calls "OK".
    let template = dir.path().join("leakwatch@.service");
    let (checks, exposure) = unitfiles::security(&template);
    let passes = |name: &str| checks.iter().find(|(n, _)| n == name).map(|(_, s)| *s);
    assert_eq!(passes("CapabilityBoundingSet=~CAP_KILL"), Some(true));
    assert_eq!(passes("MemoryDenyWriteExecute="), Some(true));
    assert_eq!(passes("NoNewPrivileges="), Some(true));
    eprintln!("systemd-analyze security: leakwatch@.service exposure {exposure}");
    assert!(
        exposure < 3.0,
        "exposure {exposure}: hardening went missing"
    );

    // With the drop-in beside it, systemd adds CAP_KILL (capability lines add up).
    let d = dir.path().join("leakwatch@.service.d");
    fs::create_dir(&d).unwrap();
    fs::copy(
        systemd_dir().join("signal-actions.conf"),
        d.join("signal-actions.conf"),
    )
    .unwrap();
    unitfiles::verify(&template).unwrap();
    let (checks, _) = unitfiles::security(&template);
    let kill = checks
        .iter()
        .find(|(n, _)| n == "CapabilityBoundingSet=~CAP_KILL");
    assert_eq!(
        kill.map(|(_, s)| *s),
        Some(false),
        "the drop-in grants CAP_KILL"
    );
    let ptrace = checks
        .iter()
        .find(|(n, _)| n == "CapabilityBoundingSet=~CAP_SYS_PTRACE");
    assert_eq!(
        ptrace.map(|(_, s)| *s),
        Some(false),
        "and keeps CAP_SYS_PTRACE"
    );
}

/// A stand-in for the leakwatch binary: `config ...` runs the real one, anything else
/// records its arguments (one a line) in `args` and exits.
fn recording_leakwatch(dir: &Path) -> (PathBuf, PathBuf) {
    let args = dir.join("args");
    let fake = dir.join("leakwatch");
    fs::write(
        &fake,
        format!(
            "#!/bin/sh\nif [ \"$1\" = config ]; then exec {BIN} \"$@\"; fi\nprintf '%s\\n' \"$@\" > {}\n",
            args.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    (fake, args)
}

/// The arguments leakwatch-unit UNIT passes to leakwatch with `conf` as UNIT.toml.
fn wrapper_args(unit: &str, conf: Option<&str>) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let (fake, args) = recording_leakwatch(dir.path());
    let etc = dir.path().join("etc");
    fs::create_dir(&etc).unwrap();
    if let Some(text) = conf {
        fs::write(etc.join(format!("{unit}.toml")), text).unwrap();
    }
    let st = Command::new(systemd_dir().join("leakwatch-unit"))
        .arg(unit)
        .env("LEAKWATCH", &fake)
        .env("LEAKWATCH_CONFIG_DIR", &etc)
        .status()
        .unwrap();
    assert!(st.success());
    let text = fs::read_to_string(args).unwrap();
    text.lines()
        .map(|l| l.replace(&etc.display().to_string(), "ETC"))
        .collect()
}

#[test]
fn instance_wrapper_uses_the_unit_file_when_there_is_one() {
    assert_eq!(
        wrapper_args("nginx", None),
        ["run", "--systemd-unit", "nginx"],
        "no file: the unit with the defaults"
    );
    assert_eq!(
        wrapper_args(
            "nginx",
            Some("listen = \"127.0.0.1:9718\"\n[judge]\nfail_after = 5\n")
        ),
        ["run", "-c", "ETC/nginx.toml", "--systemd-unit", "nginx"],
        "a file without a target: the file's settings, the unit as target"
    );
    assert_eq!(
        wrapper_args(
            "nginx",
            Some("[[target]]\nname = \"web\"\nsystemd_unit = \"nginx.service\"\n[target.rules.tcp_close_wait]\nmax = 10\n")
        ),
        ["run", "-c", "ETC/nginx.toml"],
        "a file with a target is the whole config (its rules kept)"
    );
    assert_eq!(
        wrapper_args("nginx", Some("interval = \"soon\"\n")),
        ["run", "-c", "ETC/nginx.toml"],
        "a bad file goes to run, which says where the mistake is"
    );
}

/// What the hardened units give leakwatch, approximated: a private mount namespace with a
/// fresh /proc (`hidepid=ptraceable`, plus `proc_opts`), read-only / and cgroupfs, empty
/// /home, /root and /tmp; then uid/gid 65533 with `caps` only and no_new_privs. A program
/// given by absolute path runs from an fd opened before /tmp and /home are hidden.
fn sandboxed(caps: &str, proc_opts: &str) -> Command {
    let script = r#"set -e
caps=$1 proc_opts=$2; shift 2
# The program may live where the sandbox hides (a checkout under /tmp or /root): hold it
# open and run it through its fd.
case $1 in /*) exec 9<"$1"; shift; set -- /proc/self/fd/9 "$@" ;; esac
mount -t proc -o "hidepid=ptraceable$proc_opts" proc /proc
mount -o remount,bind,ro /
awk '$5 ~ "^/sys/fs/cgroup" { print $5 }' /proc/self/mountinfo | while read -r m; do
    mount -o remount,bind,ro "$m"
done
for d in /home /root; do [ -d "$d" ] && mount -t tmpfs -o ro tmpfs "$d"; done
mount -t tmpfs tmpfs /tmp
if [ -n "$caps" ]; then
    set -- --inh-caps="$caps" --ambient-caps="$caps" --bounding-set="-all,$caps" "$@"
else
    set -- --inh-caps=-all --bounding-set=-all "$@"
fi
exec setpriv --reuid=65533 --regid=65533 --clear-groups --no-new-privs "$@"
"#;
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        script,
        "sh",
    ])
    .args([caps, proc_opts]);
    cmd
}

fn sandbox_unavailable() -> Option<String> {
    if let Some(why) = common::cannot_drop_privileges() {
        return Some(why);
    }
    let out = sandboxed("", "").arg("true").output();
    match out {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "cannot build the sandbox (unshare, mount): {}",
            String::from_utf8_lossy(&o.stderr)
        )),
        Err(e) => Some(format!("unshare (util-linux): {e}")),
    }
}

fn inspect_json(mut cmd: Command, pid: i32) -> Result<serde_json::Value, String> {
    let out = cmd
        .args([BIN, "inspect", "--json", "--stuck-after", "1s"])
        .arg(pid.to_string())
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).expect("inspect --json"))
}

#[test]
fn leakwatch_reads_another_users_process_under_the_units_sandbox() {
    if let Some(why) = sandbox_unavailable() {
        return common::skip::skip("LEAKWATCH_REQUIRE_NAMESPACES", &why);
    }
    // The target: uid 65534 (leakwatch runs as 65533), with sockets, a stuck worker, files.
    let mut nobody = setpriv_nobody("");
    nobody.args([BIN, "demo-child", "--files", "5", "--close-wait", "3"]);
    nobody.args(["--recv-threads", "1"]);
    let child = LeakyChild::spawn_with(&mut nobody);
    let pid = child.pid();
    std::thread::sleep(Duration::from_millis(1200)); // the worker sits in recv() for 1 s

    let caps = "+sys_ptrace,+dac_read_search";
    let seen = inspect_json(sandboxed(caps, ""), pid).expect("inspect under the sandbox");
    assert_eq!(seen["process"]["uid"], 65534);
    assert_eq!(
        seen["fds"]["open"],
        count_fds(pid) as u64,
        "{}",
        seen["fds"]
    );
    assert_eq!(
        seen["fds"]["by_type"]["socket"],
        count_fd_links(pid, "socket:") as u64,
        "fd links readable"
    );
    assert_eq!(
        seen["tcp"]["states"]["close_wait"], 3,
        "TCP through the fd links"
    );
    assert_eq!(seen["stuck"]["count"], 1, "task syscall files readable");
    assert!(
        seen["heap"]["estimate_bytes"].as_u64().is_some(),
        "smaps readable"
    );
    assert!(
        seen["cgroup_memory"]["current_bytes"].as_u64().is_some(),
        "cgroup files readable: {}",
        seen["unknown"]
    );
    assert!(seen["process"]["started_unix_ms"].as_u64().is_some());
    for kind in [
        "fds",
        "tcp",
        "threads",
        "heap",
        "smaps_rollup",
        "cgroup_memory",
    ] {
        assert!(
            seen["unknown"].get(kind).is_none(),
            "{kind}: {}",
            seen["unknown"]
        );
    }

    // ProtectProc=ptraceable hides what leakwatch may not ptrace: without the capabilities
    // the target is not there at all.
    let err = inspect_json(sandboxed("", ""), pid).expect_err("hidden without capabilities");
    assert!(
        err.contains("is alive but") && err.contains("hidepid"),
        "hidden, and said so: {err}"
    );

    // ProcSubset=pid would hide /proc/stat, whose btime dates the target's start.
    let subset = inspect_json(sandboxed(caps, ",subset=pid"), pid).expect("inspect");
    assert!(
        subset["process"]["started_unix_ms"].is_null(),
        "{}",
        subset["process"]
    );
    drop(child);
}

/// A cgroup named like a unit (`NAME.service`) in the cgroup2 tree, removed on drop.
struct UnitCgroup {
    parent: PathBuf,
    dir: PathBuf,
}

impl UnitCgroup {
    fn create(name: &str) -> Result<UnitCgroup, String> {
        let root = Path::new("/sys/fs/cgroup");
        let v2 = [root.join("unified"), root.to_path_buf()]
            .into_iter()
            .find(|d| d.join("cgroup.procs").exists())
            .ok_or("no cgroup2 tree")?;
        let parent = v2.join(format!("leakwatch-test-{}", std::process::id()));
        let dir = parent.join(format!("{name}.service"));
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(UnitCgroup { parent, dir })
    }

    fn join(&self, pid: i32) {
        fs::write(self.dir.join("cgroup.procs"), pid.to_string()).unwrap();
    }
}

impl Drop for UnitCgroup {
    fn drop(&mut self) {
        for dir in [&self.dir, &self.parent] {
            for _ in 0..100 {
                if fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// leakwatch started as leakwatch@UNIT.service starts it: through leakwatch-unit.
struct Instance {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Instance {
    fn start(unit: &str, etc: &Path) -> Instance {
        Self::start_with(
            Command::new(systemd_dir().join("leakwatch-unit")),
            unit,
            etc,
        )
    }

    /// `cmd` is leakwatch-unit or a command (strace) that runs it next.
    fn start_with(mut cmd: Command, unit: &str, etc: &Path) -> Instance {
        if cmd.get_program() != systemd_dir().join("leakwatch-unit").as_os_str() {
            cmd.arg(systemd_dir().join("leakwatch-unit"));
        }
        let mut child = cmd
            .arg(unit)
            .env("LEAKWATCH", BIN)
            .env("LEAKWATCH_CONFIG_DIR", etc)
            .env("LEAKWATCH_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line
                    .split_once("listen=")
                    .and_then(|(_, r)| r.split_whitespace().next()?.parse().ok())
                {
                    let _ = tx.send(addr);
                }
                sink.lock().unwrap().push(line);
            }
        });
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(addr) => Instance { child, addr, log },
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "leakwatch-unit did not start leakwatch: {:?}",
                    log.lock().unwrap()
                );
            }
        }
    }

    fn get(&self, path: &str) -> (u16, String) {
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        client::exchange(self.addr, req.as_bytes(), Duration::from_secs(5))
            .unwrap_or((0, String::new()))
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory holding a `systemctl` that appends its arguments to `calls`; the PATH that
/// finds it first. Keep the directory alive while the script runs.
fn recording_systemctl() -> (tempfile::TempDir, std::path::PathBuf, String) {
    let bin = tempfile::tempdir().unwrap();
    let calls = bin.path().join("calls");
    let systemctl = bin.path().join("systemctl");
    fs::write(
        &systemctl,
        format!("#!/bin/sh\necho \"$*\" >> {}\n", calls.display()),
    )
    .unwrap();
    fs::set_permissions(&systemctl, fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap()
    );
    (bin, calls, path)
}

/// `leakwatch-restart --once UNIT` against `listen`, with a `systemctl` that records its
/// arguments: exit code, stdout+stderr, and the recorded systemctl calls.
fn restart_once(unit: &str, listen: &str, target: Option<&str>) -> (i32, String, String) {
    let (_bin, calls, path) = recording_systemctl();
    let mut cmd = Command::new(systemd_dir().join("leakwatch-restart"));
    cmd.args(["--once", unit])
        .env("PATH", path)
        .env("LEAKWATCH_LISTEN", listen);
    if let Some(t) = target {
        cmd.env("LEAKWATCH_TARGET", t);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.code().unwrap_or(-1),
        text,
        fs::read_to_string(calls).unwrap_or_default(),
    )
}

/// `leakwatch-restart UNIT` (the service's loop) for `run_for`, looking every 0.2 s with a
/// 60 s cooldown; the recorded systemctl calls.
fn loop_restarts(unit: &str, listen: &str, run_for: Duration) -> String {
    let (_bin, calls, path) = recording_systemctl();
    let mut script = Command::new(systemd_dir().join("leakwatch-restart"))
        .arg(unit)
        .env("PATH", path)
        .env("LEAKWATCH_LISTEN", listen)
        .env("LEAKWATCH_POLL", "0.2")
        .env("LEAKWATCH_COOLDOWN", "60")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    std::thread::sleep(run_for);
    // The script and its pending `sleep`, by their process group (the script's pid).
    let group = nix::unistd::Pid::from_raw(script.id() as i32);
    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGTERM);
    let _ = script.wait();
    fs::read_to_string(calls).unwrap_or_default()
}

#[test]
fn restart_recipe_restarts_the_unit_only_when_healthz_fails() {
    if !nix::unistd::geteuid().is_root() {
        return common::skip::skip("LEAKWATCH_REQUIRE_ROOT", "needs root to create a cgroup");
    }
    let name = format!("lwapp{}", std::process::id());
    let unit = format!("{name}.service");
    let cgroup = UnitCgroup::create(&name).expect("a cgroup named like a unit");
    let mut child = LeakyChild::spawn(&["--nofile", "64"]);
    cgroup.join(child.pid());

    // The per-instance file without a target: its settings, the unit as target.
    let etc = tempfile::tempdir().unwrap();
    fs::write(
        etc.path().join(format!("{name}.toml")),
        "listen = \"127.0.0.1:0\"\ninterval = \"200ms\"\n[judge]\nfail_after = 2\n",
    )
    .unwrap();
    let lw = Instance::start(&name, etc.path());
    let listen = lw.addr.to_string();
    // /readyz: the unit was resolved to its process and sampled.
    let deadline = Instant::now() + Duration::from_secs(20);
    while lw.get("/readyz").0 != 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let status: serde_json::Value = serde_json::from_str(&lw.get("/status").1).unwrap();
    assert_eq!(
        status["targets"][0]["target"]["pid"],
        child.pid(),
        "leakwatch found the unit's process: {status}"
    );
    let (code, body) = lw.get(&format!("/healthz/{name}"));
    assert_eq!(code, 200, "{body}");

    let (rc, out, calls) = restart_once(&name, &listen, None);
    assert_eq!(
        (rc, calls.as_str()),
        (0, ""),
        "healthy: nothing to do\n{out}"
    );

    // 60 of 64 fds: /healthz fails after fail_after ticks, and the recipe restarts the unit.
    child.command("files 60");
    let deadline = Instant::now() + Duration::from_secs(20);
    while lw.get(&format!("/healthz/{name}")).0 != 503 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, body) = lw.get(&format!("/healthz/{name}"));
    assert_eq!(code, 503, "{body}");
    let (rc, out, calls) = restart_once(&name, &listen, None);
    assert_eq!(rc, 0, "{out}");
    assert_eq!(calls, format!("restart {unit}\n"), "{out}");
    assert!(out.contains("fds: "), "the failing rule is logged: {out}");

    // The service's loop: a look every 0.2 s, but one restart, then the cooldown.
    let calls = loop_restarts(&name, &listen, Duration::from_secs(2));
    assert_eq!(
        calls,
        format!("restart {unit}\n"),
        "one restart per cooldown"
    );

    // An unknown target name (404) or no leakwatch at all restart nothing.
    let (rc, out, calls) = restart_once(&name, &listen, Some("nosuch"));
    assert_eq!((rc, calls.as_str()), (2, ""), "{out}");
    assert!(out.contains("answered 404"), "{out}");
    drop(lw);
    let (rc, out, calls) = restart_once(&name, &listen, None);
    assert_eq!((rc, calls.as_str()), (2, ""), "{out}");
    assert!(out.contains("no answer"), "{out}");
    drop(child);
    drop(cgroup);
}

/// Observe mode (`mode = "observe"` in the per-instance file): /healthz answers 200 for a
/// failing verdict, so the recipe, which restarts only on a 503, restarts nothing; switched
/// to enforce by SIGHUP, the same verdict restarts the unit.
#[test]
fn in_observe_mode_the_restart_recipe_restarts_nothing() {
    if !nix::unistd::geteuid().is_root() {
        return common::skip::skip("LEAKWATCH_REQUIRE_ROOT", "needs root to create a cgroup");
    }
    let name = format!("lwobs{}", std::process::id());
    let unit = format!("{name}.service");
    let cgroup = UnitCgroup::create(&name).expect("a cgroup named like a unit");
    let mut child = LeakyChild::spawn(&["--nofile", "64"]);
    cgroup.join(child.pid());
    let etc = tempfile::tempdir().unwrap();
    let conf = etc.path().join(format!("{name}.toml"));
    let file = |mode: &str| {
        format!("mode = \"{mode}\"\nlisten = \"127.0.0.1:0\"\ninterval = \"200ms\"\n[judge]\nfail_after = 2\n")
    };
    fs::write(&conf, file("observe")).unwrap();
    let lw = Instance::start(&name, etc.path());
    let listen = lw.addr.to_string();

    // 60 of 64 fds: the verdict fails, and observe mode holds it at 200.
    child.command("files 60");
    let would_fail = format!("leakwatch_would_fail{{target=\"{name}\"}} 1");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !lw.get("/metrics").1.contains(&would_fail) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, body) = lw.get(&format!("/healthz/{name}"));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("note: observe: would fail: fds: "), "{body}");
    let (rc, out, calls) = restart_once(&name, &listen, None);
    assert_eq!(
        (rc, calls.as_str()),
        (0, ""),
        "observe: nothing restarted\n{out}"
    );
    let calls = loop_restarts(&name, &listen, Duration::from_secs(1));
    assert_eq!(calls, "", "the service's loop restarts nothing either");

    // `systemctl reload` (SIGHUP) with mode = "enforce": the recipe restarts the unit.
    fs::write(&conf, file("enforce")).unwrap();
    let pid = nix::unistd::Pid::from_raw(lw.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while lw.get(&format!("/healthz/{name}")).0 != 503 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (rc, out, calls) = restart_once(&name, &listen, None);
    assert_eq!(rc, 0, "{out}");
    assert_eq!(calls, format!("restart {unit}\n"), "{out}");
    let log = lw.log.lock().unwrap().join("\n");
    assert!(log.contains("mode observe -> enforce"), "{log}");
    drop(lw);
    drop(child);
    drop(cgroup);
}

/// The system calls a `systemd-analyze syscall-filter` group holds, nested groups expanded;
/// a plain name is itself.
fn syscall_group(group: &str) -> BTreeSet<String> {
    if !group.starts_with('@') {
        return BTreeSet::from([group.to_string()]);
    }
    let out = Command::new("systemd-analyze")
        .args(["syscall-filter", group])
        .output()
        .expect("systemd-analyze syscall-filter");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut calls = BTreeSet::new();
    for line in text.lines().skip(1).map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('@') {
            calls.extend(syscall_group(line));
        } else {
            calls.insert(line.to_string());
        }
    }
    assert!(!calls.is_empty(), "{group}: {text}");
    calls
}

/// What the units' SystemCallFilter lines allow: the first is an allow list, `~` lines deny.
fn allowed_syscalls() -> BTreeSet<String> {
    let e = read(&systemd_dir().join("leakwatch@.service"));
    let mut allowed = BTreeSet::new();
    for filter in service_values(&e, "SystemCallFilter") {
        match filter.strip_prefix('~') {
            Some(deny) => {
                for g in deny.split_whitespace() {
                    for c in syscall_group(g) {
                        allowed.remove(&c);
                    }
                }
            }
            None => {
                for g in filter.split_whitespace() {
                    allowed.extend(syscall_group(g));
                }
            }
        }
    }
    allowed
}

#[test]
fn every_syscall_socket_and_mapping_is_one_the_units_allow() {
    if unitfiles::skip_without_systemd_analyze("every_syscall_socket_and_mapping") {
        return;
    }
    if Command::new("strace").arg("-V").output().is_err() {
        common::skip::skip("LEAKWATCH_REQUIRE_STRACE", "strace is missing");
        return;
    }
    // A target with sockets, a stuck worker and files; leakwatch through leakwatch-unit with
    // a per-instance file, fast ticks, smaps every second, and a notify socket of ours.
    let child = LeakyChild::spawn(&[
        "--files",
        "5",
        "--close-wait",
        "3",
        "--established",
        "2",
        "--recv-threads",
        "1",
    ]);
    let etc = tempfile::tempdir().unwrap();
    let name = "traced";
    fs::write(
        etc.path().join(format!("{name}.toml")),
        format!(
            "listen = \"127.0.0.1:0\"\ninterval = \"200ms\"\nsmaps_every = \"1s\"\n\
             [judge]\nstuck_after = \"1s\"\n[[target]]\nname = \"{name}\"\npid = {}\n",
            child.pid()
        ),
    )
    .unwrap();
    let notify = etc.path().join("notify");
    // Drained as systemd would: a full queue would block leakwatch's sends.
    let notify_sock = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    let notified = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = notified.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = notify_sock.recv(&mut buf) {
            sink.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    });
    let trace = etc.path().join("trace");
    let mut strace = Command::new("strace");
    strace
        .args(["-f", "-qq", "-o"])
        .arg(&trace)
        .env("NOTIFY_SOCKET", &notify)
        .env("WATCHDOG_USEC", "1000000");
    let lw = Instance::start_with(strace, name, etc.path());

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut status = serde_json::Value::Null;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        status = serde_json::from_str(&lw.get("/status").1).unwrap_or_default();
        let heap = &status["targets"][0]["sample"]["heap"];
        if status["ticks_total"].as_u64() >= Some(10) && !heap.is_null() {
            break;
        }
    }
    assert!(
        !status["targets"][0]["sample"]["heap"].is_null(),
        "ten ticks with the heap read: {status}\n{}",
        lw.log.lock().unwrap().join("\n")
    );
    for path in [
        "/healthz",
        "/healthz/traced",
        "/livez",
        "/readyz",
        "/metrics",
        "/status",
    ] {
        assert_eq!(lw.get(path).0, 200, "{path}");
    }
    let notes = notified.lock().unwrap().join("\n");
    assert!(
        notes.contains("READY=1") && notes.contains("WATCHDOG=1"),
        "{notes}"
    );
    // leakwatch is strace's child (leakwatch-unit exec'd it): reload it, then stop it.
    let children =
        fs::read_to_string(format!("/proc/{0}/task/{0}/children", lw.child.id())).unwrap();
    let pid: i32 = children.trim().parse().expect("one child of strace");
    let lw_pid = nix::unistd::Pid::from_raw(pid);
    nix::sys::signal::kill(lw_pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    nix::sys::signal::kill(lw_pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let mut lw = lw;
    let deadline = Instant::now() + Duration::from_secs(20);
    while lw.child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        lw.child.try_wait().unwrap().is_some(),
        "leakwatch stopped on SIGTERM"
    );
    drop(child);

    let text = fs::read_to_string(&trace).unwrap();
    let mut used = BTreeSet::new();
    let mut problems = Vec::new();
    for line in text.lines() {
        // "PID name(args) = ret", "PID name(args <unfinished ...>", "PID <... name resumed>..."
        let Some((_, call)) = line.split_once(' ') else {
            continue;
        };
        let call = call.trim_start();
        let Some((name, args)) = call.split_once('(') else {
            continue;
        };
        if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            continue;
        }
        used.insert(name.to_string());
        if name == "socket" || name == "socketpair" {
            let family = args.split(',').next().unwrap_or("");
            if !["AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"].contains(&family) {
                problems.push(format!("RestrictAddressFamilies: {line}"));
            }
        }
        let wx = args.contains("PROT_WRITE") && args.contains("PROT_EXEC");
        if (name == "mmap" && wx) || (name.ends_with("mprotect") && args.contains("PROT_EXEC")) {
            problems.push(format!("MemoryDenyWriteExecute: {line}"));
        }
    }
    assert!(
        used.contains("openat") && used.contains("accept4"),
        "{used:?}"
    );
    let allowed = allowed_syscalls();
    let outside: Vec<&String> = used.difference(&allowed).collect();
    assert!(outside.is_empty(), "outside SystemCallFilter: {outside:?}");
    assert!(problems.is_empty(), "{problems:#?}");
    eprintln!("{} distinct system calls, all allowed", used.len());
}
