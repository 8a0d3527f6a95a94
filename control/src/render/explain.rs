//! `palisade explain`: why one connection is allowed or denied, in words. The verdict
//! and the deciding rules come from the compiled snapshot's `classify` (the workers'
//! lookup); the model supplies the words: which policies isolate each end, what their
//! rules allow, and where the deciding rule came from (`compile::RuleOrigin`).

use super::{Offline, PortArg};
use crate::cn2::Direction;
use crate::compile::RuleOrigin;
use crate::model::{Model, Operator, Peer, Policy, PortRef, PortSpec, Rule, Selector};
use crate::probes::Probe;
use dataplane::{Classifier, Reason, RuleId, NO_RULE};
use std::fmt::Write as _;
use std::net::IpAddr;

/// The explanation of `from` → `to` (each `ns/pod`, `node/NAME` as the matrix labels
/// nodes, or an IP address) for `traffic`; an error if an end is unknown or has no
/// usable address.
pub fn explain(offline: &Offline, from: &str, to: &str, traffic: PortArg) -> Result<String, String> {
    let model = &offline.model;
    let snapshot = &offline.compiled.snapshot;
    let (from, to) = (node_as_address(model, from)?, node_as_address(model, to)?);
    let probe = Probe { fields: Vec::new(), src: from, dst: to, protocol: traffic.protocol, port: traffic.port };
    let r = probe.resolve(model)?;
    let verdict = snapshot.classify(r.src, r.dst, r.proto, r.port);
    let src = End::identify(model, r.src);
    let dst = End::identify(model, r.dst);

    let mut out = String::new();
    let word = if verdict.is_allow() { "ALLOWED" } else { "DENIED" };
    let _ = writeln!(out, "{} → {}, {traffic}: {word}", src.describe(model), dst.describe(model));
    out.push('\n');
    match verdict.reason {
        Reason::NotPoliced => {
            let _ = writeln!(
                out,
                "Neither end is a pod palisade knows, so no NetworkPolicy applies: palisade forwards traffic it does not police."
            );
        }
        Reason::HostOrSelf => {
            let why = match (&src, &dst) {
                (End::Pod(a), End::Pod(b)) if a == b => "a pod can always reach itself".to_string(),
                (End::Pod(p), End::Node(n)) | (End::Node(n), End::Pod(p)) => format!(
                    "{} runs on node {}, and traffic between a pod and its own node is always allowed",
                    model.pod_ref(*p),
                    model.nodes[*n].name
                ),
                _ => "traffic between a pod and itself or its own node is always allowed".to_string(),
            };
            let _ = writeln!(out, "No policy is consulted: {why}.");
        }
        _ => {
            side(&mut out, offline, &src, Direction::Egress, verdict.egress_rule);
            out.push('\n');
            side(&mut out, offline, &dst, Direction::Ingress, verdict.ingress_rule);
        }
    }
    out.push('\n');
    let names: Vec<&str> = verdict.rules().map(|id| snapshot.rule_name(id)).collect();
    let _ = writeln!(
        out,
        "Verdict (compiled snapshot): {}{}",
        if verdict.is_allow() { "allow" } else { "deny" },
        if names.is_empty() { String::new() } else { format!("; deciding rules: {}", names.join(", ")) }
    );
    Ok(out)
}

/// `node/NAME` (unless a namespace `node` holds a pod `NAME`) as the node's first
/// address; anything else unchanged, for `Probe::resolve`.
fn node_as_address(model: &Model, end: &str) -> Result<String, String> {
    let Some(name) = end.strip_prefix("node/") else { return Ok(end.to_string()) };
    if model.pod_id("node", name).is_some() {
        return Ok(end.to_string());
    }
    match model.nodes.iter().find(|n| n.name == name) {
        Some(node) => match node.addrs.first() {
            Some(addr) => Ok(addr.to_string()),
            None => Err(format!("node {name} has no IP address in status.addresses")),
        },
        None => Err(format!("unknown node {name:?} (no Node {name} in the manifests)")),
    }
}

/// What an address turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Pod(usize),
    Node(usize),
    Other(IpAddr),
}

impl End {
    fn identify(model: &Model, addr: IpAddr) -> End {
        if let Some(p) = model.pod_by_addr(addr) {
            return End::Pod(p);
        }
        match model.nodes.iter().position(|n| n.addrs.contains(&addr)) {
            Some(n) => End::Node(n),
            None => End::Other(addr),
        }
    }

