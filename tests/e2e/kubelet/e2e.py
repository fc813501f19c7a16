"""leakwatch's Helm chart run by a real kubelet: the end-to-end scenarios.

    python e2e.py --state DIR --kubelet PATH --image leakwatch.tar --image pause.tar \
        [--scenario NAME ...]

Run by run.sh as root inside `unshare --mount --net` (node.py says why). One node (containerd
and a standalone kubelet) runs every scenario in turn; each renders the chart with Helm's
library, runs its pod as a static pod (static_pod.py) and asserts on what the kubelet
reports (restart counts from its read-only /pods), what the processes are (uid and
capabilities from /proc) and what leakwatch itself serves (/status, /metrics, over the
namespace's loopback). A failure prints the pod's status, its containers' logs and the
tail of the kubelet's and containerd's logs. Exits 0 when every scenario passed.

The demo values make the chart's demo fast: the target leaks a CLOSE_WAIT socket every
200 ms under its 256-fd limit, leakwatch samples every second and fails at half the limit,
and the kubelet probes every 2 s; the mechanism is the chart's, only the clock is faster.

fleet-restarts adds a real etcd and kube-apiserver (apiserver.py, the binaries of
tests/e2e/apiserver/build.sh, given by --apiserver) on 127.0.0.1 of this namespace, where
the static pods (hostNetwork) reach it; the chart's fleet objects (the slot Lease, the
ServiceAccount, its Role and RoleBinding) are applied there, and the sidecars authenticate
as that ServiceAccount's user with a token in a kubeconfig mounted from the node.
"""

from __future__ import annotations

import argparse
import calendar
import json
import os
import re
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from apiserver import ApiServer, ApiServerError  # noqa: E402
from node import NODE_NAME, Node, NodeError, http_get, wait_for  # noqa: E402
from static_pod import write_static_pod  # noqa: E402
from check_chart import CHART, NAMESPACE, render  # noqa: E402  (static_pod puts it on the path)

LEAKWATCH = "http://127.0.0.1:9717"
CAP_DAC_READ_SEARCH = 1 << 2
CAP_SYS_PTRACE = 1 << 19
DEMO_NOFILE = 256
# The pod's uid in the chart's default values.
POD_UID = 65532
# fleet-restarts: three replicas, one restart slot, the slot held until the restarted target
# has been healthy this long (s).
FLEET_REPLICAS = 3
FLEET_HEALTHY_FOR = 10
# The fleet's objects the chart renders (applied to the API server as admin).
FLEET_KINDS = ("Lease", "ServiceAccount", "Role", "RoleBinding")


class Failed(Exception):
    pass


def check(cond: bool, what: str) -> None:
    if not cond:
        raise Failed(what)


def demo_values(mode: str) -> dict:
    return {
        "sidecar": {"mode": mode},
        "config": {
            "interval": "1s",
            "target": [{
                "name": "app",
                "cmdline_regex": "demo-child",
                "rules": {"fds": {"max_ratio": 0.5, "exhaust_within": "30m"}},
            }],
        },
        "targetProbe": {"periodSeconds": 2, "failureThreshold": 2},
        "workload": {"container": {"args": [
            "demo-child", "--leak-every", "200ms", "--nofile", str(DEMO_NOFILE),
            "--max-seconds", "900",
        ]}},
    }


def fleet_values(port: int, probe_port: int) -> dict:
    """The demo as one replica of a fleet of FLEET_REPLICAS sharing one restart slot, its
    sidecar on ports of its own (every static pod here is on the node's network). The leak
    is slower than demo_values' (one fd a second, failing at 30 % of 256 fds, about 75 s
    in), so that the third replica, deferred for two restarts (~20 s each), still has
    half its fds left when its turn comes, and so that a restarted replica does not come
    due again before the third one's restart. The trend needs a 10-minute window to be
    trusted, so no deadline override fires within this run: every restart waits its slot."""
    values = demo_values("native")
    values["config"]["target"][0]["rules"]["fds"]["max_ratio"] = 0.3
    values["workload"]["container"]["args"] = [
        "demo-child", "--leak-every", "1s", "--nofile", str(DEMO_NOFILE), "--max-seconds", "900",
    ]
    values["sidecar"]["port"] = port
    values["sidecar"]["probePort"] = probe_port
    values["fleet"] = {
        "enabled": True, "group": "demo", "maxConcurrent": 1,
        "healthyFor": f"{FLEET_HEALTHY_FOR}s", "renewEvery": "2s", "leaseDuration": "6s",
    }
    return values


