//! `palisade flows`: the running appliance's flow table, like the vRouter's flow list
//! (index, 5-tuple, pods, action `F` or `D(FwPolicy)`, deciding rule, packets and bytes
//! per direction, age), read over the control socket.

use std::path::PathBuf;

use anyhow::{bail, Result};
use control::socket::{render_flows, ActionFilter, Request, Response, DEFAULT_SOCKET};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The control socket of `palisade run`.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub control_socket: PathBuf,
    /// Only flows from or to this pod (namespace/name).
    #[arg(long, value_name = "NS/NAME")]
    pub pod: Option<String>,
    /// Only dropped (`drop`) or forwarded (`allow`) flows.
    #[arg(long, value_enum)]
    pub action: Option<ActionArg>,
    /// Print the flows as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionArg {
    Drop,
    #[value(alias = "forward")]
    Allow,
}

pub fn main(args: Args) -> Result<()> {
    if let Some(p) = &args.pod {
        if p.split('/').filter(|s| !s.is_empty()).count() != 2 {
            bail!("--pod {p}: give namespace/name, e.g. dev/webserver-dev");
        }
    }
    let action = args.action.map(|a| match a {
        ActionArg::Drop => ActionFilter::Drop,
        ActionArg::Allow => ActionFilter::Forward,
    });
    let req = Request::Flows { pod: args.pod.clone(), action };
    match super::live::ask(&args.control_socket, &req)? {
        Response::Flows { flows } if args.json => println!("{}", serde_json::to_string_pretty(&flows)?),
        Response::Flows { flows } => print!("{}", render_flows(&flows)),
        other => bail!("unexpected answer from {}: {other:?}", args.control_socket.display()),
    }
    Ok(())
}
