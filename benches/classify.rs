//! Classify rate of the compiled snapshot at 1k / 10k / 50k pods × 100 / 1k / 10k
//! policies (`control::compile::synthetic` clusters), on one core, over a fixed batch
//! of probes: mostly pod to pod, some from and to outside addresses, TCP and UDP on
//! the ports the policies use. Two ways, A/B in one run: `classify` one probe at a
//! time (`single`), and `classify_burst` over bursts of 32 (`burst`, what a worker's
//! rx burst of new flows would hand it). Target: ≥ 20 M classify/s at 10k policies.
//! Wall time (criterion's throughput and a quick alternating loop printed beside it):
//! other load inflates it, so compare the two figures of one line.
//! A positional argument filters sizes as criterion does, and also skips building
//! the clusters of sizes it excludes (`cargo bench --bench classify -- 10000pods_10000`).

use control::compile::{compile, synthetic};
use control::model::Model;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dataplane::verdict::Probe;
use dataplane::{Classifier, Verdict};
use std::net::IpAddr;
use std::time::Duration;

const SIZES: [(usize, usize); 9] =
    [(1_000, 100), (1_000, 1_000), (1_000, 10_000), (10_000, 100), (10_000, 1_000), (10_000, 10_000), (50_000, 100), (50_000, 1_000), (50_000, 10_000)];
const BATCH: usize = 4096;
/// Probes per `classify_burst` call.
const BURST: usize = 32;

/// Rate in M classify/s of `round` (which classifies the whole batch once), over ~0.5 s.
fn rate(mut round: impl FnMut()) -> f64 {
    let t0 = std::time::Instant::now();
    let mut rounds = 0u64;
    while t0.elapsed() < Duration::from_millis(500) {
        round();
        rounds += 1;
    }
    (rounds * BATCH as u64) as f64 / t0.elapsed().as_secs_f64() / 1e6
}

/// The positional arguments (criterion's filters), without the values of criterion's
/// options that take one.
fn size_filters() -> Vec<String> {
    const VALUED: [&str; 12] = [
        "--warm-up-time", "--measurement-time", "--sample-size", "--profile-time", "--save-baseline", "--baseline",
        "--load-baseline", "--noise-threshold", "--confidence-level", "--significance-level", "--nresamples", "--color",
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut filters = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if !a.starts_with('-') && (i == 0 || !VALUED.contains(&args[i - 1].as_str())) {
            filters.push(a.clone());
        }
    }
    filters
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

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
    let filters = size_filters();
    let mut g = c.benchmark_group("classify");
    g.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut summary = Vec::new();
    for (pods, policies) in SIZES {
        let id = format!("{pods}pods_{policies}policies");
        if !filters.is_empty() && !filters.iter().any(|f| format!("classify/single/{id} classify/burst/{id}").contains(f.as_str())) {
            continue;
        }
        let model = Model::resolve(&synthetic::cluster(pods, policies, 42)).expect("synthetic cluster resolves");
        let snapshot = compile(&model, 1);
        let batch: Vec<Probe> =
            probes(&model).into_iter().map(|(src, dst, proto, dst_port)| Probe { src, dst, proto, dst_port }).collect();
        let st = snapshot.stats();
        eprintln!(
            "snapshot {pods} pods x {policies} policies: {} rule sets, {} table entries, {} v4 segments, {} port lists of {} entries, {} KiB",
            st.rule_sets, st.identity_entries, st.segments_v4, st.port_lists, st.port_entries, st.memory_bytes / 1024
        );
        let allowed = batch.iter().filter(|p| snapshot.classify(p.src, p.dst, p.proto, p.dst_port).is_allow()).count();
        let mut out = [Verdict::NOT_POLICED; BURST];
        let mut single = || {
            let mut allow = 0u32;
            for p in &batch {
                allow += snapshot.classify(black_box(p.src), black_box(p.dst), p.proto, p.dst_port).is_allow() as u32;
            }
            black_box(allow);
        };
        let mut burst = || {
            let mut allow = 0u32;
            for chunk in batch.chunks(BURST) {
                snapshot.classify_burst(black_box(chunk), &mut out);
                allow += out[..chunk.len()].iter().map(|v| v.is_allow() as u32).sum::<u32>();
            }
            black_box(allow);
        };
        g.bench_function(BenchmarkId::new("single", &id), |b| b.iter(&mut single));
        g.bench_function(BenchmarkId::new("burst", &id), |b| b.iter(&mut burst));
        // A quick wall-clock rate beside criterion's figure (this kernel's per-thread CPU
        // clock reads zero, so wall time it is: note the load average with the figure),
        // the two ways alternated so that load on the machine hits both alike.
        let (mut s, mut b) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            s.push(rate(&mut single));
            b.push(rate(&mut burst));
        }
        let (s, b) = (median(s), median(b));
        summary.push(format!(
            "classify {pods} pods x {policies} policies: {allowed}/{BATCH} probes allowed; M classify/s wall clock: single {s:.1} ({:.1} ns each), burst of {BURST} {b:.1} ({:.1} ns each), burst/single {:.2}",
            1e3 / s,
            1e3 / b,
            b / s
        ));
    }
    g.finish();
    for line in summary {
        eprintln!("{line}");
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
