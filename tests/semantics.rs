//! Table-driven tests of every line of DESIGN.md "Semantics to get exactly right":
//! each case adds policies to one fixed cluster and checks probes end to end through
//! load → model → compile → `probes::run` (the `palisade verdicts` path, which calls the
//! snapshot's `classify`), asserting the exact verdict and deciding rule names.

use control::model::Model;
use std::path::Path;

/// The fixed cluster: namespaces prod {team: a, env: prod}, dev {team: b}, other {}
/// and the undeclared `ghost`; nodes node1 (192.168.1.1, fd00:ff::1) and node2.
const CLUSTER: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: prod, labels: {team: a, env: prod}}
---
apiVersion: v1
kind: Namespace
metadata: {name: dev, labels: {team: b}}
---
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: v1
kind: Node
metadata: {name: node1}
status: {addresses: [{type: InternalIP, address: 192.168.1.1}, {type: InternalIP, address: "fd00:ff::1"}, {type: Hostname, address: node1}]}
---
apiVersion: v1
kind: Node
metadata: {name: node2}
status: {addresses: [{type: InternalIP, address: 192.168.1.2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: prod, labels: {app: web, tier: front}}
spec:
  nodeName: node1
  containers:
  - name: c
    ports:
    - {name: http, containerPort: 8080}
    - {name: metrics, containerPort: 9090}
    - {name: dns, containerPort: 5353, protocol: UDP}
status: {podIP: 10.0.1.1, podIPs: [{ip: 10.0.1.1}, {ip: "fd00::101"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: prod, labels: {app: db}}
spec:
  nodeName: node2
  containers:
  - name: c
    ports:
    - {name: http, containerPort: 8081}
    - {name: sql, containerPort: 5432}
    - {name: assoc, containerPort: 7777, protocol: SCTP}
status: {podIPs: [{ip: 10.0.1.2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: cache, namespace: prod, labels: {app: cache, tier: back}}
spec: {nodeName: node2, containers: [{name: c}]}
status: {podIPs: [{ip: 10.0.1.3}]}
---
apiVersion: v1
kind: Pod
metadata: {name: host, namespace: prod, labels: {app: web}}
spec: {nodeName: node1, hostNetwork: true, containers: [{name: c}]}
status: {podIP: 192.168.1.1, podIPs: [{ip: 192.168.1.1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: pending, namespace: prod, labels: {app: web}}
spec: {containers: [{name: c}]}
---
apiVersion: v1
kind: Pod
metadata: {name: legacy, namespace: prod, labels: {app: legacy}}
spec: {containers: [{name: c}]}
status: {podIP: 10.0.1.4}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: dev, labels: {app: client}}
spec: {nodeName: node1, containers: [{name: c}]}
status: {podIPs: [{ip: 10.0.2.1}, {ip: "fd00::201"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: tool, namespace: dev, labels: {app: tool, role: admin}}
spec: {containers: [{name: c}]}
status: {podIPs: [{ip: 10.0.2.2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: stranger, namespace: other, labels: {app: client}}
spec: {containers: [{name: c}]}
status: {podIPs: [{ip: 10.0.3.1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: g, namespace: ghost, labels: {app: g}}
spec: {containers: [{name: c}]}
status: {podIPs: [{ip: 10.0.4.1}]}
"#;

/// (src, dst, "tcp/80" | "udp/53" | "sctp/7777" | "icmp", "allow" | "deny", rules)
type Probe = (&'static str, &'static str, &'static str, &'static str, &'static [&'static str]);

struct Case {
    name: &'static str,
    policies: &'static str,
    probes: &'static [Probe],
}

const DENY_IN: &str = "prod-ingress-default-deny";
const DENY_EG: &str = "prod-egress-default-deny";

fn np(ns: &str, name: &str, spec: &str) -> String {
    format!("---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}\n")
}

/// Run the probes of one case; returns one message per mismatch.
fn run_case(case: &Case) -> Vec<String> {
    let text = format!("{CLUSTER}{}", case.policies);
    let cluster = control::load::load_str(&text, Path::new("semantics.yaml")).expect("case loads");
    let model = Model::resolve(&cluster).expect("case resolves");
    let snapshot = control::compile::compile(&model, 1);
    let mut failures = Vec::new();
    for (src, dst, traffic, want, want_rules) in case.probes {
        let (proto, port) = traffic.split_once('/').map(|(p, n)| (p, Some(n))).unwrap_or((traffic, None));
        let line = match port {
            Some(port) => format!(r#"{{"src":"{src}","dst":"{dst}","protocol":"{}","port":{port}}}"#, proto.to_uppercase()),
            None => format!(r#"{{"src":"{src}","dst":"{dst}","protocol":"{}"}}"#, proto.to_uppercase()),
        };
        let mut out = Vec::new();
        control::probes::run(&model, &snapshot, line.as_bytes(), &mut out).expect("probe runs");
        let answer: serde_json::Value = serde_json::from_slice(&out).expect("answer is JSON");
        let got = answer["verdict"].as_str().unwrap().to_string();
        let got_rules: Vec<String> =
            answer["rules"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect();
        if got != *want || got_rules != *want_rules {
            failures.push(format!(
                "[{}] {src} -> {dst} {traffic}: want {want} {want_rules:?}, got {got} {got_rules:?}",
                case.name
            ));
        }
    }
    failures
}

fn check(cases: &[Case]) {
    let failures: Vec<String> = cases.iter().flat_map(run_case).collect();
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

/// Leak a formatted policy text so case tables can stay `&'static`.
fn s(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

#[test]
fn no_policy_allows_everything_without_rules() {
    check(&[Case {
        name: "no policy",
        policies: "",
        probes: &[
            ("prod/web", "prod/db", "tcp/80", "allow", &[]),
            ("dev/client", "prod/db", "icmp", "allow", &[]),
            ("10.9.9.9", "prod/db", "udp/53", "allow", &[]),
        ],
    }]);
}

#[test]
fn isolation_is_per_direction_and_only_for_selected_pods() {
    check(&[Case {
        name: "ingress-only isolation",
        policies: s(np("prod", "p", "  podSelector: {matchLabels: {app: db}}\n  policyTypes: [Ingress]")),
        probes: &[
            ("dev/client", "prod/db", "tcp/5432", "deny", &[DENY_IN]),
            ("prod/web", "prod/db", "icmp", "deny", &[DENY_IN]),
            // db is not isolated for egress, and client is not isolated at all.
            ("prod/db", "dev/client", "tcp/80", "allow", &[]),
            // cache is not selected.
            ("prod/web", "prod/cache", "tcp/80", "allow", &[]),
        ],
    }]);
}

#[test]
fn policy_types_default() {
    check(&[
        Case {
            name: "missing policyTypes, no egress: Ingress only",
            policies: s(np("prod", "p", "  podSelector: {matchLabels: {app: db}}")),
            probes: &[
                ("dev/client", "prod/db", "tcp/5432", "deny", &[DENY_IN]),
                ("prod/db", "dev/client", "tcp/80", "allow", &[]),
            ],
        },
        Case {
            name: "missing policyTypes, egress: [] does not isolate egress",
            policies: s(np("prod", "p", "  podSelector: {matchLabels: {app: db}}\n  egress: []")),
            probes: &[
                ("dev/client", "prod/db", "tcp/5432", "deny", &[DENY_IN]),
                ("prod/db", "dev/client", "tcp/80", "allow", &[]),
            ],
        },
        Case {
            name: "missing policyTypes, egress: [{}] isolates egress (and allows all)",
            policies: s(np("prod", "p", "  podSelector: {matchLabels: {app: db}}\n  egress: [{}]")),
            probes: &[
                ("dev/client", "prod/db", "tcp/5432", "deny", &[DENY_IN]),
                ("prod/db", "dev/client", "tcp/80", "allow", &["prod-egress-p-any-0-0"]),
            ],
        },
        Case {
            name: "missing policyTypes, egress with a rule isolates egress to that rule",
            policies: s(np(
                "prod",
                "p",
                "  podSelector: {matchLabels: {app: db}}\n  egress: [{to: [{podSelector: {matchLabels: {app: cache}}}]}]",
            )),
            probes: &[
                ("prod/db", "prod/cache", "tcp/6379", "allow", &["prod-egress-p-podSelector-0-0"]),
                ("prod/db", "dev/client", "tcp/80", "deny", &[DENY_EG]),
                ("dev/client", "prod/db", "tcp/5432", "deny", &[DENY_IN]),
            ],
        },
        Case {
            name: "policyTypes: [] is defaulted like a missing one",
            policies: s(np("prod", "p", "  podSelector: {matchLabels: {app: db}}\n  policyTypes: []\n  egress: [{}]")),
            probes: &[
                ("dev/client", "prod/db", "tcp/5432", "deny", &[DENY_IN]),
                ("prod/db", "dev/client", "tcp/80", "allow", &["prod-egress-p-any-0-0"]),
            ],
        },
        Case {
            name: "explicit [Egress] ignores ingress rules",
            policies: s(np(
                "prod",
                "p",
                "  podSelector: {matchLabels: {app: db}}\n  policyTypes: [Egress]\n  ingress: [{}]",
            )),
            probes: &[
                ("dev/client", "prod/db", "tcp/5432", "allow", &[]),
                ("prod/db", "dev/client", "tcp/80", "deny", &[DENY_EG]),
            ],
        },
        Case {
            name: "explicit [Ingress] ignores egress rules",
            policies: s(np(
                "prod",
                "p",
                "  podSelector: {matchLabels: {app: db}}\n  policyTypes: [Ingress]\n  egress: [{to: [{podSelector: {}}]}]",
            )),
            probes: &[
                ("prod/db", "dev/client", "tcp/80", "allow", &[]),
                ("dev/client", "prod/db", "tcp/5432", "deny", &[DENY_IN]),
            ],
        },
    ]);
}

#[test]
fn policies_are_additive_and_first_rule_decides() {
    let policies = np(
        "prod",
        "a",
        "  podSelector: {matchLabels: {app: db}}\n  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 5432}]}]",
    ) + &np(
        "prod",
        "b",
        "  podSelector: {matchLabels: {app: db}}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {team: b}}}, {podSelector: {}}], ports: [{port: 5432}]}]",
    );
    check(&[Case {
        name: "union",
        policies: s(policies),
        probes: &[
            ("prod/web", "prod/db", "tcp/5432", "allow", &["prod-ingress-a-0-podSelector-0-0"]),
            ("dev/client", "prod/db", "tcp/5432", "allow", &["prod-ingress-b-0-namespaceSelector-0-0"]),
            ("prod/cache", "prod/db", "tcp/5432", "allow", &["prod-ingress-b-0-podSelector-1-0"]),
            ("other/stranger", "prod/db", "tcp/5432", "deny", &[DENY_IN]),
            ("prod/web", "prod/db", "tcp/5433", "deny", &[DENY_IN]),
        ],
    }]);
}

#[test]
fn connection_needs_source_egress_and_destination_ingress() {
    let policies = np(
        "prod",
        "web-out",
        "  podSelector: {matchLabels: {app: web}}\n  policyTypes: [Egress]\n  egress: [{to: [{podSelector: {matchLabels: {app: db}}}]}]",
    ) + &np(
        "prod",
        "db-in",
        "  podSelector: {matchLabels: {app: db}}\n  ingress: [{from: [{podSelector: {matchLabels: {app: cache}}}]}]",
    );
    check(&[Case {
        name: "egress and ingress",
        policies: s(policies),
        probes: &[
            ("prod/web", "prod/db", "tcp/5432", "deny", &["prod-egress-web-out-podSelector-0-0", DENY_IN]),
            ("prod/cache", "prod/db", "tcp/5432", "allow", &["prod-ingress-db-in-0-podSelector-0-0"]),
            ("prod/web", "prod/cache", "tcp/80", "deny", &[DENY_EG]),
            ("prod/web", "10.9.9.9", "tcp/80", "deny", &[DENY_EG]),
            // Both sides deny: both isolation rules are reported, egress first.
            ("prod/web", "prod/db", "tcp/5432", "deny", &["prod-egress-web-out-podSelector-0-0", DENY_IN]),
            ("dev/client", "prod/web", "tcp/80", "allow", &[]),
        ],
    }]);
}

#[test]
fn peers_pod_namespace_both_and_null() {
    let ingress = |from: &str| s(np("prod", "p", &format!("  podSelector: {{matchLabels: {{app: db}}}}\n  ingress: [{{from: {from}}}]")));
    check(&[
        Case {
            name: "podSelector is the policy's namespace only",
            policies: ingress("[{podSelector: {matchLabels: {app: client}}}]"),
            probes: &[
                ("dev/client", "prod/db", "tcp/1", "deny", &[DENY_IN]),
                ("other/stranger", "prod/db", "tcp/1", "deny", &[DENY_IN]),
            ],
        },
        Case {
            name: "namespaceSelector: all pods of matching namespaces",
            policies: ingress("[{namespaceSelector: {matchLabels: {team: b}}}]"),
            probes: &[
                ("dev/client", "prod/db", "tcp/1", "allow", &["prod-ingress-p-0-namespaceSelector-0-0"]),
                ("dev/tool", "prod/db", "udp/2", "allow", &["prod-ingress-p-0-namespaceSelector-0-0"]),
                ("other/stranger", "prod/db", "tcp/1", "deny", &[DENY_IN]),
                ("prod/web", "prod/db", "tcp/1", "deny", &[DENY_IN]),
            ],
        },
        Case {
            name: "both in one peer: AND",
            policies: ingress("[{namespaceSelector: {}, podSelector: {matchLabels: {app: client}}}]"),
            probes: &[
                ("dev/client", "prod/db", "tcp/1", "allow", &["prod-ingress-p-0-namespaceSelector-podSelector-0-0"]),
                ("other/stranger", "prod/db", "tcp/1", "allow", &["prod-ingress-p-0-namespaceSelector-podSelector-0-0"]),
                ("dev/tool", "prod/db", "tcp/1", "deny", &[DENY_IN]),
                ("prod/web", "prod/db", "tcp/1", "deny", &[DENY_IN]),
            ],
        },
        Case {
            name: "two peers: OR",
            policies: ingress("[{namespaceSelector: {matchLabels: {team: b}}}, {podSelector: {matchLabels: {app: web}}}]"),
            probes: &[
                ("dev/tool", "prod/db", "tcp/1", "allow", &["prod-ingress-p-0-namespaceSelector-0-0"]),
                ("prod/web", "prod/db", "tcp/1", "allow", &["prod-ingress-p-0-podSelector-1-0"]),
                ("other/stranger", "prod/db", "tcp/1", "deny", &[DENY_IN]),
            ],
        },
        Case {
            name: "a null podSelector in a peer is absent",
            policies: ingress("[{namespaceSelector: {matchLabels: {team: b}}, podSelector: null}]"),
            probes: &[
                ("dev/tool", "prod/db", "tcp/1", "allow", &["prod-ingress-p-0-namespaceSelector-0-0"]),
                ("prod/web", "prod/db", "tcp/1", "deny", &[DENY_IN]),
            ],
        },
    ]);
}

#[test]
fn empty_from_ports_and_rules() {
    let db = |rules: &str| s(np("prod", "p", &format!("  podSelector: {{matchLabels: {{app: db}}}}\n  policyTypes: [Ingress]\n  ingress: {rules}")));
    check(&[
        Case {
            name: "from missing: any peer",
            policies: db("[{ports: [{port: 5432}]}]"),
            probes: &[
                ("10.9.9.9", "prod/db", "tcp/5432", "allow", &["prod-ingress-p-0-any-0-0"]),
                ("dev/client", "prod/db", "tcp/5433", "deny", &[DENY_IN]),
            ],
        },
        Case {
            name: "from empty: any peer",
            policies: db("[{from: [], ports: [{port: 5432}]}]"),
            probes: &[("other/stranger", "prod/db", "tcp/5432", "allow", &["prod-ingress-p-0-any-0-0"])],
        },
        Case {
            name: "ports missing: any port and protocol, ICMP included",
            policies: db("[{from: [{podSelector: {matchLabels: {app: web}}}]}]"),
            probes: &[
                ("prod/web", "prod/db", "tcp/1", "allow", &["prod-ingress-p-0-podSelector-0-0"]),
                ("prod/web", "prod/db", "udp/65535", "allow", &["prod-ingress-p-0-podSelector-0-0"]),
                ("prod/web", "prod/db", "sctp/9", "allow", &["prod-ingress-p-0-podSelector-0-0"]),
                ("prod/web", "prod/db", "icmp", "allow", &["prod-ingress-p-0-podSelector-0-0"]),
            ],
        },
        Case {
            name: "ports empty: any port and protocol",
            policies: db("[{from: [{podSelector: {matchLabels: {app: web}}}], ports: []}]"),
            probes: &[("prod/web", "prod/db", "icmp", "allow", &["prod-ingress-p-0-podSelector-0-0"])],
        },
        Case {
            name: "empty rule allows everything",
            policies: db("[{}]"),
            probes: &[
                ("10.9.9.9", "prod/db", "icmp", "allow", &["prod-ingress-p-0-any-0-0"]),
                ("other/stranger", "prod/db", "udp/53", "allow", &["prod-ingress-p-0-any-0-0"]),
            ],
        },
        Case {
            name: "empty list of rules allows nothing",
            policies: db("[]"),
            probes: &[
                ("10.9.9.9", "prod/db", "icmp", "deny", &[DENY_IN]),
                ("prod/web", "prod/db", "tcp/5432", "deny", &[DENY_IN]),
            ],
        },
    ]);
}

#[test]
fn ports_protocols_ranges_and_named_ports() {
    let ingress = |sel: &str, ports: &str| {
        s(np("prod", "p", &format!("  podSelector: {sel}\n  ingress: [{{from: [{{namespaceSelector: {{}}}}], ports: {ports}}}]")))
    };
    check(&[
        Case {
            name: "TCP is the default protocol",
            policies: ingress("{matchLabels: {app: db}}", "[{port: 80}]"),
            probes: &[
                ("dev/client", "prod/db", "tcp/80", "allow", &["prod-ingress-p-0-namespaceSelector-0-0"]),
                ("dev/client", "prod/db", "udp/80", "deny", &[DENY_IN]),
                ("dev/client", "prod/db", "sctp/80", "deny", &[DENY_IN]),
                ("dev/client", "prod/db", "icmp", "deny", &[DENY_IN]),
            ],
        },
        Case {
            name: "UDP and SCTP, port index in the name",
            policies: ingress("{matchLabels: {app: db}}", "[{protocol: UDP, port: 53}, {protocol: SCTP, port: 7777}]"),
            probes: &[
                ("dev/client", "prod/db", "udp/53", "allow", &["prod-ingress-p-0-namespaceSelector-0-0"]),
                ("dev/client", "prod/db", "sctp/7777", "allow", &["prod-ingress-p-0-namespaceSelector-0-1"]),
                ("dev/client", "prod/db", "tcp/53", "deny", &[DENY_IN]),
                ("dev/client", "prod/db", "udp/7777", "deny", &[DENY_IN]),
            ],
        },
        Case {
            name: "endPort makes an inclusive range",
            policies: ingress("{matchLabels: {app: db}}", "[{port: 8000, endPort: 8100}]"),
            probes: &[
                ("dev/client", "prod/db", "tcp/7999", "deny", &[DENY_IN]),
                ("dev/client", "prod/db", "tcp/8000", "allow", &["prod-ingress-p-0-namespaceSelector-0-0"]),
                ("dev/client", "prod/db", "tcp/8100", "allow", &["prod-ingress-p-0-namespaceSelector-0-0"]),
                ("dev/client", "prod/db", "tcp/8101", "deny", &[DENY_IN]),
            ],
        },
        Case {
            name: "protocol-only rule: every port of that protocol, never ICMP",
            policies: ingress("{matchLabels: {app: db}}", "[{protocol: UDP}]"),
            probes: &[
                ("dev/client", "prod/db", "udp/1", "allow", &["prod-ingress-p-0-namespaceSelector-0-0"]),
                ("dev/client", "prod/db", "udp/65535", "allow", &["prod-ingress-p-0-namespaceSelector-0-0"]),
                ("dev/client", "prod/db", "tcp/1", "deny", &[DENY_IN]),
                ("dev/client", "prod/db", "icmp", "deny", &[DENY_IN]),
            ],
        },
        Case {
            name: "ingress named port resolves per destination pod",
            policies: ingress("{matchExpressions: [{key: app, operator: In, values: [web, db, cache]}]}", "[{port: http}]"),
            probes: &[
                ("dev/client", "prod/web", "tcp/8080", "allow", &["prod-ingress-p-0-namespaceSelector-0-0"]),
                ("dev/client", "prod/web", "tcp/8081", "deny", &[DENY_IN]),
                ("dev/client", "prod/db", "tcp/8081", "allow", &["prod-ingress-p-0-namespaceSelector-0-0"]),
                ("dev/client", "prod/db", "tcp/8080", "deny", &[DENY_IN]),
                // cache has no port named http: nothing matches.
                ("dev/client", "prod/cache", "tcp/8080", "deny", &[DENY_IN]),
                ("dev/client", "prod/web", "icmp", "deny", &[DENY_IN]),
            ],
        },
        Case {
            name: "named port must match the protocol too",
            policies: ingress("{matchLabels: {app: web}}", "[{port: dns}, {protocol: UDP, port: dns}]"),
            probes: &[
                ("dev/client", "prod/web", "tcp/5353", "deny", &[DENY_IN]),
                ("dev/client", "prod/web", "udp/5353", "allow", &["prod-ingress-p-0-namespaceSelector-0-1"]),
            ],
        },
        Case {
            name: "egress named port resolves per destination pod",
            policies: s(np(
                "prod",
                "p",
                "  podSelector: {matchLabels: {app: web}}\n  policyTypes: [Egress]\n  egress:\n  - to: [{podSelector: {}}]\n    ports: [{port: http}]\n  - to: [{ipBlock: {cidr: 10.0.0.0/8}}]\n    ports: [{port: sql}, {protocol: SCTP, port: assoc}]",
            )),
            probes: &[
                ("prod/web", "prod/db", "tcp/8081", "allow", &["prod-egress-p-podSelector-0-0"]),
                ("prod/web", "prod/db", "tcp/8080", "deny", &[DENY_EG]),
                ("prod/web", "prod/cache", "tcp/8081", "deny", &[DENY_EG]),
                ("prod/web", "prod/db", "tcp/5432", "allow", &["prod-egress-p-1-ipBlock-0-cidr-10.0.0.0/8-0"]),
                ("prod/web", "prod/db", "sctp/7777", "allow", &["prod-egress-p-1-ipBlock-0-cidr-10.0.0.0/8-1"]),
                // 10.9.9.9 is no pod: a named port cannot match it.
                ("prod/web", "10.9.9.9", "tcp/5432", "deny", &[DENY_EG]),
            ],
        },
    ]);
}

#[test]
fn selectors_expressions_and_namespace_name_label() {
    let ingress_from = |from: &str| s(np("prod", "p", &format!("  podSelector: {{matchLabels: {{app: db}}}}\n  ingress: [{{from: [{from}]}}]")));
    let selecting = |sel: &str| s(np("prod", "p", &format!("  podSelector: {sel}\n  policyTypes: [Ingress]")));
    check(&[
        Case {
            name: "In",
            policies: selecting("{matchExpressions: [{key: app, operator: In, values: [web, cache]}]}"),
            probes: &[
                ("dev/client", "prod/web", "tcp/1", "deny", &[DENY_IN]),
                ("dev/client", "prod/cache", "tcp/1", "deny", &[DENY_IN]),
                ("dev/client", "prod/db", "tcp/1", "allow", &[]),
            ],
        },
        Case {
            name: "NotIn matches pods without the key",
            policies: selecting("{matchExpressions: [{key: tier, operator: NotIn, values: [front]}]}"),
            probes: &[
                ("dev/client", "prod/web", "tcp/1", "allow", &[]),
                ("dev/client", "prod/db", "tcp/1", "deny", &[DENY_IN]),
                ("dev/client", "prod/cache", "tcp/1", "deny", &[DENY_IN]),
            ],
        },
        Case {
            name: "Exists",
            policies: selecting("{matchExpressions: [{key: tier, operator: Exists}]}"),
            probes: &[
                ("dev/client", "prod/web", "tcp/1", "deny", &[DENY_IN]),
                ("dev/client", "prod/cache", "tcp/1", "deny", &[DENY_IN]),
                ("dev/client", "prod/db", "tcp/1", "allow", &[]),
            ],
        },
        Case {
            name: "DoesNotExist and matchLabels together",
            policies: selecting("{matchLabels: {app: legacy}, matchExpressions: [{key: tier, operator: DoesNotExist}]}"),
            probes: &[
                ("dev/client", "prod/legacy", "tcp/1", "deny", &[DENY_IN]),
                ("dev/client", "prod/db", "tcp/1", "allow", &[]),
            ],
        },
        Case {
            name: "empty podSelector selects every pod of the namespace",
            policies: selecting("{}"),
            probes: &[
                ("dev/client", "prod/web", "tcp/1", "deny", &[DENY_IN]),
                ("dev/client", "prod/legacy", "tcp/1", "deny", &[DENY_IN]),
                ("prod/web", "dev/client", "tcp/1", "allow", &[]),
            ],
        },
        Case {
            name: "namespaces carry kubernetes.io/metadata.name, synthesised ones too",
            policies: ingress_from(
                "{namespaceSelector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: In, values: [dev, ghost]}]}}",
            ),
            probes: &[
                ("dev/tool", "prod/db", "tcp/1", "allow", &["prod-ingress-p-0-namespaceSelector-0-0"]),
                ("ghost/g", "prod/db", "tcp/1", "allow", &["prod-ingress-p-0-namespaceSelector-0-0"]),
                ("other/stranger", "prod/db", "tcp/1", "deny", &[DENY_IN]),
            ],
        },
        Case {
            name: "namespace matchExpressions NotIn",
            policies: ingress_from("{namespaceSelector: {matchExpressions: [{key: team, operator: NotIn, values: [a]}]}}"),
            probes: &[
                ("dev/tool", "prod/db", "tcp/1", "allow", &["prod-ingress-p-0-namespaceSelector-0-0"]),
                ("other/stranger", "prod/db", "tcp/1", "allow", &["prod-ingress-p-0-namespaceSelector-0-0"]),
                ("prod/web", "prod/db", "tcp/1", "deny", &[DENY_IN]),
            ],
        },
    ]);
}

#[test]
fn ipv4_ipv6_and_pod_addresses() {
    let web_from = |from: &str| s(np("prod", "p", &format!("  podSelector: {{matchLabels: {{app: web}}}}\n  ingress: [{{from: [{from}]}}]")));
    check(&[
        Case {
            name: "a v4 block never matches v6",
            policies: web_from("{ipBlock: {cidr: 0.0.0.0/0}}"),
            probes: &[
                ("dev/client", "prod/web", "tcp/80", "allow", &["prod-ingress-p-0-ipBlock-0-cidr-0.0.0.0/0-0"]),
                ("fd00::201", "prod/web", "tcp/80", "deny", &[DENY_IN]),
                ("2001:db8::1", "fd00::101", "tcp/80", "deny", &[DENY_IN]),
            ],
        },
        Case {
            name: "a v6 block",
            policies: web_from("{ipBlock: {cidr: \"fd00::/64\", except: [\"fd00::200/120\"]}}"),
            probes: &[
                ("fd00::201", "prod/web", "tcp/80", "deny", &[DENY_IN]),
                ("fd00::301", "prod/web", "tcp/80", "allow", &["prod-ingress-p-0-ipBlock-0-cidr-fd00::/64-0"]),
                ("dev/client", "prod/web", "tcp/80", "deny", &[DENY_IN]),
            ],
        },
        Case {
            name: "pod selectors cover both families of a pod",
            policies: web_from("{namespaceSelector: {matchLabels: {team: b}}}"),
            probes: &[
                ("fd00::201", "fd00::101", "tcp/80", "allow", &["prod-ingress-p-0-namespaceSelector-0-0"]),
                ("dev/client", "prod/web", "tcp/80", "allow", &["prod-ingress-p-0-namespaceSelector-0-0"]),
                ("2001:db8::1", "prod/web", "tcp/80", "deny", &[DENY_IN]),
            ],
        },
        Case {
            name: "status.podIP is used when podIPs is missing",
            policies: s(np("prod", "p", "  podSelector: {matchLabels: {app: legacy}}\n  policyTypes: [Ingress]")),
            probes: &[("dev/client", "10.0.1.4", "tcp/80", "deny", &[DENY_IN])],
        },
    ]);
}

#[test]
fn host_network_and_ipless_pods_are_not_endpoints() {
    check(&[Case {
        name: "hostNetwork",
        policies: s(np("prod", "p", "  podSelector: {matchLabels: {app: db}}\n  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}]}]")
            + &np("prod", "q", "  podSelector: {matchLabels: {app: web}}\n  policyTypes: [Ingress, Egress]")),
        probes: &[
            // The hostNetwork pod labelled app=web (192.168.1.1 = node1) is not a peer of
            // app=web; db runs on node2, so node1 is just another address.
            ("192.168.1.1", "prod/db", "tcp/1", "deny", &[DENY_IN]),
            ("prod/web", "prod/db", "tcp/1", "deny", &[DENY_EG, "prod-ingress-p-0-podSelector-0-0"]),
            // Traffic to the hostNetwork pod's address is not ours to police.
            ("10.9.9.9", "192.168.1.1", "tcp/1", "allow", &[]),
        ],
    }]);
}

#[test]
fn own_node_and_self_are_always_allowed() {
    check(&[Case {
        name: "deny all on web",
        policies: s(np("prod", "p", "  podSelector: {}\n  policyTypes: [Ingress, Egress]")),
        probes: &[
            ("192.168.1.1", "prod/web", "tcp/80", "allow", &[]),
            ("fd00:ff::1", "fd00::101", "tcp/80", "allow", &[]),
            ("prod/web", "192.168.1.1", "udp/53", "allow", &[]),
            ("192.168.1.2", "prod/web", "tcp/80", "deny", &[DENY_IN]),
            ("192.168.1.2", "prod/db", "tcp/80", "allow", &[]),
            ("prod/web", "prod/web", "tcp/80", "allow", &[]),
            ("prod/web", "prod/db", "tcp/80", "deny", &[DENY_EG, DENY_IN]),
        ],
    }]);
}

#[test]
fn ip_blocks_except_pods_and_non_canonical_cidrs() {
    let db_from = |from: &str| s(np("prod", "p", &format!("  podSelector: {{matchLabels: {{app: db}}}}\n  ingress: [{{from: [{from}]}}]")));
    check(&[
        Case {
            name: "cidr minus except, pod addresses included",
            policies: db_from("{ipBlock: {cidr: 10.0.2.0/24, except: [10.0.2.2/32]}}"),
            probes: &[
                ("dev/client", "prod/db", "tcp/1", "allow", &["prod-ingress-p-0-ipBlock-0-cidr-10.0.2.0/24-0"]),
                ("dev/tool", "prod/db", "tcp/1", "deny", &[DENY_IN]),
                ("10.0.2.200", "prod/db", "tcp/1", "allow", &["prod-ingress-p-0-ipBlock-0-cidr-10.0.2.0/24-0"]),
                ("10.0.3.1", "prod/db", "tcp/1", "deny", &[DENY_IN]),
            ],
        },
        Case {
            name: "non-canonical cidr means its network",
            policies: db_from("{ipBlock: {cidr: 10.0.2.99/24}}"),
            probes: &[
                ("10.0.2.0", "prod/db", "tcp/1", "allow", &["prod-ingress-p-0-ipBlock-0-cidr-10.0.2.99/24-0"]),
                ("10.0.2.255", "prod/db", "tcp/1", "allow", &["prod-ingress-p-0-ipBlock-0-cidr-10.0.2.99/24-0"]),
                ("10.0.3.0", "prod/db", "tcp/1", "deny", &[DENY_IN]),
            ],
        },
    ]);
}

#[test]
fn traffic_between_non_pods_is_not_policed() {
    check(&[Case {
        name: "deny all everywhere",
        policies: s(np("prod", "p", "  podSelector: {}\n  policyTypes: [Ingress, Egress]")
            + &np("dev", "p", "  podSelector: {}\n  policyTypes: [Ingress, Egress]")),
        probes: &[
            ("10.9.9.9", "172.16.0.5", "tcp/80", "allow", &[]),
            ("2001:db8::1", "2001:db8::2", "icmp", "allow", &[]),
            ("192.168.1.1", "192.168.1.2", "tcp/22", "allow", &[]),
            ("dev/client", "10.9.9.9", "tcp/80", "deny", &["dev-egress-default-deny"]),
        ],
    }]);
}

#[test]
fn probe_errors_name_the_line() {
    let cluster = control::load::load_str(CLUSTER, Path::new("semantics.yaml")).unwrap();
    let model = Model::resolve(&cluster).unwrap();
    let snapshot = control::compile::compile(&model, 1);
    let cases = [
        ("{\"src\":\"prod/web\",\"dst\":\"prod/nope\",\"port\":1}", "probes line 2: unknown pod \"prod/nope\""),
        ("not json", "probes line 2: not a JSON object"),
        ("{\"src\":\"prod/web\",\"dst\":\"prod/db\"}", "probes line 2: \"port\" is missing"),
        ("{\"src\":\"prod/web\",\"dst\":\"prod/db\",\"protocol\":\"GRE\",\"port\":1}", "probes line 2: \"protocol\" \"GRE\" is not"),
        ("{\"src\":\"prod/host\",\"dst\":\"prod/db\",\"port\":1}", "probes line 2: pod prod/host has no address of its own (it uses hostNetwork)"),
        ("{\"src\":\"prod/db\",\"dst\":\"fd00::1\",\"port\":1}", "probes line 2: pod prod/db has no IPv6 address"),
        ("{\"src\":\"prod/web\",\"dst\":\"prod/db\",\"protocol\":\"ICMP\",\"port\":1}", "probes line 2: \"port\" must be absent for ICMP"),
    ];
    for (bad, want) in cases {
        let input = format!("{{\"src\":\"prod/web\",\"dst\":\"prod/db\",\"port\":1}}\n{bad}\n");
        let err = control::probes::run(&model, &snapshot, input.as_bytes(), Vec::new()).unwrap_err().to_string();
        assert!(err.starts_with(want), "{bad}: got {err:?}, want prefix {want:?}");
    }
}

#[test]
fn probe_answers_keep_fields_in_order_and_resolve_families() {
    let cluster = control::load::load_str(CLUSTER, Path::new("semantics.yaml")).unwrap();
    let model = Model::resolve(&cluster).unwrap();
    let snapshot = control::compile::compile(&model, 1);
    let input = "{\"port\":80,\"note\":\"x\",\"dst\":\"prod/web\",\"src\":\"dev/client\"}\n\n{\"src\":\"fd00::201\",\"dst\":\"prod/web\",\"protocol\":\"ICMP\"}\n";
    let mut out = Vec::new();
    control::probes::run(&model, &snapshot, input.as_bytes(), &mut out).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "{\"port\":80,\"note\":\"x\",\"dst\":\"prod/web\",\"src\":\"dev/client\",\"verdict\":\"allow\",\"rules\":[]}\n\
         {\"src\":\"fd00::201\",\"dst\":\"prod/web\",\"protocol\":\"ICMP\",\"verdict\":\"allow\",\"rules\":[]}\n"
    );
    let probe = control::probes::Probe::parse("{\"src\":\"dev/client\",\"dst\":\"prod/web\",\"protocol\":\"icmp\"}").unwrap().unwrap();
    let r = probe.resolve(&model).unwrap();
    assert_eq!((r.src.to_string(), r.dst.to_string(), r.proto, r.port), ("10.0.2.1".into(), "10.0.1.1".into(), 1, 0));
    let probe = control::probes::Probe::parse("{\"src\":\"fd00::9\",\"dst\":\"prod/web\",\"protocol\":\"ICMP\"}").unwrap().unwrap();
    let r = probe.resolve(&model).unwrap();
    assert_eq!((r.dst.to_string(), r.proto), ("fd00::101".into(), 58));
}
