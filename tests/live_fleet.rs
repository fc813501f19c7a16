//! Fleet-safe restarts on a real kube-apiserver and etcd (`tests/common/apiserver.rs`),
//! with RBAC on and the chart's own Leases, ServiceAccount, Role and RoleBinding (rendered
//! by `helm/tests/check_chart.py --render`). Six `leakwatch run` processes (`[fleet]`,
//! K = 2, each its own identity, the ServiceAccount's token) watch six real children that
//! leak fds in lockstep; a small driver plays the kubelet: it probes each `/healthz` every
//! second and, after 3 failures in a row, restarts that target (a new child, no leak).
//!
//! - **Coordinated**: at every probe round at most 2 replicas are failing; all of them are
//!   restarted, each while its old target was alive and under its fd limit. A `kill -9` of
//!   a slot holder's leakwatch frees its slot within a Lease duration plus the poll.
//! - **API server stopped**: every replica falls back (`/status`: `local_fallback`) and
//!   fails its probe only after its own stagger (a hash of its identity), not at once and
//!   not because of the error.
//! - **RoleBinding removed** (403): the same, and a replica whose leak is close to
//!   exhaustion goes anyway before its stagger, and says so (`override_total{deadline}`,
//!   the log line).
//!
//! - **In a pod's clothes**: no kubeconfig, `KUBERNETES_SERVICE_HOST`/`_PORT` set and the
//!   service account's token, CA and namespace mounted where a pod has them (a tmpfs over
//!   `/run` in a mount namespace of its own, as root): leakwatch finds the API server, its
//!   namespace and its rights the way it does in a cluster.
//!
//! The assertions hold under load: counts and orders, with bounds a slow machine keeps
//! (each says why); the timing of the coordination itself is the unit tests' (virtual
//! clock). Needs `LEAKWATCH_APISERVER_DIR` (`tests/e2e/apiserver/build.sh`) and the chart's
//! Python (`LEAKWATCH_HELM_PYTHON`); without them the test says so and passes, unless
//! `LEAKWATCH_REQUIRE_APISERVER=1` (CI sets it).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::apiserver::ApiServer;
use common::daemon::Daemon;
use common::LeakyChild;
use leakwatch::fleet::{FleetConfig, Slots};
use nix::sys::signal::Signal;
use serde_json::Value;

const NAMESPACE: &str = "shop";
const SA_USER: &str = "system:serviceaccount:shop:demo-leakwatch";
const GROUP: &str = "api";
const N: usize = 6;
const K: usize = 2;
/// The kubelet's probe period and failure threshold.
const PERIOD: Duration = Duration::from_secs(1);
const FAILURES: u32 = 3;
/// The fleet's timings (the config below).
const LEASE_S: u64 = 6;
const RENEW_S: u64 = 2;
const SPREAD_S: u64 = 20;
/// Each child's fd limit.
const NOFILE: u64 = 4096;

fn identity(i: usize) -> String {
    format!("{GROUP}-{i}")
}

/// The chart's fleet objects for K slots, as one `List` to apply; `None` after a skip.
fn chart_objects() -> Option<String> {
    let python = std::env::var_os("LEAKWATCH_HELM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ci-venv/bin/python"));
    let values = format!(
        r#"{{"fleet":{{"enabled":true,"group":"{GROUP}","maxConcurrent":{K},"leaseDuration":"{LEASE_S}s"}}}}"#
    );
    let out = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("helm/tests/check_chart.py"))
        .args(["--render", &values])
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        other => {
            common::skip::skip(
                "LEAKWATCH_REQUIRE_APISERVER",
                &format!(
                    "the chart cannot be rendered with {}: {other:?}",
                    python.display()
                ),
            );
            return None;
        }
    };
    let docs: Vec<Value> = serde_json::from_slice(&out.stdout).expect("--render prints JSON");
    let kinds = ["Lease", "ServiceAccount", "Role", "RoleBinding"];
    let items: Vec<Value> = docs
        .into_iter()
        .filter(|d| kinds.contains(&d["kind"].as_str().unwrap_or("")))
        .collect();
    let leases = items.iter().filter(|d| d["kind"] == "Lease").count();
    assert_eq!(leases, K, "the chart renders K Leases");
    Some(serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string())
}

