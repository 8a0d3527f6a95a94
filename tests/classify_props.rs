//! Property: the compiled snapshot's `classify` agrees with a plain, obviously correct
//! evaluation of Kubernetes NetworkPolicy written here, over random clusters, policies
//! and probes: same action, same reason and the same deciding rule names.
//!
//! The random world is generated from a seed (a tiny xorshift), turned into
//! k8s-openapi objects for the real path (model → compile → classify), while the
//! reference below reads the generator's own plain structs and walks every policy, rule,
//! peer and port in order for every probe.

use control::cluster::{Cluster, Source, Sourced};
use control::compile::synthetic::Rng;
use control::cn2::{self, Direction, PeerKind};
use dataplane::{Classifier, Reason};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::IpAddr;

type Labels = BTreeMap<String, String>;

#[derive(Clone, Debug)]
struct Expr {
    key: String,
    op: &'static str,
    values: Vec<String>,
}

#[derive(Clone, Debug)]
struct Sel {
    labels: Labels,
    exprs: Vec<Expr>,
}

#[derive(Clone, Debug)]
enum PeerDef {
    Pods(Sel),
    Namespaces(Sel),
    Both(Sel, Sel),
    Block(&'static str, Vec<&'static str>),
}

#[derive(Clone, Debug)]
enum PortNum {
    None,
    Num(u16, Option<u16>),
    Named(&'static str),
}

#[derive(Clone, Debug)]
struct PortDef {
    protocol: Option<&'static str>,
    port: PortNum,
}

#[derive(Clone, Debug)]
struct RuleDef {
    /// None: field missing; Some(empty): `[]`.
    peers: Option<Vec<PeerDef>>,
    ports: Option<Vec<PortDef>>,
}

#[derive(Clone, Debug)]
struct PolicyDef {
    ns: usize,
    name: String,
    selector: Sel,
    types: Option<Vec<&'static str>>,
    ingress: Option<Vec<RuleDef>>,
    egress: Option<Vec<RuleDef>>,
}

#[derive(Clone, Debug)]
struct PodDef {
    ns: usize,
    name: String,
    labels: Labels,
    addrs: Vec<IpAddr>,
    host_network: bool,
    node: Option<usize>,
    /// (name, protocol, port)
    ports: Vec<(&'static str, &'static str, u16)>,
}

struct World {
    namespaces: Vec<(String, Labels)>,
    nodes: Vec<Vec<IpAddr>>,
    pods: Vec<PodDef>,
    policies: Vec<PolicyDef>,
}

const KEYS: [&str; 3] = ["app", "tier", "team"];
const VALUES: [&str; 3] = ["x", "y", "z"];
const CIDRS: [&str; 6] = ["10.0.0.0/24", "10.0.0.0/28", "10.0.0.17/29", "0.0.0.0/0", "fd00::/64", "::/0"];
const EXCEPTS: [&str; 4] = ["10.0.0.0/30", "10.0.0.8/29", "fd00::/124", "10.0.0.16/28"];
const PORT_NAMES: [&str; 3] = ["http", "dns", "alt"];
const PROTOCOLS: [&str; 3] = ["TCP", "UDP", "SCTP"];

fn labels(rng: &mut Rng, max: usize) -> Labels {
    let mut l = Labels::new();
    for _ in 0..rng.below(max + 1) {
        l.insert(rng.pick(&KEYS).to_string(), rng.pick(&VALUES).to_string());
    }
    l
}

fn selector(rng: &mut Rng, ns_names: &[String]) -> Sel {
    let mut s = Sel { labels: labels(rng, 1), exprs: Vec::new() };
    if rng.chance(30) {
        s.labels.clear();
        return s;
    }
    for _ in 0..rng.below(2) {
        let op = *rng.pick(&["In", "NotIn", "Exists", "DoesNotExist"]);
        let key = if !ns_names.is_empty() && rng.chance(30) { "kubernetes.io/metadata.name" } else { rng.pick(&KEYS) };
        let values = match op {
            "In" | "NotIn" => (0..1 + rng.below(2))
                .map(|_| if key.starts_with("kubernetes") { rng.pick(ns_names).clone() } else { rng.pick(&VALUES).to_string() })
                .collect(),
            _ => Vec::new(),
        };
        s.exprs.push(Expr { key: key.to_string(), op, values });
    }
    s
}

fn rule(rng: &mut Rng, ns_names: &[String]) -> RuleDef {
    let peers = match rng.below(5) {
        0 => None,
        1 => Some(Vec::new()),
        _ => Some(
            (0..1 + rng.below(2))
                .map(|_| match rng.below(4) {
                    0 => PeerDef::Pods(selector(rng, &[])),
                    1 => PeerDef::Namespaces(selector(rng, ns_names)),
                    2 => PeerDef::Both(selector(rng, ns_names), selector(rng, &[])),
                    _ => {
                        let cidr = *rng.pick(&CIDRS);
                        let excepts = EXCEPTS
                            .iter()
                            .copied()
                            .filter(|e| rng.chance(30) && ipnet_inside(e, cidr))
                            .collect();
                        PeerDef::Block(cidr, excepts)
                    }
                })
                .collect(),
        ),
    };
    let ports = match rng.below(4) {
        0 => None,
        1 => Some(Vec::new()),
        _ => Some(
            (0..1 + rng.below(2))
                .map(|_| PortDef {
                    protocol: if rng.chance(40) { None } else { Some(*rng.pick(&PROTOCOLS)) },
                    port: match rng.below(4) {
                        0 => PortNum::None,
                        1 => PortNum::Named(*rng.pick(&PORT_NAMES)),
                        _ => {
                            let p = *rng.pick(&[53u16, 80, 81, 443]);
                            PortNum::Num(p, if rng.chance(30) { Some(p + rng.below(400) as u16) } else { None })
                        }
                    },
                })
                .collect(),
        ),
    };
    RuleDef { peers, ports }
}

fn ipnet_inside(inner: &str, outer: &str) -> bool {
    let (addr, len) = inner.split_once('/').unwrap();
    let outer_len: u32 = outer.split_once('/').unwrap().1.parse().unwrap();
    len.parse::<u32>().unwrap() >= outer_len && in_cidr(outer, addr.parse().unwrap())
}

fn world(seed: u64) -> World {
    let mut rng = Rng(seed | 1);
    let namespaces: Vec<(String, Labels)> = (0..3).map(|i| (format!("ns{i}"), labels(&mut rng, 2))).collect();
    let ns_names: Vec<String> = namespaces.iter().map(|n| n.0.clone()).chain(["ghost".to_string()]).collect();
    let nodes = vec![vec!["192.168.0.1".parse().unwrap()], vec!["192.168.0.2".parse().unwrap(), "fd00:ff::2".parse().unwrap()]];
    let mut pods = Vec::new();
    for i in 0..3 + rng.below(6) {
        let host_network = rng.chance(8);
        let node = if rng.chance(80) { Some(rng.below(2)) } else { None };
        let addrs: Vec<IpAddr> = if host_network {
            nodes[node.unwrap_or(0)].clone()
        } else if rng.chance(8) {
            Vec::new()
        } else {
            // Unique addresses per pod; every third pod is dual-stack or v6-first.
            let v4: IpAddr = format!("10.0.0.{}", 1 + i * 3).parse().unwrap();
            let v6: IpAddr = format!("fd00::{}", 1 + i * 3).parse().unwrap();
            match rng.below(4) {
                0 => vec![v4, v6],
                1 => vec![v6, v4],
                _ => vec![v4],
            }
        };
        let mut ports = Vec::new();
        for n in PORT_NAMES {
            if rng.chance(40) {
                ports.push((n, *rng.pick(&PROTOCOLS), *rng.pick(&[53u16, 80, 81, 443, 8080])));
            }
        }
        pods.push(PodDef {
            ns: rng.below(4),
            name: format!("pod{i}"),
            labels: labels(&mut rng, 2),
            addrs,
            host_network,
            node,
            ports,
        });
    }
    let mut policies = Vec::new();
    for i in 0..1 + rng.below(5) {
        let types = match rng.below(5) {
            0 | 1 => None,
            2 => Some(vec!["Ingress"]),
            3 => Some(vec!["Egress"]),
            _ => Some(vec!["Ingress", "Egress"]),
        };
        let rules = |rng: &mut Rng| match rng.below(4) {
            0 => None,
            1 => Some(Vec::new()),
            _ => Some((0..1 + rng.below(2)).map(|_| rule(rng, &ns_names)).collect()),
        };
        let ingress = rules(&mut rng);
        let egress = rules(&mut rng);
        policies.push(PolicyDef {
            ns: rng.below(4),
            name: format!("p{i}"),
            selector: selector(&mut rng, &[]),
            types,
            ingress,
            egress,
        });
    }
    World { namespaces, nodes, pods, policies }
}

// ---- the real path: k8s-openapi objects ----

fn sel_json(s: &Sel) -> Value {
    let exprs: Vec<Value> = s.exprs.iter().map(|e| json!({"key": e.key, "operator": e.op, "values": e.values})).collect();
    json!({"matchLabels": s.labels, "matchExpressions": exprs})
}

fn rule_json(r: &RuleDef, peers_key: &str) -> Value {
    let mut o = serde_json::Map::new();
    if let Some(peers) = &r.peers {
        let v: Vec<Value> = peers
            .iter()
            .map(|p| match p {
                PeerDef::Pods(s) => json!({"podSelector": sel_json(s)}),
                PeerDef::Namespaces(s) => json!({"namespaceSelector": sel_json(s)}),
                PeerDef::Both(n, p) => json!({"namespaceSelector": sel_json(n), "podSelector": sel_json(p)}),
                PeerDef::Block(c, e) => json!({"ipBlock": {"cidr": c, "except": e}}),
            })
            .collect();
        o.insert(peers_key.into(), Value::Array(v));
    }
    if let Some(ports) = &r.ports {
        let v: Vec<Value> = ports
            .iter()
            .map(|p| {
                let mut m = serde_json::Map::new();
                if let Some(proto) = p.protocol {
                    m.insert("protocol".into(), json!(proto));
                }
                match &p.port {
                    PortNum::None => {}
                    PortNum::Num(n, end) => {
                        m.insert("port".into(), json!(n));
                        if let Some(e) = end {
                            m.insert("endPort".into(), json!(e));
                        }
                    }
                    PortNum::Named(n) => {
                        m.insert("port".into(), json!(n));
                    }
                }
                Value::Object(m)
            })
            .collect();
        o.insert("ports".into(), Value::Array(v));
    }
    Value::Object(o)
}

fn sourced<T: serde::de::DeserializeOwned>(v: Value, doc: usize) -> Sourced<T> {
    Sourced { object: serde_json::from_value(v).unwrap(), source: Source { file: "props.yaml".into(), doc } }
}

fn cluster(w: &World) -> Cluster {
    let mut c = Cluster::default();
    let ns_name = |i: usize| if i < 3 { format!("ns{i}") } else { "ghost".to_string() };
    for (name, l) in &w.namespaces {
        c.namespaces.push(sourced(json!({"metadata": {"name": name, "labels": l}}), c.namespaces.len()));
    }
    for (i, addrs) in w.nodes.iter().enumerate() {
        let a: Vec<Value> = addrs.iter().map(|a| json!({"type": "InternalIP", "address": a.to_string()})).collect();
        c.nodes.push(sourced(json!({"metadata": {"name": format!("node{i}")}, "status": {"addresses": a}}), i));
    }
    for p in &w.pods {
        let ports: Vec<Value> =
            p.ports.iter().map(|(n, proto, port)| json!({"name": n, "protocol": proto, "containerPort": port})).collect();
        let mut spec = json!({"containers": [{"name": "c", "ports": ports}], "hostNetwork": p.host_network});
        if let Some(n) = p.node {
            spec["nodeName"] = json!(format!("node{n}"));
        }
        let ips: Vec<Value> = p.addrs.iter().map(|a| json!({"ip": a.to_string()})).collect();
        let status = if ips.is_empty() { json!({}) } else { json!({"podIPs": ips}) };
        c.pods.push(sourced(
            json!({"metadata": {"name": p.name, "namespace": ns_name(p.ns), "labels": p.labels}, "spec": spec, "status": status}),
            0,
        ));
    }
    for p in &w.policies {
        let mut spec = json!({"podSelector": sel_json(&p.selector)});
        if let Some(t) = &p.types {
            spec["policyTypes"] = json!(t);
        }
        if let Some(r) = &p.ingress {
            spec["ingress"] = Value::Array(r.iter().map(|r| rule_json(r, "from")).collect());
        }
        if let Some(r) = &p.egress {
            spec["egress"] = Value::Array(r.iter().map(|r| rule_json(r, "to")).collect());
        }
        c.policies.push(sourced(json!({"metadata": {"name": p.name, "namespace": ns_name(p.ns)}, "spec": spec}), 0));
    }
    c
}

// ---- the reference: plain reading of the semantics ----

fn ns_name(i: usize) -> String {
    if i < 3 { format!("ns{i}") } else { "ghost".into() }
}

fn ns_labels(w: &World, i: usize) -> Labels {
    let mut l = if i < 3 { w.namespaces[i].1.clone() } else { Labels::new() };
    l.insert("kubernetes.io/metadata.name".into(), ns_name(i));
    l
}

fn sel_matches(s: &Sel, l: &Labels) -> bool {
    s.labels.iter().all(|(k, v)| l.get(k) == Some(v))
        && s.exprs.iter().all(|e| match e.op {
            "In" => l.get(&e.key).is_some_and(|v| e.values.contains(v)),
            "NotIn" => !l.get(&e.key).is_some_and(|v| e.values.contains(v)),
            "Exists" => l.contains_key(&e.key),
            _ => !l.contains_key(&e.key),
        })
}

fn is_endpoint(p: &PodDef) -> bool {
    !p.host_network && !p.addrs.is_empty()
}

fn pod_of(w: &World, a: IpAddr) -> Option<usize> {
    w.pods.iter().position(|p| is_endpoint(p) && p.addrs.contains(&a))
}

/// Whether `a` is inside `c` ("addr/len", host bits ignored), by plain bit comparison.
fn in_cidr(c: &str, a: IpAddr) -> bool {
    let (net, len) = c.split_once('/').unwrap();
    let len: u32 = len.parse().unwrap();
    let bits = |x: IpAddr| match x {
        IpAddr::V4(v) => (4, (u32::from(v) as u128) << 96),
        IpAddr::V6(v) => (6, u128::from(v)),
    };
    let ((fa, va), (fn_, vn)) = (bits(a), bits(net.parse().unwrap()));
    let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
    fa == fn_ && (va & mask) == (vn & mask)
}

fn peer_matches(w: &World, policy_ns: usize, peer: &PeerDef, remote: IpAddr) -> bool {
    let pod = pod_of(w, remote).map(|i| &w.pods[i]);
    match peer {
        PeerDef::Pods(s) => pod.is_some_and(|p| p.ns == policy_ns && sel_matches(s, &p.labels)),
        PeerDef::Namespaces(n) => pod.is_some_and(|p| sel_matches(n, &ns_labels(w, p.ns))),
        PeerDef::Both(n, s) => pod.is_some_and(|p| sel_matches(n, &ns_labels(w, p.ns)) && sel_matches(s, &p.labels)),
        PeerDef::Block(c, e) => in_cidr(c, remote) && !e.iter().any(|e| in_cidr(e, remote)),
    }
}

fn port_matches(w: &World, port: &PortDef, dst: IpAddr, proto: u8, dport: u16) -> bool {
    let protocol = port.protocol.unwrap_or("TCP");
    let number = match protocol {
        "TCP" => 6,
        "UDP" => 17,
        _ => 132,
    };
    if proto != number {
        return false;
    }
    match &port.port {
        PortNum::None => true,
        PortNum::Num(p, end) => *p <= dport && dport <= end.unwrap_or(*p),
        PortNum::Named(name) => pod_of(w, dst)
            .is_some_and(|i| w.pods[i].ports.iter().any(|(n, pr, p)| n == name && *pr == protocol && *p == dport)),
    }
}

fn isolates(p: &PolicyDef, d: Direction) -> bool {
    match &p.types {
        Some(t) => t.contains(&if d == Direction::Ingress { "Ingress" } else { "Egress" }),
        None => d == Direction::Ingress || p.egress.as_ref().is_some_and(|e| !e.is_empty()),
    }
}

/// One side: None when not isolated, else Some((allowed, rule name)).
fn side(w: &World, pod: usize, d: Direction, src: IpAddr, dst: IpAddr, proto: u8, dport: u16) -> Option<(bool, String)> {
    let me = &w.pods[pod];
    let remote = if d == Direction::Ingress { src } else { dst };
    let mut isolated = false;
    for p in &w.policies {
        if p.ns != me.ns || !isolates(p, d) || !sel_matches(&p.selector, &me.labels) {
            continue;
        }
        isolated = true;
        let rules = if d == Direction::Ingress { &p.ingress } else { &p.egress };
        for (ri, r) in rules.iter().flatten().enumerate() {
            let peers: Vec<Option<&PeerDef>> = match &r.peers {
                Some(v) if !v.is_empty() => v.iter().map(Some).collect(),
                _ => vec![None],
            };
            for (pi, peer) in peers.iter().enumerate() {
                if let Some(peer) = peer {
                    if !peer_matches(w, p.ns, peer, remote) {
                        continue;
                    }
                }
                let ports: Vec<Option<&PortDef>> = match &r.ports {
                    Some(v) if !v.is_empty() => v.iter().map(Some).collect(),
                    _ => vec![None],
                };
                for (qi, port) in ports.iter().enumerate() {
                    if port.is_none_or(|port| port_matches(w, port, dst, proto, dport)) {
                        let kind = match peer {
                            None => PeerKind::Any,
                            Some(PeerDef::Pods(_)) => PeerKind::PodSelector,
                            Some(PeerDef::Namespaces(_)) => PeerKind::NamespaceSelector,
                            Some(PeerDef::Both(..)) => PeerKind::NamespaceAndPodSelector,
                            Some(PeerDef::Block(c, _)) => PeerKind::IpBlockCidr(c),
                        };
                        return Some((true, cn2::rule_name(&ns_name(p.ns), &p.name, d, ri, kind, pi, qi)));
                    }
                }
            }
        }
    }
    isolated.then(|| (false, cn2::isolation_rule_name(&ns_name(me.ns), d)))
}

/// (allow, reason, egress rule name, ingress rule name)
fn reference(w: &World, src: IpAddr, dst: IpAddr, proto: u8, dport: u16) -> (bool, Reason, String, String) {
    let (s, d) = (pod_of(w, src), pod_of(w, dst));
    let node_has = |pod: Option<usize>, a: IpAddr| {
        pod.and_then(|p| w.pods[p].node).is_some_and(|n| w.nodes[n].contains(&a)) && pod_of(w, a).is_none()
    };
    if s.is_none() && d.is_none() {
        return (true, Reason::NotPoliced, String::new(), String::new());
    }
    if (s.is_some() && s == d) || node_has(s, dst) || node_has(d, src) {
        return (true, Reason::HostOrSelf, String::new(), String::new());
    }
    let eg = s.and_then(|s| side(w, s, Direction::Egress, src, dst, proto, dport));
    let ing = d.and_then(|d| side(w, d, Direction::Ingress, src, dst, proto, dport));
    let ok = |x: &Option<(bool, String)>| x.as_ref().is_none_or(|x| x.0);
    let name = |x: Option<(bool, String)>| x.map(|x| x.1).unwrap_or_default();
    let (allow, reason) = if !ok(&eg) {
        (false, Reason::DeniedByEgress)
    } else if !ok(&ing) {
        (false, Reason::DeniedByIngress)
    } else {
        (true, Reason::Allowed)
    };
    (allow, reason, name(eg), name(ing))
}

fn check(seed: u64) -> Result<(), TestCaseError> {
    let w = world(seed);
    let model = control::model::Model::resolve(&cluster(&w)).expect("generated cluster resolves");
    let snapshot = control::compile::compile(&model, 1);
    let mut addrs: Vec<IpAddr> = w.pods.iter().flat_map(|p| p.addrs.clone()).collect();
    let pod_addrs = addrs.len().max(1);
    addrs.extend(w.nodes.iter().flatten().copied());
    addrs.extend(["10.0.0.2", "10.0.0.200", "10.0.1.1", "8.8.8.8", "fd00::2", "fd00::1:0", "2001:db8::1"].map(|a| a.parse::<IpAddr>().unwrap()));
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    for _ in 0..64 {
        // Mostly pod addresses, so that rules get exercised.
        let src = if rng.chance(70) { *rng.pick(&addrs[..pod_addrs]) } else { *rng.pick(&addrs) };
        let same_family: Vec<IpAddr> = addrs.iter().copied().filter(|a| a.is_ipv4() == src.is_ipv4()).collect();
        let dst = *rng.pick(&same_family);
        let proto = *rng.pick(&[6u8, 17, 132, 1]);
        let port = if proto == 1 { 0 } else { *rng.pick(&[53u16, 80, 81, 100, 443, 8080]) };
        let v = snapshot.classify(src, dst, proto, port);
        let name = |r| if r == dataplane::NO_RULE { String::new() } else { snapshot.rule_name(r).to_string() };
        let got = (v.is_allow(), v.reason, name(v.egress_rule), name(v.ingress_rule));
        let want = reference(&w, src, dst, proto, port);
        prop_assert_eq!(&got, &want, "seed {} probe {} -> {} proto {} port {}", seed, src, dst, proto, port);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]
    #[test]
    fn classify_agrees_with_reference(seed in any::<u64>()) {
        check(seed)?;
    }
}
