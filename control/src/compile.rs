//! The policy compiler: `Model` → `dataplane::snapshot::Snapshot` through the
//! snapshot builder.
//!
//! Every (rule, peer, port) of every policy direction in force becomes one snapshot
//! rule named in CN2's scheme (`cn2::rule_name`); rule ids follow policy order, so the
//! "first allowing rule" the lookup reports is the first in manifest order.
//!
//! Endpoint pods that no selector can tell apart (same namespace, labels and named
//! ports) share an identity; selector peers resolve, once per distinct peer and through
//! a per-namespace label index, to identity sets, so a rule naming a namespace costs
//! one entry per identity rather than per address. `ipBlock` peers resolve to address
//! sets (which match pods too). Pods selected by the same policies (and, when an
//! ingress rule uses a named port, with the same named ports) share one rule set. The
//! output is deterministic.
//!
//! The compiler's working state ([`Engine`]) owns its data and records what depends on
//! what (peer → policies using it, policy → rule sets containing it, rule set → pods),
//! so `incremental` can keep it and its builder between changes and recompute only
//! what a changed pod or policy touches.

pub mod incremental;
pub mod synthetic;

use crate::cn2::{self, Direction, PeerKind};
use crate::model::{ContainerPort, IpBlock, Labels, Model, Peer, PortRef, Protocol, Selector};
use dataplane::snapshot::{AddressSet, Isolation, PortMatch, Remote, RuleSetEntry, RuleSetId, Snapshot, SnapshotBuilder};
use dataplane::RuleId;
use hashbrown::{Equivalent, HashMap, HashSet};
use std::collections::BTreeMap;

/// Where a snapshot rule came from (indexed by `RuleId`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleOrigin {
    /// `policies[policy]`, `direction` rule `rule`, entry `peer` of `from`/`to` (None:
    /// any peer), entry `port` of `ports` (None: any port).
    Policy { policy: usize, direction: Direction, rule: usize, peer: Option<usize>, port: Option<usize> },
    /// The implicit deny of pods isolated for `direction` in `namespace`.
    Isolation { namespace: usize, direction: Direction },
}

/// A snapshot with the origin of each of its rules.
pub struct Compiled {
    pub snapshot: Snapshot,
    pub origins: Vec<RuleOrigin>,
}

/// Compile `model` into a snapshot stamped `generation`.
pub fn compile(model: &Model, generation: u64) -> Snapshot {
    compile_detailed(model, generation).snapshot
}

/// Like [`compile`], also returning where each rule came from.
pub fn compile_detailed(model: &Model, generation: u64) -> Compiled {
    let mut engine = Engine::build(model, generation, false);
    let origins = std::mem::take(&mut engine.origins);
    Compiled { snapshot: engine.b.build(), origins }
}

const DIRECTIONS: [Direction; 2] = [Direction::Ingress, Direction::Egress];
/// "No index" in the u32 index vectors below.
const NONE: u32 = u32::MAX;

/// What one (rule, peer, port) allows, before the local pod is known.
#[derive(Clone, Debug)]
enum Allows {
    /// The same entries for every selected pod.
    Fixed(Vec<(Remote, PortMatch)>),
    /// An ingress rule with a named port: resolved against each selected (destination) pod.
    NamedLocal { remote: Remote, protocol: Protocol, name: String },
}

#[derive(Clone, Debug)]
struct SubRule {
    rule: RuleId,
    allows: Allows,
}

/// Who depends on a peer's resolution, as (policy, direction index).
type User = (u32, u8);

