//! Zero-copy header views over byte slices, one module per protocol, in the style of
//! smoltcp's `wire`: a `Packet<T: AsRef<[u8]>>` (or `Frame<T>`) wraps a buffer,
//! `new_checked` validates the lengths once, and after that no accessor can panic or
//! read out of bounds. Byte ranges are named in each module's `mod field`; setters exist
//! only for `T: AsMut<[u8]>` (tests and pcap builders use them to write headers).
//!
//! Nothing here allocates, logs or interprets policy: the pipeline composes these views
//! into one parse of a frame (`pipeline::parse`).

/// The boilerplate every header view shares: the struct over a buffer, the unchecked
/// and checked constructors (the latter runs the view's own `check_len`), `into_inner`.
macro_rules! header_view {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        pub struct $name<T: AsRef<[u8]>> {
            buffer: T,
        }

        impl<T: AsRef<[u8]>> $name<T> {
            /// Wrap `buffer` without checking it: accessors may then panic.
            pub const fn new_unchecked(buffer: T) -> Self {
                $name { buffer }
            }

            /// Wrap `buffer` once `check_len` proves that no accessor can read past it.
            pub fn new_checked(buffer: T) -> $crate::wire::Result<Self> {
                let view = Self::new_unchecked(buffer);
                view.check_len()?;
                Ok(view)
            }

            pub fn into_inner(self) -> T {
                self.buffer
            }
        }
    };
}

/// Source and destination port accessors at bytes 0..2 and 2..4, where TCP, UDP and
/// SCTP all keep them.
macro_rules! port_accessors {
    ($name:ident) => {
        impl<T: AsRef<[u8]>> $name<T> {
            pub fn src_port(&self) -> u16 {
                $crate::wire::get_u16(self.buffer.as_ref(), 0)
            }

            pub fn dst_port(&self) -> u16 {
                $crate::wire::get_u16(self.buffer.as_ref(), 2)
            }
        }

        impl<T: AsRef<[u8]> + AsMut<[u8]>> $name<T> {
            pub fn set_src_port(&mut self, value: u16) {
                $crate::wire::set_u16(self.buffer.as_mut(), 0, value);
            }

            pub fn set_dst_port(&mut self, value: u16) {
                $crate::wire::set_u16(self.buffer.as_mut(), 2, value);
            }
        }
    };
}

pub mod arp;
pub mod ethernet;
pub mod icmp;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod sctp;
pub mod tcp;
pub mod udp;

/// Why a buffer is not a valid header of the claimed protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The buffer ends before the header (or the length a header field claims) does.
    #[error("truncated: the buffer is shorter than the header says")]
    Truncated,
    /// A field holds a value the protocol does not allow (bad version, header length
    /// below the minimum, extension chain longer than the bound, ...).
    #[error("malformed: a header field holds an invalid value")]
    Malformed,
}

pub type Result<T> = core::result::Result<T, Error>;

/// IP protocol numbers (IPv4 `protocol`, IPv6 `next header`).
pub mod ip_proto {
    pub const HOP_BY_HOP: u8 = 0;
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const IPV6_ROUTING: u8 = 43;
    pub const IPV6_FRAGMENT: u8 = 44;
    pub const AH: u8 = 51;
    pub const ICMPV6: u8 = 58;
    pub const IPV6_NO_NEXT: u8 = 59;
    pub const IPV6_DEST_OPTS: u8 = 60;
    pub const SCTP: u8 = 132;
}

// Big-endian field access. Callers index only ranges their `check_len` has proven to be
// inside the buffer, so the slice indexing below cannot fail at run time.
#[inline(always)]
pub(crate) fn get_u16(data: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([data[at], data[at + 1]])
}

