//! Incremental compilation gives exactly the verdicts of a full compile.
//!
//! Property: over random small clusters and random sequences of changes (pod labels,
//! addresses and named ports, pods added and deleted, policies added, modified and
//! deleted, namespace labels), after every accepted batch the incremental snapshot
//! classifies every pod pair (plus a node and an outside address) × a set of
//! protocols and ports exactly like a fresh validate → resolve → compile of the same
//! objects: same action, reason and deciding rule names. Table tests pin the paths a
//! change takes and that a rejected change applies nothing.

use control::cluster::{Cluster, Source};
use control::compile::incremental::{Incremental, ObjectChange, Order};
use control::compile::compile;
use control::compile::synthetic::Rng;
use control::model::Model;
use control::stream::{Kind, Object};
use dataplane::snapshot::Snapshot;
use dataplane::Classifier;
use proptest::prelude::*;
use serde_json::{json, Value};
use std::net::IpAddr;

const NAMESPACES: usize = 3;

fn source(doc: usize) -> Source {
    Source { file: "gen.yaml".into(), doc }
}

fn namespace(i: usize, team: usize) -> Object {
    Object::Namespace(serde_json::from_value(json!({"metadata": {"name": format!("ns{i}"), "labels": {"team": format!("t{team}")}}})).unwrap())
}

fn node(i: usize) -> Object {
    Object::Node(
        serde_json::from_value(json!({"metadata": {"name": format!("node{i}")}, "status": {"addresses": [{"type": "InternalIP", "address": format!("192.168.0.{}", i + 1)}]}}))
            .unwrap(),
    )
}

fn random_labels(rng: &mut Rng) -> Value {
    let mut l = serde_json::Map::new();
    if rng.chance(80) {
        l.insert("app".into(), json!(["a", "b", "c"][rng.below(3)].to_string()));
    }
    if rng.chance(50) {
        l.insert("tier".into(), json!(["x", "y"][rng.below(2)].to_string()));
    }
    Value::Object(l)
}

/// Pod `i` (its address is its own, so pods never clash unless `clash`).
fn pod(rng: &mut Rng, i: usize) -> Object {
    let ns = rng.below(NAMESPACES);
    let mut ips = vec![json!({"ip": format!("10.0.0.{}", i + 1)})];
    if rng.chance(20) {
        ips.push(json!({"ip": format!("fd00::{:x}", i + 1)}));
    }
    let ports = match rng.below(3) {
        0 => json!([]),
        1 => json!([{"name": "http", "containerPort": 80}]),
        _ => json!([{"name": "http", "containerPort": 8080}, {"name": "dns", "protocol": "UDP", "containerPort": 53}]),
    };
    let host_network = rng.chance(5);
    let status = if rng.chance(5) { json!({}) } else { json!({"podIPs": ips}) };
    Object::Pod(
        serde_json::from_value(json!({
            "metadata": {"name": format!("p{i}"), "namespace": format!("ns{ns}"), "labels": random_labels(rng)},
            "spec": {"nodeName": format!("node{}", i % 2), "hostNetwork": host_network, "containers": [{"name": "c", "ports": ports}]},
            "status": status
        }))
        .unwrap(),
    )
}

fn selector(rng: &mut Rng) -> Value {
    match rng.below(5) {
        0 => json!({}),
        1 | 2 => {
            let app = ["a", "b", "c"][rng.below(3)];
            json!({"matchLabels": {"app": app}})
        }
        3 => {
            let op = ["In", "NotIn"][rng.below(2)];
            json!({"matchExpressions": [{"key": "tier", "operator": op, "values": ["x"]}]})
        }
        _ => {
            let op = ["Exists", "DoesNotExist"][rng.below(2)];
            json!({"matchExpressions": [{"key": "tier", "operator": op}]})
        }
    }
}

fn peer(rng: &mut Rng) -> Value {
    match rng.below(5) {
        0 | 1 => json!({"podSelector": selector(rng)}),
        2 => json!({"namespaceSelector": {"matchLabels": {"team": format!("t{}", rng.below(2))}}}),
        3 => json!({"namespaceSelector": {}, "podSelector": selector(rng)}),
        _ => json!({"ipBlock": {"cidr": "10.0.0.0/28", "except": ["10.0.0.4/30"]}}),
    }
}

fn port(rng: &mut Rng) -> Value {
    match rng.below(5) {
        0 => json!({"port": 80}),
        1 => json!({"port": "http"}),
        2 => json!({"protocol": "UDP", "port": "dns"}),
        3 => json!({"port": 8000, "endPort": 8100}),
        _ => json!({"protocol": "UDP"}),
    }
}

