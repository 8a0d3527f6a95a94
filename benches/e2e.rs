//! End-to-end throughput: `palisade run` enforcing a synthetic cluster's policy against
//! `dpdk-testpmd --forward-mode=io` (and OVS-DPDK with a conntrack ACL, when installed)
//! on the same vdevs — `net_pcap,infinite_rx=1` replaying a generated pcap into
//! `net_null,no-rx=1` — the same single worker core, `--no-pci --no-huge`, alternating
//! round by round. Prints Mpps, cycles per packet and the ratios; writes
//! benches/results/e2e.json and benches/results/e2e.svg.
//!
//! Traffic (benches/e2e/traffic.rs): established flows, new flows, a mix; 64 B or IMIX;
//! 1k / 100k / 1M flows between the cluster's pods, about half allowed by the 10k-policy
//! set. Policy: the same 10k pods with 0, 1k or 10k policies.
//!
//! Steady state: the pcap loops, so palisade's figure is the difference of two runs of
//! different lengths over the same file, (rx_long − rx_short) / (s_long − s_short). The
//! short run has seen every handshake (established, mix); for new flows and the mix the
//! long run stays inside the first pass, where each new-flow packet is a flow never seen
//! before. testpmd holds no state: one run of the full length.
//!
//! Memory: net_pcap keeps the whole file in the pool (`palisade run --mbufs`, testpmd
//! `--total-num-mbufs`), a 4 KiB page per packet with --no-huge: 1M new flows take
//! about 5 GB, and 1M established flows, picked up mid-stream (`--tcp-loose`, see
//! benches/e2e/traffic.rs), about 9 GB; a 1M-flow mix is not measured (see
//! `MIX_MAX_FLOWS`). A point that needs more than the machine has available is skipped
//! with a note saying so. OVS-DPDK's pool stops at 262144 mbufs: it is measured up to
//! 100k flows.
//!
//! `cargo bench --bench e2e` runs the quick matrix (< 5 min); knobs:
//! - PALISADE_E2E=full: every kind × size × flow count at 1k policies, plus policy sweeps;
//! - PALISADE_E2E_ONLY=established-64B: only points whose name contains it;
//! - PALISADE_E2E_ROUNDS, PALISADE_E2E_SECS: rounds and run length (s);
//! - PALISADE_E2E_WORKER_CPU: the worker core (default the last allowed CPU);
//! - PALISADE_E2E_OVS=0: skip OVS-DPDK.

#[path = "e2e/chart.rs"]
mod chart;
#[path = "e2e/procs.rs"]
mod procs;
#[path = "e2e/traffic.rs"]
mod traffic;

use procs::{Rig, Steady, Window};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use traffic::{Kind, Pcap, PolicySet, Size};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One measured configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Point {
    kind: Kind,
    size: Size,
    flows: usize,
    policies: usize,
}

const KINDS: [Kind; 3] = [Kind::Established, Kind::NewFlows, Kind::Mix];

/// The most established flows a mix is measured with. Its steady stretch follows every
/// flow's setup in the first pass, so 1M flows would need a file of some 3.2M packets
/// (13 GB of pool with --no-huge); without handshakes (mid-stream, as established 1M
/// does) the 1M pickups take longer than the stretch a 9 GB file leaves, and the
/// difference of two runs is then mostly the pickups' run-to-run noise (tried: a 0.09 s
/// window, 0.24 Mpps).
const MIX_MAX_FLOWS: usize = 100_000;
const SIZES: [Size; 2] = [Size::B64, Size::Imix];

impl Point {
    fn new(kind: Kind, size: Size, flows: usize, policies: usize) -> Point {
        Point { kind, size, flows, policies }
    }
    fn kind(&self) -> Kind {
        self.kind
    }
    fn size(&self) -> Size {
        self.size
    }
    fn traffic(&self) -> (Kind, Size, usize) {
        (self.kind(), self.size(), self.flows)
    }
    fn name(&self) -> String {
        format!("{}-{}-{}flows-{}pol", self.kind().name(), self.size().name(), human(self.flows), human(self.policies))
    }
}

