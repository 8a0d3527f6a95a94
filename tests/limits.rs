//! Memory is bounded by configuration, not by traffic: `palisade replay` with the same
//! `--flow-capacity` over floods of 8× and 48× that many new flows fills the flow table
//! to exactly its capacity, counts every further flow as `flow_table_full`, and peaks
//! at the same resident set size within a small tolerance — where a table that grew per
//! flow (128-byte records) would need some 20 MiB more for the larger flood.
//!
//! Peak RSS is the child's own high-water mark as the kernel accounts it
//! (`getrusage(RUSAGE_CHILDREN).ru_maxrss`, read by a python3 wrapper that runs it):
//! a size, not a timing.

#[path = "common/replay.rs"]
mod common;

use std::net::SocketAddr;
use std::path::Path;

use common::{lab_manifest_dir, replay_command};
use dataplane::pipeline::{craft, pcap};
use dataplane::wire::tcp::flags::SYN;

const CAPACITY: usize = 4096;
/// Extra peak RSS allowed for the larger flood.
const TOLERANCE_KIB: u64 = 4096;

/// Runs a command and prints its peak RSS in KiB (of the child alone) on the last
/// line of stderr.
const PEAK_RSS: &str = "
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:])
sys.stderr.write('\\npeak_rss_kib %d\\n' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(done.returncode)
";

/// SYNs to webserver-dev:80 from `n` distinct spoofed sources in 10.64.0.0/10.
fn flood(n: usize) -> Vec<Vec<u8>> {
    let web: SocketAddr = "10.47.0.13:80".parse().unwrap();
    (0..n)
        .map(|i| {
            let src = SocketAddr::new(format!("10.{}.{}.{}", 64 + i / 65_536, (i / 256) % 256, i % 256).parse().unwrap(), 1024 + (i % 7) as u16);
            craft::tcp(src, web, SYN)
        })
        .collect()
}

/// Replay `frames` with the lab manifests; the counters and the peak RSS in KiB.
fn replay_measured(dir: &Path, frames: &[Vec<u8>]) -> (serde_json::Value, u64) {
    let manifests = lab_manifest_dir(dir, &["base"]);
    let input = dir.join("in.pcap");
    pcap::write(&input, frames).unwrap();
    let out = replay_command(&["python3", "-c", PEAK_RSS], &manifests, &input)
        .args(["--flow-capacity", &CAPACITY.to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "palisade replay failed: {stderr}");
    let peak = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("peak_rss_kib "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS reported: {stderr}"));
    (serde_json::from_slice(&out.stdout).unwrap(), peak)
}

#[test]
fn flow_table_and_memory_stay_at_their_configured_bound_under_a_flood() {
    let mut peaks = Vec::new();
    for multiple in [8, 48] {
        let n = multiple * CAPACITY;
        let dir = tempfile::tempdir().unwrap();
        let (counters, peak) = replay_measured(dir.path(), &flood(n));
        let get = |name: &str| counters[name].as_u64().unwrap_or_else(|| panic!("no {name} in {counters}"));
        assert_eq!(get("rx"), n as u64, "{counters}");
        assert_eq!(get("flows"), CAPACITY as u64, "the table holds exactly its capacity: {counters}");
        assert_eq!(get("flow_inserts"), CAPACITY as u64, "{counters}");
        assert_eq!(get("flow_table_full"), (n - CAPACITY) as u64, "{counters}");
        assert_eq!(get("drop_policy"), n as u64, "spoofed sources are denied: {counters}");
        eprintln!("flood of {n} new flows, capacity {CAPACITY}: peak RSS {peak} KiB");
        peaks.push(peak);
    }
    assert!(
        peaks[1] <= peaks[0] + TOLERANCE_KIB,
        "peak RSS grew with traffic: {} KiB for {} flows vs {} KiB for {} (tolerance {TOLERANCE_KIB} KiB)",
        peaks[1],
        48 * CAPACITY,
        peaks[0],
        8 * CAPACITY
    );
}
