//! The policy side of `palisade run`: load, validate, resolve and compile the policy
//! source into the first snapshot, publish it through an `ArcSwap` the workers' pipelines
//! load once per burst, and keep it in step with the source (`control::watch`, through
//! the incremental compiler).
//!
//! With no policy source in software mode, the bundled example policies (the Contrail
//! lab, compiled into the binary) are enforced, so `palisade` alone shows policy at work.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use control::cluster::Cluster;
use control::telemetry::PolicyMetrics;
use control::watch::{IncrementalSnapshots, PolicySource, PolicyWatcher, DEFAULT_DEBOUNCE};
use dataplane::snapshot::Snapshot;

/// The bundled example policy directory (`examples/policies`), as (name, text).
const BUNDLED: &[(&str, &str)] = &[
    ("examples/policies/lab/namespaces.yaml", include_str!("../../examples/policies/lab/namespaces.yaml")),
    ("examples/policies/lab/nodes.yaml", include_str!("../../examples/policies/lab/nodes.yaml")),
    ("examples/policies/lab/pods.yaml", include_str!("../../examples/policies/lab/pods.yaml")),
    ("examples/policies/lab/policy1.yaml", include_str!("../../examples/policies/lab/policy1.yaml")),
    ("examples/policies/live/policy2.yaml", include_str!("../../examples/policies/live/policy2.yaml")),
];

/// Where `run` takes policy from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A watched manifest directory.
    Dir(PathBuf),
    /// kubectl's watch-event stream on standard input.
    StdinStream,
    /// The bundled examples (software mode without a source).
    Bundled,
    /// No policy: forward everything.
    None,
}

/// Validate → resolve → compile: the one path every policy change takes.
pub fn compile_cluster(cluster: &Cluster, generation: u64) -> Result<Snapshot, String> {
    control::validate::validate(cluster).map_err(|e| e.to_string())?;
    let model = control::model::Model::resolve(cluster).map_err(|e| e.to_string())?;
    Ok(control::compile::compile(&model, generation))
}

fn bundled_cluster() -> Result<Cluster> {
    let mut all = Cluster::default();
    for (name, text) in BUNDLED {
        let c = control::load::load_str(text, Path::new(name)).with_context(|| format!("bundled policy {name}"))?;
        all.append(c);
    }
    Ok(all)
}

/// The snapshot handle the pipelines read, and what keeps it current.
pub struct PolicyRuntime {
    pub snapshots: Arc<ArcSwap<Snapshot>>,
    /// The cluster the snapshot in force was compiled from (pod names for `palisade
    /// flows`, CN2 tables for `palisade rules`).
    pub cluster: Arc<ArcSwap<Cluster>>,
    pub metrics: PolicyMetrics,
    _watcher: Option<PolicyWatcher>,
}

/// Compiles the first snapshot (generation 1; a failure here is fatal, with the message
/// naming file, object and field) and starts watching the source. Changes go through
/// the incremental compiler (`control::watch::IncrementalSnapshots`): only changed files
/// are re-read and only what a changed object touches is recompiled.
pub fn start(source: &Source) -> Result<PolicyRuntime> {
    let metrics = PolicyMetrics::default();
    let started = std::time::Instant::now();
    let (first, watch, cluster): (Snapshot, Option<(PolicySource, IncrementalSnapshots)>, Cluster) = match source {
        Source::None => (Snapshot::empty(1), None, Cluster::default()),
        Source::Bundled => {
            let cluster = bundled_cluster()?;
            (compile_cluster(&cluster, 1).map_err(anyhow::Error::msg).context("bundled example policies")?, None, cluster)
        }
        Source::Dir(dir) => {
            let (compiler, snap) =
                IncrementalSnapshots::for_dir(dir, 1).map_err(anyhow::Error::msg).with_context(|| format!("--manifests {}", dir.display()))?;
            let cluster = compiler.cluster();
            (snap, Some((PolicySource::Dir(dir.clone()), compiler)), cluster)
        }
        Source::StdinStream => (
            Snapshot::empty(1),
            Some((PolicySource::Stream(Box::new(std::io::stdin())), IncrementalSnapshots::for_stream())),
            Cluster::default(),
        ),
    };
    let cluster = Arc::new(ArcSwap::from_pointee(cluster));
    metrics.generation.set(1);
    metrics.compile_seconds.set(started.elapsed().as_secs_f64());
    // Flattened before any worker reads it (reads faster than the chunked build; the
    // watcher flattens later snapshots once the source is quiet).
    let snapshots = Arc::new(ArcSwap::from_pointee(first.flattened()));
    let watcher = match watch {
        None => None,
        Some((src, compiler)) => {
            // The accepted cluster is stored beside its snapshot after each publish, so
            // copying it does not delay enforcement.
            let compiler = Box::new(compiler.keep_cluster_in(cluster.clone()));
            Some(
                PolicyWatcher::start_with(src, snapshots.clone(), 1, compiler, metrics.clone(), DEFAULT_DEBOUNCE)
                    .context("starting the policy watcher")?,
            )
        }
    };
    Ok(PolicyRuntime { snapshots, cluster, metrics, _watcher: watcher })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::{Action, Classifier};

    #[test]
    fn bundled_policies_compile_and_enforce_policy1() {
        let rt = start(&Source::Bundled).unwrap();
        let snap = rt.snapshots.load();
        assert!(snap.is_flattened());
        // examples/policies: client2-dev (…232) may not open webserver-dev (…233):80.
        let v = snap.classify("10.47.255.232".parse().unwrap(), "10.47.255.233".parse().unwrap(), 6, 80);
        assert_eq!(v.action, Action::Deny);
        let v = snap.classify("10.47.255.231".parse().unwrap(), "10.47.255.233".parse().unwrap(), 6, 80);
        assert_eq!(v.action, Action::Allow);
    }
}
