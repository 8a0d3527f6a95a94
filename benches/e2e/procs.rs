//! The processes the end-to-end harness measures: `dpdk-testpmd --forward-mode=io`,
//! `palisade run` and (when installed) OVS-DPDK through `benches/ovs/ovs-conntrack.sh`,
//! all on the same vdevs (`net_pcap` replaying a file in a loop into `net_null`) and the
//! same worker core. Every child is killed by its PID when its guard drops, so a panic
//! or an early return never leaves one running.

use super::traffic::Pcap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the two runs take place: cores and the palisade binary.
pub struct Rig {
    pub worker_cpu: u32,
    pub main_cpu: u32,
    pub palisade: PathBuf,
    pub scratch: PathBuf,
}

/// The two vdevs: the pcap replayed forever on port 0, a sink that never receives on
/// port 1 (net_null's own rx would inject zero frames).
pub fn vdevs(pcap: &Path) -> [String; 2] {
    [format!("net_pcap0,rx_pcap={},infinite_rx=1", pcap.display()), "net_null1,no-rx=1".to_owned()]
}

/// Ends the child (that we started), by its PID, if it is still running: SIGTERM first
/// (the OVS script's trap then stops the daemons it started), SIGKILL after 30 s (the
/// script gives each daemon 10 s).
pub struct Reap(pub Child);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // Our own child, not yet reaped (try_wait says it runs): its PID is not reused.
            // kill(1) rather than libc: `unsafe` stays in ffi and dataplane::dpdk.
            let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Bytes one mbuf takes in a pool with --no-huge: an mbuf (2176 B data room + header,
/// ~2.4 KB) does not cross a 4 KiB page there, so each takes a page (measured: a 532k
/// pool fails in 2.07 GB and fits in 2.6 GB).
const MBUF_BYTES: u64 = 4096;

/// EAL memory (MB) for a pool of `mbufs`, with room for the rest of EAL.
fn eal_mb(mbufs: u64) -> u64 {
    (mbufs * MBUF_BYTES >> 20) + 768
}

/// testpmd's pool for a pcap of `packets` frames: the file plus working room.
fn testpmd_mbufs(packets: usize) -> u64 {
    packets as u64 + 32_768
}

/// palisade's pool (`--mbufs`) for a pcap of `packets` frames: the file plus working room.
fn palisade_mbufs(packets: usize) -> u64 {
    packets as u64 + 16_384
}

/// The most EAL memory (MB) one run over a pcap of `packets` frames takes (testpmd's
/// pool is the larger); the runs take turns, so this is the point's peak.
pub fn memory_needed_mb(packets: usize) -> u64 {
    eal_mb(testpmd_mbufs(packets).max(palisade_mbufs(packets)))
}

/// MemAvailable from /proc/meminfo, in MB.
pub fn memory_available_mb() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = text.lines().find_map(|l| l.strip_prefix("MemAvailable:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb >> 10)
}

/// testpmd io-forward over `pcap` for `secs`: packets forwarded per second.
pub fn testpmd(rig: &Rig, pcap: &Pcap, secs: f64, tag: &str) -> Result<f64, String> {
    let prefix = format!("pal-e2e-tp-{}-{tag}", std::process::id());
    let mbufs = testpmd_mbufs(pcap.packets);
    // stdbuf: stdout is a pipe and the "Press enter" prompt must not sit in a buffer.
    let mut cmd = Command::new("stdbuf");
    cmd.args(["-oL", "dpdk-testpmd"])
        .args(["-l", &format!("{},{}", rig.main_cpu, rig.worker_cpu), "--main-lcore", &rig.main_cpu.to_string()])
        .args(["--no-pci", "--no-huge", "-m", &eal_mb(mbufs).to_string(), "--log-level", "lib.eal:warning"])
        .args(["--file-prefix", &prefix]);
    for v in vdevs(&pcap.path) {
        cmd.args(["--vdev", &v]);
    }
    cmd.args(["--", "--forward-mode=io", "--nb-cores=1", "--auto-start", "--burst=32", "--no-flush-rx"])
        .arg(format!("--total-num-mbufs={mbufs}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Reap(cmd.spawn().map_err(|e| format!("dpdk-testpmd: {e} (apt-get install dpdk)"))?);
    let stdout = child.0.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut started = false;
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        if line.contains("Press enter to exit") {
            started = true;
            break;
        }
    }
    if !started {
        let mut err = String::new();
        if let Some(mut e) = child.0.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        remove_runtime_dir(&prefix);
        return Err(format!("testpmd did not start forwarding: {}", last_lines(&err, 5)));
    }
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let _ = child.0.stdin.as_mut().expect("piped stdin").write_all(b"\n");
    let elapsed = t0.elapsed().as_secs_f64();
    let mut tx_total = None;
    let mut in_accumulated = false;
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        in_accumulated |= line.contains("Accumulated forward statistics for all ports");
        if let (true, Some(rest)) = (in_accumulated, line.split("TX-packets:").nth(1)) {
            tx_total = rest.split_whitespace().next().and_then(|n| n.parse::<u64>().ok());
            break;
        }
    }
    drop(lines);
    let _ = child.0.wait();
    remove_runtime_dir(&prefix);
    tx_total.map(|tx| tx as f64 / elapsed).ok_or_else(|| "testpmd printed no accumulated TX-packets".to_owned())
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// EAL leaves `/var/run/dpdk/<prefix>` behind; the prefix is ours alone.
fn remove_runtime_dir(prefix: &str) {
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
}

/// What one `palisade run` counted (its `--stats-json`).
#[derive(Clone, Copy, Debug, Default)]
pub struct RunStats {
    pub rx: u64,
    pub tx: u64,
    pub seconds: f64,
    pub tsc_hz: f64,
}

/// `palisade run` over `pcap` enforcing the manifests in `manifests` for `secs`; a
/// mid-stream file (`tcp_loose`) with `--tcp-loose`.
pub fn palisade(rig: &Rig, pcap: &Pcap, manifests: &Path, secs: f64, flow_capacity: usize) -> Result<RunStats, String> {
    let stats = rig.scratch.join("stats.json");
    let _ = std::fs::remove_file(&stats);
    let mbufs = palisade_mbufs(pcap.packets);
    let mut cmd = Command::new(&rig.palisade);
    cmd.arg("run");
    for v in vdevs(&pcap.path) {
        cmd.args(["--port", &v]);
    }
    cmd.args(["--mode", "wire", "--workers", &rig.worker_cpu.to_string(), "--no-huge"])
        .args(["--memory-mb", &eal_mb(mbufs).to_string(), "--mbufs", &mbufs.to_string()])
        .args(["--idle-backoff", "off", "--duration", &format!("{secs:.4}")])
        .args(["--flow-capacity", &flow_capacity.to_string()])
        // Its own socket and no metrics listener: a second harness (or a palisade the
        // machine runs) must not collide on /run/palisade or port 9469.
        .args(["--metrics-addr", "off", "--control-socket"])
        .arg(rig.scratch.join("control.sock"))
        .args(pcap.tcp_loose.then_some("--tcp-loose"))
        .arg("--manifests")
        .arg(manifests)
        .args(["--eal-arg=--log-level=lib.eal:warning", "--stats-json"])
        .arg(&stats)
        .env("PALISADE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = Reap(cmd.spawn().map_err(|e| format!("{}: {e}", rig.palisade.display()))?);
    let mut err = String::new();
    if let Some(mut e) = child.0.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    let ok = child.0.wait().map(|s| s.success()).unwrap_or(false);
    if !ok {
        return Err(format!("palisade run failed: {}", last_lines(&err, 5)));
    }
    let text = std::fs::read_to_string(&stats).map_err(|e| format!("{}: {e}", stats.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("stats json: {e}"))?;
    let sum = |field: &str| json["workers"].as_array().map(|ws| ws.iter().map(|w| w[field].as_u64().unwrap_or(0)).sum()).unwrap_or(0);
    Ok(RunStats {
        rx: sum("rx"),
        tx: sum("tx"),
        seconds: json["seconds_forwarding"].as_f64().unwrap_or(0.0),
        tsc_hz: json["tsc_hz"].as_f64().unwrap_or(0.0),
    })
}

/// Run lengths (seconds) whose difference is the steady-state window of one pcap:
/// the short run has passed the warm-up, the long one has not left the steady stretch.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub short: f64,
    pub long: f64,
}

/// A steady-state palisade figure: the difference of a short and a long run.
#[derive(Clone, Copy, Debug)]
pub struct Steady {
    /// The replay's packets the window covers: from the short run's last to the long's.
    pub from: u64,
    pub to: u64,
    pub pps: f64,
    pub forwarded_share: f64,
    pub tsc_hz: f64,
    pub window_s: f64,
    pub window_packets: u64,
}

/// Measures palisade's steady state on `pcap` as (rx_long − rx_short) / (s_long −
/// s_short): both runs share the warm-up (EAL start, first handshakes, first faults),
/// so it cancels. The short run must have received every warm-up packet, the long one
/// no packet past the steady stretch of the first pass; `window` is found on the first
/// call (and reused, re-checked, after).
pub fn palisade_steady(rig: &Rig, pcap: &Pcap, manifests: &Path, secs: f64, window: &mut Option<Window>, flow_capacity: usize) -> Result<Steady, String> {
    let run = |d: f64| palisade(rig, pcap, manifests, d, flow_capacity);
    let mut w = window.unwrap_or(Window {
        short: match pcap.kind {
            super::traffic::Kind::Established => 0.3,
            _ => 0.01,
        },
        long: 0.0,
    });
    // The short run lands past the warm-up (aiming 1.5 x it, at most a quarter into a
    // bounded steady stretch), the long one beyond it and inside the stretch (aiming at
    // 70 % of what is left).
    let warm = pcap.warm as f64;
    let end = pcap.steady_end.map(|e| e as u64);
    let aim = match end {
        Some(e) => (1.5 * warm).min(warm + (e as f64 - warm) / 4.0),
        None => 1.5 * warm,
    };
    let (short, a) = land(&run, w.short, pcap.warm as u64, end, aim).map_err(|e| format!("short run: {e}"))?;
    w.short = short;
    if w.long <= w.short {
        let rate = a.rx as f64 / a.seconds.max(1e-6);
        w.long = w.short
            + match end {
                None => secs,
                Some(e) => secs.min(0.7 * (e - a.rx) as f64 / rate),
            };
    }
    // Unbounded: `secs` more at the short run's average rate.
    let aim = end.map_or(a.rx as f64 * (1.0 + secs / w.short.max(1e-3)), |e| a.rx as f64 + 0.7 * (e - a.rx) as f64);
    let (long, b) = land(&run, w.long, a.rx + 1, end.map(|e| e + 1), aim).map_err(|e| format!("long run: {e}"))?;
    w.long = long;
    *window = Some(w);
    let (drx, dtx, ds) = (b.rx.saturating_sub(a.rx), b.tx.saturating_sub(a.tx), b.seconds - a.seconds);
    if drx == 0 || ds <= 0.002 {
        return Err(format!("window too short to time: {drx} packets in {ds:.4} s"));
    }
    Ok(Steady { from: a.rx, to: b.rx, pps: drx as f64 / ds, forwarded_share: dtx as f64 / drx as f64, tsc_hz: b.tsc_hz, window_s: ds, window_packets: drx })
}

/// A run length, starting from `d`, whose received count lands in [`from`, `to`) (`to`
/// None: unbounded), and that run. Steps scale the length towards `aim` packets until
/// a too-short and a too-long run bracket it, then bisect: the rate is not constant
/// (a warm-up of new flows is slower than the hits after it).
fn land(run: &dyn Fn(f64) -> Result<RunStats, String>, mut d: f64, from: u64, to: Option<u64>, aim: f64) -> Result<(f64, RunStats), String> {
    let (mut short, mut long): (Option<f64>, Option<f64>) = (None, None);
    for _ in 0..8 {
        let s = run(d)?;
        let below = s.rx < from;
        if !below && to.is_none_or(|t| s.rx < t) {
            return Ok((d, s));
        }
        *(if below { &mut short } else { &mut long }) = Some(d);
        d = match (short, long) {
            (Some(lo), Some(hi)) => (lo + hi) / 2.0,
            _ => d * aim / s.rx.max(1) as f64 + if below { 0.02 } else { 0.0 },
        };
    }
    Err(format!("no run length lands between packet {from} and {} of the replay (tried {short:?} s too short, {long:?} s too long)", to.map_or("the end".to_owned(), |t| t.to_string())))
}

/// OVS-DPDK with a conntrack ACL on the same vdevs and core, through the script.
pub struct OvsResult {
    pub pps: f64,
    pub forwarded_share: f64,
}

/// OVS's shared mempool holds at most 262144 mbufs, and net_pcap's infinite_rx copies
/// the whole file into it (leave room for the rings).
pub const OVS_MAX_PCAP_PACKETS: usize = 200_000;

/// Runs `benches/ovs/ovs-conntrack.sh`; Err says why it could not (not installed, ...).
pub fn ovs(rig: &Rig, pcap: &Pcap, allowed: &str, secs: f64, tag: &str) -> Result<OvsResult, String> {
    if pcap.packets > OVS_MAX_PCAP_PACKETS {
        return Err(format!("{} packets: more than OVS's pool (262144 mbufs) can hold for net_pcap's infinite_rx", pcap.packets));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/ovs/ovs-conntrack.sh");
    let rules = rig.scratch.join(format!("ovs-allowed-{tag}.txt"));
    std::fs::write(&rules, allowed).map_err(|e| e.to_string())?;
    let out = rig.scratch.join(format!("ovs-{tag}.json"));
    let _ = std::fs::remove_file(&out);
    let mbufs = pcap.packets as u64 + 65_536;
    let mut child = Reap(
        Command::new("bash")
            .arg(&script)
            .args(["--pcap".as_ref(), pcap.path.as_os_str()])
            .args(["--allowed".as_ref(), rules.as_os_str()])
            .args(["--cpu", &rig.worker_cpu.to_string(), "--main-cpu", &rig.main_cpu.to_string()])
            // OVS sizes its own shared pool (up to 262144 mbufs of ~3 KB).
            .args(["--secs", &format!("{secs}"), "--memory-mb", &eal_mb(mbufs).max(1536).to_string()])
            .args(["--json".as_ref(), out.as_os_str()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?,
    );
    let mut err = String::new();
    if let Some(mut e) = child.0.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    let status = child.0.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        // The script's own messages say why; the log lines around them are context.
        let own: Vec<&str> = err.lines().filter(|l| l.starts_with("ovs-conntrack.sh:")).collect();
        return Err(if own.is_empty() { last_lines(&err, 3) } else { own.join(" | ") });
    }
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    Ok(OvsResult { pps: json["rx_pps"].as_f64().unwrap_or(0.0), forwarded_share: json["forwarded_share"].as_f64().unwrap_or(0.0) })
}
