//! A flattened snapshot (`Snapshot::flattened`, what the control loop publishes once
//! the policy source is quiet) is the same snapshot read faster: over synthetic
//! clusters, compiled whole and then changed through the incremental compiler (and
//! flattened again after each change), it gives exactly the chunked snapshot's
//! verdicts (single and burst), rule names, generation and stats counts (identity
//! entries aside: the copy merges identities into classes, and over these clusters,
//! whose pods carry a `version` label no peer selector reads, it has fewer); and an
//! older flattened copy keeps what it saw while the compiler moves on.

use control::cluster::Cluster;
use control::compile::incremental::{Incremental, ObjectChange, Order};
use control::compile::synthetic::{self, Rng};
use control::compile::compile;
use control::model::Model;
use control::stream::Object;
use dataplane::snapshot::{Snapshot, SnapshotStats};
use dataplane::verdict::Probe;
use dataplane::{Classifier, Verdict};
use proptest::prelude::*;
use std::net::IpAddr;

/// Probes over the cluster's pod addresses (v4 and v6), its nodes and some outsiders,
/// on the protocols and ports the synthetic policies use and a few they don't.
fn probes(cluster: &Cluster, rng: &mut Rng, n: usize) -> Vec<Probe> {
    let model = Model::resolve(cluster).expect("synthetic cluster resolves");
    let mut addrs: Vec<IpAddr> = model.pods.iter().flat_map(|p| p.addrs.iter().copied()).collect();
    addrs.extend(["172.20.5.5", "8.8.8.8", "10.255.1.1", "2001:db8::1", "fd00::ffff"].map(|a| a.parse::<IpAddr>().unwrap()));
    let ports = [(6, 8080), (6, 8081), (6, 9090), (6, 9091), (6, 443), (17, 53), (6, 5432), (6, 8050), (17, 4000), (132, 80), (1, 0), (6, 1)];
    (0..n)
        .map(|_| {
            let src = *rng.pick(&addrs);
            let same_family: Vec<IpAddr> = vec![*rng.pick(&addrs), *rng.pick(&addrs), *rng.pick(&addrs)];
            let dst = same_family.iter().copied().find(|d| d.is_ipv4() == src.is_ipv4()).unwrap_or(src);
            let (proto, dst_port) = *rng.pick(&ports);
            Probe { src, dst, proto, dst_port }
        })
        .collect()
}

/// Every probe's verdict with its deciding rule names, one way (`classify`) and the
/// other (`classify_burst` in bursts of 32), which must agree.
fn verdicts(s: &Snapshot, probes: &[Probe]) -> Vec<(Verdict, Vec<String>)> {
    let single: Vec<Verdict> = probes.iter().map(|p| s.classify(p.src, p.dst, p.proto, p.dst_port)).collect();
    let mut burst = vec![Verdict::NOT_POLICED; probes.len()];
    for (chunk, out) in probes.chunks(32).zip(burst.chunks_mut(32)) {
        s.classify_burst(chunk, out);
    }
    assert_eq!(single, burst, "classify and classify_burst disagree");
    single.into_iter().map(|v| (v, v.rules().map(|r| s.rule_name(r).to_owned()).collect())).collect()
}

fn counts(s: &Snapshot) -> SnapshotStats {
    SnapshotStats { memory_bytes: 0, ..s.stats() }
}

/// `flat` is `chunked` flattened: same generation, rules, stats counts and verdicts,
/// except that identities with equal table entries merged into classes, so the flat
/// copy has at most the chunked one's identity entries.
fn assert_same(chunked: &Snapshot, flat: &Snapshot, probes: &[Probe]) {
    assert!(flat.is_flattened());
    assert_eq!(flat.generation(), chunked.generation());
    assert_eq!(flat.rule_count(), chunked.rule_count());
    for r in 0..chunked.rule_count() as u32 + 2 {
        assert_eq!(flat.rule_name(r), chunked.rule_name(r), "rule {r}");
    }
    let (f, c) = (counts(flat), counts(chunked));
    assert!(f.identity_entries <= c.identity_entries, "{} identity entries flat, {} chunked", f.identity_entries, c.identity_entries);
    assert_eq!(SnapshotStats { identity_entries: 0, ..f }, SnapshotStats { identity_entries: 0, ..c });
    let (want, got) = (verdicts(chunked, probes), verdicts(flat, probes));
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        assert_eq!(g, w, "probe {:?}", probes[i]);
    }
}

