#!/usr/bin/env bash
# OVS-DPDK with a conntrack ACL, the stateful peer of benches/e2e.rs: the same vdevs
# (net_pcap replaying a pcap in a loop -> net_null that never receives), the same
# single forwarding core, --no-pci --no-huge. It measures the rate over a window after
# a warm-up and stops everything it started.
#
# Installs nothing. Needs Debian's openvswitch-switch-dpdk (3.1 on Debian 12):
#     apt-get install openvswitch-switch-dpdk
# It does not switch the system's ovs-vswitchd alternative, touch the system's OVS
# database or start its service: ovsdb-server and ovs-vswitchd-dpdk run from a private
# directory (OVS_RUNDIR/OVS_DBDIR/OVS_LOGDIR) inside a private network namespace (the
# netdev bridge's own tap port lands there, not on the host), and are stopped by the
# PIDs in their pidfiles on every exit path (trap).
#
# Flows (OpenFlow 1.3, two tables):
#   table 0: IP -> ct(table=1); anything else -> output:2
#   table 1: +trk+est / +trk+rel -> output:2
#            +trk+new and a 5-tuple the policy allows -> ct(commit),output:2
#            anything else -> drop
# The allowed tuples come from --allowed, one "tcp|udp SRC DST DPORT" per line (the
# e2e harness writes them from the compiled snapshot: the same policy palisade runs).
# --no-acl replaces all of that with a single output:2 flow (the forwarding baseline).
#
# usage: ovs-conntrack.sh --pcap FILE [--allowed FILE | --no-acl] [--cpu N] [--main-cpu N]
#                         [--secs S] [--warm S] [--memory-mb MB] [--json OUT]
set -euo pipefail

VSWITCHD=/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk
SCHEMA=/usr/share/openvswitch/vswitch.ovsschema
PCAP= ALLOWED= NO_ACL=0 CPU=1 MAIN_CPU=0 SECS=5 WARM=2 MEM=2048 JSON=
while [ $# -gt 0 ]; do
    case "$1" in
        --pcap) PCAP=$2; shift 2 ;;
        --allowed) ALLOWED=$2; shift 2 ;;
        --no-acl) NO_ACL=1; shift ;;
        --cpu) CPU=$2; shift 2 ;;
        --main-cpu) MAIN_CPU=$2; shift 2 ;;
        --secs) SECS=$2; shift 2 ;;
        --warm) WARM=$2; shift 2 ;;
        --memory-mb) MEM=$2; shift 2 ;;
        --json) JSON=$2; shift 2 ;;
        -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
        *) echo "ovs-conntrack.sh: unknown argument $1 (see --help)" >&2; exit 64 ;;
    esac
done

if [ ! -x "$VSWITCHD" ] || ! command -v ovsdb-server >/dev/null || ! command -v ovs-vsctl >/dev/null; then
    echo "ovs-conntrack.sh: OVS-DPDK is not installed ($VSWITCHD missing): apt-get install openvswitch-switch-dpdk" >&2
    exit 2
fi
if [ -z "$PCAP" ] || [ ! -r "$PCAP" ]; then
    echo "ovs-conntrack.sh: --pcap FILE is required and must be readable" >&2
    exit 64
fi
case "$PCAP" in *,*) echo "ovs-conntrack.sh: the pcap path must not contain a comma (it goes into DPDK devargs)" >&2; exit 64 ;; esac
if [ "$NO_ACL" = 0 ] && { [ -z "$ALLOWED" ] || [ ! -r "$ALLOWED" ]; }; then
    echo "ovs-conntrack.sh: give --allowed FILE (tcp|udp SRC DST DPORT per line) or --no-acl" >&2
    exit 64
fi
PCAP=$(readlink -f "$PCAP")

RUN=$(mktemp -d /tmp/ovs-conntrack.XXXXXX)
NETNS=ovs-ct-$$
PREFIX=ovs-ct-$$
export OVS_RUNDIR=$RUN OVS_DBDIR=$RUN OVS_LOGDIR=$RUN OVS_SYSCONFDIR=$RUN
DB=unix:$RUN/db.sock
VSCTL=(ovs-vsctl --db="$DB" --timeout=60)

