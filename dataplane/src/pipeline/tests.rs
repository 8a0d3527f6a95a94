//! Pipeline tests over hand-built frames, with a tiny rule-list classifier. Every test
//! asserts exact counters.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use proptest::prelude::*;

use super::craft::{self, L4};
use super::*;
use crate::verdict::{Reason, NO_RULE};
use crate::wire::tcp::flags::{ACK, FIN, PSH, RST, SYN};

/// Allows (src, dst, protocol, port) where `None` is a wildcard; everything else is
/// denied by ingress rule 99. Rule i decides as egress and ingress rule i.
struct Rules {
    generation: u64,
    allow: Vec<Allow>,
}

/// (source, destination, protocol, destination port); `None` matches anything.
type Allow = (Option<IpAddr>, Option<IpAddr>, u8, Option<u16>);

impl Classifier for Rules {
    fn generation(&self) -> u64 {
        self.generation
    }

    fn classify(&self, src: IpAddr, dst: IpAddr, proto: u8, dst_port: u16) -> Verdict {
        let hit = self.allow.iter().position(|(s, d, p, port)| {
            s.is_none_or(|s| s == src) && d.is_none_or(|d| d == dst) && *p == proto && port.is_none_or(|q| q == dst_port)
        });
        match hit {
            Some(rule) => Verdict { action: Action::Allow, reason: Reason::Allowed, egress_rule: rule as u32, ingress_rule: rule as u32 },
            None => Verdict { action: Action::Deny, reason: Reason::DeniedByIngress, egress_rule: NO_RULE, ingress_rule: 99 },
        }
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const A: &str = "10.0.0.1";
const B: &str = "10.0.0.2";
const C: &str = "10.0.0.3";

/// A→B on TCP 80, UDP 53, ICMP, SCTP 38412; and the IPv6 pair on TCP 443.
fn lab_rules(generation: u64) -> Rules {
    Rules {
        generation,
        allow: vec![
            (Some(ip(A)), Some(ip(B)), 6, Some(80)),
            (Some(ip(A)), Some(ip(B)), 17, Some(53)),
            (Some(ip(A)), Some(ip(B)), 1, None),
            (Some(ip(A)), Some(ip(B)), 132, Some(38412)),
            (Some(ip("fd00::1")), Some(ip("fd00::2")), 6, Some(443)),
            (Some(ip("fd00::1")), Some(ip("fd00::2")), 58, None),
        ],
    }
}

struct Harness {
    snapshots: Arc<ArcSwap<Rules>>,
    pipeline: Pipeline<Rules>,
    now: u64,
}

impl Harness {
    fn with(config: PipelineConfig) -> Harness {
        let snapshots = Arc::new(ArcSwap::from_pointee(lab_rules(1)));
        let pipeline = Pipeline::new(Arc::clone(&snapshots), &config);
        Harness { snapshots, pipeline, now: 1 }
    }

    fn new() -> Harness {
        Harness::with(config())
    }

    /// One frame as its own burst at the current time.
    fn send(&mut self, frame: &[u8]) -> bool {
        self.pipeline.begin_burst(self.now);
        self.pipeline.admit(frame, 0)
    }

    /// Send each frame, return which were forwarded.
    fn run(&mut self, frames: &[Vec<u8>]) -> Vec<bool> {
        frames.iter().map(|f| self.send(f)).collect()
    }

    fn counters(&self) -> Counters {
        let c = *self.pipeline.counters();
        assert_eq!(c.rx, c.forwarded + c.drop_policy + c.drop_malformed + c.drop_no_flow + c.drop_fragment);
        c
    }
}

/// One tick per second, fixed seed, aging by hand only.
fn config() -> PipelineConfig {
    PipelineConfig {
        flow_capacity: 64,
        ticks_per_second: 1,
        hash_seed: Some(1),
        aging_every_bursts: u32::MAX,
        aging_budget: 64,
        ..PipelineConfig::default()
    }
}

fn conversation(client: &str, server: &str) -> Vec<Vec<u8>> {
    craft::tcp_connection(sock(client), sock(server))
}

#[test]
fn allowed_connection_carries_its_replies() {
    let mut h = Harness::new();
    assert_eq!(h.run(&conversation("10.0.0.1:40000", "10.0.0.2:80")), vec![true; 8]);
    let c = h.counters();
    assert_eq!((c.rx, c.forwarded, c.flow_inserts), (8, 8, 1));
    let flows: Vec<FlowRecord> = h.pipeline.flows().collect();
    assert_eq!(flows.len(), 1);
    let f = flows[0];
    assert_eq!((f.src, f.src_port, f.dst, f.dst_port, f.protocol), (ip(A), 40000, ip(B), 80, 6));
    assert_eq!(f.packets, [5, 3]);
    assert_eq!(f.tcp, TcpState::Closing);
    assert_eq!((f.verdict.action, f.verdict.egress_rule, f.verdict.ingress_rule), (Action::Allow, 0, 0));
}

#[test]
fn reverse_initiation_is_denied() {
    let mut h = Harness::new();
    // B opens towards A: B→A is not allowed, so the flow is denied and every packet of
    // it, both directions, drops as policy.
    let forwarded = h.run(&conversation("10.0.0.2:40000", "10.0.0.1:80"));
    assert_eq!(forwarded, vec![false; 8]);
    let c = h.counters();
    assert_eq!((c.drop_policy, c.drop_no_flow, c.flow_inserts), (8, 0, 1));
    let f = h.pipeline.flows().next().unwrap();
    assert_eq!((f.src, f.verdict.action, f.verdict.ingress_rule), (ip(B), Action::Deny, 99));
}

#[test]
fn responder_opening_its_own_connection_is_classified_on_its_own() {
    let mut h = Harness::new();
    let (a, b) = (sock("10.0.0.1:40000"), sock("10.0.0.2:80"));
    h.run(&conversation("10.0.0.1:40000", "10.0.0.2:80")[..3]);
    // A bare SYN from the responder on the live tuple: a new connection B→A, denied;
    // the established flow is untouched.
    assert!(!h.send(&craft::tcp(b, a, SYN)));
    assert!(h.send(&craft::tcp(a, b, PSH | ACK)));
    // After both FINs, a SYN from B reuses the tuple as a new connection: denied.
    h.run(&[craft::tcp(a, b, FIN | ACK), craft::tcp(b, a, FIN | ACK)]);
    assert!(!h.send(&craft::tcp(b, a, SYN)));
    // And A may open again over the ended tuple.
    assert!(h.send(&craft::tcp(a, b, SYN)));
    let c = h.counters();
    assert_eq!((c.rx, c.forwarded, c.drop_policy, c.flow_inserts), (9, 7, 2, 1));
    let f = h.pipeline.flows().next().unwrap();
    assert_eq!((f.src, f.tcp, f.packets), (ip(A), TcpState::SynSent, [1, 0]));
}

#[test]
fn strict_mode_drops_mid_stream_loose_mode_picks_up() {
    let (a, b) = (sock("10.0.0.1:40000"), sock("10.0.0.2:80"));
    let mid_stream = [craft::tcp(a, b, PSH | ACK), craft::tcp(b, a, ACK)];
    let mut strict = Harness::new();
    assert_eq!(strict.run(&mid_stream), vec![false, false]);
    assert_eq!(strict.counters().drop_no_flow, 2);

    let mut loose = Harness::with(PipelineConfig { tcp_mode: TcpMode::Loose, ..config() });
    assert_eq!(loose.run(&mid_stream), vec![true, true]);
    // A SYN-ACK seen first is taken to come from the responder: B→A SYN-ACK means A
    // initiated towards B:80, which is allowed.
    let c = sock("10.0.0.1:40001");
    assert!(loose.send(&craft::tcp(b, c, SYN | ACK)));
    let counters = loose.counters();
    assert_eq!((counters.forwarded, counters.flow_inserts), (3, 2));
    let mut flows: Vec<FlowRecord> = loose.pipeline.flows().collect();
    flows.sort_by_key(|f| f.src_port);
    assert_eq!((flows[1].src, flows[1].src_port, flows[1].tcp), (ip(A), 40001, TcpState::SynReceived));
    assert_eq!(flows[0].tcp, TcpState::Established);
}

#[test]
fn udp_replies_follow_and_a_denied_side_cannot_open() {
    let mut h = Harness::new();
    let (a, b) = (sock("10.0.0.1:5353"), sock("10.0.0.2:53"));
    let frames = [
        craft::udp(b, a, b"unsolicited"), // B→A not allowed: denied flow, initiator B
        craft::udp(a, b, b"query"),       // A→B allowed: re-opens the flow with A as initiator
        craft::udp(b, a, b"answer"),      // reply
        craft::udp(b, a, b"answer2"),
    ];
    assert_eq!(h.run(&frames), vec![false, true, true, true]);
    let c = h.counters();
    assert_eq!((c.drop_policy, c.forwarded, c.flow_inserts), (1, 3, 1));
    let f = h.pipeline.flows().next().unwrap();
    assert_eq!((f.src, f.packets), (ip(A), [1, 2]));
}

#[test]
fn echo_replies_follow_their_request() {
    let mut h = Harness::new();
    let (a, b) = (ip(A), ip(B));
    let frames = [
        craft::echo(b, a, false, 7, 1), // reply without request
        craft::echo(a, b, true, 7, 1),
        craft::echo(b, a, false, 7, 1),
        craft::echo(b, a, false, 8, 1), // other identifier: no request
        craft::echo(b, a, true, 7, 2),  // B pinging A: its own connection, denied
    ];
    assert_eq!(h.run(&frames), vec![false, true, true, false, false]);
    let c = h.counters();
    assert_eq!((c.drop_no_flow, c.drop_policy, c.flow_inserts), (2, 1, 2));
}

#[test]
fn icmp_errors_follow_the_flow_they_quote() {
    let mut h = Harness::new();
    let (a, b, c) = (sock("10.0.0.1:5353"), sock("10.0.0.2:53"), sock("10.0.0.3:53"));
    let allowed = craft::udp(a, b, b"q");
    let denied = craft::udp(a, c, b"q");
    let unknown = craft::udp(a, sock("10.0.0.2:54"), b"q");
    let frames = [
        allowed.clone(),
        denied.clone(),
        craft::unreachable(ip(B), ip(A), &allowed),
        craft::unreachable(ip(C), ip(A), &denied),
        craft::unreachable(ip(B), ip(A), &unknown),
        craft::unreachable(ip("192.0.2.1"), ip(A), &allowed), // a router on the path
    ];
    assert_eq!(h.run(&frames), vec![true, false, true, false, false, true]);
    let counters = h.counters();
    assert_eq!((counters.icmp_related, counters.drop_policy, counters.drop_no_flow), (2, 2, 1));
}

#[test]
fn fragments_follow_their_first_fragment() {
    let mut h = Harness::new();
    let payload = [0x55u8; 100];
    let allowed = L4::Udp { src_port: 5353, dst_port: 53, payload: &payload };
    let denied = L4::Udp { src_port: 5353, dst_port: 54, payload: &payload };
    let ok = craft::fragments(ip(A), ip(B), &allowed, 1, 48);
    let bad = craft::fragments(ip(A), ip(B), &denied, 2, 48);
    let orphan = craft::fragments(ip(A), ip(B), &allowed, 3, 48);
    assert_eq!((ok.len(), bad.len()), (3, 3));
    let frames = [ok.clone(), bad, orphan[1..].to_vec()].concat();
    assert_eq!(h.run(&frames), vec![true, true, true, false, false, false, false, false]);
    let c = h.counters();
    assert_eq!((c.fragments_followed, c.drop_policy, c.drop_fragment), (4, 3, 2));
}

#[test]
fn fragments_never_hide_ports() {
    let mut h = Harness::new();
    let tcp = L4::Tcp { src_port: 40000, dst_port: 80, flags: SYN, seq: 1, ack: 0, payload: &[0; 16] };
    // 8-byte first fragment: too short for the TCP header.
    let tiny = craft::fragments(ip(A), ip(B), &tcp, 9, 8);
    // A later fragment at offset 8 would overlap (and could rewrite) the TCP header.
    let overlap = craft::ip_frame_with(ip(A), ip(B), 6, &[0; 16], Some(craft::Fragmentation { ident: 10, offset: 8, more: false }));
    assert!(!h.send(&tiny[0]));
    assert!(!h.send(&overlap));
    assert_eq!(h.counters().drop_fragment, 2);
}

#[test]
fn ipv6_connection_with_fragments_and_neighbour_discovery() {
    let mut h = Harness::new();
    let (a, b) = (sock("[fd00::1]:40000"), sock("[fd00::2]:443"));
    let mut frames = conversation("[fd00::1]:40000", "[fd00::2]:443");
    let payload = [7u8; 64];
    frames.extend(craft::fragments(a.ip(), b.ip(), &L4::Tcp { src_port: 40000, dst_port: 443, flags: ACK, seq: 9, ack: 9, payload: &payload }, 77, 40));
    // Neighbour solicitation with hop limit 255 passes; with hop limit 64 it is policed
    // like any ICMPv6 (B→A not allowed).
    let mut solicit = craft::ip_frame(b.ip(), a.ip(), &L4::Icmp { msg_type: 135, code: 0, ident: 0, seq: 0, payload: &[0; 16] });
    assert!(!h.send(&solicit));
    solicit[14 + 7] = 255;
    frames.push(solicit);
    assert_eq!(h.run(&frames), vec![true; 8 + 3 + 1]);
    let c = h.counters();
    assert_eq!((c.passthrough, c.fragments_followed, c.drop_policy, c.flow_inserts), (1, 2, 1, 2));
}

#[test]
fn non_ip_passes_and_malformed_drops() {
    let mut h = Harness::new();
    let good = craft::tcp(sock("10.0.0.1:1"), sock("10.0.0.2:80"), SYN);
    let mut bad_ihl = good.clone();
    bad_ihl[14] = 0x44;
    let mut lldp = craft::arp_request([10, 0, 0, 1], [10, 0, 0, 2]);
    lldp[12..14].copy_from_slice(&0x88ccu16.to_be_bytes());
    let frames = [
        craft::arp_request([10, 0, 0, 1], [10, 0, 0, 2]),
        lldp,
        good[..30].to_vec(), // IPv4 cut short
        good[..50].to_vec(), // TCP cut short
        bad_ihl,
        good[..10].to_vec(), // not even Ethernet
    ];
    assert_eq!(h.run(&frames), vec![true, true, false, false, false, false]);
    let c = h.counters();
    assert_eq!((c.passthrough, c.drop_malformed, c.flow_inserts), (2, 4, 0));
}

#[test]
fn vlans_separate_flows() {
    let mut h = Harness::new();
    let (a, b) = (sock("10.0.0.1:40000"), sock("10.0.0.2:80"));
    let syn = craft::tcp(a, b, SYN);
    let syn_ack = craft::tcp(b, a, SYN | ACK);
    let frames = [
        craft::with_vlans(&syn, &[10]),
        craft::with_vlans(&syn_ack, &[10]),
        craft::with_vlans(&syn_ack, &[20]),     // no flow on VLAN 20
        craft::with_vlans(&syn, &[100, 20]),    // QinQ: its own flow
        craft::with_vlans(&syn_ack, &[100, 20]),
    ];
    assert_eq!(h.run(&frames), vec![true, true, false, true, true]);
    let c = h.counters();
    assert_eq!((c.flow_inserts, c.drop_no_flow), (2, 1));
    let mut vlans: Vec<u32> = h.pipeline.flows().map(|f| f.vlan).collect();
    vlans.sort();
    assert_eq!(vlans, vec![10 << 12, (100 << 12) | 20]);
}

#[test]
fn generation_change_revokes_or_keeps_flows() {
    let mut h = Harness::new();
    let (a, b) = (sock("10.0.0.1:40000"), sock("10.0.0.2:80"));
    let (a2, b2) = (sock("10.0.0.1:5353"), sock("10.0.0.2:53"));
    h.run(&conversation("10.0.0.1:40000", "10.0.0.2:80")[..3]);
    assert!(h.send(&craft::udp(a2, b2, b"q")));
    // Generation 2: TCP 80 no longer allowed, UDP 53 still is.
    let mut rules = lab_rules(2);
    rules.allow.remove(0);
    h.snapshots.store(Arc::new(rules));
    assert!(!h.send(&craft::tcp(b, a, ACK)), "revoked at once, replies included");
    assert!(!h.send(&craft::tcp(a, b, ACK)));
    assert!(h.send(&craft::udp(b2, a2, b"a")), "still allowed: carries on");
    // Generation 3 allows TCP 80 again: the flow is re-decided and passes.
    h.snapshots.store(Arc::new(lab_rules(3)));
    assert!(h.send(&craft::tcp(a, b, ACK)));
    let c = h.counters();
    assert_eq!((c.flow_redecided, c.flow_revoked, c.drop_policy, c.flow_inserts), (3, 1, 2, 2));
    assert!(h.pipeline.flows().all(|f| f.generation == 3 || f.protocol == 17));
}

#[test]
fn timeouts_depend_on_state() {
    let mut h = Harness::new();
    let (a, b) = (sock("10.0.0.1:40000"), sock("10.0.0.2:80"));
    let (a2, b2) = (sock("10.0.0.1:40001"), sock("10.0.0.2:80"));
    let (a3, b3) = (sock("10.0.0.1:5353"), sock("10.0.0.2:53"));
    h.send(&craft::tcp(a, b, SYN)); // SYN-sent: 30 s
    h.run(&conversation("10.0.0.1:40001", "10.0.0.2:80")[..3]); // established: 7200 s
    h.send(&craft::udp(a3, b3, b"q")); // UDP: 60 s
    assert_eq!(h.pipeline.flow_count(), 3);
    h.pipeline.idle(1 + 30);
    assert_eq!(h.pipeline.flow_count(), 3, "not yet past 30 s");
    h.pipeline.idle(1 + 31);
    assert_eq!(h.pipeline.flow_count(), 2, "SYN-sent expired");
    h.now = 32;
    assert!(!h.send(&craft::tcp(b, a, SYN | ACK)), "its SYN-ACK has no flow any more");
    // RST moves the established flow to the 10 s closed timeout.
    assert!(h.send(&craft::tcp(b2, a2, RST | ACK)));
    h.pipeline.idle(32 + 11);
    assert_eq!(h.pipeline.flow_count(), 1);
    h.pipeline.idle(1 + 61);
    assert_eq!(h.pipeline.flow_count(), 0, "UDP expired after 60 s");
    let c = h.counters();
    assert_eq!((c.flow_expiries, c.drop_no_flow), (3, 1));
}

#[test]
fn full_table_decides_per_packet_and_evicts_nothing() {
    let mut h = Harness::with(PipelineConfig { flow_capacity: 2, ..config() });
    let flows: Vec<Vec<Vec<u8>>> = (0..3).map(|i| conversation(&format!("10.0.0.1:{}", 40000 + i), "10.0.0.2:80")).collect();
    // Two connections fill the table.
    for flow in &flows[..2] {
        assert_eq!(h.run(&flow[..3]), vec![true; 3]);
    }
    // The third is decided per packet: SYN by policy, the rest statelessly.
    assert_eq!(h.run(&flows[2]), vec![true; 8]);
    // A denied SYN stays denied; established flows still work.
    assert!(!h.send(&craft::tcp(sock("10.0.0.2:1"), sock("10.0.0.1:22"), SYN)));
    assert!(!h.send(&craft::tcp(sock("10.0.0.2:1"), sock("10.0.0.1:22"), ACK)));
    assert!(h.send(&flows[0][3]));
    let c = h.counters();
    assert_eq!((c.flow_inserts, c.flow_table_full, c.stateless_decisions), (2, 2, 8));
    assert_eq!(c.drop_policy, 2);
    assert_eq!(h.pipeline.flow_count(), 2);
}

#[test]
fn sctp_associations_are_flows() {
    let mut h = Harness::new();
    let (a, b) = (sock("10.0.0.1:5000"), sock("10.0.0.2:38412"));
    let frames = [craft::sctp(a, b, 1), craft::sctp(b, a, 2), craft::sctp(b, sock("10.0.0.1:38412"), 1)];
    assert_eq!(h.run(&frames), vec![true, true, false]);
}

#[test]
fn aging_runs_every_n_bursts() {
    let mut h = Harness::with(PipelineConfig { aging_every_bursts: 4, ..config() });
    h.send(&craft::udp(sock("10.0.0.1:1"), sock("10.0.0.2:53"), b""));
    h.now = 1000;
    for _ in 0..3 {
        h.pipeline.begin_burst(h.now);
    }
    assert_eq!(h.pipeline.flow_count(), 0, "the fourth burst aged the table");
    assert_eq!(h.counters().flow_expiries, 1);
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse::parse(&bytes);
    }

    #[test]
    fn mutated_frames_never_panic_and_counts_add_up(
        picks in proptest::collection::vec((0usize..6, any::<u16>(), any::<u8>(), 0usize..120), 1..60)
    ) {
        let seeds = [
            craft::tcp(sock("10.0.0.1:1"), sock("10.0.0.2:80"), SYN),
            craft::udp(sock("[fd00::1]:1"), sock("[fd00::2]:53"), b"abc"),
            craft::echo(ip(A), ip(B), true, 1, 1),
            craft::unreachable(ip(B), ip(A), &craft::udp(sock("10.0.0.1:5"), sock("10.0.0.2:53"), b"")),
            craft::with_vlans(&craft::tcp(sock("[fd00::1]:1"), sock("[fd00::2]:443"), SYN), &[1, 2]),
            craft::fragments(ip(A), ip(B), &L4::Udp { src_port: 1, dst_port: 53, payload: &[0; 40] }, 5, 16)[1].clone(),
        ];
        let mut h = Harness::new();
        for (seed, at, value, cut) in picks {
            let mut frame = seeds[seed].clone();
            let at = usize::from(at) % frame.len();
            frame[at] = value;
            frame.truncate(frame.len().min(cut.max(1) + 14));
            h.send(&frame);
        }
        h.counters();
    }
}

proptest! {
    /// The staging fast path (`parse::parse_fast_v4`, `FlowKey::new_v4`) gives exactly
    /// what the full parse gives, on well-formed and mutated frames alike.
    #[test]
    fn fast_v4_agrees_with_parse(
        picks in proptest::collection::vec((0usize..6, any::<u16>(), any::<u8>(), 0usize..120), 1..60)
    ) {
        let seeds = [
            craft::tcp(sock("10.0.0.1:1"), sock("10.0.0.2:80"), SYN),
            craft::tcp(sock("10.0.0.9:443"), sock("10.0.0.2:80"), PSH | ACK),
            craft::udp(sock("10.0.0.1:5"), sock("10.0.0.2:53"), b"abc"),
            craft::with_vlans(&craft::udp(sock("10.0.0.1:5"), sock("10.0.0.2:53"), b""), &[1, 2]),
            craft::echo(ip(A), ip(B), true, 1, 1),
            craft::fragments(ip(A), ip(B), &L4::Udp { src_port: 1, dst_port: 53, payload: &[0; 40] }, 5, 16)[0].clone(),
        ];
        let pipeline = Harness::new().pipeline;
        for (seed, at, value, cut) in picks {
            let mut frame = seeds[seed].clone();
            let at = usize::from(at) % frame.len();
            frame[at] = value;
            frame.truncate(frame.len().min(cut.max(1) + 14));
            let Some(fast) = parse::parse_fast_v4(&frame) else {
                continue;
            };
            let Parsed::Ip(meta) = parse::parse(&frame) else {
                panic!("fast path took a frame parse does not report as IP: {frame:?}");
            };
            prop_assert_eq!(meta.kind, Kind::Plain);
            prop_assert_eq!(meta.fragment, None);
            prop_assert!(meta.is_v4);
            let addrs = (crate::flow::key::v4_mapped(fast.src.to_be_bytes()), crate::flow::key::v4_mapped(fast.dst.to_be_bytes()));
            prop_assert_eq!((addrs.0, addrs.1, fast.protocol, fast.src_port, fast.dst_port), (meta.src, meta.dst, meta.protocol, meta.src_port, meta.dst_port));
            prop_assert_eq!((fast.tcp_flags, fast.vlan), (meta.tcp_flags, meta.vlan));
            let staged = pipeline.stage(&frame);
            let full = pipeline.stage_meta(&meta);
            prop_assert_eq!((staged.key, staged.hash, staged.side, staged.class), (full.key, full.hash, full.side, full.class));
            prop_assert_eq!((staged.protocol, staged.tcp_flags, staged.is_v4), (full.protocol, full.tcp_flags, full.is_v4));
        }
    }
}

/// One frame of the mixed traffic `admit_burst` is checked on: few hosts and ports, so
/// later frames of a burst meet flows earlier ones opened (both directions, v4 and v6,
/// VLANs, echo, ICMP errors, fragments, ARP, truncated frames).
fn mixed_frame(kind: u8, from: usize, to: usize, port: usize, pick: usize) -> Vec<u8> {
    const HOSTS: [&str; 3] = [A, B, C];
    const PORTS: [u16; 4] = [80, 53, 1000, 38412];
    const FLAGS: [u8; 6] = [SYN, SYN | ACK, ACK, PSH | ACK, FIN | ACK, RST];
    let (a, b) = (ip(HOSTS[from % 3]), ip(HOSTS[to % 3]));
    let (pa, pb) = (PORTS[port % 4], PORTS[(port / 4) % 4]);
    let flags = FLAGS[pick % FLAGS.len()];
    let udp = L4::Udp { src_port: pa, dst_port: pb, payload: &[7; 40] };
    match kind % 12 {
        0 | 1 => craft::tcp(SocketAddr::new(a, pa), SocketAddr::new(b, pb), flags),
        2 => craft::udp(SocketAddr::new(a, pa), SocketAddr::new(b, pb), b"q"),
        3 => craft::echo(a, b, true, pa, 1),
        4 => craft::echo(a, b, false, pa, 1),
        5 => craft::unreachable(a, b, &craft::tcp(SocketAddr::new(b, pb), SocketAddr::new(a, pa), flags)),
        6 => craft::fragments(a, b, &udp, u32::from(pa), 16)[pick % 2].clone(),
        7 => craft::arp_request([10, 0, 0, 1], [10, 0, 0, 2]),
        8 => craft::tcp(SocketAddr::new(a, pa), SocketAddr::new(b, pb), flags)[..30 + port].to_vec(),
        9 => craft::with_vlans(&craft::tcp(SocketAddr::new(a, pa), SocketAddr::new(b, pb), flags), &[1 + (to as u16 % 2)]),
        10 => craft::sctp(SocketAddr::new(a, pa), SocketAddr::new(b, pb), 1),
        _ => {
            let (a6, b6) = (ip(["fd00::1", "fd00::2"][from % 2]), ip(["fd00::1", "fd00::2"][to % 2]));
            craft::tcp(SocketAddr::new(a6, 443), SocketAddr::new(b6, pb), flags)
        }
    }
}

proptest! {
    /// `admit_burst` is `admit` frame by frame: same verdicts, counters and flow table,
    /// over bursts of any size (past 32 too), a small table that fills up, aging every
    /// other burst, and a snapshot change half-way.
    #[test]
    fn admit_burst_matches_admit_per_frame(
        frames in proptest::collection::vec((any::<u8>(), 0usize..3, 0usize..3, 0usize..16, 0usize..6), 1..200),
        sizes in proptest::collection::vec(1usize..40, 1..20),
        capacity in 4usize..40,
    ) {
        let frames: Vec<Vec<u8>> = frames.iter().map(|&(k, f, t, p, fl)| mixed_frame(k, f, t, p, fl)).collect();
        let snapshots = Arc::new(ArcSwap::from_pointee(lab_rules(1)));
        let config = PipelineConfig { flow_capacity: capacity, aging_every_bursts: 2, aging_budget: 8, ..config() };
        let mut single = Pipeline::new(Arc::clone(&snapshots), &config);
        let mut burst = Pipeline::new(Arc::clone(&snapshots), &config);
        let (mut start, mut now, mut round) = (0, 1u64, 0);
        while start < frames.len() {
            let end = (start + sizes[round % sizes.len()]).min(frames.len());
            if round == sizes.len() / 2 {
                snapshots.store(Arc::new(Rules { generation: 2, allow: lab_rules(2).allow[1..].to_vec() }));
            }
            now += 7;
            single.begin_burst(now);
            burst.begin_burst(now);
            let expected: Vec<bool> = frames[start..end].iter().map(|f| single.admit(f, 0)).collect();
            let views: Vec<&[u8]> = frames[start..end].iter().map(Vec::as_slice).collect();
            let mut verdicts = vec![false; views.len()];
            burst.admit_burst(&views, 0, &mut verdicts);
            prop_assert_eq!(&verdicts, &expected, "burst {} (frames {}..{})", round, start, end);
            prop_assert_eq!(burst.counters(), single.counters());
            start = end;
            round += 1;
        }
        prop_assert_eq!(burst.flows().collect::<Vec<_>>(), single.flows().collect::<Vec<_>>());
    }
}

#[test]
fn admit_burst_sees_flows_opened_earlier_in_the_burst() {
    // SYN and the server's SYN-ACK in one burst: the reply must find the flow the SYN
    // inserted (the lookups run in order; only the prefetches run ahead).
    let mut h = Harness::new();
    let frames = conversation("10.0.0.1:40000", "10.0.0.2:80");
    let views: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    let mut verdicts = vec![false; views.len()];
    h.pipeline.begin_burst(1);
    h.pipeline.admit_burst(&views, 0, &mut verdicts);
    assert_eq!(verdicts, vec![true; 8]);
    let c = h.counters();
    assert_eq!((c.rx, c.forwarded, c.flow_inserts), (8, 8, 1));
}

/// A connected harness: the control side's handle and the flow-event receiver.
fn connected(log_denied: bool, log_capacity: usize) -> (Harness, live::PipelineHandle<Rules>, live::Receiver<live::FlowEvent>) {
    let mut h = Harness::new();
    let (tx, rx) = live::flow_event_channel(log_capacity);
    let (link, handle) = live::control_link(Some(tx), log_denied);
    h.pipeline.connect(link);
    (h, handle, rx)
}

/// Sends a dump request and lets the pipeline answer it as its worker would, between bursts.
fn dump(h: &mut Harness, handle: &live::PipelineHandle<Rules>, flows: bool) -> live::Dump<Rules> {
    let (reply, answer) = crossbeam_channel::bounded(1);
    handle.requests.try_send(live::DumpRequest { flows, reply }).unwrap();
    assert!(answer.try_recv().is_err(), "answered before an upkeep point");
    h.pipeline.idle(h.now);
    answer.try_recv().expect("answered at idle")
}

#[test]
fn connected_pipeline_publishes_counters_and_answers_dumps_between_bursts() {
    let (mut h, handle, _events) = connected(false, 16);
    h.run(&conversation("10.0.0.1:40000", "10.0.0.2:80"));
    h.run(&conversation("10.0.0.3:40001", "10.0.0.2:80")[..2]);
    // Published at upkeep points only: nothing yet.
    assert_eq!(handle.shared.load().counters, Counters::default());
    let d = dump(&mut h, &handle, true);
    let sample = handle.shared.load();
    assert_eq!(sample.counters, h.counters());
    assert_eq!((sample.flow_entries, sample.flow_capacity, sample.generation), (2, 64, 1));
    assert_eq!(d.flows.len(), 2);
    assert_eq!(d.now, h.now);
    let denied = d.flows.iter().find(|f| f.src == ip(C)).unwrap();
    // The SYN and the SYN-ACK, one each way.
    assert_eq!((denied.verdict.action, denied.packets, denied.generation), (Action::Deny, [1, 1], 1));
    // C's two packets were dropped by (ingress) rule 99, the Rules classifier's default.
    assert_eq!(d.current_rule_drops.counts, vec![(99, 2)]);
    assert!(d.retired_rule_drops.is_empty());
    assert!(dump(&mut h, &handle, false).flows.is_empty());
}

#[test]
fn drops_by_rule_survive_snapshot_changes_and_are_handed_over_once() {
    let (mut h, handle, _events) = connected(false, 16);
    h.run(&conversation("10.0.0.3:40001", "10.0.0.2:80")[..3]);
    h.snapshots.store(Arc::new(lab_rules(2)));
    h.run(&[craft::tcp(sock("10.0.0.3:40002"), sock("10.0.0.2:80"), SYN)]);
    let d = dump(&mut h, &handle, false);
    assert_eq!(d.retired_rule_drops.len(), 1);
    assert_eq!(d.retired_rule_drops[0].snapshot.generation, 1);
    assert_eq!(d.retired_rule_drops[0].counts, vec![(99, 3)]);
    assert_eq!((d.current_rule_drops.snapshot.generation, d.current_rule_drops.counts.clone()), (2, vec![(99, 1)]));
    // Retired counts go out once; current counts are cumulative.
    let d = dump(&mut h, &handle, false);
    assert!(d.retired_rule_drops.is_empty());
    assert_eq!(d.current_rule_drops.counts, vec![(99, 1)]);
    assert_eq!(h.counters().drop_policy, 4);
}

#[test]
fn flow_events_for_denied_first_packets_and_aged_out_flows() {
    let (mut h, _handle, events) = connected(true, 16);
    let udp = craft::udp(sock("10.0.0.1:5353"), sock("10.0.0.2:53"), b"q");
    let denied = craft::tcp(sock("10.0.0.3:40001"), sock("10.0.0.2:80"), SYN);
    assert_eq!(h.run(&[udp.clone(), denied.clone(), denied.clone()]), vec![true, false, false]);
    // One event for the denied first packet, none for the packet after it.
    let e = events.try_recv().unwrap();
    assert_eq!((e.kind, e.flow.src, e.flow.dst_port, e.flow.verdict.action, e.flow.packets), (live::FlowEventKind::Denied, ip(C), 80, Action::Deny, [1, 0]));
    assert!(events.try_recv().is_err());
    // UDP ages out after 60 s, the SYN-only TCP flow after 30 s: both end.
    h.now += 61;
    h.pipeline.idle(h.now);
    let mut ended: Vec<live::FlowEvent> = events.try_iter().collect();
    ended.sort_by_key(|e| e.flow.protocol);
    assert_eq!(ended.len(), 2);
    assert!(ended.iter().all(|e| e.kind == live::FlowEventKind::End && e.at == h.now));
    let tcp = &ended[0].flow;
    assert_eq!((tcp.src, tcp.packets, tcp.bytes), (ip(C), [2, 0], [2 * denied.len() as u64, 0]));
    let udp_flow = &ended[1].flow;
    assert_eq!((udp_flow.src, udp_flow.dst_port, udp_flow.packets, udp_flow.bytes), (ip(A), 53, [1, 0], [udp.len() as u64, 0]));
    assert_eq!(h.counters().flow_expiries, 2);
}

#[test]
fn a_full_flow_log_drops_events_and_counts_them() {
    let (mut h, _handle, events) = connected(true, 1);
    for port in 0..3 {
        h.send(&craft::tcp(sock(&format!("10.0.0.3:{}", 40000 + port)), sock("10.0.0.2:80"), SYN));
    }
    assert_eq!(events.try_iter().count(), 1);
    assert_eq!(h.counters().flow_log_dropped, 2);
}

#[test]
fn a_new_connection_on_a_finished_tuple_ends_the_old_one_in_the_flow_log() {
    let (mut h, _handle, events) = connected(false, 16);
    let first = conversation("10.0.0.1:40000", "10.0.0.2:80");
    h.run(&first);
    assert!(events.try_recv().is_err());
    h.send(&craft::tcp(sock("10.0.0.1:40000"), sock("10.0.0.2:80"), SYN));
    let e = events.try_recv().unwrap();
    assert_eq!((e.kind, e.flow.packets, e.flow.tcp), (live::FlowEventKind::End, [5, 3], TcpState::Closing));
    assert!(events.try_recv().is_err());
    assert_eq!(h.pipeline.flows().next().unwrap().packets, [1, 0]);
}

/// `lab_rules`, counting how connections reach it: one by one or in bursts.
struct Counting {
    rules: Rules,
    single: std::sync::atomic::AtomicUsize,
    burst_probes: std::sync::atomic::AtomicUsize,
}

impl Classifier for Counting {
    fn generation(&self) -> u64 {
        self.rules.generation
    }

