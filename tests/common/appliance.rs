//! Shared by the tests that start `palisade run` (EAL once per process) on vdevs: the
//! flags they share, the command, and for the live tests an `Appliance` with its
//! control socket in the test's temporary directory and helpers to ask it things
//! through the `palisade` commands.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_palisade");

/// Port 0 reading the pcap (file or FIFO) at `input`.
pub fn rx_pcap(input: &Path) -> String {
    format!("net_pcap0,rx_pcap={}", input.display())
}

/// Port 1 writing what it forwards to the pcap file `output`.
pub fn tx_pcap(output: &Path) -> String {
    format!("net_pcap1,tx_pcap={}", output.display())
}

/// `palisade run` flags for one worker on CPU 1 without hugepages, idle backoff on (vdevs
/// only), the two `ports` (devspecs) in order, then `extra`.
pub fn run_args(ports: [String; 2], extra: &[&str]) -> Vec<String> {
    let [p0, p1] = ports;
    let mut args: Vec<String> = ["--no-huge", "--workers", "1", "--idle-backoff", "on", "--port"].map(String::from).to_vec();
    args.extend([p0, "--port".into(), p1]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// `palisade run ARGS` with its log at `log` level (PALISADE_LOG), not started.
pub fn run_command(args: &[String], log: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("run").args(args).env("PALISADE_LOG", log);
    cmd
}

/// A path as a flag value (the tests' temporary paths are UTF-8).
pub fn arg(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// A running `palisade run`; stopped with SIGTERM (and reaped) on drop.
pub struct Appliance {
    pub child: Child,
    pub socket: PathBuf,
}

impl Appliance {
    /// Starts `palisade run` with `args` plus a control socket in `dir`, and waits for
    /// the socket to appear. Standard output and error go to `dir/run.out` / `run.err`.
    pub fn start(dir: &Path, args: &[String], stdin: Stdio) -> Appliance {
        let socket = dir.join("ctl.sock");
        let child = run_command(args, "warn")
            .arg("--control-socket")
            .arg(&socket)
            .stdin(stdin)
            .stdout(std::fs::File::create(dir.join("run.out")).unwrap())
            .stderr(std::fs::File::create(dir.join("run.err")).unwrap())
            .spawn()
            .unwrap();
        let mut a = Appliance { child, socket };
        let dir = dir.to_owned();
        a.wait_for("the control socket", |a| a.socket.exists(), &dir);
        a
    }

    /// Polls `ready` until it holds; fails (with the appliance's stderr) after a minute.
    pub fn wait_for(&mut self, what: &str, mut ready: impl FnMut(&mut Appliance) -> bool, dir: &Path) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready(self) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("palisade run exited ({status}) before {what}:\n{}", std::fs::read_to_string(dir.join("run.err")).unwrap_or_default());
            }
            assert!(Instant::now() < deadline, "gave up waiting for {what}:\n{}", std::fs::read_to_string(dir.join("run.err")).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `palisade <args> --control-socket <ours>`; panics unless it succeeds.
    pub fn ask(&self, args: &[&str]) -> String {
        let out = self.ask_raw(args);
        assert!(out.status.success(), "palisade {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn ask_raw(&self, args: &[&str]) -> Output {
        Command::new(BIN).args(args).arg("--control-socket").arg(&self.socket).output().unwrap()
    }

    /// `palisade stats --json`.
    pub fn stats(&self) -> serde_json::Value {
        serde_json::from_str(&self.ask(&["stats", "--json"])).unwrap()
    }

    /// SIGTERM, then wait for a clean exit; returns its standard output.
    pub fn stop(mut self, dir: &Path) -> String {
        self.terminate();
        let status = self.child.wait().unwrap();
        let err = std::fs::read_to_string(dir.join("run.err")).unwrap_or_default();
        assert!(status.success(), "palisade run failed ({status}):\n{err}");
        std::fs::read_to_string(dir.join("run.out")).unwrap()
    }

    fn terminate(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A stats counter as an integer.
pub fn counter(stats: &serde_json::Value, name: &str) -> u64 {
    stats[name].as_u64().unwrap_or_else(|| panic!("no counter {name} in {stats}"))
}
