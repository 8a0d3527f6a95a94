//! Reading manifests into a `Cluster`.
//!
//! A policy directory is read recursively: every `.yaml`, `.yml` and `.json` file, in
//! path order, each possibly holding several YAML documents or a `kind: List` (as
//! `kubectl get -o yaml` writes it). Namespace, Pod, Node (`v1`) and NetworkPolicy
//! (`networking.k8s.io/v1`) become k8s-openapi objects; every other kind is skipped
//! with a debug line. Like `kubectl apply` (strict field validation), a field the API
//! does not define is an error rather than silently dropped: a typo such as `ingres:`
//! would otherwise turn an allow-list into a deny-all. That strictness covers top-level
//! keys, `metadata` and a NetworkPolicy's `spec`; the rest of Pods and Nodes is written
//! by the cluster and may carry fields of a newer Kubernetes, which are ignored.
//!
//! Loading is all or nothing: the first error aborts and no partial cluster escapes.
//! Semantic checks (CIDRs, ports, selectors, duplicates) are `validate`'s job.

use crate::cluster::{Cluster, Namespace, NetworkPolicy, Node, Pod, Source, Sourced};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// Why a policy source could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file or directory could not be read.
    #[error("{}: cannot read: {err}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        err: std::io::Error,
    },
    /// A document is not YAML/JSON, not a Kubernetes object, or not the object it
    /// claims to be.
    #[error("{at}: {message}")]
    Parse { at: Location, message: String },
}

/// Where a parse error is: file, YAML document and, inside a `kind: List`, the item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    /// 0-based YAML document index.
    pub doc: usize,
    /// 0-based index in the document's `items`, when the document is a list.
    pub item: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (document {}", self.file.display(), self.doc + 1)?;
        if let Some(item) = self.item {
            write!(f, ", item {} of the List", item + 1)?;
        }
        f.write_str(")")
    }
}

/// Load every `.yaml`/`.yml`/`.json` file under `dir`, recursively, in path order.
/// `dir` may also be a single manifest file. Entries whose name starts with `.` are
/// skipped: a Kubernetes ConfigMap volume holds every file three times (the visible
/// symlink, `..data/` and a `..<timestamp>/` directory), and editors leave dot-files.
pub fn load_dir(dir: &Path) -> Result<Cluster, LoadError> {
    let mut cluster = Cluster::default();
    for file in manifest_files(dir)? {
        cluster.append(load_file(&file)?);
    }
    Ok(cluster)
}

/// The manifest files [`load_dir`] reads, in the order it reads them.
pub fn manifest_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let meta = std::fs::metadata(dir).map_err(|err| LoadError::Read { path: dir.to_path_buf(), err })?;
    let mut files = Vec::new();
    if meta.is_dir() {
        let mut visited = HashSet::new();
        collect_manifest_files(dir, &mut files, &mut visited)?;
        files.sort();
    } else {
        files.push(dir.to_path_buf());
    }
    Ok(files)
}

/// Load one manifest file.
pub fn load_file(file: &Path) -> Result<Cluster, LoadError> {
    let text = std::fs::read_to_string(file).map_err(|err| LoadError::Read { path: file.to_path_buf(), err })?;
    load_str(&text, file)
}

