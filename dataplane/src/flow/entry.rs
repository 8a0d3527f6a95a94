//! One flow's state (`FlowEntry`, 64 bytes, one cache line) and the state-dependent
//! timeouts that age it.

use std::time::Duration;

use crate::flow::key::Side;
use crate::verdict::{Action, Reason, RuleId, Verdict};
use crate::wire::ip_proto;

/// Simplified TCP connection state, enough to pick a timeout and to know when a new
/// SYN may reuse the tuple. No sequence tracking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum TcpState {
    /// Not TCP.
    None,
    /// The initiator's SYN was seen.
    SynSent,
    /// The responder's SYN-ACK was seen.
    SynReceived,
    /// The initiator acknowledged the SYN-ACK, or the flow was picked up mid-stream.
    Established,
    /// One side sent FIN.
    FinWait,
    /// Both sides sent FIN.
    Closing,
    /// Reset.
    Closed,
}

/// Which timeout applies to a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum TimeoutClass {
    TcpSynSent,
    TcpEstablished,
    TcpFin,
    TcpClosed,
    Udp,
    Icmp,
    Other,
}

/// Idle timeouts per state. Defaults follow common firewall practice (short for
/// half-open and closing TCP, long for established TCP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowTimeouts {
    pub tcp_syn_sent: Duration,
    pub tcp_established: Duration,
    pub tcp_fin: Duration,
    pub tcp_closed: Duration,
    pub udp: Duration,
    pub icmp: Duration,
    pub other: Duration,
}

impl Default for FlowTimeouts {
    fn default() -> Self {
        FlowTimeouts {
            tcp_syn_sent: Duration::from_secs(30),
            tcp_established: Duration::from_secs(7200),
            tcp_fin: Duration::from_secs(30),
            tcp_closed: Duration::from_secs(10),
            udp: Duration::from_secs(60),
            icmp: Duration::from_secs(30),
            other: Duration::from_secs(60),
        }
    }
}

impl FlowTimeouts {
    /// The timeouts in TSC ticks, indexed by `TimeoutClass`, converted once.
    pub fn to_ticks(&self, ticks_per_second: u64) -> [u64; 7] {
        let ticks = |d: Duration| -> u64 {
            let t = d.as_nanos().saturating_mul(u128::from(ticks_per_second)) / 1_000_000_000;
            u64::try_from(t).unwrap_or(u64::MAX)
        };
        [
            ticks(self.tcp_syn_sent),
            ticks(self.tcp_established),
            ticks(self.tcp_fin),
            ticks(self.tcp_closed),
            ticks(self.udp),
            ticks(self.icmp),
            ticks(self.other),
        ]
    }
}

const FLAG_INITIATOR_HI: u8 = 0x01;
const FLAG_LIVE: u8 = 0x02;
const FLAG_FIN_ORIG: u8 = 0x04;
const FLAG_FIN_REPLY: u8 = 0x08;

/// Direction index into the per-direction counters.
pub const ORIG: usize = 0;
pub const REPLY: usize = 1;

/// One flow. Exactly one cache line; the key lives in a parallel array of the table
/// so that probing compares keys without pulling in entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct FlowEntry {
    /// Packets initiator→responder (`ORIG`) and back (`REPLY`).
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    /// TSC at creation and at the last packet.
    pub created: u64,
    pub last_seen: u64,
    pub egress_rule: RuleId,
    pub ingress_rule: RuleId,
    /// Low 32 bits of the snapshot generation the verdict was decided under (a wrap
    /// needs four billion policy updates).
    pub generation: u32,
    pub action: Action,
    pub reason: Reason,
    pub tcp: TcpState,
    flags: u8,
}

const _: () = assert!(std::mem::size_of::<FlowEntry>() == 64);

impl FlowEntry {
    /// A new live flow opened by `initiator`, decided by `verdict` under `generation`.
    pub fn new(verdict: Verdict, generation: u64, initiator: Side, tcp: TcpState, now: u64) -> FlowEntry {
        let mut flags = FLAG_LIVE;
        if initiator == Side::Hi {
            flags |= FLAG_INITIATOR_HI;
        }
        FlowEntry {
            packets: [0; 2],
            bytes: [0; 2],
            created: now,
            last_seen: now,
            egress_rule: verdict.egress_rule,
            ingress_rule: verdict.ingress_rule,
            generation: generation as u32,
            action: verdict.action,
            reason: verdict.reason,
            tcp,
            flags,
        }
    }

