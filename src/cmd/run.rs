//! `palisade run`: the appliance. Parses and checks the flags (before EAL sees
//! anything, so bad input is an error, not a DPDK abort), starts the forwarder, runs
//! one worker per core until SIGINT/SIGTERM or `--duration`, then prints per-port
//! counters and, with `--stats-json`, writes them as JSON.
//!
//! With no `--port` it runs in software mode: two `net_tap` ports (`pal0`, `pal1`),
//! one worker, no hugepages needed, idle backoff on.
//!
//! `Args` is serde-friendly (kebab-case keys, every field defaulted) so a config file
//! can mirror the flags one for one.

use anyhow::{bail, Context, Result};
use control::socket::DEFAULT_SOCKET;
use control::telemetry::DEFAULT_METRICS_ADDR;
use dataplane::dpdk::{devspec, host, signal};
use super::policy;
use dataplane::filter::ForwardAll;
use dataplane::pipeline::{Pipeline, PipelineConfig, TcpMode};
use dataplane::snapshot::Snapshot;
use dataplane::pipeline::live::{control_link, flow_event_channel};
use dataplane::worker::{Backoff, Forwarder, ForwarderConfig, LiveStats, Mode, RunLimits, RunReport, StopReason, WorkerConfig};
use super::live::{spawn_flow_log_writer, Collector, Live};
use control::flowlog::{self, FlowLog};
use control::socket::ControlServer;
use control::telemetry::{MetricsServer, Telemetry};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The two ports of software mode.
pub const SOFTWARE_PORTS: [&str; 2] = ["net_tap0,iface=pal0", "net_tap1,iface=pal1"];

#[derive(clap::Args, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Args {
    /// A DPDK device: PCI address (0000:01:00.0) or vdev (net_tap0,iface=pt0). Repeat
    /// for each port; wire mode pairs them in order. None: software mode on two net_tap ports.
    #[arg(long = "port", value_name = "DEVSPEC")]
    #[serde(rename = "ports")]
    pub ports: Vec<String>,

    /// wire: ports in pairs as a bump in the wire (0↔1, 2↔3); bridge: one learning L2 segment.
    #[arg(long, value_enum, default_value_t = ModeArg::Wire)]
    pub mode: ModeArg,

    /// Worker cores, one poll-mode worker pinned to each: 1, 1-3 or 1,3
    /// [default: the last available core].
    #[arg(long, value_name = "LCORES")]
    pub workers: Option<String>,

    /// Run without hugepages (EAL --no-huge, with --memory-mb of ordinary memory).
    #[arg(long)]
    pub no_huge: bool,

    /// EAL memory in MB with --no-huge [default: 512].
    #[arg(long, value_name = "MB")]
    pub memory_mb: Option<u32>,

    /// Extra EAL argument, passed through (repeat for each).
    #[arg(long = "eal-arg", value_name = "ARG", allow_hyphen_values = true)]
    #[serde(rename = "eal-args")]
    pub eal_args: Vec<String>,

    /// Stop by itself after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,

    /// Write the final counters as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub stats_json: Option<PathBuf>,

    /// NetworkPolicy manifests to enforce (a directory, watched: changes apply live).
    /// Without it (and without --watch-stream): the bundled example policies in software
    /// mode, no policy (forward everything) with explicit ports.
    #[arg(long, value_name = "DIR")]
    pub manifests: Option<PathBuf>,

    /// Read policy from kubectl's watch-event stream on standard input ("-"):
    /// kubectl get namespaces,pods,nodes,networkpolicies -A --watch --output-watch-events -o json
    #[arg(long, value_name = "-", conflicts_with = "manifests")]
    pub watch_stream: Option<String>,

    /// Flow-table capacity per worker (preallocated).
    #[arg(long, value_name = "FLOWS", default_value_t = 1 << 20)]
    pub flow_capacity: usize,

    /// Pick up TCP connections mid-stream (after a restart): any TCP packet may open a
    /// flow. Default: strict, only a SYN opens one.
    #[arg(long)]
    pub tcp_loose: bool,

    /// Sleep when idle: auto = on when every port is a vdev (software mode), off with
    /// PCI ports; off = always busy-poll (benchmarks).
    #[arg(long, value_enum, default_value_t = BackoffArg::Auto)]
    pub idle_backoff: BackoffArg,

    /// Longest idle sleep, in microseconds.
    #[arg(long, value_name = "US", default_value_t = 500)]
    pub idle_sleep_max_us: u64,

    /// Bridge mode: forget a MAC not seen for this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub mac_age_secs: u64,

    /// Rx descriptors per queue.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub rx_desc: u16,

    /// Tx descriptors per queue.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub tx_desc: u16,

    /// Packet buffers (mbufs) in the pool all ports and workers share. At least every
    /// rx and tx descriptor of every port and worker plus two bursts each and the
    /// per-core caches; with --no-huge each takes a 4 KiB page of --memory-mb. Raise it
    /// for a net_pcap vdev with infinite_rx=1, which holds its whole file in the pool
    /// [default: that minimum plus slack, rounded up to 2^k - 1; 8191 for two ports,
    /// one worker and 1024 descriptors].
    #[arg(long, value_name = "N")]
    pub mbufs: Option<u32>,

    /// Prometheus metrics endpoint (HTTP GET /metrics), or `off`. Localhost unless you
    /// give another address.
    #[arg(long, value_name = "ADDR|off", default_value = DEFAULT_METRICS_ADDR)]
    pub metrics_addr: String,

    /// The control socket `palisade flows`, `stats` and `rules` talk to (mode 0600; its
    /// directory is created).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub control_socket: PathBuf,

    /// Flow log: one JSON line per flow that ends or ages out, to FILE (rotated by
    /// size) or `-` (standard output). Off by default.
    #[arg(long, value_name = "FILE|-")]
    pub flow_log: Option<String>,

    /// Rotate the flow log file when it would grow past this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 100 << 20)]
    pub flow_log_max_bytes: u64,

    /// Rotated flow log files to keep (FILE.1 … FILE.N).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub flow_log_keep: u32,

    /// Also log each denied first packet (needs --flow-log).
    #[arg(long)]
    pub log_denied: bool,

    /// A TOML file with any of these flags as keys (kebab-case, e.g. `metrics-addr`,
    /// `ports = [...]`); flags given on the command line override it.
    #[arg(long, value_name = "FILE.toml")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModeArg {
    #[default]
    Wire,
    Bridge,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackoffArg {
    #[default]
    Auto,
    On,
    Off,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            ports: Vec::new(),
            mode: ModeArg::Wire,
            workers: None,
            no_huge: false,
            memory_mb: None,
            eal_args: Vec::new(),
            duration: None,
            stats_json: None,
            manifests: None,
            watch_stream: None,
            flow_capacity: 1 << 20,
            tcp_loose: false,
            idle_backoff: BackoffArg::Auto,
            idle_sleep_max_us: 500,
            mac_age_secs: 300,
            rx_desc: 1024,
            tx_desc: 1024,
            mbufs: None,
            metrics_addr: DEFAULT_METRICS_ADDR.to_owned(),
            control_socket: PathBuf::from(DEFAULT_SOCKET),
            flow_log: None,
            flow_log_max_bytes: 100 << 20,
            flow_log_keep: 5,
            log_denied: false,
            config: None,
        }
    }
}

