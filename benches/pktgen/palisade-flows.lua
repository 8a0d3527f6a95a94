-- Pktgen-DPDK script for palisade on real NICs: a new-flow test and an established-flow
-- test through a DUT running `palisade run --mode wire` between two cabled ports.
-- Pktgen port TX_PORT sends into the DUT's port A; the DUT forwards what policy allows
-- out of its port B into Pktgen port RX_PORT, where the result is read.
--
-- Not run by the e2e harness: Pktgen's spinning lcores starve a 2-core box. See
-- benches/README.md ("pktgen") for the command line and the DUT's side.
--
-- Flows come from range mode: the source address walks SRC_HOSTS addresses and the
-- source port walks SPORTS ports, so one cycle of the range is FLOWS = SRC_HOSTS * SPORTS
-- distinct UDP 5-tuples (UDP, because Pktgen's range-mode TCP frames are not SYNs, and
-- palisade's strict TCP mode only opens a flow on a SYN; run the DUT with --tcp-loose
-- to use PROTO = "tcp" instead).
-- * new-flow test: the range is much larger than what one measurement window sends, so
--   every packet in the window opens a flow (the DUT's flow table must be larger than
--   the flows sent: --flow-capacity).
-- * established-flow test: a small range cycled for a warm-up first (every flow is in the
--   table), then the window: every packet hits an existing flow.
-- The DST_IP/SRC_IP ranges must be pods of the policy the DUT enforces (for example a
-- synthetic cluster's 10.N.M.0/24 pods, as benches/e2e writes under target/e2e/) so
-- that policy actually applies; the allowed share shows as RX / TX.

package.path = package.path .. ";?.lua;test/?.lua;app/?.lua;"
require "Pktgen"

-- Knobs ------------------------------------------------------------------------------
local TX_PORT      = "0"
local RX_PORT      = "1"
local PKT_SIZE     = 64
local PROTO        = "udp"
local DST_MAC      = "02:00:00:00:00:02"       -- the DUT port A (promiscuous anyway)
local SRC_MAC      = "02:00:00:00:00:01"
local SRC_IP_FIRST = "10.0.0.2"                 -- source pods
local DST_IP       = "10.0.1.2"                 -- destination pod
local DST_PORT     = 8080
local WINDOW_MS    = 10000
local WARMUP_MS    = 3000

-- Established test: FLOWS = EST_SRC_HOSTS * EST_SPORTS
local EST_SRC_HOSTS = 100
local EST_SPORTS    = 1000                       -- 100k flows
-- New-flow test: a range far larger than WINDOW_MS at line rate (here 254 * 64k = 16.6M)
local NEW_SRC_HOSTS = 254
local NEW_SPORTS    = 65000

local function ip_add(ip, n)
    local a, b, c, d = ip:match("(%d+)%.(%d+)%.(%d+)%.(%d+)")
    local v = ((tonumber(a) * 256 + tonumber(b)) * 256 + tonumber(c)) * 256 + tonumber(d) + n
    return string.format("%d.%d.%d.%d", (v >> 24) & 255, (v >> 16) & 255, (v >> 8) & 255, v & 255)
end

-- Range mode: the source port changes fastest, then the source address.
local function setup_range(src_hosts, sports)
    local p = TX_PORT
    pktgen.range.dst_mac(p, "start", DST_MAC)
    pktgen.range.src_mac(p, "start", SRC_MAC)

    pktgen.range.dst_ip(p, "start", DST_IP)
    pktgen.range.dst_ip(p, "inc", "0.0.0.0")
    pktgen.range.dst_ip(p, "min", DST_IP)
    pktgen.range.dst_ip(p, "max", DST_IP)

    local last = ip_add(SRC_IP_FIRST, src_hosts - 1)
    pktgen.range.src_ip(p, "start", SRC_IP_FIRST)
    pktgen.range.src_ip(p, "inc", "0.0.0.1")
    pktgen.range.src_ip(p, "min", SRC_IP_FIRST)
    pktgen.range.src_ip(p, "max", last)

    pktgen.range.src_port(p, "start", 1024)
    pktgen.range.src_port(p, "inc", 1)
    pktgen.range.src_port(p, "min", 1024)
    pktgen.range.src_port(p, "max", 1024 + sports - 1)

    pktgen.range.dst_port(p, "start", DST_PORT)
    pktgen.range.dst_port(p, "inc", 0)
    pktgen.range.dst_port(p, "min", DST_PORT)
    pktgen.range.dst_port(p, "max", DST_PORT)

    pktgen.range.pkt_size(p, "start", PKT_SIZE)
    pktgen.range.pkt_size(p, "inc", 0)
    pktgen.range.pkt_size(p, "min", PKT_SIZE)
    pktgen.range.pkt_size(p, "max", PKT_SIZE)

    pktgen.set_proto(p, PROTO)
    pktgen.range.ip_proto(p, PROTO)
    pktgen.set(p, "rate", 100)
    pktgen.set_range(p, "on")
    printf("range: %d source hosts x %d source ports = %d flows, %s, %d B\n",
        src_hosts, sports, src_hosts * sports, PROTO, PKT_SIZE)
end

local function counters()
    local stats = pktgen.portStats("all", "port")
    return stats[tonumber(TX_PORT)].opackets, stats[tonumber(RX_PORT)].ipackets
end

-- Sends for `ms` and returns offered and received packets per second, read at the far
-- port (what the DUT forwarded).
local function window(ms)
    local tx0, rx0 = counters()
    pktgen.delay(ms)
    local tx1, rx1 = counters()
    local secs = ms / 1000.0
    return (tx1 - tx0) / secs, (rx1 - rx0) / secs
end

local function report(name, flows, tx_pps, rx_pps)
    printf("%-12s flows %9d  offered %8.3f Mpps  forwarded %8.3f Mpps  (%.1f %%)\n",
        name, flows, tx_pps / 1e6, rx_pps / 1e6, tx_pps > 0 and 100.0 * rx_pps / tx_pps or 0)
end

-- Established flows: cycle the range during the warm-up, then measure.
setup_range(EST_SRC_HOSTS, EST_SPORTS)
pktgen.clr()
pktgen.start(TX_PORT)
pktgen.delay(WARMUP_MS)
local tx, rx = window(WINDOW_MS)
pktgen.stop(TX_PORT)
report("established", EST_SRC_HOSTS * EST_SPORTS, tx, rx)
pktgen.delay(1000)

-- New flows: restart the DUT (or wait out its UDP timeout) before this test so the
-- table is empty; the window must end before the range wraps.
setup_range(NEW_SRC_HOSTS, NEW_SPORTS)
pktgen.clr()
pktgen.start(TX_PORT)
tx, rx = window(WINDOW_MS)
pktgen.stop(TX_PORT)
report("new", NEW_SRC_HOSTS * NEW_SPORTS, tx, rx)
local sent = tx * WINDOW_MS / 1000.0
if sent > NEW_SRC_HOSTS * NEW_SPORTS then
    printf("warning: %.0f packets sent > %d flows in the range: the window wrapped, later packets were not new\n",
        sent, NEW_SRC_HOSTS * NEW_SPORTS)
end
