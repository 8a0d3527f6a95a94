//! Classifier against DPDK's `rte_acl`, one rule list compiled for both
//! (`dataplane::snapshot::five_tuple`: per pod group, ingress rules of source prefix ×
//! protocol × destination port range, first match decides, the rest denied), looked up
//! over the same trace of 4096 IPv4 probes in the same process, one core.
//! palisade two ways: `Snapshot::classify` per probe (`palisade`), and
//! `classify_burst` in bursts of 64 (`palisade_burst`), on the `Snapshot::flattened`
//! copy the workers read; the summary adds both ways on the builder's chunked snapshot
//! (what this bench classified before flattening) for comparison. rte_acl: `rte_acl_classify` in
//! bursts of 64 over keys prepared beforehand (its best case; DPDK picks the widest
//! SIMD path).
//! Sizes: 1k rules (10 groups × 100), 10k rules (100 × 100), 100 pods per group.
//! Wall time; the closing lines print the rates, alternated in one run, each flat
//! palisade way's ratio to rte_acl (target ≥ 2×), then the chunked rates, then a floor:
//! two hashbrown probes per lookup (both ends resolved to pods, no policy at all), the
//! least any classifier that first finds the pods, as palisade's must, can spend.
//! EAL: `--no-pci --no-huge`, its own `--file-prefix`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dataplane::dpdk::acl::{Acl, AclKey, AclRule};
use dataplane::dpdk::Eal;
use dataplane::snapshot::five_tuple::FiveTupleSet;
use dataplane::snapshot::Snapshot;
use dataplane::verdict::Probe;
use dataplane::{Classifier, Verdict};
use std::net::IpAddr;
use std::time::{Duration, Instant};

const TRACE: usize = 4096;
const BURST: usize = 64;

/// Rate in M lookups/s of `round` (which looks up the whole trace once), over ~0.7 s.
fn rate(mut round: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut rounds = 0u64;
    while start.elapsed() < Duration::from_millis(700) {
        round();
        rounds += 1;
    }
    (rounds * TRACE as u64) as f64 / start.elapsed().as_secs_f64() / 1e6
}

