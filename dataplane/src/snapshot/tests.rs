//! Unit tests of the snapshot lookup built directly through the builder (the policy
//! semantics themselves are tested end to end in the root `tests/semantics.rs`).

use super::*;
use crate::verdict::{Action, Reason, NO_RULE};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;

fn ports(proto: u8, lo: u16, hi: u16) -> PortMatch {
    PortMatch::Ports { proto, lo, hi }
}

/// Two pods on node n0 (10.0.0.1, 10.0.0.2 + fd00::2), pod b isolated for ingress
/// with rules: r0 tcp/80 from 10.0.0.0/24, r1 any from 10.0.0.1, r2 udp 1000-2000 from all.
fn fixture() -> (Snapshot, [RuleId; 5]) {
    let mut b = SnapshotBuilder::new(7);
    let r0 = b.add_rule("r0");
    let r1 = b.add_rule("r1");
    let r2 = b.add_rule("r2");
    let deny_in = b.add_rule("iso-ingress");
    let deny_eg = b.add_rule("iso-egress");
    let node = b.add_node(&[ip("192.168.0.1")]);
    let net = Remote::Addresses(b.add_address_set(AddressSet::from_net("10.0.0.0/24".parse().unwrap())));
    let a = Remote::Addresses(b.add_address_set(AddressSet::from_addrs([ip("10.0.0.1")])));
    let all = Remote::Any;
    let set = b.add_rule_set(&[
        RuleSetEntry { rule: r0, remote: net, ports: ports(TCP, 80, 80) },
        RuleSetEntry { rule: r1, remote: a, ports: PortMatch::Any },
        RuleSetEntry { rule: r2, remote: all, ports: ports(UDP, 1000, 2000) },
    ]);
    let empty = b.add_rule_set(&[]);
    let (i0, i1) = (b.add_identity(0), b.add_identity(0));
    b.add_endpoint(&[ip("10.0.0.1")], i0, Some(node), Isolation::Open, Isolation::Open);
    b.add_endpoint(
        &[ip("10.0.0.2"), ip("fd00::2")],
        i1,
        Some(node),
        Isolation::Isolated { rules: set, default_rule: deny_in },
        Isolation::Isolated { rules: empty, default_rule: deny_eg },
    );
    (b.build(), [r0, r1, r2, deny_in, deny_eg])
}

fn v(action: Action, reason: Reason, egress_rule: RuleId, ingress_rule: RuleId) -> Verdict {
    Verdict { action, reason, egress_rule, ingress_rule }
}

