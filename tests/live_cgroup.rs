//! Live: a real child in a real cgroup v1 memory cgroup (256 MiB limit) and pids cgroup,
//! grown to 64 MiB, read by `collect_cgroup` and checked against the cgroup files as this
//! test reads them itself.
//!
//! Needs root and a v1 memory controller (a v1 or hybrid host); elsewhere it says why it
//! skips. The child joins the cgroups *before* it allocates: cgroup v1 no longer moves
//! charges with a migrating task (`memory.move_charge_at_immigrate` is rejected on 6.x), so
//! memory allocated before a move would stay charged to the old cgroup.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::cgroup::own_v1_path;
use common::{LeakyChild, BIN};
use leakwatch::collect::cgroup::collect_cgroup;
use leakwatch::sample::{CgroupDir, CgroupVersion, Limit};

const MIB: u64 = 1 << 20;
const LIMIT: u64 = 256 * MIB;
/// Drift allowed between this test's reads and leakwatch's (page cache, kernel objects).
const TOLERANCE: u64 = 2 * MIB;
/// Fails instead of skipping when this test cannot make a memory or pids cgroup of its own.
const REQUIRE_LIMITS: &str = "LEAKWATCH_REQUIRE_CGROUP_LIMITS";
/// Fails instead of skipping on a host with no v1 memory or pids hierarchy: a pure v2 host
/// lacks it by design, so only a v1 or hybrid host can require it.
const REQUIRE_V1: &str = "LEAKWATCH_REQUIRE_CGROUP_V1";

