//! The RBAC that fleet-safe restarts rely on, on a real kube-apiserver and etcd
//! (`tests/common/apiserver.rs`), which this test also proves: a Role granting only `get`
//! and `update` on the two pre-created slot Leases of a group, by `resourceNames`, bound to
//! a ServiceAccount, lets that ServiceAccount's token read and replace those two Leases (a
//! stale `resourceVersion` gets 409 Conflict) and nothing else: listing, creating,
//! reading another Lease and deleting are Forbidden. Without the RoleBinding, reading is
//! Forbidden too. A stopped API server refuses connections; started again, it serves the
//! same data from etcd.
//!
//! Needs the binaries of `tests/e2e/apiserver/build.sh` in `LEAKWATCH_APISERVER_DIR`,
//! `openssl` and `kubectl`; without them the test says so and passes, unless
//! `LEAKWATCH_REQUIRE_APISERVER=1` (CI sets it): then it fails.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::apiserver::ApiServer;
use serde_json::Value;

const NAMESPACE: &str = "shop";
const SA: &str = "demo-leakwatch";
const SA_USER: &str = "system:serviceaccount:shop:demo-leakwatch";
const SLOT_0: &str = "leakwatch-api-slot-0";
const SLOT_1: &str = "leakwatch-api-slot-1";
/// A Lease in the same namespace that the Role does not name.
const OTHER: &str = "leakwatch-api-slot-2";

fn lease(name: &str) -> String {
    format!(
        "apiVersion: coordination.k8s.io/v1\n\
         kind: Lease\n\
         metadata:\n  name: {name}\n  namespace: {NAMESPACE}\n\
         spec:\n  leaseDurationSeconds: 15\n"
    )
}

fn role_binding() -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\n\
         kind: RoleBinding\n\
         metadata:\n  name: leakwatch-fleet\n  namespace: {NAMESPACE}\n\
         subjects:\n\
         - kind: ServiceAccount\n  name: {SA}\n  namespace: {NAMESPACE}\n\
         roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: leakwatch-fleet\n"
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The command failed, and the server said Forbidden to the ServiceAccount's user.
fn assert_forbidden(what: &str, out: &Output) {
    let err = text(&out.stderr);
    assert!(
        !out.status.success() && err.contains("Forbidden") && err.contains(SA_USER),
        "{what}: expected Forbidden for {SA_USER}, got {}\nstdout: {}\nstderr: {err}",
        out.status,
        text(&out.stdout)
    );
}

