//! Fixture trees: a fake proc root and cgroup roots of every layout, built in temp dirs from
//! the kernel text under `tests/fixtures/cgroup/`.

use std::fs;
use std::path::PathBuf;

use super::*;
use crate::sample::{AncestorPids, CgroupDir, Limit, MemoryEvents, Pressure, PressureLine};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../../tests/fixtures/cgroup/", $name))
    };
}

const PID: i32 = 4242;
/// The v2 fixtures' service (captured in the e2e VM); the v1 fixture's.
const SERVICE: &str = "/system.slice/lwt-hold.service";
const V1_SERVICE: &str = "/system.slice/app.service";
const HYBRID_MEMORY: &str = "/process_api/94baf7261315d89eeb2a8b6eb89cfca7";

/// A temp dir holding `proc/` and `cg/` (the cgroup root).
struct Tree {
    tmp: tempfile::TempDir,
}

impl Tree {
    fn new(proc_cgroup: &str) -> Tree {
        let t = Tree {
            tmp: tempfile::tempdir().unwrap(),
        };
        t.write(&format!("proc/{PID}/cgroup"), proc_cgroup);
        t
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel.trim_start_matches('/'))
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    fn write_all(&self, dir: &str, files: &[(&str, &str)]) {
        fs::create_dir_all(self.path(dir)).unwrap();
        for (name, text) in files {
            self.write(&format!("{dir}/{name}"), text);
        }
    }

    fn collect(&self) -> CgroupReadings {
        collect_cgroup(&self.path("proc"), &self.path("cg"), PID)
    }

    fn source(&self, dir: &str, via_target_root: bool) -> CgroupDir {
        CgroupDir {
            dir: self.path(dir),
            via_target_root,
        }
    }

    /// The target's own `/sys/fs/cgroup`, seen through `proc/PID/root`.
    fn target_root(&self) -> String {
        format!("proc/{PID}/root/sys/fs/cgroup")
    }
}

const V2_MEMORY: [(&str, &str); 7] = [
    ("memory.current", fixture!("memory_current_v2_kernel_6_1")),
    ("memory.max", fixture!("memory_max_v2_kernel_6_1")),
    ("memory.high", fixture!("memory_high_v2_kernel_6_1")),
    ("memory.stat", fixture!("memory_stat_v2_kernel_6_1")),
    ("memory.events", fixture!("memory_events_v2_kernel_6_1")),
    (
        "memory.pressure",
        fixture!("memory_pressure_v2_busy_kernel_6_1"),
    ),
    ("pids.current", fixture!("pids_current_v2_kernel_6_1")),
];
const V2_PIDS_MAX: (&str, &str) = ("pids.max", fixture!("pids_max_v2_kernel_6_1"));
const V2_ROOT_CONTROLLERS: &str = fixture!("cgroup_controllers_v2_root_kernel_6_1");
const V2_SERVICE_CONTROLLERS: &str = fixture!("cgroup_controllers_v2_service_kernel_6_1");

const V1_MEMORY: [(&str, &str); 5] = [
    (
        "memory.usage_in_bytes",
        fixture!("memory_usage_in_bytes_v1_kernel_6_18"),
    ),
    (
        "memory.limit_in_bytes",
        fixture!("memory_limit_in_bytes_v1_256m_kernel_6_18"),
    ),
    ("memory.stat", fixture!("memory_stat_v1_kernel_6_18")),
    ("memory.failcnt", fixture!("memory_failcnt_v1_kernel_6_18")),
    (
        "memory.oom_control",
        fixture!("memory_oom_control_v1_kernel_6_18"),
    ),
];

/// A pure v2 service cgroup with every file of the fixtures.
fn v2_service(t: &Tree, base: &str) {
    t.write(&format!("{base}/cgroup.controllers"), V2_ROOT_CONTROLLERS);
    let dir = format!("{base}{SERVICE}");
    t.write_all(&dir, &V2_MEMORY);
    t.write_all(
        &dir,
        &[V2_PIDS_MAX, ("cgroup.controllers", V2_SERVICE_CONTROLLERS)],
    );
}

fn busy_pressure() -> Pressure {
    Pressure {
        some: PressureLine {
            avg10: 37.63,
            avg60: 7.83,
            avg300: 1.67,
            total_us: 5_140_748,
        },
        full: Some(PressureLine {
            avg10: 34.99,
            avg60: 7.26,
            avg300: 1.55,
            total_us: 4_810_685,
        }),
    }
}

