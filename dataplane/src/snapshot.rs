//! The compiled policy snapshot: an immutable, generation-stamped lookup structure the
//! workers consult for every new flow, built by `control` through [`SnapshotBuilder`].
//!
//! Layout (all flat arrays, shared between pods):
//! - address → endpoint or node: one hash map per family keyed by the integer address.
//!   IPv4 is a [`flat::FlatMap`] whose value is the endpoint record itself (a 32-byte
//!   slot: key and the 28-byte record, one cache line per probe and no second load); a
//!   node's address holds a marker record (`id` with `NODE_BIT`). A flattened copy
//!   packs it (`v4_endpoints`: 8-byte slots of endpoint id and profile, the record
//!   without its id, which pods share; while the pods' addresses lie thick in one
//!   range, as nodes' address blocks make them, the pods' values are an array indexed
//!   by address, with no hash and no probe chain). IPv6 maps to the endpoint's index in
//!   `endpoints`. Endpoints' nodes are a separate array, read only when the other end
//!   is a node;
//! - endpoint record: its id (same pod both ends), identity (its class for selectors;
//!   in a flattened copy the class of identities with equal table entries, `flatten`)
//!   and namespace, and per direction either "not isolated" or (rule set, isolation
//!   rule);
//! - rule set → a base port list (rules allowing any remote), identity and namespace
//!   tables (selector peers, `keyed`: one shared hash map keyed by (rule set, identity)
//!   or (rule set, namespace); in a flattened copy a ranked presence bitmap of rule
//!   sets × classes and a dense rule set × namespace array; the remote endpoint's
//!   identity, else its namespace, else the base list: each table's lists include
//!   what the later ones would add), and disjoint
//!   address segments (ipBlock peers; their starts in blocks of 16 behind an index
//!   of each block's first start: a count of the index keys picks the block, a count
//!   of its 16 starts the segment, two cache lines and no branch to mispredict), each
//!   pointing at an interned port list; the lowest rule found decides, and the segment
//!   search is skipped when the selector part already found a rule at or below every
//!   address rule that can match the remote: for a remote that is not a pod every
//!   address rule of the set (`addr_min_rule`), for a pod only those whose address set
//!   meets a prefix some endpoint address was ever given in (`pod_addr_min_rule`; an
//!   ipBlock outside the pod network never matches a pod, so denied pod-to-pod probes
//!   skip its search); and while every such prefix lies in one v4 segment of the set
//!   (a pod network wholly inside or outside each ipBlock), the layout holds that
//!   segment's list (`pod_v4_list`), which an IPv4 pod remote takes without a search;
//! - port list → a few `(protocol, port range, rule)` entries, most specific first,
//!   already reduced to the lowest (first) allowing rule per port.
//!
//! Port lists are referenced by their `(start, end)` in the shared entry array, so a
//! table hit leads straight to the entries. Long lists are searched through a parallel
//! array of the entries' u32 search keys (`port_keys`: 16 keys to a cache line, where
//! 16 entries of 12 bytes span three or four), then one entry is read. A lookup is therefore two address probes
//! and, per isolated side, one or two table probes, at most one segment search and two
//! short scans (long port lists are searched like segments); it allocates nothing and
//! touches no string.
//!
//! On large snapshots nearly every one of those steps is a cache miss, and each waits
//! for the one before. `classify_burst` (what a worker hands a burst of new flows)
//! therefore takes the first two steps for a chunk of `BURST_CHUNK` probes at a time,
//! requesting (prefetching) what the next reads, so that those misses are in flight
//! together: (1) both address slots of every probe; (2) the ends resolved, and for each
//! side its peer's identity word and namespace cell in its rule set's rows (asked for
//! every side of packed tables, isolated or not, pod peer or not, rather than branched
//! on); then
//! (3) each probe classified from its ends as `classify` does, reading a flattened
//! copy's packed tables without checking whether the rule set has entries, the port
//! entries and segments left to the core's speculation. Verdicts are `classify`'s
//! exactly.

mod addr;
mod builder;
mod cow;
pub mod five_tuple;
mod flat;
mod flatten;
mod keyed;
mod ranked;
mod v4_endpoints;

pub use addr::{AddressSet, Interval};
pub use builder::{
    AddrSetId, IdentityId, IdentitySetId, Isolation, NodeId, PortMatch, Remote, RuleSetEntry,
    RuleSetId, SnapshotBuilder,
};

use crate::dpdk::prefetch::prefetch_read;
use crate::verdict::{Action, Classifier, Probe, Reason, RuleId, Verdict, NO_RULE};
use cow::CowVec;
use hashbrown::HashMap;
use keyed::KeyedTables;
use v4_endpoints::V4Endpoints;
use std::net::IpAddr;

/// Protocol value of a port-list entry that matches every protocol (a rule without
/// `ports`). 255 is IANA-reserved, so no real packet carries it.
pub const ANY_PROTO: u8 = 255;

/// Port lists up to this long are scanned; longer ones are binary-searched.
const LINEAR_SCAN: usize = 8;

