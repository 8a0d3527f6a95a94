//! Flow lookup, hit and miss, at 10k and 1M flows: palisade's `FlowTable` (open
//! addressing over a slot array into a preallocated pool) side by side with hashbrown's
//! `HashMap` (its default hasher) and `HashTable` (hashbrown's raw table, fed the same
//! seeded hash as `FlowTable`, so only the table layout differs). Each iteration looks
//! up a batch of 4096 keys in random order, hash included. At 1k flows also palisade's
//! table sized for 1M (`palisade run`'s default): `palisade_of_1M/hit/1000`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dataplane::flow::key::v4_mapped;
use dataplane::flow::{FlowEntry, FlowKey, FlowTable, FlowTimeouts, Side, TcpState};
use dataplane::Verdict;
use hashbrown::{HashMap, HashTable};
use std::time::Duration;

const BATCH: usize = 4096;
const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

fn key(n: u32) -> FlowKey {
    let b = n.to_be_bytes();
    let src = v4_mapped([10, b[1], b[2], b[3]]);
    let dst = v4_mapped([172, 16, b[3], b[2]]);
    FlowKey::new(&src, 1024 + (n % 50_000) as u16, &dst, 443, 6, 0).0
}

/// A random order over `0..n` (xorshift), `BATCH` long.
fn probes(n: u32, offset: u32) -> Vec<FlowKey> {
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    (0..BATCH)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            key(offset + (x % u64::from(n)) as u32)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("flow_lookup");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    for n in [1_000u32, 10_000, 1_000_000] {
        let hits = probes(n, 0);
        let misses = probes(n, n);
        let entry = FlowEntry::new(Verdict::NOT_POLICED, 1, Side::Lo, TcpState::Established, 0);

        let capacities: &[(usize, &str)] = if n == 1_000 { &[(1_000, "palisade"), (1 << 20, "palisade_of_1M")] } else { &[(n as usize, "palisade")] };
        for &(capacity, name) in capacities {
            let mut table = FlowTable::new(capacity, FlowTimeouts::default().to_ticks(1), SEED);
            for i in 0..n {
                let k = key(i);
                table.insert(k, table.hash(&k), entry).unwrap();
            }
            for (kind, keys) in [("hit", &hits), ("miss", &misses)] {
                group.bench_with_input(BenchmarkId::new(format!("{name}/{kind}"), n), keys, |b, keys| {
                    b.iter(|| {
                        let mut found = 0u32;
                        for k in keys {
                            if let Some(i) = table.find(k, table.hash(k)) {
                                found += table.entry(i).generation;
                            }
                        }
                        black_box(found)
                    })
                });
            }
        }

        let mut raw: HashTable<(FlowKey, FlowEntry)> = HashTable::with_capacity(n as usize);
        let hasher = |k: &FlowKey| k.hash64(SEED);
        for i in 0..n {
            let k = key(i);
            raw.insert_unique(hasher(&k), (k, entry), |(k, _)| hasher(k));
        }
        for (kind, keys) in [("hit", &hits), ("miss", &misses)] {
            group.bench_with_input(BenchmarkId::new(format!("hashbrown_table/{kind}"), n), keys, |b, keys| {
                b.iter(|| {
                    let mut found = 0u32;
                    for k in keys {
                        if let Some((_, e)) = raw.find(hasher(k), |(q, _)| q == k) {
                            found += e.generation;
                        }
                    }
                    black_box(found)
                })
            });
        }
        drop(raw);

        let mut map: HashMap<FlowKey, FlowEntry> = HashMap::with_capacity(n as usize);
        for i in 0..n {
            map.insert(key(i), entry);
        }
        for (kind, keys) in [("hit", &hits), ("miss", &misses)] {
            group.bench_with_input(BenchmarkId::new(format!("hashbrown_map/{kind}"), n), keys, |b, keys| {
                b.iter(|| {
                    let mut found = 0u32;
                    for k in keys {
                        if let Some(e) = map.get(k) {
                            found += e.generation;
                        }
                    }
                    black_box(found)
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
