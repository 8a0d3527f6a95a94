//! IPv4 (RFC 791): header with options, fragmentation fields.
//!
//! `new_checked` proves that the version is 4, the header length (IHL) is at least 20
//! bytes and fits, and that the total length covers the header and fits in the buffer
//! (Ethernet padding after it is allowed and ignored by `payload`). `new_quoted` is the
//! lenient form for the copy of a datagram quoted inside an ICMP error, which is usually
//! cut short: only the header itself must fit.

use super::{get_u16, set_u16, Error, Result};

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLG_OFF: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
    pub const OPTIONS: usize = 20;
}

pub const MIN_HEADER_LEN: usize = field::OPTIONS;
const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

header_view!(
    /// A view of an IPv4 datagram.
    Packet
);

impl<T: AsRef<[u8]>> Packet<T> {
    /// Lenient check for a datagram quoted in an ICMP error: the header must be whole,
    /// the rest may be cut. `payload` then returns what is there.
    pub fn new_quoted(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_header()?;
        Ok(packet)
    }

    fn check_header(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < MIN_HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 4 || self.header_len() < MIN_HEADER_LEN {
            return Err(Error::Malformed);
        }
        if len < self.header_len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn check_len(&self) -> Result<()> {
        self.check_header()?;
        let total = usize::from(self.total_len());
        if total < self.header_len() {
            return Err(Error::Malformed);
        }
        if total > self.buffer.as_ref().len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL × 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    pub fn total_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    pub fn ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::IDENT)
    }

    pub fn dont_frag(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_DF != 0
    }

    pub fn more_frags(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_MF != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (get_u16(self.buffer.as_ref(), field::FLG_OFF) & OFFSET_MASK) << 3
    }

    /// Whether this datagram is a fragment (first or not) rather than a whole datagram.
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    pub fn src_addr(&self) -> [u8; 4] {
        let mut addr = [0; 4];
        addr.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        addr
    }

    pub fn dst_addr(&self) -> [u8; 4] {
        let mut addr = [0; 4];
        addr.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        addr
    }

    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..self.header_len()]
    }

    /// Whether the header checksum is right.
    pub fn verify_checksum(&self) -> bool {
        let header = &self.buffer.as_ref()[..self.header_len()];
        super::checksum_finish(super::checksum_sum(0, header)) == 0
    }

    /// The payload: up to the total length, or to the buffer's end for a quoted datagram.
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        let end = usize::from(self.total_len()).min(data.len()).max(self.header_len());
        &data[self.header_len()..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Version 4 and the header length in bytes (a multiple of 4, 20..=60).
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ((header_len / 4) as u8 & 0x0f);
    }

    pub fn set_total_len(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    pub fn set_ident(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::IDENT, value);
    }

    /// Flags and offset together: `offset` in bytes (multiple of 8).
    pub fn set_frag(&mut self, dont_frag: bool, more_frags: bool, offset: u16) {
        let mut value = (offset >> 3) & OFFSET_MASK;
        if dont_frag {
            value |= FLAG_DF;
        }
        if more_frags {
            value |= FLAG_MF;
        }
        set_u16(self.buffer.as_mut(), field::FLG_OFF, value);
    }

    pub fn set_ttl(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value;
    }

    pub fn set_protocol(&mut self, value: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = value;
    }

    pub fn set_src_addr(&mut self, addr: [u8; 4]) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr);
    }

    pub fn set_dst_addr(&mut self, addr: [u8; 4]) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr);
    }

    /// Compute and store the header checksum (the header length must be set).
    pub fn fill_checksum(&mut self) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, 0);
        let header_len = self.header_len();
        let sum = super::checksum_sum(0, &self.buffer.as_ref()[..header_len]);
        set_u16(self.buffer.as_mut(), field::CHECKSUM, super::checksum_finish(sum));
    }
}

