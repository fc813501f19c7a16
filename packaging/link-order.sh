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
# exit. With LEAKWATCH_APISERVER_DIR (the directory tests/e2e/apiserver/build.sh prints),
# a second daemon also coordinates its restart through a real etcd and kube-apiserver on
# 127.0.0.1 ([fleet]: the client, TLS, the Lease polled, taken when the rule fails); the
# functions only it ran follow the others, so a sidecar without [fleet] maps none. Not
# profiled: actions, inspect and backtest (one-shot commands, whose memory does not stay).
#
# Needs valgrind, curl and python3 (and openssl and kubectl with the API server).
# Usage: [LEAKWATCH_APISERVER_DIR=DIR] bash packaging/link-order.sh
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
api=""
cleanup() {
    [ -n "$daemon" ] && kill "$daemon" 2>/dev/null || true
    [ -n "$child" ] && kill "$child" 2>/dev/null || true
    if [ -n "$api" ]; then
        kill "$api" 2>/dev/null || true
        wait "$api" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

fleet=""
if [ -n "${LEAKWATCH_APISERVER_DIR:-}" ]; then
    # The kubelet e2e's API server (tests/e2e/kubelet/apiserver.py) and one slot Lease,
    # until this script ends it (TERM; etcd and kube-apiserver die with it).
    python3 - "$LEAKWATCH_APISERVER_DIR" "$work/api" <<'EOF' &
import signal, sys, time
from pathlib import Path
sys.path.insert(0, "tests/e2e/kubelet")
from apiserver import ApiServer
server = ApiServer(Path(sys.argv[1]), Path(sys.argv[2]), [])
signal.signal(signal.SIGTERM, lambda *_: (server.stop(), sys.exit(0)))
server.start()
server.apply("""apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: leakwatch-link-order-slot-0, namespace: default}
""")
(Path(sys.argv[2]) / "ready").write_text(str(server.kubeconfig("admin", "default")))
while True:
    time.sleep(1)
EOF
    api=$!
    for _ in $(seq 120); do
        [ -f "$work/api/ready" ] && break
        kill -0 "$api" 2>/dev/null || { echo "link-order.sh: the API server did not start" >&2; exit 1; }
        sleep 1
    done
    [ -f "$work/api/ready" ] || { echo "link-order.sh: the API server was not ready in 120 s" >&2; exit 1; }
    # Valgrind slows the client (TLS above all): a generous timeout per request, which
    # must be within the lease duration.
    fleet=$(printf '[fleet]\ngroup = "link-order"\nkubeconfig = "%s"\nidentity = "link-order"\nlease_duration = "60s"\napi_timeout = "30s"\n' \
        "$(cat "$work/api/ready")")
fi

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# profile NAME [TOML]: one daemon (TOML added to its config) under callgrind, its profile
# in $work/NAME.out.
profile() {
    local name=$1 extra=${2:-}
    "$bin" demo-child --nofile 200 --files 120 --established 4 --close-wait 2 --recv-threads 2 \
        --leak-every 300ms --max-seconds 300 </dev/null >"$work/$name-child.log" 2>&1 &
    child=$!
    local port probe
    port=$(free_port)
    probe=$(free_port)
    cat >"$work/$name.toml" <<EOF
interval = "1s"
listen = "127.0.0.1:$port"
probe_listen = "127.0.0.1:$probe"
[judge]
window = "10s"
min_samples = 5
warmup = "0s"
$extra
[[target]]
name = "profiled"
pid = $child
EOF
    timeout 300 valgrind --tool=callgrind --demangle=no --dump-instr=no \
        --callgrind-out-file="$work/$name.out" \
        "$bin" run -c "$work/$name.toml" >"$work/$name-daemon.log" 2>&1 &
    daemon=$!

    # Valgrind runs the daemon some 50 times slower: let it start, then ask while it judges.
    for _ in $(seq 60); do
        curl -s -m 2 "http://127.0.0.1:$port/livez" >/dev/null 2>&1 && break
        sleep 1
    done
    local round path
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
}
get() { curl -s -m 10 "$@" >/dev/null || true; }

profile daemon
profiles=("$work/daemon.out")
if [ -n "$fleet" ]; then
    profile fleet "$fleet"
    profiles+=("$work/fleet.out")
fi

python3 - "$bin" packaging/link-order.txt "${profiles[@]}" <<'EOF'
"""The functions callgrind saw run that are the binary's own (not libc's): those of the
first profile sorted, then those only the next one ran (the fleet's client), sorted: a
sidecar without [fleet] then maps none of the client's pages."""
import re
import subprocess
import sys

binary, out, *profiles = sys.argv[1:]
nm = subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True,
                    check=True).stdout
own = {p[2] for p in (l.split() for l in nm.splitlines()) if len(p) == 3 and p[1] in "tTwW"}
names, seen = [], set()
for profile in profiles:
    ran = set()
    with open(profile) as f:
        for line in f:
            m = re.match(r"c?fn=\(\d+\) (\S+)", line)
            if m:
                # callgrind marks recursion depth as NAME'2
                ran.add(re.sub(r"'\d+$", "", m.group(1)))
    new = sorted((ran & own) - seen)
    names += new
    seen |= set(new)
    print(f"link-order.sh: {len(new)} functions from {profile.rsplit('/', 1)[-1]}")
with open(out, "w") as f:
    f.write("".join(n + "\n" for n in names))
print(f"link-order.sh: {len(names)} functions to {out}")
EOF
