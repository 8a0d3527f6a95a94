//! `palisade replay`: the real worker pipeline — the DPDK worker loop and the stateful
//! `Pipeline` over the compiled snapshot, the code `palisade run` runs — over `net_pcap`
//! vdevs. Port 0 reads the input pcap (`rx_pcap`), port 1 writes what policy forwards
//! (`tx_pcap`), and a drop-sink port writes what it drops. One worker, so frames keep
//! their order and the result is deterministic.
//!
//! `net_pcap` delivers the file once and then returns empty bursts: the run stops when
//! no frame has arrived for a short while, and fails unless every record of the input
//! was received. Timestamps in the input are not replayed: flows age by the TSC, and a
//! replay takes far less than any flow timeout.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use dataplane::dpdk::{host, DevSpec};
use dataplane::pipeline::{pcap, FlowRecord, Pipeline, PipelineConfig, TcpMode};
use dataplane::snapshot::Snapshot;
use dataplane::worker::{Backoff, Forwarder, ForwarderConfig, Mode, RunLimits, WorkerConfig};

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Json,
    Table,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory (or single file) of manifests: Namespaces, Pods, Nodes, NetworkPolicies.
    #[arg(long)]
    pub manifests: PathBuf,
    /// Input capture (classic pcap, Ethernet).
    #[arg(long)]
    pub pcap: PathBuf,
    /// Where to write the frames policy forwards (pcap). Default: discarded.
    #[arg(long)]
    pub out_allowed: Option<PathBuf>,
    /// Where to write the frames policy drops (pcap). Default: discarded.
    #[arg(long)]
    pub out_dropped: Option<PathBuf>,
    /// Counters as JSON (default) or an aligned table.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Also list the flows left in the table (JSON: a "flows" array).
    #[arg(long)]
    pub flows: bool,
    /// TCP loose mode: pick up connections without a SYN.
    #[arg(long)]
    pub tcp_loose: bool,
    /// Flow table capacity.
    #[arg(long, default_value_t = 1 << 16)]
    pub flow_capacity: usize,
}

/// A temporary output file, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The path for a `tx_pcap=` devarg: commas would split EAL's device arguments.
fn devarg_path(path: &Path, flag: &str) -> anyhow::Result<String> {
    let text = path.to_str().with_context(|| format!("{flag} {}: the path is not UTF-8", path.display()))?;
    if text.contains(',') {
        bail!("{flag} {text}: DPDK device arguments cannot hold a comma; rename the file or pick another directory");
    }
    Ok(text.to_owned())
}

