//! Address sets as sorted, disjoint, non-adjacent inclusive intervals, one list per
//! family. This is what selectors and `ipBlock`s resolve to at compile time; the
//! builder turns the sets of a rule set into disjoint lookup segments.

use ipnet::IpNet;
use std::net::IpAddr;

/// An inclusive address interval `[lo, hi]`.
pub type Interval<T> = (T, T);

/// A set of IPv4 and IPv6 addresses. Always normalised: each family's intervals are
/// sorted, disjoint and never adjacent, so equal sets compare (and hash) equal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct AddressSet {
    v4: Vec<Interval<u32>>,
    v6: Vec<Interval<u128>>,
}

impl AddressSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every address of both families (a peer that is "anything").
    pub fn all() -> Self {
        AddressSet { v4: vec![(0, u32::MAX)], v6: vec![(0, u128::MAX)] }
    }

    /// The whole network of `net` (host bits are ignored, as Kubernetes does for a
    /// non-canonical CIDR such as `192.168.7.99/24`).
    pub fn from_net(net: IpNet) -> Self {
        let mut s = AddressSet::new();
        match net.trunc() {
            IpNet::V4(n) => s.v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
            IpNet::V6(n) => s.v6.push((u128::from(n.network()), u128::from(n.broadcast()))),
        }
        s
    }

    /// `cidr` minus every `except` network: an `ipBlock`.
    pub fn block(cidr: IpNet, except: &[IpNet]) -> Self {
        let mut carve = AddressSet::new();
        for e in except {
            carve = carve.union(&AddressSet::from_net(*e));
        }
        AddressSet::from_net(cidr).subtract(&carve)
    }

    /// The set of exactly these addresses.
    pub fn from_addrs<I: IntoIterator<Item = IpAddr>>(addrs: I) -> Self {
        let mut s = AddressSet::new();
        for a in addrs {
            match a {
                IpAddr::V4(a) => s.v4.push((u32::from(a), u32::from(a))),
                IpAddr::V6(a) => s.v6.push((u128::from(a), u128::from(a))),
            }
        }
        s.v4 = normalize(s.v4);
        s.v6 = normalize(s.v6);
        s
    }

    pub fn union(&self, other: &AddressSet) -> AddressSet {
        let cat = |a: &[Interval<u32>], b: &[Interval<u32>]| normalize([a, b].concat());
        let cat6 = |a: &[Interval<u128>], b: &[Interval<u128>]| normalize([a, b].concat());
        AddressSet { v4: cat(&self.v4, &other.v4), v6: cat6(&self.v6, &other.v6) }
    }

    pub fn subtract(&self, other: &AddressSet) -> AddressSet {
        AddressSet { v4: subtract(&self.v4, &other.v4), v6: subtract(&self.v6, &other.v6) }
    }

    /// Only the addresses also in `other`.
    pub fn intersect(&self, other: &AddressSet) -> AddressSet {
        self.subtract(&self.subtract(other))
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => contains(&self.v4, u32::from(a)),
            IpAddr::V6(a) => contains(&self.v6, u128::from(a)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    pub fn v4(&self) -> &[Interval<u32>] {
        &self.v4
    }

    pub fn v6(&self) -> &[Interval<u128>] {
        &self.v6
    }
}

/// Integer address types the interval helpers work over.
trait Addr: Copy + Ord {
    const MAX: Self;
    fn succ(self) -> Self;
    fn pred(self) -> Self;
}

impl Addr for u32 {
    const MAX: Self = u32::MAX;
    fn succ(self) -> Self {
        self + 1
    }
    fn pred(self) -> Self {
        self - 1
    }
}

impl Addr for u128 {
    const MAX: Self = u128::MAX;
    fn succ(self) -> Self {
        self + 1
    }
    fn pred(self) -> Self {
        self - 1
    }
}

fn normalize<T: Addr>(mut v: Vec<Interval<T>>) -> Vec<Interval<T>> {
    v.sort_unstable();
    let mut out: Vec<Interval<T>> = Vec::with_capacity(v.len());
    for (lo, hi) in v {
        if let Some(last) = out.last_mut() {
            // Merge overlapping or adjacent intervals.
            if last.1 == T::MAX || lo <= last.1.succ() {
                if hi > last.1 {
                    last.1 = hi;
                }
                continue;
            }
        }
        out.push((lo, hi));
    }
    out
}

fn subtract<T: Addr>(a: &[Interval<T>], b: &[Interval<T>]) -> Vec<Interval<T>> {
    let mut out = Vec::with_capacity(a.len());
    let mut j = 0;
    for &(lo, hi) in a {
        let mut cur = lo;
        let mut done = false;
        while j < b.len() && b[j].1 < cur {
            j += 1;
        }
        let mut k = j;
        while k < b.len() && b[k].0 <= hi {
            let (blo, bhi) = b[k];
            if blo > cur {
                out.push((cur, blo.pred()));
            }
            if bhi >= hi {
                done = true;
                break;
            }
            cur = cur.max(bhi.succ());
            k += 1;
        }
        if !done {
            out.push((cur, hi));
        }
    }
    out
}

fn contains<T: Addr>(v: &[Interval<T>], a: T) -> bool {
    let i = v.partition_point(|&(lo, _)| lo <= a);
    i > 0 && v[i - 1].1 >= a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn block_with_except_carves_out_exactly() {
        let s = AddressSet::block(net("172.17.0.0/16"), &[net("172.17.1.0/24")]);
        assert_eq!(
            s.v4(),
            &[(0xAC11_0000, 0xAC11_00FF), (0xAC11_0200, 0xAC11_FFFF)]
        );
        assert!(s.contains("172.17.0.255".parse().unwrap()));
        assert!(!s.contains("172.17.1.0".parse().unwrap()));
        assert!(!s.contains("172.17.1.255".parse().unwrap()));
        assert!(s.contains("172.17.2.0".parse().unwrap()));
        assert!(!s.contains("::1".parse().unwrap()));
    }

    #[test]
    fn non_canonical_cidr_means_its_network() {
        let s = AddressSet::from_net(net("192.168.7.99/24"));
        assert_eq!(s.v4(), &[(0xC0A8_0700, 0xC0A8_07FF)]);
    }

    #[test]
    fn union_merges_adjacent_and_full_ranges() {
        let s = AddressSet::from_addrs(["10.0.0.1", "10.0.0.2", "10.0.0.4"].map(|a| a.parse().unwrap()));
        assert_eq!(s.v4(), &[(0x0A00_0001, 0x0A00_0002), (0x0A00_0004, 0x0A00_0004)]);
        let all = AddressSet::all().union(&s);
        assert_eq!(all, AddressSet::all());
        assert!(AddressSet::all().subtract(&AddressSet::all()).is_empty());
        let v6 = AddressSet::block(net("::/0"), &[net("8000::/1")]);
        assert_eq!(v6.v6(), &[(0, (1u128 << 127) - 1)]);
    }

    #[test]
    fn intersect_keeps_common_part() {
        let a = AddressSet::from_net(net("10.0.0.0/8"));
        let b = AddressSet::from_addrs(["10.1.2.3", "11.0.0.1"].map(|a| a.parse().unwrap()));
        assert_eq!(a.intersect(&b).v4(), &[(0x0A01_0203, 0x0A01_0203)]);
    }
}
