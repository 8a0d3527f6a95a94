//! Building frames with the `wire` setters: for tests, benches, replay pcaps and bug
//! reports. Not used on the packet path (it allocates). Checksums are filled in, so the
//! frames are valid on a real wire too.

use std::net::{IpAddr, SocketAddr};

use crate::wire::{self, ethernet, icmp, icmpv6, ip_proto, ipv4, ipv6, sctp, tcp, udp};

pub const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// A transport header (and payload) to put in a frame.
#[derive(Clone, Debug)]
pub enum L4<'a> {
    Tcp { src_port: u16, dst_port: u16, flags: u8, seq: u32, ack: u32, payload: &'a [u8] },
    Udp { src_port: u16, dst_port: u16, payload: &'a [u8] },
    /// SCTP common header plus one 4-byte chunk header of `chunk` type.
    Sctp { src_port: u16, dst_port: u16, chunk: u8 },
    /// ICMP or ICMPv6 (by the address family): type, code, the 4 "rest" bytes as
    /// identifier and sequence, then payload.
    Icmp { msg_type: u8, code: u8, ident: u16, seq: u16, payload: &'a [u8] },
    /// Any protocol, bytes as given.
    Raw { protocol: u8, bytes: &'a [u8] },
}

fn pseudo_sum(src: IpAddr, dst: IpAddr, protocol: u8, len: usize) -> u32 {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ipv4::pseudo_header_sum(s.octets(), d.octets(), protocol, len as u16),
        (s, d) => icmpv6::pseudo_header_sum(
            crate::flow::key::ip_bytes(s),
            crate::flow::key::ip_bytes(d),
            protocol,
            len as u32,
        ),
    }
}

/// The transport bytes of `l4` between `src` and `dst` (checksums filled), and the IP
/// protocol number.
pub fn transport(src: IpAddr, dst: IpAddr, l4: &L4<'_>) -> (u8, Vec<u8>) {
    let (protocol, mut bytes, checksum_at) = match *l4 {
        L4::Tcp { src_port, dst_port, flags, seq, ack, payload } => {
            let mut buf = vec![0u8; tcp::MIN_HEADER_LEN + payload.len()];
            buf[tcp::MIN_HEADER_LEN..].copy_from_slice(payload);
            let mut seg = tcp::Packet::new_unchecked(&mut buf[..]);
            seg.set_src_port(src_port);
            seg.set_dst_port(dst_port);
            seg.set_seq_number(seq);
            seg.set_ack_number(ack);
            seg.set_header_len(tcp::MIN_HEADER_LEN);
            seg.set_flags(flags);
            seg.set_window_len(64240);
            (ip_proto::TCP, buf, Some(16))
        }
        L4::Udp { src_port, dst_port, payload } => {
            let mut buf = vec![0u8; udp::HEADER_LEN + payload.len()];
            buf[udp::HEADER_LEN..].copy_from_slice(payload);
            let mut dgram = udp::Packet::new_unchecked(&mut buf[..]);
            dgram.set_src_port(src_port);
            dgram.set_dst_port(dst_port);
            dgram.set_len((udp::HEADER_LEN + payload.len()) as u16);
            (ip_proto::UDP, buf, Some(6))
        }
        L4::Sctp { src_port, dst_port, chunk } => {
            let mut buf = vec![0u8; sctp::HEADER_LEN + 4];
            buf[sctp::HEADER_LEN..].copy_from_slice(&[chunk, 0, 0, 4]);
            let mut packet = sctp::Packet::new_unchecked(&mut buf[..]);
            packet.set_src_port(src_port);
            packet.set_dst_port(dst_port);
            // The CRC32c checksum is left 0: nothing on the packet path checks it.
            (ip_proto::SCTP, buf, None)
        }
        L4::Icmp { msg_type, code, ident, seq, payload } => {
            let mut buf = vec![0u8; icmp::HEADER_LEN + payload.len()];
            buf[icmp::HEADER_LEN..].copy_from_slice(payload);
            let mut message = icmp::Packet::new_unchecked(&mut buf[..]);
            message.set_msg_type(msg_type);
            message.set_msg_code(code);
            message.set_echo_ident(ident);
            message.set_echo_seq_no(seq);
            let protocol = if src.is_ipv4() { ip_proto::ICMP } else { ip_proto::ICMPV6 };
            (protocol, buf, Some(2))
        }
        L4::Raw { protocol, bytes } => (protocol, bytes.to_vec(), None),
    };
    if let Some(at) = checksum_at {
        let initial = if protocol == ip_proto::ICMP { 0 } else { pseudo_sum(src, dst, protocol, bytes.len()) };
        let sum = wire::checksum_finish(wire::checksum_sum(initial, &bytes));
        bytes[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    }
    (protocol, bytes)
}

/// IPv4 fragmentation fields for `ip_frame_with`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fragmentation {
    pub ident: u32,
    /// Offset in bytes, a multiple of 8.
    pub offset: u16,
    pub more: bool,
}

/// An Ethernet frame carrying an IP packet with `protocol` and `payload` (already the
/// transport bytes). For IPv6, `fragment` adds a Fragment header.
pub fn ip_frame_with(src: IpAddr, dst: IpAddr, protocol: u8, payload: &[u8], fragment: Option<Fragmentation>) -> Vec<u8> {
    let eth = ethernet::HEADER_LEN;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = ipv4::MIN_HEADER_LEN + payload.len();
            let mut frame = vec![0u8; eth + total];
            frame[eth + ipv4::MIN_HEADER_LEN..].copy_from_slice(payload);
            let mut ip = ipv4::Packet::new_unchecked(&mut frame[eth..]);
            ip.set_version_and_header_len(ipv4::MIN_HEADER_LEN);
            ip.set_total_len(total as u16);
            let f = fragment.unwrap_or_default();
            ip.set_ident(f.ident as u16);
            ip.set_frag(fragment.is_none(), f.more, f.offset);
            ip.set_ttl(64);
            ip.set_protocol(protocol);
            ip.set_src_addr(s.octets());
            ip.set_dst_addr(d.octets());
            ip.fill_checksum();
            finish_ethernet(frame, ethernet::ethertype::IPV4)
        }
        _ => {
            let s = crate::flow::key::ip_bytes(src);
            let d = crate::flow::key::ip_bytes(dst);
            let ext = if fragment.is_some() { ipv6::FRAGMENT_HEADER_LEN } else { 0 };
            let mut frame = vec![0u8; eth + ipv6::HEADER_LEN + ext + payload.len()];
            frame[eth + ipv6::HEADER_LEN + ext..].copy_from_slice(payload);
            if let Some(f) = fragment {
                let at = eth + ipv6::HEADER_LEN;
                ipv6::FragmentHeader::new_unchecked(&mut frame[at..at + ext]).set_fragment(protocol, f.offset, f.more, f.ident);
            }
            let mut ip = ipv6::Packet::new_unchecked(&mut frame[eth..]);
            ip.set_version_and_flow_label(0);
            ip.set_payload_len((ext + payload.len()) as u16);
            ip.set_next_header(if fragment.is_some() { ip_proto::IPV6_FRAGMENT } else { protocol });
            ip.set_hop_limit(64);
            ip.set_src_addr(s);
            ip.set_dst_addr(d);
            finish_ethernet(frame, ethernet::ethertype::IPV6)
        }
    }
}

