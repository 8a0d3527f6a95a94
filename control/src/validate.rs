//! Validating a loaded `Cluster` the way the Kubernetes API server validates the same
//! objects (networking/v1 NetworkPolicy, core/v1 Pod, Namespace and Node metadata), so
//! that palisade never enforces a manifest the cluster itself would have refused.
//!
//! Every error is collected, not just the first; each names the file and document,
//! the object (`Kind ns/name`), the field path (`spec.ingress[0].from[1].ipBlock.except[0]`)
//! and what would be valid. The wording follows the API server's own messages where it
//! has one. A cluster with any error must not be applied (see [`load_valid`]).

use crate::cluster::{Cluster, Source};
use crate::load::{load_dir, LoadError};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::{ContainerPort, Pod};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

/// One thing the API server would refuse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationError {
    /// File and document the object came from.
    pub at: Source,
    /// `Kind ns/name` (or `Kind name` for cluster-scoped kinds).
    pub object: String,
    /// Field path inside the object, e.g. `spec.ingress[0].ports[1].endPort`.
    pub field: String,
    /// What is wrong and what would be valid.
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}: {}", self.at, self.object, self.field, self.message)
    }
}

/// Every validation error of a cluster, in load order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} invalid field{}; nothing was applied:", if n == 1 { "" } else { "s" })?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

/// Loading or validation failed; either way nothing may be applied.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
}

/// Load a manifest directory (or file) and validate it: the cluster, or why not.
pub fn load_valid(dir: &Path) -> Result<Cluster, ManifestError> {
    let cluster = load_dir(dir)?;
    validate(&cluster)?;
    Ok(cluster)
}

/// Check every object as the API server would, and that no object appears twice.
pub fn validate(cluster: &Cluster) -> Result<(), ValidationErrors> {
    let mut v = Validator { errors: Vec::new(), seen: HashMap::new() };
    for ns in &cluster.namespaces {
        v.object("Namespace", false, &ns.object.metadata, &ns.source);
    }
    for node in &cluster.nodes {
        let mut at = v.object("Node", false, &node.object.metadata, &node.source);
        let Some(spec) = &node.object.spec else { continue };
        if let Some(cidr) = spec.pod_cidr.as_deref().filter(|c| parse_cidr(c).is_none()) {
            at.error("spec.podCIDR", invalid_cidr(cidr));
        }
        for (i, cidr) in spec.pod_cidrs.iter().flatten().enumerate() {
            if parse_cidr(cidr).is_none() {
                at.error(&format!("spec.podCIDRs[{i}]"), invalid_cidr(cidr));
            }
        }
    }
    for pod in &cluster.pods {
        let mut at = v.object("Pod", true, &pod.object.metadata, &pod.source);
        check_pod(&mut at, &pod.object);
    }
    for policy in &cluster.policies {
        let mut at = v.object("NetworkPolicy", true, &policy.object.metadata, &policy.source);
        check_policy(&mut at, &policy.object);
    }
    if v.errors.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(v.errors))
    }
}

struct Validator<'c> {
    errors: Vec<ValidationError>,
    /// First source of every (kind, `Kind ns/name`), to report duplicates.
    seen: HashMap<(&'static str, String), &'c Source>,
}

impl<'c> Validator<'c> {
    /// Check an object's metadata and uniqueness; the returned checker takes the
    /// errors of its kind-specific fields.
    fn object(&mut self, kind: &'static str, namespaced: bool, meta: &ObjectMeta, source: &'c Source) -> Checker<'_> {
        let object = object_label(kind, namespaced, meta);
        let first = match meta.name {
            Some(_) => self.seen.get(&(kind, object.clone())).copied(),
            None => None,
        };
        if meta.name.is_some() && first.is_none() {
            self.seen.insert((kind, object.clone()), source);
        }
        let mut at = Checker { errors: &mut self.errors, source, object: object.clone() };
        check_metadata(&mut at, kind, namespaced, meta);
        if let Some(first) = first {
            at.error(
                "metadata.name",
                format!("Duplicate value: {object} is also defined in {first}; each object may appear only once"),
            );
        }
        at
    }
}

/// `Kind ns/name` of an object; a namespaced object without a namespace is in
/// `default`, as `kubectl apply` would put it.
pub fn object_label(kind: &str, namespaced: bool, meta: &ObjectMeta) -> String {
    let name = meta.name.as_deref().unwrap_or("<no name>");
    if namespaced {
        format!("{kind} {}/{name}", meta.namespace.as_deref().unwrap_or("default"))
    } else {
        format!("{kind} {name}")
    }
}

