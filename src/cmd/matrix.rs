//! `palisade matrix --manifests DIR [--port tcp/80] [--format text|html|svg]`: the pod ×
//! pod (and node) reachability grid of a manifest directory, every cell decided by the
//! compiled snapshot's own lookup.

use anyhow::Context;
use control::render::{matrix, Offline, PortArg};
use std::path::PathBuf;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Html,
    Svg,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Manifest directory (or file): Namespaces, Pods, Nodes, NetworkPolicies.
    #[arg(long, value_name = "DIR")]
    pub manifests: PathBuf,
    /// Traffic to test: PROTOCOL/PORT (tcp/80, udp/53, sctp/9) or icmp.
    #[arg(long, default_value = "tcp/80")]
    pub port: PortArg,
    /// Output format; html and svg are self-contained documents.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

pub fn main(args: Args) -> anyhow::Result<()> {
    let offline = Offline::load(&args.manifests).with_context(|| format!("loading {}", args.manifests.display()))?;
    let grid = matrix::build(&offline.model, &offline.compiled.snapshot, args.port);
    print!(
        "{}",
        match args.format {
            Format::Text => grid.to_text(),
            Format::Html => grid.to_html(),
            Format::Svg => grid.to_svg(),
        }
    );
    Ok(())
}