    /// `new` with the packet that opened the flow, sent from side `from`, counted
    /// (`count(direction(from), bytes, now)`), every field a plain value: written in
    /// place, no read-modify-write.
    #[inline]
    pub fn opened(verdict: Verdict, generation: u64, initiator: Side, tcp: TcpState, now: u64, from: Side, bytes: usize) -> FlowEntry {
        let entry = FlowEntry::new(verdict, generation, initiator, tcp, now);
        let reply = (entry.direction(from) & 1) as u64;
        FlowEntry { packets: [1 - reply, reply], bytes: [(1 - reply) * bytes as u64, reply * bytes as u64], ..entry }
    }

    /// A free pool slot.
    pub(crate) const EMPTY: FlowEntry = FlowEntry {
        packets: [0; 2],
        bytes: [0; 2],
        created: 0,
        last_seen: 0,
        egress_rule: 0,
        ingress_rule: 0,
        generation: 0,
        action: Action::Deny,
        reason: Reason::NotPoliced,
        tcp: TcpState::None,
        flags: 0,
    };

    #[inline]
    pub fn is_live(&self) -> bool {
        self.flags & FLAG_LIVE != 0
    }

    #[inline]
    pub fn initiator(&self) -> Side {
        if self.flags & FLAG_INITIATOR_HI != 0 {
            Side::Hi
        } else {
            Side::Lo
        }
    }

    /// `ORIG` when a packet from `from` travels like the initiator's, else `REPLY`.
    #[inline]
    pub fn direction(&self, from: Side) -> usize {
        if from == self.initiator() {
            ORIG
        } else {
            REPLY
        }
    }

    #[inline]
    pub fn verdict(&self) -> Verdict {
        Verdict { action: self.action, reason: self.reason, egress_rule: self.egress_rule, ingress_rule: self.ingress_rule }
    }

    /// Replace the decision (after a re-classification) and stamp the generation.
    #[inline]
    pub fn set_verdict(&mut self, verdict: Verdict, generation: u64) {
        self.action = verdict.action;
        self.reason = verdict.reason;
        self.egress_rule = verdict.egress_rule;
        self.ingress_rule = verdict.ingress_rule;
        self.generation = generation as u32;
    }

    #[inline]
    pub fn is_current(&self, generation: u64) -> bool {
        self.generation == generation as u32
    }

    #[inline]
    pub fn count(&mut self, direction: usize, bytes: usize, now: u64) {
        self.packets[direction & 1] += 1;
        self.bytes[direction & 1] += bytes as u64;
        self.last_seen = now;
    }

    /// Advance the TCP state by a segment's flags (`wire::tcp::flags`) seen in `direction`.
    #[inline]
    pub fn track_tcp(&mut self, direction: usize, flags: u8) {
        use crate::wire::tcp::flags::{ACK, FIN, RST, SYN};
        if flags & RST != 0 {
            self.tcp = TcpState::Closed;
            return;
        }
        if flags & FIN != 0 {
            self.flags |= if direction == ORIG { FLAG_FIN_ORIG } else { FLAG_FIN_REPLY };
            let both = FLAG_FIN_ORIG | FLAG_FIN_REPLY;
            self.tcp = if self.flags & both == both { TcpState::Closing } else { TcpState::FinWait };
            return;
        }
        self.tcp = match (self.tcp, direction) {
            (TcpState::SynSent, REPLY) if flags & (SYN | ACK) == SYN | ACK => TcpState::SynReceived,
            (TcpState::SynReceived, ORIG) if flags & (SYN | ACK) == ACK => TcpState::Established,
            (state, _) => state,
        };
    }

    /// Which timeout applies, given the flow's protocol.
    pub fn timeout_class(&self, protocol: u8) -> TimeoutClass {
        match self.tcp {
            TcpState::SynSent | TcpState::SynReceived => TimeoutClass::TcpSynSent,
            TcpState::Established => TimeoutClass::TcpEstablished,
            TcpState::FinWait | TcpState::Closing => TimeoutClass::TcpFin,
            TcpState::Closed => TimeoutClass::TcpClosed,
            TcpState::None => match protocol {
                ip_proto::UDP => TimeoutClass::Udp,
                ip_proto::ICMP | ip_proto::ICMPV6 => TimeoutClass::Icmp,
                // Loose-mode pickups are Established; a bare TCP entry is treated as such.
                ip_proto::TCP => TimeoutClass::TcpEstablished,
                _ => TimeoutClass::Other,
            },
        }
    }

