//! The real worker loop on ring-backed ports (EAL with `--no-pci --no-huge`, no device
//! probed): known frames go in, and exactly those frames come out where the mode says,
//! counted by the workers, by the PMDs and by what the rings hold. One #[test], because
//! EAL can be initialised once per process.
//!
//! Phases, on the same EAL and ports:
//! 1. wire mode, forward everything: A→B and B→A, every frame once, in order, bytes
//!    unchanged, no drops;
//! 2. wire mode, a filter refusing odd sequence numbers, with a drop sink: the even
//!    frames cross, the odd ones land on the sink, nothing else is lost;
//! 3. bridge mode over A, B, C: broadcast and unknown unicast flood, learned unicast
//!    goes to one port, a frame for a MAC behind its own input port is dropped.
//!
//! Finally every mbuf is back in the pool.

use dataplane::dpdk::{host, Eal, Mempool, Port, PortConfig, Ring};
use dataplane::filter::{ForwardAll, PacketFilter};
use dataplane::worker::{run_workers, Mode, PortReport, RunLimits, StopReason, WorkerConfig};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0xa];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0xb];
const MAC_C: [u8; 6] = [0x02, 0, 0, 0, 0, 0xc];
const MAC_X: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];
const BROADCAST: [u8; 6] = [0xff; 6];

/// An Ethernet frame (local experimental ethertype) carrying `seq`, `len` bytes long.
fn frame(dst: [u8; 6], src: [u8; 6], seq: u32, len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend((f.len()..len).map(|i| (i as u32 ^ seq) as u8));
    f
}

fn seq_of(f: &[u8]) -> u32 {
    u32::from_be_bytes(f[14..18].try_into().unwrap())
}

/// Refuses frames with an odd sequence number.
struct DropOdd;

impl PacketFilter for DropOdd {
    fn begin_burst(&mut self, _now: u64) {}
    fn admit(&mut self, frame: &[u8], _in_port: u16) -> bool {
        seq_of(frame) % 2 == 0
    }
    fn idle(&mut self, _now: u64) {}
}

struct RingPort {
    rx: Arc<Ring>,
    tx: Arc<Ring>,
    port: Port,
}

fn ring_port(eal: &Arc<Eal>, pool: &Arc<Mempool>, name: &str) -> RingPort {
    let rx = Ring::new(eal, &format!("{name}_rx"), 16384).unwrap();
    let tx = Ring::new(eal, &format!("{name}_tx"), 16384).unwrap();
    let cfg = PortConfig { queues: 1, ..PortConfig::default() };
    let port = Port::from_rings(pool, name, &[rx.clone()], &[tx.clone()], &cfg).unwrap();
    RingPort { rx, tx, port }
}

fn inject(pool: &Mempool, ring: &Ring, frames: &[Vec<u8>]) {
    for f in frames {
        let m = pool.alloc_frame(f).expect("mempool has room");
        ring.enqueue(m).expect("ring has room");
    }
}

fn collect(ring: &Ring) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| ring.dequeue()).map(|m| m.data().to_vec()).collect()
}

fn limits() -> RunLimits {
    RunLimits { duration: Some(Duration::from_secs(60)), stop_after_idle: Some(Duration::from_millis(300)) }
}

fn no_drops(r: &PortReport) {
    assert_eq!(r.drops(), 0, "port {}: {r:?}", r.name);
}

