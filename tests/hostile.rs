//! Hostile traffic through `palisade replay` (the real worker pipeline on net_pcap
//! vdevs, its own process per test): a SYN flood of ten times the flow table's capacity,
//! spoofed replies, fragment evasion, TCP flag anomalies, IPv6 extension chains past the
//! bound, and VLAN / QinQ tags. Every case asserts exact counters and that the allowed
//! and dropped pcaps hold exactly the frames expected, in order.
//!
//! The cluster (written by `shop`): namespace `shop` with pods `web` (10.1.0.10,
//! fd00::10), `client` (10.1.0.20, fd00::20) and `stranger` (10.1.0.30, fd00::30).
//! Policy `web-in` isolates `web` both ways: ingress only from `client` on TCP 80,
//! UDP 53 and SCTP 9; no egress at all, so `web` can answer but never initiate.

#[path = "common/replay.rs"]
mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use common::{replay, Replay};
use dataplane::pipeline::craft::{self, Fragmentation, L4};
use dataplane::wire::ip_proto;
use dataplane::wire::tcp::flags::{ACK, CWR, ECE, FIN, PSH, RST, SYN, URG};

const WEB: &str = "10.1.0.10";
const CLIENT: &str = "10.1.0.20";
const STRANGER: &str = "10.1.0.30";
const WEB6: &str = "fd00::10";
const CLIENT6: &str = "fd00::20";
const STRANGER6: &str = "fd00::30";

/// The namespace, its three pods (name, last address byte) and the policy.
fn shop_yaml() -> String {
    let mut text = String::from("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n");
    for (pod, host) in [("web", 10), ("client", 20), ("stranger", 30)] {
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {pod}, namespace: shop, labels: {{app: {pod}}}}}\n\
             spec: {{containers: [{{name: {pod}, image: busybox}}]}}\n\
             status: {{podIP: 10.1.0.{host}, podIPs: [{{ip: 10.1.0.{host}}}, {{ip: 'fd00::{host}'}}]}}\n"
        ));
    }
    text.push_str(
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web-in, namespace: shop}\nspec:\n  \
         podSelector: {matchLabels: {app: web}}\n  policyTypes: [Ingress, Egress]\n  ingress:\n  \
         - from: [{podSelector: {matchLabels: {app: client}}}]\n    \
         ports: [{protocol: TCP, port: 80}, {protocol: UDP, port: 53}, {protocol: SCTP, port: 9}]\n",
    );
    text
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn at(host: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip(host), port)
}

/// The manifest directory of the `shop` cluster under `dir`.
fn shop(dir: &Path) -> PathBuf {
    let manifests = dir.join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    std::fs::write(manifests.join("shop.yaml"), shop_yaml()).unwrap();
    manifests
}

/// Frames in order, each marked with whether policy must forward it.
#[derive(Default)]
struct Traffic(Vec<(Vec<u8>, bool)>);

impl Traffic {
    fn pass(&mut self, frame: Vec<u8>) {
        self.0.push((frame, true));
    }

    fn drop(&mut self, frame: Vec<u8>) {
        self.0.push((frame, false));
    }

    fn pass_all(&mut self, frames: impl IntoIterator<Item = Vec<u8>>) {
        frames.into_iter().for_each(|f| self.pass(f));
    }

    fn drop_all(&mut self, frames: impl IntoIterator<Item = Vec<u8>>) {
        frames.into_iter().for_each(|f| self.drop(f));
    }

    fn expected(&self, allowed: bool) -> Vec<Vec<u8>> {
        self.0.iter().filter(|(_, a)| *a == allowed).map(|(f, _)| f.clone()).collect()
    }

