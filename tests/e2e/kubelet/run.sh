#!/usr/bin/env bash
# The Kubernetes end-to-end tests: the chart's pod run by a real kubelet on containerd and
# runc, on this machine, leaving it as it was. Called by .ci/run; needs root.
#
#   bash tests/e2e/kubelet/run.sh [--scenario NAME ...]     # from the repository root
#
# Phases (each timed): Debian's containerd and runc when missing; the kubelet, built from
# source once per version (build-kubelet.sh, cached under $LEAKWATCH_E2E_CACHE, default
# /var/cache/leakwatch-e2e); etcd and kube-apiserver for the fleet scenario, likewise
# (tests/e2e/apiserver/build.sh; the scenario also needs openssl and kubectl); the images,
# packed here (tests/e2e/image/pack_image.py; the leakwatch binary from `cargo build
# --release`); the scenarios (e2e.py), run inside a private mount and network namespace.
# Afterwards it checks that no process of the node is left, that the host's mounts, the
# sysctls the kubelet sets and the cgroup hierarchies are as they were, and removes its
# state.
#
# Environment: KUBE_VERSION (default in build-kubelet.sh), LEAKWATCH_HELM_PYTHON (a Python
# with helm-python-sdk, as .ci/run sets; default target/ci-venv/bin/python),
# LEAKWATCH_E2E_KEEP=1 keeps the state dir (logs) after a failure.
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
cd "$(dirname "$0")/../../.."
here=tests/e2e/kubelet
# No __pycache__ in the work tree (e2e.py imports helm/tests/check_chart.py).
export PYTHONDONTWRITEBYTECODE=1

if [ "$(id -u)" != 0 ]; then
    echo "kube-e2e: needs root (containerd, mount and network namespaces)" >&2
    exit 1
fi

phase_start=0
phase() {
    local now
    now=$(date +%s)
    if [ -n "${phase_name:-}" ]; then
        echo "kube-e2e: phase '$phase_name' took $((now - phase_start))s"
    fi
    phase_name=$1
    phase_start=$now
}

phase "containerd and runc"
need=()
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
command -v ctr >/dev/null || need+=(containerd)
command -v unshare >/dev/null || need+=(util-linux)
command -v ip >/dev/null || need+=(iproute2)
command -v gcc >/dev/null || need+=(gcc libc6-dev)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

phase "kubelet build (cached)"
kubelet=$(bash "$here/build-kubelet.sh" | tail -n 1)

# etcd and kube-apiserver for the fleet-restarts scenario (the restart-slot Leases).
phase "API server build (cached)"
apiserver=$(bash tests/e2e/apiserver/build.sh | tail -n 1)