fn rules(rng: &mut Rng, peers_key: &str) -> Value {
    let n = rng.below(3);
    Value::Array(
        (0..n)
            .map(|_| {
                let mut r = serde_json::Map::new();
                if rng.chance(70) {
                    r.insert(peers_key.into(), Value::Array((0..1 + rng.below(2)).map(|_| peer(rng)).collect()));
                }
                if rng.chance(70) {
                    r.insert("ports".into(), Value::Array((0..1 + rng.below(2)).map(|_| port(rng)).collect()));
                }
                Value::Object(r)
            })
            .collect(),
    )
}

fn policy(rng: &mut Rng, name: &str, ns: usize) -> Object {
    let mut spec = json!({"podSelector": selector(rng)});
    if rng.chance(80) {
        spec["ingress"] = rules(rng, "from");
    }
    if rng.chance(50) {
        spec["egress"] = rules(rng, "to");
    }
    match rng.below(4) {
        0 => spec["policyTypes"] = json!(["Ingress", "Egress"]),
        1 => spec["policyTypes"] = json!(["Egress"]),
        _ => {}
    }
    Object::NetworkPolicy(
        serde_json::from_value(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": format!("ns{ns}")}, "spec": spec}))
        .unwrap(),
    )
}

fn to_cluster(objects: &[Object]) -> Cluster {
    let mut c = Cluster::default();
    for (doc, o) in objects.iter().enumerate() {
        o.push_into(&mut c, source(doc));
    }
    c
}

fn full(c: &Cluster) -> Snapshot {
    control::validate::validate(c).unwrap();
    compile(&Model::resolve(c).unwrap(), 1)
}

/// Every verdict between the addresses of `c`'s pods, a node and an outsider.
fn verdicts(s: &Snapshot, addrs: &[IpAddr]) -> Vec<String> {
    let mut out = Vec::new();
    for &a in addrs {
        for &b in addrs {
            if a.is_ipv4() != b.is_ipv4() {
                continue;
            }
            for (proto, port) in [(6, 80), (6, 8080), (6, 8050), (17, 53), (132, 80), (1, 0)] {
                let v = s.classify(a, b, proto, port);
                let names: Vec<&str> = v.rules().map(|r| s.rule_name(r)).collect();
                out.push(format!("{a} -> {b} {proto}/{port}: {:?} {:?} {names:?}", v.action, v.reason));
            }
        }
    }
    out
}

fn addresses(pods: usize) -> Vec<IpAddr> {
    let mut a: Vec<IpAddr> = (0..pods).flat_map(|i| [format!("10.0.0.{}", i + 1), format!("fd00::{:x}", i + 1)]).map(|s| s.parse().unwrap()).collect();
    a.extend(["192.168.0.1", "172.16.0.1", "10.0.0.200"].map(|s| s.parse::<IpAddr>().unwrap()));
    a
}

fn key(o: &Object) -> (Kind, String, String) {
    (o.kind(), o.meta().namespace.clone().unwrap_or_default(), o.meta().name.clone().unwrap_or_default())
}

fn check(seed: u64) -> Result<(), TestCaseError> {
    let mut rng = Rng::new(seed);
    let pods = 6 + rng.below(8);
    // The objects in force, in key order (what the watch-stream store would hold).
    let mut objects: std::collections::BTreeMap<(Kind, String, String), Object> = Default::default();
    fn put(objects: &mut std::collections::BTreeMap<(Kind, String, String), Object>, o: Object) {
        objects.insert(key(&o), o);
    }
    for i in 0..NAMESPACES {
        put(&mut objects, namespace(i, i % 2));
    }
    put(&mut objects, node(0));
    put(&mut objects, node(1));
    for i in 0..pods {
        put(&mut objects, pod(&mut rng, i));
    }
    let mut next_policy = 0;
    for _ in 0..3 + rng.below(4) {
        let ns = rng.below(NAMESPACES);
        put(&mut objects, policy(&mut rng, &format!("np{next_policy}"), ns));
        next_policy += 1;
    }
    let cluster = |objects: &std::collections::BTreeMap<_, Object>| to_cluster(&objects.values().cloned().collect::<Vec<_>>());
    let mut inc = Incremental::new(cluster(&objects), Order::ByKey).unwrap();
    let addrs = addresses(pods + 4);
    prop_assert_eq!(verdicts(&inc.snapshot(1), &addrs), verdicts(&full(&cluster(&objects)), &addrs));
    for step in 0..8 {
        let mut batch = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let change = match rng.below(10) {
                0..=3 => {
                    let i = rng.below(pods + 3);
                    ObjectChange::Upsert(pod(&mut rng, i), source(0))
                }
                4 => ObjectChange::Delete((Kind::Pod, format!("ns{}", rng.below(NAMESPACES)), format!("p{}", rng.below(pods)))),
                5 | 6 => {
                    // Modify an existing policy name or add one (names sort anywhere).
                    let name = if rng.chance(50) { format!("np{}", rng.below(next_policy.max(1))) } else {
                        next_policy += 1;
                        format!("np{}x", rng.below(next_policy))
                    };
                    let ns = rng.below(NAMESPACES);
                    ObjectChange::Upsert(policy(&mut rng, &name, ns), source(0))
                }
                7 => ObjectChange::Delete((Kind::NetworkPolicy, format!("ns{}", rng.below(NAMESPACES)), format!("np{}", rng.below(next_policy)))),
                8 => ObjectChange::Upsert(namespace(rng.below(NAMESPACES), rng.below(2)), source(0)),
                _ => ObjectChange::Upsert(policy(&mut rng, "np0", 0), source(0)),
            };
            batch.push(change);
        }
        inc.apply(batch.clone()).map_err(|e| TestCaseError::fail(format!("step {step}: {e}")))?;
        for c in batch {
            match c {
                ObjectChange::Upsert(o, _) => put(&mut objects, o),
                ObjectChange::Delete(k) => {
                    objects.remove(&k);
                }
            }
        }
        let want = verdicts(&full(&cluster(&objects)), &addrs);
        let got = verdicts(&inc.snapshot(step + 2), &addrs);
        for (g, w) in got.iter().zip(&want) {
            prop_assert_eq!(g, w, "seed {} step {}", seed, step);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
    #[test]
    fn incremental_verdicts_equal_full_compile(seed in any::<u64>()) {
        check(seed)?;
    }
}

// ---- table tests: which path a change takes, and what it enforces ----

fn obj(v: Value) -> Object {
    let kind = v["kind"].as_str().unwrap().to_owned();
    match kind.as_str() {
        "Namespace" => Object::Namespace(serde_json::from_value(v).unwrap()),
        "Pod" => Object::Pod(serde_json::from_value(v).unwrap()),
        "Node" => Object::Node(serde_json::from_value(v).unwrap()),
        _ => Object::NetworkPolicy(serde_json::from_value(v).unwrap()),
    }
}

fn lab_pod(name: &str, app: &str, ip: &str) -> Object {
    obj(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "dev", "labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 80}]}]}, "status": {"podIP": ip}}))
}

fn allow_from(name: &str, to_app: &str, from_app: &str, port: Value) -> Object {
    obj(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name, "namespace": "dev"},
        "spec": {"podSelector": {"matchLabels": {"app": to_app}},
                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": from_app}}}], "ports": [{"port": port}]}]}}))
}

fn lab() -> Vec<Object> {
    vec![
        obj(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dev"}})),
        lab_pod("web", "web", "10.1.0.1"),
        lab_pod("client", "client", "10.1.0.2"),
        lab_pod("other", "other", "10.1.0.3"),
        allow_from("b-web", "web", "client", json!(80)),
    ]
}

/// (verdict, deciding rule names) of src → dst TCP `port`.
fn probe(s: &Snapshot, src: &str, dst: &str, port: u16) -> String {
    let v = s.classify(src.parse().unwrap(), dst.parse().unwrap(), 6, port);
    let names: Vec<&str> = v.rules().map(|r| s.rule_name(r)).collect();
    format!("{:?} {}", v.action, names.join(","))
}

fn upsert(o: Object) -> ObjectChange {
    ObjectChange::Upsert(o, source(0))
}

#[test]
fn changes_take_the_incremental_path_and_enforce_what_a_full_compile_would() {
    use control::compile::incremental::FullReason;
    let cases: Vec<(&str, Vec<ObjectChange>, Option<FullReason>, [(&str, &str, u16, &str); 2])> = vec![
        (
            "a pod relabelled into a peer selector gains access",
            vec![upsert(lab_pod("other", "client", "10.1.0.3"))],
            None,
            [("10.1.0.3", "10.1.0.1", 80, "Allow dev-ingress-b-web-0-podSelector-0-0"), ("10.1.0.2", "10.1.0.1", 80, "Allow dev-ingress-b-web-0-podSelector-0-0")],
        ),
        (
            "a pod relabelled out of the isolated set is open again",
            vec![upsert(lab_pod("web", "www", "10.1.0.1"))],
            None,
            [("10.1.0.3", "10.1.0.1", 80, "Allow "), ("10.1.0.3", "10.1.0.1", 22, "Allow ")],
        ),
        (
            "a policy sorting before the first one decides first, in ids carved from nothing: full compile",
            vec![upsert(allow_from("a-web", "web", "client", json!("http")))],
            Some(FullReason::PolicyOrder),
            [("10.1.0.2", "10.1.0.1", 80, "Allow dev-ingress-a-web-0-podSelector-0-0"), ("10.1.0.3", "10.1.0.1", 80, "Deny dev-ingress-default-deny")],
        ),
        (
            "a policy sorting after the last one takes fresh ids and decides second",
            vec![upsert(allow_from("c-web", "web", "other", json!(80)))],
            None,
            [("10.1.0.2", "10.1.0.1", 80, "Allow dev-ingress-b-web-0-podSelector-0-0"), ("10.1.0.3", "10.1.0.1", 80, "Allow dev-ingress-c-web-0-podSelector-0-0")],
        ),
        (
            "a modified policy keeps its place and its new name",
            vec![upsert(allow_from("b-web", "web", "other", json!(8080)))],
            None,
            [("10.1.0.2", "10.1.0.1", 80, "Deny dev-ingress-default-deny"), ("10.1.0.3", "10.1.0.1", 8080, "Allow dev-ingress-b-web-0-podSelector-0-0")],
        ),
        (
            "a deleted policy opens the pod; a deleted pod is not policed",
            vec![
                ObjectChange::Delete((Kind::NetworkPolicy, "dev".into(), "b-web".into())),
                ObjectChange::Delete((Kind::Pod, "dev".into(), "client".into())),
            ],
            None,
            [("10.1.0.3", "10.1.0.1", 80, "Allow "), ("10.1.0.2", "10.1.0.1", 80, "Allow ")],
        ),
        (
            "a pod taking another pod's address: full compile, the first in order keeps it",
            vec![upsert(lab_pod("aaa", "client", "10.1.0.3"))],
            Some(FullReason::AddressConflict),
            [("10.1.0.3", "10.1.0.1", 80, "Allow dev-ingress-b-web-0-podSelector-0-0"), ("10.1.0.2", "10.1.0.1", 80, "Allow dev-ingress-b-web-0-podSelector-0-0")],
        ),
        (
            "a namespace change: full compile",
            vec![upsert(obj(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dev", "labels": {"x": "y"}}})))],
            Some(FullReason::NamespaceOrNode),
            [("10.1.0.2", "10.1.0.1", 80, "Allow dev-ingress-b-web-0-podSelector-0-0"), ("10.1.0.3", "10.1.0.1", 80, "Deny dev-ingress-default-deny")],
        ),
    ];
    for (what, changes, path, probes) in cases {
        let mut objects = lab();
        let mut inc = Incremental::new(to_cluster(&objects), Order::ByKey).unwrap();
        let applied = inc.apply(changes.clone()).unwrap();
        assert_eq!(applied.full, path, "{what}");
        let snap = inc.snapshot(2);
        for (src, dst, port, want) in probes {
            assert_eq!(probe(&snap, src, dst, port), want, "{what}: {src} -> {dst}:{port}");
        }
        // And exactly what a full compile of the same objects says.
        for c in changes {
            match c {
                ObjectChange::Upsert(o, _) => {
                    objects.retain(|x| key(x) != key(&o));
                    objects.push(o);
                }
                ObjectChange::Delete(k) => objects.retain(|x| key(x) != k),
            }
        }
        objects.sort_by_key(key);
        let addrs = addresses(0).into_iter().chain(["10.1.0.1", "10.1.0.2", "10.1.0.3"].map(|a| a.parse().unwrap())).collect::<Vec<_>>();
        assert_eq!(verdicts(&snap, &addrs), verdicts(&full(&to_cluster(&objects)), &addrs), "{what}");
    }
}

#[test]
fn a_rejected_change_applies_nothing() {
    let mut inc = Incremental::new(to_cluster(&lab()), Order::ByKey).unwrap();
    let bad = obj(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "b-web", "namespace": "dev"},
        "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 70000}]}]}}));
    let err = inc.apply([upsert(lab_pod("other", "client", "10.1.0.3")), upsert(bad)]).unwrap_err();
    assert_eq!(
        err,
        "1 invalid field; nothing was applied:\n  gen.yaml (document 1): NetworkPolicy dev/b-web: spec.ingress[0].ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive"
    );
    let snap = inc.snapshot(2);
    assert_eq!(probe(&snap, "10.1.0.3", "10.1.0.1", 80), "Deny dev-ingress-default-deny");
    assert_eq!(probe(&snap, "10.1.0.2", "10.1.0.1", 80), "Allow dev-ingress-b-web-0-podSelector-0-0");
    assert_eq!(inc.apply([upsert(lab_pod("other", "client", "10.1.0.3"))]).unwrap().changed, 1);
    assert_eq!(probe(&inc.snapshot(3), "10.1.0.3", "10.1.0.1", 80), "Allow dev-ingress-b-web-0-podSelector-0-0");
    // The same object again changes nothing.
    assert_eq!(inc.apply([upsert(lab_pod("other", "client", "10.1.0.3"))]).unwrap().changed, 0);
}