impl Args {
    /// Where policy comes from (see `--manifests`).
    pub fn policy_source(&self) -> policy::Source {
        match (&self.manifests, &self.watch_stream) {
            (Some(dir), _) => policy::Source::Dir(dir.clone()),
            (None, Some(_)) => policy::Source::StdinStream,
            (None, None) if self.ports.is_empty() => policy::Source::Bundled,
            (None, None) => policy::Source::None,
        }
    }

    /// `palisade` with no arguments: software mode.
    pub fn default_software_mode() -> Self {
        Args::default()
    }

    /// The forwarder configuration these flags describe, checked.
    pub fn forwarder_config(&self) -> Result<ForwarderConfig> {
        let software = self.ports.is_empty();
        let port_specs: Vec<String> = if software {
            SOFTWARE_PORTS.iter().map(|s| s.to_string()).collect()
        } else {
            self.ports.clone()
        };
        let ports = devspec::parse_all(&port_specs).context("--port")?;
        let allowed = host::allowed_cpus().map_err(anyhow::Error::msg)?;
        let workers = match &self.workers {
            Some(list) => host::parse_cpu_list(list).map_err(|e| anyhow::anyhow!("--workers {e}"))?,
            None => vec![*allowed.last().context("no CPU available to this process")?],
        };
        // Software mode works on any box: without free hugepages it runs on ordinary memory.
        let no_huge = self.no_huge || (software && host::check_hugepages().is_err());
        if no_huge && !self.no_huge {
            tracing::info!("software mode: no free hugepages, running with --no-huge");
        }
        if let Some(d) = self.duration {
            if !(d > 0.0 && d.is_finite()) {
                bail!("--duration {d}: give a positive number of seconds");
            }
        }
        if let Some(n) = self.mbufs {
            check_mbufs(n, ports.len(), workers.len(), self.rx_desc, self.tx_desc, no_huge.then(|| self.memory_mb.unwrap_or(512)))?;
        }
        let all_vdevs = ports.iter().all(|p| p.is_vdev());
        let backoff = match self.idle_backoff {
            BackoffArg::On => true,
            BackoffArg::Off => false,
            BackoffArg::Auto => all_vdevs,
        };
        let mode = match self.mode {
            ModeArg::Wire => Mode::Wire,
            ModeArg::Bridge => Mode::Bridge,
        };
        Ok(ForwarderConfig {
            ports,
            drop_sink: None,
            workers,
            no_huge,
            memory_mb: self.memory_mb,
            eal_args: self.eal_args.clone(),
            file_prefix: None,
            rx_desc: self.rx_desc,
            tx_desc: self.tx_desc,
            mbufs: self.mbufs,
            worker: WorkerConfig {
                mode,
                backoff: backoff.then(|| Backoff {
                    max_sleep: Duration::from_micros(self.idle_sleep_max_us.max(1)),
                    ..Backoff::default()
                }),
                mac_age: Duration::from_secs(self.mac_age_secs),
                ..WorkerConfig::default()
            },
        })
    }
}