fn is_manifest_name(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// Depth-first walk following symlinks; `visited` (canonical paths) breaks cycles.
fn collect_manifest_files(
    dir: &Path,
    files: &mut Vec<PathBuf>,
    visited: &mut HashSet<PathBuf>,
) -> Result<(), LoadError> {
    let read_err = |err| LoadError::Read { path: dir.to_path_buf(), err };
    let canonical = std::fs::canonicalize(dir).map_err(read_err)?;
    if !visited.insert(canonical) {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let meta = std::fs::metadata(&path)
            .map_err(|err| LoadError::Read { path: path.clone(), err })?;
        if meta.is_dir() {
            collect_manifest_files(&path, files, visited)?;
        } else if meta.is_file() && is_manifest_name(&path) {
            files.push(path);
        }
    }
    Ok(())
}

/// Load one file's text (multi-document YAML, JSON, or `kind: List`); `file` is the
/// name used in `Source` and in errors. JSON is read by the same YAML parser (JSON is
/// YAML's flow style), so both get errors with a field path, line and column.
///
/// `Source::doc` is the YAML document index in a plain multi-document file and the
/// item index in a file holding one `kind: List`; in a file mixing both it counts
/// objects in file order, so each object still has its own number. (Parse errors name
/// document and item separately, see [`Location`].)
pub fn load_str(text: &str, file: &Path) -> Result<Cluster, LoadError> {
    let at = |doc, item| Location { file: file.to_path_buf(), doc, item };
    // Pass 1: every document as a generic tree, to read kind/apiVersion and to find
    // unknown fields later.
    let mut documents = Vec::new();
    for (doc, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(de).map_err(|e| LoadError::Parse {
            at: at(doc, None),
            message: format!("not valid YAML or JSON: {e}"),
        })?;
        documents.push(value);
    }
    // Pass 2: typed decoding straight from the text where possible, so that a type
    // error carries the field path and the line.
    let mut cluster = Cluster::default();
    // Items of earlier lists beyond the first, so a plain document keeps its index.
    let mut extra_items = 0;
    let typed = serde_yaml_ng::Deserializer::from_str(text);
    for ((doc, value), de) in documents.iter().enumerate().zip(typed) {
        let object = match value {
            Value::Null => continue, // an empty document, e.g. a trailing `---`
            Value::Object(object) => object,
            other => {
                return Err(LoadError::Parse {
                    at: at(doc, None),
                    message: format!(
                        "expected a Kubernetes object (a mapping with apiVersion and kind), found {}",
                        json_type(other)
                    ),
                })
            }
        };
        let header = Header::of(object).map_err(|message| LoadError::Parse { at: at(doc, None), message })?;
        if let Some(item_kind) = header.list_item_kind() {
            let items = match object.get("items") {
                Some(Value::Array(items)) => items.as_slice(),
                None | Some(Value::Null) => &[],
                Some(other) => {
                    return Err(LoadError::Parse {
                        at: at(doc, None),
                        message: format!(
                            "{}: items: expected a sequence of objects, found {}",
                            header.kind,
                            json_type(other)
                        ),
                    })
                }
            };
            for (i, item) in items.iter().enumerate() {
                let item = with_default_header(item, &header.api_version, item_kind);
                let source = Source { file: file.to_path_buf(), doc: doc + extra_items + i };
                add_object(&mut cluster, &item, None, source)
                    .map_err(|message| LoadError::Parse { at: at(doc, Some(i)), message })?;
            }
            extra_items += items.len().saturating_sub(1);
        } else {
            let source = Source { file: file.to_path_buf(), doc: doc + extra_items };
            add_object(&mut cluster, value, Some(de), source)
                .map_err(|message| LoadError::Parse { at: at(doc, None), message })?;
        }
    }
    Ok(cluster)
}

/// `apiVersion` and `kind` of a document.
struct Header {
    api_version: String,
    kind: String,
}

impl Header {
    fn of(object: &serde_json::Map<String, Value>) -> Result<Header, String> {
        let field = |name: &str| match object.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(other) if !other.is_null() => Err(format!(
                "{name}: expected a string, found {}",
                json_type(other)
            )),
            _ => Err(format!(
                "missing {name}: expected a Kubernetes object with apiVersion and kind \
                 (e.g. apiVersion: networking.k8s.io/v1, kind: NetworkPolicy)"
            )),
        };
        Ok(Header { api_version: field("apiVersion")?, kind: field("kind")? })
    }

    /// For `kind: List` (kubectl) or `kind: PodList` etc. (the API), the kind its items
    /// default to (`""` when every item must name its own).
    fn list_item_kind(&self) -> Option<&str> {
        if self.kind == "List" {
            Some("")
        } else {
            self.kind.strip_suffix("List").filter(|k| !k.is_empty())
        }
    }
}

