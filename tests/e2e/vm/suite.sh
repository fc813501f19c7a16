#!/bin/bash
# The systemd + cgroup v2 scenarios, run inside the Debian 13 VM (systemd as PID 1, cgroup v2
# unified) by lw-e2e.service, from the 9p share at /mnt/lw: in/ holds this script and the
# .deb; out/ gets `results` (one PASS/FAIL/INFO line per scenario), `journal.txt`,
# `versions` and `fixtures/` (kernel text captured for tests/fixtures/cgroup).
#
# Each scenario runs in a subshell with errexit; a failure prints systemctl status and the
# journal of the units involved, and the suite goes on with the next one. Timeouts are
# generous: under TCG a fork costs ~45x what it costs on a host.
set -u
in=/mnt/lw/in
out=/mnt/lw/out
results=$out/results
: >"$results"
mkdir -p "$out/fixtures"
touch "$out/started"
export SYSTEMD_PAGER= SYSTEMD_COLORS=0 LC_ALL=C.UTF-8

log() { printf '[%4ds] %s\n' "$SECONDS" "$*"; }
fail() {
    log "FAIL: $*"
    exit 1
}

# wait_for DESCRIPTION SECONDS COMMAND...: poll COMMAND every second until it succeeds.
wait_for() {
    local what=$1 secs=$2
    shift 2
    local end=$((SECONDS + secs))
    until "$@"; do
        [ "$SECONDS" -lt "$end" ] || fail "timed out after ${secs}s waiting for: $what"
        sleep 1
    done
}

# http PORT PATH: prints the status code; the body goes to /tmp/body.
http() {
    curl -s -m 10 -o /tmp/body -w '%{http_code}' "http://127.0.0.1:$1$2" || true
}
status_is() { [ "$(http "$1" "$2")" = "$3" ]; }

prop() { systemctl show -p "$2" --value "$1"; }
cg() { echo "/sys/fs/cgroup$(prop "$1" ControlGroup)"; }

# The units a failing scenario prints (what it named with `involve`).
units=()
diagnose() {
    local u
    for u in "${units[@]}"; do
        echo "---- systemctl status $u"
        systemctl status --no-pager -l "$u" 2>&1 | head -n 40
        echo "---- journalctl -u $u (last 60 lines)"
        journalctl --no-pager -o short-monotonic -u "$u" -n 60 2>&1
    done
    for f in /tmp/lw-*.log; do
        [ -f "$f" ] || continue
        echo "---- leakwatch run's log $f (last 30 lines)"
        tail -n 30 "$f"
    done
    echo "---- kernel (last 30 lines)"
    journalctl --no-pager -o short-monotonic -k -n 30 2>&1
}

# scenario NAME FUNCTION: run it in a subshell with errexit and record the outcome.
scenario() {
    local name=$1 start=$SECONDS rc
    units=()
    log "=== $name"
    ( set -eo pipefail; "$2" )
    rc=$?
    if [ "$rc" = 0 ]; then
        echo "PASS $name ($((SECONDS - start))s)" >>"$results"
        log "--- PASS $name ($((SECONDS - start))s)"
    else
        echo "FAIL $name ($((SECONDS - start))s)" >>"$results"
        log "--- FAIL $name ($((SECONDS - start))s)"
        # The units the scenario declared are in the file it left.
        [ -f /tmp/units ] && mapfile -t units </tmp/units
        diagnose
    fi
    rm -f /tmp/units /tmp/lw-*.log
    # Whatever the scenario left running stops here.
    systemctl stop 'leakwatch*' 'lwt-*' >/dev/null 2>&1 || true
    systemctl reset-failed >/dev/null 2>&1 || true
}
# involve UNIT...: the units to print if the scenario fails.
involve() { printf '%s\n' "$@" >>/tmp/units; }

# A service from a few lines: unit NAME [Service]-LINES... (daemon-reload included).
unit() {
    local name=$1
    shift
    {
        echo "[Service]"
        printf '%s\n' "$@"
    } >"/etc/systemd/system/$name"
    systemctl daemon-reload
}

