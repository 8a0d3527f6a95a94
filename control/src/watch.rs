//! Live policy: watch a policy source and keep the workers' snapshot in step with it.
//!
//! Every change goes through the same path: read what changed → validate → compile →
//! publish (an atomic `ArcSwap` store the workers load once per burst). A change that
//! fails any step is rejected: it is logged with the message naming file, object and
//! field, `palisade_policy_rejected_total` increments, and the previous snapshot stays
//! in force — the workers never notice.
//!
//! Two sources feed it: a manifest directory watched with inotify (through `notify`)
//! and debounced, and the kubectl watch-event stream (`stream`). What turns a change
//! into a published value is a [`PolicyCompiler`]: [`IncrementalSnapshots`] (what the
//! appliance runs: only changed files are re-read, and only what a changed object
//! touches is recompiled, see `compile::incremental`), or any whole-cluster function
//! ([`CompileFn`]).
//!
//! Once the source has been quiet for a poll interval after a publish, a compiler that
//! has a [`Compactor`] (`IncrementalSnapshots`: `Snapshot::flattened`, which reads
//! faster than the chunked snapshot a change publishes) has the value in force
//! compacted on a thread of its own, and the copy replaces it with the same generation
//! (so the workers re-decide no flow) unless something newer was published meanwhile.
//! A change is never delayed by it.
//!
//! Owns: change detection, debouncing, the publish loop and its timing. Must not
//! touch: the snapshot's layout (it publishes whatever the compile step returns).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use notify::{RecursiveMode, Watcher};

use crate::cluster::{Cluster, Source};
use crate::compile::incremental::{apply_committed, Committed, Incremental, ObjectChange, ObjectKey, Order};
use crate::stream::{read_events, ClusterStore, Event, EventType, Object, STREAM_SOURCE};
use crate::telemetry::PolicyMetrics;
use dataplane::snapshot::Snapshot;

/// Turns a cluster into a published value (a snapshot) of the given generation, or
/// says why it can't (validation or compile errors, already worded for the operator).
pub type CompileFn<T> = Box<dyn FnMut(&Cluster, u64) -> Result<T, String> + Send>;

/// Turns a published value into one with the same content and generation that is
/// cheaper to read (a flattened snapshot), or `None` when there is nothing to gain.
/// Runs off the change path, on a thread of its own.
pub type Compactor<T> = Arc<dyn Fn(&T) -> Option<T> + Send + Sync>;

/// Turns changes of a policy source into a value to publish (a snapshot) of the given
/// generation, or says why not. After an error the same changes come again, with any
/// newer ones, so a compiler may keep state between calls.
pub trait PolicyCompiler<T>: Send {
    /// The watched directory `dir` changed.
    fn directory(&mut self, dir: &Path, generation: u64) -> Result<T, String>;
    /// Watch-stream events since the last published value, in order.
    fn events(&mut self, events: &[Event], generation: u64) -> Result<T, String>;
    /// The value just returned is now published (the workers see it).
    fn published(&mut self) {}
    /// How to compact the value in force once the source is quiet (see [`Compactor`]);
    /// `None` (the default): values stay as compiled.
    fn compactor(&self) -> Option<Compactor<T>> {
        None
    }
}

/// A whole-cluster compile function as a [`PolicyCompiler`]: every change re-reads the
/// directory, or the stream's store, whole.
struct WholeCluster<T> {
    compile: CompileFn<T>,
    store: ClusterStore,
}

impl<T> PolicyCompiler<T> for WholeCluster<T> {
    fn directory(&mut self, dir: &Path, generation: u64) -> Result<T, String> {
        let cluster = crate::load::load_dir(dir).map_err(|e| e.to_string())?;
        (self.compile)(&cluster, generation)
    }

    fn events(&mut self, events: &[Event], generation: u64) -> Result<T, String> {
        for e in events {
            self.store.apply(e.clone());
        }
        (self.compile)(&self.store.cluster(), generation)
    }
}

/// Where policy comes from.
pub enum PolicySource {
    /// A manifest directory, watched.
    Dir(PathBuf),
    /// kubectl's JSON watch events (`--watch --output-watch-events -o json`).
    Stream(Box<dyn Read + Send>),
}

/// A change noticed at `at` (the first event of a debounced burst), with the stream
/// event that made it, if any.
#[derive(Clone, Debug)]
struct Change {
    at: Instant,
    event: Option<Event>,
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
    compacted: Receiver<u64>,
}

/// Debounce window: a burst of file events (an editor's write-rename, `kubectl`'s
/// initial list) becomes one recompilation.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(100);

