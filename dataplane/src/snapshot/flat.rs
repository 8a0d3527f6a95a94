//! `FlatMap`: the snapshot's own open-addressing hash map from an integer key to a small
//! `Copy` value, laid out as arrays of `(key, value)` slots so that a lookup touches
//! a single slot cache line in the common case (hashbrown reads a control group and
//! then the slot: two lines). Fibonacci hashing of the integer key, linear probing,
//! load ≤ 1/2, backward-shift deletion (no tombstones), so the builder can keep
//! patching it.
//!
//! The slots live in fixed chunks of `CHUNK_SLOTS` behind `Arc`s: a clone shares every
//! chunk, and a patch copies only the chunks it writes that an older snapshot still
//! holds, so the incremental compiler's per-change snapshot costs O(change), not
//! O(map). Chunks are small (4 KiB of 16-byte slots) because one change may write
//! thousands of scattered keys (a new identity's entry in every rule set naming it),
//! and the chunk table stays small enough for L2 (8 bytes per chunk: 128 KiB for the
//! 64 MiB table of 50k pods × 10k policies). A lookup reads the table entry, then
//! the slot.
//!
//! A snapshot staying in force is better read without the chunk table (which misses
//! cache at that size, and puts a dependent load before the slot):
//! [`FlatMap::flat_from`] builds one whose slots are one array, read like a plain
//! open-addressing table. A write to it first cuts the array back into chunks.
//!
//! The key `K::EMPTY` marks a free slot; a real entry with that key lives in a side field.

use std::sync::Arc;

/// Integer keys `FlatMap` can hash.
pub(crate) trait FlatKey: Copy + Eq + std::fmt::Debug {
    /// Marks an empty slot.
    const EMPTY: Self;
    /// 64 well-mixed bits.
    fn mix(self) -> u64;
}

