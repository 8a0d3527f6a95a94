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

/// Endpoints 10.0.0.1 (web1), 10.0.0.9 (web2), 10.0.0.2 (db, isolated for ingress)
/// and 10.0.0.10 (other); db's rules r0..r3 mix identities, a namespace, an address
/// block and any remote.
fn identity_fixture() -> (Snapshot, [RuleId; 5]) {
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
    (b.build(), [r0, r1, r2, r3, deny])
}

/// Identity entries match endpoints of that identity only, whatever their address;
/// the lowest rule over base list, identity table and address segments decides.
#[test]
fn identities_base_and_addresses_combine_by_lowest_rule() {
    let (s, [r0, r1, r2, r3, deny]) = identity_fixture();
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
    p.sort_unstable_by_key(|e| (e.proto(), e.lo()));
    let got: Vec<_> = p.iter().map(|e| (e.lo(), e.hi, e.rule)).collect();
    assert_eq!(got, vec![(50, 99, 2), (100, 200, 1), (201, 300, 2)]);
}

fn paint_for_test(p: &mut Vec<PortEntry>, proto: u8, lo: u16, hi: u16, rule: RuleId) {
    builder::paint(p, proto, lo, hi, rule)
}

/// `count_at_most` is `partition_point(|x| x <= key)` for every length and key.
#[test]
fn count_at_most_is_partition_point() {
    for len in 0..20u32 {
        let sorted: Vec<u32> = (0..len).map(|i| i * 2).collect();
        for key in 0..=len * 2 + 1 {
            assert_eq!(count_at_most(&sorted, key, |&x| x), sorted.partition_point(|&x| x <= key), "len {len} key {key}");
        }
    }
}

/// A random snapshot: endpoints in 10.0.0.0/26 (some with an fd00:: address too) on
/// two nodes, of four identities in two namespaces, isolated by random rule sets
/// mixing every kind of remote and port match.
fn random_snapshot(seed: u64) -> (Snapshot, Vec<IpAddr>) {
    let mut x = seed | 1;
    let mut next = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut b = SnapshotBuilder::new(1);
    let rules: Vec<RuleId> = (0..24).map(|i| b.add_rule(&format!("r{i}"))).collect();
    let nodes = [b.add_node(&[ip("192.168.0.1")]), b.add_node(&[ip("192.168.0.2"), ip("fd01::2")])];
    let identities: Vec<IdentityId> = (0..4).map(|i| b.add_identity(i % 2)).collect();
    let mut sets = Vec::new();
    for _ in 0..4 {
        let mut entries = Vec::new();
        for _ in 0..next(7) {
            let remote = match next(5) {
                0 => Remote::Any,
                1 => Remote::Identities(b.add_identity_set(vec![identities[next(4) as usize], identities[next(4) as usize]])),
                2 => Remote::Namespaces(b.add_identity_set(vec![next(2) as u32])),
                3 => {
                    let net = format!("10.0.0.{}/{}", next(64), 26 + next(7));
                    Remote::Addresses(b.add_address_set(AddressSet::from_net(net.parse().unwrap())))
                }
                _ => {
                    let net = format!("fd00::{:x}/{}", next(64), 122 + next(7));
                    Remote::Addresses(b.add_address_set(AddressSet::from_net(net.parse().unwrap())))
                }
            };
            let ports = match next(4) {
                0 => PortMatch::Any,
                _ => {
                    let lo = 78 + next(6) as u16;
                    ports([TCP, UDP][next(2) as usize], lo, lo + next(3) as u16)
                }
            };
            entries.push(RuleSetEntry { rule: rules[next(20) as usize], remote, ports });
        }
        sets.push(b.add_rule_set(&entries));
    }
    let mut addrs = vec![ip("192.168.0.1"), ip("192.168.0.2"), ip("fd01::2"), ip("8.8.8.8"), ip("fd00::ff")];
    for e in 0..12u64 {
        let mut mine = vec![ip(&format!("10.0.0.{}", 1 + 5 * e))];
        if next(3) == 0 {
            mine.push(ip(&format!("fd00::{:x}", 1 + 5 * e)));
        }
        let mut iso = |rule| match next(3) {
            0 => Isolation::Open,
            _ => Isolation::Isolated { rules: sets[next(4) as usize], default_rule: rules[rule] },
        };
        let (ingress, egress) = (iso(22), iso(23));
        let node = [None, Some(nodes[0]), Some(nodes[1])][next(3) as usize];
        b.add_endpoint(&mine, identities[next(4) as usize], node, ingress, egress);
        addrs.extend(mine);
    }
    addrs.extend((0..4).map(|i| ip(&format!("10.0.0.{}", 3 + 16 * i))));
    (b.build(), addrs)
}

