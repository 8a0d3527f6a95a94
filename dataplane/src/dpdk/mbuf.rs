//! `Mbuf`: an owning handle on one single-segment packet buffer.

use dpdk_sys::rte_mbuf;
use std::ptr::NonNull;

/// One packet buffer, owned: dropping it returns it to its pool (or drops one
/// reference when shared). palisade only builds and forwards single-segment mbufs, so
/// the frame is the first segment's data.
#[derive(Debug)]
pub struct Mbuf(NonNull<rte_mbuf>);

// SAFETY: an mbuf is plain memory owned by whoever holds the pointer; its pool is
// thread-safe, so an owned mbuf may move between threads.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Takes ownership of a raw mbuf pointer.
    ///
    /// # Safety
    /// `ptr` must be a valid mbuf that the caller owns (one reference) and gives up.
    #[inline(always)]
    pub(crate) unsafe fn from_raw(ptr: NonNull<rte_mbuf>) -> Mbuf {
        Mbuf(ptr)
    }

    /// Gives up ownership, returning the raw pointer.
    #[inline(always)]
    pub(crate) fn into_raw(self) -> *mut rte_mbuf {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        p
    }

    /// The frame: the first segment's data.
    #[inline(always)]
    pub fn data(&self) -> &[u8] {
        // SAFETY: we own a valid mbuf; buf_addr + data_off .. + data_len lies inside its
        // buffer, and the bytes stay valid and unmodified while we hold `&self`.
        unsafe {
            let m = self.0.as_ptr();
            let base = ((*m).buf_addr as *const u8).add((*m).data_off as usize);
            std::slice::from_raw_parts(base, (*m).data_len as usize)
        }
    }

    /// The frame, writable.
    #[inline(always)]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let m = self.0.as_ptr();
        // SAFETY: as in `data`; `&mut self` gives exclusive access to the bytes.
        unsafe {
            let base = ((*m).buf_addr as *mut u8).add((*m).data_off as usize);
            std::slice::from_raw_parts_mut(base, (*m).data_len as usize)
        }
    }

    /// Frame length in bytes.
    #[inline(always)]
    pub fn len(&self) -> usize {
        // SAFETY: reading a field of a valid mbuf we own.
        unsafe { (*self.0.as_ptr()).data_len as usize }
    }

    /// Whether the frame is empty.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The port the mbuf was received on (as set by the PMD).
    pub fn port(&self) -> u16 {
        // SAFETY: reading a field of a valid mbuf we own.
        unsafe { (*self.0.as_ptr()).port }
    }

    /// Another handle on the same buffer (reference count + 1), for sending one frame
    /// to several ports. Neither handle may then modify the frame.
    #[inline]
    pub fn share(&self) -> Mbuf {
        // SAFETY: bumping the refcount of a valid mbuf; the new handle owns that
        // reference and releases it on drop.
        unsafe { dpdk_sys::palisade_mbuf_refcnt_update(self.0.as_ptr(), 1) };
        Mbuf(self.0)
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own one reference to a valid mbuf and give it up here.
        unsafe { dpdk_sys::palisade_pktmbuf_free(self.0.as_ptr()) }
    }
}