fn assert_ok(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\nstderr: {}",
        out.status,
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Poll `f` every 200 ms until it is true, for at most `within`.
fn within(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn holder(api: &ApiServer, name: &str) -> Value {
    let json = api.kubectl_ok(&["get", "lease", name, "-n", NAMESPACE, "-o", "json"]);
    let lease: Value = serde_json::from_str(&json).expect("lease json");
    lease["spec"]["holderIdentity"].clone()
}

#[test]
fn slot_leases_are_all_a_service_account_may_touch_and_the_server_restarts() {
    let started = Instant::now();
    let Some(mut api) = ApiServer::start_with_users(&[SA_USER]) else {
        return;
    };
    let ready = started.elapsed();

    api.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n"
    ));
    api.apply(&format!(
        "{}---\n{}---\n{}---\n\
         apiVersion: v1\n\
         kind: ServiceAccount\n\
         metadata:\n  name: {SA}\n  namespace: {NAMESPACE}\n\
         ---\n\
         apiVersion: rbac.authorization.k8s.io/v1\n\
         kind: Role\n\
         metadata:\n  name: leakwatch-fleet\n  namespace: {NAMESPACE}\n\
         rules:\n\
         - apiGroups: [coordination.k8s.io]\n  \
           resources: [leases]\n  \
           resourceNames: [{SLOT_0}, {SLOT_1}]\n  \
           verbs: [get, update]\n\
         ---\n{}",
        lease(SLOT_0),
        lease(SLOT_1),
        lease(OTHER),
        role_binding()
    ));

    let kubeconfig = api.kubeconfig(SA_USER, NAMESPACE);
    let sa = |args: &[&str]| api.kubectl_as(&kubeconfig, args);
    let dir = api.dir().to_path_buf();

    // The binding reaches the authorizer through its informer: moments, not at once.
    assert!(
        within(Duration::from_secs(15), || sa(&["get", "lease", SLOT_0])
            .status
            .success()),
        "the ServiceAccount cannot get {SLOT_0}: {}",
        text(&sa(&["get", "lease", SLOT_0]).stderr)
    );

    // get, then update (PUT with the read resourceVersion) both slots.
    for slot in [SLOT_0, SLOT_1] {
        let json = assert_ok(
            &format!("get lease {slot}"),
            &sa(&["get", "lease", slot, "-o", "json"]),
        );
        let mut lease: Value = serde_json::from_str(&json).expect("lease json");
        assert_eq!(lease["spec"]["leaseDurationSeconds"], 15, "{json}");
        let stale = dir.join(format!("{slot}-stale.json"));
        std::fs::write(&stale, &json).unwrap();
        lease["spec"]["holderIdentity"] = Value::from("pod-a");
        let fresh = dir.join(format!("{slot}-held.json"));
        std::fs::write(&fresh, lease.to_string()).unwrap();
        assert_ok(
            &format!("replace lease {slot}"),
            &sa(&["replace", "-f", path(&fresh)]),
        );
        assert_eq!(holder(&api, slot), "pod-a");
        // The compare-and-swap a slot's acquisition relies on: the old resourceVersion loses.
        let out = sa(&["replace", "-f", path(&stale)]);
        assert!(
            !out.status.success() && text(&out.stderr).contains("Conflict"),
            "replace {slot} with a stale resourceVersion: {}\nstderr: {}",
            out.status,
            text(&out.stderr)
        );
        assert_eq!(holder(&api, slot), "pod-a");
    }
    let can = |resource: &str| sa(&["auth", "can-i", "update", resource]);
    assert_eq!(text(&can(&format!("leases/{SLOT_0}")).stdout).trim(), "yes");
    assert_eq!(text(&can(&format!("leases/{OTHER}")).stdout).trim(), "no");

    // Everything else is Forbidden.
    assert_forbidden("list leases", &sa(&["get", "leases"]));
    assert_forbidden(
        "get a lease the Role does not name",
        &sa(&["get", "lease", OTHER]),
    );
    let new = dir.join("new-lease.yaml");
    std::fs::write(&new, lease("leakwatch-api-slot-3")).unwrap();
    assert_forbidden("create a lease", &sa(&["create", "-f", path(&new)]));
    assert_forbidden("delete a slot", &sa(&["delete", "lease", SLOT_0]));
    assert_forbidden(
        "patch (annotate) a lease the Role does not name",
        &sa(&["annotate", "lease", OTHER, "x=y"]),
    );
    assert_forbidden(
        "get a slot in another namespace",
        &sa(&["get", "lease", SLOT_0, "-n", "default"]),
    );

    // Without the RoleBinding, even get is Forbidden.
    api.kubectl_ok(&["delete", "rolebinding", "leakwatch-fleet", "-n", NAMESPACE]);
    assert!(
        within(Duration::from_secs(15), || !sa(&["get", "lease", SLOT_0])
            .status
            .success()),
        "the ServiceAccount can still get {SLOT_0} without its RoleBinding"
    );
    assert_forbidden("get a slot unbound", &sa(&["get", "lease", SLOT_0]));

    // The API server stopped: connections are refused. Started again on the same port: the
    // data is still in etcd, and the same tokens work.
    api.stop_apiserver();
    let stopped = Instant::now();
    let out = api.kubectl(&["get", "lease", SLOT_0, "-n", NAMESPACE]);
    let refused_in = stopped.elapsed();
    assert!(
        !out.status.success() && text(&out.stderr).contains("refused"),
        "get with the API server stopped: {}\nstderr: {}",
        out.status,
        text(&out.stderr)
    );
    let restart = Instant::now();
    api.start_apiserver();
    let restarted_in = restart.elapsed();
    assert_eq!(holder(&api, SLOT_0), "pod-a");
    assert_eq!(holder(&api, SLOT_1), "pod-a");
    api.apply(&role_binding());
    let sa = |args: &[&str]| api.kubectl_as(&kubeconfig, args);
    assert!(
        within(Duration::from_secs(15), || sa(&["get", "lease", SLOT_0])
            .status
            .success()),
        "the ServiceAccount cannot get {SLOT_0} after the restart: {}",
        text(&sa(&["get", "lease", SLOT_0]).stderr)
    );

    eprintln!(
        "live_fleet_rbac: ready in {ready:?}, refused in {refused_in:?}, restarted in \
         {restarted_in:?}, {:?} in all",
        started.elapsed()
    );
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
