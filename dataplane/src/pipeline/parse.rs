//! One pass over a frame with the `wire` views, producing what the pipeline decides on:
//! the addresses, protocol and ports (or echo identifier), TCP flags, VLANs, fragment
//! identity, and for ICMP errors the tuple of the datagram they quote.
//!
//! Rules that keep fragments and ICMP from bypassing policy live here: a first fragment
//! too short for its transport header is a fragment drop, a non-first fragment that
//! overlaps the transport header is a fragment drop, neighbour discovery and MLD pass
//! untouched only with the hop limit their RFCs require (255 and 1).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::flow::key::v4_mapped;
use crate::wire::icmp::MessageClass;
use crate::wire::{ethernet, get_u16, icmp, icmpv6, ip_proto, ipv4, ipv6, sctp, tcp, udp};

/// What the pipeline does with a frame before any flow lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not IP (ARP, LLDP, ...), or IPv6 link control: forwarded as is.
    Passthrough,
    /// Truncated or invalid headers.
    Malformed,
    /// A fragment that must not pass: too short to show its ports, or overlapping them.
    BadFragment,
    /// An IP packet to police.
    Ip(Meta),
}

/// What kind of IP packet, as far as connection tracking cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// TCP, UDP, SCTP, other protocols, ICMP messages other than echo and errors.
    Plain,
    /// ICMP(v6) echo request: ports are (identifier, 0).
    EchoRequest,
    /// ICMP(v6) echo reply: ports are (0, identifier), so it meets its request's key.
    EchoReply,
    /// ICMP(v6) error quoting a datagram.
    IcmpError(Quoted),
    /// A fragment after the first: no transport header; follows its first fragment.
    NonFirstFragment,
}

/// The tuple of the datagram quoted in an ICMP error, as it was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quoted {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub protocol: u8,
    pub src_port: u16,
    pub dst_port: u16,
}

/// A parsed IP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Addresses as 16 bytes (IPv4 mapped).
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub is_v4: bool,
    /// Upper-layer protocol (after IPv6 extension headers).
    pub protocol: u8,
    pub src_port: u16,
    pub dst_port: u16,
    /// TCP flag byte, 0 for other protocols.
    pub tcp_flags: u8,
    /// Outer VLAN << 12 | inner VLAN.
    pub vlan: u32,
    pub kind: Kind,
    /// The fragment identifier when this packet is a fragment (first or not).
    pub fragment: Option<u32>,
}

impl Meta {
    /// A TCP SYN without ACK: the packet that opens a connection.
    #[inline]
    pub fn is_syn(&self) -> bool {
        self.protocol == ip_proto::TCP && self.tcp_flags & (tcp::flags::SYN | tcp::flags::ACK) == tcp::flags::SYN
    }

    pub fn src_ip(&self) -> IpAddr {
        to_ip(&self.src, self.is_v4)
    }

    pub fn dst_ip(&self) -> IpAddr {
        to_ip(&self.dst, self.is_v4)
    }
}

#[inline]
pub(crate) fn to_ip(addr: &[u8; 16], is_v4: bool) -> IpAddr {
    if is_v4 {
        IpAddr::V4(Ipv4Addr::new(addr[12], addr[13], addr[14], addr[15]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*addr))
    }
}

/// Parse one Ethernet frame. Never panics, whatever the bytes.
///
/// Inlined into its callers so the result is built in place: returned through memory,
/// the caller's wide copy of it read back fields just written narrowly, and
/// store-to-load forwarding failed on every packet. (The pipeline's burst loop takes
/// `parse_fast_v4` for the common case and stages a compact record instead.)
#[inline(always)]
pub fn parse(frame: &[u8]) -> Parsed {
    let Ok(l2) = ethernet::walk_tags(frame) else {
        return Parsed::Malformed;
    };
    let Some(payload) = frame.get(l2.payload_offset..) else {
        return Parsed::Malformed;
    };
    match l2.ethertype {
        ethernet::ethertype::IPV4 => parse_ipv4(payload, l2.vlan_key()),
        ethernet::ethertype::IPV6 => parse_ipv6(payload, l2.vlan_key()),
        _ => Parsed::Passthrough,
    }
}

/// The common case, read straight from the headers: an IPv4 TCP or UDP datagram that is
/// not a fragment (VLAN tags allowed), addresses as big-endian `u32`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastV4 {
    pub src: u32,
    pub dst: u32,
    pub protocol: u8,
    pub src_port: u16,
    pub dst_port: u16,
    /// TCP flag byte, 0 for UDP.
    pub tcp_flags: u8,
    /// Outer VLAN << 12 | inner VLAN.
    pub vlan: u32,
}

