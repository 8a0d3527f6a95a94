//! Compile time and snapshot memory at 1k / 10k / 50k pods × 100 / 1k / 10k policies
//! over `control::compile::synthetic` clusters. Prints each snapshot's size (bytes per
//! pod and per rule) once. Target: cold compile of 50k pods + 10k policies under 1 s.

use control::compile::{compile, synthetic};
use control::model::Model;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::time::Duration;

const SIZES: [(usize, usize); 9] =
    [(1_000, 100), (1_000, 1_000), (1_000, 10_000), (10_000, 100), (10_000, 1_000), (10_000, 10_000), (50_000, 100), (50_000, 1_000), (50_000, 10_000)];

/// Nanoseconds this thread has spent on a CPU (criterion's wall time includes other
/// load on the machine).
fn thread_cpu_ns() -> u64 {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    text.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("compile");
    g.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    for (pods, policies) in SIZES {
        let cluster = synthetic::cluster(pods, policies, 42);
        let model = Model::resolve(&cluster).expect("synthetic cluster resolves");
        let cpu0 = thread_cpu_ns();
        let s = compile(&model, 1).stats();
        let compile_cpu_ms = (thread_cpu_ns() - cpu0) as f64 / 1e6;
        eprintln!(
            "snapshot {pods} pods x {policies} policies: compiled in {compile_cpu_ms:.0} ms of thread CPU time; {} rules, {} rule sets, {} identity entries, {} v4 + {} v6 segments, {} port lists, {} bytes = {:.0} B/pod, {:.0} B/rule",
            s.rules, s.rule_sets, s.identity_entries, s.segments_v4, s.segments_v6, s.port_lists, s.memory_bytes,
            s.memory_bytes as f64 / pods as f64,
            s.memory_bytes as f64 / s.rules.max(1) as f64,
        );
        let id = format!("{pods}pods_{policies}policies");
        g.bench_function(BenchmarkId::new("model_to_snapshot", &id), |b| b.iter(|| compile(&model, 1)));
        g.bench_function(BenchmarkId::new("cluster_to_snapshot", &id), |b| {
            b.iter(|| compile(&Model::resolve(&cluster).unwrap(), 1))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
