//! The burst-at-a-time fast path: `RxBurst` receives up to `BURST` mbufs from a leased
//! queue, `Drain` hands them out one by one (prefetching ahead), `TxBuffer` collects
//! mbufs for one leased tx queue and sends them in bursts, freeing what the PMD
//! refuses, and `FreeBin` frees dropped mbufs in bulk. One shim call per burst;
//! per-packet work is inlined Rust.

use super::{Mbuf, QueueLease};
use dpdk_sys::rte_mbuf;
use std::ptr::NonNull;

/// Packets per rx/tx burst (DPDK's customary 32).
pub const BURST: usize = 32;

/// Up to `BURST` owned mbufs: the storage shared by the burst types. Whatever is
/// still held on drop is freed.
struct Held {
    pkts: [*mut rte_mbuf; BURST],
    len: usize,
}

impl Held {
    fn new() -> Held {
        Held { pkts: [std::ptr::null_mut(); BURST], len: 0 }
    }

    /// Takes `m`; returns whether the storage is now full.
    #[inline(always)]
    fn push(&mut self, m: Mbuf) -> bool {
        // len < BURST always holds here: owners empty a full Held at once.
        self.pkts[self.len] = m.into_raw();
        self.len += 1;
        self.len == BURST
    }

    /// Frees the held mbufs from index `from` on, and forgets all.
    #[inline(always)]
    fn free_from(&mut self, from: usize) {
        let len = std::mem::take(&mut self.len);
        if from < len {
            // SAFETY: pkts[from..len] are mbufs we own; we give them up.
            unsafe { dpdk_sys::palisade_pktmbuf_free_bulk(self.pkts.as_mut_ptr().add(from), (len - from) as u32) };
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.free_from(0);
    }
}

// SAFETY: Held owns its mbufs (see Mbuf's Send), so the burst types may move between
// threads with them.
unsafe impl Send for Held {}

/// Up to `BURST` received mbufs, owned. Mbufs not drained are freed on drop.
pub struct RxBurst(Held);

impl Default for RxBurst {
    fn default() -> Self {
        Self::new()
    }
}

impl RxBurst {
    pub fn new() -> RxBurst {
        RxBurst(Held::new())
    }

    /// Receives up to `BURST` packets from `q`'s rx queue into the burst and returns
    /// how many arrived. Packets still held are freed first.
    #[inline(always)]
    pub fn receive(&mut self, q: &QueueLease<'_>) -> usize {
        self.0.free_from(0);
        // SAFETY: the lease gives this thread exclusive use of the queue; pkts has room
        // for BURST pointers; the returned mbufs are ours.
        let n = unsafe { dpdk_sys::palisade_rx_burst(q.port_id(), q.queue(), self.0.pkts.as_mut_ptr(), BURST as u16) };
        self.0.len = n as usize;
        self.0.len
    }

    /// Keeps, in order, the packets whose frame `keep` accepts and hands every other
    /// one to `reject`; with `prefetch`, frames are prefetched a few packets ahead.
    /// The kept packets stay in the burst's own array (no copy), ready for
    /// `TxBuffer::send_burst`: the testpmd io-forward shape.
    #[inline(always)]
    pub fn retain(&mut self, prefetch: bool, mut keep: impl FnMut(&[u8]) -> bool, mut reject: impl FnMut(Mbuf)) {
        const AHEAD: usize = 3;
        // Until the loop ends the burst claims nothing: if `keep` or `reject` panics,
        // the unvisited mbufs leak instead of being freed twice.
        let len = std::mem::take(&mut self.0.len);
        let pkts = &mut self.0.pkts;
        if prefetch {
            pkts[..len.min(AHEAD)].iter().for_each(|&m| prefetch_frame(m));
        }
        let mut kept = 0;
        for i in 0..len {
            if prefetch && i + AHEAD < len {
                prefetch_frame(pkts[i + AHEAD]);
            }
            let m = pkts[i];
            // SAFETY: m is a valid mbuf the burst owns; the frame is read before the
            // mbuf can be handed away below.
            let frame = unsafe {
                let base = ((*m).buf_addr as *const u8).add((*m).data_off as usize);
                std::slice::from_raw_parts(base, (*m).data_len as usize)
            };
            if keep(frame) {
                pkts[kept] = m;
                kept += 1;
            } else {
                // SAFETY: m is owned by the burst and leaves it here (it is not kept, and
                // slot i is overwritten or beyond the new length).
                reject(unsafe { Mbuf::from_raw(NonNull::new_unchecked(m)) });
            }
        }
        self.0.len = kept;
    }

    /// Fills `out[..n]` with the frames of the `n` held packets (prefetching each) and
    /// returns `n`, for a filter that decides a whole burst at once.
    #[inline(always)]
    pub fn frames<'b>(&'b self, out: &mut [&'b [u8]; BURST]) -> usize {
        let len = self.0.len;
        for (slot, &m) in out.iter_mut().zip(&self.0.pkts[..len]) {
            // SAFETY: m is a valid mbuf the burst owns; the frame borrows the burst, so
            // the mbuf cannot be handed away while the slice lives.
            *slot = unsafe {
                let base = ((*m).buf_addr as *const u8).add((*m).data_off as usize);
                prefetch(base);
                std::slice::from_raw_parts(base, (*m).data_len as usize)
            };
        }
        len
    }

