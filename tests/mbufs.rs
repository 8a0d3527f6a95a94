//! `palisade run --mbufs N` (and the `mbufs` config key): a count below what the ports,
//! workers and descriptors need, or one that cannot fit --no-huge memory, is refused
//! before EAL starts, with the exact reason; an explicit pool holds a looping net_pcap
//! file (`infinite_rx=1` keeps the whole file in the pool) that the default pool
//! cannot, and forwards it into net_null. Each run is its own `palisade` process.

#[path = "common/appliance.rs"]
mod appliance;

use std::path::{Path, PathBuf};

use appliance::{arg, run_args, run_command, rx_pcap};
use dataplane::pipeline::{craft, pcap};

/// Frames in the looping pcap: more than the default pool (8191 mbufs) holds.
const FRAMES: usize = 10_000;

/// `dir/in.pcap`, written: `FRAMES` ARP requests.
fn write_pcap(dir: &Path) -> PathBuf {
    let path = dir.join("in.pcap");
    let arp = craft::arp_request([10, 47, 0, 11], [10, 47, 0, 13]);
    pcap::write(&path, &vec![arp; FRAMES]).unwrap();
    path
}

fn looping_ports(input: &Path) -> [String; 2] {
    [rx_pcap(input) + ",infinite_rx=1", "net_null1,no-rx=1".into()]
}

#[test]
fn bad_pool_sizes_are_refused_naming_the_flag_and_what_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_pcap(dir.path());
    let config = dir.path().join("palisade.toml");
    std::fs::write(&config, "mbufs = 4991\n").unwrap();
    let too_few = "palisade: error: --mbufs 4991: give at least 4992 (every rx and tx descriptor of 2 ports × 1 worker(s) at \
                   --rx-desc 1024 --tx-desc 1024, two bursts per queue, the per-core caches) and at most 16777215\n";
    let cases: &[(&[&str], &str)] = &[
        (&["--mbufs", "4991"], too_few),
        // The config key goes through the same check.
        (&["--config", arg(&config)], too_few),
        (
            &["--mbufs", "1000", "--rx-desc", "256", "--tx-desc", "512"],
            "palisade: error: --mbufs 1000: give at least 2432 (every rx and tx descriptor of 2 ports × 1 worker(s) at \
             --rx-desc 256 --tx-desc 512, two bursts per queue, the per-core caches) and at most 16777215\n",
        ),
        (
            &["--mbufs", "16777216"],
            "palisade: error: --mbufs 16777216: give at least 4992 (every rx and tx descriptor of 2 ports × 1 worker(s) at \
             --rx-desc 1024 --tx-desc 1024, two bursts per queue, the per-core caches) and at most 16777215\n",
        ),
        (
            &["--mbufs", "200000"],
            "palisade: error: --mbufs 200000 with --no-huge takes 782 MB (a 4 KiB page per mbuf) and --memory-mb is 512: \
             give --memory-mb at least 1038 or fewer mbufs\n",
        ),
    ];
    for (extra, want) in cases {
        let mut flags = vec!["--duration", "1", "--metrics-addr", "off"];
        flags.extend_from_slice(extra);
        let out = run_command(&run_args(looping_ports(&input), &flags), "warn").output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{extra:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), *want, "{extra:?}");
        assert!(out.stdout.is_empty(), "{extra:?}");
    }
}

#[test]
fn an_explicit_pool_holds_a_looping_pcap_the_default_pool_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_pcap(dir.path());
    let stats = dir.path().join("stats.json");
    let socket = dir.path().join("ctl.sock");
    let flags = ["--duration", "0.5", "--metrics-addr", "off", "--control-socket", arg(&socket), "--stats-json", arg(&stats)];

    // The default pool (8191 mbufs) cannot take the file: net_pcap refuses the rx queue.
    let out = run_command(&run_args(looping_ports(&input), &flags), "warn").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("At least 10000 mbufs per queue is required"), "{stderr}");
    assert!(stderr.contains("palisade: error: port \"net_pcap0\": rte_eth_rx_queue_setup failed"), "{stderr}");
    assert!(!stats.exists());

    // 16383 hold the file, the descriptors and the bursts: it forwards, in a loop.
    let mut with_pool = flags.to_vec();
    with_pool.extend(["--mbufs", "16383"]);
    let out = run_command(&run_args(looping_ports(&input), &with_pool), "warn").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("palisade: wire mode, stopped (duration reached)"), "{stdout}");
    let stats: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    let port = |i: usize, field: &str| stats["ports"][i][field].as_u64().unwrap_or_else(|| panic!("ports[{i}].{field} in {stats}"));
    let worker = |field: &str| stats["workers"][0][field].as_u64().unwrap();
    let rx = port(0, "rx");
    assert!(rx > 0, "{stats}");
    // No policy source: everything received on port 0 leaves on port 1, nothing is lost.
    assert_eq!((worker("rx"), worker("tx"), port(1, "tx")), (rx, rx, rx), "{stats}");
    assert_eq!((port(0, "drops"), port(1, "drops")), (0, 0), "{stats}");
    assert_eq!(stats["ports"][0]["drop_detail"]["rx_nombuf"], 0, "the pool never ran dry: {stats}");
}
