//! Parse rate: `pipeline::parse::parse` (Ethernet, VLANs, IPv4/IPv6 with extension
//! headers, transport) over a fixed mix of frames, one core, no flow lookup; and
//! `parse::parse_fast_v4`, the pipeline's path for IPv4 TCP and UDP (`fast/...`, the
//! frames it takes). Part of the hit-path target: parse + lookup ≤ 50 ns per packet.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use dataplane::pipeline::craft::{self, L4};
use dataplane::pipeline::parse;
use dataplane::wire::tcp::flags::{ACK, PSH, SYN};
use std::net::{IpAddr, SocketAddr};

fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn frames() -> Vec<(&'static str, Vec<u8>)> {
    let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
    vec![
        ("tcp4", craft::tcp(sock("10.0.0.1:40000"), sock("10.0.0.2:80"), PSH | ACK)),
        ("udp4", craft::udp(sock("10.0.0.1:5353"), sock("10.0.0.2:53"), &[0; 64])),
        ("tcp6", craft::tcp(sock("[fd00::1]:40000"), sock("[fd00::2]:443"), SYN)),
        ("qinq_tcp4", craft::with_vlans(&craft::tcp(sock("10.0.0.1:1"), sock("10.0.0.2:80"), ACK), &[100, 7])),
        ("icmp_echo", craft::echo(a, b, true, 1, 1)),
        (
            "frag6_first",
            craft::fragments("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap(), &L4::Udp { src_port: 1, dst_port: 53, payload: &[0; 200] }, 9, 104)
                .swap_remove(0),
        ),
    ]
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(1));
    for (name, frame) in frames() {
        group.bench_function(name, |b| b.iter(|| parse::parse(black_box(&frame))));
        if parse::parse_fast_v4(&frame).is_some() {
            group.bench_function(format!("fast/{name}"), |b| b.iter(|| parse::parse_fast_v4(black_box(&frame))));
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
