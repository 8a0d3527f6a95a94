//! The poll-mode worker loop and the forwarder that sets it up: one worker per lcore,
//! pinned, each owning rx/tx queue pair `w` of every port, its `PacketFilter` and (in
//! bridge mode) its MAC table outright, so workers share nothing on the packet path.
//!
//! # API (used by `palisade run`, `palisade replay`, tests and benches)
//!
//! ```text
//! let fwd = Forwarder::start(ForwarderConfig { ports, drop_sink, workers, no_huge, .. })?;
//!     // host checks (cores, hugepages), EAL init (only once per process), one mempool,
//!     // ports opened with one queue pair per worker
//! let filters: Vec<F> = (0..fwd.workers()).map(|_| make_filter()).collect();
//! let report = fwd.run(filters, &RunLimits { duration, stop_after_idle }, stop_flag)?;
//!     // blocks until `stop_flag` is set, `duration` passes, or no packet arrived for
//!     // `stop_after_idle`; returns per-port and per-worker counters
//! ```
//!
//! `run_workers(&eal, &ports, drop_sink, filters, &WorkerConfig, &RunLimits, stop)` is
//! the same loop over ports you opened yourself (tests use ring-backed ports).
//!
//! While it runs, `run_live` / `run_workers_live` also publish into a `LiveStats` the
//! control plane reads at any time: each worker stores its totals (rx, tx, drops, busy
//! cycles) into its own cache line once per round that moved packets, relaxed; the main
//! lcore copies the ports' `rte_eth_stats` every `PORT_STATS_EVERY`.
//!
//! - Wire mode joins ports in pairs as a bump in the wire: 0↔1, 2↔3, ...
//! - Bridge mode makes all ports one learning L2 segment (`l2::MacTable`).
//! - `drop_sink`: when set, frames the filter refuses are transmitted on that port
//!   (queue `w`) instead of freed; `palisade replay` points it at a `tx_pcap` vdev to
//!   capture exactly what policy dropped. Off by default.
//!
//! Per round the worker polls every port once (burst 32), prefetches frames a few
//! packets ahead, asks the filter about each frame, buffers it for its output port,
//! and at the end of the round flushes every non-empty tx buffer (what the PMD refuses
//! is freed and counted). Idle rounds call `PacketFilter::idle` and, with a `Backoff`,
//! sleep for a growing interval so software mode does not burn a core; benchmarks run
//! without it.

use crate::dpdk::{
    self, devspec, host, DevSpec, DpdkError, Eal, FreeBin, Mempool, Port, PortConfig, PortStats, RxBurst,
    TxBuffer, BURST,
};
use crate::filter::PacketFilter;
use crate::l2::{L2Decision, MacTable};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How ports are joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Ports in pairs, as a bump in the wire: 0↔1, 2↔3, ...
    #[default]
    Wire,
    /// All ports one learning L2 segment.
    Bridge,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Wire => "wire",
            Mode::Bridge => "bridge",
        })
    }
}

/// Adaptive idle backoff: after `spin_polls` empty rounds in a row, sleep, starting at
/// `min_sleep` and doubling up to `max_sleep`; the first packet resets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub spin_polls: u32,
    pub min_sleep: Duration,
    pub max_sleep: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { spin_polls: 256, min_sleep: Duration::from_micros(1), max_sleep: Duration::from_micros(500) }
    }
}

/// How each worker forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    pub mode: Mode,
    /// `None`: busy-poll always (benchmarks, real NICs).
    pub backoff: Option<Backoff>,
    /// Bridge mode: MACs per worker table.
    pub mac_capacity: usize,
    /// Bridge mode: forget a MAC not seen for this long.
    pub mac_age: Duration,
    /// Under load, call `PacketFilter::idle` at least every this many rounds.
    pub upkeep_every: u32,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            mode: Mode::Wire,
            backoff: None,
            mac_capacity: 4096,
            mac_age: Duration::from_secs(300),
            upkeep_every: 1024,
        }
    }
}

/// When `run` returns (besides the caller's stop flag).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunLimits {
    pub duration: Option<Duration>,
    /// Stop once no worker has received a packet for this long (finite inputs such as
    /// a pcap: everything read has then been forwarded and flushed).
    pub stop_after_idle: Option<Duration>,
}

/// Why the workers stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The caller's stop flag (e.g. SIGINT/SIGTERM).
    Requested,
    Duration,
    Idle,
}

/// Counters of one port after a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortReport {
    pub name: String,
    pub id: u16,
    /// The PMD's counters.
    pub stats: PortStats,
    /// Frames received here that the filter refused.
    pub filtered: u64,
    /// Frames received here that bridge mode did not forward (runts, or destination
    /// behind this same port).
    pub l2_dropped: u64,
    /// Frames the workers sent here that the PMD refused (tx queue full), freed.
    pub tx_unsent: u64,
}