/// A peer resolved once: its identities (selector peers) and what the snapshot matches.
struct PeerState {
    key: PeerKey,
    identities: Option<Vec<u32>>,
    remote: Remote,
    /// Policy directions whose entries name `remote`.
    users: HashSet<User>,
    /// Policy directions with an egress named port towards this peer (their entries
    /// depend on the peer's identities even when `remote` does not).
    named_users: HashSet<User>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PeerKey(Option<usize>, Peer);
#[derive(Hash)]
struct PeerKeyRef<'a>(Option<usize>, &'a Peer);
impl Equivalent<PeerKey> for PeerKeyRef<'_> {
    fn equivalent(&self, k: &PeerKey) -> bool {
        self.0 == k.0 && *self.1 == k.1
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PostingKey(usize, String, String);
#[derive(Hash)]
struct PostingRef<'a>(usize, &'a str, &'a str);
impl Equivalent<PostingKey> for PostingRef<'_> {
    fn equivalent(&self, k: &PostingKey) -> bool {
        self.0 == k.0 && self.1 == k.1 && self.2 == k.2
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct IdentityKey(usize, Labels, Vec<ContainerPort>);
#[derive(Hash)]
struct IdentityKeyRef<'a>(usize, &'a Labels, &'a [ContainerPort]);
impl Equivalent<IdentityKey> for IdentityKeyRef<'_> {
    fn equivalent(&self, k: &IdentityKey) -> bool {
        self.0 == k.0 && *self.1 == k.1 && self.2 == k.2.as_slice()
    }
}

/// Endpoint pods that every selector treats alike.
struct Identity {
    namespace: usize,
    labels: Labels,
    named_ports: Vec<ContainerPort>,
    /// Member pods (may become empty after changes; an empty identity matches nothing).
    pods: Vec<u32>,
}

/// The rule ids reserved for one policy: `start..start + cap`, of which the first
/// `ingress + egress` are its rules (ingress first) and the rest unnamed placeholders.
#[derive(Clone, Copy, Debug, Default)]
struct Block {
    start: RuleId,
    cap: u32,
    ingress: u32,
    egress: u32,
}

/// Which rule set a pod's direction uses: its direction, selecting policies (in
/// policy order) and, when some of them has an ingress named port, the pod's named
/// ports.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct SetKey {
    dir: u8,
    policies: Vec<u32>,
    sig: Vec<(Protocol, String, u16)>,
}

struct SetState {
    key: SetKey,
    rule_set: RuleSetId,
    pods: Vec<u32>,
    /// False once a policy change made the key's rules stale; no pod uses it then.
    live: bool,
}

/// The compiler's state: the builder and every intermediate result, kept so that a
/// change can be applied by recomputing only what depends on it (`incremental`).
pub(crate) struct Engine {
    b: SnapshotBuilder,
    /// Reserve spare rule ids after each policy (incremental use) or not (one-shot).
    slack: bool,
    /// Origins of every rule (one-shot compiles only).
    origins: Vec<RuleOrigin>,
    /// Rules registered so far (the next rule id).
    next_rule: RuleId,
    identities: Vec<Identity>,
    identity_ids: HashMap<IdentityKey, u32>,
    /// Identity of each pod (`NONE` for non-endpoints).
    pod_identity: Vec<u32>,
    /// Identities of each namespace, in order.
    ns_identities: Vec<Vec<u32>>,
    /// (namespace, label key, label value) → identities, in order.
    postings: HashMap<PostingKey, Vec<u32>>,
    /// (port name, protocol) → (identity, port), for egress named ports.
    named: HashMap<(String, Protocol), Vec<(u32, u16)>>,
    peers: Vec<PeerState>,
    peer_ids: HashMap<PeerKey, u32>,
    /// Egress named-port rules whose remote depends on every identity with that port
    /// (any peer) or on pod addresses (ipBlock peer).
    named_any_users: HashMap<(String, Protocol), HashSet<User>>,
    named_block_users: HashSet<User>,
    blocks: Vec<Block>,
    rules: Vec<[Vec<SubRule>; 2]>,
    /// Policies of each namespace, in slot order.
    ns_policies: Vec<Vec<u32>>,
    isolation: Vec<[Option<RuleId>; 2]>,
    node_ids: Vec<u32>,
    sets: Vec<SetState>,
    set_ids: HashMap<SetKey, u32>,
    /// Rule sets (indices into `sets`) each policy is part of.
    policy_sets: Vec<Vec<u32>>,
    /// Rule set of each pod per direction (`NONE`: not isolated or not an endpoint).
    pod_sets: Vec<[u32; 2]>,
    /// Snapshot endpoint of each pod (`NONE`: never registered).
    pod_endpoint: Vec<u32>,
}