/// What the v2 fixtures say, read from `source`.
fn v2_expected(path: &str, source: CgroupDir) -> CgroupMemory {
    CgroupMemory {
        version: CgroupVersion::V2,
        path: path.to_string(),
        source,
        current_bytes: Some(35_164_160),
        max: Some(Limit::Limited(300 << 20)),
        high: Some(Limit::Limited(250 << 20)),
        // memory.current - inactive_file
        working_set_bytes: Some(35_164_160 - 8_388_608),
        anon_bytes: Some(26_140_672),
        file_bytes: Some(8_388_608),
        sock_bytes: Some(0),
        inactive_file_bytes: Some(8_388_608),
        // memory.events of a service held over its memory.high.
        events: Some(MemoryEvents {
            low: Some(0),
            high: Some(1003),
            max: Some(0),
            oom: Some(0),
            oom_kill: Some(0),
        }),
        pressure: Some(busy_pressure()),
        max_from: None,
        high_from: None,
    }
}

/// What the v1 fixtures (this machine's real files) say, read from `source`.
fn v1_expected(path: &str, source: CgroupDir) -> CgroupMemory {
    CgroupMemory {
        version: CgroupVersion::V1,
        path: path.to_string(),
        source,
        current_bytes: Some(6_651_904),
        max: Some(Limit::Limited(256 << 20)),
        high: None,
        // usage_in_bytes - total_inactive_file
        working_set_bytes: Some(6_651_904 - 1_351_680),
        anon_bytes: Some(1_826_816),
        file_bytes: Some(3_436_544),
        sock_bytes: None,
        inactive_file_bytes: Some(1_351_680),
        events: Some(MemoryEvents {
            max: Some(0),
            oom_kill: Some(0),
            ..MemoryEvents::default()
        }),
        pressure: None,
        max_from: None,
        high_from: None,
    }
}

fn unknown_kind<T: std::fmt::Debug>(r: &Result<T, Unknown>) -> UnknownKind {
    match r {
        Ok(v) => panic!("expected unknown, got {v:?}"),
        Err(u) => u.kind,
    }
}

fn message<T: std::fmt::Debug>(r: &Result<T, Unknown>) -> &str {
    match r {
        Ok(v) => panic!("expected unknown, got {v:?}"),
        Err(u) => &u.message,
    }
}

#[test]
fn a_pure_v2_with_limits() {
    let t = Tree::new(fixture!("proc_cgroup_v2_kernel_6_1"));
    v2_service(&t, "cg");
    let dir = format!("cg{SERVICE}");
    let got = t.collect();
    assert_eq!(got.memory, Ok(v2_expected(SERVICE, t.source(&dir, false))));
    assert_eq!(
        got.pids,
        Ok(CgroupPids {
            version: CgroupVersion::V2,
            source: t.source(&dir, false),
            current: Some(4),
            max: Some(Limit::Limited(77)),
            max_from: None,
        })
    );
}

#[test]
fn b_v2_unlimited_without_high_or_pressure() {
    let t = Tree::new(fixture!("proc_cgroup_v2_kernel_6_1"));
    v2_service(&t, "cg");
    let dir = format!("cg{SERVICE}");
    t.write(
        &format!("{dir}/memory.max"),
        fixture!("memory_max_v2_unlimited_kernel_6_1"),
    );
    fs::remove_file(t.path(&format!("{dir}/memory.high"))).unwrap();
    fs::remove_file(t.path(&format!("{dir}/memory.pressure"))).unwrap();
    let want = CgroupMemory {
        max: Some(Limit::Unlimited),
        high: None,
        pressure: None,
        ..v2_expected(SERVICE, t.source(&dir, false))
    };
    assert_eq!(t.collect().memory, Ok(want));
}

#[test]
fn v2_missing_stat_leaves_working_set_unknown_not_current() {
    let t = Tree::new(fixture!("proc_cgroup_v2_kernel_6_1"));
    v2_service(&t, "cg");
    let dir = format!("cg{SERVICE}");
    fs::remove_file(t.path(&format!("{dir}/memory.stat"))).unwrap();
    fs::remove_file(t.path(&format!("{dir}/memory.events"))).unwrap();
    let want = CgroupMemory {
        working_set_bytes: None,
        anon_bytes: None,
        file_bytes: None,
        sock_bytes: None,
        inactive_file_bytes: None,
        events: None,
        ..v2_expected(SERVICE, t.source(&dir, false))
    };
    assert_eq!(t.collect().memory, Ok(want));
}

