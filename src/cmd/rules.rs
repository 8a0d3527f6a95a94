//! `palisade rules`: how CN2 (Contrail) would express the NetworkPolicies as text
//! tables in the layout of the CN2 documentation: tags, address groups, firewall rules
//! and firewall policies. With `--manifests DIR`, offline from that directory; without
//! it, the snapshot in force in a running appliance, over its control socket.

use anyhow::{bail, Context};
use control::socket::{Request, Response, DEFAULT_SOCKET};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Manifest directory (or file): Namespaces, Pods, Nodes, NetworkPolicies.
    /// Without it: the live snapshot of `palisade run`.
    #[arg(long, value_name = "DIR")]
    pub manifests: Option<PathBuf>,
    /// The control socket of `palisade run` (without --manifests).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub control_socket: PathBuf,
}

pub fn main(args: Args) -> anyhow::Result<()> {
    let Some(manifests) = &args.manifests else {
        let Response::Rules { text } = super::live::ask(&args.control_socket, &Request::Rules)? else {
            bail!("unexpected answer from {}", args.control_socket.display());
        };
        print!("{text}");
        return Ok(());
    };
    let cluster =
        control::validate::load_valid(manifests).with_context(|| format!("loading {}", manifests.display()))?;
    let tables = control::cn2::tables(&cluster);
    print!("{}", control::render::rules::rules_text(&tables));
    Ok(())
}