/// The largest `--mbufs`: 2^24 - 1 buffers, about 40 GB (2.4 KB each with hugepages).
pub const MAX_MBUFS: u32 = (1 << 24) - 1;

/// Bytes one mbuf takes with --no-huge: a 2.4 KB buffer may not cross a 4 KiB page there.
const NO_HUGE_MBUF_BYTES: u64 = 4096;

/// The fewest mbufs `ports` ports with `workers` queue pairs each can start with: every
/// rx and tx descriptor filled, two bursts in flight per queue, and what the per-core
/// caches (one per worker and the main core) may hold.
pub fn min_mbufs(ports: usize, workers: usize, rx_desc: u16, tx_desc: u16) -> u64 {
    let per_queue = rx_desc as u64 + tx_desc as u64 + 2 * dataplane::dpdk::BURST as u64;
    ports as u64 * workers as u64 * per_queue + (workers as u64 + 1) * 384
}

/// `--mbufs n` against the ports, workers and descriptors it must serve and, with
/// --no-huge, the EAL memory (`memory_mb`) it must fit in.
fn check_mbufs(n: u32, ports: usize, workers: usize, rx_desc: u16, tx_desc: u16, memory_mb: Option<u32>) -> Result<()> {
    let min = min_mbufs(ports, workers, rx_desc, tx_desc);
    if (n as u64) < min || n > MAX_MBUFS {
        bail!(
            "--mbufs {n}: give at least {min} (every rx and tx descriptor of {ports} ports × {workers} worker(s) at \
             --rx-desc {rx_desc} --tx-desc {tx_desc}, two bursts per queue, the per-core caches) and at most {MAX_MBUFS}"
        );
    }
    if let Some(mb) = memory_mb {
        let need_mb = (n as u64 * NO_HUGE_MBUF_BYTES).div_ceil(1 << 20);
        if need_mb >= mb as u64 {
            bail!(
                "--mbufs {n} with --no-huge takes {need_mb} MB (a 4 KiB page per mbuf) and --memory-mb is {mb}: \
                 give --memory-mb at least {} or fewer mbufs",
                need_mb + 256
            );
        }
    }
    Ok(())
}

/// Bounded queue of flow events between the workers and the flow-log writer.
const FLOW_LOG_QUEUE: usize = 1 << 16;

impl Args {
    /// `--metrics-addr`, checked: `None` when `off`.
    pub fn metrics_addr(&self) -> Result<Option<String>> {
        match self.metrics_addr.as_str() {
            "off" => Ok(None),
            a if a.parse::<std::net::SocketAddr>().is_ok() => Ok(Some(a.to_owned())),
            a => bail!("--metrics-addr {a}: give an address and port such as {DEFAULT_METRICS_ADDR} or [::1]:9469, or `off`"),
        }
    }

    /// `--flow-log` and its rotation flags, checked.
    pub fn flow_log_target(&self) -> Result<Option<flowlog::Target>> {
        if self.log_denied && self.flow_log.is_none() {
            bail!("--log-denied writes to the flow log: give --flow-log FILE (or - for standard output) too");
        }
        if self.flow_log_max_bytes == 0 {
            bail!("--flow-log-max-bytes 0: give the size in bytes a flow log file may reach before it is rotated");
        }
        Ok(match self.flow_log.as_deref() {
            None => None,
            Some("-") => Some(flowlog::Target::Stdout),
            Some("") => bail!("--flow-log: give a file name, or - for standard output"),
            Some(path) => Some(flowlog::Target::File {
                path: PathBuf::from(path),
                max_bytes: self.flow_log_max_bytes,
                keep: self.flow_log_keep,
            }),
        })
    }