/// The pseudo-header sum for TCP/UDP checksums over IPv4.
pub fn pseudo_header_sum(src: [u8; 4], dst: [u8; 4], protocol: u8, l4_len: u16) -> u32 {
    let mut sum = super::checksum_sum(0, &src);
    sum = super::checksum_sum(sum, &dst);
    sum + u32::from(protocol) + u32::from(l4_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 10.0.0.1 -> 10.0.0.2, TCP, ident 0x1234, DF, TTL 64, total 24 (4 payload bytes).
    const GOLDEN: [u8; 24] = [
        0x45, 0x00, 0x00, 0x18, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x14, 0xaa, 10, 0, 0, 1,
        10, 0, 0, 2, 0xde, 0xad, 0xbe, 0xef,
    ];

    #[test]
    fn reads_golden_header() {
        let ip = Packet::new_checked(&GOLDEN[..]).unwrap();
        assert_eq!(ip.version(), 4);
        assert_eq!(ip.header_len(), 20);
        assert_eq!(ip.total_len(), 24);
        assert_eq!(ip.ident(), 0x1234);
        assert!(ip.dont_frag());
        assert!(!ip.is_fragment());
        assert_eq!(ip.ttl(), 64);
        assert_eq!(ip.protocol(), 6);
        assert_eq!(ip.src_addr(), [10, 0, 0, 1]);
        assert_eq!(ip.dst_addr(), [10, 0, 0, 2]);
        assert!(ip.options().is_empty());
        assert_eq!(ip.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        assert!(ip.verify_checksum());
    }

    #[test]
    fn writes_golden_header() {
        let mut buf = [0u8; 24];
        buf[20..].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        let mut ip = Packet::new_unchecked(&mut buf[..]);
        ip.set_version_and_header_len(20);
        ip.set_total_len(24);
        ip.set_ident(0x1234);
        ip.set_frag(true, false, 0);
        ip.set_ttl(64);
        ip.set_protocol(6);
        ip.set_src_addr([10, 0, 0, 1]);
        ip.set_dst_addr([10, 0, 0, 2]);
        ip.fill_checksum();
        assert_eq!(buf, GOLDEN);
    }

    #[test]
    fn reads_options_and_fragment_fields() {
        // IHL 6: one 4-byte option (NOP NOP NOP EOL); MF set, offset 1480 bytes.
        let mut buf = [0u8; 28];
        buf[..20].copy_from_slice(&GOLDEN[..20]);
        buf[0] = 0x46;
        buf[2..4].copy_from_slice(&28u16.to_be_bytes());
        buf[6..8].copy_from_slice(&(0x2000u16 | (1480 / 8)).to_be_bytes());
        buf[20..24].copy_from_slice(&[1, 1, 1, 0]);
        let ip = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(ip.header_len(), 24);
        assert_eq!(ip.options(), &[1, 1, 1, 0]);
        assert!(ip.more_frags());
        assert_eq!(ip.frag_offset(), 1480);
        assert!(ip.is_fragment());
        assert_eq!(ip.payload().len(), 4);
    }

    #[test]
    fn ignores_ethernet_padding() {
        let mut padded = GOLDEN.to_vec();
        padded.extend_from_slice(&[0; 6]);
        let ip = Packet::new_checked(&padded[..]).unwrap();
        assert_eq!(ip.payload(), &[0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn rejects_bad_lengths_and_version() {
        assert_eq!(Packet::new_checked(&GOLDEN[..19]).unwrap_err(), Error::Truncated);
        assert_eq!(Packet::new_checked(&GOLDEN[..23]).unwrap_err(), Error::Truncated);
        let mut bad = GOLDEN;
        bad[0] = 0x44; // IHL 4 < 5
        assert_eq!(Packet::new_checked(&bad[..]).unwrap_err(), Error::Malformed);
        let mut bad = GOLDEN;
        bad[0] = 0x65; // version 6
        assert_eq!(Packet::new_checked(&bad[..]).unwrap_err(), Error::Malformed);
        let mut bad = GOLDEN;
        bad[3] = 16; // total length below the header length
        assert_eq!(Packet::new_checked(&bad[..]).unwrap_err(), Error::Malformed);
        let mut bad = GOLDEN;
        bad[0] = 0x4f; // IHL 15 = 60 bytes, longer than the buffer
        assert_eq!(Packet::new_checked(&bad[..]).unwrap_err(), Error::Truncated);
    }

    #[test]
    fn quoted_datagram_may_be_cut_short() {
        // Header says 24 bytes, only 22 are quoted.
        let ip = Packet::new_quoted(&GOLDEN[..22]).unwrap();
        assert_eq!(ip.payload(), &[0xde, 0xad]);
        assert_eq!(Packet::new_quoted(&GOLDEN[..19]).unwrap_err(), Error::Truncated);
    }
}