impl PolicyWatcher {
    /// Starts watching with a whole-cluster compile function. `initial_generation` is
    /// the generation of the value already in `target`; each accepted change publishes
    /// the next one.
    pub fn start<T: Send + Sync + 'static>(
        source: PolicySource,
        target: Arc<ArcSwap<T>>,
        initial_generation: u64,
        compile: CompileFn<T>,
        metrics: PolicyMetrics,
        debounce: Duration,
    ) -> std::io::Result<Self> {
        let compiler = Box::new(WholeCluster { compile, store: ClusterStore::new() });
        Self::start_with(source, target, initial_generation, compiler, metrics, debounce)
    }

    /// Starts watching with `compiler` (e.g. [`IncrementalSnapshots`]).
    pub fn start_with<T: Send + Sync + 'static>(
        source: PolicySource,
        target: Arc<ArcSwap<T>>,
        initial_generation: u64,
        compiler: Box<dyn PolicyCompiler<T>>,
        metrics: PolicyMetrics,
        debounce: Duration,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (change_tx, change_rx) = bounded::<Change>(1024);
        let (outcome_tx, outcome_rx) = bounded::<Outcome>(1024);
        let (compacted_tx, compacted_rx) = bounded::<u64>(1024);
        let mut threads = Vec::new();
        let mut fs_watcher = None;

        let dir = match source {
            PolicySource::Dir(dir) => {
                let tx = change_tx.clone();
                let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                    if let Ok(ev) = res {
                        if is_relevant(&ev) {
                            let _ = tx.try_send(Change { at: Instant::now(), event: None });
                        }
                    }
                })
                .map_err(|e| std::io::Error::other(format!("watching {}: {e}", dir.display())))?;
                w.watch(&dir, RecursiveMode::Recursive)
                    .map_err(|e| std::io::Error::other(format!("watching {}: {e}", dir.display())))?;
                fs_watcher = Some(w);
                Some(dir)
            }
            PolicySource::Stream(input) => {
                let tx = change_tx.clone();
                let reader_stop = stop.clone();
                threads.push(std::thread::Builder::new().name("watch-stream".into()).spawn(move || {
                    let result = read_events(input, "watch stream", |event| {
                        if !reader_stop.load(Ordering::Relaxed) {
                            let _ = tx.send(Change { at: Instant::now(), event: Some(event) });
                        }
                    });
                    match result {
                        Ok(n) => tracing::info!("watch stream ended after {n} events; the last snapshot stays in force"),
                        Err(e) => tracing::error!("watch stream stopped: {e}; the last snapshot stays in force"),
                    }
                })?);
                None
            }
        };
        drop(change_tx);

        let loop_stop = stop.clone();
        let compaction = Compaction { compactor: compiler.compactor(), pending: true, running: None, done: compacted_tx };
        let control = ControlLoop { dir, target, generation: initial_generation, compiler, metrics, debounce, stop: loop_stop, outcomes: outcome_tx, compaction };
        threads.push(std::thread::Builder::new().name("policy".into()).spawn(move || control.run(change_rx))?);
        Ok(Self { stop, threads, _fs_watcher: fs_watcher, outcomes: outcome_rx, compacted: compacted_rx })
    }

    /// Outcomes of publish attempts, in order (bounded; old ones are dropped if nobody reads).
    pub fn outcomes(&self) -> &Receiver<Outcome> {
        &self.outcomes
    }

    /// Generations whose compacted copy replaced them in force, in order (bounded like
    /// `outcomes`).
    pub fn compacted(&self) -> &Receiver<u64> {
        &self.compacted
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

struct ControlLoop<T> {
    /// The watched directory (None: the stream).
    dir: Option<PathBuf>,
    target: Arc<ArcSwap<T>>,
    generation: u64,
    compiler: Box<dyn PolicyCompiler<T>>,
    metrics: PolicyMetrics,
    debounce: Duration,
    stop: Arc<AtomicBool>,
    outcomes: Sender<Outcome>,
    compaction: Compaction<T>,
}

/// The compaction of the value in force: see the module doc.
struct Compaction<T> {
    compactor: Option<Compactor<T>>,
    /// The value in force has not been compacted yet.
    pending: bool,
    /// The thread compacting.
    running: Option<JoinHandle<()>>,
    /// Generations compacted and stored.
    done: Sender<u64>,
}

impl<T: Send + Sync + 'static> Compaction<T> {
    /// Compact the value in force (`generation`) if not done yet, on a thread of its
    /// own; not while an earlier one runs. With `wait`, finish before returning.
    fn start(&mut self, target: &Arc<ArcSwap<T>>, generation: u64, metrics: &PolicyMetrics, wait: bool) {
        let Some(compactor) = &self.compactor else { return };
        if self.running.as_ref().is_some_and(|h| !h.is_finished()) && !wait {
            return;
        }
        if let Some(h) = self.running.take() {
            let _ = h.join();
        }
        if !std::mem::replace(&mut self.pending, false) {
            return;
        }
        let current = target.load_full();
        let (target, compactor, metrics, done) = (target.clone(), compactor.clone(), metrics.clone(), self.done.clone());
        let job = move || {
            let started = Instant::now();
            let Some(value) = compactor(&current) else { return };
            let took = started.elapsed();
            // Only in place of the value it was made from: a newer generation published
            // meanwhile stays (pointer comparison, so not even an equal one is replaced).
            let replaced = target.compare_and_swap(&current, Arc::new(value));
            if !Arc::ptr_eq(&replaced, &current) {
                tracing::debug!(generation, "compacted snapshot dropped: a newer one is in force");
                return;
            }
            drop(replaced);
            metrics.compacted.inc();
            metrics.compact_seconds.set(took.as_secs_f64());
            tracing::debug!(generation, compact_ms = took.as_secs_f64() * 1e3, "policy snapshot compacted (same generation)");
            let _ = done.try_send(generation);
        };
        match std::thread::Builder::new().name("policy-compact".into()).spawn(job) {
            Ok(h) if wait => {
                let _ = h.join();
            }
            Ok(h) => self.running = Some(h),
            Err(e) => tracing::warn!("cannot start compacting the snapshot: {e}"),
        }
    }
}