pub fn main(args: Args) -> anyhow::Result<()> {
    let cluster = control::validate::load_valid(&args.manifests)?;
    let model = control::model::Model::resolve(&cluster)?;
    let snapshot = control::compile::compile(&model, 1);
    let expected = pcap::count(&args.pcap).with_context(|| format!("--pcap {}", args.pcap.display()))?;

    let pid = std::process::id();
    let mut scratch = Vec::new();
    let mut output = |given: &Option<PathBuf>, role: &str| -> PathBuf {
        given.clone().unwrap_or_else(|| {
            let path = std::env::temp_dir().join(format!("palisade-replay-{pid}-{role}.pcap"));
            scratch.push(Scratch(path.clone()));
            path
        })
    };
    let allowed_path = output(&args.out_allowed, "allowed");
    let dropped_path = output(&args.out_dropped, "dropped");
    let input = devarg_path(&args.pcap, "--pcap")?;
    let allowed = devarg_path(&allowed_path, "--out-allowed")?;
    let dropped = devarg_path(&dropped_path, "--out-dropped")?;

    let cpus = host::allowed_cpus().map_err(anyhow::Error::msg)?;
    let cpu = *cpus.first().context("no CPU is allowed to this process")?;
    let cfg = ForwarderConfig {
        ports: vec![
            DevSpec::parse(&format!("net_pcap0,rx_pcap={input}"))?,
            DevSpec::parse(&format!("net_pcap1,tx_pcap={allowed}"))?,
        ],
        drop_sink: Some(DevSpec::parse(&format!("net_pcap2,tx_pcap={dropped}"))?),
        workers: vec![cpu],
        no_huge: true,
        file_prefix: Some(format!("palisade-replay-{pid}")),
        worker: WorkerConfig { mode: Mode::Wire, backoff: Some(Backoff::default()), ..WorkerConfig::default() },
        ..ForwarderConfig::default()
    };
    let forwarder = Forwarder::start(&cfg).context("starting DPDK on net_pcap vdevs")?;
    let pipeline_cfg = PipelineConfig {
        flow_capacity: args.flow_capacity,
        tcp_mode: if args.tcp_loose { TcpMode::Loose } else { TcpMode::Strict },
        ticks_per_second: forwarder.eal().tsc_hz(),
        ..PipelineConfig::default()
    };
    let mut pipeline = Pipeline::new(Arc::new(arc_swap::ArcSwap::from_pointee(snapshot)), &pipeline_cfg);
    let limits = RunLimits { duration: None, stop_after_idle: Some(Duration::from_millis(500)) };
    let report = forwarder.run(vec![&mut pipeline], &limits, &AtomicBool::new(false))?;
    // Closing the ports flushes and closes the output pcaps.
    drop(forwarder);

    let counters = *pipeline.counters();
    if counters.rx != expected as u64 {
        bail!("net_pcap delivered {} of the {expected} frames in {}", counters.rx, args.pcap.display());
    }
    let written_allowed = report.ports.get(1).map_or(0, |p| p.stats.tx_packets);
    let written_dropped = report.drop_sink.as_ref().map_or(0, |p| p.stats.tx_packets);
    let fields: Vec<(&str, u64)> = vec![
        ("pcap_frames", expected as u64),
        ("rx", counters.rx),
        ("forwarded", counters.forwarded),
        ("dropped", counters.rx - counters.forwarded),
        ("passthrough", counters.passthrough),
        ("drop_policy", counters.drop_policy),
        ("drop_malformed", counters.drop_malformed),
        ("drop_no_flow", counters.drop_no_flow),
        ("drop_fragment", counters.drop_fragment),
        ("flow_inserts", counters.flow_inserts),
        ("flow_expiries", counters.flow_expiries),
        ("flow_table_full", counters.flow_table_full),
        ("stateless_decisions", counters.stateless_decisions),
        ("icmp_related", counters.icmp_related),
        ("fragments_followed", counters.fragments_followed),
        ("flows", pipeline.flow_count() as u64),
        ("written_allowed", written_allowed),
        ("written_dropped", written_dropped),
    ];
    let mut flows: Vec<FlowRecord> = if args.flows { pipeline.flows().collect() } else { Vec::new() };
    flows.sort_by_key(|f| (f.src, f.src_port, f.dst, f.dst_port, f.protocol, f.vlan));
    let snapshot = pipeline.snapshot();
    let text = match args.format {
        Format::Json => {
            let mut object = serde_json::Map::new();
            for (name, value) in &fields {
                object.insert((*name).to_owned(), (*value).into());
            }
            if args.flows {
                let list = flows.iter().map(|f| flow_json(f, &snapshot)).collect();
                object.insert("flow_list".to_owned(), serde_json::Value::Array(list));
            }
            serde_json::to_string_pretty(&serde_json::Value::Object(object))?
        }
        Format::Table => {
            let mut out = String::new();
            for (name, value) in &fields {
                out.push_str(&format!("{name:<20} {value:>12}\n"));
            }
            for f in &flows {
                out.push_str(&format!("{}\n", flow_json(f, &snapshot)));
            }
            out.trim_end().to_owned()
        }
    };
    println!("{text}");
    drop(scratch);
    Ok(())
}


/// One flow, initiator first, with its deciding rules by name.
fn flow_json(f: &FlowRecord, snapshot: &Snapshot) -> serde_json::Value {
    let rules: Vec<&str> = f.verdict.rules().map(|r| snapshot.rule_name(r)).collect();
    serde_json::json!({
        "src": f.src.to_string(),
        "src_port": f.src_port,
        "dst": f.dst.to_string(),
        "dst_port": f.dst_port,
        "protocol": f.protocol,
        "vlan": f.vlan,
        "action": if f.verdict.is_allow() { "forward" } else { "drop" },
        "reason": format!("{:?}", f.verdict.reason),
        "rules": rules,
        "tcp": format!("{:?}", f.tcp),
        "packets": f.packets,
        "bytes": f.bytes,
    })
}
