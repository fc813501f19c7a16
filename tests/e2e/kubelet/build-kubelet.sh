#!/usr/bin/env bash
# Builds the kubelet the Kubernetes end-to-end tests run, from k8s.io/kubernetes through
# the Go module proxy, once per version: the binary is cached outside the work tree at
#   $LEAKWATCH_E2E_CACHE/kubelet-$KUBE_VERSION/kubelet   (default /var/cache/leakwatch-e2e)
# and this script prints that path. When it is already there, nothing is built.
#
# k8s.io/kubernetes's go.mod replaces its staging modules (k8s.io/api, k8s.io/client-go, ...)
# with ./staging/src/k8s.io/..., which its module zip does not hold. The build therefore
# runs in a small module of its own that requires k8s.io/kubernetes and points each of
# those staging modules at its published release (k8s.io/X v0.MINOR.PATCH), as the
# kubernetes release tags them in lockstep.
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

staging_version=v0.${KUBE_VERSION#v1.}
work=$(mktemp -d "$dir/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

src=$(GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" |
    sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[ -f "$src/go.mod" ] || { echo "build-kubelet: k8s.io/kubernetes@$KUBE_VERSION not downloaded" >&2; exit 1; }

{
    echo "module leakwatch.test/kubelet-build"
    echo
    # The go directive and godebug defaults are kubernetes's own: they set the runtime's
    # GODEBUG defaults of the binary.
    grep -E '^(go|godebug) ' "$src/go.mod"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    echo "replace ("
    sed -n 's#^\t*\(k8s\.io/[a-z0-9-]*\) => \./staging/src/k8s\.io/[a-z0-9-]*$#\t\1 => \1 '"$staging_version"'#p' "$src/go.mod"
    echo ")"
} >go.mod
grep -q "k8s.io/api => k8s.io/api $staging_version" go.mod ||
    { echo "build-kubelet: no staging replaces found in kubernetes's go.mod" >&2; cat go.mod >&2; exit 1; }

ldflags="-s -w"
for kv in "gitVersion=$KUBE_VERSION" "gitMajor=1" "gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2)" \
    "gitTreeState=clean" "buildDate=1970-01-01T00:00:00Z"; do
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags="$ldflags -X $pkg.$kv"
    done
done
CGO_ENABLED=0 GOFLAGS=-mod=mod nice -n 10 go build -trimpath -ldflags "$ldflags" \
    -o "$work/kubelet" k8s.io/kubernetes/cmd/kubelet
"$work/kubelet" --version
mv "$work/kubelet" "$out"
echo "$out"
