//! Building a [`Snapshot`]: the small API the control plane's compiler uses. Ids handed
//! out by the builder are only valid for that builder; passing a foreign id panics.
//!
//! A rule set has three parts, each reduced to port lists in which the first match is
//! the lowest allowing rule: a base list (entries allowing any remote), a table keyed by
//! remote identity (selector peers: pods grouped by namespace, labels and named ports),
//! and address segments (ipBlock peers) built by a sweep over the address space: every
//! entry's intervals become start/end events, and at each boundary the active entries
//! are reduced to a port list. Identical rule sets and identical port lists are shared.
//!
//! The builder stays open after [`SnapshotBuilder::snapshot`], and a few calls patch
//! what is already registered (endpoints, rule names, and identities joining the
//! private identity sets of selector peers), so the incremental compiler changes only
//! what a change touches. The snapshot's arrays share their unchanged chunks with the
//! builder's (`cow`), so taking a snapshot costs O(what changed since the last one).

use super::cow::{chunk_shift, CowVec};
use super::flat::FlatMap;
use super::keyed::KeyedTables;
use super::v4_endpoints::V4Endpoints;
use super::{segment_run, table_key, AddressSet, Endpoint, ListRef, FILLER_ENTRY, PortEntry, RuleSetLayout, Snapshot, TableKind, ANY_PROTO, NODE_BIT, NONE, NO_ENDPOINT, SEARCH};
use crate::verdict::RuleId;
use hashbrown::HashMap;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

pub type NodeId = u32;
pub type AddrSetId = u32;
pub type RuleSetId = u32;
/// A class of endpoints that every selector treats alike (chosen by the compiler).
pub type IdentityId = u32;
pub type IdentitySetId = u32;

/// No port list: nothing allowed.
const NO_LIST: ListRef = (0, 0);

/// Which remotes a rule-set entry allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Remote {
    /// Any address at all (a rule without `from`/`to`).
    Any,
    /// Endpoints whose identity is in the set (selector peers).
    Identities(IdentitySetId),
    /// Endpoints whose namespace is in the set (an id set of namespaces: selector
    /// peers that select whole namespaces).
    Namespaces(IdentitySetId),
    /// Addresses in the set, pods or not (ipBlock peers).
    Addresses(AddrSetId),
}

/// How one direction of an endpoint is decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// No policy isolates this direction: everything is allowed, no rule decides.
    Open,
    /// Only what `rules` allows; otherwise denied by `default_rule` (the isolation rule).
    Isolated { rules: RuleSetId, default_rule: RuleId },
}

/// The protocol and destination ports a rule-set entry allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PortMatch {
    /// Every protocol and port (a rule without `ports`).
    Any,
    /// IP protocol `proto` (6, 17, 132) with destination port in `lo..=hi`.
    Ports { proto: u8, lo: u16, hi: u16 },
}

/// One allowing entry of a rule set: traffic to/from `remote` matching `ports` is
/// allowed by `rule`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleSetEntry {
    pub rule: RuleId,
    pub remote: Remote,
    pub ports: PortMatch,
}

/// Collects endpoints, nodes, rules and rule sets, then freezes them into a
/// [`Snapshot`]. Deterministic: the same calls in the same order give the same snapshot.
pub struct SnapshotBuilder {
    snap: Snapshot,
    addr_sets: Vec<AddressSet>,
    addr_set_ids: HashMap<AddressSet, AddrSetId>,
    /// Whether each address set meets a prefix of `pod_prefixes_*`: may hold a pod's
    /// address (conservative: never reset).
    addr_set_near_pods: Vec<bool>,
    /// Rule sets with an entry naming each address set.
    addr_set_users: Vec<Vec<RuleSetId>>,
    /// The `POD_PREFIX_V4` (`_V6`) prefixes of every address ever given to an endpoint
    /// (kept when the endpoint moves: a superset is conservative).
    pod_prefixes_v4: BTreeSet<u32>,
    pod_prefixes_v6: BTreeSet<u128>,
    identity_sets: Vec<Vec<IdentityId>>,
    /// Whether each identity set is private (`add_private_identity_set`): not shared
    /// by content, so it may grow (`identity_joined`).
    private_sets: Vec<bool>,
    /// Rule sets with an entry naming each private identity set.
    private_set_users: HashMap<IdentitySetId, Vec<RuleSetId>>,
    /// Namespace of each identity (`add_identity`).
    identity_namespace: Vec<u32>,
    identity_set_ids: HashMap<Vec<IdentityId>, IdentitySetId>,
    rule_set_ids: HashMap<Arc<[RuleSetEntry]>, RuleSetId>,
    /// Entries of each rule set (normalised as in `rule_set_ids`).
    rule_set_entries: Vec<Arc<[RuleSetEntry]>>,
    list_ids: HashMap<Vec<PortEntry>, u32>,
    /// Where each interned port list lives in `port_entries`.
    list_refs: Vec<ListRef>,
    /// Addresses claimed by a later endpoint after an earlier one (first one wins).
    shadowed: Vec<IpAddr>,
    // Scratch buffers of the sweep, reused between rule sets.
    events: Vec<(u128, u32, bool)>,
    scratch: Vec<PortEntry>,
}

