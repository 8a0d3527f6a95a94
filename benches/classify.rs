//! Classify rate of the compiled snapshot at 1k / 10k / 50k pods × 100 / 1k / 10k
//! policies (`control::compile::synthetic` clusters), on one core, over a fixed batch
//! of probes: mostly pod to pod, some from and to outside addresses, TCP and UDP on
//! the ports the policies use. Target: ≥ 20 M classify/s at 10k policies. Wall time
//! (criterion's throughput and a quick loop printed beside it): other load inflates it.

use control::compile::{compile, synthetic};
use control::model::Model;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dataplane::Classifier;
use std::net::IpAddr;
use std::time::Duration;

const SIZES: [(usize, usize); 9] =
    [(1_000, 100), (1_000, 1_000), (1_000, 10_000), (10_000, 100), (10_000, 1_000), (10_000, 10_000), (50_000, 100), (50_000, 1_000), (50_000, 10_000)];
const BATCH: usize = 4096;

fn probes(model: &Model) -> Vec<(IpAddr, IpAddr, u8, u16)> {
    let addrs: Vec<IpAddr> = model.pods.iter().filter(|p| p.is_endpoint()).map(|p| p.addrs[0]).collect();
    let outside: [IpAddr; 3] = ["172.20.5.5".parse().unwrap(), "8.8.8.8".parse().unwrap(), "10.255.1.1".parse().unwrap()];
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    (0..BATCH)
        .map(|_| {
            let (src, dst) = match next(10) {
                0 => (outside[next(3)], addrs[next(addrs.len())]),
                1 => (addrs[next(addrs.len())], outside[next(3)]),
                _ => (addrs[next(addrs.len())], addrs[next(addrs.len())]),
            };
            let (proto, port) = [(6, 8080), (6, 8081), (6, 9090), (6, 443), (17, 53), (6, 5432), (6, 8050), (17, 4000)][next(8)];
            (src, dst, proto, port)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("classify");
    g.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::Elements(BATCH as u64));
    for (pods, policies) in SIZES {
        let model = Model::resolve(&synthetic::cluster(pods, policies, 42)).expect("synthetic cluster resolves");
        let snapshot = compile(&model, 1);
        let batch = probes(&model);
        let allowed = batch.iter().filter(|p| snapshot.classify(p.0, p.1, p.2, p.3).is_allow()).count();
        // A quick wall-clock rate beside criterion's figure (this kernel's per-thread CPU
        // clock reads zero, so wall time it is: note the load average with the figure).
        let t0 = std::time::Instant::now();
        let mut rounds = 0u64;
        while t0.elapsed() < Duration::from_millis(700) {
            for &(s, d, p, port) in &batch {
                black_box(snapshot.classify(black_box(s), black_box(d), p, port));
            }
            rounds += 1;
        }
        let ns = t0.elapsed().as_nanos() as f64 / (rounds * BATCH as u64) as f64;
        eprintln!(
            "classify {pods} pods x {policies} policies: {allowed}/{BATCH} probes allowed; {:.1} M classify/s wall clock ({ns:.1} ns each)",
            1e3 / ns
        );
        g.bench_function(BenchmarkId::from_parameter(format!("{pods}pods_{policies}policies")), |b| {
            b.iter(|| {
                let mut allow = 0u32;
                for &(s, d, p, port) in &batch {
                    allow += snapshot.classify(black_box(s), black_box(d), p, port).is_allow() as u32;
                }
                allow
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