/// A real API server holding the chart's fleet objects in their namespace; `None` after a
/// skip.
fn api_with_the_charts_objects() -> Option<ApiServer> {
    let objects = chart_objects()?;
    let api = ApiServer::start_with_users(&[SA_USER])?;
    api.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n"
    ));
    api.apply(&objects);
    Some(api)
}

/// One pod: its leakwatch and its target.
struct Replica {
    id: String,
    dir: PathBuf,
    daemon: Option<Daemon>,
    target: Option<LeakyChild>,
    /// Failed probes in a row.
    failed: u32,
    /// The last probe failed (503).
    failing: bool,
    restarts: u32,
    /// This phase: when `/status` first said deferred, the fleet modes it showed while
    /// deferred, the first 503.
    deferred_at: Option<Instant>,
    /// When `/status` was last asked and did not say deferred.
    not_deferred_at: Option<Instant>,
    deferred_modes: BTreeSet<String>,
    first_fail: Option<Instant>,
}

impl Replica {
    fn pidfile(&self) -> PathBuf {
        self.dir.join("target.pid")
    }

    /// Replace the target with a new child (`leak_every`: its leak, `None` for none).
    fn new_target(&mut self, leak_every: Option<&str>, nofile: u64) {
        self.target = None;
        let nofile = nofile.to_string();
        let mut args = vec!["demo-child", "--nofile", nofile.as_str()];
        if let Some(every) = leak_every {
            args.extend(["--leak-every", every]);
        }
        let child = LeakyChild::spawn_lasting(Command::new(common::BIN).args(&args), 400);
        std::fs::write(self.pidfile(), format!("{}\n", child.pid())).unwrap();
        self.target = Some(child);
    }

    fn start_daemon(&mut self, kubeconfig: &Path) {
        let config = format!(
            r#"interval = "1s"

[judge]
window = "20s"
min_span = "6s"
warmup = "0s"
fail_after = 1

[fleet]
group = "{GROUP}"
max_concurrent = {K}
identity = "{id}"
kubeconfig = "{kc}"
lease_duration = "{LEASE_S}s"
renew_every = "{RENEW_S}s"
healthy_for = "4s"
restart_cost = "20s"
fallback_spread = "{SPREAD_S}s"
api_timeout = "2s"

[[target]]
name = "app"
pidfile = "{pid}"

[target.rules.fds]
max = 60
"#,
            id = self.id,
            kc = kubeconfig.display(),
            pid = self.pidfile().display(),
        );
        let path = common::daemon::config_file(&self.dir, "leakwatch.toml", &config);
        let cfg = path.to_str().unwrap();
        self.daemon = Some(Daemon::start(&["--config", cfg]));
    }

    fn status(&self) -> Option<Value> {
        let (code, body) = self.daemon.as_ref()?.get("/status");
        (code == 200)
            .then(|| serde_json::from_str(&body).ok())
            .flatten()
    }

    fn new_phase(&mut self) {
        self.deferred_at = None;
        self.not_deferred_at = None;
        self.deferred_modes.clear();
        self.first_fail = None;
        self.failed = 0;
        self.failing = false;
    }
}

/// What a fleet config says a replica's stagger is, with no time to exhaustion known.
fn stagger(id: &str) -> Duration {
    let mut c = FleetConfig::new(GROUP, K as u32);
    c.fallback_spread = Duration::from_secs(SPREAD_S);
    Duration::from_millis(Slots::new(c, id.into(), NAMESPACE.into()).stagger_ms(None))
}

struct Fleet {
    api: ApiServer,
    replicas: Vec<Replica>,
    /// Replicas the driver leaves alone (their leakwatch was killed).
    out: Vec<usize>,
    worst_failing: usize,
}

