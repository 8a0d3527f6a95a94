//! The probe format of `palisade verdicts`: JSON lines such as
//! `{"src": "dev/client1-dev", "dst": "10.169.25.20", "protocol": "TCP", "port": 80}`,
//! resolved against the model to addresses, classified by the compiled snapshot's own
//! lookup (`Classifier::classify`, the code the workers run), and answered with the
//! probe's own fields (in their order) plus `"verdict"` and `"rules"`.

use crate::model::Model;
use dataplane::snapshot::Snapshot;
use dataplane::{Classifier, Verdict};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;
use std::fmt;
use std::io::{BufRead, Write};
use std::net::IpAddr;

/// A probe line that could not be read or resolved.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("probes line {line}: {message}")]
    Line { line: usize, message: String },
    #[error("reading probes: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeProtocol {
    Tcp,
    Udp,
    Sctp,
    Icmp,
}

/// One parsed probe line.
#[derive(Clone, Debug)]
pub struct Probe {
    /// Every field of the line, in the order written (echoed in the answer).
    pub fields: Vec<(String, Value)>,
    pub src: String,
    pub dst: String,
    pub protocol: ProbeProtocol,
    /// Destination port; `None` for ICMP.
    pub port: Option<u16>,
}

/// A probe resolved to what `classify` takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub port: u16,
}

/// A JSON object with its keys in the order written.
struct OrderedObject(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for OrderedObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderedObject;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedObject, A::Error> {
                let mut fields = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    fields.push((k, v));
                }
                Ok(OrderedObject(fields))
            }
        }
        d.deserialize_map(V)
    }
}

impl Probe {
    /// Parse one line; `Ok(None)` for a blank line.
    pub fn parse(text: &str) -> Result<Option<Probe>, String> {
        if text.trim().is_empty() {
            return Ok(None);
        }
        let OrderedObject(fields) = serde_json::from_str(text).map_err(|e| format!("not a JSON object: {e}"))?;
        let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v);
        let end = |k: &str| match get(k) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(_) => Err(format!("\"{k}\" must be a string: \"namespace/pod\" or an IP address")),
            None => Err(format!("\"{k}\" is missing (expected \"namespace/pod\" or an IP address)")),
        };
        let (src, dst) = (end("src")?, end("dst")?);
        let protocol = match get("protocol") {
            None => ProbeProtocol::Tcp,
            Some(Value::String(s)) => match s.to_ascii_uppercase().as_str() {
                "TCP" => ProbeProtocol::Tcp,
                "UDP" => ProbeProtocol::Udp,
                "SCTP" => ProbeProtocol::Sctp,
                "ICMP" => ProbeProtocol::Icmp,
                _ => return Err(format!("\"protocol\" {s:?} is not TCP, UDP, SCTP or ICMP")),
            },
            Some(v) => return Err(format!("\"protocol\" must be a string (TCP, UDP, SCTP or ICMP), not {v}")),
        };
        let port = match (protocol, get("port")) {
            (ProbeProtocol::Icmp, None | Some(Value::Null)) => None,
            (ProbeProtocol::Icmp, Some(_)) => return Err("\"port\" must be absent for ICMP".into()),
            (_, None) => return Err("\"port\" is missing (a number from 1 to 65535)".into()),
            (_, Some(v)) => match v.as_u64().and_then(|n| u16::try_from(n).ok()).filter(|n| *n > 0) {
                Some(p) => Some(p),
                None => return Err(format!("\"port\" {v} is not a number from 1 to 65535")),
            },
        };
        Ok(Some(Probe { fields, src, dst, protocol, port }))
    }

    /// Addresses, protocol number and port for `classify`.
    pub fn resolve(&self, model: &Model) -> Result<Resolved, String> {
        let src = End::parse(model, &self.src)?;
        let dst = End::parse(model, &self.dst)?;
        let (s, d) = match (&src, &dst) {
            (End::Ip(s), End::Ip(d)) => {
                if s.is_ipv4() != d.is_ipv4() {
                    return Err(format!("src {s} and dst {d} are of different address families"));
                }
                (*s, *d)
            }
            (End::Pod(p), End::Ip(d)) => (pod_addr(model, *p, Some(d.is_ipv4()))?, *d),
            (End::Ip(s), End::Pod(p)) => (*s, pod_addr(model, *p, Some(s.is_ipv4()))?),
            (End::Pod(a), End::Pod(b)) => {
                let s = pod_addr(model, *a, None)?;
                (s, pod_addr(model, *b, Some(s.is_ipv4()))?)
            }
        };
        let proto = match self.protocol {
            ProbeProtocol::Tcp => 6,
            ProbeProtocol::Udp => 17,
            ProbeProtocol::Sctp => 132,
            ProbeProtocol::Icmp if d.is_ipv4() => 1,
            ProbeProtocol::Icmp => 58,
        };
        Ok(Resolved { src: s, dst: d, proto, port: self.port.unwrap_or(0) })
    }

    /// The answer line: the probe's fields, then `verdict` and `rules` (rule names).
    pub fn answer(&self, verdict: &Verdict, snapshot: &Snapshot) -> String {
        let mut out = String::from("{");
        for (k, v) in self.fields.iter().filter(|(k, _)| k != "verdict" && k != "rules") {
            out.push_str(&serde_json::to_string(k).expect("string serialises"));
            out.push(':');
            out.push_str(&v.to_string());
            out.push(',');
        }
        out.push_str(if verdict.is_allow() { "\"verdict\":\"allow\"" } else { "\"verdict\":\"deny\"" });
        let names: Vec<&str> = verdict.rules().map(|r| snapshot.rule_name(r)).collect();
        out.push_str(",\"rules\":");
        out.push_str(&serde_json::to_string(&names).expect("strings serialise"));
        out.push('}');
        out
    }
}