    /// Hands the packets out in order; the burst is empty afterwards.
    #[inline(always)]
    pub fn drain(&mut self) -> Drain<'_> {
        let len = std::mem::take(&mut self.0.len);
        Drain { pkts: &self.0.pkts[..len], next: 0 }
    }
}

/// Iterator over a burst's mbufs, in order. Mbufs not taken are freed on drop.
pub struct Drain<'b> {
    pkts: &'b [*mut rte_mbuf],
    next: usize,
}

impl Drain<'_> {
    /// Prefetches the frame of the packet `ahead` places after the next one (the
    /// l3fwd pattern: start loading a few packets ahead of the one being decided).
    #[inline(always)]
    pub fn prefetch_ahead(&self, ahead: usize) {
        if let Some(&m) = self.pkts.get(self.next + ahead) {
            prefetch_frame(m);
        }
    }

    /// Packets not yet handed out.
    #[inline(always)]
    pub fn remaining(&self) -> usize {
        self.pkts.len() - self.next
    }
}

impl Iterator for Drain<'_> {
    type Item = Mbuf;

    #[inline(always)]
    fn next(&mut self) -> Option<Mbuf> {
        let m = *self.pkts.get(self.next)?;
        self.next += 1;
        // SAFETY: rx_burst returned non-null mbufs that the burst owned; each is handed
        // out exactly once (next advances), so the Mbuf owns it.
        Some(unsafe { Mbuf::from_raw(NonNull::new_unchecked(m)) })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining(), Some(self.remaining()))
    }
}

impl Drop for Drain<'_> {
    fn drop(&mut self) {
        self.by_ref().for_each(drop);
    }
}

/// Prefetches the frame of `m`, a valid mbuf owned by the caller's burst.
#[inline(always)]
fn prefetch_frame(m: *mut rte_mbuf) {
    // SAFETY: m is a valid mbuf (caller's burst owns it); we only compute an address
    // from its header; a prefetch hint never faults.
    let p = unsafe { ((*m).buf_addr as *const u8).add((*m).data_off as usize) };
    prefetch(p);
}

#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch hint never faults, whatever the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Mbufs waiting for one tx queue. `push` sends a full burst at once; `flush` sends
/// what is pending. What the PMD does not take is freed and counted in `unsent`.
pub struct TxBuffer<'q> {
    held: Held,
    port: u16,
    queue: u16,
    /// Packets the PMD accepted.
    pub sent: u64,
    /// Packets the PMD refused (queue full), freed.
    pub unsent: u64,
    _lease: std::marker::PhantomData<&'q QueueLease<'q>>,
}

impl<'q> TxBuffer<'q> {
    /// A buffer for `q`'s tx queue, usable while the lease is borrowed.
    pub fn new(q: &'q QueueLease<'q>) -> TxBuffer<'q> {
        TxBuffer { held: Held::new(), port: q.port_id(), queue: q.queue(), sent: 0, unsent: 0, _lease: std::marker::PhantomData }
    }

    /// Queues `m`; sends the buffer when it is full.
    #[inline(always)]
    pub fn push(&mut self, m: Mbuf) {
        if self.held.push(m) {
            self.flush();
        }
    }

    /// Whether nothing is pending.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.held.len == 0
    }

    /// Sends every packet of `burst` straight from its array (after anything pending,
    /// so order holds); frees and counts what the PMD refuses. The burst is empty
    /// afterwards.
    #[inline(always)]
    pub fn send_burst(&mut self, burst: &mut RxBurst) {
        self.flush();
        let len = burst.0.len;
        if len == 0 {
            return;
        }
        // SAFETY: as in `flush`; the burst's first `len` pointers are mbufs it owns, and
        // the PMD takes ownership of the first `n` it returns.
        let n = unsafe { dpdk_sys::palisade_tx_burst(self.port, self.queue, burst.0.pkts.as_mut_ptr(), len as u16) } as usize;
        self.sent += n as u64;
        self.unsent += (len - n) as u64;
        burst.0.free_from(n);
    }

    /// Sends what is pending; frees and counts what the PMD refuses.
    #[inline(always)]
    pub fn flush(&mut self) {
        let len = self.held.len;
        if len == 0 {
            return;
        }
        // SAFETY: the lease (borrowed for 'q) gives this thread exclusive use of the
        // tx queue; the first `len` pointers are mbufs we own; the PMD takes ownership
        // of the first `n` it returns.
        let n = unsafe { dpdk_sys::palisade_tx_burst(self.port, self.queue, self.held.pkts.as_mut_ptr(), len as u16) } as usize;
        self.sent += n as u64;
        self.unsent += (len - n) as u64;
        self.held.free_from(n);
    }
}

impl Drop for TxBuffer<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Mbufs to free, freed in bulk (one shim call per `BURST`) rather than one by one.
pub struct FreeBin(Held);

impl Default for FreeBin {
    fn default() -> Self {
        FreeBin(Held::new())
    }
}

impl FreeBin {
    /// Takes `m` to be freed; frees the bin when it is full.
    #[inline(always)]
    pub fn push(&mut self, m: Mbuf) {
        if self.0.push(m) {
            self.0.free_from(0);
        }
    }

    /// Frees everything held.
    #[inline(always)]
    pub fn empty(&mut self) {
        self.0.free_from(0);
    }
}
