//! The raw cluster as read from a policy source: Kubernetes API objects (k8s-openapi
//! types, never hand-written copies) with the place each came from, so every error can
//! name its file and object. Nothing here is resolved or validated; see `validate`
//! and `model`.

use std::fmt;
use std::path::PathBuf;

pub use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
pub use k8s_openapi::api::networking::v1::NetworkPolicy;

/// Where an object came from: a file (and its document index inside a multi-document
/// YAML or `kind: List`), or a watch stream.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Source {
    pub file: PathBuf,
    /// 0-based index of the YAML document, or of the item inside a `kind: List`.
    pub doc: usize,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (document {})", self.file.display(), self.doc + 1)
    }
}

/// An object together with its source.
#[derive(Clone, Debug)]
pub struct Sourced<T> {
    pub object: T,
    pub source: Source,
}

/// Every object palisade cares about, as loaded. Order is load order (files sorted by
/// path, documents in file order), which makes compilation deterministic.
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    pub namespaces: Vec<Sourced<Namespace>>,
    pub pods: Vec<Sourced<Pod>>,
    pub nodes: Vec<Sourced<Node>>,
    pub policies: Vec<Sourced<NetworkPolicy>>,
}

impl Cluster {
    /// Appends another cluster's objects after this one's, keeping load order.
    pub fn append(&mut self, other: Cluster) {
        self.namespaces.extend(other.namespaces);
        self.pods.extend(other.pods);
        self.nodes.extend(other.nodes);
        self.policies.extend(other.policies);
    }
}