    /// Replay through the shop policy; assert the two output pcaps hold exactly the
    /// frames marked pass and drop, in order, and every counter in `counts` exactly.
    fn replay(&self, extra: &[&str], counts: &[(&str, u64)]) -> Replay {
        let dir = tempfile::tempdir().unwrap();
        let manifests = shop(dir.path());
        let input: Vec<Vec<u8>> = self.0.iter().map(|(f, _)| f.clone()).collect();
        let result = replay(dir.path(), &manifests, &input, extra);
        let (allowed, dropped) = (self.expected(true), self.expected(false));
        assert_eq!(result.get("rx"), input.len() as u64, "{}", result.counters);
        assert_eq!(result.get("forwarded"), allowed.len() as u64, "{}", result.counters);
        for (name, value) in counts {
            assert_eq!(result.get(name), *value, "{name} in {}", result.counters);
        }
        let reasons = ["drop_policy", "drop_malformed", "drop_no_flow", "drop_fragment"];
        let drops: u64 = reasons.iter().map(|r| result.get(r)).sum();
        assert_eq!(result.get("forwarded") + drops, result.get("rx"), "rx = forwarded + drops by reason");
        assert_eq!(result.allowed.len(), allowed.len(), "frames written as allowed");
        assert_eq!(result.dropped.len(), dropped.len(), "frames written as dropped");
        for (i, (got, want)) in result.allowed.iter().zip(&allowed).enumerate() {
            assert!(got == want, "allowed frame {i} differs from the one expected");
        }
        for (i, (got, want)) in result.dropped.iter().zip(&dropped).enumerate() {
            assert!(got == want, "dropped frame {i} differs from the one expected");
        }
        result
    }
}

fn tcp(src: SocketAddr, dst: SocketAddr, flags: u8) -> Vec<u8> {
    craft::tcp(src, dst, flags)
}

/// A flood source outside the cluster: 10.2.0.0/16, distinct per `i`.
fn flood_source(i: usize) -> SocketAddr {
    at(&format!("10.2.{}.{}", i / 250, i % 250 + 1), 1024 + (i % 50_000) as u16)
}

/// 10 × the table's capacity in new flows (denied SYNs from spoofed sources) while
/// eight established connections exchange data: every packet of theirs is forwarded, in
/// order. The table fills at exactly its capacity; a new legitimate connection opened
/// while it is full is still decided per packet (statelessly) and passes; a spoofed
/// reply from `web` then is denied all the same.
#[test]
fn syn_flood_of_ten_times_capacity_loses_no_established_packet() {
    const CAPACITY: usize = 1024;
    const FLOOD: usize = 10 * CAPACITY;
    const ROUNDS: usize = 10;
    let conns: Vec<(SocketAddr, SocketAddr)> = (0..8).map(|i| (at(CLIENT, 40_000 + i), at(WEB, 80))).collect();
    let mut t = Traffic::default();
    for &(c, s) in &conns {
        t.pass_all([tcp(c, s, SYN), tcp(s, c, SYN | ACK), tcp(c, s, ACK)]);
    }
    let per_round = FLOOD / ROUNDS;
    for round in 0..ROUNDS {
        t.drop_all((round * per_round..(round + 1) * per_round).map(|i| tcp(flood_source(i), at(WEB, 80), SYN)));
        for &(c, s) in &conns {
            t.pass_all([tcp(c, s, PSH | ACK), tcp(s, c, PSH | ACK)]);
        }
        if round == ROUNDS / 2 {
            // The table is full by now.
            t.pass_all(craft::tcp_connection(at(CLIENT, 50_000), at(WEB, 80)));
            t.drop(tcp(at(WEB, 80), at(STRANGER, 50_001), ACK));
        }
    }
    for &(c, s) in &conns {
        t.pass_all([tcp(c, s, FIN | ACK), tcp(s, c, FIN | ACK), tcp(c, s, ACK)]);
    }
    let flood_inserted = (CAPACITY - conns.len()) as u64;
    let result = t.replay(
        &["--flow-capacity", &CAPACITY.to_string(), "--flows"],
        &[
            ("rx", (conns.len() * (6 + 2 * ROUNDS) + FLOOD + 9) as u64),
            ("forwarded", (conns.len() * (6 + 2 * ROUNDS) + 8) as u64),
            ("drop_policy", FLOOD as u64 + 1),
            ("drop_no_flow", 0),
            ("drop_malformed", 0),
            ("flow_inserts", CAPACITY as u64),
            // Flood SYNs past capacity, and the new connection's SYN.
            ("flow_table_full", FLOOD as u64 - flood_inserted + 1),
            // The new connection's seven later packets and the spoofed ACK.
            ("stateless_decisions", 8),
            ("flows", CAPACITY as u64),
            ("flow_expiries", 0),
        ],
    );
    let flows = result.counters["flow_list"].as_array().unwrap();
    for &(c, s) in &conns {
        let flow = flows
            .iter()
            .find(|f| f["src"] == c.ip().to_string() && f["src_port"] == c.port() && f["dst_port"] == s.port())
            .unwrap_or_else(|| panic!("no flow for {c} → {s}"));
        assert_eq!(flow["action"], "forward");
        // SYN, ACK, 10 data, FIN, last ACK one way; SYN-ACK, 10 data, FIN the other.
        assert_eq!(flow["packets"], serde_json::json!([4 + ROUNDS, 2 + ROUNDS]), "{flow}");
    }
    let denied = flows.iter().filter(|f| f["action"] == "drop").count();
    assert_eq!(denied as u64, flood_inserted);
}