impl<T: Send + Sync + 'static> ControlLoop<T> {
    fn run(mut self, changes: Receiver<Change>) {
        self.watch(changes);
        if let Some(h) = self.compaction.running.take() {
            let _ = h.join();
        }
    }

    fn watch(&mut self, changes: Receiver<Change>) {
        let poll = Duration::from_millis(50);
        // Stream events not yet part of a published value (a rejected batch stays here).
        let mut pending: Vec<Event> = Vec::new();
        while !self.stop.load(Ordering::Relaxed) {
            let first = match changes.recv_timeout(poll) {
                Ok(c) => c,
                Err(RecvTimeoutError::Timeout) => {
                    // Quiet for a poll interval: compact what is in force.
                    self.compaction.start(&self.target, self.generation, &self.metrics, false);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // The source ended: what is in force now stays, compacted.
                    self.compaction.start(&self.target, self.generation, &self.metrics, true);
                    return;
                }
            };
            let at = first.at;
            pending.extend(first.event);
            // Debounce: wait until the source has been quiet for `debounce`.
            loop {
                match changes.recv_timeout(self.debounce) {
                    Ok(c) => pending.extend(c.event),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            let started = Instant::now();
            let next = self.generation + 1;
            let result = match &self.dir {
                Some(dir) => self.compiler.directory(dir, next),
                None => self.compiler.events(&pending, next),
            };
            let outcome = match result {
                Ok(value) => {
                    self.generation = next;
                    self.target.store(Arc::new(value));
                    let enforced = at.elapsed();
                    let compile = started.elapsed();
                    pending.clear();
                    self.metrics.generation.set(next as i64);
                    self.metrics.compile_seconds.set(compile.as_secs_f64());
                    self.metrics.change_to_enforced.observe(enforced.as_secs_f64());
                    self.metrics.applied.inc();
                    tracing::info!(
                        generation = next,
                        compile_ms = compile.as_secs_f64() * 1e3,
                        change_to_enforced_ms = enforced.as_secs_f64() * 1e3,
                        "policy snapshot published"
                    );
                    self.compiler.published();
                    self.compaction.pending = true;
                    Outcome::Published { generation: next }
                }
                Err(message) => {
                    self.metrics.rejected.inc();
                    tracing::error!("policy change rejected, generation {} stays in force: {message}", self.generation);
                    Outcome::Rejected { message }
                }
            };
            let _ = self.outcomes.try_send(outcome);
        }
    }
}

/// The appliance's compile step: an [`Incremental`] compiler fed by the changed files
/// of a manifest directory or by watch-stream events, keeping `in_force` (the cluster
/// behind the published snapshot, for pod names and tables) up to date after each
/// publish.
pub struct IncrementalSnapshots {
    inc: Incremental,
    files: DirFiles,
    /// The file changes a successful `directory` call would commit.
    staged: Option<FileDelta>,
    in_force: Option<InForce>,
}

/// The published cluster and a private one kept in step, so that publishing a change
/// patches the changed objects instead of copying the cluster (a second or more at
/// 50k pods). The cluster a publish replaces becomes the next private one once no
/// reader holds it any more.
struct InForce {
    target: Arc<ArcSwap<Cluster>>,
    /// A private cluster and the changes it lacks, or the replaced published one (a
    /// reader may still hold it) and the changes it lacks.
    spare: Option<(Spare, Vec<Committed>)>,
    /// Whether `target` holds a cluster this published (what it held before is not
    /// known to be the cluster in force, so it never becomes a spare).
    published: bool,
}

enum Spare {
    Owned(Cluster),
    Held(Arc<Cluster>),
}

impl InForce {
    /// Publish the cluster in force after `changes` (the ones committed since the
    /// last publish).
    fn publish(&mut self, inc: &Incremental, changes: Vec<Committed>) {
        let base = match self.spare.take() {
            Some((Spare::Owned(c), lag)) => Some((c, lag)),
            Some((Spare::Held(arc), lag)) => Arc::try_unwrap(arc).ok().map(|c| (c, lag)),
            None => None,
        };
        let next = match base {
            Some((mut c, lag)) => {
                apply_committed(&mut c, inc.order(), &lag);
                apply_committed(&mut c, inc.order(), &changes);
                c
            }
            // No private copy to patch (first publish, or a reader kept the old one).
            None => inc.cluster(),
        };
        let old = self.target.swap(Arc::new(next));
        if !std::mem::replace(&mut self.published, true) {
            return;
        }
        let spare = match Arc::try_unwrap(old) {
            Ok(c) => Spare::Owned(c),
            Err(held) => Spare::Held(held),
        };
        self.spare = Some((spare, changes));
    }
}

impl IncrementalSnapshots {
    /// Load and compile manifest directory `dir`: the compiler and its first snapshot.
    pub fn for_dir(dir: &Path, generation: u64) -> Result<(IncrementalSnapshots, Snapshot), String> {
        let mut files = DirFiles::default();
        let delta = files.refresh(dir)?.0;
        let inc = Incremental::new(files.cluster_with(&delta), Order::BySource)?;
        files.commit(delta);
        let snap = inc.snapshot(generation);
        Ok((IncrementalSnapshots { inc, files, staged: None, in_force: None }, snap))
    }

    /// An empty cluster, for the watch stream.
    pub fn for_stream() -> IncrementalSnapshots {
        let inc = Incremental::new(Cluster::default(), Order::ByKey).expect("an empty cluster is valid");
        IncrementalSnapshots { inc, files: DirFiles::default(), staged: None, in_force: None }
    }

    /// Store the cluster in force in `target` after every publish (by patching a
    /// private copy, not by copying the cluster: see [`InForce`]; the first two
    /// publishes copy it).
    pub fn keep_cluster_in(mut self, target: Arc<ArcSwap<Cluster>>) -> Self {
        self.inc.record_committed(true);
        self.in_force = Some(InForce { target, spare: None, published: false });
        self
    }

    /// The cluster in force (a copy).
    pub fn cluster(&self) -> Cluster {
        self.inc.cluster()
    }
}

impl PolicyCompiler<Snapshot> for IncrementalSnapshots {
    fn directory(&mut self, dir: &Path, generation: u64) -> Result<Snapshot, String> {
        let (delta, changes) = self.files.refresh(dir)?;
        self.inc.apply(changes)?;
        self.staged = Some(delta);
        Ok(self.inc.snapshot(generation))
    }

    fn events(&mut self, events: &[Event], generation: u64) -> Result<Snapshot, String> {
        let changes = events.iter().map(|e| match e.kind {
            EventType::Added | EventType::Modified => {
                ObjectChange::Upsert(e.object.clone(), Source { file: PathBuf::from(STREAM_SOURCE), doc: e.index })
            }
            EventType::Deleted => {
                let meta = e.object.meta();
                ObjectChange::Delete((e.object.kind(), meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default()))
            }
        });
        self.inc.apply(changes.collect::<Vec<_>>())?;
        Ok(self.inc.snapshot(generation))
    }

    fn published(&mut self) {
        if let Some(delta) = self.staged.take() {
            self.files.commit(delta);
        }
        if let Some(in_force) = &mut self.in_force {
            let changes = self.inc.take_committed();
            in_force.publish(&self.inc, changes);
        }
    }

    /// Published snapshots are chunked so that a change costs O(change); once quiet,
    /// the one in force is replaced by its flattened copy, which reads faster.
    fn compactor(&self) -> Option<Compactor<Snapshot>> {
        Some(Arc::new(|s: &Snapshot| (!s.is_flattened()).then(|| s.flattened())))
    }
}

/// What a manifest directory held when last read: per file, its stamp and objects,
/// and which file defines each object.
#[derive(Default)]
struct DirFiles {
    files: BTreeMap<PathBuf, FileState>,
    owner: HashMap<ObjectKey, PathBuf>,
}

struct FileState {
    stamp: Stamp,
    objects: Vec<(ObjectKey, Object, Source)>,
}

/// Files re-read since the last commit: new state, or `None` when gone.
type FileDelta = Vec<(PathBuf, Option<FileState>)>;

/// Enough of a file's metadata to tell that it was rewritten.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Result<Stamp, String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    Ok(Stamp { modified: m.modified().ok(), len: m.len(), inode: m.ino() })
}