#[inline(always)]
pub(crate) fn get_u32(data: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

#[inline(always)]
pub(crate) fn set_u16(data: &mut [u8], at: usize, value: u16) {
    data[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

#[inline(always)]
pub(crate) fn set_u32(data: &mut [u8], at: usize, value: u32) {
    data[at..at + 4].copy_from_slice(&value.to_be_bytes());
}

/// The Internet checksum (RFC 1071) of `data`, folded, not complemented, starting from
/// `initial` (a pseudo-header sum, or 0). Used by the builders in tests and pcap tools;
/// the packet path does not verify checksums (NICs do, and a firewall forwards as is).
pub fn checksum_sum(initial: u32, data: &[u8]) -> u32 {
    let mut sum = initial;
    let mut chunks = data.chunks_exact(2);
    for pair in &mut chunks {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

/// Fold a 32-bit one's-complement sum and complement it: the value to store.
pub fn checksum_finish(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_rfc1071_example() {
        // RFC 1071 section 3 example: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
        let sum = checksum_sum(0, &[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
        assert_eq!(checksum_finish(sum), !0xddf2);
    }

    #[test]
    fn checksum_of_odd_length_pads_with_zero() {
        assert_eq!(checksum_sum(0, &[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    }
}

/// Wrap `bytes` in every checked view (as each protocol's header) and call every
/// accessor of each view that accepts them, asserting the offsets they report stay
/// inside the buffer. For the never-panic property below and the `packet` fuzz target:
/// a panic here is a parser bug.
pub fn read_every_view(b: &[u8]) {
    if let Ok(f) = ethernet::Frame::new_checked(b) {
        let _ = (f.dst_addr(), f.src_addr(), f.ethertype(), f.payload().len());
    }
    if let Ok(t) = ethernet::VlanTag::new_checked(b) {
        let _ = (t.tci(), t.vlan_id(), t.pcp(), t.ethertype(), t.payload().len());
    }
    if let Ok(l2) = ethernet::walk_tags(b) {
        assert!(l2.payload_offset <= b.len(), "payload offset past the frame");
    }
    if let Ok(a) = arp::Packet::new_checked(b) {
        let _ = (a.hardware_type(), a.protocol_type(), a.operation(), a.source_hardware_addr().len());
        let _ = (a.source_protocol_addr().len(), a.target_hardware_addr().len(), a.target_protocol_addr().len());
    }
    for ip in [ipv4::Packet::new_checked(b), ipv4::Packet::new_quoted(b)].into_iter().flatten() {
        let _ = (ip.header_len(), ip.dscp(), ip.total_len(), ip.ident(), ip.dont_frag(), ip.more_frags());
        let _ = (ip.frag_offset(), ip.ttl(), ip.protocol(), ip.checksum(), ip.src_addr(), ip.dst_addr());
        let _ = (ip.options().len(), ip.payload().len(), ip.verify_checksum(), ip.is_fragment());
    }
    for ip in [ipv6::Packet::new_checked(b), ipv6::Packet::new_quoted(b)].into_iter().flatten() {
        let _ = (ip.traffic_class(), ip.flow_label(), ip.payload_len(), ip.hop_limit(), ip.src_addr(), ip.dst_addr());
        if let Ok(upper) = ipv6::walk_extensions(ip.next_header(), ip.payload()) {
            assert!(upper.offset <= ip.payload().len(), "upper-layer offset past the payload");
        }
    }
    for first in [ip_proto::HOP_BY_HOP, ip_proto::IPV6_ROUTING, ip_proto::IPV6_FRAGMENT, ip_proto::AH, ip_proto::IPV6_DEST_OPTS] {
        if let Ok(upper) = ipv6::walk_extensions(first, b) {
            assert!(upper.offset <= b.len(), "upper-layer offset past the payload");
        }
    }
    if let Ok(t) = tcp::Packet::new_checked(b) {
        let _ = (t.src_port(), t.dst_port(), t.seq_number(), t.ack_number(), t.flags(), t.window_len());
        let _ = (t.checksum(), t.urgent_at(), t.options().len(), t.payload().len());
    }
    if let Ok(u) = udp::Packet::new_checked(b) {
        let _ = (u.src_port(), u.dst_port(), u.len(), u.checksum(), u.payload().len());
    }
    if let Ok(s) = sctp::Packet::new_checked(b) {
        let _ = (s.src_port(), s.dst_port(), s.verification_tag(), s.checksum(), s.first_chunk_type(), s.chunks().len());
    }
    if let Ok(m) = icmp::Packet::new_checked(b) {
        let _ = (m.msg_type(), m.msg_code(), m.checksum(), m.echo_ident(), m.echo_seq_no(), m.payload().len());
        let _ = (icmp::classify(m.msg_type()), icmpv6::classify(m.msg_type()));
    }
}

#[cfg(test)]
mod never_panic {
    //! Property: on any bytes, every view either refuses them in `new_checked` or answers
    //! every accessor without panicking.
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn checked_views_answer_every_accessor(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            read_every_view(&bytes);
        }
    }
}
