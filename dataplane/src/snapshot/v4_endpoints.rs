//! IPv4 address → pod endpoint or node: the first thing every lookup reads, twice.
//!
//! Two forms. The builder writes [`V4Endpoints::Records`]: a chunked [`FlatMap`] whose
//! value is the endpoint's whole record (32-byte slots, no second load), which a
//! change patches in place. A flattened copy holds [`V4Endpoints::Packed`], built once
//! and never written: pods with the same namespace, class and rule sets share one
//! *profile* (their record without the id), so a slot needs only the endpoint id and
//! the profile index, packed into a `u32` (8-byte slots), and the profiles are few
//! (one per identity at most: 1,200 at 10k pods) and stay in cache. At 10k pods the
//! slots shrink from 1 MiB to 256 KiB, which the lookups miss far less.
//!
//! A snapshot whose endpoint ids and profiles do not fit 31 bits together keeps the
//! record form.
//!
//! Pod addresses are handed out in blocks (a /24 or a /26 per node), so they usually
//! lie thick in one range. When the pods' range holds at least one pod address in
//! `DENSE_SPAN_PER_POD` addresses, the packed form keeps the pods' values in an array
//! indexed by address minus the range's first ([`DenseRange`]), and the map holds only
//! the rest (the nodes). A pod's lookup is then one load at a computed place: no hash,
//! and no probe chain, a loop a random stream mispredicts (14 % of the map lookups
//! at 50k pods); the array, 512 KiB at 50k pods, is also half the map's size.

use super::flat::FlatMap;
use super::{bits_for, End, Endpoint, NODE_BIT, NONE, NO_ENDPOINT};
use hashbrown::HashMap;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub(crate) enum V4Endpoints {
    /// As the builder writes it: the record in the slot; a node's address holds a
    /// marker record whose `id` is the node's with `NODE_BIT`.
    Records(FlatMap<u32, Endpoint>),
    /// A flattened copy's: see the module doc.
    Packed(PackedEndpoints),
}

/// At most this many addresses per pod address in the pods' range for a `DenseRange`
/// (4 B an address: 16 B a pod, against the map's 8-byte slots at load ≤ 1/2).
const DENSE_SPAN_PER_POD: u64 = 4;

/// Pod addresses `first..first + values.len() - 1` → slot value, `NONE` where no pod
/// is; the last value is a `NONE` that every address outside the range reads.
#[derive(Clone, Debug)]
struct DenseRange {
    first: u32,
    values: Arc<[u32]>,
}

impl DenseRange {
    /// The range of `pods` (address, value), if they lie thick enough in it.
    fn of(pods: &[(u32, u32)]) -> Option<DenseRange> {
        let first = pods.iter().map(|p| p.0).min()?;
        let last = pods.iter().map(|p| p.0).max()?;
        let span = u64::from(last - first) + 1;
        if span > pods.len() as u64 * DENSE_SPAN_PER_POD {
            return None;
        }
        let mut values = vec![NONE; span as usize + 1];
        for &(a, v) in pods {
            values[(a - first) as usize] = v;
        }
        Some(DenseRange { first, values: values.into() })
    }

    /// Where `a`'s value is: an address outside the range reads the last, `NONE`,
    /// clamped rather than branched on (`values` holds at least that one).
    #[inline(always)]
    fn slot(&self, a: u32) -> &u32 {
        &self.values[(a.wrapping_sub(self.first) as usize).min(self.values.len() - 1)]
    }

    fn iter(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.values.iter().enumerate().filter(|(_, &v)| v != NONE).map(|(i, &v)| (self.first.wrapping_add(i as u32), v))
    }
}

#[derive(Clone, Debug)]
pub(crate) struct PackedEndpoints {
    /// The pods' addresses → `id << profile_bits | profile`, when they lie thick in
    /// one range; `slots` then holds the other addresses.
    dense: Option<DenseRange>,
    /// Address → `id << profile_bits | profile`, or a node's id with `NODE_BIT`.
    slots: FlatMap<u32, u32>,
    profile_bits: u32,
    /// Records without their id (`id` is `NONE`).
    profiles: Arc<[Endpoint]>,
}

impl PackedEndpoints {
    fn dense_bytes(&self) -> usize {
        self.dense.as_ref().map_or(0, |d| d.values.len() * std::mem::size_of::<u32>())
    }