impl PortReport {
    /// Every frame lost on this port, for whatever reason.
    pub fn drops(&self) -> u64 {
        self.stats.rx_missed
            + self.stats.rx_errors
            + self.stats.rx_nombuf
            + self.stats.tx_errors
            + self.filtered
            + self.l2_dropped
            + self.tx_unsent
    }
}

/// Counters of one worker after a run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WorkerReport {
    pub lcore: u32,
    pub cpu: Option<u32>,
    /// Frames received.
    pub rx: u64,
    /// Frames the PMDs accepted for transmission (flood copies count once per port).
    pub tx: u64,
    pub filtered: u64,
    pub l2_dropped: u64,
    pub tx_unsent: u64,
    /// Extra copies made by flooding (bridge mode).
    pub flood_copies: u64,
    /// TSC cycles spent in rounds that moved packets.
    pub busy_cycles: u64,
    /// TSC cycles from start to stop.
    pub total_cycles: u64,
}

/// The outcome of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    pub mode: Mode,
    pub stop_reason: StopReason,
    /// Wall time from launching the workers to telling them to stop.
    pub seconds: f64,
    pub tsc_hz: u64,
    pub ports: Vec<PortReport>,
    pub drop_sink: Option<PortReport>,
    pub workers: Vec<WorkerReport>,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("wire mode joins ports in pairs (0↔1, 2↔3, ...), but {0} ports were given; give an even number of --port")]
    OddPorts(usize),
    #[error("{mode} mode needs at least 2 ports, {given} given")]
    TooFewPorts { mode: Mode, given: usize },
    #[error("no worker cores given; name at least one with --workers (e.g. --workers 1)")]
    NoWorkers,
    #[error("worker core {cpu} does not exist or is not available to this process; available cores: {available}")]
    NoSuchCore { cpu: u32, available: String },
    #[error("{0}")]
    Host(String),
    #[error(transparent)]
    Device(#[from] devspec::DevSpecError),
    #[error("the drop sink {0:?} is also a forwarding port; give it its own device")]
    SinkIsForwarding(String),
    #[error("{filters} filters for port {port:?} with {queues} queues: give one filter per worker")]
    FilterCount { filters: usize, port: String, queues: u16 },
    #[error("EAL could not create the devices {0}: a vdev driver name is unknown (DPDK's are net_tap, net_null, net_pcap, net_ring, net_memif, ...; `ls /usr/lib/*/dpdk/pmds-*/librte_net_*` lists the installed ones) or a PCI device cannot be used")]
    UnknownDevice(String),
    #[error("live counters made for a different run: this one has {workers} workers and {ports} ports")]
    LiveShape { workers: usize, ports: usize },
    #[error(transparent)]
    Dpdk(#[from] DpdkError),
}

/// Everything `Forwarder::start` needs; mirrors `palisade run`'s flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwarderConfig {
    pub ports: Vec<DevSpec>,
    /// Where refused frames go instead of being freed (see module doc). Not polled.
    pub drop_sink: Option<DevSpec>,
    /// CPU ids, one worker each.
    pub workers: Vec<u32>,
    pub no_huge: bool,
    /// EAL memory in MB with `no_huge` (default 512).
    pub memory_mb: Option<u32>,
    /// Passed to EAL after palisade's own arguments.
    pub eal_args: Vec<String>,
    /// EAL `--file-prefix` (default `palisade-<pid>`).
    pub file_prefix: Option<String>,
    pub rx_desc: u16,
    pub tx_desc: u16,
    /// Mbufs in the pool (default: `mempool_size` of the ports, workers and descriptors).
    pub mbufs: Option<u32>,
    pub worker: WorkerConfig,
}

impl Default for ForwarderConfig {
    fn default() -> Self {
        ForwarderConfig {
            ports: Vec::new(),
            drop_sink: None,
            workers: Vec::new(),
            no_huge: false,
            memory_mb: None,
            eal_args: Vec::new(),
            file_prefix: None,
            rx_desc: 1024,
            tx_desc: 1024,
            mbufs: None,
            worker: WorkerConfig::default(),
        }
    }
}

impl ForwarderConfig {
    /// Checks what can be checked without EAL: port count for the mode, devices, cores
    /// against the CPUs this process may use, hugepages unless `no_huge`.
    pub fn validate(&self) -> Result<(), WorkerError> {
        let n = self.ports.len();
        match self.worker.mode {
            Mode::Wire if n % 2 != 0 => return Err(WorkerError::OddPorts(n)),
            mode if n < 2 => return Err(WorkerError::TooFewPorts { mode, given: n }),
            _ => {}
        }
        let mut all: Vec<DevSpec> = self.ports.clone();
        if let Some(s) = &self.drop_sink {
            if self.ports.iter().any(|p| p.port_name() == s.port_name()) {
                return Err(WorkerError::SinkIsForwarding(s.spec().to_owned()));
            }
            all.push(s.clone());
        }
        let specs: Vec<&str> = all.iter().map(DevSpec::spec).collect();
        devspec::parse_all(&specs)?;
        if self.workers.is_empty() {
            return Err(WorkerError::NoWorkers);
        }
        let allowed = host::allowed_cpus().map_err(WorkerError::Host)?;
        for &cpu in &self.workers {
            if !allowed.contains(&cpu) || cpu + 1 >= dpdk_sys::RTE_MAX_LCORE {
                return Err(WorkerError::NoSuchCore { cpu, available: cpu_list_text(&allowed) });
            }
        }
        if !self.no_huge {
            host::check_hugepages().map_err(WorkerError::Host)?;
        }
        Ok(())
    }