/// Packets that look like replies but match no flow are new connections from their
/// source: `web` may not initiate, so none passes; TCP without SYN in strict mode,
/// echo replies and ICMP errors without their flow drop as `no_flow`.
#[test]
fn spoofed_replies_without_a_flow_are_new_connections() {
    let mut t = Traffic::default();
    // TCP from web's port 80 with no connection behind it.
    for flags in [SYN | ACK, ACK, PSH | ACK, FIN | ACK, RST, RST | ACK] {
        t.drop(tcp(at(WEB, 80), at(CLIENT, 41_000), flags));
    }
    t.drop(tcp(at(WEB6, 80), at(CLIENT6, 41_000), SYN | ACK));
    // UDP "answers" with no query: new flows web → client, denied by web's egress.
    t.drop(craft::udp(at(WEB, 53), at(CLIENT, 5353), b"answer"));
    t.drop(craft::udp(at(WEB6, 53), at(CLIENT6, 5353), b"answer"));
    // A real query and its answer pass; an answer to another port is a new flow again.
    t.pass(craft::udp(at(CLIENT, 5354), at(WEB, 53), b"query"));
    t.pass(craft::udp(at(WEB, 53), at(CLIENT, 5354), b"answer"));
    t.drop(craft::udp(at(WEB, 53), at(CLIENT, 5355), b"answer"));
    // The stranger's denied query, then web "answering" it: still denied.
    t.drop(craft::udp(at(STRANGER, 6000), at(WEB, 53), b"query"));
    t.drop(craft::udp(at(WEB, 53), at(STRANGER, 6000), b"answer"));
    // SCTP from web's port 9.
    t.drop(craft::sctp(at(WEB, 9), at(CLIENT, 5000), 1));
    // An echo reply with no request, and an ICMP error quoting a datagram never seen.
    t.drop(craft::echo(ip(WEB), ip(CLIENT), false, 77, 1));
    t.drop(craft::echo(ip(WEB6), ip(CLIENT6), false, 77, 1));
    let never_sent = tcp(at(CLIENT, 41_001), at(WEB, 80), SYN);
    t.drop(craft::unreachable(ip(WEB), ip(CLIENT), &never_sent));
    t.replay(
        &[],
        &[
            ("forwarded", 2),
            ("drop_no_flow", 6 + 1 + 2 + 1),
            ("drop_policy", 2 + 1 + 2 + 1),
            ("drop_malformed", 0),
            // web→client:5353 (v4, v6), client:5354 query, web→client:5355, stranger's
            // query, web→client SCTP.
            ("flow_inserts", 6),
            ("icmp_related", 0),
        ],
    );
}

/// In loose mode a TCP packet without SYN starts a flow, with its sender as initiator:
/// from `web` that is a connection web may not open. (A SYN-ACK is the one exception by
/// design: loose mode takes it to come from the responder, so web's SYN-ACK to a client
/// port passes as the reply of client → web:80, which policy allows.)
#[test]
fn spoofed_replies_in_loose_mode_are_decided_as_their_senders_connections() {
    let mut t = Traffic::default();
    for (port, flags) in [(41_000, ACK), (41_001, PSH | ACK), (41_002, FIN | ACK), (41_003, RST | ACK)] {
        t.drop(tcp(at(WEB, 80), at(CLIENT, port), flags));
        // Nor does anything follow on the denied flow from either side but a SYN.
        t.drop(tcp(at(CLIENT, port), at(WEB, 80), PSH | ACK));
    }
    t.drop(tcp(at(WEB6, 80), at(CLIENT6, 41_000), ACK));
    t.pass(tcp(at(WEB, 80), at(CLIENT, 41_010), SYN | ACK));
    t.replay(
        &["--tcp-loose"],
        &[("forwarded", 1), ("drop_policy", 9), ("drop_no_flow", 0), ("flow_inserts", 6)],
    );
}