fn finish_ethernet(mut frame: Vec<u8>, ethertype: u16) -> Vec<u8> {
    let mut eth = ethernet::Frame::new_unchecked(&mut frame[..]);
    eth.set_dst_addr(DST_MAC);
    eth.set_src_addr(SRC_MAC);
    eth.set_ethertype(ethertype);
    frame
}

/// A whole (unfragmented) IP frame carrying `l4`.
pub fn ip_frame(src: IpAddr, dst: IpAddr, l4: &L4<'_>) -> Vec<u8> {
    let (protocol, bytes) = transport(src, dst, l4);
    ip_frame_with(src, dst, protocol, &bytes, None)
}

/// A TCP segment without payload; `seq`/`ack` are 1 and 1 (nothing here tracks them).
pub fn tcp(src: SocketAddr, dst: SocketAddr, flags: u8) -> Vec<u8> {
    let l4 = L4::Tcp { src_port: src.port(), dst_port: dst.port(), flags, seq: 1, ack: 1, payload: &[] };
    ip_frame(src.ip(), dst.ip(), &l4)
}

/// A whole TCP connection, `client` opening to `server`, SYN to FIN: handshake, one
/// segment of data each way, FIN each way, last ACK (8 frames).
pub fn tcp_connection(client: SocketAddr, server: SocketAddr) -> Vec<Vec<u8>> {
    use crate::wire::tcp::flags::{ACK, FIN, PSH, SYN};
    vec![
        tcp(client, server, SYN),
        tcp(server, client, SYN | ACK),
        tcp(client, server, ACK),
        tcp(client, server, PSH | ACK),
        tcp(server, client, PSH | ACK),
        tcp(client, server, FIN | ACK),
        tcp(server, client, FIN | ACK),
        tcp(client, server, ACK),
    ]
}

