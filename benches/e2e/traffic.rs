//! Traffic and policy for the end-to-end harness, made with the project's own pieces:
//! `control::compile::synthetic` clusters (written out as a manifest directory for
//! `palisade run --manifests`), the compiled snapshot (to pick flows some of which policy
//! allows and some it denies, and to predict what share of packets must be forwarded)
//! and `dataplane::pipeline::craft` frames, streamed into classic pcap files.
//!
//! Every pcap is replayed in a loop by `net_pcap,infinite_rx=1`, so each one says which
//! stretch of it is *steady state* — packets whose flow is already in the table (or, for
//! new-flow traffic, packets that are each a flow never seen before):
//! - established: `warm` = the handshakes at the start of the file; after them every
//!   packet, in this pass and every later one (SYNs included: a SYN from the initiator of
//!   a live flow is a hit), finds its flow. Steady from `warm` on, unbounded.
//! - new flows: every packet of the first pass opens a flow; in the second pass they
//!   are all hits. Steady from 0 to the end of the first pass only.
//! - mix: established handshakes first, then data of those flows with every 5th packet
//!   a new flow. Steady from `warm` to the end of the first pass.
//!
//! Established files of many flows (1M) leave the handshakes out: net_pcap keeps the
//! whole file in palisade's pool, a 4 KiB page per packet with --no-huge, and 5 packets
//! per flow would take 20 GB. They hold one data packet each way per flow, which
//! palisade picks up mid-stream (`--tcp-loose`, `Pcap::tcp_loose`): the initiator's
//! packet opens the flow (classified as a SYN would be), the responder's follows it;
//! that first pass is the warm-up. (A mix cannot be made so: its steady stretch lies in
//! the first pass, after every flow is set up; see `matrix` in benches/e2e.rs.)

use control::compile::synthetic::Rng;
use control::compile::{compile, synthetic};
use control::model::Model;
use dataplane::pipeline::craft::{self, L4};
use dataplane::snapshot::Snapshot;
use dataplane::wire::tcp::flags::{ACK, PSH, SYN};
use dataplane::Classifier;
use std::collections::HashSet;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

/// Pods in every generated cluster (the policy count varies, the pods stay the same:
/// `synthetic::cluster` draws pods before policies from one seeded sequence).
pub const PODS: usize = 10_000;
const SEED: u64 = 42;
/// Packets an established file may take with its handshakes and data rounds; past it
/// the file is a mid-stream one (see the module doc).
pub const PCAP_BUDGET: usize = 500_000;
/// Packets in the steady stretch of a mix pcap (after the handshakes): about 0.1-0.2 s
/// of first pass at this machine's rates.
const MIX_STEADY: usize = 200_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Established,
    NewFlows,
    Mix,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Established => "established",
            Kind::NewFlows => "new",
            Kind::Mix => "mix",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Size {
    /// 64-byte frames (60 captured + FCS).
    B64,
    /// 7:4:1 of 64/570/1518 bytes (data and new-flow packets; handshakes stay 64 B).
    Imix,
}

impl Size {
    pub fn name(self) -> &'static str {
        match self {
            Size::B64 => "64B",
            Size::Imix => "imix",
        }
    }

    /// Wire size (FCS included) of the `i`th sized packet.
    fn wire_len(self, i: usize) -> usize {
        const PATTERN: [usize; 12] = [64, 570, 64, 64, 570, 64, 1518, 64, 570, 64, 64, 570];
        match self {
            Size::B64 => 64,
            Size::Imix => PATTERN[i % PATTERN.len()],
        }
    }
}

/// One compiled policy set and its manifest directory.
pub struct PolicySet {
    pub dir: PathBuf,
    pub snapshot: Snapshot,
}

