//! Offline renderings for people: plain-text tables (`table`), the CN2-style tables of
//! `palisade rules` (`rules`), the pod × pod reachability grid of `palisade matrix`
//! (`matrix`: text, HTML, SVG) and the worded reasons of `palisade explain` (`explain`).
//! Verdicts always come from the compiled snapshot's own `classify`; this module only
//! lays them out and describes, from the model, the policies behind them.

pub mod explain;
pub mod matrix;
pub mod rules;
pub mod table;

use crate::compile::{compile_detailed, Compiled};
use crate::model::{Model, ModelError};
use crate::probes::ProbeProtocol;
use crate::validate::{load_valid, ManifestError};
use std::path::Path;

/// A manifest directory made ready for offline questions: its model and its compiled
/// snapshot (with each rule's origin).
pub struct Offline {
    pub model: Model,
    pub compiled: Compiled,
}

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Model(#[from] ModelError),
}

impl Offline {
    /// Load, validate, resolve and compile `dir` (generation 1).
    pub fn load(dir: &Path) -> Result<Offline, OfflineError> {
        let cluster = load_valid(dir)?;
        let model = Model::resolve(&cluster)?;
        let compiled = compile_detailed(&model, 1);
        Ok(Offline { model, compiled })
    }
}

/// A traffic class as the command line writes it: `tcp/80`, `udp/53`, `sctp/9`, `icmp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortArg {
    pub protocol: ProbeProtocol,
    /// `None` for ICMP.
    pub port: Option<u16>,
}

impl std::str::FromStr for PortArg {
    type Err = String;

    fn from_str(s: &str) -> Result<PortArg, String> {
        let bad = || format!("{s:?}: expected PROTOCOL/PORT such as tcp/80, udp/53 or sctp/9, or icmp");
        let (proto, port) = match s.split_once('/') {
            Some((proto, port)) => (proto, Some(port)),
            None => (s, None),
        };
        let protocol = match proto.to_ascii_lowercase().as_str() {
            "tcp" => ProbeProtocol::Tcp,
            "udp" => ProbeProtocol::Udp,
            "sctp" => ProbeProtocol::Sctp,
            "icmp" if port.is_none() => return Ok(PortArg { protocol: ProbeProtocol::Icmp, port: None }),
            _ => return Err(bad()),
        };
        let port = port.and_then(|p| p.parse::<u16>().ok()).filter(|p| *p > 0).ok_or_else(bad)?;
        Ok(PortArg { protocol, port: Some(port) })
    }
}

impl std::fmt::Display for PortArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let proto = match self.protocol {
            ProbeProtocol::Tcp => "TCP",
            ProbeProtocol::Udp => "UDP",
            ProbeProtocol::Sctp => "SCTP",
            ProbeProtocol::Icmp => "ICMP",
        };
        match self.port {
            Some(port) => write!(f, "{proto} port {port}"),
            None => f.write_str(proto),
        }
    }
}

impl PortArg {
    /// IP protocol number for a destination of the given family.
    pub fn proto_number(&self, v4: bool) -> u8 {
        match self.protocol {
            ProbeProtocol::Tcp => 6,
            ProbeProtocol::Udp => 17,
            ProbeProtocol::Sctp => 132,
            ProbeProtocol::Icmp if v4 => 1,
            ProbeProtocol::Icmp => 58,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_args() {
        let ok = |s: &str| s.parse::<PortArg>().unwrap().to_string();
        assert_eq!(ok("tcp/80"), "TCP port 80");
        assert_eq!(ok("UDP/53"), "UDP port 53");
        assert_eq!(ok("sctp/65535"), "SCTP port 65535");
        assert_eq!(ok("icmp"), "ICMP");
        for bad in ["tcp", "tcp/0", "tcp/65536", "icmp/1", "gre/1", "80"] {
            assert!(bad.parse::<PortArg>().is_err(), "{bad}");
        }
    }
}
