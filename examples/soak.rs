//! Soak: `palisade run` under mixed traffic for minutes with a policy change every
//! second; not part of CI.
//!
//! ```sh
//! cargo build --release && cargo run --release --example soak -- --minutes 10
//! ```
//!
//! Port 0 is `net_pcap` replaying a mixed capture of the Contrail lab in a loop
//! (`infinite_rx=1`: allowed and denied TCP connections, UDP, pings, an ICMP error,
//! fragments, VLAN tags, malformed frames, ARP); port 1 is `net_null`. Every second the
//! soak rewrites a policy file in the watched directory, alternating between two valid
//! versions, and every tenth change is invalid. It samples the process's RSS once a
//! second. At the end (SIGTERM) it checks, and prints:
//! - RSS flat: after the warm-up, no sample exceeds the warm-up's last by more than
//!   `--rss-tolerance-mib`;
//! - counters consistent: per worker `received = transmitted + filtered + unsent`, and
//!   the pipeline's `rx = forwarded + drops by reason` when the run reports them;
//! - every valid change applied and every invalid one rejected;
//! - a clean exit and no panic in the log.
//!
//! Exits non-zero if any check fails. `--keep DIR` keeps the manifests, capture, log
//! and stats there.

#[path = "../tests/common/logged.rs"]
mod logged;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use dataplane::pipeline::craft::{self, L4};
use dataplane::pipeline::pcap;
use dataplane::wire::tcp::flags::{ACK, SYN};

struct Options {
    seconds: f64,
    warmup: f64,
    rss_tolerance_mib: f64,
    flow_capacity: usize,
    palisade: PathBuf,
    keep: Option<PathBuf>,
}

fn usage() -> ! {
    eprintln!(
        "usage: soak [--minutes M | --seconds S] [--warmup S] [--rss-tolerance-mib N] [--flow-capacity N] [--palisade PATH] [--keep DIR]"
    );
    std::process::exit(2)
}

fn options() -> Options {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/examples/soak → target/<profile>/palisade
    let default_palisade = exe.parent().and_then(Path::parent).map(|d| d.join("palisade")).unwrap_or_default();
    let mut o = Options {
        seconds: 600.0,
        warmup: 15.0,
        rss_tolerance_mib: 4.0,
        flow_capacity: 1 << 16,
        palisade: default_palisade,
        keep: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--minutes" => o.seconds = value().parse::<f64>().unwrap_or_else(|_| usage()) * 60.0,
            "--seconds" => o.seconds = value().parse().unwrap_or_else(|_| usage()),
            "--warmup" => o.warmup = value().parse().unwrap_or_else(|_| usage()),
            "--rss-tolerance-mib" => o.rss_tolerance_mib = value().parse().unwrap_or_else(|_| usage()),
            "--flow-capacity" => o.flow_capacity = value().parse().unwrap_or_else(|_| usage()),
            "--palisade" => o.palisade = PathBuf::from(value()),
            "--keep" => o.keep = Some(PathBuf::from(value())),
            _ => usage(),
        }
    }
    if !o.palisade.is_file() {
        eprintln!("soak: no palisade binary at {} (cargo build --release, or --palisade PATH)", o.palisade.display());
        std::process::exit(2);
    }
    o
}

fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// One loop of mixed lab traffic.
fn mixed_capture() -> Vec<Vec<u8>> {
    let (c1, c2, web) = ("10.47.0.11", "10.47.0.12", "10.47.0.13");
    let mut frames = Vec::new();
    for port in 0..4u16 {
        frames.extend(craft::tcp_connection(sock(&format!("{c1}:{}", 40_000 + port)), sock(&format!("{web}:80"))));
        frames.extend(craft::tcp_connection(sock(&format!("{c2}:{}", 41_000 + port)), sock(&format!("{web}:80"))));
    }
    let dns = craft::udp(sock(&format!("{c1}:5353")), sock(&format!("{c2}:53")), b"query");
    frames.push(dns.clone());
    frames.push(craft::udp(sock(&format!("{c2}:53")), sock(&format!("{c1}:5353")), b"answer"));
    frames.push(craft::unreachable(ip(c2), ip(c1), &dns));
    frames.push(craft::echo(ip(c1), ip(c2), true, 1, 1));
    frames.push(craft::echo(ip(c2), ip(c1), false, 1, 1));
    frames.push(craft::echo(ip(c1), ip(web), true, 2, 1));
    frames.extend(craft::fragments(ip(c1), ip(c2), &L4::Udp { src_port: 7000, dst_port: 9000, payload: &[7; 600] }, 41, 256));
    frames.push(craft::with_vlans(&craft::tcp(sock(&format!("{c1}:42000")), sock(&format!("{web}:80")), SYN), &[100]));
    frames.push(craft::with_vlans(&craft::tcp(sock(&format!("{web}:80")), sock(&format!("{c1}:42000")), SYN | ACK), &[100]));
    frames.push(dns[..20].to_vec());
    frames.push(craft::arp_request([10, 47, 0, 11], [10, 47, 0, 13]));
    frames
}

