#!/usr/bin/env bash
# The systemd + cgroup v2 suite: boot the cached Debian 13 VM once, run tests/e2e/vm/suite.sh
# in it against the .deb built here, and report what it said.
#
#   tests/e2e/vm/run.sh [DEB]      DEB defaults to target/debian/leakwatch_*.deb
#   LEAKWATCH_VM_ONLY="watchdog dpkg_purge" tests/e2e/vm/run.sh     only these scenarios
#
# The VM has no network (-nic none); commands go in and results come out over one 9p share
# (target/e2e-vm/share: in/ holds the suite and the .deb, out/ what the suite wrote). The
# root disk is the cached image opened with snapshot=on: nothing the VM writes reaches the
# cache. qemu is killed by its pid when this script exits, whatever happened; nothing is
# mounted on the host. Needs root (the image build); installs qemu-system-x86 when missing.
#
# Exit status: 0 when every scenario passed, 1 otherwise (the failing scenarios, systemctl
# status, the journal and the VM console are printed).
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
# The whole suite's deadline: a hung VM is killed, its console printed.
timeout_s=${LEAKWATCH_VM_TIMEOUT:-1800}

t0=$SECONDS
phase() { printf '[e2e-vm] %-28s %4ds\n' "$1" $((SECONDS - t0)); }

deb=${1:-}
if [ -z "$deb" ]; then
    deb=$(ls -t "$repo"/target/debian/leakwatch_*_amd64.deb 2>/dev/null | head -n1 || true)
fi
[ -f "$deb" ] || { echo "e2e-vm: no .deb (run cargo deb first)" >&2; exit 1; }

if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || { echo "e2e-vm: qemu-system-x86 missing (install it as root)" >&2; exit 1; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86
fi
phase "qemu ready"

img=$(bash "$here/build-image.sh")
phase "image ready ($(basename "$img"))"

share=$repo/target/e2e-vm/share
rm -rf "$share"
mkdir -p "$share/in" "$share/out"
cp "$here/suite.sh" "$deb" "$share/in/"
# LEAKWATCH_VM_ONLY="scenario ...": run only those (and the install), to debug one.
if [ -n "${LEAKWATCH_VM_ONLY:-}" ]; then
    echo "$LEAKWATCH_VM_ONLY" >"$share/in/only"
fi
console=$repo/target/e2e-vm/console.log
: >"$console"

# KVM only with hardware virtualisation: /dev/kvm may be a paravirtual one (PVM) that
# cannot boot a stock kernel. Otherwise TCG, one thread per vCPU.
accel=tcg,thread=multi
cpu=max
if grep -qwE 'vmx|svm' /proc/cpuinfo && [ -w /dev/kvm ]; then
    accel=kvm
    cpu=host
fi

qemu_pid=
cleanup() {
    if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
        kill "$qemu_pid" 2>/dev/null || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$qemu_pid" 2>/dev/null || break
            sleep 0.5
        done
        kill -9 "$qemu_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# psi=1: Debian's kernel has PSI built in but off by default.
qemu-system-x86_64 \
    -machine q35 -accel "$accel" -cpu "$cpu" -smp 2 -m 2048 \
    -nic none -display none -monitor none -serial "file:$console" -no-reboot \
    -kernel "$img/vmlinuz" -initrd "$img/initrd.img" \
    -append "root=/dev/vda rw console=ttyS0 psi=1 systemd.unified_cgroup_hierarchy=1 panic=-1" \
    -drive "file=$img/rootfs.ext4,format=raw,if=virtio,snapshot=on" \
    -virtfs "local,path=$share,mount_tag=lw,security_model=none,id=lw" &
qemu_pid=$!
phase "VM started (accel $accel)"

deadline=$((SECONDS + timeout_s))
booted=
while kill -0 "$qemu_pid" 2>/dev/null; do
    if [ -z "$booted" ] && [ -e "$share/out/started" ]; then
        booted=1
        phase "VM booted, suite running"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "e2e-vm: the VM did not finish within ${timeout_s}s; killing it" >&2
        break
    fi
    sleep 1
done
cleanup
qemu_pid=
phase "VM stopped"

results=$share/out/results
rc=$(cat "$share/out/rc" 2>/dev/null || echo none)
fails=$(grep -c '^FAIL' "$results" 2>/dev/null || true)
passes=$(grep -c '^PASS' "$results" 2>/dev/null || true)
if [ "$rc" = 0 ] && [ "${fails:-0}" = 0 ] && [ "${passes:-0}" -gt 0 ]; then
    grep -E '^(PASS|INFO)' "$results"
    phase "done: ${passes} scenarios passed"
    exit 0
fi
echo "---- the suite's log (target/e2e-vm/share/out/suite.log) ----" >&2
cat "$share/out/suite.log" >&2 2>/dev/null || echo "(no log: the suite never ran)" >&2
echo "---- end of the suite's log ----" >&2
echo "e2e-vm: FAILED (suite exit status $rc, ${passes:-0} passed, ${fails:-0} failed)" >&2
grep -E '^(PASS|FAIL|INFO)' "$results" 2>/dev/null >&2 || true
echo "---- VM console (last 80 lines of target/e2e-vm/console.log) ----" >&2
tail -n 80 "$console" >&2 || true
if [ -s "$share/out/journal.txt" ]; then
    echo "---- VM journal (last 150 lines; all of it in target/e2e-vm/share/out/journal.txt) ----" >&2
    tail -n 150 "$share/out/journal.txt" >&2
fi
exit 1
