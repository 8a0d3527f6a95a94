//! Metrics: Prometheus (OpenMetrics) text exposition over HTTP, built with
//! `prometheus-client`.
//!
//! The dataplane's counters live with their workers (plain per-worker counters read
//! relaxed); this module never touches them directly. On every scrape it asks a
//! `SampleSource` for a `Sample` — a plain copy of all counters — and encodes it as
//! constant metrics, so a scrape costs the workers nothing. Control-plane figures
//! (generation, compile time, change-to-enforced latency, rejected updates) are owned
//! here in `PolicyMetrics` and updated by the publisher.
//!
//! Owns: metric names, the HTTP endpoint. Must not touch: the packet path.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::accept::AcceptLoop;

/// Default metrics address: localhost only, unless the operator says otherwise.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9469";

/// One port's counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PortSample {
    pub port: String,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Packets the NIC dropped because rx queues were full (`imissed`).
    pub missed: u64,
    /// Packets the appliance failed to transmit (tx ring full) or the NIC counted as errors.
    pub drops: u64,
}

/// One worker's counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkerSample {
    pub worker: u32,
    pub lcore: u32,
    pub packets: u64,
    /// TSC cycles spent in bursts that carried packets.
    pub busy_cycles: u64,
}

/// Flow-table figures, summed over workers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlowSample {
    pub occupancy: u64,
    pub capacity: u64,
    pub inserts: u64,
    pub expiries: u64,
    /// New flows decided but not inserted because the table was full.
    pub full_events: u64,
    /// Flow-log records dropped because the log's queue was full.
    pub log_dropped: u64,
}

/// Everything the dataplane reports, copied out at scrape time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    pub ports: Vec<PortSample>,
    pub workers: Vec<WorkerSample>,
    pub flows: FlowSample,
    /// Drops by reason (`policy`, `malformed`, `table_full`, `fragment`, `no_flow`, ...).
    pub drops_by_reason: Vec<(&'static str, u64)>,
    /// Policy drops by deciding rule name.
    pub drops_by_rule: Vec<(String, u64)>,
}

/// Where scrapes get the dataplane's counters from.
pub trait SampleSource: Send + Sync + 'static {
    fn sample(&self) -> Sample;
}

impl<F: Fn() -> Sample + Send + Sync + 'static> SampleSource for F {
    fn sample(&self) -> Sample {
        self()
    }
}

/// Control-plane metrics, updated by whoever publishes snapshots.
#[derive(Clone, Debug)]
pub struct PolicyMetrics {
    pub generation: Gauge,
    pub compile_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub change_to_enforced: Histogram,
    pub applied: Counter,
    pub rejected: Counter,
    /// Snapshots republished compacted (flattened, same generation) once the source was quiet.
    pub compacted: Counter,
    pub compact_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl Default for PolicyMetrics {
    fn default() -> Self {
        Self {
            generation: Gauge::default(),
            compile_seconds: Gauge::default(),
            // 100 µs .. ~1.6 s
            change_to_enforced: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.0001, 2.0, 15,
            )),
            applied: Counter::default(),
            rejected: Counter::default(),
            compacted: Counter::default(),
            compact_seconds: Gauge::default(),
        }
    }
}

struct DataplaneCollector<S> {
    source: Arc<S>,
}

impl<S> std::fmt::Debug for DataplaneCollector<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataplaneCollector")
    }
}

type Labels = Vec<(Cow<'static, str>, Cow<'static, str>)>;

