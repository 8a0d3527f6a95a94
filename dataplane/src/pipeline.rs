//! The stateful per-packet policy enforcer: `Pipeline<S: Classifier>`, the
//! `PacketFilter` each worker runs.
//!
//! Per burst the worker calls `begin_burst(now)`: the pipeline loads the current snapshot
//! once (an `arc_swap::Cache`, one relaxed load unless it changed) and ages a bounded
//! slice of the flow table every `aging_every_bursts` bursts. Per packet, `admit`:
//! parse → flow lookup → classify on a miss or a stale generation → verdict.
//!
//! Semantics (see DESIGN.md; the classifier checks source egress AND destination ingress):
//! - The first packet of a connection is classified; the flow remembers who initiated
//!   it; packets in either direction then follow the flow's verdict.
//! - A packet from the responder that opens a connection of its own is a new connection,
//!   classified with the responder as source: a TCP SYN without ACK from the responder,
//!   or any packet in the reply direction of a denied flow (UDP, SCTP, ...). If it is
//!   allowed and the old connection is over (ended or denied), the entry is re-opened
//!   with the responder as initiator; otherwise the entry stays as it was. All other
//!   packets of a denied flow drop as `policy`.
//! - TCP strict mode (default): only a SYN without ACK creates a flow; other TCP packets
//!   without a flow drop as `no_flow`. Loose mode picks connections up mid-stream
//!   (a SYN-ACK is taken to come from the responder). RST and FIN move the flow to
//!   short timeouts; a new SYN on a finished tuple starts over.
//! - ICMP echo requests are flows keyed by identifier; echo replies follow their
//!   request and, without one, drop as `no_flow`.
//! - ICMP errors follow the flow of the datagram they quote (allowed → forward, denied →
//!   drop). An error quoting no known flow drops as `no_flow`: it answers traffic this
//!   worker never passed, so it is stale or forged (Linux conntrack calls it INVALID).
//! - Fragments: a first fragment is decided like any packet (it must hold the whole
//!   transport header) and its verdict is remembered by (src, dst, id, protocol, VLAN);
//!   later fragments follow it, or drop as `fragment` when it is unknown or expired.
//! - Not IP (ARP, LLDP, ...) and IPv6 neighbour discovery / MLD pass untouched.
//! - Generation change: a flow decided under an older snapshot is re-decided on its next
//!   packet (as its initiator's connection); revoked flows drop from that packet on,
//!   still-allowed flows carry on without a blink.
//! - Table full: nothing is evicted. New flows are still decided, per packet, and not
//!   inserted (`flow_table_full`). A packet that would need a flow (TCP without SYN,
//!   echo reply) is then decided statelessly: allowed if its own direction or the
//!   reverse direction (as a reply) is allowed (`stateless_decisions`).

pub mod craft;
pub mod fragments;
pub mod live;
pub mod parse;
pub mod pcap;

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::{ArcSwap, Cache};

use crate::filter::PacketFilter;
use crate::flow::entry::{ORIG, REPLY};
use crate::flow::key::Side;
use crate::flow::{FlowEntry, FlowKey, FlowTable, FlowTimeouts, TcpState};
use crate::verdict::{Action, Classifier, Probe, Reason, RuleId, Verdict, NO_RULE};
use crate::wire::ip_proto;
use crate::wire::tcp::flags::{ACK, SYN};
use fragments::{FragmentKey, FragmentTable};
use live::{ControlLink, Dump, FlowEvent, FlowEventKind, RuleDrops};
use parse::{Kind, Meta, Parsed};

/// How TCP packets without a flow are treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TcpMode {
    /// Only a SYN without ACK creates a flow.
    #[default]
    Strict,
    /// Any TCP packet creates a flow (pick-up after a restart).
    Loose,
}

/// Pipeline settings. `ticks_per_second` is the TSC rate the worker's `now` counts in.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    pub flow_capacity: usize,
    pub timeouts: FlowTimeouts,
    pub tcp_mode: TcpMode,
    pub fragment_slots: usize,
    pub fragment_timeout: std::time::Duration,
    /// Age the flow table every this many bursts (and on every idle poll).
    pub aging_every_bursts: u32,
    /// Pool entries looked at per aging step.
    pub aging_budget: usize,
    pub ticks_per_second: u64,
    /// Hash seed; `None` draws a random one (tests and benches fix it).
    pub hash_seed: Option<u64>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            flow_capacity: 1 << 20,
            timeouts: FlowTimeouts::default(),
            tcp_mode: TcpMode::Strict,
            fragment_slots: 4096,
            fragment_timeout: std::time::Duration::from_secs(10),
            aging_every_bursts: 64,
            aging_budget: 256,
            ticks_per_second: 1_000_000_000,
            hash_seed: None,
        }
    }
}

