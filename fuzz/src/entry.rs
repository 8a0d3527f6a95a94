//! The fuzz entry points: one function per cargo-fuzz target, each taking raw bytes.
//! A panic (an `assert!` below included) is a finding. The stable regression test
//! (tests/fuzz_regressions.rs) includes this file by path and feeds it every input in
//! fuzz/regressions/<target>/, so CI replays past findings without libFuzzer.

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use dataplane::filter::PacketFilter;
use dataplane::flow::FlowKey;
use dataplane::pipeline::parse::{self, Kind, Parsed};
use dataplane::pipeline::{Pipeline, PipelineConfig};
use dataplane::verdict::{Action, Classifier, Reason, Verdict, NO_RULE};
use dataplane::wire::{ethernet, read_every_view, tcp};

/// `packet`: every header view over the bytes (as a frame and as each layer's start),
/// then the pipeline's one-pass parse. Nothing may panic, and what the parse reports
/// must be consistent with itself.
pub fn packet(data: &[u8]) {
    read_every_view(data);
    if let Some(rest) = data.get(ethernet::HEADER_LEN..) {
        read_every_view(rest);
    }
    match parse::parse(data) {
        Parsed::Ip(meta) => {
            if meta.kind == Kind::NonFirstFragment {
                assert!(meta.fragment.is_some(), "a non-first fragment without a fragment id");
                assert_eq!((meta.src_port, meta.dst_port, meta.tcp_flags), (0, 0, 0), "ports read from fragment data");
            }
            if meta.is_v4 {
                assert!(meta.src[..12] == dataplane::flow::key::v4_mapped([0; 4])[..12], "IPv4 source not mapped");
            }
            if meta.protocol == dataplane::wire::ip_proto::TCP && meta.kind == Kind::Plain && meta.fragment.is_none() {
                assert!(tcp::flags::valid_combination(meta.tcp_flags), "invalid TCP flags accepted");
            }
        }
        Parsed::Passthrough | Parsed::Malformed | Parsed::BadFragment => {}
    }
}

/// A stand-in policy for `flow_key`: even destination ports, ICMP and other protocols
/// are allowed; odd ports denied. Cheap and deterministic.
struct EvenPorts;

impl Classifier for EvenPorts {
    fn generation(&self) -> u64 {
        1
    }

    fn classify(&self, _src: IpAddr, _dst: IpAddr, _proto: u8, dst_port: u16) -> Verdict {
        if dst_port % 2 == 0 {
            Verdict { action: Action::Allow, reason: Reason::Allowed, egress_rule: 0, ingress_rule: 0 }
        } else {
            Verdict { action: Action::Deny, reason: Reason::DeniedByIngress, egress_rule: NO_RULE, ingress_rule: 1 }
        }
    }
}

fn small_pipeline() -> Pipeline<EvenPorts> {
    let config = PipelineConfig {
        flow_capacity: 8,
        fragment_slots: 4,
        aging_every_bursts: 1,
        aging_budget: 4,
        ticks_per_second: 1000,
        hash_seed: Some(7),
        ..PipelineConfig::default()
    };
    Pipeline::new(Arc::new(ArcSwap::from_pointee(EvenPorts)), &config)
}