fn human(n: usize) -> String {
    match n {
        0 => "0".into(),
        n if n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// The new-flow target's own point (≥ 3 Mpps at 10k policies): 1M new flows keep the
/// first pass about 0.3 s long, where 100k give a 5-20 ms window that moves ±10 % from
/// round to round.
const NEW_FLOWS_TARGET: Point = Point { kind: Kind::NewFlows, size: Size::B64, flows: 1_000_000, policies: 10_000 };

fn matrix(full: bool) -> Vec<Point> {
    let mut points = Vec::new();
    if full {
        for kind in KINDS {
            for size in SIZES {
                for flows in [1_000, 100_000, 1_000_000] {
                    points.push(Point::new(kind, size, flows, 1_000));
                }
            }
            for policies in [0, 10_000] {
                for flows in [1_000, 100_000] {
                    points.push(Point::new(kind, Size::B64, flows, policies));
                }
            }
        }
        points.push(NEW_FLOWS_TARGET);
    } else {
        points.extend([
            Point::new(Kind::Established, Size::B64, 1_000, 0),
            Point::new(Kind::Established, Size::B64, 1_000, 1_000),
            Point::new(Kind::Established, Size::B64, 1_000, 10_000),
            Point::new(Kind::Established, Size::B64, 100_000, 1_000),
            Point::new(Kind::NewFlows, Size::B64, 100_000, 10_000),
            NEW_FLOWS_TARGET,
            Point::new(Kind::Mix, Size::Imix, 1_000, 1_000),
        ]);
    }
    // New-flow traffic is timed inside the first pass of its file; 1k new flows last a
    // fraction of a millisecond, too short to time (the per-packet cost at any table
    // size is in `cargo bench --bench pipeline`).
    points.retain(|p| !(p.kind() == Kind::NewFlows && p.flows < 100_000));
    points.retain(|p| !(p.kind() == Kind::Mix && p.flows > MIX_MAX_FLOWS));
    points.sort();
    points.dedup();
    points
}

fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 0 { (v[mid - 1] + v[mid]) / 2.0 } else { v[mid] })
}

#[derive(Default)]
struct Outcome {
    testpmd: Vec<f64>,
    palisade: Vec<Steady>,
    ratios: Vec<f64>,
    window: Option<Window>,
    errors: Vec<String>,
    ovs: Option<Result<procs::OvsResult, String>>,
    /// Per palisade run, the share policy must forward in its window.
    expected_share: Vec<f64>,
    allowed_flows: usize,
    /// Not run: the pools would not fit the machine's memory (see `errors`).
    skipped: bool,
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

fn cpu_model() -> String {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = text.lines().find_map(|l| l.strip_prefix("model name").map(|r| r.trim_start_matches([' ', '\t', ':']).to_owned()));
    format!("{} ({} CPUs)", model.unwrap_or_else(|| "unknown CPU".into()), std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0))
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this too: only run
    // when benchmarking.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let full = std::env::var("PALISADE_E2E").map(|v| v == "full").unwrap_or(false);
    let rounds: usize = env_or("PALISADE_E2E_ROUNDS", if full { 3 } else { 2 });
    let secs: f64 = env_or("PALISADE_E2E_SECS", if full { 3.0 } else { 1.0 });
    let only = std::env::var("PALISADE_E2E_ONLY").unwrap_or_default();
    let with_ovs = std::env::var("PALISADE_E2E_OVS").map(|v| v != "0").unwrap_or(true);
    let cpus = dataplane::dpdk::host::allowed_cpus().expect("read /proc/self/status");
    let worker_cpu: u32 = env_or("PALISADE_E2E_WORKER_CPU", *cpus.last().expect("a CPU"));
    let main_cpu = *cpus.iter().find(|&&c| c != worker_cpu).unwrap_or(&worker_cpu);
    let scratch = target_dir().join("e2e");
    std::fs::create_dir_all(&scratch).expect("scratch dir under target/");
    let palisade = PathBuf::from(env!("CARGO_BIN_EXE_palisade"));
    let rig = Rig { worker_cpu, main_cpu, palisade, scratch: scratch.clone() };

