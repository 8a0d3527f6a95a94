//! The control socket: a Unix socket (mode 0600) through which `palisade flows`,
//! `palisade stats` and `palisade rules` talk to a running appliance.
//!
//! Protocol: one JSON `Request` line in, one JSON `Response` line out, then the
//! connection closes. The server thread never touches worker state itself: its
//! handler asks the workers over bounded channels, which they answer between bursts,
//! so serving a dump takes no lock on the packet path.
//!
//! Owns: the wire protocol, the server and client ends, and the vRouter-style flow
//! list rendering. Must not touch: worker internals.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::accept::AcceptLoop;

/// Default control socket path.
pub const DEFAULT_SOCKET: &str = "/run/palisade/control.sock";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// Live flows, optionally only those touching a pod (`ns/name`) or with an action.
    Flows {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pod: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        action: Option<ActionFilter>,
    },
    Stats,
    Rules,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionFilter {
    Forward,
    Drop,
}

/// One live flow as the operator sees it (the vRouter flow list's columns).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FlowView {
    pub index: u64,
    pub worker: u32,
    /// `TCP`, `UDP`, `SCTP`, `ICMP`, `ICMPv6` or the protocol number.
    pub protocol: String,
    /// Initiator `ip:port` (`[v6]:port`), as first seen.
    pub source: String,
    pub destination: String,
    pub vlan: Option<u16>,
    /// `ns/name` of the pod owning each address, when it is one.
    pub source_pod: Option<String>,
    pub destination_pod: Option<String>,
    /// `F`, or `D(FwPolicy)`, `D(Malformed)`, `D(TableFull)`, `D(Fragment)` ...
    pub action: String,
    /// Deciding rule names (egress side first).
    pub rules: Vec<String>,
    pub tcp_state: Option<String>,
    pub forward_packets: u64,
    pub forward_bytes: u64,
    pub reverse_packets: u64,
    pub reverse_bytes: u64,
    pub age_seconds: f64,
    pub generation: u64,
}

impl FlowView {
    pub fn is_drop(&self) -> bool {
        self.action.starts_with('D')
    }

    /// Whether this flow passes the filters of a `Flows` request.
    pub fn matches(&self, pod: Option<&str>, action: Option<ActionFilter>) -> bool {
        let pod_ok = pod.is_none_or(|p| self.source_pod.as_deref() == Some(p) || self.destination_pod.as_deref() == Some(p));
        let action_ok = match action {
            None => true,
            Some(ActionFilter::Drop) => self.is_drop(),
            Some(ActionFilter::Forward) => !self.is_drop(),
        };
        pod_ok && action_ok
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "snake_case")]
pub enum Response {
    Flows { flows: Vec<FlowView> },
    /// Counters as name → value, in a stable order.
    Stats { counters: Vec<(String, f64)> },
    Rules { text: String },
    Error { message: String },
}

/// Answers requests; called on the socket thread.
pub type Handler = Arc<dyn Fn(Request) -> Response + Send + Sync>;

/// A listening control socket; stops, joins and removes the socket file on drop.
pub struct ControlServer {
    path: PathBuf,
    // An Option so Drop can stop the loop before removing the socket file.
    accept_loop: Option<AcceptLoop>,
}