/// Probes `classify_burst` takes through its passes together: enough misses in flight
/// to cover memory latency, few enough that the resolved ends stay in L1 (8 and 32
/// measured within noise of 16 at 50k pods × 10k policies).
const BURST_CHUNK: usize = 16;

/// Snapshots whose lookup structures span at most this many bytes (`lookup_bytes`)
/// stay cache-resident under a stream of lookups: `classify_burst` classifies their
/// probes one at a time, as its passes only pay off when lookups miss. What decides
/// is a worker, where the flow table and the frames share the cache with the
/// snapshot: benches/pipeline.rs `new_flow_burst` (2026-12-07, taskset -c 1, passes
/// forced against single lookups, ns per new-flow packet) took 121 against 116 on the
/// flattened 10k pods × 10k policies (1.4 MB of lookup structures), 190 against 235
/// on its chunked snapshot (4.3 MB), 169 against 218 on the flattened 50k × 10k
/// (10.7 MB), 286 against 469 on its chunked one (53 MB); hence 2 MiB. Alone
/// (benches/classify.rs) single lookups of the flattened 50k × 10k are a little
/// faster (about 50 against 57 ns), as nothing else evicts their lines.
const RESIDENT_BYTES: usize = 2 << 20;

/// Bits a field needs to hold `n` (what the packed forms' widths are sized by).
#[inline]
pub(crate) fn bits_for(n: usize) -> u32 {
    usize::BITS - n.leading_zeros()
}

/// "No value" in the u32 index fields below.
const NONE: u32 = u32::MAX;
/// Marks an address-map value (an id in the v6 map, an `Endpoint::id` in the v4 map)
/// as a node's rather than an endpoint's.
const NODE_BIT: u32 = 1 << 31;

/// A pod endpoint as the lookup sees it: an element of `endpoints`, and the value of
/// each of its IPv4 addresses in `addr_v4` (28 bytes: with the key, a 32-byte slot;
/// a flattened copy's packed map shares one record, its profile, between the pods
/// that differ only in `id`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Endpoint {
    /// The endpoint's index in `endpoints` (what tells "same pod both ends"); in the
    /// v4 map the value of a node's address is a record whose `id` is the node's id
    /// with `NODE_BIT` set (and whose other fields are `NONE`).
    pub(crate) id: u32,
    pub(crate) namespace: u32,
    pub(crate) identity: u32,
    /// Rule set deciding traffic *to* this endpoint, or `NONE` when not isolated.
    pub(crate) ingress: u32,
    /// Rule set deciding traffic *from* this endpoint, or `NONE` when not isolated.
    pub(crate) egress: u32,
    pub(crate) ingress_default: RuleId,
    pub(crate) egress_default: RuleId,
}

/// Filler of the endpoint array and the v4 map's free slots; with `id` a node's (and
/// `NODE_BIT`), a node address's marker record.
pub(crate) const NO_ENDPOINT: Endpoint =
    Endpoint { id: NONE, namespace: NONE, identity: NONE, ingress: NONE, egress: NONE, ingress_default: NONE, egress_default: NONE };

/// One entry of a port list: `proto` (or `ANY_PROTO`) with destination ports
/// `lo..=hi` is allowed by `rule`. `proto` and `lo` are kept as one search key
/// (`port_key`), so a search of a long list compares one load per entry; the order
/// (key, hi, rule) is (proto, lo, hi, rule).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct PortEntry {
    pub(crate) key: u32,
    pub(crate) hi: u16,
    pub(crate) rule: RuleId,
}

impl PortEntry {
    #[inline(always)]
    pub(crate) const fn new(proto: u8, lo: u16, hi: u16, rule: RuleId) -> PortEntry {
        PortEntry { key: port_key(proto, lo), hi, rule }
    }

    #[inline(always)]
    pub(crate) const fn proto(&self) -> u8 {
        (self.key >> 16) as u8
    }

    #[inline(always)]
    pub(crate) const fn lo(&self) -> u16 {
        self.key as u16
    }
}

/// The search key of `proto`/`port` in a port list: ordered by protocol, then port.
#[inline(always)]
const fn port_key(proto: u8, port: u16) -> u32 {
    ((proto as u32) << 16) | port as u32
}

/// An entry that matches nothing (`lo` above `hi`), read in place of a first entry past
/// the end of `port_entries`.
pub(crate) const FILLER_ENTRY: PortEntry = PortEntry::new(0, 1, 0, NONE);

/// A port list as `port_entries[start..end]` (`(0, 0)`: no list, nothing allowed).
pub(crate) type ListRef = (u32, u32);

/// Key of the shared table of identity and namespace lists: (rule set, kind, key).
#[inline(always)]
pub(crate) fn table_key(set: u32, kind: TableKind, key: u32) -> u64 {
    (u64::from(set) << 33) | ((kind as u64) << 32) | u64::from(key)
}

