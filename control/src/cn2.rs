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
//!
//! Names are unique within a policy, which is where CN2 scopes them (one firewall
//! policy per NetworkPolicy). Across policies the document's scheme can repeat a name
//! (egress rule 1 of `p` and egress rule 0 of `p-1` are both `…-egress-p-1-…`), so
//! the snapshot identifies rules by id and uses these names only to show them.

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

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

// ---- the tables of `palisade rules` ----

/// One CN2 tag: a `key=value` label that selectors refer to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// A named prefix an `ipBlock` rule points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressGroup {
    pub name: String,
    pub prefix: String,
}

/// One firewall rule, as CN2 lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirewallRule {
    pub name: String,
    /// `pass` or `deny` (the deny rules are `ipBlock.except` prefixes).
    pub action: &'static str,
    /// `tcp:6379`, `udp:53-60`, `tcp:http` (named port), `tcp:any`, or `any`.
    pub service: String,
    /// The pods the policy selects, as tags: `role=db && namespace=default`.
    pub endpoint1: String,
    pub direction: Direction,
    /// The peer: tags, `Address Group: <prefix>`, or `any`.
    pub endpoint2: String,
}

/// A policy's firewall policy: its name and its rules in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirewallPolicy {
    pub name: String,
    pub rules: Vec<String>,
}

/// The implicit deny for pods isolated in one direction within a namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsolationRule {
    pub name: String,
    pub direction: Direction,
    /// The isolated pods: each isolating policy's endpoint1, joined with ` || `.
    pub endpoint1: String,
}

/// Everything `palisade rules` prints, in the CN2 document's order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cn2Tables {
    pub tags: Vec<Tag>,
    pub address_groups: Vec<AddressGroup>,
    pub rules: Vec<FirewallRule>,
    pub policies: Vec<FirewallPolicy>,
    /// Not in the CN2 document's tables: the default deny of isolated pods.
    pub isolation: Vec<IsolationRule>,
}

/// Translate every NetworkPolicy of `cluster` (in load order) the way CN2 does.
/// Rules of a direction the policy does not list in `policyTypes` are left out: they
/// have no effect (with `policyTypes` missing, Ingress always applies and Egress when
/// `egress` has rules).
pub fn tables(cluster: &crate::cluster::Cluster) -> Cn2Tables {
    let mut t = Cn2Tables::default();
    for sourced in &cluster.policies {
        translate_policy(&mut t, &sourced.object);
    }
    t
}

/// The directions a policy isolates its pods for (`policyTypes`, defaulted).
pub fn policy_directions(spec: &NetworkPolicySpec) -> Vec<Direction> {
    match &spec.policy_types {
        Some(types) => [Direction::Ingress, Direction::Egress]
            .into_iter()
            .filter(|d| types.iter().any(|t| t == if *d == Direction::Ingress { "Ingress" } else { "Egress" }))
            .collect(),
        None if spec.egress.as_ref().is_some_and(|e| !e.is_empty()) => {
            vec![Direction::Ingress, Direction::Egress]
        }
        None => vec![Direction::Ingress],
    }
}