/// Writes `synthetic::cluster(PODS, policies)` under `root` as one `kind: List` JSON
/// file and compiles it (the same snapshot `palisade run` will build from the files).
pub fn policy_set(root: &Path, policies: usize) -> PolicySet {
    let mut cluster = synthetic::cluster(PODS, policies, SEED);
    for p in &mut cluster.policies {
        let mut v = serde_json::to_value(&p.object).expect("k8s-openapi objects serialize");
        if fix_excepts(&mut v) {
            p.object = serde_json::from_value(v).expect("fixed policy deserializes");
        }
    }
    let dir = root.join(format!("manifests-{policies}"));
    std::fs::create_dir_all(&dir).expect("manifest dir");
    let mut items: Vec<serde_json::Value> = Vec::new();
    let to_json = |v: Result<serde_json::Value, serde_json::Error>| v.expect("k8s-openapi objects serialize");
    items.extend(cluster.namespaces.iter().map(|o| to_json(serde_json::to_value(&o.object))));
    items.extend(cluster.nodes.iter().map(|o| to_json(serde_json::to_value(&o.object))));
    items.extend(cluster.pods.iter().map(|o| to_json(serde_json::to_value(&o.object))));
    items.extend(cluster.policies.iter().map(|o| to_json(serde_json::to_value(&o.object))));
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
    std::fs::write(dir.join("cluster.json"), serde_json::to_vec(&list).expect("json")).expect("write manifests");
    let model = Model::resolve(&cluster).expect("synthetic cluster resolves");
    PolicySet { dir, snapshot: compile(&model, 1) }
}

/// `synthetic::cluster` draws an ipBlock's `except` independently of its `cidr`, so some
/// fall outside it, which `palisade run` rightly rejects (validation); the in-process
/// compile does not validate. Moves each such except inside its cidr (same /24 slot)
/// so the files load and both sides enforce the same policy. True if it changed any.
fn fix_excepts(policy: &mut serde_json::Value) -> bool {
    let mut changed = false;
    for (rules, peers) in [("ingress", "from"), ("egress", "to")] {
        let Some(rules) = policy.pointer_mut(&format!("/spec/{rules}")).and_then(|r| r.as_array_mut()) else { continue };
        for rule in rules {
            let Some(peers) = rule.get_mut(peers).and_then(|p| p.as_array_mut()) else { continue };
            for block in peers.iter_mut().filter_map(|peer| peer.get_mut("ipBlock")) {
                let Some((net, len)) = block["cidr"].as_str().and_then(parse_v4_cidr) else { continue };
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                let Some(excepts) = block.get_mut("except").and_then(|e| e.as_array_mut()) else { continue };
                for e in excepts.iter_mut() {
                    let inside = e.as_str().and_then(parse_v4_cidr).is_some_and(|(a, l)| l > len && a & mask == net & mask);
                    if !inside && len + 8 <= 32 {
                        *e = serde_json::Value::String(format!("{}/{}", Ipv4Addr::from(net & mask), len + 8));
                        changed = true;
                    }
                }
            }
        }
    }
    changed
}

fn parse_v4_cidr(text: &str) -> Option<(u32, u32)> {
    let (addr, len) = text.split_once('/')?;
    let len: u32 = len.parse().ok().filter(|&l| l <= 32)?;
    Some((u32::from(addr.parse::<Ipv4Addr>().ok()?), len))
}

/// The IPv4 addresses of the cluster's endpoint pods (the same for every policy count).
pub fn pod_addrs() -> Vec<Ipv4Addr> {
    let model = Model::resolve(&synthetic::cluster(PODS, 0, SEED)).expect("synthetic cluster resolves");
    model
        .pods
        .iter()
        .filter(|p| p.is_endpoint())
        .filter_map(|p| p.addrs.iter().find_map(|a| if let IpAddr::V4(v4) = a { Some(*v4) } else { None }))
        .collect()
}

/// One connection: initiator → responder.
#[derive(Clone, Copy, Debug)]
pub struct Flow {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
    /// 6 or 17.
    pub protocol: u8,
}

/// Ports the synthetic policies name, so rules decide these flows rather than defaults.
const SERVICES: [(u8, u16); 8] = [(6, 8080), (6, 8081), (6, 9090), (6, 443), (6, 5432), (6, 8050), (17, 53), (17, 4000)];

