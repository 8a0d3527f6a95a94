//! Shared by the `replay_*` tests: build a manifest directory and an input pcap, run
//! `palisade replay` (its own process: EAL once per process), read back the counters
//! and the two output pcaps.

#![allow(dead_code, unused_imports)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use dataplane::pipeline::{craft, pcap};

/// `dir/manifests`, created, holding every file of the lab directories named (relative
/// to tests/data/lab).
pub fn lab_manifest_dir(dir: &Path, parts: &[&str]) -> PathBuf {
    let manifests = dir.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    lab_manifests(&manifests, parts);
    manifests
}

/// Copy every file of the lab directories named (relative to tests/data/lab) into `to`.
pub fn lab_manifests(to: &Path, parts: &[&str]) {
    let lab = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/lab");
    for part in parts {
        for entry in std::fs::read_dir(lab.join(part)).unwrap() {
            let path = entry.unwrap().path();
            let name = format!("{}-{}", part.replace('/', "-"), path.file_name().unwrap().to_string_lossy());
            std::fs::copy(&path, to.join(name)).unwrap();
        }
    }
}

pub use craft::tcp_connection;

pub struct Replay {
    pub counters: serde_json::Value,
    pub allowed: Vec<Vec<u8>>,
    pub dropped: Vec<Vec<u8>>,
}

impl Replay {
    pub fn get(&self, name: &str) -> u64 {
        self.counters[name].as_u64().unwrap_or_else(|| panic!("no counter {name} in {}", self.counters))
    }
}

/// `palisade replay --manifests M --pcap IN` logging at warn, not started; run by
/// `wrapper` (a program and its first arguments, which then runs palisade) if given.
pub fn replay_command(wrapper: &[&str], manifests: &Path, input: &Path) -> Command {
    let bin = env!("CARGO_BIN_EXE_palisade");
    let mut cmd = match wrapper {
        [] => Command::new(bin),
        [program, args @ ..] => {
            let mut c = Command::new(program);
            c.args(args).arg(bin);
            c
        }
    };
    cmd.arg("replay").arg("--manifests").arg(manifests).arg("--pcap").arg(input).env("PALISADE_LOG", "warn");
    cmd
}

/// Run `palisade replay` over `frames` with the manifests in `manifests`.
pub fn replay(dir: &Path, manifests: &Path, frames: &[Vec<u8>], extra: &[&str]) -> Replay {
    let input = dir.join("in.pcap");
    let allowed = dir.join("allowed.pcap");
    let dropped = dir.join("dropped.pcap");
    pcap::write(&input, frames).unwrap();
    let out = replay_command(&[], manifests, &input)
        .arg("--out-allowed")
        .arg(&allowed)
        .arg("--out-dropped")
        .arg(&dropped)
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "palisade replay failed: {stderr}");
    let counters: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("replay output is not JSON ({e}): {}\n{stderr}", String::from_utf8_lossy(&out.stdout))
    });
    let read = |p: &PathBuf| pcap::read(p).unwrap().into_iter().map(|r| r.data).collect();
    Replay { counters, allowed: read(&allowed), dropped: read(&dropped) }
}

pub fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}