#[test]
fn v2_without_current_is_unknown_and_names_the_file() {
    let t = Tree::new(fixture!("proc_cgroup_v2_kernel_6_1"));
    v2_service(&t, "cg");
    let dir = format!("cg{SERVICE}");
    fs::remove_file(t.path(&format!("{dir}/memory.current"))).unwrap();
    t.write(&format!("{dir}/pids.current"), "lots\n");
    let got = t.collect();
    assert_eq!(unknown_kind(&got.memory), UnknownKind::Missing);
    assert!(message(&got.memory).contains("memory.current"));
    assert_eq!(unknown_kind(&got.pids), UnknownKind::Parse);
    assert!(message(&got.pids).contains("pids.current"));
}

#[test]
fn v2_root_cgroup_has_no_current() {
    let t = Tree::new("0::/\n");
    t.write("cg/cgroup.controllers", V2_ROOT_CONTROLLERS);
    t.write("cg/memory.stat", fixture!("memory_stat_v2_kernel_6_1"));
    let got = t.collect();
    assert_eq!(unknown_kind(&got.memory), UnknownKind::Unsupported);
    assert!(message(&got.memory).contains("root memory cgroup"));
    assert_eq!(unknown_kind(&got.pids), UnknownKind::Unsupported);
}

#[test]
fn c_v1() {
    let t = Tree::new(fixture!("proc_cgroup_v1_systemd_kernel_6_x"));
    t.write_all(&format!("cg/memory{V1_SERVICE}"), &V1_MEMORY);
    t.write_all(
        &format!("cg/pids{V1_SERVICE}"),
        &[
            ("pids.current", "3\n"),
            ("pids.max", fixture!("pids_max_v1_unlimited_kernel_6_18")),
        ],
    );
    let got = t.collect();
    let mem_dir = format!("cg/memory{V1_SERVICE}");
    assert_eq!(
        got.memory,
        Ok(v1_expected(V1_SERVICE, t.source(&mem_dir, false)))
    );
    assert_eq!(
        got.pids,
        Ok(CgroupPids {
            version: CgroupVersion::V1,
            source: t.source(&format!("cg/pids{V1_SERVICE}"), false),
            current: Some(3),
            max: Some(Limit::Unlimited),
            max_from: None,
        })
    );
}

#[test]
fn v1_unlimited_and_local_stat_keys() {
    let t = Tree::new(fixture!("proc_cgroup_v1_systemd_kernel_6_x"));
    let dir = format!("cg/memory{V1_SERVICE}");
    t.write_all(&dir, &V1_MEMORY);
    t.write(
        &format!("{dir}/memory.limit_in_bytes"),
        fixture!("memory_limit_in_bytes_v1_unlimited_kernel_6_18"),
    );
    // A memory.stat without the hierarchical totals: the local keys serve.
    t.write(
        &format!("{dir}/memory.stat"),
        "cache 4096000\nrss 2048000\ninactive_file 1024000\n",
    );
    fs::remove_file(t.path(&format!("{dir}/memory.failcnt"))).unwrap();
    let want = CgroupMemory {
        max: Some(Limit::Unlimited),
        working_set_bytes: Some(6_651_904 - 1_024_000),
        anon_bytes: Some(2_048_000),
        file_bytes: Some(4_096_000),
        inactive_file_bytes: Some(1_024_000),
        events: Some(MemoryEvents {
            oom_kill: Some(0),
            ..MemoryEvents::default()
        }),
        ..v1_expected(V1_SERVICE, t.source(&dir, false))
    };
    assert_eq!(t.collect().memory, Ok(want));
}

#[test]
fn v1_prefers_hierarchical_totals() {
    // A parent cgroup whose children hold most of the memory: usage_in_bytes counts them,
    // so the working set must subtract their inactive file pages too.
    let t = Tree::new(fixture!("proc_cgroup_v1_systemd_kernel_6_x"));
    let dir = format!("cg/memory{V1_SERVICE}");
    t.write_all(&dir, &V1_MEMORY);
    t.write(
        &format!("{dir}/memory.stat"),
        "cache 4096\nrss 8192\ninactive_file 4096\ntotal_cache 2097152\ntotal_rss 3145728\n\
         total_inactive_file 1048576\n",
    );
    let m = t.collect().memory.unwrap();
    assert_eq!(
        (m.anon_bytes, m.file_bytes, m.inactive_file_bytes),
        (Some(3_145_728), Some(2_097_152), Some(1_048_576))
    );
    assert_eq!(m.working_set_bytes, Some(6_651_904 - 1_048_576));
}

