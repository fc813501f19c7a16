#!/usr/bin/env python3
"""What a psutil user would poll for the same picture: psutil_poll.py PID POLLS ROUNDS.

One poll: num_fds, the TCP connections of the process (psutil joins the namespace's
/proc/net/tcp{,6} with the process's fds), memory_info and num_threads. Prints one JSON line
per round like benches/poll.rs (CPU from getrusage of this process).
"""
import json
import resource
import sys
import time

import psutil

pid, polls, rounds = (int(a) for a in sys.argv[1:4])
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
for _ in range(rounds):
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    w0 = time.monotonic()
    for _ in range(polls):
        fds, est, cw = poll()
    wall = (time.monotonic() - w0) * 1e3 / polls
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) * 1e3 / polls
    # VmHWM, not ru_maxrss: that would include the parent's RSS from before execve.
    hwm = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
    print(json.dumps({"tool": "psutil", "cpu_ms": cpu, "wall_ms": wall,
                      "maxrss_kib": hwm, "fds": fds, "established": est,
                      "close_wait": cw}), flush=True)