/// Kills the child and removes the cgroups, also when an assertion fails.
struct Cleanup {
    child: Option<LeakyChild>,
    dirs: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // LeakyChild's own drop kills and reaps it; an empty cgroup can then be removed.
        drop(self.child.take());
        for dir in self.dirs.iter().rev() {
            for _ in 0..100 {
                if fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn read_u64(path: &Path) -> u64 {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{}: {text:?}: {e}", path.display()))
}

fn stat_key(dir: &Path, key: &str) -> u64 {
    let text = fs::read_to_string(dir.join("memory.stat")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in memory.stat"))
}

fn close(a: u64, b: u64) -> bool {
    a.abs_diff(b) <= TOLERANCE
}

#[test]
fn v1_memory_cgroup_of_a_growing_child() {
    if !nix::unistd::geteuid().is_root() {
        return common::skip::skip(REQUIRE_LIMITS, "creating cgroups needs root");
    }
    let root = Path::new("/sys/fs/cgroup");
    let Some(own_memory) = own_v1_path("memory") else {
        let why = "no cgroup v1 memory controller here (a pure v2 host)";
        return common::skip::skip(REQUIRE_V1, why);
    };
    let name = format!("leakwatch-test-{}", std::process::id());
    let mem_dir = root
        .join("memory")
        .join(own_memory.trim_start_matches('/'))
        .join(&name);
    let mut cleanup = Cleanup {
        child: None,
        dirs: Vec::new(),
    };
    if let Err(e) = fs::create_dir(&mem_dir) {
        let why = format!("cannot create {}: {e}", mem_dir.display());
        return common::skip::skip(REQUIRE_LIMITS, &why);
    }
    cleanup.dirs.push(mem_dir.clone());
    fs::write(mem_dir.join("memory.limit_in_bytes"), LIMIT.to_string()).unwrap();

    // A pids cgroup of its own, so pids.current counts the child's tasks and nothing else
    // (the root pids cgroup has no pids.current).
    let pids_dir = own_v1_path("pids").map(|p| {
        let dir = root
            .join("pids")
            .join(p.trim_start_matches('/'))
            .join(&name);
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        cleanup.dirs.push(dir.clone());
        dir
    });

    // Join the cgroups, write 8 MiB of page cache (inactive file pages charged to the
    // cgroup, so the working set differs from the usage), then exec the child, which
    // allocates 32 MiB at start. The file lives on a disk filesystem: tmpfs pages would be
    // shmem, not file cache.
    let cache_dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let join = r#"echo $$ > "$1" && { [ -z "$2" ] || echo $$ > "$2"; } &&
        head -c 8388608 /dev/zero > "$3" && shift 3 && exec "$@""#;
    let pids_procs = pids_dir
        .as_ref()
        .map(|d| d.join("cgroup.procs").display().to_string())
        .unwrap_or_default();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", join, "sh"])
        .arg(mem_dir.join("cgroup.procs"))
        .arg(&pids_procs)
        .arg(cache_dir.path().join("page-cache"))
        .args([BIN, "demo-child", "--grow-mib", "32"]);
    let child = cleanup.child.insert(LeakyChild::spawn_with(&mut cmd));
    let pid = child.pid();
    let answer = child.command("grow 32");
    assert_eq!(answer, "ok", "grow 32");

    let procs = fs::read_to_string(mem_dir.join("cgroup.procs")).unwrap();
    assert_eq!(procs.trim(), pid.to_string(), "the child is in the cgroup");

    let usage_before = read_u64(&mem_dir.join("memory.usage_in_bytes"));
    let inactive_before = stat_key(&mem_dir, "total_inactive_file");
    let tasks_before = fs::read_dir(format!("/proc/{pid}/task")).unwrap().count() as u64;
    let got = collect_cgroup(Path::new("/proc"), root, pid);
    let usage_after = read_u64(&mem_dir.join("memory.usage_in_bytes"));
    let inactive_after = stat_key(&mem_dir, "total_inactive_file");
    let failcnt = read_u64(&mem_dir.join("memory.failcnt"));

    let m = got.memory.expect("cgroup memory");
    assert_eq!(m.version, CgroupVersion::V1);
    assert_eq!(
        m.path,
        format!("{}/{name}", own_memory.trim_end_matches('/'))
    );
    assert_eq!(
        m.source,
        CgroupDir {
            dir: mem_dir.clone(),
            via_target_root: false
        }
    );
    assert_eq!(m.max, Some(Limit::Limited(LIMIT)));
    assert_eq!(m.high, None);
    assert_eq!(m.sock_bytes, None);

    let current = m.current_bytes.expect("current");
    assert!(current >= 64 * MIB, "current {current} < 64 MiB");
    let (lo, hi) = (usage_before.min(usage_after), usage_before.max(usage_after));
    assert!(
        current + TOLERANCE >= lo && current <= hi + TOLERANCE,
        "current {current} vs memory.usage_in_bytes {usage_before}..{usage_after}"
    );

    let inactive = m.inactive_file_bytes.expect("inactive_file");
    assert!(
        close(inactive, inactive_before) || close(inactive, inactive_after),
        "inactive_file {inactive} vs total_inactive_file {inactive_before}/{inactive_after}"
    );
    // The working set is current minus inactive file pages of the same tick ...
    assert_eq!(m.working_set_bytes, Some(current - inactive));
    assert!(
        inactive >= 4 * MIB,
        "the 8 MiB file's pages: inactive_file {inactive}"
    );
    // ... and agrees with the same computation on this test's own reads.
    let ws = current - inactive;
    assert!(
        close(ws, usage_before.saturating_sub(inactive_before))
            || close(ws, usage_after.saturating_sub(inactive_after)),
        "working set {ws} vs usage - total_inactive_file read by the test"
    );
    // 64 MiB of touched heap: anonymous memory, all of it in the working set.
    assert!(m.anon_bytes.expect("anon") >= 64 * MIB, "{m:?}");
    assert!(ws >= 64 * MIB, "working set {ws}");

    let events = m.events.expect("failcnt / oom_control");
    assert_eq!(events.max, Some(failcnt));
    assert_eq!(events.oom_kill, Some(0));

    // Hybrid hosts: memory.pressure comes from the unified tree when it has the file.
    let unified_pressure = fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_string))
        .map(|p| {
            root.join("unified")
                .join(p.trim_start_matches('/'))
                .join("memory.pressure")
        });
    if let Some(file) = unified_pressure.filter(|f| f.exists()) {
        assert!(
            m.pressure.is_some(),
            "{} exists but was not read",
            file.display()
        );
    }

    let p = got.pids.expect("cgroup pids");
    assert_eq!(p.version, CgroupVersion::V1);
    match &pids_dir {
        Some(dir) => {
            assert_eq!(p.source.dir, *dir);
            let tasks_after = fs::read_dir(format!("/proc/{pid}/task")).unwrap().count() as u64;
            assert_eq!(tasks_before, tasks_after, "the child's threads changed");
            assert_eq!(
                p.current,
                Some(tasks_before),
                "pids.current = the child's tasks"
            );
            assert_eq!(p.max, Some(Limit::Unlimited));
        }
        None => eprintln!("no v1 pids controller: pids not checked"),
    }
}

/// The `/status` series named `name` of the first target.
fn series(status: &serde_json::Value, name: &str) -> serde_json::Value {
    status["targets"][0]["judged"]["series"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["series"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no {name} series in /status: {status}"))
}

/// A Kubernetes-like pod on cgroup v1: the pod's memory and pids cgroups carry the limits
/// (192 MiB, 40 tasks), its container's are higher (512 MiB) or unset. The container's
/// effective limits are the pod's, and `/status` names the pod cgroup as their source.
#[test]
fn v1_limits_on_an_ancestor_are_the_targets() {
    if !nix::unistd::geteuid().is_root() {
        return common::skip::skip(REQUIRE_LIMITS, "creating cgroups needs root");
    }
    let root = Path::new("/sys/fs/cgroup");
    let (Some(own_memory), Some(own_pids)) = (own_v1_path("memory"), own_v1_path("pids")) else {
        let why = "no cgroup v1 memory and pids controllers here (a pure v2 host)";
        return common::skip::skip(REQUIRE_V1, why);
    };
    let pod = format!("leakwatch-test-pod-{}", std::process::id());
    let mut cleanup = Cleanup {
        child: None,
        dirs: Vec::new(),
    };
    let mut make = |controller: &str, own: &str| -> (PathBuf, PathBuf) {
        let pod_dir = root
            .join(controller)
            .join(own.trim_start_matches('/'))
            .join(&pod);
        let container = pod_dir.join("container");
        for dir in [&pod_dir, &container] {
            fs::create_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            cleanup.dirs.push(dir.clone());
        }
        (pod_dir, container)
    };
    let (mem_pod, mem_container) = make("memory", &own_memory);
    let (pids_pod, pids_container) = make("pids", &own_pids);
    fs::write(
        mem_pod.join("memory.limit_in_bytes"),
        (192 * MIB).to_string(),
    )
    .unwrap();
    fs::write(
        mem_container.join("memory.limit_in_bytes"),
        (512 * MIB).to_string(),
    )
    .unwrap();
    fs::write(pids_pod.join("pids.max"), "40").unwrap();

    let join = r#"echo $$ > "$1" && echo $$ > "$2" && shift 2 && exec "$@""#;
    let mut cmd = Command::new("sh");
    cmd.args(["-c", join, "sh"])
        .arg(mem_container.join("cgroup.procs"))
        .arg(pids_container.join("cgroup.procs"))
        .args([BIN, "demo-child", "--grow-mib", "8"]);
    let child = cleanup.child.insert(LeakyChild::spawn_with(&mut cmd));
    let pid = child.pid();

    let got = collect_cgroup(Path::new("/proc"), root, pid);
    let pod_path = |own: &str| format!("{}/{pod}", own.trim_end_matches('/'));
    let m = got.memory.expect("cgroup memory");
    assert_eq!(m.source.dir, mem_container);
    assert_eq!(m.max, Some(Limit::Limited(192 * MIB)));
    assert_eq!(m.max_from, Some(pod_path(&own_memory)));
    let p = got.pids.expect("cgroup pids");
    assert_eq!(p.source.dir, pids_container);
    assert_eq!(p.max, Some(Limit::Limited(40)));
    let from = p.max_from.expect("the pod's pids.max");
    assert_eq!(from.path, pod_path(&own_pids));
    assert_eq!(from.current, read_u64(&pids_pod.join("pids.current")));

    // The daemon judges against them and says where they came from.
    let d = common::daemon::Daemon::start(&["--pid", &pid.to_string()]);
    assert!(d.wait_ticks(1, Duration::from_secs(30)), "no tick");
    let status = d.status();
    let mem = series(&status, "cgroup_memory");
    assert_eq!(mem["limit"], (192 * MIB) as f64, "{mem}");
    assert_eq!(
        mem["limit_source"],
        format!("memory.max of {}", pod_path(&own_memory)),
        "{mem}"
    );
    let threads = series(&status, "threads");
    assert_eq!(threads["limit"], 40.0, "{threads}");
    assert_eq!(
        threads["limit_source"],
        format!("pids.max of {}", pod_path(&own_pids)),
        "{threads}"
    );
    drop(d);
}