fn bench(c: &mut Criterion) {
    let prefix = format!("palisade-bench-acl-{}", std::process::id());
    let eal = Eal::init(&["--no-pci", "--no-huge", "-m", "1024", "--file-prefix", &prefix, "--lcores", "0"]).expect("EAL init");
    let mut group = c.benchmark_group("acl");
    group.throughput(Throughput::Elements(TRACE as u64));
    group.measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500)).sample_size(20);
    let mut summary = Vec::new();
    for (groups, per_group) in [(10u32, 100u32), (100, 100)] {
        let set = FiveTupleSet::synthetic(groups, 100, per_group, 42);
        let rules = set.rules.len();
        let t = Instant::now();
        let acl = Acl::build(&eal, &format!("bench{rules}"), &AclRule::from_five_tuples(&set)).expect("rte_acl build");
        let acl_build = t.elapsed();
        let t = Instant::now();
        let chunked = set.snapshot(1);
        let snap_build = t.elapsed();
        let snapshot = chunked.flattened();
        let trace = set.trace(TRACE, 7);
        let probes: Vec<(IpAddr, IpAddr, u8, u16)> =
            trace.iter().map(|&(s, d, p, _, dp)| (IpAddr::V4(s), IpAddr::V4(d), p, dp)).collect();
        let keys: Vec<AclKey> = trace.iter().map(|&(s, d, p, sp, dp)| AclKey::new(p, s, d, sp, dp)).collect();
        let mut results = vec![0u32; TRACE];
        let flows: Vec<Probe> = probes.iter().map(|&(src, dst, proto, dst_port)| Probe { src, dst, proto, dst_port }).collect();
        let mut verdicts = vec![Verdict::NOT_POLICED; TRACE];

        let single = |snapshot: &Snapshot| {
            let mut allowed = 0u32;
            for &(s, d, p, port) in &probes {
                allowed += snapshot.classify(black_box(s), black_box(d), p, port).is_allow() as u32;
            }
            black_box(allowed);
        };
        let burst = |snapshot: &Snapshot, verdicts: &mut [Verdict]| {
            for (f, v) in flows.chunks(BURST).zip(verdicts.chunks_mut(BURST)) {
                snapshot.classify_burst(black_box(f), v);
            }
            black_box(verdicts.iter().filter(|v| v.is_allow()).count());
        };
        // The floor of any classifier that, like palisade's, first resolves both ends of
        // a probe to pods (for the pod's isolation, identity and node): two hash probes
        // per lookup (hashbrown, pod address → pod), and nothing else.
        let pods: hashbrown::HashMap<u32, u32> = (0..set.groups)
            .flat_map(|g| (0..set.pods_per_group).map(move |p| (g, p)))
            .map(|(g, p)| (u32::from(set.pod(g, p)), g * set.pods_per_group + p))
            .collect();
        let ends: Vec<(u32, u32)> = trace.iter().map(|&(s, d, ..)| (u32::from(s), u32::from(d))).collect();
        let mut floor_round = || {
            let mut found = 0u32;
            for &(s, d) in &ends {
                found += pods.get(&black_box(s)).is_some() as u32 + pods.get(&black_box(d)).is_some() as u32;
            }
            black_box(found);
        };
        let mut chunked_verdicts = vec![Verdict::NOT_POLICED; TRACE];
        let mut palisade_round = || single(&snapshot);
        let mut burst_round = || burst(&snapshot, &mut verdicts);
        let mut chunked_round = || single(&chunked);
        let mut chunked_burst_round = || burst(&chunked, &mut chunked_verdicts);
        let mut acl_round = || {
            for (k, r) in keys.chunks(BURST).zip(results.chunks_mut(BURST)) {
                acl.classify(black_box(k), r);
            }
            black_box(&results);
        };
        group.bench_function(BenchmarkId::new("palisade", rules), |b| b.iter(&mut palisade_round));
        group.bench_function(BenchmarkId::new("palisade_burst", rules), |b| b.iter(&mut burst_round));
        group.bench_function(BenchmarkId::new("rte_acl", rules), |b| b.iter(&mut acl_round));
        // Alternate the two a few times so that load on the machine hits both alike.
        let (mut p, mut pb, mut a, mut cp, mut cpb, mut fl) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..3 {
            fl.push(rate(&mut floor_round));
            p.push(rate(&mut palisade_round));
            pb.push(rate(&mut burst_round));
            a.push(rate(&mut acl_round));
            cp.push(rate(&mut chunked_round));
            cpb.push(rate(&mut chunked_burst_round));
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (p, pb, a, cp, cpb, fl) = (median(&mut p), median(&mut pb), median(&mut a), median(&mut cp), median(&mut cpb), median(&mut fl));
        summary.push(format!(
            "{rules} rules, {} pods, trace {TRACE}: M lookups/s palisade {p:.1}, palisade burst of {BURST} {pb:.1}, rte_acl burst of {BURST} {a:.1}; ratio to rte_acl: single {:.2}, burst {:.2} (build: snapshot {snap_build:?}, rte_acl {acl_build:?}; snapshot {} KiB)",
            groups * 100,
            p / a,
            pb / a,
            snapshot.stats().memory_bytes / 1024
        ));
        summary.push(format!(
            "{rules} rules, unflattened (chunked) snapshot: M lookups/s single {cp:.1}, burst {cpb:.1}; ratio to rte_acl: single {:.2}, burst {:.2}; flat/chunked: single {:.2}, burst {:.2}",
            cp / a,
            cpb / a,
            p / cp,
            pb / cpb
        ));
        summary.push(format!(
            "{rules} rules, floor of resolving both ends (two hashbrown probes per lookup, no policy): {fl:.1} M/s, {:.2} × rte_acl; 2 × rte_acl needs {:.1} M/s",
            fl / a,
            2.0 * a
        ));
    }
    group.finish();
    for line in summary {
        eprintln!("{line}");
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
