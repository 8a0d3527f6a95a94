//! The live side of `palisade run`: what the control plane shows while the workers
//! forward. It reads the workers' counters (relaxed atomics, `LiveStats` and each
//! pipeline's `SharedCounters`), asks the workers for flow dumps over their bounded
//! request channels (answered between bursts), and serves it all as Prometheus
//! metrics, over the control socket, and as the flow log.
//!
//! Rule ids and addresses become names here, never on the packet path: rule ids
//! through the snapshot that produced them, addresses through the cluster in force.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use control::cluster::Cluster;
use control::flowlog::{FlowLog, FlowRecord as LogRecord};
use control::socket::{FlowView, Request, Response};
use control::telemetry::{FlowSample, PolicyMetrics, PortSample, Sample, SampleSource, WorkerSample};
use dataplane::flow::TcpState;
use dataplane::pipeline::live::{Dump, FlowEvent, FlowEventKind, PipelineHandle, Receiver, RecvTimeoutError, RuleDrops};
use dataplane::pipeline::{Counters, FlowRecord};
use dataplane::snapshot::Snapshot;
use dataplane::worker::LiveStats;
use dataplane::{Classifier, RuleId, Verdict, NO_RULE};

/// How long a request waits for a worker's dump (workers answer between bursts, so
/// this is only reached when a worker is stopped).
const DUMP_TIMEOUT: Duration = Duration::from_secs(1);

/// How often the collector folds the workers' per-rule drop counts (bounds what
/// workers hold for replaced snapshots).
const COLLECT_EVERY: Duration = Duration::from_secs(1);

/// Snapshots kept to name the rules of flows decided under an older generation.
const HISTORY: usize = 16;

/// Everything the control plane reads from a running appliance.
pub struct Live {
    pub stats: Arc<LiveStats>,
    pub handles: Vec<PipelineHandle<Snapshot>>,
    pub snapshots: Arc<ArcSwap<Snapshot>>,
    pub cluster: Arc<ArcSwap<Cluster>>,
    pub policy: PolicyMetrics,
    rules: Mutex<RuleTotals>,
    history: Mutex<BTreeMap<u64, Arc<Snapshot>>>,
}

/// Policy drops by rule name: final counts of replaced snapshots, plus each worker's
/// cumulative counts under its current one.
#[derive(Default)]
struct RuleTotals {
    retired: BTreeMap<String, u64>,
    current: Vec<Option<RuleDrops<Snapshot>>>,
}

fn rule_label(snapshot: &Snapshot, rule: RuleId) -> String {
    if rule == NO_RULE {
        return "(unknown)".to_owned();
    }
    match snapshot.rule_name(rule) {
        "" => format!("#{rule}"),
        name => name.to_owned(),
    }
}

fn add_drops(into: &mut BTreeMap<String, u64>, drops: &RuleDrops<Snapshot>) {
    for &(rule, n) in &drops.counts {
        *into.entry(rule_label(&drops.snapshot, rule)).or_default() += n;
    }
}

impl Live {
    pub fn new(
        stats: Arc<LiveStats>,
        handles: Vec<PipelineHandle<Snapshot>>,
        snapshots: Arc<ArcSwap<Snapshot>>,
        cluster: Arc<ArcSwap<Cluster>>,
        policy: PolicyMetrics,
    ) -> Live {
        let current = handles.iter().map(|_| None).collect();
        Live {
            stats,
            handles,
            snapshots,
            cluster,
            policy,
            rules: Mutex::new(RuleTotals { retired: BTreeMap::new(), current }),
            history: Mutex::new(BTreeMap::new()),
        }
    }

    /// Remembers the snapshot in force (and `extra`), to name older flows' rules.
    fn observe(&self, extra: Option<&Arc<Snapshot>>) {
        let mut h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        for s in [Some(self.snapshots.load_full()), extra.cloned()].into_iter().flatten() {
            h.entry(s.generation()).or_insert(s);
        }
        while h.len() > HISTORY {
            h.pop_first();
        }
    }

    fn snapshot_of(&self, generation: u64) -> Option<Arc<Snapshot>> {
        self.history.lock().unwrap_or_else(|e| e.into_inner()).get(&generation).cloned()
    }

    /// Folds a worker's dump into the per-rule totals.
    fn fold(&self, worker: usize, dump: &Dump<Snapshot>) {
        let mut t = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        for r in &dump.retired_rule_drops {
            add_drops(&mut t.retired, r);
        }
        t.current[worker] = Some(dump.current_rule_drops.clone());
    }