    /// The EAL argument list: lcores (workers pinned one per CPU, the main lcore on a
    /// free CPU if there is one), exactly the given devices, memory, file prefix, then
    /// the caller's extra arguments.
    pub fn eal_args(&self, allowed_cpus: &[u32]) -> Vec<String> {
        let mut lcores: Vec<String> = self.workers.iter().map(|c| format!("{c}@{c}")).collect();
        let main = match allowed_cpus.iter().find(|c| !self.workers.contains(c)) {
            Some(&cpu) => {
                lcores.insert(0, format!("{cpu}@{cpu}"));
                cpu
            }
            None => {
                // Every CPU works: the main lcore (mostly asleep) shares the first.
                let id = self.workers.iter().max().map_or(0, |m| m + 1);
                lcores.push(format!("{id}@{}", allowed_cpus.first().copied().unwrap_or(0)));
                id
            }
        };
        let mut args = vec![
            "--lcores".to_owned(),
            lcores.join(","),
            "--main-lcore".to_owned(),
            main.to_string(),
            "--file-prefix".to_owned(),
            self.file_prefix.clone().unwrap_or_else(|| format!("palisade-{}", std::process::id())),
        ];
        let mut devices = self.ports.clone();
        devices.extend(self.drop_sink.clone());
        args.extend(devspec::eal_device_args(&devices));
        if self.no_huge {
            args.extend(["--no-huge".to_owned(), "-m".to_owned(), self.memory_mb.unwrap_or(512).to_string()]);
        } else {
            args.push("--huge-unlink".to_owned());
        }
        args.extend(self.eal_args.iter().cloned());
        args
    }
}