# ---- the apps that leak ------------------------------------------------------------------
# lwt-leak-fds START PER_SECOND: opens START fds at once, then PER_SECOND each second, and
# says so when an open fails (EMFILE). The leaking process is the unit's main process.
cat >/usr/local/bin/lwt-leak-fds <<'EOF'
#!/bin/bash
start=$1 rate=$2 n=0
# Waiting a second on a FIFO opened read-write needs no fork (sleep would exec with every fd).
tick=/run/lwt-leak-fds.$$
rm -f "$tick"
mkfifo "$tick"
open() {
    local fd
    if ! exec {fd}</dev/null; then
        echo "lwt-leak-fds: EMFILE: open failed after $n fds"
        return 1
    fi
    n=$((n + 1))
}
for ((i = 0; i < start; i++)); do open; done
echo "lwt-leak-fds: holding $n fds"
while :; do
    for ((i = 0; i < rate; i++)); do open || true; done
    read -r -t 1 <>"$tick" || true
done
EOF
# lwt-grow START_MIB PER_SECOND_MIB: leakwatch demo-child growing anonymous memory.
cat >/usr/local/bin/lwt-grow <<'EOF'
#!/bin/sh
# With PER_SECOND 0 nothing forks after the start: the cgroup's memory holds still.
start=$1 rate=$2
{
    echo "grow $start"
    [ "$rate" -gt 0 ] || exec sleep 1200
    while sleep 1; do echo "grow $rate"; done
} | leakwatch demo-child --max-seconds 1200 >/dev/null
EOF
chmod +x /usr/local/bin/lwt-leak-fds /usr/local/bin/lwt-grow

# ---- scenarios -----------------------------------------------------------------------------

deb_install() {
    local deb
    deb=$(ls "$in"/leakwatch_*.deb)
    ! command -v leakwatch || fail "leakwatch is on the clean system before dpkg -i"
    dpkg -i "$deb"
    leakwatch --version
    id leakwatch
    for u in leakwatch.service leakwatch@.service leakwatch-restart@.service; do
        systemctl cat "$u" >/dev/null || fail "$u is not known to systemd"
        state=$(systemctl is-enabled "$u" 2>&1 || true)
        case $state in disabled | indirect) ;; *) fail "$u is $state after install, not disabled" ;; esac
    done
    ! pgrep -x leakwatch || fail "dpkg -i started leakwatch"
}

notify_status() {
    involve lwt-quiet.service leakwatch@lwt-quiet.service
    unit lwt-quiet.service "ExecStart=/bin/sleep 3600"
    systemctl start lwt-quiet.service
    # Type=notify: start returns once leakwatch sent READY=1 after its first tick.
    systemctl start leakwatch@lwt-quiet.service
    [ "$(prop leakwatch@lwt-quiet.service ActiveState)" = active ] || fail "not active"
    [ "$(prop leakwatch@lwt-quiet.service Type)" = notify ] || fail "not Type=notify"
    wait_for "STATUS= healthy" 60 sh -c \
        '[ "$(systemctl show -p StatusText --value leakwatch@lwt-quiet.service)" = "1 target(s), healthy" ]'
    log "StatusText: $(prop leakwatch@lwt-quiet.service StatusText)"
    status_is 9717 /healthz/lwt-quiet 200 || fail "/healthz/lwt-quiet: $(http 9717 /healthz/lwt-quiet)"
    # The unit runs as the leakwatch user with the two capabilities it asks for.
    pid=$(prop leakwatch@lwt-quiet.service MainPID)
    [ "$(stat -c %U /proc/"$pid")" = leakwatch ] || fail "leakwatch runs as $(stat -c %U /proc/"$pid")"
    grep -q '^Seccomp:[[:space:]]*2' /proc/"$pid"/status || fail "no seccomp filter on leakwatch"
}

