//! Safe wrappers over DPDK: the only module of the dataplane allowed `unsafe`.
//!
//! Every type here owns what it wraps and releases it on drop, and the borrow graph
//! enforces DPDK's teardown order: ports hold their mempool (and rings) through `Arc`,
//! and every DPDK object holds the `Eal`, so EAL cleanup runs last.
//!
//! - [`Eal`]: EAL initialisation from an argument list (once per process), the lcore map,
//!   scoped launch of one job per worker lcore ([`Eal::run_on_workers`]).
//! - [`Mempool`], [`Mbuf`]: packet buffers; `Mbuf` is an owning single-mbuf handle.
//! - [`Port`]: an ethdev port configured with one rx and one tx queue per worker,
//!   symmetric RSS when the PMD supports it, promiscuous mode; [`QueueLease`] gives one
//!   thread exclusive use of one queue pair; [`RxBurst`] and [`TxBuffer`] are the
//!   burst-at-a-time fast path (burst 32, prefetch, buffered tx that frees what the
//!   PMD refuses).
//!   [`FreeBin`] frees dropped mbufs in bulk.
//! - [`Ring`]: an `rte_ring` of mbufs, and ring-backed ports ([`Port::from_rings`]) so
//!   tests can inject packets and collect what was sent.
//! - [`devspec`], [`host`]: pure checks done before EAL init (device spec syntax,
//!   hugepages, CPUs), so bad input yields an error rather than a DPDK abort.
//! - [`signal`]: SIGINT/SIGTERM to a stop flag.

pub mod acl;
mod burst;
pub mod devspec;
mod eal;
pub mod host;
pub mod hugemem;
mod mbuf;
mod mempool;
mod port;
pub mod prefetch;
mod ring;
pub mod signal;

pub use burst::{Drain, FreeBin, RxBurst, TxBuffer, BURST};
pub use devspec::DevSpec;
pub use eal::Eal;
pub use mbuf::Mbuf;
pub use mempool::Mempool;
pub use port::{Port, PortConfig, PortStats, QueueLease, RssState};
pub use ring::Ring;

use std::ffi::CStr;

/// What can go wrong in the DPDK wrappers. Messages say what was attempted and what
/// DPDK answered.
#[derive(Debug, thiserror::Error)]
pub enum DpdkError {
    #[error("EAL is already initialised in this process (it can be initialised only once)")]
    EalAlreadyInitialised,
    #[error("EAL argument {0:?} contains a NUL byte")]
    BadArgument(String),
    #[error("EAL initialisation failed: {reason} (EAL arguments: {args})")]
    EalInit { reason: String, errno: i32, args: String },
    #[error("EAL has no worker lcores: give at least one worker core besides the main lcore")]
    NoWorkerLcores,
    #[error("cannot create mempool {name:?} of {count} mbufs: {reason}")]
    Mempool { name: String, count: u32, reason: String },
    #[error("cannot create ring {name:?} of {count} slots: {reason}")]
    Ring { name: String, count: u32, reason: String },
    #[error("device {name:?} is not a DPDK ethdev port: it did not come up at EAL init (unknown driver or rejected arguments; see the EAL log above)")]
    NoSuchPort { name: String },
    #[error("port {name:?}: {what} failed: {reason}")]
    PortSetup { name: String, what: &'static str, reason: String },
    #[error("port {name:?} supports at most {max} rx/tx queues, but {wanted} workers need one each; use fewer workers")]
    TooManyQueues { name: String, max: u16, wanted: u16 },
    #[error("port {name:?}: queue {queue} does not exist or is already leased to a worker")]
    QueueUnavailable { name: String, queue: u16 },
    #[error("launching a job on lcore {lcore} failed: {reason}")]
    Launch { lcore: u32, reason: String },
    #[error("a worker job on lcore {lcore} panicked: {message}")]
    WorkerPanicked { lcore: u32, message: String },
}

/// DPDK's text for an errno value (negative or positive).
pub(crate) fn strerror(errnum: i32) -> String {
    let e = errnum.abs();
    // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated
    // string, valid at least until the next call on this thread; we copy it at once.
    let s = unsafe { CStr::from_ptr(dpdk_sys::rte_strerror(e)) };
    format!("{} (errno {e})", s.to_string_lossy())
}

/// DPDK's `rte_errno` for the calling thread, as text.
pub(crate) fn last_error() -> String {
    // SAFETY: reads the calling thread's rte_errno; no preconditions.
    strerror(unsafe { dpdk_sys::palisade_errno() })
}

/// The time-stamp counter (cycles); cheap, monotonic per core.
#[inline(always)]
pub fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC has no preconditions on x86_64.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // SAFETY: palisade_rdtsc wraps rte_rdtsc, which has no preconditions.
        unsafe { dpdk_sys::palisade_rdtsc() }
    }
}