    /// These flags merged over the `--config` file: a flag given on the command line
    /// (`explicit`, clap arg ids) wins; everything else comes from the file, then
    /// the defaults. Errors name the file and the key.
    pub fn merge_config(self, explicit: &[String]) -> Result<Args> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let text = std::fs::read_to_string(&path).with_context(|| format!("--config {}", path.display()))?;
        merge_config_text(self, &path, &text, explicit)
    }
}

/// `Args::merge_config` over the file's text.
pub fn merge_config_text(cli: Args, path: &std::path::Path, text: &str, explicit: &[String]) -> Result<Args> {
    // toml's messages quote the offending line and, for an unknown key, list the valid ones.
    let bad = |e: &dyn std::fmt::Display| anyhow::anyhow!("config file {}: {}", path.display(), e.to_string().trim_end());
    // The file alone first: unknown keys and wrong types are reported with their line.
    toml::from_str::<Args>(text).map_err(|e| bad(&e))?;
    let mut table: toml::Table = text.parse().map_err(|e| bad(&e))?;
    let cli_table = toml::Table::try_from(&cli).context("encoding the command-line flags")?;
    for id in explicit {
        let key = id.replace('_', "-");
        if key == "config" {
            continue;
        }
        match cli_table.get(&key) {
            Some(v) => table.insert(key, v.clone()),
            None => table.remove(&key),
        };
    }
    let mut merged: Args = table.try_into().map_err(|e: toml::de::Error| bad(&e))?;
    merged.config = cli.config;
    Ok(merged)
}

/// Every key a config file may hold (what the tests check the file format against).
#[cfg(test)]
fn config_keys() -> Vec<String> {
    let table = toml::Table::try_from(Args { workers: Some(String::new()), memory_mb: Some(0), duration: Some(1.0), stats_json: Some(PathBuf::new()), manifests: Some(PathBuf::new()), flow_log: Some(String::new()), mbufs: Some(0), ..Args::default() })
        .unwrap_or_default();
    let mut keys: Vec<String> = table.keys().cloned().collect();
    keys.push("watch-stream".into());
    keys.sort();
    keys
}

/// Whether this process may run DPDK: root, or CAP_NET_ADMIN (with the memory
/// capabilities DPDK needs alongside). Read from /proc/self/status; no unsafe.
fn check_privileges(no_huge: bool) -> Result<()> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim).map(str::to_owned);
    let euid: Option<u32> = field("Uid:").and_then(|v| v.split_whitespace().nth(1).and_then(|u| u.parse().ok()));
    let cap_eff = field("CapEff:").and_then(|v| u64::from_str_radix(&v, 16).ok()).unwrap_or(0);
    let no_hugepages = !no_huge && host::check_hugepages().is_err();
    privilege_problem(euid.unwrap_or(0), cap_eff, no_hugepages).map_or(Ok(()), |m| Err(anyhow::anyhow!(m)))
}

/// What is missing to run, if anything (`cap_eff`: the effective capability mask;
/// `no_hugepages`: hugepages are wanted and none are free).
pub fn privilege_problem(euid: u32, cap_eff: u64, no_hugepages: bool) -> Option<String> {
    const CAP_NET_ADMIN: u64 = 1 << 12;
    if euid == 0 || cap_eff & CAP_NET_ADMIN != 0 {
        return None;
    }
    let memory = if no_hugepages {
        " It also needs free hugepages (reserve them with hugepage-setup) or --no-huge.".to_owned()
    } else {
        String::new()
    };
    Some(format!(
        "palisade run must run as root or with CAP_NET_ADMIN (DPDK takes over network devices and \
         locks memory); this process runs as uid {euid} without it. Run it with sudo, or as the \
         systemd unit in deploy/.{memory}"
    ))
}

