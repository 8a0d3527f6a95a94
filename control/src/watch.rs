//! Live policy: watch a policy source and keep the workers' snapshot in step with it.
//!
//! Every change goes through the same path: read the source into a `Cluster` →
//! validate → compile → publish (an atomic `ArcSwap` store the workers load once per
//! burst). A change that fails any step is rejected: it is logged with the message
//! naming file, object and field, `palisade_policy_rejected_total` increments, and the
//! previous snapshot stays in force — the workers never notice.
//!
//! Two sources feed it: a manifest directory watched with inotify (through `notify`)
//! and debounced, and the kubectl watch-event stream (`stream`).
//!
//! Owns: change detection, debouncing, the publish loop and its timing. Must not
//! touch: the snapshot's layout (it publishes whatever the compile step returns).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use notify::{RecursiveMode, Watcher};

use crate::cluster::Cluster;
use crate::stream::{read_events, ClusterStore};
use crate::telemetry::PolicyMetrics;

/// Turns a cluster into a published value (a snapshot) of the given generation, or
/// says why it can't (validation or compile errors, already worded for the operator).
pub type CompileFn<T> = Box<dyn FnMut(&Cluster, u64) -> Result<T, String> + Send>;

/// Where policy comes from.
pub enum PolicySource {
    /// A manifest directory, re-read whole on every (debounced) change.
    Dir(PathBuf),
    /// kubectl's JSON watch events (`--watch --output-watch-events -o json`).
    Stream(Box<dyn Read + Send>),
}

/// A change noticed at `at` (the first event of a debounced burst).
#[derive(Clone, Copy, Debug)]
struct Change {
    at: Instant,
}

/// The outcome of one publish attempt, for logs and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Published { generation: u64 },
    Rejected { message: String },
}

/// Runs the control loop on its own thread until dropped.
pub struct PolicyWatcher {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    // Kept alive for as long as the watcher runs; dropping it stops inotify.
    _fs_watcher: Option<notify::RecommendedWatcher>,
    outcomes: Receiver<Outcome>,
}

/// Debounce window: a burst of file events (an editor's write-rename, `kubectl`'s
/// initial list) becomes one recompilation.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(100);

impl PolicyWatcher {
    /// Starts watching. `initial_generation` is the generation of the snapshot already
    /// in `target`; each accepted change publishes the next one.
    pub fn start<T: Send + Sync + 'static>(
        source: PolicySource,
        target: Arc<ArcSwap<T>>,
        initial_generation: u64,
        compile: CompileFn<T>,
        metrics: PolicyMetrics,
        debounce: Duration,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (change_tx, change_rx) = bounded::<Change>(1024);
        let (outcome_tx, outcome_rx) = bounded::<Outcome>(1024);
        let mut threads = Vec::new();
        let mut fs_watcher = None;

        let reader: Box<dyn FnMut() -> Result<Cluster, String> + Send> = match source {
            PolicySource::Dir(dir) => {
                let tx = change_tx.clone();
                let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                    if let Ok(ev) = res {
                        if is_relevant(&ev) {
                            let _ = tx.try_send(Change { at: Instant::now() });
                        }
                    }
                })
                .map_err(|e| std::io::Error::other(format!("watching {}: {e}", dir.display())))?;
                w.watch(&dir, RecursiveMode::Recursive)
                    .map_err(|e| std::io::Error::other(format!("watching {}: {e}", dir.display())))?;
                fs_watcher = Some(w);
                Box::new(move || crate::load::load_dir(&dir).map_err(|e| e.to_string()))
            }
            PolicySource::Stream(input) => {
                let store = Arc::new(Mutex::new(ClusterStore::new()));
                let reader_store = store.clone();
                let tx = change_tx.clone();
                let reader_stop = stop.clone();
                threads.push(std::thread::Builder::new().name("watch-stream".into()).spawn(move || {
                    let result = read_events(input, "watch stream", |event| {
                        if reader_stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let changed = reader_store.lock().map(|mut s| s.apply(event)).unwrap_or(false);
                        if changed {
                            let _ = tx.send(Change { at: Instant::now() });
                        }
                    });
                    match result {
                        Ok(n) => tracing::info!("watch stream ended after {n} events; the last snapshot stays in force"),
                        Err(e) => tracing::error!("watch stream stopped: {e}; the last snapshot stays in force"),
                    }
                })?);
                Box::new(move || Ok(store.lock().map_err(|_| "watch store poisoned".to_owned())?.cluster()))
            }
        };
        drop(change_tx);

        let loop_stop = stop.clone();
        threads.push(std::thread::Builder::new().name("policy".into()).spawn(move || {
            control_loop(change_rx, reader, target, initial_generation, compile, metrics, debounce, loop_stop, outcome_tx)
        })?);
        Ok(Self { stop, threads, _fs_watcher: fs_watcher, outcomes: outcome_rx })
    }

    /// Outcomes of publish attempts, in order (bounded; old ones are dropped if nobody reads).
    pub fn outcomes(&self) -> &Receiver<Outcome> {
        &self.outcomes
    }
}

impl Drop for PolicyWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self._fs_watcher = None;
        // The stream reader may block in read(); only join the control loop, which
        // notices `stop` within one poll interval.
        if let Some(control) = self.threads.pop() {
            let _ = control.join();
        }
    }
}

fn is_relevant(ev: &notify::Event) -> bool {
    use notify::EventKind::*;
    matches!(ev.kind, Create(_) | Modify(_) | Remove(_) | Any)
        && ev.paths.iter().any(|p| is_manifest(p) || p.extension().is_none())
}