/// Pod `i`'s `app` label set to `app` (its identity changes; a new value makes a new one).
fn relabel(cluster: &Cluster, i: usize, app: String) -> ObjectChange {
    let p = &cluster.pods[i];
    let mut pod = p.object.clone();
    pod.metadata.labels.get_or_insert_with(Default::default).insert("app".into(), app);
    ObjectChange::Upsert(Object::Pod(pod), p.source.clone())
}

/// Policy `i`'s first ingress port moved to `port`.
fn repoint(cluster: &Cluster, i: usize, port: u16) -> ObjectChange {
    let p = &cluster.policies[i];
    let mut pol = p.object.clone();
    let spec = pol.spec.as_mut().expect("synthetic policies have a spec");
    if let Some(port_of) = spec.ingress.as_mut().and_then(|r| r.first_mut()).and_then(|r| r.ports.as_mut()).and_then(|p| p.first_mut()) {
        port_of.port = serde_json::from_value(serde_json::json!(port)).ok();
    }
    ObjectChange::Upsert(Object::NetworkPolicy(pol), p.source.clone())
}

fn check(pods: usize, policies: usize, seed: u64, rounds: usize) {
    let cluster = synthetic::cluster(pods, policies, seed);
    let mut rng = Rng::new(seed ^ 0x5eed);
    let probes = probes(&cluster, &mut rng, 3000);
    // A whole compile, flattened.
    let whole = compile(&Model::resolve(&cluster).unwrap(), 3);
    assert!(!whole.is_flattened() || whole.stats().endpoints == 0);
    assert_same(&whole, &whole.flattened(), &probes);
    // Through the incremental compiler: flatten, change, flatten again.
    let mut inc = Incremental::new(cluster.clone(), Order::BySource).unwrap();
    let mut kept: Vec<(Snapshot, Vec<(Verdict, Vec<String>)>)> = Vec::new();
    for round in 0..rounds {
        let generation = round as u64 + 1;
        let chunked = inc.snapshot(generation);
        let flat = chunked.flattened();
        assert_same(&chunked, &flat, &probes);
        // Flattening twice changes nothing: classes do not merge further.
        let twice = flat.flattened();
        assert_same(&chunked, &twice, &probes);
        assert_eq!(counts(&twice), counts(&flat));
        kept.push((flat, verdicts(&chunked, &probes)));
        let mut batch = Vec::new();
        for _ in 0..1 + rng.below(4) {
            batch.push(match rng.below(4) {
                0 => relabel(&cluster, rng.below(cluster.pods.len()), format!("app-new-{round}")),
                1 => relabel(&cluster, rng.below(cluster.pods.len()), "web".into()),
                // Synthetic policies `i % 6 == 1` have a single numeric ingress port.
                2 => repoint(&cluster, (rng.below(cluster.policies.len() / 6) * 6 + 1).min(cluster.policies.len() - 1), 9090 + rng.below(3) as u16),
                _ => {
                    let i = rng.below(cluster.pods.len());
                    let app = rng.pick(&["api", "db", "cache", "web-v2"]).to_string();
                    relabel(&cluster, i, app)
                }
            });
        }
        inc.apply(batch).expect("valid change");
    }
    // Older flattened copies still give what their generation gave.
    for (flat, want) in &kept {
        assert_eq!(&verdicts(flat, &probes), want, "generation {}", flat.generation());
    }
}

#[test]
fn flattened_snapshots_classify_like_chunked_ones() {
    // Enough pods and rules for every array to span several chunks.
    check(1500, 200, 42, 6);
    // The pods' `version` label, which only the policies' own podSelectors read, splits
    // identities that the flat copy merges: 1495 identity entries become 599.
    let whole = compile(&Model::resolve(&synthetic::cluster(1500, 200, 42)).unwrap(), 1);
    let (chunked, flat) = (whole.stats().identity_entries, whole.flattened().stats().identity_entries);
    assert_eq!((chunked, flat), (1495, 599));
}

#[test]
fn an_empty_snapshot_flattens() {
    let s = Snapshot::empty(9);
    let f = s.flattened();
    assert!(f.is_flattened());
    assert_eq!(f.generation(), 9);
    let p = Probe { src: "10.0.0.1".parse().unwrap(), dst: "10.0.0.2".parse().unwrap(), proto: 6, dst_port: 80 };
    assert_same(&s, &f, &[p]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]
    #[test]
    fn flattened_snapshots_classify_like_chunked_ones_over_seeds(seed in any::<u64>(), pods in 100usize..700, policies in 10usize..120) {
        check(pods, policies, seed, 3);
    }
}
