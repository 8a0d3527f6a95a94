//! `Port`: an ethdev port set up for palisade's workers (one rx and one tx queue per
//! worker, symmetric RSS where the PMD has it, promiscuous), stopped and closed on drop.
//! `QueueLease` hands one queue pair to one thread.

use super::{strerror, DpdkError, Mempool, Ring};
use std::cell::Cell;
use std::ffi::{c_char, CStr, CString};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// How to set a port up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortConfig {
    /// Rx and tx queues: one pair per worker.
    pub queues: u16,
    /// Rx descriptors per queue (adjusted to the PMD's limits).
    pub rx_desc: u16,
    /// Tx descriptors per queue (adjusted to the PMD's limits).
    pub tx_desc: u16,
    /// Receive every frame, whatever its destination MAC.
    pub promiscuous: bool,
}

impl Default for PortConfig {
    fn default() -> Self {
        PortConfig { queues: 1, rx_desc: 1024, tx_desc: 1024, promiscuous: true }
    }
}

/// Whether and how received packets are spread over the rx queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RssState {
    /// One queue: nothing to spread.
    SingleQueue,
    /// Toeplitz with a symmetric key (0x6d5a repeated): both directions of a
    /// connection hash to the same queue, so one worker sees the whole connection.
    Symmetric,
    /// The PMD has no RSS (or refused the configuration); it spreads packets its own
    /// way, or not at all. Per-worker state may then see only one direction.
    Unsupported,
}

/// A port's counters, as its PMD keeps them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Dropped by the device because no rx descriptor was free.
    pub rx_missed: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    /// Rx failures for want of an mbuf.
    pub rx_nombuf: u64,
}

/// A started ethdev port.
#[derive(Debug)]
pub struct Port {
    id: u16,
    name: String,
    driver: String,
    mac: [u8; 6],
    rss: RssState,
    leased: Box<[AtomicBool]>,
    _pool: Arc<Mempool>,
    _rings: Vec<Arc<Ring>>,
}

impl Port {
    /// Sets up and starts the port EAL created for device `name` (a vdev name such as
    /// `net_tap0`, or a PCI address such as `0000:01:00.0`).
    pub fn open(pool: &Arc<Mempool>, name: &str, cfg: &PortConfig) -> Result<Port, DpdkError> {
        let id = port_id_by_name(name)?;
        Port::setup(id, name, pool, Vec::new(), cfg)
    }

    /// Creates a port named `name` backed by rings (rx queue i reads `rx[i]`, tx queue i
    /// writes `tx[i]`), then sets it up like any port. `cfg.queues` must equal the
    /// number of rings on each side.
    pub fn from_rings(
        pool: &Arc<Mempool>,
        name: &str,
        rx: &[Arc<Ring>],
        tx: &[Arc<Ring>],
        cfg: &PortConfig,
    ) -> Result<Port, DpdkError> {
        let err = |reason: String| DpdkError::PortSetup { name: name.to_owned(), what: "rte_eth_from_rings", reason };
        if rx.len() != cfg.queues as usize || tx.len() != cfg.queues as usize {
            return Err(err(format!(
                "{} rx and {} tx rings for {} queues",
                rx.len(),
                tx.len(),
                cfg.queues
            )));
        }
        let cname = CString::new(name).map_err(|_| err("name contains a NUL byte".into()))?;
        let rxp: Vec<*mut dpdk_sys::rte_ring> = rx.iter().map(|r| r.as_ptr()).collect();
        let txp: Vec<*mut dpdk_sys::rte_ring> = tx.iter().map(|r| r.as_ptr()).collect();
        // SAFETY: the rings are valid and kept alive by the Port (it holds their Arcs
        // until after close); the arrays hold rx.len()/tx.len() pointers; name is copied.
        let rc = unsafe {
            dpdk_sys::rte_eth_from_rings(
                cname.as_ptr(),
                rxp.as_ptr(),
                rxp.len() as u32,
                txp.as_ptr(),
                txp.len() as u32,
                dpdk_sys::rte_socket_id(),
            )
        };
        if rc < 0 {
            return Err(err(super::last_error()));
        }
        let rings = rx.iter().chain(tx).cloned().collect();
        Port::setup(rc as u16, name, pool, rings, cfg)
    }