impl Fleet {
    /// One round of the kubelet: probe each replica, restart a target after 3 failures;
    /// also note when each replica's /status first says deferred.
    fn round(&mut self) {
        let started = Instant::now();
        for (i, r) in self.replicas.iter_mut().enumerate() {
            if self.out.contains(&i) {
                continue;
            }
            if r.first_fail.is_none() {
                let asked = Instant::now();
                if let Some(st) = r.status() {
                    let restraint = &st["targets"][0]["judged"]["verdict"]["restraint"];
                    if restraint != "deferred" {
                        r.not_deferred_at = Some(asked);
                    } else {
                        // Deferred since after the last look that saw it not deferred: on
                        // a slow round this lower bound keeps the stagger checks honest.
                        let since = r.not_deferred_at.unwrap_or(asked);
                        r.deferred_at.get_or_insert(since);
                        let mode = st["fleet"]["mode"].as_str().unwrap_or("?").to_string();
                        r.deferred_modes.insert(mode);
                    }
                }
            }
            let (code, body) = r.daemon.as_ref().unwrap().get("/healthz");
            r.failing = code == 503;
            if code != 503 {
                r.failed = 0;
                continue;
            }
            r.first_fail.get_or_insert_with(Instant::now);
            r.failed += 1;
            if r.failed >= FAILURES {
                let pid = r.target.as_ref().unwrap().pid();
                let fds = common::count_fds(pid);
                assert!(
                    fds < NOFILE as usize,
                    "{}: its target reached its fd limit before the restart ({fds}): {body}",
                    r.id
                );
                r.new_target(None, NOFILE);
                r.restarts += 1;
                r.failed = 0;
            }
        }
        let failing = self.replicas.iter().filter(|r| r.failing).count();
        self.worst_failing = self.worst_failing.max(failing);
        std::thread::sleep(PERIOD.saturating_sub(started.elapsed()));
    }

