//! The resolved cluster model: a `Cluster`'s Kubernetes objects turned into plain data
//! with Kubernetes NetworkPolicy semantics applied: namespaces always labelled
//! `kubernetes.io/metadata.name` (and synthesised when only referenced), pods as
//! endpoints with their addresses, node and named ports, selectors ready to match,
//! `policyTypes` defaulted, ports and `ipBlock`s parsed. The compiler (`compile`) and the
//! renderings (explain, matrix) work from this, never from YAML.
//!
//! Resolution assumes `validate` has accepted the cluster, but never panics on bad
//! input: anything it cannot interpret is a [`ModelError`] naming file, object and field.

use crate::cluster::{Cluster, Source, Sourced};
use crate::cn2::Direction;
use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use hashbrown::HashMap;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Below this many pods and policies, `Model::resolve` stays on one thread.
const PARALLEL_MIN: usize = 4096;

/// The label every namespace carries with its own name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

pub type Labels = BTreeMap<String, String>;

#[derive(Debug, thiserror::Error)]
#[error("{at}: {kind} {object}: {field}: {message}")]
pub struct ModelError {
    /// File and document of the object.
    pub at: Source,
    pub kind: &'static str,
    /// `ns/name` (or `name` for cluster-scoped objects).
    pub object: String,
    pub field: String,
    pub message: String,
}