/// `parse` for the common case only, with the same views and checks: `None` for anything
/// else (other protocols, IPv6, fragments, anything `parse` would not report as an
/// `Ip` packet). When `Some`, `parse` gives a `Plain`, unfragmented IPv4 `Meta` with these
/// very fields (`pipeline::tests::fast_v4_agrees_with_parse`). Never panics.
#[inline(always)]
pub fn parse_fast_v4(frame: &[u8]) -> Option<FastV4> {
    let l2 = ethernet::walk_tags(frame).ok()?;
    if l2.ethertype != ethernet::ethertype::IPV4 {
        return None;
    }
    let ip = ipv4::Packet::new_checked(frame.get(l2.payload_offset..)?).ok()?;
    if ip.is_fragment() {
        return None;
    }
    let l4 = ip.payload();
    let (protocol, src_port, dst_port, tcp_flags) = match ip.protocol() {
        ip_proto::TCP => {
            let tcp = tcp::Packet::new_checked(l4).ok()?;
            if !tcp::flags::valid_combination(tcp.flags()) {
                return None;
            }
            (ip_proto::TCP, tcp.src_port(), tcp.dst_port(), tcp.flags())
        }
        ip_proto::UDP => {
            let udp = udp::Packet::new_checked(l4).ok()?;
            (ip_proto::UDP, udp.src_port(), udp.dst_port(), 0)
        }
        _ => return None,
    };
    let (src, dst) = (u32::from_be_bytes(ip.src_addr()), u32::from_be_bytes(ip.dst_addr()));
    Some(FastV4 { src, dst, protocol, src_port, dst_port, tcp_flags, vlan: l2.vlan_key() })
}

/// Addresses, protocol and fragmentation of an IP header: the input to `transport`.
struct Network<'a> {
    src: [u8; 16],
    dst: [u8; 16],
    is_v4: bool,
    protocol: u8,
    l4: &'a [u8],
    vlan: u32,
    /// (identifier, offset in bytes) when a fragment.
    fragment: Option<(u32, u16)>,
    /// IPv6 hop limit 255 or 1: link control (ND, MLD) may pass.
    link_local_hops: bool,
}

#[inline(always)]
fn parse_ipv4(data: &[u8], vlan: u32) -> Parsed {
    let Ok(ip) = ipv4::Packet::new_checked(data) else {
        return Parsed::Malformed;
    };
    transport(Network {
        src: v4_mapped(ip.src_addr()),
        dst: v4_mapped(ip.dst_addr()),
        is_v4: true,
        protocol: ip.protocol(),
        l4: ip.payload(),
        vlan,
        fragment: ip.is_fragment().then(|| (u32::from(ip.ident()), ip.frag_offset())),
        link_local_hops: false,
    })
}

#[inline]
fn parse_ipv6(data: &[u8], vlan: u32) -> Parsed {
    let Ok(ip) = ipv6::Packet::new_checked(data) else {
        return Parsed::Malformed;
    };
    let Ok(upper) = ipv6::walk_extensions(ip.next_header(), ip.payload()) else {
        return Parsed::Malformed;
    };
    let Some(l4) = ip.payload().get(upper.offset..) else {
        return Parsed::Malformed;
    };
    transport(Network {
        src: ip.src_addr(),
        dst: ip.dst_addr(),
        is_v4: false,
        protocol: upper.protocol,
        l4,
        vlan,
        // An atomic fragment (offset 0, no more) is a whole datagram.
        fragment: upper.fragment.filter(|f| f.offset != 0 || f.more).map(|f| (f.ident, f.offset)),
        link_local_hops: matches!(ip.hop_limit(), 1 | 255),
    })
}

/// The smallest transport header of `protocol`: a later fragment starting inside it
/// could rewrite the ports the first fragment was judged by (RFC 1858 overlap attack).
#[inline]
fn min_transport_len(protocol: u8) -> usize {
    match protocol {
        ip_proto::TCP => tcp::MIN_HEADER_LEN,
        ip_proto::SCTP => sctp::HEADER_LEN,
        ip_proto::UDP | ip_proto::ICMP | ip_proto::ICMPV6 => udp::HEADER_LEN,
        _ => 0,
    }
}

