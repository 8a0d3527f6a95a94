//! The flow log: one JSON line per connection when it ends or ages out, and
//! optionally one per denied first packet. Written by a logger thread of its own from
//! records the workers hand over through a bounded channel (a full channel drops the
//! record and counts it: the packet path never waits for a disk).
//!
//! Output goes to stdout or to a file rotated by size (`file`, `file.1`, … `file.N`).
//!
//! Owns: the record format and the writer. Must not touch: the packet path.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One flow-log line.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FlowRecord {
    /// Unix time (seconds, fractional) when the record was written.
    pub time: f64,
    /// `end` (closed or aged out) or `denied` (a denied first packet).
    pub event: String,
    pub protocol: String,
    pub src_ip: String,
    pub src_port: u16,
    pub dst_ip: String,
    pub dst_port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_pod: Option<String>,
    /// `allow` or `deny`.
    pub verdict: String,
    pub rules: Vec<String>,
    pub packets: u64,
    pub bytes: u64,
    pub duration_seconds: f64,
}

/// Where the log goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Stdout,
    /// A file rotated when it would exceed `max_bytes`, keeping `keep` old files.
    File { path: PathBuf, max_bytes: u64, keep: u32 },
}

pub struct FlowLog {
    target: Target,
    out: Box<dyn Write + Send>,
    written: u64,
}

impl FlowLog {
    pub fn open(target: Target) -> std::io::Result<Self> {
        let (out, written): (Box<dyn Write + Send>, u64) = match &target {
            Target::Stdout => (Box::new(std::io::stdout()), 0),
            Target::File { path, .. } => {
                let f = open_append(path)?;
                let len = f.metadata()?.len();
                (Box::new(BufWriter::new(f)), len)
            }
        };
        Ok(Self { target, out, written })
    }

    /// Appends one record as a JSON line, rotating first if the file would grow past
    /// its limit.
    pub fn write(&mut self, record: &FlowRecord) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        if let Target::File { path, max_bytes, keep } = &self.target {
            if self.written > 0 && self.written + line.len() as u64 > *max_bytes {
                self.out.flush()?;
                rotate(path, *keep)?;
                self.out = Box::new(BufWriter::new(open_append(path)?));
                self.written = 0;
            }
        }
        self.out.write_all(&line)?;
        self.written += line.len() as u64;
        Ok(())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("flow log {}: {e}", path.display())))
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// `file.(keep-1)` → `file.keep`, …, `file` → `file.1`; the oldest falls off.
fn rotate(path: &Path, keep: u32) -> std::io::Result<()> {
    if keep == 0 {
        return std::fs::remove_file(path);
    }
    for n in (1..keep).rev() {
        let from = numbered(path, n);
        if from.exists() {
            std::fs::rename(&from, numbered(path, n + 1))?;
        }
    }
    std::fs::rename(path, numbered(path, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u16) -> FlowRecord {
        FlowRecord {
            time: 1.5,
            event: "end".into(),
            protocol: "TCP".into(),
            src_ip: "10.47.255.3".into(),
            src_port: 40000 + i,
            dst_ip: "10.47.255.5".into(),
            dst_port: 80,
            src_namespace: Some("dev".into()),
            src_pod: Some("client1-dev".into()),
            verdict: "allow".into(),
            rules: vec!["dev-ingress-policy1-0-podSelector-2-0".into()],
            packets: 10,
            bytes: 900,
            duration_seconds: 0.25,
            ..Default::default()
        }
    }

    #[test]
    fn one_json_line_per_record_with_exact_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flows.log");
        let mut log = FlowLog::open(Target::File { path: path.clone(), max_bytes: 1 << 20, keep: 2 }).unwrap();
        log.write(&record(1)).unwrap();
        log.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"time":1.5,"event":"end","protocol":"TCP","src_ip":"10.47.255.3","src_port":40001,"#,
                r#""dst_ip":"10.47.255.5","dst_port":80,"src_namespace":"dev","src_pod":"client1-dev","#,
                r#""verdict":"allow","rules":["dev-ingress-policy1-0-podSelector-2-0"],"packets":10,"bytes":900,"#,
                r#""duration_seconds":0.25}"#,
                "\n"
            )
        );
    }

    #[test]
    fn rotates_by_size_and_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flows.log");
        let line_len = serde_json::to_vec(&record(1)).unwrap().len() as u64 + 1;
        // Room for exactly two lines per file.
        let mut log = FlowLog::open(Target::File { path: path.clone(), max_bytes: 2 * line_len, keep: 2 }).unwrap();
        for i in 1..=7 {
            log.write(&record(i)).unwrap();
        }
        log.flush().unwrap();
        let ports = |p: &Path| -> Vec<u16> {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<FlowRecord>(l).unwrap().src_port - 40000)
                .collect()
        };
        assert_eq!(ports(&path), vec![7]);
        assert_eq!(ports(&numbered(&path, 1)), vec![5, 6]);
        assert_eq!(ports(&numbered(&path, 2)), vec![3, 4]);
        assert!(!numbered(&path, 3).exists());
    }
}