/// A flow's bidirectional 5-tuple, as the flow table keys it.
type Key = (u32, u32, u16, u16, u8);

/// `count` flows between pods, none sharing a bidirectional 5-tuple with another or
/// with `seen` (which collects them), about half of them allowed by `reference` (the
/// largest policy set), the rest denied. TCP only when `tcp_only`.
fn pick_flows(addrs: &[Ipv4Addr], reference: &Snapshot, count: usize, tcp_only: bool, seed: u64, seen: &mut HashSet<Key>) -> Vec<Flow> {
    let mut rng = Rng(seed | 1);
    let (mut allowed, mut denied) = (0usize, 0usize);
    let mut flows = Vec::with_capacity(count);
    let mut attempts = 0usize;
    while flows.len() < count {
        attempts += 1;
        let (src, dst) = (addrs[rng.below(addrs.len())], addrs[rng.below(addrs.len())]);
        if src == dst {
            continue;
        }
        let (protocol, dst_port) = loop {
            let s = SERVICES[rng.below(SERVICES.len())];
            if !tcp_only || s.0 == 6 {
                break s;
            }
        };
        let flow = Flow { src, dst, src_port: 1024 + rng.below(64_000) as u16, dst_port, protocol };
        if seen.contains(&key(&flow)) {
            continue;
        }
        // Keep the split near half and half while the sampler can find both kinds; give
        // up on balance after many tries (a policy set may allow almost nothing).
        let allow = reference.classify(IpAddr::V4(src), IpAddr::V4(dst), protocol, dst_port).is_allow();
        let balanced = attempts > count * 20 || if allow { allowed <= denied } else { denied <= allowed };
        if !balanced {
            continue;
        }
        seen.insert(key(&flow));
        if allow {
            allowed += 1;
        } else {
            denied += 1;
        }
        flows.push(flow);
    }
    flows
}

/// A generated pcap and what the measurement must know about it.
pub struct Pcap {
    pub path: PathBuf,
    pub kind: Kind,
    /// Flows the traffic holds (established flows for a mix).
    pub flows: usize,
    pub packets: usize,
    /// Packets at the start of the file before steady state.
    pub warm: usize,
    /// Steady state ends after this many packets of the first pass (None: never).
    pub steady_end: Option<usize>,
    pub bytes: u64,
    /// No handshakes: palisade must pick TCP flows up mid-stream (`--tcp-loose`).
    pub tcp_loose: bool,
    pub flow_list: Vec<Flow>,
    /// For each packet of the file, its flow's index in `flow_list` (every packet of a
    /// flow follows the flow's verdict).
    pub packet_flow: Vec<u32>,
}

impl Pcap {
    /// The share `set` must forward of the packets a replay delivers from its `from`th to
    /// its `to`th packet (the file loops: packet k is file packet k mod len).
    pub fn expected_forward_share(&self, set: &PolicySet, from: u64, to: u64) -> f64 {
        let allow: Vec<bool> = self
            .flow_list
            .iter()
            .map(|f| set.snapshot.classify(IpAddr::V4(f.src), IpAddr::V4(f.dst), f.protocol, f.dst_port).is_allow())
            .collect();
        let n = self.packet_flow.len() as u64;
        if n == 0 || to <= from {
            return 1.0;
        }
        let allowed_in = |a: u64, b: u64| self.packet_flow[a as usize..b as usize].iter().filter(|&&i| allow[i as usize]).count() as u64;
        let (pass_from, pass_to) = (from / n, to / n);
        let allowed = if pass_from == pass_to {
            allowed_in(from % n, to % n)
        } else {
            allowed_in(from % n, n) + (pass_to - pass_from - 1) * allowed_in(0, n) + allowed_in(0, to % n)
        };
        allowed as f64 / (to - from) as f64
    }

