//! Flattened snapshots: the copy of a snapshot the workers read while it stays in force.
//!
//! The incremental compiler publishes every change as a snapshot sharing its unchanged
//! chunks with the one before ([`CowVec`](super::cow::CowVec), [`FlatMap`](super::flat::FlatMap)),
//! which keeps a change cheap but puts a chunk-table read before every array access
//! of a lookup (and at 50k pods × 10k policies the tables no longer stay in cache).
//! Once the policy source is quiet the control loop publishes
//! [`Snapshot::flattened`] in its place: the same generation, indices, verdicts and
//! rule names, each array and map one flat array that lookups read as a plain slice or
//! open-addressing table. Only published copies are flattened; the builder keeps
//! its chunks, so the next change is as cheap as ever (a flattened copy still takes
//! writes, through the chunked path, should anyone make them).

use super::Snapshot;

impl Snapshot {
    /// A copy with every array and map in one flat array: same generation, same
    /// indices, identical verdicts and rule names. Costs a copy of the snapshot (tens
    /// of ms and its size in memory at 50k pods × 10k policies), so it is made off the
    /// change path.
    pub fn flattened(&self) -> Snapshot {
        Snapshot {
            generation: self.generation,
            addr_v4: self.addr_v4.flattened(),
            addr_v6: self.addr_v6.clone(),
            endpoints: self.endpoints.flattened(),
            endpoint_nodes: self.endpoint_nodes.flattened(),
            nodes: self.nodes,
            rule_sets: self.rule_sets.flattened(),
            keyed: self.keyed.flattened(),
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
        fn flat<T: Copy>(v: &super::cow::CowVec<T>) -> bool {
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