pub fn udp(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    ip_frame(src.ip(), dst.ip(), &L4::Udp { src_port: src.port(), dst_port: dst.port(), payload })
}

pub fn sctp(src: SocketAddr, dst: SocketAddr, chunk: u8) -> Vec<u8> {
    ip_frame(src.ip(), dst.ip(), &L4::Sctp { src_port: src.port(), dst_port: dst.port(), chunk })
}

/// ICMP(v6) echo request (`request`) or reply between `src` and `dst`.
pub fn echo(src: IpAddr, dst: IpAddr, request: bool, ident: u16, seq: u16) -> Vec<u8> {
    let msg_type = match (src.is_ipv4(), request) {
        (true, true) => icmp::msg::ECHO_REQUEST,
        (true, false) => icmp::msg::ECHO_REPLY,
        (false, true) => icmpv6::msg::ECHO_REQUEST,
        (false, false) => icmpv6::msg::ECHO_REPLY,
    };
    ip_frame(src, dst, &L4::Icmp { msg_type, code: 0, ident, seq, payload: b"palisade" })
}

/// An ICMP(v6) destination-unreachable from `src` to `dst` quoting `original` (a frame
/// built here): its IP header and the first 8 bytes after it.
pub fn unreachable(src: IpAddr, dst: IpAddr, original: &[u8]) -> Vec<u8> {
    let ip = &original[ethernet::HEADER_LEN..];
    let header = if src.is_ipv4() { usize::from(ip[0] & 0x0f) * 4 } else { ipv6::HEADER_LEN };
    let quoted = &ip[..(header + 8).min(ip.len())];
    let msg_type = if src.is_ipv4() { icmp::msg::DEST_UNREACHABLE } else { icmpv6::msg::DEST_UNREACHABLE };
    ip_frame(src, dst, &L4::Icmp { msg_type, code: 1, ident: 0, seq: 0, payload: quoted })
}

/// Split `l4` from `src` to `dst` into fragments carrying at most `chunk` bytes each
/// (a multiple of 8), IPv4 or IPv6 by the addresses.
pub fn fragments(src: IpAddr, dst: IpAddr, l4: &L4<'_>, ident: u32, chunk: usize) -> Vec<Vec<u8>> {
    let (protocol, bytes) = transport(src, dst, l4);
    let chunk = chunk.max(8) / 8 * 8;
    let pieces: Vec<&[u8]> = bytes.chunks(chunk).collect();
    let last = pieces.len() - 1;
    pieces
        .iter()
        .enumerate()
        .map(|(i, piece)| {
            let f = Fragmentation { ident, offset: (i * chunk) as u16, more: i != last };
            ip_frame_with(src, dst, protocol, piece, Some(f))
        })
        .collect()
}

/// `frame` with VLAN tags inserted after the MAC addresses: `tags[0]` outermost
/// (802.1ad when there are two, 802.1Q otherwise).
pub fn with_vlans(frame: &[u8], tags: &[u16]) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    for (i, id) in tags.iter().enumerate() {
        let tpid = if tags.len() > 1 && i == 0 { ethernet::ethertype::QINQ } else { ethernet::ethertype::VLAN };
        out.extend_from_slice(&tpid.to_be_bytes());
        out.extend_from_slice(&(id & 0x0fff).to_be_bytes());
    }
    out.extend_from_slice(&frame[12..]);
    out
}

/// An ARP request from `sender` for `target` (IPv4), broadcast.
pub fn arp_request(sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut frame = vec![0u8; ethernet::HEADER_LEN + 28];
    wire::arp::Packet::new_unchecked(&mut frame[ethernet::HEADER_LEN..]).set_ethernet_ipv4(
        wire::arp::OPER_REQUEST,
        SRC_MAC,
        sender,
        [0; 6],
        target,
    );
    let mut frame = finish_ethernet(frame, ethernet::ethertype::ARP);
    frame[..6].copy_from_slice(&[0xff; 6]);
    frame
}
