#!/usr/bin/env bash
# The Contrail NetworkPolicy lab, reproduced with network namespaces.
#
# Topology: one network namespace per pod (client1-dev, client2-dev, webserver-dev,
# dbserver-dev in dev; client-jtac in jtac; client-qa in qa) and two external hosts
# (ext-ok = 10.169.25.20, allowed by policy1's ipBlock; ext-bad = 10.169.25.30, not).
# palisade runs in a namespace of its own in --mode bridge with one net_tap port per
# pod (the externals share one), each tap bridged to its pod's veth inside palisade's
# namespace: every packet between pods crosses palisade, as every packet crosses the
# vRouter in the document. Addresses exist only inside the lab's namespaces and no
# route leads out of them.
#
# Story: no policy → everyone reaches everyone; policy1 → webserver-dev:80 only from
# client1-dev, client-jtac and ext-ok, and webserver-dev reaches only dbserver-dev:80;
# policy2 → dbserver-dev:80 only from webserver-dev, and dbserver-dev opens nothing.
# Policies are applied live by writing files into the watched directory.
#
# Usage: examples/lab/lab.sh            (as root; builds nothing: set PALISADE=path)
# Exit status: 0 when every observation matches the expectation.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PALISADE="${PALISADE:-$ROOT/target/release/palisade}"
LAB_TIMEOUT="${LAB_TIMEOUT:-300}"
P=plab                      # prefix of every namespace this lab creates
FW="$P-fw"

HOSTS=(client1-dev client2-dev webserver-dev dbserver-dev client-jtac client-qa ext-ok ext-bad)
declare -A IP=(
    [client1-dev]=10.47.255.11 [client2-dev]=10.47.255.12 [webserver-dev]=10.47.255.13
    [dbserver-dev]=10.47.255.14 [client-jtac]=10.47.255.15 [client-qa]=10.47.255.16
    [ext-ok]=10.169.25.20 [ext-bad]=10.169.25.30
)
declare -A PORT=(
    [client1-dev]=0 [client2-dev]=1 [webserver-dev]=2 [dbserver-dev]=3
    [client-jtac]=4 [client-qa]=5 [ext-ok]=6 [ext-bad]=6
)
NPORTS=7

die() { echo "lab: $*" >&2; exit 2; }

# ---- preconditions: say exactly what is missing and how to get it ----
[ "$(id -u)" -eq 0 ] || die "must run as root (it creates network namespaces and runs DPDK): sudo $0"
command -v ip >/dev/null || die "needs iproute2: apt-get install iproute2"
command -v curl >/dev/null || die "needs curl: apt-get install curl"
command -v python3 >/dev/null || die "needs python3 for the web servers: apt-get install python3"
pkg-config --exists libdpdk 2>/dev/null || [ -e /usr/lib/x86_64-linux-gnu/librte_eal.so.23 ] ||
    die "needs DPDK: apt-get install dpdk dpdk-dev libdpdk-dev"
[ -x "$PALISADE" ] || die "no palisade binary at $PALISADE: cargo build --release (or set PALISADE=)"
[ -e /dev/net/tun ] || die "needs /dev/net/tun for DPDK's net_tap: modprobe tun"

WORK="$(mktemp -d /tmp/palisade-lab.XXXXXX)"
POLICY_DIR="$WORK/policy"
SOCKET="$WORK/control.sock"
METRICS=127.0.0.1:9469
PIDS=()

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    for ns in $(ip netns list | awk '{print $1}' | grep "^$P-" || true); do
        ip netns delete "$ns" 2>/dev/null || true
    done
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'echo "lab: interrupted" >&2; exit 130' INT TERM

# Leftovers of an earlier run that was killed hard.
for ns in $(ip netns list | awk '{print $1}' | grep "^$P-" || true); do ip netns delete "$ns"; done

# A bound on the whole run.
( sleep "$LAB_TIMEOUT"; echo "lab: timed out after ${LAB_TIMEOUT}s" >&2; kill -TERM $$ ) &
PIDS+=($!)

mkdir -p "$POLICY_DIR"
cp "$HERE/manifests/"*.yaml "$POLICY_DIR/"

# ---- palisade, in its own namespace ----
ip netns add "$FW"
ip -n "$FW" link set lo up
port_args=()
for i in $(seq 0 $((NPORTS - 1))); do port_args+=(--port "net_tap$i,iface=pt$i"); done
ip netns exec "$FW" "$PALISADE" run --mode bridge --workers 1 --no-huge \
    --manifests "$POLICY_DIR" --control-socket "$SOCKET" --metrics-addr "$METRICS" \
    --eal-arg=--file-prefix=palisade-lab "${port_args[@]}" >"$WORK/palisade.log" 2>&1 &
PIDS+=($!)
PAL_PID=$!

for _ in $(seq 1 100); do
    ip -n "$FW" link show "pt$((NPORTS - 1))" >/dev/null 2>&1 && break
    kill -0 "$PAL_PID" 2>/dev/null || { cat "$WORK/palisade.log" >&2; die "palisade exited at start"; }
    sleep 0.1
done
ip -n "$FW" link show "pt$((NPORTS - 1))" >/dev/null 2>&1 || die "palisade's tap ports did not appear"

# ---- bridges: tap i ↔ veths of the hosts on port i ----
for i in $(seq 0 $((NPORTS - 1))); do
    ip -n "$FW" link add "br$i" type bridge
    ip -n "$FW" link set "pt$i" master "br$i" up
    ip -n "$FW" link set "br$i" up
