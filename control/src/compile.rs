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

pub mod synthetic;

use crate::cn2::{self, Direction, PeerKind};
use crate::model::{ContainerPort, IpBlock, Labels, Model, Peer, PortRef, Protocol, Selector};
use dataplane::snapshot::{AddressSet, Isolation, PortMatch, Remote, RuleSetEntry, Snapshot, SnapshotBuilder};
use dataplane::RuleId;
use hashbrown::HashMap;
use std::collections::BTreeMap;
use std::rc::Rc;

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
    Compiler::new(model, generation).run()
}

const DIRECTIONS: [Direction; 2] = [Direction::Ingress, Direction::Egress];

/// What one (rule, peer, port) allows, before the local pod is known.
enum Allows {
    /// The same entries for every selected pod.
    Fixed(Vec<(Remote, PortMatch)>),
    /// An ingress rule with a named port: resolved against each selected (destination) pod.
    NamedLocal { remote: Remote, protocol: Protocol, name: String },
}

struct SubRule {
    rule: RuleId,
    allows: Allows,
}

/// A peer resolved once: its identities (selector peers) and what the snapshot matches.
struct ResolvedPeer {
    identities: Option<Vec<u32>>,
    remote: Remote,
}

/// Endpoint pods that every selector treats alike.
struct Identity<'m> {
    labels: &'m Labels,
    pods: Vec<u32>,
}

