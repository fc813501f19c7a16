#!/usr/bin/env python3
"""leakwatch's poll against the floor, psutil and `ss -tanp`: run by benches/run.sh.

For each size (total fds of one synthetic target: half of its fds loopback TCP sockets,
half of those ESTABLISHED and half CLOSE_WAIT, the rest /dev/null) and optionally again
with background sockets held by other processes in the same network namespace, every tool
polls the same target in the same run: CPU per poll (getrusage: user + system), wall per
poll, peak RSS; medians over the rounds. Then leakwatch's own steady RSS and idle CPU as a
daemon over a minute at the default interval, and /healthz latency under wrk while it
polls the largest target. Prints a Markdown table (docs/performance.md's) and which targets hold.

Two more sections (issue 15), on the `--tick-size` target (the largest by default):
- `tick`: the CPU a user pays per tick of `leakwatch run` at a 1 s interval: the whole
  daemon process (every thread) over `--tick-seconds`, divided by the ticks it did in that
  time (its `leakwatch_ticks_total`), with the target alone in its cgroup and then sharing
  it with another process; against the floor and psutil on the same target in the same run,
  both polling 1 s apart as the daemon does (CPU counted around each poll) and back-to-back.
- `memory`: `leakwatch run`'s own cgroup memory (kernel objects included: the dentries and
  inodes a readlink walk of the target's fds charges to it) while the target it watches
  grows through `--memory-sizes` fds.
And `flood` (issue 4 of the HTTP series): a fresh `/healthz` on the main listener (no
probe listener: the systemd and plain-process case) while `wrk -t2 -c1000` floods
`/metrics`, leakwatch polling a demo child every second: the probes' p50/p99/max with and
without the flood, wrk's rate, and leakwatch's CPU meanwhile.
`--only idle,table,tick,memory,flood` picks sections (all by default).
"""
import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
PSUTIL_POLL = os.path.join(HERE, "psutil_poll.py")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Cgroup:
    """A cgroup v2 directory of its own (a service's unit or container), if we may make one."""

    def __init__(self, name):
        self.path = None
        for mnt in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
            if os.path.exists(os.path.join(mnt, "cgroup.procs")):
                path = os.path.join(mnt, f"leakwatch-bench-{name}-{os.getpid()}")
                try:
                    os.mkdir(path)
                    self.path = path
                except OSError:
                    pass
                break

    def wrap(self, argv):
        if not self.path:
            return argv
        return ["sh", "-c", f'echo $$ > {self.path}/cgroup.procs && exec "$@"', "sh"] + argv

    def remove(self):
        if self.path:
            for _ in range(100):
                try:
                    os.rmdir(self.path)
                    return
                except OSError:
                    time.sleep(0.05)