#[derive(Clone, Debug)]
pub struct Namespace {
    pub name: String,
    /// Declared labels plus `kubernetes.io/metadata.name`.
    pub labels: Labels,
    /// False when synthesised because a pod or policy referred to it.
    pub declared: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerPort {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

#[derive(Clone, Debug)]
pub struct Pod {
    /// Index into `Model::namespaces`.
    pub namespace: usize,
    pub name: String,
    pub labels: Labels,
    /// `status.podIPs` (or `status.podIP`), in order.
    pub addrs: Vec<IpAddr>,
    pub host_network: bool,
    pub node_name: Option<String>,
    /// Index into `Model::nodes` when `spec.nodeName` names a known Node.
    pub node: Option<usize>,
    /// Named container ports (unnamed ones cannot be referred to by a policy).
    pub named_ports: Vec<ContainerPort>,
    pub source: Source,
}

impl Pod {
    /// Only pods with an address of their own take part in policy.
    pub fn is_endpoint(&self) -> bool {
        !self.host_network && !self.addrs.is_empty()
    }

    /// Resolve a named port against this pod's container ports.
    pub fn resolve_port<'a>(&'a self, name: &'a str, protocol: Protocol) -> impl Iterator<Item = u16> + 'a {
        self.named_ports.iter().filter(move |p| p.name == name && p.protocol == protocol).map(|p| p.port)
    }
}

#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub addrs: Vec<IpAddr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn parse(s: &str) -> Option<Protocol> {
        match s {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    pub values: Vec<String>,
}

/// A label selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Selector {
    pub match_labels: Vec<(String, String)>,
    pub requirements: Vec<Requirement>,
}

impl Selector {
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.requirements.iter().all(|r| {
                let value = labels.get(&r.key);
                match r.operator {
                    Operator::In => value.is_some_and(|v| r.values.contains(v)),
                    Operator::NotIn => value.is_none_or(|v| !r.values.contains(v)),
                    Operator::Exists => value.is_some(),
                    Operator::DoesNotExist => value.is_none(),
                }
            })
    }

    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.requirements.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IpBlock {
    /// The `cidr` as written (names rules in the CN2 scheme).
    pub cidr_text: String,
    pub cidr: IpNet,
    /// `except` entries as written and parsed.
    pub except: Vec<(String, IpNet)>,
}

impl IpBlock {
    /// `cidr` minus `except`, by family; non-canonical CIDRs mean their network.
    pub fn contains(&self, a: IpAddr) -> bool {
        let inside = |n: &IpNet| n.trunc().contains(&a);
        inside(&self.cidr) && !self.except.iter().any(|(_, e)| inside(e))
    }
}

/// One entry of a rule's `from`/`to`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    /// `podSelector` alone: pods of the policy's namespace.
    Pods(Selector),
    /// `namespaceSelector` alone: all pods of the matching namespaces.
    Namespaces(Selector),
    /// Both in one peer: pods matching `pods` in namespaces matching `namespaces`.
    NamespacesAndPods { namespaces: Selector, pods: Selector },
    IpBlock(IpBlock),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PortRef {
    /// No `port`: every port of the protocol.
    All,
    /// `port` (and `endPort`): an inclusive range.
    Range(u16, u16),
    /// A named port, resolved against the destination pod's container ports.
    Named(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PortSpec {
    pub protocol: Protocol,
    pub port: PortRef,
}

/// One ingress or egress rule. Empty `peers` means any peer; empty `ports` any port
/// and protocol.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    pub peers: Vec<Peer>,
    pub ports: Vec<PortSpec>,
}

#[derive(Clone, Debug)]
pub struct Policy {
    pub namespace: usize,
    pub name: String,
    pub pod_selector: Selector,
    /// Whether the policy isolates the pods it selects for ingress / egress, after
    /// `policyTypes` defaulting.
    pub isolates_ingress: bool,
    pub isolates_egress: bool,
    /// Rules of each direction; those of a direction the policy does not isolate are
    /// kept here but never take effect.
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
    pub source: Source,
}

impl Policy {
    pub fn isolates(&self, d: Direction) -> bool {
        match d {
            Direction::Ingress => self.isolates_ingress,
            Direction::Egress => self.isolates_egress,
        }
    }

    /// The rules in force for `d` (none when the policy does not isolate `d`).
    pub fn rules(&self, d: Direction) -> &[Rule] {
        match d {
            Direction::Ingress if self.isolates_ingress => &self.ingress,
            Direction::Egress if self.isolates_egress => &self.egress,
            _ => &[],
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Model {
    /// Declared namespaces in load order, then synthesised ones in order of first reference.
    pub namespaces: Vec<Namespace>,
    pub pods: Vec<Pod>,
    pub nodes: Vec<Node>,
    pub policies: Vec<Policy>,
    namespace_index: HashMap<String, usize>,
    pod_index: HashMap<(usize, String), usize>,
    /// Address → first endpoint pod (load order) that has it.
    addr_index: HashMap<IpAddr, usize>,
}

impl Model {
    pub fn namespace_id(&self, name: &str) -> Option<usize> {
        self.namespace_index.get(name).copied()
    }

    /// The pod `namespace/name`, if any.
    pub fn pod_id(&self, namespace: &str, name: &str) -> Option<usize> {
        let ns = self.namespace_id(namespace)?;
        self.pod_index.get(&(ns, name.to_string())).copied()
    }

    /// The endpoint pod that owns `addr` (the first in load order if several claim it).
    pub fn pod_by_addr(&self, addr: IpAddr) -> Option<usize> {
        self.addr_index.get(&addr).copied()
    }

    /// `ns/name` of a pod.
    pub fn pod_ref(&self, pod: usize) -> String {
        let p = &self.pods[pod];
        format!("{}/{}", self.namespaces[p.namespace].name, p.name)
    }

    /// Policies (indices, in order) that select endpoint pod `pod` and isolate it for `d`.
    pub fn isolating_policies(&self, pod: usize, d: Direction) -> Vec<usize> {
        let p = &self.pods[pod];
        self.policies
            .iter()
            .enumerate()
            .filter(|(_, pol)| pol.namespace == p.namespace && pol.isolates(d) && pol.pod_selector.matches(&p.labels))
            .map(|(i, _)| i)
            .collect()
    }

    /// Resolve a cluster. Pure: the same cluster always gives the same model.
    pub fn resolve(cluster: &Cluster) -> Result<Model, ModelError> {
        let mut m = Model::default();
        for ns in &cluster.namespaces {
            let name = ns.object.metadata.name.clone().unwrap_or_default();
            let mut labels: Labels = ns.object.metadata.labels.clone().unwrap_or_default();
            labels.insert(NAMESPACE_NAME_LABEL.to_string(), name.clone());
            if !m.namespace_index.contains_key(&name) {
                m.namespace_index.insert(name.clone(), m.namespaces.len());
                m.namespaces.push(Namespace { name, labels, declared: true });
            }
        }
        for node in &cluster.nodes {
            let addrs = node
                .object
                .status
                .as_ref()
                .and_then(|s| s.addresses.as_ref())
                .map(|a| a.iter().filter_map(|a| a.address.parse().ok()).collect())
                .unwrap_or_default();
            m.nodes.push(Node { name: node.object.metadata.name.clone().unwrap_or_default(), addrs });
        }
        let node_index: HashMap<String, usize> = m.nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
        // Namespaces that pods, then policies, refer to without declaring them are
        // synthesised in order of first reference, before anything else resolves...
        for meta in cluster.pods.iter().map(|p| &p.object.metadata).chain(cluster.policies.iter().map(|p| &p.object.metadata)) {
            m.namespace_or_synthesise(meta.namespace.as_deref().unwrap_or("default"));
        }
        // ...so that pods and policies resolve independently of each other: on two
        // threads for a large cluster (the first half of the pods here, the second
        // half and the policies there). The first error in load order wins, as it
        // would one by one.
        let split = if cluster.pods.len() + cluster.policies.len() >= PARALLEL_MIN { cluster.pods.len() / 2 } else { 0 };
        let (first, rest) = cluster.pods.split_at(split);
        let model = &m;
        let resolve_pods = |pods: &[Sourced<k8s_openapi::api::core::v1::Pod>]| {
            pods.iter().map(|p| model.resolve_pod(p, &node_index)).collect::<Result<Vec<_>, _>>()
        };
        let resolve_rest = || -> Result<(Vec<Pod>, Vec<Policy>), ModelError> {
            let pods = resolve_pods(rest)?;
            let policies = cluster.policies.iter().map(|p| model.resolve_policy(p)).collect::<Result<Vec<_>, _>>()?;
            Ok((pods, policies))
        };
        let (first, rest) = if split == 0 {
            (Ok(Vec::new()), resolve_rest())
        } else {
            std::thread::scope(|s| {
                let rest = s.spawn(resolve_rest);
                let first = resolve_pods(first);
                (first, rest.join().expect("resolving thread panicked"))
            })
        };
        let mut pods = first?;
        let (rest_pods, policies) = rest?;
        pods.extend(rest_pods);
        m.pods = pods;
        m.policies = policies;
        m.pod_index.reserve(m.pods.len());
        m.addr_index.reserve(m.pods.len());
        for (id, p) in m.pods.iter().enumerate() {
            m.pod_index.entry((p.namespace, p.name.clone())).or_insert(id);
            if p.is_endpoint() {
                for a in &p.addrs {
                    m.addr_index.entry(*a).or_insert(id);
                }
            }
        }
        Ok(m)
    }

    /// Resolve one pod for an incremental update, or `None` when its namespace is not
    /// known yet (resolving it would synthesise one; the caller recompiles whole then).
    pub(crate) fn resolve_pod_update(&mut self, pod: &Sourced<k8s_openapi::api::core::v1::Pod>) -> Option<Result<Pod, ModelError>> {
        self.namespace_id(pod.object.metadata.namespace.as_deref().unwrap_or("default"))?;
        let nodes: HashMap<String, usize> = self.nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
        Some(self.resolve_pod(pod, &nodes))
    }

    /// Like [`resolve_pod_update`](Self::resolve_pod_update), for a policy.
    pub(crate) fn resolve_policy_update(
        &mut self,
        pol: &Sourced<k8s_openapi::api::networking::v1::NetworkPolicy>,
    ) -> Option<Result<Policy, ModelError>> {
        self.namespace_id(pol.object.metadata.namespace.as_deref().unwrap_or("default"))?;
        Some(self.resolve_policy(pol))
    }

    /// Put `pod` in slot `slot` (a new slot at the end when `slot == pods.len()`),
    /// returning what was there. Address ownership follows the slot; the caller makes
    /// sure no other endpoint claims the same addresses.
    pub(crate) fn set_pod(&mut self, slot: usize, pod: Pod) -> Option<Pod> {
        let old = if slot == self.pods.len() {
            self.pods.push(pod);
            None
        } else {
            Some(std::mem::replace(&mut self.pods[slot], pod))
        };
        if let Some(o) = &old {
            if self.pod_index.get(&(o.namespace, o.name.clone())) == Some(&slot) {
                self.pod_index.remove(&(o.namespace, o.name.clone()));
            }
            for a in &o.addrs {
                if self.addr_index.get(a) == Some(&slot) {
                    self.addr_index.remove(a);
                }
            }
        }
        let p = &self.pods[slot];
        if !p.name.is_empty() {
            self.pod_index.entry((p.namespace, p.name.clone())).or_insert(slot);
        }
        if p.is_endpoint() {
            for a in &p.addrs {
                self.addr_index.entry(*a).or_insert(slot);
            }
        }
        old
    }

    /// Put `policy` in slot `slot` (a new slot at the end when `slot == policies.len()`).
    pub(crate) fn set_policy(&mut self, slot: usize, policy: Policy) -> Option<Policy> {
        if slot == self.policies.len() {
            self.policies.push(policy);
            None
        } else {
            Some(std::mem::replace(&mut self.policies[slot], policy))
        }
    }

    fn namespace_or_synthesise(&mut self, name: &str) -> usize {
        if let Some(&i) = self.namespace_index.get(name) {
            return i;
        }
        let i = self.namespaces.len();
        let labels = Labels::from([(NAMESPACE_NAME_LABEL.to_string(), name.to_string())]);
        self.namespaces.push(Namespace { name: name.to_string(), labels, declared: false });
        self.namespace_index.insert(name.to_string(), i);
        i
    }

    /// The pod as the model sees it; its namespace must be registered.
    fn resolve_pod(&self, pod: &Sourced<k8s_openapi::api::core::v1::Pod>, nodes: &HashMap<String, usize>) -> Result<Pod, ModelError> {
        let meta = &pod.object.metadata;
        let ns_name = meta.namespace.as_deref().unwrap_or("default");
        let name = meta.name.clone().unwrap_or_default();
        let err = |field: String, message: String| ModelError {
            at: pod.source.clone(),
            kind: "Pod",
            object: format!("{ns_name}/{name}"),
            field,
            message,
        };
        let namespace = self.namespace_id(ns_name).expect("namespace registered before its pods");
        let spec = pod.object.spec.as_ref();
        let status = pod.object.status.as_ref();
        let mut addrs = Vec::new();
        match status.and_then(|s| s.pod_ips.as_ref()).filter(|v| !v.is_empty()) {
            Some(ips) => {
                for (i, ip) in ips.iter().enumerate() {
                    let a = ip.ip.parse().map_err(|_| {
                        err(format!("status.podIPs[{i}].ip"), format!("{:?} is not an IP address", ip.ip))
                    })?;
                    addrs.push(a);
                }
            }
            None => {
                if let Some(ip) = status.and_then(|s| s.pod_ip.as_deref()).filter(|s| !s.is_empty()) {
                    let a = ip.parse().map_err(|_| err("status.podIP".into(), format!("{ip:?} is not an IP address")))?;
                    addrs.push(a);
                }
            }
        }
        let mut named_ports = Vec::new();
        for (ci, c) in spec.map(|s| s.containers.as_slice()).unwrap_or_default().iter().enumerate() {
            for (pi, p) in c.ports.as_deref().unwrap_or_default().iter().enumerate() {
                let Some(pname) = &p.name else { continue };
                let field = || format!("spec.containers[{ci}].ports[{pi}]");
                let protocol = Protocol::parse(p.protocol.as_deref().unwrap_or("TCP"))
                    .ok_or_else(|| err(field() + ".protocol", "must be TCP, UDP or SCTP".into()))?;
                let port = u16::try_from(p.container_port)
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| err(field() + ".containerPort", "must be between 1 and 65535".into()))?;
                named_ports.push(ContainerPort { name: pname.clone(), protocol, port });
            }
        }
        let node_name = spec.and_then(|s| s.node_name.clone());
        Ok(Pod {
            namespace,
            name,
            labels: meta.labels.clone().unwrap_or_default(),
            addrs,
            host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
            node: node_name.as_ref().and_then(|n| nodes.get(n).copied()),
            node_name,
            named_ports,
            source: pod.source.clone(),
        })
    }

    /// The policy as the model sees it; its namespace must be registered.
    fn resolve_policy(&self, pol: &Sourced<k8s_openapi::api::networking::v1::NetworkPolicy>) -> Result<Policy, ModelError> {
        let meta = &pol.object.metadata;
        let ns_name = meta.namespace.as_deref().unwrap_or("default");
        let name = meta.name.clone().unwrap_or_default();
        let err = |field: String, message: String| ModelError {
            at: pol.source.clone(),
            kind: "NetworkPolicy",
            object: format!("{ns_name}/{name}"),
            field,
            message,
        };
        let namespace = self.namespace_id(ns_name).expect("namespace registered before its policies");
        let spec = pol.object.spec.clone().unwrap_or_default();
        let pod_selector = selector(spec.pod_selector.as_ref(), "spec.podSelector", &err)?;
        let mut ingress = Vec::new();
        for (i, r) in spec.ingress.as_deref().unwrap_or_default().iter().enumerate() {
            let field = format!("spec.ingress[{i}]");
            ingress.push(rule(r.from.as_deref(), r.ports.as_deref(), &field, "from", &err)?);
        }
        let mut egress = Vec::new();
        for (i, r) in spec.egress.as_deref().unwrap_or_default().iter().enumerate() {
            let field = format!("spec.egress[{i}]");
            egress.push(rule(r.to.as_deref(), r.ports.as_deref(), &field, "to", &err)?);
        }
        let (isolates_ingress, isolates_egress) = match spec.policy_types.as_ref().filter(|t| !t.is_empty()) {
            // Missing (or empty, which the API server defaults the same way): Ingress
            // always, Egress only if there is at least one egress rule.
            None => (true, !egress.is_empty()),
            Some(types) => {
                let mut t = (false, false);
                for (i, ty) in types.iter().enumerate() {
                    match ty.as_str() {
                        "Ingress" => t.0 = true,
                        "Egress" => t.1 = true,
                        other => {
                            return Err(err(format!("spec.policyTypes[{i}]"), format!("{other:?} is not Ingress or Egress")))
                        }
                    }
                }
                t
            }
        };
        Ok(Policy { namespace, name, pod_selector, isolates_ingress, isolates_egress, ingress, egress, source: pol.source.clone() })
    }
}

fn selector(
    sel: Option<&LabelSelector>,
    field: &str,
    err: &dyn Fn(String, String) -> ModelError,
) -> Result<Selector, ModelError> {
    let Some(sel) = sel else { return Ok(Selector::default()) };
    let match_labels = sel.match_labels.clone().unwrap_or_default().into_iter().collect();
    let mut requirements = Vec::new();
    for (i, r) in sel.match_expressions.as_deref().unwrap_or_default().iter().enumerate() {
        let operator = match r.operator.as_str() {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            other => {
                return Err(err(
                    format!("{field}.matchExpressions[{i}].operator"),
                    format!("{other:?} is not In, NotIn, Exists or DoesNotExist"),
                ))
            }
        };
        requirements.push(Requirement { key: r.key.clone(), operator, values: r.values.clone().unwrap_or_default() });
    }
    Ok(Selector { match_labels, requirements })
}

fn rule(
    peers: Option<&[NetworkPolicyPeer]>,
    ports: Option<&[NetworkPolicyPort]>,
    field: &str,
    peers_field: &str,
    err: &dyn Fn(String, String) -> ModelError,
) -> Result<Rule, ModelError> {
    let mut out = Rule { peers: Vec::new(), ports: Vec::new() };
    for (i, p) in peers.unwrap_or_default().iter().enumerate() {
        let f = format!("{field}.{peers_field}[{i}]");
        let peer = match (&p.ip_block, &p.namespace_selector, &p.pod_selector) {
            (Some(b), None, None) => Peer::IpBlock(ip_block(b, &f, err)?),
            (None, Some(ns), None) => Peer::Namespaces(selector(Some(ns), &(f.clone() + ".namespaceSelector"), err)?),
            (None, None, Some(pods)) => Peer::Pods(selector(Some(pods), &(f.clone() + ".podSelector"), err)?),
            (None, Some(ns), Some(pods)) => Peer::NamespacesAndPods {
                namespaces: selector(Some(ns), &(f.clone() + ".namespaceSelector"), err)?,
                pods: selector(Some(pods), &(f.clone() + ".podSelector"), err)?,
            },
            (None, None, None) => {
                return Err(err(f, "must specify podSelector, namespaceSelector or ipBlock".into()));
            }
            (Some(_), _, _) => {
                return Err(err(f, "ipBlock cannot be combined with podSelector or namespaceSelector".into()));
            }
        };
        out.peers.push(peer);
    }
    for (i, p) in ports.unwrap_or_default().iter().enumerate() {
        let f = format!("{field}.ports[{i}]");
        let protocol = Protocol::parse(p.protocol.as_deref().unwrap_or("TCP"))
            .ok_or_else(|| err(f.clone() + ".protocol", format!("{:?} is not TCP, UDP or SCTP", p.protocol.as_deref().unwrap_or(""))))?;
        let range = |n: i32, what: &str| {
            u16::try_from(n)
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| err(format!("{f}.{what}"), format!("{n} is not between 1 and 65535")))
        };
        let port = match (&p.port, p.end_port) {
            (None, None) => PortRef::All,
            (None, Some(_)) => return Err(err(f + ".endPort", "endPort needs a numeric port".into())),
            (Some(IntOrString::Int(n)), end) => {
                let lo = range(*n, "port")?;
                let hi = match end {
                    Some(e) => range(e, "endPort")?,
                    None => lo,
                };
                if hi < lo {
                    return Err(err(f + ".endPort", format!("{hi} is below port {lo}")));
                }
                PortRef::Range(lo, hi)
            }
            (Some(IntOrString::String(s)), end) => {
                if end.is_some() {
                    return Err(err(f + ".endPort", "endPort cannot be used with a named port".into()));
                }
                // A numeric string is still a number to the API server's IntOrString.
                match s.parse::<i32>() {
                    Ok(n) => PortRef::Range(range(n, "port")?, range(n, "port")?),
                    Err(_) => PortRef::Named(s.clone()),
                }
            }
        };
        out.ports.push(PortSpec { protocol, port });
    }
    Ok(out)
}

fn ip_block(
    b: &k8s_openapi::api::networking::v1::IPBlock,
    field: &str,
    err: &dyn Fn(String, String) -> ModelError,
) -> Result<IpBlock, ModelError> {
    let parse = |s: &str, f: String| {
        s.parse::<IpNet>().map_err(|_| err(f, format!("{s:?} is not a CIDR (expected e.g. 10.0.0.0/16)")))
    };
    let cidr = parse(&b.cidr, format!("{field}.ipBlock.cidr"))?;
    let mut except = Vec::new();
    for (i, e) in b.except.as_deref().unwrap_or_default().iter().enumerate() {
        except.push((e.clone(), parse(e, format!("{field}.ipBlock.except[{i}]"))?));
    }
    Ok(IpBlock { cidr_text: b.cidr.clone(), cidr, except })
}