    fn describe(&self, model: &Model) -> String {
        match *self {
            End::Pod(p) => {
                let addrs: Vec<String> = model.pods[p].addrs.iter().map(|a| a.to_string()).collect();
                format!("{} ({})", model.pod_ref(p), addrs.join(", "))
            }
            End::Node(n) => {
                let node = &model.nodes[n];
                format!("node {} ({})", node.name, node.addrs.first().map(|a| a.to_string()).unwrap_or_default())
            }
            End::Other(a) => a.to_string(),
        }
    }
}

/// One end's paragraph: its isolation for `d`, and what decided it.
fn side(out: &mut String, offline: &Offline, end: &End, d: Direction, rule: RuleId) {
    let model = &offline.model;
    let role = if d == Direction::Egress { "Source" } else { "Destination" };
    let pod = match *end {
        End::Pod(p) => p,
        other => {
            let _ = writeln!(
                out,
                "{role} {} is not a pod, so no {d} policy applies to it.",
                other.describe(model)
            );
            return;
        }
    };
    let name = model.pod_ref(pod);
    let ns = &model.namespaces[model.pods[pod].namespace].name;
    let isolating = model.isolating_policies(pod, d);
    if isolating.is_empty() {
        let _ = writeln!(
            out,
            "{role} {name}, {d}: not isolated (no NetworkPolicy in namespace {ns} selects it with {} in its policyTypes), so its {d} allows everything.",
            types_word(d)
        );
        return;
    }
    let by: Vec<String> = isolating
        .iter()
        .map(|&i| {
            let p = &model.policies[i];
            format!("{} (selects {})", p.name, selector_words(&p.pod_selector).unwrap_or_else(|| format!("every pod in {ns}")))
        })
        .collect();
    let _ = writeln!(out, "{role} {name}, {d}: isolated by {}.", by.join(" and "));
    // Each side's deciding rule says how that side went: a policy rule allowed it, the
    // isolation rule denied it (the verdict's reason names only the first denying side).
    let origin = offline.compiled.origins.get(rule as usize);
    let rule_name = offline.compiled.snapshot.rule_name(rule);
    if let Some(RuleOrigin::Policy { .. }) = origin {
        let _ = writeln!(out, "  Allowed by {rule_name}: {}.", origin_words(model, origin));
        return;
    }
    // Denied: show what the isolating policies do allow, so the gap is visible.
    for &i in &isolating {
        let p = &model.policies[i];
        let rules = p.rules(d);
        if rules.is_empty() {
            let _ = writeln!(out, "  {} lists {} in policyTypes but has no {d} rules: it allows no {d} at all.", p.name, types_word(d));
        }
        for (ri, r) in rules.iter().enumerate() {
            let _ = writeln!(out, "  {} {d} rule {ri} allows {}.", p.name, rule_words(model, p, d, r));
        }
    }
    let _ = writeln!(
        out,
        "  No {d} rule allows this connection: denied by {}.",
        if rule == NO_RULE { "the default deny".to_string() } else { rule_name.to_string() }
    );
}

/// `Ingress` / `Egress`, as `policyTypes` spells them.
fn types_word(d: Direction) -> &'static str {
    match d {
        Direction::Ingress => "Ingress",
        Direction::Egress => "Egress",
    }
}

/// Where a snapshot rule came from, in words.
fn origin_words(model: &Model, origin: Option<&RuleOrigin>) -> String {
    match origin {
        Some(&RuleOrigin::Policy { policy, direction, rule, peer, port }) => {
            let p = &model.policies[policy];
            let Some(r) = p.rules(direction).get(rule) else { return format!("policy {}", p.name) };
            let field = if direction == Direction::Ingress { "from" } else { "to" };
            let ns = &model.namespaces[p.namespace].name;
            let peer = match peer.and_then(|i| r.peers.get(i).map(|pe| (i, pe))) {
                Some((i, pe)) => format!("{field}[{i}]: {}", peer_words(ns, pe)),
                None => format!("{field}: any peer"),
            };
            let port = match port.and_then(|i| r.ports.get(i).map(|ps| (i, ps))) {
                Some((i, ps)) => format!("ports[{i}]: {}", port_words(ps)),
                None => "any port and protocol".to_string(),
            };
            format!("{} {direction} rule {rule}, {peer}, {port}", p.name)
        }
        Some(&RuleOrigin::Isolation { namespace, direction }) => {
            format!("the default deny of pods isolated for {direction} in {}", model.namespaces[namespace].name)
        }
        None => "an unknown rule".to_string(),
    }
}

