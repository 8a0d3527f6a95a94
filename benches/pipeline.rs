//! The stateful pipeline per packet, one core, no DPDK, over frames in bursts of 32
//! (`begin_burst` per burst, aging at its default cadence), on the compiled snapshot of
//! a synthetic cluster with 10k pods and 10k policies (`control::compile::synthetic`).
//! Each path is measured two ways in the same run: `admit` frame by frame, and
//! `admit_burst` (parse and hash the burst, prefetch slots then records, decide in order).
//!
//! - `hit_admit`, `hit_burst`: established TCP flows (10k and 1M in the table), 4096
//!   data segments (54-byte frames, no payload) in random order, both directions: parse + flow
//!   lookup + counters. Target ≤ 50 ns per packet. `1000-of-1M`: 1k flows in a table
//!   sized for 1M (`palisade run`'s default, what the e2e established 1k-flow points run).
//! - `new_flow`, `new_flow_burst`: SYNs on tuples never seen (miss, classify, insert),
//!   pod to pod on the ports the policies use, allowed and denied mixed. Target ≥ 3 Mpps.
//! - `new_flow_no_policy`: the same SYNs with a classifier that answers at once
//!   (`Verdict::NOT_POLICED`): the pipeline's own share of the new-flow cost.
//!
//! Time is wall time: this kernel reports zeros in `/proc/thread-self/schedstat`, and
//! std has no per-thread CPU clock. Other load on the machine inflates the figures, so
//! compare the two feeds of one run, and note the load average with them.

use control::compile::synthetic::Rng;
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

/// How a bench hands frames to the pipeline.
#[derive(Clone, Copy)]
enum Feed {
    /// `admit`, frame by frame.
    PerFrame,
    /// `admit_burst`, a burst at a time.
    Burst,
}

/// SYNs on fresh tuples: a fresh table per pass over `syns`, so every SYN is a miss
/// (table construction untimed).
fn new_flow_bench<S: Classifier>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    snapshot: &Arc<arc_swap::ArcSwap<S>>,
    syns: &[Vec<u8>],
    how: Feed,
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
                black_box(feed(&mut pipeline, &syns[..n], &mut now, how));
                total += start.elapsed();
                done += n as u64;
            }
            total
        })
    });
}

/// Run `frames` through `pipeline` in bursts; returns how many were forwarded.
fn feed<S: Classifier>(pipeline: &mut Pipeline<S>, frames: &[Vec<u8>], now: &mut u64, how: Feed) -> usize {
    let mut forwarded = 0;
    let mut verdicts = [false; BURST];
    for burst in frames.chunks(BURST) {
        *now += 1000;
        pipeline.begin_burst(*now);
        match how {
            Feed::PerFrame => {
                for frame in burst {
                    forwarded += usize::from(pipeline.admit(black_box(frame), 0));
                }
            }
            Feed::Burst => {
                let mut views: [&[u8]; BURST] = [&[]; BURST];
                for (view, frame) in views.iter_mut().zip(burst) {
                    *view = black_box(frame.as_slice());
                }
                let verdicts = &mut verdicts[..burst.len()];
                pipeline.admit_burst(&views[..burst.len()], 0, verdicts);
                forwarded += verdicts.iter().filter(|&&v| v).count();
            }
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

    for (flows, capacity) in [(1_000usize, 1 << 20), (10_000, 10_000), (1_000_000, 1_000_000)] {
        let conns = tuples(&addrs, flows, &mut rng);
        // Loose mode so one data segment per tuple opens its flow, in either verdict.
        let mut pipeline = Pipeline::new(Arc::clone(&snapshot), &PipelineConfig { tcp_mode: dataplane::pipeline::TcpMode::Loose, ..config(capacity) });
        let mut now = 1;
        for chunk in conns.chunks(4096) {
            let opens: Vec<Vec<u8>> = chunk.iter().map(|(c, s)| craft::tcp(*c, *s, SYN)).collect();
            feed(&mut pipeline, &opens, &mut now, Feed::PerFrame);
        }
        let batch: Vec<Vec<u8>> = (0..4096)
            .map(|_| {
                let (c, s) = conns[rng.below(conns.len())];
                if rng.below(2) == 0 { craft::tcp(c, s, PSH | ACK) } else { craft::tcp(s, c, PSH | ACK) }
            })
            .collect();
        assert_eq!(pipeline.flow_count(), flows);
        group.throughput(Throughput::Elements(batch.len() as u64));
        for (name, how) in [("hit_admit", Feed::PerFrame), ("hit_burst", Feed::Burst)] {
            let param = if capacity == flows { flows.to_string() } else { format!("{flows}-of-{}M", capacity >> 20) };
            group.bench_with_input(BenchmarkId::new(name, param), &batch, |b, batch| {
                b.iter(|| feed(&mut pipeline, batch, &mut now, how))
            });
        }
    }

    let syns: Vec<Vec<u8>> = tuples(&addrs, 1 << 16, &mut rng).iter().map(|(c, s)| craft::tcp(*c, *s, SYN)).collect();
    group.throughput(Throughput::Elements(1));
    new_flow_bench(&mut group, "new_flow", &snapshot, &syns, Feed::PerFrame);
    new_flow_bench(&mut group, "new_flow_burst", &snapshot, &syns, Feed::Burst);
    let no_policy = Arc::new(arc_swap::ArcSwap::from_pointee(NoPolicy));
    new_flow_bench(&mut group, "new_flow_no_policy", &no_policy, &syns, Feed::PerFrame);
    new_flow_bench(&mut group, "new_flow_no_policy_burst", &no_policy, &syns, Feed::Burst);
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