/// Collects errors for one object.
struct Checker<'a> {
    errors: &'a mut Vec<ValidationError>,
    source: &'a Source,
    object: String,
}

impl Checker<'_> {
    fn error(&mut self, field: &str, message: String) {
        self.errors.push(ValidationError {
            at: self.source.clone(),
            object: self.object.clone(),
            field: field.to_string(),
            message,
        });
    }
}

fn check_metadata(at: &mut Checker, kind: &str, namespaced: bool, meta: &ObjectMeta) {
    match meta.name.as_deref() {
        None | Some("") => at.error(
            "metadata.name",
            "Required value: every object needs a name (a lowercase RFC 1123 name such as 'web-1')".into(),
        ),
        // Namespace names are DNS labels; the other kinds' names are DNS subdomains.
        Some(name) if kind == "Namespace" => {
            if let Some(why) = dns_label_error(name) {
                at.error("metadata.name", format!("Invalid value: {name:?}: {why}"));
            }
        }
        Some(name) => {
            if let Some(why) = dns_subdomain_error(name) {
                at.error("metadata.name", format!("Invalid value: {name:?}: {why}"));
            }
        }
    }
    if namespaced {
        if let Some(ns) = meta.namespace.as_deref() {
            if let Some(why) = dns_label_error(ns) {
                at.error("metadata.namespace", format!("Invalid value: {ns:?}: {why}"));
            }
        }
    }
    if let Some(labels) = &meta.labels {
        check_labels(at, "metadata.labels", labels);
    }
}

fn check_labels(at: &mut Checker, field: &str, labels: &BTreeMap<String, String>) {
    for (key, value) in labels {
        if let Some(why) = label_key_error(key) {
            at.error(field, format!("Invalid value: {key:?}: {why}"));
        }
        if let Some(why) = label_value_error(value) {
            at.error(&format!("{field}[{key}]"), format!("Invalid value: {value:?}: {why}"));
        }
    }
}

fn check_selector(at: &mut Checker, field: &str, selector: &LabelSelector) {
    if let Some(labels) = &selector.match_labels {
        check_labels(at, &format!("{field}.matchLabels"), labels);
    }
    for (i, req) in selector.match_expressions.iter().flatten().enumerate() {
        let f = format!("{field}.matchExpressions[{i}]");
        if let Some(why) = label_key_error(&req.key) {
            at.error(&format!("{f}.key"), format!("Invalid value: {:?}: {why}", req.key));
        }
        let values = req.values.as_deref().unwrap_or_default();
        match req.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => at.error(
                &format!("{f}.values"),
                format!("Required value: must be specified when `operator` is 'In' or 'NotIn' (got {:?})", req.operator),
            ),
            "Exists" | "DoesNotExist" if !values.is_empty() => at.error(
                &format!("{f}.values"),
                format!("Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist' (got {:?})", req.operator),
            ),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => at.error(
                &format!("{f}.operator"),
                format!("Unsupported value: {other:?}: supported values: \"In\", \"NotIn\", \"Exists\", \"DoesNotExist\""),
            ),
        }
        for (j, value) in values.iter().enumerate() {
            if let Some(why) = label_value_error(value) {
                at.error(&format!("{f}.values[{j}]"), format!("Invalid value: {value:?}: {why}"));
            }
        }
    }
}

fn check_pod(at: &mut Checker, pod: &Pod) {
    if let Some(spec) = &pod.spec {
        let containers = spec.containers.iter().map(|c| ("containers", c));
        let init = spec.init_containers.iter().flatten().map(|c| ("initContainers", c));
        let counters = &mut HashMap::<&str, usize>::new();
        for (list, container) in containers.chain(init) {
            let idx = counters.entry(list).or_insert(0);
            let field = format!("spec.{list}[{idx}]");
            *idx += 1;
            check_container_ports(at, &field, container.ports.as_deref().unwrap_or_default());
        }
    }
    let Some(status) = &pod.status else { return };
    let mut ips = Vec::new();
    if let Some(ip) = &status.pod_ip {
        match ip.parse::<IpAddr>() {
            Ok(addr) => ips.push(("status.podIP".to_string(), addr)),
            Err(_) => at.error("status.podIP", invalid_ip(ip)),
        }
    }
    let pod_ips = status.pod_ips.as_deref().unwrap_or_default();
    let mut families = Vec::new();
    for (i, entry) in pod_ips.iter().enumerate() {
        let field = format!("status.podIPs[{i}].ip");
        if i == 0 && status.pod_ip.as_ref().is_some_and(|p| p != &entry.ip && p.parse::<IpAddr>().is_ok()) {
            at.error(
                &field,
                format!("Invalid value: {:?}: must match status.podIP {:?}", entry.ip, status.pod_ip.as_deref().unwrap_or_default()),
            );
        }
        match entry.ip.parse::<IpAddr>() {
            Ok(addr) => {
                if families.contains(&addr.is_ipv4()) {
                    at.error(&field, format!("Invalid value: {:?}: may specify no more than one IP for each IP family", entry.ip));
                }
                families.push(addr.is_ipv4());
            }
            Err(_) => at.error(&field, invalid_ip(&entry.ip)),
        }
    }
}

