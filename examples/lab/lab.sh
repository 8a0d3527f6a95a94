#!/usr/bin/env bash
# The Contrail NetworkPolicy lab (Juniper's "Create Kubernetes Network Policy"; see
# README.md here and ../policies/README.md), reproduced with network namespaces, real
# web servers and real clients, with palisade in the place of the vRouter.
#
# Topology (every name starts with plab-, so a second run finds and removes leftovers):
#   - one network namespace per pod: client1-dev, client2-dev, webserver-dev,
#     dbserver-dev (namespace dev), client-jtac (jtac), client-qa (qa), addressed as
#     in ../policies/lab/pods.yaml (10.47.255.231-236);
#   - two external hosts: cent222 (10.169.25.20, admitted by policy1's ipBlock) and
#     cent333 (10.169.25.21, not). The lab loads the namespaces and pods but not
#     ../policies/lab/nodes.yaml: the two are plain outside hosts here, because traffic
#     between a node and its own pods is always allowed, which would hide the ipBlock;
#   - palisade in namespace plab-fw, `--mode bridge`, one net_tap port per host, each
#     tap joined to that host's veth by a Linux bridge inside plab-fw, so every packet
#     between two hosts crosses palisade, as every packet crosses the vRouter.
#   Addresses exist only inside the hosts' namespaces; each host has on-link routes to
#   the lab's two prefixes and nothing else, so nothing leads out. IPv6 is off in the
#   lab so the kernel adds no link-local addresses and sends no chatter.
#
# Story, each phase a full matrix: every host curls every other host's
# `python3 -m http.server` on TCP 80 (connect timeout 2 s), plus three probes on 8080
# (client1-dev → webserver-dev, webserver-dev → dbserver-dev, client-qa → client-jtac)
# to show that the rules' port counts:
#   no policy  everyone reaches everyone;
#   policy1    webserver-dev:80 only from client1-dev, client-jtac and cent222, its
#              other ports from nobody, and webserver-dev itself reaches only
#              dbserver-dev:80;
#   policy2    also dbserver-dev only from webserver-dev and only on 80, and
#              dbserver-dev opens nothing; every other pair still talks.
# Policies are applied live: the file is moved into the directory palisade watches and
# the script waits for palisade to publish the next snapshot generation. At the end
# `palisade flows --action drop` must show a denied flow as D(FwPolicy) with its rule,
# and palisade's metrics must count policy drops.
#
# Usage: sudo examples/lab/lab.sh [--palisade PATH] [--timeout SECS] [--keep-logs]
#   --palisade PATH  the binary to run (default: target/release/palisade, built with
#                    `cargo build --release` when missing)
#   --timeout SECS   bound on the whole run (default 240); past it the run fails
#   --keep-logs      keep the work directory (palisade's log, the watched directory)
# Exit status: 0 every observation matched; 1 a mismatch; 2 missing prerequisites or a
# broken set-up; 124 timed out; 130/143 interrupted (Ctrl-C, SIGTERM).
# Cleanup runs on every one of those exits: the processes it started (by PID), the
# plab- namespaces (with them their veths, bridges and taps), EAL's runtime files; the
# work directory stays only on failure or with --keep-logs. A run killed with SIGKILL
# cannot clean up; the next run does it first (the PIDs it recorded in
# /run/palisade-lab.pids that still live in a plab- namespace, then the namespaces).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
EXAMPLES="$ROOT/examples/policies"
PALISADE="${PALISADE:-}"
LAB_TIMEOUT=240
KEEP_LOGS=0

die() { echo "lab: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --palisade) [ $# -ge 2 ] || die "--palisade needs a path"; PALISADE="$2"; shift 2 ;;
        --palisade=*) PALISADE="${1#*=}"; shift ;;
        --timeout) [ $# -ge 2 ] || die "--timeout needs seconds"; LAB_TIMEOUT="$2"; shift 2 ;;
        --timeout=*) LAB_TIMEOUT="${1#*=}"; shift ;;
        --keep-logs) KEEP_LOGS=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$1' (try --help)" ;;
    esac
done
[[ "$LAB_TIMEOUT" =~ ^[0-9]+$ ]] && [ "$LAB_TIMEOUT" -gt 0 ] ||
    die "--timeout must be a whole number of seconds, got '$LAB_TIMEOUT'"

