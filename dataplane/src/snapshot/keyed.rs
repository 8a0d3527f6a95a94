//! The rule sets' identity and namespace tables: (rule set, remote identity) and (rule
//! set, remote namespace) → port list, what the selector part of a lookup reads.
//!
//! Two forms. The builder writes [`KeyedTables::Shared`]: one chunked [`FlatMap`]
//! keyed by `table_key`, which a change patches in place (16-byte slots). A flattened
//! copy, whose identities are merged into classes (`flatten`), holds
//! [`KeyedTables::Packed`] instead, built once and never written: at 10k pods × 10k
//! policies the shared map, even keyed by class, spans 2 MiB of slots and is what a
//! lookup misses most (packing it took the flat burst rate from 13.5 to 18.5 M/s), so
//! the packed form gives each half what its keys allow:
//! - identity entries in a [`RankedTable`], rule sets by classes: a presence bit per
//!   (rule set, class) and the present cells' lists (start and length packed in a
//!   `u32`) found by rank. Nearly every identity lookup of a large cluster misses, and
//!   a miss reads one bit where a hash map walks a probe chain that a random stream
//!   mispredicts (flat burst at 10k pods × 10k policies: 17.8 → 24.7 M/s). When
//!   classes are many and each rule set names few of them, the bitmap would outweigh
//!   a map (`RANKED_BYTES_PER_ENTRY`), and the entries go to a [`FlatMap`] of 8-byte
//!   slots instead, `u32` key (rule set and class side by side) and packed list;
//! - namespace entries in a dense rule set × namespace array of packed lists (namespace
//!   ids are few and dense), indexed without a hash or a probe chain.
//!
//! A snapshot whose ids or lists do not fit those widths, or whose namespace array
//! would be mostly empty (`DENSE_CELLS_PER_ENTRY`), keeps the shared form.

use super::flat::FlatMap;
use super::ranked::RankedTable;
use super::{bits_for, table_key, ListRef, TableKind};

/// A packed cell or value: a port list as `start << LEN_BITS | length`.
type Packed = u32;

const LEN_BITS: u32 = 12;
/// A dense namespace cell without an entry (the lookup falls back to the base list).
const ABSENT: Packed = u32::MAX;

/// A dense namespace array is used while it has at most this many cells per entry
/// (plus a floor for small snapshots): at 10k pods × 10k policies 1193 rule sets ×
/// 41 namespaces for 17,494 entries (2.8), at 50k 4624 × 201 for 149,755 (6.2).
const DENSE_CELLS_PER_ENTRY: usize = 8;
const DENSE_FLOOR: usize = 1 << 16;

#[derive(Clone, Debug)]
pub(crate) enum KeyedTables {
    /// As the builder writes them: one map keyed by `table_key`.
    Shared(FlatMap<u64, ListRef>),
    /// A flattened copy's: see the module doc.
    Packed(PackedTables),
}

#[derive(Clone, Debug)]
pub(crate) struct PackedTables {
    /// (rule set, class) → packed list.
    identity: IdentityTable,
    /// `namespace[set * namespaces + ns]`: packed list or `ABSENT`.
    namespace: std::sync::Arc<[Packed]>,
    namespaces: u32,
    namespace_entries: usize,
}

/// A flattened copy's identity entries: (rule set, class) → packed list.
#[derive(Clone, Debug)]
enum IdentityTable {
    /// Rows are rule sets, columns classes (`ranked`): a miss, what nearly every
    /// lookup of a large cluster is, reads one bit instead of walking a probe chain.
    Ranked(RankedTable),
    /// `set << class_bits | class` → packed list, when the bitmap would outweigh the
    /// slots (`RANKED_BYTES_PER_ENTRY`: many classes, few of them named per set).
    Hashed { map: FlatMap<u32, Packed>, class_bits: u32 },
}

/// The ranked form is used while its bitmap takes at most this many bytes per entry
/// (what the hashed form's 8-byte slots at half load take), or `RANKED_FLOOR` in all:
/// at 10k pods × 10k policies 1193 rule sets × 400 classes (130 KiB) for 41,606
/// entries, at 50k 4624 × 1651 (1.8 MiB) for 573,032.
const RANKED_BYTES_PER_ENTRY: usize = 16;
const RANKED_FLOOR: usize = 1 << 16;

#[inline(always)]
fn pack(list: ListRef) -> Option<Packed> {
    let len = list.1.checked_sub(list.0)?;
    let packed = u64::from(list.0) << LEN_BITS | u64::from(len);
    (len < 1 << LEN_BITS && packed < u64::from(ABSENT)).then_some(packed as Packed)
}