impl FlatKey for u32 {
    const EMPTY: Self = u32::MAX;
    #[inline(always)]
    fn mix(self) -> u64 {
        u64::from(self).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

impl FlatKey for u64 {
    const EMPTY: Self = u64::MAX;
    #[inline(always)]
    fn mix(self) -> u64 {
        (self ^ (self >> 31)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

/// Slots per chunk (a power of two).
const CHUNK_SLOTS: usize = 256;
const CHUNK_SHIFT: u32 = CHUNK_SLOTS.trailing_zeros();

type Chunk<K, V> = [(K, V); CHUNK_SLOTS];

#[derive(Clone, Debug)]
pub(crate) struct FlatMap<K: FlatKey, V: Copy> {
    /// When flattened: all `size` slots (and `chunks` is empty), else empty.
    flat: Arc<[(K, V)]>,
    /// Slot `i` is `chunks[i / CHUNK_SLOTS][i % CHUNK_SLOTS]`; a map smaller than a
    /// chunk uses the first `size` slots of its one chunk.
    chunks: Vec<Arc<Chunk<K, V>>>,
    /// Slots in use (a power of two).
    size: usize,
    /// 64 - log2(size): the home slot is the top bits of `mix`.
    shift: u32,
    len: usize,
    /// The entry whose key is `K::EMPTY`, if any.
    empty_key: Option<V>,
    filler: V,
}

const MIN_SLOTS: usize = 8;

impl<K: FlatKey, V: Copy> FlatMap<K, V> {
    /// An empty map; `filler` is the value stored in free slots (never returned).
    pub(crate) fn new(filler: V) -> Self {
        FlatMap { flat: Arc::from(Vec::new()), chunks: Self::free_chunks(MIN_SLOTS, filler), size: MIN_SLOTS, shift: 64 - MIN_SLOTS.trailing_zeros(), len: 0, empty_key: None, filler }
    }

    fn free_chunks(size: usize, filler: V) -> Vec<Arc<Chunk<K, V>>> {
        (0..size.div_ceil(CHUNK_SLOTS)).map(|_| Arc::new([(K::EMPTY, filler); CHUNK_SLOTS])).collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// A flattened map of `entries` (distinct keys), sized as `shrink_to_fit` would
    /// size it. Built in one pass in home-slot order, so that the writes run through
    /// the array instead of scattering over it (1.5 M entries of 64 MiB at 50k pods).
    pub(crate) fn flat_from(filler: V, mut entries: Vec<(K, V)>) -> Self {
        let mut map = FlatMap::new(filler);
        if let Some(at) = entries.iter().position(|e| e.0 == K::EMPTY) {
            map.empty_key = Some(entries.swap_remove(at).1);
        }
        map.size = (entries.len() * 2).next_power_of_two().max(MIN_SLOTS);
        map.shift = 64 - map.size.trailing_zeros();
        map.len = entries.len() + usize::from(map.empty_key.is_some());
        entries.sort_unstable_by_key(|e| map.home(e.0));
        let mask = map.size - 1;
        let mut slots = vec![(K::EMPTY, filler); map.size];
        for (k, v) in entries {
            let mut pos = map.home(k);
            while slots[pos].0 != K::EMPTY {
                pos = (pos + 1) & mask;
            }
            slots[pos] = (k, v);
        }
        map.flat = slots.into();
        map.chunks = Vec::new();
        map
    }

    /// Whether the slots are one array (see [`FlatMap::flat_from`]).
    pub(crate) fn is_flat(&self) -> bool {
        !self.flat.is_empty()
    }

    /// Before a write: the flat array back into chunks.
    fn unflatten(&mut self) {
        if self.is_flat() {
            let flat = std::mem::replace(&mut self.flat, Arc::from(Vec::new()));
            self.chunks = Self::free_chunks(self.size, self.filler);
            for (i, &s) in flat.iter().enumerate() {
                Arc::get_mut(&mut self.chunks[i >> CHUNK_SHIFT]).expect("fresh chunk")[i & (CHUNK_SLOTS - 1)] = s;
            }
        }
    }

    /// Bytes held by the slot chunks and their table (or the flat array).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.flat.len() * std::mem::size_of::<(K, V)>()
            + self.chunks.len() * std::mem::size_of::<Chunk<K, V>>()
            + self.chunks.capacity() * std::mem::size_of::<usize>()
    }

    #[inline(always)]
    fn home(&self, key: K) -> usize {
        (key.mix() >> self.shift) as usize
    }

    #[inline(always)]
    fn slot(&self, pos: usize) -> &(K, V) {
        if pos < self.flat.len() {
            return &self.flat[pos];
        }
        &self.chunks[pos >> CHUNK_SHIFT][pos & (CHUNK_SLOTS - 1)]
    }

    /// Slot `pos`, writable: its chunk is copied first if an older snapshot shares it.
    fn slot_mut(&mut self, pos: usize) -> &mut (K, V) {
        self.unflatten();
        &mut Arc::make_mut(&mut self.chunks[pos >> CHUNK_SHIFT])[pos & (CHUNK_SLOTS - 1)]
    }

    /// Where `key` (not `K::EMPTY`) is: `(its slot, true)`, or `(the free slot ending
    /// its chain, false)`. Every read and write of a key walks its chain through here.
    #[inline(always)]
    fn probe(&self, key: K) -> (usize, bool) {
        let mask = self.size - 1;
        let mut pos = self.home(key);
        loop {
            let k = self.slot(pos).0;
            if k == key {
                return (pos, true);
            }
            if k == K::EMPTY {
                return (pos, false);
            }
            pos = (pos + 1) & mask;
        }
    }

    #[inline]
    pub(crate) fn get(&self, key: K) -> Option<V> {
        self.get_ref(key).copied()
    }

    /// The value of `key` where it lies (in its slot, beside the key).
    #[inline]
    pub(crate) fn get_ref(&self, key: K) -> Option<&V> {
        if key == K::EMPTY {
            return self.empty_key.as_ref();
        }
        match self.probe(key) {
            (pos, true) => Some(&self.slot(pos).1),
            (_, false) => None,
        }
    }

    /// Hint the CPU to fetch the slot where a lookup of `key` starts.
    #[inline(always)]
    pub(crate) fn prefetch(&self, key: K) {
        crate::dpdk::prefetch::prefetch_read(self.slot(self.home(key)));
    }

    /// The value of `key`, inserting `value` first if absent.
    pub(crate) fn get_or_insert(&mut self, key: K, value: V) -> &mut V {
        if key == K::EMPTY {
            if self.empty_key.is_none() {
                self.len += 1;
            }
            return self.empty_key.get_or_insert(value);
        }
        if (self.len + 1) * 2 > self.size {
            self.grow();
        }
        let (pos, found) = self.probe(key);
        if !found {
            *self.slot_mut(pos) = (key, value);
            self.len += 1;
        }
        &mut self.slot_mut(pos).1
    }

    pub(crate) fn insert(&mut self, key: K, value: V) {
        *self.get_or_insert(key, value) = value;
    }

    pub(crate) fn remove(&mut self, key: K) -> Option<V> {
        if key == K::EMPTY {
            let v = self.empty_key.take();
            self.len -= usize::from(v.is_some());
            return v;
        }
        let (mut hole, found) = self.probe(key);
        if !found {
            return None;
        }
        let mask = self.size - 1;
        let removed = self.slot(hole).1;
        // Backward shift: move later chain members whose home is not in (hole, pos].
        let mut pos = hole;
        loop {
            pos = (pos + 1) & mask;
            let (k, v) = *self.slot(pos);
            if k == K::EMPTY {
                break;
            }
            let home = self.home(k);
            if (pos.wrapping_sub(home) & mask) >= (pos.wrapping_sub(hole) & mask) {
                *self.slot_mut(hole) = (k, v);
                hole = pos;
            }
        }
        let filler = self.filler;
        *self.slot_mut(hole) = (K::EMPTY, filler);
        self.len -= 1;
        Some(removed)
    }

    /// Every `(key, value)`, in slot order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (K, V)> + '_ {
        (0..self.size).map(|i| *self.slot(i)).filter(|(k, _)| *k != K::EMPTY).chain(self.empty_key.map(|v| (K::EMPTY, v)))
    }

    /// Shrink the slot array to the smallest power of two keeping load ≤ 1/2.
    pub(crate) fn shrink_to_fit(&mut self) {
        let want = (self.len * 2).next_power_of_two().max(MIN_SLOTS);
        if want < self.size {
            self.rehash(want);
        }
    }

    fn grow(&mut self) {
        self.rehash(self.size * 2);
    }

    fn rehash(&mut self, size: usize) {
        self.unflatten();
        let old = std::mem::replace(&mut self.chunks, Self::free_chunks(size, self.filler));
        let old_size = std::mem::replace(&mut self.size, size);
        self.shift = 64 - size.trailing_zeros();
        let mask = size - 1;
        for i in 0..old_size {
            let (k, v) = old[i >> CHUNK_SHIFT][i & (CHUNK_SLOTS - 1)];
            if k == K::EMPTY {
                continue;
            }
            let mut pos = self.home(k);
            while self.slot(pos).0 != K::EMPTY {
                pos = (pos + 1) & mask;
            }
            // Fresh chunks: not shared, so no copy.
            *self.slot_mut(pos) = (k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        /// Behaves like a `HashMap` under inserts and removes, the empty-marker key
        /// included, before and after a rebuild through `flat_from` (whose flat array
        /// a later write cuts back into chunks).
        #[test]
        fn matches_a_hashmap(ops in proptest::collection::vec((0u8..4, prop_oneof![0u32..64, Just(u32::MAX)], any::<u16>()), 0..400)) {
            let mut flat: FlatMap<u32, u16> = FlatMap::new(0);
            let mut model: HashMap<u32, u16> = HashMap::new();
            for (op, key, value) in ops {
                match op {
                    0 => { flat.insert(key, value); model.insert(key, value); }
                    1 => { prop_assert_eq!(flat.remove(key), model.remove(&key)); }
                    2 => { prop_assert_eq!(*flat.get_or_insert(key, value), *model.entry(key).or_insert(value)); }
                    _ => {
                        let copy = FlatMap::flat_from(0, flat.iter().collect());
                        prop_assert!(copy.is_flat());
                        let mut got: Vec<(u32, u16)> = copy.iter().collect();
                        let mut want: Vec<(u32, u16)> = flat.iter().collect();
                        got.sort_unstable();
                        want.sort_unstable();
                        prop_assert_eq!(got, want);
                        flat = copy;
                    }
                }
                prop_assert_eq!(flat.len(), model.len());
                for k in (0..64).chain([u32::MAX]) {
                    prop_assert_eq!(flat.get(k), model.get(&k).copied());
                }
            }
            flat.shrink_to_fit();
            let mut all: Vec<(u32, u16)> = flat.iter().collect();
            all.sort_unstable();
            let mut want: Vec<(u32, u16)> = model.into_iter().collect();
            want.sort_unstable();
            prop_assert_eq!(all, want);
        }
    }
}