impl Engine {
    /// Compile `model` from scratch. With `slack`, every policy's rule ids are followed
    /// by spare ids so that a later change can keep the policy's place in rule order.
    pub(crate) fn build(model: &Model, generation: u64, slack: bool) -> Engine {
        let mut e = Engine {
            b: SnapshotBuilder::new(generation),
            slack,
            origins: Vec::new(),
            next_rule: 0,
            identities: Vec::new(),
            identity_ids: HashMap::new(),
            pod_identity: vec![NONE; model.pods.len()],
            ns_identities: vec![Vec::new(); model.namespaces.len()],
            postings: HashMap::new(),
            named: HashMap::new(),
            peers: Vec::new(),
            peer_ids: HashMap::new(),
            named_any_users: HashMap::new(),
            named_block_users: HashSet::new(),
            blocks: Vec::new(),
            rules: Vec::new(),
            ns_policies: vec![Vec::new(); model.namespaces.len()],
            isolation: vec![[None, None]; model.namespaces.len()],
            node_ids: Vec::new(),
            sets: Vec::new(),
            set_ids: HashMap::new(),
            policy_sets: Vec::new(),
            pod_sets: vec![[NONE, NONE]; model.pods.len()],
            pod_endpoint: vec![NONE; model.pods.len()],
        };
        // 1. Identities.
        for (i, p) in model.pods.iter().enumerate() {
            if p.is_endpoint() {
                let (id, _) = e.identity_of(model, i);
                e.identities[id as usize].pods.push(i as u32);
                e.pod_identity[i] = id;
            }
        }
        // 2. Rules, in policy order (ingress then egress of each policy).
        for pi in 0..model.policies.len() {
            e.add_policy_block(model, pi);
        }
        // 3. Isolation (default-deny) rules, per namespace and direction in force.
        let mut isolated = vec![[false, false]; model.namespaces.len()];
        for pol in &model.policies {
            for (di, d) in DIRECTIONS.iter().enumerate() {
                isolated[pol.namespace][di] |= pol.isolates(*d);
            }
        }
        for (ni, iso) in isolated.iter().enumerate() {
            for di in 0..2 {
                if iso[di] {
                    e.isolation_rule(model, ni, di);
                }
            }
        }
        // 4. Which policies isolate each identity (so each of its pods), per direction.
        let mut selecting: Vec<[Vec<u32>; 2]> = vec![[Vec::new(), Vec::new()]; e.identities.len()];
        for (pi, pol) in model.policies.iter().enumerate() {
            if !pol.isolates_ingress && !pol.isolates_egress {
                continue;
            }
            for id in e.select(pol.namespace, &pol.pod_selector) {
                for (di, d) in DIRECTIONS.iter().enumerate() {
                    if pol.isolates(*d) {
                        selecting[id as usize][di].push(pi as u32);
                    }
                }
            }
        }
        // 5. Nodes, then endpoints with shared rule sets. Pods of one identity have the
        // same selecting policies and named ports, so the same rule sets: looked up once
        // per identity, at its first pod (which keeps the order sets are registered in).
        e.node_ids = model.nodes.iter().map(|n| e.b.add_node(&n.addrs)).collect();
        let mut identity_sets: Vec<Option<[u32; 2]>> = vec![None; e.identities.len()];
        for (i, pod) in model.pods.iter().enumerate() {
            if pod.is_endpoint() {
                let id = e.pod_identity[i] as usize;
                let sets = match identity_sets[id] {
                    Some(sets) => sets,
                    None => {
                        let sets = e.sets_of(model, i, std::mem::take(&mut selecting[id]));
                        identity_sets[id] = Some(sets);
                        sets
                    }
                };
                e.enter_sets(i, sets);
                e.write_endpoint(model, i, &[]);
            }
        }
        e
    }

    /// A snapshot of the current state, stamped `generation`.
    pub(crate) fn snapshot(&self, generation: u64) -> Snapshot {
        self.b.snapshot(generation)
    }

    /// The identity of endpoint pod `pod`, registering it if new (`true`).
    fn identity_of(&mut self, model: &Model, pod: usize) -> (u32, bool) {
        let p = &model.pods[pod];
        if let Some(&id) = self.identity_ids.get(&IdentityKeyRef(p.namespace, &p.labels, &p.named_ports)) {
            return (id, false);
        }
        let id = self.b.add_identity(p.namespace as u32);
        debug_assert_eq!(id as usize, self.identities.len());
        self.identities.push(Identity { namespace: p.namespace, labels: p.labels.clone(), named_ports: p.named_ports.clone(), pods: Vec::new() });
        self.identity_ids.insert(IdentityKey(p.namespace, p.labels.clone(), p.named_ports.clone()), id);
        self.ns_identities[p.namespace].push(id);
        for (k, v) in &p.labels {
            self.postings.entry(PostingKey(p.namespace, k.clone(), v.clone())).or_default().push(id);
        }
        for cp in &p.named_ports {
            self.named.entry((cp.name.clone(), cp.protocol)).or_default().push((id, cp.port));
        }
        (id, true)
    }