pub fn main(args: Args) -> Result<()> {
    check_privileges(args.no_huge)?;
    let cfg = args.forwarder_config()?;
    cfg.validate()?;
    if let (Some(dir), Some(_)) = (&args.manifests, &args.watch_stream) {
        bail!(
            "--manifests {} and --watch-stream exclude each other (one of them may come from the --config file): choose one policy source",
            dir.display()
        );
    }
    if let Some(v) = args.watch_stream.as_deref().filter(|v| *v != "-") {
        bail!("--watch-stream {v}: only \"-\" (standard input) is supported; pipe kubectl's --watch --output-watch-events -o json into palisade");
    }
    let metrics_addr = args.metrics_addr()?;
    let flow_log_target = args.flow_log_target()?;
    let source = args.policy_source();
    let enforcing = source != policy::Source::None;
    if flow_log_target.is_some() && !enforcing {
        tracing::warn!("--flow-log: no policy source, so no flows are tracked and the flow log stays empty");
    }
    let policy = policy::start(&source)?;
    let stop = signal::stop_on_signals();

    // The live side starts before EAL, so a taken address fails fast.
    let port_names: Vec<String> = cfg.ports.iter().map(|d| d.port_name().to_owned()).collect();
    let live_stats = Arc::new(LiveStats::new(cfg.workers.len(), port_names));
    let (flow_tx, flow_rx) = match &flow_log_target {
        Some(_) if enforcing => {
            let (tx, rx) = flow_event_channel(FLOW_LOG_QUEUE);
            (Some(tx), Some(rx))
        }
        _ => (None, None),
    };
    let (links, handles): (Vec<_>, Vec<_>) = if enforcing {
        (0..cfg.workers.len()).map(|_| control_link::<Snapshot>(flow_tx.clone(), args.log_denied)).unzip()
    } else {
        (Vec::new(), Vec::new())
    };
    drop(flow_tx);
    let live = Arc::new(Live::new(live_stats.clone(), handles, policy.snapshots.clone(), policy.cluster.clone(), policy.metrics.clone()));
    let _metrics = match &metrics_addr {
        None => None,
        Some(addr) => {
            let telemetry = Arc::new(Telemetry::with_policy(live.clone(), policy.metrics.clone()));
            match MetricsServer::start(addr, telemetry) {
                Ok(m) => {
                    tracing::info!(addr = %m.local_addr(), "metrics at http://{}/metrics", m.local_addr());
                    Some(m)
                }
                // The default address may be taken by another palisade: carry on without.
                Err(e) if args.metrics_addr == DEFAULT_METRICS_ADDR => {
                    tracing::warn!("{e}; running without metrics (choose another --metrics-addr)");
                    None
                }
                Err(e) => return Err(e).context("--metrics-addr"),
            }
        }
    };
    let handler_live = live.clone();
    let handler: control::socket::Handler = Arc::new(move |req| handler_live.handle(req));
    let _control = match ControlServer::start(&args.control_socket, handler) {
        Ok(c) => Some(c),
        Err(e) if args.control_socket == std::path::Path::new(DEFAULT_SOCKET) => {
            tracing::warn!("{e}; running without a control socket (choose another --control-socket)");
            None
        }
        Err(e) => return Err(e).context("--control-socket"),
    };
    let collector = Collector::start(live.clone()).context("starting the counter collector")?;
    let writer = match (flow_rx, flow_log_target) {
        (Some(rx), Some(target)) => {
            let log = FlowLog::open(target).context("--flow-log")?;
            Some(spawn_flow_log_writer(live.clone(), rx, log).context("starting the flow log writer")?)
        }
        _ => None,
    };

    let fwd = Forwarder::start(&cfg)?;
    for p in fwd.ports() {
        tracing::info!(port = p.name(), id = p.id(), driver = p.driver(), rss = ?p.rss(), queues = p.queues(), "port up");
    }
    tracing::info!(
        mode = %cfg.worker.mode,
        workers = ?fwd.eal().worker_lcores(),
        "forwarding; SIGINT or SIGTERM stops"
    );
    let limits = RunLimits { duration: args.duration.map(Duration::from_secs_f64), stop_after_idle: None };
    let report = if !enforcing {
        fwd.run_live(vec![ForwardAll; fwd.workers()], &limits, stop, &live_stats)?
    } else {
        let pipeline_cfg = PipelineConfig {
            flow_capacity: args.flow_capacity,
            tcp_mode: if args.tcp_loose { TcpMode::Loose } else { TcpMode::Strict },
            ticks_per_second: fwd.eal().tsc_hz(),
            ..PipelineConfig::default()
        };
        let pipelines: Vec<Pipeline<Snapshot>> = links
            .into_iter()
            .map(|link| {
                let mut p = Pipeline::new(policy.snapshots.clone(), &pipeline_cfg);
                p.connect(link);
                p
            })
            .collect();
        fwd.run_live(pipelines, &limits, stop, &live_stats)?
    };
    drop(collector);
    if let Some(w) = writer {
        // The pipelines (and with them the event senders) are gone: the writer drains and ends.
        let _ = w.join();
    }
    print_report(&report);
    if enforcing {
        println!(
            "policy: generation {} in force, {} update(s) applied, {} rejected",
            policy.metrics.generation.get(),
            policy.metrics.applied.get(),
            policy.metrics.rejected.get()
        );
    }
    if let Some(path) = &args.stats_json {
        let mut doc = report_json(&report, &cfg);
        doc["pipeline"] = live.final_counters_json();
        let json = serde_json::to_string_pretty(&doc)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing --stats-json {}", path.display()))?;
    }
    Ok(())
}