/// Declares `Counters` with its field names, so the control side can publish and name
/// every counter without a second list to keep in step.
macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// Per-worker counters: plain fields written only by the owning worker.
        /// `rx == forwarded + drop_policy + drop_malformed + drop_no_flow + drop_fragment`.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct Counters {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl Counters {
            /// Field names, in declaration order (the order of `values`).
            pub const NAMES: &'static [&'static str] = &[$(stringify!($name)),*];
            pub const LEN: usize = Self::NAMES.len();

            pub fn values(&self) -> [u64; Self::LEN] {
                [$(self.$name),*]
            }

            pub fn from_values(values: [u64; Self::LEN]) -> Counters {
                let mut it = values.into_iter();
                Counters { $($name: it.next().unwrap_or(0),)* }
            }
        }
    };
}

counters! {
    rx,
    forwarded,
    /// Forwarded without policy: not IP, or IPv6 link control.
    passthrough,
    drop_policy,
    drop_malformed,
    /// TCP without a flow in strict mode, echo replies and ICMP errors without a flow.
    drop_no_flow,
    /// Fragments without a known first fragment, or that could hide or rewrite ports.
    drop_fragment,
    flow_inserts,
    flow_expiries,
    /// New flows decided but not inserted because the table was full.
    flow_table_full,
    /// Packets decided without a flow because the table was full.
    stateless_decisions,
    /// Of `drop_policy`: packets denied by a stateless decision (the table was full).
    stateless_denied,
    /// Flows re-decided after a snapshot change, and those of them now denied.
    flow_redecided,
    flow_revoked,
    /// ICMP errors that followed the flow they quote.
    icmp_related,
    /// Non-first fragments that followed their first fragment's verdict.
    fragments_followed,
    /// Flow-log events dropped because the log channel was full.
    flow_log_dropped,
}

/// A live flow as the control socket shows it: oriented initiator → responder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
    pub vlan: u32,
    pub verdict: Verdict,
    pub generation: u32,
    pub tcp: TcpState,
    /// [initiator → responder, responder → initiator]
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    pub created: u64,
    pub last_seen: u64,
}

/// The packet path of one worker.
pub struct Pipeline<S: Classifier> {
    snapshots: Cache<Arc<ArcSwap<S>>, Arc<S>>,
    snapshot: Arc<S>,
    generation: u64,
    now: u64,
    flows: FlowTable,
    fragments: FragmentTable,
    tcp_mode: TcpMode,
    aging_every_bursts: u32,
    aging_budget: usize,
    bursts_since_aging: u32,
    counters: Counters,
    /// Policy drops under the current snapshot, by deciding rule: index `rule + 1`
    /// (`NO_RULE` wraps to 0). Grows to the largest rule id seen, then stays.
    rule_drops: Vec<u64>,
    /// Drop counts of replaced snapshots not yet handed to the control side.
    retired_rule_drops: Vec<RuleDrops<S>>,
    link: Option<ControlLink<S>>,
    /// The verdict of the packet being decided as a connection of its own (source to
    /// destination, its protocol and destination port) when `admit_burst` classified it
    /// ahead with the rest of its burst; taken by `own_verdict`, cleared after the packet.
    preclassified: Option<Verdict>,
}

/// Rule ids above this share the `NO_RULE` drop counter (bounds `rule_drops`).
const MAX_COUNTED_RULE: usize = 1 << 20;

/// Replaced snapshots' drop counts kept for the control side at most; older ones are
/// folded into the newest retired entry's `NO_RULE` count.
const MAX_RETIRED: usize = 64;

/// The rule that decided a denial: the denying side's (default-deny) rule.
#[inline]
pub fn deciding_rule(v: &Verdict) -> RuleId {
    match v.reason {
        Reason::DeniedByEgress => v.egress_rule,
        Reason::DeniedByIngress => v.ingress_rule,
        _ => v.rules().next().unwrap_or(NO_RULE),
    }
}

/// A flow table entry as a `FlowRecord`, initiator first.
fn flow_record(key: &FlowKey, entry: &FlowEntry) -> FlowRecord {
    let init = entry.initiator();
    FlowRecord {
        src: key.addr(init),
        dst: key.addr(init.other()),
        src_port: key.port(init),
        dst_port: key.port(init.other()),
        protocol: key.protocol(),
        vlan: key.vlan(),
        verdict: entry.verdict(),
        generation: entry.generation,
        tcp: entry.tcp,
        packets: entry.packets,
        bytes: entry.bytes,
        created: entry.created,
        last_seen: entry.last_seen,
    }
}

