//! `palisade replay` over a mixed capture on the Contrail lab (policy1): non-IP frames,
//! pings, UDP, an ICMP error, fragments, VLAN tags, malformed frames, and connections
//! whose replies arrive without their opening. Exact counts per kind, the flow list, and
//! the errors a user sees for a bad input.

#[path = "common/replay.rs"]
mod common;

use std::net::IpAddr;

use common::{lab_manifest_dir, replay, sock};
use dataplane::pipeline::craft::{self, L4};
use dataplane::wire::tcp::flags::{ACK, SYN};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn mixed_traffic_on_the_lab() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = lab_manifest_dir(dir.path(), &["base"]);
    let (client1, client2, web) = (ip("10.47.0.11"), ip("10.47.0.12"), ip("10.47.0.13"));
    let dns = craft::udp(sock("10.47.0.11:5353"), sock("10.47.0.12:53"), b"query");
    let big = [0xabu8; 600];
    let mut frames: Vec<(Vec<u8>, bool)> = vec![
        (craft::arp_request([10, 47, 0, 11], [10, 47, 0, 13]), true),
        // client1 ↔ client2: neither isolated.
        (craft::echo(client1, client2, true, 1, 1), true),
        (craft::echo(client2, client1, false, 1, 1), true),
        (dns.clone(), true),
        (craft::udp(sock("10.47.0.12:53"), sock("10.47.0.11:5353"), b"answer"), true),
        (craft::unreachable(client2, client1, &dns), true),
        // webserver-dev is isolated both ways with TCP-only rules: no ping either way.
        (craft::echo(client1, web, true, 2, 1), false),
        (craft::echo(web, client1, true, 3, 1), false),
        // An echo reply and a SYN-ACK with nothing before them.
        (craft::echo(web, client2, false, 9, 1), false),
        (craft::tcp(sock("10.47.0.13:80"), sock("10.47.0.12:41000"), SYN | ACK), false),
        // client1 → webserver:80 tagged VLAN 100: allowed, the reply follows.
        (craft::with_vlans(&craft::tcp(sock("10.47.0.11:41001"), sock("10.47.0.13:80"), SYN), &[100]), true),
        (craft::with_vlans(&craft::tcp(sock("10.47.0.13:80"), sock("10.47.0.11:41001"), SYN | ACK), &[100]), true),
        // The same reply on another VLAN has no flow.
        (craft::with_vlans(&craft::tcp(sock("10.47.0.13:80"), sock("10.47.0.11:41001"), SYN | ACK), &[200]), false),
        // Malformed: IPv4 header cut short.
        (dns[..20].to_vec(), false),
    ];
    // A fragmented UDP datagram client1 → client2 (allowed) and client2 → webserver (denied).
    let udp = |port| L4::Udp { src_port: 7000, dst_port: port, payload: &big };
    frames.extend(craft::fragments(client1, client2, &udp(9000), 41, 256).into_iter().map(|f| (f, true)));
    frames.extend(craft::fragments(client2, web, &udp(9000), 42, 256).into_iter().map(|f| (f, false)));
    // A lone later fragment.
    frames.push((craft::fragments(client1, client2, &udp(9001), 43, 256).swap_remove(1), false));

    let input: Vec<Vec<u8>> = frames.iter().map(|(f, _)| f.clone()).collect();
    let allowed: Vec<Vec<u8>> = frames.iter().filter(|(_, a)| *a).map(|(f, _)| f.clone()).collect();
    let dropped: Vec<Vec<u8>> = frames.iter().filter(|(_, a)| !*a).map(|(f, _)| f.clone()).collect();
    let result = replay(dir.path(), &manifests, &input, &["--flows"]);
    let expected = [
        ("rx", 21),
        ("forwarded", 11),
        ("passthrough", 1),
        ("drop_policy", 5),
        ("drop_no_flow", 3),
        ("drop_malformed", 1),
        ("drop_fragment", 1),
        ("icmp_related", 1),
        ("fragments_followed", 4),
        ("flow_inserts", 7),
        ("written_allowed", 11),
        ("written_dropped", 10),
    ];
    for (name, value) in expected {
        assert_eq!(result.get(name), value, "{name} in {}", result.counters);
    }
    assert!(result.allowed == allowed, "allowed pcap differs");
    assert!(result.dropped == dropped, "dropped pcap differs");
    // The denied ping to webserver-dev names policy1's ingress side as the deciding rule.
    let flows = result.counters["flow_list"].as_array().unwrap();
    assert_eq!(flows.len(), 7);
    let ping = flows.iter().find(|f| f["src"] == "10.47.0.11" && f["dst"] == "10.47.0.13" && f["protocol"] == 1).unwrap();
    assert_eq!(ping["action"], "drop");
    assert_eq!(ping["reason"], "DeniedByIngress");
    assert!(!ping["rules"].as_array().unwrap().is_empty(), "{ping}");
    let web = flows.iter().find(|f| f["dst_port"] == 80 && f["vlan"] == 100 << 12).unwrap();
    assert_eq!((web["action"].as_str(), web["packets"][0].as_u64(), web["packets"][1].as_u64()), (Some("forward"), Some(1), Some(1)));
}

#[test]
fn bad_inputs_are_reported_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = lab_manifest_dir(dir.path(), &["base"]);
    let not_pcap = dir.path().join("notes.txt");
    std::fs::write(&not_pcap, "hello, this is not a capture").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["replay", "--manifests"])
        .arg(&manifests)
        .arg("--pcap")
        .arg(&not_pcap)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("notes.txt") && stderr.contains("is not a pcap file"), "{stderr}");
}