stop_pidfile() {
    local pidfile=$1 pid i
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile" 2>/dev/null) || return 0
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pidfile "$RUN/ovs-vswitchd.pid"
    stop_pidfile "$RUN/ovsdb-server.pid"
    ip netns del "$NETNS" 2>/dev/null || true
    rm -rf "/var/run/dpdk/$PREFIX"
    if [ "$rc" != 0 ] && [ -f "$RUN/ovs-vswitchd.log" ]; then
        echo "ovs-conntrack.sh: failed (rc $rc); last lines of ovs-vswitchd.log:" >&2
        tail -n 8 "$RUN/ovs-vswitchd.log" >&2
    fi
    rm -rf "$RUN"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mask() { printf '0x%x' $((1 << $1)); }

ip netns add "$NETNS"
ovsdb-tool create "$RUN/conf.db" "$SCHEMA"
ovsdb-server "$RUN/conf.db" --remote="punix:$RUN/db.sock" --pidfile="$RUN/ovsdb-server.pid" \
    --unixctl="$RUN/ovsdb-server.ctl" --log-file="$RUN/ovsdb-server.log" --detach
"${VSCTL[@]}" --no-wait init
"${VSCTL[@]}" --no-wait set Open_vSwitch . \
    other_config:dpdk-init=true \
    other_config:dpdk-lcore-mask="$(mask "$MAIN_CPU")" \
    other_config:pmd-cpu-mask="$(mask "$CPU")" \
    other_config:dpdk-extra="--no-pci --no-huge --legacy-mem -m $MEM --file-prefix $PREFIX --log-level=lib.eal:warning"
ip netns exec "$NETNS" "$VSWITCHD" "$DB" --pidfile="$RUN/ovs-vswitchd.pid" --unixctl="$RUN/ovs-vswitchd.ctl" \
    --log-file="$RUN/ovs-vswitchd.log" --detach
APPCTL=(ovs-appctl --target="$RUN/ovs-vswitchd.ctl")

"${VSCTL[@]}" add-br br0 -- set Bridge br0 datapath_type=netdev fail_mode=secure protocols=OpenFlow13
"${VSCTL[@]}" add-port br0 p0 -- set Interface p0 type=dpdk ofport_request=1 \
    "options:dpdk-devargs=\"net_pcap0,rx_pcap=$PCAP,infinite_rx=1\""
"${VSCTL[@]}" add-port br0 p1 -- set Interface p1 type=dpdk ofport_request=2 \
    "options:dpdk-devargs=\"net_null1,no-rx=1\""
for port in p0 p1; do
    err=$("${VSCTL[@]}" get Interface "$port" error 2>/dev/null || true)
    ofport=$("${VSCTL[@]}" get Interface "$port" ofport)
    if [ "$ofport" = "-1" ] || { [ -n "$err" ] && [ "$err" != "[]" ]; }; then
        echo "ovs-conntrack.sh: port $port did not come up: $err" >&2
        exit 3
    fi
done

FLOWS=$RUN/flows.txt
if [ "$NO_ACL" = 1 ]; then
    echo "table=0,priority=0,actions=output:2" > "$FLOWS"
else
    {
        echo "table=0,priority=100,ip,actions=ct(table=1)"
        echo "table=0,priority=0,actions=output:2"
        echo "table=1,priority=100,ct_state=+trk+est,ip,actions=output:2"
        echo "table=1,priority=100,ct_state=+trk+rel,ip,actions=output:2"
        awk 'NF == 4 && ($1 == "tcp" || $1 == "udp") {
                 printf "table=1,priority=50,ct_state=+trk+new,%s,nw_src=%s,nw_dst=%s,tp_dst=%s,actions=ct(commit),output:2\n", $1, $2, $3, $4
             }' "$ALLOWED"
        echo "table=1,priority=0,actions=drop"
    } > "$FLOWS"
fi
ovs-ofctl -O OpenFlow13 add-flows "unix:$RUN/br0.mgmt" "$FLOWS"
RULES=$(($(wc -l < "$FLOWS")))

# Port counters read live from the PMDs (dpctl/show -s); the Interface table's
# statistics column is only refreshed every 5 s, too coarse for a window.
stat() {
    "${APPCTL[@]}" dpctl/show -s | awk -v port="$1" -v dir="$2" '
        $1 == "port" && $3 == port { here = 1; next }
        $1 == "port" { here = 0 }
        here && $1 == dir { split($2, kv, ":"); print kv[2]; exit }'
}
sleep "$WARM"
"${APPCTL[@]}" dpif-netdev/pmd-stats-clear >/dev/null
rx0=$(stat p0 RX) tx0=$(stat p1 TX) t0=$(date +%s.%N)
sleep "$SECS"
rx1=$(stat p0 RX) tx1=$(stat p1 TX) t1=$(date +%s.%N)
PMD=$("${APPCTL[@]}" dpif-netdev/pmd-stats-show)
CONNS=$("${APPCTL[@]}" dpctl/ct-stats-show 2>/dev/null | awk '/Connections|Total/ {print $NF; exit}' || true)
cycles=$(printf '%s\n' "$PMD" | awk -F': *' '/avg processing cycles per packet/ {split($2, a, " "); print a[1]; exit}')

read -r rx_pps tx_pps share secs < <(awk -v r0="$rx0" -v r1="$rx1" -v x0="$tx0" -v x1="$tx1" -v a="$t0" -v b="$t1" \
    'BEGIN { d = b - a; printf "%.0f %.0f %.4f %.3f\n", (r1 - r0) / d, (x1 - x0) / d, (r1 > r0 ? (x1 - x0) / (r1 - r0) : 0), d }')
echo "OVS-DPDK $(ovs-vswitchd --version 2>/dev/null | head -1 | awk '{print $NF}') conntrack: $RULES OpenFlow rules," \
    "rx $(awk -v v="$rx_pps" 'BEGIN{printf "%.3f", v/1e6}') Mpps, tx $(awk -v v="$tx_pps" 'BEGIN{printf "%.3f", v/1e6}') Mpps" \
    "(forwarded share $share) over $secs s after ${WARM} s warm-up; pmd cycles/packet ${cycles:-?}"
if [ -n "$JSON" ]; then
    printf '{"rx_pps": %s, "tx_pps": %s, "forwarded_share": %s, "seconds": %s, "openflow_rules": %s, "pmd_cycles_per_packet": %s, "acl": %s}\n' \
        "$rx_pps" "$tx_pps" "$share" "$secs" "$RULES" "${cycles:-null}" "$([ "$NO_ACL" = 1 ] && echo false || echo true)" > "$JSON"
fi