watchdog() {
    involve lwt-quiet.service leakwatch@lwt-quiet.service
    unit lwt-quiet.service "ExecStart=/bin/sleep 3600"
    systemctl start lwt-quiet.service leakwatch@lwt-quiet.service
    old=$(prop leakwatch@lwt-quiet.service MainPID)
    restarts=$(prop leakwatch@lwt-quiet.service NRestarts)
    log "stopping leakwatch (pid $old) with SIGSTOP; WatchdogSec=$(prop leakwatch@lwt-quiet.service WatchdogUSec)"
    kill -STOP "$old"
    since=$(date '+%Y-%m-%d %H:%M:%S')
    # WatchdogSec=30s, then SIGABRT, TimeoutStopSec=15s to SIGKILL, RestartSec=5s.
    wait_for "a new leakwatch" 180 sh -c \
        "p=\$(systemctl show -p MainPID --value leakwatch@lwt-quiet.service);
         [ \"\$p\" != 0 ] && [ \"\$p\" != $old ] &&
         [ \"\$(systemctl show -p ActiveState --value leakwatch@lwt-quiet.service)\" = active ]"
    [ "$(prop leakwatch@lwt-quiet.service NRestarts)" -gt "$restarts" ] || fail "NRestarts did not grow"
    journalctl --no-pager -u leakwatch@lwt-quiet.service --since "$since" | grep -i 'watchdog timeout' ||
        fail "systemd logged no watchdog timeout"
    status_is 9717 /healthz/lwt-quiet 200 || fail "the new leakwatch does not answer"
}

# Starts APP.service with leakwatch@APP and leakwatch-restart@APP (polling every 2 s) and
# waits until the restart recipe has restarted APP (a new main pid). Sets `since` for the
# caller's journal checks.
restarted_by_leakwatch() {
    local app=$1 first
    mkdir -p "/etc/systemd/system/leakwatch-restart@$app.service.d"
    printf '[Service]\nEnvironment=LEAKWATCH_POLL=2\n' \
        >"/etc/systemd/system/leakwatch-restart@$app.service.d/poll.conf"
    systemctl daemon-reload
    since=$(date '+%Y-%m-%d %H:%M:%S')
    systemctl start "$app.service"
    first=$(prop "$app.service" MainPID)
    systemctl start "leakwatch@$app.service" "leakwatch-restart@$app.service"
    wait_for "leakwatch-restart to restart $app" 240 sh -c \
        "journalctl --no-pager -u leakwatch-restart@$app.service --since '$since' | grep -q 'restarted $app.service'"
    journalctl --no-pager -u "leakwatch-restart@$app.service" --since "$since" | grep -A3 'unhealthy'
    [ "$(prop "$app.service" MainPID)" != "$first" ] || fail "$app has the same main pid"
}

restart_before_emfile() {
    involve lwt-app.service leakwatch@lwt-app.service leakwatch-restart@lwt-app.service
    # 150 fds at once, then 2 a second, under a soft limit of 256: EMFILE ~50 s later
    # unless restarted. leakwatch fails fds at 70% (179) after 2 ticks of 2 s.
    unit lwt-app.service "ExecStart=/usr/local/bin/lwt-leak-fds 150 2" "LimitNOFILE=256"
    mkdir -p /etc/leakwatch
    cat >/etc/leakwatch/lwt-app.toml <<'EOF'
interval = "2s"
[judge]
fail_after = 2
[[target]]
name = "lwt-app"
systemd_unit = "lwt-app.service"
[target.rules.fds]
max_ratio = 0.7
EOF
    restarted_by_leakwatch lwt-app
    if journalctl --no-pager -u lwt-app.service --since "$since" | grep -E 'EMFILE|Too many open files'; then
        fail "lwt-app hit EMFILE before it was restarted"
    fi
    # The rule line names the fds open when it failed: below the limit.
    journalctl --no-pager -u leakwatch-restart@lwt-app.service --since "$since" | grep -q 'fds: [0-9]*/256' ||
        fail "no fds rule in the restart's log"
}

restart_before_oom() {
    involve lwt-mem.service leakwatch@lwt-mem.service leakwatch-restart@lwt-mem.service
    # 40 MiB, then 2 MiB a second under MemoryMax=128M: an OOM kill ~45 s later unless
    # restarted. leakwatch fails cgroup_memory at 70% of memory.max.
    unit lwt-mem.service "ExecStart=/usr/local/bin/lwt-grow 40 2" "MemoryMax=128M" "MemorySwapMax=0"
    cat >/etc/leakwatch/lwt-mem.toml <<'EOF'
interval = "2s"
[judge]
fail_after = 2
[[target]]
name = "lwt-mem"
systemd_unit = "lwt-mem.service"
[target.rules.cgroup_memory]
max_ratio = 0.7
EOF
    restarted_by_leakwatch lwt-mem
    journalctl --no-pager -u leakwatch-restart@lwt-mem.service --since "$since" | grep -q 'cgroup_memory' ||
        fail "no cgroup_memory rule in the restart's log"
    if journalctl --no-pager --since "$since" | grep -iE 'oom-kill|killed by the OOM killer|out of memory'; then
        fail "an OOM kill happened"
    fi
}

multi_target() {
    involve leakwatch.service lwt-good.service lwt-leaky.service
    unit lwt-good.service "ExecStart=/bin/sleep 3600"
    unit lwt-leaky.service "ExecStart=/usr/local/bin/lwt-leak-fds 60 0" "LimitNOFILE=1024"
    cp /etc/leakwatch/leakwatch.toml /tmp/leakwatch.toml.orig
    cat >/etc/leakwatch/leakwatch.toml <<'EOF'
listen = "127.0.0.1:9717"
interval = "2s"
[judge]
fail_after = 2
[[target]]
name = "good"
systemd_unit = "lwt-good.service"
[[target]]
name = "leaky"
systemd_unit = "lwt-leaky.service"
[target.rules.fds]
max = 40
EOF
    leakwatch config check /etc/leakwatch/leakwatch.toml
    systemctl start lwt-good.service lwt-leaky.service
    systemctl start leakwatch.service
    [ "$(prop leakwatch.service ActiveState)" = active ] || fail "leakwatch.service is not active"
    wait_for "/healthz/leaky 503" 60 status_is 9717 /healthz/leaky 503
    cat /tmp/body
    status_is 9717 /healthz/good 200 || fail "/healthz/good: $(http 9717 /healthz/good)"
    # lwt-good's main process is alone in its service's cgroup: from Linux 6.2 (the kernel
    # counts fds in st_size) its sockets come from that cgroup; before, leakwatch says why
    # not.
    case "$(uname -r)" in
    [0-5].* | 6.[01].*) want='Linux < 6.2' ;;
    *) want='"from":"cgroup"' ;;
    esac
    wait_for "good's sockets: $want" 30 sockets_way good "$want"
    log "good's sockets: $(sockets_way good)"
    wait_for "STATUS= unhealthy: leaky" 30 sh -c \
        '[ "$(systemctl show -p StatusText --value leakwatch.service)" = "unhealthy: leaky" ]'
    log "StatusText: $(prop leakwatch.service StatusText)"
    # SIGHUP with a bad file: refused, the old config runs on.
    echo 'interval = "soon"' >>/etc/leakwatch/leakwatch.toml
    pid=$(prop leakwatch.service MainPID)
    systemctl reload leakwatch.service
    sleep 5
    [ "$(prop leakwatch.service MainPID)" = "$pid" ] || fail "a bad reload restarted leakwatch"
    status_is 9717 /healthz/good 200 || fail "/healthz/good after a bad reload"
    cp /tmp/leakwatch.toml.orig /etc/leakwatch/leakwatch.toml
}