    /// `a`'s slot value, if it has one.
    #[inline(always)]
    fn value(&self, a: u32) -> Option<u32> {
        if let Some(d) = &self.dense {
            match *d.slot(a) {
                NONE => {}
                v => return Some(v),
            }
        }
        self.slots.get(a)
    }

    /// Every (address, slot value).
    fn values(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.dense.iter().flat_map(|d| d.iter()).chain(self.slots.iter())
    }

    /// A pod's slot value as (endpoint id, profile index).
    #[inline(always)]
    fn split(&self, v: u32) -> (u32, usize) {
        (v >> self.profile_bits, (v & ((1u32 << self.profile_bits) - 1)) as usize)
    }
}

impl V4Endpoints {
    /// A flattened copy with `f` applied to each pod's record (not to the nodes'
    /// markers), `endpoints` being the number of endpoint ids: packed when ids and
    /// profiles fit, else records.
    pub(crate) fn flattened(&self, endpoints: usize, f: impl Fn(Endpoint) -> Endpoint) -> V4Endpoints {
        self.flattened_in(31, endpoints, f)
    }

    /// `flattened`, packing only into `bits` bits (tests force the record form with it).
    fn flattened_in(&self, bits_limit: u32, endpoints: usize, f: impl Fn(Endpoint) -> Endpoint) -> V4Endpoints {
        let records: Vec<(u32, Endpoint)> =
            self.records().map(|(a, e)| (a, if e.id & NODE_BIT == 0 { f(e) } else { e })).collect();
        // Each pod record's profile (`NONE` for nodes' markers), found in one pass.
        let mut profile_ids: HashMap<Endpoint, u32> = HashMap::new();
        let mut profiles: Vec<Endpoint> = Vec::new();
        let profile_of: Vec<u32> = records
            .iter()
            .map(|(_, e)| match e.id & NODE_BIT {
                0 => *profile_ids.entry(Endpoint { id: NONE, ..*e }).or_insert_with_key(|profile| {
                    profiles.push(*profile);
                    profiles.len() as u32 - 1
                }),
                _ => NONE,
            })
            .collect();
        let profile_bits = bits_for(profiles.len());
        if bits_for(endpoints) + profile_bits > bits_limit {
            return V4Endpoints::Records(FlatMap::flat_from(NO_ENDPOINT, records));
        }
        let (pods, others): (Vec<(u32, u32)>, Vec<(u32, u32)>) = records
            .into_iter()
            .zip(profile_of)
            .map(|((a, e), p)| (a, if p == NONE { e.id } else { (e.id << profile_bits) | p }))
            .partition(|&(_, v)| v & NODE_BIT == 0);
        let (dense, slots) = match DenseRange::of(&pods) {
            Some(d) => (Some(d), others),
            None => (None, pods.into_iter().chain(others).collect()),
        };
        V4Endpoints::Packed(PackedEndpoints { dense, slots: FlatMap::flat_from(NONE, slots), profile_bits, profiles: profiles.into() })
    }