fn labels<const N: usize>(pairs: [(&'static str, String); N]) -> Labels {
    pairs.into_iter().map(|(k, v)| (Cow::Borrowed(k), Cow::Owned(v))).collect()
}

/// Encodes one family of constant counters or gauges.
fn family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    ty: MetricType,
    rows: impl IntoIterator<Item = (Labels, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, ty)?;
    for (set, value) in rows {
        let m = metric.encode_family(&set)?;
        match ty {
            MetricType::Counter => ConstCounter::new(value).encode(m)?,
            _ => ConstGauge::new(value as i64).encode(m)?,
        }
    }
    Ok(())
}

/// Encodes one unlabelled constant counter or gauge.
fn single(encoder: &mut DescriptorEncoder, name: &str, help: &str, ty: MetricType, value: u64) -> Result<(), std::fmt::Error> {
    let m = encoder.encode_descriptor(name, help, None, ty)?;
    match ty {
        MetricType::Counter => ConstCounter::new(value).encode(m),
        _ => ConstGauge::new(value as i64).encode(m),
    }
}

impl<S: SampleSource> Collector for DataplaneCollector<S> {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.source.sample();
        let port = |p: &PortSample| labels([("port", p.port.clone())]);
        use MetricType::{Counter as C, Gauge as G};
        family(&mut e, "palisade_port_rx_packets", "Packets received per port.", C, s.ports.iter().map(|p| (port(p), p.rx_packets)))?;
        family(&mut e, "palisade_port_tx_packets", "Packets transmitted per port.", C, s.ports.iter().map(|p| (port(p), p.tx_packets)))?;
        family(&mut e, "palisade_port_rx_bytes", "Bytes received per port.", C, s.ports.iter().map(|p| (port(p), p.rx_bytes)))?;
        family(&mut e, "palisade_port_tx_bytes", "Bytes transmitted per port.", C, s.ports.iter().map(|p| (port(p), p.tx_bytes)))?;
        family(&mut e, "palisade_port_missed_packets", "Packets the NIC dropped for lack of rx descriptors.", C, s.ports.iter().map(|p| (port(p), p.missed)))?;
        family(&mut e, "palisade_port_drop_packets", "Packets dropped at a port (tx ring full, NIC errors).", C, s.ports.iter().map(|p| (port(p), p.drops)))?;
        let worker = |w: &WorkerSample| labels([("worker", w.worker.to_string()), ("lcore", w.lcore.to_string())]);
        family(&mut e, "palisade_worker_packets", "Packets handled per worker.", C, s.workers.iter().map(|w| (worker(w), w.packets)))?;
        family(&mut e, "palisade_worker_busy_cycles", "TSC cycles spent on bursts that carried packets, per worker.", C, s.workers.iter().map(|w| (worker(w), w.busy_cycles)))?;
        {
            let mut m = e.encode_descriptor(
                "palisade_worker_cycles_per_packet",
                "Busy TSC cycles per packet, per worker (0 before the first packet).",
                None,
                G,
            )?;
            for w in &s.workers {
                let cpp = if w.packets == 0 { 0.0 } else { w.busy_cycles as f64 / w.packets as f64 };
                ConstGauge::new(cpp).encode(m.encode_family(&worker(w))?)?;
            }
        }
        single(&mut e, "palisade_flow_table_entries", "Live flow-table entries, all workers.", G, s.flows.occupancy)?;
        single(&mut e, "palisade_flow_table_capacity", "Flow-table capacity, all workers.", G, s.flows.capacity)?;
        single(&mut e, "palisade_flow_inserts", "Flows inserted.", C, s.flows.inserts)?;
        single(&mut e, "palisade_flow_expiries", "Flows aged out or closed.", C, s.flows.expiries)?;
        single(&mut e, "palisade_flow_table_full", "New flows not inserted because the table was full.", C, s.flows.full_events)?;
        single(&mut e, "palisade_flow_log_dropped", "Flow-log records dropped because the log's queue was full.", C, s.flows.log_dropped)?;
        family(&mut e, "palisade_drops", "Packets dropped, by reason.", C, s.drops_by_reason.iter().map(|(r, v)| (labels([("reason", (*r).to_owned())]), *v)))?;
        family(&mut e, "palisade_policy_drops", "Packets dropped by policy, by deciding rule.", C, s.drops_by_rule.iter().map(|(r, v)| (labels([("rule", r.clone())]), *v)))?;
        Ok(())
    }
}

/// The metrics registry: dataplane counters (by sample) plus policy metrics.
pub struct Telemetry {
    registry: Registry,
    pub policy: PolicyMetrics,
}

impl Telemetry {
    pub fn new<S: SampleSource>(source: Arc<S>) -> Self {
        Self::with_policy(source, PolicyMetrics::default())
    }

    /// Exports `policy`, the metrics the snapshot publisher updates (clones share values).
    pub fn with_policy<S: SampleSource>(source: Arc<S>, policy: PolicyMetrics) -> Self {
        let mut registry = Registry::default();
        registry.register("palisade_snapshot_generation", "Generation of the snapshot in force", policy.generation.clone());
        registry.register_with_unit(
            "palisade_snapshot_compile",
            "Time the last accepted snapshot took to compile",
            Unit::Seconds,
            policy.compile_seconds.clone(),
        );
        registry.register_with_unit(
            "palisade_policy_change_to_enforced",
            "Time from a policy-source change to its snapshot being published to the workers",
            Unit::Seconds,
            policy.change_to_enforced.clone(),
        );
        registry.register("palisade_policy_applied", "Policy updates compiled and published", policy.applied.clone());
        registry.register("palisade_policy_rejected", "Policy updates rejected (the previous snapshot stayed in force)", policy.rejected.clone());
        registry.register("palisade_policy_compacted", "Snapshots republished flattened (same generation) once the policy source was quiet", policy.compacted.clone());
        registry.register_with_unit(
            "palisade_snapshot_compact",
            "Time the last snapshot took to flatten (off the change path)",
            Unit::Seconds,
            policy.compact_seconds.clone(),
        );
        registry.register_collector(Box::new(DataplaneCollector { source }));
        Self { registry, policy }
    }

