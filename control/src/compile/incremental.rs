//! Incremental compilation: keep the compiler's state ([`Engine`]) and its snapshot
//! builder between changes, and apply a change (objects added, modified or deleted,
//! from the kubectl watch stream or a changed manifest file) by recomputing only what
//! it touches:
//!
//! - a pod: its identity (a new identity joins the selector peers that take it, and the
//!   rules naming those peers are recomputed), the policies selecting it, its rule
//!   sets and its endpoint;
//! - a policy: its rules (renamed in place inside the block of rule ids reserved for
//!   it, so that it keeps its priority among its namespace's policies), and the rule
//!   sets and endpoints of the pods it selected or selects now.
//!
//! Verdicts (action, reason and the names of the deciding rules) are exactly those of
//! a full compile of the same cluster (`tests/incremental.rs` checks this on random
//! change sequences). Changes this path does not handle recompile the whole cluster:
//! Namespace and Node changes, objects in a namespace not seen before, two endpoints
//! claiming one address, a policy that outgrows its reserved ids or lands between two
//! policies with no spare ids between them, and, every so often, to drop the rule sets
//! earlier changes left unused. A change that fails validation applies nothing.

use super::{Engine, NONE};
use crate::cluster::{Cluster, Source, Sourced};
use crate::cn2::Direction;
use crate::model::{Model, Policy, Selector};
use crate::stream::{Kind, Object};
use dataplane::snapshot::Snapshot;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;

/// An object's identity: kind, namespace (`""` for cluster-scoped kinds) and name.
pub type ObjectKey = (Kind, String, String);

/// One change to the cluster.
#[derive(Clone, Debug)]
pub enum ObjectChange {
    /// Added or modified, with where it came from.
    Upsert(Object, Source),
    Delete(ObjectKey),
}

/// How objects are ordered, which decides which rule a lookup reports first: the
/// order a full load would give them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// By namespace and name (the kubectl watch stream's store).
    ByKey,
    /// By file path, then document (a manifest directory).
    BySource,
}

/// What [`Incremental::apply`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Objects that really changed (after dropping no-op events).
    pub changed: usize,
    /// Whether the whole cluster was recompiled (and why not incrementally).
    pub full: Option<FullReason>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FullReason {
    NamespaceOrNode,
    NewNamespace,
    AddressConflict,
    PolicyOrder,
    Compaction,
}

type OrderKey = (PathBuf, usize, String, String);

/// One object change as [`Incremental::apply`] committed it: what a copy of the
/// cluster in force needs to stay in step ([`apply_committed`]).
#[derive(Clone, Debug)]
pub struct Committed {
    key: ObjectKey,
    /// Where the object came from before the change (`None`: it did not exist).
    old: Option<Source>,
    /// The object after the change (`None`: deleted).
    new: Option<(Object, Source)>,
}

struct Stored {
    object: Object,
    source: Source,
}

/// A compiled cluster that takes changes.
pub struct Incremental {
    order: Order,
    objects: BTreeMap<ObjectKey, Stored>,
    model: Model,
    engine: Engine,
    pod_slots: HashMap<(String, String), usize>,
    policy_slots: HashMap<(String, String), usize>,
    /// Per namespace index: order key → policy slot (deleted policies stay, keeping
    /// their ids' place).
    policy_order: HashMap<usize, BTreeMap<OrderKey, usize>>,
    policy_keys: Vec<OrderKey>,
    /// Endpoint pods claiming each address.
    claims: HashMap<IpAddr, u32>,
    node_addrs: HashSet<IpAddr>,
    /// Changes committed since the last `take_committed`, when recording.
    journal: Option<Vec<Committed>>,
    /// Rule sets (the engine's, the builder's) right after the last full compile
    /// (compaction threshold: changes leave replaced rule sets behind).
    cold_sets: (usize, usize),
}