/// `TCP port 80 from pods in dev with app=client1-dev; addresses in 10.0.0.0/8`.
fn rule_words(model: &Model, policy: &Policy, d: Direction, rule: &Rule) -> String {
    let ns = &model.namespaces[policy.namespace].name;
    let ports = if rule.ports.is_empty() {
        "any port and protocol".to_string()
    } else {
        rule.ports.iter().map(port_words).collect::<Vec<_>>().join(", ")
    };
    let peers = if rule.peers.is_empty() {
        "anywhere".to_string()
    } else {
        rule.peers.iter().map(|p| peer_words(ns, p)).collect::<Vec<_>>().join("; ")
    };
    let dir = if d == Direction::Ingress { "from" } else { "to" };
    format!("{ports} {dir} {peers}")
}

fn peer_words(policy_ns: &str, peer: &Peer) -> String {
    match peer {
        Peer::Pods(sel) => match selector_words(sel) {
            Some(s) => format!("pods in {policy_ns} with {s}"),
            None => format!("every pod in {policy_ns}"),
        },
        Peer::Namespaces(sel) => match selector_words(sel) {
            Some(s) => format!("every pod in namespaces with {s}"),
            None => "every pod in every namespace".to_string(),
        },
        Peer::NamespacesAndPods { namespaces, pods } => {
            let pods = selector_words(pods).map(|s| format!("pods with {s}")).unwrap_or_else(|| "every pod".into());
            let nss = selector_words(namespaces)
                .map(|s| format!("in namespaces with {s}"))
                .unwrap_or_else(|| "in every namespace".into());
            format!("{pods} {nss}")
        }
        Peer::IpBlock(b) => {
            if b.except.is_empty() {
                format!("addresses in {}", b.cidr_text)
            } else {
                let except: Vec<&str> = b.except.iter().map(|(t, _)| t.as_str()).collect();
                format!("addresses in {} except {}", b.cidr_text, except.join(", "))
            }
        }
    }
}

fn port_words(p: &PortSpec) -> String {
    let proto = p.protocol.as_str();
    match &p.port {
        PortRef::All => format!("any {proto} port"),
        PortRef::Range(a, b) if a == b => format!("{proto} port {a}"),
        PortRef::Range(a, b) => format!("{proto} ports {a}-{b}"),
        PortRef::Named(name) => format!("{proto} port named {name}"),
    }
}