/// Random probes over `addrs` on a few protocols and ports, `n` of them.
fn random_probes(addrs: &[IpAddr], picks: &[(usize, usize, usize, u16)]) -> Vec<Probe> {
    picks
        .iter()
        .map(|&(s, d, p, port)| Probe {
            src: addrs[s % addrs.len()],
            dst: addrs[d % addrs.len()],
            proto: [TCP, UDP, ICMP, 132][p % 4],
            dst_port: port,
        })
        .collect()
}

fn assert_burst_matches_classify(s: &Snapshot, probes: &[Probe]) {
    let mut out = vec![Verdict::NOT_POLICED; probes.len() + 1];
    let sentinel = Verdict { action: Action::Deny, reason: Reason::HostOrSelf, egress_rule: 7, ingress_rule: 7 };
    out[probes.len()] = sentinel;
    s.classify_burst(probes, &mut out);
    for (p, v) in probes.iter().zip(&out) {
        assert_eq!(*v, s.classify(p.src, p.dst, p.proto, p.dst_port), "{p:?}");
    }
    assert_eq!(out[probes.len()], sentinel, "classify_burst wrote past its probes");
    // The staged pipeline itself (`classify_burst` classifies small snapshots singly).
    s.classify_staged(probes, &mut out);
    for (p, v) in probes.iter().zip(&out) {
        assert_eq!(*v, s.classify(p.src, p.dst, p.proto, p.dst_port), "staged {p:?}");
    }
    assert_eq!(out[probes.len()], sentinel, "classify_staged wrote past its probes");
}

#[test]
fn burst_matches_classify_on_fixtures() {
    let (s, _) = fixture();
    let addrs: Vec<IpAddr> =
        ["10.0.0.1", "10.0.0.2", "fd00::2", "fd00::9", "192.168.0.1", "10.0.0.9", "10.0.1.0", "8.8.8.8"].map(ip).to_vec();
    let picks: Vec<_> = (0..200).map(|i| (i * 7, i * 3 + i / 8, i, [80, 81, 999, 1000, 1500, 2000, 0][i % 7])).collect();
    assert_burst_matches_classify(&s, &random_probes(&addrs, &picks));
    assert_burst_matches_classify(&s.flattened(), &random_probes(&addrs, &picks));
    let (s, _) = identity_fixture();
    let addrs: Vec<IpAddr> = ["10.0.0.1", "10.0.0.9", "10.0.0.2", "10.0.0.10", "10.0.0.3", "8.8.8.8"].map(ip).to_vec();
    let picks: Vec<_> = (0..200).map(|i| (i * 5 + i / 6, i * 11, i, [1, 80, 85, 90, 95, 100][i % 6])).collect();
    assert_burst_matches_classify(&s, &random_probes(&addrs, &picks));
    assert_burst_matches_classify(&s.flattened(), &random_probes(&addrs, &picks));
    assert_burst_matches_classify(&Snapshot::empty(1), &random_probes(&addrs, &picks[..3]));
    assert_burst_matches_classify(&Snapshot::empty(1).flattened(), &random_probes(&addrs, &picks[..3]));
    assert_burst_matches_classify(&s, &[]);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// `classify_burst` gives exactly `classify`'s verdicts, bursts of any length
    /// (across the pipeline's chunk boundaries) over random snapshots, chunked and
    /// flattened (whose packed tables the passes read without checking for entries).
    #[test]
    fn burst_matches_classify_on_random_snapshots(
        seed in proptest::prelude::any::<u64>(),
        picks in proptest::collection::vec((0usize..64, 0usize..64, 0usize..4, 76u16..86), 0..80),
    ) {
        let (s, addrs) = random_snapshot(seed);
        let probes = random_probes(&addrs, &picks);
        assert_burst_matches_classify(&s, &probes);
        let flat = s.flattened();
        assert_burst_matches_classify(&flat, &probes);
        // And the flattened copy decides like the snapshot it was made from.
        for p in &probes {
            proptest::prop_assert_eq!(flat.classify(p.src, p.dst, p.proto, p.dst_port), s.classify(p.src, p.dst, p.proto, p.dst_port));
        }
    }
}