# sockets_way TARGET [WANT]: prints how leakwatch on 9717 read TARGET's sockets (tcp.method
# in /status); with WANT, succeeds only if that text is in it.
sockets_way() {
    local m
    m=$(curl -s -m 10 http://127.0.0.1:9717/status |
        jq -c --arg t "$1" '.targets[] | select(.name == $t) | .sample.tcp.method')
    if [ $# -gt 1 ]; then
        case "$m" in *"$2"*) return 0 ;; *) return 1 ;; esac
    fi
    echo "$m"
}

# leakwatch run -c CONF in the background (its pid in $lw_pid), answering on PORT.
start_lw() {
    local conf=$1 port=$2
    shift 2
    "$@" leakwatch run -c "$conf" >/tmp/lw-$port.log 2>&1 &
    lw_pid=$!
    echo "$lw_pid" >>/tmp/lw-pids
    wait_for "leakwatch on $port" 120 sh -c "curl -s -m 5 -o /dev/null http://127.0.0.1:$port/livez"
}

# series PORT SERIES [TARGET]: that series' status (value, limit, limit_source) in /status,
# of TARGET or the first target.
series() {
    curl -s -m 10 "http://127.0.0.1:$1/status" | jq -c --arg s "$2" --arg t "${3-}" \
        '[.targets[] | select($t == "" or .name == $t) | .. | objects
          | select(.series? == $s and has("limit_source"))][0]'
}

