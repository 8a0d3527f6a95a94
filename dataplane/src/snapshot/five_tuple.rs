//! A plain IPv4 5-tuple rule list and its compilation into a [`Snapshot`], for comparing
//! palisade's classifier with DPDK's `rte_acl` on one rule set (`benches/acl.rs`,
//! `tests/acl_equivalence.rs`).
//!
//! The rule list is what an ingress policy per pod group amounts to: group `g` owns the
//! pods `10.g1.g0.1..=P` (its /24), and its rules allow `(source prefix, protocol,
//! destination port range)`; everything else to those pods is denied. Rule ids are the
//! list order and the first allowing rule decides, so in `rte_acl` rule `i` gets
//! priority `MAX - i` and userdata `i + 1` (0 = no rule = deny), and in the snapshot
//! each group is one pod identity with one ingress rule set of ipBlock entries.

use super::{AddressSet, Isolation, PortMatch, Remote, RuleSetEntry, Snapshot, SnapshotBuilder};
use std::net::{IpAddr, Ipv4Addr};

/// One allow rule: traffic from `src` (prefix) to the pods of `group` with `proto`
/// and destination port in `dst_ports` is allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FiveTupleRule {
    pub group: u32,
    pub src: (u32, u8),
    pub proto: u8,
    pub dst_ports: (u16, u16),
}

/// A generated rule list with its pods.
#[derive(Clone, Debug)]
pub struct FiveTupleSet {
    pub groups: u32,
    pub pods_per_group: u32,
    /// In decision order: rule `i` is `rules[i]`, grouped by `group`.
    pub rules: Vec<FiveTupleRule>,
}

/// One probe: (source, destination, protocol, source port, destination port).
pub type Probe = (Ipv4Addr, Ipv4Addr, u8, u16, u16);

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const SRC_BASE: u32 = 0xAC10_0000; // 172.16.0.0/12: sources, never pods

impl FiveTupleSet {
    /// `groups` groups (≤ 65536) of `pods_per_group` pods (≤ 254), `rules_per_group`
    /// rules each: source prefixes /8 to /28 inside 172.16.0.0/12 (or anything, for one
    /// rule in 16), TCP or UDP, a single port or a range. Deterministic in `seed`.
    pub fn synthetic(groups: u32, pods_per_group: u32, rules_per_group: u32, seed: u64) -> FiveTupleSet {
        assert!(groups <= 1 << 16 && (1..=254).contains(&pods_per_group));
        let mut rng = Rng(seed | 1);
        let mut rules = Vec::with_capacity((groups * rules_per_group) as usize);
        for group in 0..groups {
            for _ in 0..rules_per_group {
                let src = if rng.below(16) == 0 {
                    (0, 0)
                } else {
                    let len = 12 + rng.below(17) as u8; // /12 ..= /28
                    let addr = SRC_BASE | (rng.next() as u32 & 0x000f_ffff);
                    (addr & (u32::MAX << (32 - len)), len)
                };
                let proto = if rng.below(4) == 0 { 17 } else { 6 };
                let lo = [53, 80, 443, 8080, 5432, 9090, 1024 + rng.below(4000) as u16][rng.below(7) as usize];
                let hi = if rng.below(3) == 0 { lo.saturating_add(rng.below(1000) as u16) } else { lo };
                rules.push(FiveTupleRule { group, src, proto, dst_ports: (lo, hi) });
            }
        }
        FiveTupleSet { groups, pods_per_group, rules }
    }

