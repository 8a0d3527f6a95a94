//! Ethernet II frames and 802.1Q / 802.1ad (QinQ) VLAN tags.
//!
//! `Frame` is the 14-byte Ethernet header; `VlanTag` the 4-byte tag that follows a TPID
//! of 0x8100 (802.1Q, customer tag) or 0x88a8 (802.1ad, service tag). `walk_tags` peels at
//! most two tags and reports the inner EtherType and where the payload starts.

use super::{get_u16, set_u16, Error, Result};

pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const VLAN: u16 = 0x8100;
    pub const IPV6: u16 = 0x86dd;
    pub const QINQ: u16 = 0x88a8;
    /// Pre-standard QinQ TPID still emitted by some switches.
    pub const QINQ_LEGACY: u16 = 0x9100;
    pub const LLDP: u16 = 0x88cc;

    /// Whether `value` is a TPID, i.e. a VLAN tag follows.
    #[inline]
    pub fn is_vlan_tpid(value: u16) -> bool {
        matches!(value, VLAN | QINQ | QINQ_LEGACY)
    }
}

mod field {
    use core::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: usize = 12;
    pub const PAYLOAD: usize = 14;
    // VLAN tag, relative to the tag's start (just after the TPID it follows).
    pub const TAG_TCI: usize = 0;
    pub const TAG_ETHERTYPE: usize = 2;
    pub const TAG_LEN: usize = 4;
}

pub const HEADER_LEN: usize = field::PAYLOAD;
pub const VLAN_TAG_LEN: usize = field::TAG_LEN;
/// At most this many VLAN tags are peeled (QinQ); a third is malformed.
pub const MAX_VLAN_TAGS: usize = 2;

header_view!(
    /// A view of an Ethernet II header.
    Frame
);

impl<T: AsRef<[u8]>> Frame<T> {
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn dst_addr(&self) -> [u8; 6] {
        let mut mac = [0; 6];
        mac.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        mac
    }

    pub fn src_addr(&self) -> [u8; 6] {
        let mut mac = [0; 6];
        mac.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        mac
    }

    /// The EtherType (or TPID, when a VLAN tag follows).
    pub fn ethertype(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ETHERTYPE)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    pub fn set_dst_addr(&mut self, mac: [u8; 6]) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&mac);
    }

    pub fn set_src_addr(&mut self, mac: [u8; 6]) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&mac);
    }

    pub fn set_ethertype(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::ETHERTYPE, value);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

header_view!(
    /// A view of one VLAN tag: TCI then the EtherType (or next TPID) it carries.
    VlanTag
);

impl<T: AsRef<[u8]>> VlanTag<T> {
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < VLAN_TAG_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn tci(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::TAG_TCI)
    }

    /// The 12-bit VLAN identifier.
    pub fn vlan_id(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// Priority code point (802.1p).
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    pub fn ethertype(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::TAG_ETHERTYPE)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::TAG_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanTag<T> {
    pub fn set_tci(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::TAG_TCI, value);
    }

    pub fn set_ethertype(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::TAG_ETHERTYPE, value);
    }
}

/// The L2 summary of a frame after its VLAN tags are peeled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L2Header {
    /// Outer VLAN id (0 when untagged).
    pub outer_vlan: u16,
    /// Inner VLAN id (0 unless QinQ).
    pub inner_vlan: u16,
    /// EtherType of the payload.
    pub ethertype: u16,
    /// Offset of the payload in the frame.
    pub payload_offset: usize,
}

impl L2Header {
    /// Both VLAN ids in one value (outer in bits 12..24, inner in 0..12), for flow keys.
    #[inline]
    pub fn vlan_key(&self) -> u32 {
        (u32::from(self.outer_vlan) << 12) | u32::from(self.inner_vlan)
    }
}