    /// Whether a TCP flow has ended, so a fresh SYN may reuse its tuple.
    #[inline]
    pub fn tcp_finished(&self) -> bool {
        matches!(self.tcp, TcpState::Closing | TcpState::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tcp::flags::{ACK, FIN, RST, SYN};

    fn syn_flow() -> FlowEntry {
        FlowEntry::new(Verdict::NOT_POLICED, 3, Side::Hi, TcpState::SynSent, 100)
    }

    #[test]
    fn entry_fits_a_cache_line_and_remembers_its_initiator() {
        assert_eq!(std::mem::size_of::<FlowEntry>(), 64);
        assert_eq!(std::mem::align_of::<FlowEntry>(), 64);
        let entry = syn_flow();
        assert!(entry.is_live());
        assert_eq!(entry.initiator(), Side::Hi);
        assert_eq!(entry.direction(Side::Hi), ORIG);
        assert_eq!(entry.direction(Side::Lo), REPLY);
        assert!(entry.is_current(3) && !entry.is_current(4));
        assert!(!FlowEntry::EMPTY.is_live());
    }

    #[test]
    fn tcp_handshake_and_close() {
        let table: [(usize, u8, TcpState); 6] = [
            (ORIG, ACK, TcpState::SynSent), // ACK before SYN-ACK changes nothing
            (REPLY, SYN | ACK, TcpState::SynReceived),
            (ORIG, ACK, TcpState::Established),
            (ORIG, FIN | ACK, TcpState::FinWait),
            (REPLY, ACK, TcpState::FinWait),
            (REPLY, FIN | ACK, TcpState::Closing),
        ];
        let mut entry = syn_flow();
        for (step, (direction, flags, state)) in table.into_iter().enumerate() {
            entry.track_tcp(direction, flags);
            assert_eq!(entry.tcp, state, "step {step}");
        }
        assert!(entry.tcp_finished());
        assert_eq!(entry.timeout_class(ip_proto::TCP), TimeoutClass::TcpFin);
    }

    #[test]
    fn reset_closes_from_any_state() {
        let mut entry = syn_flow();
        entry.track_tcp(REPLY, RST | ACK);
        assert_eq!(entry.tcp, TcpState::Closed);
        assert_eq!(entry.timeout_class(ip_proto::TCP), TimeoutClass::TcpClosed);
    }

    #[test]
    fn timeout_classes_by_protocol() {
        let entry = FlowEntry::new(Verdict::NOT_POLICED, 0, Side::Lo, TcpState::None, 0);
        assert_eq!(entry.timeout_class(ip_proto::UDP), TimeoutClass::Udp);
        assert_eq!(entry.timeout_class(ip_proto::ICMP), TimeoutClass::Icmp);
        assert_eq!(entry.timeout_class(ip_proto::ICMPV6), TimeoutClass::Icmp);
        assert_eq!(entry.timeout_class(ip_proto::SCTP), TimeoutClass::Other);
    }

    #[test]
    fn timeouts_convert_to_ticks_once() {
        let ticks = FlowTimeouts::default().to_ticks(1_000);
        assert_eq!(ticks, [30_000, 7_200_000, 30_000, 10_000, 60_000, 30_000, 60_000]);
    }

    #[test]
    fn opened_is_new_then_count() {
        for (from, direction) in [(Side::Hi, ORIG), (Side::Lo, REPLY)] {
            let mut counted = syn_flow();
            counted.count(direction, 1500, 100);
            assert_eq!(FlowEntry::opened(Verdict::NOT_POLICED, 3, Side::Hi, TcpState::SynSent, 100, from, 1500), counted);
        }
    }

    #[test]
    fn counters_by_direction() {
        let mut entry = syn_flow();
        entry.count(ORIG, 60, 200);
        entry.count(REPLY, 1500, 300);
        entry.count(REPLY, 40, 400);
        assert_eq!(entry.packets, [1, 2]);
        assert_eq!(entry.bytes, [60, 1540]);
        assert_eq!((entry.created, entry.last_seen), (100, 400));
    }
}
