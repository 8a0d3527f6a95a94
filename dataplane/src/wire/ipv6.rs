//! IPv6 (RFC 8200): the fixed header, the extension headers (hop-by-hop, routing,
//! fragment, destination options, AH), and `walk_extensions`, which follows the chain to
//! the upper-layer protocol with a bound on how many headers it will look at.
//!
//! Extension headers are not trusted: each one's length is checked against what is left,
//! hop-by-hop is accepted only first, and a chain longer than `MAX_EXT_HEADERS` is
//! malformed (long chains are a known way to hide the upper-layer header from filters).

use super::{get_u16, get_u32, ip_proto, set_u16, set_u32, Error, Result};

mod field {
    use core::ops::Range;
    pub const VER_TC_FLOW: usize = 0;
    pub const LENGTH: usize = 4;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
    pub const PAYLOAD: usize = 40;
    // Extension headers, relative to their start.
    pub const EXT_NXT_HDR: usize = 0;
    pub const EXT_LEN: usize = 1;
    pub const FRAG_OFFSET: usize = 2;
    pub const FRAG_IDENT: usize = 4;
    pub const FRAG_LEN: usize = 8;
}

pub const HEADER_LEN: usize = field::PAYLOAD;
pub const FRAGMENT_HEADER_LEN: usize = field::FRAG_LEN;
/// The most extension headers `walk_extensions` will follow.
pub const MAX_EXT_HEADERS: usize = 8;

header_view!(
    /// A view of an IPv6 packet's fixed header and payload.
    Packet
);

impl<T: AsRef<[u8]>> Packet<T> {
    /// Version 6, the fixed header present, and the payload length inside the buffer.
    pub fn check_len(&self) -> Result<()> {
        self.check_header()?;
        if HEADER_LEN + usize::from(self.payload_len()) > self.buffer.as_ref().len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Lenient form for a packet quoted in an ICMPv6 error: only the fixed header must fit.
    pub fn new_quoted(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_header()?;
        Ok(packet)
    }

    fn check_header(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 6 {
            return Err(Error::Malformed);
        }
        Ok(())
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TC_FLOW] >> 4
    }

    pub fn traffic_class(&self) -> u8 {
        (get_u16(self.buffer.as_ref(), field::VER_TC_FLOW) >> 4) as u8
    }

    pub fn flow_label(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::VER_TC_FLOW) & 0x000f_ffff
    }

    pub fn payload_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }

    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    pub fn src_addr(&self) -> [u8; 16] {
        let mut addr = [0; 16];
        addr.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        addr
    }

    pub fn dst_addr(&self) -> [u8; 16] {
        let mut addr = [0; 16];
        addr.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        addr
    }

    /// The payload: `payload_len` bytes, or what is left of a quoted packet.
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        let end = (HEADER_LEN + usize::from(self.payload_len())).min(data.len());
        &data[HEADER_LEN..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Version 6, traffic class 0, and `flow_label`.
    pub fn set_version_and_flow_label(&mut self, flow_label: u32) {
        set_u32(self.buffer.as_mut(), field::VER_TC_FLOW, 0x6000_0000 | (flow_label & 0x000f_ffff));
    }

    pub fn set_payload_len(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    pub fn set_next_header(&mut self, value: u8) {
        self.buffer.as_mut()[field::NXT_HDR] = value;
    }

    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = value;
    }

    pub fn set_src_addr(&mut self, addr: [u8; 16]) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr);
    }

    pub fn set_dst_addr(&mut self, addr: [u8; 16]) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr);
    }
}

header_view!(
    /// A view of an options-style extension header (hop-by-hop, routing, destination
    /// options): next header, then a length in 8-octet units not counting the first 8.
    ExtHeader
);

impl<T: AsRef<[u8]>> ExtHeader<T> {
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < 8 || len < self.header_len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::EXT_NXT_HDR]
    }

    /// Length of the whole header in bytes.
    pub fn header_len(&self) -> usize {
        (usize::from(self.buffer.as_ref()[field::EXT_LEN]) + 1) * 8
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ExtHeader<T> {
    /// Next header and a total length in bytes (a multiple of 8, at least 8).
    pub fn set_header(&mut self, next_header: u8, header_len: usize) {
        let data = self.buffer.as_mut();
        data[field::EXT_NXT_HDR] = next_header;
        data[field::EXT_LEN] = (header_len / 8 - 1) as u8;
    }
}

header_view!(
    /// A view of the 8-byte Fragment header.
    FragmentHeader
);

impl<T: AsRef<[u8]>> FragmentHeader<T> {
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < FRAGMENT_HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::EXT_NXT_HDR]
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::FRAG_OFFSET) & 0xfff8
    }

    pub fn more_frags(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FRAG_OFFSET) & 1 != 0
    }

    pub fn ident(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::FRAG_IDENT)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> FragmentHeader<T> {
    /// `offset` in bytes (a multiple of 8).
    pub fn set_fragment(&mut self, next_header: u8, offset: u16, more_frags: bool, ident: u32) {
        let data = self.buffer.as_mut();
        data[field::EXT_NXT_HDR] = next_header;
        data[field::EXT_LEN] = 0;
        set_u16(data, field::FRAG_OFFSET, (offset & 0xfff8) | u16::from(more_frags));
        set_u32(data, field::FRAG_IDENT, ident);
    }
}