fn is_manifest(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"))
}

#[allow(clippy::too_many_arguments)]
fn control_loop<T: Send + Sync + 'static>(
    changes: Receiver<Change>,
    mut read: Box<dyn FnMut() -> Result<Cluster, String> + Send>,
    target: Arc<ArcSwap<T>>,
    mut generation: u64,
    mut compile: CompileFn<T>,
    metrics: PolicyMetrics,
    debounce: Duration,
    stop: Arc<AtomicBool>,
    outcomes: Sender<Outcome>,
) {
    let poll = Duration::from_millis(50);
    while !stop.load(Ordering::Relaxed) {
        let first = match changes.recv_timeout(poll) {
            Ok(c) => c,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        // Debounce: wait until the source has been quiet for `debounce`.
        loop {
            match changes.recv_timeout(debounce) {
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let started = Instant::now();
        let outcome = match read().and_then(|cluster| compile(&cluster, generation + 1)) {
            Ok(snapshot) => {
                generation += 1;
                target.store(Arc::new(snapshot));
                let enforced = first.at.elapsed();
                metrics.generation.set(generation as i64);
                metrics.compile_seconds.set(started.elapsed().as_secs_f64());
                metrics.change_to_enforced.observe(enforced.as_secs_f64());
                metrics.applied.inc();
                tracing::info!(
                    generation,
                    compile_ms = started.elapsed().as_secs_f64() * 1e3,
                    change_to_enforced_ms = enforced.as_secs_f64() * 1e3,
                    "policy snapshot published"
                );
                Outcome::Published { generation }
            }
            Err(message) => {
                metrics.rejected.inc();
                tracing::error!("policy change rejected, generation {generation} stays in force: {message}");
                Outcome::Rejected { message }
            }
        };
        let _ = outcomes.try_send(outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A compile step that "compiles" a cluster to its pod names, and rejects any
    /// cluster containing a pod named `bad`.
    fn pod_names() -> CompileFn<(u64, Vec<String>)> {
        Box::new(|c: &Cluster, generation| {
            let names: Vec<String> =
                c.pods.iter().map(|p| p.object.metadata.name.clone().unwrap_or_default()).collect();
            if names.iter().any(|n| n == "bad") {
                return Err("Pod dev/bad: metadata.name: rejected by the test".into());
            }
            Ok((generation, names))
        })
    }

    fn event(ty: &str, name: &str) -> String {
        format!(
            r#"{{"type":"{ty}","object":{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"dev"}},"spec":{{"containers":[]}}}}}}"#
        )
    }

    #[test]
    fn stream_changes_publish_new_generations_and_bad_ones_are_rejected() {
        let (r, mut w) = std::io::pipe().unwrap();
        let target = Arc::new(ArcSwap::from_pointee((0u64, Vec::<String>::new())));
        let metrics = PolicyMetrics::default();
        let watcher = PolicyWatcher::start(
            PolicySource::Stream(Box::new(r)),
            target.clone(),
            0,
            pod_names(),
            metrics.clone(),
            Duration::from_millis(20),
        )
        .unwrap();
        let wait = |want: &Outcome| {
            let got = watcher.outcomes().recv_timeout(Duration::from_secs(10)).expect("an outcome");
            assert_eq!(&got, want);
        };
        use std::io::Write;
        writeln!(w, "{}", event("ADDED", "a")).unwrap();
        w.flush().unwrap();
        wait(&Outcome::Published { generation: 1 });
        assert_eq!(**target.load(), (1, vec!["a".to_owned()]));

        writeln!(w, "{}", event("ADDED", "bad")).unwrap();
        wait(&Outcome::Rejected { message: "Pod dev/bad: metadata.name: rejected by the test".into() });
        // The last good snapshot stays in force.
        assert_eq!(**target.load(), (1, vec!["a".to_owned()]));
        assert_eq!(metrics.rejected.get(), 1);

        writeln!(w, "{}", event("DELETED", "bad")).unwrap();
        wait(&Outcome::Published { generation: 2 });
        assert_eq!(**target.load(), (2, vec!["a".to_owned()]));
        assert_eq!(metrics.applied.get(), 2);
        assert_eq!(metrics.generation.get(), 2);
        drop(w);
        drop(watcher);
    }

    #[test]
    fn directory_changes_are_debounced_into_one_publish() {
        let dir = tempfile::tempdir().unwrap();
        let target = Arc::new(ArcSwap::from_pointee((0u64, Vec::<String>::new())));
        let watcher = PolicyWatcher::start(
            PolicySource::Dir(dir.path().to_owned()),
            target.clone(),
            0,
            Box::new(|c: &Cluster, g| Ok((g, c.pods.iter().map(|_| String::new()).collect()))),
            PolicyMetrics::default(),
            Duration::from_millis(200),
        )
        .unwrap();
        // Three files written in quick succession: one debounced change.
        for i in 0..3 {
            std::fs::write(dir.path().join(format!("ns{i}.yaml")), format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: n{i}\n")).unwrap();
        }
        let got = watcher.outcomes().recv_timeout(Duration::from_secs(10)).expect("an outcome");
        assert_eq!(got, Outcome::Published { generation: 1 });
        assert!(watcher.outcomes().recv_timeout(Duration::from_millis(600)).is_err(), "one publish for one burst");
        assert_eq!(target.load().0, 1);
    }
}