/// A frame of `protocol` whose IP payload is `bytes`, as a fragment.
fn fragment(src: &str, dst: &str, protocol: u8, bytes: &[u8], ident: u32, offset: u16, more: bool) -> Vec<u8> {
    craft::ip_frame_with(ip(src), ip(dst), protocol, bytes, Some(Fragmentation { ident, offset, more }))
}

fn tcp_bytes(src: SocketAddr, dst: SocketAddr, flags: u8, payload: &[u8]) -> Vec<u8> {
    let l4 = L4::Tcp { src_port: src.port(), dst_port: dst.port(), flags, seq: 1, ack: 0, payload };
    craft::transport(src.ip(), dst.ip(), &l4).1
}

/// Fragments never bypass policy: later fragments that overlap the transport header,
/// a first fragment too short to hold it, later fragments whose first never came (or
/// came after them), and a second "first" fragment rewriting the ports all drop.
#[test]
fn fragment_evasion_does_not_bypass_policy() {
    let payload = [0x5a; 40];
    let mut t = Traffic::default();
    // 1. An allowed TCP segment client → web:80 in three fragments: all pass.
    let seg = tcp_bytes(at(CLIENT, 42_000), at(WEB, 80), SYN, &payload);
    t.pass(fragment(CLIENT, WEB, ip_proto::TCP, &seg[..24], 1, 0, true));
    t.pass(fragment(CLIENT, WEB, ip_proto::TCP, &seg[24..48], 1, 24, true));
    // 2. Overlaps into the TCP header (offsets 8 and 16 < 20) could rewrite the ports.
    let to_ssh = tcp_bytes(at(CLIENT, 42_000), at(WEB, 22), SYN, &payload);
    t.drop(fragment(CLIENT, WEB, ip_proto::TCP, &to_ssh[8..24], 1, 8, true));
    t.drop(fragment(CLIENT, WEB, ip_proto::TCP, &to_ssh[16..24], 1, 16, true));
    // 3. A second first fragment of the same datagram, to port 22: decided on its own
    //    (denied), and the datagram's later fragments now follow that (fail closed).
    t.drop(fragment(CLIENT, WEB, ip_proto::TCP, &to_ssh[..24], 1, 0, true));
    t.drop(fragment(CLIENT, WEB, ip_proto::TCP, &seg[48..], 1, 48, false));
    // 4. Tiny first fragment: 8 bytes of TCP header (ports, no flags), then the rest.
    let tiny = tcp_bytes(at(CLIENT, 42_001), at(WEB, 80), SYN, &payload[..16]);
    for (i, piece) in tiny.chunks(8).enumerate() {
        t.drop(fragment(CLIENT, WEB, ip_proto::TCP, piece, 2, (i * 8) as u16, i * 8 + 8 < tiny.len()));
    }
    //    UDP first fragment of 4 bytes (half a header).
    let dgram = craft::transport(ip(CLIENT), ip(WEB), &L4::Udp { src_port: 7000, dst_port: 53, payload: &payload }).1;
    t.drop(fragment(CLIENT, WEB, ip_proto::UDP, &dgram[..4], 3, 0, true));
    // 5. Later fragments with no first fragment, even of an allowed conversation.
    t.drop(fragment(CLIENT, WEB, ip_proto::UDP, &dgram[24..], 4, 24, false));
    t.drop(fragment(STRANGER, WEB, ip_proto::UDP, &dgram[24..], 5, 24, false));
    // 6. Out of order: the last fragment before the first drops; after it, the rest pass.
    t.drop(fragment(CLIENT, WEB, ip_proto::UDP, &dgram[32..], 6, 32, false));
    t.pass(fragment(CLIENT, WEB, ip_proto::UDP, &dgram[..16], 6, 0, true));
    t.pass(fragment(CLIENT, WEB, ip_proto::UDP, &dgram[16..32], 6, 16, true));
    // 7. A denied datagram (stranger → web:53): its first and later fragments drop.
    let denied = L4::Udp { src_port: 7001, dst_port: 53, payload: &[0xab; 600] };
    t.drop_all(craft::fragments(ip(STRANGER), ip(WEB), &denied, 7, 256));
    // 8. A later fragment of an allowed datagram but another protocol number.
    t.drop(fragment(CLIENT, WEB, ip_proto::TCP, &dgram[24..32], 6, 24, true));
    // 9. IPv6: an allowed datagram passes whole; a tiny first fragment and an orphan
    //    later fragment drop.
    let allowed6 = L4::Udp { src_port: 7002, dst_port: 53, payload: &[0xcd; 300] };
    t.pass_all(craft::fragments(ip(CLIENT6), ip(WEB6), &allowed6, 8, 128));
    let tiny6 = tcp_bytes(at(CLIENT6, 42_002), at(WEB6, 80), SYN, &payload[..8]);
    for (i, piece) in tiny6.chunks(8).enumerate() {
        t.drop(fragment(CLIENT6, WEB6, ip_proto::TCP, piece, 9, (i * 8) as u16, i * 8 + 8 < tiny6.len()));
    }
    t.drop(fragment(CLIENT6, WEB6, ip_proto::UDP, &dgram[24..], 10, 24, false));
    t.replay(
        &[],
        &[
            ("forwarded", 2 + 2 + 3),
            // Overlaps (2); tiny TCP: its first and offsets 8, 16 (3) and its orphaned
            // 24, 32 (2); tiny UDP (1); orphans (2); out of order (1); protocol
            // mismatch (1); IPv6 tiny: first, 8, 16 and orphaned 24 (4); IPv6 orphan (1).
            ("drop_fragment", 2 + 3 + 2 + 1 + 2 + 1 + 1 + 4 + 1),
            // Port-22 first fragment and the later one following it; stranger's 3.
            ("drop_policy", 2 + 3),
            ("fragments_followed", 1 + 1 + 1 + 2 + 2),
            ("drop_malformed", 0),
        ],
    );
}