# has_limit PORT SERIES [TARGET]: /status judges that series against a limit.
has_limit() { [ "$(series "$@" | jq -r '.limit // empty')" != "" ]; }

healthz_before_oom() {
    involve lwt-oom.service
    # 200 MiB, then 2 MiB a second under MemoryMax=256M; no restart: the kernel kills it.
    unit lwt-oom.service "ExecStart=/usr/local/bin/lwt-grow 200 2" "MemoryMax=256M" "MemorySwapMax=0"
    cat >/tmp/oom.toml <<'EOF'
listen = "127.0.0.1:9720"
interval = "1s"
[[target]]
name = "oom"
systemd_unit = "lwt-oom.service"
EOF
    systemctl start lwt-oom.service
    start_lw /tmp/oom.toml 9720
    first_503=
    end=$((SECONDS + 300))
    while [ "$SECONDS" -lt "$end" ]; do
        code=$(http 9720 /healthz/oom)
        if [ -z "$first_503" ] && [ "$code" = 503 ]; then
            first_503=$SECONDS
            log "/healthz/oom 503: $(cat /tmp/body)"
        fi
        [ "$(prop lwt-oom.service Result)" = oom-kill ] && break
        sleep 1
    done
    killed=$SECONDS
    [ "$(prop lwt-oom.service Result)" = oom-kill ] || fail "lwt-oom was never OOM-killed"
    [ -n "$first_503" ] || fail "/healthz never failed before the OOM kill"
    echo "INFO healthz_before_oom: /healthz failed $((killed - first_503))s before the OOM kill" >>"$results"
    [ $((killed - first_503)) -ge 5 ] || fail "/healthz failed only $((killed - first_503))s before the OOM kill"
    kill "$lw_pid"
}

# compare_memory DIR JSON: the sample's cgroup memory equals DIR's files.
compare_memory() {
    local dir=$1 j=$2 cur stat inactive
    cur=$(cat "$dir/memory.current")
    stat=$dir/memory.stat
    k() { awk -v k="$1" '$1 == k { print $2 }' "$stat"; }
    lim() { local v; v=$(cat "$dir/$1"); [ "$v" = max ] && echo '"unlimited"' || echo "$v"; }
    inactive=$(k inactive_file)
    [ "$(jq -r .cgroup_memory.current_bytes <<<"$j")" = "$cur" ] || { log "current $cur"; return 1; }
    [ "$(jq -c .cgroup_memory.max <<<"$j")" = "$(lim memory.max)" ] || { log "max"; return 1; }
    [ "$(jq -c .cgroup_memory.high <<<"$j")" = "$(lim memory.high)" ] || { log "high"; return 1; }
    [ "$(jq -r .cgroup_memory.anon_bytes <<<"$j")" = "$(k anon)" ] || { log "anon"; return 1; }
    [ "$(jq -r .cgroup_memory.file_bytes <<<"$j")" = "$(k file)" ] || { log "file"; return 1; }
    [ "$(jq -r .cgroup_memory.sock_bytes <<<"$j")" = "$(k sock)" ] || { log "sock"; return 1; }
    [ "$(jq -r .cgroup_memory.inactive_file_bytes <<<"$j")" = "$inactive" ] || { log "inactive_file"; return 1; }
    [ "$(jq -r .cgroup_memory.working_set_bytes <<<"$j")" = "$((cur - inactive))" ] || { log "working set"; return 1; }
    for e in low high max oom oom_kill; do
        [ "$(jq -r ".cgroup_memory.events.$e" <<<"$j")" = "$(awk -v k=$e '$1 == k { print $2 }' "$dir/memory.events")" ] ||
            { log "events.$e"; return 1; }
    done
    [ "$(jq -r .cgroup_pids.current <<<"$j")" = "$(cat "$dir/pids.current")" ] || { log "pids.current"; return 1; }
    [ "$(jq -c .cgroup_pids.max <<<"$j")" = "$(lim pids.max)" ] || { log "pids.max"; return 1; }
}

