//! The kubectl watch feed: `kubectl get namespaces,pods,nodes,networkpolicies -A
//! --watch --output-watch-events -o json` prints a stream of concatenated JSON objects
//! `{"type": "ADDED"|"MODIFIED"|"DELETED"|"BOOKMARK"|"ERROR", "object": {...}}`.
//! `ClusterStore` applies those events to a keyed store and hands out the resulting
//! `Cluster`, so a real cluster feeds the same load → validate → compile path as a
//! manifest directory.
//!
//! Owns: event decoding and the keyed store. Must not touch: compilation or publishing.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cluster::{Cluster, Namespace, NetworkPolicy, Node, Pod, Source, Sourced};

/// The `file` every stream object's `Source` names.
pub const STREAM_SOURCE: &str = "<watch-stream>";

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("{source_name}: event {event}: not valid JSON: {err}")]
    Json { source_name: String, event: usize, err: serde_json::Error },
    #[error("{source_name}: event {event}: field `{field}`: {problem}")]
    Event { source_name: String, event: usize, field: &'static str, problem: String },
}

/// What kind of change an event made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

/// The kinds palisade watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Namespace,
    Node,
    Pod,
    NetworkPolicy,
}

/// One decoded event about a kind palisade cares about.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    Namespace(Namespace),
    Node(Node),
    Pod(Pod),
    NetworkPolicy(NetworkPolicy),
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Namespace(_) => Kind::Namespace,
            Object::Node(_) => Kind::Node,
            Object::Pod(_) => Kind::Pod,
            Object::NetworkPolicy(_) => Kind::NetworkPolicy,
        }
    }

    /// Append this object, from `source`, to `cluster`.
    pub fn push_into(&self, cluster: &mut Cluster, source: Source) {
        match self {
            Object::Namespace(o) => cluster.namespaces.push(Sourced { object: o.clone(), source }),
            Object::Node(o) => cluster.nodes.push(Sourced { object: o.clone(), source }),
            Object::Pod(o) => cluster.pods.push(Sourced { object: o.clone(), source }),
            Object::NetworkPolicy(o) => cluster.policies.push(Sourced { object: o.clone(), source }),
        }
    }

    pub fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        match self {
            Object::Namespace(o) => &o.metadata,
            Object::Node(o) => &o.metadata,
            Object::Pod(o) => &o.metadata,
            Object::NetworkPolicy(o) => &o.metadata,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Event {
    pub kind: EventType,
    pub object: Object,
    /// 0-based position of the event in the stream.
    pub index: usize,
}

/// Decodes one event value; `Ok(None)` for events that change nothing palisade keeps
/// (BOOKMARK, other kinds).
pub fn decode_event(value: Value, index: usize, source_name: &str) -> Result<Option<Event>, StreamError> {
    let bad = |field: &'static str, problem: String| StreamError::Event {
        source_name: source_name.to_owned(),
        event: index,
        field,
        problem,
    };
    let Value::Object(mut map) = value else {
        return Err(bad("(event)", "expected a JSON object {\"type\": ..., \"object\": ...}".into()));
    };
    let ty = match map.get("type").and_then(Value::as_str) {
        Some("ADDED") => EventType::Added,
        Some("MODIFIED") => EventType::Modified,
        Some("DELETED") => EventType::Deleted,
        Some("BOOKMARK") => return Ok(None),
        Some("ERROR") => {
            let msg = map
                .get("object")
                .and_then(|o| o.get("message"))
                .and_then(Value::as_str)
                .unwrap_or("(no message)");
            return Err(bad("type", format!("the API server sent an ERROR event: {msg}")));
        }
        Some(other) => {
            return Err(bad("type", format!("`{other}` is not one of ADDED, MODIFIED, DELETED, BOOKMARK, ERROR")))
        }
        None => return Err(bad("type", "missing; expected ADDED, MODIFIED, DELETED or BOOKMARK".into())),
    };
    let object = map.remove("object").ok_or_else(|| bad("object", "missing".into()))?;
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("").to_owned();
    let api_version = object.get("apiVersion").and_then(Value::as_str).unwrap_or("").to_owned();
    fn typed<T: DeserializeOwned>(v: Value) -> Result<T, serde_json::Error> {
        serde_json::from_value(v)
    }
    let parsed = match (kind.as_str(), api_version.as_str()) {
        ("Namespace", "v1") => typed(object).map(Object::Namespace),
        ("Node", "v1") => typed(object).map(Object::Node),
        ("Pod", "v1") => typed(object).map(Object::Pod),
        ("NetworkPolicy", "networking.k8s.io/v1") => typed(object).map(Object::NetworkPolicy),
        _ => {
            tracing::debug!(kind, api_version, event = index, "watch stream: skipping a kind palisade does not use");
            return Ok(None);
        }
    };
    let object = parsed.map_err(|e| bad("object", format!("not a valid {kind}: {e}")))?;
    if object.meta().name.as_deref().unwrap_or("").is_empty() {
        return Err(bad("object.metadata.name", format!("a {kind} needs a name")));
    }
    Ok(Some(Event { kind: ty, object, index }))
}

