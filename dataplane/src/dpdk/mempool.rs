//! `Mempool`: a packet-buffer pool (`rte_pktmbuf_pool_create`), freed on drop.

use super::{last_error, DpdkError, Eal, Mbuf};
use dpdk_sys::rte_mempool;
use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::Arc;

/// A pool of packet buffers with the default data room (2048 bytes + headroom).
#[derive(Debug)]
pub struct Mempool {
    ptr: NonNull<rte_mempool>,
    name: String,
    _eal: Arc<Eal>,
}

// SAFETY: DPDK mempools are multi-producer/multi-consumer safe (default ring ops) and
// the pointer is only freed on drop, after every holder is gone.
unsafe impl Send for Mempool {}
// SAFETY: as above; every operation we expose is thread-safe.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Creates a pool of `count` mbufs (best as 2^k - 1) with a per-lcore cache of
    /// `cache` (at most 512) on NUMA `socket` (-1: any).
    pub fn new(eal: &Arc<Eal>, name: &str, count: u32, cache: u32, socket: i32) -> Result<Arc<Mempool>, DpdkError> {
        let err = |reason: String| DpdkError::Mempool { name: name.to_owned(), count, reason };
        let cname = CString::new(name).map_err(|_| err("name contains a NUL byte".into()))?;
        let cache = cache.min(dpdk_sys::RTE_MEMPOOL_CACHE_MAX_SIZE).min(count / 2);
        // SAFETY: EAL is initialised (we hold it); the name is a valid C string that
        // DPDK copies.
        let ptr = unsafe {
            dpdk_sys::rte_pktmbuf_pool_create(
                cname.as_ptr(),
                count,
                cache,
                0,
                dpdk_sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16,
                socket,
            )
        };
        let ptr = NonNull::new(ptr).ok_or_else(|| {
            err(format!(
                "{}; with --no-huge, raise the EAL memory (-m MB) or use fewer ports/workers",
                last_error()
            ))
        })?;
        Ok(Arc::new(Mempool { ptr, name: name.to_owned(), _eal: eal.clone() }))
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// One mbuf, or `None` when the pool is exhausted.
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool is valid; a non-null result is a fresh mbuf we now own.
        let m = unsafe { dpdk_sys::palisade_pktmbuf_alloc(self.ptr.as_ptr()) };
        // SAFETY: as above.
        NonNull::new(m).map(|m| unsafe { Mbuf::from_raw(m) })
    }

    /// One mbuf holding a copy of `frame`, or `None` when the pool is exhausted or the
    /// frame does not fit one buffer.
    pub fn alloc_frame(&self, frame: &[u8]) -> Option<Mbuf> {
        let len = u16::try_from(frame.len()).ok()?;
        let m = self.alloc()?;
        let raw = m.into_raw();
        // SAFETY: raw is a fresh mbuf we own; append returns a pointer to `len`
        // writable bytes inside it, or null when they don't fit.
        let dst = unsafe { dpdk_sys::palisade_pktmbuf_append(raw, len) } as *mut u8;
        // SAFETY: we still own raw (taken back here), whatever happens next.
        let m = unsafe { Mbuf::from_raw(NonNull::new_unchecked(raw)) };
        if dst.is_null() {
            return None;
        }
        // SAFETY: dst points to `len` writable bytes of the mbuf, not overlapping frame.
        unsafe { std::ptr::copy_nonoverlapping(frame.as_ptr(), dst, frame.len()) };
        Some(m)
    }

    /// Mbufs currently free in the pool (including per-lcore caches).
    pub fn available(&self) -> u32 {
        // SAFETY: the pool is valid.
        unsafe { dpdk_sys::rte_mempool_avail_count(self.ptr.as_ptr()) }
    }

    /// Mbufs currently handed out.
    pub fn in_use(&self) -> u32 {
        // SAFETY: the pool is valid.
        unsafe { dpdk_sys::rte_mempool_in_use_count(self.ptr.as_ptr()) }
    }

    pub(crate) fn as_ptr(&self) -> *mut rte_mempool {
        self.ptr.as_ptr()
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        // SAFETY: the last holder is gone; ports using the pool hold an Arc to it, so
        // they are closed already.
        unsafe { dpdk_sys::rte_mempool_free(self.ptr.as_ptr()) }
    }
}
