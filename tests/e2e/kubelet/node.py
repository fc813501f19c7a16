"""A throwaway Kubernetes node: containerd (+ runc) and a standalone kubelet (static pods,
no API server), for the end-to-end tests in e2e.py.

It must run as root inside a private mount and network namespace (run.sh starts it under
`unshare --mount --net --propagation private`), because:
  - the kubelet and containerd hard-code /var/lib/kubelet (device-plugins), /var/log/pods,
    /var/log/containers and /run/containerd (the shims' sockets): each is bound over with a
    directory of the node's state dir, visible in this namespace only;
  - the kubelet sets host sysctls (vm.overcommit_memory, kernel.panic, ...): files holding
    their current values are bound over those /proc/sys entries, so it writes those files;
  - hostNetwork pods and every port (9717, the kubelet's 10248/10250/10255) live in this
    namespace, never on the host's network.
What lives outside the namespaces, the cgroups (this host is cgroup v1 without systemd:
cgroupfs driver, under a cgroupRoot made here in every hierarchy), is removed at `stop`.
Every process is ended by pid: the kubelet and containerd are ours, and the shims, pause
and containers are the processes left in this network namespace.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

NODE_NAME = "lw-e2e"
# TEST-NET-1 (RFC 5737), on the private network namespace's loopback interface.
NODE_IP = "192.0.2.10"
PAUSE_REF = "leakwatch.test/pause:e2e"
KUBELET_HEALTHZ = "http://127.0.0.1:10248/healthz"
KUBELET_PODS = "http://127.0.0.1:10255/pods"
CONTAINERD_SOCK = "/run/containerd/containerd.sock"
# The paths the kubelet and containerd use whatever their config says.
HARD_CODED = ["/run/containerd", "/var/lib/containerd", "/var/lib/kubelet", "/var/log/pods",
              "/var/log/containers"]
# The host sysctls the kubelet's container manager sets (setupKernelTunables).
KUBELET_SYSCTLS = ["vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic",
                   "kernel/panic_on_oops", "kernel/keys/root_maxkeys",
                   "kernel/keys/root_maxbytes"]


class NodeError(Exception):
    pass


def run(*argv: str, check: bool = True, timeout: float = 120) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise NodeError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def http_get(url: str, timeout: float = 5) -> tuple[int, str]:
    """(status, body); status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (OSError, urllib.error.URLError):
        return 0, ""


def wait_for(what: str, fn, timeout: float, every: float = 0.5):
    """Poll fn until it returns something truthy; NodeError naming `what` at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            raise NodeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def cgroup_mounts() -> dict[str, str]:
    """Every cgroup hierarchy's mount point, by its controllers (v1) or 'unified' (v2)."""
    found = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype, _, options = right.split(" ", 2)
        mount_point = left.split(" ")[4]
        if fstype == "cgroup":
            controllers = [o for o in options.split(",") if o not in ("rw", "ro", "relatime")]
            found[",".join(controllers)] = mount_point
        elif fstype == "cgroup2":
            found["unified"] = mount_point
    return found


def remove_cgroup_tree(path: Path) -> None:
    """rmdir a cgroup directory and its children, deepest first."""
    if not path.is_dir():
        return
    for child in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        child.rmdir()
    path.rmdir()