P=plab                                   # prefix of every namespace this lab creates
FW="$P-fw"                               # palisade's namespace
HOSTS=(client1-dev client2-dev webserver-dev dbserver-dev client-jtac client-qa cent222 cent333)
declare -A IP=(
    [client1-dev]=10.47.255.231 [client2-dev]=10.47.255.232 [webserver-dev]=10.47.255.233
    [dbserver-dev]=10.47.255.234 [client-jtac]=10.47.255.235 [client-qa]=10.47.255.236
    [cent222]=10.169.25.20 [cent333]=10.169.25.21
)
PREFIXES=(10.47.255.0/24 10.169.25.0/24)
LOCK=/run/palisade-lab.lock              # one lab at a time: the names are fixed
LEFTOVER_PIDS=/run/palisade-lab.pids     # what a hard-killed earlier run left running

# ---- preconditions: say exactly what is missing and how to get it ----------------
missing=()
need_cmd() { # need_cmd COMMAND HOW-TO-GET-IT
    command -v "$1" >/dev/null 2>&1 || missing+=("$1 (command not found): $2")
}
[ "$(id -u)" -eq 0 ] ||
    missing+=("root: the lab creates network namespaces, veths and bridges and runs DPDK; run: sudo $0")
need_cmd ip "apt-get install iproute2"
need_cmd ss "apt-get install iproute2"
need_cmd curl "apt-get install curl"
need_cmd python3 "apt-get install python3 (the pods' web servers are python3 -m http.server)"
need_cmd flock "apt-get install util-linux"
need_cmd sysctl "apt-get install procps"
[ -e /dev/net/tun ] || missing+=("/dev/net/tun (DPDK's net_tap needs it): modprobe tun")
if ! pkg-config --exists libdpdk 2>/dev/null &&
   ! compgen -G "/usr/lib/*/librte_eal.so*" >/dev/null && ! compgen -G "/usr/local/lib*/librte_eal.so*" >/dev/null; then
    missing+=("DPDK (no librte_eal, no libdpdk.pc): apt-get install dpdk dpdk-dev libdpdk-dev (Debian 12 / Ubuntu 22.04+ ship DPDK >= 22.11)")
elif ! compgen -G "/usr/lib/*/dpdk/pmds-*/librte_net_tap.so*" >/dev/null &&
     ! compgen -G "/usr/local/lib*/dpdk/pmds-*/librte_net_tap.so*" >/dev/null &&
     ! compgen -G "/usr/lib/*/librte_net_tap.so*" >/dev/null; then
    missing+=("DPDK's net_tap driver (librte_net_tap.so): apt-get install dpdk")
fi