#[test]
fn d_hybrid_v1_memory_with_unified_pressure() {
    let t = Tree::new(fixture!("proc_cgroup_hybrid_kernel_6_18"));
    let dir = format!("cg/memory{HYBRID_MEMORY}");
    t.write_all(&dir, &V1_MEMORY);
    t.write_all(
        "cg/unified",
        &[
            ("cgroup.controllers", ""),
            (
                "memory.pressure",
                fixture!("memory_pressure_unified_kernel_6_18"),
            ),
        ],
    );
    // The root pids cgroup, as on the machine the fixture comes from: no pids.current.
    t.write_all("cg/pids", &[("cgroup.procs", "1\n")]);
    let got = t.collect();
    let want = CgroupMemory {
        pressure: Some(Pressure {
            some: PressureLine::default(),
            full: Some(PressureLine::default()),
        }),
        ..v1_expected(HYBRID_MEMORY, t.source(&dir, false))
    };
    assert_eq!(got.memory, Ok(want));
    assert_eq!(unknown_kind(&got.pids), UnknownKind::Unsupported);
    assert!(
        message(&got.pids).contains("root pids cgroup"),
        "{}",
        message(&got.pids)
    );
}

#[test]
fn e_sidecar_reads_through_the_target_root() {
    let t = Tree::new(fixture!("proc_cgroup_v2_sidecar_kernel_6_1"));
    // Our own cgroup2 root (a sidecar's): it does not hold the target's cgroup, but has a
    // directory of the same name that must not be read.
    t.write("cg/cgroup.controllers", V2_ROOT_CONTROLLERS);
    t.write_all(
        "cg/lwt-ns.service",
        &[("memory.current", "1\n"), ("pids.current", "1\n")],
    );
    // The target's own mount: its cgroup is the root of that namespace.
    let troot = t.target_root();
    t.write_all(
        &troot,
        &[("cgroup.controllers", V2_SERVICE_CONTROLLERS), V2_PIDS_MAX],
    );
    t.write_all(&troot, &V2_MEMORY);
    let got = t.collect();
    let path = "/../lwt-ns.service";
    assert_eq!(got.memory, Ok(v2_expected(path, t.source(&troot, true))));
    assert_eq!(
        got.pids,
        Ok(CgroupPids {
            version: CgroupVersion::V2,
            source: t.source(&troot, true),
            current: Some(4),
            max: Some(Limit::Limited(77)),
            max_from: None,
        })
    );
}

#[test]
fn sidecar_on_v1_when_our_root_lacks_the_path() {
    // Docker on v1 mounts a container's own memory cgroup as its /sys/fs/cgroup/memory.
    let t = Tree::new("4:memory:/docker/abc\n0::/\n");
    t.write_all("cg/memory", &[("memory.usage_in_bytes", "1\n")]);
    let troot = format!("{}/memory", t.target_root());
    t.write_all(&troot, &V1_MEMORY);
    let got = t.collect();
    assert_eq!(
        got.memory,
        Ok(v1_expected("/docker/abc", t.source(&troot, true)))
    );
}

#[test]
fn f_no_memory_controller_is_unsupported() {
    // A hybrid host booted with cgroup_disable=memory: no v1 memory line, and the unified
    // tree has no controllers.
    let t = Tree::new("2:pids:/\n1:name=systemd:/\n0::/user.slice\n");
    t.write_all("cg/unified/user.slice", &[("memory.pressure", "")]);
    t.write("cg/unified/cgroup.controllers", "");
    let got = t.collect();
    assert_eq!(unknown_kind(&got.memory), UnknownKind::Unsupported);
    let msg = message(&got.memory);
    assert!(
        msg.contains("memory controller") && msg.contains("no controllers"),
        "{msg}"
    );

    // Nothing at all: neither a v1 memory line nor a cgroup2 path.
    let t = Tree::new("3:cpu:/\n");
    let got = t.collect();
    assert_eq!(unknown_kind(&got.memory), UnknownKind::Unsupported);
    assert!(message(&got.memory).contains("no memory controller"));
    assert_eq!(unknown_kind(&got.pids), UnknownKind::Unsupported);

    // A v2 path but no cgroup2 mount anywhere.
    let t = Tree::new("0::/x\n");
    fs::create_dir_all(t.path("cg")).unwrap();
    let got = t.collect();
    assert_eq!(unknown_kind(&got.memory), UnknownKind::Unsupported);
    assert!(message(&got.memory).contains("cgroup2"));
}