    /// Share of the file's packets whose flow `set` allows.
    pub fn allowed_flows(&self, set: &PolicySet) -> usize {
        self.flow_list
            .iter()
            .filter(|f| set.snapshot.classify(IpAddr::V4(f.src), IpAddr::V4(f.dst), f.protocol, f.dst_port).is_allow())
            .count()
    }
}

/// Streams frames into a classic microsecond pcap (Ethernet); the project's
/// `pipeline::pcap::write` wants every frame in memory, which millions of frames are not.
struct PcapStream {
    out: io::BufWriter<std::fs::File>,
    packets: usize,
    bytes: u64,
    packet_flow: Vec<u32>,
}

impl PcapStream {
    fn create(path: &Path) -> PcapStream {
        let mut out = io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).expect("create pcap"));
        let mut header = Vec::with_capacity(24);
        for word in [0xa1b2_c3d4u32.to_le_bytes(), [2, 0, 4, 0], [0; 4], [0; 4], 65535u32.to_le_bytes(), 1u32.to_le_bytes()] {
            header.extend_from_slice(&word);
        }
        out.write_all(&header).expect("write pcap");
        PcapStream { out, packets: 0, bytes: 0, packet_flow: Vec::new() }
    }

    /// Appends `frame`, a packet of flow number `flow`.
    fn push(&mut self, frame: &[u8], flow: usize) {
        self.packet_flow.push(flow as u32);
        let (secs, micros) = ((self.packets / 1_000_000) as u32, (self.packets % 1_000_000) as u32);
        for field in [secs, micros, frame.len() as u32, frame.len() as u32] {
            self.out.write_all(&field.to_le_bytes()).expect("write pcap");
        }
        self.out.write_all(frame).expect("write pcap");
        self.packets += 1;
        self.bytes += frame.len() as u64 + 4;
    }

    fn finish(mut self) -> (usize, u64, Vec<u32>) {
        self.out.flush().expect("flush pcap");
        (self.packets, self.bytes, self.packet_flow)
    }
}

const PAYLOAD: [u8; 1518] = [0x5a; 1518];

/// A frame of `flow`, from the initiator (`forward`) or the responder, `wire_len` bytes
/// on the wire (FCS included, so 4 more than captured).
fn frame(flow: &Flow, forward: bool, flags: u8, wire_len: usize) -> Vec<u8> {
    let (s, d, sp, dp) = if forward {
        (flow.src, flow.dst, flow.src_port, flow.dst_port)
    } else {
        (flow.dst, flow.src, flow.dst_port, flow.src_port)
    };
    let captured = wire_len - 4;
    let l4 = if flow.protocol == 6 {
        let payload = &PAYLOAD[..captured.saturating_sub(54)];
        L4::Tcp { src_port: sp, dst_port: dp, flags, seq: 1000, ack: if flags & ACK != 0 { 2000 } else { 0 }, payload }
    } else {
        L4::Udp { src_port: sp, dst_port: dp, payload: &PAYLOAD[..captured.saturating_sub(42)] }
    };
    craft::ip_frame(IpAddr::V4(s), IpAddr::V4(d), &l4)
}