/// What a staged frame is to the flow logic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Class {
    /// Carries its own ports (or echo identifier): looked up, tracked, may open a flow.
    Track,
    /// An ICMP(v6) echo reply: looked up like `Track`, never opens a flow.
    EchoReply,
    /// An ICMP(v6) error: follows the flow of the datagram it quotes (the staged key).
    Quoted,
    /// A fragment, first or not: parsed again when decided (rare; it needs all of `Meta`).
    Fragment,
    Passthrough,
    Malformed,
    BadFragment,
}

/// A frame as the pipeline decides it: its class, the flow key its lookup uses (its own,
/// or the quoted datagram's), the side its source is on, the key's hash, and the few
/// header fields the decision reads. A burst stages every frame before any lookup, so
/// the table lines can be prefetched; the record is small and written in whole words
/// (a copied `Parsed`, written field by field, stalled the reads that followed it).
#[derive(Clone, Copy)]
struct Staged {
    key: FlowKey,
    hash: u32,
    side: Side,
    class: Class,
    protocol: u8,
    /// TCP flag byte, 0 for other protocols.
    tcp_flags: u8,
    is_v4: bool,
}

impl Staged {
    /// A frame decided without a lookup.
    #[inline]
    fn bare(class: Class) -> Staged {
        Staged { key: FlowKey::default(), hash: 0, side: Side::Lo, class, protocol: 0, tcp_flags: 0, is_v4: false }
    }

    /// Whether the decision looks `key` up.
    #[inline]
    fn has_lookup(&self) -> bool {
        matches!(self.class, Class::Track | Class::EchoReply | Class::Quoted)
    }

    /// A TCP SYN without ACK: the packet that opens a connection (`Meta::is_syn`).
    #[inline]
    fn is_syn(&self) -> bool {
        self.protocol == ip_proto::TCP && self.tcp_flags & (SYN | ACK) == SYN
    }

    /// The packet's own source and destination (not the quoted datagram's), as `Meta`'s.
    #[inline]
    fn src_ip(&self) -> IpAddr {
        self.key.ip(self.side, self.is_v4)
    }

    #[inline]
    fn dst_ip(&self) -> IpAddr {
        self.key.ip(self.side.other(), self.is_v4)
    }

    #[inline]
    fn src_port(&self) -> u16 {
        self.key.port(self.side)
    }

    #[inline]
    fn dst_port(&self) -> u16 {
        self.key.port(self.side.other())
    }
}

/// Frames `admit_burst` stages at once (the worker's rx burst).
const BURST: usize = 32;

/// Frames staged between a frame's slot prefetch and its record prefetch.
const RECORD_LAG: usize = 8;

/// How a packet that found no flow may start one.
enum Opening {
    /// Start a flow with this initiator side and TCP state.
    Flow { initiator: Side, tcp: TcpState },
    /// It cannot open a connection (TCP without SYN in strict mode, echo reply).
    NoFlow,
}