/// Fragmentation fields from a Fragment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentInfo {
    pub ident: u32,
    /// Offset in bytes.
    pub offset: u16,
    pub more: bool,
}

/// Where the extension chain ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upper {
    /// The upper-layer protocol (TCP, UDP, ICMPv6, ..., or 59 "no next header", or 50
    /// ESP, whose contents cannot be walked).
    pub protocol: u8,
    /// Offset of the upper-layer header within the IPv6 payload.
    pub offset: usize,
    /// Present when a Fragment header was crossed.
    pub fragment: Option<FragmentInfo>,
}

/// Follow the extension-header chain that starts with `next_header` over `payload` (the
/// IPv6 payload). A non-first fragment stops the walk at its Fragment header: what
/// follows is fragment data, not headers.
pub fn walk_extensions(mut next_header: u8, payload: &[u8]) -> Result<Upper> {
    let mut offset = 0;
    let mut fragment = None;
    for index in 0..=MAX_EXT_HEADERS {
        let rest = payload.get(offset..).ok_or(Error::Truncated)?;
        let header_len = match next_header {
            ip_proto::HOP_BY_HOP if index != 0 => return Err(Error::Malformed),
            ip_proto::HOP_BY_HOP | ip_proto::IPV6_ROUTING | ip_proto::IPV6_DEST_OPTS => {
                let header = ExtHeader::new_checked(rest)?;
                next_header = header.next_header();
                header.header_len()
            }
            ip_proto::IPV6_FRAGMENT => {
                if fragment.is_some() {
                    return Err(Error::Malformed);
                }
                let header = FragmentHeader::new_checked(rest)?;
                let info = FragmentInfo {
                    ident: header.ident(),
                    offset: header.frag_offset(),
                    more: header.more_frags(),
                };
                fragment = Some(info);
                next_header = header.next_header();
                if info.offset != 0 {
                    let offset = offset + FRAGMENT_HEADER_LEN;
                    return Ok(Upper { protocol: next_header, offset, fragment });
                }
                FRAGMENT_HEADER_LEN
            }
            ip_proto::AH => {
                // RFC 4302: payload length in 4-octet units, minus 2.
                if rest.len() < 8 {
                    return Err(Error::Truncated);
                }
                let header_len = (usize::from(rest[1]) + 2) * 4;
                if rest.len() < header_len {
                    return Err(Error::Truncated);
                }
                next_header = rest[0];
                header_len
            }
            protocol => return Ok(Upper { protocol, offset, fragment }),
        };
        offset += header_len;
    }
    Err(Error::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const DST: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    // fd00::1 -> fd00::2, flow label 0x12345, hop-by-hop (8 bytes, PadN) -> fragment
    // (offset 0, M, ident 0xabcdef01) -> UDP (8 bytes, ports 1000 -> 53).
    const GOLDEN: [u8; 64] = [
        0x60, 0x01, 0x23, 0x45, 0x00, 0x18, 0x00, 0x40, //
        0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, //
        0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, //
        0x2c, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, // hop-by-hop, PadN
        0x11, 0x00, 0x00, 0x01, 0xab, 0xcd, 0xef, 0x01, // fragment
        0x03, 0xe8, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00, // UDP
    ];

    #[test]
    fn reads_fixed_header() {
        let ip = Packet::new_checked(&GOLDEN[..]).unwrap();
        assert_eq!(ip.version(), 6);
        assert_eq!(ip.traffic_class(), 0);
        assert_eq!(ip.flow_label(), 0x12345);
        assert_eq!(ip.payload_len(), 24);
        assert_eq!(ip.next_header(), ip_proto::HOP_BY_HOP);
        assert_eq!(ip.hop_limit(), 64);
        assert_eq!(ip.src_addr(), SRC);
        assert_eq!(ip.dst_addr(), DST);
        assert_eq!(ip.payload().len(), 24);
    }

    #[test]
    fn writes_golden_packet() {
        let mut buf = [0u8; 64];
        let mut ip = Packet::new_unchecked(&mut buf[..]);
        ip.set_version_and_flow_label(0x12345);
        ip.set_payload_len(24);
        ip.set_next_header(ip_proto::HOP_BY_HOP);
        ip.set_hop_limit(64);
        ip.set_src_addr(SRC);
        ip.set_dst_addr(DST);
        ExtHeader::new_unchecked(&mut buf[40..48]).set_header(ip_proto::IPV6_FRAGMENT, 8);
        buf[42..44].copy_from_slice(&[0x01, 0x04]);
        FragmentHeader::new_unchecked(&mut buf[48..56]).set_fragment(ip_proto::UDP, 0, true, 0xabcd_ef01);
        buf[56..64].copy_from_slice(&GOLDEN[56..64]);
        assert_eq!(buf, GOLDEN);
    }

    #[test]
    fn walks_chain_to_udp() {
        let ip = Packet::new_checked(&GOLDEN[..]).unwrap();
        let upper = walk_extensions(ip.next_header(), ip.payload()).unwrap();
        assert_eq!(
            upper,
            Upper {
                protocol: ip_proto::UDP,
                offset: 16,
                fragment: Some(FragmentInfo { ident: 0xabcd_ef01, offset: 0, more: true }),
            }
        );
    }

    #[test]
    fn non_first_fragment_stops_at_fragment_header() {
        let mut packet = GOLDEN;
        packet[50..52].copy_from_slice(&[0x05, 0xb8]); // offset 1464, M clear
        let upper = walk_extensions(ip_proto::HOP_BY_HOP, &packet[40..]).unwrap();
        assert_eq!(upper.protocol, ip_proto::UDP);
        assert_eq!(upper.offset, 16);
        assert_eq!(upper.fragment, Some(FragmentInfo { ident: 0xabcd_ef01, offset: 1464, more: false }));
    }

    #[test]
    fn rejects_bad_chains() {
        // Hop-by-hop anywhere but first.
        let mut chain = [0u8; 16];
        chain[0] = ip_proto::HOP_BY_HOP;
        assert_eq!(walk_extensions(ip_proto::IPV6_DEST_OPTS, &chain).unwrap_err(), Error::Malformed);
        // Destination options claiming 16 bytes in an 8-byte payload.
        let chain = [ip_proto::UDP, 1, 0, 0, 0, 0, 0, 0];
        assert_eq!(walk_extensions(ip_proto::IPV6_DEST_OPTS, &chain).unwrap_err(), Error::Truncated);
        // Longer than the bound: nine destination-options headers in a row.
        let mut long = [0u8; 8 * (MAX_EXT_HEADERS + 1) + 8];
        for header in long.chunks_mut(8) {
            header[0] = ip_proto::IPV6_DEST_OPTS;
        }
        assert_eq!(walk_extensions(ip_proto::IPV6_DEST_OPTS, &long).unwrap_err(), Error::Malformed);
        // Two fragment headers.
        let twice = [ip_proto::IPV6_FRAGMENT, 0, 0, 0, 0, 0, 0, 1, ip_proto::UDP, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(walk_extensions(ip_proto::IPV6_FRAGMENT, &twice).unwrap_err(), Error::Malformed);
    }

    #[test]
    fn rejects_truncated_or_wrong_version() {
        assert_eq!(Packet::new_checked(&GOLDEN[..39]).unwrap_err(), Error::Truncated);
        assert_eq!(Packet::new_checked(&GOLDEN[..63]).unwrap_err(), Error::Truncated);
        let mut bad = GOLDEN;
        bad[0] = 0x40;
        assert_eq!(Packet::new_checked(&bad[..]).unwrap_err(), Error::Malformed);
        assert!(Packet::new_quoted(&GOLDEN[..40]).is_ok());
    }

    #[test]
    fn walks_routing_and_ah() {
        // Routing (8 bytes) -> AH (12 bytes: len field 1) -> TCP.
        let mut chain = [0u8; 24];
        chain[0] = ip_proto::AH;
        chain[8] = ip_proto::TCP;
        chain[9] = 1;
        let upper = walk_extensions(ip_proto::IPV6_ROUTING, &chain).unwrap();
        assert_eq!(upper, Upper { protocol: ip_proto::TCP, offset: 20, fragment: None });
    }
}
