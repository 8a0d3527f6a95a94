//! UDP (RFC 768) header view. The length field must cover the header and fit in the
//! buffer; anything else is malformed or truncated.

use super::{get_u16, set_u16, Error, Result};

mod field {
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
    pub const PAYLOAD: usize = 8;
}

pub const HEADER_LEN: usize = field::PAYLOAD;

header_view!(
    /// A view of a UDP datagram.
    Packet
);

port_accessors!(Packet);

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let claimed = usize::from(self.len());
        if claimed < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if claimed > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// The length field: header plus payload.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..usize::from(self.len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_len(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 5353 -> 53, length 12, checksum 0x1234, payload "abcd".
    const GOLDEN: [u8; 12] = [0x14, 0xe9, 0x00, 0x35, 0x00, 0x0c, 0x12, 0x34, b'a', b'b', b'c', b'd'];

    #[test]
    fn reads_datagram() {
        let udp = Packet::new_checked(&GOLDEN[..]).unwrap();
        assert_eq!(udp.src_port(), 5353);
        assert_eq!(udp.dst_port(), 53);
        assert_eq!(udp.len(), 12);
        assert_eq!(udp.checksum(), 0x1234);
        assert_eq!(udp.payload(), b"abcd");
    }

    #[test]
    fn writes_datagram() {
        let mut buf = [0u8; 12];
        buf[8..].copy_from_slice(b"abcd");
        let mut udp = Packet::new_unchecked(&mut buf[..]);
        udp.set_src_port(5353);
        udp.set_dst_port(53);
        udp.set_len(12);
        udp.set_checksum(0x1234);
        assert_eq!(buf, GOLDEN);
    }

    #[test]
    fn rejects_bad_lengths() {
        assert_eq!(Packet::new_checked(&GOLDEN[..7]).unwrap_err(), Error::Truncated);
        assert_eq!(Packet::new_checked(&GOLDEN[..11]).unwrap_err(), Error::Truncated);
        let mut bad = GOLDEN;
        bad[5] = 7;
        assert_eq!(Packet::new_checked(&bad[..]).unwrap_err(), Error::Malformed);
    }
}
