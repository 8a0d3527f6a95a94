//! The control socket of a running appliance returns the expected flows: `palisade
//! flows` lists the lab's allowed and denied connections with their pods, action,
//! deciding rule and exact per-direction counts; filters select them; `palisade stats`
//! and the live `palisade rules` answer; a missing socket is a clear error.

#[path = "common/replay.rs"]
mod replay;
#[path = "common/appliance.rs"]
mod appliance;

use std::process::{Command, Stdio};

use dataplane::pipeline::pcap;
use appliance::{arg, counter, run_args, rx_pcap, tx_pcap, Appliance, BIN};
use replay::{lab_manifest_dir, sock, tcp_connection};

#[test]
fn control_socket_lists_flows_with_pods_actions_rules_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = lab_manifest_dir(dir.path(), &["base"]);
    // client1-dev → webserver-dev:80 is allowed by policy1; client2-dev's is not.
    let allowed = tcp_connection(sock("10.47.0.11:40001"), sock("10.47.0.13:80"));
    let denied = tcp_connection(sock("10.47.0.12:40002"), sock("10.47.0.13:80"));
    let frames: Vec<Vec<u8>> = allowed.iter().chain(denied.iter()).cloned().collect();
    let input = dir.path().join("in.pcap");
    pcap::write(&input, &frames).unwrap();

    let args = run_args(
        [rx_pcap(&input), tx_pcap(&dir.path().join("out.pcap"))],
        &["--duration", "120", "--metrics-addr", "off", "--manifests", arg(&manifests)],
    );
    let mut app = Appliance::start(dir.path(), &args, Stdio::null());
    let total = frames.len() as u64;
    app.wait_for("every frame to pass the pipeline", |a| counter(&a.stats(), "pipeline.rx") == total, dir.path());

    let stats = app.stats();
    assert_eq!(counter(&stats, "pipeline.forwarded"), allowed.len() as u64, "{stats}");
    assert_eq!(counter(&stats, "pipeline.drop_policy"), denied.len() as u64, "{stats}");
    assert_eq!(counter(&stats, "policy_drops.dev-ingress-default-deny"), denied.len() as u64, "{stats}");
    assert_eq!(counter(&stats, "flow_table.entries"), 2, "{stats}");
    assert_eq!(counter(&stats, "policy.generation"), 1, "{stats}");

    // Both flows, exactly, as JSON.
    let flows: serde_json::Value = serde_json::from_str(&app.ask(&["flows", "--json"])).unwrap();
    let flows = flows.as_array().unwrap();
    assert_eq!(flows.len(), 2, "{flows:?}");
    let find = |src: &str| flows.iter().find(|f| f["source"] == src).unwrap_or_else(|| panic!("no flow from {src}: {flows:?}"));
    let f = find("10.47.0.11:40001");
    assert_eq!(f["destination"], "10.47.0.13:80");
    assert_eq!(f["protocol"], "TCP");
    assert_eq!(f["source_pod"], "dev/client1-dev");
    assert_eq!(f["destination_pod"], "dev/webserver-dev");
    assert_eq!(f["action"], "F");
    assert_eq!(f["rules"], serde_json::json!(["dev-ingress-policy1-0-podSelector-2-0"]));
    let (fwd, rev) = split(&allowed);
    assert_eq!((f["forward_packets"].as_u64(), f["reverse_packets"].as_u64()), (Some(fwd.0), Some(rev.0)));
    assert_eq!((f["forward_bytes"].as_u64(), f["reverse_bytes"].as_u64()), (Some(fwd.1), Some(rev.1)));
    let d = find("10.47.0.12:40002");
    assert_eq!(d["source_pod"], "dev/client2-dev");
    assert_eq!(d["action"], "D(FwPolicy)");
    assert_eq!(d["rules"], serde_json::json!(["dev-ingress-default-deny"]));
    let (fwd, rev) = split(&denied);
    assert_eq!((d["forward_packets"].as_u64(), d["reverse_packets"].as_u64()), (Some(fwd.0), Some(rev.0)));

    // The operator's view: `--action drop` shows only the denied flow, with its rule.
    let text = app.ask(&["flows", "--action", "drop"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "Flow table: 1 flow", "{text}");
    assert!(lines[2].contains("10.47.0.12:40002 (dev/client2-dev)"), "{text}");
    assert!(lines[2].contains("10.47.0.13:80 (dev/webserver-dev)"), "{text}");
    assert!(lines[2].contains("D(FwPolicy)"), "{text}");
    assert!(lines[3].contains("rule dev-ingress-default-deny"), "{text}");
    let text = app.ask(&["flows", "--action", "allow"]);
    assert!(text.starts_with("Flow table: 1 flow\n") && text.contains("10.47.0.11:40001 (dev/client1-dev)"), "{text}");
    let text = app.ask(&["flows", "--pod", "dev/client2-dev"]);
    assert!(text.starts_with("Flow table: 1 flow\n") && text.contains("D(FwPolicy)"), "{text}");
    let text = app.ask(&["flows", "--pod", "dev/webserver-dev"]);
    assert!(text.starts_with("Flow table: 2 flows\n"), "{text}");

    // The live snapshot's CN2 tables, the same as offline from the same manifests.
    let live_rules = app.ask(&["rules"]);
    let offline = Command::new(BIN).args(["rules", "--manifests"]).arg(&manifests).output().unwrap();
    assert_eq!(live_rules, format!("Snapshot generation 1\n{}", String::from_utf8_lossy(&offline.stdout)));

    let out = app.stop(dir.path());
    assert!(out.contains("policy: generation 1 in force"), "{out}");

    // No appliance: the commands say so and name the socket.
    let missing = dir.path().join("ctl.sock");
    let out = Command::new(BIN).args(["flows", "--control-socket"]).arg(&missing).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("is palisade run running? socket {} not found", missing.display())), "{err}");
}

/// (packets, bytes) sent by the initiator and by the responder of a crafted IPv4
/// conversation, told apart by the source address (Ethernet + IPv4 offset 26).
fn split(frames: &[Vec<u8>]) -> ((u64, u64), (u64, u64)) {
    let first_src = &frames[0][26..30];
    let (mut f, mut r) = ((0, 0), (0, 0));
    for fr in frames {
        let side = if &fr[26..30] == first_src { &mut f } else { &mut r };
        side.0 += 1;
        side.1 += fr.len() as u64;
    }
    (f, r)
}

/// Run as an unprivileged user, `palisade run` stops before EAL and says what is missing.
#[test]
fn unprivileged_run_fails_before_eal_saying_what_is_missing() {
    let is_root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    if !is_root || Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped: needs root and setpriv to drop to an unprivileged user");
        return;
    }
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", BIN])
        .args(["run", "--no-huge", "--port", "net_null0", "--port", "net_null1", "--metrics-addr", "off"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("must run as root or with CAP_NET_ADMIN") && err.contains("uid 65534"), "{err}");
    assert!(!err.contains("EAL"), "EAL must not have started: {err}");
}
