//! `palisade verdicts`: offline verdicts for JSON-line probes, decided by the compiled
//! snapshot's own `classify` (the lookup the workers run), never a second evaluator.

use anyhow::Context;
use std::io::BufRead;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory (or single file) of manifests: Namespaces, Pods, Nodes, NetworkPolicies.
    #[arg(long)]
    pub manifests: PathBuf,
    /// JSON-lines probe file, or `-` for standard input. Each line:
    /// {"src": "ns/pod"|IP, "dst": "ns/pod"|IP, "protocol": "TCP"|"UDP"|"SCTP"|"ICMP", "port": N}
    #[arg(long)]
    pub probes: String,
}

pub fn main(args: Args) -> anyhow::Result<()> {
    // Load and validate as the appliance does: a manifest the API server would refuse
    // is an error here too.
    let cluster = control::validate::load_valid(&args.manifests)?;
    let model = control::model::Model::resolve(&cluster)?;
    let snapshot = control::compile::compile(&model, 1);
    let input: Box<dyn BufRead> = if args.probes == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(&args.probes).with_context(|| format!("cannot open probes file {}", args.probes))?;
        Box::new(std::io::BufReader::new(f))
    };
    let stdout = std::io::stdout().lock();
    let mut out = std::io::BufWriter::new(stdout);
    let result = control::probes::run(&model, &snapshot, input, &mut out);
    std::io::Write::flush(&mut out)?;
    result.with_context(|| format!("probes from {}", if args.probes == "-" { "standard input" } else { &args.probes }))?;
    Ok(())
}
