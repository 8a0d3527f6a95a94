//! The canonical bidirectional flow key and its hash.
//!
//! Addresses are stored as 16 bytes (IPv4 as `::ffff:a.b.c.d`, which never appears on
//! the wire as a real IPv6 source), the (address, port) pairs sorted so that A→B and
//! B→A produce the same key. Five `u64` words: cheap to compare and to hash.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Which endpoint of the canonical key an address belongs to: `Lo` sorts first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Side {
    Lo = 0,
    Hi = 1,
}

impl Side {
    #[inline]
    pub fn other(self) -> Side {
        match self {
            Side::Lo => Side::Hi,
            Side::Hi => Side::Lo,
        }
    }
}

/// A canonical, bidirectional 5-tuple plus VLANs.
#[derive(Clone, Copy, Debug, Default, Eq)]
#[repr(C, align(8))]
pub struct FlowKey {
    /// lo address (2 words), hi address (2 words), then
    /// lo port << 48 | hi port << 32 | protocol << 24 | vlan (24 bits: outer << 12 | inner).
    words: [u64; 5],
}

impl PartialEq for FlowKey {
    /// Branch-free over the five words: the derived array compare calls `memcmp`.
    #[inline(always)]
    fn eq(&self, other: &FlowKey) -> bool {
        let (a, b) = (&self.words, &other.words);
        ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (a[4] ^ b[4])) == 0
    }
}

/// For std and hashbrown maps (benches compare against them); consistent with `eq`.
impl std::hash::Hash for FlowKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.words.hash(state);
    }
}

/// An IPv4 address as the 16 bytes a key stores.
#[inline(always)]
pub fn v4_mapped(addr: [u8; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[10] = 0xff;
    out[11] = 0xff;
    out[12..].copy_from_slice(&addr);
    out
}

#[inline]
fn split(addr: &[u8; 16]) -> [u64; 2] {
    let mut high = [0u8; 8];
    let mut low = [0u8; 8];
    high.copy_from_slice(&addr[..8]);
    low.copy_from_slice(&addr[8..]);
    [u64::from_be_bytes(high), u64::from_be_bytes(low)]
}

fn join(words: [u64; 2]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&words[0].to_be_bytes());
    out[8..].copy_from_slice(&words[1].to_be_bytes());
    out
}

fn to_ip(addr: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(addr);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// 16-byte form of an `IpAddr` (IPv4 mapped).
pub fn ip_bytes(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(v4) => v4_mapped(v4.octets()),
        IpAddr::V6(v6) => v6.octets(),
    }
}

impl FlowKey {
    /// The key of a packet `src:src_port → dst:dst_port`, and the side its source is on.
    #[inline]
    pub fn new(src: &[u8; 16], src_port: u16, dst: &[u8; 16], dst_port: u16, protocol: u8, vlan: u32) -> (FlowKey, Side) {
        let s = split(src);
        let d = split(dst);
        let src_first = (s[0], s[1], src_port) <= (d[0], d[1], dst_port);
        let (lo, lo_port, hi, hi_port, side) = if src_first {
            (s, src_port, d, dst_port, Side::Lo)
        } else {
            (d, dst_port, s, src_port, Side::Hi)
        };
        let tail = (u64::from(lo_port) << 48)
            | (u64::from(hi_port) << 32)
            | (u64::from(protocol) << 24)
            | u64::from(vlan & 0x00ff_ffff);
        (FlowKey { words: [lo[0], lo[1], hi[0], hi[1], tail] }, side)
    }

    /// `new` for an IPv4 packet, from the addresses as big-endian `u32`s: the same key and
    /// side as `new` over `v4_mapped` addresses, built in registers (no byte arrays).
    #[inline(always)]
    pub fn new_v4(src: u32, src_port: u16, dst: u32, dst_port: u16, protocol: u8, vlan: u32) -> (FlowKey, Side) {
        // The mapped address's high word is 0 and its low word 0xffff << 32 | address, so
        // `new`'s order (address words, then port) is the order of address << 16 | port.
        const MAPPED: u64 = 0xffff << 32;
        let s = (u64::from(src) << 16) | u64::from(src_port);
        let d = (u64::from(dst) << 16) | u64::from(dst_port);
        let (lo, hi, side) = if s <= d { (s, d, Side::Lo) } else { (d, s, Side::Hi) };
        let tail = ((lo & 0xffff) << 48) | ((hi & 0xffff) << 32) | (u64::from(protocol) << 24) | u64::from(vlan & 0x00ff_ffff);
        (FlowKey { words: [0, MAPPED | (lo >> 16), 0, MAPPED | (hi >> 16), tail] }, side)
    }

    /// The 32-bit hash the table uses, mixed with the table's secret `seed` so that
    /// outsiders cannot aim packets at one probe chain.
    #[inline]
    pub fn hash(&self, seed: u64) -> u32 {
        let h = self.hash64(seed);
        (h ^ (h >> 32)) as u32
    }

    /// The full 64-bit hash (`hash` folds it).
    #[inline]
    pub fn hash64(&self, seed: u64) -> u64 {
        const K: [u64; 5] = [
            0x243f_6a88_85a3_08d3,
            0x1319_8a2e_0370_7344,
            0xa409_3822_299f_31d0,
            0x082e_fa98_ec4e_6c89,
            0x4528_21e6_38d0_1377,
        ];
        let w = &self.words;
        let a = fold_mul(w[0] ^ seed ^ K[0], w[1] ^ K[1]);
        let b = fold_mul(w[2] ^ K[2], w[3] ^ seed ^ K[3]);
        fold_mul(a ^ w[4] ^ K[4], b ^ seed)
    }

