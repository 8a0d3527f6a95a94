//! The contract between the compiled policy snapshot and the packet path: what a
//! classification returns. Plain `Copy` data, no allocation, so the pipeline can
//! store it in a flow entry and the offline `verdicts` command can print it.

use std::net::IpAddr;

/// Index of a rule in a snapshot's rule table (`Snapshot::rule_name`).
pub type RuleId = u32;

/// "No rule": the side was not isolated, so no rule took part in the decision.
pub const NO_RULE: RuleId = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Allow,
    Deny,
}

/// Why a verdict came out as it did. Ordered roughly by how the lookup decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Neither address belongs to a known pod endpoint: not ours to police.
    NotPoliced,
    /// Traffic between a pod and itself, or between a pod and its own node.
    HostOrSelf,
    /// Every isolated side had a rule that allowed it (or no side was isolated).
    Allowed,
    /// The source pod is isolated for egress and no egress rule allowed the traffic.
    DeniedByEgress,
    /// The destination pod is isolated for ingress and no ingress rule allowed it.
    DeniedByIngress,
}

/// The outcome of classifying the first packet of a connection.
///
/// `egress_rule` / `ingress_rule` name the deciding rule of each side: the first rule
/// that allowed it, or the side's isolation (default-deny) rule when nothing did, or
/// `NO_RULE` when that side is not isolated (or is not a pod).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Verdict {
    pub action: Action,
    pub reason: Reason,
    pub egress_rule: RuleId,
    pub ingress_rule: RuleId,
}

impl Verdict {
    pub const NOT_POLICED: Verdict = Verdict {
        action: Action::Allow,
        reason: Reason::NotPoliced,
        egress_rule: NO_RULE,
        ingress_rule: NO_RULE,
    };

    #[inline]
    pub fn is_allow(&self) -> bool {
        self.action == Action::Allow
    }

    /// The deciding rules in order (egress side first), without `NO_RULE`.
    pub fn rules(&self) -> impl Iterator<Item = RuleId> {
        [self.egress_rule, self.ingress_rule].into_iter().filter(|r| *r != NO_RULE)
    }
}

/// One connection to classify, as [`Classifier::classify_burst`] takes them: the
/// arguments of [`Classifier::classify`] in one `Copy` record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Probe {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number.
    pub proto: u8,
    /// Destination port, 0 for protocols without ports.
    pub dst_port: u16,
}

/// What the packet path needs from a policy snapshot. `Snapshot` implements it; tests
/// of the flow table and pipeline may use a simpler one.
pub trait Classifier {
    /// The snapshot generation; flows remember it and are re-decided when it changes.
    fn generation(&self) -> u64;
    /// Decide a new connection. `proto` is the IP protocol number (6 TCP, 17 UDP,
    /// 132 SCTP, 1 ICMP, 58 ICMPv6, ...); `dst_port` is 0 for protocols without ports.
    /// Must not allocate.
    fn classify(&self, src: IpAddr, dst: IpAddr, proto: u8, dst_port: u16) -> Verdict;
    /// Decide many new connections at once: `out[i] = classify(probes[i])` for every
    /// probe, the same verdicts `classify` gives. An implementation may overlap the
    /// lookups' cache misses (the snapshot pipelines them in chunks); this default just
    /// loops. Must not allocate. Panics if `out` is shorter than `probes`.
    #[inline]
    fn classify_burst(&self, probes: &[Probe], out: &mut [Verdict]) {
        assert!(out.len() >= probes.len(), "classify_burst: {} verdict slots for {} probes", out.len(), probes.len());
        for (p, v) in probes.iter().zip(out) {
            *v = self.classify(p.src, p.dst, p.proto, p.dst_port);
        }
    }
}
