//! A safe cache-prefetch hint for plain Rust data (flow-table slots and records), so the
//! packet path can overlap memory latency across a burst without `unsafe` of its own.

/// Ask the CPU to bring the cache line holding `*r` into all cache levels. A hint only:
/// no effect on program semantics. No-op on targets other than x86_64.
#[inline(always)]
pub fn prefetch_read<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `r` is a valid reference, and a prefetch never faults nor writes anyway;
    // SSE (which `_mm_prefetch` needs) is part of the x86_64 baseline.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(r as *const T as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}