fn print_report(r: &RunReport) {
    let why = match r.stop_reason {
        StopReason::Requested => "stop requested",
        StopReason::Duration => "duration reached",
        StopReason::Idle => "input idle",
    };
    println!("palisade: {} mode, stopped ({why}) after {:.3} s", r.mode, r.seconds);
    println!("{:<5} {:<24} {:>14} {:>14} {:>10}", "port", "name", "rx", "tx", "drops");
    for p in &r.ports {
        println!("{:<5} {:<24} {:>14} {:>14} {:>10}", p.id, p.name, p.stats.rx_packets, p.stats.tx_packets, p.drops());
    }
    for w in &r.workers {
        let busy = if w.total_cycles == 0 { 0.0 } else { 100.0 * w.busy_cycles as f64 / w.total_cycles as f64 };
        println!("worker lcore {}: rx {} tx {} drops {} busy {busy:.1}%", w.lcore, w.rx, w.tx, w.filtered + w.l2_dropped + w.tx_unsent);
    }
}

/// The `--stats-json` document.
pub fn report_json(r: &RunReport, cfg: &ForwarderConfig) -> serde_json::Value {
    use serde_json::json;
    let port = |p: &dataplane::worker::PortReport, spec: Option<&str>| {
        json!({
            "id": p.id,
            "name": p.name,
            "devspec": spec,
            "rx": p.stats.rx_packets,
            "tx": p.stats.tx_packets,
            "rx_bytes": p.stats.rx_bytes,
            "tx_bytes": p.stats.tx_bytes,
            "drops": p.drops(),
            "drop_detail": {
                "rx_missed": p.stats.rx_missed,
                "rx_errors": p.stats.rx_errors,
                "rx_nombuf": p.stats.rx_nombuf,
                "tx_errors": p.stats.tx_errors,
                "tx_unsent": p.tx_unsent,
                "filtered": p.filtered,
                "l2_dropped": p.l2_dropped,
            },
        })
    };
    json!({
        "mode": r.mode.to_string(),
        "stop_reason": format!("{:?}", r.stop_reason).to_lowercase(),
        "seconds_forwarding": r.seconds,
        "tsc_hz": r.tsc_hz,
        "ports": r.ports.iter().enumerate().map(|(i, p)| port(p, cfg.ports.get(i).map(|d| d.spec()))).collect::<Vec<_>>(),
        "workers": r.workers.iter().map(|w| json!({
            "lcore": w.lcore,
            "cpu": w.cpu,
            "packets": w.rx,
            "rx": w.rx,
            "tx": w.tx,
            "filtered": w.filtered,
            "l2_dropped": w.l2_dropped,
            "tx_unsent": w.tx_unsent,
            "flood_copies": w.flood_copies,
            "busy_cycles": w.busy_cycles,
            "total_cycles": w.total_cycles,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn software_mode_defaults_to_two_tap_ports_and_backoff() {
        let cfg = Args::default_software_mode().forwarder_config().unwrap();
        let specs: Vec<&str> = cfg.ports.iter().map(|p| p.spec()).collect();
        assert_eq!(specs, SOFTWARE_PORTS);
        assert_eq!(cfg.worker.mode, Mode::Wire);
        assert!(cfg.worker.backoff.is_some());
        assert_eq!(cfg.workers.len(), 1);
    }

    #[test]
    fn pci_ports_busy_poll_unless_told_otherwise() {
        let a = Args { ports: vec!["0000:01:00.0".into(), "0000:01:00.1".into()], no_huge: true, ..Args::default() };
        assert!(a.forwarder_config().unwrap().worker.backoff.is_none());
        let a = Args { idle_backoff: BackoffArg::On, ..a };
        assert!(a.forwarder_config().unwrap().worker.backoff.is_some());
    }

    #[test]
    fn bad_flags_are_errors_naming_the_flag() {
        let cases: &[(Args, &str)] = &[
            (Args { ports: vec!["eth0".into()], ..Args::default() }, "--port"),
            (Args { workers: Some("1-".into()), ..Args::default() }, "--workers"),
            (Args { duration: Some(-1.0), ..Args::default() }, "--duration"),
        ];
        for (args, flag) in cases {
            let e = format!("{:#}", args.forwarder_config().unwrap_err());
            assert!(e.contains(flag), "{e}");
        }
    }

    #[test]
    fn mbufs_is_passed_through_and_checked_against_descriptors_and_memory() {
        let vdevs = || vec!["net_null0".to_owned(), "net_null1".to_owned()];
        let base = Args { ports: vdevs(), workers: Some("0".into()), no_huge: true, ..Args::default() };
        assert_eq!(base.forwarder_config().unwrap().mbufs, None, "default: sized by the forwarder");
        // 2 ports × 1 worker × (1024 + 1024 + 64) + 2 caches × 384.
        assert_eq!(min_mbufs(2, 1, 1024, 1024), 4992);
        assert_eq!(min_mbufs(4, 2, 512, 256), 4 * 2 * (512 + 256 + 64) + 3 * 384);
        let at_min = Args { mbufs: Some(4992), ..base.clone() };
        assert_eq!(at_min.forwarder_config().unwrap().mbufs, Some(4992));
        let cases: &[(Args, &str)] = &[
            (
                Args { mbufs: Some(4991), ..base.clone() },
                "--mbufs 4991: give at least 4992 (every rx and tx descriptor of 2 ports × 1 worker(s) at --rx-desc 1024 \
                 --tx-desc 1024, two bursts per queue, the per-core caches) and at most 16777215",
            ),
            (
                Args { mbufs: Some(2000), rx_desc: 512, tx_desc: 256, ..base.clone() },
                "--mbufs 2000: give at least 2432 (every rx and tx descriptor of 2 ports × 1 worker(s) at --rx-desc 512 \
                 --tx-desc 256, two bursts per queue, the per-core caches) and at most 16777215",
            ),
            (
                Args { mbufs: Some(MAX_MBUFS + 1), ..base.clone() },
                "--mbufs 16777216: give at least 4992 (every rx and tx descriptor of 2 ports × 1 worker(s) at --rx-desc 1024 \
                 --tx-desc 1024, two bursts per queue, the per-core caches) and at most 16777215",
            ),
            (
                Args { mbufs: Some(131_072), ..base.clone() },
                "--mbufs 131072 with --no-huge takes 512 MB (a 4 KiB page per mbuf) and --memory-mb is 512: give --memory-mb at least 768 or fewer mbufs",
            ),
        ];
        for (args, want) in cases {
            assert_eq!(format!("{:#}", args.forwarder_config().unwrap_err()), *want);
        }
        // Enough memory, or hugepages: the same count is fine.
        let big = Args { mbufs: Some(131_072), memory_mb: Some(768), ..base.clone() };
        assert_eq!(big.forwarder_config().unwrap().mbufs, Some(131_072));
        assert!(check_mbufs(1_000_000, 2, 1, 1024, 1024, None).is_ok());
    }

    fn merge(cli: Args, file: &str, explicit: &[&str]) -> Result<Args> {
        let cli = Args { config: Some(PathBuf::from("palisade.toml")), ..cli };
        let explicit: Vec<String> = explicit.iter().map(|s| s.to_string()).collect();
        merge_config_text(cli, std::path::Path::new("palisade.toml"), file, &explicit)
    }

    #[test]
    fn config_file_fills_flags_and_command_line_flags_override_it() {
        let file = r#"
ports = ["net_null0", "net_null1"]
workers = "2"
metrics-addr = "127.0.0.1:9555"
control-socket = "/tmp/p.sock"
flow-log = "/var/log/palisade/flows.log"
flow-log-keep = 9
log-denied = true
mbufs = 65535
"#;
        // Nothing on the command line: all from the file, the rest defaults.
        let a = merge(Args::default(), file, &[]).unwrap();
        assert_eq!(a.ports, ["net_null0", "net_null1"]);
        assert_eq!(a.workers.as_deref(), Some("2"));
        assert_eq!(a.metrics_addr, "127.0.0.1:9555");
        assert_eq!(a.control_socket, PathBuf::from("/tmp/p.sock"));
        assert_eq!(a.flow_log.as_deref(), Some("/var/log/palisade/flows.log"));
        assert_eq!((a.flow_log_keep, a.flow_log_max_bytes, a.log_denied), (9, 100 << 20, true));
        assert_eq!(a.rx_desc, 1024);
        assert_eq!(a.mbufs, Some(65535));
        assert_eq!(a.config, Some(PathBuf::from("palisade.toml")));
        // Given flags win, lists included; flags left at their defaults do not.
        let cli = Args { ports: vec!["net_ring0".into(), "net_ring1".into()], metrics_addr: "off".into(), rx_desc: 512, mbufs: Some(131071), ..Args::default() };
        let a = merge(cli, file, &["ports", "metrics_addr", "mbufs", "config"]).unwrap();
        assert_eq!(a.mbufs, Some(131071));
        assert_eq!(a.ports, ["net_ring0", "net_ring1"]);
        assert_eq!(a.metrics_addr, "off");
        assert_eq!(a.rx_desc, 1024, "rx_desc was not given on the command line");
        assert_eq!(a.workers.as_deref(), Some("2"));
    }

    #[test]
    fn config_errors_name_the_file_and_key_and_what_is_valid() {
        let cases: &[(&str, &[&str])] = &[
            ("prots = []", &["palisade.toml", "prots", "expected one of", "ports", "metrics-addr"]),
            ("rx-desc = \"many\"", &["palisade.toml", "rx-desc", "u16"]),
            ("mode = \"star\"", &["palisade.toml", "mode", "wire", "bridge"]),
            ("metrics-addr = [", &["palisade.toml", "metrics-addr"]),
            ("config = \"other.toml\"", &["palisade.toml", "config"]),
            ("mbufs = -1", &["palisade.toml", "mbufs", "u32"]),
        ];
        for (file, wants) in cases {
            let e = format!("{:#}", merge(Args::default(), file, &[]).unwrap_err());
            for want in *wants {
                assert!(e.contains(want), "{file:?}: missing {want:?} in: {e}");
            }
        }
        let keys = config_keys();
        for k in ["ports", "mode", "workers", "mbufs", "eal-args", "manifests", "watch-stream", "metrics-addr", "control-socket", "flow-log", "flow-log-max-bytes", "flow-log-keep", "log-denied"] {
            assert!(keys.iter().any(|x| x == k), "{k} missing from {keys:?}");
        }
        assert!(!keys.iter().any(|x| x == "config"));
    }

    #[test]
    fn the_example_config_in_deploy_is_valid() {
        let a: Args = toml::from_str(include_str!("../../deploy/palisade.toml")).unwrap();
        assert_eq!(a.ports, ["0000:3b:00.0", "0000:3b:00.1"]);
        assert_eq!(a.metrics_addr().unwrap().as_deref(), Some(DEFAULT_METRICS_ADDR));
        assert!(a.flow_log_target().unwrap().is_some());
        // The commented-out examples are keys too, with valid values.
        let text = include_str!("../../deploy/palisade.toml");
        let commented: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# ")).filter(|l| l.split_once(" = ").is_some_and(|(k, _)| !k.contains(' '))).collect();
        assert!(commented.iter().any(|l| l.starts_with("mbufs = ")), "{commented:?}");
        let a: Args = toml::from_str(&commented.join("\n")).unwrap_or_else(|e| panic!("commented examples: {e}"));
        assert_eq!(a.mbufs, Some(262143));
    }

    #[test]
    fn live_flags_are_checked() {
        assert_eq!(Args::default().metrics_addr().unwrap().as_deref(), Some(DEFAULT_METRICS_ADDR));
        assert_eq!(Args { metrics_addr: "off".into(), ..Args::default() }.metrics_addr().unwrap(), None);
        let e = Args { metrics_addr: "localhost".into(), ..Args::default() }.metrics_addr().unwrap_err().to_string();
        assert!(e.contains("--metrics-addr localhost") && e.contains("off"), "{e}");
        let e = Args { log_denied: true, ..Args::default() }.flow_log_target().unwrap_err().to_string();
        assert!(e.contains("--log-denied") && e.contains("--flow-log"), "{e}");
        assert_eq!(Args { flow_log: Some("-".into()), ..Args::default() }.flow_log_target().unwrap(), Some(flowlog::Target::Stdout));
        assert_eq!(
            Args { flow_log: Some("/tmp/f".into()), flow_log_keep: 2, ..Args::default() }.flow_log_target().unwrap(),
            Some(flowlog::Target::File { path: "/tmp/f".into(), max_bytes: 100 << 20, keep: 2 })
        );
    }

    #[test]
    fn non_root_without_cap_net_admin_is_told_what_is_missing() {
        assert_eq!(privilege_problem(0, 0, true), None);
        assert_eq!(privilege_problem(1000, 1 << 12, true), None);
        let e = privilege_problem(1000, 0, true).unwrap();
        assert!(e.contains("root or with CAP_NET_ADMIN") && e.contains("uid 1000") && e.contains("hugepages") && e.contains("--no-huge"), "{e}");
        let e = privilege_problem(1000, 0, false).unwrap();
        assert!(!e.contains("hugepages"), "{e}");
    }

    #[test]
    fn args_round_trip_through_toml() {
        let a = Args {
            ports: vec!["net_null0".into(), "net_null1".into()],
            mode: ModeArg::Bridge,
            workers: Some("1".into()),
            eal_args: vec!["--log-level=7".into()],
            duration: Some(2.5),
            ..Args::default()
        };
        let text = toml::to_string(&a).unwrap();
        assert_eq!(toml::from_str::<Args>(&text).unwrap(), a);
        assert_eq!(toml::from_str::<Args>("").unwrap(), Args::default());
        assert!(toml::from_str::<Args>("prots = []").is_err());
    }
}