#[inline(always)]
fn unpack(p: Packed) -> ListRef {
    let start = p >> LEN_BITS;
    (start, start + (p & ((1 << LEN_BITS) - 1)))
}

impl KeyedTables {
    /// The tables of a flattened copy: packed when every id and list fits (see the
    /// module doc), else one flat shared map. `identity` entries are (rule set, class,
    /// list), `namespace` entries (rule set, namespace, list); `sets` rule sets.
    pub(crate) fn flat(sets: usize, identity: &[(u32, u32, ListRef)], namespace: &[(u32, u32, ListRef)]) -> KeyedTables {
        Self::flat_in(sets, identity, namespace, RANKED_BYTES_PER_ENTRY)
    }

    /// `flat`, the ranked identity table allowed `ranked_bytes_per_entry` (tests force
    /// the hashed form with 0).
    fn flat_in(
        sets: usize,
        identity: &[(u32, u32, ListRef)],
        namespace: &[(u32, u32, ListRef)],
        ranked_bytes_per_entry: usize,
    ) -> KeyedTables {
        PackedTables::new(sets, identity, namespace, ranked_bytes_per_entry).map(KeyedTables::Packed).unwrap_or_else(|| {
            let all = identity
                .iter()
                .map(|&(set, class, list)| (table_key(set, TableKind::Identity, class), list))
                .chain(namespace.iter().map(|&(set, ns, list)| (table_key(set, TableKind::Namespace, ns), list)))
                .collect();
            KeyedTables::Shared(FlatMap::flat_from((0, 0), all))
        })
    }

    /// The builder's map. A packed table is never written: only flattened copies hold
    /// one, and no builder owns those.
    pub(crate) fn shared_mut(&mut self) -> &mut FlatMap<u64, ListRef> {
        match self {
            KeyedTables::Shared(m) => m,
            KeyedTables::Packed(_) => panic!("a packed identity table (a flattened copy's) is read-only"),
        }
    }

    /// Every entry as `(table_key, list)`.
    pub(crate) fn entries(&self) -> Vec<(u64, ListRef)> {
        match self {
            KeyedTables::Shared(m) => m.iter().collect(),
            KeyedTables::Packed(p) => p.entries(),
        }
    }

    #[inline(always)]
    pub(crate) fn identity(&self, set: u32, id: u32) -> Option<ListRef> {
        match self {
            KeyedTables::Shared(m) => m.get(table_key(set, TableKind::Identity, id)),
            KeyedTables::Packed(p) => p.identity(set, id).map(unpack),
        }
    }

    #[cfg(test)]
    pub(crate) fn namespace(&self, set: u32, ns: u32) -> Option<ListRef> {
        match self {
            KeyedTables::Shared(m) => m.get(table_key(set, TableKind::Namespace, ns)),
            KeyedTables::Packed(p) => match p.namespace_cell(set, ns).copied() {
                None | Some(ABSENT) => None,
                Some(c) => Some(unpack(c)),
            },
        }
    }

    /// `namespace(set, ns)`, else `fallback`; for the dense array without a branch on
    /// whether the cell holds an entry.
    #[inline(always)]
    pub(crate) fn namespace_or(&self, set: u32, ns: u32, fallback: ListRef) -> ListRef {
        match self {
            KeyedTables::Shared(m) => m.get(table_key(set, TableKind::Namespace, ns)).unwrap_or(fallback),
            KeyedTables::Packed(p) => {
                let cell = p.namespace_cell(set, ns).copied().unwrap_or(ABSENT);
                let (start, end) = unpack(cell);
                // All ones when the cell is absent: a select by mask, not a branch.
                let absent = u32::from(cell == ABSENT).wrapping_neg();
                ((start & !absent) | (fallback.0 & absent), (end & !absent) | (fallback.1 & absent))
            }
        }
    }

    /// Start loading where `identity(set, id)` looks first.
    #[inline(always)]
    pub(crate) fn prefetch_identity(&self, set: u32, id: u32) {
        match self {
            KeyedTables::Shared(m) => m.prefetch(table_key(set, TableKind::Identity, id)),
            KeyedTables::Packed(p) => match &p.identity {
                IdentityTable::Ranked(t) => t.prefetch(set, id),
                IdentityTable::Hashed { map, class_bits } => {
                    if let Some(k) = identity_key(*class_bits, set, id) {
                        map.prefetch(k);
                    }
                }
            },
        }
    }