phase "images"
python=${LEAKWATCH_HELM_PYTHON:-$PWD/target/ci-venv/bin/python}
state=$(mktemp -d /tmp/leakwatch-kube-e2e.XXXXXX)
made_dirs=()
# Should e2e.py itself die before its own tear-down: every process still in the node's
# network namespace (e2e.py writes its id to $state/netns), killed by pid, and the node's
# cgroups (named after e2e.py's pid) removed.
sweep() {
    local ns p
    if [ -f "$state/netns" ]; then
        ns=$(cat "$state/netns")
        for p in /proc/[0-9]*; do
            if [ "$(readlink "$p/ns/net" 2>/dev/null)" = "$ns" ]; then
                kill -KILL "${p#/proc/}" 2>/dev/null || true
            fi
        done
        sleep 1
    fi
    if [ -n "${node_pid:-}" ]; then
        find /sys/fs/cgroup -mindepth 2 -maxdepth 2 -type d -name "leakwatch-e2e-$node_pid" |
            while read -r cg; do find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true; done
    fi
}
cleanup() {
    local rc=$?
    if [ -n "${e2e_pid:-}" ] && kill -0 "$e2e_pid" 2>/dev/null; then
        kill -TERM "$e2e_pid" 2>/dev/null || true
        wait "$e2e_pid" 2>/dev/null || true
    fi
    sweep
    for d in "${made_dirs[@]}"; do rmdir "$d" 2>/dev/null || true; done
    if [ "$rc" != 0 ] && [ "${LEAKWATCH_E2E_KEEP:-0}" = 1 ]; then
        echo "kube-e2e: state kept in $state"
    else
        rm -rf "$state"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cargo build --release --locked --bin leakwatch
gcc -static -O2 -Wall -Wextra -Werror -o "$state/pause" tests/e2e/image/pause.c
# The image the chart's default values name (repository:appVersion).
lw_ref=$("$python" -c 'import yaml
chart = yaml.safe_load(open("helm/leakwatch/Chart.yaml"))
image = yaml.safe_load(open("helm/leakwatch/values.yaml"))["image"]
print(image["repository"] + ":" + (image["tag"] or chart["appVersion"]))')
"$python" tests/e2e/image/pack_image.py leakwatch --binary target/release/leakwatch \
    --dockerfile packaging/Dockerfile --config packaging/leakwatch.toml \
    --ref "$lw_ref" --out "$state/leakwatch.tar"
"$python" tests/e2e/image/pack_image.py pause --binary "$state/pause" \
    --ref leakwatch.test/pause:e2e --out "$state/pause.tar"

phase "scenarios"
# What the node must leave as it found it.
host_mounts() { awk '{ print $5 }' /proc/self/mountinfo | sort; }
host_sysctls() {
    for s in vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops \
        kernel/keys/root_maxkeys kernel/keys/root_maxbytes; do
        echo "$s=$(cat /proc/sys/$s)"
    done
}
host_cgroups() { find /sys/fs/cgroup -mindepth 2 -maxdepth 2 -type d -name 'leakwatch-e2e-*' | sort; }
mounts_before=$(host_mounts)
sysctls_before=$(host_sysctls)
# The paths bound over inside the namespace must exist; those made here are removed after.
for d in /run/containerd /var/lib/containerd /var/lib/kubelet /var/log/pods /var/log/containers; do
    if [ ! -d "$d" ]; then
        mkdir -p "$d"
        made_dirs+=("$d")
    fi
done
args=()
for a in "$@"; do args+=("$a"); done
set +e
unshare --mount --net --propagation private -- \
    "$python" "$here/e2e.py" --state "$state" --kubelet "$kubelet" --apiserver "$apiserver" \
    --image "$state/leakwatch.tar" --image "$state/pause.tar" "${args[@]}" &
e2e_pid=$!
node_pid=$e2e_pid
wait "$e2e_pid"
rc=$?
e2e_pid=
set -e
[ "$rc" = 0 ] || echo "kube-e2e: FAIL: e2e.py exited with status $rc" >&2
sweep

phase "host check"
# containerd and the kubelet name the state dir on their command lines; the shims do not.
left=$({ pgrep -a -f -- "$state"; pgrep -a -f -- 'containerd-shim-runc-v2 -namespace k8s.io'; } || true)
if [ -n "$left" ]; then
    echo "kube-e2e: FAIL: processes of the node are left:" >&2
    echo "$left" >&2
    rc=1
fi
if [ "$(host_mounts)" != "$mounts_before" ]; then
    echo "kube-e2e: FAIL: the host's mounts changed:" >&2
    diff <(echo "$mounts_before") <(host_mounts) >&2 || true
    rc=1
fi
if [ "$(host_sysctls)" != "$sysctls_before" ]; then
    echo "kube-e2e: FAIL: host sysctls changed:" >&2
    diff <(echo "$sysctls_before") <(host_sysctls) >&2 || true
    rc=1
fi
if [ -n "$(host_cgroups)" ]; then
    echo "kube-e2e: FAIL: cgroups left: $(host_cgroups)" >&2
    rc=1
fi
phase done
[ "$rc" = 0 ] && echo "kube-e2e: host left as found: no process, mount, sysctl or cgroup of the node remains"
exit "$rc"
