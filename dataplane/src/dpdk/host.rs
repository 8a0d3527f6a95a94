//! Host facts checked before EAL init, so that a missing resource is a clear error
//! instead of an EAL failure deep inside DPDK: CPUs this process may run on, and
//! free hugepages.

use std::fs;

/// Parses a CPU list such as `1`, `1-3`, `0,2-3` into sorted, unique CPU ids.
pub fn parse_cpu_list(s: &str) -> Result<Vec<u32>, String> {
    let mut cpus = Vec::new();
    for part in s.trim().split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err(format!("{s:?}: empty element; write cores like 1 or 1-3 or 1,3"));
        }
        let num = |t: &str| t.trim().parse::<u32>().map_err(|_| format!("{s:?}: {t:?} is not a core number; write cores like 1 or 1-3 or 1,3"));
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("{s:?}: range {a}-{b} runs backwards"));
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(num(part)?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// The CPUs this process may run on (`Cpus_allowed_list` in /proc/self/status).
pub fn allowed_cpus() -> Result<Vec<u32>, String> {
    let status = fs::read_to_string("/proc/self/status").map_err(|e| format!("/proc/self/status: {e}"))?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .ok_or("/proc/self/status has no Cpus_allowed_list")?;
    parse_cpu_list(line)
}

/// Hugepage counts from /proc/meminfo (default page size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hugepages {
    pub total: u64,
    pub free: u64,
    pub page_kib: u64,
}

/// Parses /proc/meminfo text.
pub fn parse_meminfo(text: &str) -> Hugepages {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Hugepages { total: field("HugePages_Total:"), free: field("HugePages_Free:"), page_kib: field("Hugepagesize:") }
}

/// The host's hugepages now.
pub fn hugepages() -> Hugepages {
    fs::read_to_string("/proc/meminfo").map(|t| parse_meminfo(&t)).unwrap_or_default()
}

/// Whether a hugetlbfs is mounted (EAL needs one to use hugepages).
pub fn hugetlbfs_mounted() -> bool {
    fs::read_to_string("/proc/mounts")
        .map(|m| m.lines().any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs")))
        .unwrap_or(false)
}

/// Ok when EAL can get hugepage memory; otherwise what to do about it.
pub fn check_hugepages() -> Result<Hugepages, String> {
    let h = hugepages();
    if h.free == 0 {
        return Err(format!(
            "no free hugepages (HugePages_Total {}, HugePages_Free 0 in /proc/meminfo): reserve some with \
             `sudo hugepage-setup/hugepage-setup 1024`, or run without hugepages with --no-huge",
            h.total
        ));
    }
    if !hugetlbfs_mounted() {
        return Err("hugepages are reserved but no hugetlbfs is mounted: run `sudo hugepage-setup/hugepage-setup` \
                    (it mounts one at /dev/hugepages), or use --no-huge"
            .to_owned());
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        let cases: &[(&str, Result<Vec<u32>, ()>)] = &[
            ("1", Ok(vec![1])),
            ("1-3", Ok(vec![1, 2, 3])),
            ("0,2-3", Ok(vec![0, 2, 3])),
            ("3,1,1", Ok(vec![1, 3])),
            (" 0-1 \n", Ok(vec![0, 1])),
            ("", Err(())),
            ("1,", Err(())),
            ("a", Err(())),
            ("3-1", Err(())),
            ("-1", Err(())),
        ];
        for (input, want) in cases {
            assert_eq!(parse_cpu_list(input).map_err(|_| ()), *want, "{input:?}");
        }
    }

    #[test]
    fn meminfo_hugepages() {
        let text = "MemTotal: 100 kB\nHugePages_Total:     512\nHugePages_Free:      500\nHugePages_Rsvd: 0\nHugepagesize:       2048 kB\n";
        assert_eq!(parse_meminfo(text), Hugepages { total: 512, free: 500, page_kib: 2048 });
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), Hugepages::default());
    }
}