/// `(set, kind, key)` of a `table_key`.
#[inline]
pub(crate) fn table_key_parts(k: u64) -> (u32, TableKind, u32) {
    let kind = if k >> 32 & 1 == 0 { TableKind::Namespace } else { TableKind::Identity };
    ((k >> 33) as u32, kind, k as u32)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TableKind {
    Namespace = 0,
    Identity = 1,
}

/// Where a rule set's parts live in the shared arrays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RuleSetLayout {
    /// Port list of the entries allowing any remote.
    pub(crate) base: ListRef,
    /// Namespace and identity keys the shared table holds for this set.
    pub(crate) ns_len: u32,
    pub(crate) id_len: u32,
    /// Lowest rule of the set's address entries (`NONE` without any): a selector
    /// match below it decides without the segment search.
    pub(crate) addr_min_rule: RuleId,
    /// The same for a remote that is a pod: the lowest rule of the address entries
    /// whose set may hold an endpoint address (the builder's conservative bound: at
    /// most the exact one), `NONE` when none can: a pod remote's segment can only
    /// allow by such a rule.
    pub(crate) pod_addr_min_rule: RuleId,
    /// The v4 segment list of every IPv4 pod remote when all the prefixes endpoint
    /// addresses were given in lie in one segment (the usual case: a pod network
    /// inside or outside each ipBlock), so that a pod remote needs no segment search;
    /// `SEARCH` otherwise.
    pub(crate) pod_v4_list: ListRef,
    /// Segment runs (`segment_run`) at `seg_v4_start[v4_start..]` and
    /// `seg_v4_list[v4_start..]`, of `v4_len` segments (and `seg_index_len` index
    /// keys); likewise for v6.
    pub(crate) v4_start: u32,
    pub(crate) v4_len: u32,
    pub(crate) v6_start: u32,
    pub(crate) v6_len: u32,
}

impl RuleSetLayout {
    /// The lowest rule the address segments can allow a remote by (a pod or not): a
    /// selector match at or below it decides without the segment search (as does no
    /// match when it is `NONE`).
    #[inline(always)]
    fn addr_bound(&self, pod_remote: bool) -> RuleId {
        if pod_remote {
            self.pod_addr_min_rule
        } else {
            self.addr_min_rule
        }
    }

    /// Whether `remote`'s segment list is `pod_v4_list`, known without a search: an
    /// IPv4 pod remote while every pod prefix lies in one segment of the set.
    #[inline(always)]
    fn pod_list_known(&self, pod_remote: bool, remote: IpAddr) -> bool {
        pod_remote && remote.is_ipv4() && self.pod_v4_list != SEARCH
    }
}

/// `RuleSetLayout::pod_v4_list` when pod remotes must search the segments.
pub(crate) const SEARCH: ListRef = (NONE, NONE);

/// Sizes of a snapshot, for `palisade stats` and the bench report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotStats {
    pub endpoints: usize,
    pub endpoint_addresses: usize,
    pub nodes: usize,
    pub rules: usize,
    pub rule_sets: usize,
    pub identity_entries: usize,
    pub segments_v4: usize,
    pub segments_v6: usize,
    pub port_lists: usize,
    pub port_entries: usize,
    /// Estimated heap bytes held by the lookup structures and rule names.
    pub memory_bytes: usize,
}

/// An immutable compiled policy snapshot. See the module doc for its layout. The
/// arrays are [`CowVec`]s and the maps chunked the same way, so the snapshots of
/// successive generations share what did not change.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub(crate) generation: u64,
    /// IPv4 address → the endpoint's record (or a node's marker record); packed in a
    /// flattened copy (`v4_endpoints`).
    pub(crate) addr_v4: V4Endpoints,
    /// IPv6 address → endpoint id (or node id with `NODE_BIT`).
    pub(crate) addr_v6: HashMap<u128, u32>,
    pub(crate) endpoints: CowVec<Endpoint>,
    /// Node of each endpoint (`NONE`: none known), read only when the other end is a node.
    pub(crate) endpoint_nodes: CowVec<u32>,
    pub(crate) nodes: usize,
    pub(crate) rule_sets: CowVec<RuleSetLayout>,
    /// Namespace and identity tables of all rule sets: (set, namespace or identity) →
    /// port list (`keyed`: one shared map, or a flattened copy's packed tables).
    pub(crate) keyed: KeyedTables,
    pub(crate) seg_v4_start: CowVec<u32>,
    pub(crate) seg_v4_list: CowVec<ListRef>,
    pub(crate) seg_v6_start: CowVec<u128>,
    pub(crate) seg_v6_list: CowVec<ListRef>,
    /// Port lists, each one run of entries: `port_entries[start..end]` for a `ListRef`.
    pub(crate) port_entries: CowVec<PortEntry>,
    /// `port_keys[i] == port_entries[i].key` (same chunk shift, runs pushed in step, so
    /// same indices): what `list_rule_sorted` counts through.
    pub(crate) port_keys: CowVec<u32>,
    /// Number of distinct port lists (stats).
    pub(crate) port_lists: usize,
    /// UTF-8 bytes of rule names, each name one run (renamed rules append a new one).
    pub(crate) rule_names: CowVec<u8>,
    /// Rule `i`'s name is `rule_names[start..end]` for `name_spans[i] = (start, end)`.
    pub(crate) name_spans: CowVec<(u32, u32)>,
}