fn check_container_ports(at: &mut Checker, field: &str, ports: &[ContainerPort]) {
    let mut names = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let f = format!("{field}.ports[{i}]");
        if let Some(name) = &port.name {
            if let Some(why) = port_name_error(name) {
                at.error(&format!("{f}.name"), format!("Invalid value: {name:?}: {why}"));
            } else if names.contains(name) {
                at.error(&format!("{f}.name"), format!("Duplicate value: {name:?}: port names must be unique within a container"));
            }
            names.push(name.clone());
        }
        if !(1..=65535).contains(&port.container_port) {
            at.error(&format!("{f}.containerPort"), port_range(port.container_port));
        }
        if let Some(host_port) = port.host_port {
            if !(1..=65535).contains(&host_port) {
                at.error(&format!("{f}.hostPort"), port_range(host_port));
            }
        }
        if let Some(protocol) = &port.protocol {
            check_protocol(at, &format!("{f}.protocol"), protocol);
        }
    }
}

fn check_policy(at: &mut Checker, policy: &NetworkPolicy) {
    let Some(spec) = &policy.spec else { return };
    if let Some(selector) = &spec.pod_selector {
        check_selector(at, "spec.podSelector", selector);
    }
    for (i, rule) in spec.ingress.iter().flatten().enumerate() {
        let field = format!("spec.ingress[{i}]");
        check_ports(at, &field, rule.ports.as_deref().unwrap_or_default());
        check_peers(at, &format!("{field}.from"), rule.from.as_deref().unwrap_or_default());
    }
    for (i, rule) in spec.egress.iter().flatten().enumerate() {
        let field = format!("spec.egress[{i}]");
        check_ports(at, &field, rule.ports.as_deref().unwrap_or_default());
        check_peers(at, &format!("{field}.to"), rule.to.as_deref().unwrap_or_default());
    }
    let types = spec.policy_types.as_deref().unwrap_or_default();
    for (i, t) in types.iter().enumerate() {
        if t != "Ingress" && t != "Egress" {
            at.error(
                &format!("spec.policyTypes[{i}]"),
                format!("Unsupported value: {t:?}: supported values: \"Ingress\", \"Egress\""),
            );
        }
    }
    if types.len() > 2 {
        at.error(
            "spec.policyTypes",
            format!("Invalid value: {types:?}: may not specify more than two policyTypes"),
        );
    }
}

fn check_ports(at: &mut Checker, field: &str, ports: &[NetworkPolicyPort]) {
    for (i, port) in ports.iter().enumerate() {
        let f = format!("{field}.ports[{i}]");
        if let Some(protocol) = &port.protocol {
            check_protocol(at, &format!("{f}.protocol"), protocol);
        }
        match &port.port {
            Some(IntOrString::Int(n)) if !(1..=65535).contains(n) => {
                at.error(&format!("{f}.port"), port_range(*n))
            }
            Some(IntOrString::String(name)) => {
                if let Some(why) = port_name_error(name) {
                    at.error(&format!("{f}.port"), format!("Invalid value: {name:?}: {why}"));
                }
            }
            _ => {}
        }
        let Some(end) = port.end_port else { continue };
        let ef = format!("{f}.endPort");
        match &port.port {
            None => at.error(&ef, "Required value: may not be specified when `port` is not specified".into()),
            Some(IntOrString::String(_)) => at.error(
                &ef,
                "Forbidden: may not be specified when `port` is non-numeric (a named port); give `port` as a number".into(),
            ),
            Some(IntOrString::Int(start)) if end < *start => at.error(
                &ef,
                format!("Invalid value: {end}: must be greater than or equal to `port` ({start})"),
            ),
            Some(IntOrString::Int(_)) if !(1..=65535).contains(&end) => at.error(&ef, port_range(end)),
            Some(IntOrString::Int(_)) => {}
        }
    }
}