    fn holder(&self, lease: &str) -> String {
        let out = self.api.kubectl(&[
            "get",
            "lease",
            lease,
            "-n",
            NAMESPACE,
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn holders(&self) -> Vec<String> {
        (0..K)
            .map(|i| self.holder(&format!("leakwatch-{GROUP}-slot-{i}")))
            .collect()
    }

    /// Run rounds until every replica not left alone was restarted `n` times.
    fn until_restarted(&mut self, n: u32, within: Duration, what: &str) {
        let deadline = Instant::now() + within;
        while self
            .replicas
            .iter()
            .enumerate()
            .any(|(i, r)| !self.out.contains(&i) && r.restarts < n)
        {
            assert!(
                Instant::now() < deadline,
                "{what}: not all restarted: {}",
                self.summary()
            );
            self.round();
        }
    }

    fn summary(&self) -> String {
        let rows: Vec<String> = self
            .replicas
            .iter()
            .map(|r| {
                let log = r.daemon.as_ref().map(|d| d.log_text()).unwrap_or_default();
                let fleet: Vec<&str> = log.lines().filter(|l| l.contains("fleet")).collect();
                let st = r.status().map(|st| {
                    let f = &st["fleet"];
                    format!("mode {} held {} api {}", f["mode"], f["held"], f["api"])
                });
                format!(
                    "{}: restarts {} failing {}; {}\n  {}",
                    r.id,
                    r.restarts,
                    r.failing,
                    st.unwrap_or_else(|| "no /status".into()),
                    fleet.join("\n  ")
                )
            })
            .collect();
        rows.join("\n")
    }

    /// Every replica's target replaced at once: `leak(i)` says each one's leak.
    fn leak_all(&mut self, leak: impl Fn(usize) -> (Option<&'static str>, u64)) {
        for (i, r) in self.replicas.iter_mut().enumerate() {
            r.new_phase();
            let (every, nofile) = leak(i);
            r.new_target(every, nofile);
        }
    }

    /// Wait until no slot is held (the restarted targets healthy for healthy_for).
    fn until_slots_free(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while self.holders().iter().any(|h| !h.is_empty()) {
            assert!(
                Instant::now() < deadline,
                "slots still held: {:?}\n{}",
                self.holders(),
                self.summary()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

#[test]
fn six_replicas_leaking_in_lockstep_restart_two_at_a_time_and_fall_back_staggered() {
    let Some(api) = api_with_the_charts_objects() else {
        return;
    };
    let kubeconfig = api.kubeconfig(SA_USER, NAMESPACE);
    let root = tempfile::tempdir().unwrap();
    let mut replicas: Vec<Replica> = (0..N)
        .map(|i| {
            let dir = root.path().join(identity(i));
            std::fs::create_dir_all(&dir).unwrap();
            Replica {
                id: identity(i),
                dir,
                daemon: None,
                target: None,
                failed: 0,
                failing: false,
                restarts: 0,
                deferred_at: None,
                not_deferred_at: None,
                deferred_modes: BTreeSet::new(),
                first_fail: None,
            }
        })
        .collect();
    // Targets first (the pidfile must name one), all leaking 10 fds/s from now.
    for r in &mut replicas {
        r.new_target(Some("100ms"), NOFILE);
    }
    for r in &mut replicas {
        r.start_daemon(&kubeconfig);
    }
    let mut fleet = Fleet {
        api,
        replicas,
        out: Vec::new(),
        worst_failing: 0,
    };

    coordinated_with_a_holder_killed(&mut fleet, &kubeconfig);
    fallback_with_the_api_server_stopped(&mut fleet);
    fallback_without_the_role_binding_and_an_override(&mut fleet);
}

/// Phase 1: K at a time; a holder's leakwatch killed frees its slot.
fn coordinated_with_a_holder_killed(fleet: &mut Fleet, kubeconfig: &Path) {
    let started = Instant::now();
    // Until both slots are held.
    let deadline = Instant::now() + Duration::from_secs(90);
    let held = loop {
        fleet.round();
        let h = fleet.holders();
        if h.iter().all(|h| !h.is_empty()) {
            break h;
        }
        assert!(
            Instant::now() < deadline,
            "the slots were never taken: {}",
            fleet.summary()
        );
    };
    // kill -9 the leakwatch of slot 0's holder; the kubelet's restarts of its pod are not
    // this test's: the driver leaves it alone.
    let victim = fleet.replicas.iter().position(|r| r.id == held[0]).unwrap();
    fleet.replicas[victim]
        .daemon
        .as_ref()
        .unwrap()
        .signal(Signal::SIGKILL);
    let killed = Instant::now();
    fleet.out.push(victim);
    fleet.replicas[victim].failing = false;
    let lease = format!("leakwatch-{GROUP}-slot-0");
    let taken = loop {
        fleet.round();
        let h = fleet.holder(&lease);
        if !h.is_empty() && h != held[0] {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "slot 0 never left the killed holder: {}",
            fleet.summary()
        );
    };
    // The holder renewed at most one renew period before the kill; a waiter sees that
    // version within its poll (renew_every + 30 %), takes the slot when it has been
    // unchanged for the lease duration, and this driver looks once per round (1 s); 3 s
    // more for a slow round and a kubectl call on a loaded machine.
    let bound = Duration::from_secs(LEASE_S + RENEW_S)
        + Duration::from_millis(RENEW_S * 1300)
        + Duration::from_secs(4);
    assert!(
        taken <= bound,
        "slot 0 taken {taken:?} after the kill (bound {bound:?})"
    );
    fleet.until_restarted(1, Duration::from_secs(180), "coordinated");
    assert!(
        fleet.worst_failing <= K,
        "{} replicas failed at once: {}",
        fleet.worst_failing,
        fleet.summary()
    );
    // The killed one comes back (as its kubelet would bring it), with a new target.
    let r = &mut fleet.replicas[victim];
    r.daemon = None;
    r.new_target(None, NOFILE);
    r.start_daemon(kubeconfig);
    r.restarts += 1;
    fleet.out.clear();
    let logs: String = fleet
        .replicas
        .iter()
        .map(|r| r.daemon.as_ref().unwrap().log_text())
        .collect();
    assert!(logs.contains("restart slot acquired"), "{logs}");
    println!(
        "coordinated: {N} replicas, {K} slots, all restarted in {:?}; worst failing at once {}; \
         slot of the killed holder taken after {taken:?}",
        started.elapsed(),
        fleet.worst_failing
    );
    fleet.until_slots_free(Duration::from_secs(60));
}

/// Each replica's first 503 came after it was deferred in `mode` for at least its
/// stagger (less a round for sampling), and the failures were spread, not together.
fn assert_staggered(
    fleet: &Fleet,
    mode: &str,
    except: Option<usize>,
) -> BTreeMap<String, Duration> {
    let mut went = BTreeMap::new();
    for (i, r) in fleet.replicas.iter().enumerate() {
        if Some(i) == except {
            continue;
        }
        let deferred = r
            .deferred_at
            .unwrap_or_else(|| panic!("{}: never deferred: {}", r.id, fleet.summary()));
        assert!(
            r.deferred_modes.contains(mode),
            "{}: deferred in {:?}, never {mode}: {}",
            r.id,
            r.deferred_modes,
            fleet.summary()
        );
        let fail = r.first_fail.unwrap();
        let waited = fail.saturating_duration_since(deferred);
        let s = stagger(&r.id);
        assert!(
            waited + Duration::from_secs(1) >= s,
            "{}: failed {waited:?} after it was deferred, its stagger is {s:?}",
            r.id
        );
        went.insert(r.id.clone(), s);
    }
    went
}

/// Phase 2: the API server stopped: local fallback, staggered.
fn fallback_with_the_api_server_stopped(fleet: &mut Fleet) {
    let started = Instant::now();
    fleet.api.stop_apiserver();
    fleet.leak_all(|_| (Some("100ms"), NOFILE));
    fleet.until_restarted(2, Duration::from_secs(120), "API server stopped");
    let staggers = assert_staggered(fleet, "local_fallback", None);
    let firsts: Vec<Instant> = fleet.replicas.iter().filter_map(|r| r.first_fail).collect();
    let spread = firsts
        .iter()
        .max()
        .unwrap()
        .duration_since(*firsts.iter().min().unwrap());
    let want = staggers
        .values()
        .max()
        .unwrap()
        .saturating_sub(*staggers.values().min().unwrap());
    // Each stagger counts from that replica's own fallback, a lease duration after its first
    // failed request, which its poll (renew_every + 30 %) sets; and this driver sees a
    // failure within a round or two on a loaded machine.
    let margin = Duration::from_millis(RENEW_S * 1300) + Duration::from_secs(2);
    assert!(
        spread + margin >= want,
        "first failures spread over {spread:?}, the staggers over {want:?}"
    );
    for r in &fleet.replicas {
        let st = r.status().unwrap();
        assert_eq!(st["fleet"]["api"]["up"], false, "{}", r.id);
        assert!(
            st["fleet"]["override_total"]["fallback_stagger"].as_u64() >= Some(1),
            "{st}"
        );
    }
    println!(
        "API server stopped: staggers {staggers:?}; first failures spread over {spread:?}, in {:?}",
        started.elapsed()
    );
    fleet.api.start_apiserver();
}

/// Phase 3: 403 (the RoleBinding deleted): fallback again; one replica near exhaustion
/// goes anyway, before its stagger.
fn fallback_without_the_role_binding_and_an_override(fleet: &mut Fleet) {
    let started = Instant::now();
    fleet.api.kubectl_ok(&[
        "delete",
        "rolebinding",
        "demo-leakwatch-fleet",
        "-n",
        NAMESPACE,
    ]);
    // The authorizer sees the deletion within moments; wait until the SA is refused.
    let kubeconfig = fleet.api.kubeconfig(SA_USER, NAMESPACE);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = fleet.api.kubectl_as(
            &kubeconfig,
            &["get", "lease", &format!("leakwatch-{GROUP}-slot-0")],
        );
        if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Forbidden") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the RoleBinding's removal never took effect"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // The replica with the longest stagger leaks 5x faster under a lower limit: its time to
    // exhaustion falls under restart_cost + 30 s long before its stagger.
    let fast = (0..N).max_by_key(|i| stagger(&identity(*i))).unwrap();
    assert!(
        stagger(&identity(fast)) >= Duration::from_secs(10),
        "precondition"
    );
    fleet.leak_all(|i| {
        if i == fast {
            (Some("20ms"), 2048)
        } else {
            (Some("100ms"), NOFILE)
        }
    });
    fleet.until_restarted(3, Duration::from_secs(120), "RoleBinding removed");
    assert_staggered(fleet, "local_fallback", Some(fast));
    let r = &fleet.replicas[fast];
    let deferred = r.deferred_at.expect("the fast one was deferred first");
    let waited = r.first_fail.unwrap().saturating_duration_since(deferred);
    assert!(
        waited < stagger(&r.id),
        "{}: went after {waited:?}, not before its stagger",
        r.id
    );
    let st = r.status().unwrap();
    assert!(
        st["fleet"]["override_total"]["deadline"].as_u64() >= Some(1),
        "{st}"
    );
    assert!(
        r.daemon
            .as_ref()
            .unwrap()
            .log_text()
            .contains("restarting without a slot"),
        "{}",
        fleet.summary()
    );
    // Each met the 403. (Its last error may be another: a loaded API server times out a
    // request now and then, and the restart before this phase broke pooled connections.)
    for r in &fleet.replicas {
        let st = r.status().unwrap();
        let forbidden = st["fleet"]["api"]["errors_total"]["forbidden"].as_u64();
        assert!(forbidden >= Some(1), "{}: {}", r.id, st["fleet"]["api"]);
    }
    println!(
        "RoleBinding removed: {} went anyway after {waited:?} (stagger {:?}), in {:?}",
        r.id,
        stagger(&r.id),
        started.elapsed()
    );
}

/// `leakwatch run` as in a pod: the service account's files under
/// `/run/secrets/kubernetes.io/serviceaccount` (a tmpfs over `/run` in a mount namespace
/// of its own), `KUBERNETES_SERVICE_HOST`/`_PORT`, `POD_NAME`, and no kubeconfig (`HOME`
/// empty, no `KUBECONFIG`). `Err` when this machine cannot (not root, no `unshare -m`).
fn daemon_in_a_pod(api: &ApiServer, dir: &Path, cfg: &Path) -> Result<Daemon, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("not root: cannot mount the service account's files".into());
    }
    let probe = Command::new("unshare")
        .args(["-m", "--propagation", "private", "true"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        return Err("unshare -m does not work here".into());
    }
    let sa = dir.join("serviceaccount");
    std::fs::create_dir_all(&sa).unwrap();
    std::fs::write(sa.join("token"), api.token(SA_USER)).unwrap();
    std::fs::copy(api.ca_file(), sa.join("ca.crt")).unwrap();
    std::fs::write(sa.join("namespace"), NAMESPACE).unwrap();
    let script = "sa=$0; bin=$1; cfg=$2; shift 2; \
                  mount -t tmpfs -o size=1m leakwatch-test /run && \
                  mkdir -p /run/secrets/kubernetes.io/serviceaccount && \
                  cp \"$sa\"/* /run/secrets/kubernetes.io/serviceaccount/ && \
                  exec \"$bin\" run -c \"$cfg\" \"$@\"";
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c", script])
        .arg(&sa)
        .arg(common::BIN)
        .arg(cfg)
        .env_remove("KUBECONFIG")
        .env("HOME", &home)
        .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .env("KUBERNETES_SERVICE_PORT", api.port().to_string())
        .env("POD_NAME", "api-in-a-pod");
    Ok(Daemon::start_with(&mut cmd))
}

#[test]
fn in_a_pod_it_finds_the_api_server_its_namespace_and_its_rights_from_the_service_account() {
    let Some(api) = api_with_the_charts_objects() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let target = LeakyChild::spawn(&["--nofile", "1024"]);
    let cfg = common::daemon::config_file(
        root.path(),
        "leakwatch.toml",
        &format!(
            "interval = \"1s\"\n[fleet]\ngroup = \"{GROUP}\"\nmax_concurrent = {K}\n\
             [[target]]\nname = \"app\"\npid = {}\n",
            target.pid()
        ),
    );
    let d = match daemon_in_a_pod(&api, root.path(), &cfg) {
        Ok(d) => d,
        Err(why) => return common::skip::skip("LEAKWATCH_REQUIRE_NAMESPACES", &why),
    };
    // An idle replica reads its slots at once, then once a minute.
    let deadline = Instant::now() + Duration::from_secs(60);
    let fleet = loop {
        let st = d.status();
        let f = st["fleet"].clone();
        if f["api"]["requests_total"].as_u64().unwrap_or(0) >= K as u64 {
            break f;
        }
        assert!(Instant::now() < deadline, "the slots were never read: {st}");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(fleet["namespace"], NAMESPACE, "{fleet}");
    assert_eq!(fleet["identity"], "api-in-a-pod", "{fleet}");
    assert_eq!(fleet["mode"], "coordinated", "{fleet}");
    assert_eq!(fleet["api"]["up"], true, "{fleet}");
    assert_eq!(
        fleet["api"]["errors_total"],
        serde_json::json!({}),
        "{fleet}"
    );
    // The chart's Leases, as read: free, with the chart's duration.
    for slot in fleet["slots"].as_array().unwrap() {
        assert_eq!(slot["holder"], Value::Null, "{fleet}");
        assert_eq!(slot["duration_s"], LEASE_S, "{fleet}");
    }
}