/// The two ends of a classification as the address maps resolved them: a pod is its
/// endpoint id and its record (whose own `id` a packed map leaves `NONE`).
#[derive(Clone, Copy)]
pub(crate) enum End<'a> {
    Unknown,
    Node(u32),
    Pod(u32, &'a Endpoint),
}

impl<'a> End<'a> {
    /// The pod's record, if the end is a pod.
    #[inline(always)]
    fn endpoint(self) -> Option<&'a Endpoint> {
        match self {
            End::Pod(_, e) => Some(e),
            _ => None,
        }
    }
}

impl Snapshot {
    /// A snapshot with no endpoints: everything is allowed as not policed.
    pub fn empty(generation: u64) -> Snapshot {
        SnapshotBuilder::new(generation).build()
    }

    /// The name of rule `id` (CN2 scheme, given by the compiler); "" for an unknown id.
    pub fn rule_name(&self, id: RuleId) -> &str {
        match self.name_spans.get(id as usize) {
            Some(&(start, end)) => std::str::from_utf8(&self.rule_names[start as usize..end as usize]).unwrap_or(""),
            None => "",
        }
    }

    pub fn rule_count(&self) -> usize {
        self.name_spans.len()
    }

    pub fn stats(&self) -> SnapshotStats {
        fn vec_bytes<T: Copy>(v: &CowVec<T>) -> usize {
            v.heap_bytes()
        }
        fn map_bytes<K, V>(m: &HashMap<K, V>) -> usize {
            // hashbrown: one control byte per bucket plus the (K, V) slot.
            let buckets = if m.capacity() == 0 {
                0
            } else {
                (m.capacity() * 8 / 7).next_power_of_two()
            };
            buckets * (std::mem::size_of::<(K, V)>() + 1)
        }
        let memory_bytes = self.addr_v4.heap_bytes()
            + map_bytes(&self.addr_v6)
            + vec_bytes(&self.endpoints)
            + vec_bytes(&self.endpoint_nodes)
            + vec_bytes(&self.rule_sets)
            + self.keyed.heap_bytes()
            + vec_bytes(&self.seg_v4_start)
            + vec_bytes(&self.seg_v4_list)
            + vec_bytes(&self.seg_v6_start)
            + vec_bytes(&self.seg_v6_list)
            + vec_bytes(&self.port_entries)
            + vec_bytes(&self.port_keys)
            + vec_bytes(&self.rule_names)
            + vec_bytes(&self.name_spans);
        let endpoint_addresses =
            self.addr_v4.pod_addresses() + self.addr_v6.values().filter(|v| *v & NODE_BIT == 0).count();
        SnapshotStats {
            endpoints: self.endpoints.len(),
            endpoint_addresses,
            nodes: self.nodes,
            rules: self.rule_count(),
            rule_sets: self.rule_sets.len(),
            identity_entries: self.keyed.len(),
            segments_v4: self.seg_v4_start.len(),
            segments_v6: self.seg_v6_start.len(),
            port_lists: self.port_lists,
            port_entries: self.port_entries.len(),
            memory_bytes,
        }
    }

    /// About how many bytes a lookup may touch: the lookup arrays' and maps' sizes from
    /// their lengths (O(1), padding and load factor roughly allowed for).
    #[inline]
    fn lookup_bytes(&self) -> usize {
        use std::mem::size_of;
        self.addr_v4.lookup_bytes()
            + self.addr_v6.len() * 2 * size_of::<(u128, u32)>()
            + self.endpoints.len() * size_of::<Endpoint>()
            + self.rule_sets.len() * size_of::<RuleSetLayout>()
            + self.keyed.lookup_bytes()
            + self.seg_v4_start.len() * (size_of::<u32>() + size_of::<ListRef>())
            + self.seg_v6_start.len() * (size_of::<u128>() + size_of::<ListRef>())
            + self.port_entries.len() * (size_of::<PortEntry>() + size_of::<u32>())
    }

    /// Start loading the address-map slots `end(src)` and `end(dst)` will read (the
    /// first stage of `classify_burst`). Only the v4 map is flat; v6 addresses take
    /// their misses in `end`.
    #[inline(always)]
    fn prefetch_ends(&self, src: IpAddr, dst: IpAddr) {
        for a in [src, dst] {
            if let IpAddr::V4(v) = a {
                self.addr_v4.prefetch(u32::from(v));
            }
        }
    }

