#!/usr/bin/env python3
"""What a psutil user would poll for the same picture: psutil_poll.py PID POLLS ROUNDS [SPACING_MS].

One poll: num_fds, the TCP connections of the process (psutil joins the namespace's
/proc/net/tcp{,6} with the process's fds), memory_info and num_threads. Prints one JSON line
per round like benches/poll.rs (CPU from getrusage of this process). With SPACING_MS it
sleeps that long between polls (a monitor polling at that interval, its caches partly cold)
and counts CPU and wall only around each poll.
"""
import json
import resource
import sys
import time

import psutil

pid, polls, rounds = (int(a) for a in sys.argv[1:4])
spacing = int(sys.argv[4]) / 1e3 if len(sys.argv) > 4 else 0
p = psutil.Process(pid)
connections = getattr(p, "net_connections", None) or p.connections


def poll():
    fds = p.num_fds()
    conns = connections(kind="tcp")
    p.memory_info()
    p.num_threads()
    est = sum(1 for c in conns if c.status == psutil.CONN_ESTABLISHED)
    cw = sum(1 for c in conns if c.status == psutil.CONN_CLOSE_WAIT)
    return fds, est, cw


poll()


def cpu_s():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


for _ in range(rounds):
    if spacing:
        cpu = wall = 0.0
        for _ in range(polls):
            time.sleep(spacing)
            c0, w0 = cpu_s(), time.monotonic()
            fds, est, cw = poll()
            wall += time.monotonic() - w0
            cpu += cpu_s() - c0
        cpu, wall = cpu * 1e3 / polls, wall * 1e3 / polls
    else:
        c0, w0 = cpu_s(), time.monotonic()
        for _ in range(polls):
            fds, est, cw = poll()
        wall = (time.monotonic() - w0) * 1e3 / polls
        cpu = (cpu_s() - c0) * 1e3 / polls
    # VmHWM, not ru_maxrss: that would include the parent's RSS from before execve.
    hwm = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
    print(json.dumps({"tool": "psutil", "cpu_ms": cpu, "wall_ms": wall,
                      "maxrss_kib": hwm, "fds": fds, "established": est,
                      "close_wait": cw, "spacing_ms": int(spacing * 1e3)}), flush=True)