# inspect_equal DIR COMMAND...: take samples (COMMAND prints `leakwatch inspect --json`)
# until one equals DIR's files, read before and after it (memory.current moves with every
# page the kernel charges).
inspect_equal() {
    local dir=$1 j
    shift
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        before=$(cat "$dir/memory.current" "$dir/memory.stat" "$dir/memory.events")
        j=$("$@")
        after=$(cat "$dir/memory.current" "$dir/memory.stat" "$dir/memory.events")
        if [ "$before" = "$after" ] && compare_memory "$dir" "$j"; then
            echo "$j" >/tmp/last.json
            return 0
        fi
        sleep 2
    done
    echo "$j" | jq .cgroup_memory
    cat "$dir/memory.current" "$dir/memory.stat" "$dir/memory.events"
    fail "no sample equal to $dir's files in 10 tries"
}

memory_equals_files() {
    involve lwt-hold.service
    # 8 MiB of page cache first (inactive file pages: the working set is less than current).
    unit lwt-hold.service \
        "ExecStart=/bin/sh -c 'head -c 8388608 /dev/zero >/var/tmp/lwt-cache && exec /usr/local/bin/lwt-grow 24 0'" \
        "MemoryMax=300M" "MemoryHigh=250M" "TasksMax=77"
    systemctl start lwt-hold.service
    dir=$(cg lwt-hold.service)
    wait_for "24 MiB charged" 120 sh -c "[ \$(cat $dir/memory.current) -gt 25000000 ]"
    inspect_equal "$dir" leakwatch inspect --systemd-unit lwt-hold.service --json
    jq .cgroup_memory /tmp/last.json
    # The kernel's text, for the fixtures (tests/fixtures/cgroup/*_kernel_6_1).
    mkdir -p "$out/fixtures"
    for f in memory.current memory.max memory.high memory.stat memory.events memory.pressure \
        pids.current pids.max cgroup.controllers; do
        cp "$dir/$f" "$out/fixtures/service.$f"
    done
    cp /sys/fs/cgroup/cgroup.controllers "$out/fixtures/root.cgroup.controllers"
    cp "/proc/$(prop lwt-hold.service MainPID)/cgroup" "$out/fixtures/proc_cgroup"
}

memory_high_is_the_limit() {
    involve lwt-high.service
    unit lwt-high.service "ExecStart=/usr/local/bin/lwt-grow 8 0" "MemoryHigh=150M"
    systemctl start lwt-high.service
    dir=$(cg lwt-high.service)
    [ "$(cat "$dir/memory.max")" = max ] || fail "memory.max is $(cat "$dir/memory.max")"
    cp "$dir/memory.max" "$out/fixtures/high.memory.max"
    printf 'listen = "127.0.0.1:9721"\ninterval = "2s"\n[[target]]\nname = "high"\nsystemd_unit = "lwt-high.service"\n' \
        >/tmp/high.toml
    start_lw /tmp/high.toml 9721
    wait_for "a cgroup_memory limit" 90 has_limit 9721 cgroup_memory
    s=$(series 9721 cgroup_memory)
    log "$s"
    # Compared as numbers: /status writes limits as floats, and jq 1.7 prints 157286400.0.
    jq -e ".limit == 157286400" <<<"$s" >/dev/null || fail "limit is not memory.high's 150 MiB"
    [ "$(jq -r .limit_source <<<"$s")" = memory.high ] || fail "limit_source is not memory.high"
    kill "$lw_pid"
}

