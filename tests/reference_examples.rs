//! The reference documents' own examples, with exactly the outcomes they report:
//! - CN2's `test-network-policy` (cn2-kubernetes-network-policies.txt, and the same
//!   policy in kubernetes-network-policies.txt), checked through the library path;
//! - the Contrail lab (contrail-create-kubernetes-network-policy.txt: dev/jtac/qa,
//!   policy1, policy2 without and with Egress), checked through the real
//!   `palisade verdicts` binary on the manifests in tests/data/lab/.

use std::path::{Path, PathBuf};
use std::process::Command;

/// (src, dst, "tcp/80" | "icmp", "allow" | "deny", deciding rules)
type Expect = (&'static str, &'static str, &'static str, &'static str, &'static [&'static str]);

fn probe_line(src: &str, dst: &str, traffic: &str) -> String {
    match traffic.split_once('/') {
        Some((proto, port)) => format!(r#"{{"src":"{src}","dst":"{dst}","protocol":"{}","port":{port}}}"#, proto.to_uppercase()),
        None => format!(r#"{{"src":"{src}","dst":"{dst}","protocol":"{}"}}"#, traffic.to_uppercase()),
    }
}

fn answer_line(e: &Expect) -> String {
    let (src, dst, traffic, verdict, rules) = e;
    let probe = probe_line(src, dst, traffic);
    let rules = serde_json::to_string(rules).unwrap();
    format!("{},\"verdict\":\"{verdict}\",\"rules\":{rules}}}", &probe[..probe.len() - 1])
}

const CN2_CLUSTER: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: myproject, labels: {project: myproject}}
---
apiVersion: v1
kind: Namespace
metadata: {name: otherproject, labels: {project: otherproject}}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: default, labels: {role: db}}
spec: {containers: [{name: redis}]}
status: {podIPs: [{ip: 10.1.0.10}]}
---
apiVersion: v1
kind: Pod
metadata: {name: frontend, namespace: default, labels: {role: frontend}}
spec: {containers: [{name: web}]}
status: {podIPs: [{ip: 10.1.0.11}]}
---
apiVersion: v1
kind: Pod
metadata: {name: backend, namespace: default, labels: {role: backend}}
spec: {containers: [{name: web}]}
status: {podIPs: [{ip: 10.1.0.12}]}
---
apiVersion: v1
kind: Pod
metadata: {name: mine, namespace: myproject, labels: {role: anything}}
spec: {containers: [{name: c}]}
status: {podIPs: [{ip: 10.2.0.5}]}
---
apiVersion: v1
kind: Pod
metadata: {name: theirs, namespace: otherproject, labels: {role: frontend}}
spec: {containers: [{name: c}]}
status: {podIPs: [{ip: 10.3.0.5}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: test-network-policy
  namespace: default
spec:
  podSelector:
    matchLabels:
      role: db
  policyTypes:
  - Ingress
  - Egress
  ingress:
  - from:
    - ipBlock:
        cidr: 172.17.0.0/16
        except:
        - 172.17.1.0/24
    - namespaceSelector:
        matchLabels:
          project: myproject
    - podSelector:
        matchLabels:
          role: frontend
    ports:
    - protocol: TCP
      port: 6379
  egress:
  - to:
    - ipBlock:
        cidr: 10.0.0.0/24
    ports:
    - protocol: TCP
      port: 5978
"#;

/// The Kubernetes page's bullet list for this policy, one probe per clause, with the
/// CN2 rule names of the document's firewall-rule table.
#[test]
fn cn2_test_network_policy() {
    let cluster = control::load::load_str(CN2_CLUSTER, Path::new("cn2.yaml")).unwrap();
    let model = control::model::Model::resolve(&cluster).unwrap();
    let compiled = control::compile::compile_detailed(&model, 1);
    let snapshot = &compiled.snapshot;
    let names: Vec<&str> = (0..snapshot.rule_count() as u32).map(|r| snapshot.rule_name(r)).collect();
    assert_eq!(
        names,
        [
            "default-ingress-test-network-policy-0-ipBlock-0-cidr-172.17.0.0/16-0",
            "default-ingress-test-network-policy-0-namespaceSelector-1-0",
            "default-ingress-test-network-policy-0-podSelector-2-0",
            "default-egress-test-network-policy-ipBlock-0-cidr-10.0.0.0/24-0",
            "default-ingress-default-deny",
            "default-egress-default-deny",
        ]
    );
    const CIDR: &str = "default-ingress-test-network-policy-0-ipBlock-0-cidr-172.17.0.0/16-0";
    const NS: &str = "default-ingress-test-network-policy-0-namespaceSelector-1-0";
    const POD: &str = "default-ingress-test-network-policy-0-podSelector-2-0";
    const EGRESS: &str = "default-egress-test-network-policy-ipBlock-0-cidr-10.0.0.0/24-0";
    const DENY_IN: &str = "default-ingress-default-deny";
    const DENY_EG: &str = "default-egress-default-deny";
    let expect: &[Expect] = &[
        // role=frontend pods of "default" may reach TCP 6379 ...
        ("default/frontend", "default/db", "tcp/6379", "allow", &[POD]),
        ("default/frontend", "default/db", "tcp/6380", "deny", &[DENY_IN]),
        ("default/frontend", "default/db", "udp/6379", "deny", &[DENY_IN]),
        // ... but not role=frontend pods of another namespace,
        ("otherproject/theirs", "default/db", "tcp/6379", "deny", &[DENY_IN]),
        ("default/backend", "default/db", "tcp/6379", "deny", &[DENY_IN]),
        // any pod of a namespace labelled project=myproject,
        ("myproject/mine", "default/db", "tcp/6379", "allow", &[NS]),
        // addresses in 172.17.0.0/16 except 172.17.1.0/24,
        ("172.17.0.1", "default/db", "tcp/6379", "allow", &[CIDR]),
        ("172.17.255.254", "default/db", "tcp/6379", "allow", &[CIDR]),
        ("172.17.1.1", "default/db", "tcp/6379", "deny", &[DENY_IN]),
        ("172.18.0.1", "default/db", "tcp/6379", "deny", &[DENY_IN]),
        // db may reach 10.0.0.0/24 on TCP 5978 and nothing else.
        ("default/db", "10.0.0.7", "tcp/5978", "allow", &[EGRESS]),
        ("default/db", "10.0.1.7", "tcp/5978", "deny", &[DENY_EG]),
        ("default/db", "10.0.0.7", "tcp/5979", "deny", &[DENY_EG]),
        ("default/db", "default/frontend", "tcp/80", "deny", &[DENY_EG]),
        // Pods the policy does not select are unaffected.
        ("default/backend", "default/frontend", "tcp/80", "allow", &[]),
        ("default/frontend", "8.8.8.8", "udp/53", "allow", &[]),
    ];
    let input: String = expect.iter().map(|(s, d, t, _, _)| probe_line(s, d, t) + "\n").collect();
    let mut out = Vec::new();
    control::probes::run(&model, snapshot, input.as_bytes(), &mut out).unwrap();
    let got: Vec<String> = String::from_utf8(out).unwrap().lines().map(String::from).collect();
    let want: Vec<String> = expect.iter().map(answer_line).collect();
    assert_eq!(got, want);
}

fn lab_dir(variant: Option<&str>) -> tempfile::TempDir {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/lab");
    let dir = tempfile::tempdir().unwrap();
    let copy_all = |from: PathBuf| {
        for e in std::fs::read_dir(from).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
        }
    };
    copy_all(data.join("base"));
    if let Some(v) = variant {
        copy_all(data.join(v));
    }
    dir
}

/// Run `palisade verdicts` on the lab (base + `variant`) and compare every line.
fn lab(variant: Option<&str>, expect: &[Expect]) {
    let dir = lab_dir(variant);
    let input: String = expect.iter().map(|(s, d, t, _, _)| probe_line(s, d, t) + "\n").collect();
    // The probe file lives outside the manifest dir (it is not a manifest).
    let probe_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(probe_file.path(), input).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["verdicts", "--manifests"])
        .arg(dir.path())
        .arg("--probes")
        .arg(probe_file.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "palisade verdicts failed: {}", String::from_utf8_lossy(&out.stderr));
    let got: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(String::from).collect();
    let want: Vec<String> = expect.iter().map(answer_line).collect();
    assert_eq!(got, want);
}