    /// Identities of namespace `ns` matching `sel`, in order.
    fn select(&self, ns: usize, sel: &Selector) -> Vec<u32> {
        let candidates: &[u32] = if sel.match_labels.is_empty() {
            &self.ns_identities[ns]
        } else {
            let mut best: &[u32] = &[];
            for (i, (k, v)) in sel.match_labels.iter().enumerate() {
                let list = self.postings.get(&PostingRef(ns, k, v)).map(|v| v.as_slice()).unwrap_or(&[]);
                if i == 0 || list.len() < best.len() {
                    best = list;
                }
            }
            best
        };
        candidates.iter().copied().filter(|&id| sel.matches(&self.identities[id as usize].labels)).collect()
    }

    /// Namespaces matching `sel`, in order.
    fn matching_namespaces(model: &Model, sel: &Selector) -> Vec<usize> {
        model.namespaces.iter().enumerate().filter(|(_, n)| sel.matches(&n.labels)).map(|(i, _)| i).collect()
    }

    /// Whether selector peer `key` takes the identity `id`.
    fn peer_takes(&self, model: &Model, key: &PeerKey, id: u32) -> bool {
        let ident = &self.identities[id as usize];
        match &key.1 {
            Peer::Pods(sel) => key.0 == Some(ident.namespace) && sel.matches(&ident.labels),
            Peer::Namespaces(ns) => ns.matches(&model.namespaces[ident.namespace].labels),
            Peer::NamespacesAndPods { namespaces, pods } => {
                namespaces.matches(&model.namespaces[ident.namespace].labels) && pods.matches(&ident.labels)
            }
            Peer::IpBlock(_) => false,
        }
    }

    /// Resolve (once) the peer `peer` of a policy of namespace `policy_ns`; its index.
    fn resolve_peer(&mut self, model: &Model, policy_ns: usize, peer: &Peer) -> u32 {
        // Only a bare podSelector depends on the policy's namespace.
        let ns_key = matches!(peer, Peer::Pods(_)).then_some(policy_ns);
        if let Some(&i) = self.peer_ids.get(&PeerKeyRef(ns_key, peer)) {
            return i;
        }
        let (identities, remote) = match peer {
            Peer::IpBlock(b) => (None, Remote::Addresses(self.b.add_address_set(block_set(b)))),
            _ => {
                let ids: Vec<u32> = match peer {
                    Peer::Pods(sel) => self.select(policy_ns, sel),
                    Peer::Namespaces(ns_sel) => Self::matching_namespaces(model, ns_sel)
                        .into_iter()
                        .flat_map(|ns| self.ns_identities[ns].iter().copied())
                        .collect(),
                    Peer::NamespacesAndPods { namespaces, pods } => Self::matching_namespaces(model, namespaces)
                        .into_iter()
                        .flat_map(|ns| self.select(ns, pods))
                        .collect(),
                    Peer::IpBlock(_) => unreachable!(),
                };
                (Some(ids.clone()), self.selector_remote(model, policy_ns, peer, ids))
            }
        };
        let i = self.peers.len() as u32;
        let key = PeerKey(ns_key, peer.clone());
        self.peers.push(PeerState { key: key.clone(), identities, remote, users: HashSet::new(), named_users: HashSet::new() });
        self.peer_ids.insert(key, i);
        i
    }

    /// What the snapshot matches for a selector peer with identities `ids`. A peer that
    /// takes whole namespaces is matched on the remote's namespace: one entry per
    /// namespace instead of one per identity.
    fn selector_remote(&mut self, model: &Model, policy_ns: usize, peer: &Peer, ids: Vec<u32>) -> Remote {
        let whole_namespaces: Option<Vec<u32>> = match peer {
            Peer::Pods(sel) if sel.is_empty() => Some(vec![policy_ns as u32]),
            Peer::Namespaces(ns_sel) => Some(Self::matching_namespaces(model, ns_sel).into_iter().map(|n| n as u32).collect()),
            Peer::NamespacesAndPods { namespaces, pods } if pods.is_empty() => {
                Some(Self::matching_namespaces(model, namespaces).into_iter().map(|n| n as u32).collect())
            }
            _ => None,
        };
        match whole_namespaces {
            Some(ns) => Remote::Namespaces(self.b.add_identity_set(ns)),
            // Private: a new identity joins it in place (`incremental`).
            None => Remote::Identities(self.b.add_private_identity_set(ids)),
        }
    }