events_and_psi() {
    involve lwt-press.service
    # Anonymous memory over memory.high with no swap: the kernel throttles and reclaims
    # in vain, counting memory.events high and stalling (memory.pressure).
    unit lwt-press.service "ExecStart=/usr/local/bin/lwt-grow 8 4" "MemoryHigh=48M" "MemorySwapMax=0"
    systemctl start lwt-press.service
    dir=$(cg lwt-press.service)
    wait_for "memory.events high > 0" 240 sh -c "[ \$(awk '\$1 == \"high\" { print \$2 }' $dir/memory.events) -gt 0 ]"
    wait_for "memory.pressure some total > 0" 240 sh -c \
        "awk '/^some/ { split(\$5, t, \"=\"); exit !(t[2] > 0) }' $dir/memory.pressure"
    before_high=$(awk '$1 == "high" { print $2 }' "$dir/memory.events")
    before_total=$(awk '/^full/ { split($5, t, "="); print t[2] }' "$dir/memory.pressure")
    j=$(leakwatch inspect --systemd-unit lwt-press.service --json)
    after_high=$(awk '$1 == "high" { print $2 }' "$dir/memory.events")
    after_total=$(awk '/^full/ { split($5, t, "="); print t[2] }' "$dir/memory.pressure")
    jq -c '.cgroup_memory | {events, pressure}' <<<"$j"
    high=$(jq -r .cgroup_memory.events.high <<<"$j")
    [ "$high" -ge "$before_high" ] && [ "$high" -le "$after_high" ] ||
        fail "events.high $high is not within the file's $before_high..$after_high"
    total=$(jq -r .cgroup_memory.pressure.full.total_us <<<"$j")
    [ "$total" -ge "$before_total" ] && [ "$total" -le "$after_total" ] ||
        fail "pressure full total $total is not within the file's $before_total..$after_total"
    [ "$total" -gt 0 ] || fail "no stall recorded"
    cp "$dir/memory.pressure" "$out/fixtures/press.memory.pressure"
    cp "$dir/memory.events" "$out/fixtures/press.memory.events"
}

cgroup_namespace() {
    involve lwt-ns.service
    # The target in a container-like cgroup namespace with its own cgroup2 mount, as the
    # app container of a pod; leakwatch in another private cgroup namespace.
    unit lwt-ns.service \
        "ExecStart=/usr/bin/unshare -C -m --propagation private /bin/sh -c 'umount /sys/fs/cgroup && mount -t cgroup2 lwt-ns /sys/fs/cgroup && exec /usr/local/bin/lwt-grow 16 0'" \
        "MemoryMax=200M"
    systemctl start lwt-ns.service
    dir=$(cg lwt-ns.service)
    wait_for "16 MiB charged" 120 sh -c "[ \$(cat $dir/memory.current 2>/dev/null || echo 0) -gt 16000000 ]"
    pid=$(prop lwt-ns.service MainPID)
    # The oldest process is unshare's sh, exec'd into lwt-grow's sh.
    unshare -C cat /proc/"$pid"/cgroup | tee "$out/fixtures/proc_cgroup_sidecar"
    inspect_equal "$dir" unshare -C leakwatch inspect "$pid" --json
    jq -c .cgroup_memory.source /tmp/last.json
    [ "$(jq -r .cgroup_memory.source.via_target_root /tmp/last.json)" = true ] || fail "not read via the target's root"
    [ "$(jq -r .cgroup_memory.source.dir /tmp/last.json)" = "/proc/$pid/root/sys/fs/cgroup" ] ||
        fail "read from $(jq -r .cgroup_memory.source.dir /tmp/last.json)"
}

