//! `palisade rules`: the CN2 translation of NetworkPolicies. The CN2 documentation's
//! own example (examples/cn2) must give exactly its tables, row by row (the document
//! redacts "172.17" as "17x.xx" in its rules table; its firewall-policy table shows the
//! real prefix), and other policy shapes must get unique, predictable names.

use control::cn2::{tables, Cn2Tables};
use control::load::load_str;
use control::render::rules::rules_tables;
use control::validate::load_valid;
use std::path::Path;

fn rows(t: &Cn2Tables) -> Vec<Vec<Vec<String>>> {
    rules_tables(t).into_iter().map(|table| table.rows).collect()
}

fn strs(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter().map(|r| r.iter().map(|c| c.to_string()).collect()).collect()
}

#[test]
fn cn2_document_example_matches_its_tables_row_by_row() {
    let cluster = load_valid(Path::new("examples/cn2")).unwrap();
    let t = rows(&tables(&cluster));
    assert_eq!(
        t[0],
        strs(&[&["role", "db"], &["namespace", "default"], &["project", "myproject"], &["role", "frontend"]]),
        "Tags"
    );
    assert_eq!(
        t[1],
        strs(&[
            &["test-network-policy-except", "172.17.1.0/24"],
            &["test-network-policy", "172.17.0.0/16"],
            &["test-network-policy-egress", "10.0.0.0/24"],
        ]),
        "Address Groups"
    );
    let ep1 = "role=db && namespace=default";
    assert_eq!(
        t[2],
        strs(&[
            &["default-ingress-test-network-policy-0-ipBlock-0-172.17.1.0/24-0", "deny", "tcp:6379", ep1, "ingress", "Address Group: 172.17.1.0/24"],
            &["default-ingress-test-network-policy-0-ipBlock-0-cidr-172.17.0.0/16-0", "pass", "tcp:6379", ep1, "ingress", "Address Group: 172.17.0.0/16"],
            &["default-ingress-test-network-policy-0-namespaceSelector-1-0", "pass", "tcp:6379", ep1, "ingress", "project=myproject"],
            &["default-ingress-test-network-policy-0-podSelector-2-0", "pass", "tcp:6379", ep1, "ingress", "namespace=default && role=frontend"],
            &["default-egress-test-network-policy-ipBlock-0-cidr-10.0.0.0/24-0", "pass", "tcp:5978", ep1, "egress", "Address Group: 10.0.0.0/24"],
        ]),
        "Firewall Rules"
    );
    assert_eq!(
        t[3],
        strs(&[&[
            "default-test-network-policy",
            "default-ingress-test-network-policy-0-ipBlock-0-172.17.1.0/24-0, \
             default-ingress-test-network-policy-0-ipBlock-0-cidr-172.17.0.0/16-0, \
             default-ingress-test-network-policy-0-namespaceSelector-1-0, \
             default-ingress-test-network-policy-0-podSelector-2-0, \
             default-egress-test-network-policy-ipBlock-0-cidr-10.0.0.0/24-0",
        ]]),
        "Firewall Policy"
    );
    assert_eq!(
        t[4],
        strs(&[
            &["default-ingress-default-deny", "deny", "any", ep1, "ingress", "any"],
            &["default-egress-default-deny", "deny", "any", ep1, "egress", "any"],
        ]),
        "Default Deny"
    );
}