    /// Entries for an egress rule with a named port: each destination pod among the
    /// peer's candidates at the port its container declares under that name. Selector
    /// and any peers name identities (all pods of one identity declare the same ports);
    /// an ipBlock peer names the addresses of the pods inside it.
    fn named_remote(&mut self, model: &Model, peer: Option<u32>, protocol: Protocol, name: &str) -> Vec<(Remote, PortMatch)> {
        let proto = protocol.number();
        let ports = |m: u16| PortMatch::Ports { proto, lo: m, hi: m };
        let mut by_port: BTreeMap<u16, Vec<u32>> = BTreeMap::new();
        let selector_ids = peer.and_then(|i| self.peers[i as usize].identities.as_ref());
        if let Some(ids) = selector_ids {
            for &id in ids {
                let ident = &self.identities[id as usize];
                for cp in ident.named_ports.iter().filter(|c| c.name == name && c.protocol == protocol) {
                    by_port.entry(cp.port).or_default().push(id);
                }
            }
        } else {
            for &(id, port) in self.named.get(&(name.to_owned(), protocol)).map(|v| v.as_slice()).unwrap_or(&[]) {
                by_port.entry(port).or_default().push(id);
            }
        }
        let block = match peer.map(|i| &self.peers[i as usize].key.1) {
            Some(Peer::IpBlock(b)) => Some(b.clone()),
            _ => None,
        };
        let mut out = Vec::new();
        for (port, ids) in by_port {
            let remote = match &block {
                Some(block) => {
                    let addrs = ids
                        .iter()
                        .flat_map(|&id| self.identities[id as usize].pods.iter())
                        .flat_map(|&p| model.pods[p as usize].addrs.iter().copied())
                        .filter(|a| block.contains(*a));
                    let set = AddressSet::from_addrs(addrs);
                    if set.is_empty() {
                        continue;
                    }
                    Remote::Addresses(self.b.add_address_set(set))
                }
                None => Remote::Identities(self.b.add_identity_set(ids)),
            };
            out.push((remote, ports(port)));
        }
        out
    }

    /// The (name, allows) of every rule of policy `pi` for direction `d`, in order,
    /// recording which peers they depend on.
    fn policy_rules(&mut self, model: &Model, pi: usize, d: Direction) -> Vec<(String, RuleOrigin, Allows)> {
        let pol = &model.policies[pi];
        let ns_name = &model.namespaces[pol.namespace].name;
        let user: User = (pi as u32, dir_index(d));
        let mut out = Vec::new();
        for (ri, rule) in pol.rules(d).iter().enumerate() {
            let peers: Vec<Option<(usize, &Peer)>> =
                if rule.peers.is_empty() { vec![None] } else { rule.peers.iter().enumerate().map(Some).collect() };
            let named_egress = d == Direction::Egress && rule.ports.iter().any(|p| matches!(p.port, PortRef::Named(_)));
            for peer in peers {
                let kind = match peer.map(|(_, p)| p) {
                    None => PeerKind::Any,
                    Some(Peer::Pods(_)) => PeerKind::PodSelector,
                    Some(Peer::Namespaces(_)) => PeerKind::NamespaceSelector,
                    Some(Peer::NamespacesAndPods { .. }) => PeerKind::NamespaceAndPodSelector,
                    Some(Peer::IpBlock(b)) => PeerKind::IpBlockCidr(&b.cidr_text),
                };
                let resolved = peer.map(|(_, p)| self.resolve_peer(model, pol.namespace, p));
                if let Some(i) = resolved {
                    let state = &mut self.peers[i as usize];
                    state.users.insert(user);
                    if named_egress {
                        state.named_users.insert(user);
                        if matches!(state.key.1, Peer::IpBlock(_)) {
                            self.named_block_users.insert(user);
                        }
                    }
                }
                let remote = resolved.map_or(Remote::Any, |i| self.peers[i as usize].remote);
                let peer_idx = peer.map(|(i, _)| i);
                let ports: Vec<Option<usize>> =
                    if rule.ports.is_empty() { vec![None] } else { (0..rule.ports.len()).map(Some).collect() };
                for port_idx in ports {
                    let name = cn2::rule_name(ns_name, &pol.name, d, ri, kind, peer_idx.unwrap_or(0), port_idx.unwrap_or(0));
                    let origin = RuleOrigin::Policy { policy: pi, direction: d, rule: ri, peer: peer_idx, port: port_idx };
                    let allows = match port_idx.map(|i| &rule.ports[i]) {
                        None => Allows::Fixed(vec![(remote, PortMatch::Any)]),
                        Some(spec) => {
                            let proto = spec.protocol.number();
                            match &spec.port {
                                PortRef::All => Allows::Fixed(vec![(remote, PortMatch::Ports { proto, lo: 0, hi: u16::MAX })]),
                                PortRef::Range(lo, hi) => Allows::Fixed(vec![(remote, PortMatch::Ports { proto, lo: *lo, hi: *hi })]),
                                PortRef::Named(n) if d == Direction::Ingress => {
                                    Allows::NamedLocal { remote, protocol: spec.protocol, name: n.clone() }
                                }
                                PortRef::Named(n) => {
                                    if resolved.is_none() {
                                        self.named_any_users.entry((n.clone(), spec.protocol)).or_default().insert(user);
                                    }
                                    Allows::Fixed(self.named_remote(model, resolved, spec.protocol, n))
                                }
                            }
                        }
                    };
                    out.push((name, origin, allows));
                }
            }
        }
        out
    }