impl<S: Classifier> Pipeline<S> {
    pub fn new(snapshots: Arc<ArcSwap<S>>, config: &PipelineConfig) -> Pipeline<S> {
        let seed = config.hash_seed.unwrap_or_else(|| std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64));
        let tps = config.ticks_per_second.max(1);
        let fragment_ticks = FlowTimeouts { udp: config.fragment_timeout, ..config.timeouts }.to_ticks(tps)[4];
        let mut snapshots = Cache::new(snapshots);
        let snapshot = Arc::clone(snapshots.load());
        Pipeline {
            generation: snapshot.generation(),
            snapshot,
            snapshots,
            now: 0,
            flows: FlowTable::new(config.flow_capacity, config.timeouts.to_ticks(tps), seed),
            fragments: FragmentTable::new(config.fragment_slots, fragment_ticks, seed.rotate_left(17)),
            tcp_mode: config.tcp_mode,
            aging_every_bursts: config.aging_every_bursts.max(1),
            aging_budget: config.aging_budget,
            bursts_since_aging: 0,
            counters: Counters::default(),
            rule_drops: Vec::new(),
            retired_rule_drops: Vec::new(),
            link: None,
            preclassified: None,
        }
    }

    /// Connects the pipeline to the control plane (see `live`): it then publishes its
    /// counters, answers dump requests and sends flow events at its upkeep points.
    pub fn connect(&mut self, link: ControlLink<S>) {
        link.shared.publish(&self.counters, self.flows.len(), self.flows.capacity(), self.generation);
        self.link = Some(link);
    }

    /// Policy drops under the current snapshot, by deciding rule (`NO_RULE` for drops
    /// without a known rule), non-zero counts only.
    pub fn rule_drops(&self) -> Vec<(RuleId, u64)> {
        self.rule_drops
            .iter()
            .enumerate()
            .filter(|(_, n)| **n != 0)
            .map(|(i, n)| ((i as RuleId).wrapping_sub(1), *n))
            .collect()
    }

    /// The snapshot the last burst ran with.
    pub fn snapshot(&self) -> Arc<S> {
        Arc::clone(&self.snapshot)
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// The live flows, initiator first.
    pub fn flows(&self) -> impl Iterator<Item = FlowRecord> + '_ {
        self.flows.iter().map(|(key, entry)| flow_record(key, entry))
    }

    /// Stage one frame.
    #[inline(always)]
    fn stage(&self, frame: &[u8]) -> Staged {
        let mut staged = Staged::bare(Class::Malformed);
        self.stage_into(frame, &mut staged);
        staged
    }

    /// Stage one frame into `out`: the common case (IPv4 TCP or UDP, not fragmented)
    /// straight from its headers, the rest through the full parse. Written in place: a
    /// staged temporary copied over would be read back wide right after narrow writes.
    #[inline(always)]
    fn stage_into(&self, frame: &[u8], out: &mut Staged) {
        match parse::parse_fast_v4(frame) {
            Some(p) => {
                let (key, side) = FlowKey::new_v4(p.src, p.src_port, p.dst, p.dst_port, p.protocol, p.vlan);
                let hash = self.flows.hash(&key);
                *out = Staged { key, hash, side, class: Class::Track, protocol: p.protocol, tcp_flags: p.tcp_flags, is_v4: true };
            }
            None => self.stage_parsed(frame, out),
        }
    }

    /// `stage_into` through the full parse: IPv6, ICMP, SCTP, fragmented, odd frames.
    #[inline(never)]
    fn stage_parsed(&self, frame: &[u8], out: &mut Staged) {
        *out = match parse::parse(frame) {
            Parsed::Passthrough => Staged::bare(Class::Passthrough),
            Parsed::Malformed => Staged::bare(Class::Malformed),
            Parsed::BadFragment => Staged::bare(Class::BadFragment),
            Parsed::Ip(meta) if meta.fragment.is_some() => Staged::bare(Class::Fragment),
            Parsed::Ip(meta) => self.stage_meta(&meta),
        };
    }

    /// The staged form of a parsed IP packet (its fragment identity aside).
    fn stage_meta(&self, meta: &Meta) -> Staged {
        let (class, (key, side)) = match meta.kind {
            Kind::IcmpError(q) => (Class::Quoted, FlowKey::new(&q.src, q.src_port, &q.dst, q.dst_port, q.protocol, meta.vlan)),
            kind => {
                let class = if kind == Kind::EchoReply { Class::EchoReply } else { Class::Track };
                (class, FlowKey::new(&meta.src, meta.src_port, &meta.dst, meta.dst_port, meta.protocol, meta.vlan))
            }
        };
        let hash = self.flows.hash(&key);
        Staged { key, hash, side, class, protocol: meta.protocol, tcp_flags: meta.tcp_flags, is_v4: meta.is_v4 }
    }

    /// Prefetch the record a staged frame's lookup will compare. Returns whether the frame
    /// opens a connection of its own unless an earlier frame of its burst opens it first:
    /// a non-TCP packet with a flow key (a TCP one needs a SYN, an echo reply a request)
    /// whose slot chain shows no flow.
    #[inline(always)]
    fn prefetch_record(&self, staged: &Staged) -> bool {
        staged.has_lookup()
            && !self.flows.prefetch_record(staged.hash)
            && staged.class == Class::Track
            && staged.protocol != ip_proto::TCP
    }

    /// Decide one staged frame (`stage(frame)`); counts it.
    #[inline(always)]
    fn decide(&mut self, staged: &Staged, frame: &[u8]) -> bool {
        match staged.class {
            Class::Track | Class::EchoReply => self.track(staged, frame.len()),
            Class::Quoted => self.follow_quoted(&staged.key, staged.hash),
            Class::Fragment => self.decide_fragment(frame),
            Class::Passthrough => {
                self.counters.passthrough += 1;
                true
            }
            Class::Malformed => {
                self.counters.drop_malformed += 1;
                false
            }
            Class::BadFragment => {
                self.counters.drop_fragment += 1;
                false
            }
        }
    }

    /// A fragment, parsed again for all of its `Meta`: a first fragment is decided like
    /// any packet and its verdict remembered; later ones follow it.
    #[inline(never)]
    fn decide_fragment(&mut self, frame: &[u8]) -> bool {
        let Parsed::Ip(meta) = parse::parse(frame) else {
            // Unreachable: staged as a fragment, the same bytes parse as one again.
            self.counters.drop_malformed += 1;
            return false;
        };
        if meta.kind == Kind::NonFirstFragment {
            return self.follow_fragment(&meta);
        }
        let staged = self.stage_meta(&meta);
        if staged.class == Class::Quoted {
            return self.follow_quoted(&staged.key, staged.hash);
        }
        let allow = self.track(&staged, frame.len());
        self.fragments.record(fragment_key(&meta, meta.fragment.unwrap_or_default()), allow, self.now);
        allow
    }

    /// Flow lookup and decision for a packet that carries its own ports.
    #[inline]
    fn track(&mut self, staged: &Staged, len: usize) -> bool {
        match self.flows.find(&staged.key, staged.hash) {
            Some(index) => self.on_hit(index, staged, len),
            None => self.on_miss(staged, len),
        }
    }

    fn opening(&self, staged: &Staged) -> Opening {
        let (syn_ack, side) = (staged.tcp_flags & (SYN | ACK), staged.side);
        match (staged.protocol, staged.class) {
            (_, Class::EchoReply) => Opening::NoFlow,
            (ip_proto::TCP, _) if syn_ack == SYN => Opening::Flow { initiator: side, tcp: TcpState::SynSent },
            (ip_proto::TCP, _) if self.tcp_mode == TcpMode::Strict => Opening::NoFlow,
            (ip_proto::TCP, _) if syn_ack == SYN | ACK => {
                Opening::Flow { initiator: side.other(), tcp: TcpState::SynReceived }
            }
            (ip_proto::TCP, _) => Opening::Flow { initiator: side, tcp: TcpState::Established },
            _ => Opening::Flow { initiator: side, tcp: TcpState::None },
        }
    }

    /// Classify a connection opened by `initiator` of `key`.
    #[inline]
    fn classify_key(&self, key: &FlowKey, initiator: Side) -> Verdict {
        let responder = initiator.other();
        self.snapshot.classify(key.addr(initiator), key.addr(responder), key.protocol(), key.port(responder))
    }

    /// Classify the packet itself as a new connection from its source.
    #[inline]
    fn classify_packet(&self, staged: &Staged) -> Verdict {
        self.snapshot.classify(staged.src_ip(), staged.dst_ip(), staged.protocol, staged.dst_port())
    }

    /// `classify_packet`, answered from the burst's classification when there is one
    /// (the same snapshot and the same inputs, so the same verdict).
    #[inline]
    fn own_verdict(&mut self, staged: &Staged) -> Verdict {
        match self.preclassified.take() {
            Some(verdict) => verdict,
            None => self.classify_packet(staged),
        }
    }

    /// Counts a verdict's packet: a denial is a policy drop charged to its deciding rule.
    #[inline]
    fn outcome(&mut self, verdict: &Verdict) -> bool {
        if verdict.is_allow() {
            true
        } else {
            self.deny(deciding_rule(verdict))
        }
    }

    /// A policy drop decided by `rule`; returns `false` (drop).
    #[inline]
    fn deny(&mut self, rule: RuleId) -> bool {
        self.counters.drop_policy += 1;
        let mut i = rule.wrapping_add(1) as usize;
        if i >= self.rule_drops.len() {
            i = self.grow_rule_drops(i);
        }
        self.rule_drops[i] += 1;
        false
    }

    /// Makes room for rule counter `i` (rare: once per new largest rule id); ids past
    /// `MAX_COUNTED_RULE` share counter 0.
    #[cold]
    fn grow_rule_drops(&mut self, i: usize) -> usize {
        let i = if i > MAX_COUNTED_RULE { 0 } else { i };
        if i >= self.rule_drops.len() {
            self.rule_drops.resize(i + 1, 0);
        }
        i
    }

    /// The snapshot changed: keep the old one's drop counts (with it, to name the rules)
    /// for the control side, and start counting afresh.
    #[cold]
    fn retire_rule_drops(&mut self, old: Arc<S>) {
        let counts = if self.link.is_some() { self.rule_drops() } else { Vec::new() };
        self.rule_drops.iter_mut().for_each(|n| *n = 0);
        if counts.is_empty() {
            return;
        }
        if self.retired_rule_drops.len() >= MAX_RETIRED {
            let oldest = self.retired_rule_drops.remove(0);
            let lost: u64 = oldest.counts.iter().map(|(_, n)| n).sum();
            if let Some(next) = self.retired_rule_drops.first_mut() {
                next.counts.push((NO_RULE, lost));
            }
        }
        self.retired_rule_drops.push(RuleDrops { snapshot: old, counts });
    }

    /// Sends a flow event if a flow log is connected; a full log drops it and counts.
    #[cold]
    fn log_flow(&mut self, kind: FlowEventKind, key: &FlowKey, entry: &FlowEntry) {
        if let Some(tx) = self.link.as_ref().and_then(|l| l.flow_log.as_ref()) {
            let event = FlowEvent { kind, flow: flow_record(key, entry), at: self.now };
            if tx.try_send(event).is_err() {
                self.counters.flow_log_dropped += 1;
            }
        }
    }

    fn on_miss(&mut self, staged: &Staged, len: usize) -> bool {
        let Staged { key, hash, side, .. } = *staged;
        let (initiator, tcp) = match self.opening(staged) {
            Opening::Flow { initiator, tcp } => (initiator, tcp),
            Opening::NoFlow if self.flows.is_full() => return self.decide_stateless(staged),
            Opening::NoFlow => {
                self.counters.drop_no_flow += 1;
                return false;
            }
        };
        // Opened by its own source, the connection is the packet's own.
        let verdict = if initiator == side { self.own_verdict(staged) } else { self.classify_key(&key, initiator) };
        let (generation, now) = (self.generation, self.now);
        if !verdict.is_allow() && self.link.as_ref().is_some_and(|l| l.log_denied) {
            let entry = FlowEntry::opened(verdict, generation, initiator, tcp, now, side, len);
            self.log_flow(FlowEventKind::Denied, &key, &entry);
        }
        match self.flows.insert_key(&key, hash) {
            Ok(index) => {
                // Written in place (see `FlowTable::insert_key`).
                *self.flows.entry_mut(index) = FlowEntry::opened(verdict, generation, initiator, tcp, now, side, len);
                self.counters.flow_inserts += 1;
            }
            Err(_) => self.counters.flow_table_full += 1,
        }
        self.outcome(&verdict)
    }

    /// Without a flow (table full): allowed if this direction is, or if the packet could
    /// be the reply of a connection the other way that is.
    fn decide_stateless(&mut self, staged: &Staged) -> bool {
        self.counters.stateless_decisions += 1;
        let forward = self.own_verdict(staged);
        if forward.is_allow()
            || self.snapshot.classify(staged.dst_ip(), staged.src_ip(), staged.protocol, staged.src_port()).is_allow()
        {
            return true;
        }
        self.counters.stateless_denied += 1;
        self.deny(deciding_rule(&forward))
    }

    /// A packet of a known flow. Nearly all are the flow's own traffic under the verdict
    /// it already has: count it in place, then forward or drop it. What may open a
    /// connection of its own (a SYN; a non-TCP reply over a denied flow) or needs a
    /// re-decision (an older generation) takes `on_hit_rare`.
    #[inline(always)]
    fn on_hit(&mut self, index: u32, staged: &Staged, len: usize) -> bool {
        let (generation, now) = (self.generation, self.now);
        let entry = self.flows.entry_mut(index);
        let is_tcp = staged.protocol == ip_proto::TCP;
        let opens = staged.is_syn();
        let direction = entry.direction(staged.side);
        let allowed = entry.action == Action::Allow;
        if !entry.is_current(generation) || opens || !(allowed || is_tcp || direction == ORIG) {
            return self.on_hit_rare(index, staged, len);
        }
        // What `on_hit_rare` does for these: no new connection, no re-decision; count,
        // track, and follow the flow's verdict.
        entry.count(direction, len, now);
        if is_tcp {
            entry.track_tcp(direction, staged.tcp_flags);
        }
        if allowed {
            return true;
        }
        let rule = deciding_rule(&entry.verdict());
        self.deny(rule)
    }

    #[inline(never)]
    fn on_hit_rare(&mut self, index: u32, staged: &Staged, len: usize) -> bool {
        let side = staged.side;
        let entry = *self.flows.entry(index);
        let direction = entry.direction(side);
        let opens = staged.is_syn();
        let denied = entry.action == Action::Deny;
        // A packet that opens a connection of its own is decided as new: a SYN on an
        // ended connection, a SYN from the responder, or the responder sending over a
        // flow that was denied. It replaces the entry when the old connection is over
        // (or never was) and the new one is allowed, or when the initiator starts over.
        let opens_own = if staged.protocol == ip_proto::TCP {
            opens && (entry.tcp_finished() || direction == REPLY)
        } else {
            direction == REPLY && denied
        };
        if opens_own {
            let verdict = self.own_verdict(staged);
            let over = entry.tcp_finished() || denied;
            if direction == ORIG || (verdict.is_allow() && over) {
                let tcp = if opens { TcpState::SynSent } else { entry.tcp };
                let mut fresh = FlowEntry::new(verdict, self.generation, side, tcp, self.now);
                fresh.count(ORIG, len, self.now);
                if self.link.is_some() {
                    // The old connection on this tuple is over.
                    let key = *self.flows.key(index);
                    self.log_flow(FlowEventKind::End, &key, &entry);
                }
                *self.flows.entry_mut(index) = fresh;
            }
            return self.outcome(&verdict);
        }
        if !entry.is_current(self.generation) {
            let verdict = self.classify_key(self.flows.key(index), entry.initiator());
            self.counters.flow_redecided += 1;
            if entry.action == Action::Allow && !verdict.is_allow() {
                self.counters.flow_revoked += 1;
            }
            self.flows.entry_mut(index).set_verdict(verdict, self.generation);
        }
        let now = self.now;
        let entry = self.flows.entry_mut(index);
        entry.count(direction, len, now);
        if staged.protocol == ip_proto::TCP {
            entry.track_tcp(direction, staged.tcp_flags);
        }
        if entry.action == Action::Allow {
            return true;
        }
        let verdict = entry.verdict();
        self.outcome(&verdict)
    }

    fn follow_fragment(&mut self, meta: &Meta) -> bool {
        let ident = meta.fragment.unwrap_or_default();
        match self.fragments.lookup(&fragment_key(meta, ident), self.now) {
            Some(allow) => {
                self.counters.fragments_followed += 1;
                allow || self.deny(NO_RULE)
            }
            None => {
                self.counters.drop_fragment += 1;
                false
            }
        }
    }

    fn follow_quoted(&mut self, key: &FlowKey, hash: u32) -> bool {
        let Some(index) = self.flows.find(key, hash) else {
            self.counters.drop_no_flow += 1;
            return false;
        };
        let entry = *self.flows.entry(index);
        let mut verdict = entry.verdict();
        if !entry.is_current(self.generation) {
            let fresh = self.classify_key(key, entry.initiator());
            self.counters.flow_redecided += 1;
            if verdict.is_allow() && !fresh.is_allow() {
                self.counters.flow_revoked += 1;
            }
            self.flows.entry_mut(index).set_verdict(fresh, self.generation);
            verdict = fresh;
        }
        if verdict.is_allow() {
            self.counters.icmp_related += 1;
        }
        self.outcome(&verdict)
    }

    /// Decide and count one received frame.
    #[inline(always)]
    fn count_admit(&mut self, staged: &Staged, frame: &[u8]) -> bool {
        self.counters.rx += 1;
        let allow = self.decide(staged, frame);
        if allow {
            self.counters.forwarded += 1;
        }
        allow
    }

    /// Upkeep: age a slice of the flow table (sending flow events for flows that end),
    /// then, when connected, publish the counters and answer dump requests.
    fn age(&mut self) {
        let now = self.now;
        let removed = match self.link.as_ref().and_then(|l| l.flow_log.as_ref()) {
            None => self.flows.age(now, self.aging_budget),
            Some(tx) => {
                let dropped = &mut self.counters.flow_log_dropped;
                self.flows.age_each(now, self.aging_budget, |key, entry| {
                    let event = FlowEvent { kind: FlowEventKind::End, flow: flow_record(key, entry), at: now };
                    if tx.try_send(event).is_err() {
                        *dropped += 1;
                    }
                })
            }
        };
        self.counters.flow_expiries += removed as u64;
        if self.link.is_some() {
            self.serve_control();
        }
    }

    /// Publishes the counters and answers queued dump requests.
    fn serve_control(&mut self) {
        let Some(link) = self.link.as_ref() else {
            return;
        };
        link.shared.publish(&self.counters, self.flows.len(), self.flows.capacity(), self.generation);
        while let Ok(request) = link.requests.try_recv() {
            let dump = Dump {
                now: self.now,
                snapshot: Arc::clone(&self.snapshot),
                flows: if request.flows { self.flows().collect() } else { Vec::new() },
                retired_rule_drops: std::mem::take(&mut self.retired_rule_drops),
                current_rule_drops: RuleDrops { snapshot: Arc::clone(&self.snapshot), counts: self.rule_drops() },
            };
            if let Err(unsent) = request.reply.try_send(dump) {
                // Nobody is waiting any more: keep the retired counts for the next request.
                self.retired_rule_drops = unsent.into_inner().retired_rule_drops;
            }
        }
    }
}

