//! `control`: everything of palisade off the packet path.
//!
//! Owns: reading manifests (`load`), validating them as the API server would
//! (`validate`), the resolved cluster model (`model`), the policy compiler that builds
//! a `dataplane::snapshot::Snapshot` through its builder (`compile`), CN2-style names
//! and tables (`cn2`), the offline renderings (`render`: explain, matrix), the probe
//! format of `palisade verdicts` (`probes`), and policy-source watchers.
//!
//! Must not touch: packets, DPDK, or the snapshot's internal layout: it only calls the
//! dataplane's public builder and lookup API.

pub mod cluster;
pub mod load;
pub mod validate;
pub mod model;
pub mod compile;
pub mod scale;
pub mod cn2;
pub mod render;
pub mod probes;
pub mod stream;
pub mod accept;
pub mod telemetry;
pub mod watch;
pub mod socket;
pub mod flowlog;