fn translate_policy(t: &mut Cn2Tables, policy: &NetworkPolicy) {
    let ns = policy.metadata.namespace.as_deref().unwrap_or("default");
    let name = policy.metadata.name.as_deref().unwrap_or_default();
    let empty = NetworkPolicySpec::default();
    let spec = policy.spec.as_ref().unwrap_or(&empty);
    let selector = spec.pod_selector.clone().unwrap_or_default();
    let mut endpoint1 = selector_terms(&selector, &mut t.tags);
    endpoint1.push(tag_term("namespace", ns, &mut t.tags));
    let endpoint1 = endpoint1.join(" && ");
    let mut rule_names = Vec::new();
    let directions = policy_directions(spec);
    for direction in directions.iter().copied() {
        let mut isolation_added = false;
        let iso_name = isolation_rule_name(ns, direction);
        if let Some(iso) = t.isolation.iter_mut().find(|r| r.name == iso_name) {
            if !iso.endpoint1.split(" || ").any(|e| e == endpoint1) {
                iso.endpoint1.push_str(" || ");
                iso.endpoint1.push_str(&endpoint1);
            }
            isolation_added = true;
        }
        if !isolation_added {
            t.isolation.push(IsolationRule { name: iso_name, direction, endpoint1: endpoint1.clone() });
        }
        // Address groups are numbered per (direction, cidr/except) within a policy.
        let mut group_counts = [0usize; 2];
        let rules: Vec<(&[NetworkPolicyPeer], &[NetworkPolicyPort])> = match direction {
            Direction::Ingress => spec
                .ingress
                .iter()
                .flatten()
                .map(|r| (r.from.as_deref().unwrap_or_default(), r.ports.as_deref().unwrap_or_default()))
                .collect(),
            Direction::Egress => spec
                .egress
                .iter()
                .flatten()
                .map(|r| (r.to.as_deref().unwrap_or_default(), r.ports.as_deref().unwrap_or_default()))
                .collect(),
        };
        for (rule_idx, (peers, ports)) in rules.into_iter().enumerate() {
            let services: Vec<String> = if ports.is_empty() {
                vec!["any".to_string()]
            } else {
                ports.iter().map(service).collect()
            };
            let mut row = |peer: PeerKind<'_>, peer_idx: usize, action: &'static str, endpoint2: &str| {
                for (port_idx, service) in services.iter().enumerate() {
                    let rule = rule_name(ns, name, direction, rule_idx, peer, peer_idx, port_idx);
                    rule_names.push(rule.clone());
                    t.rules.push(FirewallRule {
                        name: rule,
                        action,
                        service: service.clone(),
                        endpoint1: endpoint1.clone(),
                        direction,
                        endpoint2: endpoint2.to_string(),
                    });
                }
            };
            if peers.is_empty() {
                row(PeerKind::Any, 0, "pass", "any");
            }
            for (peer_idx, peer) in peers.iter().enumerate() {
                if let Some(block) = &peer.ip_block {
                    for except in block.except.iter().flatten() {
                        let group = group_name(name, direction, true, &mut group_counts[1]);
                        t.address_groups.push(AddressGroup { name: group, prefix: except.clone() });
                        row(PeerKind::IpBlockExcept(except), peer_idx, "deny", &format!("Address Group: {except}"));
                    }
                    let group = group_name(name, direction, false, &mut group_counts[0]);
                    t.address_groups.push(AddressGroup { name: group, prefix: block.cidr.clone() });
                    let endpoint2 = format!("Address Group: {}", block.cidr);
                    row(PeerKind::IpBlockCidr(&block.cidr), peer_idx, "pass", &endpoint2);
                    continue;
                }
                let (kind, endpoint2) = match (&peer.namespace_selector, &peer.pod_selector) {
                    (Some(nss), Some(pods)) => {
                        let mut terms = selector_terms(nss, &mut t.tags);
                        terms.extend(selector_terms(pods, &mut t.tags));
                        (PeerKind::NamespaceAndPodSelector, terms)
                    }
                    (Some(nss), None) => (PeerKind::NamespaceSelector, selector_terms(nss, &mut t.tags)),
                    (None, Some(pods)) => {
                        let mut terms = vec![tag_term("namespace", ns, &mut t.tags)];
                        terms.extend(selector_terms(pods, &mut t.tags));
                        (PeerKind::PodSelector, terms)
                    }
                    (None, None) => (PeerKind::Any, Vec::new()),
                };
                let endpoint2 = if endpoint2.is_empty() { "any".to_string() } else { endpoint2.join(" && ") };
                row(kind, peer_idx, "pass", &endpoint2);
            }
        }
    }
    t.policies.push(FirewallPolicy { name: format!("{ns}-{name}"), rules: rule_names });
}

/// Address-group names as the CN2 document writes them: `{policy}` for an ingress
/// cidr, `{policy}-except` for an ingress except, `{policy}-egress` (and
/// `{policy}-egress-except`) for egress; the second and later of a kind get `-1`, `-2`…
fn group_name(policy: &str, direction: Direction, except: bool, count: &mut usize) -> String {
    let mut name = policy.to_string();
    if direction == Direction::Egress {
        name.push_str("-egress");
    }
    if except {
        name.push_str("-except");
    }
    if *count > 0 {
        name.push_str(&format!("-{count}"));
    }
    *count += 1;
    name
}

/// `key=value`, recording the tag.
fn tag_term(key: &str, value: &str, tags: &mut Vec<Tag>) -> String {
    if !tags.iter().any(|t| t.key == key && t.value == value) {
        tags.push(Tag { key: key.to_string(), value: value.to_string() });
    }
    format!("{key}={value}")
}

/// A selector as tag terms: `k=v` per matchLabels entry, then `k in (a, b)`,
/// `k notin (a)`, `k` (Exists), `!k` (DoesNotExist) per expression, in kubectl's
/// selector syntax. `In` values become tags too.
fn selector_terms(selector: &LabelSelector, tags: &mut Vec<Tag>) -> Vec<String> {
    let mut terms: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| tag_term(k, v, tags))
        .collect();
    for req in selector.match_expressions.iter().flatten() {
        let values = req.values.as_deref().unwrap_or_default();
        terms.push(match req.operator.as_str() {
            "In" if values.len() == 1 => tag_term(&req.key, &values[0], tags),
            "In" => {
                for v in values {
                    tag_term(&req.key, v, tags);
                }
                format!("{} in ({})", req.key, values.join(", "))
            }
            "NotIn" => format!("{} notin ({})", req.key, values.join(", ")),
            "Exists" => req.key.clone(),
            _ => format!("!{}", req.key),
        });
    }
    terms
}

/// `tcp:6379`, `tcp:8000-8080`, `tcp:http`, `udp:any`.
fn service(port: &NetworkPolicyPort) -> String {
    let protocol = port.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
    match (&port.port, port.end_port) {
        (Some(IntOrString::Int(p)), Some(end)) if end != *p => format!("{protocol}:{p}-{end}"),
        (Some(IntOrString::Int(p)), _) => format!("{protocol}:{p}"),
        (Some(IntOrString::String(name)), _) => format!("{protocol}:{name}"),
        (None, _) => format!("{protocol}:any"),
    }
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
