//! The end-to-end lab as a test: `examples/lab/lab.sh` with this build's `palisade`.
//! Six pods and two outside hosts in network namespaces, every packet between them
//! through palisade in bridge mode on net_tap ports, real web servers and curl;
//! policy1 then policy2 written into the watched directory while it runs.
//!
//! The test reads the script's table itself rather than trusting its exit status
//! alone: 59 probes per phase (56 ordered host pairs on TCP 80, 3 on 8080), exactly
//! 0, 12 and 24 of them timing out (no policy, policy1, policy2), every observation
//! equal to its expectation, a `D(FwPolicy)` flow with its rule in `palisade flows`,
//! and at least one policy drop per timed-out probe in the metrics. Needs root (namespaces, DPDK); skips with
//! a message otherwise. The script removes everything it made on every exit path.

use std::path::Path;
use std::process::Command;

const PHASES: [&str; 3] = ["no-policy", "policy1", "policy2"];
/// 8 hosts, each probing the 7 others on TCP 80, and 3 probes on TCP 8080.
const PROBES: usize = 8 * 7 + 3;
/// Probes that must time out per phase. no-policy: none. policy1: 4 callers of
/// webserver-dev:80 (client2-dev, dbserver-dev, client-qa, cent333), webserver-dev to
/// its 6 destinations other than dbserver-dev, and on 8080 client1-dev → webserver-dev
/// and webserver-dev → dbserver-dev: 12. policy2: those 12, plus the 6 callers of
/// dbserver-dev:80 other than webserver-dev, plus dbserver-dev to those same 6: 24.
/// (client-qa → client-jtac:8080 reaches in every phase.)
const TIMEOUTS: [usize; 3] = [0, 12, 24];

/// One row of the lab's table: source, destination, then (expected, observed) per phase.
struct Row {
    src: String,
    dst: String,
    cells: Vec<(String, String)>,
}

fn parse_rows(table: &str) -> Vec<Row> {
    table
        .lines()
        .filter_map(|line| {
            let mut parts = line.split(" | ");
            let head: Vec<&str> = parts.next()?.split_whitespace().collect();
            let cells: Vec<(String, String)> = parts
                .map(|cell| {
                    let w: Vec<&str> = cell.split_whitespace().collect();
                    (w.first().copied().unwrap_or("").to_owned(), w.get(1).copied().unwrap_or("").to_owned())
                })
                .collect();
            match (head.as_slice(), cells.len()) {
                ([src, dst], 3) if dst.contains(':') => {
                    Some(Row { src: (*src).to_owned(), dst: (*dst).to_owned(), cells })
                }
                _ => None,
            }
        })
        .collect()
}

#[test]
fn contrail_lab_story_holds_through_palisade() {
    let uid = Command::new("id").arg("-u").output().expect("run id -u");
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        eprintln!(
            "SKIP lab: needs root (it creates network namespaces, veths and bridges and runs DPDK); \
             run the tests as root to include it, or run `sudo examples/lab/lab.sh` by hand"
        );
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/lab/lab.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args(["--palisade", env!("CARGO_BIN_EXE_palisade"), "--timeout", "300"])
        .output()
        .expect("run examples/lab/lab.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert_eq!(out.status.code(), Some(0), "lab.sh failed:\n{stdout}\n{stderr}");

    let rows = parse_rows(&stdout);
    assert_eq!(rows.len(), PROBES, "one table row per probe:\n{stdout}");
    for (i, phase) in PHASES.iter().enumerate() {
        let mismatched: Vec<String> = rows
            .iter()
            .filter(|r| r.cells[i].0 != r.cells[i].1)
            .map(|r| format!("{} → {}: expected {}, observed {}", r.src, r.dst, r.cells[i].0, r.cells[i].1))
            .collect();
        assert!(mismatched.is_empty(), "{phase}: {mismatched:#?}");
        let timeouts = rows.iter().filter(|r| r.cells[i].1 == "timeout").count();
        let reached = rows.iter().filter(|r| r.cells[i].1 == "reach").count();
        assert_eq!((reached, timeouts), (PROBES - TIMEOUTS[i], TIMEOUTS[i]), "{phase}");
    }
    // The document's headline pairs, by name.
    let observed = |src: &str, dst: &str, phase: usize| {
        let dst = if dst.contains(':') { dst.to_owned() } else { format!("{dst}:80") };
        let row = rows.iter().find(|r| r.src == src && r.dst == dst).expect("row present");
        row.cells[phase].1.clone()
    };
    assert_eq!(observed("client1-dev", "webserver-dev", 1), "reach");
    assert_eq!(observed("client-jtac", "webserver-dev", 1), "reach");
    assert_eq!(observed("cent222", "webserver-dev", 1), "reach");
    assert_eq!(observed("client2-dev", "webserver-dev", 1), "timeout");
    assert_eq!(observed("client-qa", "webserver-dev", 1), "timeout");
    assert_eq!(observed("cent333", "webserver-dev", 1), "timeout");
    assert_eq!(observed("webserver-dev", "dbserver-dev", 2), "reach");
    assert_eq!(observed("client1-dev", "dbserver-dev", 2), "timeout");
    assert_eq!(observed("dbserver-dev", "client1-dev", 2), "timeout");
    assert_eq!(observed("client1-dev", "webserver-dev:8080", 1), "timeout");
    assert_eq!(observed("webserver-dev", "dbserver-dev:8080", 1), "timeout");
    assert_eq!(observed("client-qa", "client-jtac:8080", 2), "reach");

    let denied = stdout
        .lines()
        .position(|l| l.contains("10.47.255.234:") && l.contains("10.47.255.231:80 ") && l.contains("D(FwPolicy)"))
        .unwrap_or_else(|| panic!("palisade flows shows dbserver-dev → client1-dev:80 as D(FwPolicy):\n{stdout}"));
    let detail = stdout.lines().nth(denied + 1).unwrap_or("");
    assert!(detail.contains(" rule dev-egress-default-deny"), "the denied flow names policy2's egress rule: {detail}");
    let policy_drops: u64 = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("palisade_drops_total{reason=\"policy\"} "))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("the metrics line palisade_drops_total{{reason=\"policy\"}} is printed:\n{stdout}"));
    // Each of the 36 timed-out probes of the table, and the script's last one, lost at least its SYN.
    let timed_out: u64 = TIMEOUTS.iter().sum::<usize>() as u64 + 1;
    assert!(policy_drops >= timed_out, "{policy_drops} policy drops, expected at least {timed_out}");
}