#[inline(always)]
fn transport(net: Network<'_>) -> Parsed {
    let mut meta = Meta {
        src: net.src,
        dst: net.dst,
        is_v4: net.is_v4,
        protocol: net.protocol,
        src_port: 0,
        dst_port: 0,
        tcp_flags: 0,
        vlan: net.vlan,
        kind: Kind::Plain,
        fragment: net.fragment.map(|(ident, _)| ident),
    };
    if let Some((_, offset)) = net.fragment {
        if offset != 0 {
            if usize::from(offset) < min_transport_len(net.protocol) {
                return Parsed::BadFragment;
            }
            meta.kind = Kind::NonFirstFragment;
            return Parsed::Ip(meta);
        }
    }
    let result = match (net.protocol, net.is_v4) {
        // Flag combinations no stack sends (SYN+FIN, none, ...) are malformed: they
        // could read one way here and another way on the host behind.
        (ip_proto::TCP, _) => tcp::Packet::new_checked(net.l4).and_then(|tcp| {
            if !tcp::flags::valid_combination(tcp.flags()) {
                return Err(crate::wire::Error::Malformed);
            }
            meta.src_port = tcp.src_port();
            meta.dst_port = tcp.dst_port();
            meta.tcp_flags = tcp.flags();
            Ok(())
        }),
        // A first fragment holds the UDP header but not the length it announces.
        (ip_proto::UDP, _) if net.fragment.is_some() && net.l4.len() >= udp::HEADER_LEN => {
            let udp = udp::Packet::new_unchecked(net.l4);
            meta.src_port = udp.src_port();
            meta.dst_port = udp.dst_port();
            Ok(())
        }
        (ip_proto::UDP, _) => udp::Packet::new_checked(net.l4).map(|udp| {
            meta.src_port = udp.src_port();
            meta.dst_port = udp.dst_port();
        }),
        (ip_proto::SCTP, _) => sctp::Packet::new_checked(net.l4).map(|sctp| {
            meta.src_port = sctp.src_port();
            meta.dst_port = sctp.dst_port();
        }),
        (ip_proto::ICMP, true) | (ip_proto::ICMPV6, false) => match icmp::Packet::new_checked(net.l4) {
            Ok(message) => {
                let class = if net.is_v4 { icmp::classify(message.msg_type()) } else { icmpv6::classify(message.msg_type()) };
                match class {
                    MessageClass::EchoRequest => {
                        meta.kind = Kind::EchoRequest;
                        meta.src_port = message.echo_ident();
                    }
                    MessageClass::EchoReply => {
                        meta.kind = Kind::EchoReply;
                        meta.dst_port = message.echo_ident();
                    }
                    MessageClass::Error => match quoted(message.payload(), net.is_v4) {
                        Some(q) => meta.kind = Kind::IcmpError(q),
                        None => return Parsed::Malformed,
                    },
                    MessageClass::LinkControl if net.link_local_hops && net.fragment.is_none() => {
                        return Parsed::Passthrough
                    }
                    MessageClass::LinkControl | MessageClass::Other => {}
                }
                Ok(())
            }
            Err(e) => Err(e),
        },
        _ => Ok(()),
    };
    match result {
        Ok(()) => Parsed::Ip(meta),
        Err(_) if net.fragment.is_some() => Parsed::BadFragment,
        Err(_) => Parsed::Malformed,
    }
}

/// The tuple of the datagram an ICMP error quotes: its IP header and at least the first
/// 8 bytes of its transport header (what RFC 792 guarantees). `None` if that is not
/// there, or if the quoted datagram is a non-first fragment (no ports to match).
fn quoted(data: &[u8], is_v4: bool) -> Option<Quoted> {
    if is_v4 {
        let ip = ipv4::Packet::new_quoted(data).ok()?;
        if ip.frag_offset() != 0 {
            return None;
        }
        let (src_port, dst_port) = quoted_ports(ip.protocol(), ip.payload(), true)?;
        let (src, dst) = (v4_mapped(ip.src_addr()), v4_mapped(ip.dst_addr()));
        Some(Quoted { src, dst, protocol: ip.protocol(), src_port, dst_port })
    } else {
        let ip = ipv6::Packet::new_quoted(data).ok()?;
        let upper = ipv6::walk_extensions(ip.next_header(), ip.payload()).ok()?;
        if upper.fragment.is_some_and(|f| f.offset != 0) {
            return None;
        }
        let (src_port, dst_port) = quoted_ports(upper.protocol, ip.payload().get(upper.offset..)?, false)?;
        Some(Quoted { src: ip.src_addr(), dst: ip.dst_addr(), protocol: upper.protocol, src_port, dst_port })
    }
}

/// Ports (or echo identifier, placed as `Meta` places it) of a quoted transport header.
fn quoted_ports(protocol: u8, l4: &[u8], is_v4: bool) -> Option<(u16, u16)> {
    if l4.len() < 8 {
        return None;
    }
    Some(match protocol {
        ip_proto::TCP | ip_proto::UDP | ip_proto::SCTP => (get_u16(l4, 0), get_u16(l4, 2)),
        ip_proto::ICMP | ip_proto::ICMPV6 => {
            let class = if is_v4 { icmp::classify(l4[0]) } else { icmpv6::classify(l4[0]) };
            match class {
                MessageClass::EchoRequest => (get_u16(l4, 4), 0),
                MessageClass::EchoReply => (0, get_u16(l4, 4)),
                _ => (0, 0),
            }
        }
        _ => (0, 0),
    })
}