#[test]
fn contrail_lab_policies() {
    let cluster = load_valid(Path::new("examples/policies")).unwrap();
    let t = tables(&cluster);
    let names: Vec<_> = t.rules.iter().map(|r| (r.name.as_str(), r.action, r.service.as_str(), r.endpoint2.as_str())).collect();
    assert_eq!(
        names,
        [
            ("dev-ingress-policy1-0-ipBlock-0-cidr-10.169.25.20/32-0", "pass", "tcp:80", "Address Group: 10.169.25.20/32"),
            ("dev-ingress-policy1-0-namespaceSelector-1-0", "pass", "tcp:80", "project=jtac"),
            ("dev-ingress-policy1-0-podSelector-2-0", "pass", "tcp:80", "namespace=dev && app=client1-dev"),
            ("dev-egress-policy1-podSelector-0-0", "pass", "tcp:80", "namespace=dev && app=dbserver-dev"),
            ("dev-ingress-policy2-0-podSelector-0-0", "pass", "tcp:80", "namespace=dev && app=webserver-dev"),
        ]
    );
    let isolation: Vec<_> = t.isolation.iter().map(|r| (r.name.as_str(), r.endpoint1.as_str())).collect();
    assert_eq!(
        isolation,
        [
            ("dev-ingress-default-deny", "app=webserver-dev && namespace=dev || app=dbserver-dev && namespace=dev"),
            ("dev-egress-default-deny", "app=webserver-dev && namespace=dev || app=dbserver-dev && namespace=dev"),
        ]
    );
    assert_eq!(t.policies.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["dev-policy1", "dev-policy2"]);
}

/// Shapes the CN2 document does not show: several rules per direction, any peer, no
/// ports, ranges, named ports, both selectors in one peer, expressions, ignored
/// directions, several ipBlocks.
#[test]
fn other_shapes_get_unique_names() {
    let text = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: ns}\nspec:
  podSelector:
    matchExpressions:
    - {key: tier, operator: In, values: [web, api]}
    - {key: canary, operator: DoesNotExist}
  egress:
  - {}
  - to:
    - namespaceSelector: {matchLabels: {team: a}}
      podSelector: {matchLabels: {app: db}}
    - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16, 10.2.0.0/16]}
    - ipBlock: {cidr: 192.168.0.0/16}
    ports:
    - {protocol: UDP, port: 53, endPort: 60}
    - {port: dns-tcp}
    - {protocol: SCTP}
---
apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: q, namespace: ns}\nspec:
  podSelector: {}
  policyTypes: [Egress]
  ingress:
  - {}
