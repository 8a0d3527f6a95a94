//! `rte_acl` and palisade's snapshot, built from one 5-tuple rule list
//! (`dataplane::snapshot::five_tuple`), decide every packet of a trace alike: the same
//! verdict and the same deciding rule (userdata `i + 1` ⇔ ingress rule `i`; 0 ⇔ denied by
//! the isolation rule). EAL in this process only (its own test binary), no PCI, no hugepages.

use dataplane::dpdk::acl::{Acl, AclKey, AclRule};
use dataplane::dpdk::Eal;
use dataplane::snapshot::five_tuple::FiveTupleSet;
use dataplane::{Action, Classifier, Reason};
use std::net::IpAddr;

#[test]
fn rte_acl_and_snapshot_agree_on_every_probe() {
    let prefix = format!("palisade-test-acl-{}", std::process::id());
    let eal = Eal::init(&["--no-pci", "--no-huge", "-m", "512", "--file-prefix", &prefix, "--lcores", "0"]).expect("EAL init");
    let set = FiveTupleSet::synthetic(20, 8, 50, 11);
    let rules = AclRule::from_five_tuples(&set);
    let acl = Acl::build(&eal, "acl_equivalence", &rules).expect("rte_acl build");
    let snapshot = set.snapshot(1);
    let deny = set.rules.len() as u32;
    let trace = set.trace(20_000, 5);
    let keys: Vec<AclKey> = trace.iter().map(|&(s, d, p, sp, dp)| AclKey::new(p, s, d, sp, dp)).collect();
    let mut results = vec![0u32; keys.len()];
    for (keys, results) in keys.chunks(64).zip(results.chunks_mut(64)) {
        acl.classify(keys, results);
    }
    let (mut allowed, mut denied) = (0, 0);
    for (probe, &result) in trace.iter().zip(&results) {
        let &(src, dst, proto, _, port) = probe;
        let v = snapshot.classify(IpAddr::V4(src), IpAddr::V4(dst), proto, port);
        assert_eq!(v.egress_rule, dataplane::NO_RULE, "{probe:?}");
        if result == 0 {
            assert_eq!((v.action, v.reason, v.ingress_rule), (Action::Deny, Reason::DeniedByIngress, deny), "{probe:?}");
            denied += 1;
        } else {
            assert_eq!((v.action, v.reason, v.ingress_rule), (Action::Allow, Reason::Allowed, result - 1), "{probe:?}");
            allowed += 1;
        }
    }
    // The trace exercises both outcomes in earnest.
    assert!(allowed > 2_000 && denied > 2_000, "allowed {allowed}, denied {denied}");
}