impl ControlServer {
    /// Binds `path` (replacing a stale socket file, never another kind of file), sets
    /// mode 0600, and serves from a thread of its own.
    pub fn start(path: &Path, handler: Handler) -> std::io::Result<Self> {
        let ctx = |what: &str, e: std::io::Error| std::io::Error::new(e.kind(), format!("control socket {}: {what}: {e}", path.display()));
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| ctx("creating its directory", e))?;
            }
        }
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!("control socket {}: exists and is not a socket; remove it or choose another --control-socket", path.display()),
                ));
            }
            if UnixStream::connect(path).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!("control socket {}: another palisade is listening there", path.display()),
                ));
            }
            std::fs::remove_file(path).map_err(|e| ctx("removing the stale socket", e))?;
        }
        let listener = UnixListener::bind(path).map_err(|e| ctx("binding", e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| ctx("setting mode 0600", e))?;
        listener.set_nonblocking(true)?;
        let accept_loop = AcceptLoop::spawn(
            "control socket",
            move || listener.accept().map(|(stream, _)| stream),
            move |stream| serve_one(stream, &handler),
        )?;
        Ok(Self { path: path.to_owned(), accept_loop: Some(accept_loop) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        drop(self.accept_loop.take());
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve_one(stream: UnixStream, handler: &Handler) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(stream.try_clone()?).read_line(&mut line)?;
    let response = match serde_json::from_str::<Request>(&line) {
        Ok(req) => handler(req),
        Err(e) => Response::Error { message: format!("bad request: {e}; expected e.g. {{\"request\":\"stats\"}}") },
    };
    let mut stream = stream;
    serde_json::to_writer(&mut stream, &response)?;
    stream.write_all(b"\n")?;
    stream.flush()
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach palisade at {path}: {err} (is `palisade run` running, and are you root? use --control-socket to point elsewhere)")]
    Connect { path: String, err: std::io::Error },
    #[error("control socket {path}: {err}")]
    Io { path: String, err: std::io::Error },
    #[error("control socket {path}: unreadable answer: {err}")]
    Decode { path: String, err: serde_json::Error },
}

/// Sends one request and waits (bounded) for the answer.
pub fn request(path: &Path, req: &Request, timeout: Duration) -> Result<Response, ClientError> {
    let p = || path.display().to_string();
    let mut stream = UnixStream::connect(path).map_err(|err| ClientError::Connect { path: p(), err })?;
    let io = |err| ClientError::Io { path: p(), err };
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    let mut body = serde_json::to_vec(req).expect("requests always serialize");
    body.push(b'\n');
    stream.write_all(&body).map_err(io)?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).map_err(io)?;
    serde_json::from_str(&line).map_err(|err| ClientError::Decode { path: p(), err })
}

/// Renders flows like the vRouter's flow list: one block per flow.
pub fn render_flows(flows: &[FlowView]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "Flow table: {} flow{}", flows.len(), if flows.len() == 1 { "" } else { "s" });
    let _ = writeln!(
        out,
        "{:>7}  {:<6} {:<42} {:<42} {:<12} {:>10} {:>10} {:>8}",
        "Index", "Proto", "Source (pod)", "Destination (pod)", "Action", "Pkts(f/r)", "Bytes(f/r)", "Age(s)"
    );
    for f in flows {
        let with_pod = |addr: &str, pod: &Option<String>| match pod {
            Some(p) => format!("{addr} ({p})"),
            None => addr.to_owned(),
        };
        let _ = writeln!(
            out,
            "{:>7}  {:<6} {:<42} {:<42} {:<12} {:>10} {:>10} {:>8.1}",
            f.index,
            f.protocol,
            with_pod(&f.source, &f.source_pod),
            with_pod(&f.destination, &f.destination_pod),
            f.action,
            format!("{}/{}", f.forward_packets, f.reverse_packets),
            format!("{}/{}", f.forward_bytes, f.reverse_bytes),
            f.age_seconds,
        );
        let mut detail = format!("         worker {} gen {}", f.worker, f.generation);
        if let Some(v) = f.vlan {
            let _ = write!(detail, " vlan {v}");
        }
        if let Some(s) = &f.tcp_state {
            let _ = write!(detail, " tcp {s}");
        }
        if !f.rules.is_empty() {
            let _ = write!(detail, " rule {}", f.rules.join(", "));
        }
        let _ = writeln!(out, "{detail}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(index: u64, action: &str, src_pod: Option<&str>) -> FlowView {
        FlowView {
            index,
            protocol: "TCP".into(),
            source: "10.47.255.3:40000".into(),
            destination: "10.47.255.5:80".into(),
            source_pod: src_pod.map(str::to_owned),
            destination_pod: Some("dev/dbserver-dev".into()),
            action: action.into(),
            rules: vec!["dev-ingress-default-deny".into()],
            forward_packets: 3,
            ..Default::default()
        }
    }

    #[test]
    fn serves_requests_with_mode_0600_and_removes_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl.sock");
        let flows = vec![flow(1, "F", Some("dev/webserver-dev")), flow(2, "D(FwPolicy)", Some("dev/client2-dev"))];
        let handler: Handler = Arc::new(move |req| match req {
            Request::Flows { pod, action } => Response::Flows {
                flows: flows.iter().filter(|f| f.matches(pod.as_deref(), action)).cloned().collect(),
            },
            Request::Stats => Response::Stats { counters: vec![("rx".into(), 5.0)] },
            Request::Rules => Response::Error { message: "no".into() },
        });
        let server = ControlServer::start(&path, handler).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let t = Duration::from_secs(5);
        let Response::Flows { flows } = request(&path, &Request::Flows { pod: None, action: Some(ActionFilter::Drop) }, t).unwrap() else {
            panic!("expected flows")
        };
        assert_eq!(flows.iter().map(|f| f.index).collect::<Vec<_>>(), vec![2]);
        let Response::Flows { flows } = request(&path, &Request::Flows { pod: Some("dev/webserver-dev".into()), action: None }, t).unwrap() else {
            panic!("expected flows")
        };
        assert_eq!(flows.iter().map(|f| f.index).collect::<Vec<_>>(), vec![1]);
        let Response::Flows { flows } = request(&path, &Request::Flows { pod: Some("dev/dbserver-dev".into()), action: None }, t).unwrap() else {
            panic!("expected flows")
        };
        assert_eq!(flows.len(), 2);
        assert_eq!(request(&path, &Request::Stats, t).unwrap(), Response::Stats { counters: vec![("rx".into(), 5.0)] });

        // A second server on the same live path is refused.
        let again = ControlServer::start(&path, Arc::new(|_| Response::Stats { counters: vec![] }));
        assert_eq!(again.err().unwrap().kind(), std::io::ErrorKind::AddrInUse);

        drop(server);
        assert!(!path.exists());
        assert!(matches!(request(&path, &Request::Stats, t), Err(ClientError::Connect { .. })));
    }

    #[test]
    fn refuses_to_replace_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-a-socket");
        std::fs::write(&path, "keep me").unwrap();
        let err = ControlServer::start(&path, Arc::new(|_| Response::Stats { counters: vec![] })).err().unwrap();
        assert!(err.to_string().contains("exists and is not a socket"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
    }

    #[test]
    fn request_json_shape_is_stable() {
        let r = Request::Flows { pod: Some("dev/a".into()), action: Some(ActionFilter::Drop) };
        assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"request":"flows","pod":"dev/a","action":"drop"}"#);
        assert_eq!(serde_json::to_string(&Request::Stats).unwrap(), r#"{"request":"stats"}"#);
    }

    #[test]
    fn renders_the_flow_list() {
        let text = render_flows(&[flow(7, "D(FwPolicy)", Some("dev/client2-dev"))]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Flow table: 1 flow");
        assert!(lines[2].contains("10.47.255.3:40000 (dev/client2-dev)"), "{text}");
        assert!(lines[2].contains("D(FwPolicy)"), "{text}");
        assert!(lines[2].contains("3/0"), "{text}");
        assert_eq!(lines[3].trim(), "worker 0 gen 0 rule dev-ingress-default-deny");
    }
}
