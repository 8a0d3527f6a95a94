//! Flattened snapshots: the copy of a snapshot the workers read while it stays in force.
//!
//! The incremental compiler publishes every change as a snapshot sharing its unchanged
//! chunks with the one before ([`CowVec`](super::cow::CowVec), [`FlatMap`](super::flat::FlatMap)),
//! which keeps a change cheap but puts a chunk-table read before every array access
//! of a lookup (and at 50k pods × 10k policies the tables no longer stay in cache).
//! Once the policy source is quiet the control loop publishes
//! [`Snapshot::flattened`] in its place: the same generation, verdicts and rule names,
//! each array and map one flat array that lookups read as a plain slice or
//! open-addressing table. Only published copies are flattened; the builder keeps
//! its chunks, so the next change is as cheap as ever (a flattened copy still takes
//! writes, through the chunked path, should anyone make them).
//!
//! The copy also merges identities into classes. The compiler's identities tell apart
//! every pod that some selector *could* tell apart: a `version` label that only a
//! policy's own `podSelector` reads, or a `pod-template-hash`, splits them. As a remote,
//! though, an identity only matters through its identity-table entries: two identities
//! with the same entry (the same port list) in every rule set, and no entry anywhere
//! else, get the same lists from every lookup (the namespace fallback reads the
//! endpoint's own `namespace` field). So the copy keys the table by class (identities
//! with equal entries) and stores each endpoint's class in its `identity` field: the
//! table shrinks by the ratio of identities to classes, and with it the lines a
//! lookup misses. The builder never sees classes; its identities stay as they were.

use super::cow::CowVec;
use super::keyed::KeyedTables;
use super::{table_key_parts, Endpoint, ListRef, RuleSetLayout, Snapshot, TableKind, NONE};
use hashbrown::HashMap;

/// A snapshot's identities merged into classes (see the module doc).
struct IdentityClasses {
    /// Class of each identity that has identity-table entries.
    class_of: HashMap<u32, u32>,
    /// The class of every identity without entries.
    bare: u32,
    /// The namespace tables as they were, and the identity tables keyed by class.
    keyed: KeyedTables,
    /// Identity-table entries (classes) of each rule set.
    id_len: Vec<u32>,
}

impl IdentityClasses {
    fn of(s: &Snapshot) -> IdentityClasses {
        // (rule set, namespace, list) of every namespace entry; (identity, rule set,
        // list) of every identity entry, in identity order.
        let mut namespace: Vec<(u32, u32, ListRef)> = Vec::new();
        let mut entries: Vec<(u32, u32, ListRef)> = Vec::new();
        for (key, list) in s.keyed.entries() {
            match table_key_parts(key) {
                (set, TableKind::Identity, id) => entries.push((id, set, list)),
                (set, TableKind::Namespace, ns) => namespace.push((set, ns, list)),
            }
        }
        entries.sort_unstable();
        let mut classes: HashMap<Vec<(u32, ListRef)>, u32> = HashMap::new();
        let mut class_of = HashMap::new();
        let mut id_len = vec![0u32; s.rule_sets.len()];
        // (rule set, class, list) of every class entry.
        let mut identity: Vec<(u32, u32, ListRef)> = Vec::new();
        for group in entries.chunk_by(|a, b| a.0 == b.0) {
            let signature: Vec<(u32, ListRef)> = group.iter().map(|&(_, set, list)| (set, list)).collect();
            let next = classes.len() as u32;
            let class = *classes.entry(signature).or_insert_with_key(|signature| {
                for &(set, list) in signature {
                    identity.push((set, next, list));
                    id_len[set as usize] += 1;
                }
                next
            });
            class_of.insert(group[0].0, class);
        }
        let keyed = KeyedTables::flat(s.rule_sets.len(), &identity, &namespace);
        IdentityClasses { class_of, bare: classes.len() as u32, keyed, id_len }
    }

    /// `e` with its class in place of its identity (records without one unchanged).
    fn record(&self, e: Endpoint) -> Endpoint {
        if e.identity == NONE {
            return e;
        }
        Endpoint { identity: self.class_of.get(&e.identity).copied().unwrap_or(self.bare), ..e }
    }
}

impl Snapshot {
    /// A copy with every array and map in one flat array and identities merged into
    /// classes (see the module doc): same generation, rule ids and names, identical
    /// verdicts. Costs a copy of the snapshot and a pass over its identity tables
    /// (tens of ms and its size in memory at 50k pods × 10k policies), so it is made
    /// off the change path.
    pub fn flattened(&self) -> Snapshot {
        let classes = IdentityClasses::of(self);
        let rule_sets = self.rule_sets.len();
        Snapshot {
            generation: self.generation,
            addr_v4: self.addr_v4.flattened(self.endpoints.len(), |e| classes.record(e)),
            addr_v6: self.addr_v6.clone(),
            endpoints: self.endpoints.flattened_map(|_, e| classes.record(e)),
            endpoint_nodes: self.endpoint_nodes.flattened(),
            nodes: self.nodes,
            // Past `rule_sets` lies padding, which stays filler.
            rule_sets: self
                .rule_sets
                .flattened_map(|i, l| if i < rule_sets { RuleSetLayout { id_len: classes.id_len[i], ..l } } else { l }),
            keyed: classes.keyed,
            seg_v4_start: self.seg_v4_start.flattened(),
            seg_v4_list: self.seg_v4_list.flattened(),
            seg_v6_start: self.seg_v6_start.flattened(),
            seg_v6_list: self.seg_v6_list.flattened(),
            port_entries: self.port_entries.flattened(),
            port_keys: self.port_keys.flattened(),
            port_lists: self.port_lists,
            rule_names: self.rule_names.flattened(),
            name_spans: self.name_spans.flattened(),
        }
    }

    /// Whether this is a [`Snapshot::flattened`] copy (empty arrays count as flat).
    pub fn is_flattened(&self) -> bool {
        fn flat<T: Copy>(v: &CowVec<T>) -> bool {
            v.is_flat() || v.len() == 0
        }
        self.addr_v4.is_flat()
            && self.keyed.is_flat()
            && flat(&self.endpoints)
            && flat(&self.endpoint_nodes)
            && flat(&self.rule_sets)
            && flat(&self.seg_v4_start)
            && flat(&self.seg_v4_list)
            && flat(&self.seg_v6_start)
            && flat(&self.seg_v6_list)
            && flat(&self.port_entries)
            && flat(&self.port_keys)
            && flat(&self.rule_names)
            && flat(&self.name_spans)
    }
}
