//! TCP (RFC 9293) header view: ports, sequence numbers, data offset and flags.
//! The pipeline reads ports and flags; the setters serve tests and pcap builders.

use super::{get_u16, get_u32, set_u16, set_u32, Error, Result};

mod field {
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
    pub const OPTIONS: usize = 20;
}

pub const MIN_HEADER_LEN: usize = field::OPTIONS;

/// TCP flag bits as they sit in byte 13.
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;

    /// Whether a TCP stack would send `flags`: SYN, SYN+ACK, RST, RST+ACK, FIN+ACK or
    /// ACK (SYN, FIN+ACK and ACK also with URG), whatever PSH, ECE and CWR say — the
    /// table Linux conntrack uses. Anything else (no flags, a lone FIN, SYN+FIN,
    /// SYN+RST, XMAS, ...) is a scan or an attempt to desynchronise a stateful filter
    /// from the host behind it.
    #[inline]
    pub const fn valid_combination(flags: u8) -> bool {
        matches!(
            flags & !(PSH | ECE | CWR),
            SYN | SYN_URG | SYN_ACK | RST | RST_ACK | FIN_ACK | FIN_ACK_URG | ACK | ACK_URG
        )
    }

    const SYN_URG: u8 = SYN | URG;
    const SYN_ACK: u8 = SYN | ACK;
    const RST_ACK: u8 = RST | ACK;
    const FIN_ACK: u8 = FIN | ACK;
    const FIN_ACK_URG: u8 = FIN | ACK | URG;
    const ACK_URG: u8 = ACK | URG;
}

header_view!(
    /// A view of a TCP segment.
    Packet
);

port_accessors!(Packet);

impl<T: AsRef<[u8]>> Packet<T> {
    /// The fixed header present, data offset at least 5 words and inside the buffer.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < MIN_HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.header_len() < MIN_HEADER_LEN {
            return Err(Error::Malformed);
        }
        if self.header_len() > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn seq_number(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::SEQ)
    }

    pub fn ack_number(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::ACK)
    }

    /// Header length in bytes (data offset × 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::OFFSET] >> 4) * 4
    }

    /// The flag byte (`flags::*`).
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    pub fn syn(&self) -> bool {
        self.flags() & flags::SYN != 0
    }

    pub fn ack(&self) -> bool {
        self.flags() & flags::ACK != 0
    }

    pub fn fin(&self) -> bool {
        self.flags() & flags::FIN != 0
    }

    pub fn rst(&self) -> bool {
        self.flags() & flags::RST != 0
    }

    pub fn window_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::WINDOW)
    }

    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    pub fn urgent_at(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::URGENT)
    }

    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..self.header_len()]
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_seq_number(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::SEQ, value);
    }

    pub fn set_ack_number(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::ACK, value);
    }

    /// Header length in bytes (a multiple of 4, 20..=60).
    pub fn set_header_len(&mut self, header_len: usize) {
        self.buffer.as_mut()[field::OFFSET] = ((header_len / 4) as u8) << 4;
    }

    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value;
    }

    pub fn set_window_len(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::WINDOW, value);
    }

    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 40000 -> 80, seq 1, ack 0, SYN, window 64240, 4 bytes of options (MSS 1460).
    const SYN: [u8; 24] = [
        0x9c, 0x40, 0x00, 0x50, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x60, 0x02,
        0xfa, 0xf0, 0x00, 0x00, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4,
    ];

    #[test]
    fn reads_syn() {
        let tcp = Packet::new_checked(&SYN[..]).unwrap();
        assert_eq!(tcp.src_port(), 40000);
        assert_eq!(tcp.dst_port(), 80);
        assert_eq!(tcp.seq_number(), 1);
        assert_eq!(tcp.ack_number(), 0);
        assert_eq!(tcp.header_len(), 24);
        assert_eq!(tcp.flags(), flags::SYN);
        assert!(tcp.syn() && !tcp.ack() && !tcp.fin() && !tcp.rst());
        assert_eq!(tcp.window_len(), 64240);
        assert_eq!(tcp.options(), &[2, 4, 5, 0xb4]);
        assert!(tcp.payload().is_empty());
    }

    #[test]
    fn writes_syn() {
        let mut buf = [0u8; 24];
        buf[20..].copy_from_slice(&[2, 4, 5, 0xb4]);
        let mut tcp = Packet::new_unchecked(&mut buf[..]);
        tcp.set_src_port(40000);
        tcp.set_dst_port(80);
        tcp.set_seq_number(1);
        tcp.set_ack_number(0);
        tcp.set_header_len(24);
        tcp.set_flags(flags::SYN);
        tcp.set_window_len(64240);
        tcp.set_checksum(0);
        assert_eq!(buf, SYN);
    }

    #[test]
    fn flag_combinations_a_stack_sends() {
        use flags::*;
        let valid = [SYN, SYN | URG, SYN | ACK, RST, RST | ACK, FIN | ACK, FIN | ACK | URG, ACK, ACK | URG];
        for flags in 0..=u8::MAX {
            let core = flags & !(PSH | ECE | CWR);
            assert_eq!(valid_combination(flags), valid.contains(&core), "flags {flags:#04x}");
        }
        assert!(valid_combination(SYN | ECE | CWR) && valid_combination(PSH | ACK));
        for anomaly in [0, FIN, SYN | FIN, SYN | RST, RST | FIN, FIN | PSH | URG, SYN | FIN | ACK, 0xff] {
            assert!(!valid_combination(anomaly), "{anomaly:#04x}");
        }
    }

    #[test]
    fn rejects_bad_offsets() {
        assert_eq!(Packet::new_checked(&SYN[..19]).unwrap_err(), Error::Truncated);
        assert_eq!(Packet::new_checked(&SYN[..22]).unwrap_err(), Error::Truncated);
        let mut bad = SYN;
        bad[12] = 0x40; // data offset 4 words
        assert_eq!(Packet::new_checked(&bad[..]).unwrap_err(), Error::Malformed);
    }
}