const P1_FROM_IP: &str = "dev-ingress-policy1-0-ipBlock-0-cidr-10.169.25.20/32-0";
const P1_FROM_JTAC: &str = "dev-ingress-policy1-0-namespaceSelector-1-0";
const P1_FROM_CLIENT1: &str = "dev-ingress-policy1-0-podSelector-2-0";
const P1_TO_DB: &str = "dev-egress-policy1-podSelector-0-0";
const P2_FROM_WEB: &str = "dev-ingress-policy2-0-podSelector-0-0";
const DEV_DENY_IN: &str = "dev-ingress-default-deny";
const DEV_DENY_EG: &str = "dev-egress-default-deny";
const CENT222: &str = "10.169.25.20";
const CENT333: &str = "10.169.25.21";

/// After policy1: client1-dev, client-jtac and cent222 reach webserver-dev; client2-dev,
/// client-qa and cent333 time out; webserver-dev reaches only dbserver-dev; dbserver-dev
/// is still open to all; other clients still talk to each other.
#[test]
fn contrail_lab_policy1() {
    lab(
        None,
        &[
            ("dev/client1-dev", "dev/webserver-dev", "tcp/80", "allow", &[P1_FROM_CLIENT1]),
            ("jtac/client-jtac", "dev/webserver-dev", "tcp/80", "allow", &[P1_FROM_JTAC]),
            (CENT222, "dev/webserver-dev", "tcp/80", "allow", &[P1_FROM_IP]),
            ("dev/client2-dev", "dev/webserver-dev", "tcp/80", "deny", &[DEV_DENY_IN]),
            ("qa/client-qa", "dev/webserver-dev", "tcp/80", "deny", &[DEV_DENY_IN]),
            (CENT333, "dev/webserver-dev", "tcp/80", "deny", &[DEV_DENY_IN]),
            ("dev/client1-dev", "dev/webserver-dev", "icmp", "deny", &[DEV_DENY_IN]),
            ("dev/webserver-dev", "dev/dbserver-dev", "tcp/80", "allow", &[P1_TO_DB]),
            ("dev/webserver-dev", "dev/client1-dev", "tcp/80", "deny", &[DEV_DENY_EG]),
            ("dev/webserver-dev", "jtac/client-jtac", "tcp/80", "deny", &[DEV_DENY_EG]),
            ("dev/webserver-dev", CENT222, "tcp/80", "deny", &[DEV_DENY_EG]),
            ("dev/client1-dev", "dev/dbserver-dev", "tcp/80", "allow", &[]),
            ("dev/client2-dev", "dev/dbserver-dev", "tcp/80", "allow", &[]),
            ("jtac/client-jtac", "dev/dbserver-dev", "tcp/80", "allow", &[]),
            ("qa/client-qa", "dev/dbserver-dev", "tcp/80", "allow", &[]),
            ("dev/client1-dev", "qa/client-qa", "tcp/80", "allow", &[]),
            ("qa/client-qa", "dev/client2-dev", "tcp/80", "allow", &[]),
        ],
    );
}