class Node:
    def __init__(self, state: Path, kubelet: Path, images: list[Path]) -> None:
        self.state = state
        self.kubelet_bin = kubelet
        self.images = images
        self.logs = state / "logs"
        self.manifests = state / "manifests"
        self.cgroup_root = f"/leakwatch-e2e-{os.getpid()}"
        self.procs: dict[str, subprocess.Popen] = {}
        self.netns = os.readlink("/proc/self/ns/net")
        self.mounts: list[str] = []

    # ---- namespace set-up ------------------------------------------------------------

    def _bind(self, source: Path, target: str) -> None:
        run("mount", "--bind", str(source), target)
        self.mounts.append(target)

    def _isolate(self) -> None:
        if os.readlink("/proc/self/ns/net") == os.readlink(f"/proc/{os.getppid()}/ns/net"):
            raise NodeError("not in a private network namespace (run under unshare --net)")
        if os.readlink("/proc/self/ns/mnt") == os.readlink(f"/proc/{os.getppid()}/ns/mnt"):
            raise NodeError("not in a private mount namespace (run under unshare --mount)")
        # The namespace has only its loopback interface: the node's address goes on it (the
        # kubelet refuses a 127/8 node IP), with a default route there for the kubelet's
        # address checks. Nothing can leave the namespace.
        run("ip", "link", "set", "lo", "up")
        run("ip", "addr", "add", f"{NODE_IP}/32", "dev", "lo")
        run("ip", "route", "add", "default", "via", NODE_IP, "dev", "lo")
        for path in HARD_CODED:
            if not Path(path).is_dir():
                raise NodeError(f"{path} must exist to be bound over (run.sh makes it)")
            own = self.state / "bind" / path.strip("/").replace("/", "-")
            own.mkdir(parents=True)
            self._bind(own, path)
        sysctl = self.state / "sysctl"
        sysctl.mkdir()
        for name in KUBELET_SYSCTLS:
            real = Path("/proc/sys") / name
            copy = sysctl / name.replace("/", ".")
            copy.write_text(real.read_text())
            self._bind(copy, str(real))

    def _make_cgroups(self) -> None:
        for controllers, mount_point in cgroup_mounts().items():
            if controllers == "unified":
                continue
            path = Path(mount_point) / self.cgroup_root.strip("/")
            path.mkdir()
            if "cpuset" in controllers.split(","):
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    (path / knob).write_text((Path(mount_point) / knob).read_text())

    # ---- the daemons -----------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.logs / f"{name}.log", "wb")
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)

    def _containerd(self) -> None:
        cni = self.state / "cni"
        (cni / "bin").mkdir(parents=True)
        (cni / "conf").mkdir()
        config = self.state / "containerd.toml"
        config.write_text(f"""\
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
  address = "{CONTAINERD_SOCK}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{self.state}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_REF}"
  # No CAP_SYS_RESOURCE here: runc cannot lower a process's oom_score_adj.
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni}/bin"
    conf_dir = "{cni}/conf"
""")
        self._spawn("containerd", ["containerd", "--config", str(config)])
        wait_for("containerd's socket",
                 lambda: Path(CONTAINERD_SOCK).is_socket() and
                 subprocess.run(["ctr", "version"], capture_output=True).returncode == 0, 60)
        for image in self.images:
            run("ctr", "-n", "k8s.io", "images", "import", str(image),
                timeout=300)

    def _kubelet(self) -> None:
        self.manifests.mkdir()
        config = self.state / "kubelet.yaml"
        config.write_text(json.dumps({
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "staticPodPath": str(self.manifests),
            "fileCheckFrequency": "1s",
            "syncFrequency": "10s",
            "address": "127.0.0.1",
            "readOnlyPort": 10255,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": 10248,
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": self.cgroup_root,
            "cgroupsPerQOS": True,
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCK}",
            # Never evict or collect images on a shared machine's disk.
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                             "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "maxPods": 10,
        }, indent=2))
        self._spawn("kubelet", [
            str(self.kubelet_bin), f"--config={config}", f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_IP}", f"--volume-plugin-dir={self.state}/volume-plugins",
            "--v=2",
        ])
        wait_for("the kubelet's /healthz", lambda: http_get(KUBELET_HEALTHZ)[0] == 200, 120)

    def start(self) -> None:
        self.logs.mkdir()
        # For run.sh, should this process die before stop(): what to sweep.
        (self.state / "netns").write_text(self.netns)
        self._isolate()
        self._make_cgroups()
        self._containerd()
        self._kubelet()

    # ---- what the node reports -------------------------------------------------------

    def versions(self) -> dict[str, str]:
        kubelet = run(str(self.kubelet_bin), "--version").strip().split()[-1]
        containerd = run("containerd", "--version").split()[2]
        runc = run("runc", "--version").splitlines()[0].split()[-1]
        return {"kubelet": kubelet, "containerd": containerd, "runc": runc,
                "kernel": os.uname().release}

    def pod(self, name: str) -> dict | None:
        """The static pod as the kubelet reports it (read-only port /pods), or None."""
        status, body = http_get(KUBELET_PODS)
        if status != 200:
            raise NodeError(f"the kubelet's /pods answered {status}")
        for pod in json.loads(body).get("items") or []:
            if pod["metadata"]["name"] == f"{name}-{NODE_NAME}":
                return pod
        return None

    def processes(self) -> list[dict]:
        """Every process of this node but this one: those in its network namespace (the
        daemons, shims and hostNetwork pods) and those in its cgroups (any pod). Each
        with pid, argv, uid, gid, effective capabilities, scheduler state and nspid."""
        found = []
        in_root = f":{self.cgroup_root}/"
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if os.readlink(entry / "ns/net") != self.netns and \
                        in_root not in (entry / "cgroup").read_text():
                    continue
                argv = (entry / "cmdline").read_bytes().split(b"\0")[:-1]
                status = dict(line.split(":\t", 1) for line in
                              (entry / "status").read_text().splitlines() if ":\t" in line)
            except OSError:
                continue
            found.append({
                "pid": int(entry.name),
                "argv": [a.decode(errors="replace") for a in argv],
                "uid": int(status["Uid"].split()[0]),
                "gid": int(status["Gid"].split()[0]),
                "cap_eff": int(status["CapEff"], 16),
                "state": status["State"].split()[0],
                # Its pid in its own (the pod's) PID namespace: what leakwatch reports.
                "nspid": int(status["NSpid"].split()[-1]),
            })
        return found

    def tail_logs(self, lines: int = 60) -> str:
        out = []
        for name in ("kubelet", "containerd"):
            path = self.logs / f"{name}.log"
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"---- last {len(text)} lines of the {name} log ----")
                out.extend(text)
        return "\n".join(out)

    # ---- tear-down -------------------------------------------------------------------

    def _end(self, pids: list[int], grace: float) -> None:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
            time.sleep(0.2)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop(self) -> list[str]:
        """End everything this node started, by pid, and remove its cgroups. Returns
        what could not be cleaned (empty when all went)."""
        problems = []
        kubelet = self.procs.get("kubelet")
        if kubelet and kubelet.poll() is None:
            self._end([kubelet.pid], 10)
            kubelet.wait(30)
        containerd = self.procs.get("containerd")
        if containerd and containerd.poll() is None:
            # Every container, sandbox and shim in this namespace; then containerd.
            others = [p["pid"] for p in self.processes() if p["pid"] != containerd.pid]
            self._end(others, 5)
            self._end([containerd.pid], 10)
            containerd.wait(30)
        deadline = time.monotonic() + 30
        while self.processes() and time.monotonic() < deadline:
            for p in self.processes():
                try:
                    os.kill(p["pid"], signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.5)
        left = self.processes()
        if left:
            problems.append(f"processes left: {left}")
        for controllers, mount_point in cgroup_mounts().items():
            path = Path(mount_point) / self.cgroup_root.strip("/")
            for attempt in range(20):
                try:
                    remove_cgroup_tree(path)
                    break
                except OSError as e:
                    if attempt == 19:
                        problems.append(f"cgroup {path}: {e}")
                    time.sleep(0.5)
        # Unmount what containerd and the kubelet mounted under the bound dirs, then ours
        # (all of it is in this namespace only and goes with it anyway).
        for line in reversed(Path("/proc/self/mountinfo").read_text().splitlines()):
            point = line.split(" ")[4]
            if any(point == m or point.startswith(m + "/") for m in HARD_CODED) or \
                    point.startswith(str(self.state) + "/"):
                subprocess.run(["umount", "-l", point], capture_output=True)
        for target in reversed(self.mounts):
            subprocess.run(["umount", "-l", target], capture_output=True)
        return problems
