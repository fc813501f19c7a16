# Sourced by tests/e2e/kubelet/build-kubelet.sh and tests/e2e/apiserver/build.sh: builds one
# command of k8s.io/kubernetes (cmd/kubelet, cmd/kube-apiserver) at $KUBE_VERSION through
# the Go module proxy, and finds a module's source in Go's module cache (etcd's too).
#
# k8s.io/kubernetes's go.mod replaces its staging modules (k8s.io/api, k8s.io/client-go, ...)
# with ./staging/src/k8s.io/..., which its module zip does not hold. The build therefore
# runs in a small module of its own that requires k8s.io/kubernetes and points each of
# those staging modules at its published release (k8s.io/X v0.MINOR.PATCH), as the
# kubernetes release tags them in lockstep. The version the binary reports is set as
# kubernetes's own build sets it.

# module_dir MODULE VERSION WORKDIR: the directory of MODULE@VERSION in Go's module cache,
# downloaded (from the empty directory WORKDIR) when missing.
module_dir() {
    local src
    src=$(cd "$3" && GOFLAGS=-mod=mod go mod download -json "$1@$2" |
        sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
    [ -f "$src/go.mod" ] || { echo "build: $1@$2 not downloaded" >&2; return 1; }
    echo "$src"
}

# build_kube_command COMMAND WORKDIR OUT: build k8s.io/kubernetes/cmd/COMMAND in the empty
# directory WORKDIR, print its --version on stderr, and move the binary to OUT.
build_kube_command() {
    local command=$1 work=$2 out=$3
    local staging_version=v0.${KUBE_VERSION#v1.}
    local src
    src=$(module_dir k8s.io/kubernetes "$KUBE_VERSION" "$work")
    {
        echo "module leakwatch.test/$command-build"
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
    } >"$work/go.mod"
    grep -q "k8s.io/api => k8s.io/api $staging_version" "$work/go.mod" ||
        { echo "build $command: no staging replaces found in kubernetes's go.mod" >&2; cat "$work/go.mod" >&2; return 1; }

    local ldflags="-s -w" kv pkg
    for kv in "gitVersion=$KUBE_VERSION" "gitMajor=1" "gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2)" \
        "gitTreeState=clean" "buildDate=1970-01-01T00:00:00Z"; do
        for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
            ldflags="$ldflags -X $pkg.$kv"
        done
    done
    (
        cd "$work"
        CGO_ENABLED=0 GOFLAGS=-mod=mod nice -n 10 go build -trimpath -ldflags "$ldflags" \
            -o "$work/$command" "k8s.io/kubernetes/cmd/$command"
    )
    "$work/$command" --version >&2
    mv "$work/$command" "$out"
}