    fn setup(id: u16, name: &str, pool: &Arc<Mempool>, rings: Vec<Arc<Ring>>, cfg: &PortConfig) -> Result<Port, DpdkError> {
        let fail = |what: &'static str, rc: i32| DpdkError::PortSetup { name: name.to_owned(), what, reason: strerror(rc) };
        let mut info = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: id is a valid port; info is a writable rte_eth_dev_info.
        let rc = unsafe { dpdk_sys::rte_eth_dev_info_get(id, &mut info) };
        if rc != 0 {
            return Err(fail("rte_eth_dev_info_get", rc));
        }
        let max = info.max_rx_queues.min(info.max_tx_queues);
        if cfg.queues == 0 || cfg.queues > max {
            return Err(DpdkError::TooManyQueues { name: name.to_owned(), max, wanted: cfg.queues });
        }
        let driver = if info.driver_name.is_null() {
            String::new()
        } else {
            // SAFETY: driver_name is a static NUL-terminated string owned by the PMD.
            unsafe { CStr::from_ptr(info.driver_name) }.to_string_lossy().into_owned()
        };

        // SAFETY (for the shim call): returns a constant.
        let wanted_hf = unsafe { dpdk_sys::palisade_rss_hf_ip_tcp_udp() };
        let rss_hf = wanted_hf & info.flow_type_rss_offloads;
        let key_len = if info.hash_key_size == 0 { 40 } else { info.hash_key_size as usize };
        let mut key = [0u8; 256];
        for (i, b) in key.iter_mut().enumerate() {
            *b = if i % 2 == 0 { 0x6d } else { 0x5a };
        }
        let mut rss = if cfg.queues == 1 {
            RssState::SingleQueue
        } else if rss_hf != 0 {
            RssState::Symmetric
        } else {
            RssState::Unsupported
        };
        let make_conf = |rss: RssState| {
            let mut conf = dpdk_sys::rte_eth_conf::default();
            if rss == RssState::Symmetric {
                conf.rxmode.mq_mode = dpdk_sys::RTE_ETH_MQ_RX_RSS;
                conf.rx_adv_conf.rss_conf.rss_key = key.as_ptr() as *mut u8;
                conf.rx_adv_conf.rss_conf.rss_key_len = key_len as u8;
                conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
            }
            conf
        };
        let conf = make_conf(rss);
        // SAFETY: id is valid and stopped; conf (and the key it points to) outlives
        // the call, which copies what it needs.
        let mut rc = unsafe { dpdk_sys::rte_eth_dev_configure(id, cfg.queues, cfg.queues, &conf) };
        if rc != 0 && rss == RssState::Symmetric {
            tracing::warn!(port = name, error = %strerror(rc), "symmetric RSS refused; falling back to the PMD's default spreading");
            rss = RssState::Unsupported;
            let conf = make_conf(rss);
            // SAFETY: as above.
            rc = unsafe { dpdk_sys::rte_eth_dev_configure(id, cfg.queues, cfg.queues, &conf) };
        }
        if rc != 0 {
            return Err(fail("rte_eth_dev_configure", rc));
        }
        let (mut nb_rx, mut nb_tx) = (cfg.rx_desc, cfg.tx_desc);
        // SAFETY: id is valid; both pointers are writable u16s.
        let rc = unsafe { dpdk_sys::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut nb_rx, &mut nb_tx) };
        if rc != 0 {
            return Err(fail("rte_eth_dev_adjust_nb_rx_tx_desc", rc));
        }
        // SAFETY: id is valid.
        let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(id) };
        let socket = if socket < 0 { 0 } else { socket as u32 };
        for q in 0..cfg.queues {
            // SAFETY: id is configured with cfg.queues queues; a null rxconf means the
            // PMD's defaults; the pool outlives the port (the Port holds it).
            let rc = unsafe { dpdk_sys::rte_eth_rx_queue_setup(id, q, nb_rx, socket, std::ptr::null(), pool.as_ptr()) };
            if rc != 0 {
                return Err(fail("rte_eth_rx_queue_setup", rc));
            }
            // SAFETY: as above; a null txconf means the PMD's defaults.
            let rc = unsafe { dpdk_sys::rte_eth_tx_queue_setup(id, q, nb_tx, socket, std::ptr::null()) };
            if rc != 0 {
                return Err(fail("rte_eth_tx_queue_setup", rc));
            }
        }
        // SAFETY: id is valid, configured, with every queue set up.
        let rc = unsafe { dpdk_sys::rte_eth_dev_start(id) };
        if rc != 0 {
            return Err(fail("rte_eth_dev_start", rc));
        }
        // From here on the Port's Drop stops and closes the device.
        let mut port = Port {
            id,
            name: name.to_owned(),
            driver,
            mac: [0; 6],
            rss,
            leased: (0..cfg.queues).map(|_| AtomicBool::new(false)).collect(),
            _pool: pool.clone(),
            _rings: rings,
        };
        if cfg.promiscuous {
            // SAFETY: id is a started port.
            let rc = unsafe { dpdk_sys::rte_eth_promiscuous_enable(id) };
            if rc != 0 && rc != -libc::ENOTSUP {
                return Err(fail("rte_eth_promiscuous_enable", rc));
            }
        }
        let mut addr = dpdk_sys::rte_ether_addr::default();
        // SAFETY: id is valid; addr is writable.
        if unsafe { dpdk_sys::rte_eth_macaddr_get(id, &mut addr) } == 0 {
            port.mac = addr.addr_bytes;
        }
        Ok(port)
    }

    /// The DPDK port id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The device name the port was opened by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The PMD's name (e.g. `net_tap`).
    pub fn driver(&self) -> &str {
        &self.driver
    }

    /// The port's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// How packets are spread over the rx queues.
    pub fn rss(&self) -> RssState {
        self.rss
    }

    /// Number of rx/tx queue pairs.
    pub fn queues(&self) -> u16 {
        self.leased.len() as u16
    }

    /// Exclusive use of queue pair `queue` until the lease is dropped.
    pub fn lease(&self, queue: u16) -> Result<QueueLease<'_>, DpdkError> {
        let flag = self.leased.get(queue as usize);
        match flag {
            Some(f) if !f.swap(true, Ordering::Acquire) => {
                Ok(QueueLease { port: self, queue, _not_sync: PhantomData })
            }
            _ => Err(DpdkError::QueueUnavailable { name: self.name.clone(), queue }),
        }
    }

    /// The PMD's counters now.
    pub fn stats(&self) -> PortStats {
        let mut s = dpdk_sys::rte_eth_stats::default();
        // SAFETY: id is a valid port; s is writable.
        if unsafe { dpdk_sys::rte_eth_stats_get(self.id, &mut s) } != 0 {
            return PortStats::default();
        }
        PortStats {
            rx_packets: s.ipackets,
            tx_packets: s.opackets,
            rx_bytes: s.ibytes,
            tx_bytes: s.obytes,
            rx_missed: s.imissed,
            rx_errors: s.ierrors,
            tx_errors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        }
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        // SAFETY: the port is started and owned by us; no lease outlives `self`
        // (leases borrow it), so no thread polls it any more.
        unsafe {
            dpdk_sys::rte_eth_dev_stop(self.id);
            dpdk_sys::rte_eth_dev_close(self.id);
        }
    }
}