/// Flag combinations no TCP sends (Linux conntrack calls them INVALID) drop as
/// malformed, even to a port policy allows, and start no flow; an established
/// connection hit by one carries on.
#[test]
fn tcp_flag_anomalies_drop_as_malformed() {
    let anomalies = [0, FIN, SYN | FIN, SYN | RST, SYN | FIN | ACK, RST | FIN, FIN | PSH | URG, SYN | FIN | PSH | URG, 0xff];
    let mut t = Traffic::default();
    for (i, flags) in anomalies.iter().enumerate() {
        t.drop(tcp(at(CLIENT, 43_000 + i as u16), at(WEB, 80), *flags));
        t.drop(tcp(at(STRANGER, 43_000 + i as u16), at(WEB, 80), *flags));
    }
    t.drop(tcp(at(CLIENT6, 43_000), at(WEB6, 80), SYN | FIN));
    // Valid openings: a SYN, and an ECN-setup SYN; the stranger's SYN is denied.
    t.pass(tcp(at(CLIENT, 43_100), at(WEB, 80), SYN));
    t.pass(tcp(at(CLIENT, 43_101), at(WEB, 80), SYN | ECE | CWR));
    t.drop(tcp(at(STRANGER, 43_100), at(WEB, 80), SYN));
    // An established connection sees SYN+FIN and a null segment mid-stream, then goes on.
    let (c, s) = (at(CLIENT, 43_200), at(WEB, 80));
    t.pass_all([tcp(c, s, SYN), tcp(s, c, SYN | ACK), tcp(c, s, ACK)]);
    t.drop(tcp(c, s, SYN | FIN));
    t.drop(tcp(s, c, 0));
    t.pass_all([tcp(c, s, PSH | ACK), tcp(s, c, PSH | ACK | URG), tcp(c, s, FIN | ACK), tcp(s, c, FIN | ACK), tcp(c, s, ACK)]);
    t.replay(
        &["--flows"],
        &[
            ("forwarded", 2 + 8),
            ("drop_malformed", 2 * anomalies.len() as u64 + 1 + 2),
            ("drop_policy", 1),
            ("drop_no_flow", 0),
            ("flow_inserts", 4),
            ("flows", 4),
        ],
    );
}

/// An IPv6 TCP segment behind the extension headers `chain` (types in order, 8 bytes
/// each, PadN).
fn v6_chain(src: SocketAddr, dst: SocketAddr, chain: &[u8], flags: u8) -> Vec<u8> {
    let l4 = tcp_bytes(src, dst, flags, &[]);
    let mut payload = Vec::new();
    for (i, _) in chain.iter().enumerate() {
        let next = chain.get(i + 1).copied().unwrap_or(ip_proto::TCP);
        // Next header, length 0 (8 bytes), PadN option of 4 bytes.
        payload.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
    }
    payload.extend_from_slice(&l4);
    craft::ip_frame_with(src.ip(), dst.ip(), chain.first().copied().unwrap_or(ip_proto::TCP), &payload, None)
}

