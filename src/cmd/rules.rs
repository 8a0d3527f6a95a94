//! `palisade rules --manifests DIR`: how CN2 (Contrail) would express the directory's
//! NetworkPolicies: tags, address groups, firewall rules and firewall policies, as
//! text tables in the layout of the CN2 documentation.

use anyhow::Context;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Manifest directory (or file): Namespaces, Pods, Nodes, NetworkPolicies.
    #[arg(long, value_name = "DIR")]
    pub manifests: PathBuf,
}

pub fn main(args: Args) -> anyhow::Result<()> {
    let cluster = control::validate::load_valid(&args.manifests)
        .with_context(|| format!("loading {}", args.manifests.display()))?;
    let tables = control::cn2::tables(&cluster);
    print!("{}", control::render::rules::rules_text(&tables));
    Ok(())
}