    /// Address of pod `pod` of `group`.
    pub fn pod(&self, group: u32, pod: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.group_net(group) | (pod + 1))
    }

    /// The /24 of `group`'s pods.
    pub fn group_net(&self, group: u32) -> u32 {
        0x0A00_0000 | (group << 8)
    }

    /// The snapshot: one identity and ingress rule set per group, rule `i` named `r{i}`,
    /// denials by the isolation rule (the last id).
    pub fn snapshot(&self, generation: u64) -> Snapshot {
        let mut b = SnapshotBuilder::new(generation);
        for i in 0..self.rules.len() {
            b.add_rule(&format!("r{i}"));
        }
        let deny = b.add_rule("deny");
        let mut entries = vec![Vec::new(); self.groups as usize];
        for (i, r) in self.rules.iter().enumerate() {
            let net = ipnet::Ipv4Net::new(Ipv4Addr::from(r.src.0), r.src.1).expect("prefix length ≤ 32");
            let remote = Remote::Addresses(b.add_address_set(AddressSet::from_net(net.into())));
            let ports = PortMatch::Ports { proto: r.proto, lo: r.dst_ports.0, hi: r.dst_ports.1 };
            entries[r.group as usize].push(RuleSetEntry { rule: i as u32, remote, ports });
        }
        for (group, entries) in entries.iter().enumerate() {
            let rules = b.add_rule_set(entries);
            let identity = b.add_identity(group as u32);
            for pod in 0..self.pods_per_group {
                let addr = IpAddr::V4(self.pod(group as u32, pod));
                b.add_endpoint(&[addr], identity, None, Isolation::Isolated { rules, default_rule: deny }, Isolation::Open);
            }
        }
        b.build()
    }

    /// `count` probes to random pods: mostly from inside some rule's source prefix of
    /// the destination's group, on that rule's protocol and ports (so many match), the
    /// rest from anywhere in 172.16.0.0/12 on common ports.
    pub fn trace(&self, count: usize, seed: u64) -> Vec<Probe> {
        let mut rng = Rng(seed | 1);
        let per_group = self.rules.len() / self.groups.max(1) as usize;
        (0..count)
            .map(|_| {
                let group = rng.below(u64::from(self.groups)) as u32;
                let dst = self.pod(group, rng.below(u64::from(self.pods_per_group)) as u32);
                let sport = 1024 + rng.below(60_000) as u16;
                if per_group > 0 && rng.below(4) != 0 {
                    let r = self.rules[group as usize * per_group + rng.below(per_group as u64) as usize];
                    let host_bits = u32::MAX.checked_shr(u32::from(r.src.1)).unwrap_or(0);
                    let src = match r.src.1 {
                        0 => SRC_BASE | (rng.next() as u32 & 0x000f_ffff),
                        _ => r.src.0 | (rng.next() as u32 & host_bits),
                    };
                    let src = Ipv4Addr::from(src);
                    let port = r.dst_ports.0 + rng.below(u64::from(r.dst_ports.1 - r.dst_ports.0) + 1) as u16;
                    (src, dst, r.proto, sport, port)
                } else {
                    let src = Ipv4Addr::from(SRC_BASE | (rng.next() as u32 & 0x000f_ffff));
                    let proto = if rng.below(4) == 0 { 17 } else { 6 };
                    (src, dst, proto, sport, [53, 80, 443, 8080, 22][rng.below(5) as usize])
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{Action, Classifier, Probe as Flow, Reason, Verdict, NO_RULE};
    use proptest::prelude::*;

    /// The obvious evaluation: the first rule of the destination's group that matches.
    fn first_match(set: &FiveTupleSet, (src, dst, proto, _, port): Probe) -> Option<u32> {
        let (src, dst) = (u32::from(src), u32::from(dst));
        set.rules.iter().position(|r| {
            let in_src = r.src.1 == 0 || (src ^ r.src.0) >> (32 - u32::from(r.src.1)) == 0;
            set.group_net(r.group) == dst & 0xffff_ff00
                && in_src
                && r.proto == proto
                && (r.dst_ports.0..=r.dst_ports.1).contains(&port)
        }).map(|i| i as u32)
    }

    /// Checks that `set`'s snapshot decides `probes` trace probes as the first matching
    /// rule would, one at a time, in bursts and through the staged pipeline alike.
    fn check_first_match(set: &FiveTupleSet, probes: usize, seed: u64) -> Result<(), TestCaseError> {
        let snapshot = set.snapshot(1);
        let deny = set.rules.len() as u32;
        let trace = set.trace(probes, seed);
        let flows: Vec<Flow> =
            trace.iter().map(|p| Flow { src: IpAddr::V4(p.0), dst: IpAddr::V4(p.1), proto: p.2, dst_port: p.4 }).collect();
        let mut burst = vec![Verdict::NOT_POLICED; flows.len()];
        snapshot.classify_burst(&flows, &mut burst);
        let mut staged = vec![Verdict::NOT_POLICED; flows.len()];
        snapshot.classify_staged(&flows, &mut staged);
        for ((probe, burst), staged) in trace.into_iter().zip(burst).zip(staged) {
            let v = snapshot.classify(IpAddr::V4(probe.0), IpAddr::V4(probe.1), probe.2, probe.4);
            prop_assert_eq!(burst, v);
            prop_assert_eq!(staged, v);
            prop_assert_eq!(v.egress_rule, NO_RULE);
            match first_match(set, probe) {
                Some(rule) => prop_assert_eq!((v.action, v.reason, v.ingress_rule), (Action::Allow, Reason::Allowed, rule)),
                None => prop_assert_eq!((v.action, v.reason, v.ingress_rule), (Action::Deny, Reason::DeniedByIngress, deny)),
            }
        }
        Ok(())
    }

    /// Rule sets of many address segments (an index longer than one line of keys).
    #[test]
    fn long_segment_runs_match_first_match() {
        for (groups, rules, seed) in [(2u32, 300u32, 3u64), (1, 900, 11), (3, 120, 5)] {
            check_first_match(&FiveTupleSet::synthetic(groups, 4, rules, seed), 1500, seed ^ 0xabcd).unwrap();
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// The compiled snapshot decides every probe as the first matching rule would,
        /// one at a time and in bursts alike.
        #[test]
        fn snapshot_matches_first_match(seed in any::<u64>(), groups in 1u32..6, rules in 0u32..40) {
            check_first_match(&FiveTupleSet::synthetic(groups, 3, rules, seed), 300, seed ^ 0x5555)?;
        }
    }
}