fn cpu_list_text(cpus: &[u32]) -> String {
    cpus.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// Mbufs for `ports` ports of `queues` queue pairs: every descriptor filled, a tx
/// buffer per queue, per-lcore caches, slack; rounded to 2^k - 1 (the mempool's
/// sweet spot).
pub fn mempool_size(ports: usize, queues: usize, rx_desc: u16, tx_desc: u16, lcores: usize) -> u32 {
    let need = ports * queues * (rx_desc as usize + tx_desc as usize + 2 * BURST) + (lcores + 1) * 384 + 1024;
    ((need + 1).next_power_of_two() - 1) as u32
}

/// The EAL, one mempool and the opened ports: what `run` forwards on.
pub struct Forwarder {
    // Field order is drop order: ports close before the pool is freed, EAL goes last.
    ports: Vec<Port>,
    drop_sink: Option<Port>,
    pool: Arc<Mempool>,
    eal: Arc<Eal>,
    worker: WorkerConfig,
}

impl Forwarder {
    /// Validates `cfg`, initialises EAL (once per process), creates the mempool and
    /// opens every port with one queue pair per worker.
    pub fn start(cfg: &ForwarderConfig) -> Result<Forwarder, WorkerError> {
        cfg.validate()?;
        let allowed = host::allowed_cpus().map_err(WorkerError::Host)?;
        let eal = Eal::init(&cfg.eal_args(&allowed)).map_err(|e| match e {
            DpdkError::EalInit { errno, .. } if errno == libc::ENODEV => {
                let devices: Vec<&str> = cfg.ports.iter().chain(&cfg.drop_sink).map(DevSpec::spec).collect();
                WorkerError::UnknownDevice(devices.join(" "))
            }
            e => e.into(),
        })?;
        let workers = eal.worker_lcores().len();
        if workers == 0 {
            return Err(DpdkError::NoWorkerLcores.into());
        }
        let n_ports = cfg.ports.len() + cfg.drop_sink.is_some() as usize;
        let count = cfg.mbufs.unwrap_or_else(|| mempool_size(n_ports, workers, cfg.rx_desc, cfg.tx_desc, workers + 1));
        let pool = Mempool::new(&eal, "palisade_mbufs", count, 256, -1)?;
        let pcfg = PortConfig { queues: workers as u16, rx_desc: cfg.rx_desc, tx_desc: cfg.tx_desc, promiscuous: true };
        let ports = cfg.ports.iter().map(|d| Port::open(&pool, d.port_name(), &pcfg)).collect::<Result<Vec<_>, _>>()?;
        let drop_sink = cfg.drop_sink.as_ref().map(|d| Port::open(&pool, d.port_name(), &pcfg)).transpose()?;
        Ok(Forwarder { ports, drop_sink, pool, eal, worker: cfg.worker.clone() })
    }

    /// Number of workers (= queue pairs per port); `run` wants this many filters.
    pub fn workers(&self) -> usize {
        self.eal.worker_lcores().len()
    }

    pub fn eal(&self) -> &Arc<Eal> {
        &self.eal
    }

    pub fn ports(&self) -> &[Port] {
        &self.ports
    }

    pub fn drop_sink(&self) -> Option<&Port> {
        self.drop_sink.as_ref()
    }

    pub fn pool(&self) -> &Arc<Mempool> {
        &self.pool
    }

    /// Forwards until `stop` is set or a limit is reached; see `run_workers`.
    pub fn run<F: PacketFilter + Send>(&self, filters: Vec<F>, limits: &RunLimits, stop: &AtomicBool) -> Result<RunReport, WorkerError> {
        run_workers(&self.eal, &self.ports, self.drop_sink.as_ref(), filters, &self.worker, limits, stop)
    }

    /// Counters for `run_live`: one block per worker, one per forwarding port.
    pub fn live_stats(&self) -> LiveStats {
        LiveStats::new(self.workers(), self.ports.iter().map(|p| p.name().to_owned()).collect())
    }

    /// `run`, publishing counters into `live` (from `live_stats`) while it runs.
    pub fn run_live<F: PacketFilter + Send>(
        &self,
        filters: Vec<F>,
        limits: &RunLimits,
        stop: &AtomicBool,
        live: &LiveStats,
    ) -> Result<RunReport, WorkerError> {
        run_workers_live(&self.eal, &self.ports, self.drop_sink.as_ref(), filters, &self.worker, limits, stop, live)
    }
}

/// Per-worker counters the control plane reads while workers run: written by their
/// worker once per round that moved packets (relaxed stores of its own totals, never
/// per packet), one cache line each so workers never share one.
#[repr(align(64))]
#[derive(Debug, Default)]
struct LiveCounters {
    rx: AtomicU64,
    tx: AtomicU64,
    dropped: AtomicU64,
    busy_cycles: AtomicU64,
}

/// One port's PMD counters, refreshed by the main lcore while the workers run.
#[repr(align(64))]
#[derive(Debug, Default)]
struct LivePort {
    rx_packets: AtomicU64,
    tx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    tx_bytes: AtomicU64,
    rx_missed: AtomicU64,
    rx_errors: AtomicU64,
    tx_errors: AtomicU64,
    rx_nombuf: AtomicU64,
}

/// A worker's live counters as read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerLive {
    pub worker: usize,
    pub lcore: u32,
    pub rx: u64,
    /// Frames the PMDs accepted for transmission.
    pub tx: u64,
    /// Frames the filter refused, bridge mode did not forward, or the PMD would not send.
    pub dropped: u64,
    /// TSC cycles spent in rounds that moved packets.
    pub busy_cycles: u64,
}

/// The counters of a running `run_workers_live`, readable from any thread at any time
/// without disturbing the workers: per-worker totals published by each worker, and
/// per-port PMD counters (`rte_eth_stats`) sampled by the main lcore every
/// `PORT_STATS_EVERY`. Create it before the run with the ports' names.
#[derive(Debug)]
pub struct LiveStats {
    workers: Box<[LiveCounters]>,
    lcores: Box<[AtomicU64]>,
    port_names: Vec<String>,
    ports: Box<[LivePort]>,
    tsc_hz: AtomicU64,
}

/// How often the main lcore copies the ports' PMD counters into `LiveStats`.
pub const PORT_STATS_EVERY: Duration = Duration::from_millis(100);

impl LiveStats {
    pub fn new(workers: usize, port_names: Vec<String>) -> LiveStats {
        LiveStats {
            workers: (0..workers).map(|_| LiveCounters::default()).collect(),
            lcores: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            ports: port_names.iter().map(|_| LivePort::default()).collect(),
            port_names,
            tsc_hz: AtomicU64::new(0),
        }
    }

