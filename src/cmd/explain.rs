//! `palisade explain --manifests DIR --from X --to Y --port tcp/80`: why a connection is
//! allowed or denied, in words: which policies isolate each end, and which rule
//! allowed it or that none did. The verdict is the compiled snapshot's own.

use anyhow::Context;
use control::render::{explain, Offline, PortArg};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Manifest directory (or file): Namespaces, Pods, Nodes, NetworkPolicies.
    #[arg(long, value_name = "DIR")]
    pub manifests: PathBuf,
    /// Source: NAMESPACE/POD, node/NAME or an IP address.
    #[arg(long, value_name = "X")]
    pub from: String,
    /// Destination: NAMESPACE/POD, node/NAME or an IP address.
    #[arg(long, value_name = "Y")]
    pub to: String,
    /// Traffic: PROTOCOL/PORT (tcp/80, udp/53, sctp/9) or icmp.
    #[arg(long, default_value = "tcp/80")]
    pub port: PortArg,
}

pub fn main(args: Args) -> anyhow::Result<()> {
    let offline = Offline::load(&args.manifests).with_context(|| format!("loading {}", args.manifests.display()))?;
    let text = explain::explain(&offline, &args.from, &args.to, args.port).map_err(anyhow::Error::msg)?;
    print!("{text}");
    Ok(())
}
