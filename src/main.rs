//! `palisade`: the binary. Parses the command line and hands each subcommand to its
//! module under `cmd/`. Errors surface here through `anyhow`, with their full context.

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

mod cmd;

#[derive(Parser)]
#[command(name = "palisade", version, about = "Kubernetes NetworkPolicy enforcement on DPDK")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the appliance (with no arguments: software mode on two net_tap ports).
    Run(cmd::run::Args),
    /// Offline: the compiled snapshot's verdict for each probe (JSON lines).
    Verdicts(cmd::verdicts::Args),
    /// Offline: explain in words why a connection is allowed or denied.
    Explain(cmd::explain::Args),
    /// CN2-style tables: tags, address groups, firewall rules, policy sets (offline
    /// with --manifests, else the running appliance's snapshot).
    Rules(cmd::rules::Args),
    /// The running appliance's flow table (vRouter-style flow list).
    Flows(cmd::flows::Args),
    /// The running appliance's counters.
    Stats(cmd::stats::Args),
    /// Pod x pod reachability grid (text, HTML or SVG).
    Matrix(cmd::matrix::Args),
    /// Run the real worker pipeline over a pcap (DPDK net_pcap vdevs).
    Replay(cmd::replay::Args),
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PALISADE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let result = match cli.command {
        None => cmd::run::main(cmd::run::Args::default_software_mode()),
        Some(Command::Run(a)) => {
            // Flags given on the command line override the --config file.
            let explicit: Vec<String> = matches
                .subcommand_matches("run")
                .map(|m| {
                    m.ids()
                        .filter(|id| m.value_source(id.as_str()) == Some(ValueSource::CommandLine))
                        .map(|id| id.as_str().to_owned())
                        .collect()
                })
                .unwrap_or_default();
            a.merge_config(&explicit).and_then(cmd::run::main)
        }
        Some(Command::Verdicts(a)) => cmd::verdicts::main(a),
        Some(Command::Explain(a)) => cmd::explain::main(a),
        Some(Command::Rules(a)) => cmd::rules::main(a),
        Some(Command::Flows(a)) => cmd::flows::main(a),
        Some(Command::Stats(a)) => cmd::stats::main(a),
        Some(Command::Matrix(a)) => cmd::matrix::main(a),
        Some(Command::Replay(a)) => cmd::replay::main(a),
    };
    if let Err(e) = result {
        eprintln!("palisade: error: {e:#}");
        std::process::exit(1);
    }
}