    /// Compile policy `pi` (the next slot) into a new block of rule ids at the end.
    fn add_policy_block(&mut self, model: &Model, pi: usize) {
        debug_assert_eq!(pi, self.blocks.len());
        let ingress = self.policy_rules(model, pi, Direction::Ingress);
        let egress = self.policy_rules(model, pi, Direction::Egress);
        let n = (ingress.len() + egress.len()) as u32;
        let cap = if self.slack { n + n.max(4) } else { n };
        let start = self.next_rule;
        let mut subrules: [Vec<SubRule>; 2] = [Vec::new(), Vec::new()];
        for (di, list) in [ingress, egress].into_iter().enumerate() {
            for (name, origin, allows) in list {
                let rule = self.add_rule(&name);
                if !self.slack {
                    self.origins.push(origin);
                }
                subrules[di].push(SubRule { rule, allows });
            }
        }
        for _ in n..cap {
            self.add_rule("");
        }
        self.blocks.push(Block { start, cap, ingress: subrules[0].len() as u32, egress: subrules[1].len() as u32 });
        self.rules.push(subrules);
        self.policy_sets.push(Vec::new());
        self.ns_policies[model.policies[pi].namespace].push(pi as u32);
    }

    fn add_rule(&mut self, name: &str) -> RuleId {
        let id = self.b.add_rule(name);
        debug_assert_eq!(id, self.next_rule);
        self.next_rule += 1;
        id
    }

    /// The isolation rule of namespace `ns` for direction `di`, registered on first use.
    fn isolation_rule(&mut self, model: &Model, ns: usize, di: usize) -> RuleId {
        if let Some(id) = self.isolation[ns][di] {
            return id;
        }
        let id = self.add_rule(&cn2::isolation_rule_name(&model.namespaces[ns].name, DIRECTIONS[di]));
        if !self.slack {
            self.origins.push(RuleOrigin::Isolation { namespace: ns, direction: DIRECTIONS[di] });
        }
        self.isolation[ns][di] = Some(id);
        id
    }

    /// The rule set for `key`, registered on first use; its index in `sets`.
    fn set_for(&mut self, key: SetKey) -> u32 {
        if let Some(&s) = self.set_ids.get(&key) {
            return s;
        }
        let rule_set = self.build_set(&key);
        let s = self.sets.len() as u32;
        for &p in &key.policies {
            self.policy_sets[p as usize].push(s);
        }
        self.set_ids.insert(key.clone(), s);
        self.sets.push(SetState { key, rule_set, pods: Vec::new(), live: true });
        s
    }