def rfc3339(text: str) -> float:
    """Unix time of an RFC 3339 UTC timestamp (the kubelet's, or a CRI log line's, whose
    nanoseconds are cut to microseconds)."""
    head, _, frac = text.rstrip("Z").partition(".")
    t = time.strptime(head, "%Y-%m-%dT%H:%M:%S")
    return calendar.timegm(t) + (float(f"0.{frac}") if frac else 0.0)


def clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(t)) + f".{int(t * 10) % 10}"


class Scenarios:
    def __init__(self, node: Node, apiserver_bin: Path | None = None) -> None:
        self.node = node
        self.apiserver_bin = apiserver_bin

    # ---- helpers ---------------------------------------------------------------------

    def start_pod(self, name: str, values: dict) -> dict:
        config_dir = self.node.state / "config" / name
        pod = write_static_pod(values, name, self.node.manifests, config_dir)
        wait_for(f"pod {name} running with every container ready",
                 lambda: self.all_ready(name), 180)
        return pod

    def all_ready(self, name: str) -> bool:
        pod = self.node.pod(name)
        if not pod:
            return False
        statuses = self.statuses(pod)
        return bool(statuses) and all(s.get("ready") for s in statuses.values())

    @staticmethod
    def statuses(pod: dict) -> dict[str, dict]:
        status = pod.get("status") or {}
        return {s["name"]: s for s in (status.get("initContainerStatuses") or []) +
                (status.get("containerStatuses") or [])}

    def restarts(self, name: str) -> dict[str, int]:
        pod = self.node.pod(name)
        check(pod is not None, f"the kubelet no longer reports pod {name}")
        return {c: s.get("restartCount", 0) for c, s in self.statuses(pod).items()}

    def stop_pod(self, name: str) -> None:
        self.stop_pods([name])

    def stop_pods(self, names: list[str]) -> None:
        for name in names:
            (self.node.manifests / f"{name}.json").unlink(missing_ok=True)
        for name in names:
            wait_for(f"pod {name} gone", lambda: self.node.pod(name) is None, 120)
        wait_for(f"the processes of {', '.join(names)} gone",
                 lambda: not [p for p in self.node.processes()
                              if p["argv"][:1] == ["/usr/bin/leakwatch"]], 60)
        # The kubelet counts restarts from the log directories it finds: a later pod of
        # the same name must start from zero.
        for name in names:
            for d in Path("/var/log/pods").glob(f"*_{name}-*"):
                shutil.rmtree(d)

    def leakwatch_procs(self, role: str) -> list[dict]:
        """Processes of the leakwatch binary: 'sidecar' (run) or 'target' (demo-child)."""
        verb = "run" if role == "sidecar" else "demo-child"
        return [p for p in self.node.processes()
                if p["argv"][:2] == ["/usr/bin/leakwatch", verb]]

    def one_proc(self, role: str) -> dict:
        def single():
            found = self.leakwatch_procs(role)
            return found[0] if len(found) == 1 else None
        return wait_for(f"one {role} process", single, 30)

    @staticmethod
    def status(base: str = LEAKWATCH) -> dict:
        code, body = http_get(f"{base}/status")
        check(code == 200, f"leakwatch /status at {base} answered {code}: {body[:300]}")
        return json.loads(body)

    @staticmethod
    def metric(name: str, labels: str, base: str = LEAKWATCH) -> float | None:
        code, body = http_get(f"{base}/metrics")
        check(code == 200, f"leakwatch /metrics answered {code}")
        for line in body.splitlines():
            if line.startswith(f"{name}{{{labels}}} "):
                return float(line.rsplit(" ", 1)[1])
        return None

    def peek_sample(self, want_pid: int | None = None) -> dict | None:
        """leakwatch's latest sample of target `app` (of process want_pid, if given), or
        None while it has none."""
        targets = self.status()["targets"]
        t = next((t for t in targets if t["name"] == "app"), None)
        s = t and t.get("sample")
        if t and t["found"] and s and (want_pid is None or s["target"]["pid"] == want_pid):
            return s
        return None

    def assert_read_fully(self, target: dict, what: str) -> dict:
        """leakwatch read the target's fd table, TCP sockets and threads: each present,
        none unknown, and the counts those of the process's /proc."""
        target_pid = target["pid"]

        def leaked():
            s = self.peek_sample(target["nspid"])
            tcp = (s or {}).get("tcp") or {}
            return s if (tcp.get("states") or {}).get("close_wait", 0) >= 3 else None
        s = wait_for(f"{what}: CLOSE_WAIT sockets seen by leakwatch", leaked, 60)
        unknown = s.get("unknown") or {}
        for collector in ("fds", "tcp", "threads"):
            check(collector not in unknown, f"{what}: {collector} unknown: {unknown[collector] if collector in unknown else ''}")
        fds = s["fds"]
        # A tick that took the sockets from the target's cgroup lists no fds: the kernel's
        # count (`allocated`) stands for them.
        count = fds.get("open") or fds.get("allocated")
        check(count and fds.get("by_type") is not None, f"{what}: fd table not read: {fds}")
        # The target leaks on between leakwatch's sample and this read (up to 5 fds/s).
        real = len(os.listdir(f"/proc/{target_pid}/fd"))
        check(abs(count - real) <= 25, f"{what}: {count} fds, /proc lists {real}")
        check(s["threads"]["count"] >= 1, f"{what}: threads {s['threads']}")
        real_threads = len(os.listdir(f"/proc/{target_pid}/task"))
        check(s["threads"]["count"] == real_threads,
              f"{what}: {s['threads']['count']} threads, /proc lists {real_threads}")
        return s

    def no_emfile(self, name: str) -> None:
        logs = list(Path("/var/log/pods").glob(f"*_{name}-*/app/*.log"))
        check(bool(logs), f"no logs of {name}'s target")
        for log in logs:
            text = log.read_text(errors="replace")
            check("Too many open files" not in text and "error:" not in text,
                  f"the target logged an error (EMFILE?) in {log}:\n{text[-2000:]}")

    def dump(self, name: str) -> str:
        out = []
        try:
            pod = self.node.pod(name)
            out.append(f"---- pod {name} as the kubelet reports it ----")
            out.append(json.dumps((pod or {}).get("status"), indent=1)[-6000:])
        except Exception as e:  # noqa: BLE001 - a dump never hides the failure itself
            out.append(f"(pod status unavailable: {e})")
        for log in sorted(Path("/var/log/pods").glob(f"*_{name}-*/*/*.log")):
            lines = log.read_text(errors="replace").splitlines()[-25:]
            out.append(f"---- {log} (last {len(lines)} lines) ----")
            out.extend(lines)
        return "\n".join(out)

    # ---- the scenarios ---------------------------------------------------------------

    def demo(self, name: str, mode: str) -> str:
        """The chart's demo: the kubelet restarts the target from its liveness probe on
        leakwatch's /healthz, before EMFILE, twice; leakwatch is never restarted and
        counts each restart. Also: the restricted sidecar reads its same-uid target."""
        self.start_pod(name, demo_values(mode))
        sidecar, target = self.one_proc("sidecar"), self.one_proc("target")
        check(sidecar["uid"] == POD_UID and target["uid"] == POD_UID,
              f"uids: sidecar {sidecar['uid']}, target {target['uid']}, expected {POD_UID}")
        check(sidecar["cap_eff"] == 0, f"restricted sidecar has capabilities {sidecar['cap_eff']:#x}")
        sample = self.assert_read_fully(target, "same uid, no capabilities")
        # The target is alone in its container's cgroup: on a cgroup v2 node, after the
        # first tick its sockets come from that cgroup, with no walk of its fds. On a v1
        # node (containers in v1 cgroups only, as on a hybrid host) there is no cgroup2
        # path to filter by, and leakwatch must say so.
        v2_node = Path("/sys/fs/cgroup/cgroup.controllers").exists()
        last = {}

        def settled():
            # Any process of the target's: it restarts every half minute in the demo.
            s = self.peek_sample()
            last["tcp"] = (s or {}).get("tcp") or {"sample": s is not None}
            m = last["tcp"].get("method") or {}
            if m.get("from") == "cgroup" or (not v2_node and "cgroup2" in m.get("why", "")):
                return m
            return None
        try:
            method = wait_for("the target's sockets read from its cgroup" if v2_node else
                              "leakwatch to say why its cgroup cannot be used", settled, 30)
        except NodeError as e:
            raise NodeError(f"{e}; the last tick's: {last.get('tcp')}") from None
        init = (self.node.pod(name)["status"].get("initContainerStatuses") or [])
        check(any(c["name"] == "leakwatch" for c in init) == (mode == "native"),
              f"{mode}: leakwatch is not where the mode puts it: init containers {init}")
        peak = {"fds": 0}

        def restarted_twice():
            counts = self.restarts(name)
            check(counts.get("leakwatch", 0) == 0, f"the sidecar was restarted: {counts}")
            s = self.peek_sample()
            if s:
                fds = s.get("fds") or {}
                peak["fds"] = max(peak["fds"], fds.get("open") or fds.get("allocated") or 0)
            return counts if counts.get("app", 0) >= 2 else None
        wait_for("the target restarted twice", restarted_twice, 300, every=1)
        check(peak["fds"] < DEMO_NOFILE, f"the target reached {peak['fds']} fds")
        self.no_emfile(name)

        # leakwatch counts each new target process; the kubelet's count may move on meanwhile.
        def counted():
            now = self.restarts(name)
            seen = self.metric("leakwatch_target_restarts_total", 'target="app"')
            return (now, seen) if seen is not None and seen == now["app"] else None
        now, seen = wait_for("leakwatch_target_restarts_total to equal the kubelet's count",
                             counted, 20)
        check(now.get("leakwatch", 0) == 0, f"the sidecar was restarted: {now}")
        check(self.one_proc("sidecar")["pid"] == sidecar["pid"], "the sidecar process changed")
        # Each restart is the liveness probe's: the kubelet says why it kills a container.
        log = (self.node.logs / "kubelet.log").read_text(errors="replace").splitlines()
        mine = [l for l in log if "failed liveness probe" in l and f"/{name}-" in l]
        killed = {c: [l for l in mine if f'containerName="{c}"' in l] for c in ("app", "leakwatch")}
        check(len(killed["app"]) >= 2 and not killed["leakwatch"],
              f"the kubelet's liveness kills: {killed}")
        self.stop_pod(name)
        return (f"target restarted {now['app']} times by its liveness probe (leakwatch counted "
                f"{seen:.0f}), sidecar 0 restarts, peak {peak['fds']}/{DEMO_NOFILE} fds seen, "
                f"no EMFILE; read at start as uid {POD_UID} without capabilities: "
                f"{sample['fds'].get('open') or sample['fds'].get('allocated')} fds, {sample['tcp']['states'].get('close_wait')} "
                f"CLOSE_WAIT, {sample['threads']['count']} threads; sockets: "
                f"{method.get('from')} ({method.get('why')})")

    def other_uid(self, name: str) -> str:
        """sidecar.targetOtherUid: leakwatch as root with only CAP_SYS_PTRACE and
        CAP_DAC_READ_SEARCH reads a target running as another uid."""
        values = {
            "sidecar": {"targetOtherUid": True},
            "config": {"interval": "1s"},
            "workload": {"container": {
                "args": ["demo-child", "--leak-every", "300ms", "--nofile", "1024",
                         "--max-seconds", "900"],
                "securityContext": {
                    "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]}, "runAsUser": 4242, "runAsGroup": 4242,
                },
            }},
        }
        self.start_pod(name, values)
        sidecar, target = self.one_proc("sidecar"), self.one_proc("target")
        check(sidecar["uid"] == 0, f"sidecar uid {sidecar['uid']}, expected 0")
        check(sidecar["cap_eff"] == CAP_SYS_PTRACE | CAP_DAC_READ_SEARCH,
              f"sidecar capabilities {sidecar['cap_eff']:#x}")
        check(target["uid"] == 4242, f"target uid {target['uid']}, expected 4242")
        sample = self.assert_read_fully(target, "another uid")
        self.stop_pod(name)
        return (f"leakwatch uid 0 with CAP_SYS_PTRACE+CAP_DAC_READ_SEARCH read uid 4242's "
                f"{sample['fds'].get('open') or sample['fds'].get('allocated')} fds, {sample['tcp']['states'].get('close_wait')} "
                f"CLOSE_WAIT, {sample['threads']['count']} threads")

    def sigstop(self, name: str) -> str:
        """A stopped leakwatch: its own /livez probe restarts it; the target keeps running.
        The target's probe on /healthz times out meanwhile too: with the chart's default
        probes (leakwatch's 3 x 3 s and a 2 s kill, the target's 3 x 10 s) leakwatch is
        back before the target's probe fails three times."""
        values = {
            "config": {"interval": "1s"},
            "workload": {"container": {"args": [
                "demo-child", "--leak-every", "5s", "--nofile", "1024", "--max-seconds", "900",
            ]}},
        }
        self.start_pod(name, values)
        sidecar, target = self.one_proc("sidecar"), self.one_proc("target")
        check(http_get(f"{LEAKWATCH}/healthz")[0] == 200, "/healthz is not 200 before the stop")
        os.kill(sidecar["pid"], signal.SIGSTOP)
        stopped_at = time.monotonic()

        def sidecar_back():
            counts = self.restarts(name)
            check(counts.get("app", 0) == 0, f"the target was restarted: {counts}")
            now = self.leakwatch_procs("sidecar")
            fresh = [p for p in now if p["pid"] != sidecar["pid"]]
            if counts.get("leakwatch", 0) >= 1 and fresh and \
                    http_get(f"{LEAKWATCH}/livez")[0] == 200:
                return counts
            return None
        counts = wait_for("the stopped sidecar restarted", sidecar_back, 120, every=1)
        back_after = time.monotonic() - stopped_at
        check(sidecar["pid"] not in [p["pid"] for p in self.node.processes()],
              "the stopped sidecar still exists")
        # The target's probe passes again: watch it through two of its periods.
        time.sleep(20)
        counts = self.restarts(name)
        check(counts.get("app", 0) == 0, f"the target was restarted: {counts}")
        check(self.one_proc("target")["pid"] == target["pid"], "the target process changed")
        check(http_get(f"{LEAKWATCH}/healthz")[0] == 200, "/healthz is not 200 after")
        self.stop_pod(name)
        return (f"stopped sidecar restarted by its /livez probe after {back_after:.0f}s "
                f"(restart count {counts['leakwatch']}), target pid {target['pid']} kept, "
                "0 target restarts")

    def fleet(self, name: str) -> str:
        """Fleet-safe restarts on the real kubelet: FLEET_REPLICAS static pods of the
        chart's demo, leaking in lockstep, share one restart slot (a Lease on a real
        kube-apiserver). The kubelet restarts their targets one at a time, each once, none
        at EMFILE; a deferred replica's /healthz says so while another holds the slot."""
        if self.apiserver_bin is None:
            raise Failed("no --apiserver: the directory tests/e2e/apiserver/build.sh prints")
        started = time.monotonic()

        def phase(what: str) -> None:
            print(f"kube-e2e: {name}: {what} at +{time.monotonic() - started:.0f}s", flush=True)

        pods = [f"{name}-{c}" for c in "abc"[:FLEET_REPLICAS]]
        ports = {p: (9741 + 10 * i, 9742 + 10 * i) for i, p in enumerate(pods)}
        base = {p: f"http://127.0.0.1:{ports[p][0]}" for p in pods}
        probe = {p: f"http://127.0.0.1:{ports[p][1]}/healthz" for p in pods}
        # Static pods are named after the node; POD_NAME (the downward API) says so too.
        identity = {p: f"{p}-{NODE_NAME}" for p in pods}
        values = {p: fleet_values(*ports[p]) for p in pods}
        docs = render(CHART, values[pods[0]])
        objects = [d for d in docs if d["kind"] in FLEET_KINDS]
        check(sorted(d["kind"] for d in objects) == sorted(FLEET_KINDS),
              f"the chart's fleet objects: {[d['kind'] for d in objects]}")
        lease = next(d for d in objects if d["kind"] == "Lease")["metadata"]["name"]
        account = next(d for d in objects if d["kind"] == "ServiceAccount")["metadata"]["name"]
        user = f"system:serviceaccount:{NAMESPACE}:{account}"
        api = ApiServer(self.apiserver_bin, self.node.state / "apiserver", [user])
        try:
            api.start()
            phase(f"etcd and kube-apiserver ready on {api.url}")
            api.apply(json.dumps({"apiVersion": "v1", "kind": "Namespace",
                                  "metadata": {"name": NAMESPACE}}))
            api.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
            # The sidecars' credentials: the chart's ServiceAccount's user, by token, in a
            # kubeconfig each pod mounts from the node (hostPath).
            creds = self.node.state / "fleet-kubeconfig"
            creds.mkdir(mode=0o755)
            kubeconfig = api.kubeconfig(user, NAMESPACE, creds / "kubeconfig")
            holder = self.lease_holder(api, lease)
            check(holder is None, f"{lease} is held before the pods start: {holder}")
            # What the sidecars will do, as they will: read their slot as the ServiceAccount.
            api.kubectl_as(kubeconfig, "get", "lease", lease)
            for p in pods:
                write_static_pod(values[p], p, self.node.manifests,
                                 self.node.state / "config" / p, fleet_kubeconfig=kubeconfig)
            wait_for(f"{', '.join(pods)} running with every container ready",
                     lambda: all(self.all_ready(p) for p in pods), 180)
            phase(f"{len(pods)} pods ready")
            for p in pods:
                f = self.status(base[p]).get("fleet") or {}
                check(f.get("identity") == identity[p] and f.get("namespace") == NAMESPACE and
                      f.get("mode") == "coordinated" and f.get("slots_total") == 1,
                      f"{p}'s fleet status: {f}")

            watched = self.watch_fleet(pods, base, probe, phase)
            return self.fleet_verdict(api, lease, pods, identity, base, watched)
        except BaseException:
            for p in pods:
                print(self.dump(p), flush=True)
            print(api.logs(), flush=True)
            raise
        finally:
            try:
                self.stop_pods(pods)
            finally:
                api.stop()

    @staticmethod
    def lease_holder(api: ApiServer, lease: str) -> str | None:
        obj = json.loads(api.kubectl("get", "lease", lease, "-n", NAMESPACE, "-o", "json"))
        return (obj.get("spec") or {}).get("holderIdentity")

    def watch_fleet(self, pods: list[str], base: dict, probe: dict, phase) -> dict:
        """Sample every replica's /healthz (the port the kubelet probes) every 0.5 s, and
        its /status and the kubelet's restart counts every second, until every target was
        restarted and every replica gave its slot back. Fails at once when two replicas
        answer 503 in the same sample."""
        runs: dict[str, list[list[float]]] = {p: [] for p in pods}
        failing_before: set[str] = set()
        deferred: list[tuple[float, str, str, str]] = []
        peak = {p: 0 for p in pods}
        fleet: dict[str, dict] = {}
        counts: dict[str, dict] = {}
        samples = 0
        restarted: set[str] = set()
        deadline = time.monotonic() + 420
        next_status = 0.0
        while True:
            now = time.time()
            answers = {p: http_get(probe[p], timeout=2) for p in pods}
            samples += 1
            failing = {p for p, (code, _) in answers.items() if code == 503}
            check(len(failing) <= 1,
                  f"{len(failing)} replicas answered 503 at once at {clock(now)}: " +
                  "; ".join(f"{p}: {code} {body.splitlines()[:2]}" for p, (code, body) in answers.items()))
            for p in failing:
                if p in failing_before:
                    runs[p][-1][1] = now
                else:
                    runs[p].append([now, now])
                    phase(f"{p}'s /healthz 503 (restart slot held)")
            failing_before = failing
            for holder in failing:
                for p, (code, body) in answers.items():
                    note = next((line for line in body.splitlines() if "deferred:" in line), None)
                    if code == 200 and note:
                        deferred.append((now, holder, p, note))
            if time.monotonic() >= next_status:
                next_status = time.monotonic() + 1
                for p in pods:
                    st = self.status(base[p])
                    fleet[p] = st.get("fleet") or {}
                    t = next((t for t in st["targets"] if t["name"] == "app"), None)
                    fds = ((t or {}).get("sample") or {}).get("fds") or {}
                    peak[p] = max(peak[p], fds.get("open") or fds.get("allocated") or 0)
                    counts[p] = self.restarts(p)
                    check(counts[p].get("leakwatch", 0) == 0, f"{p}'s sidecar was restarted: {counts[p]}")
                    if counts[p].get("app", 0) >= 1 and p not in restarted:
                        restarted.add(p)
                        phase(f"{p}'s target restarted by the kubelet")
                done = all(counts[p].get("app", 0) >= 1 and
                           fleet[p].get("release_total", {}).get("healthy", 0) >= 1 for p in pods)
                if done:
                    phase("every target restarted, every slot given back")
                    break
            if time.monotonic() > deadline:
                raise Failed(f"not every target restarted and released in time: restarts {counts}, "
                             f"fleet {json.dumps(fleet)[:3000]}")
            time.sleep(0.5)
        return {"runs": runs, "deferred": deferred, "peak": peak, "counts": counts,
                "fleet": fleet, "samples": samples}

    def fleet_log(self, pod: str) -> list[tuple[float, str]]:
        """The sidecar's log lines, (time the runtime read them, text)."""
        out = []
        for log in sorted(Path("/var/log/pods").glob(f"*_{pod}-{NODE_NAME}_*/leakwatch/*.log")):
            for line in log.read_text(errors="replace").splitlines():
                stamp, _, rest = line.partition(" ")
                out.append((rfc3339(stamp), rest.split(" ", 2)[-1]))
        return out

    def fleet_verdict(self, api: ApiServer, lease: str, pods: list[str], identity: dict,
                      base: dict, watched: dict) -> str:
        """The assertions on what watch_fleet saw, the kubelet's pod status and log, the
        sidecars' logs and metrics, and the Lease."""
        runs, deferred, peak = watched["runs"], watched["deferred"], watched["peak"]
        # -- the kubelet's view: each target restarted once, by its liveness probe, the
        #    restarts at distinct times at least healthy_for apart.
        kubelet = {}
        for p in pods:
            st = self.statuses(self.node.pod(p))
            app, sidecar = st["app"], st["leakwatch"]
            check(app.get("restartCount") == 1 and sidecar.get("restartCount") == 0,
                  f"{p}: restart counts app {app.get('restartCount')}, leakwatch "
                  f"{sidecar.get('restartCount')}; expected 1 and 0")
            term = (app.get("lastState") or {}).get("terminated") or {}
            run = (app.get("state") or {}).get("running") or {}
            check(term.get("finishedAt") and run.get("startedAt"), f"{p}: the app's states: {app}")
            kubelet[p] = (rfc3339(term["finishedAt"]), rfc3339(run["startedAt"]))
        log = (self.node.logs / "kubelet.log").read_text(errors="replace").splitlines()
        said = {}
        for p in pods:
            kills = [l for l in log if "failed liveness probe" in l and f"/{p}-{NODE_NAME}" in l]
            app_kills = [l for l in kills if 'containerName="app"' in l]
            check(app_kills and len(app_kills) == len(kills), f"{p}: the kubelet's liveness kills: {kills}")
            message = re.search(r'containerMessage="([^"]*)"', app_kills[0])
            said[p] = (f"kube-e2e: {p}: kubelet {app_kills[0][1:21]}: "
                       f"{message.group(1) if message else app_kills[0][:300]}")
        order = sorted(pods, key=lambda p: kubelet[p][0])
        for p in order:
            print(said[p], flush=True)
        for a, b in zip(order, order[1:]):
            # Second resolution: the next kill at least healthy_for after the restart before.
            check(kubelet[b][0] >= kubelet[a][1] + FLEET_HEALTHY_FOR - 1,
                  f"{b} killed at {clock(kubelet[b][0])}, {a}'s target back at "
                  f"{clock(kubelet[a][1])}: less than healthy_for ({FLEET_HEALTHY_FOR}s) apart")
        # -- leakwatch's view: one slot taken and given back (healthy) per replica, the
        #    holds one after another, each kill within its holder's hold; no override, no
        #    fallback.
        held = {}
        evidence = []
        for p in pods:
            lines = self.fleet_log(p)
            evidence += [(t, f"{p} {l}") for t, l in lines if "fleet: restart slot" in l or
                         "/healthz now answers 503" in l]
            acquired = [t for t, l in lines if "fleet: restart slot acquired" in l]
            released = [(t, l) for t, l in lines if "fleet: restart slot released" in l]
            bad = [l for _, l in lines if "restarting without a slot" in l or
                   "API is unusable" in l or "no Kubernetes client" in l or
                   "taken by another replica" in l]
            check(len(acquired) == 1 and len(released) == 1 and
                  re.search(r'\breason="?healthy\b', released[0][1]),
                  f"{p}: slot acquired {len(acquired)}, released {[l for _, l in released]}")
            check(not bad, f"{p}: {bad}")
            held[p] = (acquired[0], released[0][0])
            kill = kubelet[p][0]
            check(held[p][0] - 1 <= kill <= held[p][1] + 1,
                  f"{p} killed at {clock(kill)}, outside its hold {clock(held[p][0])}-{clock(held[p][1])}")
        by_hold = sorted(pods, key=lambda p: held[p][0])
        check(by_hold == order, f"the holds' order {by_hold}, the kills' {order}")
        for a, b in zip(by_hold, by_hold[1:]):
            check(held[b][0] >= held[a][1], f"{b} took the slot at {clock(held[b][0])}, before "
                  f"{a} gave it back at {clock(held[a][1])}")
        # -- the sampled /healthz: each replica failed in one run, never two at once (checked
        #    in every sample), the runs at least healthy_for apart; a deferred replica said so
        #    while another held the slot.
        for p in pods:
            check(len(runs[p]) == 1, f"{p}'s runs of 503: {[[clock(a), clock(b)] for a, b in runs[p]]}")
        by_run = sorted(pods, key=lambda p: runs[p][0][0])
        check(by_run == order, f"the 503 runs' order {by_run}, the kills' {order}")
        gaps = [runs[b][0][0] - runs[a][0][1] for a, b in zip(by_run, by_run[1:])]
        check(all(g >= FLEET_HEALTHY_FOR - 1 for g in gaps), f"gaps between the 503 runs: {gaps}")
        named = [d for d in deferred if f"held by {identity[d[1]]}" in d[3]]
        check(named, f"no deferred replica named the holder while it held the slot: {deferred[:3]}")
        waiting = sorted({d[2] for d in named})
        # -- no EMFILE: the targets' fds (leakwatch's samples) stayed under the limit, and
        #    no target logged an error.
        for p in pods:
            check(0 < peak[p] < DEMO_NOFILE, f"{p}: peak {peak[p]} fds")
            self.no_emfile(p)
        # -- the metrics agree.
        for p in pods:
            m = {k: self.metric(f"leakwatch_fleet_{k}", f'group="demo",{lbl}', base[p])
                 for k, lbl in (("acquire_total", 'result="acquired"'),
                                ("release_total", 'reason="healthy"'),
                                ("mode", 'mode="coordinated"'))}
            overrides = sum(self.metric("leakwatch_fleet_override_total", f'group="demo",reason="{r}"',
                                        base[p]) or 0 for r in ("deadline", "max_wait", "fallback_stagger"))
            check(m["acquire_total"] == 1 and m["release_total"] == 1 and m["mode"] == 1 and
                  overrides == 0, f"{p}'s fleet metrics: {m}, overrides {overrides}")
        # -- the Lease: free, taken three times.
        obj = json.loads(api.kubectl("get", "lease", lease, "-n", NAMESPACE, "-o", "json"))
        spec = obj.get("spec") or {}
        check(not spec.get("holderIdentity") and spec.get("leaseTransitions") == len(pods),
              f"{lease} at the end: {spec}")
        for _, line in sorted(evidence):
            print(f"kube-e2e: {line}", flush=True)
        t0 = min(held[p][0] for p in pods)
        timeline = "; ".join(
            f"{p} held +{held[p][0] - t0:.1f}..+{held[p][1] - t0:.1f}s, 503 +{runs[p][0][0] - t0:.1f}.."
            f"+{runs[p][0][1] - t0:.1f}s, killed +{kubelet[p][0] - t0:.0f}s, back "
            f"+{kubelet[p][1] - t0:.0f}s, peak {peak[p]} fds" for p in order)
        ex = named[0]
        return (f"{len(pods)} replicas, 1 slot: the kubelet restarted each target once, one at a "
                f"time, no EMFILE ({timeline}); never two /healthz 503 in {watched['samples']} "
                f"samples; deferred while another held the slot: {', '.join(waiting)} (e.g. "
                f"{ex[2]}: \"{ex[3].strip()}\"); {lease} taken {spec.get('leaseTransitions')} "
                f"times, free at the end")