    #[inline(always)]
    fn end(&self, a: IpAddr) -> End<'_> {
        match a {
            IpAddr::V4(a) => self.addr_v4.end(u32::from(a)),
            IpAddr::V6(a) => match self.addr_v6.get(&u128::from(a)).copied() {
                None => End::Unknown,
                Some(v) if v & NODE_BIT != 0 => End::Node(v & !NODE_BIT),
                Some(v) => End::Pod(v, &self.endpoints[v as usize]),
            },
        }
    }

    /// The endpoints of a classification whose ends resolved to `s` and `d`, or its
    /// whole verdict when no rule set takes part (self, own node, or no pod at all).
    #[inline(always)]
    fn endpoints_of<'a>(
        &self,
        s: End<'a>,
        d: End<'a>,
    ) -> Result<(Option<&'a Endpoint>, Option<&'a Endpoint>), Verdict> {
        const HOST_OR_SELF: Verdict = Verdict {
            action: Action::Allow,
            reason: Reason::HostOrSelf,
            egress_rule: NO_RULE,
            ingress_rule: NO_RULE,
        };
        match (s, d) {
            (End::Pod(a, _), End::Pod(b, _)) if a == b => Err(HOST_OR_SELF),
            (End::Pod(a, _), End::Node(n)) | (End::Node(n), End::Pod(a, _))
                if self.endpoint_nodes[a as usize] == n =>
            {
                Err(HOST_OR_SELF)
            }
            (End::Pod(_, a), End::Pod(_, b)) => Ok((Some(a), Some(b))),
            (End::Pod(_, a), _) => Ok((Some(a), None)),
            (_, End::Pod(_, b)) => Ok((None, Some(b))),
            _ => Err(Verdict::NOT_POLICED),
        }
    }

    /// The first (lowest) rule of port list `list` allowing `proto`/`port`, or `NONE`;
    /// `STAGED` as in `classify_ends`.
    #[inline(always)]
    fn list_rule<const STAGED: bool>(&self, list: ListRef, proto: u8, port: u16) -> RuleId {
        // Entries are ordered so that the first match is the lowest allowing rule:
        // protocol-specific disjoint ranges first, the any-protocol entry (if any) last.
        let (start, end) = (list.0 as usize, list.1 as usize);
        if end - start > LINEAR_SCAN {
            return self.list_rule_sorted(start, end, proto, port);
        }
        // At most one specific range and the any-protocol entry match, the former with
        // the lower rule: the first match is the lowest matching rule, so the scan takes
        // the minimum over every entry (each a rule or `NONE`) and has no branch on the
        // entries' contents to mispredict.
        let rule_if = |e: &PortEntry, live: bool| {
            let hit = ((e.proto() == proto) | (e.proto() == ANY_PROTO)) & (e.lo() <= port) & (port <= e.hi) & live;
            e.rule | u32::from(!hit).wrapping_neg()
        };
        if !STAGED {
            return self.port_entries[start..end].iter().fold(NONE, |best, e| best.min(rule_if(e, true)));
        }
        // In `classify_burst`'s passes the first entry is read whether the list has one
        // or not (masked when it is empty): whether a list is empty is a coin toss to
        // the branch predictor (34 % of the selector lists at 50k pods), and most of the
        // others hold one entry, so the loop below seldom runs (flat burst at 50k pods
        // 45.3 -> 42.7 ns). A single lookup, whose lines are in cache or not requested,
        // is faster with the plain loop (flat single at 1k pods 26.2 against 28.4-29.0 M/s).
        let first = self.port_entries.get(start).unwrap_or(&FILLER_ENTRY);
        let mut best = rule_if(first, end != start);
        for e in &self.port_entries[start + 1..end] {
            best = best.min(rule_if(e, true));
        }
        best
    }

    /// `list_rule` for the long list `port_entries[start..end]`: lists are sorted by
    /// (protocol, lo) with disjoint ranges per protocol and an any-protocol entry (if
    /// any) last, which decides only what no specific range covers; so the one
    /// candidate is found by a count over the list's keys (`port_keys`, a cache line
    /// or two), and only the candidate entry and, if it misses, the last are read.
    #[inline(never)]
    fn list_rule_sorted(&self, start: usize, end: usize, proto: u8, port: u16) -> RuleId {
        let key = port_key(proto, port);
        let i = count_at_most(&self.port_keys[start..end], key, |&k| k);
        if i > 0 {
            let e = &self.port_entries[start + i - 1];
            if e.proto() == proto && port <= e.hi {
                return e.rule;
            }
        }
        // The last key tells whether there is an any-protocol entry, from the line the
        // count just read.
        match self.port_keys[end - 1] >> 16 {
            k if k == ANY_PROTO as u32 => self.port_entries[end - 1].rule,
            _ => NONE,
        }
    }

    /// The port list the selector part of rule set `set` gives for `peer` (the remote
    /// endpoint, `None` when the remote is not a pod): its identity's, else its
    /// namespace's, else the base list.
    #[inline(always)]
    fn selector_list<const STAGED: bool>(&self, set: u32, layout: &RuleSetLayout, peer: Option<&Endpoint>) -> ListRef {
        let Some(p) = peer else { return layout.base };
        // The namespace's list, else the base: chosen by mask, as whether a rule set
        // names the remote's namespace is a coin toss to the branch predictor (27 % of
        // the lookups at 10k pods × 10k policies); the identity's, which overrides it,
        // is rare (4 %) and predicted. When `classify_burst`'s passes have requested
        // the lines (`STAGED`) and the tables are packed (a row for every rule set),
        // both are read whether the set has entries or not: which sets have none is
        // another coin toss (17-19 % of the isolated ingress sides at 50k pods). A
        // single lookup would pay a miss for it instead, and a probe of the shared map
        // walks a chain.
        let read_all = STAGED && self.keyed.is_packed();
        let fallback =
            if read_all | (layout.ns_len != 0) { self.keyed.namespace_or(set, p.namespace, layout.base) } else { layout.base };
        if read_all | (layout.id_len != 0) {
            if let Some(l) = self.keyed.identity(set, p.identity) {
                return l;
            }
        }
        fallback
    }

    /// The port list of the address segment of `layout` holding `remote`, or `None`
    /// when the set has no address entries of that family. A pod remote's (`pod_remote`)
    /// v4 list may be known without a search (`pod_v4_list`).
    #[inline(always)]
    fn segment_list(&self, layout: &RuleSetLayout, remote: IpAddr, pod_remote: bool) -> Option<ListRef> {
        if layout.pod_list_known(pod_remote, remote) {
            return Some(layout.pod_v4_list);
        }
        match remote {
            IpAddr::V4(a) if layout.v4_len != 0 => Some(self.seg_v4_list[self.segment_v4(layout, u32::from(a))]),
            IpAddr::V6(a) if layout.v6_len != 0 => {
                Some(self.seg_v6_list[segment_pos(&self.seg_v6_start, layout.v6_start, layout.v6_len, u128::from(a))])
            }
            _ => None,
        }
    }

    /// Position in `seg_v4_list` of the v4 segment of `layout` (`v4_len` ≠ 0) holding `a`.
    #[inline(always)]
    pub(crate) fn segment_v4(&self, layout: &RuleSetLayout, a: u32) -> usize {
        segment_pos(&self.seg_v4_start, layout.v4_start, layout.v4_len, a)
    }

    /// One side's decision under rule set `set` (`NONE`: not isolated), given the port
    /// list its selector part found: `(allowed, deciding rule)`. The lowest rule over
    /// that list and the remote's address segment decides; the segment is skipped when
    /// the list already found a rule below every address rule of the set. `STAGED` as
    /// in `classify_ends`.
    #[inline(always)]
    fn finish_side<const STAGED: bool>(
        &self,
        set: u32,
        default: RuleId,
        list: ListRef,
        remote: IpAddr,
        pod_remote: bool,
        proto: u8,
        port: u16,
    ) -> (bool, RuleId) {
        if set == NONE {
            return (true, NO_RULE);
        }
        let layout = &self.rule_sets[set as usize];
        let mut best = self.list_rule::<STAGED>(list, proto, port);
        if best > layout.addr_bound(pod_remote) {
            if let Some(seg) = self.segment_list(layout, remote, pod_remote) {
                best = best.min(self.list_rule::<STAGED>(seg, proto, port));
            }
        }
        match best {
            NONE => (false, default),
            r => (true, r),
        }
    }

    /// One side's decision: `(allowed, deciding rule)`; `STAGED` as in `classify_ends`.
    #[inline(always)]
    fn side<const STAGED: bool>(
        &self,
        set: u32,
        default: RuleId,
        remote: IpAddr,
        peer: Option<&Endpoint>,
        proto: u8,
        port: u16,
    ) -> (bool, RuleId) {
        if set == NONE {
            return (true, NO_RULE);
        }
        let list = self.selector_list::<STAGED>(set, &self.rule_sets[set as usize], peer);
        self.finish_side::<STAGED>(set, default, list, remote, peer.is_some(), proto, port)
    }

    /// `classify` once the address maps have resolved its ends. `STAGED`: whether
    /// `classify_burst`'s passes have requested the lines its tables will read; if not
    /// (a single lookup), both sides' identity words are requested first, so that
    /// their misses overlap.
    #[inline(always)]
    fn classify_ends<const STAGED: bool>(
        &self,
        s_end: End<'_>,
        d_end: End<'_>,
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        dst_port: u16,
    ) -> Verdict {
        let (src_ep, dst_ep) = match self.endpoints_of(s_end, d_end) {
            Ok(eps) => eps,
            Err(v) => return v,
        };
        // Both sides' table probes are independent cache misses on large snapshots:
        // start them together rather than one after the other's branches resolve.
        if let (false, Some(s), Some(d)) = (STAGED, src_ep, dst_ep) {
            if s.egress != NONE {
                self.keyed.prefetch_identity(s.egress, d.identity);
            }
            if d.ingress != NONE {
                self.keyed.prefetch_identity(d.ingress, s.identity);
            }
        }
        let (egress_ok, egress_rule) = match src_ep {
            Some(e) => self.side::<STAGED>(e.egress, e.egress_default, dst, dst_ep, proto, dst_port),
            None => (true, NO_RULE),
        };
        let (ingress_ok, ingress_rule) = match dst_ep {
            Some(e) => self.side::<STAGED>(e.ingress, e.ingress_default, src, src_ep, proto, dst_port),
            None => (true, NO_RULE),
        };
        combine::<STAGED>(egress_ok, egress_rule, ingress_ok, ingress_rule)
    }

    /// `classify_burst` through the staged pipeline whatever the snapshot's size (the
    /// tests check it on small snapshots, which `classify_burst` classifies singly).
    fn classify_staged(&self, probes: &[Probe], out: &mut [Verdict]) {
        for (chunk, out) in probes.chunks(BURST_CHUNK).zip(out.chunks_mut(BURST_CHUNK)) {
            self.classify_chunk(chunk, out);
        }
    }

    /// `classify_burst` for up to `BURST_CHUNK` probes in three passes: request every
    /// probe's address slots; resolve its ends and request, for each side, its peer's
    /// identity word and namespace cell (`prefetch_side`);
    /// then classify each from its ends. The first two passes put a chunk's misses on the lines every
    /// lookup reads in flight together; the rest (port entries, segments) is left to the
    /// core's own speculation, which a pass per step (six stages with their state carried
    /// between them, before 2026-12-07) cost more than it saved.
    #[inline(always)]
    fn classify_chunk(&self, probes: &[Probe], out: &mut [Verdict]) {
        let n = probes.len().min(BURST_CHUNK);
        let (probes, out) = (&probes[..n], &mut out[..n]);
        for p in probes {
            self.prefetch_ends(p.src, p.dst);
        }
        let mut ends: [(End<'_>, End<'_>); BURST_CHUNK] = [(End::Unknown, End::Unknown); BURST_CHUNK];
        for (e, p) in ends.iter_mut().zip(probes) {
            *e = (self.end(p.src), self.end(p.dst));
            // Both sides requested whatever the ends are: whether an end is a pod and
            // whether its side is isolated are coin tosses to the branch predictor
            // (at 50k pods × 10k policies 56 % of the pods are isolated for egress),
            // which the third pass decides again.
            let s = e.0.endpoint().unwrap_or(&NO_ENDPOINT);
            let d = e.1.endpoint().unwrap_or(&NO_ENDPOINT);
            self.prefetch_side(s.egress, d);
            self.prefetch_side(d.ingress, s);
        }
        for ((e, p), v) in ends.iter().zip(probes).zip(out.iter_mut()) {
            *v = self.classify_ends::<true>(e.0, e.1, p.src, p.dst, p.proto, p.dst_port);
        }
    }

    /// Request what one side decided by rule set `set` with remote endpoint `peer`
    /// reads first: the peer's identity word and namespace cell (and the set's layout,
    /// for the shared map). For packed tables without a branch: a side that is not
    /// isolated (`NONE`) or whose remote is not a pod (`NO_ENDPOINT`) requests some line
    /// of the tables, which costs less than a mispredicted branch; whether it is real
    /// is not even computed (at 50k pods × 10k policies the `&&` that computed it was a
    /// branch mispredicted on 44 % of the egress sides). The layouts (48 bytes a rule
    /// set, 217 KiB at 50k pods) stay in L2 and are not requested. A request to the
    /// shared map costs a hash and a line of its slots, so only real sides make one
    /// there.
    #[inline(always)]
    fn prefetch_side(&self, set: u32, peer: &Endpoint) {
        if self.keyed.is_packed() {
            self.keyed.prefetch_identity(set, peer.identity);
            self.keyed.prefetch_namespace(set, peer.namespace);
        } else if set != NONE && peer.identity != NONE {
            prefetch_read(&self.rule_sets[set as usize]);
            self.keyed.prefetch_identity(set, peer.identity);
            self.keyed.prefetch_namespace(set, peer.namespace);
        }
    }
}