/// The policy the soak rewrites: `version` 0 or 1 (valid, opening webserver-dev:80 to
/// client2-dev or to nobody new), or invalid.
fn changing_policy(version: u32, valid: bool) -> String {
    let app = if version % 2 == 0 { "client2-dev" } else { "nobody" };
    let port = if valid { "80" } else { "0" };
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: soak-open\n  namespace: dev\nspec:\n  \
         podSelector:\n    matchLabels:\n      app: webserver-dev\n  ingress:\n  - from:\n    - podSelector:\n        \
         matchLabels:\n          app: {app}\n    ports:\n    - protocol: TCP\n      port: {port}\n"
    )
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn lab_base(to: &Path) {
    let lab = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/lab/base");
    for entry in std::fs::read_dir(lab).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

fn main() {
    let o = options();
    let scratch = tempfile::tempdir().unwrap();
    let dir = o.keep.clone().unwrap_or_else(|| scratch.path().to_path_buf());
    let manifests = dir.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    lab_base(&manifests);
    let policy = manifests.join("soak-open.yaml");
    std::fs::write(&policy, changing_policy(0, true)).unwrap();
    let capture = dir.join("mixed.pcap");
    let frames = mixed_capture();
    pcap::write(&capture, &frames).unwrap();
    let stats = dir.join("stats.json");

    let mut run = logged::Logged::spawn(
        Command::new(&o.palisade)
            .args(["run", "--no-huge", "--workers", "1"])
            .arg("--port")
            .arg(format!("net_pcap0,rx_pcap={},infinite_rx=1", capture.display()))
            .args(["--port", "net_null0,no-rx=1"])
            .arg("--manifests")
            .arg(&manifests)
            .arg("--flow-capacity")
            .arg(o.flow_capacity.to_string())
            .arg("--stats-json")
            .arg(&stats)
            .env("PALISADE_LOG", "info"),
    );
    let pid = run.pid();
    println!("soak: {} s of {} looping frames, a policy change every second, pid {pid}", o.seconds, frames.len());
    let start = Instant::now();
    let (mut good, mut bad) = (0u32, 0u32);
    let mut samples: Vec<(f64, u64)> = Vec::new();
    let mut tick = 1u32;
    while start.elapsed().as_secs_f64() < o.seconds {
        std::thread::sleep(Duration::from_secs(u64::from(tick)).saturating_sub(start.elapsed()));
        run.assert_running("during the soak");
        let valid = tick % 10 != 0;
        let tmp = dir.join("incoming.yaml");
        std::fs::write(&tmp, changing_policy(tick, valid)).unwrap();
        std::fs::rename(&tmp, &policy).unwrap();
        if valid {
            good += 1;
        } else {
            bad += 1;
        }
        if let Some(rss) = rss_kib(pid) {
            samples.push((start.elapsed().as_secs_f64(), rss));
        }
        if tick % 30 == 0 {
            println!("  {:>5.0} s  RSS {} KiB  changes {good} valid, {bad} invalid", start.elapsed().as_secs_f64(), samples.last().map_or(0, |s| s.1));
        }
        tick += 1;
    }
    // Let the last change land before stopping.
    std::thread::sleep(Duration::from_millis(1500));
    let (status, stdout, log) = run.stop();
    if o.keep.is_some() {
        std::fs::write(dir.join("palisade.log"), &log).unwrap();
        std::fs::write(dir.join("palisade.out"), &stdout).unwrap();
    }
    println!("{stdout}");

    let mut failures = Vec::new();
    let mut check = |ok: bool, what: String| {
        println!("  [{}] {what}", if ok { "ok" } else { "FAIL" });
        if !ok {
            failures.push(what);
        }
    };
    check(status.success(), format!("palisade exited cleanly ({status})"));
    check(!log.contains("panicked"), "no panic in the log".into());

    // RSS after warm-up.
    let baseline = samples.iter().filter(|(t, _)| *t <= o.warmup).next_back().or(samples.first()).map_or(0, |s| s.1);
    let after: Vec<u64> = samples.iter().filter(|(t, _)| *t > o.warmup).map(|s| s.1).collect();
    let (lo, hi) = (after.iter().copied().min().unwrap_or(baseline), after.iter().copied().max().unwrap_or(baseline));
    let growth_mib = hi.saturating_sub(baseline) as f64 / 1024.0;
    check(
        growth_mib <= o.rss_tolerance_mib,
        format!(
            "RSS flat: {baseline} KiB at {:.0} s warm-up, then {lo}..{hi} KiB over {} samples (growth {growth_mib:.2} MiB, tolerance {} MiB)",
            o.warmup,
            after.len(),
            o.rss_tolerance_mib
        ),
    );

    // Policy changes: the summary line palisade prints at exit.
    let summary = stdout.lines().find(|l| l.starts_with("policy: generation")).unwrap_or_default().to_owned();
    let numbers: Vec<u64> = summary.split(|c: char| !c.is_ascii_digit()).filter_map(|w| w.parse().ok()).collect();
    check(
        numbers.len() == 3 && numbers[1] == u64::from(good) && numbers[2] == u64::from(bad) && numbers[0] == 1 + u64::from(good),
        format!("{good} valid changes applied and {bad} invalid ones rejected: \"{summary}\""),
    );

    // Counters.
    match std::fs::read_to_string(&stats).ok().and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok()) {
        None => check(false, format!("stats JSON at {}", stats.display())),
        Some(doc) => {
            for w in doc["workers"].as_array().into_iter().flatten() {
                let n = |k: &str| w[k].as_u64().unwrap_or(0);
                let (rx, tx, filtered, l2, unsent) = (n("rx"), n("tx"), n("filtered"), n("l2_dropped"), n("tx_unsent"));
                check(
                    rx > 0 && rx == tx + filtered + l2 + unsent,
                    format!("worker {}: received {rx} = transmitted {tx} + filtered {filtered} + l2 dropped {l2} + unsent {unsent}", w["lcore"]),
                );
            }
            let p = &doc["pipeline"];
            if p.is_null() {
                println!("  [--] the run's stats JSON has no pipeline counters (drops by reason not checked)");
            } else {
                let n = |k: &str| p[k].as_u64().unwrap_or(0);
                let reasons = ["drop_policy", "drop_malformed", "drop_no_flow", "drop_fragment"];
                let drops: u64 = reasons.iter().map(|r| n(r)).sum();
                let detail: Vec<String> = reasons.iter().map(|r| format!("{r} {}", n(r))).collect();
                check(
                    n("rx") > 0 && n("rx") == n("forwarded") + drops,
                    format!("pipeline: rx {} = forwarded {} + drops by reason ({})", n("rx"), n("forwarded"), detail.join(", ")),
                );
                check(n("flow_revoked") > 0, format!("flows re-decided {}, revoked {}", n("flow_redecided"), n("flow_revoked")));
            }
        }
    }
    if failures.is_empty() {
        println!("soak: all checks passed");
    } else {
        println!("soak: {} check(s) failed", failures.len());
        std::process::exit(1);
    }
}
