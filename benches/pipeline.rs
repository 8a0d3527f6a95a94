//! The stateful pipeline per packet, one core, no DPDK: `Pipeline::admit` over frames in
//! bursts of 32 (`begin_burst` per burst, aging at its default cadence), on the compiled
//! snapshot of a synthetic cluster with 10k pods and 10k policies
//! (`control::compile::synthetic`).
//!
//! - `hit`: established TCP flows (10k and 1M in the table), data segments in random
//!   order: parse + flow lookup + counters. Target ≤ 50 ns per packet.
//! - `new_flow`: SYNs on tuples never seen (miss, classify, insert), pod to pod on the
//!   ports the policies use, allowed and denied mixed. Target ≥ 3 Mpps.
//! - `new_flow_no_policy`: the same SYNs with a classifier that answers at once
//!   (`Verdict::NOT_POLICED`): the pipeline's own share of the new-flow cost.

use control::compile::{compile, synthetic};
use control::model::Model;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dataplane::filter::PacketFilter;
use dataplane::pipeline::{craft, Pipeline, PipelineConfig};
use dataplane::wire::tcp::flags::{ACK, PSH, SYN};
use dataplane::{Classifier, Verdict};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BURST: usize = 32;
const PORTS: [u16; 6] = [8080, 8081, 9090, 443, 5432, 8050];

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// `count` TCP tuples between random pod addresses, unique by client port and index.
fn tuples(addrs: &[IpAddr], count: usize, rng: &mut Rng) -> Vec<(SocketAddr, SocketAddr)> {
    (0..count)
        .map(|i| {
            let client = SocketAddr::new(addrs[rng.below(addrs.len())], 1024 + (i % 64_000) as u16);
            let mut server = addrs[rng.below(addrs.len())];
            if i / 64_000 > 0 {
                // Past 64k tuples vary the server too, so every tuple stays distinct.
                server = addrs[(i / 64_000 + rng.below(addrs.len())) % addrs.len()];
            }
            (client, SocketAddr::new(server, PORTS[rng.below(PORTS.len())]))
        })
        .collect()
}

/// Decides instantly: isolates the pipeline's cost from the snapshot's.
struct NoPolicy;

impl Classifier for NoPolicy {
    fn generation(&self) -> u64 {
        1
    }

    fn classify(&self, _: IpAddr, _: IpAddr, _: u8, _: u16) -> Verdict {
        Verdict::NOT_POLICED
    }
}

fn config(capacity: usize) -> PipelineConfig {
    PipelineConfig { flow_capacity: capacity, hash_seed: Some(7), ..PipelineConfig::default() }
}

/// SYNs on fresh tuples: a fresh table per pass over `syns`, so every SYN is a miss
/// (table construction untimed).
fn new_flow_bench<S: Classifier>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    snapshot: &Arc<arc_swap::ArcSwap<S>>,
    syns: &[Vec<u8>],
) {
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0u64;
            let mut now = 1;
            while done < iters {
                let mut pipeline = Pipeline::new(Arc::clone(snapshot), &config(1 << 17));
                let n = (iters - done).min(syns.len() as u64) as usize;
                let start = Instant::now();
                black_box(feed(&mut pipeline, &syns[..n], &mut now));
                total += start.elapsed();
                done += n as u64;
            }
            total
        })
    });
}

/// Run `frames` through `pipeline` in bursts; returns how many were forwarded.
fn feed<S: Classifier>(pipeline: &mut Pipeline<S>, frames: &[Vec<u8>], now: &mut u64) -> usize {
    let mut forwarded = 0;
    for burst in frames.chunks(BURST) {
        *now += 1000;
        pipeline.begin_burst(*now);
        for frame in burst {
            forwarded += usize::from(pipeline.admit(black_box(frame), 0));
        }
    }
    forwarded
}

fn bench(c: &mut Criterion) {
    let started = Instant::now();
    let model = Model::resolve(&synthetic::cluster(10_000, 10_000, 1)).expect("synthetic cluster resolves");
    let snapshot = Arc::new(arc_swap::ArcSwap::from_pointee(compile(&model, 1)));
    let addrs: Vec<IpAddr> = model.pods.iter().filter(|p| p.is_endpoint()).map(|p| p.addrs[0]).collect();
    eprintln!("snapshot of 10k pods × 10k policies compiled in {:?}", started.elapsed());
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);

    let mut group = c.benchmark_group("pipeline");
    group.measurement_time(Duration::from_secs(4));
    group.warm_up_time(Duration::from_secs(1));

    for flows in [10_000usize, 1_000_000] {
        let conns = tuples(&addrs, flows, &mut rng);
        // Loose mode so one data segment per tuple opens its flow, in either verdict.
        let mut pipeline = Pipeline::new(Arc::clone(&snapshot), &PipelineConfig { tcp_mode: dataplane::pipeline::TcpMode::Loose, ..config(flows) });
        let mut now = 1;
        for chunk in conns.chunks(4096) {
            let opens: Vec<Vec<u8>> = chunk.iter().map(|(c, s)| craft::tcp(*c, *s, SYN)).collect();
            feed(&mut pipeline, &opens, &mut now);
        }
        let batch: Vec<Vec<u8>> = (0..4096)
            .map(|_| {
                let (c, s) = conns[rng.below(conns.len())];
                if rng.below(2) == 0 { craft::tcp(c, s, PSH | ACK) } else { craft::tcp(s, c, PSH | ACK) }
            })
            .collect();
        assert_eq!(pipeline.flow_count(), flows);
        group.throughput(Throughput::Elements(batch.len() as u64));
        group.bench_with_input(BenchmarkId::new("hit", flows), &batch, |b, batch| {
            b.iter(|| feed(&mut pipeline, batch, &mut now))
        });
    }

    let syns: Vec<Vec<u8>> = tuples(&addrs, 1 << 16, &mut rng).iter().map(|(c, s)| craft::tcp(*c, *s, SYN)).collect();
    group.throughput(Throughput::Elements(1));
    new_flow_bench(&mut group, "new_flow", &snapshot, &syns);
    new_flow_bench(&mut group, "new_flow_no_policy", &Arc::new(arc_swap::ArcSwap::from_pointee(NoPolicy)), &syns);
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
