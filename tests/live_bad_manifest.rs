//! A running appliance fed a bad manifest keeps enforcing its last good snapshot.
//!
//! `palisade run` (its own process: EAL once) watches a copy of the Contrail lab's
//! manifests; port 0 reads a pcap stream from a FIFO the test writes as it goes, port 1
//! writes what policy forwards. Mid-run the test drops in a policy that would let
//! client2-dev reach webserver-dev:80 but holds an invalid field: the rejection is
//! logged naming file, object and field, and client2's next connection is still
//! dropped while client1's passes. Then the test fixes the file: generation 2 is
//! published and client2's third connection passes — proof that the traffic check
//! would have seen the bad policy had it been applied. Counts are exact.
//!
//! The FIFO keeps the run going for as long as the test needs (net_pcap reads a file
//! once, blocking on a pipe until data or end of file comes, and fills a whole burst
//! before returning it, so each phase is padded with ARP requests to a multiple of 32
//! frames); the output pcap is flushed per burst, so its record count tells the test
//! when a phase has been processed.

#[path = "common/appliance.rs"]
mod appliance;
#[path = "common/replay.rs"]
mod common;
#[path = "common/logged.rs"]
mod logged;

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use appliance::{arg, run_args, run_command, rx_pcap, tx_pcap};
use common::{lab_manifest_dir, tcp_connection};
use dataplane::pipeline::{craft, pcap};
use logged::Logged;

const CLIENT1: &str = "10.47.0.11";
const CLIENT2: &str = "10.47.0.12";
const WEB: &str = "10.47.0.13";

/// A policy that would open webserver-dev:80 to client2-dev, with one invalid field
/// (`bad` true) or none.
fn open_web(bad: bool) -> String {
    let cidr = if bad { "10.169.25.0/33" } else { "10.169.25.0/24" };
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: open-web\n  namespace: dev\nspec:\n  \
         podSelector:\n    matchLabels:\n      app: webserver-dev\n  ingress:\n  - from:\n    - podSelector:\n        \
         matchLabels:\n          app: client2-dev\n    ports:\n    - protocol: TCP\n      port: 80\n  - from:\n    \
         - ipBlock:\n        cidr: {cidr}\n"
    )
}

fn sock(host: &str, port: u16) -> SocketAddr {
    SocketAddr::new(host.parse().unwrap(), port)
}

/// Complete records in a pcap that may still be being written.
fn records(path: &Path) -> usize {
    let Ok(bytes) = std::fs::read(path) else { return 0 };
    let mut at = 24;
    let mut n = 0;
    while let Some(header) = bytes.get(at..at + 16) {
        let len = u32::from_le_bytes(header[8..12].try_into().unwrap()) as usize;
        if bytes.len() < at + 16 + len {
            break;
        }
        at += 16 + len;
        n += 1;
    }
    n
}

/// The live pcap stream. net_pcap fills a whole rx burst (32) before it returns, so a
/// phase ends with ARP requests (forwarded untouched) up to a multiple of 32 frames.
struct Stream {
    fifo: std::fs::File,
    sent: usize,
    /// Every frame policy must forward, padding included, in order.
    forwarded: Vec<Vec<u8>>,
    padding: usize,
}

impl Stream {
    /// Send one phase: `denied` then `allowed` frames, then the padding.
    fn phase(&mut self, denied: &[Vec<u8>], allowed: &[Vec<u8>]) {
        let pad = (32 - (self.sent + denied.len() + allowed.len()) % 32) % 32;
        let arp = craft::arp_request([10, 47, 0, 11], [10, 47, 0, 13]);
        let padding = vec![arp; pad];
        let mut bytes = Vec::new();
        for frame in denied.iter().chain(allowed).chain(&padding) {
            for field in [0u32, 0, frame.len() as u32, frame.len() as u32] {
                bytes.extend_from_slice(&field.to_le_bytes());
            }
            bytes.extend_from_slice(frame);
        }
        self.fifo.write_all(&bytes).unwrap();
        self.fifo.flush().unwrap();
        self.sent += denied.len() + allowed.len() + pad;
        self.forwarded.extend(allowed.iter().chain(&padding).cloned());
        self.padding += pad;
    }
}