impl SnapshotBuilder {
    pub fn new(generation: u64) -> Self {
        SnapshotBuilder {
            snap: Snapshot {
                generation,
                addr_v4: V4Endpoints::Records(FlatMap::new(NO_ENDPOINT)),
                addr_v6: HashMap::new(),
                endpoints: CowVec::new(NO_ENDPOINT),
                endpoint_nodes: CowVec::new(NONE),
                nodes: 0,
                rule_sets: CowVec::new(RuleSetLayout::default()),
                keyed: KeyedTables::Shared(FlatMap::new((0, 0))),
                seg_v4_start: CowVec::new(0),
                seg_v4_list: CowVec::with_chunk_shift(NO_LIST, chunk_shift::<u32>()),
                seg_v6_start: CowVec::new(0),
                seg_v6_list: CowVec::with_chunk_shift(NO_LIST, chunk_shift::<u128>()),
                port_entries: CowVec::new(FILLER_ENTRY),
                port_keys: CowVec::with_chunk_shift(FILLER_ENTRY.key, chunk_shift::<PortEntry>()),
                port_lists: 0,
                rule_names: CowVec::new(0),
                name_spans: CowVec::new((0, 0)),
            },
            addr_sets: Vec::new(),
            addr_set_ids: HashMap::new(),
            addr_set_near_pods: Vec::new(),
            addr_set_users: Vec::new(),
            pod_prefixes_v4: BTreeSet::new(),
            pod_prefixes_v6: BTreeSet::new(),
            identity_sets: Vec::new(),
            private_sets: Vec::new(),
            private_set_users: HashMap::new(),
            identity_namespace: Vec::new(),
            identity_set_ids: HashMap::new(),
            rule_set_ids: HashMap::new(),
            rule_set_entries: Vec::new(),
            list_ids: HashMap::new(),
            list_refs: Vec::new(),
            shadowed: Vec::new(),
            events: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Register a rule by name; ids are dense and in call order.
    pub fn add_rule(&mut self, name: &str) -> RuleId {
        let span = self.name_span(name);
        self.snap.name_spans.push(span) as RuleId
    }

    /// Store `name`'s bytes as one run; its `(start, end)`.
    fn name_span(&mut self, name: &str) -> (u32, u32) {
        let start = self.snap.rule_names.push_run(name.as_bytes());
        (start as u32, (start + name.len()) as u32)
    }

    /// Register a node with its addresses. Traffic between a pod on this node and
    /// these addresses is always allowed. An address already used by a pod stays the pod's.
    pub fn add_node(&mut self, addrs: &[IpAddr]) -> NodeId {
        let id = self.snap.nodes as u32;
        self.snap.nodes += 1;
        for a in addrs {
            match *a {
                IpAddr::V4(a) => {
                    self.snap.addr_v4.records_mut().get_or_insert(u32::from(a), Endpoint { id: id | NODE_BIT, ..NO_ENDPOINT });
                }
                IpAddr::V6(a) => {
                    self.snap.addr_v6.entry(u128::from(a)).or_insert(id | NODE_BIT);
                }
            }
        }
        id
    }

    /// Register an address set (shared by content).
    pub fn add_address_set(&mut self, set: AddressSet) -> AddrSetId {
        if let Some(&id) = self.addr_set_ids.get(&set) {
            return id;
        }
        let id = self.addr_sets.len() as AddrSetId;
        self.addr_set_near_pods.push(self.near_pods(&set));
        self.addr_set_users.push(Vec::new());
        self.addr_sets.push(set.clone());
        self.addr_set_ids.insert(set, id);
        id
    }

    /// Register an identity: a class of endpoints of `namespace` that every selector
    /// treats alike. Ids are dense and in call order.
    pub fn add_identity(&mut self, namespace: u32) -> IdentityId {
        self.identity_namespace.push(namespace);
        self.identity_namespace.len() as IdentityId - 1
    }

    /// Register a set of identities or namespaces (shared by content).
    pub fn add_identity_set(&mut self, mut ids: Vec<IdentityId>) -> IdentitySetId {
        ids.sort_unstable();
        ids.dedup();
        if let Some(&id) = self.identity_set_ids.get(&ids) {
            return id;
        }
        let id = self.identity_sets.len() as IdentitySetId;
        self.identity_sets.push(ids.clone());
        self.private_sets.push(false);
        self.identity_set_ids.insert(ids, id);
        id
    }

    /// Register a set of identities that is never shared with another registration
    /// of the same content, so that it can grow later ([`identity_joined`](Self::identity_joined)):
    /// what the compiler gives each selector peer.
    pub fn add_private_identity_set(&mut self, mut ids: Vec<IdentityId>) -> IdentitySetId {
        ids.sort_unstable();
        ids.dedup();
        let id = self.identity_sets.len() as IdentitySetId;
        self.identity_sets.push(ids);
        self.private_sets.push(true);
        id
    }

    /// Identity `id` (new, from [`add_identity`](Self::add_identity)) joins the private
    /// identity sets `sets`: every rule set naming one of them gets its identity-table
    /// entry for `id`, exactly what registering the rule set now would give it. Costs
    /// O(rule sets naming `sets` × their entries); nothing else is touched.
    pub fn identity_joined(&mut self, id: IdentityId, sets: &[IdentitySetId]) {
        let mut affected: Vec<RuleSetId> = Vec::new();
        for &s in sets {
            assert!(self.private_sets[s as usize], "identity_joined on a shared identity set");
            let members = &mut self.identity_sets[s as usize];
            if let Err(at) = members.binary_search(&id) {
                members.insert(at, id);
            }
            affected.extend(self.private_set_users.get(&s).map(|v| v.as_slice()).unwrap_or(&[]));
        }
        affected.sort_unstable();
        affected.dedup();
        for set in affected {
            self.patch_identity_entry(set, id);
        }
    }

    /// (Re)compute the identity-table entry of rule set `set` for identity `id`: the
    /// entries allowing any remote, `id`'s namespace, or `id` (as in `add_rule_set`).
    fn patch_identity_entry(&mut self, set: RuleSetId, id: IdentityId) {
        let entries = self.rule_set_entries[set as usize].clone();
        let ns = *self.identity_namespace.get(id as usize).expect("identity registered with add_identity");
        let mut pairs: Vec<(RuleId, u32)> = Vec::new();
        let mut named = false;
        for (i, e) in entries.iter().enumerate() {
            let take = match e.remote {
                Remote::Any => true,
                Remote::Namespaces(s) => self.identity_sets[s as usize].binary_search(&ns).is_ok(),
                Remote::Identities(s) => {
                    let hit = self.identity_sets[s as usize].binary_search(&id).is_ok();
                    named |= hit;
                    hit
                }
                Remote::Addresses(_) => false,
            };
            if take {
                pairs.push((e.rule, i as u32));
            }
        }
        if !named {
            // The lookup falls back to the namespace table, which gives the same list.
            return;
        }
        pairs.sort_unstable();
        let list = self.port_list(&entries, pairs.into_iter());
        let list = self.list_ref(list);
        let key = table_key(set, TableKind::Identity, id);
        if self.snap.keyed.shared_mut().get(key).is_none() {
            let mut layout = self.snap.rule_sets[set as usize];
            layout.id_len += 1;
            self.snap.rule_sets.set(set as usize, layout);
        }
        self.snap.keyed.shared_mut().insert(key, list);
    }

    /// Rule sets registered so far (shared ones once), for the incremental compiler's
    /// compaction threshold.
    pub fn rule_set_count(&self) -> usize {
        self.snap.rule_sets.len()
    }

    /// Register a rule set: the union of its entries. Identical sets (same entries in
    /// any order) share one id.
    pub fn add_rule_set(&mut self, entries: &[RuleSetEntry]) -> RuleSetId {
        let mut key = entries.to_vec();
        // Of entries with the same remote and ports only the lowest rule can decide.
        key.sort_unstable_by_key(|e| (e.remote, e.ports, e.rule));
        key.dedup_by_key(|e| (e.remote, e.ports));
        key.sort_unstable();
        if let Some(&id) = self.rule_set_ids.get(key.as_slice()) {
            return id;
        }
        // Base list: entries allowing any remote.
        let any: Vec<(RuleId, u32)> = key
            .iter()
            .enumerate()
            .filter(|(_, e)| e.remote == Remote::Any)
            .map(|(i, e)| (e.rule, i as u32))
            .collect();
        let base = self.port_list(&key, any.iter().copied());
        let base = self.list_ref(base);
        // Namespace table, each list merged with the base entries, then identity table,
        // each list merged with the base and its namespace's entries: the lookup stops
        // at the first table that has the remote.
        let set_id = self.snap.rule_sets.len() as RuleSetId;
        let (ns_entries, _) = self.key_table(set_id, TableKind::Namespace, &key, &|_| 0, &|_| any.clone(), |r| match r {
            Remote::Namespaces(s) => Some(s),
            _ => None,
        });

        let identity_namespace = std::mem::take(&mut self.identity_namespace);
        let namespace_of = |ident: u32| *identity_namespace.get(ident as usize).expect("identity registered with add_identity");
        let with_namespace = |ns: u32| {
            let mut v = any.clone();
            if let Some(e) = ns_entries.get(&ns) {
                v.extend_from_slice(e);
            }
            v
        };
        let (_, id_len) = self.key_table(set_id, TableKind::Identity, &key, &namespace_of, &with_namespace, |r| match r {
            Remote::Identities(s) => Some(s),
            _ => None,
        });
        self.identity_namespace = identity_namespace;
        // Address segments (only when some entry names addresses).
        // Each family's segments are one run in both arrays (same start index: the
        // two arrays are pushed in step, so they pad alike).
        let has_addresses = key.iter().any(|e| matches!(e.remote, Remote::Addresses(_)));
        let (mut v4_start, mut v4_len, mut v6_start, mut v6_len) = (self.snap.seg_v4_start.len() as u32, 0, self.snap.seg_v6_start.len() as u32, 0);
        if has_addresses {
            // Each run is the segments' index keys, then their starts (`segment_run`).
            let v4 = self.sweep(&key, false);
            let starts: Vec<u32> = v4.iter().map(|&(pos, _)| pos as u32).collect();
            let lists: Vec<ListRef> = v4.iter().map(|&(_, l)| self.list_ref(l)).collect();
            let (starts, lists) = segment_run(&starts, &lists);
            v4_start = self.snap.seg_v4_start.push_run(&starts) as u32;
            let at = self.snap.seg_v4_list.push_run(&lists);
            debug_assert_eq!(at, v4_start as usize);
            v4_len = v4.len() as u32;
            let v6 = self.sweep(&key, true);
            let starts: Vec<u128> = v6.iter().map(|&(pos, _)| pos).collect();
            let lists: Vec<ListRef> = v6.iter().map(|&(_, l)| self.list_ref(l)).collect();
            let (starts, lists) = segment_run(&starts, &lists);
            v6_start = self.snap.seg_v6_start.push_run(&starts) as u32;
            let at = self.snap.seg_v6_list.push_run(&lists);
            debug_assert_eq!(at, v6_start as usize);
            v6_len = v6.len() as u32;
        }
        let id = set_id;
        let addr_min_rule =
            key.iter().filter(|e| matches!(e.remote, Remote::Addresses(_))).map(|e| e.rule).min().unwrap_or(NONE);
        let pod_addr_min_rule = self.pod_addr_min_rule(&key);
        for e in &key {
            if let Remote::Addresses(s) = e.remote {
                let users = &mut self.addr_set_users[s as usize];
                if users.last() != Some(&id) {
                    users.push(id);
                }
            }
        }
        let mut layout = RuleSetLayout {
            base,
            ns_len: ns_entries.len() as u32,
            id_len: id_len as u32,
            addr_min_rule,
            pod_addr_min_rule,
            pod_v4_list: NO_LIST,
            v4_start,
            v4_len,
            v6_start,
            v6_len,
        };
        layout.pod_v4_list = self.pod_v4_list(&layout);
        self.snap.rule_sets.push(layout);
        for e in &key {
            if let Remote::Identities(s) = e.remote {
                if self.private_sets[s as usize] {
                    let users = self.private_set_users.entry(s).or_default();
                    if users.last() != Some(&id) {
                        users.push(id);
                    }
                }
            }
        }
        let key: Arc<[RuleSetEntry]> = key.into();
        self.rule_set_entries.push(key.clone());
        self.rule_set_ids.insert(key, id);
        id
    }

    /// Register a pod endpoint of `identity` (from [`add_identity`](Self::add_identity)).
    /// An address already claimed by an earlier endpoint stays with that endpoint (see
    /// [`shadowed`](Self::shadowed)).
    pub fn add_endpoint(
        &mut self,
        addrs: &[IpAddr],
        identity: IdentityId,
        node: Option<NodeId>,
        ingress: Isolation,
        egress: Isolation,
    ) -> u32 {
        let id = self.snap.endpoints.len() as u32;
        assert!(id < NODE_BIT, "too many endpoints");
        let record = self.endpoint_record(id, identity, ingress, egress);
        self.snap.endpoints.push(record);
        self.snap.endpoint_nodes.push(node.unwrap_or(NONE));
        self.map_addresses(id, addrs);
        id
    }

    /// Replace endpoint `id` (from [`add_endpoint`](Self::add_endpoint)) in place: the
    /// addresses `old_addrs` it was registered with stop resolving to it (a node
    /// address they had shadowed is not restored), `addrs` start to, and its identity,
    /// node and isolation become the given ones. With no addresses the endpoint is
    /// unreachable, which is how the incremental compiler removes a pod.
    #[allow(clippy::too_many_arguments)]
    pub fn update_endpoint(
        &mut self,
        id: u32,
        old_addrs: &[IpAddr],
        addrs: &[IpAddr],
        identity: IdentityId,
        node: Option<NodeId>,
        ingress: Isolation,
        egress: Isolation,
    ) {
        assert!((id as usize) < self.snap.endpoints.len(), "unknown endpoint id");
        let record = self.endpoint_record(id, identity, ingress, egress);
        self.snap.endpoints.set(id as usize, record);
        self.snap.endpoint_nodes.set(id as usize, node.unwrap_or(NONE));
        for a in old_addrs {
            match *a {
                IpAddr::V4(v) if self.snap.addr_v4.records_mut().get(u32::from(v)).map(|e| e.id) == Some(id) => {
                    self.snap.addr_v4.records_mut().remove(u32::from(v));
                }
                IpAddr::V6(v) if self.snap.addr_v6.get(&u128::from(v)) == Some(&id) => {
                    self.snap.addr_v6.remove(&u128::from(v));
                }
                _ => {}
            }
        }
        self.map_addresses(id, addrs);
    }

    fn endpoint_record(&self, id: u32, identity: IdentityId, ingress: Isolation, egress: Isolation) -> Endpoint {
        let namespace = *self.identity_namespace.get(identity as usize).expect("identity registered with add_identity");
        let split = |iso: Isolation| match iso {
            Isolation::Open => (NONE, crate::verdict::NO_RULE),
            Isolation::Isolated { rules, default_rule } => {
                assert!((rules as usize) < self.snap.rule_sets.len(), "unknown rule set id");
                (rules, default_rule)
            }
        };
        let (ingress, ingress_default) = split(ingress);
        let (egress, egress_default) = split(egress);
        Endpoint { id, namespace, identity, ingress, egress, ingress_default, egress_default }
    }

    /// Map `addrs` to endpoint `id` (its record set already): each v4 slot gets a copy
    /// of the record (so every write of a record ends here), each v6 entry the id.
    fn map_addresses(&mut self, id: u32, addrs: &[IpAddr]) {
        let record = self.snap.endpoints[id as usize];
        for a in addrs {
            self.mark_pod_prefix(*a);
            let holder = match *a {
                IpAddr::V4(v) => {
                    let slot = self.snap.addr_v4.records_mut().get_or_insert(u32::from(v), record);
                    let holder = slot.id;
                    if holder & NODE_BIT != 0 || holder == id {
                        *slot = record;
                    }
                    holder
                }
                IpAddr::V6(v) => {
                    let slot = self.snap.addr_v6.entry(u128::from(v)).or_insert(id);
                    let holder = *slot;
                    if holder & NODE_BIT != 0 {
                        *slot = id;
                    }
                    holder
                }
            };
            if holder & NODE_BIT == 0 && holder != id {
                self.shadowed.push(*a);
            }
        }
    }

    /// Whether `set` meets a prefix some endpoint address was given in.
    fn near_pods(&self, set: &AddressSet) -> bool {
        set.v4().iter().any(|&(lo, hi)| self.pod_prefixes_v4.range(lo >> POD_PREFIX_V4..=hi >> POD_PREFIX_V4).next().is_some())
            || set.v6().iter().any(|&(lo, hi)| self.pod_prefixes_v6.range(lo >> POD_PREFIX_V6..=hi >> POD_PREFIX_V6).next().is_some())
    }

    /// The lowest rule of `entries`' address entries whose set may hold a pod address
    /// (`NONE` without any): `RuleSetLayout::pod_addr_min_rule`.
    fn pod_addr_min_rule(&self, entries: &[RuleSetEntry]) -> RuleId {
        let near = |e: &RuleSetEntry| matches!(e.remote, Remote::Addresses(s) if self.addr_set_near_pods[s as usize]);
        entries.iter().filter(|e| near(e)).map(|e| e.rule).min().unwrap_or(NONE)
    }

    /// `RuleSetLayout::pod_v4_list` of `layout` for the current v4 pod prefixes: the list
    /// of the one segment holding them all, else `SEARCH` (no list when no address can
    /// be a pod's yet or the set has no v4 segments: nothing to search then).
    fn pod_v4_list(&self, layout: &RuleSetLayout) -> ListRef {
        let (Some(&first), Some(&last)) = (self.pod_prefixes_v4.first(), self.pod_prefixes_v4.last()) else { return NO_LIST };
        if layout.v4_len == 0 {
            return NO_LIST;
        }
        let (lo, hi) = (first << POD_PREFIX_V4, (last << POD_PREFIX_V4) | (u32::MAX >> (32 - POD_PREFIX_V4)));
        let at = self.snap.segment_v4(layout, lo);
        if self.snap.segment_v4(layout, hi) == at {
            self.snap.seg_v4_list[at]
        } else {
            SEARCH
        }
    }

    /// `a` is (becoming) an endpoint address: when its prefix is new, the address sets
    /// it meets may now hold pods, and the rule sets naming them get their
    /// `pod_addr_min_rule` lowered to match. Rare (pods share a few prefixes), and
    /// then O(address sets) plus the rule sets concerned.
    fn mark_pod_prefix(&mut self, a: IpAddr) {
        let mut widens = false;
        let (lo, hi) = match a {
            IpAddr::V4(v) => {
                let p = u32::from(v) >> POD_PREFIX_V4;
                let (first, last) = (self.pod_prefixes_v4.first().copied(), self.pod_prefixes_v4.last().copied());
                widens = first.map_or(true, |f| p < f) || last.map_or(true, |l| p > l);
                if !self.pod_prefixes_v4.insert(p) {
                    return;
                }
                let lo = u128::from(p << POD_PREFIX_V4);
                (lo, lo | u128::from(u32::MAX >> (32 - POD_PREFIX_V4)))
            }
            IpAddr::V6(v) => {
                let p = u128::from(v) >> POD_PREFIX_V6;
                if !self.pod_prefixes_v6.insert(p) {
                    return;
                }
                let lo = p << POD_PREFIX_V6;
                (lo, lo | (u128::MAX >> (128 - POD_PREFIX_V6)))
            }
        };
        let meets = |set: &AddressSet| match a {
            IpAddr::V4(_) => set.v4().iter().any(|&(l, h)| u128::from(l) <= hi && lo <= u128::from(h)),
            IpAddr::V6(_) => set.v6().iter().any(|&(l, h)| l <= hi && lo <= h),
        };
        let mut affected: Vec<RuleSetId> = Vec::new();
        for (i, set) in self.addr_sets.iter().enumerate() {
            if !self.addr_set_near_pods[i] && meets(set) {
                self.addr_set_near_pods[i] = true;
                affected.extend_from_slice(&self.addr_set_users[i]);
            }
        }
        affected.sort_unstable();
        affected.dedup();
        for set in affected {
            let bound = self.pod_addr_min_rule(&self.rule_set_entries[set as usize]);
            let mut layout = self.snap.rule_sets[set as usize];
            if bound != layout.pod_addr_min_rule {
                layout.pod_addr_min_rule = bound;
                self.snap.rule_sets.set(set as usize, layout);
            }
        }
        if widens {
            // The span of v4 pod prefixes grew: each set's pod list is redone.
            for set in 0..self.snap.rule_sets.len() {
                let mut layout = self.snap.rule_sets[set];
                let list = self.pod_v4_list(&layout);
                if list != layout.pod_v4_list {
                    layout.pod_v4_list = list;
                    self.snap.rule_sets.set(set, layout);
                }
            }
        }
    }

    /// Rename rules, `(id, new name)`; ids keep their place in the rule order. The
    /// incremental compiler reserves ids with placeholder names and renames them when
    /// a policy changes, so a policy's rules keep their priority among its neighbours'.
    /// The new names are appended; the old bytes stay until the next full compile.
    pub fn rename_rules(&mut self, names: &[(RuleId, &str)]) {
        let count = self.snap.name_spans.len();
        assert!(names.iter().all(|(id, _)| (*id as usize) < count), "unknown rule id");
        for &(id, name) in names {
            let old = self.snap.name_spans[id as usize];
            let unchanged = &self.snap.rule_names[old.0 as usize..old.1 as usize] == name.as_bytes();
            if !unchanged {
                let span = self.name_span(name);
                self.snap.name_spans.set(id as usize, span);
            }
        }
    }

    /// A snapshot of everything registered so far, stamped `generation`, leaving the
    /// builder open for more calls (the control plane's incremental compiler keeps one
    /// builder and patches it between snapshots).
    /// Cheap: the arrays and maps share their chunks with the builder's.
    pub fn snapshot(&self, generation: u64) -> Snapshot {
        let mut s = self.snap.clone();
        s.generation = generation;
        s
    }

    /// Addresses that a later endpoint also claimed; the earlier endpoint kept them.
    pub fn shadowed(&self) -> &[IpAddr] {
        &self.shadowed
    }

    pub fn build(mut self) -> Snapshot {
        let s = &mut self.snap;
        s.addr_v4.records_mut().shrink_to_fit();
        s.addr_v6.shrink_to_fit();
        s.keyed.shared_mut().shrink_to_fit();
        self.snap
    }

    /// Enter into the shared table, under (`set`, `kind`, key), the port list of each key
    /// that the entries whose remote `pick` maps to an id set (namespaces or
    /// identities) name, each key's list merged with the `(rule, entry)` pairs `extra`
    /// gives for the key's class (`class`). Returns the namespace table's own pairs of
    /// each key (the identity table's are not needed) and the number of keys.
    fn key_table(
        &mut self,
        set: RuleSetId,
        kind: TableKind,
        entries: &[RuleSetEntry],
        class: &dyn Fn(u32) -> u32,
        extra: &dyn Fn(u32) -> Vec<(RuleId, u32)>,
        pick: impl Fn(Remote) -> Option<IdentitySetId>,
    ) -> (HashMap<u32, Vec<(RuleId, u32)>>, usize) {
        let mut own: HashMap<u32, Vec<(RuleId, u32)>> = HashMap::new();
        let mut pairs: Vec<(u32, RuleId, u32)> = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            if let Some(set) = pick(e.remote) {
                pairs.extend(self.identity_sets[set as usize].iter().map(|&k| (k, e.rule, i as u32)));
            }
        }
        pairs.sort_unstable();
        // Keys of one class named by the same entries get the same list (most keys of a
        // large set do): merged and painted once.
        let mut lists: HashMap<(u32, Vec<(RuleId, u32)>), ListRef> = HashMap::new();
        let mut group: Vec<(RuleId, u32)> = Vec::new();
        let mut batch: Vec<(u64, ListRef)> = Vec::new();
        let mut k = 0;
        while k < pairs.len() {
            let key = pairs[k].0;
            let end = k + pairs[k..].partition_point(|p| p.0 == key);
            group.clear();
            group.extend(pairs[k..end].iter().map(|&(_, rule, i)| (rule, i)));
            k = end;
            let c = class(key);
            let list = match lists.get(&GroupRef(c, &group)) {
                Some(&list) => list,
                None => {
                    let mut merged = extra(c);
                    merged.extend_from_slice(&group);
                    merged.sort_unstable();
                    merged.dedup();
                    let list = self.port_list(entries, merged.into_iter());
                    let list = self.list_ref(list);
                    lists.insert((c, group.clone()), list);
                    list
                }
            };
            batch.push((table_key(set, kind, key), list));
            if kind == TableKind::Namespace {
                own.insert(key, group.clone());
            }
        }
        // The table is large and its slots scattered: fetch a few inserts ahead.
        for (i, &(key, list)) in batch.iter().enumerate() {
            if let Some(&(ahead, _)) = batch.get(i + INSERT_AHEAD) {
                self.snap.keyed.shared_mut().prefetch(ahead);
            }
            self.snap.keyed.shared_mut().insert(key, list);
        }
        (own, batch.len())
    }

    /// Disjoint segments `(start, port list or NONE)` covering one family's whole
    /// address space, for the address entries of one rule set.
    fn sweep(&mut self, entries: &[RuleSetEntry], v6: bool) -> Vec<(u128, u32)> {
        let max: u128 = if v6 { u128::MAX } else { u32::MAX as u128 };
        let mut events = std::mem::take(&mut self.events);
        events.clear();
        for (i, e) in entries.iter().enumerate() {
            let Remote::Addresses(set) = e.remote else { continue };
            let set = &self.addr_sets[set as usize];
            let mut push = |lo: u128, hi: u128| {
                events.push((lo, i as u32, true));
                if hi < max {
                    events.push((hi + 1, i as u32, false));
                }
            };
            if v6 {
                set.v6().iter().for_each(|&(lo, hi)| push(lo, hi));
            } else {
                set.v4().iter().for_each(|&(lo, hi)| push(lo as u128, hi as u128));
            }
        }
        events.sort_unstable();
        let mut active: BTreeSet<(RuleId, u32)> = BTreeSet::new();
        let mut out: Vec<(u128, u32)> = vec![(0, NONE)];
        let mut k = 0;
        while k < events.len() {
            let pos = events[k].0;
            while k < events.len() && events[k].0 == pos {
                let (_, i, start) = events[k];
                let key = (entries[i as usize].rule, i);
                if start {
                    active.insert(key);
                } else {
                    active.remove(&key);
                }
                k += 1;
            }
            let list = self.port_list(entries, active.iter().copied());
            let last = out.last_mut().expect("segments start with one at 0");
            if last.0 == pos {
                last.1 = list;
            } else if last.1 != list {
                out.push((pos, list));
            }
        }
        // Setting the first segment may have made it equal to the second.
        if out.len() > 1 && out[0].1 == out[1].1 {
            out.remove(1);
        }
        self.events = events;
        out
    }

    /// Where port list `list` (or `NONE`) lives in the entry array.
    fn list_ref(&self, list: u32) -> ListRef {
        match list {
            NONE => NO_LIST,
            l => self.list_refs[l as usize],
        }
    }

    /// Interned port list for the active entries (in ascending rule order): each
    /// protocol's ports painted by the lowest rule that allows them, the any-protocol
    /// entry last. `NONE` when there are no entries.
    fn port_list(&mut self, entries: &[RuleSetEntry], active: impl Iterator<Item = (RuleId, u32)>) -> u32 {
        let mut painted = std::mem::take(&mut self.scratch);
        painted.clear();
        let mut any_entry = false;
        for (rule, i) in active {
            any_entry = true;
            match entries[i as usize].ports {
                PortMatch::Any => {
                    // Every later (higher) rule is shadowed by this one.
                    painted.push(PortEntry::new(ANY_PROTO, 0, u16::MAX, rule));
                    break;
                }
                PortMatch::Ports { proto, lo, hi } => paint(&mut painted, proto, lo, hi, rule),
            }
        }
        if !any_entry {
            self.scratch = painted;
            return NONE;
        }
        painted.sort_unstable_by_key(|e| e.key);
        // Merge adjacent ranges decided by the same rule.
        let mut w = 0;
        for r in 0..painted.len() {
            let e = painted[r];
            if w > 0 {
                let p = &mut painted[w - 1];
                if p.proto() == e.proto() && p.rule == e.rule && p.hi as u32 + 1 == e.lo() as u32 {
                    p.hi = e.hi;
                    continue;
                }
            }
            painted[w] = e;
            w += 1;
        }
        painted.truncate(w);
        let id = match self.list_ids.get(painted.as_slice()) {
            Some(&id) => id,
            None => {
                let id = self.list_refs.len() as u32;
                let start = self.snap.port_entries.push_run(&painted) as u32;
                // A new list (interned lists are pushed once): its keys, same indices.
                let keys: Vec<u32> = painted.iter().map(|e| e.key).collect();
                let key_start = self.snap.port_keys.push_run(&keys);
                debug_assert_eq!(key_start, start as usize, "port_keys indexed like port_entries");
                self.list_refs.push((start, start + painted.len() as u32));
                self.snap.port_lists += 1;
                self.list_ids.insert(painted.clone(), id);
                id
            }
        };
        self.scratch = painted;
        id
    }
}

/// Endpoint addresses are tracked by these prefixes (address bits shifted out: /16
/// for both families), coarse enough that a new one is rare, fine enough that the
/// usual private ipBlocks outside the pod network do not meet them.
const POD_PREFIX_V4: u32 = 16;
const POD_PREFIX_V6: u32 = 112;

/// How many inserts ahead `key_table` prefetches the shared table's slots.
const INSERT_AHEAD: usize = 8;

/// A borrowed `(class, group)` key of `key_table`'s list cache (hashes as the owned one).
#[derive(Hash)]
struct GroupRef<'a>(u32, &'a [(RuleId, u32)]);