/// The verdict of two sides' decisions. `INDEXED`: the action and reason looked up by
/// the two outcomes rather than branched on. In `classify_burst`'s passes (where it
/// is used) whether a side allowed is the last thing a lookup learns, so a mispredicted
/// branch there is resolved late (flat burst at 50k pods × 10k policies 17.1-17.8 ->
/// 18.0-18.6 M/s, three alternations); single lookups keep the branch, which cost
/// them less (flat single at 1k pods 24.3 against 23.6).
#[inline(always)]
fn combine<const INDEXED: bool>(
    egress_ok: bool,
    egress_rule: RuleId,
    ingress_ok: bool,
    ingress_rule: RuleId,
) -> Verdict {
    const OUTCOMES: [(Action, Reason); 3] =
        [(Action::Allow, Reason::Allowed), (Action::Deny, Reason::DeniedByEgress), (Action::Deny, Reason::DeniedByIngress)];
    let (action, reason) = if INDEXED {
        OUTCOMES[usize::from(!egress_ok) | usize::from(egress_ok & !ingress_ok) << 1]
    } else {
        match (egress_ok, ingress_ok) {
            (true, true) => (Action::Allow, Reason::Allowed),
            (false, _) => (Action::Deny, Reason::DeniedByEgress),
            (true, false) => (Action::Deny, Reason::DeniedByIngress),
        }
    };
    Verdict {
        action,
        reason,
        egress_rule,
        ingress_rule,
    }
}

