//! Control-plane scale: generated clusters in the shapes Kubernetes scale tests use
//! (`control::scale`: namespaces × pods, policies by matchLabels, by matchExpressions,
//! and multitenant), each measured in its own child process so that its peak memory
//! is its own:
//!
//! - cold compile: validate → resolve → compile → snapshot, as `palisade run` does it
//!   (the incremental compiler's first build);
//! - one pod change (an `app` label flip) and one policy change (a port flip), each
//!   change → snapshot ready to publish, median and worst of 15;
//! - peak resident memory (`VmHWM`), generated objects included;
//! - the snapshot's own size.
//!
//! Prints a table and writes `scale.json` and `scale.csv` to the target directory
//! (`$CARGO_TARGET_DIR`, else `target/`). All times are wall clock.
//! `cargo bench --bench scale -- --case NAME` runs one case in-process.

use control::compile::incremental::{Incremental, ObjectChange, Order};
use control::scale::{self, Pattern};
use control::stream::Object;
use std::process::Command;
use std::time::{Duration, Instant};

struct Case {
    name: &'static str,
    pattern: Pattern,
    namespaces: usize,
    pods_per_namespace: usize,
    policies: usize,
}

const CASES: &[Case] = &[
    Case { name: "labels-10k", pattern: Pattern::MatchLabels, namespaces: 100, pods_per_namespace: 100, policies: 1_000 },
    Case { name: "labels-50k", pattern: Pattern::MatchLabels, namespaces: 500, pods_per_namespace: 100, policies: 10_000 },
    Case { name: "expressions-10k", pattern: Pattern::MatchExpressions, namespaces: 100, pods_per_namespace: 100, policies: 1_000 },
    Case { name: "expressions-50k", pattern: Pattern::MatchExpressions, namespaces: 500, pods_per_namespace: 100, policies: 10_000 },
    Case { name: "multitenant-10k", pattern: Pattern::Multitenant, namespaces: 100, pods_per_namespace: 100, policies: 0 },
    Case { name: "multitenant-50k", pattern: Pattern::Multitenant, namespaces: 500, pods_per_namespace: 100, policies: 0 },
];

const ROUNDS: usize = 15;

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Median and worst of `rounds` timed changes.
fn timed(rounds: usize, mut one: impl FnMut(u64) -> Duration) -> (f64, f64) {
    let mut t: Vec<f64> = (0..rounds as u64).map(|r| ms(one(r))).collect();
    t.sort_by(|a, b| a.total_cmp(b));
    (t[t.len() / 2], t[t.len() - 1])
}

/// The policy with its first port flipped between 9000 and 9001 (any rule with ports).
fn flip_port(policy: &control::cluster::NetworkPolicy, round: u64) -> control::cluster::NetworkPolicy {
    let mut v = serde_json::to_value(policy).expect("policy serializes");
    for dir in ["ingress", "egress"] {
        let rules = v["spec"][dir].as_array_mut().into_iter().flatten();
        if let Some(port) = rules.filter_map(|r| r["ports"].as_array_mut()).find_map(|p| p.first_mut()) {
            port["port"] = serde_json::json!(9000 + round % 2);
            break;
        }
    }
    serde_json::from_value(v).expect("policy deserializes")
}