    /// Asks every worker for a dump (with flows or without), folding their rule drops.
    fn dumps(&self, flows: bool) -> Vec<(usize, Dump<Snapshot>)> {
        self.observe(None);
        let mut out = Vec::new();
        for (w, h) in self.handles.iter().enumerate() {
            if let Some(d) = h.dump(flows, DUMP_TIMEOUT) {
                self.fold(w, &d);
                self.observe(Some(&d.snapshot));
                out.push((w, d));
            }
        }
        out
    }

    /// Policy drops by rule name, all workers, all generations (as of the last fold).
    fn drops_by_rule(&self) -> Vec<(String, u64)> {
        let t = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = t.retired.clone();
        for c in t.current.iter().flatten() {
            add_drops(&mut all, c);
        }
        all.into_iter().collect()
    }

    /// The pipelines' counters summed over workers, with flow-table figures.
    fn pipeline_totals(&self) -> (Counters, u64, u64) {
        let mut sum = [0u64; Counters::LEN];
        let (mut entries, mut capacity) = (0, 0);
        for h in &self.handles {
            let s = h.shared.load();
            for (a, b) in sum.iter_mut().zip(s.counters.values()) {
                *a += b;
            }
            entries += s.flow_entries;
            capacity += s.flow_capacity;
        }
        (Counters::from_values(sum), entries, capacity)
    }

    /// A full sample for the metrics endpoint (asks the workers for rule drops).
    pub fn sample_now(&self) -> Sample {
        self.dumps(false);
        self.sample()
    }

    fn sample(&self) -> Sample {
        let ports = self
            .stats
            .ports()
            .into_iter()
            .map(|(port, s)| PortSample {
                port,
                rx_packets: s.rx_packets,
                tx_packets: s.tx_packets,
                rx_bytes: s.rx_bytes,
                tx_bytes: s.tx_bytes,
                missed: s.rx_missed,
                drops: s.rx_errors + s.rx_nombuf + s.tx_errors,
            })
            .collect();
        let workers = self
            .stats
            .workers()
            .into_iter()
            .map(|w| WorkerSample { worker: w.worker as u32, lcore: w.lcore, packets: w.rx, busy_cycles: w.busy_cycles })
            .collect();
        let (c, occupancy, capacity) = self.pipeline_totals();
        Sample {
            ports,
            workers,
            flows: FlowSample {
                occupancy,
                capacity,
                inserts: c.flow_inserts,
                expiries: c.flow_expiries,
                full_events: c.flow_table_full,
                log_dropped: c.flow_log_dropped,
            },
            drops_by_reason: vec![
                ("policy", c.drop_policy - c.stateless_denied),
                ("malformed", c.drop_malformed),
                ("table_full", c.stateless_denied),
                ("fragment", c.drop_fragment),
                ("no_flow", c.drop_no_flow),
            ],
            drops_by_rule: self.drops_by_rule(),
        }
    }

    /// `palisade stats`: every counter, name → value, in a stable order.
    fn stats_counters(&self) -> Vec<(String, f64)> {
        let sample = self.sample_now();
        let mut out: Vec<(String, f64)> = Vec::new();
        for p in &sample.ports {
            let n = &p.port;
            out.push((format!("port.{n}.rx_packets"), p.rx_packets as f64));
            out.push((format!("port.{n}.tx_packets"), p.tx_packets as f64));
            out.push((format!("port.{n}.rx_bytes"), p.rx_bytes as f64));
            out.push((format!("port.{n}.tx_bytes"), p.tx_bytes as f64));
            out.push((format!("port.{n}.missed"), p.missed as f64));
            out.push((format!("port.{n}.drops"), p.drops as f64));
        }
        for w in self.stats.workers() {
            let cpp = if w.rx == 0 { 0.0 } else { w.busy_cycles as f64 / w.rx as f64 };
            out.push((format!("worker.{}.rx", w.worker), w.rx as f64));
            out.push((format!("worker.{}.tx", w.worker), w.tx as f64));
            out.push((format!("worker.{}.dropped", w.worker), w.dropped as f64));
            out.push((format!("worker.{}.cycles_per_packet", w.worker), (cpp * 10.0).round() / 10.0));
        }
        let (c, entries, capacity) = self.pipeline_totals();
        for (name, v) in Counters::NAMES.iter().zip(c.values()) {
            out.push((format!("pipeline.{name}"), v as f64));
        }
        out.push(("flow_table.entries".into(), entries as f64));
        out.push(("flow_table.capacity".into(), capacity as f64));
        for (reason, v) in &sample.drops_by_reason {
            out.push((format!("drops.{reason}"), *v as f64));
        }
        for (rule, v) in &sample.drops_by_rule {
            out.push((format!("policy_drops.{rule}"), *v as f64));
        }
        out.push(("policy.generation".into(), self.policy.generation.get() as f64));
        out.push(("policy.applied".into(), self.policy.applied.get() as f64));
        out.push(("policy.rejected".into(), self.policy.rejected.get() as f64));
        out.push(("policy.compacted".into(), self.policy.compacted.get() as f64));
        out
    }