impl hashbrown::Equivalent<(u32, Vec<(RuleId, u32)>)> for GroupRef<'_> {
    fn equivalent(&self, k: &(u32, Vec<(RuleId, u32)>)) -> bool {
        self.0 == k.0 && self.1 == k.1.as_slice()
    }
}

/// Add the parts of `proto` ports `lo..=hi` not yet covered in `painted` with `rule`.
/// Called in ascending rule order, so what is already painted has a lower rule.
/// Quadratic in the (small) number of painted entries, but allocation-free.
pub(super) fn paint(painted: &mut Vec<PortEntry>, proto: u8, lo: u16, hi: u16, rule: RuleId) {
    let mut cur = lo as u32;
    let hi = hi as u32;
    let n = painted.len();
    while cur <= hi {
        // Skip past a painted range covering `cur`, else paint up to the next one.
        let covering = painted[..n].iter().find(|e| e.proto() == proto && e.lo() as u32 <= cur && cur <= e.hi as u32);
        if let Some(e) = covering {
            cur = e.hi as u32 + 1;
            continue;
        }
        let next = painted[..n]
            .iter()
            .filter(|e| e.proto() == proto && e.lo() as u32 > cur)
            .map(|e| e.lo() as u32)
            .min()
            .unwrap_or(u32::MAX);
        let end = hi.min(next.saturating_sub(1));
        painted.push(PortEntry::new(proto, cur as u16, end as u16, rule));
        cur = end + 1;
    }
}
