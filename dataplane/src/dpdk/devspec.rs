//! Device specs as `palisade run --port` takes them, checked before EAL sees them: a
//! PCI address (`0000:01:00.0`, `01:00.0`, optionally `,key=value` devargs) becomes an
//! EAL allowlist entry (`-a`), a virtual device (`net_tap0,iface=pt0`) becomes
//! `--vdev`; when every device is virtual EAL also gets `--no-pci`, so palisade never
//! probes a device it wasn't given.

/// One device, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevSpec {
    /// A PCI device. `addr` is normalised (`0000:01:00.0`): it is the port's name.
    Pci { addr: String, spec: String },
    /// A virtual device; `name` (the part before the first comma) is the port's name.
    Vdev { name: String, spec: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DevSpecError {
    #[error("empty device spec: give a PCI address (like 0000:01:00.0) or a DPDK virtual device (like net_tap0,iface=pt0)")]
    Empty,
    #[error("device spec {0:?} is neither a PCI address (like 0000:01:00.0; `dpdk-devbind.py --status` lists them) nor a DPDK virtual device (like net_tap0,iface=pt0 or net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap)")]
    Unknown(String),
    #[error("device {0:?} is given twice; each port needs its own device (vdevs: number them, net_tap0, net_tap1, ...)")]
    Duplicate(String),
}

impl DevSpec {
    /// Parses one `--port` value.
    pub fn parse(spec: &str) -> Result<DevSpec, DevSpecError> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(DevSpecError::Empty);
        }
        let head = spec.split(',').next().unwrap_or("");
        if let Some(addr) = parse_pci(head) {
            return Ok(DevSpec::Pci { addr, spec: spec.to_owned() });
        }
        if is_vdev_name(head) {
            return Ok(DevSpec::Vdev { name: head.to_owned(), spec: spec.to_owned() });
        }
        Err(DevSpecError::Unknown(spec.to_owned()))
    }

    /// The name EAL gives the device's ethdev port.
    pub fn port_name(&self) -> &str {
        match self {
            DevSpec::Pci { addr, .. } => addr,
            DevSpec::Vdev { name, .. } => name,
        }
    }

    /// The spec as given.
    pub fn spec(&self) -> &str {
        match self {
            DevSpec::Pci { spec, .. } | DevSpec::Vdev { spec, .. } => spec,
        }
    }

    pub fn is_vdev(&self) -> bool {
        matches!(self, DevSpec::Vdev { .. })
    }
}

impl std::fmt::Display for DevSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.spec())
    }
}

/// Parses every spec and rejects a device given twice.
pub fn parse_all<S: AsRef<str>>(specs: &[S]) -> Result<Vec<DevSpec>, DevSpecError> {
    let mut out: Vec<DevSpec> = Vec::with_capacity(specs.len());
    for s in specs {
        let d = DevSpec::parse(s.as_ref())?;
        if out.iter().any(|o| o.port_name() == d.port_name()) {
            return Err(DevSpecError::Duplicate(d.port_name().to_owned()));
        }
        out.push(d);
    }
    Ok(out)
}

/// The EAL arguments that create exactly these devices and no others: `-a` per PCI
/// device, `--vdev` per virtual one, and `--no-pci` when there is no PCI device.
pub fn eal_device_args(devices: &[DevSpec]) -> Vec<String> {
    let mut args = Vec::with_capacity(devices.len() * 2 + 1);
    if devices.iter().all(DevSpec::is_vdev) {
        args.push("--no-pci".to_owned());
    }
    for d in devices {
        match d {
            DevSpec::Pci { spec, .. } => args.extend(["-a".to_owned(), spec.clone()]),
            DevSpec::Vdev { spec, .. } => args.extend(["--vdev".to_owned(), spec.clone()]),
        }
    }
    args
}