#[test]
fn lookup_table() {
    let (s, [r0, r1, r2, deny_in, deny_eg]) = fixture();
    use Action::*;
    use Reason::*;
    let cases = [
        // (src, dst, proto, port, expected)
        ("1.1.1.1", "2.2.2.2", TCP, 80, Verdict::NOT_POLICED),
        ("10.0.0.2", "10.0.0.2", TCP, 1, v(Allow, HostOrSelf, NO_RULE, NO_RULE)),
        ("10.0.0.2", "fd00::2", TCP, 1, v(Allow, HostOrSelf, NO_RULE, NO_RULE)),
        ("192.168.0.1", "10.0.0.2", TCP, 9, v(Allow, HostOrSelf, NO_RULE, NO_RULE)),
        ("10.0.0.2", "192.168.0.1", TCP, 9, v(Allow, HostOrSelf, NO_RULE, NO_RULE)),
        // r0 is the lowest rule for tcp/80 from 10.0.0.1 even though r1 also allows it.
        ("10.0.0.1", "10.0.0.2", TCP, 80, v(Allow, Allowed, NO_RULE, r0)),
        ("10.0.0.1", "10.0.0.2", TCP, 81, v(Allow, Allowed, NO_RULE, r1)),
        ("10.0.0.1", "10.0.0.2", ICMP, 0, v(Allow, Allowed, NO_RULE, r1)),
        ("10.0.0.1", "10.0.0.2", UDP, 1500, v(Allow, Allowed, NO_RULE, r1)),
        ("10.0.0.9", "10.0.0.2", TCP, 80, v(Allow, Allowed, NO_RULE, r0)),
        ("10.0.0.9", "10.0.0.2", TCP, 81, v(Deny, DeniedByIngress, NO_RULE, deny_in)),
        ("10.0.0.9", "10.0.0.2", UDP, 999, v(Deny, DeniedByIngress, NO_RULE, deny_in)),
        ("10.0.0.9", "10.0.0.2", UDP, 2000, v(Allow, Allowed, NO_RULE, r2)),
        ("10.0.1.0", "10.0.0.2", TCP, 80, v(Deny, DeniedByIngress, NO_RULE, deny_in)),
        ("fd00::9", "fd00::2", UDP, 1000, v(Allow, Allowed, NO_RULE, r2)),
        ("fd00::9", "fd00::2", ICMP, 0, v(Deny, DeniedByIngress, NO_RULE, deny_in)),
        ("10.0.0.2", "10.0.0.1", TCP, 80, v(Deny, DeniedByEgress, deny_eg, NO_RULE)),
        ("10.0.0.2", "8.8.8.8", UDP, 53, v(Deny, DeniedByEgress, deny_eg, NO_RULE)),
        ("8.8.8.8", "10.0.0.1", UDP, 53, v(Allow, Allowed, NO_RULE, NO_RULE)),
    ];
    for (src, dst, proto, port, want) in cases {
        assert_eq!(s.classify(ip(src), ip(dst), proto, port), want, "{src} -> {dst} {proto}/{port}");
    }
    assert_eq!(s.generation(), 7);
    assert_eq!(s.rule_name(r2), "r2");
    assert_eq!(s.rule_name(deny_eg), "iso-egress");
    assert_eq!(s.rule_name(99), "");
}

#[test]
fn stats_count_shared_structures() {
    let (s, _) = fixture();
    let st = s.stats();
    assert_eq!(st.endpoints, 2);
    assert_eq!(st.endpoint_addresses, 3);
    assert_eq!(st.nodes, 1);
    assert_eq!(st.rules, 5);
    assert_eq!(st.rule_sets, 2);
    // Base list {udp r2}; v4 segments: [0, 10.0.0.0) none | 10.0.0.0 r0 | 10.0.0.1 r0,r1 |
    // 10.0.0.2-255 r0 | rest none; v6: one empty segment. The empty set has none.
    assert_eq!(st.segments_v4, 5);
    assert_eq!(st.segments_v6, 1);
    assert_eq!(st.identity_entries, 0);
    // lists: {udp r2}, {tcp80 r0}, {tcp80 r0, any r1}
    assert_eq!(st.port_lists, 3);
    assert!(st.memory_bytes > 0);
}

#[test]
fn identical_rule_sets_are_shared() {
    let mut b = SnapshotBuilder::new(1);
    let r = b.add_rule("r");
    let s1 = b.add_address_set(AddressSet::from_addrs([ip("10.1.1.1")]));
    let s2 = b.add_address_set(AddressSet::from_addrs([ip("10.1.1.1")]));
    assert_eq!(s1, s2);
    assert_eq!(b.add_identity_set(vec![3, 1, 3]), b.add_identity_set(vec![1, 3]));
    let e = RuleSetEntry { rule: r, remote: Remote::Addresses(s1), ports: PortMatch::Any };
    let a = b.add_rule_set(&[e, e]);
    let c = b.add_rule_set(&[e]);
    assert_eq!(a, c);
}

