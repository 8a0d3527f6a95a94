//! `HugeSlice<T>`: a fixed-size array, filled with one value at creation, on transparent huge pages, for
//! the flow table. Its slot array is sized for the configured capacity (16 MiB at the
//! default 1M flows) and a lookup lands on a random line of it: on 4 KiB pages nearly
//! every lookup also misses the TLB, and the page walk cannot be prefetched away. The
//! allocation is aligned to 2 MiB and advised `MADV_HUGEPAGE`, so the kernel (THP in
//! `madvise` or `always` mode) backs it with 2 MiB pages: 8 TLB entries for 16 MiB.
//! Without THP it is an ordinary allocation and only slower, never wrong.
//!
//! Plain memory, not DPDK's hugepage heap: the table belongs to one worker, lives as
//! long as the pipeline, and must also work under EAL `--no-huge` and without EAL.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

const HUGE_PAGE: usize = 2 << 20;
/// Arrays from this size up are rounded up to whole huge pages, aligned to them and
/// advised: THP maps a huge page only where the mapping covers all of it.
const HUGE_FROM: usize = 1 << 20;

/// A heap array of `len` `T`s on huge pages when it is large enough.
pub struct HugeSlice<T: Copy> {
    ptr: NonNull<T>,
    len: usize,
    layout: Layout,
}

// SAFETY: `HugeSlice` owns its elements exclusively, like `Box<[T]>`.
unsafe impl<T: Copy + Send> Send for HugeSlice<T> {}
// SAFETY: shared access only hands out `&[T]`, like `Box<[T]>`.
unsafe impl<T: Copy + Sync> Sync for HugeSlice<T> {}

impl<T: Copy> HugeSlice<T> {
    /// `len` copies of `value`. Every page is written here, so the memory is
    /// committed before the packet path touches it. Panics if the size overflows
    /// (like `vec!`).
    pub fn filled(len: usize, value: T) -> HugeSlice<T> {
        let size = std::mem::size_of::<T>().checked_mul(len).expect("HugeSlice size overflows usize");
        let huge = size >= HUGE_FROM;
        let (bytes, align) = if huge {
            (size.div_ceil(HUGE_PAGE) * HUGE_PAGE, HUGE_PAGE.max(std::mem::align_of::<T>()))
        } else {
            // A zero-sized layout may not be allocated: keep one byte.
            (size.max(1), std::mem::align_of::<T>())
        };
        let layout = Layout::from_size_align(bytes, align).expect("HugeSlice layout");
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { alloc(layout) };
        let Some(ptr) = NonNull::new(raw as *mut T) else {
            handle_alloc_error(layout);
        };
        if huge {
            // Only advice: if THP is off or the call fails, the memory is still valid.
            // Advised before the first write, so the faults that follow take huge pages.
            // SAFETY: `raw..raw + bytes` is the allocation just made and nothing reads it yet.
            unsafe { libc::madvise(raw as *mut libc::c_void, bytes, libc::MADV_HUGEPAGE) };
        }
        for i in 0..len {
            // SAFETY: `i < len`, inside the allocation of `len` elements, aligned for `T`.
            unsafe { ptr.as_ptr().add(i).write(value) };
        }
        HugeSlice { ptr, len, layout }
    }
}

impl<T: Copy> Deref for HugeSlice<T> {
    type Target = [T];

    #[inline(always)]
    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` points to `len` elements initialised in `filled` that
        // this value owns; the borrow of `self` bounds the slice's life.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> DerefMut for HugeSlice<T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> Drop for HugeSlice<T> {
    fn drop(&mut self) {
        // SAFETY: allocated in `filled` with exactly `self.layout`; `T: Copy` needs no drop.
        unsafe { dealloc(self.ptr.as_ptr() as *mut u8, self.layout) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_huge_arrays_start_filled_and_hold_writes() {
        for len in [0usize, 1, 1000, 3 << 20] {
            let mut a: HugeSlice<u64> = HugeSlice::filled(len, 7);
            assert_eq!(a.len(), len);
            assert_eq!(a.iter().filter(|&&x| x != 7).count(), 0);
            for (i, x) in a.iter_mut().enumerate() {
                *x = i as u64 * 3;
            }
            assert_eq!(a.iter().enumerate().filter(|&(i, &x)| x != i as u64 * 3).count(), 0);
        }
        for len in [1usize << 18, 1 << 20] {
            let big: HugeSlice<u32> = HugeSlice::filled(len, 1);
            assert_eq!(big.as_ptr() as usize % HUGE_PAGE, 0, "{len} u32s aligned to a huge page");
            assert_eq!(big.layout.size() % HUGE_PAGE, 0, "{len} u32s cover whole huge pages");
        }
    }
}