    pub fn workers(&self) -> Vec<WorkerLive> {
        self.workers
            .iter()
            .zip(self.lcores.iter())
            .enumerate()
            .map(|(worker, (c, lcore))| WorkerLive {
                worker,
                lcore: lcore.load(Ordering::Relaxed) as u32,
                rx: c.rx.load(Ordering::Relaxed),
                tx: c.tx.load(Ordering::Relaxed),
                dropped: c.dropped.load(Ordering::Relaxed),
                busy_cycles: c.busy_cycles.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Each port's name and its PMD counters as last sampled.
    pub fn ports(&self) -> Vec<(String, PortStats)> {
        self.port_names
            .iter()
            .zip(self.ports.iter())
            .map(|(name, p)| {
                let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
                let stats = PortStats {
                    rx_packets: l(&p.rx_packets),
                    tx_packets: l(&p.tx_packets),
                    rx_bytes: l(&p.rx_bytes),
                    tx_bytes: l(&p.tx_bytes),
                    rx_missed: l(&p.rx_missed),
                    rx_errors: l(&p.rx_errors),
                    tx_errors: l(&p.tx_errors),
                    rx_nombuf: l(&p.rx_nombuf),
                };
                (name.clone(), stats)
            })
            .collect()
    }

    /// The TSC rate the workers' cycle counts are in (0 before the run starts).
    pub fn tsc_hz(&self) -> u64 {
        self.tsc_hz.load(Ordering::Relaxed)
    }

    fn sample_ports(&self, ports: &[Port]) {
        for (p, live) in ports.iter().zip(self.ports.iter()) {
            let s = p.stats();
            let st = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
            st(&live.rx_packets, s.rx_packets);
            st(&live.tx_packets, s.tx_packets);
            st(&live.rx_bytes, s.rx_bytes);
            st(&live.tx_bytes, s.tx_bytes);
            st(&live.rx_missed, s.rx_missed);
            st(&live.rx_errors, s.rx_errors);
            st(&live.tx_errors, s.tx_errors);
            st(&live.rx_nombuf, s.rx_nombuf);
        }
    }
}

/// Runs one worker per filter on EAL's worker lcores (worker `w` on queue pair `w` of
/// every port) until `stop` is set or a limit in `limits` is reached, then returns the
/// counters. Every port (and the drop sink) needs exactly `filters.len()` queue pairs.
pub fn run_workers<F: PacketFilter + Send>(
    eal: &Eal,
    ports: &[Port],
    drop_sink: Option<&Port>,
    filters: Vec<F>,
    cfg: &WorkerConfig,
    limits: &RunLimits,
    stop: &AtomicBool,
) -> Result<RunReport, WorkerError> {
    let names = ports.iter().map(|p| p.name().to_owned()).collect();
    let live = LiveStats::new(filters.len(), names);
    run_workers_live(eal, ports, drop_sink, filters, cfg, limits, stop, &live)
}

/// `run_workers`, publishing counters into `live` while it runs (`live` must have been
/// made for `filters.len()` workers and these `ports`, in order).
#[allow(clippy::too_many_arguments)]
pub fn run_workers_live<F: PacketFilter + Send>(
    eal: &Eal,
    ports: &[Port],
    drop_sink: Option<&Port>,
    filters: Vec<F>,
    cfg: &WorkerConfig,
    limits: &RunLimits,
    stop: &AtomicBool,
    live_stats: &LiveStats,
) -> Result<RunReport, WorkerError> {
    let workers = filters.len();
    if live_stats.workers.len() != workers || live_stats.ports.len() != ports.len() {
        return Err(WorkerError::LiveShape { workers, ports: ports.len() });
    }
    if workers == 0 || workers > eal.worker_lcores().len() {
        return Err(WorkerError::NoWorkers);
    }
    for p in ports.iter().chain(drop_sink) {
        if p.queues() as usize != workers {
            return Err(WorkerError::FilterCount { filters: workers, port: p.name().to_owned(), queues: p.queues() });
        }
    }
    match cfg.mode {
        Mode::Wire if ports.len() % 2 != 0 => return Err(WorkerError::OddPorts(ports.len())),
        mode if ports.len() < 2 => return Err(WorkerError::TooFewPorts { mode, given: ports.len() }),
        _ => {}
    }
    let halt = AtomicBool::new(false);
    let live = &live_stats.workers;
    for (cell, &lcore) in live_stats.lcores.iter().zip(eal.worker_lcores()) {
        cell.store(lcore as u64, Ordering::Relaxed);
    }
    let tsc_hz = eal.tsc_hz();
    live_stats.tsc_hz.store(tsc_hz, Ordering::Relaxed);
    let jobs: Vec<Box<dyn FnOnce() -> Result<WorkerTotals, DpdkError> + Send + '_>> = filters
        .into_iter()
        .enumerate()
        .map(|(w, filter)| {
            let (halt, live) = (&halt, &live[w]);
            Box::new(move || worker_loop(w as u16, ports, drop_sink, filter, cfg, tsc_hz, halt, live))
                as Box<dyn FnOnce() -> Result<WorkerTotals, DpdkError> + Send + '_>
        })
        .collect();
    let monitor = || {
        let started = Instant::now();
        let reason = watch(stop, limits, live_stats, ports, started);
        halt.store(true, Ordering::Relaxed);
        (reason, started.elapsed().as_secs_f64())
    };
    let (results, (stop_reason, seconds)) = eal.run_on_workers(jobs, monitor)?;
    let totals = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    live_stats.sample_ports(ports);

    let mut port_reports: Vec<PortReport> = ports
        .iter()
        .map(|p| PortReport { name: p.name().to_owned(), id: p.id(), stats: p.stats(), filtered: 0, l2_dropped: 0, tx_unsent: 0 })
        .collect();
    let mut sink_report = drop_sink.map(|p| PortReport {
        name: p.name().to_owned(),
        id: p.id(),
        stats: p.stats(),
        filtered: 0,
        l2_dropped: 0,
        tx_unsent: 0,
    });
    let mut worker_reports = Vec::with_capacity(totals.len());
    for (t, &lcore) in totals.iter().zip(eal.worker_lcores()) {
        for (i, r) in port_reports.iter_mut().enumerate() {
            r.filtered += t.filtered[i];
            r.l2_dropped += t.l2_dropped[i];
            r.tx_unsent += t.unsent[i];
        }
        if let Some(r) = sink_report.as_mut() {
            r.tx_unsent += t.sink_unsent;
        }
        worker_reports.push(WorkerReport {
            lcore,
            cpu: eal.lcore_cpu(lcore),
            rx: t.rx,
            tx: t.sent.iter().sum::<u64>() + t.sink_sent,
            filtered: t.filtered.iter().sum(),
            l2_dropped: t.l2_dropped.iter().sum(),
            tx_unsent: t.unsent.iter().sum::<u64>() + t.sink_unsent,
            flood_copies: t.flood_copies,
            busy_cycles: t.busy_cycles,
            total_cycles: t.total_cycles,
        });
    }
    Ok(RunReport {
        mode: cfg.mode,
        stop_reason,
        seconds,
        tsc_hz,
        ports: port_reports,
        drop_sink: sink_report,
        workers: worker_reports,
    })
}

/// The main lcore's watch: returns when a stop condition holds.
fn watch(stop: &AtomicBool, limits: &RunLimits, live_stats: &LiveStats, ports: &[Port], started: Instant) -> StopReason {
    const TICK: Duration = Duration::from_millis(5);
    let live = &live_stats.workers;
    let mut last_rx = 0u64;
    let mut last_change = started;
    let mut last_port_sample: Option<Instant> = None;
    loop {
        if stop.load(Ordering::Relaxed) {
            return StopReason::Requested;
        }
        let now = Instant::now();
        if last_port_sample.is_none_or(|t| now.duration_since(t) >= PORT_STATS_EVERY) {
            live_stats.sample_ports(ports);
            last_port_sample = Some(now);
        }
        if let Some(d) = limits.duration {
            if now.duration_since(started) >= d {
                return StopReason::Duration;
            }
        }
        if let Some(idle) = limits.stop_after_idle {
            let rx: u64 = live.iter().map(|l| l.rx.load(Ordering::Relaxed)).sum();
            if rx != last_rx {
                last_rx = rx;
                last_change = now;
            } else if now.duration_since(last_change) >= idle {
                return StopReason::Idle;
            }
        }
        let mut nap = TICK;
        if let Some(d) = limits.duration {
            nap = nap.min(d.saturating_sub(now.duration_since(started)));
        }
        std::thread::sleep(nap.max(Duration::from_micros(100)));
    }
}

/// What one worker counted, indexed by port where it matters.
struct WorkerTotals {
    rx: u64,
    sent: Vec<u64>,
    unsent: Vec<u64>,
    filtered: Vec<u64>,
    l2_dropped: Vec<u64>,
    sink_sent: u64,
    sink_unsent: u64,
    flood_copies: u64,
    busy_cycles: u64,
    total_cycles: u64,
}

/// How far ahead of the packet being decided its successors' frames are prefetched.
const PREFETCH_AHEAD: usize = 3;

#[allow(clippy::too_many_arguments)]
fn worker_loop<F: PacketFilter>(
    queue: u16,
    ports: &[Port],
    drop_sink: Option<&Port>,
    mut filter: F,
    cfg: &WorkerConfig,
    tsc_hz: u64,
    halt: &AtomicBool,
    live: &LiveCounters,
) -> Result<WorkerTotals, DpdkError> {
    let leases = ports.iter().map(|p| p.lease(queue)).collect::<Result<Vec<_>, _>>()?;
    let sink_lease = drop_sink.map(|p| p.lease(queue)).transpose()?;
    let mut tx: Vec<TxBuffer<'_>> = leases.iter().map(TxBuffer::new).collect();
    let mut sink_tx = sink_lease.as_ref().map(TxBuffer::new);
    let n = ports.len();
    let in_ids: Vec<u16> = ports.iter().map(Port::id).collect();
    let mut filtered = vec![0u64; n];
    let mut l2_dropped = vec![0u64; n];
    let mut mac = match cfg.mode {
        Mode::Bridge => Some(MacTable::new(cfg.mac_capacity, (cfg.mac_age.as_secs_f64() * tsc_hz as f64) as u64)),
        Mode::Wire => None,
    };
    let mut burst = RxBurst::new();
    let mut bin = FreeBin::default();
    let mut rx_total = 0u64;
    let mut flood_copies = 0u64;
    let mut busy = 0u64;
    let mut idle_rounds = 0u32;
    let mut sleep = cfg.backoff.map_or(Duration::ZERO, |b| b.min_sleep);
    let mut round = 0u32;
    let upkeep_mask = cfg.upkeep_every.max(1).next_power_of_two() - 1;
    let start = dpdk::rdtsc();
    // One TSC read per round: a round starts when the previous one ended.
    let mut round_end = start;

    while !halt.load(Ordering::Relaxed) {
        let round_start = round_end;
        let mut got = 0usize;
        for pi in 0..n {
            let k = burst.receive(&leases[pi]);
            if k == 0 {
                continue;
            }
            got += k;
            filter.begin_burst(round_start);
            let in_port = in_ids[pi];
            match &mut mac {
                None => {
                    let (filtered, bin) = (&mut filtered[pi], &mut bin);
                    let sink = &mut sink_tx;
                    // A filter that reads frames decides the whole burst at once
                    // (it may overlap its lookups); the burst then keeps what it admitted.
                    let mut verdicts = [true; BURST];
                    if F::READS_FRAMES {
                        let mut frames: [&[u8]; BURST] = [&[]; BURST];
                        let k = burst.frames(&mut frames);
                        filter.admit_burst(&frames[..k], in_port, &mut verdicts[..k]);
                    }
                    let mut next = 0;
                    burst.retain(
                        false,
                        // Plain forwarding keeps everything without touching `verdicts`.
                        |_| {
                            !F::READS_FRAMES || {
                                next += 1;
                                verdicts[next - 1]
                            }
                        },
                        |m| {
                            *filtered += 1;
                            match sink.as_mut() {
                                Some(s) => s.push(m),
                                None => bin.push(m),
                            }
                        },
                    );
                    tx[pi ^ 1].send_burst(&mut burst);
                }
                Some(table) => {
                    let mut pkts = burst.drain();
                    for ahead in 0..PREFETCH_AHEAD {
                        pkts.prefetch_ahead(ahead);
                    }
                    while let Some(m) = pkts.next() {
                        pkts.prefetch_ahead(PREFETCH_AHEAD - 1);
                        if !filter.admit(m.data(), in_port) {
                            filtered[pi] += 1;
                            match sink_tx.as_mut() {
                                Some(s) => s.push(m),
                                None => bin.push(m),
                            }
                            continue;
                        }
                        match table.decide(m.data(), pi as u16, round_start) {
                            L2Decision::Forward(o) => tx[o as usize].push(m),
                            L2Decision::Drop => {
                                l2_dropped[pi] += 1;
                                bin.push(m);
                            }
                            L2Decision::Flood => {
                                // Every port but the input; the last one takes the original.
                                let last = if pi == n - 1 { n - 2 } else { n - 1 };
                                for (o, buf) in tx.iter_mut().enumerate() {
                                    if o != pi && o != last {
                                        buf.push(m.share());
                                        flood_copies += 1;
                                    }
                                }
                                tx[last].push(m);
                            }
                        }
                    }
                }
            }
        }
        for buf in tx.iter_mut() {
            if !buf.is_empty() {
                buf.flush();
            }
        }
        if let Some(s) = sink_tx.as_mut() {
            s.flush();
        }
        bin.empty();
        round_end = dpdk::rdtsc();
        round = round.wrapping_add(1);
        if got != 0 {
            rx_total += got as u64;
            busy += round_end.wrapping_sub(round_start);
            publish_live(live, rx_total, &tx, sink_tx.as_ref(), busy, &filtered, &l2_dropped);
            idle_rounds = 0;
            if let Some(b) = &cfg.backoff {
                sleep = b.min_sleep;
            }
            if round & upkeep_mask == 0 {
                upkeep(&mut filter, mac.as_mut(), round_end);
            }
        } else {
            upkeep(&mut filter, mac.as_mut(), round_end);
            idle_rounds = idle_rounds.saturating_add(1);
            if let Some(b) = &cfg.backoff {
                if idle_rounds > b.spin_polls {
                    std::thread::sleep(sleep);
                    sleep = (sleep * 2).min(b.max_sleep);
                    round_end = dpdk::rdtsc(); // the sleep is not part of the next round
                }
            }
        }
    }
    for buf in tx.iter_mut() {
        buf.flush();
    }
    if let Some(s) = sink_tx.as_mut() {
        s.flush();
    }
    publish_live(live, rx_total, &tx, sink_tx.as_ref(), busy, &filtered, &l2_dropped);
    let total_cycles = dpdk::rdtsc().wrapping_sub(start);
    Ok(WorkerTotals {
        rx: rx_total,
        sent: tx.iter().map(|b| b.sent).collect(),
        unsent: tx.iter().map(|b| b.unsent).collect(),
        filtered,
        l2_dropped,
        sink_sent: sink_tx.as_ref().map_or(0, |s| s.sent),
        sink_unsent: sink_tx.as_ref().map_or(0, |s| s.unsent),
        flood_copies,
        busy_cycles: busy,
        total_cycles,
    })
}

/// Copies a worker's running totals into its live block (once per busy round).
#[inline]
fn publish_live(
    live: &LiveCounters,
    rx: u64,
    tx: &[TxBuffer<'_>],
    sink: Option<&TxBuffer<'_>>,
    busy: u64,
    filtered: &[u64],
    l2_dropped: &[u64],
) {
    let sent: u64 = tx.iter().map(|b| b.sent).sum::<u64>() + sink.map_or(0, |s| s.sent);
    let unsent: u64 = tx.iter().map(|b| b.unsent).sum::<u64>() + sink.map_or(0, |s| s.unsent);
    let dropped = filtered.iter().sum::<u64>() + l2_dropped.iter().sum::<u64>() + unsent;
    live.rx.store(rx, Ordering::Relaxed);
    live.tx.store(sent, Ordering::Relaxed);
    live.dropped.store(dropped, Ordering::Relaxed);
    live.busy_cycles.store(busy, Ordering::Relaxed);
}

#[inline]
fn upkeep<F: PacketFilter>(filter: &mut F, mac: Option<&mut MacTable>, now: u64) {
    filter.idle(now);
    if let Some(t) = mac {
        t.age(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(ports: &[&str], mode: Mode, workers: &[u32]) -> ForwarderConfig {
        ForwarderConfig {
            ports: ports.iter().map(|p| DevSpec::parse(p).unwrap()).collect(),
            workers: workers.to_vec(),
            no_huge: true,
            file_prefix: Some("t".into()),
            worker: WorkerConfig { mode, ..WorkerConfig::default() },
            ..ForwarderConfig::default()
        }
    }

    #[test]
    fn eal_args_pin_workers_and_put_main_on_a_free_cpu() {
        let c = cfg(&["net_null0", "net_null1"], Mode::Wire, &[1]);
        assert_eq!(
            c.eal_args(&[0, 1]),
            [
                "--lcores", "0@0,1@1", "--main-lcore", "0", "--file-prefix", "t", "--no-pci", "--vdev", "net_null0",
                "--vdev", "net_null1", "--no-huge", "-m", "512"
            ]
        );
        // Every CPU is a worker: the main lcore gets its own id, sharing CPU 0.
        let c = cfg(&["0000:01:00.0", "0000:01:00.1"], Mode::Wire, &[0, 1]);
        let mut c = c;
        c.no_huge = false;
        c.eal_args = vec!["--log-level=8".into()];
        assert_eq!(
            c.eal_args(&[0, 1]),
            [
                "--lcores", "0@0,1@1,2@0", "--main-lcore", "2", "--file-prefix", "t", "-a", "0000:01:00.0", "-a",
                "0000:01:00.1", "--huge-unlink", "--log-level=8"
            ]
        );
    }

    #[test]
    fn validation_rejects_bad_port_counts_and_cores() {
        let allowed = host::allowed_cpus().unwrap();
        let ok_cpu = allowed[0];
        let cases: &[(&[&str], Mode, Vec<u32>, &str)] = &[
            (&["net_null0", "net_null1", "net_null2"], Mode::Wire, vec![ok_cpu], "OddPorts"),
            (&["net_null0"], Mode::Bridge, vec![ok_cpu], "TooFewPorts"),
            (&[], Mode::Wire, vec![ok_cpu], "TooFewPorts"),
            (&["net_null0", "net_null1"], Mode::Wire, vec![], "NoWorkers"),
            (&["net_null0", "net_null1"], Mode::Wire, vec![100_000], "NoSuchCore"),
            (&["net_null0", "net_null1"], Mode::Wire, vec![ok_cpu], "ok"),
            (&["net_null0", "net_null1", "net_null2"], Mode::Bridge, vec![ok_cpu], "ok"),
        ];
        for (ports, mode, workers, want) in cases {
            let got = match cfg(ports, *mode, workers).validate() {
                Ok(()) => "ok",
                Err(WorkerError::OddPorts(_)) => "OddPorts",
                Err(WorkerError::TooFewPorts { .. }) => "TooFewPorts",
                Err(WorkerError::NoWorkers) => "NoWorkers",
                Err(WorkerError::NoSuchCore { .. }) => "NoSuchCore",
                Err(e) => panic!("unexpected {e}"),
            };
            assert_eq!(got, *want, "{ports:?} {mode} {workers:?}");
        }
        let mut c = cfg(&["net_null0", "net_null1"], Mode::Wire, &[ok_cpu]);
        c.drop_sink = Some(DevSpec::parse("net_null1").unwrap());
        assert!(matches!(c.validate(), Err(WorkerError::SinkIsForwarding(_))));
    }

    #[test]
    fn mempool_size_covers_descriptors_and_is_2k_minus_1() {
        assert_eq!(mempool_size(2, 1, 1024, 1024, 2), 8191);
        let n = mempool_size(4, 2, 1024, 1024, 3);
        assert!(n as usize >= 4 * 2 * 2048 && (n + 1).is_power_of_two());
    }
}
