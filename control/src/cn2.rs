//! CN2 (Contrail) naming and tables: how a NetworkPolicy's rules are named as firewall
//! rules, and the tags / address groups / firewall rules / policy set rendering of
//! `palisade rules`. The compiler names every snapshot rule with these functions, so a
//! rule id printed by the dataplane maps back to a CN2-style name.
//!
//! The naming reproduces Juniper's "Kubernetes Network Policies" page (CN2) row for row:
//!
//! ```text
//! default-ingress-test-network-policy-0-ipBlock-0-172.17.1.0/24-0        (except: deny)
//! default-ingress-test-network-policy-0-ipBlock-0-cidr-172.17.0.0/16-0
//! default-ingress-test-network-policy-0-namespaceSelector-1-0
//! default-ingress-test-network-policy-0-podSelector-2-0
//! default-egress-test-network-policy-ipBlock-0-cidr-10.0.0.0/24-0
//! ```
//!
//! i.e. `{ns}-{direction}-{policy}-{rule}-{peer}-{peer index}[-cidr-{cidr} | -{except}]-{port index}`,
//! where the document's egress name carries no rule index. We keep that for egress
//! rule 0 (so the document's row is reproduced exactly) and insert the index for egress
//! rules 1, 2, … so that names stay unique. A peer with both selectors is
//! `namespaceSelector-podSelector-{i}`; a rule whose `from`/`to` is missing or empty
//! (any peer) is `any-0`. The implicit deny of an isolated pod is
//! `{ns}-{direction}-default-deny` (see [`isolation_rule_name`]).

/// Direction of a policy rule or of a pod's isolation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    /// `ingress` / `egress`, as CN2 writes it in names and in the Direction column.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which kind of peer a rule entry comes from (one entry of `from`/`to`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerKind<'a> {
    /// `from`/`to` missing or empty: any peer.
    Any,
    PodSelector,
    NamespaceSelector,
    /// `namespaceSelector` and `podSelector` in one peer.
    NamespaceAndPodSelector,
    /// The `cidr` of an `ipBlock` (as written in the manifest).
    IpBlockCidr(&'a str),
    /// One `except` entry of an `ipBlock` (as written).
    IpBlockExcept(&'a str),
}

/// The CN2-style firewall-rule name for one (rule, peer, port) of a policy, e.g.
/// `default-ingress-test-network-policy-0-ipBlock-0-cidr-172.17.0.0/16-0`.
/// `peer_idx` is the index in `from`/`to`; `port_idx` the index in `ports` (0 when
/// `ports` is empty).
pub fn rule_name(
    policy_namespace: &str,
    policy_name: &str,
    direction: Direction,
    rule_idx: usize,
    peer: PeerKind<'_>,
    peer_idx: usize,
    port_idx: usize,
) -> String {
    let mut name = format!("{policy_namespace}-{direction}-{policy_name}-");
    // The document's egress name has no rule index; keep it that way for rule 0 only.
    if direction == Direction::Ingress || rule_idx > 0 {
        name.push_str(&format!("{rule_idx}-"));
    }
    let peer_part = match peer {
        PeerKind::Any => format!("any-{peer_idx}"),
        PeerKind::PodSelector => format!("podSelector-{peer_idx}"),
        PeerKind::NamespaceSelector => format!("namespaceSelector-{peer_idx}"),
        PeerKind::NamespaceAndPodSelector => format!("namespaceSelector-podSelector-{peer_idx}"),
        PeerKind::IpBlockCidr(cidr) => format!("ipBlock-{peer_idx}-cidr-{cidr}"),
        PeerKind::IpBlockExcept(except) => format!("ipBlock-{peer_idx}-{except}"),
    };
    name.push_str(&peer_part);
    name.push_str(&format!("-{port_idx}"));
    name
}

/// Name of the implicit deny that applies when a pod is isolated for `direction` by
/// the policies of `namespace` and no rule allowed the traffic:
/// `{namespace}-{ingress|egress}-default-deny`, e.g. `dev-ingress-default-deny`.
pub fn isolation_rule_name(namespace: &str, direction: Direction) -> String {
    format!("{namespace}-{direction}-default-deny")
}

#[cfg(test)]
mod naming_tests {
    use super::*;

    #[test]
    fn names_match_the_cn2_document() {
        let cases: &[(Direction, usize, PeerKind, usize, usize, &str)] = &[
            (Direction::Ingress, 0, PeerKind::IpBlockExcept("172.17.1.0/24"), 0, 0,
             "default-ingress-test-network-policy-0-ipBlock-0-172.17.1.0/24-0"),
            (Direction::Ingress, 0, PeerKind::IpBlockCidr("172.17.0.0/16"), 0, 0,
             "default-ingress-test-network-policy-0-ipBlock-0-cidr-172.17.0.0/16-0"),
            (Direction::Ingress, 0, PeerKind::NamespaceSelector, 1, 0,
             "default-ingress-test-network-policy-0-namespaceSelector-1-0"),
            (Direction::Ingress, 0, PeerKind::PodSelector, 2, 0,
             "default-ingress-test-network-policy-0-podSelector-2-0"),
            (Direction::Egress, 0, PeerKind::IpBlockCidr("10.0.0.0/24"), 0, 0,
             "default-egress-test-network-policy-ipBlock-0-cidr-10.0.0.0/24-0"),
            (Direction::Egress, 2, PeerKind::PodSelector, 1, 3,
             "default-egress-test-network-policy-2-podSelector-1-3"),
            (Direction::Ingress, 1, PeerKind::NamespaceAndPodSelector, 0, 0,
             "default-ingress-test-network-policy-1-namespaceSelector-podSelector-0-0"),
            (Direction::Ingress, 0, PeerKind::Any, 0, 1,
             "default-ingress-test-network-policy-0-any-0-1"),
        ];
        for (dir, rule, peer, peer_idx, port_idx, want) in cases {
            assert_eq!(
                rule_name("default", "test-network-policy", *dir, *rule, *peer, *peer_idx, *port_idx),
                *want
            );
        }
    }

    #[test]
    fn isolation_names() {
        assert_eq!(isolation_rule_name("dev", Direction::Ingress), "dev-ingress-default-deny");
        assert_eq!(isolation_rule_name("dev", Direction::Egress), "dev-egress-default-deny");
    }
}