limits_on_ancestors() {
    involve lwt-anc.service lwt-pod.service
    # A slice with MemoryMax= and TasksMax=, a service in it with neither; a pod-like slice
    # with a lower MemoryMax= than its container's (the kubelet's layout).
    printf '[Slice]\nMemoryMax=300M\nTasksMax=40\n' >/etc/systemd/system/lwtlim.slice
    printf '[Slice]\nMemoryMax=200M\n' >/etc/systemd/system/lwtpod-p1.slice
    unit lwt-anc.service "ExecStart=/usr/local/bin/lwt-grow 8 0" "Slice=lwtlim.slice" "TasksMax=infinity"
    unit lwt-pod.service "ExecStart=/usr/local/bin/lwt-grow 8 0" "Slice=lwtpod-p1.slice" "MemoryMax=400M"
    systemctl start lwt-anc.service lwt-pod.service
    anc=$(cg lwt-anc.service)
    [ "$(cat "$anc/memory.max")" = max ] || fail "the service has a memory.max of its own"
    [ "$(cat "$anc/pids.max")" = max ] || fail "the service has a pids.max of its own"
    cat >/tmp/anc.toml <<'EOF2'
listen = "127.0.0.1:9722"
interval = "2s"
[[target]]
name = "anc"
systemd_unit = "lwt-anc.service"
[[target]]
name = "pod"
systemd_unit = "lwt-pod.service"
EOF2
    start_lw /tmp/anc.toml 9722
    wait_for "limits in /status" 90 has_limit 9722 cgroup_memory anc
    wait_for "limits in /status" 90 has_limit 9722 cgroup_memory pod
    s=$(series 9722 cgroup_memory anc)
    log "anc cgroup_memory: $s"
    jq -e ".limit == 314572800" <<<"$s" >/dev/null || fail "anc: the limit is not the slice's 300 MiB"
    [ "$(jq -r .limit_source <<<"$s")" = "memory.max of /lwtlim.slice" ] || fail "anc: limit_source"
    s=$(series 9722 threads anc)
    log "anc threads: $s"
    jq -r .limit_source <<<"$s" | grep -q '^pids.max.* of /lwtlim.slice' || fail "anc: threads limit_source"
    [ "$(jq -r '.limit <= 40' <<<"$s")" = true ] || fail "anc: threads limit above the slice's TasksMax"
    s=$(series 9722 cgroup_memory pod)
    log "pod cgroup_memory: $s"
    jq -e ".limit == 209715200" <<<"$s" >/dev/null || fail "pod: the limit is not the pod slice's 200 MiB"
    [ "$(jq -r .limit_source <<<"$s")" = "memory.max of /lwtpod.slice/lwtpod-p1.slice" ] ||
        fail "pod: limit_source"
    kill "$lw_pid"
}

dpkg_purge() {
    systemctl stop 'leakwatch*' 2>/dev/null || true
    rm -f /etc/leakwatch/lwt-*.toml
    rm -rf /etc/systemd/system/leakwatch-restart@*.service.d
    dpkg --purge leakwatch
    ! dpkg -s leakwatch 2>/dev/null | grep -q '^Status: install' || fail "still installed"
    for p in /usr/bin/leakwatch /etc/leakwatch /var/lib/leakwatch /usr/libexec/leakwatch \
        /usr/share/doc/leakwatch /usr/lib/systemd/system/leakwatch.service \
        /usr/lib/systemd/system/leakwatch@.service /usr/lib/systemd/system/leakwatch-restart@.service; do
        [ ! -e "$p" ] || fail "$p is left after dpkg --purge"
    done
    [ -z "$(systemctl list-unit-files --no-legend 'leakwatch*')" ] || fail "systemd still lists leakwatch units"
    ! pgrep -x leakwatch || fail "a leakwatch process is left"
}

# ---- run -----------------------------------------------------------------------------------
{
    echo "INFO kernel $(uname -r)"
    echo "INFO systemd $(systemctl --version | head -n1)"
    echo "INFO cgroup $(stat -fc %T /sys/fs/cgroup)"
} | tee "$out/versions" >>"$results"
log "$(cat "$out/versions")"
log "system: $(systemctl is-system-running || true)"

only=${LW_ONLY:-}
[ -f "$in/only" ] && only=$(cat "$in/only")
for s in deb_install notify_status watchdog restart_before_emfile restart_before_oom multi_target \
    memory_equals_files memory_high_is_the_limit events_and_psi healthz_before_oom cgroup_namespace \
    limits_on_ancestors dpkg_purge; do
    if [ -n "$only" ] && [ "$s" != deb_install ] && ! grep -qw "$s" <<<"$only"; then
        continue
    fi
    scenario "$s" "$s"
    # Whatever a scenario ran in the background ends here.
    if [ -f /tmp/lw-pids ]; then
        while read -r p; do kill "$p" 2>/dev/null || true; done </tmp/lw-pids
        rm -f /tmp/lw-pids
    fi
done
journalctl --no-pager -b -o short-monotonic >"$out/journal.txt" 2>&1
grep -q '^FAIL' "$results" && exit 1
exit 0