/// `app=web and tier in (a, b)`; `None` for the empty selector (matches everything).
fn selector_words(sel: &Selector) -> Option<String> {
    if sel.is_empty() {
        return None;
    }
    let mut terms: Vec<String> = sel.match_labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    for r in &sel.requirements {
        terms.push(match r.operator {
            Operator::In => format!("{} in ({})", r.key, r.values.join(", ")),
            Operator::NotIn => format!("{} not in ({})", r.key, r.values.join(", ")),
            Operator::Exists => format!("a {} label", r.key),
            Operator::DoesNotExist => format!("no {} label", r.key),
        });
    }
    Some(terms.join(" and "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn lab() -> Offline {
        Offline::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policies")).unwrap()
    }

    fn tcp80() -> PortArg {
        "tcp/80".parse().unwrap()
    }

    #[test]
    fn denied_by_ingress_isolation() {
        assert_eq!(
            explain(&lab(), "dev/client2-dev", "dev/webserver-dev", tcp80()).unwrap(),
            "dev/client2-dev (10.47.255.232) → dev/webserver-dev (10.47.255.233), TCP port 80: DENIED\n\
             \n\
             Source dev/client2-dev, egress: not isolated (no NetworkPolicy in namespace dev selects it with Egress in its policyTypes), so its egress allows everything.\n\
             \n\
             Destination dev/webserver-dev, ingress: isolated by policy1 (selects app=webserver-dev).\n\
             \x20 policy1 ingress rule 0 allows TCP port 80 from addresses in 10.169.25.20/32; every pod in namespaces with project=jtac; pods in dev with app=client1-dev.\n\
             \x20 No ingress rule allows this connection: denied by dev-ingress-default-deny.\n\
             \n\
             Verdict (compiled snapshot): deny; deciding rules: dev-ingress-default-deny\n"
        );
    }

    #[test]
    fn allowed_by_a_named_rule_on_both_sides() {
        assert_eq!(
            explain(&lab(), "dev/webserver-dev", "10.47.255.234", tcp80()).unwrap(),
            "dev/webserver-dev (10.47.255.233) → dev/dbserver-dev (10.47.255.234), TCP port 80: ALLOWED\n\
             \n\
             Source dev/webserver-dev, egress: isolated by policy1 (selects app=webserver-dev).\n\
             \x20 Allowed by dev-egress-policy1-podSelector-0-0: policy1 egress rule 0, to[0]: pods in dev with app=dbserver-dev, ports[0]: TCP port 80.\n\
             \n\
             Destination dev/dbserver-dev, ingress: isolated by policy2 (selects app=dbserver-dev).\n\
             \x20 Allowed by dev-ingress-policy2-0-podSelector-0-0: policy2 ingress rule 0, from[0]: pods in dev with app=webserver-dev, ports[0]: TCP port 80.\n\
             \n\
             Verdict (compiled snapshot): allow; deciding rules: dev-egress-policy1-podSelector-0-0, dev-ingress-policy2-0-podSelector-0-0\n"
        );
    }

    /// Both sides deny: each says so with its own isolation rule.
    #[test]
    fn both_sides_denied() {
        assert_eq!(
            explain(&lab(), "dev/webserver-dev", "dev/dbserver-dev", "udp/80".parse().unwrap()).unwrap(),
            "dev/webserver-dev (10.47.255.233) → dev/dbserver-dev (10.47.255.234), UDP port 80: DENIED\n\
             \n\
             Source dev/webserver-dev, egress: isolated by policy1 (selects app=webserver-dev).\n\
             \x20 policy1 egress rule 0 allows TCP port 80 to pods in dev with app=dbserver-dev.\n\
             \x20 No egress rule allows this connection: denied by dev-egress-default-deny.\n\
             \n\
             Destination dev/dbserver-dev, ingress: isolated by policy2 (selects app=dbserver-dev).\n\
             \x20 policy2 ingress rule 0 allows TCP port 80 from pods in dev with app=webserver-dev.\n\
             \x20 No ingress rule allows this connection: denied by dev-ingress-default-deny.\n\
             \n\
             Verdict (compiled snapshot): deny; deciding rules: dev-egress-default-deny, dev-ingress-default-deny\n"
        );
    }

    #[test]
    fn egress_with_no_rules_and_other_reasons() {
        let o = lab();
        let text = explain(&o, "dev/dbserver-dev", "qa/client-qa", "udp/53".parse().unwrap()).unwrap();
        assert!(text.starts_with("dev/dbserver-dev (10.47.255.234) → qa/client-qa (10.47.255.236), UDP port 53: DENIED\n"), "{text}");
        assert!(text.contains("  policy2 lists Egress in policyTypes but has no egress rules: it allows no egress at all.\n"), "{text}");
        assert!(text.ends_with("Verdict (compiled snapshot): deny; deciding rules: dev-egress-default-deny\n"), "{text}");
        let own_node = explain(&o, "node/cent333", "dev/dbserver-dev", "icmp".parse().unwrap()).unwrap();
        assert!(own_node.starts_with("node cent333 (10.169.25.21) → dev/dbserver-dev (10.47.255.234), ICMP: ALLOWED\n"), "{own_node}");
        assert!(own_node.contains("No policy is consulted: dev/dbserver-dev runs on node cent333, and traffic between a pod and its own node is always allowed.\n"), "{own_node}");
        let outside = explain(&o, "192.0.2.1", "198.51.100.1", tcp80()).unwrap();
        assert!(outside.contains("Neither end is a pod palisade knows"), "{outside}");
        assert!(outside.ends_with("Verdict (compiled snapshot): allow\n"), "{outside}");
        assert_eq!(
            explain(&o, "dev/nope", "dev/webserver-dev", tcp80()).unwrap_err(),
            "unknown pod \"dev/nope\" (no Pod nope in namespace dev in the manifests)"
        );
        assert_eq!(
            explain(&o, "node/cent999", "dev/webserver-dev", tcp80()).unwrap_err(),
            "unknown node \"cent999\" (no Node cent999 in the manifests)"
        );
    }
}