/// Reads concatenated JSON events (kubectl prints them pretty, not one per line) and
/// calls `on_event` for each one palisade keeps. Stops at end of input.
pub fn read_events<R: Read>(
    input: R,
    source_name: &str,
    mut on_event: impl FnMut(Event),
) -> Result<usize, StreamError> {
    let mut count = 0;
    for (index, value) in serde_json::Deserializer::from_reader(input).into_iter::<Value>().enumerate() {
        let value = value.map_err(|err| StreamError::Json { source_name: source_name.to_owned(), event: index, err })?;
        if let Some(event) = decode_event(value, index, source_name)? {
            on_event(event);
        }
        count = index + 1;
    }
    Ok(count)
}

type Key = (Kind, String, String);

/// The watched objects, keyed by kind, namespace and name.
#[derive(Clone, Debug, Default)]
pub struct ClusterStore {
    objects: BTreeMap<Key, (Object, usize)>,
}

impl ClusterStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Applies one event; returns whether the stored set changed.
    pub fn apply(&mut self, event: Event) -> bool {
        let meta = event.object.meta();
        let key = (
            event.object.kind(),
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        );
        match event.kind {
            EventType::Added | EventType::Modified => {
                self.objects.insert(key, (event.object, event.index));
                true
            }
            EventType::Deleted => self.objects.remove(&key).is_some(),
        }
    }

    /// The current objects as a `Cluster`, in key order (deterministic).
    pub fn cluster(&self) -> Cluster {
        let mut cluster = Cluster::default();
        for (object, index) in self.objects.values() {
            object.push_into(&mut cluster, Source { file: PathBuf::from(STREAM_SOURCE), doc: *index });
        }
        cluster
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = r#"
{
    "type": "ADDED",
    "object": {"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": "dev", "labels": {"kubernetes.io/metadata.name": "dev"}}}
}
{"type": "ADDED", "object": {"apiVersion": "v1", "kind": "Pod",
  "metadata": {"name": "web", "namespace": "dev", "labels": {"app": "web"}},
  "spec": {"containers": [{"name": "c", "image": "nginx"}]},
  "status": {"podIP": "10.0.0.2", "podIPs": [{"ip": "10.0.0.2"}]}}}
{"type": "ADDED", "object": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "dev"}}}
{"type": "BOOKMARK", "object": {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": "12"}}}
{"type": "MODIFIED", "object": {"apiVersion": "v1", "kind": "Pod",
  "metadata": {"name": "web", "namespace": "dev", "labels": {"app": "web2"}},
  "spec": {"containers": [{"name": "c", "image": "nginx"}]},
  "status": {"podIP": "10.0.0.2"}}}
{"type": "ADDED", "object": {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
  "metadata": {"name": "deny", "namespace": "dev"}, "spec": {"podSelector": {}}}}
{"type": "DELETED", "object": {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dev"}}}
"#;

    #[test]
    fn applies_added_modified_deleted_and_skips_others() {
        let mut store = ClusterStore::new();
        let mut changes = Vec::new();
        let read = read_events(STREAM.as_bytes(), "test", |e| changes.push(store.apply(e))).unwrap();
        assert_eq!(read, 7);
        // ConfigMap and BOOKMARK are skipped; the other five events all change the store.
        assert_eq!(changes, vec![true, true, true, true, true]);
        let cluster = store.cluster();
        assert_eq!(cluster.namespaces.len(), 0);
        assert_eq!(cluster.pods.len(), 1);
        assert_eq!(cluster.policies.len(), 1);
        let pod = &cluster.pods[0];
        assert_eq!(pod.object.metadata.labels.as_ref().unwrap()["app"], "web2");
        assert_eq!(pod.source, Source { file: PathBuf::from(STREAM_SOURCE), doc: 4 });
    }

    #[test]
    fn deleting_an_unknown_object_changes_nothing() {
        let mut store = ClusterStore::new();
        let ev = r#"{"type":"DELETED","object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","namespace":"b"}}}"#;
        let mut changed = None;
        read_events(ev.as_bytes(), "t", |e| changed = Some(store.apply(e))).unwrap();
        assert_eq!(changed, Some(false));
        assert!(store.is_empty());
    }

    #[test]
    fn errors_name_event_and_field() {
        let cases = [
            (r#"{"object": {}}"#, "t: event 0: field `type`: missing; expected ADDED, MODIFIED, DELETED or BOOKMARK"),
            (r#"{"type": "SOMETIMES", "object": {}}"#, "t: event 0: field `type`: `SOMETIMES` is not one of ADDED, MODIFIED, DELETED, BOOKMARK, ERROR"),
            (r#"{"type": "ADDED"}"#, "t: event 0: field `object`: missing"),
            (
                r#"{"type": "ADDED", "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": "x"}}}"#,
                "t: event 0: field `object.metadata.name`: a Pod needs a name",
            ),
            (
                r#"{"type":"ERROR","object":{"kind":"Status","message":"too old resource version"}}"#,
                "t: event 0: field `type`: the API server sent an ERROR event: too old resource version",
            ),
            ("[1]", "t: event 0: field `(event)`: expected a JSON object {\"type\": ..., \"object\": ...}"),
        ];
        for (input, want) in cases {
            let err = read_events(input.as_bytes(), "t", |_| {}).unwrap_err();
            assert_eq!(err.to_string(), want, "input {input}");
        }
        let err = read_events(&b"{\"type\": \"ADDED\", "[..], "t", |_| {}).unwrap_err();
        assert!(matches!(err, StreamError::Json { event: 0, .. }), "{err}");
    }
}
