//! Synthetic clusters of a chosen size with a realistic mix, for benches and load
//! tests: namespaces owned by teams, apps with tiers and versions, pods packed per node
//! in /24s (some dual-stack, with named ports), and per namespace a default deny,
//! app-to-app allows (label, `matchExpressions`, named and numeric ports, ranges),
//! namespace-selector allows, `ipBlock`s with `except`, and egress rules with DNS.

use crate::cluster::{Cluster, Source, Sourced};
use serde_json::{json, Value};

const TIERS: [&str; 4] = ["web", "api", "db", "cache"];

fn obj<T: serde::de::DeserializeOwned>(v: Value, doc: usize) -> Sourced<T> {
    Sourced { object: serde_json::from_value(v).expect("synthetic object"), source: Source { file: "synthetic.yaml".into(), doc } }
}

/// A tiny deterministic xorshift generator for synthetic clusters and tests.
pub struct Rng(pub u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform-ish in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    /// One of `items` (which must not be empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Deterministic cluster with `pods` pods and `policies` policies (`seed` varies labels).
pub fn cluster(pods: usize, policies: usize, seed: u64) -> Cluster {
    let mut rng = Rng::new(seed);
    let mut next = move |n: usize| rng.below(n);
    let namespaces = (pods / 250).max(4);
    let nodes = (pods / 100).max(1);
    let apps_per_ns = 10;
    let mut c = Cluster::default();
    for n in 0..namespaces {
        let env = ["prod", "staging", "dev"][n % 3];
        c.namespaces.push(obj(json!({"metadata": {"name": format!("ns{n}"), "labels": {"team": format!("t{}", n % 20), "env": env}}}), n));
    }
    c.namespaces.push(obj(json!({"metadata": {"name": "kube-system"}}), namespaces));
    for n in 0..nodes {
        let addrs = json!([{"type": "InternalIP", "address": format!("192.168.{}.{}", n >> 8, n & 255)}]);
        c.nodes.push(obj(json!({"metadata": {"name": format!("node{n}")}, "status": {"addresses": addrs}}), n));
    }
    for i in 0..pods {
        let ns = next(namespaces);
        let app = next(apps_per_ns);
        let tier = TIERS[app % 4];
        let node = i % nodes;
        let slot = 2 + i / nodes;
        let v4 = format!("10.{}.{}.{}", node >> 8 & 255, node & 255, slot & 255);
        let mut ips = vec![json!({"ip": v4})];
        if i % 10 == 0 {
            ips.push(json!({"ip": format!("fd00:{:x}::{:x}", node, slot)}));
        }
        let ports = json!([{"name": "http", "containerPort": 8080 + (app % 2) as i32}, {"name": "metrics", "containerPort": 9090}]);
        c.pods.push(obj(
            json!({
                "metadata": {"name": format!("pod{i}"), "namespace": format!("ns{ns}"),
                    "labels": {"app": format!("a{app}"), "tier": tier, "version": format!("v{}", next(3))}},
                "spec": {"nodeName": format!("node{node}"), "containers": [{"name": "c", "ports": ports}]},
                "status": {"podIPs": ips}
            }),
            i,
        ));
    }
    for p in 0..policies {
        let ns = next(namespaces);
        let app = next(apps_per_ns);
        let peer_app = next(apps_per_ns);
        let name = format!("np{p}");
        let spec = match p % 6 {
            0 => json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
            1 => json!({
                "podSelector": {"matchLabels": {"app": format!("a{app}")}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": format!("a{peer_app}")}}}],
                             "ports": [{"port": "http"}, {"protocol": "TCP", "port": 9090}]}]
            }),
            2 => json!({
                "podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "api"]}]},
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": format!("t{}", next(20))}}},
                                      {"namespaceSelector": {"matchLabels": {"env": "prod"}},
                                       "podSelector": {"matchLabels": {"tier": "web"}}}],
                             "ports": [{"port": 8000, "endPort": 8100}]}]
            }),
            3 => json!({
                "podSelector": {"matchLabels": {"app": format!("a{app}")}},
                "ingress": [{"from": [{"ipBlock": {"cidr": format!("172.{}.0.0/16", 16 + peer_app),
                                                   "except": [format!("172.{}.{}.0/24", 16 + peer_app, next(256))]}}],
                             "ports": [{"port": 443}]}]
            }),
            4 => json!({
                "podSelector": {"matchLabels": {"app": format!("a{app}")}},
                "policyTypes": ["Egress"],
                "egress": [{"to": [{"podSelector": {"matchLabels": {"app": format!("a{peer_app}")}}}], "ports": [{"port": "http"}]},
                           {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
                            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
                           {"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.255.0.0/16"]}}], "ports": [{"port": 5432}]}]
            }),
            _ => json!({
                "podSelector": {"matchLabels": {"tier": TIERS[app % 4]},
                                "matchExpressions": [{"key": "version", "operator": "NotIn", "values": ["v0"]}]},
                "ingress": [{"from": [{"podSelector": {}}]}, {"ports": [{"protocol": "UDP"}]}]
            }),
        };
        c.policies.push(obj(
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                   "metadata": {"name": name, "namespace": format!("ns{ns}")}, "spec": spec}),
            p,
        ));
    }
    c
}