fn check_peers(at: &mut Checker, field: &str, peers: &[NetworkPolicyPeer]) {
    for (i, peer) in peers.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let selectors = peer.pod_selector.is_some() || peer.namespace_selector.is_some();
        match (&peer.ip_block, selectors) {
            (None, false) => at.error(
                &f,
                "Required value: must specify a peer (podSelector, namespaceSelector or ipBlock)".into(),
            ),
            (Some(_), true) => at.error(
                &f,
                "Forbidden: may not specify more than 1 peer: ipBlock cannot be combined with podSelector or namespaceSelector; write them as separate peers".into(),
            ),
            _ => {}
        }
        if let Some(selector) = &peer.pod_selector {
            check_selector(at, &format!("{f}.podSelector"), selector);
        }
        if let Some(selector) = &peer.namespace_selector {
            check_selector(at, &format!("{f}.namespaceSelector"), selector);
        }
        let Some(block) = &peer.ip_block else { continue };
        let cf = format!("{f}.ipBlock.cidr");
        let cidr = parse_cidr(&block.cidr);
        if cidr.is_none() {
            at.error(&cf, invalid_cidr(&block.cidr));
        }
        for (j, except) in block.except.iter().flatten().enumerate() {
            let ef = format!("{f}.ipBlock.except[{j}]");
            match (parse_cidr(except), cidr) {
                (None, _) => at.error(&ef, invalid_cidr(except)),
                (Some(e), Some(c)) if !strictly_inside(e, c) => at.error(
                    &ef,
                    format!(
                        "Invalid value: {except:?}: must be a strict subset of `cidr` {:?} (a longer prefix inside {})",
                        block.cidr,
                        c.trunc()
                    ),
                ),
                _ => {}
            }
        }
    }
}

fn check_protocol(at: &mut Checker, field: &str, protocol: &str) {
    if !matches!(protocol, "TCP" | "UDP" | "SCTP") {
        at.error(
            field,
            format!("Unsupported value: {protocol:?}: supported values: \"TCP\", \"UDP\", \"SCTP\""),
        );
    }
}

/// A CIDR as the API server accepts it: address/prefix, host bits allowed (the block
/// is then the whole network).
pub fn parse_cidr(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>().ok()
}

fn strictly_inside(inner: IpNet, outer: IpNet) -> bool {
    outer.trunc().contains(&inner.network()) && inner.prefix_len() > outer.prefix_len()
        && inner.addr().is_ipv4() == outer.addr().is_ipv4()
}

fn invalid_cidr(text: &str) -> String {
    format!("Invalid value: {text:?}: must be a valid CIDR, an address and prefix length such as \"10.0.0.0/16\" or \"fd00::/64\"")
}

fn invalid_ip(text: &str) -> String {
    format!("Invalid value: {text:?}: must be a valid IP address, e.g. \"10.9.8.7\" or \"2001:db8::ffff\"")
}

fn port_range(n: i32) -> String {
    format!("Invalid value: {n}: must be between 1 and 65535, inclusive")
}

// ---- name grammars (k8s.io/apimachinery/pkg/util/validation) ----