    /// The live flow list, filtered.
    fn flows(&self, pod: Option<&str>, action: Option<control::socket::ActionFilter>) -> Vec<FlowView> {
        let pods = PodNames::of(&self.cluster.load());
        let hz = self.stats.tsc_hz().max(1) as f64;
        let mut views = Vec::new();
        for (w, dump) in self.dumps(true) {
            for f in &dump.flows {
                let mut v = self.flow_view(&pods, w, f, &dump.snapshot);
                v.age_seconds = dump.now.saturating_sub(f.created) as f64 / hz;
                views.push(v);
            }
        }
        views.sort_by(|a, b| (&a.source, &a.destination, &a.protocol).cmp(&(&b.source, &b.destination, &b.protocol)));
        for (i, v) in views.iter_mut().enumerate() {
            v.index = i as u64;
        }
        views.retain(|v| v.matches(pod, action));
        views
    }

    fn rule_names(&self, verdict: &Verdict, generation: u64, current: &Arc<Snapshot>) -> Vec<String> {
        let snap = if current.generation() == generation { Some(current.clone()) } else { self.snapshot_of(generation) };
        verdict
            .rules()
            .map(|r| match &snap {
                Some(s) => rule_label(s, r),
                None => format!("#{r} (generation {generation})"),
            })
            .collect()
    }

    fn flow_view(&self, pods: &PodNames, worker: usize, f: &FlowRecord, snapshot: &Arc<Snapshot>) -> FlowView {
        FlowView {
            index: 0,
            worker: worker as u32,
            protocol: protocol_name(f.protocol),
            source: endpoint(f.src, f.src_port),
            destination: endpoint(f.dst, f.dst_port),
            vlan: vlan(f.vlan),
            source_pod: pods.get(f.src),
            destination_pod: pods.get(f.dst),
            action: if f.verdict.is_allow() { "F".into() } else { "D(FwPolicy)".into() },
            rules: self.rule_names(&f.verdict, f.generation as u64, snapshot),
            tcp_state: (f.tcp != TcpState::None).then(|| format!("{:?}", f.tcp)),
            forward_packets: f.packets[0],
            forward_bytes: f.bytes[0],
            reverse_packets: f.packets[1],
            reverse_bytes: f.bytes[1],
            age_seconds: 0.0,
            generation: f.generation as u64,
        }
    }

    /// Answers one control-socket request.
    pub fn handle(&self, req: Request) -> Response {
        match req {
            Request::Flows { pod, action } => Response::Flows { flows: self.flows(pod.as_deref(), action) },
            Request::Stats => Response::Stats { counters: self.stats_counters() },
            Request::Rules => {
                let cluster = self.cluster.load();
                let tables = control::cn2::tables(&cluster);
                let text = format!(
                    "Snapshot generation {}\n{}",
                    self.snapshots.load().generation(),
                    control::render::rules::rules_text(&tables)
                );
                Response::Rules { text }
            }
        }
    }
}

impl Live {
    /// The pipelines' counters after a run (published by each pipeline as it is
    /// dropped) and the last folded drops by rule, for `--stats-json`.
    pub fn final_counters_json(&self) -> serde_json::Value {
        let (c, entries, capacity) = self.pipeline_totals();
        let mut doc = serde_json::Map::new();
        for (name, v) in Counters::NAMES.iter().zip(c.values()) {
            doc.insert((*name).to_owned(), v.into());
        }
        doc.insert("flow_table_entries".into(), entries.into());
        doc.insert("flow_table_capacity".into(), capacity.into());
        let rules: serde_json::Map<String, serde_json::Value> =
            self.drops_by_rule().into_iter().map(|(r, n)| (r, n.into())).collect();
        doc.insert("policy_drops_by_rule".into(), rules.into());
        doc.into()
    }
}

impl SampleSource for Live {
    fn sample(&self) -> Sample {
        self.sample_now()
    }
}

fn vlan(v: u32) -> Option<u16> {
    // The flow key's VLAN field: 0 untagged, else the VLAN id (plus tag bits).
    (v != 0).then_some((v & 0x0fff) as u16)
}

pub fn protocol_name(p: u8) -> String {
    match p {
        1 => "ICMP".into(),
        6 => "TCP".into(),
        17 => "UDP".into(),
        58 => "ICMPv6".into(),
        132 => "SCTP".into(),
        n => n.to_string(),
    }
}

