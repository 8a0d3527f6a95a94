//! `Ring`: an `rte_ring` of mbufs. Ring-backed ports (`Port::from_rings`) let tests put
//! known packets in front of the real worker loop and collect exactly what it sent.

use super::{last_error, DpdkError, Eal, Mbuf};
use dpdk_sys::rte_ring;
use std::ffi::{c_void, CString};
use std::ptr::NonNull;
use std::sync::Arc;

/// A multi-producer, multi-consumer ring holding owned mbufs.
#[derive(Debug)]
pub struct Ring {
    ptr: NonNull<rte_ring>,
    name: String,
    _eal: Arc<Eal>,
}

// SAFETY: created without SP/SC flags, so enqueue and dequeue are thread-safe; freed
// only on drop, after every holder (including ring-backed ports) is gone.
unsafe impl Send for Ring {}
// SAFETY: as above.
unsafe impl Sync for Ring {}

impl Ring {
    /// A ring with room for `count - 1` mbufs (`count` a power of two).
    pub fn new(eal: &Arc<Eal>, name: &str, count: u32) -> Result<Arc<Ring>, DpdkError> {
        let err = |reason: String| DpdkError::Ring { name: name.to_owned(), count, reason };
        let cname = CString::new(name).map_err(|_| err("name contains a NUL byte".into()))?;
        // SAFETY: EAL is initialised; the name is copied by DPDK; flags 0 = MP/MC.
        let ptr = unsafe { dpdk_sys::rte_ring_create(cname.as_ptr(), count, -1, 0) };
        let ptr = NonNull::new(ptr).ok_or_else(|| err(last_error()))?;
        Ok(Arc::new(Ring { ptr, name: name.to_owned(), _eal: eal.clone() }))
    }

    /// The ring's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Puts one mbuf in the ring; gives it back when the ring is full.
    pub fn enqueue(&self, m: Mbuf) -> Result<(), Mbuf> {
        let raw = m.into_raw() as *mut c_void;
        // SAFETY: the ring is valid; on success the ring owns the mbuf.
        let n = unsafe { dpdk_sys::palisade_ring_enqueue_burst(self.ptr.as_ptr(), &raw, 1) };
        if n == 1 {
            Ok(())
        } else {
            // SAFETY: the ring refused it, so we still own it.
            Err(unsafe { Mbuf::from_raw(NonNull::new_unchecked(raw as *mut _)) })
        }
    }

    /// Takes one mbuf out of the ring.
    pub fn dequeue(&self) -> Option<Mbuf> {
        let mut raw: *mut c_void = std::ptr::null_mut();
        // SAFETY: the ring is valid and holds only mbufs; a dequeued mbuf is ours.
        let n = unsafe { dpdk_sys::palisade_ring_dequeue_burst(self.ptr.as_ptr(), &mut raw, 1) };
        // SAFETY: as above.
        (n == 1).then(|| unsafe { Mbuf::from_raw(NonNull::new_unchecked(raw as *mut _)) })
    }

    /// Mbufs in the ring now.
    pub fn len(&self) -> usize {
        // SAFETY: the ring is valid.
        unsafe { dpdk_sys::palisade_ring_count(self.ptr.as_ptr()) as usize }
    }

    /// Whether the ring is empty now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn as_ptr(&self) -> *mut rte_ring {
        self.ptr.as_ptr()
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // Mbufs still inside are not freed here: their pool may be gone already.
        // SAFETY: the last holder is gone (ports backed by this ring hold an Arc).
        unsafe { dpdk_sys::rte_ring_free(self.ptr.as_ptr()) }
    }
}
