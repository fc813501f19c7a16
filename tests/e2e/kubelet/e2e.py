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
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from node import Node, NodeError, http_get, wait_for  # noqa: E402
from static_pod import write_static_pod  # noqa: E402

LEAKWATCH = "http://127.0.0.1:9717"
CAP_DAC_READ_SEARCH = 1 << 2
CAP_SYS_PTRACE = 1 << 19
DEMO_NOFILE = 256
# The pod's uid in the chart's default values.
POD_UID = 65532


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


class Scenarios:
    def __init__(self, node: Node) -> None:
        self.node = node

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
        (self.node.manifests / f"{name}.json").unlink(missing_ok=True)
        wait_for(f"pod {name} gone", lambda: self.node.pod(name) is None, 120)
        wait_for(f"pod {name}'s processes gone",
                 lambda: not [p for p in self.node.processes()
                              if p["argv"][:1] == ["/usr/bin/leakwatch"]], 60)
        # The kubelet counts restarts from the log directories it finds: a later pod of
        # the same name must start from zero.
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
    def status() -> dict:
        code, body = http_get(f"{LEAKWATCH}/status")
        check(code == 200, f"leakwatch /status answered {code}: {body[:300]}")
        return json.loads(body)

    @staticmethod
    def metric(name: str, labels: str) -> float | None:
        code, body = http_get(f"{LEAKWATCH}/metrics")
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


SCENARIOS = {
    "demo-native": lambda s: s.demo("demo-native", "native"),
    "demo-classic": lambda s: s.demo("demo-classic", "classic"),
    "target-other-uid": lambda s: s.other_uid("target-other-uid"),
    "sidecar-sigstop": lambda s: s.sigstop("sidecar-sigstop"),
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--kubelet", type=Path, required=True)
    parser.add_argument("--image", type=Path, action="append", required=True)
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
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
        scenarios = Scenarios(node)
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
                if not isinstance(e, (Failed, NodeError)):
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
