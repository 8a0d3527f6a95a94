//! The fragment table: what the first fragment of a datagram was decided, so the later
//! fragments (which carry no ports) get the same answer.
//!
//! Keyed by (source, destination, identifier, protocol, VLAN), direction included.
//! Direct-mapped and fixed-size: a new first fragment overwrites whatever shares its
//! slot. Losing an entry only makes later fragments of that datagram drop (fail closed),
//! so the bound costs availability under a flood, never policy. Entries expire after
//! `timeout` ticks; non-first fragments arriving before their first are dropped.

/// Which datagram a fragment belongs to, direction included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FragmentKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub ident: u32,
    pub protocol: u8,
    pub vlan: u32,
}

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    key: FragmentKey,
    allow: bool,
    /// TSC when the first fragment passed; 0 = empty.
    stamp: u64,
}

pub struct FragmentTable {
    slots: Box<[Slot]>,
    mask: usize,
    timeout: u64,
    seed: u64,
}

impl FragmentTable {
    /// `capacity` slots (rounded up to a power of two), entries live `timeout` ticks.
    pub fn new(capacity: usize, timeout: u64, seed: u64) -> FragmentTable {
        let size = capacity.clamp(1, 1 << 24).next_power_of_two();
        FragmentTable { slots: vec![Slot::default(); size].into_boxed_slice(), mask: size - 1, timeout, seed }
    }

    fn slot(&self, key: &FragmentKey) -> usize {
        let mut h = self.seed ^ u64::from(key.ident) ^ (u64::from(key.protocol) << 32) ^ (u64::from(key.vlan) << 40);
        for half in [&key.src[..8], &key.src[8..], &key.dst[..8], &key.dst[8..]] {
            let mut word = [0u8; 8];
            word.copy_from_slice(half);
            h = (h ^ u64::from_ne_bytes(word)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            h ^= h >> 29;
        }
        h as usize & self.mask
    }

    /// Remember the verdict of a first fragment at `now` (a nonzero TSC).
    pub fn record(&mut self, key: FragmentKey, allow: bool, now: u64) {
        let index = self.slot(&key);
        self.slots[index] = Slot { key, allow, stamp: now.max(1) };
    }

    /// The first fragment's verdict, if it is known and has not expired.
    pub fn lookup(&self, key: &FragmentKey, now: u64) -> Option<bool> {
        let slot = &self.slots[self.slot(key)];
        let fresh = slot.stamp != 0 && now.saturating_sub(slot.stamp) <= self.timeout;
        (fresh && slot.key == *key).then_some(slot.allow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 16] = [1; 16];
    const B: [u8; 16] = [2; 16];

    fn key(src: [u8; 16], dst: [u8; 16], ident: u32, protocol: u8, vlan: u32) -> FragmentKey {
        FragmentKey { src, dst, ident, protocol, vlan }
    }

    #[test]
    fn follows_first_fragment_until_timeout() {
        let mut table = FragmentTable::new(16, 10, 3);
        assert_eq!(table.lookup(&key(A, B, 7, 17, 0), 5), None);
        table.record(key(A, B, 7, 17, 0), true, 5);
        table.record(key(A, B, 8, 17, 0), false, 5);
        assert_eq!(table.lookup(&key(A, B, 7, 17, 0), 15), Some(true));
        assert_eq!(table.lookup(&key(A, B, 8, 17, 0), 15), Some(false));
        assert_eq!(table.lookup(&key(A, B, 7, 17, 0), 16), None, "expired");
        assert_eq!(table.lookup(&key(B, A, 7, 17, 0), 6), None, "direction matters");
        assert_eq!(table.lookup(&key(A, B, 7, 6, 0), 6), None, "protocol matters");
        assert_eq!(table.lookup(&key(A, B, 7, 17, 1), 6), None, "VLAN matters");
    }

    #[test]
    fn overwritten_slot_fails_closed() {
        let mut table = FragmentTable::new(1, 100, 0);
        table.record(key(A, B, 1, 17, 0), true, 1);
        table.record(key(A, B, 2, 17, 0), true, 1);
        assert_eq!(table.lookup(&key(A, B, 1, 17, 0), 2), None);
        assert_eq!(table.lookup(&key(A, B, 2, 17, 0), 2), Some(true));
    }
}