struct Compiler<'m> {
    model: &'m Model,
    b: SnapshotBuilder,
    origins: Vec<RuleOrigin>,
    identities: Vec<Identity<'m>>,
    /// Identity of each pod (`u32::MAX` for non-endpoints).
    pod_identity: Vec<u32>,
    /// Identities of each namespace, in order.
    ns_identities: Vec<Vec<u32>>,
    /// (namespace, label key, label value) → identities, in order.
    postings: HashMap<(usize, &'m str, &'m str), Vec<u32>>,
    peers: HashMap<(Option<usize>, &'m Peer), Rc<ResolvedPeer>>,
    /// (port name, protocol) → (identity, port), for egress named ports.
    named: HashMap<(&'m str, Protocol), Vec<(u32, u16)>>,
}

impl<'m> Compiler<'m> {
    fn new(model: &'m Model, generation: u64) -> Self {
        let mut b = SnapshotBuilder::new(generation);
        let mut identities: Vec<Identity> = Vec::new();
        let mut by_key: HashMap<(usize, &Labels, &[ContainerPort]), u32> = HashMap::new();
        let mut pod_identity = vec![u32::MAX; model.pods.len()];
        let mut ns_identities = vec![Vec::new(); model.namespaces.len()];
        let mut postings: HashMap<(usize, &str, &str), Vec<u32>> = HashMap::new();
        let mut named: HashMap<(&str, Protocol), Vec<(u32, u16)>> = HashMap::new();
        for (i, p) in model.pods.iter().enumerate() {
            if !p.is_endpoint() {
                continue;
            }
            let id = *by_key.entry((p.namespace, &p.labels, &p.named_ports)).or_insert_with(|| {
                let id = b.add_identity(p.namespace as u32);
                debug_assert_eq!(id as usize, identities.len());
                identities.push(Identity { labels: &p.labels, pods: Vec::new() });
                ns_identities[p.namespace].push(id);
                for (k, v) in &p.labels {
                    postings.entry((p.namespace, k, v)).or_default().push(id);
                }
                for cp in &p.named_ports {
                    named.entry((&cp.name, cp.protocol)).or_default().push((id, cp.port));
                }
                id
            });
            identities[id as usize].pods.push(i as u32);
            pod_identity[i] = id;
        }
        Compiler {
            model,
            b,
            origins: Vec::new(),
            identities,
            pod_identity,
            ns_identities,
            postings,
            peers: HashMap::new(),
            named,
        }
    }

    /// Identities of namespace `ns` matching `sel`, in order.
    fn select(&self, ns: usize, sel: &Selector) -> Vec<u32> {
        let candidates: &[u32] = if sel.match_labels.is_empty() {
            &self.ns_identities[ns]
        } else {
            let mut best: &[u32] = &[];
            for (i, (k, v)) in sel.match_labels.iter().enumerate() {
                let list = self.postings.get(&(ns, k.as_str(), v.as_str())).map(|v| v.as_slice()).unwrap_or(&[]);
                if i == 0 || list.len() < best.len() {
                    best = list;
                }
            }
            best
        };
        candidates.iter().copied().filter(|&id| sel.matches(self.identities[id as usize].labels)).collect()
    }

    fn resolve_peer(&mut self, policy_ns: usize, peer: &'m Peer) -> Rc<ResolvedPeer> {
        // Only a bare podSelector depends on the policy's namespace.
        let key = (matches!(peer, Peer::Pods(_)).then_some(policy_ns), peer);
        if let Some(r) = self.peers.get(&key) {
            return r.clone();
        }
        let model = self.model;
        let matching_namespaces = |sel: &Selector| {
            model.namespaces.iter().enumerate().filter(|(_, n)| sel.matches(&n.labels)).map(|(i, _)| i).collect::<Vec<_>>()
        };
        let ids: Vec<u32> = match peer {
            Peer::Pods(sel) => self.select(policy_ns, sel),
            Peer::Namespaces(ns_sel) => matching_namespaces(ns_sel)
                .into_iter()
                .flat_map(|ns| self.ns_identities[ns].iter().copied())
                .collect(),
            Peer::NamespacesAndPods { namespaces, pods } => {
                matching_namespaces(namespaces).into_iter().flat_map(|ns| self.select(ns, pods)).collect()
            }
            Peer::IpBlock(b) => {
                let remote = Remote::Addresses(self.b.add_address_set(block_set(b)));
                let r = Rc::new(ResolvedPeer { identities: None, remote });
                self.peers.insert(key, r.clone());
                return r;
            }
        };
        // A peer that takes whole namespaces is matched on the remote's namespace: one
        // entry per namespace instead of one per identity.
        let whole_namespaces: Option<Vec<u32>> = match peer {
            Peer::Pods(sel) if sel.is_empty() => Some(vec![policy_ns as u32]),
            Peer::Namespaces(ns_sel) => Some(matching_namespaces(ns_sel).into_iter().map(|n| n as u32).collect()),
            Peer::NamespacesAndPods { namespaces, pods } if pods.is_empty() => {
                Some(matching_namespaces(namespaces).into_iter().map(|n| n as u32).collect())
            }
            _ => None,
        };
        let remote = match whole_namespaces {
            Some(ns) => Remote::Namespaces(self.b.add_identity_set(ns)),
            None => Remote::Identities(self.b.add_identity_set(ids.clone())),
        };
        let resolved = ResolvedPeer { remote, identities: Some(ids) };
        let r = Rc::new(resolved);
        self.peers.insert(key, r.clone());
        r
    }

    /// Entries for an egress rule with a named port: each destination pod among the
    /// peer's candidates at the port its container declares under that name. Selector
    /// and any peers name identities (all pods of one identity declare the same ports);
    /// an ipBlock peer names the addresses of the pods inside it.
    fn named_remote(&mut self, peer: Option<&'m Peer>, resolved: Option<&ResolvedPeer>, protocol: Protocol, name: &'m str) -> Vec<(Remote, PortMatch)> {
        let model = self.model;
        let proto = protocol.number();
        let ports = |m: u16| PortMatch::Ports { proto, lo: m, hi: m };
        let mut by_port: BTreeMap<u16, Vec<u32>> = BTreeMap::new();
        if let Some(ids) = resolved.and_then(|r| r.identities.as_ref()) {
            for &id in ids {
                let pod = &model.pods[self.identities[id as usize].pods[0] as usize];
                for port in pod.resolve_port(name, protocol) {
                    by_port.entry(port).or_default().push(id);
                }
            }
        } else {
            for &(id, port) in self.named.get(&(name, protocol)).map(|v| v.as_slice()).unwrap_or(&[]) {
                by_port.entry(port).or_default().push(id);
            }
        }
        let mut out = Vec::new();
        for (port, ids) in by_port {
            let remote = match peer {
                Some(Peer::IpBlock(block)) => {
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
                _ => Remote::Identities(self.b.add_identity_set(ids)),
            };
            out.push((remote, ports(port)));
        }
        out
    }

    /// Rules of policy `pi` for direction `d`, registering their names.
    fn policy_rules(&mut self, pi: usize, d: Direction) -> Vec<SubRule> {
        let model = self.model;
        let pol = &model.policies[pi];
        let ns_name = &model.namespaces[pol.namespace].name;
        let mut out = Vec::new();
        for (ri, rule) in pol.rules(d).iter().enumerate() {
            let peers: Vec<Option<(usize, &Peer)>> =
                if rule.peers.is_empty() { vec![None] } else { rule.peers.iter().enumerate().map(Some).collect() };
            for peer in peers {
                let kind = match peer.map(|(_, p)| p) {
                    None => PeerKind::Any,
                    Some(Peer::Pods(_)) => PeerKind::PodSelector,
                    Some(Peer::Namespaces(_)) => PeerKind::NamespaceSelector,
                    Some(Peer::NamespacesAndPods { .. }) => PeerKind::NamespaceAndPodSelector,
                    Some(Peer::IpBlock(b)) => PeerKind::IpBlockCidr(&b.cidr_text),
                };
                let resolved = peer.map(|(_, p)| self.resolve_peer(pol.namespace, p));
                let remote = resolved.as_ref().map_or(Remote::Any, |r| r.remote);
                let peer_idx = peer.map(|(i, _)| i);
                let ports: Vec<Option<usize>> =
                    if rule.ports.is_empty() { vec![None] } else { (0..rule.ports.len()).map(Some).collect() };
                for port_idx in ports {
                    let name = cn2::rule_name(ns_name, &pol.name, d, ri, kind, peer_idx.unwrap_or(0), port_idx.unwrap_or(0));
                    let id = self.b.add_rule(&name);
                    self.origins.push(RuleOrigin::Policy { policy: pi, direction: d, rule: ri, peer: peer_idx, port: port_idx });
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
                                PortRef::Named(n) => Allows::Fixed(self.named_remote(
                                    peer.map(|(_, p)| p),
                                    resolved.as_deref(),
                                    spec.protocol,
                                    n,
                                )),
                            }
                        }
                    };
                    out.push(SubRule { rule: id, allows });
                }
            }
        }
        out
    }

    fn run(mut self) -> Compiled {
        let model = self.model;
        // 1. Rules, in policy order (ingress then egress of each policy).
        let mut rules: Vec<[Vec<SubRule>; 2]> = Vec::with_capacity(model.policies.len());
        for pi in 0..model.policies.len() {
            let ingress = self.policy_rules(pi, Direction::Ingress);
            let egress = self.policy_rules(pi, Direction::Egress);
            rules.push([ingress, egress]);
        }
        // 2. Isolation (default-deny) rules, per namespace and direction in force.
        let mut isolation: Vec<[Option<RuleId>; 2]> = vec![[None, None]; model.namespaces.len()];
        for pol in &model.policies {
            for (di, d) in DIRECTIONS.iter().enumerate() {
                if pol.isolates(*d) {
                    isolation[pol.namespace][di] = Some(0);
                }
            }
        }
        for (ni, ns) in model.namespaces.iter().enumerate() {
            for (di, d) in DIRECTIONS.iter().enumerate() {
                if isolation[ni][di].is_some() {
                    let id = self.b.add_rule(&cn2::isolation_rule_name(&ns.name, *d));
                    self.origins.push(RuleOrigin::Isolation { namespace: ni, direction: *d });
                    isolation[ni][di] = Some(id);
                }
            }
        }
        // 3. Which policies isolate each endpoint pod, per direction.
        let mut selecting: Vec<[Vec<u32>; 2]> = vec![[Vec::new(), Vec::new()]; model.pods.len()];
        for (pi, pol) in model.policies.iter().enumerate() {
            if !pol.isolates_ingress && !pol.isolates_egress {
                continue;
            }
            for id in self.select(pol.namespace, &pol.pod_selector) {
                for &p in &self.identities[id as usize].pods {
                    for (di, d) in DIRECTIONS.iter().enumerate() {
                        if pol.isolates(*d) {
                            selecting[p as usize][di].push(pi as u32);
                        }
                    }
                }
            }
        }
        let named_local: Vec<bool> =
            rules.iter().map(|r| r[0].iter().any(|s| matches!(s.allows, Allows::NamedLocal { .. }))).collect();
        // 4. Node ids, then endpoints with shared rule sets.
        let node_ids: Vec<u32> = model.nodes.iter().map(|n| self.b.add_node(&n.addrs)).collect();
        let mut sets: HashMap<(usize, Vec<u32>, Vec<(Protocol, &str, u16)>), u32> = HashMap::new();
        let mut entries: Vec<RuleSetEntry> = Vec::new();
        for (i, pod) in model.pods.iter().enumerate() {
            if !pod.is_endpoint() {
                continue;
            }
            let mut iso = [Isolation::Open, Isolation::Open];
            for di in 0..2 {
                let policies = &selecting[i][di];
                if policies.is_empty() {
                    continue;
                }
                let sig: Vec<(Protocol, &str, u16)> = if di == 0 && policies.iter().any(|&p| named_local[p as usize]) {
                    pod.named_ports.iter().map(|c| (c.protocol, c.name.as_str(), c.port)).collect()
                } else {
                    Vec::new()
                };
                let key = (di, policies.clone(), sig);
                let set = match sets.get(&key) {
                    Some(&s) => s,
                    None => {
                        entries.clear();
                        for &p in policies {
                            for sub in &rules[p as usize][di] {
                                match &sub.allows {
                                    Allows::Fixed(es) => entries.extend(
                                        es.iter().map(|&(remote, ports)| RuleSetEntry { rule: sub.rule, remote, ports }),
                                    ),
                                    Allows::NamedLocal { remote, protocol, name } => {
                                        let proto = protocol.number();
                                        entries.extend(pod.resolve_port(name, *protocol).map(|port| RuleSetEntry {
                                            rule: sub.rule,
                                            remote: *remote,
                                            ports: PortMatch::Ports { proto, lo: port, hi: port },
                                        }))
                                    }
                                }
                            }
                        }
                        let s = self.b.add_rule_set(&entries);
                        sets.insert(key, s);
                        s
                    }
                };
                let default_rule = isolation[pod.namespace][di].expect("isolating policy registered its namespace");
                iso[di] = Isolation::Isolated { rules: set, default_rule };
            }
            let node = pod.node.map(|n| node_ids[n]);
            self.b.add_endpoint(&pod.addrs, self.pod_identity[i], node, iso[0], iso[1]);
        }
        Compiled { snapshot: self.b.build(), origins: self.origins }
    }
}

/// The addresses of an `ipBlock`: `cidr` minus `except`.
pub fn block_set(b: &IpBlock) -> AddressSet {
    let except: Vec<_> = b.except.iter().map(|(_, n)| *n).collect();
    AddressSet::block(b.cidr, &except)
}