/// `flow_key`: the bytes are a sequence of frames, each prefixed by a one-byte length.
/// Each frame's flow key must be the same from both directions with the sides swapped,
/// and give back the packet's own addresses, ports, protocol and VLAN. Then the frames
/// go through two small pipelines (8 flows, 4 fragment slots, aging every burst), one
/// frame by frame and one a burst at a time: they must agree on every verdict and every
/// counter, and count every frame exactly once.
pub fn flow_key(data: &[u8]) {
    let mut frames = Vec::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        frames.push(&tail[..len]);
        rest = &tail[len..];
    }
    for frame in &frames {
        if let Parsed::Ip(meta) = parse::parse(frame) {
            let tuple = match meta.kind {
                Kind::IcmpError(q) => (q.src, q.src_port, q.dst, q.dst_port, q.protocol),
                _ => (meta.src, meta.src_port, meta.dst, meta.dst_port, meta.protocol),
            };
            let (src, sport, dst, dport, proto) = tuple;
            let (key, side) = FlowKey::new(&src, sport, &dst, dport, proto, meta.vlan);
            let (back, back_side) = FlowKey::new(&dst, dport, &src, sport, proto, meta.vlan);
            assert!(key == back, "the two directions of a flow have different keys");
            assert!(src == dst && sport == dport || side != back_side, "both directions on one side");
            assert_eq!(key.addr_bytes(side), src);
            assert_eq!(key.port(side), sport);
            assert_eq!(key.addr_bytes(side.other()), dst);
            assert_eq!(key.port(side.other()), dport);
            assert_eq!(key.protocol(), proto);
            assert_eq!(key.vlan(), meta.vlan & 0x00ff_ffff);
            assert_eq!(key.hash(3), back.hash(3));
        }
    }
    let (mut one, mut burst) = (small_pipeline(), small_pipeline());
    let mut now = 1;
    for chunk in frames.chunks(4) {
        // Time moves a little per burst and sometimes jumps past every timeout.
        now += 1 + u64::from(chunk.first().and_then(|f| f.first()).copied().unwrap_or(0) == 0xff) * 10_000_000;
        one.begin_burst(now);
        burst.begin_burst(now);
        let singles: Vec<bool> = chunk.iter().map(|f| one.admit(f, 0)).collect();
        let mut verdicts = vec![false; chunk.len()];
        burst.admit_burst(chunk, 0, &mut verdicts);
        assert_eq!(singles, verdicts, "admit and admit_burst disagree");
    }
    let c = *one.counters();
    assert_eq!(c, *burst.counters(), "admit and admit_burst count differently");
    assert_eq!(c.rx, frames.len() as u64);
    assert_eq!(c.rx, c.forwarded + c.drop_policy + c.drop_malformed + c.drop_no_flow + c.drop_fragment, "{c:?}");
    assert!(one.flow_count() <= 8, "the flow table grew past its capacity");
}

/// `manifest`: the bytes as a manifest file: load, validate, resolve the model and
/// compile, every error rendered as the user would see it.
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let cluster = match control::load::load_str(text, Path::new("fuzz.yaml")) {
        Ok(c) => c,
        Err(e) => return assert!(!e.to_string().is_empty()),
    };
    if let Err(e) = control::validate::validate(&cluster) {
        return assert!(!e.to_string().is_empty());
    }
    let model = match control::model::Model::resolve(&cluster) {
        Ok(m) => m,
        Err(e) => return assert!(!e.to_string().is_empty()),
    };
    let snapshot = control::compile::compile(&model, 1);
    for pod in model.pods.iter().take(4) {
        for other in model.pods.iter().take(4) {
            if let (Some(a), Some(b)) = (pod.addrs.first(), other.addrs.first()) {
                let v = snapshot.classify(*a, *b, 6, 80);
                let _ = v.rules().map(|r| snapshot.rule_name(r).len()).sum::<usize>();
            }
        }
    }
}

/// The Contrail lab cluster (tests/data/lab/base), compiled once.
fn lab() -> &'static (control::model::Model, dataplane::snapshot::Snapshot) {
    static LAB: OnceLock<(control::model::Model, dataplane::snapshot::Snapshot)> = OnceLock::new();
    LAB.get_or_init(|| {
        let text = [
            include_str!("../../tests/data/lab/base/namespaces.yaml"),
            include_str!("../../tests/data/lab/base/pods.yaml"),
            include_str!("../../tests/data/lab/base/policy1.yaml"),
        ]
        .join("\n---\n");
        let cluster = control::load::load_str(&text, Path::new("lab.yaml")).expect("the lab loads");
        let model = control::model::Model::resolve(&cluster).expect("the lab resolves");
        let snapshot = control::compile::compile(&model, 1);
        (model, snapshot)
    })
}

/// `probes`: the bytes as a `palisade verdicts` probe file over the lab: every line
/// parsed, resolved and answered on its own (each answer must be one JSON object), then
/// the whole file through `probes::run`.
pub fn probes(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (model, snapshot) = lab();
    for line in text.lines() {
        let Ok(Some(probe)) = control::probes::Probe::parse(line) else { continue };
        let Ok(r) = probe.resolve(model) else { continue };
        let verdict = snapshot.classify(r.src, r.dst, r.proto, r.port);
        let answer = probe.answer(&verdict, snapshot);
        let value: serde_json::Value = serde_json::from_str(&answer).unwrap_or_else(|e| panic!("answer {answer:?} is not JSON: {e}"));
        assert!(value.is_object() && value["verdict"].is_string(), "{answer}");
    }
    let mut out = Vec::new();
    let _ = control::probes::run(model, snapshot, text.as_bytes(), &mut out);
    assert!(std::str::from_utf8(&out).is_ok());
}
