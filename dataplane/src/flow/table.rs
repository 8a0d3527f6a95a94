//! `FlowTable`: open addressing with linear probing.
//!
//! Layout: a dense array of 8-byte slots (32-bit hash, 32-bit pool index) sized to a
//! power of two at least twice the capacity (load ≤ 0.5, short probe chains), and a pool
//! of `capacity` records with a free list. A record is the key in one cache line and the
//! 64-byte entry in the next, so a hit costs the slot's line plus one adjacent pair
//! (which the hardware prefetches together). A probe walks the slots (eight per cache
//! line) and compares a key only when the 32-bit hash matches; a miss usually touches
//! the slot line alone. Deletion shifts later members of the chain back, so
//! there are no tombstones and chains never degrade. Everything is allocated in `new`,
//! on transparent huge pages (`dpdk::hugemem`): the slot array spans 16 MiB at the
//! default capacity, and on 4 KiB pages a lookup would miss the TLB as well as the
//! cache. The packet path never allocates.

use crate::dpdk::hugemem::HugeSlice;
use crate::dpdk::prefetch::prefetch_read;
use crate::flow::entry::FlowEntry;
use crate::flow::key::FlowKey;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    hash: u32,
    /// Pool index, or `EMPTY`.
    index: u32,
}

const EMPTY: u32 = u32::MAX;

/// Slots `prefetch_record` looks at: at load ≤ 0.5 nearly every chain is shorter.
const PREFETCH_PROBE: usize = 4;

/// A pool record: the key, then (on the next cache line) the entry.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Record {
    key: FlowKey,
    entry: FlowEntry,
}

const _: () = assert!(std::mem::size_of::<Record>() == 128);
const EMPTY_SLOT: Slot = Slot { hash: 0, index: EMPTY };

/// The table is at capacity: the flow was not inserted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("flow table full")]
pub struct TableFull;

pub struct FlowTable {
    slots: HugeSlice<Slot>,
    mask: usize,
    records: HugeSlice<Record>,
    /// Free pool indices; never grows past its initial capacity.
    free: Vec<u32>,
    seed: u64,
    /// Pool indices ever handed out: the free list hands out 0, 1, 2, ... and takes
    /// freed ones back on top, so every record at or past this index has never held a
    /// flow. Aging walks only the records below it.
    used: usize,
    /// Where the next aging step resumes in the pool (below `used`).
    age_cursor: usize,
    /// Per `TimeoutClass`, in ticks.
    timeout_ticks: [u64; 7],
}

impl FlowTable {
    /// A table for `capacity` flows (at least 1, at most 2^31), with timeouts already in
    /// ticks (`FlowTimeouts::to_ticks`) and a hash `seed` (keep it secret and random).
    pub fn new(capacity: usize, timeout_ticks: [u64; 7], seed: u64) -> FlowTable {
        let capacity = capacity.clamp(1, 1 << 31);
        let slot_count = (capacity * 2).next_power_of_two();
        FlowTable {
            slots: HugeSlice::filled(slot_count, EMPTY_SLOT),
            mask: slot_count - 1,
            records: HugeSlice::filled(capacity, Record { key: FlowKey::default(), entry: FlowEntry::EMPTY }),
            free: (0..capacity as u32).rev().collect(),
            seed,
            used: 0,
            age_cursor: 0,
            timeout_ticks,
        }
    }

    pub fn capacity(&self) -> usize {
        self.records.len()
    }