/// An item of a typed list (`PodList`) may omit apiVersion/kind: fill in the list's.
fn with_default_header(item: &Value, api_version: &str, kind: &str) -> Value {
    let mut item = item.clone();
    if let Value::Object(object) = &mut item {
        if !kind.is_empty() {
            object.entry("kind").or_insert_with(|| Value::String(kind.to_string()));
            object
                .entry("apiVersion")
                .or_insert_with(|| Value::String(api_version.to_string()));
        }
    }
    item
}

/// Decode one object into its typed form and append it to `cluster`, or skip it if it
/// is a kind palisade does not use. `de`, when given, is the same document again, for
/// errors with path and line.
fn add_object(
    cluster: &mut Cluster,
    value: &Value,
    de: Option<serde_yaml_ng::Deserializer<'_>>,
    source: Source,
) -> Result<(), String> {
    let object = match value {
        Value::Object(object) => object,
        other => {
            return Err(format!(
                "expected a Kubernetes object (a mapping with apiVersion and kind), found {}",
                json_type(other)
            ))
        }
    };
    let header = Header::of(object)?;
    let expected_api = match header.kind.as_str() {
        "Namespace" | "Pod" | "Node" => "v1",
        "NetworkPolicy" => "networking.k8s.io/v1",
        _ => {
            tracing::debug!(
                file = %source.file.display(),
                doc = source.doc,
                kind = %header.kind,
                api_version = %header.api_version,
                "skipping a kind palisade does not use"
            );
            return Ok(());
        }
    };
    let label = object_label(&header.kind, object);
    if header.api_version != expected_api {
        return Err(format!(
            "{label}: apiVersion {}: palisade reads {} as apiVersion {expected_api}",
            header.api_version, header.kind
        ));
    }
    let with_label = |message: String| format!("{label}: {message}");
    match header.kind.as_str() {
        "Namespace" => cluster.namespaces.push(Sourced {
            object: decode::<Namespace>(value, de).map_err(with_label)?,
            source,
        }),
        "Pod" => cluster.pods.push(Sourced {
            object: decode::<Pod>(value, de).map_err(with_label)?,
            source,
        }),
        "Node" => cluster.nodes.push(Sourced {
            object: decode::<Node>(value, de).map_err(with_label)?,
            source,
        }),
        _ => cluster.policies.push(Sourced {
            object: decode::<NetworkPolicy>(value, de).map_err(with_label)?,
            source,
        }),
    }
    Ok(())
}

/// `Kind ns/name` (or `Kind name`) as far as the raw object tells.
fn object_label(kind: &str, object: &serde_json::Map<String, Value>) -> String {
    let meta = object.get("metadata");
    let get = |field: &str| meta.and_then(|m| m.get(field)).and_then(Value::as_str);
    // Namespaced kinds without a namespace land in `default`, as with `kubectl apply`.
    let namespace = get("namespace").or(matches!(kind, "Pod" | "NetworkPolicy").then_some("default"));
    match (namespace, get("name")) {
        (Some(ns), Some(name)) => format!("{kind} {ns}/{name}"),
        (None, Some(name)) => format!("{kind} {name}"),
        _ => kind.to_string(),
    }
}

fn decode<T: DeserializeOwned + Serialize + k8s_openapi::Resource>(
    value: &Value,
    de: Option<serde_yaml_ng::Deserializer<'_>>,
) -> Result<T, String> {
    let object: T = match de {
        Some(de) => T::deserialize(de).map_err(|e| e.to_string())?,
        None => serde_json::from_value(value.clone()).map_err(|_| {
            // The tree has no positions; re-read it as YAML text for the field path.
            let text = serde_yaml_ng::to_string(value).unwrap_or_default();
            match serde_yaml_ng::from_str::<T>(&text) {
                Err(e) => strip_position(&e.to_string()),
                Ok(_) => "does not match the object's schema".to_string(),
            }
        })?,
    };
    let known = serde_json::to_value(&object).map_err(|e| e.to_string())?;
    let mut unknown = Vec::new();
    unknown_fields(value, &known, &mut String::new(), &mut unknown);
    // Strict where people write and policy depends: top-level keys, metadata (labels)
    // and a NetworkPolicy's spec. Elsewhere (a Pod's or Node's spec and status, written
    // by the cluster) a field from a newer Kubernetes than k8s-openapi knows is fine.
    let (strict, lenient): (Vec<String>, Vec<String>) = unknown.into_iter().partition(|path| {
        !path.contains(['.', '[']) || path.starts_with("metadata.") || (T::KIND == "NetworkPolicy" && path.starts_with("spec."))
    });
    if !lenient.is_empty() {
        tracing::debug!(kind = T::KIND, fields = %lenient.join(", "), "ignoring fields palisade's API version does not know");
    }
    let unknown = strict;
    if !unknown.is_empty() {
        return Err(format!(
            "unknown field{} {}: not part of the Kubernetes API (check the spelling and indentation)",
            if unknown.len() > 1 { "s" } else { "" },
            unknown.join(", ")
        ));
    }
    Ok(object)
}