if [ -z "$PALISADE" ]; then
    PALISADE="$ROOT/target/release/palisade"
    if [ ! -x "$PALISADE" ] && [ ${#missing[@]} -eq 0 ]; then
        # Build as the user who ran sudo, so target/ does not become root's.
        builder=()
        cargo="$(command -v cargo || true)"
        if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ] && command -v sudo >/dev/null; then
            builder=(sudo -u "$SUDO_USER" -H)
            home="$(getent passwd "$SUDO_USER" | cut -d: -f6)"
            [ -x "$home/.cargo/bin/cargo" ] && cargo="$home/.cargo/bin/cargo"
        elif [ -z "$cargo" ] && [ -x "$HOME/.cargo/bin/cargo" ]; then
            cargo="$HOME/.cargo/bin/cargo"
        fi
        if [ -z "$cargo" ]; then
            missing+=("palisade at $PALISADE, and no cargo to build it: install Rust (curl -sSf https://sh.rustup.rs | sh), then cargo build --release, or pass --palisade PATH")
        else
            echo "lab: no $PALISADE yet; building it (cargo build --release, a few minutes the first time)"
            (cd "$ROOT" && "${builder[@]}" env -u CARGO_TARGET_DIR PATH="$(dirname "$cargo"):$PATH" "$cargo" build --release --bin palisade) ||
                die "cargo build --release failed (output above); fix that, or pass --palisade PATH"
        fi
    fi
fi
if [ ! -x "$PALISADE" ]; then
    [ ${#missing[@]} -gt 0 ] || missing+=("the palisade binary at $PALISADE: cargo build --release, or pass --palisade PATH")
elif command -v ldd >/dev/null 2>&1 && ldd "$PALISADE" 2>/dev/null | grep -q "not found"; then
    libs="$(ldd "$PALISADE" | awk '/not found/ { printf "%s ", $1 }')"
    missing+=("shared libraries of $PALISADE: ${libs}— apt-get install dpdk (the DPDK it was built against)")
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "lab: cannot run; missing:" >&2
    printf '  - %s\n' "${missing[@]}" >&2
    exit 2
fi
for f in lab/namespaces.yaml lab/pods.yaml lab/policy1.yaml live/policy2.yaml; do
    [ -f "$EXAMPLES/$f" ] || die "missing $EXAMPLES/$f (the lab's manifests); is this a full checkout?"
done

# The lock is fd 9, held by this shell only (every child it starts closes fd 9), so a
# run killed hard releases it even though its processes live on.
exec 9>"$LOCK"
flock -w 15 9 || die "another lab run holds $LOCK; wait for it to finish"

# Leftovers of an earlier run that was killed hard (SIGKILL skips the trap): its
# processes, recognised by PID and by living in a plab- namespace, then its namespaces.
if [ -s "$LEFTOVER_PIDS" ]; then
    while read -r pid; do
        [ -d "/proc/$pid" ] || continue
        case "$(ip netns identify "$pid" 2>/dev/null)" in "$P"-*) kill -KILL "$pid" 2>/dev/null || true ;; esac
    done <"$LEFTOVER_PIDS"
fi
: >"$LEFTOVER_PIDS"
delete_namespaces() { # every plab- namespace, in parallel (each deletion waits on the kernel)
    local ns pids=()
    for ns in $(ip netns list | awk '{print $1}' | grep "^$P-" || true); do ip netns delete "$ns" & pids+=($!); done
    [ ${#pids[@]} -eq 0 ] || wait "${pids[@]}" || true
}
delete_namespaces
rm -rf /var/run/dpdk/palisade-lab-*      # EAL runtime files of earlier runs (we hold the lock)

WORK="$(mktemp -d /tmp/palisade-lab.XXXXXX)"
POLICY_DIR="$WORK/watched"               # the directory palisade watches
SOCKET="$WORK/control.sock"
METRICS=127.0.0.1:9469                   # inside plab-fw: its own loopback
FILE_PREFIX="palisade-lab-$$"            # EAL runtime files: /var/run/dpdk/<prefix>
LOG="$WORK/palisade.log"
MAIN_PID=$$
PIDS=()
PAL_PID=

started() { PIDS+=("$1"); echo "$1" >>"$LEFTOVER_PIDS"; }

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    set +e
    # palisade first (SIGTERM: it stops its workers and prints its counters), then the rest.
    if [ -n "$PAL_PID" ] && kill -0 "$PAL_PID" 2>/dev/null; then
        kill -TERM "$PAL_PID"
        for _ in $(seq 1 50); do kill -0 "$PAL_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$PAL_PID" 2>/dev/null
    fi
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    # Deleting a namespace removes its veth ends (and so their peers), bridges and taps.
    delete_namespaces
    rm -rf "/var/run/dpdk/$FILE_PREFIX"
    : >"$LEFTOVER_PIDS"
    if [ "$KEEP_LOGS" -eq 1 ] || { [ "$status" -ne 0 ] && [ "$status" -ne 130 ] && [ "$status" -ne 143 ]; }; then
        echo "lab: work directory kept: $WORK (palisade's log: $LOG)" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'echo "lab: interrupted" >&2; exit 130' INT
trap 'if [ -e "$WORK/timed-out" ]; then echo "lab: timed out after ${LAB_TIMEOUT}s" >&2; exit 124; fi; echo "lab: terminated" >&2; exit 143' TERM

# The bound on the whole run: a watchdog that gives up if this script is gone.
(
    exec 9>&-
    end=$((SECONDS + LAB_TIMEOUT))
    while [ "$SECONDS" -lt "$end" ]; do sleep 1; kill -0 "$MAIN_PID" 2>/dev/null || exit 0; done
    touch "$WORK/timed-out"; kill -TERM "$MAIN_PID"
) &
started $!

mkdir -p "$POLICY_DIR" "$WORK/www"
cp "$EXAMPLES/lab/namespaces.yaml" "$EXAMPLES/lab/pods.yaml" "$POLICY_DIR/"

netns() { # netns NAME: a namespace with loopback up and IPv6 off
    ip netns add "$1"
    ip -n "$1" link set lo up
    # (A kernel without IPv6 has no such keys, and nothing to switch off.)
    ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 2>/dev/null || true
}

# ---- palisade, in its own namespace ------------------------------------------------
netns "$FW"
port_args=()
for i in "${!HOSTS[@]}"; do port_args+=(--port "net_tap$i,iface=pt$i"); done
echo "lab: starting palisade in $FW (bridge mode, ${#HOSTS[@]} net_tap ports, no hugepages)"
extra=()
if "$PALISADE" run --help | grep -q -- --control-socket; then
    extra+=(--control-socket "$SOCKET" --metrics-addr "$METRICS")
fi
NO_COLOR=1 PALISADE_LOG="${PALISADE_LOG:-info}" ip netns exec "$FW" "$PALISADE" run --mode bridge \
    --no-huge --memory-mb 512 --manifests "$POLICY_DIR" "${extra[@]}" "${port_args[@]}" \
    --eal-arg=--file-prefix="$FILE_PREFIX" </dev/null >"$LOG" 2>&1 9>&- &
PAL_PID=$!
started "$PAL_PID"

plain_log() { sed 's/\x1b\[[0-9;]*m//g' "$LOG"; }
for _ in $(seq 1 600); do
    plain_log | grep -q "forwarding;" && break
    kill -0 "$PAL_PID" 2>/dev/null || { cat "$LOG" >&2; die "palisade exited during start (its output is above)"; }
    sleep 0.1
done
plain_log | grep -q "forwarding;" || { cat "$LOG" >&2; die "palisade did not start forwarding within 60 s"; }

# ---- hosts: namespace, veth into plab-fw, bridge to the host's tap, web server -----
for i in "${!HOSTS[@]}"; do
    h="${HOSTS[$i]}"
    ns="$P-$h"
    netns "$ns"
    ip -n "$FW" link add "br$i" type bridge
    ip -n "$FW" link set "pt$i" master "br$i" up
    ip link add "plv$i" netns "$FW" type veth peer name eth0 netns "$ns"
    ip -n "$FW" link set "plv$i" master "br$i" up
    ip -n "$FW" link set "br$i" up
    ip -n "$ns" addr add "${IP[$h]}/32" dev eth0
    ip -n "$ns" link set eth0 up
    for prefix in "${PREFIXES[@]}"; do ip -n "$ns" route add "$prefix" dev eth0; done
done
# Web servers: every host on TCP 80; the two servers and client-jtac also on 8080, to
# show that a rule's port is part of what it allows.
SERVERS=()
for h in "${HOSTS[@]}"; do SERVERS+=("$h 80"); done
SERVERS+=("webserver-dev 8080" "dbserver-dev 8080" "client-jtac 8080")
for server in "${SERVERS[@]}"; do
    read -r h port <<<"$server"
    (cd "$WORK/www" && exec ip netns exec "$P-$h" python3 -m http.server "$port" --bind "${IP[$h]}") >/dev/null 2>&1 9>&- &
    started $!
done
for server in "${SERVERS[@]}"; do
    read -r h port <<<"$server"
    for _ in $(seq 1 100); do
        ip netns exec "$P-$h" ss -Hltn "src ${IP[$h]}:$port" | grep -q . && break
        sleep 0.1
    done
    ip netns exec "$P-$h" ss -Hltn "src ${IP[$h]}:$port" | grep -q . || die "the web server on $P-$h:$port did not start"
done

# ---- policy, applied live ----------------------------------------------------------
generation() { # the snapshot generation in force: palisade enforces generation 1 (the
    # directory as it was at start) before it starts forwarding, and logs each later one.
    plain_log | sed -n 's/.*policy snapshot published.*generation=\([0-9]*\).*/\1/p' | tail -n 1 | grep . || echo 1
}

apply() { # apply FILE: move it into the watched directory, wait for the next generation
    local before after
    before="$(generation)"
    cp "$1" "$WORK/incoming.yaml"
    mv "$WORK/incoming.yaml" "$POLICY_DIR/$(basename "$1")"  # one atomic rename
    for _ in $(seq 1 300); do
        after="$(generation)"
        [ "$after" -gt "$before" ] && { echo "lab: $(basename "$1") applied live: generation $before → $after"; return 0; }
        if plain_log | grep -q "policy change rejected"; then
            plain_log | grep "policy change rejected" >&2
            die "palisade rejected $(basename "$1")"
        fi
        sleep 0.1
    done
    die "palisade did not publish a new generation within 30 s of $(basename "$1") (log: $LOG)"
}

# ---- probes ------------------------------------------------------------------------
# Every ordered pair of hosts on TCP 80, then three on 8080.
PROBES=()
for src in "${HOSTS[@]}"; do
    for dst in "${HOSTS[@]}"; do [ "$src" = "$dst" ] || PROBES+=("$src $dst 80"); done
done
PROBES+=("client1-dev webserver-dev 8080" "webserver-dev dbserver-dev 8080" "client-qa client-jtac 8080")

expected() { # expected PHASE SRC DST PORT → reach | timeout: the document's story
    local phase=$1 src=$2 dst=$3 port=$4
    [ "$phase" = "no-policy" ] && { echo reach; return; }
    # policy1: webserver-dev accepts TCP 80 from client1-dev, jtac's pods and cent222,
    # and opens TCP 80 to dbserver-dev only.
    if [ "$dst" = webserver-dev ]; then
        case "$src:$port" in client1-dev:80|client-jtac:80|cent222:80) ;; *) echo timeout; return ;; esac
    fi
    if [ "$src" = webserver-dev ] && [ "$dst:$port" != dbserver-dev:80 ]; then echo timeout; return; fi
    # policy2: dbserver-dev accepts TCP 80 from webserver-dev only, and opens nothing.
    if [ "$phase" = policy2 ]; then
        [ "$src" = dbserver-dev ] && { echo timeout; return; }
        [ "$dst" = dbserver-dev ] && [ "$src:$port" != webserver-dev:80 ] && { echo timeout; return; }
    fi
    echo reach
}

probe() { # probe SRC DST PORT → reach | timeout | refused | error-N
    local rc=0
    ip netns exec "$P-$1" curl -s --noproxy "*" -o /dev/null --connect-timeout 2 --max-time 5 "http://${IP[$2]}:$3/" 9>&- || rc=$?
    case $rc in 0) echo reach ;; 28) echo timeout ;; 7) echo refused ;; *) echo "error-$rc" ;; esac
}