fn objects_of(cluster: Cluster) -> Vec<(ObjectKey, Object, Source)> {
    let mut out = Vec::new();
    let mut put = |object: Object, source: Source| {
        let meta = object.meta();
        let key = (object.kind(), meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default());
        out.push((key, object, source));
    };
    cluster.namespaces.into_iter().for_each(|o| put(Object::Namespace(o.object), o.source));
    cluster.nodes.into_iter().for_each(|o| put(Object::Node(o.object), o.source));
    cluster.pods.into_iter().for_each(|o| put(Object::Pod(o.object), o.source));
    cluster.policies.into_iter().for_each(|o| put(Object::NetworkPolicy(o.object), o.source));
    out
}

impl DirFiles {
    /// Re-read the files of `dir` whose stamp changed: what changed per file and the
    /// object changes against the committed state. Nothing is committed here.
    fn refresh(&self, dir: &Path) -> Result<(FileDelta, Vec<ObjectChange>), String> {
        let mut delta: FileDelta = Vec::new();
        let mut changes = Vec::new();
        let paths = crate::load::manifest_files(dir).map_err(|e| e.to_string())?;
        let present: std::collections::HashSet<&PathBuf> = paths.iter().collect();
        for (path, old) in &self.files {
            if !present.contains(path) {
                changes.extend(old.objects.iter().map(|(k, _, _)| ObjectChange::Delete(k.clone())));
                delta.push((path.clone(), None));
            }
        }
        for path in &paths {
            let st = stamp(path)?;
            let old = self.files.get(path);
            if old.is_some_and(|o| o.stamp == st) {
                continue;
            }
            let objects = objects_of(crate::load::load_file(path).map_err(|e| e.to_string())?);
            let before: HashMap<&ObjectKey, (&Object, &Source)> =
                old.map(|o| o.objects.iter().map(|(k, ob, s)| (k, (ob, s))).collect()).unwrap_or_default();
            for (k, o, s) in &objects {
                if before.get(k) != Some(&(o, s)) {
                    changes.push(ObjectChange::Upsert(o.clone(), s.clone()));
                }
            }
            let now: std::collections::HashSet<&ObjectKey> = objects.iter().map(|(k, _, _)| k).collect();
            changes.extend(before.keys().filter(|k| !now.contains(*k)).map(|k| ObjectChange::Delete((*k).clone())));
            delta.push((path.clone(), Some(FileState { stamp: st, objects })));
        }
        if self.duplicates(&delta) {
            // Let validation word the error, over the whole directory as it now is.
            crate::validate::validate(&self.cluster_with(&delta)).map_err(|e| e.to_string())?;
        }
        // Deletions first, so an object moving between files is a delete then an upsert.
        changes.sort_by_key(|c| matches!(c, ObjectChange::Upsert(..)));
        Ok((delta, changes))
    }

