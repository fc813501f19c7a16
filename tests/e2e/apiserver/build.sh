#!/usr/bin/env bash
# Builds the etcd and kube-apiserver the API server tests run (tests/common/apiserver.rs),
# from go.etcd.io/etcd/server/v3 and k8s.io/kubernetes through the Go module proxy, once
# per pair of versions: the binaries are cached outside the work tree at
#   $LEAKWATCH_E2E_CACHE/apiserver-$KUBE_VERSION-etcd-$ETCD_VERSION/{etcd,kube-apiserver}
# (default /var/cache/leakwatch-e2e) and this script prints that directory. When both are
# already there, nothing is built.
#
# Each binary is built in a small module of its own that requires the upstream one, so
# that each keeps its own dependency versions:
# - etcd: `go install go.etcd.io/etcd/server/v3@VERSION` is refused, as server/go.mod has
#   replace directives (to etcd's other modules, ../api etc.). Required from a wrapper
#   module, those directives are ignored and the lockstep releases of those modules
#   (go.etcd.io/etcd/api/v3 VERSION, ...) are used, which is what the tag holds.
# - kube-apiserver: as for the kubelet, tests/e2e/kube-build.sh: kubernetes's go.mod
#   replaces its staging modules (k8s.io/api, ...) with ./staging/src/k8s.io/..., which its
#   module zip does not hold; the wrapper points each at its published release
#   (k8s.io/X v0.MINOR.PATCH).
#
# Cost on two idle cores with Go's build cache empty: etcd 40 s, kube-apiserver 4 minutes
# and 1.8 GB of memory (75 s for both with the cache warm from the kubelet's build; plus
# the module downloads, kept in Go's module cache); run niced.
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true

KUBE_VERSION=${KUBE_VERSION:-v1.34.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.5}
cache=${LEAKWATCH_E2E_CACHE:-/var/cache/leakwatch-e2e}
dir=$cache/apiserver-$KUBE_VERSION-etcd-$ETCD_VERSION
export PATH=$PATH:/usr/local/go/bin

if [ -x "$dir/etcd" ] && [ -x "$dir/kube-apiserver" ]; then
    echo "$dir"
    exit 0
fi
command -v go >/dev/null || { echo "build-apiserver: no Go toolchain (go)" >&2; exit 1; }
mkdir -p "$dir"
# One build at a time per pair of versions; a second caller waits for the first one's result.
exec 9>"$dir/.lock"
flock 9
if [ -x "$dir/etcd" ] && [ -x "$dir/kube-apiserver" ]; then
    echo "$dir"
    exit 0
fi

. "$(dirname "$0")/../kube-build.sh"
work=$(mktemp -d "$dir/build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# ---- etcd -------------------------------------------------------------------------------
if [ ! -x "$dir/etcd" ]; then
    start=$(date +%s)
    mkdir "$work/etcd"
    src=$(module_dir go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "$work")
    {
        echo "module leakwatch.test/etcd-build"
        echo
        # etcd's own go directive: it sets the runtime's GODEBUG defaults of the binary.
        grep -E '^(go|godebug) ' "$src/go.mod"
        echo
        echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
    } >"$work/etcd/go.mod"
    (
        cd "$work/etcd"
        CGO_ENABLED=0 GOFLAGS=-mod=mod nice -n 10 go build -trimpath \
            -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION" \
            -o "$work/etcd/etcd" go.etcd.io/etcd/server/v3
    )
    "$work/etcd/etcd" --version >&2
    mv "$work/etcd/etcd" "$dir/etcd"
    echo "build-apiserver: etcd $ETCD_VERSION built in $(($(date +%s) - start))s" >&2
fi

# ---- kube-apiserver ---------------------------------------------------------------------
if [ ! -x "$dir/kube-apiserver" ]; then
    start=$(date +%s)
    mkdir "$work/kube"
    build_kube_command kube-apiserver "$work/kube" "$dir/kube-apiserver"
    echo "build-apiserver: kube-apiserver $KUBE_VERSION built in $(($(date +%s) - start))s" >&2
fi
echo "$dir"