";
    let cluster = load_str(text, Path::new("shapes.yaml")).unwrap();
    control::validate::validate(&cluster).unwrap();
    let t = tables(&cluster);
    let ep1 = "tier in (web, api) && !canary && namespace=ns";
    let rules: Vec<_> = t
        .rules
        .iter()
        .map(|r| format!("{} | {} | {} | {} | {} | {}", r.name, r.action, r.service, r.endpoint1, r.direction, r.endpoint2))
        .collect();
    let want = [
        format!("ns-egress-p-any-0-0 | pass | any | {ep1} | egress | any"),
        format!("ns-egress-p-1-namespaceSelector-podSelector-0-0 | pass | udp:53-60 | {ep1} | egress | team=a && app=db"),
        format!("ns-egress-p-1-namespaceSelector-podSelector-0-1 | pass | tcp:dns-tcp | {ep1} | egress | team=a && app=db"),
        format!("ns-egress-p-1-namespaceSelector-podSelector-0-2 | pass | sctp:any | {ep1} | egress | team=a && app=db"),
        format!("ns-egress-p-1-ipBlock-1-10.1.0.0/16-0 | deny | udp:53-60 | {ep1} | egress | Address Group: 10.1.0.0/16"),
        format!("ns-egress-p-1-ipBlock-1-10.1.0.0/16-1 | deny | tcp:dns-tcp | {ep1} | egress | Address Group: 10.1.0.0/16"),
        format!("ns-egress-p-1-ipBlock-1-10.1.0.0/16-2 | deny | sctp:any | {ep1} | egress | Address Group: 10.1.0.0/16"),
        format!("ns-egress-p-1-ipBlock-1-10.2.0.0/16-0 | deny | udp:53-60 | {ep1} | egress | Address Group: 10.2.0.0/16"),
        format!("ns-egress-p-1-ipBlock-1-10.2.0.0/16-1 | deny | tcp:dns-tcp | {ep1} | egress | Address Group: 10.2.0.0/16"),
        format!("ns-egress-p-1-ipBlock-1-10.2.0.0/16-2 | deny | sctp:any | {ep1} | egress | Address Group: 10.2.0.0/16"),
        format!("ns-egress-p-1-ipBlock-1-cidr-10.0.0.0/8-0 | pass | udp:53-60 | {ep1} | egress | Address Group: 10.0.0.0/8"),
        format!("ns-egress-p-1-ipBlock-1-cidr-10.0.0.0/8-1 | pass | tcp:dns-tcp | {ep1} | egress | Address Group: 10.0.0.0/8"),
        format!("ns-egress-p-1-ipBlock-1-cidr-10.0.0.0/8-2 | pass | sctp:any | {ep1} | egress | Address Group: 10.0.0.0/8"),
        format!("ns-egress-p-1-ipBlock-2-cidr-192.168.0.0/16-0 | pass | udp:53-60 | {ep1} | egress | Address Group: 192.168.0.0/16"),
        format!("ns-egress-p-1-ipBlock-2-cidr-192.168.0.0/16-1 | pass | tcp:dns-tcp | {ep1} | egress | Address Group: 192.168.0.0/16"),
        format!("ns-egress-p-1-ipBlock-2-cidr-192.168.0.0/16-2 | pass | sctp:any | {ep1} | egress | Address Group: 192.168.0.0/16"),
    ];
    assert_eq!(rules, want);
    let mut unique = t.rules.iter().map(|r| &r.name).collect::<Vec<_>>();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), t.rules.len(), "rule names are unique");
    let groups: Vec<_> = t.address_groups.iter().map(|g| (g.name.as_str(), g.prefix.as_str())).collect();
    assert_eq!(
        groups,
        [
            ("p-egress-except", "10.1.0.0/16"),
            ("p-egress-except-1", "10.2.0.0/16"),
            ("p-egress", "10.0.0.0/8"),
            ("p-egress-1", "192.168.0.0/16"),
        ]
    );
    let tags: Vec<_> = t.tags.iter().map(|g| format!("{}={}", g.key, g.value)).collect();
    assert_eq!(tags, ["tier=web", "tier=api", "namespace=ns", "team=a", "app=db"]);
    // q lists only Egress: its ingress rule has no effect and is not translated; it
    // has no egress rules, so it only isolates.
    assert_eq!(t.policies[1].name, "ns-q");
    assert!(t.policies[1].rules.is_empty());
    let isolation: Vec<_> = t.isolation.iter().map(|r| (r.name.as_str(), r.endpoint1.as_str())).collect();
    assert_eq!(
        isolation,
        [("ns-ingress-default-deny", ep1), ("ns-egress-default-deny", "tier in (web, api) && !canary && namespace=ns || namespace=ns")]
    );
}

/// The command itself prints the document's rules table, aligned.
#[test]
fn palisade_rules_command_prints_the_tables() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["rules", "--manifests", "examples/cn2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let titles: Vec<&str> = stdout.split("\n\n").map(|t| t.lines().next().unwrap_or("")).collect();
    assert_eq!(
        titles,
        ["Tags", "Address Groups", "Firewall Rules", "Firewall Policy", "Default Deny (pods isolated by a policy; not in CN2's tables)"]
    );
    assert!(stdout.contains(
        "Firewall Rules\n\
         Rule Name                                                            | Action | Service  | Endpoint1                    | Direction | Endpoint2\n\
         ---------------------------------------------------------------------+--------+----------+------------------------------+-----------+-----------------------------------\n\
         default-ingress-test-network-policy-0-ipBlock-0-172.17.1.0/24-0      | deny   | tcp:6379 | role=db && namespace=default | ingress   | Address Group: 172.17.1.0/24\n\
         default-ingress-test-network-policy-0-ipBlock-0-cidr-172.17.0.0/16-0 | pass   | tcp:6379 | role=db && namespace=default | ingress   | Address Group: 172.17.0.0/16\n\
         default-ingress-test-network-policy-0-namespaceSelector-1-0          | pass   | tcp:6379 | role=db && namespace=default | ingress   | project=myproject\n\
         default-ingress-test-network-policy-0-podSelector-2-0                | pass   | tcp:6379 | role=db && namespace=default | ingress   | namespace=default && role=frontend\n\
         default-egress-test-network-policy-ipBlock-0-cidr-10.0.0.0/24-0      | pass   | tcp:5978 | role=db && namespace=default | egress    | Address Group: 10.0.0.0/24\n"
    ), "{stdout}");
}
