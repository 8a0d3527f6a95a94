//! ARP (RFC 826). The pipeline forwards ARP untouched; this view exists so the parser
//! can tell well-formed ARP from junk and tests can build requests.

use super::{get_u16, set_u16, Error, Result};

mod field {
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const ADDRESSES: usize = 8;
}

pub const FIXED_LEN: usize = field::ADDRESSES;
pub const HTYPE_ETHERNET: u16 = 1;
pub const OPER_REQUEST: u16 = 1;
pub const OPER_REPLY: u16 = 2;

header_view!(
    /// A view of an ARP packet with any hardware/protocol address sizes.
    Packet
);

impl<T: AsRef<[u8]>> Packet<T> {
    /// The fixed part must be present, then both address pairs it announces.
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if data.len() < FIXED_LEN {
            return Err(Error::Truncated);
        }
        if data.len() < self.header_len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Fixed part plus sender and target hardware and protocol addresses.
    pub fn header_len(&self) -> usize {
        FIXED_LEN + 2 * (usize::from(self.hardware_len()) + usize::from(self.protocol_len()))
    }

    pub fn hardware_type(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::HTYPE)
    }

    pub fn protocol_type(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::PTYPE)
    }

    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    pub fn operation(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::OPER)
    }

    fn address(&self, index: usize) -> &[u8] {
        let hlen = usize::from(self.hardware_len());
        let plen = usize::from(self.protocol_len());
        let lens = [hlen, plen, hlen, plen];
        let start = FIXED_LEN + lens[..index].iter().sum::<usize>();
        &self.buffer.as_ref()[start..start + lens[index]]
    }

    pub fn source_hardware_addr(&self) -> &[u8] {
        self.address(0)
    }

    pub fn source_protocol_addr(&self) -> &[u8] {
        self.address(1)
    }

    pub fn target_hardware_addr(&self) -> &[u8] {
        self.address(2)
    }

    pub fn target_protocol_addr(&self) -> &[u8] {
        self.address(3)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Write an Ethernet/IPv4 ARP header: htype 1, ptype 0x0800, hlen 6, plen 4.
    pub fn set_ethernet_ipv4(&mut self, operation: u16, sha: [u8; 6], spa: [u8; 4], tha: [u8; 6], tpa: [u8; 4]) {
        let data = self.buffer.as_mut();
        set_u16(data, field::HTYPE, HTYPE_ETHERNET);
        set_u16(data, field::PTYPE, 0x0800);
        data[field::HLEN] = 6;
        data[field::PLEN] = 4;
        set_u16(data, field::OPER, operation);
        data[8..14].copy_from_slice(&sha);
        data[14..18].copy_from_slice(&spa);
        data[18..24].copy_from_slice(&tha);
        data[24..28].copy_from_slice(&tpa);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Who has 10.0.0.2? Tell 10.0.0.1 (02:00:00:00:00:01).
    const REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0, 0, 0, 0, 0x01, 10, 0, 0, 1,
        0, 0, 0, 0, 0, 0, 10, 0, 0, 2,
    ];

    #[test]
    fn reads_request() {
        let arp = Packet::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(arp.hardware_type(), HTYPE_ETHERNET);
        assert_eq!(arp.protocol_type(), 0x0800);
        assert_eq!(arp.operation(), OPER_REQUEST);
        assert_eq!(arp.source_hardware_addr(), &[2, 0, 0, 0, 0, 1]);
        assert_eq!(arp.source_protocol_addr(), &[10, 0, 0, 1]);
        assert_eq!(arp.target_hardware_addr(), &[0; 6]);
        assert_eq!(arp.target_protocol_addr(), &[10, 0, 0, 2]);
    }

    #[test]
    fn writes_request() {
        let mut buf = [0u8; 28];
        Packet::new_unchecked(&mut buf[..]).set_ethernet_ipv4(
            OPER_REQUEST,
            [2, 0, 0, 0, 0, 1],
            [10, 0, 0, 1],
            [0; 6],
            [10, 0, 0, 2],
        );
        assert_eq!(buf, REQUEST);
    }

    #[test]
    fn rejects_truncated() {
        assert_eq!(Packet::new_checked(&REQUEST[..7]).unwrap_err(), Error::Truncated);
        assert_eq!(Packet::new_checked(&REQUEST[..27]).unwrap_err(), Error::Truncated);
        // Huge address lengths claimed by a short packet.
        let mut bad = REQUEST;
        bad[4] = 255;
        assert_eq!(Packet::new_checked(&bad[..]).unwrap_err(), Error::Truncated);
    }
}