/// Identity entries match endpoints of that identity only, whatever their address;
/// the lowest rule over base list, identity table and address segments decides.
#[test]
fn identities_base_and_addresses_combine_by_lowest_rule() {
    let mut b = SnapshotBuilder::new(1);
    let r0 = b.add_rule("r0");
    let r1 = b.add_rule("r1");
    let r2 = b.add_rule("r2");
    let r3 = b.add_rule("r3");
    let deny = b.add_rule("deny");
    // Identities 0 (ns 1), 1 (ns 2), 2 and 3 (ns 1).
    let (web1, web2, db, other) = (b.add_identity(1), b.add_identity(2), b.add_identity(1), b.add_identity(1));
    let web = b.add_identity_set(vec![web1, web2]);
    let ns2 = b.add_identity_set(vec![2]);
    let block = Remote::Addresses(b.add_address_set(AddressSet::from_net("10.0.0.0/30".parse().unwrap())));
    let set = b.add_rule_set(&[
        RuleSetEntry { rule: r2, remote: Remote::Any, ports: ports(TCP, 80, 80) },
        RuleSetEntry { rule: r1, remote: Remote::Identities(web), ports: ports(TCP, 80, 90) },
        RuleSetEntry { rule: r0, remote: block, ports: ports(TCP, 90, 100) },
        RuleSetEntry { rule: r3, remote: Remote::Namespaces(ns2), ports: ports(UDP, 1, 1) },
    ]);
    b.add_endpoint(&[ip("10.0.0.1")], web1, None, Isolation::Open, Isolation::Open);
    b.add_endpoint(&[ip("10.0.0.9")], web2, None, Isolation::Open, Isolation::Open);
    b.add_endpoint(&[ip("10.0.0.2")], db, None, Isolation::Isolated { rules: set, default_rule: deny }, Isolation::Open);
    b.add_endpoint(&[ip("10.0.0.10")], other, None, Isolation::Open, Isolation::Open);
    let s = b.build();
    let rule = |src: &str, port| s.classify(ip(src), ip("10.0.0.2"), TCP, port).ingress_rule;
    assert_eq!(rule("10.0.0.1", 80), r1);
    assert_eq!(rule("10.0.0.9", 85), r1);
    assert_eq!(rule("10.0.0.9", 90), r1);
    assert_eq!(rule("10.0.0.1", 90), r0);
    assert_eq!(rule("10.0.0.10", 80), r2);
    assert_eq!(rule("10.0.0.10", 85), deny);
    assert_eq!(rule("10.0.0.3", 95), r0);
    assert_eq!(rule("8.8.8.8", 80), r2);
    let udp = |src: &str| s.classify(ip(src), ip("10.0.0.2"), UDP, 1).ingress_rule;
    assert_eq!(udp("10.0.0.9"), r3);
    assert_eq!(udp("10.0.0.1"), deny);
    // Table entries: namespace 2, identities web1 and web2.
    assert_eq!(s.stats().identity_entries, 3);
}

#[test]
fn empty_snapshot_allows_everything() {
    let s = Snapshot::empty(3);
    assert_eq!(s.classify(ip("10.0.0.1"), ip("10.0.0.2"), TCP, 80), Verdict::NOT_POLICED);
    assert_eq!(s.generation(), 3);
    assert_eq!(s.rule_count(), 0);
}

#[test]
fn painting_keeps_lowest_rule_per_port() {
    let mut p = Vec::new();
    paint_for_test(&mut p, TCP, 100, 200, 1);
    paint_for_test(&mut p, TCP, 50, 300, 2);
    paint_for_test(&mut p, TCP, 150, 160, 3);
    p.sort_unstable_by_key(|e| (e.proto, e.lo));
    let got: Vec<_> = p.iter().map(|e| (e.lo, e.hi, e.rule)).collect();
    assert_eq!(got, vec![(50, 99, 2), (100, 200, 1), (201, 300, 2)]);
}

fn paint_for_test(p: &mut Vec<PortEntry>, proto: u8, lo: u16, hi: u16, rule: RuleId) {
    builder::paint(p, proto, lo, hi, rule)
}