/// Strictly ascending segment starts from 0, from `gaps` (each gap ≥ 1).
fn starts_from_gaps(gaps: &[u32]) -> Vec<u32> {
    let mut starts = vec![0u32];
    for &g in gaps {
        match starts.last().unwrap().checked_add(g) {
            Some(s) => starts.push(s),
            None => break,
        }
    }
    starts
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
    /// `count_at_most` counts like the obvious filter, on any length around the window.
    #[test]
    fn count_at_most_matches_filter(
        mut keys in proptest::collection::vec(0u32..200, 0..80),
        x in 0u32..220,
    ) {
        keys.sort_unstable();
        proptest::prop_assert_eq!(count_at_most(&keys, x, |&k| k), keys.iter().filter(|&&k| k <= x).count());
    }

    /// `segment_at` over a `segment_run` finds the segment a plain search of the
    /// starts finds (index of one block, of several, and longer than one line of keys),
    /// and the list at that position is the segment's.
    #[test]
    fn segment_at_matches_partition_point(
        gaps in proptest::collection::vec(1u32..1000, 0..700),
        probes in proptest::collection::vec((0usize..700, -2i64..3), 1..40),
    ) {
        let starts = starts_from_gaps(&gaps);
        let lists: Vec<ListRef> = (0..starts.len() as u32).map(|i| (i, i + 1)).collect();
        let (run, list_run) = segment_run(&starts, &lists);
        proptest::prop_assert_eq!(run.len(), seg_index_len(starts.len()) + starts.len());
        let wide: Vec<u128> = run.iter().map(|&s| u128::from(s) << 64).collect();
        for (pick, delta) in probes {
            // Near a start (on it, just before, just after), and the ends of the space.
            let base = i64::from(starts[pick % starts.len()]);
            for x in [(base + delta).clamp(0, i64::from(u32::MAX)) as u32, 0, u32::MAX] {
                let want = starts.partition_point(|&s| s <= x) - 1;
                let at = segment_at(&run, starts.len(), x);
                proptest::prop_assert_eq!(at, seg_index_len(starts.len()) + want, "x {}", x);
                proptest::prop_assert_eq!(list_run[at], lists[want]);
                proptest::prop_assert_eq!(segment_at(&wide, starts.len(), u128::from(x) << 64), at);
            }
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]
    /// Port lists of any length (scanned when short, searched by key when long) give
    /// the lowest rule whose protocol and port range allow the probe.
    #[test]
    fn port_lists_give_lowest_allowing_rule(
        entries in proptest::collection::vec((0usize..16, 0u16..300, 0u16..40), 1..48),
        probes in proptest::collection::vec((0usize..4, 0u16..360), 1..64),
    ) {
        const PROTOS: [u8; 4] = [TCP, UDP, 132, ICMP];
        let mut b = SnapshotBuilder::new(1);
        let rules: Vec<RuleId> = (0..entries.len()).map(|i| b.add_rule(&format!("r{i}"))).collect();
        let deny = b.add_rule("deny");
        // Pick 15 is a rule without ports; the others one protocol's range.
        let allows = |&(pick, lo, width): &(usize, u16, u16), proto: u8, port: u16| {
            pick == 15 || (PROTOS[pick % 3] == proto && lo <= port && port <= lo.saturating_add(width))
        };
        let set_entries: Vec<RuleSetEntry> = entries
            .iter()
            .zip(&rules)
            .map(|(&(pick, lo, width), &rule)| RuleSetEntry {
                rule,
                remote: Remote::Any,
                ports: if pick == 15 { PortMatch::Any } else { ports(PROTOS[pick % 3], lo, lo.saturating_add(width)) },
            })
            .collect();
        let set = b.add_rule_set(&set_entries);
        let identity = b.add_identity(0);
        b.add_endpoint(&[ip("10.0.0.1")], identity, None, Isolation::Isolated { rules: set, default_rule: deny }, Isolation::Open);
        let s = b.build();
        for (p, port) in probes {
            let proto = PROTOS[p];
            let want = entries.iter().zip(&rules).filter(|(e, _)| allows(e, proto, port)).map(|(_, &r)| r).min();
            let v = s.classify(ip("8.8.8.8"), ip("10.0.0.1"), proto, port);
            let got = (v.action, v.ingress_rule);
            match want {
                Some(r) => proptest::prop_assert_eq!(got, (Action::Allow, r), "{} {}", proto, port),
                None => proptest::prop_assert_eq!(got, (Action::Deny, deny), "{} {}", proto, port),
            }
        }
    }
}

#[test]
fn port_keys_mirror_port_entries() {
    // Long lists are searched through `port_keys`: they must hold every entry's key at
    // its index, in the builder's chunked snapshot and in its flattened copy.
    let set = five_tuple::FiveTupleSet::synthetic(4, 10, 40, 3);
    let chunked = set.snapshot(1);
    for snap in [&chunked, &chunked.flattened()] {
        assert_eq!(snap.port_keys.len(), snap.port_entries.len());
        assert!((0..snap.port_entries.len()).all(|i| snap.port_keys[i] == snap.port_entries[i].key));
        assert!(snap.stats().port_lists > 0);
    }
}

#[test]
fn pod_remotes_skip_segments_only_while_no_pod_can_be_in_them() {
    // Pod b (10.1.0.2) admits tcp/80 from 172.16.0.0/16 (r0), which holds no pod
    // address: a pod remote skips the segment search (and knows its segment), until a
    // pod is given an address in it (here pod a moves there).
    let mut b = SnapshotBuilder::new(1);
    let (r0, deny) = (b.add_rule("r0"), b.add_rule("deny"));
    let outside = Remote::Addresses(b.add_address_set(AddressSet::from_net("172.16.0.0/16".parse().unwrap())));
    let set = b.add_rule_set(&[RuleSetEntry { rule: r0, remote: outside, ports: ports(TCP, 80, 80) }]);
    let id = b.add_identity(0);
    let iso = Isolation::Isolated { rules: set, default_rule: deny };
    let a = b.add_endpoint(&[ip("10.1.0.1")], id, None, Isolation::Open, Isolation::Open);
    b.add_endpoint(&[ip("10.1.0.2")], id, None, iso, Isolation::Open);
    let layout = b.snapshot(1).rule_sets[set as usize];
    // Pods are outside every ipBlock: their segment list is known (empty).
    assert_eq!((layout.addr_min_rule, layout.pod_addr_min_rule, layout.pod_v4_list), (r0, NONE, (0, 0)));
    let check = |s: &Snapshot, src: &str, want: RuleId| {
        assert_eq!(s.classify(ip(src), ip("10.1.0.2"), TCP, 80).ingress_rule, want, "{src}");
        assert_eq!(s.classify(ip(src), ip("10.1.0.2"), TCP, 81).ingress_rule, deny, "{src}");
        assert_burst_matches_classify(s, &random_probes(&[ip(src), ip("10.1.0.2")], &[(0, 1, 0, 80), (0, 1, 0, 81), (1, 0, 0, 80)]));
    };
    let s = b.snapshot(2);
    check(&s, "172.16.3.3", r0);
    check(&s, "10.1.0.1", deny);
    b.update_endpoint(a, &[ip("10.1.0.1")], &[ip("172.16.9.9")], id, None, Isolation::Open, Isolation::Open);
    let layout = b.snapshot(3).rule_sets[set as usize];
    assert_eq!((layout.pod_addr_min_rule, layout.pod_v4_list), (r0, SEARCH));
    for s in [b.snapshot(3), b.snapshot(3).flattened()] {
        check(&s, "172.16.9.9", r0);
        check(&s, "172.16.3.3", r0);
    }
}

#[test]
fn flattening_merges_identities_with_equal_entries_into_classes() {
    // Pod d (10.2.0.9) admits tcp/80 from identity set {i0, i1, i2} (r0) and tcp/443
    // from {i2} (r1), udp/53 from namespace 1 (r2). i0 and i1 have the same entry in
    // every rule set: one class; i2's entries differ; i3 (namespace 1) and i4 have none
    // (their lookups fall back to their namespace's list, or the base list).
    let mut b = SnapshotBuilder::new(1);
    let (r0, r1, r2, deny) = (b.add_rule("r0"), b.add_rule("r1"), b.add_rule("r2"), b.add_rule("deny"));
    let ids: Vec<IdentityId> = [0, 0, 0, 1, 0].iter().map(|&ns| b.add_identity(ns)).collect();
    let web = Remote::Identities(b.add_identity_set(vec![ids[0], ids[1], ids[2]]));
    let admin = Remote::Identities(b.add_identity_set(vec![ids[2]]));
    let ns1 = Remote::Namespaces(b.add_identity_set(vec![1]));
    let set = b.add_rule_set(&[
        RuleSetEntry { rule: r0, remote: web, ports: ports(TCP, 80, 80) },
        RuleSetEntry { rule: r1, remote: admin, ports: ports(TCP, 443, 443) },
        RuleSetEntry { rule: r2, remote: ns1, ports: ports(UDP, 53, 53) },
    ]);
    let iso = Isolation::Isolated { rules: set, default_rule: deny };
    for (k, &id) in ids.iter().enumerate() {
        b.add_endpoint(&[ip(&format!("10.2.0.{}", k + 1)), ip(&format!("fd00:2::{}", k + 1))], id, None, Isolation::Open, Isolation::Open);
    }
    let own = b.add_identity(0);
    b.add_endpoint(&[ip("10.2.0.9"), ip("fd00:2::9")], own, None, iso, Isolation::Open);
    let chunked = b.snapshot(1);
    let flat = chunked.flattened();
    // Chunked: one entry per named identity (i0, i1, i2); flat: one per class.
    assert_eq!((chunked.stats().identity_entries, flat.stats().identity_entries), (1 + 3, 1 + 2));
    assert_eq!(flat.rule_sets[set as usize].id_len, 2);
    // (source pod, port) → the ingress rule, in both snapshots, for v4 and v6.
    let want = [
        (1, TCP, 80, r0), (1, TCP, 443, deny), (1, UDP, 53, deny),
        (2, TCP, 80, r0), (2, TCP, 443, deny), (2, UDP, 53, deny),
        (3, TCP, 80, r0), (3, TCP, 443, r1), (3, UDP, 53, deny),
        (4, TCP, 80, deny), (4, UDP, 53, r2),
        (5, TCP, 80, deny), (5, UDP, 53, deny),
    ];
    for s in [&chunked, &flat, &flat.flattened()] {
        for &(k, proto, port, rule) in &want {
            for (src, dst) in [(format!("10.2.0.{k}"), "10.2.0.9"), (format!("fd00:2::{k}"), "fd00:2::9")] {
                assert_eq!(s.classify(ip(&src), ip(dst), proto, port).ingress_rule, rule, "{src} {proto}/{port}");
            }
        }
    }
    let addrs: Vec<IpAddr> = (1..=5).chain([9]).map(|k| ip(&format!("10.2.0.{k}"))).collect();
    // (source, destination, protocol index: 0 TCP, 1 UDP, port)
    let shape: Vec<(usize, usize, usize, u16)> = (0..5).flat_map(|k| [(k, 5, 0, 80), (k, 5, 0, 443), (k, 5, 1, 53)]).collect();
    assert_burst_matches_classify(&flat, &random_probes(&addrs, &shape));
}