/// Policy applies at every depth the parser accepts (up to 8 extension headers); a
/// longer chain, hop-by-hop out of place, or a header running past the packet is
/// malformed and dropped, whoever sends it.
#[test]
fn ipv6_extension_chains_past_the_bound_are_dropped() {
    use ip_proto::{HOP_BY_HOP as HBH, IPV6_DEST_OPTS as DEST, IPV6_ROUTING as ROUTING};
    let mut t = Traffic::default();
    for depth in 0..=8usize {
        let chain = vec![DEST; depth];
        t.pass(v6_chain(at(CLIENT6, 44_000 + depth as u16), at(WEB6, 80), &chain, SYN));
        t.drop(v6_chain(at(STRANGER6, 44_000 + depth as u16), at(WEB6, 80), &chain, SYN));
    }
    let mut mixed = vec![HBH, ROUTING];
    mixed.extend([DEST; 6]);
    t.pass(v6_chain(at(CLIENT6, 44_100), at(WEB6, 80), &mixed, SYN));
    for depth in [9usize, 10, 40] {
        t.drop(v6_chain(at(CLIENT6, 44_200 + depth as u16), at(WEB6, 80), &vec![DEST; depth], SYN));
        t.drop(v6_chain(at(STRANGER6, 44_200 + depth as u16), at(WEB6, 80), &vec![DEST; depth], SYN));
    }
    t.drop(v6_chain(at(CLIENT6, 44_300), at(WEB6, 80), &[DEST, HBH], SYN));
    // A destination-options header claiming 2 KiB.
    let mut long = v6_chain(at(CLIENT6, 44_301), at(WEB6, 80), &[DEST], SYN);
    long[14 + 40 + 1] = 255;
    t.drop(long);
    t.replay(
        &[],
        &[("forwarded", 10), ("drop_policy", 9), ("drop_malformed", 6 + 2), ("flow_inserts", 19)],
    );
}

/// Policy applies through 802.1Q and QinQ tags, and the tags are part of the flow: a
/// reply on other tags has no flow. Three tags are malformed; tagged ARP passes.
#[test]
fn vlan_and_qinq_traffic_is_policed_per_tag() {
    let tagged = |frame: Vec<u8>, tags: &[u16]| craft::with_vlans(&frame, tags);
    let (c, s) = (at(CLIENT, 45_000), at(WEB, 80));
    let mut t = Traffic::default();
    for tags in [&[10u16][..], &[100, 10]] {
        t.pass(tagged(tcp(c, s, SYN), tags));
        t.pass(tagged(tcp(s, c, SYN | ACK), tags));
        t.pass(tagged(tcp(c, s, ACK), tags));
        t.drop(tagged(tcp(at(STRANGER, 45_000), s, SYN), tags));
        t.drop(tagged(craft::udp(at(WEB, 53), at(CLIENT, 5353), b"x"), tags));
    }
    // The reply on tags no connection used.
    t.drop(tagged(tcp(s, c, PSH | ACK), &[11]));
    t.drop(tagged(tcp(s, c, PSH | ACK), &[100, 11]));
    t.drop(tagged(tcp(s, c, PSH | ACK), &[10, 100]));
    t.drop(tcp(s, c, PSH | ACK));
    // Three tags, even around an allowed SYN; a tag cut short.
    t.drop(tagged(tcp(at(CLIENT, 45_001), s, SYN), &[100, 10, 5]));
    let cut = tagged(tcp(c, s, SYN), &[10]);
    t.drop(cut[..16].to_vec());
    t.pass(tagged(craft::arp_request([10, 1, 0, 20], [10, 1, 0, 10]), &[10]));
    t.pass(tagged(craft::arp_request([10, 1, 0, 20], [10, 1, 0, 10]), &[100, 10]));
    t.replay(
        &[],
        &[
            ("forwarded", 8),
            ("passthrough", 2),
            ("drop_policy", 4),
            ("drop_no_flow", 4),
            ("drop_malformed", 2),
            ("flow_inserts", 6),
        ],
    );
}