/// Positions in an error about re-serialized text would point at the wrong lines.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Paths present (and non-null) in `original` but absent from `known`, the typed
/// object serialized back: those are fields the typed model dropped.
fn unknown_fields(original: &Value, known: &Value, path: &mut String, out: &mut Vec<String>) {
    match (original, known) {
        (Value::Object(orig), Value::Object(known)) => {
            for (key, value) in orig {
                if value.is_null() {
                    continue;
                }
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                match known.get(key) {
                    Some(known_value) => unknown_fields(value, known_value, path, out),
                    None => out.push(path.clone()),
                }
                path.truncate(len);
            }
        }
        (Value::Array(orig), Value::Array(known)) => {
            for (i, (value, known_value)) in orig.iter().zip(known).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                unknown_fields(value, known_value, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Cluster, String> {
        load_str(text, Path::new("m.yaml")).map_err(|e| e.to_string())
    }

    #[test]
    fn multi_document_yaml_keeps_order_and_sources() {
        let c = load(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: dev}\n---\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\n\
             apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: dev}\n",
        )
        .unwrap();
        assert_eq!(c.namespaces.len(), 1);
        assert_eq!(c.pods.len(), 1);
        assert_eq!(c.pods[0].source, Source { file: "m.yaml".into(), doc: 3 });
    }

    #[test]
    fn kubectl_list_and_typed_list() {
        let c = load(
            "apiVersion: v1\nkind: List\nitems:\n\
             - {apiVersion: v1, kind: Pod, metadata: {name: a, namespace: dev}}\n\
             - {apiVersion: v1, kind: Service, metadata: {name: s, namespace: dev}}\n\
             - {apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: p, namespace: dev}, spec: {podSelector: {}}}\n\
             ---\napiVersion: v1\nkind: PodList\nitems:\n- {metadata: {name: b, namespace: dev}}\n",
        )
        .unwrap();
        assert_eq!(c.pods.len(), 2);
        assert_eq!(c.policies.len(), 1);
        assert_eq!(c.policies[0].source.doc, 2);
        assert_eq!(c.pods[1].object.metadata.name.as_deref(), Some("b"));
    }

    #[test]
    fn kubectl_output_with_cluster_written_fields_loads() {
        let c = load(
            "apiVersion: v1\nkind: List\nmetadata: {resourceVersion: \"\"}\nitems:\n\
             - apiVersion: v1\n  kind: Pod\n  metadata:\n    name: a\n    namespace: dev\n    uid: 0f5c\n\
             \x20   creationTimestamp: \"2026-11-23T10:00:00Z\"\n    resourceVersion: \"42\"\n\
             \x20   ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: a-1, uid: x, controller: true}]\n\
             \x20   managedFields: [{manager: kubelet, operation: Update, apiVersion: v1, fieldsType: FieldsV1, fieldsV1: {f:status: {}}}]\n\
             \x20 spec:\n    containers: [{name: c, image: i, futureContainerField: 1}]\n    futureSpecField: {x: 1}\n\
             \x20 status:\n    phase: Running\n    podIP: 10.0.0.1\n    futureStatusField: [1, 2]\n",
        )
        .unwrap();
        assert_eq!(c.pods.len(), 1);
        let typo = load("apiVersion: v1\nkind: Pod\nmetdata: {name: a}\n").unwrap_err();
        assert_eq!(typo, "m.yaml (document 1): Pod: unknown field metdata: not part of the Kubernetes API (check the spelling and indentation)");
        let label_typo = load("apiVersion: v1\nkind: Pod\nmetadata: {name: a, label: {app: x}}\n").unwrap_err();
        assert_eq!(label_typo, "m.yaml (document 1): Pod default/a: unknown field metadata.label: not part of the Kubernetes API (check the spelling and indentation)");
    }

    #[test]
    fn json_file() {
        let c = load_str(
            "{\n\t\"apiVersion\": \"v1\", \"kind\": \"Pod\",\n\t\"metadata\": {\"name\": \"a\\/b\", \"namespace\": \"dev\"}}",
            Path::new("p.json"),
        )
        .unwrap();
        assert_eq!(c.pods[0].object.metadata.name.as_deref(), Some("a/b"));
    }

    #[test]
    fn errors_name_file_document_object_and_field() {
        let cases: &[(&str, &str)] = &[
            (
                "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n\
                 apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\n  namespace: dev\n\
                 spec:\n  podSelector: {}\n  ingress:\n  - ports:\n    - port: [1]\n",
                "m.yaml (document 2): NetworkPolicy dev/p: spec.ingress[0].ports[0].port: invalid type: sequence, expected IntOrString at line 14 column 13",
            ),
            (
                "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: dev}\n\
                 spec:\n  podSelector: {}\n  ingres:\n  - {}\n",
                "m.yaml (document 1): NetworkPolicy dev/p: unknown field spec.ingres: not part of the Kubernetes API (check the spelling and indentation)",
            ),
            (
                "apiVersion: extensions/v1beta1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: dev}\n",
                "m.yaml (document 1): NetworkPolicy dev/p: apiVersion extensions/v1beta1: palisade reads NetworkPolicy as apiVersion networking.k8s.io/v1",
            ),
            (
                "kind: Pod\nmetadata: {name: a}\n",
                "m.yaml (document 1): missing apiVersion: expected a Kubernetes object with apiVersion and kind (e.g. apiVersion: networking.k8s.io/v1, kind: NetworkPolicy)",
            ),
            ("- a\n- b\n", "m.yaml (document 1): expected a Kubernetes object (a mapping with apiVersion and kind), found a sequence"),
            ("a: [\n", "m.yaml (document 1): not valid YAML or JSON: did not find expected node content at line 2 column 1, while parsing a flow node"),
            (
                "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: a, namespace: dev}, spec: {containers: [{name: c, ports: [{containerPort: x}]}]}}\n",
                "m.yaml (document 1, item 1 of the List): Pod dev/a: spec.containers[0].ports[0].containerPort: invalid type: string \"x\", expected i32",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(load(text).err().as_deref(), Some(*want), "for {text}");
        }
    }

    #[test]
    fn directory_is_read_recursively_in_path_order_skipping_dot_entries() {
        let dir = tempfile::tempdir().unwrap();
        let pod = |name: &str| format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: dev}}\n");
        std::fs::create_dir_all(dir.path().join("b/c")).unwrap();
        std::fs::create_dir_all(dir.path().join("..data")).unwrap();
        std::fs::write(dir.path().join("b/c/z.yml"), pod("bcz")).unwrap();
        std::fs::write(dir.path().join("b/a.json"), pod("ba")).unwrap();
        std::fs::write(dir.path().join("a.yaml"), pod("a")).unwrap();
        std::fs::write(dir.path().join("c.txt"), "not: [yaml").unwrap();
        std::fs::write(dir.path().join("..data/a.yaml"), pod("hidden")).unwrap();
        let c = load_dir(dir.path()).unwrap();
        let names: Vec<_> = c.pods.iter().map(|p| p.object.metadata.name.clone().unwrap()).collect();
        assert_eq!(names, ["a", "ba", "bcz"]);
    }
}