/// policy2 with only Ingress: dbserver-dev is reachable from webserver-dev alone; the
/// empty egress list "doesn't work as expected": dbserver-dev still reaches everyone.
#[test]
fn contrail_lab_policy2_ingress_only() {
    lab(
        Some("policy2-ingress-only"),
        &[
            ("dev/webserver-dev", "dev/dbserver-dev", "tcp/80", "allow", &[P1_TO_DB, P2_FROM_WEB]),
            ("dev/client1-dev", "dev/dbserver-dev", "tcp/80", "deny", &[DEV_DENY_IN]),
            ("dev/client2-dev", "dev/dbserver-dev", "tcp/80", "deny", &[DEV_DENY_IN]),
            ("jtac/client-jtac", "dev/dbserver-dev", "tcp/80", "deny", &[DEV_DENY_IN]),
            ("qa/client-qa", "dev/dbserver-dev", "tcp/80", "deny", &[DEV_DENY_IN]),
            ("dev/dbserver-dev", "dev/client1-dev", "tcp/80", "allow", &[]),
            ("dev/dbserver-dev", "qa/client-qa", "tcp/80", "allow", &[]),
            ("dev/client1-dev", "dev/webserver-dev", "tcp/80", "allow", &[P1_FROM_CLIENT1]),
        ],
    );
}

/// policy2 with Ingress and Egress and no egress rules: dbserver-dev can no longer
/// initiate anything, while webserver-dev still reaches it.
#[test]
fn contrail_lab_policy2_with_egress() {
    lab(
        Some("policy2-with-egress"),
        &[
            ("dev/dbserver-dev", "dev/client1-dev", "tcp/80", "deny", &[DEV_DENY_EG]),
            ("dev/dbserver-dev", "qa/client-qa", "tcp/80", "deny", &[DEV_DENY_EG]),
            ("dev/dbserver-dev", "dev/webserver-dev", "tcp/80", "deny", &[DEV_DENY_EG, DEV_DENY_IN]),
            ("dev/dbserver-dev", CENT222, "icmp", "deny", &[DEV_DENY_EG]),
            ("dev/webserver-dev", "dev/dbserver-dev", "tcp/80", "allow", &[P1_TO_DB, P2_FROM_WEB]),
            ("dev/client1-dev", "dev/dbserver-dev", "tcp/80", "deny", &[DEV_DENY_IN]),
            ("dev/client2-dev", "qa/client-qa", "tcp/80", "allow", &[]),
        ],
    );
}

#[test]
fn verdicts_cli_reports_bad_probe_line() {
    let dir = lab_dir(None);
    let probe_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(probe_file.path(), format!("{}\n{}\n", probe_line("dev/client1-dev", "dev/webserver-dev", "tcp/80"), probe_line("dev/nobody", "dev/webserver-dev", "tcp/80"))).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["verdicts", "--manifests"])
        .arg(dir.path())
        .arg("--probes")
        .arg(probe_file.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("probes line 2: unknown pod \"dev/nobody\""), "{stderr}");
}

#[test]
fn verdicts_cli_reads_probes_from_stdin() {
    use std::io::Write;
    let dir = lab_dir(None);
    let mut child = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["verdicts", "--probes", "-", "--manifests"])
        .arg(dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let line = probe_line(CENT333, "dev/webserver-dev", "tcp/80");
    child.stdin.take().unwrap().write_all(format!("{line}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let want = answer_line(&(CENT333, "dev/webserver-dev", "tcp/80", "deny", &[DEV_DENY_IN]));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("{want}\n"));
}