/// One thread's exclusive use of one rx/tx queue pair of a port. Not `Sync`: the
/// queue pair must not be polled from two threads at once.
#[derive(Debug)]
pub struct QueueLease<'p> {
    port: &'p Port,
    queue: u16,
    _not_sync: PhantomData<Cell<()>>,
}

impl QueueLease<'_> {
    /// The port's DPDK id.
    #[inline(always)]
    pub fn port_id(&self) -> u16 {
        self.port.id
    }

    /// The queue pair's index.
    #[inline(always)]
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// The leased port.
    pub fn port(&self) -> &Port {
        self.port
    }
}

impl Drop for QueueLease<'_> {
    fn drop(&mut self) {
        self.port.leased[self.queue as usize].store(false, Ordering::Release);
    }
}

/// The port id EAL gave device `name`.
pub(crate) fn port_id_by_name(name: &str) -> Result<u16, DpdkError> {
    let missing = || DpdkError::NoSuchPort { name: name.to_owned() };
    let cname = CString::new(name).map_err(|_| missing())?;
    let mut id = 0u16;
    // SAFETY: cname is a valid C string; id is writable.
    let rc = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(cname.as_ptr() as *const c_char, &mut id) };
    if rc != 0 {
        return Err(missing());
    }
    Ok(id)
}