    /// The full exposition text (OpenMetrics), as served at `/metrics`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// A running metrics endpoint; stops (and joins its thread) on drop.
pub struct MetricsServer {
    addr: SocketAddr,
    _accept_loop: AcceptLoop,
}

impl MetricsServer {
    /// Binds `addr` and serves `GET /metrics` from a thread of its own.
    pub fn start(addr: &str, telemetry: Arc<Telemetry>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr)
            .map_err(|e| std::io::Error::new(e.kind(), format!("metrics address {addr}: {e}")))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let _accept_loop = AcceptLoop::spawn(
            "metrics",
            move || listener.accept().map(|(stream, _)| stream),
            move |stream| serve_one(stream, &telemetry),
        )?;
        Ok(Self { addr, _accept_loop })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

fn serve_one(stream: TcpStream, telemetry: &Telemetry) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Drain the headers; the request has no body we care about.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            telemetry.render(),
        ),
        ("GET", _) => ("404 Not Found", "text/plain", "palisade serves only /metrics\n".to_owned()),
        _ => ("405 Method Not Allowed", "text/plain", "only GET\n".to_owned()),
    };
    let mut head = String::new();
    let _ = write!(
        head,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut stream = stream;
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample() -> Sample {
        Sample {
            ports: vec![PortSample { port: "net_tap0".into(), rx_packets: 10, tx_packets: 7, missed: 1, drops: 2, ..Default::default() }],
            workers: vec![WorkerSample { worker: 0, lcore: 1, packets: 4, busy_cycles: 400 }],
            flows: FlowSample { occupancy: 3, capacity: 1024, inserts: 5, expiries: 2, full_events: 0, log_dropped: 4 },
            drops_by_reason: vec![("policy", 3), ("malformed", 1)],
            drops_by_rule: vec![("dev-ingress-default-deny".into(), 3)],
        }
    }

    #[test]
    fn renders_every_family_with_values() {
        let t = Telemetry::new(Arc::new(sample));
        t.policy.generation.set(7);
        t.policy.rejected.inc();
        let text = t.render();
        for want in [
            "palisade_port_rx_packets_total{port=\"net_tap0\"} 10",
            "palisade_port_tx_packets_total{port=\"net_tap0\"} 7",
            "palisade_port_missed_packets_total{port=\"net_tap0\"} 1",
            "palisade_port_drop_packets_total{port=\"net_tap0\"} 2",
            "palisade_worker_packets_total{worker=\"0\",lcore=\"1\"} 4",
            "palisade_worker_cycles_per_packet{worker=\"0\",lcore=\"1\"} 100.0",
            "palisade_flow_table_entries 3",
            "palisade_flow_table_full_total 0",
            "palisade_flow_log_dropped_total 4",
            "palisade_drops_total{reason=\"policy\"} 3",
            "palisade_drops_total{reason=\"malformed\"} 1",
            "palisade_policy_drops_total{rule=\"dev-ingress-default-deny\"} 3",
            "palisade_snapshot_generation 7",
            "palisade_policy_rejected_total 1",
            "palisade_policy_applied_total 0",
            "palisade_policy_compacted_total 0",
            "palisade_policy_change_to_enforced_seconds_count 0",
        ] {
            assert!(text.lines().any(|l| l == want), "missing line {want:?} in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn serves_metrics_over_http_and_404s_elsewhere() {
        let t = Arc::new(Telemetry::new(Arc::new(sample)));
        let server = MetricsServer::start("127.0.0.1:0", t).unwrap();
        let get = |path: &str| {
            let mut s = TcpStream::connect(server.local_addr()).unwrap();
            write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        };
        let ok = get("/metrics");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("\npalisade_port_rx_packets_total{port=\"net_tap0\"} 10\n"));
        let missing = get("/");
        assert!(missing.starts_with("HTTP/1.1 404 Not Found\r\n"), "{missing}");
    }
}
