//! Generated clusters in the shapes Kubernetes scale tests use (the sig-scalability
//! "namespaces × pods" load, and network-policy density tests), for the control-plane
//! scale bench (`benches/scale.rs`):
//!
//! - [`Pattern::MatchLabels`]: per namespace, deployments of pods sharing an `app`
//!   label; each policy selects one app by `matchLabels` and admits another app of the
//!   same namespace on one port.
//! - [`Pattern::MatchExpressions`]: the same pods; policies select and admit by
//!   `matchExpressions` (`In` over two apps, `NotIn` a tier, `Exists` a label).
//! - [`Pattern::Multitenant`]: namespaces grouped into tenants; each namespace has a
//!   default deny for both directions, an allow from every namespace of its tenant, and
//!   DNS egress to `kube-system`.
//!
//! Deterministic: the same arguments give the same cluster.

use crate::cluster::{Cluster, Source, Sourced};
use serde_json::{json, Value};

/// Which policy shape a generated cluster has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    MatchLabels,
    MatchExpressions,
    Multitenant,
}

impl Pattern {
    pub fn name(self) -> &'static str {
        match self {
            Pattern::MatchLabels => "matchLabels",
            Pattern::MatchExpressions => "matchExpressions",
            Pattern::Multitenant => "multitenant",
        }
    }
}

/// Pods of one app (a "deployment") in the generated clusters.
pub const PODS_PER_APP: usize = 10;
/// Namespaces of one tenant in [`Pattern::Multitenant`].
pub const NAMESPACES_PER_TENANT: usize = 5;

fn sourced<T: serde::de::DeserializeOwned>(v: Value, doc: usize) -> Sourced<T> {
    Sourced { object: serde_json::from_value(v).expect("generated object"), source: Source { file: "scale.yaml".into(), doc } }
}

/// `namespaces` × `pods_per_namespace` pods (100 per node, a /24 per node) and, for the
/// label patterns, `policies` policies spread over the namespaces (the multitenant
/// pattern always has three per namespace).
pub fn cluster(pattern: Pattern, namespaces: usize, pods_per_namespace: usize, policies: usize) -> Cluster {
    let mut c = Cluster::default();
    for n in 0..namespaces {
        let tier = ["gold", "silver"][n % 2];
        let labels = json!({"tenant": format!("t{}", n / NAMESPACES_PER_TENANT), "tier": tier});
        c.namespaces.push(sourced(json!({"metadata": {"name": format!("ns{n}"), "labels": labels}}), n));
    }
    c.namespaces.push(sourced(json!({"metadata": {"name": "kube-system"}}), namespaces));
    let pods = namespaces * pods_per_namespace;
    let nodes = pods.div_ceil(100).max(1);
    for n in 0..nodes {
        let addrs = json!([{"type": "InternalIP", "address": format!("192.168.{}.{}", n >> 8, n & 255)}]);
        c.nodes.push(sourced(json!({"metadata": {"name": format!("node{n}")}, "status": {"addresses": addrs}}), n));
    }
    for i in 0..pods {
        let (ns, k) = (i / pods_per_namespace, i % pods_per_namespace);
        let node = i / 100;
        let tier = ["web", "api", "db"][k / PODS_PER_APP % 3];
        c.pods.push(sourced(
            json!({
                "metadata": {"name": format!("pod{k}"), "namespace": format!("ns{ns}"),
                    "labels": {"app": format!("a{}", k / PODS_PER_APP), "tier": tier}},
                "spec": {"nodeName": format!("node{node}"),
                         "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
                "status": {"podIPs": [{"ip": format!("10.{}.{}.{}", node >> 8 & 255, node & 255, 2 + i % 100)}]}
            }),
            i,
        ));
    }
    let apps = pods_per_namespace.div_ceil(PODS_PER_APP).max(1);
    let mut doc = 0;
    let mut policy = |ns: usize, name: String, spec: Value| {
        c.policies.push(sourced(
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                   "metadata": {"name": name, "namespace": format!("ns{ns}")}, "spec": spec}),
            doc,
        ));
        doc += 1;
    };
    match pattern {
        Pattern::MatchLabels | Pattern::MatchExpressions => {
            for p in 0..policies {
                let ns = p % namespaces.max(1);
                let (app, peer) = (p / namespaces.max(1) % apps, (p / namespaces.max(1) + 1) % apps);
                let spec = if pattern == Pattern::MatchLabels {
                    json!({"podSelector": {"matchLabels": {"app": format!("a{app}")}},
                           "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": format!("a{peer}")}}}],
                                        "ports": [{"protocol": "TCP", "port": 8080}]}]})
                } else {
                    json!({"podSelector": {"matchExpressions": [
                                {"key": "app", "operator": "In", "values": [format!("a{app}"), format!("a{peer}")]},
                                {"key": "tier", "operator": "NotIn", "values": ["db"]}]},
                           "ingress": [{"from": [{"podSelector": {"matchExpressions": [{"key": "tier", "operator": "Exists"},
                                            {"key": "app", "operator": "NotIn", "values": [format!("a{app}")]}]}}],
                                        "ports": [{"port": "http"}]}]})
                };
                policy(ns, format!("np{p}"), spec);
            }
        }
        Pattern::Multitenant => {
            for ns in 0..namespaces {
                let tenant = format!("t{}", ns / NAMESPACES_PER_TENANT);
                policy(ns, "default-deny".into(), json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}));
                policy(ns, "allow-tenant".into(), json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"tenant": tenant}}}]}],
                    "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"tenant": tenant}}}]}]}));
                policy(ns, "allow-dns".into(), json!({"podSelector": {}, "policyTypes": ["Egress"],
                    "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
                                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]}));
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_clusters_are_valid_and_sized() {
        for (pattern, policies) in [(Pattern::MatchLabels, 40), (Pattern::MatchExpressions, 40), (Pattern::Multitenant, 0)] {
            let c = cluster(pattern, 10, 30, policies);
            crate::validate::validate(&c).unwrap();
            assert_eq!((c.namespaces.len(), c.pods.len(), c.nodes.len()), (11, 300, 3), "{pattern:?}");
            assert_eq!(c.policies.len(), if pattern == Pattern::Multitenant { 30 } else { 40 });
        }
    }
}
