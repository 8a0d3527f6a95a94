//! ICMPv6 (RFC 4443). The header layout is ICMPv4's, so the view is `icmp::Packet`;
//! this module names the ICMPv6 types and classifies them. Neighbour discovery and
//! MLD are link control (IPv6 does not work without them) and are forwarded like ARP.

pub use super::icmp::{MessageClass, Packet, HEADER_LEN};

pub mod msg {
    pub const DEST_UNREACHABLE: u8 = 1;
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const PARAM_PROBLEM: u8 = 4;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
    pub const MLD_QUERY: u8 = 130;
    pub const MLD_REPORT: u8 = 131;
    pub const MLD_DONE: u8 = 132;
    pub const ROUTER_SOLICIT: u8 = 133;
    pub const ROUTER_ADVERT: u8 = 134;
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    pub const NEIGHBOR_ADVERT: u8 = 136;
    pub const REDIRECT: u8 = 137;
    pub const MLD_V2_REPORT: u8 = 143;
}

/// Classify an ICMPv6 message type.
pub fn classify(message_type: u8) -> MessageClass {
    match message_type {
        msg::ECHO_REQUEST => MessageClass::EchoRequest,
        msg::ECHO_REPLY => MessageClass::EchoReply,
        msg::DEST_UNREACHABLE | msg::PACKET_TOO_BIG | msg::TIME_EXCEEDED | msg::PARAM_PROBLEM => MessageClass::Error,
        msg::MLD_QUERY..=msg::REDIRECT | msg::MLD_V2_REPORT => MessageClass::LinkControl,
        _ => MessageClass::Other,
    }
}

/// The pseudo-header sum for ICMPv6/TCP/UDP checksums over IPv6.
pub fn pseudo_header_sum(src: [u8; 16], dst: [u8; 16], next_header: u8, upper_len: u32) -> u32 {
    let mut sum = super::checksum_sum(0, &src);
    sum = super::checksum_sum(sum, &dst);
    sum + (upper_len >> 16) + (upper_len & 0xffff) + u32::from(next_header)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Neighbour solicitation: type 135, code 0, checksum 0x1234, reserved.
    const NEIGHBOR_SOLICIT: [u8; 8] = [135, 0, 0x12, 0x34, 0, 0, 0, 0];

    #[test]
    fn reads_neighbor_solicitation() {
        let icmp = Packet::new_checked(&NEIGHBOR_SOLICIT[..]).unwrap();
        assert_eq!(icmp.msg_type(), msg::NEIGHBOR_SOLICIT);
        assert_eq!(icmp.checksum(), 0x1234);
        assert_eq!(classify(icmp.msg_type()), MessageClass::LinkControl);
    }

    #[test]
    fn classifies_types() {
        let table = [
            (1, MessageClass::Error),
            (2, MessageClass::Error),
            (3, MessageClass::Error),
            (4, MessageClass::Error),
            (128, MessageClass::EchoRequest),
            (129, MessageClass::EchoReply),
            (130, MessageClass::LinkControl),
            (136, MessageClass::LinkControl),
            (137, MessageClass::LinkControl),
            (138, MessageClass::Other),
            (143, MessageClass::LinkControl),
            (200, MessageClass::Other),
        ];
        for (message_type, class) in table {
            assert_eq!(classify(message_type), class, "type {message_type}");
        }
    }

    #[test]
    fn pseudo_header_counts_length_and_next_header() {
        let sum = pseudo_header_sum([0; 16], [0; 16], 58, 0x0001_0008);
        assert_eq!(sum, 1 + 8 + 58);
    }
}