PHASES=(no-policy policy1 policy2)
declare -A EXP OBS                       # keyed "phase,src,dst,port"
FAIL=0
run_phase() { # run_phase PHASE: every probe at once, then compare
    local phase=$1 pids=() p src dst port n=0 denied=0
    mkdir -p "$WORK/probes/$phase"
    for p in "${PROBES[@]}"; do
        read -r src dst port <<<"$p"
        probe "$src" "$dst" "$port" >"$WORK/probes/$phase/$src,$dst,$port" 9>&- &
        pids+=($!)
    done
    wait "${pids[@]}"
    for p in "${PROBES[@]}"; do
        read -r src dst port <<<"$p"
        EXP[$phase,$src,$dst,$port]="$(expected "$phase" "$src" "$dst" "$port")"
        OBS[$phase,$src,$dst,$port]="$(cat "$WORK/probes/$phase/$src,$dst,$port")"
        n=$((n + 1))
        [ "${EXP[$phase,$src,$dst,$port]}" = timeout ] && denied=$((denied + 1))
        [ "${EXP[$phase,$src,$dst,$port]}" = "${OBS[$phase,$src,$dst,$port]}" ] || FAIL=$((FAIL + 1))
    done
    echo "lab: phase $phase: $n probes, $denied expected to time out"
}