class Child:
    """`leakwatch demo-child` holding sockets and files; killed by its pid."""

    def __init__(self, leakwatch, cgroup, files=0, established=0, close_wait=0, peers=4,
                 nofile=None, seconds=1800):
        argv = [leakwatch, "demo-child", "--files", str(files), "--established",
                str(established), "--close-wait", str(close_wait), "--peers", str(peers),
                "--max-seconds", str(seconds)]
        if nofile:
            argv += ["--nofile", str(nofile)]
        self.proc = subprocess.Popen(cgroup.wrap(argv), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("ready "):
            self.stop()
            raise RuntimeError(f"demo-child did not start: {line!r}")
        self.pid = json.loads(line[6:])["pid"]

    def command(self, line):
        """One stdin command (`files 100`); raises unless the child answers `ok`."""
        self.proc.stdin.write(f"{line}\n".encode())
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline().decode().strip()
        if reply != "ok":
            raise RuntimeError(f"demo-child: {line!r}: {reply!r}")

    def grow(self, old_total, new_total):
        """From target_mix(old_total) to target_mix(new_total): the same mix, more of it."""
        (f0, p0, c0), (f1, p1, c1) = target_mix(old_total), target_mix(new_total)
        for verb, n in (("established", p1 - p0), ("close-wait", c1 - c0), ("files", f1 - f0)):
            if n > 0:
                self.command(f"{verb} {n}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def target_mix(total, reserve=8):
    """(files, established pairs, close_wait) for `total` fds: half sockets, half of those
    ESTABLISHED (both ends held, so pairs = a quarter of the sockets)."""
    sockets = total // 2
    pairs = sockets // 4
    close_wait = sockets - 2 * pairs
    files = max(0, total - 2 * pairs - close_wait - reserve)
    return files, pairs, close_wait


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_count_quiet(pid):
    """The fd count from st_size of /proc/PID/fd (Linux >= 6.2): listing the directory would
    make the kernel build a dentry per fd, charged to us and warm for the tool measured."""
    n = os.stat(f"/proc/{pid}/fd").st_size
    return n if n > 0 else fd_count(pid)


def run_json(argv):
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return [json.loads(l) for l in out.splitlines() if l.startswith("{")]


def measure_ss(args, polls, rounds):
    return run_json([args.floor, "exec", str(polls), str(rounds), "ss", "-tanp"])


def summary(rows):
    return {
        "cpu_ms": statistics.median(r["cpu_ms"] for r in rows),
        "wall_ms": statistics.median(r["wall_ms"] for r in rows),
        "maxrss_mib": max(r["maxrss_kib"] for r in rows) / 1024,
        "rows": rows,
    }


def polls_for(total, background):
    """Polls per round: enough that a round is well above the clock's resolution."""
    n = max(3, min(40, 40000 // max(total, 1)))
    return max(2, n // 3) if background else n


def measure_all(args, pid, total, background):
    polls = polls_for(total, background)
    r = args.rounds
    tools = {}
    log(f"  leakwatch ({polls} polls x {r} rounds)")
    rows = run_json([args.poll, "--pid", str(pid), "--polls", str(polls), "--rounds", str(r)])
    tools["leakwatch"] = summary(rows)
    tools["leakwatch"]["sample"] = rows[-1]
    rows = run_json([args.poll, "--pid", str(pid), "--polls", str(polls), "--rounds", str(r),
                     "--smaps"])
    tools["leakwatch-smaps"] = summary(rows)
    rows = run_json([args.poll, "--pid", str(pid), "--polls", str(polls), "--rounds", str(r),
                     "--fd-types"])
    tools["leakwatch-fd-types"] = summary(rows)
    for mode in ("netlink", "tables"):
        log(f"  floor ({mode})")
        rows = run_json([args.floor, str(pid), str(polls), str(r), mode])
        tools[f"floor-{mode}"] = summary(rows)
        tools[f"floor-{mode}"]["sample"] = rows[-1]
    if args.python:
        log("  psutil")
        rows = run_json([args.python, PSUTIL_POLL, str(pid), str(polls), str(r)])
        tools["psutil"] = summary(rows)
        tools["psutil"]["sample"] = rows[-1]
    log("  ss -tanp")
    ss_polls = max(1, polls // 4) if background else max(1, polls // 2)
    tools["ss"] = summary(measure_ss(args, ss_polls, r))
    return tools


def start_background(args, count):
    """`count` ESTABLISHED sockets (both ends of count/2 connections) in other processes of
    the same network namespace, in a cgroup of their own (other services)."""
    cg = Cgroup("background")
    per_process = 16000  # sockets; under the hard NOFILE limit
    holders = []
    left = count
    while left > 0:
        n = min(per_process, left)
        holders.append(Child(args.leakwatch, cg, established=n // 2, peers=8,
                             nofile=args.nofile))
        left -= n
    return cg, holders


def task_cpu_ns(pid):
    """{tid: nanoseconds on CPU} of every live thread of `pid` (schedstat)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            out[tid] = int(open(f"/proc/{pid}/task/{tid}/schedstat").read().split()[0])
        except OSError:
            pass
    return out


def stat_cpu_s(pid):
    """User + system seconds of the whole process, exited threads included (10 ms steps)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def daemon_idle(args, seconds):
    """leakwatch run at the default interval on a 1,000-fd target: CPU share and RSS."""
    cg = Cgroup("idle")
    files, pairs, cw = target_mix(1000)
    child = Child(args.leakwatch, cg, files=files, established=pairs, close_wait=cw)
    d = subprocess.Popen([args.leakwatch, "run", "--pid", str(child.pid), "--listen",
                          "127.0.0.1:0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(6)  # the first tick, the runtime's threads

        # Nanoseconds on CPU of every thread (schedstat); /proc/PID/stat counts in 10 ms
        # ticks, too coarse for a minute at ~0.1%. Tokio keeps its blocking thread for
        # 10 s idle, longer than the interval, so no thread's time is lost by exiting.
        c0, t0 = sum(task_cpu_ns(d.pid).values()) / 1e9, time.monotonic()
        time.sleep(seconds)
        c1, t1 = sum(task_cpu_ns(d.pid).values()) / 1e9, time.monotonic()
        status = open(f"/proc/{d.pid}/status").read()
        kib = lambda k: int(re.search(rf"^{k}:\s+(\d+)", status, re.M).group(1))
        return {"cpu_pct": 100 * (c1 - c0) / (t1 - t0), "seconds": t1 - t0,
                "rss_mib": kib("VmRSS") / 1024, "hwm_mib": kib("VmHWM") / 1024}
    finally:
        d.kill()
        d.wait()
        child.stop()
        cg.remove()


def healthz_latency(args, pid, seconds):
    """/healthz under wrk, 64 connections, while leakwatch polls `pid` every second."""
    if not shutil.which("wrk"):
        return None
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(f'listen = "127.0.0.1:{port}"\ninterval = "1s"\n\n[[target]]\nname = "big"\n'
                f"pid = {pid}\n")
        config = f.name
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write("function delay()\n  return 10\nend\n")  # ms before each request
        paced = f.name
    d = subprocess.Popen([args.leakwatch, "run", "-c", config], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)
        result = {}
        for name, extra in (("saturated", []), ("paced", ["-s", paced])):
            out = subprocess.run(["wrk", "-t2", "-c64", f"-d{seconds}s", "--latency"] + extra
                                 + [f"http://127.0.0.1:{port}/healthz"],
                                 capture_output=True, text=True, check=True).stdout
            unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}
            pct = {}
            for p, v, u in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out,
                                      re.M):
                pct[p] = float(v) * unit[u]
            rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
            non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            result[name] = {"p50_ms": pct.get("50"), "p99_ms": pct.get("99"),
                            "rps": float(rps.group(1)) if rps else None,
                            "non_2xx": int(non2xx.group(1)) if non2xx else 0,
                            "seconds": seconds}
        status = open(f"/proc/{d.pid}/status").read()
        kib = lambda k: int(re.search(rf"^{k}:\s+(\d+)", status, re.M).group(1))
        result["rss"] = {"rss_mib": kib("VmRSS") / 1024, "hwm_mib": kib("VmHWM") / 1024}
        return result
    finally:
        d.kill()
        d.wait()
        os.unlink(config)
        os.unlink(paced)


def fresh_get(port, path="/healthz", timeout=10):
    """GET `path` on a new connection: (status, milliseconds); status 0 on failure."""
    import socket
    t = time.monotonic()
    data = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            while chunk := s.recv(65536):
                data += chunk
    except OSError:
        pass
    code = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
    return code, (time.monotonic() - t) * 1e3


def spread_ms(samples):
    """p50, p99 (nearest rank) and max of (status, ms) samples, and the statuses seen."""
    t = sorted(ms for _, ms in samples)
    rank = lambda q: t[min(len(t) - 1, max(0, -(-len(t) * q // 100) - 1))]
    return {"n": len(t), "p50_ms": rank(50), "p99_ms": rank(99), "max_ms": t[-1],
            "statuses": sorted({c for c, _ in samples})}


def probe_under_flood(args, seconds, probes=20):
    """A fresh /healthz every 0.6 s on the main listener, alone and while `wrk -t2 -c1000`
    floods /metrics, leakwatch polling a demo child (200 files, 50 connections, 20
    CLOSE_WAIT, 2 blocked threads) every second."""
    if not shutil.which("wrk"):
        return None
    child = subprocess.Popen(
        [args.leakwatch, "demo-child", "--files", "200", "--established", "50",
         "--close-wait", "20", "--recv-threads", "2", "--leak-every", "1h",
         "--max-seconds", str(seconds + 120)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)
    d = Daemon(args, child.pid)
    try:
        d.wait_ticks(3)
        body = d.get("/metrics") or ""
        quiet = []
        for _ in range(probes):
            quiet.append(fresh_get(d.port))
            time.sleep(0.1)
        wrk = subprocess.Popen(["wrk", "-t2", "-c1000", f"-d{seconds}s", "--timeout", "10s",
                                f"http://127.0.0.1:{d.port}/metrics"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(3)  # wrk's 1,000 connections open and busy
        cpu0, t0 = stat_cpu_s(d.pid), time.monotonic()
        flood = []
        for _ in range(probes):
            if time.monotonic() > t0 + seconds - 4:
                break
            flood.append(fresh_get(d.port))
            time.sleep(0.6)
        cpu = (stat_cpu_s(d.pid) - cpu0) / (time.monotonic() - t0)
        out = wrk.communicate()[0]
        rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
        errors = re.search(r"Socket errors:.*", out)
        return {"seconds": seconds, "metrics_bytes": len(body.encode()),
                "quiet": spread_ms(quiet), "flood": spread_ms(flood),
                "wrk_rps": float(rps.group(1)) if rps else None,
                "wrk_errors": errors.group(0) if errors else None,
                "cpu_cores": cpu, "ticks": d.ticks(),
                "skipped": d.metric("leakwatch_ticks_skipped_total")}
    finally:
        d.stop()
        child.kill()
        child.wait()


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def die_with_parent():
    """In a child before exec: SIGKILL it when bench.py dies, whatever kills bench.py."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL


class Daemon:
    """`leakwatch run` at a 1 s interval on one pid, serving on a loopback port of its own;
    killed by its pid (and by the kernel if bench.py dies first)."""

    def __init__(self, args, pid, wrap=None, extra=""):
        self.port = free_port()
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
            f.write(f'listen = "127.0.0.1:{self.port}"\ninterval = "1s"\n{extra}\n[[target]]\n'
                    f'name = "bench"\npid = {pid}\n')
            self.config = f.name
        self.stderr = tempfile.TemporaryFile()
        argv = [args.leakwatch, "run", "-c", self.config]
        self.proc = subprocess.Popen(wrap(argv) if wrap else argv, stdout=subprocess.DEVNULL,
                                     stderr=self.stderr, preexec_fn=die_with_parent)
        self.pid = self.proc.pid

    def get(self, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.read().decode()
        except OSError as e:
            if hasattr(e, "read"):  # an HTTP error status still has a body (/healthz: 503)
                return e.read().decode()
            return None

    def metric(self, name, text=None):
        """A sample's value in /metrics (or in `text`, a scrape of it), None if absent."""
        text = self.get("/metrics") if text is None else text
        m = re.search(rf"^{name}(?:\{{[^}}]*\}})?\s+(\S+)$", text or "", re.M)
        return float(m.group(1)) if m else None

    def ticks(self):
        return self.metric("leakwatch_ticks_total")

    def wait_ticks(self, n, timeout=60):
        """Wait until leakwatch_ticks_total reaches `n`, polling /metrics every 50 ms, so we
        return just after a tick ended. None if it has no such counter."""
        start = time.monotonic()
        while time.monotonic() < start + timeout:
            if self.proc.poll() is not None:
                self.stderr.seek(0)
                raise RuntimeError(f"leakwatch run exited {self.proc.returncode}: "
                                   f"{self.stderr.read().decode()[-2000:]}")
            text = self.get("/metrics")
            t = self.metric("leakwatch_ticks_total", text or "")
            if t is not None and t >= n:
                return t
            if t is None and text is not None and time.monotonic() > start + 10:
                return None  # it has answered for 10 s, never with the counter
            time.sleep(0.05)
        raise RuntimeError(f"leakwatch run: fewer than {n} ticks in {timeout}s")

    def status_methods(self):
        """Every /status field naming how a figure was read (`...method...`), if any."""
        try:
            status = json.loads(self.get("/status") or "null")
        except ValueError:
            return {}
        found = {}

        def walk(v, path):
            if isinstance(v, dict):
                for k, x in v.items():
                    if "method" in k.lower() and not isinstance(x, (dict, list)):
                        found[f"{path}.{k}".lstrip(".")] = x
                    walk(x, f"{path}.{k}")
            elif isinstance(v, list):
                for i, x in enumerate(v):
                    walk(x, f"{path}[{i}]")

        walk(status, "")
        return found

    def rss_mib(self):
        status = open(f"/proc/{self.pid}/status").read()
        return int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1)) / 1024

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.stderr.close()
        os.unlink(self.config)


def daemon_tick(args, pid):
    """CPU per tick of `leakwatch run` (1 s interval) watching `pid`: every thread's CPU over
    --tick-seconds, divided by the ticks it did meanwhile (leakwatch_ticks_total)."""
    d = Daemon(args, pid)
    try:
        seconds = args.tick_seconds
        # Three ticks first (the first one reads more; the runtime starts its threads), then
        # start half an interval after a tick ended, so no tick straddles either end.
        k0 = d.wait_ticks(3)
        time.sleep(0.5)
        if k0 is None:
            time.sleep(2)
        tasks0, stat0, t0 = task_cpu_ns(d.pid), stat_cpu_s(d.pid), time.monotonic()
        time.sleep(seconds)
        tasks1, stat1, t1 = task_cpu_ns(d.pid), stat_cpu_s(d.pid), time.monotonic()
        k1 = d.ticks()
        if k0 is not None and k1 is not None:
            ticks, ticks_from = k1 - k0, "leakwatch_ticks_total"
        else:
            ticks, ticks_from = round(t1 - t0), "seconds / interval (no leakwatch_ticks_total)"
        exited = [t for t in tasks0 if t not in tasks1]
        if exited:  # a thread's CPU leaves schedstat with it; /proc/PID/stat keeps it
            cpu_s, cpu_from = stat1 - stat0, "/proc/PID/stat (a thread exited)"
        else:
            cpu_s = sum(v - tasks0.get(t, 0) for t, v in tasks1.items()) / 1e9
            cpu_from = "schedstat of every thread"
        dur = d.metric("leakwatch_tick_duration_seconds")
        return {"cpu_ms": 1e3 * cpu_s / max(ticks, 1), "ticks": ticks, "ticks_from": ticks_from,
                "seconds": t1 - t0, "cpu_from": cpu_from, "threads": len(tasks1),
                "skipped": d.metric("leakwatch_ticks_skipped_total"),
                "last_tick_ms": dur * 1e3 if dur is not None else None,
                "rss_mib": d.rss_mib(), "status_methods": d.status_methods()}
    finally:
        d.stop()


def wait_in_cgroup(cg, pid, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if str(pid) in open(os.path.join(cg.path, "cgroup.procs")).read().split():
            return
        time.sleep(0.02)
    raise RuntimeError(f"pid {pid} did not join {cg.path}")


def tick_cost(args, total):
    """The daemon's real tick on one target, alone in its cgroup then sharing it, against
    the floor and psutil on the same target in the same run (1 s apart and back-to-back)."""
    files, pairs, cw = target_mix(total)
    seconds = args.tick_seconds
    bound = 4 * seconds + 300  # every process here outlives the section by no more than this
    cg = Cgroup("tick")
    child = sleeper = None
    try:
        child = Child(args.leakwatch, cg, files=files, established=pairs, close_wait=cw,
                      nofile=args.nofile, seconds=bound)
        time.sleep(1)  # FINs settle
        res = {"fds": fd_count_quiet(child.pid), "interval_s": 1, "seconds": seconds,
               "cgroup": cg.path}
        # Without a cgroup of its own the target shares ours (with bench.py and the rest).
        first = "alone" if cg.path else "shared"
        log(f"  leakwatch run, target {first} in its cgroup, {seconds}s")
        res[first] = daemon_tick(args, child.pid)
        log(f"  floor, one poll a second, {seconds} polls")
        rows = run_json([args.floor, str(child.pid), str(seconds), "1", "netlink", "1000"])
        res["floor_spaced"] = summary(rows)
        if args.python:
            log(f"  psutil, one poll a second, {seconds} polls")
            rows = run_json([args.python, PSUTIL_POLL, str(child.pid), str(seconds), "1",
                             "1000"])
            res["psutil_spaced"] = summary(rows)
        polls = polls_for(total, 0)
        log(f"  floor and psutil back-to-back ({polls} polls x {args.rounds} rounds)")
        rows = run_json([args.floor, str(child.pid), str(polls), str(args.rounds), "netlink"])
        res["floor_back_to_back"] = summary(rows)
        if args.python:
            rows = run_json([args.python, PSUTIL_POLL, str(child.pid), str(polls),
                             str(args.rounds)])
            res["psutil_back_to_back"] = summary(rows)
        if cg.path:
            # Another process of ours in the target's cgroup, before the daemon starts.
            sleeper = subprocess.Popen(cg.wrap(["sleep", str(bound)]), preexec_fn=die_with_parent)
            wait_in_cgroup(cg, sleeper.pid)
            log(f"  leakwatch run, target sharing its cgroup with pid {sleeper.pid}, {seconds}s")
            res["shared"] = daemon_tick(args, child.pid)
        return res
    finally:
        if sleeper:
            sleeper.kill()
            sleeper.wait()
        if child:
            child.stop()
        cg.remove()


def own_v1_path(controller):
    """Our own cgroup path in the v1 hierarchy with `controller`, from /proc/self/cgroup."""
    for line in open("/proc/self/cgroup").read().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    return None


class MemoryCgroup(Cgroup):
    """A memory cgroup of its own for leakwatch: a v2 directory with memory.current, or else
    (a hybrid host, memory on v1) a v1 memory cgroup under ours. Both count kernel memory
    (slab: dentries, inodes) charged to its processes, not only their pages."""

    def __init__(self, name):
        super().__init__(name)
        self.v2 = bool(self.path) and os.path.exists(os.path.join(self.path, "memory.current"))
        self.kind = "v2 memory.current"
        if self.v2:
            return
        self.remove()  # a v2 directory without the memory controller
        self.path, self.kind = None, "v1 memory.usage_in_bytes"
        own = own_v1_path("memory")
        if own is None:
            return
        path = os.path.join("/sys/fs/cgroup/memory", own.lstrip("/"),
                            f"leakwatch-bench-{name}-{os.getpid()}")
        try:
            os.mkdir(path)
            self.path = path
        except OSError:
            pass

    def read(self, name):
        with open(os.path.join(self.path, name)) as f:
            return f.read()

    def usage(self):
        return int(self.read("memory.current" if self.v2 else "memory.usage_in_bytes"))

    def kernel(self):
        """The kernel's share (slab and the like), if the cgroup says."""
        try:
            if not self.v2:
                return int(self.read("memory.kmem.usage_in_bytes"))
            stat = dict(l.split() for l in self.read("memory.stat").splitlines())
            return int(stat["kernel"]) if "kernel" in stat else int(stat["slab"])
        except (OSError, KeyError, ValueError):
            return None


def memory_growth(args, sizes):
    """leakwatch run (1 s interval) in a memory cgroup of its own, watching one target that
    grows through `sizes` fds: the cgroup's memory and leakwatch's RSS at each size, a few
    ticks after the target got there."""
    mem = MemoryCgroup("memory")
    if not mem.path:
        log("  no memory cgroup can be made here: skipped")
        return None
    bound = 60 * len(sizes) + 10 * args.memory_settle * len(sizes) + 300
    tcg = Cgroup("grow")
    child = d = None
    try:
        files, pairs, cw = target_mix(sizes[0])
        child = Child(args.leakwatch, tcg, files=files, established=pairs, close_wait=cw,
                      nofile=args.nofile, seconds=bound)
        # The worst case: the fds read for their types at every tick the count changed
        # (the default is once a minute at most).
        d = Daemon(args, child.pid, wrap=mem.wrap, extra='fd_types_every = "1s"\n')
        d.wait_ticks(2)
        rows = []
        for i, size in enumerate(sizes):
            if i:
                log(f"  target grows to {size:,} fds")
                child.grow(sizes[i - 1], size)
            # Ticks at this size; if there is no tick counter, as many seconds.
            k = d.ticks()
            if k is None:
                time.sleep(args.memory_settle)
            else:
                d.wait_ticks(k + args.memory_settle)
                time.sleep(0.5)  # between ticks
            kern = mem.kernel()
            rows.append({"fds": fd_count_quiet(child.pid), "cgroup_mib": mem.usage() / 2**20,
                         "kernel_mib": kern / 2**20 if kern is not None else None,
                         "rss_mib": d.rss_mib()})
            log(f"  {rows[-1]['fds']:,} fds: cgroup {rows[-1]['cgroup_mib']:.1f} MiB, "
                f"RSS {rows[-1]['rss_mib']:.1f} MiB")
        return {"cgroup": mem.path, "counter": mem.kind, "interval_s": 1,
                "settle_ticks": args.memory_settle, "rows": rows,
                "growth_mib": rows[-1]["cgroup_mib"] - rows[0]["cgroup_mib"]}
    finally:
        if d:
            d.stop()
        if child:
            child.stop()
        tcg.remove()
        mem.remove()


def fmt(x, digits=1):
    if x is None:
        return "-"
    if x >= 100:
        return f"{x:.0f}"
    return f"{x:.{digits}f}" if x >= 1 else f"{x:.2f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--leakwatch", required=True)
    ap.add_argument("--poll", required=True)
    ap.add_argument("--floor", required=True)
    ap.add_argument("--python", help="a python with psutil; psutil is skipped without it")
    ap.add_argument("--sizes", default="1000,10000,max")
    ap.add_argument("--background", type=int, default=100000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--idle-seconds", type=int, default=60)
    ap.add_argument("--wrk-seconds", type=int, default=15)
    ap.add_argument("--json", help="also write every measurement here")
    ap.add_argument("--only", default="idle,table,tick,memory,flood",
                    help="sections to run: idle (the idle minute), table (every tool on "
                    "--sizes, --background, /healthz under wrk), tick (leakwatch run's CPU "
                    "per tick against the floor and psutil), memory (leakwatch's cgroup memory "
                    "while the target grows), flood (a fresh /healthz while wrk floods "
                    "/metrics on the same listener)")
    ap.add_argument("--flood-seconds", type=int, default=20,
                    help="the flood section's wrk run (0: skip the section)")
    ap.add_argument("--tick-size", default="max", help="the tick section's target, fds")
    ap.add_argument("--tick-seconds", type=int, default=30,
                    help="seconds (ticks at 1 s) of leakwatch run per case, and polls 1 s apart "
                    "of the floor and psutil")
    ap.add_argument("--memory-sizes", default="1000,5000,10000,max",
                    help="the fd counts the watched target grows through")
    ap.add_argument("--memory-settle", type=int, default=5,
                    help="ticks at each size before reading the memory")
    args = ap.parse_args()
    only = set(args.only.split(","))
    unknown = only - {"idle", "table", "tick", "memory", "flood"}
    if unknown:
        ap.error(f"--only: unknown section(s) {', '.join(sorted(unknown))}")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    args.nofile = hard
    largest = min(hard, 1 << 20) - 500
    size = lambda s: largest if s == "max" else int(s)
    sizes = [size(s) for s in args.sizes.split(",")]
    results = {"sizes": [], "host": os.uname().release, "nofile_hard": hard,
               "rounds": args.rounds}

    # Idle first: later scenarios leave tens of thousands of TIME_WAIT sockets behind for a
    # minute, and every sock_diag dump walks those too.
    if args.idle_seconds and "idle" in only:
        log(f"leakwatch run, idle for {args.idle_seconds}s on a 1,000-fd target")
        results["idle"] = daemon_idle(args, args.idle_seconds)
    # The new sections before the table too: they start from a host without its TIME_WAIT.
    if "tick" in only:
        total = size(args.tick_size)
        log(f"leakwatch run's tick, 1s interval, on a {total:,}-fd target")
        results["tick"] = tick_cost(args, total)
    if "memory" in only:
        msizes = [size(s) for s in args.memory_sizes.split(",")]
        log(f"leakwatch run's cgroup memory while the target grows "
            f"{' -> '.join(f'{m:,}' for m in msizes)} fds")
        results["memory"] = memory_growth(args, msizes)
    if "flood" in only and args.flood_seconds:
        log(f"a fresh /healthz while wrk -t2 -c1000 floods /metrics for {args.flood_seconds}s")
        results["flood"] = probe_under_flood(args, args.flood_seconds)
    scenarios = [(s, 0) for s in sizes] if "table" in only else []
    if args.background and scenarios:
        scenarios.append((max(sizes), args.background))
    background = None
    try:
        for total, bg in scenarios:
            if bg and background is None:
                log(f"starting {bg} background sockets ...")
                background = start_background(args, bg)
            files, pairs, cw = target_mix(total)
            cg = Cgroup("target")
            log(f"target: {total} fds ({2 * pairs} ESTABLISHED, {cw} CLOSE_WAIT), "
                f"{bg} background sockets")
            child = Child(args.leakwatch, cg, files=files, established=pairs, close_wait=cw,
                          nofile=hard)
            try:
                time.sleep(1)  # FINs settle
                fds = fd_count(child.pid)
                tools = measure_all(args, child.pid, total, bg)
                entry = {"fds": fds, "background": bg, "tools": tools}
                if bg == 0 and total == max(sizes) and args.wrk_seconds:
                    log("  /healthz under wrk")
                    entry["healthz"] = healthz_latency(args, child.pid, args.wrk_seconds)
                results["sizes"].append(entry)
            finally:
                child.stop()
                cg.remove()
    finally:
        if background:
            cg, holders = background
            for h in holders:
                h.stop()
            cg.remove()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    print_report(results)
    # Timing targets are reported, not enforced: a noisy machine must not fail a run.
    return 0


def print_report(res):
    out = print
    out(f"Linux {res['host']}, {os.cpu_count()} cores; CPU = user + system time per poll "
        f"(getrusage), medians of {res['rounds']} rounds; RSS = peak.\n")
    if res["sizes"]:
        out("| target fds | background sockets | tool | CPU/poll ms | wall/poll ms "
            "| peak RSS MiB | leakwatch is |")
        out("|---:|---:|---|---:|---:|---:|---|")
    names = [("leakwatch", "leakwatch"),
             ("leakwatch-smaps", "leakwatch, a tick that also reads smaps (1 in 12)"),
             ("leakwatch-fd-types", "leakwatch, a tick that also reads the fds by type (1 in 12 at most)"),
             ("floor-netlink", "floor: C, readlink + one sock_diag dump"),
             ("floor-tables", "floor: C, readlink + net/tcp{,6}"), ("psutil", "psutil"),
             ("ss", "`ss -tanp`")]
    checks = []
    largest = max((e["fds"] for e in res["sizes"]), default=0)
    for e in res["sizes"]:
        t = e["tools"]
        lw = t["leakwatch"]["cpu_ms"]
        for key, label in names:
            if key not in t:
                continue
            v = t[key]
            if key == "leakwatch":
                rel = ""
            elif key in ("leakwatch-smaps", "leakwatch-fd-types"):
                rel = f"{v['cpu_ms'] / lw:.2f}x a plain tick"
            else:
                ratio = v["cpu_ms"] / lw if lw else float("nan")
                rel = (f"{ratio:.2f}x cheaper" if ratio >= 1 else f"{1 / ratio:.2f}x the cost")
            out(f"| {e['fds']:,} | {e['background']:,} | {label} | {fmt(v['cpu_ms'], 2)} | "
                f"{fmt(v['wall_ms'], 2)} | {fmt(v['maxrss_mib'])} | {rel} |")
        bg = e["background"]
        where = f"{e['fds']:,} fds" + (f" + {bg:,} background" if bg else "")
        if bg:
            r = lw / t["floor-tables"]["cpu_ms"]
            checks.append((r <= 1.0, f"{where}: leakwatch {r:.2f}x the table-dump floor (<= 1.0)"))
            r = lw / t["floor-netlink"]["cpu_ms"]
            checks.append((None, f"{where}: leakwatch {r:.2f}x the unfiltered sock_diag floor"))
        elif e["fds"] == largest:
            r = lw / t["floor-netlink"]["cpu_ms"]
            checks.append((r <= 1.2, f"{where}: leakwatch {r:.2f}x the floor (<= 1.2)"))
        if "psutil" in t:
            r = t["psutil"]["cpu_ms"] / lw
            checks.append((r >= 3, f"{where}: psutil costs {r:.1f}x leakwatch (>= 3)"))
        r = t["ss"]["cpu_ms"] / lw
        checks.append((r >= 2, f"{where}: ss -tanp costs {r:.1f}x leakwatch (>= 2)"))
        for name, h in (e.get("healthz") or {}).items():
            if name == "rss":
                checks.append((h["rss_mib"] <= 8, f"leakwatch run: RSS {h['rss_mib']:.1f} MiB "
                               f"(peak {h['hwm_mib']:.1f}) after polling the {where} target "
                               f"every 1s under wrk (<= 8 MiB)"))
                continue
            if h.get("p99_ms") is None:
                continue
            how = ("as fast as wrk can send (2 cores shared by wrk, leakwatch and the poll)"
                   if name == "saturated" else "each connection pausing 10 ms between requests")
            checks.append((h["p99_ms"] < 1.0,
                           f"/healthz p99 {h['p99_ms']:.3f} ms, p50 {h['p50_ms']:.3f} ms at "
                           f"{h['rps']:,.0f} req/s, wrk -c64 {how}, for {h['seconds']}s while "
                           f"polling the {where} target every 1s (< 1 ms; the target is at "
                           f"97% of its fd limit, so every answer is a 503: "
                           f"{h['non_2xx']:,} non-2xx)"))
    if res.get("tick"):
        print_tick(res["tick"], checks, out)
    if "memory" in res:
        print_memory(res["memory"], checks, out)
    if res.get("flood"):
        print_flood(res["flood"], checks, out)
    idle = res.get("idle")
    if idle:
        checks.append((idle["rss_mib"] <= 8, f"leakwatch run: RSS {idle['rss_mib']:.1f} MiB "
                       f"steady (peak {idle['hwm_mib']:.1f}) (<= 8 MiB)"))
        checks.append((idle["cpu_pct"] <= 0.1, f"leakwatch run: idle CPU {idle['cpu_pct']:.3f}% "
                       f"of a core over {idle['seconds']:.0f}s at the default 5s interval on a "
                       f"1,000-fd target (<= 0.1%)"))
    out("\nTargets:\n")
    for ok, text in checks:
        mark = {True: "met", False: "NOT met", None: "info"}[ok]
        out(f"- {mark}: {text}")
    res["all_met"] = all(ok is not False for ok, _ in checks)


def print_tick(t, checks, out):
    """The daemon's real tick against the floor and psutil on the same target (issue 15)."""
    spaced = "floor_spaced" in t
    floor = t["floor_spaced" if spaced else "floor_back_to_back"]["cpu_ms"]
    ps = t.get("psutil_spaced" if spaced else "psutil_back_to_back")
    ps = ps["cpu_ms"] if ps else None
    how = "both polling 1 s apart, CPU counted around each poll" if spaced else "back-to-back"
    out(f"\n`leakwatch run`'s real tick at a 1 s interval on a {t['fds']:,}-fd target: CPU "
        f"(user + system) of the whole process, every thread, over {t['seconds']} s, divided by "
        f"the ticks it did meanwhile; the floor and psutil on the same target in the same run "
        f"(ratios against them {how}).\n")
    out("| target's cgroup | tool | CPU ms per tick or poll | how | RSS MiB | leakwatch run is |")
    out("|---|---|---:|---|---:|---|")
    cases = [("alone", "alone (the target only)"),
             ("shared", "shared (the target and a `sleep`)")]
    for key, label in cases:
        d = t.get(key)
        if not d:
            continue
        rel = f"{d['cpu_ms'] / floor:.2f}x the floor"
        if ps:
            r = ps / d["cpu_ms"]
            rel += f"; {r:.1f}x cheaper than psutil" if r >= 1 else f"; {1 / r:.1f}x psutil"
        last = (f", last tick {fmt(d['last_tick_ms'], 2)} ms wall"
                if d.get("last_tick_ms") is not None else "")
        skipped = f", {d['skipped']:.0f} skipped" if d.get("skipped") else ""
        out(f"| {label} | leakwatch run | {fmt(d['cpu_ms'], 2)} | {d['ticks']:.0f} ticks in "
            f"{d['seconds']:.1f} s ({d['ticks_from']}; CPU from {d['cpu_from']}{last}"
            f"{skipped}) | {fmt(d['rss_mib'])} | {rel} |")
    for key, label, h in (
            ("floor_spaced", "floor: C, readlink + one sock_diag dump", "1 poll/s"),
            ("floor_back_to_back", "floor: C, readlink + one sock_diag dump", "back-to-back"),
            ("psutil_spaced", "psutil", "1 poll/s"),
            ("psutil_back_to_back", "psutil", "back-to-back")):
        if key in t:
            v = t[key]
            what = (f"{t['seconds']} polls 1 s apart, CPU around each" if "spaced" in key
                    else f"median of {len(v['rows'])} rounds back-to-back")
            out(f"| - | {label}, {h} | {fmt(v['cpu_ms'], 2)} | {what} | "
                f"{fmt(v['maxrss_mib'])} (peak) | |")
    out("")
    targets = {"alone": (0.35, 6), "shared": (1.2, None)}
    for key, label in (("alone", "alone in cgroup"), ("shared", "shared cgroup")):
        d = t.get(key)
        if not d:
            continue
        y = d["cpu_ms"] / floor
        z = ps / d["cpu_ms"] if ps else None
        line = (f"leakwatch run tick ({label}): {d['cpu_ms']:.2f} ms CPU/tick, {y:.2f}x the floor"
                + (f", {z:.1f}x cheaper than psutil" if z else ", psutil not measured")
                + f" ({how}, same target, same run)")
        out(f"- {line}")
        max_floor, min_psutil = targets[key]
        checks.append((y <= max_floor, f"leakwatch run tick ({label}) on {t['fds']:,} fds: "
                       f"{d['cpu_ms']:.2f} ms CPU/tick, {y:.2f}x the floor ({how}) "
                       f"(<= {max_floor})"))
        if min_psutil and z:
            checks.append((z >= min_psutil, f"leakwatch run tick ({label}) on {t['fds']:,} fds: "
                           f"psutil costs {z:.1f}x leakwatch run ({how}) (>= {min_psutil})"))
        for k, v in sorted(d.get("status_methods", {}).items()):
            checks.append((None, f"leakwatch run ({label}): /status {k} = {v}"))
    if "alone" not in t:
        checks.append((None, "leakwatch run tick (alone in cgroup): not measured (no cgroup of "
                       "our own could be made here: the target shared bench.py's)"))


def print_flood(f, checks, out):
    """A fresh /healthz on the main listener while wrk floods /metrics (HTTP issue 4)."""
    out(f"\nA fresh `/healthz` (a new connection each, 0.6 s apart) on the main listener, "
        f"alone and while `wrk -t2 -c1000 -d{f['seconds']}s` floods `/metrics` "
        f"({f['metrics_bytes']:,} bytes) on the same listener; leakwatch polls a demo child "
        f"every 1 s.\n")
    out("| | probes | p50 ms | p99 ms | max ms | statuses |")
    out("|---|---:|---:|---:|---:|---|")
    for key, label in (("quiet", "no flood"), ("flood", "during the flood")):
        p = f[key]
        out(f"| {label} | {p['n']} | {fmt(p['p50_ms'])} | {fmt(p['p99_ms'])} | "
            f"{fmt(p['max_ms'])} | {', '.join(map(str, p['statuses']))} |")
    out(f"\nwrk: {fmt(f['wrk_rps'])} scrapes/s ({f['wrk_errors'] or 'no socket errors'}); "
        f"leakwatch's CPU meanwhile {f['cpu_cores'] * 100:.0f}% of a core; "
        f"{fmt(f['skipped'])} ticks skipped.")
    worst = f["flood"]["max_ms"]
    checks.append((worst < 1000 and f["flood"]["statuses"] == [200],
                   f"a fresh /healthz on the main listener while wrk floods /metrics over 1,000 "
                   f"connections: max {worst:.0f} ms, p50 {f['flood']['p50_ms']:.0f} ms "
                   f"(< 1 s)"))


def print_memory(m, checks, out):
    """leakwatch's own cgroup memory while the target it watches grows (issue 15)."""
    if not m:
        checks.append((None, "leakwatch cgroup memory while the target grows: not measured "
                       "(no memory cgroup could be made here)"))
        return
    out(f"\n`leakwatch run`'s own memory at a 1 s interval, in a cgroup of its own "
        f"({m['counter']}: its pages and the kernel objects charged to it, such as the dentries "
        f"and inodes of the target's fds), while the one target it watches grows; read "
        f"{m['settle_ticks']} ticks after the target reached each size.\n")
    out("| target fds | leakwatch cgroup memory MiB | of it kernel MiB | leakwatch RSS MiB |")
    out("|---:|---:|---:|---:|")
    for r in m["rows"]:
        out(f"| {r['fds']:,} | {r['cgroup_mib']:.1f} | {fmt(r['kernel_mib'])} | "
            f"{r['rss_mib']:.1f} |")
    first, last = m["rows"][0], m["rows"][-1]
    g = m["growth_mib"]
    per_fd = g * 2**20 / max(1, last["fds"] - first["fds"])
    checks.append((g <= 2, f"leakwatch cgroup memory flat within 2 MiB while the target grows "
                   f"{first['fds']:,} -> {last['fds']:,} fds: {first['cgroup_mib']:.1f} -> "
                   f"{last['cgroup_mib']:.1f} MiB ({g:+.1f} MiB, {per_fd:,.0f} bytes per fd "
                   f"added)"))


if __name__ == "__main__":
    sys.exit(main())
