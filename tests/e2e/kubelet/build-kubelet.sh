#!/usr/bin/env bash
# Builds the kubelet the Kubernetes end-to-end tests run, from k8s.io/kubernetes through
# the Go module proxy, once per version: the binary is cached outside the work tree at
#   $LEAKWATCH_E2E_CACHE/kubelet-$KUBE_VERSION/kubelet   (default /var/cache/leakwatch-e2e)
# and this script prints that path. When it is already there, nothing is built.
#
# How: tests/e2e/kube-build.sh (a wrapper module for kubernetes's staging modules).
#
# Cost: about 8 minutes on two idle cores and 1.6 GB of memory when cold (plus the module
# downloads, ~300 MB, kept in Go's module cache); run niced.
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true

KUBE_VERSION=${KUBE_VERSION:-v1.34.4}
cache=${LEAKWATCH_E2E_CACHE:-/var/cache/leakwatch-e2e}
dir=$cache/kubelet-$KUBE_VERSION
out=$dir/kubelet
export PATH=$PATH:/usr/local/go/bin

if [ -x "$out" ]; then
    echo "$out"
    exit 0
fi
command -v go >/dev/null || { echo "build-kubelet: no Go toolchain (go)" >&2; exit 1; }
mkdir -p "$dir"
# One build at a time per version; a second caller waits for the first one's result.
exec 9>"$dir/.lock"
flock 9
if [ -x "$out" ]; then
    echo "$out"
    exit 0
fi

. "$(dirname "$0")/../kube-build.sh"
work=$(mktemp -d "$dir/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
build_kube_command kubelet "$work" "$out"
echo "$out"