/// Parse the Ethernet header and up to `MAX_VLAN_TAGS` tags of `frame`.
#[inline]
pub fn walk_tags(frame: &[u8]) -> Result<L2Header> {
    let eth = Frame::new_checked(frame)?;
    let mut ethertype = eth.ethertype();
    let mut offset = HEADER_LEN;
    let mut ids = [0u16; MAX_VLAN_TAGS];
    let mut tags = 0;
    while ethertype::is_vlan_tpid(ethertype) {
        if tags == MAX_VLAN_TAGS {
            return Err(Error::Malformed);
        }
        let tag = VlanTag::new_checked(frame.get(offset..).ok_or(Error::Truncated)?)?;
        ids[tags] = tag.vlan_id();
        ethertype = tag.ethertype();
        offset += VLAN_TAG_LEN;
        tags += 1;
    }
    Ok(L2Header { outer_vlan: ids[0], inner_vlan: ids[1], ethertype, payload_offset: offset })
}

#[cfg(test)]
mod tests {
    use super::*;

    // dst 02:00:00:00:00:02, src 02:00:00:00:00:01, IPv4, then one payload byte.
    const UNTAGGED: [u8; 15] = [
        0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00, 0xaa,
    ];

    // Same addresses, 802.1ad S-tag VLAN 100 (PCP 3), 802.1Q C-tag VLAN 7, then IPv6.
    const QINQ: [u8; 22] = [
        0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x88, 0xa8, 0x60, 0x64, 0x81, 0x00,
        0x00, 0x07, 0x86, 0xdd,
    ];

    #[test]
    fn reads_untagged_frame() {
        let frame = Frame::new_checked(&UNTAGGED[..]).unwrap();
        assert_eq!(frame.dst_addr(), [2, 0, 0, 0, 0, 2]);
        assert_eq!(frame.src_addr(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(frame.ethertype(), ethertype::IPV4);
        assert_eq!(frame.payload(), &[0xaa]);
        let l2 = walk_tags(&UNTAGGED).unwrap();
        assert_eq!(l2, L2Header { outer_vlan: 0, inner_vlan: 0, ethertype: 0x0800, payload_offset: 14 });
    }

    #[test]
    fn peels_qinq_tags() {
        let l2 = walk_tags(&QINQ).unwrap();
        assert_eq!(l2, L2Header { outer_vlan: 100, inner_vlan: 7, ethertype: ethertype::IPV6, payload_offset: 22 });
        assert_eq!(l2.vlan_key(), (100 << 12) | 7);
        let tag = VlanTag::new_checked(&QINQ[14..]).unwrap();
        assert_eq!(tag.pcp(), 3);
        assert_eq!(tag.vlan_id(), 100);
    }

    #[test]
    fn rejects_truncated_headers_and_third_tag() {
        assert_eq!(Frame::new_checked(&UNTAGGED[..13]).unwrap_err(), Error::Truncated);
        assert_eq!(walk_tags(&QINQ[..20]).unwrap_err(), Error::Truncated);
        let mut three = QINQ.to_vec();
        three[20..22].copy_from_slice(&[0x81, 0x00]);
        three.extend_from_slice(&[0x00, 0x01, 0x08, 0x00]);
        assert_eq!(walk_tags(&three).unwrap_err(), Error::Malformed);
    }

    #[test]
    fn setters_write_golden_bytes() {
        let mut buf = [0u8; 15];
        let mut frame = Frame::new_unchecked(&mut buf[..]);
        frame.set_dst_addr([2, 0, 0, 0, 0, 2]);
        frame.set_src_addr([2, 0, 0, 0, 0, 1]);
        frame.set_ethertype(ethertype::IPV4);
        frame.payload_mut()[0] = 0xaa;
        assert_eq!(buf, UNTAGGED);
        let mut tag = [0u8; 4];
        let mut view = VlanTag::new_unchecked(&mut tag[..]);
        view.set_tci(0x6064);
        view.set_ethertype(ethertype::VLAN);
        assert_eq!(tag, QINQ[14..18]);
    }
}
