//! Writes a seed corpus for the packet, flow_key and probes targets into
//! fuzz/corpus/<target>/ (run.sh calls it when a corpus is empty): frames of every kind
//! the parser knows, built with the same crafting code the tests use.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use dataplane::pipeline::craft::{self, L4};
use dataplane::wire::tcp::flags::{ACK, FIN, SYN};

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let sock = |s: &str| s.parse::<SocketAddr>().unwrap();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let mut frames = Vec::new();
    for (a, b) in [("10.0.0.1:1000", "10.0.0.2:80"), ("[fd00::1]:1000", "[fd00::2]:80")] {
        let (a, b) = (sock(a), sock(b));
        frames.extend(craft::tcp_connection(a, b));
        frames.push(craft::udp(a, b, b"query"));
        frames.push(craft::sctp(a, b, 1));
        frames.push(craft::echo(a.ip(), b.ip(), true, 7, 1));
        frames.push(craft::echo(b.ip(), a.ip(), false, 7, 1));
        let syn = craft::tcp(a, b, SYN);
        frames.push(craft::unreachable(b.ip(), a.ip(), &syn));
        frames.extend(craft::fragments(a.ip(), b.ip(), &L4::Udp { src_port: 1, dst_port: 53, payload: &[9; 100] }, 5, 48));
        frames.push(craft::with_vlans(&syn, &[10]));
        frames.push(craft::with_vlans(&craft::tcp(b, a, SYN | ACK), &[100, 10]));
        frames.push(craft::tcp(a, b, FIN));
    }
    frames.push(craft::arp_request([10, 0, 0, 1], [10, 0, 0, 2]));
    let hbh = [58u8, 0, 1, 4, 0, 0, 0, 0];
    let mut nd = craft::ip_frame(ip("fe80::1"), ip("ff02::1"), &L4::Raw { protocol: 0, bytes: &hbh });
    nd.extend_from_slice(&[135, 0, 0, 0, 0, 0, 0, 0]);
    frames.push(nd);

    let write = |target: &str, name: String, bytes: &[u8]| -> std::io::Result<()> {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), bytes)
    };
    for (i, f) in frames.iter().enumerate() {
        write("packet", format!("seed-{i:03}"), f)?;
    }
    // flow_key: runs of frames, each behind a one-byte length.
    for (i, run) in frames.chunks(8).enumerate() {
        let mut bytes = Vec::new();
        for f in run.iter().filter(|f| f.len() <= 255) {
            bytes.push(f.len() as u8);
            bytes.extend_from_slice(f);
        }
        write("flow_key", format!("seed-{i:03}"), &bytes)?;
    }
    let probes = [
        r#"{"src": "dev/client1-dev", "dst": "dev/webserver-dev", "protocol": "TCP", "port": 80}"#,
        r#"{"src": "10.169.25.20", "dst": "10.47.0.13", "port": 80}"#,
        r#"{"src": "jtac/client-jtac", "dst": "dev/webserver-dev", "protocol": "ICMP"}"#,
        r#"{"src": "dev/webserver-dev", "dst": "fd00::1", "protocol": "udp", "port": 53, "note": [1, {"x": null}]}"#,
    ];
    for (i, p) in probes.iter().enumerate() {
        write("probes", format!("seed-{i:03}"), p.as_bytes())?;
    }
    write("probes", "seed-all".into(), probes.join("\n").as_bytes())?;
    println!("seeds written under {}", root.display());
    Ok(())
}