/// `ip:port` or `[v6]:port` (ICMP echo flows show their identifier as the port).
fn endpoint(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// Pod addresses → (namespace, name), from the cluster in force.
#[derive(Default)]
pub struct PodNames(HashMap<IpAddr, (String, String)>);

impl PodNames {
    pub fn of(cluster: &Cluster) -> PodNames {
        let mut map = HashMap::new();
        for p in &cluster.pods {
            let pod = &p.object;
            let Some(status) = &pod.status else { continue };
            if pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false) {
                continue;
            }
            let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
            let name = pod.metadata.name.clone().unwrap_or_default();
            let ips = status.pod_ips.iter().flatten().map(|i| i.ip.as_str()).chain(status.pod_ip.as_deref());
            for ip in ips.filter_map(|s| s.parse::<IpAddr>().ok()) {
                map.entry(ip).or_insert_with(|| (ns.clone(), name.clone()));
            }
        }
        PodNames(map)
    }

    pub fn get(&self, ip: IpAddr) -> Option<String> {
        self.0.get(&ip).map(|(ns, n)| format!("{ns}/{n}"))
    }

    fn parts(&self, ip: IpAddr) -> (Option<String>, Option<String>) {
        match self.0.get(&ip) {
            Some((ns, n)) => (Some(ns.clone()), Some(n.clone())),
            None => (None, None),
        }
    }
}

/// Remembers each published snapshot (checked every 50 ms) and refreshes the per-rule
/// drop totals every `COLLECT_EVERY`, until dropped.
pub struct Collector {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Collector {
    pub fn start(live: Arc<Live>) -> std::io::Result<Collector> {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new().name("collector".into()).spawn(move || {
            let tick = Duration::from_millis(50);
            let mut waited = Duration::ZERO;
            while !s.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                // Every published snapshot is seen, to name its rules later.
                live.observe(None);
                waited += tick;
                if waited >= COLLECT_EVERY {
                    waited = Duration::ZERO;
                    live.dumps(false);
                }
            }
        })?;
        Ok(Collector { stop, thread: Some(thread) })
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The flow-log writer: drains the workers' flow events into `FlowLog` until every
/// sender is gone (the workers stopped), then flushes.
pub fn spawn_flow_log_writer(live: Arc<Live>, events: Receiver<FlowEvent>, mut log: FlowLog) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("flow-log".into()).spawn(move || {
        let mut cluster = live.cluster.load_full();
        let mut pods = PodNames::of(&cluster);
        loop {
            let event = match events.recv_timeout(Duration::from_millis(200)) {
                Ok(e) => e,
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(e) = log.flush() {
                        tracing::warn!("flow log: {e}");
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let now = live.cluster.load_full();
            if !Arc::ptr_eq(&now, &cluster) {
                cluster = now;
                pods = PodNames::of(&cluster);
            }
            live.observe(None);
            let record = live.log_record(&pods, &event);
            if let Err(e) = log.write(&record) {
                tracing::warn!("flow log: {e}");
            }
        }
        let _ = log.flush();
    })
}

impl Live {
    fn log_record(&self, pods: &PodNames, e: &FlowEvent) -> LogRecord {
        let f = &e.flow;
        let hz = self.stats.tsc_hz().max(1) as f64;
        let (src_namespace, src_pod) = pods.parts(f.src);
        let (dst_namespace, dst_pod) = pods.parts(f.dst);
        let current = self.snapshots.load_full();
        LogRecord {
            time: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()),
            event: match e.kind {
                FlowEventKind::End => "end".into(),
                FlowEventKind::Denied => "denied".into(),
            },
            protocol: protocol_name(f.protocol),
            src_ip: f.src.to_string(),
            src_port: f.src_port,
            dst_ip: f.dst.to_string(),
            dst_port: f.dst_port,
            vlan: vlan(f.vlan),
            src_namespace,
            src_pod,
            dst_namespace,
            dst_pod,
            verdict: if f.verdict.is_allow() { "allow".into() } else { "deny".into() },
            rules: self.rule_names(&f.verdict, f.generation as u64, &current),
            packets: f.packets[0] + f.packets[1],
            bytes: f.bytes[0] + f.bytes[1],
            duration_seconds: f.last_seen.saturating_sub(f.created) as f64 / hz,
        }
    }
}

/// Sends one request to a running appliance's control socket.
pub fn ask(socket: &std::path::Path, req: &Request) -> anyhow::Result<Response> {
    if !socket.exists() {
        anyhow::bail!(
            "is palisade run running? socket {} not found (give --control-socket if it listens elsewhere)",
            socket.display()
        );
    }
    // Flow dumps wait up to DUMP_TIMEOUT per worker; leave room for that.
    match control::socket::request(socket, req, Duration::from_secs(30))? {
        Response::Error { message } => anyhow::bail!("palisade at {}: {message}", socket.display()),
        r => Ok(r),
    }
}