fn key_of(object: &Object) -> ObjectKey {
    let meta = object.meta();
    (object.kind(), meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
}

/// Whether each kind of `cluster` is listed in the order `Incremental::cluster_of`
/// lists it: by key, or by source and then key.
fn in_order(cluster: &Cluster, order: Order) -> bool {
    type Meta = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    fn rank<T: k8s_openapi::Metadata<Ty = Meta>>(o: &Sourced<T>, order: Order) -> (Option<(&PathBuf, usize)>, &str, &str) {
        let m = o.object.metadata();
        let source = (order == Order::BySource).then_some((&o.source.file, o.source.doc));
        (source, m.namespace.as_deref().unwrap_or_default(), m.name.as_deref().unwrap_or_default())
    }
    fn sorted<T: k8s_openapi::Metadata<Ty = Meta>>(v: &[Sourced<T>], order: Order) -> bool {
        v.windows(2).all(|w| rank(&w[0], order) < rank(&w[1], order))
    }
    sorted(&cluster.namespaces, order) && sorted(&cluster.nodes, order) && sorted(&cluster.pods, order) && sorted(&cluster.policies, order)
}

/// Namespace and name as the model sees them (namespaced kinds default to `default`).
fn ns_name(key: &ObjectKey) -> (String, String) {
    let ns = if key.1.is_empty() { "default".to_owned() } else { key.1.clone() };
    (ns, key.2.clone())
}

impl Incremental {
    /// Validate and compile `cluster` whole.
    pub fn new(cluster: Cluster, order: Order) -> Result<Incremental, String> {
        crate::validate::validate(&cluster).map_err(|e| e.to_string())?;
        // A cluster already in the order `cluster_of` gives (as a loaded manifest
        // directory is) compiles as it is, without first copying every object.
        let compiled = if in_order(&cluster, order) { Some(Self::compiled(&cluster, order, BTreeMap::new())?) } else { None };
        let mut objects = BTreeMap::new();
        let mut put = |object: Object, source: Source| {
            objects.insert(key_of(&object), Stored { object, source });
        };
        let Cluster { namespaces, pods, nodes, policies } = cluster;
        namespaces.into_iter().for_each(|o| put(Object::Namespace(o.object), o.source));
        nodes.into_iter().for_each(|o| put(Object::Node(o.object), o.source));
        pods.into_iter().for_each(|o| put(Object::Pod(o.object), o.source));
        policies.into_iter().for_each(|o| put(Object::NetworkPolicy(o.object), o.source));
        match compiled {
            Some(mut inc) => {
                inc.objects = objects;
                Ok(inc)
            }
            None => Self::from_objects(objects, order),
        }
    }

    fn from_objects(objects: BTreeMap<ObjectKey, Stored>, order: Order) -> Result<Incremental, String> {
        let cluster = Self::cluster_of(&objects, order);
        Self::compiled(&cluster, order, objects)
    }

    /// Compile `cluster`, listed as `cluster_of` lists it, with `objects` the objects in force.
    fn compiled(cluster: &Cluster, order: Order, objects: BTreeMap<ObjectKey, Stored>) -> Result<Incremental, String> {
        // Every object here passed validation (uniqueness holds by key).
        let model = Model::resolve(cluster).map_err(|e| e.to_string())?;
        let engine = Engine::build(&model, 0, true);
        let mut inc = Incremental {
            order,
            objects,
            pod_slots: HashMap::new(),
            policy_slots: HashMap::new(),
            policy_order: HashMap::new(),
            policy_keys: Vec::new(),
            claims: HashMap::new(),
            node_addrs: model.nodes.iter().flat_map(|n| n.addrs.iter().copied()).collect(),
            cold_sets: (engine.sets.len(), engine.b.rule_set_count()),
            journal: None,
            model,
            engine,
        };
        let key = |kind, meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| -> ObjectKey {
            (kind, meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
        };
        for (slot, p) in cluster.pods.iter().enumerate() {
            inc.pod_slots.insert(ns_name(&key(Kind::Pod, &p.object.metadata)), slot);
        }
        for p in inc.model.pods.iter().filter(|p| p.is_endpoint()) {
            for a in &p.addrs {
                *inc.claims.entry(*a).or_default() += 1;
            }
        }
        for (slot, p) in cluster.policies.iter().enumerate() {
            let key = key(Kind::NetworkPolicy, &p.object.metadata);
            let okey = inc.order_key(&key, &p.source);
            inc.policy_order.entry(inc.model.policies[slot].namespace).or_default().insert(okey.clone(), slot);
            inc.policy_keys.push(okey);
            inc.policy_slots.insert(ns_name(&key), slot);
        }
        Ok(inc)
    }

    fn order_key(&self, key: &ObjectKey, source: &Source) -> OrderKey {
        match self.order {
            Order::ByKey => (PathBuf::new(), 0, key.1.clone(), key.2.clone()),
            Order::BySource => (source.file.clone(), source.doc, String::new(), String::new()),
        }
    }

    /// The objects in force, in the order a full load would give them.
    fn cluster_of(objects: &BTreeMap<ObjectKey, Stored>, order: Order) -> Cluster {
        let mut c = Cluster::default();
        for s in objects.values() {
            s.object.push_into(&mut c, s.source.clone());
        }
        if order == Order::BySource {
            fn by_source<T>(v: &mut [Sourced<T>]) {
                v.sort_by(|a, b| (&a.source.file, a.source.doc).cmp(&(&b.source.file, b.source.doc)));
            }
            by_source(&mut c.namespaces);
            by_source(&mut c.nodes);
            by_source(&mut c.pods);
            by_source(&mut c.policies);
        }
        c
    }

    /// The cluster in force (a copy).
    pub fn cluster(&self) -> Cluster {
        Self::cluster_of(&self.objects, self.order)
    }

    pub fn order(&self) -> Order {
        self.order
    }

    /// Record (or stop recording) the changes `apply` commits, for [`take_committed`](Self::take_committed).
    pub fn record_committed(&mut self, on: bool) {
        self.journal = on.then(Vec::new);
    }

    /// The changes committed since the last call (in order), when recording.
    pub fn take_committed(&mut self) -> Vec<Committed> {
        self.journal.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The snapshot of the cluster in force, stamped `generation`.
    pub fn snapshot(&self, generation: u64) -> Snapshot {
        self.engine.snapshot(generation)
    }

    /// Apply changes (later changes to the same object win). On error nothing is
    /// applied and the message names file, object and field.
    pub fn apply(&mut self, changes: impl IntoIterator<Item = ObjectChange>) -> Result<Applied, String> {
        // Last change per object; drop those that change nothing.
        let mut latest: BTreeMap<ObjectKey, Option<(Object, Source)>> = BTreeMap::new();
        for c in changes {
            match c {
                ObjectChange::Upsert(o, s) => latest.insert(key_of(&o), Some((o, s))),
                ObjectChange::Delete(k) => latest.insert(k, None),
            };
        }
        latest.retain(|k, v| match (v, self.objects.get(k)) {
            (None, None) => false,
            (Some((o, s)), Some(old)) => !(old.object == *o && self.order_key(k, s) == self.order_key(k, &old.source)),
            _ => true,
        });
        let changed = latest.len();
        if latest.is_empty() {
            return Ok(Applied { changed, full: None });
        }
        // Validate what changed, on its own (uniqueness holds by key).
        let mut upserts = Cluster::default();
        for (o, s) in latest.values().flatten() {
            o.push_into(&mut upserts, s.clone());
        }
        crate::validate::validate(&upserts).map_err(|e| e.to_string())?;
        let committed: Option<Vec<Committed>> = self.journal.is_some().then(|| {
            latest
                .iter()
                .map(|(k, v)| Committed { key: k.clone(), old: self.objects.get(k).map(|s| s.source.clone()), new: v.clone() })
                .collect()
        });
        let result = self.apply_checked(latest, upserts);
        if let (Ok(_), Some(committed)) = (&result, committed) {
            self.journal.get_or_insert_with(Vec::new).extend(committed);
        }
        result.map(|full| Applied { changed, full })
    }

    /// `apply` after validation: which full compile it took, if any.
    fn apply_checked(
        &mut self,
        latest: BTreeMap<ObjectKey, Option<(Object, Source)>>,
        upserts: Cluster,
    ) -> Result<Option<FullReason>, String> {
        match self.plan(&latest, &upserts)? {
            Ok(plan) => {
                if !self.commit(latest, plan) {
                    return Ok(Some(FullReason::PolicyOrder));
                }
            }
            Err(reason) => {
                self.full(latest)?;
                return Ok(Some(reason));
            }
        }
        let grown = |now: usize, cold: usize| now > 2 * cold + 1024;
        if grown(self.engine.sets.len(), self.cold_sets.0) || grown(self.engine.b.rule_set_count(), self.cold_sets.1) {
            // Cannot fail: every object in force passed validation.
            let _ = self.full(BTreeMap::new());
            return Ok(Some(FullReason::Compaction));
        }
        Ok(None)
    }

    /// Recompile everything with `changes` applied; on error nothing changes.
    fn full(&mut self, changes: BTreeMap<ObjectKey, Option<(Object, Source)>>) -> Result<(), String> {
        let mut objects: BTreeMap<ObjectKey, Stored> =
            self.objects.iter().map(|(k, s)| (k.clone(), Stored { object: s.object.clone(), source: s.source.clone() })).collect();
        for (k, v) in changes {
            match v {
                Some((object, source)) => objects.insert(k, Stored { object, source }),
                None => objects.remove(&k),
            };
        }
        let fresh = Self::from_objects(objects, self.order)?;
        *self = Incremental { journal: self.journal.take(), ..fresh };
        Ok(())
    }

    /// Resolve every change and check that the incremental path can take it, without
    /// changing anything: `Ok(Err(reason))` when only a full compile can.
    fn plan(
        &mut self,
        latest: &BTreeMap<ObjectKey, Option<(Object, Source)>>,
        upserts: &Cluster,
    ) -> Result<Result<Plan, FullReason>, String> {
        if latest.keys().any(|k| matches!(k.0, Kind::Namespace | Kind::Node)) {
            return Ok(Err(FullReason::NamespaceOrNode));
        }
        let mut plan = Plan::default();
        for pod in &upserts.pods {
            match self.model.resolve_pod_update(pod) {
                None => return Ok(Err(FullReason::NewNamespace)),
                Some(r) => plan.pods.push((ns_name(&key_of(&Object::Pod(pod.object.clone()))), Some(r.map_err(|e| e.to_string())?))),
            }
        }
        for (k, v) in latest {
            if k.0 == Kind::Pod && v.is_none() {
                plan.pods.push((ns_name(k), None));
            }
        }
        // Addresses: each endpoint address claimed once, never a node's.
        // (An address passed from one pod to another in one batch is a conflict too:
        // which pod holds it would depend on the order the changes are applied in.)
        let mut delta: HashMap<IpAddr, i64> = HashMap::new();
        let mut touched_by: HashMap<IpAddr, &(String, String)> = HashMap::new();
        for (key, new) in &plan.pods {
            let old_addrs = self.pod_slots.get(key).map(|&s| &self.model.pods[s]).filter(|p| p.is_endpoint()).map(|p| &p.addrs);
            let new_addrs = new.as_ref().filter(|p| p.is_endpoint()).map(|p| &p.addrs);
            for (addrs, d) in [(old_addrs, -1), (new_addrs, 1)] {
                for a in addrs.into_iter().flatten() {
                    *delta.entry(*a).or_default() += d;
                    if *touched_by.entry(*a).or_insert(key) != key {
                        return Ok(Err(FullReason::AddressConflict));
                    }
                }
            }
        }
        for (a, d) in &delta {
            let before = self.claims.get(a).copied().unwrap_or(0) as i64;
            if before > 1 || before + d > 1 || (before + d > 0 && self.node_addrs.contains(a)) {
                return Ok(Err(FullReason::AddressConflict));
            }
        }
        plan.claims = delta;
        // In load order, so that new policies taking fresh ids at the end take them in order.
        let mut policies: Vec<_> = upserts
            .policies
            .iter()
            .map(|pol| {
                let key = key_of(&Object::NetworkPolicy(pol.object.clone()));
                (self.order_key(&key, &pol.source), key, pol)
            })
            .collect();
        policies.sort_by(|a, b| a.0.cmp(&b.0));
        for (okey, key, pol) in policies {
            let p = match self.model.resolve_policy_update(pol) {
                None => return Ok(Err(FullReason::NewNamespace)),
                Some(r) => r.map_err(|e| e.to_string())?,
            };
            if let Some(&slot) = self.policy_slots.get(&ns_name(&key)) {
                if self.policy_keys[slot] != okey {
                    return Ok(Err(FullReason::PolicyOrder));
                }
            } else {
                // A new policy: after every policy of its namespace (fresh ids at the
                // end), or inside its predecessor's spare ids.
                let order = self.policy_order.get(&p.namespace);
                let succ = order.and_then(|o| o.range(okey.clone()..).next()).is_some();
                let pred = order.and_then(|o| o.range(..okey.clone()).next_back()).map(|(_, &s)| s);
                match (pred, succ) {
                    (_, false) => {}
                    (Some(pred), true) if plan.carved.insert(pred) => {}
                    _ => return Ok(Err(FullReason::PolicyOrder)),
                }
                plan.new_policy_place.push((ns_name(&key), if succ { pred } else { None }));
            }
            plan.policies.push((ns_name(&key), okey, Some(p)));
        }
        for (k, v) in latest {
            if k.0 == Kind::NetworkPolicy && v.is_none() {
                plan.policies.push((ns_name(k), (PathBuf::new(), 0, String::new(), String::new()), None));
            }
        }
        Ok(Ok(plan))
    }

    /// Apply a plan; false when it had to recompile whole after all (a policy
    /// outgrew its reserved ids).
    fn commit(&mut self, latest: BTreeMap<ObjectKey, Option<(Object, Source)>>, plan: Plan) -> bool {
        for (k, v) in latest {
            match v {
                Some((object, source)) => self.objects.insert(k, Stored { object, source }),
                None => self.objects.remove(&k),
            };
        }
        for (a, d) in plan.claims {
            let c = self.claims.entry(a).or_default();
            *c = (*c as i64 + d) as u32;
            if *c == 0 {
                self.claims.remove(&a);
            }
        }
        for (key, new) in plan.pods {
            let slot = self.pod_slots.get(&key).copied();
            let pod = match new {
                Some(p) => p,
                None => {
                    let old = &self.model.pods[slot.expect("deleted pods exist")];
                    crate::model::Pod {
                        namespace: old.namespace,
                        name: String::new(),
                        labels: Default::default(),
                        addrs: Vec::new(),
                        host_network: false,
                        node_name: None,
                        node: None,
                        named_ports: Vec::new(),
                        source: old.source.clone(),
                    }
                }
            };
            let slot = slot.unwrap_or(self.model.pods.len());
            let exists = !pod.name.is_empty();
            let old = self.model.set_pod(slot, pod);
            if exists {
                self.pod_slots.insert(key, slot);
            } else {
                self.pod_slots.remove(&key);
            }
            self.engine.pod_changed(&self.model, slot, old.as_ref());
        }
        let places: HashMap<(String, String), Option<usize>> = plan.new_policy_place.into_iter().collect();
        for (key, okey, new) in plan.policies {
            let slot = self.policy_slots.get(&key).copied();
            let policy = match new {
                Some(p) => p,
                None => {
                    let old = &self.model.policies[slot.expect("deleted policies exist")];
                    Policy {
                        namespace: old.namespace,
                        name: String::new(),
                        pod_selector: Selector::default(),
                        isolates_ingress: false,
                        isolates_egress: false,
                        ingress: Vec::new(),
                        egress: Vec::new(),
                        source: old.source.clone(),
                    }
                }
            };
            let ns = policy.namespace;
            let deleted = policy.name.is_empty();
            let slot = match slot {
                Some(s) => s,
                None => {
                    let s = self.model.policies.len();
                    self.policy_slots.insert(key.clone(), s);
                    self.policy_order.entry(ns).or_default().insert(okey.clone(), s);
                    self.policy_keys.push(okey);
                    s
                }
            };
            let old = self.model.set_policy(slot, policy);
            if old.is_none() {
                let pred = places.get(&key).copied().flatten();
                self.engine.reserve_block(&self.model, slot, pred);
            }
            if deleted {
                // The slot and its ids stay reserved (a policy of the same name comes back there).
                self.policy_slots.remove(&key);
            }
            if !self.engine.policy_changed(&self.model, slot) {
                // Outgrew its reserved ids: recompile whole (rare; the state is consistent).
                // Every object in force passed validation, so this cannot fail.
                let _ = self.full(BTreeMap::new());
                return false;
            }
        }
        true
    }
}

#[derive(Default)]
struct Plan {
    pods: Vec<((String, String), Option<crate::model::Pod>)>,
    claims: HashMap<IpAddr, i64>,
    policies: Vec<((String, String), OrderKey, Option<Policy>)>,
    new_policy_place: Vec<((String, String), Option<usize>)>,
    carved: HashSet<usize>,
}

impl Engine {
    fn grow_pods(&mut self, len: usize) {
        if self.pod_identity.len() < len {
            self.pod_identity.resize(len, NONE);
            self.pod_sets.resize(len, [NONE, NONE]);
            self.pod_endpoint.resize(len, NONE);
        }
    }

    fn leave_sets(&mut self, pod: usize) {
        for di in 0..2 {
            let s = self.pod_sets[pod][di];
            if s != NONE {
                self.sets[s as usize].pods.retain(|&p| p != pod as u32);
                self.pod_sets[pod][di] = NONE;
            }
        }
    }

    /// Policies (slots, in order) isolating pod `pod`, per direction.
    fn selecting_of(&self, model: &Model, pod: usize) -> [Vec<u32>; 2] {
        let p = &model.pods[pod];
        let mut out = [Vec::new(), Vec::new()];
        for &q in &self.ns_policies[p.namespace] {
            let pol = &model.policies[q as usize];
            if (pol.isolates_ingress || pol.isolates_egress) && pol.pod_selector.matches(&p.labels) {
                for (di, d) in super::DIRECTIONS.iter().enumerate() {
                    if pol.isolates(*d) {
                        out[di].push(q);
                    }
                }
            }
        }
        out
    }

    /// Pod slot `pod` changed from `old` (`None`: a new slot) to `model.pods[pod]`.
    pub(crate) fn pod_changed(&mut self, model: &Model, pod: usize, old: Option<&crate::model::Pod>) {
        self.grow_pods(model.pods.len());
        let mut dirty: HashSet<super::User> = HashSet::new();
        let old_id = self.pod_identity[pod];
        if old_id != NONE {
            self.identities[old_id as usize].pods.retain(|&p| p != pod as u32);
        }
        self.leave_sets(pod);
        let new = &model.pods[pod];
        if new.is_endpoint() {
            let (id, created) = self.identity_of(model, pod);
            if created {
                self.identity_created(model, id, &mut dirty);
            }
            self.identities[id as usize].pods.push(pod as u32);
            self.pod_identity[pod] = id;
        } else {
            self.pod_identity[pod] = NONE;
        }
        let named = |p: &crate::model::Pod| p.is_endpoint() && !p.named_ports.is_empty();
        if old.is_some_and(named) || named(new) {
            dirty.extend(self.named_block_users.iter().copied());
        }
        let mut refresh = self.recompute(model, dirty);
        if new.is_endpoint() {
            let selecting = self.selecting_of(model, pod);
            self.join_sets(model, pod, selecting);
        }
        let old_addrs: &[IpAddr] = match old {
            Some(o) if o.is_endpoint() => &o.addrs,
            _ => &[],
        };
        if self.pod_identity[pod] == NONE && old_id != NONE {
            // Keep a registered identity for the unreachable endpoint record.
            self.pod_identity[pod] = old_id;
            self.write_endpoint(model, pod, old_addrs);
            self.pod_identity[pod] = NONE;
        } else {
            self.write_endpoint(model, pod, old_addrs);
        }
        refresh.retain(|&p| p != pod as u32);
        self.refresh(model, refresh);
    }

    /// Re-register the endpoints of `pods` (their rule sets changed).
    fn refresh(&mut self, model: &Model, mut pods: Vec<u32>) {
        pods.sort_unstable();
        pods.dedup();
        for p in pods {
            let p = p as usize;
            if model.pods[p].is_endpoint() {
                self.write_endpoint(model, p, &model.pods[p].addrs);
            }
        }
    }

    /// A new identity `id`: add it to the selector peers that take it. A peer matched
    /// by identity has a private identity set in the builder, which gains `id` in place
    /// (each rule set naming it gets one table entry); only the policy directions whose
    /// rules themselves change (egress named ports towards the peer) go into `dirty`.
    fn identity_created(&mut self, model: &Model, id: u32, dirty: &mut HashSet<super::User>) {
        let mut joined = Vec::new();
        for i in 0..self.peers.len() {
            if self.peers[i].identities.is_none() || !self.peer_takes(model, &self.peers[i].key, id) {
                continue;
            }
            let state = &mut self.peers[i];
            state.identities.as_mut().expect("selector peer").push(id);
            dirty.extend(state.named_users.iter().copied());
            if let dataplane::snapshot::Remote::Identities(set) = state.remote {
                joined.push(set);
            }
        }
        self.b.identity_joined(id, &joined);
        let ident = &self.identities[id as usize];
        for cp in &ident.named_ports {
            if let Some(users) = self.named_any_users.get(&(cp.name.clone(), cp.protocol)) {
                dirty.extend(users.iter().copied());
            }
        }
    }

    /// Recompute the rules of `dirty` policy directions (same ids, same names) and the
    /// rule sets containing them; returns the pods whose endpoints need rewriting.
    fn recompute(&mut self, model: &Model, dirty: HashSet<super::User>) -> Vec<u32> {
        let mut dirty: Vec<_> = dirty.into_iter().collect();
        dirty.sort_unstable();
        let mut refresh = Vec::new();
        for (pi, di) in dirty {
            let d = super::DIRECTIONS[di as usize];
            let list = self.policy_rules(model, pi as usize, d);
            let block = self.blocks[pi as usize];
            let first = block.start + if di == 1 { block.ingress } else { 0 };
            debug_assert_eq!(list.len() as u32, if di == 1 { block.egress } else { block.ingress });
            self.rules[pi as usize][di as usize] =
                list.into_iter().enumerate().map(|(k, (_, _, allows))| super::SubRule { rule: first + k as u32, allows }).collect();
            for s in self.policy_sets[pi as usize].clone() {
                let set = &self.sets[s as usize];
                if set.live && set.key.dir == di {
                    let key = set.key.clone();
                    self.sets[s as usize].rule_set = self.build_set(&key);
                    refresh.extend_from_slice(&self.sets[s as usize].pods);
                }
            }
        }
        refresh
    }

    /// Reserve rule ids for a new policy slot: at the end of the id space, or (when
    /// `pred` is given) the upper half of policy `pred`'s spare ids, so that it sorts
    /// after `pred` and before `pred`'s successors.
    pub(crate) fn reserve_block(&mut self, model: &Model, slot: usize, pred: Option<usize>) {
        debug_assert_eq!(slot, self.blocks.len());
        let block = match pred {
            Some(pred) => {
                let p = &mut self.blocks[pred];
                let free = p.cap - p.ingress - p.egress;
                let take = free - free / 2;
                p.cap -= take;
                super::Block { start: p.start + p.cap, cap: take, ingress: 0, egress: 0 }
            }
            None => {
                let pol = &model.policies[slot];
                let n = (pol.rules(Direction::Ingress).len() + pol.rules(Direction::Egress).len()) as u32 * 4;
                let cap = n + n.max(4);
                let start = self.next_rule;
                for _ in 0..cap {
                    self.add_rule("");
                }
                super::Block { start, cap, ingress: 0, egress: 0 }
            }
        };
        self.blocks.push(block);
        self.rules.push([Vec::new(), Vec::new()]);
        self.policy_sets.push(Vec::new());
        self.ns_policies[model.policies[slot].namespace].push(slot as u32);
    }

    /// Policy slot `slot` changed (added, modified or deleted). False when its rules
    /// no longer fit in its reserved ids (nothing was changed then).
    pub(crate) fn policy_changed(&mut self, model: &Model, slot: usize) -> bool {
        let ingress = self.policy_rules(model, slot, Direction::Ingress);
        let egress = self.policy_rules(model, slot, Direction::Egress);
        let block = self.blocks[slot];
        let n = (ingress.len() + egress.len()) as u32;
        if n > block.cap {
            return false;
        }
        let used = block.ingress + block.egress;
        let mut names: Vec<(u32, &str)> =
            ingress.iter().chain(egress.iter()).enumerate().map(|(k, (name, _, _))| (block.start + k as u32, name.as_str())).collect();
        names.extend((n..used).map(|k| (block.start + k, "")));
        self.b.rename_rules(&names);
        let mut subrules: [Vec<super::SubRule>; 2] = [Vec::new(), Vec::new()];
        for (di, list) in [ingress, egress].into_iter().enumerate() {
            let first = block.start + if di == 1 { subrules[0].len() as u32 } else { 0 };
            subrules[di] = list.into_iter().enumerate().map(|(k, (_, _, allows))| super::SubRule { rule: first + k as u32, allows }).collect();
        }
        self.blocks[slot].ingress = subrules[0].len() as u32;
        self.blocks[slot].egress = subrules[1].len() as u32;
        self.rules[slot] = subrules;
        // Every pod in a rule set with this policy, and every pod it selects now.
        let mut affected: Vec<u32> = Vec::new();
        for s in std::mem::take(&mut self.policy_sets[slot]) {
            let set = &mut self.sets[s as usize];
            if set.live {
                set.live = false;
                affected.extend_from_slice(&set.pods);
                let key = set.key.clone();
                self.set_ids.remove(&key);
            }
        }
        let pol = &model.policies[slot];
        if pol.isolates_ingress || pol.isolates_egress {
            for id in self.select(pol.namespace, &pol.pod_selector) {
                affected.extend_from_slice(&self.identities[id as usize].pods);
            }
        }
        for (di, d) in super::DIRECTIONS.iter().enumerate() {
            if pol.isolates(*d) {
                self.isolation_rule(model, pol.namespace, di);
            }
        }
        affected.sort_unstable();
        affected.dedup();
        for &p in &affected {
            self.leave_sets(p as usize);
            let selecting = self.selecting_of(model, p as usize);
            self.join_sets(model, p as usize, selecting);
        }
        self.refresh(model, affected);
        true
    }
}

/// Bring `cluster`, which held the objects in force (in `order`) before `changes`,
/// to what [`Incremental::cluster`] gives after them, touching only the changed
/// objects: a modified object is replaced in place, an added or deleted one moves
/// the objects after it.
pub fn apply_committed(cluster: &mut Cluster, order: Order, changes: &[Committed]) {
    for c in changes {
        match c.key.0 {
            Kind::Namespace => patch(&mut cluster.namespaces, order, c, |o| match o {
                Object::Namespace(x) => x.clone(),
                _ => unreachable!("a namespace key holds a namespace"),
            }),
            Kind::Node => patch(&mut cluster.nodes, order, c, |o| match o {
                Object::Node(x) => x.clone(),
                _ => unreachable!("a node key holds a node"),
            }),
            Kind::Pod => patch(&mut cluster.pods, order, c, |o| match o {
                Object::Pod(x) => x.clone(),
                _ => unreachable!("a pod key holds a pod"),
            }),
            Kind::NetworkPolicy => patch(&mut cluster.policies, order, c, |o| match o {
                Object::NetworkPolicy(x) => x.clone(),
                _ => unreachable!("a policy key holds a policy"),
            }),
        }
    }
}

/// Where an object sorts among its kind in `order` (see `Incremental::cluster_of`).
fn sort_key<'a>(order: Order, source: &'a Source, ns: &'a str, name: &'a str) -> (&'a std::path::Path, usize, &'a str, &'a str) {
    match order {
        Order::ByKey => (std::path::Path::new(""), 0, ns, name),
        Order::BySource => (&source.file, source.doc, ns, name),
    }
}

fn patch<T: k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>>(
    list: &mut Vec<Sourced<T>>,
    order: Order,
    change: &Committed,
    object: impl Fn(&Object) -> T,
) {
    let (ns, name) = (change.key.1.as_str(), change.key.2.as_str());
    let position = |list: &[Sourced<T>], source: &Source| {
        list.binary_search_by(|s| {
            let meta = s.object.metadata();
            let (sns, sname) = (meta.namespace.as_deref().unwrap_or(""), meta.name.as_deref().unwrap_or(""));
            sort_key(order, &s.source, sns, sname).cmp(&sort_key(order, source, ns, name))
        })
    };
    let old = change.old.as_ref().map(|src| position(list, src).expect("the committed object is in the cluster"));
    match (&change.new, old) {
        (Some((o, src)), Some(at)) if position(list, src) == Ok(at) => {
            list[at] = Sourced { object: object(o), source: src.clone() };
        }
        (new, old) => {
            if let Some(at) = old {
                list.remove(at);
            }
            if let Some((o, src)) = new {
                let at = position(list, src).expect_err("a new object's key is free");
                list.insert(at, Sourced { object: object(o), source: src.clone() });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::synthetic::{self, Rng};

    /// A random change to a small synthetic cluster: pods relabelled, added and
    /// deleted, policies deleted, re-added and moved to another document (which
    /// reorders them under `Order::BySource`).
    fn random_change(rng: &mut Rng, base: &Cluster, round: usize) -> ObjectChange {
        match rng.below(5) {
            0 | 1 => {
                let p = rng.pick(&base.pods);
                let mut pod = p.object.clone();
                pod.metadata.labels.get_or_insert_with(Default::default).insert("app".into(), format!("r{}", rng.below(4)));
                ObjectChange::Upsert(Object::Pod(pod), p.source.clone())
            }
            2 => {
                let p = rng.pick(&base.pods);
                let mut pod = p.object.clone();
                pod.metadata.name = Some(format!("extra{}", rng.below(6)));
                pod.status = None;
                ObjectChange::Upsert(Object::Pod(pod), Source { file: "extra.yaml".into(), doc: rng.below(6) })
            }
            3 => {
                let p = rng.pick(&base.pods);
                let meta = &p.object.metadata;
                let name = if rng.chance(50) { meta.name.clone().unwrap() } else { format!("extra{}", rng.below(6)) };
                ObjectChange::Delete((Kind::Pod, meta.namespace.clone().unwrap(), name))
            }
            _ => {
                let p = rng.pick(&base.policies);
                if rng.chance(30) {
                    let meta = &p.object.metadata;
                    return ObjectChange::Delete((Kind::NetworkPolicy, meta.namespace.clone().unwrap(), meta.name.clone().unwrap()));
                }
                let source = Source { file: p.source.file.clone(), doc: p.source.doc + round % 3 * 100 };
                ObjectChange::Upsert(Object::NetworkPolicy(p.object.clone()), source)
            }
        }
    }

    /// A copy of the cluster patched with the committed changes equals the cluster
    /// in force after every batch, in both orders.
    #[test]
    fn committed_changes_patch_a_copy_into_the_cluster_in_force() {
        for order in [Order::ByKey, Order::BySource] {
            for seed in 1..6u64 {
                let base = synthetic::cluster(60, 18, seed);
                let mut inc = Incremental::new(base.clone(), order).unwrap();
                inc.record_committed(true);
                let mut copy = inc.cluster();
                let mut rng = Rng::new(seed);
                for round in 0..40 {
                    let batch: Vec<ObjectChange> = (0..1 + rng.below(3)).map(|_| random_change(&mut rng, &base, round)).collect();
                    let result = inc.apply(batch);
                    let committed = inc.take_committed();
                    if result.is_err() {
                        assert!(committed.is_empty());
                    }
                    apply_committed(&mut copy, order, &committed);
                    assert_eq!(format!("{copy:?}"), format!("{:?}", inc.cluster()), "{order:?} seed {seed} round {round}");
                }
            }
        }
    }
}
