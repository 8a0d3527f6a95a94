//! Compile time and snapshot memory at 1k / 10k / 50k pods × 100 / 1k / 10k policies
//! over `control::compile::synthetic` clusters, and the latency of one change through
//! the incremental compiler (change → snapshot ready to publish): a pod label flipping
//! between two values (after the first two rounds both identities exist), a pod
//! label set to a value never seen before (a new identity joins every selector peer
//! and rule set that takes it), and one policy's port flipping. Prints each
//! snapshot's size (bytes per pod and per rule) once. Targets: cold compile of 50k
//! pods + 10k policies under 1 s; one pod label change or one policy change under 10 ms.
//! Also `flatten`: `Snapshot::flattened` of the snapshot after those changes (what the
//! control loop does off the change path once the source is quiet).
//!
//! `PALISADE_BENCH_QUICK=1` runs only the 50k × 10k case. All times are wall clock.

use control::cluster::Cluster;
use control::compile::incremental::{Incremental, ObjectChange, Order};
use control::compile::{compile, synthetic};
use control::model::Model;
use control::stream::Object;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::time::{Duration, Instant};

const SIZES: [(usize, usize); 9] =
    [(1_000, 100), (1_000, 1_000), (1_000, 10_000), (10_000, 100), (10_000, 1_000), (10_000, 10_000), (50_000, 100), (50_000, 1_000), (50_000, 10_000)];

/// The change to pod `i`: its `app` label flips between two values on every call.
pub fn pod_label_change(cluster: &Cluster, i: usize, round: u64) -> ObjectChange {
    pod_relabel(cluster, i, |app| if round % 2 == 0 { format!("{app}-moved") } else { app.to_owned() })
}

/// The change to pod `i`: its `app` label takes a value no pod had before (`round` is
/// new on every call), so the pod gets a new identity.
pub fn pod_new_identity_change(cluster: &Cluster, i: usize, round: u64) -> ObjectChange {
    pod_relabel(cluster, i, |app| format!("{app}-{round}"))
}

fn pod_relabel(cluster: &Cluster, i: usize, app: impl Fn(&str) -> String) -> ObjectChange {
    let p = &cluster.pods[i];
    let mut pod = p.object.clone();
    let labels = pod.metadata.labels.get_or_insert_with(Default::default);
    let new = app(labels.get("app").map(String::as_str).unwrap_or_default());
    labels.insert("app".into(), new);
    ObjectChange::Upsert(Object::Pod(pod), p.source.clone())
}

/// The change to policy `i`: its first ingress rule's first port moves by one and back.
pub fn policy_port_change(cluster: &Cluster, i: usize, round: u64) -> ObjectChange {
    let p = &cluster.policies[i];
    let mut pol = p.object.clone();
    let spec = pol.spec.as_mut().expect("synthetic policies have a spec");
    let port = spec.ingress.as_mut().and_then(|r| r.first_mut()).and_then(|r| r.ports.as_mut()).and_then(|p| p.first_mut());
    if let Some(port) = port {
        port.port = serde_json::from_value(serde_json::json!(if round % 2 == 0 { 9091 } else { 9090 })).ok();
    }
    ObjectChange::Upsert(Object::NetworkPolicy(pol), p.source.clone())
}

/// A policy of the synthetic mix with a numeric ingress port (`np{1 mod 6}` kind).
fn policy_with_port(cluster: &Cluster) -> usize {
    (0..cluster.policies.len()).find(|&i| i % 6 == 1).unwrap_or(0)
}

fn bench(c: &mut Criterion) {
    let quick = std::env::var_os("PALISADE_BENCH_QUICK").is_some();
    let mut g = c.benchmark_group("compile");
    g.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    for (pods, policies) in SIZES {
        if quick && (pods, policies) != (50_000, 10_000) {
            continue;
        }
        let cluster = synthetic::cluster(pods, policies, 42);
        let t = Instant::now();
        let model = Model::resolve(&cluster).expect("synthetic cluster resolves");
        let resolve_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let s = compile(&model, 1).stats();
        let compile_ms = t.elapsed().as_secs_f64() * 1e3;
        eprintln!(
            "snapshot {pods} pods x {policies} policies: resolve {resolve_ms:.0} ms + compile {compile_ms:.0} ms (wall, first run); {} rules, {} rule sets, {} identity entries, {} v4 + {} v6 segments, {} port lists, {} bytes = {:.0} B/pod, {:.0} B/rule",
            s.rules, s.rule_sets, s.identity_entries, s.segments_v4, s.segments_v6, s.port_lists, s.memory_bytes,
            s.memory_bytes as f64 / pods as f64,
            s.memory_bytes as f64 / s.rules.max(1) as f64,
        );
        let id = format!("{pods}pods_{policies}policies");
        g.bench_function(BenchmarkId::new("model_to_snapshot", &id), |b| b.iter(|| compile(&model, 1)));
        g.bench_function(BenchmarkId::new("cluster_to_snapshot", &id), |b| {
            b.iter(|| compile(&Model::resolve(&cluster).unwrap(), 1))
        });
        if pods < 10_000 {
            continue;
        }
        // One change, through the incremental compiler: apply + snapshot to publish.
        let mut inc = Incremental::new(cluster.clone(), Order::BySource).expect("synthetic cluster is valid");
        let pod = pods / 2;
        let policy = policy_with_port(&cluster);
        let mut round = 0u64;
        let changes: [(&str, fn(&Cluster, usize, u64) -> ObjectChange); 3] = [
            ("pod_label_change", pod_label_change),
            ("pod_label_new_identity", pod_new_identity_change),
            ("policy_change", policy_port_change),
        ];
        for (what, change) in changes {
            let target = if what.starts_with("pod") { pod } else { policy };
            g.bench_function(BenchmarkId::new(what, &id), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        round += 1;
                        let ch = change(&cluster, target, round);
                        let t = Instant::now();
                        let applied = inc.apply([ch]).expect("valid change");
                        let snap = inc.snapshot(round);
                        total += t.elapsed();
                        assert!(applied.full.is_none(), "{what} took the full path: {:?}", applied.full);
                        drop(snap);
                    }
                    total
                })
            });
        }
        let snap = inc.snapshot(round + 1);
        g.bench_function(BenchmarkId::new("flatten", &id), |b| b.iter(|| snap.flattened()));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