/// Replace `path` atomically (write beside it, then rename), as editors and kubectl do.
fn put(path: &Path, text: &str) {
    let tmp = path.parent().unwrap().parent().unwrap().join("incoming.yaml");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn bad_manifest_mid_run_keeps_the_last_good_snapshot_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = lab_manifest_dir(dir.path(), &["base"]);
    let fifo = dir.path().join("in.fifo");
    let output = dir.path().join("out.pcap");
    let stats = dir.path().join("stats.json");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo failed");

    let args = run_args([rx_pcap(&fifo), tx_pcap(&output)], &["--manifests", arg(&manifests), "--stats-json", arg(&stats)]);
    let mut run = Logged::spawn(&mut run_command(&args, "info"));

    // Open the stream once palisade has opened its end (non-blocking until then, so a
    // palisade that fails early fails the test instead of hanging it).
    let fifo_writer = {
        let deadline = Instant::now() + Duration::from_secs(60);
        let probe = loop {
            match std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&fifo) {
                Ok(f) => break f,
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                    run.assert_running("before reading its input");
                    assert!(Instant::now() < deadline, "palisade never opened {}", fifo.display());
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("open {}: {e}", fifo.display()),
            }
        };
        let stream = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        drop(probe);
        stream
    };
    let mut header = Vec::new();
    for word in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
        header.extend_from_slice(&word.to_le_bytes());
    }
    let mut stream = Stream { fifo: fifo_writer, sent: 0, forwarded: Vec::new(), padding: 0 };
    stream.fifo.write_all(&header).unwrap();

    // Phase 1, generation 1: client1 → web:80 passes, client2 → web:80 is dropped.
    let allowed_1 = tcp_connection(sock(CLIENT1, 40_001), sock(WEB, 80));
    let denied_1 = tcp_connection(sock(CLIENT2, 40_002), sock(WEB, 80));
    stream.phase(&denied_1, &allowed_1);
    run.wait_until("phase 1 forwarded", |_| records(&output) == stream.forwarded.len());

    // A policy opening web to client2, with an invalid CIDR: rejected, whole.
    let policy_file = manifests.join("open-web.yaml");
    put(&policy_file, &open_web(true));
    run.wait_until("the rejection", |log| log.contains("policy change rejected") && log.contains("must be a valid CIDR"));
    {
        let log = run.log();
        let expected = format!(
            "{} (document 1): NetworkPolicy dev/open-web: spec.ingress[1].from[0].ipBlock.cidr: Invalid value: \"10.169.25.0/33\": must be a valid CIDR",
            policy_file.display()
        );
        assert!(log.contains("generation 1 stays in force"), "{log}");
        assert!(log.contains(&expected), "the rejection must name file, object and field:\n{log}");
    }

    // Phase 2, still generation 1: client2 is still dropped, client1 still passes.
    let denied_2 = tcp_connection(sock(CLIENT2, 40_003), sock(WEB, 80));
    let allowed_2 = tcp_connection(sock(CLIENT1, 40_004), sock(WEB, 80));
    stream.phase(&denied_2, &allowed_2);
    run.wait_until("phase 2 forwarded", |_| records(&output) == stream.forwarded.len());

    // The same policy, fixed: generation 2 opens web to client2.
    put(&policy_file, &open_web(false));
    run.wait_until("generation 2", |log| log.contains("generation=2"));
    let allowed_3 = tcp_connection(sock(CLIENT2, 40_005), sock(WEB, 80));
    stream.phase(&[], &allowed_3);
    run.wait_until("phase 3 forwarded", |_| records(&output) == stream.forwarded.len());

    // End of input, then stop.
    drop(stream.fifo);
    let (status, stdout, log) = run.stop();
    assert!(status.success(), "palisade run failed ({status}):\n{stdout}\n{log}");
    assert!(stdout.contains("policy: generation 2 in force, 1 update(s) applied, 1 rejected"), "{stdout}");

    let stats: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    let port = |i: usize, field: &str| stats["ports"][i][field].as_u64().unwrap();
    let padding = stream.padding as u64;
    assert_eq!(port(0, "rx"), 40 + padding, "{stats}");
    assert_eq!(port(1, "tx"), 24 + padding, "{stats}");
    assert_eq!(port(0, "drops"), 16, "{stats}");
    let written: Vec<Vec<u8>> = pcap::read(&output).unwrap().into_iter().map(|r| r.data).collect();
    assert!(written == stream.forwarded, "port 1 must carry exactly the allowed connections' frames (and the padding), in order");
}