done
n=0
for h in "${HOSTS[@]}"; do
    ns="$P-$h"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip link add "plv$n" netns "$FW" type veth peer name eth0 netns "$ns"
    ip -n "$FW" link set "plv$n" master "br${PORT[$h]}" up
    ip -n "$ns" addr add "${IP[$h]}/32" dev eth0
    ip -n "$ns" link set eth0 up
    # On-link routes to the lab's own prefixes only: nothing leads out of the lab.
    ip -n "$ns" route add 10.47.255.0/24 dev eth0
    ip -n "$ns" route add 10.169.25.0/24 dev eth0
    # Every host serves HTTP on :80 so any pair can be probed.
    ip netns exec "$ns" python3 -m http.server 80 --bind "${IP[$h]}" >/dev/null 2>&1 &
    PIDS+=($!)
    n=$((n + 1))
done

# Wait for every server to listen.
for h in "${HOSTS[@]}"; do
    for _ in $(seq 1 50); do
        ip netns exec "$P-$h" sh -c "ss -ltn | grep -q '${IP[$h]}:80'" && break
        sleep 0.1
    done
done

metric() { # metric NAME → value (0 if absent)
    ip netns exec "$FW" curl -s --max-time 2 "http://$METRICS/metrics" |
        awk -v m="$1" '$1 == m { print $2; found=1 } END { if (!found) print 0 }'
}

wait_generation() { # wait until the snapshot generation reaches $1
    for _ in $(seq 1 100); do
        [ "$(metric palisade_snapshot_generation)" -ge "$1" ] 2>/dev/null && return 0
        sleep 0.1
    done
    die "policy generation $1 was never enforced (see $WORK/palisade.log)"
}

probe() { # probe SRC DST → "ok" or "timeout"
    local code
    code=$(ip netns exec "$P-$1" curl -s -o /dev/null -w '%{http_code}' \
        --connect-timeout 1 --max-time 2 "http://${IP[$2]}:80/" || true)
    [ "$code" = 200 ] && echo ok || echo timeout
}

FAIL=0
ROWS=()
check() { # check PHASE SRC DST EXPECTED
    local got
    got=$(probe "$2" "$3")
    local mark="✓"
    [ "$got" = "$4" ] || { mark="✗ MISMATCH"; FAIL=$((FAIL + 1)); }
    ROWS+=("$(printf '%-10s %-14s %-18s %-9s %-9s %s' "$1" "$2" "$3:80" "$4" "$got" "$mark")")
}

wait_generation 1

# Phase 0: before any policy, everyone reaches everyone.
for src in client1-dev client2-dev client-qa ext-bad dbserver-dev; do
    check none "$src" webserver-dev ok
done
check none client2-dev dbserver-dev ok
check none webserver-dev client1-dev ok
check none client-qa client-jtac ok

# Phase 1: policy1, applied live.
cp "$HERE/policies/policy1.yaml" "$POLICY_DIR/"
wait_generation 2
for src in client1-dev client-jtac ext-ok; do check policy1 "$src" webserver-dev ok; done
for src in client2-dev client-qa ext-bad; do check policy1 "$src" webserver-dev timeout; done
check policy1 webserver-dev dbserver-dev ok
check policy1 webserver-dev client1-dev timeout
check policy1 webserver-dev client-qa timeout
check policy1 client2-dev dbserver-dev ok
check policy1 client1-dev client2-dev ok

# Phase 2: policy2 (Ingress + Egress, no egress rules), applied live.
cp "$HERE/policies/policy2.yaml" "$POLICY_DIR/"
wait_generation 3
check policy2 webserver-dev dbserver-dev ok
for src in client1-dev client2-dev client-jtac client-qa ext-ok; do check policy2 "$src" dbserver-dev timeout; done
check policy2 dbserver-dev client1-dev timeout
check policy2 dbserver-dev ext-ok timeout
check policy2 client1-dev webserver-dev ok
check policy2 client-qa client-jtac ok
check policy2 client1-dev client2-dev ok
check policy2 ext-bad client-qa ok

echo
printf '%-10s %-14s %-18s %-9s %-9s %s\n' PHASE SOURCE DESTINATION EXPECTED OBSERVED ""
printf '%s\n' "${ROWS[@]}"
echo

# The flow table shows the denied flows with the deciding rule, and metrics count them.
FLOWS="$("$PALISADE" flows --control-socket "$SOCKET" --action drop 2>&1 || true)"
if grep -q "D(FwPolicy)" <<<"$FLOWS"; then
    echo "palisade flows --action drop:"
    grep -m 4 -A1 "D(FwPolicy)" <<<"$FLOWS" || true
else
    echo "✗ MISMATCH: palisade flows shows no D(FwPolicy) flow:"; echo "$FLOWS"; FAIL=$((FAIL + 1))
fi
POLICY_DROPS="$(ip netns exec "$FW" curl -s --max-time 2 "http://$METRICS/metrics" |
    awk '$1 == "palisade_drops_total{reason=\"policy\"}" { print $2 }')"
if [ "${POLICY_DROPS:-0}" -gt 0 ] 2>/dev/null; then
    echo "palisade_drops_total{reason=\"policy\"} = $POLICY_DROPS"
else
    echo "✗ MISMATCH: metrics count no policy drops"; FAIL=$((FAIL + 1))
fi

echo
if [ "$FAIL" -eq 0 ]; then
    echo "lab: every observation matches the Contrail document (${#ROWS[@]} probes)"
else
    echo "lab: $FAIL mismatch(es); palisade's log: " >&2
    tail -n 40 "$WORK/palisade.log" >&2
    exit 1
fi