    fn classify(&self, src: IpAddr, dst: IpAddr, proto: u8, dst_port: u16) -> Verdict {
        self.single.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.rules.classify(src, dst, proto, dst_port)
    }

    fn classify_burst(&self, probes: &[Probe], out: &mut [Verdict]) {
        self.burst_probes.fetch_add(probes.len(), std::sync::atomic::Ordering::Relaxed);
        for (p, v) in probes.iter().zip(out) {
            *v = self.rules.classify(p.src, p.dst, p.proto, p.dst_port);
        }
    }
}

#[test]
fn admit_burst_classifies_new_connections_of_every_protocol_together() {
    use std::sync::atomic::Ordering::Relaxed;
    let counting = Counting { rules: lab_rules(1), single: 0.into(), burst_probes: 0.into() };
    let snapshots = Arc::new(ArcSwap::from_pointee(counting));
    let mut pipeline = Pipeline::new(Arc::clone(&snapshots), &config());
    let frames = [
        craft::udp(sock("10.0.0.1:5000"), sock("10.0.0.2:53"), b"q"),
        craft::udp(sock("10.0.0.1:5001"), sock("10.0.0.2:53"), b"q"),
        craft::echo(ip(A), ip(B), true, 7, 1),
        craft::sctp(sock("10.0.0.1:5000"), sock("10.0.0.2:38412"), 1),
        craft::tcp(sock("10.0.0.1:40000"), sock("10.0.0.2:80"), SYN),
        // Not new connections: a TCP segment without a flow, an echo reply without a
        // request, and a reply in the first UDP flow (opened earlier in this burst: it
        // was classified ahead, its verdict unused).
        craft::tcp(sock("10.0.0.1:40001"), sock("10.0.0.2:80"), ACK),
        craft::echo(ip(B), ip(A), false, 9, 1),
        craft::udp(sock("10.0.0.2:53"), sock("10.0.0.1:5000"), b"a"),
    ];
    let views: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    let mut verdicts = [false; 8];
    pipeline.begin_burst(1);
    pipeline.admit_burst(&views, 0, &mut verdicts);
    assert_eq!(verdicts, [true, true, true, true, true, false, false, true]);
    let snapshot = snapshots.load();
    assert_eq!((snapshot.burst_probes.load(Relaxed), snapshot.single.load(Relaxed)), (6, 0));
    // The next burst: the reply finds its flow in the slots, so nothing is classified.
    pipeline.begin_burst(2);
    pipeline.admit_burst(&views[7..], 0, &mut verdicts[..1]);
    assert_eq!((snapshot.burst_probes.load(Relaxed), snapshot.single.load(Relaxed)), (6, 0));
    assert_eq!(pipeline.counters().flow_inserts, 5);
}
