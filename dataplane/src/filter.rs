//! The seam between the worker loop and policy: the worker hands every received
//! frame to a `PacketFilter` and forwards or frees it by the answer. `ForwardAll` is
//! plain forwarding (benchmarks against testpmd); `pipeline::Pipeline` is the stateful
//! policy enforcer.

/// Per-worker, owned outright by its worker: no sharing, no locks.
pub trait PacketFilter {
    /// Whether `admit` reads the frame's bytes. When false (plain forwarding) the
    /// worker does not prefetch frame data it would never touch.
    const READS_FRAMES: bool = true;
    /// Called once per rx burst, before its packets. `now` is the TSC.
    fn begin_burst(&mut self, now: u64);
    /// Decide one frame received on `in_port`: `true` forwards it, `false` drops it.
    fn admit(&mut self, frame: &[u8], in_port: u16) -> bool;
    /// Decide a whole rx burst: `verdicts[i]` for `frames[i]`, all received on
    /// `in_port` (`frames.len() == verdicts.len()`, at most a burst). The default asks
    /// `admit` frame by frame; a filter that can overlap memory accesses across the
    /// burst (hash every key first, then prefetch, then look up) overrides it.
    #[inline]
    fn admit_burst(&mut self, frames: &[&[u8]], in_port: u16, verdicts: &mut [bool]) {
        for (frame, verdict) in frames.iter().zip(verdicts.iter_mut()) {
            *verdict = self.admit(frame, in_port);
        }
    }
    /// Called when a poll returned nothing, or every N bursts: incremental upkeep
    /// (flow aging, answering dump requests). Must stay bounded in time.
    fn idle(&mut self, now: u64);
}

/// Forward everything: the policy-free fast path.
#[derive(Default, Debug, Clone, Copy)]
pub struct ForwardAll;

impl PacketFilter for ForwardAll {
    const READS_FRAMES: bool = false;
    #[inline(always)]
    fn begin_burst(&mut self, _now: u64) {}
    #[inline(always)]
    fn admit(&mut self, _frame: &[u8], _in_port: u16) -> bool {
        true
    }
    #[inline(always)]
    fn idle(&mut self, _now: u64) {}
}
