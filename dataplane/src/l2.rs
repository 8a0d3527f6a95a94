//! Bridge mode's MAC learning table: one per worker (workers share nothing), plain
//! Rust over frame bytes. A bridge learns which port each source MAC sits behind,
//! sends known unicast to that port, and floods broadcast, multicast and unknown
//! unicast to every other port. Entries not refreshed for `max_age` ticks are
//! forgotten (at lookup at once, and removed by `age`).
//!
//! The table allocates once, at creation: it holds at most `capacity` entries, and a
//! new source MAC arriving when it is full is simply not learned (its replies flood)
//! until aging makes room.

use hashbrown::HashMap;

/// Where a bridged frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L2Decision {
    /// Known unicast: to this port (an index into the bridge's ports).
    Forward(u16),
    /// Broadcast, multicast or unknown unicast: to every port but the one it came in on.
    Flood,
    /// Not forwarded: a runt (shorter than an Ethernet header), or the destination sits
    /// behind the port the frame came in on.
    Drop,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    port: u16,
    seen: u64,
}

/// A per-worker MAC → port table with aging. Times are TSC ticks (any monotonic unit).
#[derive(Debug)]
pub struct MacTable {
    map: HashMap<[u8; 6], Entry>,
    capacity: usize,
    max_age: u64,
    last_sweep: u64,
    /// Source MACs not learned because the table was full.
    pub learn_overflows: u64,
}

const ETH_HEADER: usize = 14;

impl MacTable {
    /// A table for up to `capacity` MACs that forgets an entry `max_age` ticks after
    /// it was last refreshed.
    pub fn new(capacity: usize, max_age: u64) -> MacTable {
        // Twice the room we use: hashbrown then always rehashes tombstones in place
        // instead of growing, so the packet path never allocates.
        MacTable {
            map: HashMap::with_capacity(capacity.max(1) * 2),
            capacity: capacity.max(1),
            max_age,
            last_sweep: 0,
            learn_overflows: 0,
        }
    }

    /// Records that `mac` was seen behind `port` at `now`. Group (multicast/broadcast)
    /// and all-zero addresses are never learned.
    #[inline]
    pub fn learn(&mut self, mac: [u8; 6], port: u16, now: u64) {
        if mac[0] & 1 != 0 || mac == [0; 6] {
            return;
        }
        if let Some(e) = self.map.get_mut(&mac) {
            e.port = port;
            e.seen = now;
        } else if self.map.len() < self.capacity {
            self.map.insert(mac, Entry { port, seen: now });
        } else {
            self.learn_overflows += 1;
        }
    }

    /// The port `mac` was last seen behind, unless that is older than `max_age`.
    #[inline]
    pub fn lookup(&self, mac: &[u8; 6], now: u64) -> Option<u16> {
        let e = self.map.get(mac)?;
        (now.wrapping_sub(e.seen) <= self.max_age).then_some(e.port)
    }

    /// Learns the frame's source and decides where the frame goes.
    #[inline]
    pub fn decide(&mut self, frame: &[u8], in_port: u16, now: u64) -> L2Decision {
        let Some(hdr) = frame.get(..ETH_HEADER) else {
            return L2Decision::Drop;
        };
        let mut dst = [0u8; 6];
        let mut src = [0u8; 6];
        dst.copy_from_slice(&hdr[0..6]);
        src.copy_from_slice(&hdr[6..12]);
        self.learn(src, in_port, now);
        if dst[0] & 1 != 0 {
            return L2Decision::Flood;
        }
        match self.lookup(&dst, now) {
            Some(p) if p == in_port => L2Decision::Drop,
            Some(p) => L2Decision::Forward(p),
            None => L2Decision::Flood,
        }
    }

    /// Removes entries older than `max_age`, at most once per `max_age / 2` ticks (so
    /// calling it often is cheap). Returns how many were removed.
    pub fn age(&mut self, now: u64) -> usize {
        if now.wrapping_sub(self.last_sweep) < self.max_age / 2 {
            return 0;
        }
        self.last_sweep = now;
        let before = self.map.len();
        let max_age = self.max_age;
        self.map.retain(|_, e| now.wrapping_sub(e.seen) <= max_age);
        before - self.map.len()
    }

    /// Entries held (including expired ones not yet swept).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 6] = [0x02, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [0x02, 0, 0, 0, 0, 0xb];
    const C: [u8; 6] = [0x02, 0, 0, 0, 0, 0xc];
    const BCAST: [u8; 6] = [0xff; 6];
    const MCAST: [u8; 6] = [0x01, 0x00, 0x5e, 0, 0, 1];

    fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
        let mut f = Vec::from(dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[0u8; 46]);
        f
    }

    #[test]
    fn bridge_decisions_in_sequence() {
        let mut t = MacTable::new(16, 1000);
        // (dst, src, in_port, now, expected)
        let steps: &[([u8; 6], [u8; 6], u16, u64, L2Decision)] = &[
            (B, A, 0, 0, L2Decision::Flood),           // B unknown: flood; learn A@0
            (A, B, 1, 1, L2Decision::Forward(0)),      // A known at 0; learn B@1
            (B, A, 0, 2, L2Decision::Forward(1)),      // B known at 1
            (BCAST, C, 2, 3, L2Decision::Flood),       // broadcast floods; learn C@2
            (MCAST, A, 0, 4, L2Decision::Flood),       // multicast floods
            (C, A, 0, 5, L2Decision::Forward(2)),
            (A, B, 0, 6, L2Decision::Drop),            // B moved to port 0; A is on 0 too
            (B, C, 2, 7, L2Decision::Forward(0)),      // B now learned at 0
        ];
        for (i, &(dst, src, port, now, want)) in steps.iter().enumerate() {
            assert_eq!(t.decide(&frame(dst, src), port, now), want, "step {i}");
        }
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn runts_are_dropped_and_group_sources_not_learned() {
        let mut t = MacTable::new(16, 1000);
        assert_eq!(t.decide(&[0u8; 13], 0, 0), L2Decision::Drop);
        assert_eq!(t.decide(&frame(A, MCAST), 0, 0), L2Decision::Flood);
        assert_eq!(t.decide(&frame(A, [0; 6]), 0, 0), L2Decision::Flood);
        assert!(t.is_empty());
    }

    #[test]
    fn entries_expire_after_max_age() {
        let mut t = MacTable::new(16, 100);
        t.learn(A, 3, 1000);
        assert_eq!(t.lookup(&A, 1100), Some(3));
        assert_eq!(t.lookup(&A, 1101), None);
        t.learn(B, 4, 1050);
        assert_eq!(t.age(1101), 1); // A removed, B stays
        assert_eq!(t.len(), 1);
        assert_eq!(t.age(1120), 0); // sweeps at most every max_age/2
        assert_eq!(t.lookup(&B, 1120), Some(4));
    }

    #[test]
    fn full_table_stops_learning_until_aged() {
        let mut t = MacTable::new(2, 100);
        t.learn(A, 0, 0);
        t.learn(B, 1, 0);
        t.learn(C, 2, 10);
        assert_eq!(t.lookup(&C, 10), None);
        assert_eq!(t.learn_overflows, 1);
        t.learn(A, 0, 90); // refresh A
        assert_eq!(t.age(150), 1); // B expired
        t.learn(C, 2, 150);
        assert_eq!(t.lookup(&C, 150), Some(2));
        assert_eq!(t.lookup(&A, 150), Some(0));
    }
}
