//! Classify rate of the compiled snapshot at 1k / 10k / 50k pods × 100 / 1k / 10k
//! policies (`control::compile::synthetic` clusters), on one core, over a fixed batch
//! of probes: mostly pod to pod, some from and to outside addresses, TCP and UDP on
//! the ports the policies use. Two ways: `classify` one probe at a time (`single`),
//! and `classify_burst` over bursts of 32 (`burst`, what a worker's rx burst of new
//! flows would hand it); each on two snapshots of the same policy, A/B in one run:
//! `chunked`, as the incremental compiler publishes it after a change (arrays in
//! shared copy-on-write chunks), and `flat`, its `Snapshot::flattened` copy (what the
//! control loop publishes in its place once the source is quiet); and `whole`, the
//! whole compile's snapshot (chunked too: what this bench measured before flattening
//! existed, for A/B against older binaries). Also prints the flatten time and the
//! bytes the flat copy adds. Target: ≥ 20 M classify/s at 10k
//! policies.
//! Wall time (criterion's throughput and a quick alternating loop printed beside it):
//! other load inflates it, so compare the two figures of one line.
//! A positional argument filters sizes as criterion does, and also skips building
//! the clusters of sizes it excludes (`cargo bench --bench classify -- 10000pods_10000`).
//! `PALISADE_CLASSIFY_DISTINCT=K` makes the batch its first K probes over and over:
//! K = 1 is a lookup with every branch predicted and every line in L1, a few hundred
//! keeps the lines in cache but not the branch history; the gap to the full batch
//! (4096 distinct probes) is what cache misses cost (benches/README.md, "Policy
//! lookup rate at 10k policies").

use control::compile::incremental::{Incremental, ObjectChange, Order};
use control::compile::{compile, synthetic};
use control::model::Model;
use control::stream::Object;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dataplane::snapshot::Snapshot;
use dataplane::verdict::Probe;
use dataplane::{Classifier, Verdict};
use std::net::IpAddr;
use std::time::{Duration, Instant};

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

