#!/bin/bash
# Writes packaging/link-order.txt: the functions of the release binary that a running
# daemon executes, which build.rs has the linker lay out together (docs/performance.md,
# "The link order"). Run it after a rustc or dependency update, when tests/link_order.rs
# says the list is stale, and commit the list.
#
# What it profiles, under `valgrind --tool=callgrind` (about a minute): `leakwatch run` at a
# 1 s interval watching a demo-child that leaks a CLOSE_WAIT socket every 300 ms from 120
# files and a few sockets and stuck workers, until its fds rule fails; every endpoint on
# the main and the probe listener, /metrics in both formats; a SIGHUP reload; the target's
# exit. Not profiled: the fleet's client (it needs a Kubernetes API), actions, inspect and
# backtest (one-shot commands, whose memory does not stay).
#
# Needs valgrind, curl and python3. Usage: bash packaging/link-order.sh
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in valgrind curl python3; do
    command -v "$tool" >/dev/null || { echo "link-order.sh: needs $tool" >&2; exit 1; }
done
cargo build --release --locked --bin leakwatch
bin=target/release/leakwatch
work=$(mktemp -d)
child=""
daemon=""
cleanup() {
    [ -n "$daemon" ] && kill "$daemon" 2>/dev/null || true
    [ -n "$child" ] && kill "$child" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

"$bin" demo-child --nofile 200 --files 120 --established 4 --close-wait 2 --recv-threads 2 \
    --leak-every 300ms --max-seconds 300 </dev/null >"$work/child.log" 2>&1 &
child=$!
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
probe=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/leakwatch.toml" <<EOF
interval = "1s"
listen = "127.0.0.1:$port"
probe_listen = "127.0.0.1:$probe"
[judge]
window = "10s"
min_samples = 5
warmup = "0s"
[[target]]
name = "profiled"
pid = $child
EOF
timeout 300 valgrind --tool=callgrind --demangle=no --dump-instr=no \
    --callgrind-out-file="$work/callgrind.out" \
    "$bin" run -c "$work/leakwatch.toml" >"$work/daemon.log" 2>&1 &
daemon=$!

get() { curl -s -m 10 "$@" >/dev/null || true; }
# Valgrind runs the daemon some 50 times slower: let it start, then ask while it judges.
for _ in $(seq 60); do
    curl -s -m 2 "http://127.0.0.1:$port/livez" >/dev/null 2>&1 && break
    sleep 1
done
for round in $(seq 12); do
    get "http://127.0.0.1:$port/metrics"
    get -H 'Accept: application/openmetrics-text;version=1.0.0' "http://127.0.0.1:$port/metrics"
    for path in healthz livez readyz status nope; do
        get "http://127.0.0.1:$port/$path"
    done
    for path in healthz livez readyz; do
        get "http://127.0.0.1:$probe/$path"
    done
    [ "$round" = 6 ] && kill -HUP "$daemon"
    sleep 2
done
kill "$child"
child=""
sleep 5
kill -TERM "$daemon"
wait "$daemon" || true
daemon=""

python3 - "$work/callgrind.out" "$bin" packaging/link-order.txt <<'EOF'
"""The functions callgrind saw run that are the binary's own (not libc's), sorted."""
import re
import subprocess
import sys

profile, binary, out = sys.argv[1:]
ran = set()
with open(profile) as f:
    for line in f:
        m = re.match(r"c?fn=\(\d+\) (\S+)", line)
        if m:
            # callgrind marks recursion depth as NAME'2
            ran.add(re.sub(r"'\d+$", "", m.group(1)))
nm = subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True,
                    check=True).stdout
own = {p[2] for p in (l.split() for l in nm.splitlines()) if len(p) == 3 and p[1] in "tTwW"}
names = sorted(ran & own)
with open(out, "w") as f:
    f.write("".join(n + "\n" for n in names))
print(f"link-order.sh: {len(names)} functions to {out}")
EOF