/// `DDDD:BB:DD.F` or `BB:DD.F` (hex; device ≤ 0x1f, function ≤ 7), normalised.
fn parse_pci(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (domain, bus, devfn) = match parts.as_slice() {
        [d, b, df] => (*d, *b, *df),
        [b, df] => ("0000", *b, *df),
        _ => return None,
    };
    let (dev, func) = devfn.split_once('.')?;
    let hex = |t: &str, max_len: usize| -> Option<u32> {
        if t.is_empty() || t.len() > max_len || !t.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(t, 16).ok()
    };
    let (domain, bus, dev, func) = (hex(domain, 4)?, hex(bus, 2)?, hex(dev, 2)?, hex(func, 1)?);
    if dev > 0x1f || func > 7 {
        return None;
    }
    Some(format!("{domain:04x}:{bus:02x}:{dev:02x}.{func:x}"))
}

/// A DPDK ethdev vdev name: `net_` (or the legacy `eth_`) then letters, digits, `_`.
fn is_vdev_name(s: &str) -> bool {
    let rest = s.strip_prefix("net_").or_else(|| s.strip_prefix("eth_"));
    matches!(rest, Some(r) if !r.is_empty() && r.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pci_and_vdev_specs() {
        let cases: &[(&str, Option<DevSpec>)] = &[
            ("0000:01:00.0", Some(DevSpec::Pci { addr: "0000:01:00.0".into(), spec: "0000:01:00.0".into() })),
            ("01:00.1", Some(DevSpec::Pci { addr: "0000:01:00.1".into(), spec: "01:00.1".into() })),
            ("0000:AF:1f.7", Some(DevSpec::Pci { addr: "0000:af:1f.7".into(), spec: "0000:AF:1f.7".into() })),
            (
                "0000:03:00.0,txq_inline=128",
                Some(DevSpec::Pci { addr: "0000:03:00.0".into(), spec: "0000:03:00.0,txq_inline=128".into() }),
            ),
            ("net_tap0,iface=pt0", Some(DevSpec::Vdev { name: "net_tap0".into(), spec: "net_tap0,iface=pt0".into() })),
            ("net_null1", Some(DevSpec::Vdev { name: "net_null1".into(), spec: "net_null1".into() })),
            ("eth_pcap0,rx_pcap=a.pcap", Some(DevSpec::Vdev { name: "eth_pcap0".into(), spec: "eth_pcap0,rx_pcap=a.pcap".into() })),
            ("0000:01:20.0", None), // device > 0x1f
            ("0000:01:00.8", None), // function > 7
            ("00000:01:00.0", None),
            ("eth0", None),
            ("net_", None),
            ("net_ta p0", None),
            ("tap0,iface=x", None),
            ("/dev/net/tun", None),
        ];
        for (input, want) in cases {
            match want {
                Some(w) => assert_eq!(DevSpec::parse(input).as_ref(), Ok(w), "{input}"),
                None => assert_eq!(DevSpec::parse(input), Err(DevSpecError::Unknown(input.to_string())), "{input}"),
            }
        }
        assert_eq!(DevSpec::parse("  "), Err(DevSpecError::Empty));
    }

    #[test]
    fn rejects_a_device_given_twice() {
        assert_eq!(
            parse_all(&["net_null0", "net_null0,size=128"]),
            Err(DevSpecError::Duplicate("net_null0".into()))
        );
        assert_eq!(
            parse_all(&["01:00.0", "0000:01:00.0"]),
            Err(DevSpecError::Duplicate("0000:01:00.0".into()))
        );
    }

    #[test]
    fn eal_args_allowlist_pci_and_disable_pci_for_vdevs_only() {
        let vdevs = parse_all(&["net_tap0,iface=a", "net_tap1,iface=b"]).unwrap();
        assert_eq!(
            eal_device_args(&vdevs),
            ["--no-pci", "--vdev", "net_tap0,iface=a", "--vdev", "net_tap1,iface=b"]
        );
        let mixed = parse_all(&["0000:01:00.0", "net_null0"]).unwrap();
        assert_eq!(eal_device_args(&mixed), ["-a", "0000:01:00.0", "--vdev", "net_null0"]);
    }
}