    pub fn addr(&self, side: Side) -> IpAddr {
        to_ip(self.addr_bytes(side))
    }

    /// The address of `side` as a packet carried it: IPv4 (the mapped form's low 32 bits)
    /// when `is_v4`, else the 16 bytes as IPv6 (what `parse::Meta::src_ip` gives).
    #[inline]
    pub fn ip(&self, side: Side, is_v4: bool) -> IpAddr {
        let [high, low] = match side {
            Side::Lo => [self.words[0], self.words[1]],
            Side::Hi => [self.words[2], self.words[3]],
        };
        if is_v4 {
            IpAddr::V4(Ipv4Addr::from(low as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from((u128::from(high) << 64) | u128::from(low)))
        }
    }

    pub fn addr_bytes(&self, side: Side) -> [u8; 16] {
        match side {
            Side::Lo => join([self.words[0], self.words[1]]),
            Side::Hi => join([self.words[2], self.words[3]]),
        }
    }

    pub fn port(&self, side: Side) -> u16 {
        match side {
            Side::Lo => (self.words[4] >> 48) as u16,
            Side::Hi => (self.words[4] >> 32) as u16,
        }
    }

    pub fn protocol(&self) -> u8 {
        (self.words[4] >> 24) as u8
    }

    /// Outer VLAN << 12 | inner VLAN.
    pub fn vlan(&self) -> u32 {
        (self.words[4] & 0x00ff_ffff) as u32
    }
}

#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const A: [u8; 4] = [10, 0, 0, 1];
    const B: [u8; 4] = [10, 0, 0, 2];

    #[test]
    fn both_directions_share_a_key() {
        let (ab, side_ab) = FlowKey::new(&v4_mapped(A), 40000, &v4_mapped(B), 80, 6, 7);
        let (ba, side_ba) = FlowKey::new(&v4_mapped(B), 80, &v4_mapped(A), 40000, 6, 7);
        assert_eq!(ab, ba);
        assert_eq!(ab.hash(1), ba.hash(1));
        assert_eq!((side_ab, side_ba), (Side::Lo, Side::Hi));
        assert_eq!(ab.addr(Side::Lo), IpAddr::V4(Ipv4Addr::from(A)));
        assert_eq!(ab.addr(Side::Hi), IpAddr::V4(Ipv4Addr::from(B)));
        assert_eq!((ab.port(Side::Lo), ab.port(Side::Hi)), (40000, 80));
        assert_eq!((ab.protocol(), ab.vlan()), (6, 7));
    }

    #[test]
    fn fields_that_differ_give_different_keys() {
        let base = FlowKey::new(&v4_mapped(A), 40000, &v4_mapped(B), 80, 6, 0).0;
        let variants = [
            FlowKey::new(&v4_mapped(A), 40001, &v4_mapped(B), 80, 6, 0).0,
            FlowKey::new(&v4_mapped(A), 40000, &v4_mapped(B), 81, 6, 0).0,
            FlowKey::new(&v4_mapped(A), 40000, &v4_mapped(B), 80, 17, 0).0,
            FlowKey::new(&v4_mapped(A), 40000, &v4_mapped(B), 80, 6, 1).0,
            FlowKey::new(&v4_mapped([10, 0, 0, 3]), 40000, &v4_mapped(B), 80, 6, 0).0,
        ];
        for variant in variants {
            assert_ne!(variant, base);
        }
    }

    #[test]
    fn same_address_orders_by_port() {
        let (key, side) = FlowKey::new(&v4_mapped(A), 9000, &v4_mapped(A), 80, 17, 0);
        assert_eq!(side, Side::Hi);
        assert_eq!((key.port(Side::Lo), key.port(Side::Hi)), (80, 9000));
    }

    #[test]
    fn v4_keys_built_from_words_match_mapped_ones() {
        let cases = [(A, 40000, B, 80), (B, 80, A, 40000), (A, 9000, A, 80), (A, 80, A, 80), ([255; 4], 0, [0; 4], 65535)];
        for (s, sp, d, dp) in cases {
            let fast = FlowKey::new_v4(u32::from_be_bytes(s), sp, u32::from_be_bytes(d), dp, 6, 0x00ab_c123);
            assert_eq!(fast, FlowKey::new(&v4_mapped(s), sp, &v4_mapped(d), dp, 6, 0x00ab_c123));
            let (key, side) = fast;
            assert_eq!(key.ip(side, true), IpAddr::V4(Ipv4Addr::from(s)));
            assert_eq!(key.ip(side.other(), true), IpAddr::V4(Ipv4Addr::from(d)));
            assert_eq!(key.ip(side, false), IpAddr::V6(Ipv6Addr::from(v4_mapped(s))));
        }
    }

    #[test]
    fn ipv6_addresses_round_trip() {
        let a: Ipv6Addr = "fd00::1".parse().unwrap();
        let b: Ipv6Addr = "fd00::2".parse().unwrap();
        let (key, side) = FlowKey::new(&b.octets(), 1, &a.octets(), 2, 58, 0);
        assert_eq!(side, Side::Hi);
        assert_eq!(key.addr(Side::Lo), IpAddr::V6(a));
        assert_eq!(ip_bytes(key.addr(Side::Hi)), b.octets());
    }
}