/// How many of `sorted` (ascending by `key`) have a key at most `x`. Binary search
/// down to a window of at most `COUNT_WINDOW` entries, then a count of a window of
/// exactly `COUNT_WINDOW` entries around it (fixed length: unrolled, vectorised for
/// `u32` keys): compares and adds, with no branch to mispredict on a random probe (a
/// plain binary search's selects become branches: LLVM converts loop selects that
/// wait on a load).
#[inline(always)]
fn count_at_most<T, K: Copy + Ord>(sorted: &[T], x: K, key: impl Fn(&T) -> K) -> usize {
    let n = sorted.len();
    if n <= COUNT_WINDOW {
        return sorted.iter().map(|e| u32::from(key(e) <= x)).sum::<u32>() as usize;
    }
    let mut base = 0usize;
    let mut len = n;
    while len > COUNT_WINDOW {
        let half = len / 2;
        // Arithmetic, not a branch: LLVM turns the `if` form into a branch here.
        base += usize::from(key(&sorted[base + half]) <= x) * half;
        len -= half;
    }
    // Everything before `base` is at most `x`, everything from `base + len` above it.
    count_window(sorted, base, x, key)
}

/// `count_at_most(sorted, x)` when everything before `base` is at most `x` and
/// everything from `base + COUNT_WINDOW` above it (`sorted` holds at least
/// `COUNT_WINDOW`): a count of exactly `COUNT_WINDOW` entries from `base`, moved back to
/// stay in bounds (fixed length: unrolled, vectorised for `u32` keys).
#[inline(always)]
fn count_window<T, K: Copy + Ord>(sorted: &[T], base: usize, x: K, key: impl Fn(&T) -> K) -> usize {
    let w = base.min(sorted.len() - COUNT_WINDOW);
    let window: &[T; COUNT_WINDOW] = sorted[w..w + COUNT_WINDOW].try_into().expect("window of COUNT_WINDOW");
    w + window.iter().map(|e| u32::from(key(e) <= x)).sum::<u32>() as usize
}