    pub fn len(&self) -> usize {
        self.records.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_full(&self) -> bool {
        self.free.is_empty()
    }

    #[inline]
    pub fn hash(&self, key: &FlowKey) -> u32 {
        key.hash(self.seed)
    }

    /// The pool index of `key`'s flow, if present. `hash` is `self.hash(key)`.
    #[inline]
    pub fn find(&self, key: &FlowKey, hash: u32) -> Option<u32> {
        let mut pos = hash as usize & self.mask;
        loop {
            let slot = self.slots[pos];
            if slot.index == EMPTY {
                return None;
            }
            if slot.hash == hash && self.records[slot.index as usize].key == *key {
                return Some(slot.index);
            }
            pos = (pos + 1) & self.mask;
        }
    }

    /// Prefetch the slot line where a lookup of `hash` starts (first stage of a batched
    /// lookup: hash a burst's keys, prefetch their slots, then their records).
    #[inline(always)]
    pub fn prefetch_slot(&self, hash: u32) {
        prefetch_read(&self.slots[hash as usize & self.mask]);
    }

    /// Prefetch the record (key line and entry line) that a lookup of `hash` will most
    /// likely compare: the first slot of its chain with that hash, within the first
    /// few slots. Reads slots only; a hint, so a stale or wrong guess costs nothing but
    /// the bandwidth. Returns `false` when the chain ended without a slot of that hash:
    /// a lookup of `hash` made now would miss.
    #[inline(always)]
    pub fn prefetch_record(&self, hash: u32) -> bool {
        let mut pos = hash as usize & self.mask;
        for _ in 0..PREFETCH_PROBE {
            let slot = self.slots[pos];
            if slot.index == EMPTY {
                return false;
            }
            if slot.hash == hash {
                let record = &self.records[slot.index as usize];
                prefetch_read(&record.key);
                prefetch_read(&record.entry);
                return true;
            }
            pos = (pos + 1) & self.mask;
        }
        true
    }

    /// Prefetch the pool records the next `n` inserts will fill: freed long ago or never
    /// used, they are cold, and an insert writing a missing line stalls on it.
    #[inline]
    pub fn prefetch_free(&self, n: usize) {
        for &index in self.free.iter().rev().take(n) {
            let record = &self.records[index as usize];
            prefetch_read(&record.key);
            prefetch_read(&record.entry);
        }
    }

    #[inline]
    pub fn entry(&self, index: u32) -> &FlowEntry {
        &self.records[index as usize].entry
    }

    #[inline]
    pub fn entry_mut(&mut self, index: u32) -> &mut FlowEntry {
        &mut self.records[index as usize].entry
    }

    #[inline]
    pub fn key(&self, index: u32) -> &FlowKey {
        &self.records[index as usize].key
    }

    /// Insert a flow whose key is not present (the caller has just missed on it).
    /// Never evicts: when the pool is exhausted the flow is refused.
    pub fn insert(&mut self, key: FlowKey, hash: u32, entry: FlowEntry) -> Result<u32, TableFull> {
        let index = self.insert_key(&key, hash)?;
        self.records[index as usize].entry = entry;
        Ok(index)
    }

    /// `insert` with the entry left for the caller to write at once through `entry_mut`
    /// (in place: an entry built on the stack and copied in is read back wide right
    /// after its narrow writes, which stalls). Until then the entry is `EMPTY`.
    #[inline]
    pub fn insert_key(&mut self, key: &FlowKey, hash: u32) -> Result<u32, TableFull> {
        let index = self.free.pop().ok_or(TableFull)?;
        self.used = self.used.max(index as usize + 1);
        self.records[index as usize].key = *key;
        let mut pos = hash as usize & self.mask;
        // Load ≤ 0.5 guarantees an empty slot.
        while self.slots[pos].index != EMPTY {
            pos = (pos + 1) & self.mask;
        }
        self.slots[pos] = Slot { hash, index };
        Ok(index)
    }

    /// Remove the flow at pool `index` (which must be live).
    pub fn remove(&mut self, index: u32) {
        let hash = self.hash(&self.records[index as usize].key);
        let mut hole = hash as usize & self.mask;
        while self.slots[hole].index != index {
            if self.slots[hole].index == EMPTY {
                return; // not in the table: nothing to do
            }
            hole = (hole + 1) & self.mask;
        }
        // Backward-shift: move later chain members whose home is not in (hole, pos].
        let mut pos = hole;
        loop {
            pos = (pos + 1) & self.mask;
            let slot = self.slots[pos];
            if slot.index == EMPTY {
                break;
            }
            let home = slot.hash as usize & self.mask;
            let distance_to_home = pos.wrapping_sub(home) & self.mask;
            let distance_to_hole = pos.wrapping_sub(hole) & self.mask;
            if distance_to_home >= distance_to_hole {
                self.slots[hole] = slot;
                hole = pos;
            }
        }
        self.slots[hole] = EMPTY_SLOT;
        self.records[index as usize].entry = FlowEntry::EMPTY;
        self.free.push(index);
    }

    /// Whether the flow at `index` has been idle past its timeout at `now`.
    #[inline]
    pub fn is_expired(&self, index: u32, now: u64) -> bool {
        let Record { key, entry } = &self.records[index as usize];
        let class = entry.timeout_class(key.protocol());
        now.saturating_sub(entry.last_seen) > self.timeout_ticks[class as usize]
    }

    /// Look at up to `budget` pool entries from where the last call stopped and remove
    /// the expired ones. Returns how many were removed. Bounded work per call.
    ///
    /// The walk covers the records that ever held a flow (`used`), not the whole pool:
    /// the rest can hold nothing to expire, and at 1k flows in a 1M-flow pool a step over
    /// them touched 256 cold records (each a TLB miss under a VM's 4 KiB nested pages)
    /// to find nothing: 2 % of a worker's time at 14 Mpps.
    pub fn age(&mut self, now: u64, budget: usize) -> usize {
        self.age_each(now, budget, |_, _| {})
    }

    /// `age`, showing each expired flow to `on_expired` just before it is removed (the
    /// flow log records flows that age out).
    pub fn age_each(&mut self, now: u64, budget: usize, mut on_expired: impl FnMut(&FlowKey, &FlowEntry)) -> usize {
        let used = self.used;
        let mut removed = 0;
        for _ in 0..budget.min(used) {
            let index = self.age_cursor as u32;
            // Wrapped by a compare: a `%` here was a division per record looked at.
            self.age_cursor += 1;
            if self.age_cursor >= used {
                self.age_cursor = 0;
            }
            if self.records[index as usize].entry.is_live() && self.is_expired(index, now) {
                let record = &self.records[index as usize];
                on_expired(&record.key, &record.entry);
                self.remove(index);
                removed += 1;
            }
        }
        removed
    }

    /// Live flows, in pool order.
    pub fn iter(&self) -> impl Iterator<Item = (&FlowKey, &FlowEntry)> {
        self.records[..self.used].iter().filter(|r| r.entry.is_live()).map(|r| (&r.key, &r.entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::entry::{FlowTimeouts, TcpState};
    use crate::flow::key::{v4_mapped, Side};
    use crate::verdict::Verdict;

    fn key(n: u32) -> FlowKey {
        let b = n.to_be_bytes();
        FlowKey::new(&v4_mapped([10, b[1], b[2], b[3]]), 1000 + (n % 7) as u16, &v4_mapped([192, 168, 0, 1]), 80, 6, 0).0
    }

    fn entry(now: u64) -> FlowEntry {
        FlowEntry::new(Verdict::NOT_POLICED, 1, Side::Lo, TcpState::Established, now)
    }

    fn table(capacity: usize) -> FlowTable {
        // 1 tick per second: timeouts in ticks equal their seconds.
        FlowTable::new(capacity, FlowTimeouts::default().to_ticks(1), 0x5eed)
    }

    #[test]
    fn insert_find_remove() {
        let mut t = table(64);
        let mut indices = Vec::new();
        for n in 0..64 {
            let k = key(n);
            assert_eq!(t.find(&k, t.hash(&k)), None);
            indices.push(t.insert(k, t.hash(&k), entry(n.into())).unwrap());
        }
        assert_eq!(t.len(), 64);
        assert!(t.is_full());
        for n in 0..64 {
            let k = key(n);
            let index = t.find(&k, t.hash(&k)).unwrap();
            assert_eq!(t.entry(index).created, u64::from(n));
        }
        // Remove every other flow; the rest must still be found.
        for n in (0..64).step_by(2) {
            t.remove(indices[n]);
        }
        assert_eq!(t.len(), 32);
        for n in 0..64u32 {
            let k = key(n);
            assert_eq!(t.find(&k, t.hash(&k)).is_some(), n % 2 == 1, "flow {n}");
        }
        assert_eq!(t.iter().count(), 32);
    }

    #[test]
    fn full_table_refuses_and_keeps_existing_flows() {
        let mut t = table(4);
        for n in 0..4 {
            t.insert(key(n), t.hash(&key(n)), entry(0)).unwrap();
        }
        assert_eq!(t.insert(key(9), t.hash(&key(9)), entry(0)), Err(TableFull));
        assert_eq!(t.len(), 4);
        for n in 0..4 {
            assert!(t.find(&key(n), t.hash(&key(n))).is_some());
        }
    }

    /// A flow in SYN-sent (30 s timeout) since time 0.
    fn syn_sent() -> FlowEntry {
        FlowEntry::new(Verdict::NOT_POLICED, 1, Side::Lo, TcpState::SynSent, 0)
    }

    /// A table of `capacity` with two established TCP flows (7200 s) at pool indices 0
    /// and 1 and a SYN-sent one (30 s) at 2.
    fn three_flows(capacity: usize) -> FlowTable {
        let mut t = table(capacity);
        for n in 0..2 {
            t.insert(key(n), t.hash(&key(n)), entry(0)).unwrap();
        }
        t.insert(key(2), t.hash(&key(2)), syn_sent()).unwrap();
        t
    }

    #[test]
    fn aging_is_bounded_and_removes_only_expired() {
        let mut t = three_flows(8);
        assert_eq!(t.age(30, 8), 0, "30 s is not past the 30 s timeout");
        // Pool order: indices 0, 1, 2 are the three flows; a budget of 2 stops before 2.
        assert_eq!(t.age(31, 2), 0);
        assert_eq!(t.age(31, 6), 1);
        assert_eq!(t.len(), 2);
        assert_eq!(t.age(7201, 8), 2);
        assert!(t.is_empty());
    }

    #[test]
    fn aging_walks_only_records_that_held_a_flow() {
        let mut t = three_flows(1024);
        // Three records ever used: a step of 3 covers them all and wraps, so the next
        // one looks at them again rather than at the 1021 never-used records after them.
        assert_eq!(t.age(10, 3), 0);
        assert_eq!(t.age(31, 3), 1, "the SYN-sent flow expired at 30 s");
        assert_eq!(t.len(), 2);
        // A freed record is handed out again before any new one: the walk stays at 3.
        t.insert(key(3), t.hash(&key(3)), syn_sent()).unwrap();
        assert_eq!(t.age(62, 3), 1);
        assert_eq!(t.iter().count(), 2);
    }

    #[test]
    fn colliding_chains_survive_removal() {
        // A 4-slot table (capacity 2) forces collisions; check many orders.
        for order in 0..6u32 {
            let mut t = table(2);
            let a = t.insert(key(order), t.hash(&key(order)), entry(0)).unwrap();
            t.insert(key(order + 10), t.hash(&key(order + 10)), entry(0)).unwrap();
            t.remove(a);
            assert!(t.find(&key(order + 10), t.hash(&key(order + 10))).is_some());
            assert!(t.find(&key(order), t.hash(&key(order))).is_none());
        }
    }
}

#[cfg(test)]
mod model {
    //! Property: the table behaves like a `HashMap` under any sequence of operations.
    use super::*;
    use crate::flow::entry::{FlowTimeouts, TcpState};
    use crate::flow::key::{v4_mapped, Side};
    use crate::verdict::Verdict;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        #[test]
        fn matches_a_hashmap(ops in proptest::collection::vec((any::<bool>(), 0u8..40), 0..300)) {
            let mut table = FlowTable::new(16, FlowTimeouts::default().to_ticks(1), 7);
            let mut model: HashMap<u8, u32> = HashMap::new();
            for (insert, n) in ops {
                let key = FlowKey::new(&v4_mapped([10, 0, 0, n]), 1, &v4_mapped([10, 0, 1, 1]), 2, 17, 0).0;
                let hash = table.hash(&key);
                let found = table.find(&key, hash);
                prop_assert_eq!(found, model.get(&n).copied());
                match (insert, found) {
                    (true, None) => {
                        let entry = FlowEntry::new(Verdict::NOT_POLICED, 0, Side::Lo, TcpState::None, 0);
                        match table.insert(key, hash, entry) {
                            Ok(index) => { model.insert(n, index); }
                            Err(TableFull) => prop_assert_eq!(model.len(), 16),
                        }
                    }
                    (false, Some(index)) => {
                        table.remove(index);
                        model.remove(&n);
                    }
                    _ => {}
                }
                prop_assert_eq!(table.len(), model.len());
            }
        }
    }
}