fn fragment_key(meta: &Meta, ident: u32) -> FragmentKey {
    FragmentKey { src: meta.src, dst: meta.dst, ident, protocol: meta.protocol, vlan: meta.vlan }
}

impl<S: Classifier> PacketFilter for Pipeline<S> {
    #[inline]
    fn begin_burst(&mut self, now: u64) {
        self.now = now;
        let current = self.snapshots.load();
        if !Arc::ptr_eq(current, &self.snapshot) {
            let old = std::mem::replace(&mut self.snapshot, Arc::clone(current));
            self.generation = self.snapshot.generation();
            self.retire_rule_drops(old);
        }
        self.bursts_since_aging += 1;
        if self.bursts_since_aging >= self.aging_every_bursts {
            self.bursts_since_aging = 0;
            self.age();
        }
    }

    #[inline]
    fn admit(&mut self, frame: &[u8], _in_port: u16) -> bool {
        let staged = self.stage(frame);
        self.count_admit(&staged, frame)
    }

    /// The same decisions as `admit` frame by frame, in the same order (a packet may
    /// depend on a flow an earlier one of the burst inserted), with the memory latency
    /// overlapped: stage every frame of a chunk first (parse, key, hash) and prefetch the
    /// slots their lookups start at and, a few frames later, the records they point to,
    /// classify the chunk's new connections together (`Classifier::classify_burst`,
    /// which overlaps the snapshot's misses), then decide each packet in order. The new
    /// connections are the TCP SYNs and the packets of other protocols (UDP, SCTP, echo
    /// requests, ...) whose slot chain shows no flow: such a packet opens one, classified
    /// as its own connection. A guess that an earlier packet of the burst proves wrong
    /// costs a classification, never a different verdict: the burst's verdict is the one
    /// `classify_packet` would give.
    fn admit_burst(&mut self, frames: &[&[u8]], _in_port: u16, verdicts: &mut [bool]) {
        const NO_PROBE: u8 = u8::MAX;
        let mut staged = [Staged::bare(Class::Malformed); BURST];
        let unspecified = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
        let mut probes = [Probe { src: unspecified, dst: unspecified, proto: 0, dst_port: 0 }; BURST];
        let mut probe_of = [NO_PROBE; BURST];
        let mut classified = [Verdict::NOT_POLICED; BURST];
        for (frames, verdicts) in frames.chunks(BURST).zip(verdicts.chunks_mut(BURST)) {
            let n = frames.len();
            let mut opening = 0;
            probe_of[..n].fill(NO_PROBE);
            let mut probe = |i: usize, s: &Staged| {
                probes[opening] = Probe { src: s.src_ip(), dst: s.dst_ip(), proto: s.protocol, dst_port: s.dst_port() };
                probe_of[i] = opening as u8;
                opening += 1;
            };
            // The record of frame `i - RECORD_LAG` is prefetched once frame `i` is staged:
            // its slot line, prefetched `RECORD_LAG` frames ago, has had time to arrive.
            for (i, frame) in frames.iter().enumerate() {
                self.stage_into(frame, &mut staged[i]);
                let s = &staged[i];
                if s.has_lookup() {
                    self.flows.prefetch_slot(s.hash);
                    // A SYN without ACK almost always misses the flow table and is
                    // classified as a connection of its own.
                    if s.class == Class::Track && s.is_syn() {
                        probe(i, s);
                    }
                }
                if let Some(j) = i.checked_sub(RECORD_LAG) {
                    if self.prefetch_record(&staged[j]) {
                        probe(j, &staged[j]);
                    }
                }
            }
            for j in n.saturating_sub(RECORD_LAG)..n {
                if self.prefetch_record(&staged[j]) {
                    probe(j, &staged[j]);
                }
            }
            if opening != 0 {
                // Each new connection will likely take a pool record: fetch them while
                // the snapshot classifies.
                self.flows.prefetch_free(opening);
                self.snapshot.classify_burst(&probes[..opening], &mut classified[..opening]);
            }
            for (i, (frame, verdict)) in frames.iter().zip(verdicts.iter_mut()).enumerate() {
                self.preclassified = match probe_of[i] {
                    NO_PROBE => None,
                    p => Some(classified[p as usize]),
                };
                *verdict = self.count_admit(&staged[i], frame);
            }
            self.preclassified = None;
        }
    }

    fn idle(&mut self, now: u64) {
        self.now = now;
        self.age();
    }
}

/// A connected pipeline publishes its final counters when its worker drops it, so the
/// control side reads exact totals after a run.
impl<S: Classifier> Drop for Pipeline<S> {
    fn drop(&mut self) {
        if let Some(link) = &self.link {
            link.shared.publish(&self.counters, self.flows.len(), self.flows.capacity(), self.generation);
        }
    }
}

/// Lend a pipeline to a worker run and keep it: `palisade replay` reads the counters and
/// flows after the run returns.
impl<S: Classifier> PacketFilter for &mut Pipeline<S> {
    #[inline]
    fn begin_burst(&mut self, now: u64) {
        (**self).begin_burst(now);
    }

    #[inline]
    fn admit(&mut self, frame: &[u8], in_port: u16) -> bool {
        (**self).admit(frame, in_port)
    }

    #[inline]
    fn admit_burst(&mut self, frames: &[&[u8]], in_port: u16, verdicts: &mut [bool]) {
        (**self).admit_burst(frames, in_port, verdicts);
    }

    fn idle(&mut self, now: u64) {
        (**self).idle(now);
    }
}

#[cfg(test)]
mod tests;