/// Segment starts per block of a rule set's segment run (see `segment_at`).
const SEG_BLOCK: usize = COUNT_WINDOW;

/// Index keys in front of the `n` (≥ 1) segment starts of a run: the first start of
/// every block of `SEG_BLOCK` but the first (none for a run of one block).
#[inline(always)]
fn seg_index_len(n: usize) -> usize {
    n.saturating_sub(1) / SEG_BLOCK
}

/// A rule set's segment run for `starts` (ascending, the first 0) and their lists:
/// `seg_index_len` index keys, then the starts; the lists get a placeholder under each
/// index key, so that one position indexes both runs.
fn segment_run<S: Copy>(starts: &[S], lists: &[ListRef]) -> (Vec<S>, Vec<ListRef>) {
    let m = seg_index_len(starts.len());
    let mut run: Vec<S> = (1..=m).map(|b| starts[b * SEG_BLOCK]).collect();
    run.extend_from_slice(starts);
    let mut list_run = vec![(0, 0); m];
    list_run.extend_from_slice(lists);
    (run, list_run)
}

/// Position (in the starts' and lists' shared indexing) of the segment holding `x` in
/// the run of `len` (≥ 1) segments at `start` of `starts` (a family's segment starts).
#[inline(always)]
fn segment_pos<S: Copy + Ord>(starts: &CowVec<S>, start: u32, len: u32, x: S) -> usize {
    let (lo, n) = (start as usize, len as usize);
    lo + segment_at(&starts[lo..lo + seg_index_len(n) + n], n, x)
}

/// Position in `run` (a `segment_run` of `n` starts) of the last start at most `x`,
/// i.e. of the segment holding `x`. The index (one cache line of keys up to 272
/// segments) picks the block, and one count of `SEG_BLOCK` starts the segment: two
/// lines where a binary search would touch one per halving.
#[inline(always)]
fn segment_at<S: Copy + Ord>(run: &[S], n: usize, x: S) -> usize {
    let m = seg_index_len(n);
    let (index, starts) = run.split_at(m);
    // Segments start at 0, so the counts below are at least 1.
    if m == 0 {
        return count_at_most(starts, x, |&s| s) - 1;
    }
    let b = count_at_most(index, x, |&s| s);
    // Starts before block `b` are at most `x` (as is the block's first), starts from
    // block `b + 1` on above it (`SEG_BLOCK` is `COUNT_WINDOW`; `n` > `SEG_BLOCK` here).
    m + count_window(starts, b * SEG_BLOCK, x, |&s| s) - 1
}

/// Window `count_at_most` counts through: a cache line of `u32` segment starts.
const COUNT_WINDOW: usize = 16;

impl Classifier for Snapshot {
    fn generation(&self) -> u64 {
        self.generation
    }

    #[inline]
    fn classify(&self, src: IpAddr, dst: IpAddr, proto: u8, dst_port: u16) -> Verdict {
        self.classify_ends::<false>(self.end(src), self.end(dst), src, dst, proto, dst_port)
    }

    /// The chunked passes of the module doc, `BURST_CHUNK` probes at a time.
    fn classify_burst(&self, probes: &[Probe], out: &mut [Verdict]) {
        assert!(
            out.len() >= probes.len(),
            "classify_burst: {} verdict slots for {} probes",
            out.len(),
            probes.len()
        );
        if self.lookup_bytes() <= RESIDENT_BYTES {
            // Everything stays in cache: the stages would cost more than they hide.
            for (p, v) in probes.iter().zip(out.iter_mut()) {
                *v = self.classify(p.src, p.dst, p.proto, p.dst_port);
            }
            return;
        }
        self.classify_staged(probes, out);
    }
}

#[cfg(test)]
mod tests;
