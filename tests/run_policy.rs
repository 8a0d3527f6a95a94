//! `palisade run --manifests DIR` enforces policy: the appliance itself (its own
//! process, EAL once) on net_pcap vdevs, port 0 reading a pcap of lab connections and
//! port 1 writing what policy forwards. Counts are exact.

#[path = "common/appliance.rs"]
mod appliance;
#[path = "common/replay.rs"]
mod common;

use std::net::SocketAddr;

use appliance::{arg, run_args, run_command, rx_pcap, tx_pcap};
use common::{lab_manifest_dir, tcp_connection};
use dataplane::pipeline::pcap;

fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const CLIENT1: &str = "10.47.0.11";
const CLIENT2: &str = "10.47.0.12";
const WEB: &str = "10.47.0.13";

#[test]
fn run_with_manifests_forwards_allowed_and_drops_denied_connections() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = lab_manifest_dir(dir.path(), &["base"]);

    // client1-dev → webserver-dev:80 is allowed by policy1; client2-dev's is not.
    let allowed = tcp_connection(sock(&format!("{CLIENT1}:40001")), sock(&format!("{WEB}:80")));
    let denied = tcp_connection(sock(&format!("{CLIENT2}:40002")), sock(&format!("{WEB}:80")));
    let frames: Vec<Vec<u8>> = allowed.iter().chain(denied.iter()).cloned().collect();
    let input = dir.path().join("in.pcap");
    let output = dir.path().join("out.pcap");
    let stats = dir.path().join("stats.json");
    pcap::write(&input, &frames).unwrap();

    let args = run_args([rx_pcap(&input), tx_pcap(&output)], &["--duration", "2", "--manifests", arg(&manifests), "--stats-json", arg(&stats)]);
    let out = run_command(&args, "warn").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "palisade run failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("policy: generation 1 in force, 0 update(s) applied, 0 rejected"), "{stdout}");

    let stats: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    let port = |i: usize, field: &str| stats["ports"][i][field].as_u64().unwrap();
    assert_eq!(port(0, "rx"), frames.len() as u64, "{stats}");
    assert_eq!(port(1, "tx"), allowed.len() as u64, "{stats}");
    assert_eq!(port(0, "drops"), denied.len() as u64, "{stats}");

    let written: Vec<Vec<u8>> = pcap::read(&output).unwrap().into_iter().map(|r| r.data).collect();
    assert!(written == allowed, "port 1 must carry exactly the allowed connection's frames, in order");
}
