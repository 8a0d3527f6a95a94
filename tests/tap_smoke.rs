//! net_tap smoke test: `palisade run` (the real binary) joins two tap ports in wire
//! mode; real UDP datagrams from a kernel socket in one network namespace reach a
//! socket in another and are echoed back, and the counts are exact.
//!
//! palisade runs inside its own namespace (IPv6 off there, so the kernel sends nothing
//! on the fresh taps); the taps are then moved into two host namespaces, also with IPv6
//! off and with static neighbours, so the only frames on the wire are the test's own.
//! Needs root (namespaces); skips with a message otherwise. Namespaces and the
//! palisade process are removed on every exit path, panics included.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DATAGRAMS: u64 = 200;

fn sh(args: &[&str]) -> std::process::Output {
    Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("run {args:?}: {e}"))
}

fn must(args: &[&str]) -> String {
    let out = sh(args);
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Kills the palisade process we started and deletes the namespaces we made.
struct Cleanup {
    child: Option<Child>,
    namespaces: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
        for ns in &self.namespaces {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
    }
}

fn in_ns(ns: &str, args: &[&str]) -> String {
    let mut full = vec!["ip", "netns", "exec", ns];
    full.extend_from_slice(args);
    must(&full)
}

const RECEIVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.200.0.2", 9999))
s.settimeout(20)
print("ready", flush=True)
n = int(sys.argv[1])
for i in range(n):
    data, peer = s.recvfrom(2048)
    s.sendto(data, peer)
print("echoed", n, flush=True)
"#;

const SENDER: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.200.0.1", 0))
s.settimeout(20)
n = int(sys.argv[1])
got = set()
for i in range(n):
    s.sendto(b"palisade-%06d" % i + b"x" * (i % 200), ("10.200.0.2", 9999))
    data, _ = s.recvfrom(2048)
    got.add(data)
    time.sleep(0.001)
print(len(got), flush=True)
"#;

#[test]
fn tap_ports_forward_kernel_traffic_between_namespaces() {
    if must(&["id", "-u"]).trim() != "0" {
        eprintln!("SKIP tap_smoke: needs root (creates network namespaces); run as root to include it");
        return;
    }
    if !sh(&["python3", "-c", "1"]).status.success() {
        eprintln!("SKIP tap_smoke: python3 is needed for the kernel-socket traffic");
        return;
    }
    let id = std::process::id();
    let (ns_p, ns_a, ns_b) = (format!("pal-smk-p{id}"), format!("pal-smk-a{id}"), format!("pal-smk-b{id}"));
    let (if_a, if_b) = (format!("psa{id}"), format!("psb{id}"));
    let mut cleanup = Cleanup { child: None, namespaces: vec![ns_p.clone(), ns_a.clone(), ns_b.clone()] };
    for ns in [&ns_p, &ns_a, &ns_b] {
        must(&["ip", "netns", "add", ns]);
        for key in ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"] {
            in_ns(ns, &["sysctl", "-qw", key]);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats.json");
    let port_a = format!("net_tap0,iface={if_a}");
    let port_b = format!("net_tap1,iface={if_b}");
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns_p, env!("CARGO_BIN_EXE_palisade"), "run"])
        .args(["--port", &port_a, "--port", &port_b, "--mode", "wire", "--no-huge", "--memory-mb", "256"])
        .arg("--stats-json")
        .arg(&stats)
        .env("PALISADE_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start palisade");
    let stderr = child.stderr.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    cleanup.child = Some(child);

    // Wait until the ports are started (forwarding), then keep draining stderr.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("forwarding;") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60)).expect("palisade starts forwarding within 60 s");

    for (ifc, ns, addr) in [(&if_a, &ns_a, "10.200.0.1/24"), (&if_b, &ns_b, "10.200.0.2/24")] {
        in_ns(&ns_p, &["ip", "link", "set", ifc, "netns", ns]);
        in_ns(ns, &["ip", "addr", "add", addr, "dev", ifc]);
        in_ns(ns, &["ip", "link", "set", ifc, "up"]);
    }
    let mac = |ns: &str, ifc: &str| in_ns(ns, &["cat", &format!("/sys/class/net/{ifc}/address")]).trim().to_owned();
    let (mac_a, mac_b) = (mac(&ns_a, &if_a), mac(&ns_b, &if_b));
    in_ns(&ns_a, &["ip", "neigh", "replace", "10.200.0.2", "lladdr", &mac_b, "dev", &if_a, "nud", "permanent"]);
    in_ns(&ns_b, &["ip", "neigh", "replace", "10.200.0.1", "lladdr", &mac_a, "dev", &if_b, "nud", "permanent"]);

    let n = DATAGRAMS.to_string();
    let mut receiver = Command::new("ip")
        .args(["netns", "exec", &ns_b, "python3", "-c", RECEIVER, &n])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start receiver");
    let mut rlines = BufReader::new(receiver.stdout.take().unwrap()).lines();
    assert_eq!(rlines.next().and_then(Result::ok).as_deref(), Some("ready"));
    let sent = in_ns(&ns_a, &["python3", "-c", SENDER, &n]);
    assert_eq!(sent.trim(), n, "every datagram came back, each distinct");
    assert_eq!(rlines.next().and_then(Result::ok), Some(format!("echoed {n}")));
    let _ = receiver.wait();

    // Stop palisade the way an operator would, and read its final counters.
    let pid = cleanup.child.as_ref().unwrap().id().to_string();
    must(&["kill", "-INT", &pid]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = cleanup.child.as_mut().unwrap().try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "palisade stops within 30 s of SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "palisade exits 0 after SIGINT");
    let mut printed = String::new();
    std::io::Read::read_to_string(&mut BufReader::new(stdout), &mut printed).unwrap();
    assert!(printed.contains("stopped (stop requested)"), "{printed}");

    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    let ports = json["ports"].as_array().unwrap();
    let counts: Vec<(u64, u64, u64)> = ports
        .iter()
        .map(|p| (p["rx"].as_u64().unwrap(), p["tx"].as_u64().unwrap(), p["drops"].as_u64().unwrap()))
        .collect();
    assert_eq!(counts, [(DATAGRAMS, DATAGRAMS, 0), (DATAGRAMS, DATAGRAMS, 0)], "{json:#}");
    assert_eq!(json["stop_reason"], "requested");
}
