//! CN2 (Contrail) naming and tables: how a NetworkPolicy's rules are named as firewall
//! rules, and the tags / address groups / firewall rules / policy set rendering of
//! `palisade rules`. The compiler names every snapshot rule with these functions, so a
//! rule id printed by the dataplane maps back to a CN2-style name.
//! (Signatures fixed; bodies being written.)

/// Direction of a policy rule or of a pod's isolation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Ingress,
    Egress,
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
    let _ = (policy_namespace, policy_name, direction, rule_idx, peer, peer_idx, port_idx);
    todo!("cn2::rule_name")
}

/// Name of the implicit deny that applies when a pod is isolated for `direction` by
/// the policies of `namespace` and no rule allowed the traffic.
pub fn isolation_rule_name(namespace: &str, direction: Direction) -> String {
    let _ = (namespace, direction);
    todo!("cn2::isolation_rule_name")
}
