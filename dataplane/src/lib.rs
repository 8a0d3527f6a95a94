//! `dataplane`: everything on palisade's packet path.
//!
//! Owns: the safe DPDK wrappers (`dpdk`, the only module here allowed `unsafe`), the
//! zero-copy header views (`wire`), the per-worker flow table (`flow`), the compiled
//! policy snapshot and its lookup (`snapshot`), the per-packet pipeline (`pipeline`),
//! L2 forwarding (`l2`), the worker loop (`worker`) and counters.
//!
//! Must not touch: manifests, YAML, Kubernetes types or anything else of the control
//! plane. `control` builds snapshots through `snapshot`'s builder API; this crate never
//! depends on `control`.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod verdict;
pub mod filter;
pub mod snapshot;
pub mod wire;
pub mod flow;
pub mod pipeline;
pub mod l2;
pub mod dpdk;
pub mod worker;

pub use verdict::{Action, Classifier, Reason, RuleId, Verdict, NO_RULE};