#[test]
fn worker_loop_forwards_known_packets_exactly() {
    let cpus = host::allowed_cpus().unwrap();
    let (main_cpu, worker_cpu) = (cpus[0], *cpus.get(1).unwrap_or(&cpus[0]));
    let prefix = format!("palisade-test-ring-{}", std::process::id());
    let lcores = format!("0@{main_cpu},1@{worker_cpu}");
    let eal = Eal::init(&[
        "--no-pci", "--no-huge", "-m", "256", "--file-prefix", &prefix, "--lcores", &lcores, "--main-lcore", "0",
    ])
    .unwrap();
    assert_eq!(eal.worker_lcores(), [1]);
    let pool = Mempool::new(&eal, "test_pool", 32767, 256, -1).unwrap();
    let a = ring_port(&eal, &pool, "ring_a");
    let b = ring_port(&eal, &pool, "ring_b");
    let c = ring_port(&eal, &pool, "ring_c");
    let sink = ring_port(&eal, &pool, "ring_sink");
    let stop = AtomicBool::new(false);

    // Phase 1: wire, forward everything.
    let from_a: Vec<Vec<u8>> = (0..10_000).map(|i| frame(MAC_B, MAC_A, i, 60 + (i as usize * 7) % 1455)).collect();
    let from_b: Vec<Vec<u8>> = (0..7_000).map(|i| frame(MAC_A, MAC_B, i, 64 + (i as usize * 13) % 1451)).collect();
    inject(&pool, &a.rx, &from_a);
    inject(&pool, &b.rx, &from_b);
    let wire = WorkerConfig { mode: Mode::Wire, ..WorkerConfig::default() };
    let ports = [a.port, b.port];
    let r = run_workers(&eal, &ports, None, vec![ForwardAll], &wire, &limits(), &stop).unwrap();
    assert_eq!(r.stop_reason, StopReason::Idle);
    assert_eq!(collect(&b.tx), from_a, "A→B: every frame once, in order, unchanged");
    assert_eq!(collect(&a.tx), from_b, "B→A: every frame once, in order, unchanged");
    let w = &r.workers[0];
    assert_eq!((w.rx, w.tx, w.filtered, w.tx_unsent, w.l2_dropped), (17_000, 17_000, 0, 0, 0));
    assert_eq!((r.ports[0].stats.rx_packets, r.ports[0].stats.tx_packets), (10_000, 7_000));
    assert_eq!((r.ports[1].stats.rx_packets, r.ports[1].stats.tx_packets), (7_000, 10_000));
    r.ports.iter().for_each(no_drops);

    // Phase 2: wire, odd sequence numbers refused and captured on the drop sink.
    let from_a: Vec<Vec<u8>> = (0..1_001).map(|i| frame(MAC_B, MAC_A, i, 100)).collect();
    let from_b: Vec<Vec<u8>> = (0..500).map(|i| frame(MAC_A, MAC_B, i, 200)).collect();
    inject(&pool, &a.rx, &from_a);
    inject(&pool, &b.rx, &from_b);
    let r = run_workers(&eal, &ports, Some(&sink.port), vec![DropOdd], &wire, &limits(), &stop).unwrap();
    let even = |v: &[Vec<u8>]| v.iter().filter(|f| seq_of(f) % 2 == 0).cloned().collect::<Vec<_>>();
    let odd = |v: &[Vec<u8>]| v.iter().filter(|f| seq_of(f) % 2 == 1).cloned().collect::<Vec<_>>();
    assert_eq!(collect(&b.tx), even(&from_a));
    assert_eq!(collect(&a.tx), even(&from_b));
    let mut dropped = collect(&sink.tx);
    dropped.sort_by_key(|f| (f[11], seq_of(f)));
    let mut want_dropped = odd(&from_a);
    want_dropped.extend(odd(&from_b));
    want_dropped.sort_by_key(|f| (f[11], seq_of(f)));
    assert_eq!(dropped, want_dropped, "refused frames land on the drop sink");
    let w = &r.workers[0];
    assert_eq!((w.rx, w.tx, w.filtered, w.tx_unsent), (1_501, 1_501, 750, 0));
    assert_eq!((r.ports[0].filtered, r.ports[1].filtered), (500, 250));
    assert_eq!(r.drop_sink.as_ref().map(|s| s.tx_unsent), Some(0));

    // Phase 3: bridge over A, B, C.
    let [pa, pb] = ports;
    let bridge_ports = [pa, pb, c.port];
    let bridge = WorkerConfig { mode: Mode::Bridge, ..WorkerConfig::default() };
    let bcast = frame(BROADCAST, MAC_A, 1, 60); // floods to B and C; learns A behind port 0
    let unknown = frame(MAC_X, MAC_A, 2, 60); // X unknown: floods to B and C
    inject(&pool, &a.rx, &[bcast.clone(), unknown.clone()]);
    let r = run_workers(&eal, &bridge_ports, None, vec![ForwardAll], &bridge, &limits(), &stop).unwrap();
    assert_eq!(collect(&b.tx), [bcast.clone(), unknown.clone()]);
    assert_eq!(collect(&c.tx), [bcast.clone(), unknown.clone()]);
    assert!(a.tx.is_empty());
    assert_eq!((r.workers[0].rx, r.workers[0].tx, r.workers[0].flood_copies), (2, 4, 2));
    // A fresh run starts with fresh tables; teach one within a run, frame by frame.
    let reply = frame(MAC_A, MAC_B, 3, 60); // A learned behind port 0: to A only
    let hairpin = frame(MAC_A, MAC_C, 4, 60); // C to A: to A only
    let to_c = frame(MAC_C, MAC_X, 5, 60); // C learned: to C only; learns X behind A
    let x_on_a = frame(MAC_X, MAC_A, 6, 60); // X is behind A, the input port: dropped
    let sequence = [(&a.rx, &bcast), (&b.rx, &reply), (&c.rx, &hairpin), (&a.rx, &to_c), (&a.rx, &x_on_a)];
    let r = run_in_order(&eal, &bridge_ports, &bridge, &stop, &sequence, &pool);
    assert_eq!(collect(&b.tx), [bcast.clone()]);
    assert_eq!(collect(&c.tx), [bcast, to_c]);
    assert_eq!(collect(&a.tx), [reply, hairpin]);
    assert_eq!((r.workers[0].rx, r.workers[0].tx, r.workers[0].l2_dropped), (5, 5, 1));
    assert_eq!(r.ports[0].l2_dropped, 1);

    drop(bridge_ports);
    drop(sink.port);
    assert_eq!(pool.in_use(), 0, "every mbuf is back in the pool");
}

/// Runs the bridge while feeding `frames` one at a time into their rx rings, waiting
/// for each to be taken before the next, so the single worker sees them in order.
fn run_in_order(
    eal: &Eal,
    ports: &[Port],
    cfg: &WorkerConfig,
    stop: &AtomicBool,
    frames: &[(&Arc<Ring>, &Vec<u8>)],
    pool: &Mempool,
) -> dataplane::worker::RunReport {
    std::thread::scope(|s| {
        let feeder = s.spawn(|| {
            for (ring, f) in frames {
                while !ring.is_empty() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                inject(pool, ring, &[f.to_vec()]);
            }
        });
        let r = run_workers(eal, ports, None, vec![ForwardAll], cfg, &limits(), stop).unwrap();
        feeder.join().unwrap();
        r
    })
}