SCENARIOS = {
    "demo-native": lambda s: s.demo("demo-native", "native"),
    "demo-classic": lambda s: s.demo("demo-classic", "classic"),
    "target-other-uid": lambda s: s.other_uid("target-other-uid"),
    "sidecar-sigstop": lambda s: s.sigstop("sidecar-sigstop"),
    "fleet-restarts": lambda s: s.fleet("fleet-restarts"),
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--kubelet", type=Path, required=True)
    parser.add_argument("--image", type=Path, action="append", required=True)
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    parser.add_argument("--apiserver", type=Path,
                        help="etcd and kube-apiserver (tests/e2e/apiserver/build.sh's directory)")
    args = parser.parse_args()
    chosen = args.scenario or list(SCENARIOS)

    node = Node(args.state, args.kubelet, args.image)
    # A TERM or INT from run.sh still tears the node down.
    def on_signal(sig, _frame):
        raise KeyboardInterrupt(f"signal {sig}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    failed, passed = [], []
    try:
        started = time.monotonic()
        node.start()
        versions = node.versions()
        print(f"kube-e2e: node up in {time.monotonic() - started:.0f}s: {json.dumps(versions)}",
              flush=True)
        (args.state / "versions.json").write_text(json.dumps(versions))
        scenarios = Scenarios(node, args.apiserver)
        for name in chosen:
            t0 = time.monotonic()
            try:
                summary = SCENARIOS[name](scenarios)
                passed.append(name)
                print(f"kube-e2e: PASS {name} ({time.monotonic() - t0:.0f}s): {summary}",
                      flush=True)
            except (Failed, NodeError, Exception) as e:  # noqa: BLE001 - report and go on
                failed.append(name)
                print(f"kube-e2e: FAIL {name} ({time.monotonic() - t0:.0f}s): {e}", flush=True)
                if not isinstance(e, (Failed, NodeError, ApiServerError)):
                    traceback.print_exc()
                print(scenarios.dump(name), flush=True)
                print(node.tail_logs(), flush=True)
                try:
                    scenarios.stop_pod(name)
                except Exception as stop_error:  # noqa: BLE001
                    print(f"kube-e2e: could not remove pod {name}: {stop_error}", flush=True)
    except (NodeError, KeyboardInterrupt) as e:
        failed.append("node")
        print(f"kube-e2e: FAIL node: {e}", flush=True)
        print(node.tail_logs(), flush=True)
    finally:
        problems = node.stop()
        for p in problems:
            print(f"kube-e2e: FAIL cleanup: {p}", flush=True)
        if problems:
            failed.append("cleanup")
    print(f"kube-e2e: {len(passed)}/{len(chosen)} scenarios passed" +
          (f"; failed: {', '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