    /// Start loading what `namespace(set, ns)` reads.
    #[inline(always)]
    pub(crate) fn prefetch_namespace(&self, set: u32, ns: u32) {
        match self {
            KeyedTables::Shared(m) => m.prefetch(table_key(set, TableKind::Namespace, ns)),
            KeyedTables::Packed(p) => {
                // Clamped, not checked: `classify_burst` requests a cell for sides that
                // have none (no rule set, or a remote that is not a pod) rather than
                // branch on whether they do; some line of the array is as good.
                let i = p.cell_index(set, ns.min(p.namespaces));
                if let Some(c) = p.namespace.get(i.min(p.namespace.len().saturating_sub(1))) {
                    crate::dpdk::prefetch::prefetch_read(c);
                }
            }
        }
    }

    /// Entries (identity and namespace).
    pub(crate) fn len(&self) -> usize {
        match self {
            KeyedTables::Shared(m) => m.len(),
            KeyedTables::Packed(p) => p.identity_entries() + p.namespace_entries,
        }
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            KeyedTables::Shared(m) => m.heap_bytes(),
            KeyedTables::Packed(p) => p.identity_bytes() + p.namespace.len() * std::mem::size_of::<Packed>(),
        }
    }

    /// About how many bytes a lookup may touch (see `Snapshot::lookup_bytes`).
    pub(crate) fn lookup_bytes(&self) -> usize {
        match self {
            KeyedTables::Shared(m) => m.len() * 2 * std::mem::size_of::<(u64, ListRef)>(),
            KeyedTables::Packed(p) => p.identity_bytes() + p.namespace.len() * std::mem::size_of::<Packed>(),
        }
    }

    /// Whether these are a flattened copy's packed tables, which hold a row (a namespace
    /// row and an identity row) for every rule set.
    #[inline(always)]
    pub(crate) fn is_packed(&self) -> bool {
        matches!(self, KeyedTables::Packed(_))
    }

    pub(crate) fn is_flat(&self) -> bool {
        match self {
            KeyedTables::Shared(m) => m.is_flat(),
            KeyedTables::Packed(_) => true,
        }
    }
}

/// The hashed identity map's key of (`set`, `class`); `None` for a class beyond
/// `class_bits` (the bare class of identities without entries), which has none.
#[inline(always)]
fn identity_key(class_bits: u32, set: u32, class: u32) -> Option<u32> {
    (class >> class_bits == 0).then_some((set << class_bits) | class)
}

impl PackedTables {
    fn new(
        sets: usize,
        identity: &[(u32, u32, ListRef)],
        namespace: &[(u32, u32, ListRef)],
        ranked_bytes_per_entry: usize,
    ) -> Option<PackedTables> {
        let classes = identity.iter().map(|e| e.1 as usize + 1).max().unwrap_or(0);
        let namespaces = namespace.iter().map(|e| e.1 as usize + 1).max().unwrap_or(0);
        let cells = sets.checked_mul(namespaces)?;
        if cells > (namespace.len() * DENSE_CELLS_PER_ENTRY).max(DENSE_FLOOR) {
            return None;
        }
        let mut cells_of = Vec::with_capacity(identity.len());
        for &(set, class, list) in identity {
            cells_of.push((set, class, pack(list)?));
        }
        let ranked_limit = (cells_of.len() * ranked_bytes_per_entry).max(RANKED_FLOOR);
        let identity = if ranked_bytes_per_entry != 0 && RankedTable::bitmap_bytes(sets, classes) <= ranked_limit {
            IdentityTable::Ranked(RankedTable::new(sets, classes, &cells_of))
        } else {
            let class_bits = bits_for(classes);
            if class_bits >= 32 || bits_for(sets) + class_bits > 32 {
                return None;
            }
            let ids = cells_of.into_iter().map(|(set, class, p)| ((set << class_bits) | class, p)).collect();
            IdentityTable::Hashed { map: FlatMap::flat_from(ABSENT, ids), class_bits }
        };
        let mut dense = vec![ABSENT; cells];
        for &(set, ns, list) in namespace {
            dense[set as usize * namespaces + ns as usize] = pack(list)?;
        }
        Some(PackedTables {
            identity,
            namespace: dense.into(),
            namespaces: namespaces as u32,
            namespace_entries: namespace.len(),
        })
    }

    #[inline(always)]
    fn identity(&self, set: u32, class: u32) -> Option<Packed> {
        match &self.identity {
            IdentityTable::Ranked(t) => t.get(set, class),
            IdentityTable::Hashed { map, class_bits } => identity_key(*class_bits, set, class).and_then(|k| map.get(k)),
        }
    }