    let points: Vec<Point> = matrix(full).into_iter().filter(|p| p.name().contains(&only)).collect();
    println!(
        "e2e: {} matrix, {} points, {rounds} alternating rounds, {secs} s runs; worker core {worker_cpu}, main core {main_cpu}; \
         vdevs net_pcap(infinite_rx) -> net_null(no-rx); --no-pci --no-huge; {}",
        if full { "full" } else { "quick" },
        points.len(),
        cpu_model()
    );
    println!(
        "steady state: palisade = (rx_long - rx_short)/(s_long - s_short) over two runs on the same pcap; the short run \
         has passed every handshake, the long one (new/mix) stays inside the file's first pass"
    );
    if full {
        println!("mix at 1M flows: not measured (its steady stretch cannot be held in memory; see MIX_MAX_FLOWS)");
    }

    // Policy sets (the 10k set also picks the flows, so every pcap is the same whatever
    // the filter) and pcaps, all under target/.
    let t0 = std::time::Instant::now();
    let mut sets: BTreeMap<usize, PolicySet> = BTreeMap::new();
    for policies in points.iter().map(|p| p.policies).chain([10_000]) {
        sets.entry(policies).or_insert_with(|| traffic::policy_set(&scratch, policies));
    }
    let addrs = traffic::pod_addrs();
    let mut pcaps: BTreeMap<(Kind, Size, usize), Pcap> = BTreeMap::new();
    for p in &points {
        let (kind, size, flows) = p.traffic();
        if let std::collections::btree_map::Entry::Vacant(e) = pcaps.entry((kind, size, flows)) {
            let pcap = traffic::generate(&scratch, &addrs, &sets[&10_000].snapshot, kind, size, flows);
            println!(
                "pcap {}: {} flows, {} packets, {:.1} MB, warm-up {} packets{}, steady {}",
                pcap.path.file_name().unwrap().to_string_lossy(),
                pcap.flows,
                pcap.packets,
                pcap.bytes as f64 / 1e6,
                pcap.warm,
                if pcap.tcp_loose { " (no handshakes: palisade picks the flows up mid-stream, --tcp-loose)" } else { "" },
                pcap.steady_end.map_or("to the end, every pass".to_owned(), |e| format!("to packet {e} of the first pass"))
            );
            e.insert(pcap);
        }
    }
    println!("generated {} policy sets and {} pcaps in {:.1} s", sets.len(), pcaps.len(), t0.elapsed().as_secs_f64());

    let mut outcomes: BTreeMap<Point, Outcome> = BTreeMap::new();
    let available_mb = procs::memory_available_mb();
    for p in &points {
        let pcap = &pcaps[&p.traffic()];
        let set = &sets[&p.policies];
        let o = outcomes.entry(*p).or_default();
        o.allowed_flows = pcap.allowed_flows(set);
        // Leave the rest of the machine 2 GB.
        let need_mb = procs::memory_needed_mb(pcap.packets);
        if let Some(avail) = available_mb.filter(|&a| need_mb + 2048 > a) {
            o.skipped = true;
            o.errors.push(format!(
                "skipped: {} packets in the pool take {need_mb} MB with --no-huge (a 4 KiB page each), {avail} MB available",
                pcap.packets
            ));
            println!("{}: {}", p.name(), o.errors.last().expect("just pushed"));
        }
    }
    for round in 0..rounds {
        for p in &points {
            let pcap = &pcaps[&p.traffic()];
            let set = &sets[&p.policies];
            let o = outcomes.get_mut(p).expect("outcome per point");
            if o.skipped {
                continue;
            }
            // Room for every flow of the file (1M by default, as `palisade run`).
            let flow_capacity = pcap.flow_list.len().next_power_of_two().max(1 << 20);
            let tp = procs::testpmd(&rig, pcap, secs, &format!("{round}"));
            let pal = procs::palisade_steady(&rig, pcap, &set.dir, secs, &mut o.window, flow_capacity);
            match (&tp, &pal) {
                (Ok(t), Ok(s)) => {
                    o.expected_share.push(pcap.expected_forward_share(set, s.from, s.to));
                    println!(
                        "round {round} {:<42} testpmd {:7.3} Mpps  palisade {:7.3} Mpps  ratio {:.3}  fwd {:.3} (expect {:.3})  window {:.3} s",
                        p.name(),
                        t / 1e6,
                        s.pps / 1e6,
                        s.pps / t,
                        s.forwarded_share,
                        o.expected_share.last().copied().unwrap_or(f64::NAN),
                        s.window_s
                    );
                    o.ratios.push(s.pps / t);
                }
                _ => println!("round {round} {:<42} testpmd {:?}  palisade {:?}", p.name(), tp.as_ref().map(|t| t / 1e6), pal.as_ref().map(|s| s.pps / 1e6)),
            }
            match tp {
                Ok(t) => o.testpmd.push(t),
                Err(e) => o.errors.push(format!("testpmd: {e}")),
            }
            match pal {
                Ok(s) => o.palisade.push(s),
                Err(e) => o.errors.push(format!("palisade: {e}")),
            }
            // OVS is timed after a warm-up, not inside a first pass: established only.
            if round == 0 && with_ovs && p.size() == Size::B64 && p.kind() == Kind::Established {
                let tag = p.name();
                let r = procs::ovs(&rig, pcap, &traffic::allowed_tuples(pcap, set), secs.max(3.0), &tag);
                match &r {
                    Ok(v) => println!("round {round} {:<42} OVS-DPDK conntrack {:7.3} Mpps  fwd {:.3}", tag, v.pps / 1e6, v.forwarded_share),
                    Err(e) => println!("round {round} {:<42} OVS-DPDK: {e}", tag),
                }
                o.ovs = Some(r);
            }
        }
    }
    report(&points, &outcomes, &pcaps, full, rounds, secs, &rig);
}