run_phase no-policy
apply "$EXAMPLES/lab/policy1.yaml"
run_phase policy1
apply "$EXAMPLES/live/policy2.yaml"
run_phase policy2

# ---- the table ----------------------------------------------------------------------
echo
printf '%-14s %-18s' "" ""
for phase in "${PHASES[@]}"; do printf ' | %-17s' "$phase"; done
printf '\n%-14s %-18s' SOURCE DESTINATION
for _ in "${PHASES[@]}"; do printf ' | %-8s %-8s' expected observed; done
printf '\n'
for p in "${PROBES[@]}"; do
    read -r src dst port <<<"$p"
    printf '%-14s %-18s' "$src" "$dst:$port"
    bad=()
    for phase in "${PHASES[@]}"; do
        printf ' | %-8s %-8s' "${EXP[$phase,$src,$dst,$port]}" "${OBS[$phase,$src,$dst,$port]}"
        [ "${EXP[$phase,$src,$dst,$port]}" = "${OBS[$phase,$src,$dst,$port]}" ] || bad+=("$phase")
    done
    [ ${#bad[@]} -eq 0 ] && printf '\n' || printf '  ✗ MISMATCH (%s)\n' "${bad[*]}"
done
echo

# ---- the flow table and the metrics, as the vRouter's flow -l shows D(FwPolicy) -------
# One more denied attempt, dbserver-dev → client1-dev:80, read from palisade's flow
# table while curl still waits for an answer (so no ageing can have removed it).
DENIED_SRC="${IP[dbserver-dev]}" DENIED_DST="${IP[client1-dev]}"
TIMED_OUT=0
for phase in "${PHASES[@]}"; do
    for key in "${!OBS[@]}"; do
        [ "${key%%,*}" = "$phase" ] && [ "${OBS[$key]}" = timeout ] && TIMED_OUT=$((TIMED_OUT + 1))
    done
done
if "$PALISADE" flows --help >/dev/null 2>&1; then
    probe dbserver-dev client1-dev 80 >"$WORK/probes/last" 9>&- &
    last_probe=$!
    sleep 0.5
    FLOWS="$(ip netns exec "$FW" "$PALISADE" flows --control-socket "$SOCKET" --action drop --pod dev/dbserver-dev 2>&1)" ||
        { echo "$FLOWS" >&2; echo "✗ MISMATCH: palisade flows failed" >&2; FAIL=$((FAIL + 1)); FLOWS=; }
    wait "$last_probe"
    [ "$(cat "$WORK/probes/last")" = timeout ] ||
        { echo "✗ MISMATCH: dbserver-dev → client1-dev:80 observed $(cat "$WORK/probes/last"), expected timeout"; FAIL=$((FAIL + 1)); }
    # A row "<index> TCP <src>:<port> (dev/dbserver-dev) <dst>:80 (dev/client1-dev) D(FwPolicy) ..."
    # followed by its detail line "worker .. gen .. rule <name>".
    ROW="$(awk -v s="$DENIED_SRC:" -v d="$DENIED_DST:80 " \
        'index($0, s) && index($0, d) && /D\(FwPolicy\)/ { print; getline; print; exit }' <<<"$FLOWS")"
    echo "palisade flows --control-socket $SOCKET --action drop --pod dev/dbserver-dev:"
    if [ -n "$ROW" ] && grep -q " rule [^ ]" <<<"$ROW"; then
        head -n 2 <<<"$FLOWS" | sed 's/^/  /'
        sed 's/^/  /' <<<"$ROW"
        echo "  ($(grep -c "D(FwPolicy)" <<<"$FLOWS") dropped flow(s) of dbserver-dev in the table)"
    else
        sed 's/^/  /' <<<"$FLOWS" | head -n 20
        echo "✗ MISMATCH: no D(FwPolicy) flow $DENIED_SRC → $DENIED_DST:80 with its deciding rule in palisade flows"
        FAIL=$((FAIL + 1))
    fi
    # Every timed-out probe had at least one SYN dropped by policy.
    METRICS_TEXT="$(ip netns exec "$FW" curl -s --noproxy "*" --max-time 3 "http://$METRICS/metrics" || true)"
    POLICY_DROPS="$(awk '$1 == "palisade_drops_total{reason=\"policy\"}" { print $2 }' <<<"$METRICS_TEXT")"
    echo "ip netns exec $FW curl http://$METRICS/metrics:"
    if [ "${POLICY_DROPS:-0}" -gt "$TIMED_OUT" ] 2>/dev/null; then
        echo "  palisade_drops_total{reason=\"policy\"} $POLICY_DROPS (≥ 1 per timed-out probe: $((TIMED_OUT + 1)))"
        grep '^palisade_policy_drops_total' <<<"$METRICS_TEXT" | sed 's/^/  /' || true
    else
        echo "✗ MISMATCH: palisade_drops_total{reason=\"policy\"} is ${POLICY_DROPS:-absent}, expected at least $((TIMED_OUT + 1)) (one per timed-out probe)"
        FAIL=$((FAIL + 1))
    fi
else
    echo "✗ MISMATCH: $PALISADE has no 'flows' command, so the D(FwPolicy) flow and the drop metrics cannot be shown"
    FAIL=$((FAIL + 1))
fi
echo

if [ "$FAIL" -eq 0 ]; then
    echo "lab: every observation matches the Contrail document ($((${#PROBES[@]} * ${#PHASES[@]})) probes, $SECONDS s)"
else
    echo "lab: $FAIL mismatch(es); the last lines of palisade's log:" >&2
    plain_log | grep -v -e multiq -e "rte flow support" -e tap_nl_dump | tail -n 30 >&2
    exit 1
fi