/// Writes the pcap for `kind`/`size` with `flows` flows under `dir`.
pub fn generate(dir: &Path, addrs: &[Ipv4Addr], reference: &Snapshot, kind: Kind, size: Size, flows: usize) -> Pcap {
    let path = dir.join(format!("{}-{}-{}.pcap", kind.name(), size.name(), flows));
    let mut out = PcapStream::create(&path);
    let mut sized = 0usize;
    let mut next_len = || {
        sized += 1;
        size.wire_len(sized - 1)
    };
    let seed = 0x9e37_79b9 ^ (flows as u64) << 8 ^ kind as u64;
    let mut seen = HashSet::new();
    let (flow_list, warm, steady_end, tcp_loose);
    match kind {
        Kind::Established => {
            let list = pick_flows(addrs, reference, flows, true, seed, &mut seen);
            tcp_loose = 5 * flows > PCAP_BUDGET;
            // Data rounds: as many as fit the budget, at least one each way.
            let rounds = ((PCAP_BUDGET.saturating_sub(3 * flows)) / (2 * flows)).clamp(1, 16);
            if !tcp_loose {
                handshakes(&mut out, &list);
            }
            for _ in 0..rounds {
                data_round(&mut out, &list, &mut next_len);
            }
            // Mid-stream, the one data round is where the flows are picked up.
            warm = if tcp_loose { 2 * flows } else { 3 * flows };
            steady_end = None;
            flow_list = list;
        }
        Kind::NewFlows => {
            let list = pick_flows(addrs, reference, flows, false, seed, &mut seen);
            for (i, f) in list.iter().enumerate() {
                out.push(&frame(f, true, SYN, next_len()), i);
            }
            warm = 0;
            steady_end = Some(flows);
            tcp_loose = false;
            flow_list = list;
        }
        Kind::Mix => {
            let steady = MIX_STEADY;
            let new_count = steady / 5;
            let mut list = pick_flows(addrs, reference, flows, true, seed, &mut seen);
            list.extend(pick_flows(addrs, reference, new_count, false, seed.rotate_left(29), &mut seen));
            handshakes(&mut out, &list[..flows]);
            tcp_loose = false;
            // Every 5th packet opens a new flow; the others are data of the established
            // flows, round robin, initiator then responder.
            let (mut next_new, mut next_data) = (flows, 0usize);
            for n in 0..steady {
                let (i, forward, flags) = if n % 5 == 4 {
                    next_new += 1;
                    (next_new - 1, true, SYN)
                } else {
                    next_data += 1;
                    ((next_data - 1) / 2 % flows, next_data % 2 == 1, PSH | ACK)
                };
                out.push(&frame(&list[i], forward, flags, next_len()), i);
            }
            warm = 3 * flows;
            steady_end = Some(warm + steady);
            flow_list = list;
        }
    }
    let (packets, bytes, packet_flow) = out.finish();
    Pcap { path, kind, flows, packets, warm, steady_end, bytes, tcp_loose, flow_list, packet_flow }
}

fn key(f: &Flow) -> Key {
    let (a, b) = ((u32::from(f.src), f.src_port), (u32::from(f.dst), f.dst_port));
    if a <= b {
        (a.0, b.0, a.1, b.1, f.protocol)
    } else {
        (b.0, a.0, b.1, a.1, f.protocol)
    }
}

/// SYN, SYN-ACK, ACK of each flow (64 B), in flow order.
fn handshakes(out: &mut PcapStream, flows: &[Flow]) {
    for (i, f) in flows.iter().enumerate() {
        out.push(&frame(f, true, SYN, 64), i);
        out.push(&frame(f, false, SYN | ACK, 64), i);
        out.push(&frame(f, true, ACK, 64), i);
    }
}

/// One data packet each way of each flow, sized by `next_len` (the first such round of
/// a mid-stream file picks the flows up).
fn data_round(out: &mut PcapStream, flows: &[Flow], next_len: &mut impl FnMut() -> usize) {
    for (i, f) in flows.iter().enumerate() {
        out.push(&frame(f, true, PSH | ACK, next_len()), i);
        out.push(&frame(f, false, PSH | ACK, next_len()), i);
    }
}

/// The allowed (protocol, src, dst, dst port) tuples of `pcap` under `set`, for a
/// stateful peer's rule list ("tcp 10.0.0.2 10.0.1.3 8080" lines).
pub fn allowed_tuples(pcap: &Pcap, set: &PolicySet) -> String {
    let mut seen = HashSet::new();
    let mut text = String::new();
    for f in &pcap.flow_list {
        if set.snapshot.classify(IpAddr::V4(f.src), IpAddr::V4(f.dst), f.protocol, f.dst_port).is_allow()
            && seen.insert((f.protocol, f.src, f.dst, f.dst_port))
        {
            let proto = if f.protocol == 6 { "tcp" } else { "udp" };
            text.push_str(&format!("{proto} {} {} {}\n", f.src, f.dst, f.dst_port));
        }
    }
    text
}