#[test]
fn g_v2_cgroup_without_memory_enabled() {
    let t = Tree::new(fixture!("proc_cgroup_v2_kernel_6_1"));
    v2_service(&t, "cg");
    let dir = format!("cg{SERVICE}");
    t.write(&format!("{dir}/cgroup.controllers"), "cpu io pids\n");
    let got = t.collect();
    assert_eq!(unknown_kind(&got.memory), UnknownKind::Unsupported);
    let msg = message(&got.memory);
    assert!(
        msg.contains("memory controller is not enabled") && msg.contains(SERVICE),
        "{msg}"
    );
    assert!(got.pids.is_ok(), "{:?}", got.pids);
}

#[test]
fn gone_target() {
    let t = Tree::new("0::/\n");
    fs::remove_dir_all(t.path(&format!("proc/{PID}"))).unwrap();
    let got = t.collect();
    assert_eq!(unknown_kind(&got.memory), UnknownKind::Gone);
    assert_eq!(unknown_kind(&got.pids), UnknownKind::Gone);
    assert!(message(&got.memory).contains("cgroup"));
}

#[test]
fn permission_denied_names_the_path() {
    if nix::unistd::geteuid().is_root() {
        eprintln!("skipped: root reads files of any mode");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let t = Tree::new(fixture!("proc_cgroup_v2_kernel_6_1"));
    v2_service(&t, "cg");
    let file = t.path(&format!("cg{SERVICE}/memory.current"));
    fs::set_permissions(&file, fs::Permissions::from_mode(0o000)).unwrap();
    let got = t.collect();
    assert_eq!(unknown_kind(&got.memory), UnknownKind::PermissionDenied);
    assert!(message(&got.memory).contains(&file.display().to_string()));
}

#[test]
fn fixture_roots_are_parameters() {
    // Nothing in a fixture tree may come from the real /sys/fs/cgroup.
    let t = Tree::new(fixture!("proc_cgroup_hybrid_kernel_6_18"));
    let got = t.collect();
    assert_eq!(unknown_kind(&got.memory), UnknownKind::Unsupported);
    assert_eq!(unknown_kind(&got.pids), UnknownKind::Unsupported);
}

// Limits on ancestors: the lowest along the path is the target's.

#[test]
fn v2_a_slice_limit_with_none_on_the_service() {
    let t = Tree::new(fixture!("proc_cgroup_v2_kernel_6_1"));
    v2_service(&t, "cg");
    let dir = format!("cg{SERVICE}");
    // systemd: no MemoryMax=/MemoryHigh= on the service, MemoryMax=192M and TasksMax=40 on
    // its slice, whose tasks are the service's 4 and 26 of other services.
    t.write(&format!("{dir}/memory.max"), "max\n");
    t.write(&format!("{dir}/memory.high"), "max\n");
    t.write_all(
        "cg/system.slice",
        &[
            ("memory.max", "201326592\n"),
            ("memory.high", "max\n"),
            ("pids.max", "40\n"),
            ("pids.current", "30\n"),
        ],
    );
    let got = t.collect();
    let m = got.memory.unwrap();
    assert_eq!(m.max, Some(Limit::Limited(192 << 20)));
    assert_eq!(m.max_from.as_deref(), Some("/system.slice"));
    assert_eq!((m.high, m.high_from), (Some(Limit::Unlimited), None));
    // The values stay the service's own.
    assert_eq!(m.current_bytes, Some(35_164_160));
    let p = got.pids.unwrap();
    assert_eq!((p.current, p.max), (Some(4), Some(Limit::Limited(40))));
    assert_eq!(
        p.max_from,
        Some(AncestorPids {
            path: "/system.slice".into(),
            current: 30
        })
    );

    // A higher limit on the slice leaves the service's own (300 MiB, 250 MiB, 77 tasks).
    t.write_all(&dir, &V2_MEMORY);
    t.write_all(
        "cg/system.slice",
        &[
            ("memory.max", "1073741824\n"),
            ("memory.high", "1073741824\n"),
            ("pids.max", "4000\n"),
        ],
    );
    let got = t.collect();
    assert_eq!(got.memory, Ok(v2_expected(SERVICE, t.source(&dir, false))));
    let p = got.pids.unwrap();
    assert_eq!((p.max, p.max_from), (Some(Limit::Limited(77)), None));
}

#[test]
fn v2_pod_limit_above_its_containers() {
    let pod = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice";
    let container = format!("{pod}/cri-containerd-abc.scope");
    let t = Tree::new(&format!("0::{container}\n"));
    t.write("cg/cgroup.controllers", V2_ROOT_CONTROLLERS);
    let dir = format!("cg{container}");
    t.write_all(&dir, &V2_MEMORY);
    t.write_all(
        &dir,
        &[V2_PIDS_MAX, ("cgroup.controllers", V2_SERVICE_CONTROLLERS)],
    );
    // The kubelet's pod cgroup: 256 MiB for all its containers (each 300 MiB); the node's
    // allocatable above it, higher.
    t.write_all(
        &format!("cg{pod}"),
        &[("memory.max", "268435456\n"), ("memory.high", "max\n")],
    );
    t.write_all(
        "cg/kubepods.slice",
        &[("memory.max", "8589934592\n"), ("memory.high", "max\n")],
    );
    let m = t.collect().memory.unwrap();
    assert_eq!(m.max, Some(Limit::Limited(256 << 20)));
    assert_eq!(m.max_from.as_deref(), Some(pod));
    // memory.high stays the container's own 250 MiB: nothing above is lower.
    assert_eq!(
        (m.high, m.high_from),
        (Some(Limit::Limited(250 << 20)), None)
    );
}

#[test]
fn v1_pod_limit_above_its_container() {
    let t = Tree::new("4:memory:/kubepods/pod1/abc\n3:pids:/kubepods/pod1/abc\n");
    t.write_all("cg/memory/kubepods/pod1/abc", &V1_MEMORY);
    t.write(
        "cg/memory/kubepods/pod1/memory.limit_in_bytes",
        "201326592\n",
    );
    // The v1 root's "no limit" value is no limit.
    t.write(
        "cg/memory/memory.limit_in_bytes",
        fixture!("memory_limit_in_bytes_v1_unlimited_kernel_6_18"),
    );
    t.write_all(
        "cg/pids/kubepods/pod1/abc",
        &[("pids.current", "3\n"), ("pids.max", "max\n")],
    );
    t.write_all(
        "cg/pids/kubepods/pod1",
        &[("pids.current", "9\n"), ("pids.max", "12\n")],
    );
    t.write_all(
        "cg/pids/kubepods",
        &[("pids.current", "90\n"), ("pids.max", "100\n")],
    );
    let got = t.collect();
    let m = got.memory.unwrap();
    assert_eq!(m.max, Some(Limit::Limited(192 << 20)));
    assert_eq!(m.max_from.as_deref(), Some("/kubepods/pod1"));
    assert_eq!(m.high, None);
    // pod1 leaves 3 tasks, kubepods 10: the pod's limit is the one run into first.
    let p = got.pids.unwrap();
    assert_eq!(p.max, Some(Limit::Limited(12)));
    assert_eq!(
        p.max_from,
        Some(AncestorPids {
            path: "/kubepods/pod1".into(),
            current: 9
        })
    );
}

#[test]
fn v1_socket_memory_only_once_tcp_accounting_is_on() {
    let t = Tree::new(fixture!("proc_cgroup_v1_systemd_kernel_6_x"));
    let dir = format!("cg/memory{V1_SERVICE}");
    t.write_all(&dir, &V1_MEMORY);
    t.write_all(&format!("cg/pids{V1_SERVICE}"), &[("pids.current", "3\n")]);
    let sock = |t: &Tree| t.collect().memory.unwrap().sock_bytes;
    // No kmem.tcp files (a kernel without them): unknown.
    assert_eq!(sock(&t), None);
    // The files, but no limit ever set: v1 charges nothing, the 0 means nothing.
    t.write_all(
        &dir,
        &[
            ("memory.kmem.tcp.usage_in_bytes", "0\n"),
            (
                "memory.kmem.tcp.limit_in_bytes",
                fixture!("memory_kmem_tcp_limit_in_bytes_v1_unlimited_kernel_6_18"),
            ),
        ],
    );
    assert_eq!(sock(&t), None);
    // A limit set (1 GiB), a stalled consumer's send buffer charged: 3.9 MB.
    t.write_all(
        &dir,
        &[
            (
                "memory.kmem.tcp.usage_in_bytes",
                fixture!("memory_kmem_tcp_usage_in_bytes_v1_kernel_6_18"),
            ),
            (
                "memory.kmem.tcp.limit_in_bytes",
                fixture!("memory_kmem_tcp_limit_in_bytes_v1_1g_kernel_6_18"),
            ),
        ],
    );
    assert_eq!(sock(&t), Some(3_948_544));
}
