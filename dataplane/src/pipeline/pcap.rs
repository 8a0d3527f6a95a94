//! A tiny classic-pcap reader and writer (Ethernet link type), for `palisade replay`
//! and the tests that build its input. Reads micro- and nanosecond files of either byte
//! order; refuses pcapng with a message saying how to convert.

use std::io::{self, Read, Write};
use std::path::Path;

const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
const PCAPNG_MAGIC: u32 = 0x0a0d_0d0a;
const LINKTYPE_ETHERNET: u32 = 1;
const GLOBAL_HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 16;

/// One captured frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Timestamp in nanoseconds since the epoch.
    pub nanos: u64,
    pub data: Vec<u8>,
}

fn invalid(path: &Path, what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{}: {what}", path.display()))
}

/// Write `frames` as a microsecond pcap, one per millisecond from t = 0.
pub fn write(path: &Path, frames: &[Vec<u8>]) -> io::Result<()> {
    let mut out = io::BufWriter::new(std::fs::File::create(path)?);
    let mut header = Vec::with_capacity(GLOBAL_HEADER_LEN);
    header.extend_from_slice(&MAGIC_MICROS.to_le_bytes());
    header.extend_from_slice(&2u16.to_le_bytes());
    header.extend_from_slice(&4u16.to_le_bytes());
    header.extend_from_slice(&0i32.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    header.extend_from_slice(&65535u32.to_le_bytes());
    header.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    out.write_all(&header)?;
    for (i, frame) in frames.iter().enumerate() {
        let (secs, micros) = ((i / 1000) as u32, ((i % 1000) * 1000) as u32);
        for field in [secs, micros, frame.len() as u32, frame.len() as u32] {
            out.write_all(&field.to_le_bytes())?;
        }
        out.write_all(frame)?;
    }
    out.flush()
}

/// Read every record of a pcap file.
pub fn read(path: &Path) -> io::Result<Vec<Record>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut bytes)?;
    parse(path, &bytes)
}

/// How many records a pcap file holds, reading only the record headers: counting a
/// capture costs no memory however large it is (`palisade replay` counts its input).
pub fn count(path: &Path) -> io::Result<usize> {
    let mut file = io::BufReader::new(std::fs::File::open(path)?);
    let mut header = [0u8; GLOBAL_HEADER_LEN];
    let got = fill(&mut file, &mut header)?;
    let (le, _) = global_header(path, &header[..got])?;
    let mut records = 0;
    let mut at = GLOBAL_HEADER_LEN;
    loop {
        let mut rec = [0u8; RECORD_HEADER_LEN];
        match fill(&mut file, &mut rec)? {
            0 => return Ok(records),
            RECORD_HEADER_LEN => {}
            _ => return Err(invalid(path, format!("record {records} header cut short at byte {at}"))),
        }
        let b = [rec[8], rec[9], rec[10], rec[11]];
        let caplen = u64::from(if le { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) });
        if io::copy(&mut (&mut file).take(caplen), &mut io::sink())? < caplen {
            return Err(invalid(path, format!("record {records} claims {caplen} bytes past the end of the file")));
        }
        records += 1;
        at += RECORD_HEADER_LEN + caplen as usize;
    }
}

