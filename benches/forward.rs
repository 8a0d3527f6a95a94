//! End-to-end forwarding rate: `palisade run` (release build, wire mode, no policy,
//! idle backoff off) against `dpdk-testpmd --forward-mode=io` on identical memory
//! vdevs (net_null0 ↔ net_null1, 64-byte frames), the same single worker core and the
//! same EAL memory (`--no-pci --no-huge -m 512`). The two alternate within one
//! invocation so drift on a shared machine hits both; the median rates and the
//! median of the per-round ratios are printed. Target: palisade ≥ 0.95 × testpmd.
//!
//! `cargo bench --bench forward`; knobs: PALISADE_BENCH_ROUNDS (default 5),
//! PALISADE_BENCH_SECS (default 5), PALISADE_BENCH_WORKER_CPU (default the last
//! available CPU; the main lcore takes the first other one).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const VDEVS: [&str; 2] = ["net_null0", "net_null1"];

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn allowed_cpus() -> Vec<u32> {
    dataplane::dpdk::host::allowed_cpus().expect("read /proc/self/status")
}

/// Kills the child (that we started) if a run goes wrong.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// testpmd io-forward for `secs`: packets sent per second while forwarding.
fn testpmd(main_cpu: u32, worker_cpu: u32, secs: u64, round: usize) -> f64 {
    // stdbuf: testpmd's stdout is a pipe here, and its "Press enter" prompt must not
    // sit in a stdio buffer.
    let prefix = format!("palisade-bench-tp-{}-{round}", std::process::id());
    let mut cmd = Command::new("stdbuf");
    cmd.args(["-oL", "dpdk-testpmd"]).args(["-l", &format!("{main_cpu},{worker_cpu}"), "--main-lcore", &main_cpu.to_string()])
        .args(["--no-pci", "--no-huge", "-m", "512", "--log-level", "lib.eal:warning"])
        .args(["--file-prefix", &prefix]);
    for v in VDEVS {
        cmd.args(["--vdev", v]);
    }
    cmd.args(["--", "--forward-mode=io", "--nb-cores=1", "--auto-start", "--total-num-mbufs=16384", "--burst=32"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = Reap(cmd.spawn().expect("run dpdk-testpmd (apt-get install dpdk)"));
    let stdout = child.0.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    // Forwarding has started once testpmd asks for enter.
    for line in lines.by_ref() {
        let line = line.expect("read testpmd output");
        if line.contains("Press enter to exit") {
            break;
        }
    }
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    child.0.stdin.as_mut().expect("piped stdin").write_all(b"\n").expect("tell testpmd to stop");
    let elapsed = started.elapsed().as_secs_f64();
    let mut tx_total = None;
    let mut in_accumulated = false;
    for line in lines.by_ref() {
        let line = line.expect("read testpmd output");
        if line.contains("Accumulated forward statistics for all ports") {
            in_accumulated = true;
        }
        if in_accumulated {
            if let Some(rest) = line.split("TX-packets:").nth(1) {
                tx_total = rest.split_whitespace().next().and_then(|n| n.parse::<u64>().ok());
                break;
            }
        }
    }
    let _ = child.0.wait();
    // testpmd leaves its EAL runtime directory behind; it is ours (unique prefix).
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
    tx_total.expect("testpmd printed accumulated TX-packets") as f64 / elapsed
}

/// palisade run for `secs`: packets sent per second while forwarding.
fn palisade(worker_cpu: u32, secs: u64, dir: &std::path::Path) -> f64 {
    let stats = dir.join("stats.json");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_palisade"));
    cmd.arg("run");
    for v in VDEVS {
        cmd.args(["--port", v]);
    }
    cmd.args(["--mode", "wire", "--workers", &worker_cpu.to_string(), "--no-huge", "--memory-mb", "512"])
        .args(["--idle-backoff", "off", "--duration", &secs.to_string()])
        .args(["--eal-arg=--log-level=lib.eal:warning", "--stats-json"])
        .arg(&stats)
        .env("PALISADE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = Reap(cmd.spawn().expect("run palisade"));
    let ok = child.0.wait().map(|s| s.success()).unwrap_or(false);
    assert!(ok, "palisade run failed");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats).expect("stats json")).expect("valid json");
    let tx: u64 = json["workers"].as_array().expect("workers").iter().map(|w| w["tx"].as_u64().unwrap_or(0)).sum();
    tx as f64 / json["seconds_forwarding"].as_f64().expect("seconds")
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("rates are finite"));
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this too: only run
    // when benchmarking.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rounds: usize = env_or("PALISADE_BENCH_ROUNDS", 5);
    let secs: u64 = env_or("PALISADE_BENCH_SECS", 5);
    let cpus = allowed_cpus();
    let worker_cpu: u32 = env_or("PALISADE_BENCH_WORKER_CPU", *cpus.last().expect("a CPU"));
    let main_cpu = *cpus.iter().find(|&&c| c != worker_cpu).unwrap_or(&worker_cpu);
    let dir = tempfile::tempdir().expect("temp dir");
    println!(
        "forward: {} <-> {}, 64 B frames, io forwarding, worker core {worker_cpu}, main core {main_cpu}, \
         --no-huge -m 512, burst 32, {rounds} alternating rounds of {secs} s",
        VDEVS[0], VDEVS[1]
    );
    let (mut tp, mut pal) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let t = testpmd(main_cpu, worker_cpu, secs, round);
        let p = palisade(worker_cpu, secs, dir.path());
        println!("round {round}: testpmd io {:7.3} Mpps   palisade {:7.3} Mpps   ratio {:.3}", t / 1e6, p / 1e6, p / t);
        tp.push(t);
        pal.push(p);
    }
    // Each round's two runs are adjacent in time, so their ratio cancels most of the
    // drift a shared machine adds; the median of those ratios is the headline figure.
    let mut ratios: Vec<f64> = pal.iter().zip(&tp).map(|(p, t)| p / t).collect();
    let r = median(&mut ratios);
    let (t, p) = (median(&mut tp), median(&mut pal));
    println!("median: testpmd io {:.3} Mpps, palisade {:.3} Mpps", t / 1e6, p / 1e6);
    println!("ratio palisade/testpmd (median of per-round ratios): {r:.3} (target >= 0.95)");
}