enum End {
    Ip(IpAddr),
    Pod(usize),
}

impl End {
    fn parse(model: &Model, s: &str) -> Result<End, String> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(End::Ip(ip));
        }
        match s.split_once('/') {
            Some((ns, pod)) if !ns.is_empty() && !pod.is_empty() && !pod.contains('/') => match model.pod_id(ns, pod) {
                Some(p) => Ok(End::Pod(p)),
                None => Err(format!("unknown pod {s:?} (no Pod {pod} in namespace {ns} in the manifests)")),
            },
            _ => Err(format!("{s:?} is neither \"namespace/pod\" nor an IP address")),
        }
    }
}

/// The pod's first address, or its first of the wanted family (`Some(true)`: IPv4).
fn pod_addr(model: &Model, pod: usize, v4: Option<bool>) -> Result<IpAddr, String> {
    let p = &model.pods[pod];
    if !p.is_endpoint() {
        let why = if p.host_network { "it uses hostNetwork" } else { "it has no podIP" };
        return Err(format!("pod {} has no address of its own ({why})", model.pod_ref(pod)));
    }
    p.addrs
        .iter()
        .copied()
        .find(|a| v4.is_none_or(|v4| a.is_ipv4() == v4))
        .ok_or_else(|| format!("pod {} has no IPv{} address", model.pod_ref(pod), if v4 == Some(true) { 4 } else { 6 }))
}

/// Answer every probe line of `input` on `output`, in order. Stops at the first bad
/// line with an error naming its (1-based) number.
pub fn run(model: &Model, snapshot: &Snapshot, input: impl BufRead, mut output: impl Write) -> Result<(), ProbeError> {
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        let bad = |message: String| ProbeError::Line { line: i + 1, message };
        let Some(probe) = Probe::parse(&line).map_err(bad)? else { continue };
        let r = probe.resolve(model).map_err(bad)?;
        let verdict = snapshot.classify(r.src, r.dst, r.proto, r.port);
        writeln!(output, "{}", probe.answer(&verdict, snapshot))?;
    }
    Ok(())
}