    /// Whether applying `delta` would leave some object defined twice.
    fn duplicates(&self, delta: &FileDelta) -> bool {
        let changed: HashMap<&PathBuf, Option<&FileState>> = delta.iter().map(|(p, f)| (p, f.as_ref())).collect();
        let mut seen = std::collections::HashSet::new();
        for (path, f) in delta {
            for (k, _, _) in f.iter().flat_map(|f| f.objects.iter()) {
                let elsewhere = self.owner.get(k).is_some_and(|owner| owner != path && !changed.contains_key(owner));
                if elsewhere || !seen.insert(k) {
                    return true;
                }
            }
        }
        false
    }

    fn commit(&mut self, delta: FileDelta) {
        for (path, state) in delta {
            if let Some(old) = self.files.remove(&path) {
                for (k, _, _) in &old.objects {
                    if self.owner.get(k) == Some(&path) {
                        self.owner.remove(k);
                    }
                }
            }
            if let Some(state) = state {
                for (k, _, _) in &state.objects {
                    self.owner.insert(k.clone(), path.clone());
                }
                self.files.insert(path, state);
            }
        }
    }

    /// All objects with `delta` applied, in load order.
    fn cluster_with(&self, delta: &FileDelta) -> Cluster {
        let changed: HashMap<&PathBuf, Option<&FileState>> = delta.iter().map(|(p, f)| (p, f.as_ref())).collect();
        let mut files: BTreeMap<&PathBuf, &FileState> = self.files.iter().filter(|(p, _)| !changed.contains_key(p)).collect();
        files.extend(delta.iter().filter_map(|(p, f)| f.as_ref().map(|f| (p, f))));
        let mut c = Cluster::default();
        for f in files.values() {
            for (_, o, source) in &f.objects {
                o.push_into(&mut c, source.clone());
            }
        }
        c
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

    fn verdict(s: &Snapshot, src: &str, dst: &str) -> dataplane::Action {
        use dataplane::Classifier;
        s.classify(src.parse().unwrap(), dst.parse().unwrap(), 6, 80).action
    }

    const NS_AND_POLICY: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: dev}\n---\n\
        apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web, namespace: dev}\n\
        spec:\n  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: client}}}]\n";

    fn pods(client_app: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: web, namespace: dev, labels: {{app: web}}}}\nstatus: {{podIP: 10.1.0.1}}\n---\n\
             apiVersion: v1\nkind: Pod\nmetadata: {{name: c, namespace: dev, labels: {{app: {client_app}}}}}\nstatus: {{podIP: 10.1.0.2}}\n"
        )
    }

    #[test]
    fn incremental_directory_changes_rejects_and_recovers() {
        use dataplane::Action::{Allow, Deny};
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), NS_AND_POLICY).unwrap();
        std::fs::write(dir.path().join("pods.yaml"), pods("client")).unwrap();
        let (compiler, first) = IncrementalSnapshots::for_dir(dir.path(), 1).unwrap();
        assert_eq!(verdict(&first, "10.1.0.2", "10.1.0.1"), Allow);
        let in_force = Arc::new(ArcSwap::from_pointee(Cluster::default()));
        let target = Arc::new(ArcSwap::from_pointee(first));
        let metrics = PolicyMetrics::default();
        let watcher = PolicyWatcher::start_with(
            PolicySource::Dir(dir.path().to_owned()),
            target.clone(),
            1,
            Box::new(compiler.keep_cluster_in(in_force.clone())),
            metrics.clone(),
            Duration::from_millis(50),
        )
        .unwrap();
        let next = || watcher.outcomes().recv_timeout(Duration::from_secs(10)).expect("an outcome");
        // A relabelled client loses access.
        std::fs::write(dir.path().join("pods.yaml"), pods("other")).unwrap();
        assert_eq!(next(), Outcome::Published { generation: 2 });
        assert_eq!(verdict(&target.load(), "10.1.0.2", "10.1.0.1"), Deny);
        assert_eq!(in_force.load().pods.len(), 2);
        // A bad file is rejected; generation 2 stays in force.
        std::fs::write(dir.path().join("b.yaml"), "apiVersion: v1\nkind: Pod\nmetadata: {name: x, namespace: dev}\nstatus: {podIP: nonsense}\n").unwrap();
        match next() {
            Outcome::Rejected { message } => assert!(message.contains("b.yaml (document 1): Pod dev/x: status.podIP"), "{message}"),
            other => panic!("expected a rejection, got {other:?}"),
        }
        assert_eq!(dataplane::Classifier::generation(&**target.load()), 2);
        assert_eq!(metrics.rejected.get(), 1);
        // Fixing it, and relabelling back in the same burst, publishes both.
        std::fs::remove_file(dir.path().join("b.yaml")).unwrap();
        std::fs::write(dir.path().join("pods.yaml"), pods("client")).unwrap();
        assert_eq!(next(), Outcome::Published { generation: 3 });
        assert_eq!(verdict(&target.load(), "10.1.0.2", "10.1.0.1"), Allow);
        // The same object in two files is a duplicate, rejected.
        std::fs::write(dir.path().join("c.yaml"), pods("client")).unwrap();
        match next() {
            Outcome::Rejected { message } => assert!(message.contains("Duplicate value"), "{message}"),
            other => panic!("expected a rejection, got {other:?}"),
        }
        drop(watcher);
    }

    #[test]
    fn incremental_stream_events_publish_and_bad_ones_are_rejected() {
        use dataplane::Action::{Allow, Deny};
        let (r, mut w) = std::io::pipe().unwrap();
        let target = Arc::new(ArcSwap::from_pointee(Snapshot::empty(0)));
        let watcher = PolicyWatcher::start_with(
            PolicySource::Stream(Box::new(r)),
            target.clone(),
            0,
            Box::new(IncrementalSnapshots::for_stream()),
            PolicyMetrics::default(),
            Duration::from_millis(20),
        )
        .unwrap();
        let next = || watcher.outcomes().recv_timeout(Duration::from_secs(10)).expect("an outcome");
        let pod = |ty: &str, name: &str, app: &str, ip: &str| {
            format!(r#"{{"type":"{ty}","object":{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"dev","labels":{{"app":"{app}"}}}},"status":{{"podIP":"{ip}"}}}}}}"#)
        };
        use std::io::Write;
        let policy = r#"{"type":"ADDED","object":{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"web","namespace":"dev"},"spec":{"podSelector":{"matchLabels":{"app":"web"}},"ingress":[{"from":[{"podSelector":{"matchLabels":{"app":"client"}}}]}]}}}"#;
        writeln!(w, r#"{{"type":"ADDED","object":{{"apiVersion":"v1","kind":"Namespace","metadata":{{"name":"dev"}}}}}}"#).unwrap();
        writeln!(w, "{}\n{}\n{}", pod("ADDED", "web", "web", "10.1.0.1"), pod("ADDED", "c", "client", "10.1.0.2"), policy).unwrap();
        assert_eq!(next(), Outcome::Published { generation: 1 });
        assert_eq!(verdict(&target.load(), "10.1.0.2", "10.1.0.1"), Allow);
        writeln!(w, "{}", pod("MODIFIED", "c", "other", "10.1.0.2")).unwrap();
        assert_eq!(next(), Outcome::Published { generation: 2 });
        assert_eq!(verdict(&target.load(), "10.1.0.2", "10.1.0.1"), Deny);
        writeln!(w, "{}", pod("ADDED", "bad", "x", "not-an-ip")).unwrap();
        assert!(matches!(next(), Outcome::Rejected { .. }));
        assert_eq!(dataplane::Classifier::generation(&**target.load()), 2);
        // The bad pod's deletion, with a relabel: both apply.
        writeln!(w, "{}\n{}", pod("DELETED", "bad", "x", "not-an-ip"), pod("MODIFIED", "c", "client", "10.1.0.2")).unwrap();
        assert_eq!(next(), Outcome::Published { generation: 3 });
        assert_eq!(verdict(&target.load(), "10.1.0.2", "10.1.0.1"), Allow);
        drop(w);
        drop(watcher);
    }

    /// Once the stream is quiet after a publish, the snapshot in force is replaced by its
    /// flattened copy: same generation, same verdicts.
    #[test]
    fn a_quiet_source_gets_the_snapshot_in_force_flattened() {
        use dataplane::Action::Allow;
        let (r, mut w) = std::io::pipe().unwrap();
        // Already flat: nothing to compact before the first change.
        let target = Arc::new(ArcSwap::from_pointee(Snapshot::empty(0).flattened()));
        let metrics = PolicyMetrics::default();
        let watcher = PolicyWatcher::start_with(
            PolicySource::Stream(Box::new(r)),
            target.clone(),
            0,
            Box::new(IncrementalSnapshots::for_stream()),
            metrics.clone(),
            Duration::from_millis(20),
        )
        .unwrap();
        use std::io::Write;
        let policy = r#"{"type":"ADDED","object":{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"web","namespace":"dev"},"spec":{"podSelector":{"matchLabels":{"app":"web"}},"ingress":[{"from":[{"podSelector":{"matchLabels":{"app":"client"}}}]}]}}}"#;
        writeln!(w, r#"{{"type":"ADDED","object":{{"apiVersion":"v1","kind":"Namespace","metadata":{{"name":"dev"}}}}}}"#).unwrap();
        for (name, app, ip) in [("web", "web", "10.1.0.1"), ("c", "client", "10.1.0.2")] {
            writeln!(w, r#"{{"type":"ADDED","object":{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"dev","labels":{{"app":"{app}"}}}},"status":{{"podIP":"{ip}"}}}}}}"#).unwrap();
        }
        writeln!(w, "{policy}").unwrap();
        assert_eq!(watcher.outcomes().recv_timeout(Duration::from_secs(10)).unwrap(), Outcome::Published { generation: 1 });
        assert_eq!(watcher.compacted().recv_timeout(Duration::from_secs(10)).unwrap(), 1);
        let s = target.load_full();
        assert!(s.is_flattened());
        assert_eq!(dataplane::Classifier::generation(&*s), 1);
        assert_eq!(verdict(&s, "10.1.0.2", "10.1.0.1"), Allow);
        assert_eq!(verdict(&s, "10.1.0.1", "10.1.0.2"), Allow);
        assert_eq!(metrics.compacted.get(), 1);
        assert_eq!(metrics.generation.get(), 1);
        drop(w);
        drop(watcher);
    }

    /// A compiler of `(generation, compacted)` values whose compaction waits for the
    /// test's go, announcing the generation it started on.
    struct Gated {
        started: Sender<u64>,
        go: Receiver<()>,
    }

    impl PolicyCompiler<(u64, bool)> for Gated {
        fn directory(&mut self, _: &Path, generation: u64) -> Result<(u64, bool), String> {
            Ok((generation, false))
        }
        fn events(&mut self, _: &[Event], generation: u64) -> Result<(u64, bool), String> {
            Ok((generation, false))
        }
        fn compactor(&self) -> Option<Compactor<(u64, bool)>> {
            let (started, go) = (self.started.clone(), self.go.clone());
            Some(Arc::new(move |&(generation, compacted): &(u64, bool)| {
                if compacted {
                    return None;
                }
                started.send(generation).unwrap();
                go.recv().unwrap();
                Some((generation, true))
            }))
        }
    }

    /// A change published while the previous generation is being compacted is not
    /// delayed by it, and the older compacted copy never replaces it.
    #[test]
    fn a_compacted_copy_never_replaces_a_newer_generation() {
        let (r, mut w) = std::io::pipe().unwrap();
        let (started_tx, started) = bounded(8);
        let (go, go_rx) = bounded(8);
        let target = Arc::new(ArcSwap::from_pointee((0u64, true)));
        let watcher = PolicyWatcher::start_with(
            PolicySource::Stream(Box::new(r)),
            target.clone(),
            0,
            Box::new(Gated { started: started_tx, go: go_rx }),
            PolicyMetrics::default(),
            Duration::from_millis(20),
        )
        .unwrap();
        let next = || watcher.outcomes().recv_timeout(Duration::from_secs(10)).expect("an outcome");
        use std::io::Write;
        writeln!(w, "{}", event("ADDED", "a")).unwrap();
        assert_eq!(next(), Outcome::Published { generation: 1 });
        // Generation 1 is being compacted (and held there) when generation 2 comes.
        assert_eq!(started.recv_timeout(Duration::from_secs(10)).unwrap(), 1);
        writeln!(w, "{}", event("ADDED", "b")).unwrap();
        assert_eq!(next(), Outcome::Published { generation: 2 });
        assert_eq!(**target.load(), (2, false));
        go.send(()).unwrap();
        // Generation 2 is compacted next; generation 1's copy was dropped.
        assert_eq!(started.recv_timeout(Duration::from_secs(10)).unwrap(), 2);
        assert_eq!(**target.load(), (2, false));
        go.send(()).unwrap();
        assert_eq!(watcher.compacted().recv_timeout(Duration::from_secs(10)).unwrap(), 2);
        assert_eq!(**target.load(), (2, true));
        assert!(watcher.compacted().try_recv().is_err());
        drop(w);
        drop(watcher);
    }

    /// The cluster kept beside the published snapshot equals the compiler's cluster in
    /// force after every publish, also while readers hold older ones (which then
    /// cannot be reused and are copied instead), and a rejected batch changes nothing.
    #[test]
    fn the_cluster_in_force_follows_every_publish() {
        let target = Arc::new(ArcSwap::from_pointee(Cluster::default()));
        let mut compiler = IncrementalSnapshots::for_stream().keep_cluster_in(target.clone());
        let event = |kind: EventType, json: String, index: usize| {
            let value: serde_json::Value = serde_json::from_str(&json).unwrap();
            let object = match value["kind"].as_str() {
                Some("Namespace") => Object::Namespace(serde_json::from_value(value).unwrap()),
                _ => Object::Pod(serde_json::from_value(value).unwrap()),
            };
            Event { kind, object, index }
        };
        let pod = |name: String, app: usize, ip: String| {
            format!(r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"dev","labels":{{"app":"a{app}"}}}},"status":{{"podIP":"{ip}"}}}}"#)
        };
        let namespace = r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"dev"}}"#.to_owned();
        let mut index = 0;
        let mut readers = Vec::new();
        for round in 0..24usize {
            let mut events = Vec::new();
            if round == 0 {
                events.push(event(EventType::Added, namespace.clone(), index));
            }
            for k in 0..3 {
                index += 1;
                let n = (round * 7 + k * 3) % 9;
                let kind = match (round + k) % 4 {
                    0 => EventType::Deleted,
                    1 => EventType::Added,
                    _ => EventType::Modified,
                };
                events.push(event(kind, pod(format!("p{n}"), round % 3, format!("10.0.0.{}", n + 1)), index));
            }
            if round % 5 == 4 {
                index += 1;
                events.push(event(EventType::Added, pod("bad".into(), 0, "not-an-ip".into()), index));
                assert!(compiler.events(&events, round as u64 + 1).is_err());
                events.pop();
            }
            compiler.events(&events, round as u64 + 1).unwrap();
            compiler.published();
            assert_eq!(format!("{:?}", target.load()), format!("{:?}", Arc::new(compiler.cluster())), "round {round}");
            if round % 3 == 0 {
                readers.push(target.load_full());
            }
            if round % 6 == 5 {
                readers.clear();
            }
        }
    }
}
