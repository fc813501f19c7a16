#!/usr/bin/env python3
"""Run every test binary of `cargo test`, a few at a time, as cargo would run them.

    python3 .ci/tests.py [--jobs N] [--timeout SECONDS] [NAME ...]

Builds the tests once (`cargo test --no-run --locked`), then runs the test binaries N at a
time (3 by default), the slow ones first, each from the package's directory with
CARGO_MANIFEST_DIR set, as cargo runs them. A binary's output is printed whole when it ends,
under the line cargo prints for it (`Running tests/x.rs (target/debug/deps/x-HASH)`), so
the log reads like cargo's and `.ci/run`'s totals count it the same way. The doc tests run
last, through cargo. With NAMEs, only those binaries run (`leakwatch` is the unit tests;
no doc tests). Exits 1 when a binary failed (or outlived its timeout, when its
process group is killed), naming each one, like `cargo test --no-fail-fast`.

Why: most of the suite's time is live tests waiting on real processes (leaks at a set pace,
probes every second, a soak of thousands of ticks); cargo runs test binaries one after
another, so two cores sat mostly idle for about 15 minutes.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

# The longest binaries start first, so the pool does not end on one of them alone
# (the seconds each took alone, one after another, in a .ci/run on 2 cores, 2026-12-06).
SLOW_FIRST = [
    "live_actions",  # 123 s
    "trust_soak",  # 115 s
    "live_fleet",  # 95 s
    "trust_probe",  # 88 s
    "live_run",  # 61 s
    "leakwatch",  # 59 s: the unit tests
    "live_async",  # 43 s
    "live_surge",  # 43 s
    "live_threads_limit",  # 36 s
    "grafana_dashboard",  # 17 s
    "helm_chart",  # 13 s
    "live_demo",  # 13 s
    "backtest_recording",  # 11 s
    "trust_http",  # 10 s
]


def build(root):
    """`cargo test --no-run`: the test binaries, in cargo's order."""
    cmd = ["cargo", "test", "--locked", "--no-run", "--message-format=json-render-diagnostics"]
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, text=True)
    found = []
    for line in proc.stdout:
        try:
            m = json.loads(line)
        except ValueError:
            continue
        if m.get("reason") == "compiler-message":
            rendered = (m.get("message") or {}).get("rendered")
            if rendered:
                sys.stderr.write(rendered)
        if m.get("reason") != "compiler-artifact" or not m.get("executable"):
            continue
        if not m["profile"]["test"]:
            continue
        target = m["target"]
        src = os.path.relpath(target["src_path"], root)
        found.append((target["name"], src, m["executable"], m["manifest_path"]))
    if proc.wait() != 0:
        sys.exit(proc.returncode)
    return found


def run_one(binary, timeout, env):
    _, _, exe, manifest = binary
    started = time.monotonic()
    cwd = os.path.dirname(manifest)
    run_env = dict(env, CARGO_MANIFEST_DIR=cwd)
    with subprocess.Popen(
        [exe],
        cwd=cwd,
        env=run_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    ) as p:
        try:
            out, _ = p.communicate(timeout=timeout)
            code = p.returncode
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, _ = p.communicate()
            out += f"\n.ci/tests.py: killed after {timeout} s\n".encode()
            code = -1
    return code, out.decode("utf-8", "replace"), time.monotonic() - started


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=1200.0)
    ap.add_argument("names", nargs="*", help="only these test binaries")
    args = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    binaries = build(root)
    rank = {n: i for i, n in enumerate(SLOW_FIRST)}
    if args.names:
        binaries = [b for b in binaries if b[0] in args.names]
    order = sorted(binaries, key=lambda b: rank.get(b[0], len(rank)))
    env = dict(os.environ)
    env.setdefault("CARGO", "cargo")
    lock = threading.Lock()
    failed = []
    t0 = time.monotonic()

    def job(b):
        code, out, took = run_one(b, args.timeout, env)
        with lock:
            # As cargo prints it: relative to the tree, or whole when in a build-dir outside.
            rel = os.path.relpath(b[2], root)
            exe = b[2] if rel.startswith("..") else rel
            print(f"\n     Running {b[1]} ({exe})", flush=True)
            sys.stdout.write(out)
            print(f".ci/tests.py: {b[1]} took {took:.1f} s (exit {code})", flush=True)
            if code != 0:
                failed.append(b[1])

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        list(pool.map(job, order))
    print(
        f"\n.ci/tests.py: {len(order)} test binaries, {args.jobs} at a time, "
        f"in {time.monotonic() - t0:.0f} s",
        flush=True,
    )
    if not args.names:
        doc = subprocess.run(["cargo", "test", "--locked", "--doc"], cwd=root)
        if doc.returncode != 0:
            failed.append("doc tests")
    if failed:
        print(f"error: {len(failed)} targets failed:", flush=True)
        for f in failed:
            print(f"    {f}", flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