    /// Register the rule set of `key` with the builder, from its policies' current rules.
    fn build_set(&mut self, key: &SetKey) -> RuleSetId {
        let mut entries: Vec<RuleSetEntry> = Vec::new();
        for &p in &key.policies {
            for sub in &self.rules[p as usize][key.dir as usize] {
                match &sub.allows {
                    Allows::Fixed(es) => {
                        entries.extend(es.iter().map(|&(remote, ports)| RuleSetEntry { rule: sub.rule, remote, ports }))
                    }
                    Allows::NamedLocal { remote, protocol, name } => {
                        let proto = protocol.number();
                        entries.extend(key.sig.iter().filter(|(pr, n, _)| pr == protocol && n == name).map(|&(_, _, port)| {
                            RuleSetEntry { rule: sub.rule, remote: *remote, ports: PortMatch::Ports { proto, lo: port, hi: port } }
                        }))
                    }
                }
            }
        }
        self.b.add_rule_set(&entries)
    }

    /// Put endpoint pod `pod` into the rule sets of its selecting policies (per
    /// direction, in policy order).
    fn join_sets(&mut self, model: &Model, pod: usize, selecting: [Vec<u32>; 2]) {
        let sets = self.sets_of(model, pod, selecting);
        self.enter_sets(pod, sets);
    }

    /// The rule sets (indices into `sets`, `NONE` when not isolated) of endpoint pod
    /// `pod` selected by `selecting` (per direction, in policy order), registering new ones.
    fn sets_of(&mut self, model: &Model, pod: usize, selecting: [Vec<u32>; 2]) -> [u32; 2] {
        let p = &model.pods[pod];
        let mut out = [NONE, NONE];
        for (di, policies) in selecting.into_iter().enumerate() {
            if policies.is_empty() {
                continue;
            }
            let named_local =
                di == 0 && policies.iter().any(|&q| self.rules[q as usize][0].iter().any(|s| matches!(s.allows, Allows::NamedLocal { .. })));
            let sig = if named_local {
                p.named_ports.iter().map(|c| (c.protocol, c.name.clone(), c.port)).collect()
            } else {
                Vec::new()
            };
            out[di] = self.set_for(SetKey { dir: di as u8, policies, sig });
        }
        out
    }

    /// Record that pod `pod` uses rule sets `sets` (from [`sets_of`](Self::sets_of)).
    fn enter_sets(&mut self, pod: usize, sets: [u32; 2]) {
        for (di, s) in sets.into_iter().enumerate() {
            if s != NONE {
                self.sets[s as usize].pods.push(pod as u32);
            }
            self.pod_sets[pod][di] = s;
        }
    }

    /// Register or update the snapshot endpoint of pod `pod`; `old_addrs` are the
    /// addresses it was last registered with.
    fn write_endpoint(&mut self, model: &Model, pod: usize, old_addrs: &[std::net::IpAddr]) {
        let p = &model.pods[pod];
        let mut iso = [Isolation::Open, Isolation::Open];
        for di in 0..2 {
            let s = self.pod_sets[pod][di];
            if s != NONE {
                let default_rule = self.isolation[p.namespace][di].expect("isolating policy registered its namespace");
                iso[di] = Isolation::Isolated { rules: self.sets[s as usize].rule_set, default_rule };
            }
        }
        let node = p.node.map(|n| self.node_ids[n]);
        let endpoint = p.is_endpoint();
        let addrs: &[std::net::IpAddr] = if endpoint { &p.addrs } else { &[] };
        let identity = self.pod_identity[pod];
        match self.pod_endpoint[pod] {
            NONE if endpoint => self.pod_endpoint[pod] = self.b.add_endpoint(addrs, identity, node, iso[0], iso[1]),
            NONE => {}
            e => {
                // A pod that stopped being an endpoint keeps a registered identity, unreachable.
                let identity = if identity == NONE { 0 } else { identity };
                self.b.update_endpoint(e, old_addrs, addrs, identity, node, iso[0], iso[1]);
            }
        }
    }
}

fn dir_index(d: Direction) -> u8 {
    match d {
        Direction::Ingress => 0,
        Direction::Egress => 1,
    }
}

/// The addresses of an `ipBlock`: `cidr` minus `except`.
pub fn block_set(b: &IpBlock) -> AddressSet {
    let except: Vec<_> = b.except.iter().map(|(_, n)| *n).collect();
    AddressSet::block(b.cidr, &except)
}