struct Summary {
    testpmd: Option<f64>,
    palisade: Option<f64>,
    ratio: Option<f64>,
    ovs: Option<f64>,
    tsc_hz: Option<f64>,
}

fn summarize(o: &Outcome) -> Summary {
    let pal: Vec<f64> = o.palisade.iter().map(|s| s.pps).collect();
    Summary {
        testpmd: median(&o.testpmd),
        palisade: median(&pal),
        ratio: median(&o.ratios),
        ovs: o.ovs.as_ref().and_then(|r| r.as_ref().ok()).map(|r| r.pps),
        tsc_hz: o.palisade.first().map(|s| s.tsc_hz).filter(|&h| h > 0.0),
    }
}

fn report(points: &[Point], outcomes: &BTreeMap<Point, Outcome>, pcaps: &BTreeMap<(Kind, Size, usize), Pcap>, full: bool, rounds: usize, secs: f64, rig: &Rig) {
    let mpps = |v: Option<f64>| v.map_or("     -".to_owned(), |v| format!("{:6.2}", v / 1e6));
    let cyc = |v: Option<f64>, hz: Option<f64>| match (v, hz) {
        (Some(v), Some(hz)) => format!("{:5.0}", hz / v),
        _ => "    -".to_owned(),
    };
    println!();
    println!("median over rounds (ratio = median of per-round palisade/testpmd); cycles/packet = TSC Hz / rate (one busy-polling core)");
    println!(
        "{:<44} {:>8} {:>8} {:>7} {:>6} {:>6} {:>8} {:>8} {:>8}",
        "point", "testpmd", "palisade", "ratio", "cyc_tp", "cyc_pa", "fwd", "OVS", "pal/OVS"
    );
    let mut rows = Vec::new();
    for p in points {
        let o = &outcomes[p];
        let s = summarize(o);
        let fwd = match (o.palisade.first(), o.expected_share.first()) {
            (Some(st), Some(e)) => format!("{:.2}/{:.2}", st.forwarded_share, e),
            _ => "-".to_owned(),
        };
        let pal_ovs = match (s.palisade, s.ovs) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.1}x", a / b),
            _ => "-".to_owned(),
        };
        println!(
            "{:<44} {:>8} {:>8} {:>7} {:>6} {:>6} {:>8} {:>8} {:>8}",
            p.name(),
            mpps(s.testpmd),
            mpps(s.palisade),
            s.ratio.map_or("-".to_owned(), |r| format!("{r:.3}")),
            cyc(s.testpmd, s.tsc_hz),
            cyc(s.palisade, s.tsc_hz),
            fwd,
            mpps(s.ovs),
            pal_ovs
        );
        for e in &o.errors {
            println!("    note: {e}");
        }
        if let Some(Err(e)) = &o.ovs {
            println!("    OVS-DPDK: {e}");
        }
        let pcap = &pcaps[&p.traffic()];
        rows.push(json!({
            "name": p.name(),
            "kind": p.kind().name(),
            "size": p.size().name(),
            "flows": p.flows,
            "policies": p.policies,
            "pcap_packets": pcap.packets,
            "warm_packets": pcap.warm,
            "steady_end_packet": pcap.steady_end,
            "allowed_flows": o.allowed_flows,
            "flows_in_pcap": pcap.flow_list.len(),
            "palisade_tcp_loose": pcap.tcp_loose,
            "expected_forward_share": o.expected_share,
            "testpmd_pps": o.testpmd,
            "palisade_pps": o.palisade.iter().map(|s| s.pps).collect::<Vec<_>>(),
            "palisade_forward_share": o.palisade.iter().map(|s| s.forwarded_share).collect::<Vec<_>>(),
            "palisade_window_s": o.palisade.iter().map(|s| s.window_s).collect::<Vec<_>>(),
            "palisade_window_packets": o.palisade.iter().map(|s| s.window_packets).collect::<Vec<_>>(),
            "ratios": o.ratios,
            "median": {"testpmd_pps": s.testpmd, "palisade_pps": s.palisade, "ratio": s.ratio, "ovs_pps": s.ovs,
                       "testpmd_cycles_per_packet": s.testpmd.zip(s.tsc_hz).map(|(v, hz)| hz / v),
                       "palisade_cycles_per_packet": s.palisade.zip(s.tsc_hz).map(|(v, hz)| hz / v)},
            "ovs": match &o.ovs {
                Some(Ok(r)) => json!({"pps": r.pps, "forward_share": r.forwarded_share}),
                Some(Err(e)) => json!({"error": e}),
                None => json!(null),
            },
            "errors": o.errors,
        }));
    }
    let date = Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]).output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default();
    let conditions = format!(
        "{} matrix, {rounds} rounds, {secs} s runs, worker core {}, main core {}, --no-pci --no-huge, net_pcap infinite_rx -> net_null no-rx, burst 32",
        if full { "full" } else { "quick" },
        rig.worker_cpu,
        rig.main_cpu
    );
    let doc = json!({"date": date, "cpu": cpu_model(), "conditions": conditions, "points": rows});
    let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results");
    std::fs::create_dir_all(&results).expect("benches/results");
    std::fs::write(results.join("e2e.json"), serde_json::to_string_pretty(&doc).expect("json") + "\n").expect("write e2e.json");

    // Chart: established 64 B traffic against flow count (1k policies) and policy count
    // (1k flows).
    let group = |label: String, p: Point| {
        let s = outcomes.get(&p).map(summarize);
        let v = |f: fn(&Summary) -> Option<f64>| s.as_ref().and_then(f).map(|x| x / 1e6);
        chart::Group { label, values: vec![v(|s| s.testpmd), v(|s| s.palisade), v(|s| s.ovs)] }
    };
    let flows: Vec<chart::Group> = [1_000, 100_000, 1_000_000]
        .iter()
        .map(|&f| group(human(f), Point::new(Kind::Established, Size::B64, f, 1_000)))
        .collect();
    let policies: Vec<chart::Group> = [0, 1_000, 10_000]
        .iter()
        .map(|&n| group(human(n), Point::new(Kind::Established, Size::B64, 1_000, n)))
        .collect();
    let panels = [
        chart::Panel { title: "established, 64 B, 1k policies".into(), axis: "flows".into(), groups: flows },
        chart::Panel { title: "established, 64 B, 1k flows".into(), axis: "policies".into(), groups: policies },
    ];
    let svg = chart::svg("palisade vs testpmd io vs OVS-DPDK conntrack — one core, Mpps", &panels, &format!("{date}; {}; {conditions}", cpu_model()));
    std::fs::write(results.join("e2e.svg"), svg).expect("write e2e.svg");
    println!("\nwrote {} and {}", results.join("e2e.json").display(), results.join("e2e.svg").display());
}
