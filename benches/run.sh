#!/usr/bin/env bash
# The performance comparison in one command (docs/performance.md; dated runs in benches/RESULTS.md):
#
#   bash benches/run.sh            # the full run: 1k, 10k and the largest fd count NOFILE
#                                  # allows, then 100k background sockets; the daemon's
#                                  # real tick and its cgroup memory; ~14 minutes
#   bash benches/run.sh --only tick,memory   # only those sections (see bench.py --help)
#   bash benches/run.sh --smoke    # a check that the whole pipeline works (< 60 s; debug
#                                  # build, small sizes, one round: its figures mean nothing)
#
# Builds leakwatch and benches/poll.rs (release), compiles the C floor (benches/floor.c)
# with gcc, puts psutil in a venv under target/bench-venv, installs wrk and iproute2 from
# Debian when missing (as root), and prints the docs' table. Extra arguments go to
# benches/bench.py (e.g. --rounds 9, --sizes 1000,max, --background 0, --only tick).
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
cd "$(dirname "$0")/.."

smoke=0
args=()
for a in "$@"; do
    if [ "$a" = --smoke ]; then smoke=1; else args+=("$a"); fi
done

need=()
command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
command -v ss >/dev/null 2>&1 || need+=(iproute2)
[ $smoke = 1 ] || command -v wrk >/dev/null 2>&1 || need+=(wrk)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
    else
        echo "missing: ${need[*]} (install them, or run as root)" >&2
        exit 1
    fi
fi

out=target/bench
mkdir -p "$out"
# The smoke run checks the pipeline, not the speed: the debug build CI already has.
if [ $smoke = 1 ]; then build=(cargo build); bin=target/debug; else
    build=(cargo build --release); bin=target/release; fi
# Building the poll bench turns on the crate's test-support feature (its dev-dependency on
# itself), and cargo relinks target/*/leakwatch with it. The full run measures the binary
# users get (the release build, in its link order), so it builds leakwatch after the bench;
# the smoke run keeps the debug build that the tests use, as they built it.
if [ $smoke = 1 ]; then "${build[@]}" --locked --bin leakwatch >&2; fi
poll=$("${build[@]}" --locked --bench poll --message-format=json 2>/dev/null |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "poll" and m.get("executable"):
        print(m["executable"])')
if [ $smoke = 0 ]; then "${build[@]}" --locked --bin leakwatch >&2; fi
gcc -O2 -Wall -o "$out/floor" benches/floor.c

python=""
venv=target/bench-venv
if [ $smoke = 0 ] || [ -x "$venv/bin/python" ]; then
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import psutil' 2>/dev/null; then
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q psutil >&2
    fi
    python="$venv/bin/python"
fi

common=(--leakwatch "$bin/leakwatch" --poll "$poll" --floor "$out/floor"
    --json "$out/results.json")
[ -n "$python" ] && common+=(--python "$python")
if [ $smoke = 1 ]; then
    echo "benches/run.sh --smoke: checks that the pipeline runs; a debug build's figures mean nothing"
    exec python3 benches/bench.py "${common[@]}" --sizes 200,1000 --background 2000 \
        --rounds 1 --idle-seconds 6 --wrk-seconds 0 --tick-size 1000 --tick-seconds 2 \
        --memory-sizes 1000,2000 --memory-settle 1 --flood-seconds 0 "${args[@]}"
fi
exec python3 benches/bench.py "${common[@]}" "${args[@]}"