    fn identity_entries(&self) -> usize {
        match &self.identity {
            IdentityTable::Ranked(t) => t.len(),
            IdentityTable::Hashed { map, .. } => map.len(),
        }
    }

    fn identity_bytes(&self) -> usize {
        match &self.identity {
            IdentityTable::Ranked(t) => t.heap_bytes(),
            IdentityTable::Hashed { map, .. } => map.heap_bytes(),
        }
    }

    #[inline(always)]
    fn namespace_cell(&self, set: u32, ns: u32) -> Option<&Packed> {
        if ns >= self.namespaces {
            return None;
        }
        self.namespace.get(self.cell_index(set, ns))
    }

    /// Index in `namespace` of (`set`, `ns`) (`ns` below `namespaces` for its own cell).
    #[inline(always)]
    fn cell_index(&self, set: u32, ns: u32) -> usize {
        set as usize * self.namespaces as usize + ns as usize
    }

    fn entries(&self) -> Vec<(u64, ListRef)> {
        let ids: Vec<(u64, ListRef)> = match &self.identity {
            IdentityTable::Ranked(t) => t.iter().map(|(set, class, p)| (table_key(set, TableKind::Identity, class), unpack(p))).collect(),
            IdentityTable::Hashed { map, class_bits } => {
                let mask = (1u32 << class_bits) - 1;
                map.iter().map(|(k, p)| (table_key(k >> class_bits, TableKind::Identity, k & mask), unpack(p))).collect()
            }
        };
        let n = self.namespaces.max(1) as usize;
        let nss = self
            .namespace
            .iter()
            .enumerate()
            .filter(|(_, &c)| c != ABSENT)
            .map(|(i, &c)| (table_key((i / n) as u32, TableKind::Namespace, (i % n) as u32), unpack(c)));
        ids.into_iter().chain(nss).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    type Entries = Vec<(u32, u32, ListRef)>;

    /// Entries with distinct (set, key) over `sets` rule sets, keys below `keys`, lists
    /// of length below `max_len`.
    fn entries(sets: u32, keys: u32, max_len: u32) -> impl Strategy<Value = Entries> {
        proptest::collection::hash_map((0..sets, 0..keys), (0u32..5000, 0..max_len), 0..60)
            .prop_map(|m| m.into_iter().map(|((set, k), (start, len))| (set, k, (start, start + len))).collect())
    }

    proptest! {
        /// Every form answers like a map of the entries, for keys with and without an
        /// entry and for classes and namespaces beyond any entry's: packed with the
        /// ranked identity table and (forced) with the hashed one; lists too long to
        /// pack keep the shared form.
        #[test]
        fn flat_tables_answer_like_a_map(ids in entries(40, 30, 40), nss in entries(40, 6, 40), long in any::<bool>(), hashed in any::<bool>()) {
            let mut ids = ids;
            if long && !ids.is_empty() {
                ids[0].2 = (7, 7 + (1 << LEN_BITS));
            }
            let tables = KeyedTables::flat_in(40, &ids, &nss, if hashed { 0 } else { RANKED_BYTES_PER_ENTRY });
            prop_assert_eq!(matches!(tables, KeyedTables::Packed(_)), !(long && !ids.is_empty()));
            if let KeyedTables::Packed(p) = &tables {
                let ranked = matches!(p.identity, IdentityTable::Ranked(_));
                prop_assert_eq!(ranked, !hashed);
            }
            prop_assert_eq!(tables.len(), ids.len() + nss.len());
            let id_map: HashMap<(u32, u32), ListRef> = ids.iter().map(|&(s, k, l)| ((s, k), l)).collect();
            let ns_map: HashMap<(u32, u32), ListRef> = nss.iter().map(|&(s, k, l)| ((s, k), l)).collect();
            for set in 0..40 {
                for k in 0..70 {
                    prop_assert_eq!(tables.identity(set, k), id_map.get(&(set, k)).copied(), "identity {} {}", set, k);
                    prop_assert_eq!(tables.namespace(set, k), ns_map.get(&(set, k)).copied(), "namespace {} {}", set, k);
                }
            }
            let mut all = tables.entries();
            all.sort_unstable();
            let mut want: Vec<(u64, ListRef)> = ids
                .iter()
                .map(|&(s, k, l)| (table_key(s, TableKind::Identity, k), l))
                .chain(nss.iter().map(|&(s, k, l)| (table_key(s, TableKind::Namespace, k), l)))
                .collect();
            want.sort_unstable();
            prop_assert_eq!(all, want);
        }
    }
}