fn is_alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_label_name_chars(s: &str) -> bool {
    let (Some(first), Some(last)) = (s.chars().next(), s.chars().last()) else {
        return false;
    };
    is_alnum(first)
        && is_alnum(last)
        && s.chars().all(|c| is_alnum(c) || matches!(c, '-' | '_' | '.'))
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn is_dns_label_chars(s: &str) -> bool {
    let (Some(first), Some(last)) = (s.chars().next(), s.chars().last()) else {
        return false;
    };
    is_lower_alnum(first) && is_lower_alnum(last) && s.chars().all(|c| is_lower_alnum(c) || c == '-')
}

const LABEL_NAME_RULE: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName', 'my.name' or '123-abc')";
const DNS_SUBDOMAIN_RULE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')";
const DNS_LABEL_RULE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name' or '123-abc')";

/// Why `name` is not a DNS-1123 label (≤ 63), or `None` if it is one.
pub fn dns_label_error(name: &str) -> Option<String> {
    if name.len() > 63 {
        Some("must be no more than 63 characters".into())
    } else if !is_dns_label_chars(name) {
        Some(DNS_LABEL_RULE.into())
    } else {
        None
    }
}

/// Why `name` is not a DNS-1123 subdomain (≤ 253, dot-separated labels).
pub fn dns_subdomain_error(name: &str) -> Option<String> {
    if name.len() > 253 {
        Some("must be no more than 253 characters".into())
    } else if !name.split('.').all(is_dns_label_chars) {
        Some(DNS_SUBDOMAIN_RULE.into())
    } else {
        None
    }
}

/// Why `key` is not a valid label key (a qualified name: optional DNS-subdomain prefix
/// and `/`, then a name of ≤ 63 alphanumerics, `-`, `_`, `.`).
pub fn label_key_error(key: &str) -> Option<String> {
    let parts: Vec<&str> = key.split('/').collect();
    let name = match parts.as_slice() {
        [name] => name,
        [prefix, name] => {
            if prefix.is_empty() {
                return Some("prefix part must be non-empty".into());
            }
            if let Some(why) = dns_subdomain_error(prefix) {
                return Some(format!("prefix part {why}"));
            }
            name
        }
        _ => {
            return Some(format!(
                "a qualified name {LABEL_NAME_RULE}, with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            ))
        }
    };
    if name.is_empty() {
        Some("name part must be non-empty".into())
    } else if name.len() > 63 {
        Some("name part must be no more than 63 characters".into())
    } else if !is_label_name_chars(name) {
        Some(format!("name part {LABEL_NAME_RULE}"))
    } else {
        None
    }
}

/// Why `value` is not a valid label value (empty, or ≤ 63 of the label-name grammar).
pub fn label_value_error(value: &str) -> Option<String> {
    if value.len() > 63 {
        Some("must be no more than 63 characters".into())
    } else if !value.is_empty() && !is_label_name_chars(value) {
        Some("a valid label value must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue', 'my_value' or '12345')".into())
    } else {
        None
    }
}

/// Why `name` is not an IANA service name (the only names a port may have), in the
/// API server's words.
pub fn port_name_error(name: &str) -> Option<String> {
    let why = if name.is_empty() || name.len() > 15 {
        "must be 1 to 15 characters"
    } else if !name.chars().all(|c| is_lower_alnum(c) || c == '-') {
        "must contain only lowercase letters (a-z), digits (0-9) and hyphens (-)"
    } else if !name.chars().any(|c| c.is_ascii_lowercase()) {
        "must contain at least one letter (a-z)"
    } else if name.contains("--") {
        "must not contain consecutive hyphens"
    } else if name.starts_with('-') || name.ends_with('-') {
        "must not begin or end with a hyphen"
    } else {
        return None;
    };
    Some(format!("{why}: a port name is an IANA service name (e.g. 'http', 'dns-tcp')"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_names() {
        for ok in ["http", "dns-tcp", "a", "h2c", "x-1-y", "abcdefghijklmno"] {
            assert_eq!(port_name_error(ok), None, "{ok}");
        }
        for bad in ["", "80", "HTTP", "-http", "http-", "ht--tp", "abcdefghijklmnop", "ht_tp", "ht.tp"] {
            assert!(port_name_error(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn label_keys_and_values() {
        for ok in ["app", "App.Name_1", "example.com/app", "kubernetes.io/metadata.name", &"a".repeat(63)] {
            assert_eq!(label_key_error(ok), None, "{ok}");
        }
        let long_prefix = format!("{}/a", "a".repeat(254));
        for bad in ["", "/app", "example.com/", "a/b/c", "-app", "app-", "Example.com/app", "a b", &"a".repeat(64), &long_prefix] {
            assert!(label_key_error(bad).is_some(), "{bad}");
        }
        for ok in ["", "v1", "a.b_c-D", &"z".repeat(63)] {
            assert_eq!(label_value_error(ok), None, "{ok}");
        }
        for bad in ["-a", "a-", "a/b", "a b", &"z".repeat(64)] {
            assert!(label_value_error(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn cidr_containment() {
        let c = |s: &str| parse_cidr(s).unwrap();
        assert!(strictly_inside(c("172.17.1.0/24"), c("172.17.0.0/16")));
        assert!(strictly_inside(c("172.17.1.0/24"), c("172.17.9.9/16")));
        assert!(!strictly_inside(c("172.17.0.0/16"), c("172.17.0.0/16")));
        assert!(!strictly_inside(c("172.18.0.0/24"), c("172.17.0.0/16")));
        assert!(!strictly_inside(c("::/128"), c("0.0.0.0/0")));
        assert!(strictly_inside(c("fd00::1/128"), c("fd00::/64")));
        assert!(parse_cidr("10.0.0.1").is_none());
        assert!(parse_cidr("10.0.0.0/33").is_none());
    }
}