/// Read until `buf` is full or the file ends; how many bytes were read.
fn fill(file: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// Byte order (little-endian?) and timestamp unit (nanoseconds?) from the global
/// header, which must be a classic pcap of Ethernet frames.
fn global_header(path: &Path, header: &[u8]) -> io::Result<(bool, bool)> {
    if header.len() < GLOBAL_HEADER_LEN {
        return Err(invalid(path, format!("{} bytes is too short for a pcap header (24 bytes)", header.len())));
    }
    let word = |at: usize, le: bool| {
        let b = [header[at], header[at + 1], header[at + 2], header[at + 3]];
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let magic_le = word(0, true);
    let (le, nanos) = match (magic_le, word(0, false)) {
        (MAGIC_MICROS, _) => (true, false),
        (MAGIC_NANOS, _) => (true, true),
        (_, MAGIC_MICROS) => (false, false),
        (_, MAGIC_NANOS) => (false, true),
        (PCAPNG_MAGIC, _) => {
            return Err(invalid(path, "is pcapng; convert it with `editcap -F pcap IN OUT`".to_owned()))
        }
        _ => return Err(invalid(path, format!("magic {magic_le:#010x} is not a pcap file"))),
    };
    let linktype = word(20, le) & 0x0fff_ffff;
    if linktype != LINKTYPE_ETHERNET {
        return Err(invalid(path, format!("link type {linktype} is not Ethernet (1)")));
    }
    Ok((le, nanos))
}

fn parse(path: &Path, bytes: &[u8]) -> io::Result<Vec<Record>> {
    let (le, nanos) = global_header(path, bytes.get(..GLOBAL_HEADER_LEN).unwrap_or(bytes))?;
    let mut records = Vec::new();
    let mut at = GLOBAL_HEADER_LEN;
    while at < bytes.len() {
        let Some(rec) = bytes.get(at..at + RECORD_HEADER_LEN) else {
            return Err(invalid(path, format!("record {} header cut short at byte {at}", records.len())));
        };
        let field = |i: usize| {
            let b = [rec[i], rec[i + 1], rec[i + 2], rec[i + 3]];
            u64::from(if le { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) })
        };
        let (secs, frac, caplen) = (field(0), field(4), field(8) as usize);
        let start = at + RECORD_HEADER_LEN;
        let Some(data) = bytes.get(start..start + caplen) else {
            return Err(invalid(path, format!("record {} claims {caplen} bytes past the end of the file", records.len())));
        };
        let nanos_total = secs * 1_000_000_000 + if nanos { frac } else { frac * 1000 };
        records.push(Record { nanos: nanos_total, data: data.to_vec() });
        at = start + caplen;
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_frames() {
        let dir = std::env::temp_dir().join(format!("palisade-pcap-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.pcap");
        let frames = vec![vec![1u8; 60], vec![2u8; 1514], vec![3u8; 14]];
        write(&path, &frames).unwrap();
        let records = read(&path).unwrap();
        assert_eq!(records.iter().map(|r| r.data.clone()).collect::<Vec<_>>(), frames);
        assert_eq!(records[1].nanos, 1_000_000);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 24 + 3 * 16 + 60 + 1514 + 14);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_big_endian_nanosecond_files_and_refuses_others() {
        let mut file = Vec::new();
        file.extend_from_slice(&MAGIC_NANOS.to_be_bytes());
        file.extend_from_slice(&[0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 1]);
        file.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0, 0, 1, 0xaa]);
        let records = parse(Path::new("x"), &file).unwrap();
        assert_eq!(records, vec![Record { nanos: 2_000_000_005, data: vec![0xaa] }]);
        let err = parse(Path::new("x"), &file[..30]).unwrap_err().to_string();
        assert!(err.contains("record 0 header cut short"), "{err}");
        let path = std::env::temp_dir().join(format!("palisade-pcap-count-{}", std::process::id()));
        for (len, expected) in [(file.len(), Ok(1)), (30, Err("record 0 header cut short at byte 24")), (40, Err("record 0 claims 1 bytes past the end"))] {
            std::fs::write(&path, &file[..len]).unwrap();
            match (count(&path), expected) {
                (Ok(n), Ok(e)) => assert_eq!(n, e),
                (Err(err), Err(e)) => assert!(err.to_string().contains(e), "{err}"),
                (got, e) => panic!("count of {len} bytes: {got:?}, expected {e:?}"),
            }
        }
        std::fs::remove_file(&path).unwrap();
        let err = parse(Path::new("x"), &file[..40]).unwrap_err().to_string();
        assert!(err.contains("record 0 claims 1 bytes past the end"), "{err}");
        file[..4].copy_from_slice(&PCAPNG_MAGIC.to_le_bytes());
        let err = parse(Path::new("x"), &file).unwrap_err().to_string();
        assert!(err.contains("pcapng"), "{err}");
    }
}
