//! `palisade replay` over the Contrail lab (reference: contrail-create-kubernetes-
//! network-policy.txt; manifests in tests/data/lab): every connection of the document,
//! opened from each side, SYN to FIN, through the real worker pipeline on net_pcap
//! vdevs. The output pcaps must hold exactly the frames of the allowed connections, in
//! order, and of the denied ones.

#[path = "common/replay.rs"]
mod common;

use common::{lab_manifest_dir, replay, sock, tcp_connection};

const CLIENT1: &str = "10.47.0.11";
const CLIENT2: &str = "10.47.0.12";
const WEB: &str = "10.47.0.13";
const DB: &str = "10.47.0.14";
const JTAC: &str = "10.47.0.21";
const QA: &str = "10.47.0.31";
const CENT222: &str = "10.169.25.20";
const CENT333: &str = "10.169.25.21";

/// (client, server, allowed): each connection to port 80.
type Case = (&'static str, &'static str, bool);

/// policy1 only: webserver-dev takes port 80 from cent222, jtac and client1-dev, and
/// may talk only to dbserver-dev:80. dbserver-dev is not isolated.
const BASE: &[Case] = &[
    (CLIENT1, WEB, true),
    (JTAC, WEB, true),
    (CENT222, WEB, true),
    (CLIENT2, WEB, false),
    (QA, WEB, false),
    (CENT333, WEB, false),
    (WEB, DB, true),
    (WEB, CLIENT1, false),
    (WEB, JTAC, false),
    (WEB, CENT222, false),
    (CLIENT1, DB, true),
    (DB, CLIENT1, true),
    (QA, CLIENT2, true),
];

/// policy2 (ingress only): dbserver-dev takes port 80 from webserver-dev only.
const POLICY2_INGRESS: &[Case] = &[
    (WEB, DB, true),
    (CLIENT1, DB, false),
    (JTAC, DB, false),
    (DB, CLIENT1, true),
    (DB, WEB, false), // webserver-dev's ingress allows only its three sources
];

/// policy2 with Egress in policyTypes and no egress rules: dbserver-dev cannot open.
const POLICY2_EGRESS: &[Case] = &[(WEB, DB, true), (CLIENT1, DB, false), (DB, CLIENT1, false), (DB, CENT222, false)];

fn run(parts: &[&str], cases: &[Case]) {
    let dir = tempfile::tempdir().unwrap();
    let manifests = lab_manifest_dir(dir.path(), parts);
    let mut frames = Vec::new();
    let mut allowed = Vec::new();
    let mut dropped = Vec::new();
    for (i, (client, server, allow)) in cases.iter().enumerate() {
        let conn = tcp_connection(sock(&format!("{client}:{}", 40000 + i)), sock(&format!("{server}:80")));
        frames.extend(conn.iter().cloned());
        if *allow { allowed.extend(conn) } else { dropped.extend(conn) }
    }
    let result = replay(dir.path(), &manifests, &frames, &[]);
    let n = |v: &Vec<Vec<u8>>| v.len() as u64;
    assert_eq!(result.get("rx"), n(&frames));
    assert_eq!(result.get("forwarded"), n(&allowed));
    assert_eq!(result.get("drop_policy"), n(&dropped));
    assert_eq!(result.get("flow_inserts"), cases.len() as u64);
    assert_eq!((result.get("written_allowed"), result.get("written_dropped")), (n(&allowed), n(&dropped)));
    assert!(result.allowed == allowed, "allowed pcap differs from the allowed connections' frames");
    assert!(result.dropped == dropped, "dropped pcap differs from the denied connections' frames");
}

#[test]
fn lab_policy1() {
    run(&["base"], BASE);
}

#[test]
fn lab_policy2_ingress_only() {
    run(&["base", "policy2-ingress-only"], POLICY2_INGRESS);
}

#[test]
fn lab_policy2_with_egress() {
    run(&["base", "policy2-with-egress"], POLICY2_EGRESS);
}