/// Runs one case; returns its JSON record.
fn run(case: &Case) -> serde_json::Value {
    let cluster = scale::cluster(case.pattern, case.namespaces, case.pods_per_namespace, case.policies);
    let (pods, policies) = (cluster.pods.len(), cluster.policies.len());
    let pod = cluster.pods[pods / 2].clone();
    let policy = cluster.policies.iter().find(|p| p.object.metadata.name.as_deref() == Some("allow-dns")).unwrap_or(&cluster.policies[policies / 2]).clone();
    let t = Instant::now();
    let mut inc = Incremental::new(cluster, Order::BySource).expect("generated cluster is valid");
    let snap = inc.snapshot(1);
    let cold = ms(t.elapsed());
    let stats = snap.stats();
    drop(snap);
    let mut full_paths = 0;
    let mut apply = |change: ObjectChange, generation: u64| {
        let t = Instant::now();
        let applied = inc.apply([change]).expect("valid change");
        let snap = inc.snapshot(generation);
        let took = t.elapsed();
        full_paths += applied.full.is_some() as usize;
        drop(snap);
        took
    };
    let (pod_median, pod_worst) = timed(ROUNDS, |r| {
        let mut p = pod.object.clone();
        let labels = p.metadata.labels.get_or_insert_with(Default::default);
        if r % 2 == 0 {
            labels.insert("app".into(), "moved".into());
        }
        apply(ObjectChange::Upsert(Object::Pod(p), pod.source.clone()), 2 + r)
    });
    let (policy_median, policy_worst) =
        timed(ROUNDS, |r| apply(ObjectChange::Upsert(Object::NetworkPolicy(flip_port(&policy.object, r)), policy.source.clone()), 100 + r));
    serde_json::json!({
        "case": case.name, "pattern": case.pattern.name(), "namespaces": case.namespaces, "pods": pods, "policies": policies,
        "cold_compile_ms": cold, "pod_change_ms": pod_median, "pod_change_worst_ms": pod_worst,
        "policy_change_ms": policy_median, "policy_change_worst_ms": policy_worst, "full_recompiles": full_paths,
        "peak_rss_mib": vm_hwm_kib() as f64 / 1024.0, "snapshot_mib": stats.memory_bytes as f64 / (1 << 20) as f64,
        "rules": stats.rules, "rule_sets": stats.rule_sets,
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--case") {
        let name = args.get(i + 1).expect("--case NAME");
        let case = CASES.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no case {name}"));
        println!("{}", run(case));
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    let mut rows = Vec::new();
    println!(
        "{:<17} {:>6} {:>6} {:>8} {:>9} {:>10} {:>11} {:>9} {:>8}",
        "case", "pods", "ns", "policies", "cold ms", "pod ms", "policy ms", "peak MiB", "snap MiB"
    );
    for case in CASES {
        let out = Command::new(&exe).args(["--case", case.name]).output().expect("run a case");
        let line = String::from_utf8_lossy(&out.stdout);
        let Ok(row) = serde_json::from_str::<serde_json::Value>(line.trim()) else {
            eprintln!("case {} failed: {}", case.name, String::from_utf8_lossy(&out.stderr));
            continue;
        };
        let f = |k: &str| row[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "{:<17} {:>6} {:>6} {:>8} {:>9.0} {:>5.2} ({:>4.1}) {:>5.2} ({:>4.1}) {:>9.0} {:>8.1}",
            case.name, row["pods"], row["namespaces"], row["policies"], f("cold_compile_ms"), f("pod_change_ms"), f("pod_change_worst_ms"),
            f("policy_change_ms"), f("policy_change_worst_ms"), f("peak_rss_mib"), f("snapshot_mib")
        );
        rows.push(row);
    }
    println!("(pod and policy changes: median (worst) of {ROUNDS}, change -> snapshot ready to publish; wall clock)");
    let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target").to_owned());
    let _ = std::fs::create_dir_all(&dir);
    let json = serde_json::to_string_pretty(&rows).expect("rows serialize");
    let keys = ["case", "pattern", "namespaces", "pods", "policies", "cold_compile_ms", "pod_change_ms", "pod_change_worst_ms",
        "policy_change_ms", "policy_change_worst_ms", "full_recompiles", "peak_rss_mib", "snapshot_mib", "rules", "rule_sets"];
    let mut csv = keys.join(",") + "\n";
    for r in &rows {
        csv += &keys.iter().map(|k| r[*k].to_string().trim_matches('"').to_owned()).collect::<Vec<_>>().join(",");
        csv.push('\n');
    }
    for (file, text) in [("scale.json", json), ("scale.csv", csv)] {
        let path = std::path::Path::new(&dir).join(file);
        match std::fs::write(&path, text) {
            Ok(()) => println!("wrote {}", path.display()),
            Err(e) => eprintln!("cannot write {}: {e}", path.display()),
        }
    }
}