    /// Every `(address, record)`, nodes' markers included.
    fn records(&self) -> Box<dyn Iterator<Item = (u32, Endpoint)> + '_> {
        match self {
            V4Endpoints::Records(m) => Box::new(m.iter()),
            V4Endpoints::Packed(p) => Box::new(p.values().map(|(a, v)| match v & NODE_BIT {
                0 => {
                    let (id, profile) = p.split(v);
                    (a, Endpoint { id, ..p.profiles[profile] })
                }
                _ => (a, Endpoint { id: v, ..NO_ENDPOINT }),
            })),
        }
    }

    /// The builder's map. A packed map is never written: only flattened copies hold
    /// one, and no builder owns those.
    pub(crate) fn records_mut(&mut self) -> &mut FlatMap<u32, Endpoint> {
        match self {
            V4Endpoints::Records(m) => m,
            V4Endpoints::Packed(_) => panic!("a packed address map (a flattened copy's) is read-only"),
        }
    }

    #[inline(always)]
    pub(crate) fn end(&self, a: u32) -> End<'_> {
        match self {
            // The record is in the slot: no second load.
            V4Endpoints::Records(m) => match m.get_ref(a) {
                None => End::Unknown,
                Some(e) if e.id & NODE_BIT != 0 => End::Node(e.id & !NODE_BIT),
                Some(e) => End::Pod(e.id, e),
            },
            V4Endpoints::Packed(p) => match p.value(a) {
                None => End::Unknown,
                Some(v) if v & NODE_BIT != 0 => End::Node(v & !NODE_BIT),
                Some(v) => {
                    let (id, profile) = p.split(v);
                    match p.profiles.get(profile) {
                        Some(e) => End::Pod(id, e),
                        None => End::Unknown,
                    }
                }
            },
        }
    }

    /// Start loading the slot `end(a)` reads.
    #[inline(always)]
    pub(crate) fn prefetch(&self, a: u32) {
        match self {
            V4Endpoints::Records(m) => m.prefetch(a),
            V4Endpoints::Packed(p) => match &p.dense {
                // A pod's value is in the range, which is all a pod's lookup reads.
                Some(d) => crate::dpdk::prefetch::prefetch_read(d.slot(a)),
                None => p.slots.prefetch(a),
            },
        }
    }

    /// Addresses mapped to pods.
    pub(crate) fn pod_addresses(&self) -> usize {
        match self {
            V4Endpoints::Records(m) => m.iter().filter(|(_, e)| e.id & NODE_BIT == 0).count(),
            V4Endpoints::Packed(p) => p.values().filter(|(_, v)| v & NODE_BIT == 0).count(),
        }
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            V4Endpoints::Records(m) => m.heap_bytes(),
            V4Endpoints::Packed(p) => p.slots.heap_bytes() + p.dense_bytes() + p.profiles.len() * std::mem::size_of::<Endpoint>(),
        }
    }

    /// About how many bytes a lookup may touch (see `Snapshot::lookup_bytes`).
    pub(crate) fn lookup_bytes(&self) -> usize {
        match self {
            V4Endpoints::Records(m) => m.len() * 2 * std::mem::size_of::<(u32, Endpoint)>(),
            V4Endpoints::Packed(p) => {
                p.slots.len() * 2 * std::mem::size_of::<(u32, u32)>()
                    + p.dense_bytes()
                    + p.profiles.len() * std::mem::size_of::<Endpoint>()
            }
        }
    }

    pub(crate) fn is_flat(&self) -> bool {
        match self {
            V4Endpoints::Records(m) => m.is_flat(),
            V4Endpoints::Packed(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What `end` tells, with the record's fields and without its `id` (`End::Pod`
    /// carries the id).
    fn seen(m: &V4Endpoints, a: u32) -> (u8, u32, Option<Endpoint>) {
        match m.end(a) {
            End::Unknown => (0, 0, None),
            End::Node(n) => (1, n, None),
            End::Pod(id, e) => (2, id, Some(Endpoint { id: NONE, ..*e })),
        }
    }

    proptest! {
        /// Packed or kept as records, a flattened map resolves every address as the
        /// builder's map does, with `f` applied to pods' records only.
        #[test]
        fn flattened_maps_resolve_like_the_records(pods in proptest::collection::vec((0u32..64, 0u32..6, 0u32..3), 0..80), nodes in proptest::collection::vec(0u32..64, 0..6)) {
            let mut m = FlatMap::new(NO_ENDPOINT);
            for (k, &(a, ns, set)) in pods.iter().enumerate() {
                let e = Endpoint { id: k as u32, namespace: ns, identity: ns * 2, ingress: set, egress: NONE, ingress_default: 7, egress_default: 0 };
                m.insert(a, e);
            }
            // Nodes among and beyond the pods' addresses: a node in a gap of the pods'
            // range is read from the map.
            for (n, &a) in nodes.iter().enumerate() {
                m.get_or_insert(a + 40, Endpoint { id: n as u32 | NODE_BIT, ..NO_ENDPOINT });
            }
            let records = V4Endpoints::Records(m);
            let f = |e: Endpoint| Endpoint { identity: e.identity + 1, ..e };
            let packed = records.flattened(pods.len(), f);
            let kept = records.flattened_in(2, pods.len(), f);
            prop_assert!(matches!(packed, V4Endpoints::Packed(_)));
            prop_assert_eq!(matches!(kept, V4Endpoints::Records(_)), pods.len() > 1);
            for a in (0..110).chain([u32::MAX, u32::MAX - 1, 1 << 31]) {
                let (kind, id, record) = seen(&records, a);
                let want = (kind, id, record.map(f));
                prop_assert_eq!(seen(&packed, a), want, "packed {}", a);
                prop_assert_eq!(seen(&kept, a), want, "records {}", a);
                // Flattening a flattened map changes nothing.
                prop_assert_eq!(seen(&packed.flattened(pods.len(), |e| e), a), want, "twice {}", a);
            }
            prop_assert_eq!(packed.pod_addresses(), records.pod_addresses());
        }
    }

    fn pod(id: u32) -> Endpoint {
        Endpoint { id, namespace: id % 3, identity: id % 5, ingress: id % 2, egress: NONE, ingress_default: 1, egress_default: 2 }
    }

    /// The first address and the length (with the `NONE` past it) of a packed map's range.
    fn dense_of(m: &V4Endpoints) -> Option<(u32, usize)> {
        match m {
            V4Endpoints::Packed(p) => p.dense.as_ref().map(|d| (d.first, d.values.len())),
            V4Endpoints::Records(_) => None,
        }
    }

    /// Pods handed out in blocks (two /24s, 100 pods each) are read from one range,
    /// with the addresses around it, a node in a gap of it and a node far from it
    /// read as the map has them.
    #[test]
    fn pods_in_blocks_are_read_from_a_range() {
        let mut m = FlatMap::new(NO_ENDPOINT);
        let mut id = 0;
        for block in [0x0A00_0000u32, 0x0A00_0100] {
            for host in 2..102 {
                m.insert(block | host, pod(id));
                id += 1;
            }
        }
        m.insert(0x0A00_00C8, Endpoint { id: 7 | NODE_BIT, ..NO_ENDPOINT });
        m.insert(0xC0A8_0001, Endpoint { id: 8 | NODE_BIT, ..NO_ENDPOINT });
        let records = V4Endpoints::Records(m);
        let packed = records.flattened(200, |e| e);
        // 10.0.0.2 ..= 10.0.1.101: 356 addresses and the `NONE` past them.
        assert_eq!(dense_of(&packed), Some((0x0A00_0002, 357)));
        assert_eq!(seen(&packed, 0x0A00_0002), (2, 0, Some(Endpoint { id: NONE, ..pod(0) })));
        assert_eq!(seen(&packed, 0x0A00_0165), (2, 199, Some(Endpoint { id: NONE, ..pod(199) })));
        assert_eq!(seen(&packed, 0x0A00_00C8), (1, 7, None));
        assert_eq!(seen(&packed, 0xC0A8_0001), (1, 8, None));
        for outside in [0x0A00_0001, 0x0A00_0066, 0x0A00_0166, 0, u32::MAX, 0x0A00_0002 + 357] {
            assert_eq!(seen(&packed, outside), (0, 0, None), "{outside:#x}");
        }
        for a in (0x0A00_0000..0x0A00_0200).chain([0xC0A8_0001]) {
            assert_eq!(seen(&packed, a), seen(&records, a), "{a:#x}");
        }
        assert_eq!(packed.pod_addresses(), 200);
        // Flattening it again keeps the range.
        assert_eq!(dense_of(&packed.flattened(200, |e| e)), Some((0x0A00_0002, 357)));
    }

    /// Pods scattered more thinly than one in `DENSE_SPAN_PER_POD` addresses keep the
    /// map.
    #[test]
    fn scattered_pods_keep_the_map() {
        let mut m = FlatMap::new(NO_ENDPOINT);
        for id in 0..50 {
            m.insert(0x0A00_0000 + id * 5, pod(id));
        }
        let records = V4Endpoints::Records(m);
        let packed = records.flattened(50, |e| e);
        assert!(matches!(packed, V4Endpoints::Packed(_)));
        assert_eq!(dense_of(&packed), None);
        for a in 0x0A00_0000 - 2..0x0A00_0000 + 260 {
            assert_eq!(seen(&packed, a), seen(&records, a), "{a:#x}");
        }
        // One pod in every four addresses is thick enough: 197 addresses for 50 pods.
        let mut m = FlatMap::new(NO_ENDPOINT);
        for id in 0..50 {
            m.insert(0x0A00_0000 + id * 4, pod(id));
        }
        assert_eq!(dense_of(&V4Endpoints::Records(m).flattened(50, |e| e)), Some((0x0A00_0000, 198)));
    }
}
