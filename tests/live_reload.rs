//! Reload under load: while one UDP flow streams through the real pipeline (net_pcap
//! `infinite_rx` in, net_null out), the policy that governs it is swapped 100 times
//! through `--watch-stream -` (kubectl's watch events on stdin), alternating allow and
//! deny. Each generation's verdict shows on the flow decided under that generation;
//! every swap re-decides the flow exactly once; and at the end every packet received
//! is either transmitted or a policy drop — nothing lost, nothing misclassified.

#[path = "common/appliance.rs"]
mod appliance;

use std::io::Write;
use std::net::SocketAddr;
use std::process::Stdio;

use dataplane::pipeline::{craft, pcap};
use appliance::{arg, counter, run_args, rx_pcap, Appliance};

const SWAPS: u64 = 100;

fn event(ty: &str, object: serde_json::Value) -> String {
    serde_json::json!({ "type": ty, "object": object }).to_string() + "\n"
}

fn pod(name: &str, ip: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": "dev", "labels": { "app": name } },
        "spec": { "containers": [ { "name": name, "image": "x" } ] },
        "status": { "podIP": ip, "podIPs": [ { "ip": ip } ] }
    })
}

/// The policy selecting `web`: UDP 5000 from `client` allowed, or nothing (default deny).
fn web_policy(allow: bool) -> serde_json::Value {
    let ingress = if allow {
        serde_json::json!([{ "from": [ { "podSelector": { "matchLabels": { "app": "client" } } } ],
                             "ports": [ { "protocol": "UDP", "port": 5000 } ] }])
    } else {
        serde_json::json!([])
    };
    serde_json::json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": { "name": "web", "namespace": "dev" },
        "spec": { "podSelector": { "matchLabels": { "app": "web" } }, "policyTypes": ["Ingress"], "ingress": ingress }
    })
}

/// The one live flow, as `palisade flows --json` shows it.
fn the_flow(app: &Appliance) -> serde_json::Value {
    let flows: serde_json::Value = serde_json::from_str(&app.ask(&["flows", "--json"])).unwrap();
    let flows = flows.as_array().unwrap();
    assert_eq!(flows.len(), 1, "{flows:?}");
    flows[0].clone()
}

#[test]
fn hundred_policy_swaps_under_load_switch_verdicts_at_generation_boundaries_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let frame = craft::udp("10.47.0.11:40000".parse::<SocketAddr>().unwrap(), "10.47.0.13:5000".parse().unwrap(), b"ping");
    let input = dir.path().join("in.pcap");
    pcap::write(&input, &[frame]).unwrap();
    let stats_json = dir.path().join("stats.json");
    // Idle backoff on, as auto would have it with vdevs only.
    let args = run_args(
        [rx_pcap(&input) + ",infinite_rx=1", "net_null1,no-rx=1".into()],
        &["--metrics-addr", "off", "--watch-stream", "-", "--stats-json", arg(&stats_json)],
    );
    let mut app = Appliance::start(dir.path(), &args, Stdio::piped());
    let mut feed = app.child.stdin.take().unwrap();

    // Traffic first (decided under generation 1: nothing policed), then the cluster.
    app.wait_for("traffic", |a| counter(&a.stats(), "pipeline.rx") > 0, dir.path());
    let ns = serde_json::json!({ "apiVersion": "v1", "kind": "Namespace",
        "metadata": { "name": "dev", "labels": { "kubernetes.io/metadata.name": "dev" } } });
    let initial = [event("ADDED", ns), event("ADDED", pod("client", "10.47.0.11")), event("ADDED", pod("web", "10.47.0.13")), event("ADDED", web_policy(true))];
    feed.write_all(initial.concat().as_bytes()).unwrap();
    feed.flush().unwrap();
    app.wait_for(
        "the allow policy on the flow",
        |a| {
            let f = the_flow(a);
            f["action"] == "F" && f["rules"].as_array().is_some_and(|r| !r.is_empty())
        },
        dir.path(),
    );
    let start = app.stats();
    let (applied0, redecided0, revoked0) =
        (counter(&start, "policy.applied"), counter(&start, "pipeline.flow_redecided"), counter(&start, "pipeline.flow_revoked"));
    let allow_rules = the_flow(&app)["rules"].clone();
    assert_ne!(allow_rules, serde_json::json!(["dev-ingress-default-deny"]));

    for k in 1..=SWAPS {
        let allow = k % 2 == 0;
        feed.write_all(event("MODIFIED", web_policy(allow)).as_bytes()).unwrap();
        feed.flush().unwrap();
        app.wait_for("the swap to be published", |a| counter(&a.stats(), "policy.applied") == applied0 + k, dir.path());
        let generation = counter(&app.stats(), "policy.generation");
        // The flow's next packet re-decides it under the new generation.
        app.wait_for("the flow to be re-decided", |a| the_flow(a)["generation"].as_u64() == Some(generation), dir.path());
        let f = the_flow(&app);
        if allow {
            assert_eq!((&f["action"], &f["rules"]), (&serde_json::json!("F"), &allow_rules), "swap {k}, generation {generation}");
        } else {
            assert_eq!(
                (&f["action"], &f["rules"]),
                (&serde_json::json!("D(FwPolicy)"), &serde_json::json!(["dev-ingress-default-deny"])),
                "swap {k}, generation {generation}"
            );
        }
    }
    let end = app.stats();
    assert_eq!(counter(&end, "policy.rejected"), 0);
    // One re-decision per swap, and one revocation per allow → deny swap.
    assert_eq!(counter(&end, "pipeline.flow_redecided") - redecided0, SWAPS);
    assert_eq!(counter(&end, "pipeline.flow_revoked") - revoked0, SWAPS / 2);
    assert!(counter(&end, "policy_drops.dev-ingress-default-deny") > 0, "{end}");

    drop(feed);
    app.stop(dir.path());
    let stats: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats_json).unwrap()).unwrap();
    let received = stats["ports"][0]["rx"].as_u64().unwrap();
    let transmitted = stats["ports"][1]["tx"].as_u64().unwrap();
    let p = &stats["pipeline"];
    let policy_drops = p["drop_policy"].as_u64().unwrap();
    assert!(policy_drops > 0 && transmitted > 0, "{stats}");
    assert_eq!(received, transmitted + policy_drops, "{stats}");
    assert_eq!(p["rx"].as_u64(), Some(received), "{stats}");
    assert_eq!(p["forwarded"].as_u64(), Some(transmitted), "{stats}");
    for other in ["drop_malformed", "drop_no_flow", "drop_fragment", "stateless_decisions"] {
        assert_eq!(p[other].as_u64(), Some(0), "{other}: {stats}");
    }
    assert_eq!(stats["ports"][1]["drops"].as_u64(), Some(0), "{stats}");
}
