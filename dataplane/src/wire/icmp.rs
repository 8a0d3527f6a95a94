//! ICMP for IPv4 (RFC 792). The 8-byte header view here is shared with ICMPv6 (same
//! layout: type, code, checksum, then four bytes whose meaning depends on the type);
//! each module classifies its own message types into a `MessageClass`.

use super::{get_u16, set_u16, Error, Result};

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const IDENT: usize = 4;
    pub const SEQ: usize = 6;
    pub const PAYLOAD: usize = 8;
}

pub const HEADER_LEN: usize = field::PAYLOAD;

/// ICMPv4 message types the pipeline distinguishes.
pub mod msg {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACHABLE: u8 = 3;
    pub const SOURCE_QUENCH: u8 = 4;
    pub const REDIRECT: u8 = 5;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAM_PROBLEM: u8 = 12;
}

/// What a message means to connection tracking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageClass {
    /// Opens (or continues) an echo exchange identified by the identifier.
    EchoRequest,
    /// Answers the echo request with the same identifier.
    EchoReply,
    /// An error quoting the datagram that caused it (in the payload).
    Error,
    /// Link-local control the network cannot work without (IPv6 neighbour discovery,
    /// MLD): forwarded like ARP.
    LinkControl,
    /// Anything else: a connection of its own, without ports.
    Other,
}

/// Classify an ICMPv4 message type.
pub fn classify(message_type: u8) -> MessageClass {
    match message_type {
        msg::ECHO_REQUEST => MessageClass::EchoRequest,
        msg::ECHO_REPLY => MessageClass::EchoReply,
        msg::DEST_UNREACHABLE | msg::SOURCE_QUENCH | msg::REDIRECT | msg::TIME_EXCEEDED | msg::PARAM_PROBLEM => {
            MessageClass::Error
        }
        _ => MessageClass::Other,
    }
}

header_view!(
    /// A view of an ICMP (or ICMPv6) message.
    Packet
);

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Echo identifier (meaningful for echo request and reply).
    pub fn echo_ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::IDENT)
    }

    /// Echo sequence number (meaningful for echo request and reply).
    pub fn echo_seq_no(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SEQ)
    }

    /// Echo data, or for errors the quoted datagram.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_msg_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::TYPE] = value;
    }

    pub fn set_msg_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    pub fn set_echo_ident(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::IDENT, value);
    }

    pub fn set_echo_seq_no(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::SEQ, value);
    }

    /// ICMPv4 checksum over the whole message (no pseudo-header).
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = super::checksum_sum(0, self.buffer.as_ref());
        self.set_checksum(super::checksum_finish(sum));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Echo request, ident 0x0102, seq 7, payload "hi".
    const ECHO: [u8; 10] = [0x08, 0x00, 0x8e, 0x8d, 0x01, 0x02, 0x00, 0x07, b'h', b'i'];

    #[test]
    fn reads_echo_request() {
        let icmp = Packet::new_checked(&ECHO[..]).unwrap();
        assert_eq!(icmp.msg_type(), msg::ECHO_REQUEST);
        assert_eq!(icmp.msg_code(), 0);
        assert_eq!(icmp.echo_ident(), 0x0102);
        assert_eq!(icmp.echo_seq_no(), 7);
        assert_eq!(icmp.payload(), b"hi");
        assert_eq!(classify(icmp.msg_type()), MessageClass::EchoRequest);
    }

    #[test]
    fn writes_echo_request() {
        let mut buf = [0u8; 10];
        buf[8..].copy_from_slice(b"hi");
        let mut icmp = Packet::new_unchecked(&mut buf[..]);
        icmp.set_msg_type(msg::ECHO_REQUEST);
        icmp.set_msg_code(0);
        icmp.set_echo_ident(0x0102);
        icmp.set_echo_seq_no(7);
        icmp.fill_checksum();
        assert_eq!(buf, ECHO);
    }

    #[test]
    fn classifies_types() {
        let table = [
            (0, MessageClass::EchoReply),
            (3, MessageClass::Error),
            (4, MessageClass::Error),
            (5, MessageClass::Error),
            (8, MessageClass::EchoRequest),
            (11, MessageClass::Error),
            (12, MessageClass::Error),
            (13, MessageClass::Other),
        ];
        for (message_type, class) in table {
            assert_eq!(classify(message_type), class, "type {message_type}");
        }
    }

    #[test]
    fn rejects_truncated() {
        assert_eq!(Packet::new_checked(&ECHO[..7]).unwrap_err(), Error::Truncated);
    }
}
