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
use dataplane::dpdk::{devspec, host, signal};
use super::policy;
use dataplane::filter::ForwardAll;
use dataplane::pipeline::{Pipeline, PipelineConfig, TcpMode};
use dataplane::snapshot::Snapshot;
use dataplane::worker::{Backoff, Forwarder, ForwarderConfig, Mode, RunLimits, RunReport, StopReason, WorkerConfig};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
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

pub fn main(args: Args) -> Result<()> {
    let cfg = args.forwarder_config()?;
    cfg.validate()?;
    if let Some(v) = args.watch_stream.as_deref().filter(|v| *v != "-") {
        bail!("--watch-stream {v}: only \"-\" (standard input) is supported; pipe kubectl's --watch --output-watch-events -o json into palisade");
    }
    let source = args.policy_source();
    let policy = policy::start(&source)?;
    let stop = signal::stop_on_signals();
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
    let report = if source == policy::Source::None {
        fwd.run(vec![ForwardAll; fwd.workers()], &limits, stop)?
    } else {
        let pipeline_cfg = PipelineConfig {
            flow_capacity: args.flow_capacity,
            tcp_mode: if args.tcp_loose { TcpMode::Loose } else { TcpMode::Strict },
            ticks_per_second: fwd.eal().tsc_hz(),
            ..PipelineConfig::default()
        };
        let pipelines: Vec<Pipeline<Snapshot>> =
            (0..fwd.workers()).map(|_| Pipeline::new(policy.snapshots.clone(), &pipeline_cfg)).collect();
        fwd.run(pipelines, &limits, stop)?
    };
    print_report(&report);
    if source != policy::Source::None {
        println!(
            "policy: generation {} in force, {} update(s) applied, {} rejected",
            policy.metrics.generation.get(),
            policy.metrics.applied.get(),
            policy.metrics.rejected.get()
        );
    }
    if let Some(path) = &args.stats_json {
        let json = serde_json::to_string_pretty(&report_json(&report, &cfg))?;
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