/// `PALISADE_CLASSIFY_DISTINCT` (1..=BATCH): the number of distinct probes the batch repeats.
fn distinct() -> Option<usize> {
    let v = std::env::var("PALISADE_CLASSIFY_DISTINCT").ok()?;
    match v.parse::<usize>() {
        Ok(k) if (1..=BATCH).contains(&k) => Some(k),
        _ => panic!("PALISADE_CLASSIFY_DISTINCT={v:?}: want a count of distinct probes from 1 to {BATCH}"),
    }
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

/// The snapshot the incremental compiler publishes for `cluster` after one change (pod
/// 0's `app` label), chunked as published.
fn after_a_change(cluster: &control::cluster::Cluster) -> Snapshot {
    let mut inc = Incremental::new(cluster.clone(), Order::BySource).expect("synthetic cluster is valid");
    let p = &cluster.pods[0];
    let mut pod = p.object.clone();
    pod.metadata.labels.get_or_insert_with(Default::default).insert("app".into(), "moved".into());
    inc.apply([ObjectChange::Upsert(Object::Pod(pod), p.source.clone())]).expect("valid change");
    inc.snapshot(2)
}

/// `classify` over the batch, one probe at a time: the allowed count.
fn single(snapshot: &Snapshot, batch: &[Probe]) -> u32 {
    let mut allow = 0u32;
    for p in batch {
        allow += snapshot.classify(black_box(p.src), black_box(p.dst), p.proto, p.dst_port).is_allow() as u32;
    }
    allow
}

/// `classify_burst` over the batch in bursts of `BURST`: the allowed count.
fn burst(snapshot: &Snapshot, batch: &[Probe]) -> u32 {
    let mut out = [Verdict::NOT_POLICED; BURST];
    let mut allow = 0u32;
    for chunk in batch.chunks(BURST) {
        snapshot.classify_burst(black_box(chunk), &mut out);
        allow += out[..chunk.len()].iter().map(|v| v.is_allow() as u32).sum::<u32>();
    }
    allow
}

fn bench(c: &mut Criterion) {
    let filters = size_filters();
    let distinct = distinct();
    let mut g = c.benchmark_group("classify");
    g.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut summary = Vec::new();
    for (pods, policies) in SIZES {
        let id = format!("{pods}pods_{policies}policies");
        let names = ["chunked_single", "chunked_burst", "flat_single", "flat_burst", "whole_single", "whole_burst"].map(|w| format!("classify/{w}/{id}")).join(" ");
        if !filters.is_empty() && !filters.iter().any(|f| names.contains(f.as_str())) {
            continue;
        }
        let cluster = synthetic::cluster(pods, policies, 42);
        let model = Model::resolve(&cluster).expect("synthetic cluster resolves");
        let chunked = after_a_change(&cluster);
        let whole = compile(&model, 1);
        let mut times = Vec::new();
        let mut flat = chunked.flattened();
        for _ in 0..3 {
            let t = Instant::now();
            flat = black_box(chunked.flattened());
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let flatten_ms = median(times);
        let mut batch: Vec<Probe> =
            probes(&model).into_iter().map(|(src, dst, proto, dst_port)| Probe { src, dst, proto, dst_port }).collect();
        if let Some(k) = distinct {
            for i in k..batch.len() {
                batch[i] = batch[i % k];
            }
        }
        let (st, fst) = (chunked.stats(), flat.stats());
        eprintln!(
            "snapshot {pods} pods x {policies} policies: {} rule sets, {} table entries ({} flat: identities merged into classes), {} v4 segments, {} port lists of {} entries, {} KiB chunked; flatten {flatten_ms:.1} ms, flat copy {} KiB more",
            st.rule_sets, st.identity_entries, fst.identity_entries, st.segments_v4, st.port_lists, st.port_entries, st.memory_bytes / 1024, fst.memory_bytes / 1024
        );
        let allowed = single(&chunked, &batch);
        assert_eq!(single(&flat, &batch), allowed, "the flat copy decides like the chunked snapshot");
        let ways: [(&str, &Snapshot, fn(&Snapshot, &[Probe]) -> u32); 6] = [
            ("chunked_single", &chunked, single),
            ("flat_single", &flat, single),
            ("whole_single", &whole, single),
            ("chunked_burst", &chunked, burst),
            ("flat_burst", &flat, burst),
            ("whole_burst", &whole, burst),
        ];
        for (what, snapshot, way) in ways {
            g.bench_function(BenchmarkId::new(what, &id), |b| b.iter(|| black_box(way(snapshot, &batch))));
        }
        // A quick wall-clock rate beside criterion's figure (this kernel's per-thread CPU
        // clock reads zero, so wall time it is: note the load average with the figure),
        // the ways alternated so that load on the machine hits all alike.
        let mut rates = [(); 6].map(|_| Vec::new());
        for _ in 0..3 {
            for (r, (_, snapshot, way)) in rates.iter_mut().zip(ways) {
                r.push(rate(|| {
                    black_box(way(snapshot, &batch));
                }));
            }
        }
        let [cs, fs, ws, cb, fb, wb] = rates.map(median);
        summary.push(format!(
            "classify {pods} pods x {policies} policies: {allowed}/{BATCH} probes allowed{}; M classify/s wall clock: single chunked {cs:.1} ({:.1} ns each) flat {fs:.1} ({:.1} ns) whole {ws:.1}, flat/chunked {:.2} flat/whole {:.2}; burst of {BURST} chunked {cb:.1} ({:.1} ns) flat {fb:.1} ({:.1} ns) whole {wb:.1}, flat/chunked {:.2} flat/whole {:.2}; flatten {flatten_ms:.1} ms, +{} KiB",
            distinct.map_or(String::new(), |k| format!(" ({k} distinct, repeated)")),
            1e3 / cs,
            1e3 / fs,
            fs / cs,
            fs / ws,
            1e3 / cb,
            1e3 / fb,
            fb / cb,
            fb / wb,
            fst.memory_bytes / 1024
        ));
    }
    g.finish();
    for line in summary {
        eprintln!("{line}");
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
