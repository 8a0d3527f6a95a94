//! The metrics endpoint of a running appliance, scraped over real HTTP and parsed:
//! exact per-port, per-worker, flow-table, drop-reason and per-rule values for a known
//! pcap (an allowed and a denied lab connection, a truncated frame, an orphan
//! fragment); plus the flow log's line for the denied first packet (`--log-denied`).

#[path = "common/replay.rs"]
mod replay;
#[path = "common/appliance.rs"]
mod appliance;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::process::Stdio;

use dataplane::pipeline::craft::{self, L4};
use dataplane::pipeline::pcap;
use appliance::{arg, run_args, rx_pcap, tx_pcap, Appliance};
use replay::{lab_manifest_dir, sock, tcp_connection};

/// `GET /metrics`, parsed into `name{labels}` → value (OpenMetrics text).
fn scrape(addr: &str) -> (String, HashMap<String, f64>) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("Content-Type: application/openmetrics-text"), "{head}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    let values = body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {l:?}"));
            (name.to_owned(), value.parse::<f64>().unwrap_or_else(|_| panic!("bad value in {l:?}")))
        })
        .collect();
    (body.to_owned(), values)
}

fn free_local_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn metrics_scraped_over_http_carry_exact_counts() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = lab_manifest_dir(dir.path(), &["base"]);
    let allowed = tcp_connection(sock("10.47.0.11:40001"), sock("10.47.0.13:80"));
    let denied = tcp_connection(sock("10.47.0.12:40002"), sock("10.47.0.13:80"));
    let mut truncated = allowed[2].clone();
    truncated.truncate(14 + 10);
    let (a, b): (IpAddr, IpAddr) = ("10.47.0.11".parse().unwrap(), "10.47.0.13".parse().unwrap());
    let orphan = craft::fragments(a, b, &L4::Udp { src_port: 1000, dst_port: 53, payload: &[7; 64] }, 77, 32).pop().unwrap();
    let frames: Vec<Vec<u8>> = allowed.iter().chain(&denied).chain([&truncated, &orphan]).cloned().collect();
    let input = dir.path().join("in.pcap");
    pcap::write(&input, &frames).unwrap();
    let flow_log = dir.path().join("flows.log");

    let addr = format!("127.0.0.1:{}", free_local_port());
    let args = run_args(
        [rx_pcap(&input), tx_pcap(&dir.path().join("out.pcap"))],
        &["--metrics-addr", &addr, "--flow-log", arg(&flow_log), "--log-denied", "--manifests", arg(&manifests)],
    );
    let mut app = Appliance::start(dir.path(), &args, Stdio::null());
    let total = frames.len() as f64;
    let n = |v: usize| v as f64;
    // Every counter at its final value. Port counters are sampled every 100 ms and
    // pipeline counters published at upkeep, so a scrape may see some of them one
    // sample behind the others: wait until the whole table holds, then assert it.
    let expected: Vec<(&str, f64)> = vec![
        ("palisade_port_rx_packets_total{port=\"net_pcap0\"}", total),
        ("palisade_port_tx_packets_total{port=\"net_pcap1\"}", n(allowed.len())),
        ("palisade_port_rx_packets_total{port=\"net_pcap1\"}", 0.0),
        ("palisade_port_rx_bytes_total{port=\"net_pcap0\"}", n(frames.iter().map(Vec::len).sum())),
        ("palisade_port_missed_packets_total{port=\"net_pcap0\"}", 0.0),
        ("palisade_flow_table_entries", 2.0),
        ("palisade_flow_inserts_total", 2.0),
        ("palisade_flow_expiries_total", 0.0),
        ("palisade_flow_table_full_total", 0.0),
        ("palisade_flow_log_dropped_total", 0.0),
        ("palisade_drops_total{reason=\"policy\"}", n(denied.len())),
        ("palisade_drops_total{reason=\"malformed\"}", 1.0),
        ("palisade_drops_total{reason=\"fragment\"}", 1.0),
        ("palisade_drops_total{reason=\"table_full\"}", 0.0),
        ("palisade_drops_total{reason=\"no_flow\"}", 0.0),
        ("palisade_policy_drops_total{rule=\"dev-ingress-default-deny\"}", n(denied.len())),
        ("palisade_snapshot_generation", 1.0),
        ("palisade_policy_applied_total", 0.0),
        ("palisade_policy_rejected_total", 0.0),
    ];
    let worker_packets = |m: &HashMap<String, f64>| {
        m.iter().find(|(k, _)| k.starts_with("palisade_worker_packets_total{worker=\"0\"")).map(|(_, v)| *v)
    };
    let mismatches = |m: &HashMap<String, f64>| {
        let mut bad: Vec<String> = expected
            .iter()
            .filter(|(k, v)| m.get(*k) != Some(v))
            .map(|(k, v)| format!("{k} = {:?}, expected {v}", m.get(*k)))
            .collect();
        if worker_packets(m) != Some(total) {
            bad.push(format!("worker 0 packets = {:?}, expected {total}", worker_packets(m)));
        }
        bad
    };
    // Each change in what is still off goes to stderr, which a timeout's report shows;
    // the scrape that found nothing off is the one the checks below read.
    let mut off: Vec<String> = Vec::new();
    let mut last = (String::new(), HashMap::new());
    app.wait_for(
        "every counter at its final value",
        |_| {
            last = scrape(&addr);
            let bad = mismatches(&last.1);
            if bad != off {
                eprintln!("counters not yet final: {bad:#?}");
                off = bad;
            }
            off.is_empty()
        },
        dir.path(),
    );
    let (text, m) = last;
    let get = |k: &str| *m.get(k).unwrap_or_else(|| panic!("no {k} in:\n{text}"));
    for (k, v) in &expected {
        assert_eq!(get(k), *v, "{k}");
    }
    assert_eq!(worker_packets(&m), Some(total));
    let cpp = m.iter().find(|(k, _)| k.starts_with("palisade_worker_cycles_per_packet{worker=\"0\"")).unwrap().1;
    assert!(*cpp > 0.0, "{text}");
    assert!(get("palisade_snapshot_compile_seconds") > 0.0);

    // The flow log: one line, for client2's denied SYN.
    app.wait_for("the flow log line", |_| std::fs::read_to_string(&flow_log).is_ok_and(|t| t.ends_with('\n')), dir.path());
    let text = std::fs::read_to_string(&flow_log).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "{text}");
    let mut line = lines[0].clone();
    assert!(line["time"].as_f64().unwrap() > 1.7e9);
    line.as_object_mut().unwrap().remove("time");
    assert_eq!(
        line,
        serde_json::json!({
            "event": "denied", "protocol": "TCP",
            "src_ip": "10.47.0.12", "src_port": 40002, "dst_ip": "10.47.0.13", "dst_port": 80,
            "src_namespace": "dev", "src_pod": "client2-dev", "dst_namespace": "dev", "dst_pod": "webserver-dev",
            "verdict": "deny", "rules": ["dev-ingress-default-deny"],
            "packets": 1, "bytes": denied[0].len(), "duration_seconds": 0.0
        })
    );
    app.stop(dir.path());
}
