//! SCTP (RFC 9260) common header view: ports, verification tag, checksum, and the type
//! of the first chunk (INIT opens an association).

use super::{get_u32, set_u32, Error, Result};

mod field {
    pub const VERIFICATION_TAG: usize = 4;
    pub const CHECKSUM: usize = 8;
    pub const CHUNKS: usize = 12;
}

pub const HEADER_LEN: usize = field::CHUNKS;

pub mod chunk {
    pub const DATA: u8 = 0;
    pub const INIT: u8 = 1;
    pub const INIT_ACK: u8 = 2;
    pub const ABORT: u8 = 6;
    pub const SHUTDOWN: u8 = 7;
    pub const SHUTDOWN_COMPLETE: u8 = 14;
}

header_view!(
    /// A view of an SCTP packet's common header.
    Packet
);

port_accessors!(Packet);

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn verification_tag(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::VERIFICATION_TAG)
    }

    pub fn checksum(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The first chunk's type, if a chunk follows the common header.
    pub fn first_chunk_type(&self) -> Option<u8> {
        self.buffer.as_ref().get(field::CHUNKS).copied()
    }

    pub fn chunks(&self) -> &[u8] {
        &self.buffer.as_ref()[field::CHUNKS..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_verification_tag(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::VERIFICATION_TAG, value);
    }

    pub fn set_checksum(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::CHECKSUM, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 5000 -> 38412 (NGAP), tag 0, checksum 0xdeadbeef, INIT chunk header (type 1, len 4).
    const INIT: [u8; 16] = [
        0x13, 0x88, 0x96, 0x0c, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x00, 0x00, 0x04,
    ];

    #[test]
    fn reads_init() {
        let sctp = Packet::new_checked(&INIT[..]).unwrap();
        assert_eq!(sctp.src_port(), 5000);
        assert_eq!(sctp.dst_port(), 38412);
        assert_eq!(sctp.verification_tag(), 0);
        assert_eq!(sctp.checksum(), 0xdead_beef);
        assert_eq!(sctp.first_chunk_type(), Some(chunk::INIT));
        assert_eq!(Packet::new_checked(&INIT[..12]).unwrap().first_chunk_type(), None);
    }

    #[test]
    fn writes_init() {
        let mut buf = [0u8; 16];
        buf[12..].copy_from_slice(&[1, 0, 0, 4]);
        let mut sctp = Packet::new_unchecked(&mut buf[..]);
        sctp.set_src_port(5000);
        sctp.set_dst_port(38412);
        sctp.set_verification_tag(0);
        sctp.set_checksum(0xdead_beef);
        assert_eq!(buf, INIT);
    }

    #[test]
    fn rejects_truncated() {
        assert_eq!(Packet::new_checked(&INIT[..11]).unwrap_err(), Error::Truncated);
    }
}
